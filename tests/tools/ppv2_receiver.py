#!/usr/bin/env python3
"""A TCP target for end-to-end tests that records the PROXY v2 header of
every connection.

    ppv2_receiver.py --listen 127.0.0.1:PORT --log FILE [--reply TEXT]

PORT 0 lets the kernel choose; once listening the program prints
"ready PORT" on stdout. For each connection it reads a PROXY protocol v2
header if the first bytes are the v2 signature, checks it strictly
(signature, version 2, command LOCAL or PROXY, address family and protocol,
length, every TLV, the 0xEA endpoint TLV, a CRC32C TLV if present), and
appends one JSON line to FILE:

    {"time": 1700000000.123, "peer": "127.0.0.1:40000", "command": "PROXY",
     "family": "tcp4", "src": "172.31.7.113:51442", "dst": "172.31.10.31:80",
     "tlvs": {"0xea": {"subtype": 1, "value": "ep-0123456789abcdef0"}},
     "header_len": 52, "error": null}

"command" is null when the connection carried no header (its first bytes
were not the signature, or nothing came within --header-timeout); "src" and
"dst" are null for LOCAL headers and UNSPEC families (addresses are not to
be used then, although a LOCAL header may carry them: AWS health checks
do). IPv6 addresses are written "[addr]:port". Other TLVs appear as
{"0xNN": {"hex": "..."}}; a CRC32C TLV as {"0x03": {"hex": ..., "ok": true}}.

A bad header is logged with "error" set and the connection is closed, as a
strict receiver would do. Otherwise the receiver sends --reply (if given,
verbatim) and then echoes everything the client sends; the client's EOF is
answered with EOF. Threaded; SIGTERM or SIGINT stops it. Python 3 stdlib
only.
"""

import argparse
import json
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "

# fam byte -> (name, address length, socket family); protocol 0x0 = UNSPEC,
# 0x1 = STREAM, 0x2 = DGRAM. AF_UNIX addresses are 108 bytes each.
FAMILIES = {
    0x00: ("unspec", 0, None),
    0x11: ("tcp4", 4, socket.AF_INET),
    0x12: ("udp4", 4, socket.AF_INET),
    0x21: ("tcp6", 16, socket.AF_INET6),
    0x22: ("udp6", 16, socket.AF_INET6),
    0x31: ("unix-stream", 108, None),
    0x32: ("unix-dgram", 108, None),
}

PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_AWS = 0xEA
PP2_SUBTYPE_AWS_VPCE_ID = 0x01
ENDPOINT_ID_CHARS = set(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")


class HeaderError(Exception):
    pass


def _crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def fmt_addr(family, raw, port):
    ip = socket.inet_ntop(family, raw)
    return f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"


def parse_header(header):
    """Parses a complete v2 header (16 fixed bytes + len). Returns a dict of
    the fields logged, or raises HeaderError."""
    if header[:12] != SIGNATURE:
        raise HeaderError("bad signature")
    ver_cmd, fam, length = header[12], header[13], struct.unpack(
        "!H", header[14:16])[0]
    if ver_cmd >> 4 != 2:
        raise HeaderError(f"version {ver_cmd >> 4}, want 2")
    cmd = ver_cmd & 0x0F
    if cmd not in (0, 1):
        raise HeaderError(f"unknown command 0x{cmd:x}")
    if fam not in FAMILIES:
        raise HeaderError(f"unknown family/protocol 0x{fam:02x}")
    if len(header) != 16 + length:
        raise HeaderError("short header")
    fam_name, alen, sock_family = FAMILIES[fam]
    body = header[16:]
    result = {
        "command": "LOCAL" if cmd == 0 else "PROXY",
        "family": fam_name,
        "src": None,
        "dst": None,
        "tlvs": {},
        "header_len": len(header),
    }
    addr_len = 2 * alen + (4 if sock_family is not None else 0)
    if len(body) < addr_len:
        raise HeaderError(
            f"len {length} too short for a {fam_name} address block")
    if cmd == 1 and sock_family is not None:
        sport, dport = struct.unpack("!HH", body[2 * alen:2 * alen + 4])
        result["src"] = fmt_addr(sock_family, body[:alen], sport)
        result["dst"] = fmt_addr(sock_family, body[alen:2 * alen], dport)

    off = addr_len
    while off < len(body):
        if off + 3 > len(body):
            raise HeaderError(f"truncated TLV header at offset {16 + off}")
        ttype = body[off]
        tlen = struct.unpack("!H", body[off + 1:off + 3])[0]
        value = body[off + 3:off + 3 + tlen]
        if len(value) != tlen:
            raise HeaderError(
                f"TLV 0x{ttype:02x} length {tlen} runs past the header")
        key = f"0x{ttype:02x}"
        if key in result["tlvs"] and ttype != PP2_TYPE_NOOP:
            raise HeaderError(f"TLV {key} repeated")
        if ttype == PP2_TYPE_AWS:
            if tlen < 1:
                raise HeaderError("TLV 0xea without subtype")
            subtype, text = value[0], value[1:]
            entry = {"subtype": subtype}
            if subtype == PP2_SUBTYPE_AWS_VPCE_ID:
                try:
                    ident = text.decode("ascii")
                except UnicodeDecodeError:
                    raise HeaderError("TLV 0xea endpoint ID is not ASCII")
                if not ident or not set(ident) <= ENDPOINT_ID_CHARS:
                    raise HeaderError(
                        f"TLV 0xea endpoint ID {ident!r} is not [A-Za-z0-9-]+")
                entry["value"] = ident
            else:
                entry["hex"] = text.hex()
            result["tlvs"][key] = entry
        elif ttype == PP2_TYPE_CRC32C:
            if tlen != 4:
                raise HeaderError(f"CRC32C TLV length {tlen}, want 4")
            zeroed = bytearray(header)
            zeroed[16 + off + 3:16 + off + 7] = b"\0\0\0\0"
            ok = crc32c(bytes(zeroed)) == struct.unpack("!I", value)[0]
            result["tlvs"][key] = {"hex": value.hex(), "ok": ok}
            if not ok:
                raise HeaderError("CRC32C mismatch")
        elif ttype == PP2_TYPE_NOOP:
            result["tlvs"].setdefault(key, {"hex": ""})
        else:
            result["tlvs"][key] = {"hex": value.hex()}
        off += 3 + tlen
    return result


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise HeaderError(f"EOF after {len(data)} of {n} header bytes")
        data += chunk
    return data


def read_header(sock, timeout):
    """Reads a PROXY v2 header off sock if one comes. Returns the parsed
    dict, or None if the stream does not start with the signature (its
    bytes stay unread). Raises HeaderError on a bad header."""
    deadline = time.monotonic() + timeout
    peeked = b""
    # Peek until the signature is complete or ruled out: a client may send
    # the header in pieces.
    while len(peeked) < len(SIGNATURE):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            peeked = sock.recv(len(SIGNATURE), socket.MSG_PEEK)
        except socket.timeout:
            break
        if not peeked or not SIGNATURE.startswith(peeked):
            break
        if len(peeked) < len(SIGNATURE):
            time.sleep(0.001)
    if peeked.startswith(V1_PREFIX):
        raise HeaderError("PROXY v1 header, want v2")
    if peeked != SIGNATURE:
        if peeked and SIGNATURE.startswith(peeked):
            raise HeaderError("incomplete signature")
        return None
    sock.settimeout(max(deadline - time.monotonic(), 0.5))
    fixed = recv_exact(sock, 16)
    length = struct.unpack("!H", fixed[14:16])[0]
    return parse_header(fixed + recv_exact(sock, length))


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        server = self.server
        peer = fmt_addr(sock.family,
                        socket.inet_pton(sock.family, self.client_address[0]),
                        self.client_address[1])
        record = {"time": round(time.time(), 3), "peer": peer,
                  "command": None, "family": None, "src": None, "dst": None,
                  "tlvs": {}, "header_len": 0, "error": None}
        try:
            parsed = read_header(sock, server.header_timeout)
            if parsed:
                record.update(parsed)
        except HeaderError as exc:
            record["error"] = str(exc)
        except OSError as exc:
            record["error"] = f"socket error: {exc}"
        server.write_log(record)
        if record["error"]:
            return
        sock.settimeout(None)
        try:
            if server.reply:
                sock.sendall(server.reply)
            while True:
                data = sock.recv(65536)
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    break
                sock.sendall(data)
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, addr, family, log_path, reply, header_timeout):
        self.address_family = family
        self.log_lock = threading.Lock()
        self.log_file = open(log_path, "a", encoding="utf-8")
        self.reply = reply
        self.header_timeout = header_timeout
        super().__init__(addr, Handler)

    def write_log(self, record):
        line = json.dumps(record, sort_keys=True) + "\n"
        with self.log_lock:
            self.log_file.write(line)
            self.log_file.flush()


def parse_listen(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"want HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1], int(port), socket.AF_INET6
    return host, int(port), socket.AF_INET


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True, type=parse_listen,
                    help="HOST:PORT or [V6]:PORT; port 0 = kernel's choice")
    ap.add_argument("--log", required=True, help="JSON lines appended here")
    ap.add_argument("--reply", help="text sent to each client first")
    ap.add_argument("--header-timeout", type=float, default=2.0,
                    help="seconds to wait for a header before treating the "
                    "connection as headerless (default 2)")
    args = ap.parse_args()

    host, port, family = args.listen
    reply = args.reply.encode() if args.reply is not None else None
    server = Server((host, port), family, args.log, reply,
                    args.header_timeout)

    def on_signal(signum, frame):
        # shutdown() waits for serve_forever() to return: not from its thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    server.log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
