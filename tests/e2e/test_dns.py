#!/usr/bin/env python3
"""End to end, issue 17 (phase 1): the DNS responder of consumer networks.

tests/tools/dns_responder runs nlb's responder (nlb/dns.c) with a record
table from its command line; its sockets are opened inside two network
namespaces that use the same address (127.53.0.2 on each namespace's own
loopback, so nothing leaves the host). `dig` inside each namespace asks it
over UDP and TCP: A, AAAA, NODATA, NXDOMAIN, REFUSED, a private DNS name
only where it was set, a truncated answer retried over TCP; then truncated,
oversize and garbage packets and TCP frames, after which a good query is
still answered. Without namespaces, on the host's loopback: TCP pipelining,
split frames, the idle timeout, the connection cap, a client that never
reads, and the log rate limit. unbound forwarding to the responder checks
the snippet of docs/dns.md.

The namespace tests need root, `ip netns` and dig (SKIP otherwise);
namespaces are named dns-<role>-<pid> and always deleted."""

import atexit
import ctypes
import os
import queue
import random
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nlbtest import TOP_BUILDDIR, Skip, free_port, run, wait_until  # noqa: E402

RESPONDER = os.path.join(TOP_BUILDDIR, "tests", "tools", "dns_responder")
PID = os.getpid()
DNS_ADDRESS = "127.53.0.2"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*args, check=True, timeout=10):
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=timeout, check=check)


# ---- namespaces ------------------------------------------------------------

_namespaces = []


def netns_add(role):
    if os.geteuid() != 0:
        raise Skip("needs root (network namespaces)")
    for tool in ("ip", "dig"):
        if shutil.which(tool) is None:
            raise Skip("%s is not installed" % tool)
    name = "dns-%s-%d" % (role, PID)
    sh("ip", "netns", "del", name, check=False)
    r = sh("ip", "netns", "add", name, check=False)
    if r.returncode != 0:
        raise Skip("ip netns add failed: %s" % r.stderr.strip())
    _namespaces.append(name)
    sh("ip", "-n", name, "link", "set", "lo", "up")
    return name


def netns_del(name):
    sh("ip", "netns", "del", name, check=False)
    if name in _namespaces:
        _namespaces.remove(name)


@atexit.register
def _delete_namespaces():
    for name in list(_namespaces):
        netns_del(name)


def in_netns(name, fn):
    """fn() on a thread that entered /run/netns/NAME; sockets it makes
    stay there."""
    result = {}

    def body():
        try:
            fd = os.open("/run/netns/" + name, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            result["value"] = fn()
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


# ---- the responder -----------------------------------------------------------

class Responder:
    """dns_responder with the given networks and records; commands on its
    stdin, replies on its stdout, logs in a file."""

    def __init__(self, networks, records, *extra):
        if not os.access(RESPONDER, os.X_OK):
            raise Skip("%s is not built" % RESPONDER)
        self.dir = tempfile.mkdtemp(prefix="dns-e2e-")
        self.log_path = os.path.join(self.dir, "stderr.log")
        args = [RESPONDER, "--ttl", "30", "--negative-ttl", "5"]
        args += list(extra)
        for network in networks:
            args += ["--network", ",".join(network)]
        for record in records:
            args += ["--record", ",".join(record)]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(self.log_path, "w"), text=True, bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        line = self.next_line(timeout=10)
        if line != "ready":
            raise AssertionError("responder said %r: %s" % (line, self.log()))

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout=5):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no reply from the responder")

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.next_line()
        if reply != "ok":
            raise AssertionError("%s: %s" % (line, reply))

    def metrics(self):
        self.proc.stdin.write("metrics\n")
        self.proc.stdin.flush()
        values = {}
        while True:
            line = self.next_line()
            if line == "." or line is None:
                return values
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                # nlb_dns_tcp_budget is +Inf unless --tcp-budget is given.
                values[key] = float(value) if value == "+Inf" else int(value)

    def queries(self, network, rcode):
        return self.metrics().get(
            'nlb_dns_queries_total{network="%s",rcode="%s"}' % (network, rcode),
            0)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """Ends stdin (a clean stop); fails on a bad exit or a sanitizer
        report."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("the responder did not stop")
        log = self.log()
        shutil.rmtree(self.dir, ignore_errors=True)
        if any(mark in log for mark in SANITIZER_MARKS):
            raise AssertionError("sanitizer report:\n%s" % log[-4000:])
        if self.proc.returncode != 0:
            raise AssertionError("responder exited %d:\n%s" % (
                self.proc.returncode, log[-4000:]))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            print("--- responder log\n%s" % self.log()[-4000:])
            return False
        self.stop()
        return False


# ---- DNS by hand (for what dig will not send) ---------------------------------

def wire_name(text):
    out = b""
    for label in text.strip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def make_query(name, qtype=1, qid=None, edns=None):
    qid = random.randrange(65536) if qid is None else qid
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0,
                         1 if edns else 0)
    packet += wire_name(name) + struct.pack("!HH", qtype, 1)
    if edns:
        packet += b"\0" + struct.pack("!HHIH", 41, edns, 0, 0)
    return qid, packet


def parse_header(packet):
    """(id, flags, rcode, qd, an, ns, ar)."""
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", packet[:12])
    return qid, flags, flags & 0xf, qd, an, ns, ar


def udp_ask(host, port, packet, timeout=2.0):
    """The response datagram, or None within timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (host, port))
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def tcp_read_message(sock):
    head = recv_exactly(sock, 2)
    if head is None:
        return None
    return recv_exactly(sock, struct.unpack("!H", head)[0])


