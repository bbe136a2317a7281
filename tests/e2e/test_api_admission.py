#!/usr/bin/env python3
"""Admission (docs/api.md, "Admission"): clients without a token cannot
lock the operator out, make nlbd hold their request bodies, or keep a
connection forever with a /healthz now and then; a principal with a token
holds no more than its role's limits, and the last connections are kept
for operators.

Each of these failed before the admission budgets existed: 1,100 idle
connections kept every other client out (the global cap of 1,024 counted
them); 300 connections pushing bodies on 100 streams each took nlbd past
1 GB; one /healthz a second kept a tokenless connection open forever.
Before per-principal limits, a consumer's 1,100 keep-alive connections
(each with one valid request) kept everyone else out in the same way."""

import json
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nlbtest  # noqa: E402
from apitest import (ApiServer, EventStream, NlbdApi, Skip,  # noqa: E402
                     h2_frames, need, parse_prometheus, token)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
REFUSED_STREAM = 7


def frame(ftype, flags, stream, payload=b""):
    return (struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) +
            struct.pack(">I", stream) + payload)


def literal(name, value):
    """An HPACK literal without indexing, new name, no Huffman."""
    name, value = name.encode(), value.encode()
    assert len(name) < 127 and len(value) < 127
    return bytes([0, len(name)]) + name + bytes([len(value)]) + value


def header_block(method, path, who=None, extra=()):
    block = literal(":method", method) + literal(":scheme", "http") + \
        literal(":path", path) + literal(":authority", "x")
    if who is not None:
        block += literal("authorization", "Bearer " + token(who))
    for name, value in extra:
        block += literal(name, value)
    return block


