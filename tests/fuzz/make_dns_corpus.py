"""Writes the seed corpus of tests/fuzz/fuzz_dns.c into corpus/dns/: one
query of each kind the responder tells apart, well-formed or not. Run it
again after changing the list; the files are checked in."""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "dns")


def name(text):
    wire = b""
    for label in text.split("."):
        if label:
            wire += bytes([len(label)]) + label.encode()
    return wire + b"\0"


def header(qid=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def opt(size=1232, version=0, do=False, options=b""):
    return (b"\0" + struct.pack("!HHBBHH", 41, size, 0, version,
                                0x8000 if do else 0, len(options)) + options)


def query(qname, qtype=1, qclass=1, flags=0x0100, edns=None, **counts):
    ar = 1 if edns is not None else 0
    body = name(qname) + struct.pack("!HH", qtype, qclass)
    return header(flags=flags, ar=ar, **counts) + body + (edns or b"")


SEEDS = {
    "a": query("ep-1.nlb.internal"),
    "aaaa-edns": query("payments.nlb.internal", 28, edns=opt()),
    "any": query("payments.nlb.internal", 255),
    "nodata-mx": query("ep-1.nlb.internal", 15),
    "nxdomain": query("ep-gone.nlb.internal"),
    "refused": query("example.com"),
    "apex-soa": query("nlb.internal", 6),
    "apex-ns": query("nlb.internal", 2, edns=opt(512)),
    "private": query("api.payments.example"),
    "private-below": query("v2.api.payments.example"),
    "ent": query("b.nlb.internal"),
    "case": query("EP-1.NLB.Internal"),
    "big-udp": query("big.nlb.internal", 28),
    "big-edns-4096-do": query("big.nlb.internal", 28, edns=opt(4096, do=True)),
    "edns-cookie": query("ep-1.nlb.internal",
                         edns=opt(options=struct.pack("!HH", 10, 8) + b"\1" * 8)),
    "badvers": query("ep-1.nlb.internal", edns=opt(version=1)),
    "class-chaos": query("version.bind", 16, 3),
    "class-any": query("ep-1.nlb.internal", 1, 255),
    "axfr": query("nlb.internal", 252),
    "qtype-opt": query("ep-1.nlb.internal", 41),
    "notify": query("nlb.internal", 6, flags=0x2000),
    "update": query("nlb.internal", 6, flags=0x2800),
    "response": query("ep-1.nlb.internal", flags=0x8180),
    "two-opt": query("ep-1.nlb.internal", edns=opt() + opt()).replace(
        header(ar=1), header(ar=2), 1),
    "no-question": header(qd=0),
    "two-questions": header(qd=2) + name("a.nlb.internal") + b"\0\1\0\1"
                     + name("b.nlb.internal") + b"\0\1\0\1",
    "answer-in-query": header(an=1) + name("a.nlb.internal") + b"\0\1\0\1",
    "pointer-loop": header() + b"\xc0\x0c\0\1\0\1",
    "pointer-forward": header() + b"\xc0\x20\0\1\0\1" + b"\0" * 20,
    "label-too-long": header() + b"\x40" + b"a" * 64 + b"\0\0\1\0\1",
    "label-past-end": header() + b"\x3c" + b"a" * 10,
    "header-only": header(),
    "short": b"\x12\x34\x01",
    "empty": b"",
    "name-255": query(".".join(["a" * 63] * 3 + ["a" * 61])),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for seed, data in SEEDS.items():
        with open(os.path.join(OUT, seed), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(SEEDS), OUT))


if __name__ == "__main__":
    main()