def tcp_frame(packet):
    return struct.pack("!H", len(packet)) + packet


def expect_answered(host, port, name="ep-1.nlb.internal", want_an=1):
    qid, q = make_query(name)
    r = udp_ask(host, port, q)
    assert r is not None, "no UDP answer"
    rid, flags, rcode, _, an, _, _ = parse_header(r)
    assert (rid, rcode, an) == (qid, 0, want_an), (rid, rcode, an)
    with socket.create_connection((host, port), timeout=3) as s:
        s.sendall(tcp_frame(q))
        r = tcp_read_message(s)
    assert r is not None, "no TCP answer"
    rid, _, rcode, _, an, _, _ = parse_header(r)
    assert (rid, rcode, an) == (qid, 0, want_an), (rid, rcode, an)


# ---- dig -----------------------------------------------------------------------

class Dig:
    def __init__(self, status, flags, answers, authority, text):
        self.status = status
        self.flags = flags
        self.answers = answers
        self.authority = authority
        self.text = text


def dig(ns, name, qtype="A", *opts):
    """dig @DNS_ADDRESS inside namespace ns; the parsed reply."""
    r = sh("ip", "netns", "exec", ns, "dig", "@" + DNS_ADDRESS, name, qtype,
           "+tries=1", "+time=3", "+norecurse", *opts, check=False)
    text = r.stdout
    status = re.search(r"status: (\w+)", text)
    flags = re.search(r";; flags: ([a-z ]*);", text)
    assert status and flags, "dig %s %s %s:\n%s%s" % (
        name, qtype, " ".join(opts), text, r.stderr)
    sections = {"ANSWER": [], "AUTHORITY": []}
    current = None
    for line in text.splitlines():
        m = re.match(r";; (\w+) SECTION:", line)
        if m:
            current = m.group(1)
            continue
        if not line.strip() or line.startswith(";"):
            if not line.strip():
                current = None
            continue
        if current in sections:
            sections[current].append(line.split())
    return Dig(status.group(1), flags.group(1).split(), sections["ANSWER"],
               sections["AUTHORITY"], text)


def records_for(network, big=False):
    """The table of one network: its endpoint's names, and in net-a a
    private DNS name and a name too big for UDP."""
    last = "5" if network == "net-a" else "6"
    addr4, addr6 = "10.0.0." + last, "fd00::" + last
    records = [
        (network, "ep-%s.nlb.internal" % network[-1], addr4),
        (network, "payments.nlb.internal", addr4),
        (network, "payments.nlb.internal", addr6),
        (network, "v4only.nlb.internal", addr4),
    ]
    if network == "net-a":
        records.append((network, "api.payments.example", addr4))
    if big:
        records += [(network, "big.nlb.internal", "fd00::1:%x" % i)
                    for i in range(100)]
    return records