def enough_descriptors(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        if hard != resource.RLIM_INFINITY and hard < n:
            raise Skip("needs %d descriptors, the hard limit is %d" %
                       (n, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def connect_from(source, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def metrics(api):
    code, text, _ = api.call("GET", "/metrics", "ops")
    assert code == 200, (code, text)
    samples, _ = parse_prometheus(text)
    return samples


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def operator_request(api):
    """GET /v1/services as the operator, from 127.0.0.1 (the address of
    the flood, too): (status, seconds)."""
    started = time.monotonic()
    code, _, _ = api.call("GET", "/v1/services", "ops", timeout=5)
    return code, time.monotonic() - started


def hold_tokenless(port, sources, per_source):
    """per_source connections from each source address, held open: a third
    send nothing, a third ask /healthz over HTTP/1.1 (keep-alive), a third
    open HTTP/2 and ask /healthz. Returns the sockets."""
    held = []
    for source in sources:
        for i in range(per_source):
            s = connect_from(source, port)
            if i % 3 == 1:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            elif i % 3 == 2:
                s.sendall(PREFACE + frame(SETTINGS, 0, 0) +
                          frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                header_block("GET", "/healthz")))
            held.append(s)
    return held


def closed_by_server(socks):
    """How many of socks the server has closed (without blocking)."""
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    n += 1
                    break
        except BlockingIOError:
            pass
        except OSError:
            n += 1
    return n


def test_operator_gets_in_past_1100_tokenless_connections():
    """1,100 tokenless connections from the operator's own address, then
    1,100 more from 100 other addresses: the operator's requests are
    served within a second all along."""
    need("curl")
    enough_descriptors(4000)
    with NlbdApi() as api:
        held = []
        try:
            # The first api.call loads the OpenAPI document it checks
            # answers against: not part of what is measured.
            operator_request(api)
            took = []
            held += hold_tokenless(api.port, ["127.0.0.1"], 1100)
            for _ in range(5):
                took.append(operator_request(api))
            sources = ["127.0.1.%d" % i for i in range(1, 101)]
            held += hold_tokenless(api.port, sources, 11)
            for _ in range(5):
                took.append(operator_request(api))
            print("the operator's requests: %s" % ", ".join(
                "%d in %.0f ms" % (code, t * 1000) for code, t in took))
            assert all(code == 200 and t < 1.0 for code, t in took), took
            m = metrics(api)
            unauthenticated = sample(m, "nlb_api_connections",
                                     state="unauthenticated")
            probation = sample(m, "nlb_api_connections", state="probation")
            assert unauthenticated <= 256 and probation <= 128, m
            for reason in ("source_limit", "unauthenticated_limit"):
                assert sample(m, "nlb_api_connections_refused_total",
                              reason=reason) > 0, reason
            # What the flood holds: the budgets, nothing more.
            nlbtest.wait_until(
                lambda: len(held) - closed_by_server(held) <= 256 + 128,
                timeout=5, what="the flood held to its budgets")
            print("held by the flood: %d of %d; %s" % (
                len(held) - closed_by_server(held), len(held),
                {k[0] + str(dict(k[1])): v for k, v in m.items()
                 if k[0].startswith("nlb_api_conn")}))
        finally:
            for s in held:
                s.close()
        assert api.alive()


class BodyPusher:
    """HTTP/2 connections that open streams of tokenless POSTs and push
    their bodies (just under 64 KiB each, never ended) as fast as flow
    control lets them."""

    BODY = 65535

    def __init__(self, port, sources, per_source, streams):
        self.sel = selectors.DefaultSelector()
        self.sent = 0
        for source in sources:
            for _ in range(per_source):
                s = connect_from(source, port)
                s.setblocking(False)
                conn = {"sock": s, "in": b"", "out": PREFACE +
                        frame(SETTINGS, 0, 0), "window": 65535,
                        "streams": {}, "dead": False}
                for i in range(streams):
                    sid = 2 * i + 1
                    conn["out"] += frame(HEADERS, END_HEADERS, sid,
                                         header_block("POST", "/v1/services",
                                                      extra=[(
                                                          "content-length",
                                                          str(self.BODY))]))
                    conn["streams"][sid] = {"window": 65535,
                                            "left": self.BODY - 1}
                self.sel.register(s, selectors.EVENT_READ |
                                  selectors.EVENT_WRITE, conn)

    def _read(self, conn):
        try:
            chunk = conn["sock"].recv(262144)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            conn["dead"] = True
            return
        got, conn["in"] = h2_frames(conn["in"] + chunk)
        for ftype, flags, sid, payload in got:
            if ftype == SETTINGS and not flags & ACK:
                conn["out"] += frame(SETTINGS, ACK, 0)
            elif ftype == WINDOW_UPDATE:
                inc = int.from_bytes(payload[:4], "big") & 0x7fffffff
                if sid == 0:
                    conn["window"] += inc
                elif sid in conn["streams"]:
                    conn["streams"][sid]["window"] += inc
            elif ftype == RST_STREAM:
                conn["streams"].pop(sid, None)
            elif ftype == GOAWAY:
                conn["dead"] = True

    def _next_data(self, conn):
        for sid, st in conn["streams"].items():
            n = min(16384, conn["window"], st["window"], st["left"])
            if n > 0:
                conn["window"] -= n
                st["window"] -= n
                st["left"] -= n
                return frame(DATA, 0, sid, b"x" * n)
        return b""

    def _write(self, conn):
        if not conn["out"]:
            conn["out"] = self._next_data(conn)
        if not conn["out"]:
            return
        try:
            n = conn["sock"].send(conn["out"])
        except BlockingIOError:
            return
        except OSError:
            conn["dead"] = True
            return
        self.sent += n
        conn["out"] = conn["out"][n:]

    def run(self, seconds, on_tick):
        deadline = time.monotonic() + seconds
        next_tick = 0
        while time.monotonic() < deadline:
            busy = False
            for key, mask in self.sel.select(timeout=0.05):
                conn = key.data
                if conn["dead"]:
                    continue
                if mask & selectors.EVENT_READ:
                    self._read(conn)
                if mask & selectors.EVENT_WRITE and not conn["dead"]:
                    before = self.sent
                    self._write(conn)
                    busy = busy or self.sent > before
            if time.monotonic() >= next_tick:
                on_tick()
                next_tick = time.monotonic() + 0.2
            if not busy and all(
                    k.data["dead"] or not k.data["out"] and not any(
                        st["left"] and st["window"]
                        for st in k.data["streams"].values())
                    for k in self.sel.get_map().values()):
                break  # everything that may be sent is sent

    def close(self):
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


def peak_rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0


def test_tokenless_bodies_are_not_held():
    """300 tokenless HTTP/2 connections (30 sources of 10) each open 100
    streams of POST and push their bodies: nlbd's peak RSS stays under
    200 MB and it holds none of those bytes."""
    enough_descriptors(2000)
    with NlbdApi() as api:
        pid = api.nlbd.proc.pid
        before = peak_rss_mib(pid)
        pusher = BodyPusher(api.port, ["127.0.2.%d" % i for i in range(1, 31)],
                            10, 100)
        held = []
        try:
            pusher.run(8, lambda: held.append(sample(
                metrics(api), "nlb_api_request_bytes_held") or 0))
        finally:
            pusher.close()
        peak = peak_rss_mib(pid)
        print("sent %d MB; nlbd peak RSS %.1f MiB (%.1f MiB before); bytes "
              "held at most %d" % (pusher.sent / 1e6, peak, before,
                                   max(held)))
        assert pusher.sent > 30e6, pusher.sent
        assert peak < 200, peak
        assert max(held) == 0, held
        assert api.call("GET", "/healthz")[0] == 200


def test_healthz_trickle_does_not_keep_a_connection():
    """One /healthz every 0.4 s without a token keeps neither an HTTP/1.1
    nor an HTTP/2 connection past the unauthenticated lifetime (3 s here,
    60 s by default), though the idle timeout (1.5 s) never fires; the same
    trickle after one request with a token does."""
    with ApiServer(extra=["--idle-timeout-ms", "1500",
                          "--unauthenticated-lifetime-ms", "3000"]) as api:
        def trickle_h1(who_first):
            # Timed from before the connect: the lifetime cannot start
            # earlier, however late this thread runs on.
            started = time.monotonic()
            s = connect_from("127.0.0.1", api.port)
            s.settimeout(0.3)
            first = True
            while time.monotonic() - started < 4.5:
                auth = ""
                if first and who_first:
                    auth = "Authorization: Bearer %s\r\n" % token(who_first)
                first = False
                try:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" +
                              auth.encode() + b"\r\n")
                    data = s.recv(4096)
                except socket.timeout:
                    data = b"?"
                except OSError:
                    data = b""
                if not data:
                    s.close()
                    return time.monotonic() - started
                time.sleep(0.4)
            s.close()
            return None

        def trickle_h2(who_first):
            started = time.monotonic()  # as in trickle_h1
            s = connect_from("127.0.0.1", api.port)
            s.settimeout(0.3)
            s.sendall(PREFACE + frame(SETTINGS, 0, 0))
            sid = 1
            goaway = False
            while time.monotonic() - started < 4.5:
                who = who_first if sid == 1 else None
                try:
                    s.sendall(frame(HEADERS, END_HEADERS | END_STREAM, sid,
                                    header_block("GET", "/healthz", who)))
                    data = s.recv(65536)
                except socket.timeout:
                    data = b"?"
                except OSError:
                    data = b""
                goaway = goaway or any(f[0] == GOAWAY
                                       for f in h2_frames(data)[0])
                if not data:
                    s.close()
                    return time.monotonic() - started, goaway
                sid += 2
                time.sleep(0.4)
            s.close()
            return None, goaway

        lived = trickle_h1(None)
        assert lived is not None and 2.9 < lived < 5, lived
        lived, goaway = trickle_h2(None)
        assert lived is not None and 2.9 < lived < 5 and goaway, lived
        # One known token, and the same trickle keeps the connection.
        assert trickle_h1("shop") is None
        assert trickle_h2("shop")[0] is None
        samples = metrics(api)
        assert sample(samples, "nlb_api_unauthenticated_expired_total") == 2


def test_unauthenticated_http2_streams_and_http1_bodies():
    """Without a token an HTTP/2 connection gets 8 streams at once (the
    rest: RST_STREAM(REFUSED_STREAM)); with one, the 100 it is told. An
    HTTP/1.1 body without a token is read and dropped; with one, it is
    held (and counted) until the request is complete."""
    with ApiServer() as api:
        for who, refused in ((None, 12), ("payments", 0)):
            s = connect_from("127.0.0.1", api.port)
            out = PREFACE + frame(SETTINGS, 0, 0)
            for sid in range(1, 41, 2):
                out += frame(HEADERS, END_HEADERS, sid,
                             header_block("POST", "/v1/services", who))
            s.sendall(out)
            got, data = [], b""
            deadline = time.monotonic() + 2
            s.settimeout(0.2)
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                parsed, data = h2_frames(data + chunk)
                got += parsed
            resets = [sid for t, _, sid, p in got if t == RST_STREAM and
                      int.from_bytes(p, "big") == REFUSED_STREAM]
            assert len(resets) == refused, (who, resets)
            s.close()
        body = b"{" + b" " * 40000
        for who, held in ((None, False), ("payments", True)):
            s = connect_from("127.0.0.1", api.port)
            auth = ("Authorization: Bearer %s\r\n" % token(who)).encode() \
                if who else b""
            s.sendall(b"POST /v1/services HTTP/1.1\r\nHost: x\r\n" + auth +
                      b"Content-Length: 60000\r\n\r\n" + body)
            nlbtest.wait_until(
                lambda: (sample(metrics(api), "nlb_api_request_bytes_held") >=
                         40000) == held, timeout=3,
                what="bytes held %s" % held)
            s.close()
        nlbtest.wait_until(
            lambda: sample(metrics(api), "nlb_api_request_bytes_held") == 0,
            timeout=3, what="no bytes held once the clients left")


# ---- each principal's limits, and the operators' reserve ----------------


class Client:
    """One HTTP/1.1 connection: requests, their answers as framed, and
    whether the server closed it."""

    def __init__(self, port, timeout=5):
        self.sock = connect_from("127.0.0.1", port)
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, method, path, who=None, body=None, length=None):
        """A request; with length and no body, its head alone (the body
        is owed)."""
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: x"]
        if who is not None:
            lines.append("Authorization: Bearer " + token(who))
        data = b"" if body is None else json.dumps(body).encode()
        if body is not None or length is not None:
            lines.append("Content-Length: %d" % (
                length if length is not None else len(data)))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("closed by the server")
        self.buf += chunk

    def answer(self, head_only=False):
        """(status, {header: value}, body: parsed when JSON, b"" for a
        head alone); EOFError when the server closed first."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in
                   (line.split(":", 1) for line in lines[1:])}
        status = int(lines[0].split()[1])
        if head_only:
            return status, headers, b""
        n = int(headers["content-length"])
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        if headers.get("content-type") == "application/json":
            body = json.loads(body)
        return status, headers, body

    def call(self, method, path, who, body=None):
        self.send(method, path, who, body)
        return self.answer()

    def closed(self, timeout=5):
        """True when the server closes within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        self.sock.close()


def error_code(body):
    assert isinstance(body, dict) and list(body) == ["error"], body
    return body["error"]["code"]


def open_keep_alive(port, who, n, path="/v1/endpoints"):
    """n HTTP/1.1 connections of who, one after the other, each with one
    request answered. Returns (kept: the clients answered 200 whose
    connection stays, refused: [(status, headers, body, closed)] of the
    others, closed at accept: how many the server closed before
    answering)."""
    kept, refused, at_accept = [], [], 0
    for _ in range(n):
        try:
            c = Client(port)
            status, headers, body = c.call("GET", path, who)
        except (EOFError, OSError):
            at_accept += 1
            c.close()
            continue
        if status == 200:
            kept.append(c)
        else:
            refused.append((status, headers, body, c.closed()))
            c.close()
    return kept, refused, at_accept


def timed_calls(api, who, path, rounds=3):
    """[(status or None when refused, seconds)] of requests of who over
    HTTP/2 (curl, a connection each)."""
    took = []
    for _ in range(rounds):
        started = time.monotonic()
        try:
            code = api.call("GET", path, who, timeout=5)[0]
        except AssertionError:  # curl failed: refused at accept
            code = None
        took.append((code, time.monotonic() - started))
    return took


ROLE_PATHS = (("ops", "/v1/services"), ("payments", "/v1/services"),
              ("blog", "/v1/endpoints"))


def test_consumer_with_1100_connections_locks_nobody_out():
    """A consumer opens 1,100 keep-alive connections, each with one valid
    request: it keeps its 64 (api.limits.consumer.connections), the
    others get 429 TooManyConnections and are closed, and meanwhile the
    operator, a provider and another consumer are each served within a
    second. Before per-principal limits its first 1,024 were kept and
    everyone else was refused at accept."""
    need("curl")
    enough_descriptors(4000)
    with NlbdApi() as api:
        held = []
        try:
            timed_calls(api, "ops", "/healthz", 1)  # loads the OpenAPI check
            started = time.monotonic()
            held, refused, at_accept = open_keep_alive(api.port, "shop", 1100)
            print("1,100 connections of shop in %.1f s: %d kept, %d "
                  "answered %s, %d closed at accept" % (
                      time.monotonic() - started, len(held), len(refused),
                      sorted({r[0] for r in refused}), at_accept))
            took = {who: timed_calls(api, who, path)
                    for who, path in ROLE_PATHS}
            print("while shop holds them: %s" % "; ".join(
                "%s %s" % (who, ", ".join("%s in %.0f ms" % (code, t * 1000)
                                          for code, t in r))
                for who, r in took.items()))
            assert all(code == 200 and t < 1.0
                       for r in took.values() for code, t in r), took
            assert len(held) == 64 and at_accept == 0, (len(held), at_accept)
            assert len(refused) == 1036
            for status, headers, body, closed in refused:
                assert status == 429 and error_code(body) == \
                    "TooManyConnections", (status, body)
                assert headers.get("connection") == "close" and closed
            # The connections kept go on serving.
            for c in held[:3]:
                assert c.call("GET", "/v1/endpoints", "shop")[0] == 200
            m = metrics(api)
            assert sample(m, "nlb_api_connections_refused_total",
                          reason="principal_limit") == 1036, m
            nlbtest.wait_until(
                lambda: sample(metrics(api), "nlb_api_principal_connections",
                               role="consumer") == 64,
                what="the consumers' connections back to shop's 64")
        finally:
            for c in held:
                c.close()
        assert api.alive()


class H2:
    """One HTTP/2 connection, its streams' bodies read from DATA frames
    (the answers' JSON says the status this test needs)."""

    def __init__(self, port):
        self.sock = connect_from("127.0.0.1", port)
        self.sock.settimeout(0.2)
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self.data, self.bodies, self.ended, self.goaway = b"", {}, set(), \
            False

    def open(self, sid, method, path, who, end=True):
        self.sock.sendall(frame(HEADERS, END_HEADERS | (END_STREAM if end
                                                        else 0), sid,
                                header_block(method, path, who)))

    def end(self, sid, body=b"{}"):
        self.sock.sendall(frame(DATA, END_STREAM, sid, body))

    def wait(self, predicate, timeout=5):
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            got, self.data = h2_frames(self.data + chunk)
            for ftype, flags, sid, payload in got:
                if ftype == SETTINGS and not flags & ACK:
                    self.sock.sendall(frame(SETTINGS, ACK, 0))
                if ftype == DATA:
                    self.bodies[sid] = self.bodies.get(sid, b"") + payload
                if ftype in (DATA, HEADERS) and flags & END_STREAM:
                    self.ended.add(sid)
                if ftype == GOAWAY:
                    self.goaway = True
        return predicate()

    def answer(self, sid):
        """The JSON body of stream sid, once it ended."""
        assert self.wait(lambda: sid in self.ended), "no answer on %d" % sid
        return json.loads(self.bodies.get(sid, b"null"))

    def close(self):
        self.sock.close()


def consumer_gauge(api, name):
    return sample(metrics(api), name, role="consumer")


def test_each_principal_has_its_limits():
    """With api.limits.consumer = { connections = 4; requests = 6;
    event_streams = 2; }: a third event stream of shop is refused (429
    TooManyEventStreams) over HTTP/2 and HTTP/1.1 and a stream ended makes
    room; six requests under way on HTTP/1.1 and HTTP/2 connections
    together, and a seventh is 429 TooManyRequests until one is answered;
    a fifth connection is 429 TooManyConnections and closed, over both
    protocols; another principal's token on shop's connection is 421
    MisdirectedRequest and the connection goes on; blog, a consumer too,
    and the provider are not held back by shop."""
    need("curl")
    limits = "limits = { consumer = { connections = 4; requests = 6; " \
        "event_streams = 2; }; };"
    with NlbdApi(api_extra=limits) as api:
        gauge = lambda name, n: nlbtest.wait_until(  # noqa: E731
            lambda: consumer_gauge(api, name) == n, what="%s %d" % (name, n))
        # Event streams: two over HTTP/2 (curl), the third refused.
        streams = [EventStream(api, "shop"), EventStream(api, "shop")]
        c = None
        try:
            code, body, _ = api.call("GET", "/v1/events", "shop")
            assert code == 429 and error_code(body) == \
                "TooManyEventStreams", (code, body)
            assert "api.limits.consumer.event_streams" in \
                body["error"]["message"], body
            c = Client(api.port)
            code, headers, body = c.call("GET", "/v1/events", "shop")
            assert code == 429 and error_code(body) == \
                "TooManyEventStreams", (code, body)
            # The connection goes on; another principal's token on it does
            # not (421), and it stays shop's.
            assert c.call("GET", "/v1/endpoints", "shop")[0] == 200
            code, _, body = c.call("GET", "/v1/endpoints", "blog")
            assert code == 421 and error_code(body) == \
                "MisdirectedRequest", (code, body)
            assert c.call("GET", "/v1/endpoints", "shop")[0] == 200
            streams.pop().close()
            gauge("nlb_api_principal_event_streams", 1)
            c.send("GET", "/v1/events", "shop")
            assert c.answer(head_only=True)[0] == 200
        finally:
            for s in streams:
                s.close()
            if c is not None:
                c.close()
        gauge("nlb_api_principal_connections", 0)

        # Requests under way: three HTTP/1.1 heads whose body is owed, and
        # three HTTP/2 streams whose body is owed: six.
        h1 = [Client(api.port) for _ in range(3)]
        h2 = H2(api.port)
        try:
            for c in h1:
                c.send("POST", "/v1/endpoints", "shop", length=2)
            for sid in (1, 3, 5):
                h2.open(sid, "POST", "/v1/endpoints", "shop", end=False)
            gauge("nlb_api_principal_requests", 6)
            h2.open(7, "GET", "/v1/endpoints", "shop")
            body = h2.answer(7)
            assert error_code(body) == "TooManyRequests", body
            assert "api.limits.consumer.requests" in body["error"][
                "message"], body
            # Other principals are not held back.
            assert api.call("GET", "/v1/endpoints", "blog")[0] == 200
            assert api.call("GET", "/v1/services", "payments")[0] == 200
            # One answered: room for another.
            h1[0].sock.sendall(b"{}")
            assert h1[0].answer()[0] == 400
            h2.open(9, "GET", "/v1/endpoints", "shop")
            assert "endpoints" in h2.answer(9), h2.bodies
            # Four connections: a fifth is refused, over either protocol.
            extra = Client(api.port)
            code, headers, body = extra.call("GET", "/v1/endpoints", "shop")
            assert code == 429 and error_code(body) == \
                "TooManyConnections", (code, body)
            assert headers["connection"] == "close" and extra.closed()
            extra.close()
            extra = H2(api.port)
            extra.open(1, "GET", "/v1/endpoints", "shop")
            assert error_code(extra.answer(1)) == "TooManyConnections"
            assert extra.wait(lambda: extra.goaway)
            extra.close()
        finally:
            for c in h1:
                c.close()
            h2.close()
        gauge("nlb_api_principal_requests", 0)
        gauge("nlb_api_principal_connections", 0)
        m = metrics(api)
        for reason, n in (("requests_limit", 1), ("event_streams_limit", 2),
                          ("other_principal", 1)):
            assert sample(m, "nlb_api_requests_refused_total",
                          reason=reason) == n, (reason, m)
        assert sample(m, "nlb_api_connections_refused_total",
                      reason="principal_limit") == 2, m


def test_the_last_connections_are_kept_for_operators():
    """Consumers may hold 1,024 connections each here, yet shop keeps only
    960 of its 1,000: the last 64 (api.limits.operator_reserve) are kept
    for operators. With 200 tokenless connections more on top, the
    operator still gets in, within a second each time, and keeps its
    connections; a provider is refused 429 TooManyConnections, a tokenless
    /healthz is answered and the connection closed."""
    need("curl")
    enough_descriptors(4000)
    limits = "limits = { consumer = { connections = 1024; }; };"
    with NlbdApi(api_extra=limits) as api:
        held, ops = [], []
        try:
            timed_calls(api, "ops", "/healthz", 1)  # loads the OpenAPI check
            held, refused, at_accept = open_keep_alive(api.port, "shop", 1000)
            print("shop kept %d of 1,000 connections; the others: %s" % (
                len(held), sorted({(r[0], error_code(r[2])) for r in
                                   refused})))
            assert len(held) == 960 and at_accept == 0, (len(held),
                                                          at_accept)
            assert all(r[0] == 429 and error_code(r[2]) ==
                       "TooManyConnections" and r[3] for r in refused)
            assert "kept for operators" in refused[0][2]["error"]["message"]
            tokenless = hold_tokenless(api.port, ["127.0.0.1"], 200)
            held += tokenless
            took = []
            for _ in range(10):  # kept, over HTTP/1.1
                started = time.monotonic()
                ops.append(Client(api.port))
                code = ops[-1].call("GET", "/v1/services", "ops")[0]
                took.append((code, time.monotonic() - started))
            took += timed_calls(api, "ops", "/v1/services")  # HTTP/2
            print("the operator, past 960 connections of shop and 200 "
                  "tokenless ones: %s" % ", ".join(
                      "%s in %.0f ms" % (code, t * 1000) for code, t in took))
            assert all(code == 200 and t < 1.0 for code, t in took), took
            provider = Client(api.port)
            code, headers, body = provider.call("GET", "/v1/services",
                                                "payments")
            assert code == 429 and error_code(body) == \
                "TooManyConnections", (code, body)
            assert provider.closed()
            provider.close()
            anyone = Client(api.port)
            assert anyone.call("GET", "/healthz", None)[0] == 200
            assert anyone.closed()
            anyone.close()
            for c in ops:  # still served
                assert c.call("GET", "/v1/services", "ops")[0] == 200
            m = {k: v for k, v in metrics(api).items()
                 if k[0].startswith("nlb_api_")}
            # Its ten, and the one that asks for the metrics.
            assert sample(m, "nlb_api_principal_connections",
                          role="operator") == 11, m
            assert sample(m, "nlb_api_principal_connections",
                          role="consumer") == 960, m
            assert sample(m, "nlb_api_connections_refused_total",
                          reason="operator_reserve") >= 40 + 1 + 1, m
        finally:
            for c in held + ops:
                c.close()
        assert api.alive()


if __name__ == "__main__":
    nlbtest.run([
        test_operator_gets_in_past_1100_tokenless_connections,
        test_tokenless_bodies_are_not_held,
        test_healthz_trickle_does_not_keep_a_connection,
        test_unauthenticated_http2_streams_and_http1_bodies,
        test_consumer_with_1100_connections_locks_nobody_out,
        test_each_principal_has_its_limits,
        test_the_last_connections_are_kept_for_operators,
    ])
