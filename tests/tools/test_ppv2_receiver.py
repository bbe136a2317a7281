#!/usr/bin/env python3
"""Checks nlb's PROXY v2 encoder (through tests/tools/ppv2_send) against the
independent reader in tests/tools/ppv2_receiver.py, and the receiver's
strictness on hand-made bad headers. Run by `make check`; prints
"N passed, N failed" and exits non-zero on a failure (77 = skipped)."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_BUILDDIR = os.environ.get("top_builddir") or os.path.dirname(
    os.path.dirname(HERE))
TOP_SRCDIR = os.environ.get("top_srcdir") or os.path.dirname(
    os.path.dirname(HERE))
SEND = os.path.join(TOP_BUILDDIR, "tests", "tools", "ppv2_send")
RECEIVER = os.path.join(TOP_SRCDIR, "tests", "tools", "ppv2_receiver.py")
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
TIMEOUT = 10


class Receiver:
    def __init__(self, reply=None):
        self.dir = tempfile.TemporaryDirectory(prefix="ppv2-")
        self.log = os.path.join(self.dir.name, "log.jsonl")
        cmd = [sys.executable, RECEIVER, "--listen", "127.0.0.1:0",
               "--log", self.log, "--header-timeout", "0.5"]
        if reply is not None:
            cmd += ["--reply", reply]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "ready", f"receiver said {line}"
        self.port = int(line[1])

    def records(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log, encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    def last(self, count):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if len(self.records()) >= count:
                return self.records()[count - 1]
            time.sleep(0.02)
        raise AssertionError(f"no log record {count}")

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=TIMEOUT) == 0
        self.dir.cleanup()


def send(port, *args):
    out = subprocess.run([SEND, "--connect", f"127.0.0.1:{port}", *args],
                         capture_output=True, timeout=TIMEOUT)
    return out.returncode, out.stdout


def raw(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return out
            out += chunk


def test_ipv4_with_endpoint_id(r, n):
    rc, out = send(r.port, "--src", "172.31.7.113:51442", "--dst",
                   "172.31.10.31:80", "--endpoint-id", "ep-0123456789abcdef0",
                   "--data", "hello")
    assert rc == 0 and out == b"hi\nhello", (rc, out)
    rec = r.last(n)
    assert rec["error"] is None, rec
    assert rec["command"] == "PROXY" and rec["family"] == "tcp4"
    assert rec["src"] == "172.31.7.113:51442"
    assert rec["dst"] == "172.31.10.31:80"
    assert rec["tlvs"] == {"0xea": {"subtype": 1,
                                    "value": "ep-0123456789abcdef0"}}
    assert rec["header_len"] == 52


def test_ipv4_without_tlv(r, n):
    rc, out = send(r.port, "--src", "10.1.2.3:1", "--dst", "10.9.8.7:65535")
    assert rc == 0 and out == b"hi\n", (rc, out)
    rec = r.last(n)
    assert (rec["src"], rec["dst"], rec["tlvs"], rec["header_len"]) == (
        "10.1.2.3:1", "10.9.8.7:65535", {}, 28), rec


def test_ipv6_with_endpoint_id(r, n):
    rc, _ = send(r.port, "--src", "[2001:db8::1]:51442", "--dst",
                 "[fd00::a:2]:443", "--endpoint-id", "ep-1")
    assert rc == 0
    rec = r.last(n)
    assert rec["family"] == "tcp6", rec
    assert rec["src"] == "[2001:db8::1]:51442"
    assert rec["dst"] == "[fd00::a:2]:443"
    assert rec["tlvs"]["0xea"]["value"] == "ep-1"


def test_mapped_pair_arrives_as_ipv4(r, n):
    rc, _ = send(r.port, "--src", "[::ffff:192.0.2.1]:1000", "--dst",
                 "[::ffff:192.0.2.2]:2000")
    assert rc == 0
    rec = r.last(n)
    assert (rec["family"], rec["src"], rec["dst"]) == (
        "tcp4", "192.0.2.1:1000", "192.0.2.2:2000"), rec


def test_local(r, n):
    rc, out = send(r.port, "--local", "--data", "GET / HTTP/1.0\r\n\r\n")
    assert rc == 0 and out.endswith(b"GET / HTTP/1.0\r\n\r\n")
    rec = r.last(n)
    assert (rec["command"], rec["family"], rec["src"], rec["header_len"]) == (
        "LOCAL", "unspec", None, 16), rec


def test_encoder_refuses_bad_id(r, n):
    rc, _ = send(r.port, "--src", "10.0.0.1:1", "--dst", "10.0.0.2:2",
                 "--endpoint-id", "ep_bad")
    assert rc == 2, rc
    time.sleep(0.1)
    assert len(r.records()) == n - 1, "ppv2_send connected anyway"


def test_no_header(r, n):
    out = raw(r.port, b"plain bytes")
    assert out == b"hi\nplain bytes", out
    rec = r.last(n)
    assert rec["command"] is None and rec["error"] is None, rec


def test_bad_version_is_rejected(r, n):
    out = raw(r.port, SIG + b"\x31\x11\x00\x0c" + bytes(12))
    assert out == b"", out
    assert "version" in r.last(n)["error"]


def test_tlv_past_end_is_rejected(r, n):
    out = raw(r.port, SIG + b"\x21\x11\x00\x0f" + bytes(12) +
              b"\xea\x00\x09")
    assert out == b""
    assert "runs past" in r.last(n)["error"]


def test_bad_endpoint_id_is_rejected(r, n):
    tlv = b"\xea\x00\x04\x01a b"
    out = raw(r.port, SIG + b"\x21\x11" + (12 + len(tlv)).to_bytes(2, "big") +
              bytes(12) + tlv)
    assert out == b""
    assert "0xea" in r.last(n)["error"]


def test_aws_capture_with_crc(r, n):
    # The 100-byte header an AWS NLB sent through a VPC endpoint (0xEA
    # TLV subtype 1: the endpoint ID) with a CRC32C TLV and padding.
    header = bytes.fromhex(
        "0D0A0D0A000D0A515549540A21110054AC1F0771AC1F0A1FC8F20050"
        "030004E8D6892D") + b"\xea\x00\x17\x01vpce-08d2bf15fac5001c9" + \
        b"\x04\x00\x24" + bytes(36)
    assert len(header) == 100
    raw(r.port, header)
    rec = r.last(n)
    assert rec["error"] is None, rec
    assert rec["tlvs"]["0x03"]["ok"] is True
    assert rec["tlvs"]["0xea"]["value"] == "vpce-08d2bf15fac5001c9"
    broken = bytearray(header)
    broken[25] ^= 1  # a port bit: the CRC no longer matches
    raw(r.port, bytes(broken))
    assert r.last(n + 1)["error"] == "CRC32C mismatch"


TESTS = [
    test_ipv4_with_endpoint_id,
    test_ipv4_without_tlv,
    test_ipv6_with_endpoint_id,
    test_mapped_pair_arrives_as_ipv4,
    test_local,
    test_encoder_refuses_bad_id,
    test_no_header,
    test_bad_version_is_rejected,
    test_tlv_past_end_is_rejected,
    test_bad_endpoint_id_is_rejected,
    test_aws_capture_with_crc,
]


def main():
    if not os.access(SEND, os.X_OK):
        print(f"SKIP: {SEND} not built (make check builds it)")
        return 77
    signal.alarm(60)  # hard limit for the whole file
    receiver = Receiver(reply="hi\n")
    passed = failed = 0
    try:
        for test in TESTS:
            # Each test is given the number of the log record it causes.
            time.sleep(0.05)
            try:
                test(receiver, len(receiver.records()) + 1)
                passed += 1
                print(f"PASS {test.__name__}")
            except Exception as exc:  # report and go on
                failed += 1
                print(f"FAIL {test.__name__}: {exc!r}")
    finally:
        receiver.close()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