# ---- tests -----------------------------------------------------------------------

def test_answers_in_two_namespaces_with_one_address():
    ns_a, ns_b = netns_add("a"), netns_add("b")
    try:
        networks = [("net-a", ns_a, DNS_ADDRESS), ("net-b", ns_b, DNS_ADDRESS)]
        with Responder(networks, records_for("net-a", big=True) +
                       records_for("net-b")) as r:
            # Each namespace gets its own endpoint's address.
            for ns, want4, want6 in ((ns_a, "10.0.0.5", "fd00::5"),
                                     (ns_b, "10.0.0.6", "fd00::6")):
                d = dig(ns, "payments.nlb.internal")
                assert d.status == "NOERROR" and "aa" in d.flags, d.text
                assert [a[-1] for a in d.answers] == [want4], d.text
                assert d.answers[0][1] == "30", d.text  # the TTL
                d = dig(ns, "payments.nlb.internal", "AAAA", "+tcp")
                assert [a[-1] for a in d.answers] == [want6], d.text
            # Another network's endpoint and private name: not here.
            assert dig(ns_b, "ep-a.nlb.internal").status == "NXDOMAIN"
            assert dig(ns_a, "api.payments.example").answers[0][-1] == \
                "10.0.0.5"
            assert dig(ns_b, "api.payments.example").status == "REFUSED"
            # NODATA, NXDOMAIN (with the SOA, negative TTL), REFUSED.
            d = dig(ns_a, "v4only.nlb.internal", "AAAA")
            assert d.status == "NOERROR" and not d.answers, d.text
            assert d.authority and d.authority[0][3] == "SOA", d.text
            d = dig(ns_a, "ep-gone.nlb.internal")
            assert d.status == "NXDOMAIN" and "aa" in d.flags, d.text
            assert d.authority[0][3] == "SOA" and d.authority[0][1] == "5"
            d = dig(ns_a, "example.com")
            assert d.status == "REFUSED" and "aa" not in d.flags, d.text
            # Case kept in the answer.
            d = dig(ns_a, "PayMents.NLB.internal")
            assert d.answers[0][0] == "PayMents.NLB.internal.", d.text
            # 100 AAAA: truncated over UDP, whole over TCP (dig retries by
            # itself when it sees TC).
            d = dig(ns_a, "big.nlb.internal", "AAAA", "+ignore", "+notcp")
            assert "tc" in d.flags and not d.answers, d.text
            d = dig(ns_a, "big.nlb.internal", "AAAA", "+bufsize=4096",
                    "+ignore")
            assert "tc" in d.flags, d.text
            d = dig(ns_a, "big.nlb.internal", "AAAA")
            assert "tc" not in d.flags and len(d.answers) == 100, d.text
            assert "Truncated, retrying in TCP mode" in d.text, d.text
            # SOA and NS at the apex; the NS's glue is the responder.
            d = dig(ns_a, "nlb.internal", "NS")
            assert d.answers[0][-1] == "nlb.internal.", d.text
            assert re.search(r"^nlb\.internal\.\s+30\s+IN\s+A\s+%s$" %
                             re.escape(DNS_ADDRESS), d.text, re.M), d.text
            # A record removed answers NXDOMAIN at once.
            r.command("remove net-a ep-a.nlb.internal 10.0.0.5")
            assert dig(ns_a, "ep-a.nlb.internal").status == "NXDOMAIN"
            r.command("add net-a ep-a.nlb.internal 10.0.0.5")
            assert dig(ns_a, "ep-a.nlb.internal").status == "NOERROR"
            m = r.metrics()
            assert m['nlb_dns_queries_total{network="net-a",rcode="NOERROR"}'] \
                >= 10, m
            assert m['nlb_dns_queries_total{network="net-b",rcode="REFUSED"}'] \
                == 1, m
            assert m['nlb_dns_truncated_total{network="net-a"}'] >= 2, m
    finally:
        netns_del(ns_a)
        netns_del(ns_b)


def garbage_round(host, port):
    """Sends what no client should, from inside the namespace; returns how
    many UDP packets got an answer."""
    rng = random.Random(17)
    answered = 0
    qid, good = make_query("ep-a.nlb.internal")
    udp = [
        b"", b"\x12", b"\x12\x34\x01\x00\x00",  # shorter than a header
        good[:12], good[:20], good[:-1],         # cut short
        good[:2] + b"\x81\x80" + good[4:],       # a response
        good + b"\0" * 5,                        # trailing bytes
        bytes(rng.randrange(256) for _ in range(4000)),  # oversize garbage
        good[:12] + b"\xc0\x0c\0\1\0\1",         # compression loop
        b"\xff" * 512,
        bytes(rng.randrange(256) for _ in range(60000)),
    ] + [bytes(rng.randrange(256) for _ in range(rng.randrange(12, 300)))
         for _ in range(200)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.01)
        for packet in udp:
            s.sendto(packet, (host, port))
            try:
                if s.recv(65535):
                    answered += 1
            except socket.timeout:
                pass
    # TCP: a length never followed, garbage frames, a zero-length frame,
    # a frame cut by the close, bytes one at a time.
    frames = [b"\xff\xff", tcp_frame(b"\0" * 5), b"\0\0",
              tcp_frame(bytes(rng.randrange(256) for _ in range(3000))),
              tcp_frame(good)[:-3]]
    for data in frames:
        with socket.create_connection((host, port), timeout=3) as s:
            s.sendall(data)
    with socket.create_connection((host, port), timeout=3) as s:
        for byte in tcp_frame(good):
            s.send(bytes([byte]))
        r = tcp_read_message(s)
        assert r is not None and parse_header(r)[0] == qid
    return answered


def test_garbage_then_a_good_query():
    ns = netns_add("g")
    try:
        with Responder([("net-a", ns, DNS_ADDRESS)],
                       records_for("net-a")) as r:
            answered = in_netns(ns, lambda: garbage_round(DNS_ADDRESS, 53))
            assert answered > 0  # FORMERR for those with a header
            in_netns(ns, lambda: expect_answered(DNS_ADDRESS, 53,
                                                 "ep-a.nlb.internal"))
            assert r.alive()
            m = r.metrics()
            assert m['nlb_dns_queries_total{network="net-a",rcode="FORMERR"}'] \
                > 0, m
            assert m['nlb_dns_dropped_total{network="net-a"}'] >= 4, m
            assert " dns net-a udp " in r.log()
    finally:
        netns_del(ns)


def test_namespace_replaced_is_followed():
    ns = netns_add("r")
    try:
        with Responder([("net-a", ns, DNS_ADDRESS)],
                       records_for("net-a")) as r:
            assert dig(ns, "ep-a.nlb.internal").status == "NOERROR"
            netns_del(ns)
            sh("ip", "netns", "add", ns)
            _namespaces.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")

            def reopened():
                log = r.log()
                gone = max(log.find("was replaced"), log.find("was deleted"))
                return gone >= 0 and "answering at" in log[gone:]
            wait_until(reopened, timeout=5, what="the responder to reopen")
            assert dig(ns, "ep-a.nlb.internal").status == "NOERROR"
    finally:
        netns_del(ns)


def test_resolv_conf_in_the_namespace():
    """/etc/netns/NS/resolv.conf (what `ip netns exec` mounts over
    /etc/resolv.conf) naming the responder: the C library resolves."""
    ns = netns_add("c")
    conf_dir = "/etc/netns/" + ns
    try:
        os.makedirs(conf_dir, exist_ok=True)
        # A second server for everything else: glibc moves on after the
        # responder's REFUSED (docs/dns.md says so).
        other = "127.53.0.3"
        with open(conf_dir + "/resolv.conf", "w") as f:
            f.write("nameserver %s\nnameserver %s\n"
                    "options timeout:2 attempts:1\n" % (DNS_ADDRESS, other))
        with Responder([("net-a", ns, DNS_ADDRESS)], records_for("net-a")), \
                Responder([("rest", ns, other)],
                          [("rest", "www.other.test", "10.9.9.9")],
                          "--zone", "other.test"):
            r = sh("ip", "netns", "exec", ns, "getent", "hosts",
                   "www.other.test")
            assert r.stdout.split() == ["10.9.9.9", "www.other.test"], r
            r = sh("ip", "netns", "exec", ns, "getent", "hosts",
                   "api.payments.example")
            assert r.stdout.split() == ["10.0.0.5", "api.payments.example"], \
                r.stdout
            # getent hosts asks AAAA first. (getent ahosts and curl pass
            # AI_ADDRCONFIG: with nothing but loopback addresses in the
            # namespace, they would not ask at all.)
            r = sh("ip", "netns", "exec", ns, "getent", "hosts",
                   "payments.nlb.internal")
            assert r.stdout.split()[0] == "fd00::5", r.stdout
            r = sh("ip", "netns", "exec", ns, "getent", "hosts",
                   "ep-gone.nlb.internal", check=False)
            assert r.returncode == 2 and not r.stdout, r
    finally:
        shutil.rmtree(conf_dir, ignore_errors=True)
        netns_del(ns)


UNBOUND_CONF = """server:
  interface: 127.0.0.1@5300
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "%(dir)s"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  do-not-query-localhost: no
  domain-insecure: "nlb.internal"
  domain-insecure: "payments.example"
%(zones)s"""

FORWARD_ZONES = """forward-zone:
  name: "nlb.internal"
  forward-addr: %(dns)s
forward-zone:
  name: "api.payments.example"
  forward-addr: %(dns)s
"""

STUB_ZONES = """stub-zone:
  name: "nlb.internal"
  stub-addr: %(dns)s
stub-zone:
  name: "api.payments.example"
  stub-addr: %(dns)s
"""


def test_unbound_chains_to_the_responder():
    ns = netns_add("u")
    if shutil.which("unbound") is None:
        netns_del(ns)
        raise Skip("unbound is not installed")
    work = tempfile.mkdtemp(prefix="dns-unbound-")
    try:
        with Responder([("net-a", ns, DNS_ADDRESS)],
                       records_for("net-a")):
            for zones in (FORWARD_ZONES, STUB_ZONES):
                conf = os.path.join(work, "unbound.conf")
                with open(conf, "w") as f:
                    f.write(UNBOUND_CONF % {
                        "dir": work, "zones": zones % {"dns": DNS_ADDRESS}})
                check = sh("unbound-checkconf", conf, check=False)
                assert check.returncode == 0, check.stdout + check.stderr
                proc = subprocess.Popen(
                    ["ip", "netns", "exec", ns, "unbound", "-d", "-c", conf],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    text=True)
                try:
                    def asked():
                        r = sh("ip", "netns", "exec", ns, "dig",
                               "@127.0.0.1", "-p", "5300", "+short",
                               "+tries=1", "+time=1", "payments.nlb.internal",
                               check=False)
                        # Until unbound listens, dig prints its timeout on
                        # stdout: not an answer.
                        return r.stdout.strip() if r.returncode == 0 else ""
                    got = wait_until(asked, timeout=10,
                                     what="unbound to answer")
                    assert got == "10.0.0.5", got
                    r = sh("ip", "netns", "exec", ns, "dig", "@127.0.0.1",
                           "-p", "5300", "+short", "api.payments.example")
                    assert r.stdout.strip() == "10.0.0.5", r.stdout
                    r = sh("ip", "netns", "exec", ns, "dig", "@127.0.0.1",
                           "-p", "5300", "ep-gone.nlb.internal")
                    assert "NXDOMAIN" in r.stdout, r.stdout
                finally:
                    proc.terminate()
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        netns_del(ns)


def host_responder(*extra):
    """A responder on the host's loopback at a free port, net-a's names."""
    port = free_port()
    records = [("host", name, addr)
               for _, name, addr in records_for("net-a", big=True)]
    return port, Responder([("host", "-", "127.0.0.1:%d" % port)], records,
                           *extra)


def test_tcp_pipelining_and_idle_timeout():
    port, r = host_responder("--idle-ms", "700")
    with r:
        # Three queries in one write, three answers in order.
        ids, data = [], b""
        for name in ("ep-a.nlb.internal", "nope.nlb.internal", "example.com"):
            qid, q = make_query(name)
            ids.append(qid)
            data += tcp_frame(q)
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            # Timed from before the queries: the idle timer restarts when
            # the last one is read, never earlier, however late this
            # thread reads the answers on a loaded machine.
            started = time.monotonic()
            s.sendall(data)
            rcodes = []
            for qid in ids:
                m = tcp_read_message(s)
                assert m is not None and parse_header(m)[0] == qid
                rcodes.append(parse_header(m)[2])
            assert rcodes == [0, 3, 5], rcodes
            # Idle: closed by the responder after 0.7 s without a query
            # (less a millisecond of the loop's clock).
            s.settimeout(5)
            assert s.recv(1) == b""
            idle = time.monotonic() - started
            assert 0.65 < idle < 4, idle


def tcp_connections(port, count, source=None, sources=None):
    """count TCP connections to the responder on 127.0.0.1:port, in
    order: from source, or 16 from each address of sources in turn."""
    conns = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(3)
        s.bind((source or sources[i // 16], 0))
        s.connect(("127.0.0.1", port))
        conns.append(s)
    return conns


def closed_by_responder(conns, wait=1.0):
    """The indexes of the connections the responder has closed, waiting
    up to `wait` seconds for them (the rest stay open)."""
    poller = select.poll()
    by_fd = {c.fileno(): i for i, c in enumerate(conns)}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    closed = set()
    deadline = time.monotonic() + wait
    while len(closed) < len(conns) and time.monotonic() < deadline:
        for fd, _ in poller.poll(max(0, deadline - time.monotonic()) * 1000):
            poller.unregister(fd)
            try:
                conns[by_fd[fd]].settimeout(1)
                if conns[by_fd[fd]].recv(1) == b"":
                    closed.add(by_fd[fd])
            except ConnectionResetError:
                closed.add(by_fd[fd])
    return sorted(closed)


def answered_over(sock):
    qid, q = make_query("ep-a.nlb.internal")
    sock.settimeout(3)
    sock.sendall(tcp_frame(q))
    m = tcp_read_message(sock)
    return m is not None and parse_header(m)[0] == qid


def close_all(conns):
    for c in conns:
        c.close()


def test_one_client_holds_its_share_of_tcp():
    # The default idle timeout (10 s): a short one could close the held
    # connections while a slow machine is still opening the others.
    port, r = host_responder()
    with r:
        # One client asks for every slot: 16 (tcp_per_client) stay, the
        # others are closed as soon as they are accepted.
        hog = tcp_connections(port, 130, source="127.0.0.1")
        try:
            # Another client of the same network gets in and is answered,
            # over and over.
            for _ in range(3):
                other = tcp_connections(port, 1, source="127.0.0.2")[0]
                assert answered_over(other)
                other.close()
            closed = closed_by_responder(hog)
            assert closed == list(range(16, 130)), closed
            assert answered_over(hog[0]) and answered_over(hog[15])
        finally:
            close_all(hog)
        m = wait_until(lambda: r.metrics().get(
            'nlb_dns_tcp_refused_total{network="host",reason="client"}')
            == 114 and r.metrics(), what="114 refused connections")
        assert m['nlb_dns_tcp_refused_total{network="host",'
                 'reason="budget"}'] == 0, m
        assert m['nlb_dns_records{network="host"}'] > 100, m


def test_full_network_gives_way_to_a_new_client():
    port, r = host_responder()
    with r:
        # 128 connections (the cap of a network) from 8 addresses, then 12
        # more: the 12 that waited longest for a query give way.
        sources = ["127.0.0.%d" % i for i in range(1, 10)]
        conns = tcp_connections(port, 140, sources=sources)
        try:
            assert answered_over(conns[12]) and answered_over(conns[139])
            closed = closed_by_responder(conns)
            assert closed == list(range(12)), closed
            # Answered just now: conns[12] is the last to give way now.
            more = tcp_connections(port, 1, source="127.0.0.20")
            assert answered_over(more[0])
            assert closed_by_responder(conns[12:]) == [1]
            assert answered_over(conns[12])
        finally:
            close_all(conns)
        m = wait_until(lambda: r.metrics().get(
            'nlb_dns_tcp_evicted_total{network="host",reason="network"}')
            == 13 and r.metrics(), what="13 connections given way")
        assert m['nlb_dns_tcp_refused_total{network="host",'
                 'reason="client"}'] == 0, m


def test_tcp_budget_is_shared_by_networks():
    # Two networks on the host, 20 TCP connections for both together.
    port_a, port_b = free_port(), free_port()
    records = [("net-a", "ep-a.nlb.internal", "10.0.0.5"),
               ("net-b", "ep-a.nlb.internal", "10.0.0.6")]
    with Responder([("net-a", "-", "127.0.0.1:%d" % port_a),
                    ("net-b", "-", "127.0.0.1:%d" % port_b)], records,
                   "--tcp-budget", "20") as r:
        a = tcp_connections(port_a, 30, sources=["127.0.0.1", "127.0.0.2"])
        b = []
        try:
            # net-a took the whole budget, the newest 20 of its 30.
            assert answered_over(a[29])
            assert closed_by_responder(a) == list(range(10))
            # net-b gets in: net-a, holding the most, gives way, until
            # both hold 10; then each network's newcomers push out its own.
            b = tcp_connections(port_b, 14, source="127.0.0.3")
            assert answered_over(b[13])
            a.append(tcp_connections(port_a, 1, source="127.0.0.4")[0])
            assert answered_over(a[-1])
            m = r.metrics()
            assert m['nlb_dns_tcp_connections{network="net-a"}'] == 10, m
            assert m['nlb_dns_tcp_connections{network="net-b"}'] == 10, m
            assert m["nlb_dns_tcp_budget"] == 20, m
            assert m['nlb_dns_tcp_evicted_total{network="net-a",'
                     'reason="budget"}'] == 10 + 10 + 1, m
            assert m['nlb_dns_tcp_evicted_total{network="net-b",'
                     'reason="budget"}'] == 4, m
            assert closed_by_responder(b) == [0, 1, 2, 3]
            assert closed_by_responder(a) == list(range(21))
        finally:
            close_all(a + b)


def test_client_that_never_reads_stalls_nobody():
    port, r = host_responder()
    with r:
        _, q = make_query("big.nlb.internal", qtype=28)
        hog = socket.create_connection(("127.0.0.1", port), timeout=3)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            # ~3 KB answers for 40-byte queries: the responder stops
            # reading once 128 KiB wait for this client.
            hog.setblocking(False)
            sent = 0
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                try:
                    sent += hog.send(tcp_frame(q) * 100)
                except BlockingIOError:
                    break
            assert sent > 0
            started = time.monotonic()
            expect_answered("127.0.0.1", port, "ep-a.nlb.internal")
            assert time.monotonic() - started < 2
        finally:
            hog.close()
        expect_answered("127.0.0.1", port, "ep-a.nlb.internal")


def test_log_lines_are_rate_limited():
    port, r = host_responder("--log-per-second", "5")
    with r:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1)
            for i in range(50):
                s.sendto(make_query("x%d.example.com" % i)[1],
                         ("127.0.0.1", port))
                s.recv(512)
        # The budget is per second of the responder's clock: the 50 may
        # straddle a tick (more often on a slow machine), and then two
        # windows log up to 5 lines and a held-back count each. Every
        # query is either logged or counted once the last tick passed.
        def accounted():
            log = r.log()
            lines = [line for line in log.splitlines()
                     if " dns host udp " in line]
            held = sum(int(n) for n in re.findall(r"(\d+) more lines", log))
            return len(lines) + held == 50 and held > 0 and lines
        lines = wait_until(accounted, timeout=4,
                           what="50 queries logged or held back")
        assert 5 <= len(lines) <= 15, lines
        assert 'REFUSED query="x0.example.com. A" why="not in a served zone"' \
            in lines[0], lines[0]
        assert r.queries("host", "REFUSED") == 50


if __name__ == "__main__":
    run([test_answers_in_two_namespaces_with_one_address,
         test_garbage_then_a_good_query,
         test_namespace_replaced_is_followed,
         test_resolv_conf_in_the_namespace,
         test_unbound_chains_to_the_responder,
         test_tcp_pipelining_and_idle_timeout,
         test_one_client_holds_its_share_of_tcp,
         test_full_network_gives_way_to_a_new_client,
         test_tcp_budget_is_shared_by_networks,
         test_client_that_never_reads_stalls_nobody,
         test_log_lines_are_rate_limited], timeout=60)
