#!/usr/bin/env python3
"""Answers a client does not read (docs/api.md, "Answers a client does not
read"): nlbd holds a bounded amount of them, per connection and in all,
serves its static answers without a copy per request, and gives the
memory back once the clients are gone.

Before these bounds, 300 HTTP/2 connections that closed their receive
window (SETTINGS_INITIAL_WINDOW_SIZE=0, no WINDOW_UPDATE) and asked for
the 87 KB OpenAPI document on 100 streams each took nlbd to 1.8 GiB in 10
s with a consumer's token (each stream held its own copy of the document;
the operator's requests timed out), and 2.4 GiB stayed after they left.
Every test here fails on that code."""

import os
import selectors
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nlbtest  # noqa: E402
from apitest import (ApiServer, NlbdApi, h2_frames, need,  # noqa: E402
                     token)
from test_api_admission import (END_HEADERS, END_STREAM, GOAWAY,  # noqa: E402
                                HEADERS, PREFACE, RST_STREAM, SETTINGS,
                                connect_from, enough_descriptors,
                                header_block, frame, metrics, sample)

ACK = 0x1
SETTINGS_INITIAL_WINDOW_SIZE = 4


def sanitized():
    """True in a build with AddressSanitizer (configure
    --enable-sanitizers): its quarantine keeps freed memory and it pads
    every allocation, so RSS says nothing of what nlbd holds there (the
    other checks stand)."""
    try:
        with open(os.path.join(nlbtest.TOP_BUILDDIR, "Makefile")) as f:
            return any(line.startswith("SAN_CFLAGS = -fsanitize")
                       for line in f)
    except OSError:
        return False


SANITIZED = sanitized()
# The operator's answers within this, while a flood is held (ASan makes
# nlbd about three times slower).
OPERATOR_SECONDS = 3.0 if SANITIZED else 1.0


class ZeroWindow:
    """HTTP/2 connections that each ask for path on `streams` streams and
    never let an answer's body through: SETTINGS_INITIAL_WINDOW_SIZE=0 and
    no WINDOW_UPDATE, so every DATA frame waits for a window that never
    opens. They read what the server sends (answer heads, resets, GOAWAY),
    so that the server's other frames never back up in the socket."""

    def __init__(self, port, sources, per_source, streams, path, who=None):
        self.sel = selectors.DefaultSelector()
        self.socks = []
        self.conns = []
        settings = struct.pack(">HI", SETTINGS_INITIAL_WINDOW_SIZE, 0)
        requests = b"".join(
            frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1,
                  header_block("GET", path, who)) for i in range(streams))
        for source in sources:
            for _ in range(per_source):
                s = connect_from(source, port)
                s.sendall(PREFACE + frame(SETTINGS, 0, 0, settings) +
                          requests)
                s.setblocking(False)
                self.socks.append(s)
                conn = {"in": b"", "heads": 0, "resets": 0, "data": 0,
                        "closed": False, "goaway": False}
                self.conns.append(conn)
                self.sel.register(s, selectors.EVENT_READ, conn)

    def _read(self, key):
        conn = key.data
        try:
            chunk = key.fileobj.recv(262144)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            conn["closed"] = True
            self.sel.unregister(key.fileobj)
            return
        got, conn["in"] = h2_frames(conn["in"] + chunk)
        for ftype, flags, _, payload in got:
            if ftype == SETTINGS and not flags & ACK:
                key.fileobj.send(frame(SETTINGS, ACK, 0))
            elif ftype == HEADERS:
                conn["heads"] += 1
            elif ftype == RST_STREAM:
                conn["resets"] += 1
            elif ftype == GOAWAY:
                conn["goaway"] = True
            elif ftype == 0:
                conn["data"] += len(payload)

    def pump(self, seconds):
        """Reads what comes for that long."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for key, _ in self.sel.select(timeout=0.05):
                self._read(key)

    def totals(self):
        conns = self.conns
        return {"open": sum(not c["closed"] for c in conns),
                "heads": sum(c["heads"] for c in conns),
                "resets": sum(c["resets"] for c in conns),
                "data": sum(c["data"] for c in conns)}

    def close(self):
        for s in self.socks:
            s.close()
        self.sel.close()


def send_queues(port):
    """The kernel's send queue (bytes written and not yet acknowledged) of
    each established connection on the local port, from /proc/net/tcp."""
    queues = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state, queue = fields[1], fields[3], fields[4]
            if int(local.split(":")[1], 16) == port and state == "01":
                queues.append(int(queue.split(":")[0], 16))
    return queues


def rss_mib(api):
    return api.nlbd.rss_kib() / 1024


def operator_latency(api, path="/v1/services"):
    started = time.monotonic()
    code, _, _ = api.call("GET", path, "ops", timeout=5)
    return code, time.monotonic() - started


def output_held(api):
    return sample(metrics(api), "nlb_api_output_buffered_bytes")


def zero_window_flood(who):
    """300 zero-window connections (10 sources of 30) asking for the
    OpenAPI document on 100 streams each, as who (None: no token): nlbd's
    RSS grows by less than 100 MiB (45 with a token, 14 without; 190
    without a token before, and with one past 1.8 GiB), the operator is
    answered within a second while they are held, and the memory goes back
    once they leave."""
    need("curl")
    enough_descriptors(2000)
    # A consumer may hold 64 connections and 128 requests by default
    # (docs/api.md, "Admission"): here it may hold the whole flood, so that
    # the output budget is what holds it.
    limits = "limits = { consumer = { connections = 1024; " \
        "requests = 1000000; }; };"
    with NlbdApi(api_extra=limits) as api:
        # Warm up what every test run loads anyway: curl's first call, the
        # OpenAPI conformance document, one answer of each kind.
        assert operator_latency(api)[0] == 200
        assert api.call("GET", "/v1/openapi.yaml")[0] == 200
        before = rss_mib(api)
        flood = ZeroWindow(api.port, ["127.0.3.%d" % i for i in range(1, 11)],
                           30, 100, "/v1/openapi.yaml", who)
        peak = before
        took = []
        try:
            for _ in range(6):
                flood.pump(0.5)
                peak = max(peak, rss_mib(api))
                took.append(operator_latency(api))
                peak = max(peak, rss_mib(api))
                if peak - before > 1024:
                    break  # far past the bound: no need to go on
            held = flood.totals()
            m = metrics(api)
            print("%s: %s; nlbd RSS %.1f MiB before, %.1f MiB at most "
                  "(+%.1f); operator: %s; output held %s, closed %s" % (
                      who or "no token", held, before, peak, peak - before,
                      ", ".join("%d in %.0f ms" % (c, t * 1000)
                                for c, t in took),
                      sample(m, "nlb_api_output_buffered_bytes"),
                      {dict(k[1]).get("reason"): v for k, v in m.items()
                       if k[0] == "nlb_api_output_closed_total"}))
            # The flood took hold: answers were given, bodies not read.
            assert held["open"] >= 250 and held["heads"] >= 500, held
            assert held["data"] == 0, held
            assert all(c == 200 and t < OPERATOR_SECONDS
                       for c, t in took), took
            assert SANITIZED or peak - before < 100, (before, peak)
        finally:
            flood.close()
        back_down(api, before, peak)


def back_down(api, before, peak):
    """Once the clients have left: nothing held, and nlbd's RSS back within
    10 MiB of where it was before them."""
    nlbtest.wait_until(lambda: output_held(api) == 0, timeout=10,
                       what="no answer bytes held")
    if SANITIZED:
        return
    # The memory goes back at most every 10 s: one may have just gone.
    nlbtest.wait_until(lambda: rss_mib(api) - before < 10, timeout=20,
                       what="RSS back within 10 MiB of where it was")
    after = rss_mib(api)
    print("RSS %.1f MiB after the clients left (%.1f MiB given back)" % (
        after, peak - after))


class Pipeline:
    """HTTP/1.1 connections that pipeline the same request as long as the
    server reads, and never read an answer."""

    def __init__(self, port, sources, per_source, request):
        self.socks = []
        self.sent = 0
        for source in sources:
            for _ in range(per_source):
                s = connect_from(source, port)
                s.setblocking(False)
                self.socks.append(s)
        self.sent_on = [0] * len(self.socks)
        self.request = request

    def push(self, seconds, most=1 << 20):
        """Sends requests for that long (at most `most` bytes on each
        connection: far more answers than any budget), to whichever socket
        takes them."""
        burst = self.request * 256
        sent = self.sent_on
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            busy = False
            for i, s in enumerate(self.socks):
                if sent[i] >= most:
                    continue
                try:
                    n = s.send(burst)
                except (BlockingIOError, OSError):
                    continue
                sent[i] += n
                self.sent += n
                busy = True
            if not busy:
                time.sleep(0.05)

    def close(self):
        for s in self.socks:
            s.close()


def test_http1_pipelining_never_read():
    """50 HTTP/1.1 connections pipeline the operator's /metrics (12 KB,
    made for each request) and never read an answer: nlbd stops reading
    each one at 256 KiB of answers waiting, so the answer bytes it holds
    stay within 50 times 256 KiB plus one answer; its RSS grows by less
    than 40 MiB (over 150 MiB before: an answer the kernel took at once
    stayed in memory until the loop came round, and one read of pipelined
    requests made dozens of them), and the kernel's send queue of each
    stays within 640 KiB (4 MiB before). Then 50 more ask for the OpenAPI
    document: its bytes are written from where they are, never copied."""
    need("curl")
    enough_descriptors(2000)
    per_connection = 256 * 1024 + 16 * 1024
    with NlbdApi() as api:
        assert operator_latency(api, "/metrics")[0] == 200
        before = rss_mib(api)
        peak = before
        held = []
        request = ("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: "
                   "Bearer %s\r\n\r\n" % token("ops")).encode()
        flood = Pipeline(api.port, ["127.0.5.%d" % i for i in range(1, 6)],
                         10, request)
        static = None
        try:
            kernel = 0
            for _ in range(5):
                flood.push(0.4)
                peak = max(peak, rss_mib(api))
                held.append(output_held(api))
                kernel = max([kernel] + send_queues(api.port))
            static = Pipeline(api.port, ["127.0.6.%d" % i for i in range(1, 6)],
                              10, b"GET /v1/openapi.yaml HTTP/1.1\r\nHost: x"
                              b"\r\n\r\n")
            for _ in range(5):
                static.push(0.4)
                flood.push(0.1)
                peak = max(peak, rss_mib(api))
                held.append(output_held(api))
                kernel = max([kernel] + send_queues(api.port))
            took = operator_latency(api)
            print("sent %.1f MB of requests; answer bytes held at most %s "
                  "in all; a kernel send queue at most %d; nlbd RSS %.1f "
                  "MiB before, %.1f at most (+%.1f); operator %d in %.0f "
                  "ms" % ((flood.sent + static.sent) / 1e6,
                          max(h or 0 for h in held) if None not in held
                          else "(no metric)", kernel, before, peak,
                          peak - before, took[0], took[1] * 1000))
            assert flood.sent > 1e6 and static.sent > 1e6
            # The kernel's part: SO_SNDBUF 256 KiB, which Linux doubles,
            # and one segment past it (4 MiB each before, autotuned).
            assert 0 < kernel <= 640 * 1024, kernel
            assert SANITIZED or peak - before < 40, (before, peak)
            assert took[0] == 200 and took[1] < OPERATOR_SECONDS, took
            # 50 connections at their budget; the other 50 hold only the
            # heads of static answers.
            assert None not in held
            assert max(held) <= 50 * per_connection + 50 * 4096, held
        finally:
            flood.close()
            if static is not None:
                static.close()
        back_down(api, before, peak)


def test_budget_and_timeout_close_connections():
    """With a 1 MB output budget and a 2 s request timeout, 20 zero-window
    HTTP/2 connections ask for the operator's /metrics (made for each
    request) on 100 streams each: past the budget the connections holding
    the most are closed, never buffered further, and the API holds at most
    its budget; those left are closed once their answers have not moved
    for 2 s. The operator is answered throughout."""
    need("curl")
    budget = 1000000
    with ApiServer(extra=["--output-budget", str(budget),
                          "--request-timeout-ms", "2000"]) as api:
        assert api.call("GET", "/metrics", "ops")[0] == 200
        flood = ZeroWindow(api.port, ["127.0.0.1"], 20, 100, "/metrics",
                           "ops")
        held = []
        try:
            def all_closed():
                flood.pump(0.2)
                held.append(output_held(api))
                return flood.totals()["open"] == 0
            nlbtest.wait_until(all_closed, timeout=10,
                               what="every zero-window connection closed")
            m = metrics(api)
            closed = {r: sample(m, "nlb_api_output_closed_total", reason=r)
                      for r in ("budget", "timeout")}
            print("held at most %d of %d; closed %s; %s" % (
                max(held), budget, closed, flood.totals()))
            assert max(held) <= budget, held
            assert closed["budget"] >= 10 and closed["timeout"] >= 1, closed
            assert flood.totals()["data"] == 0
            assert output_held(api) == 0
        finally:
            flood.close()


def test_zero_window_no_token():
    zero_window_flood(None)


def test_zero_window_consumer_token():
    zero_window_flood("shop")


if __name__ == "__main__":
    nlbtest.run([
        test_http1_pipelining_never_read,
        test_budget_and_timeout_close_connections,
        test_zero_window_no_token,
        test_zero_window_consumer_token,
    ], timeout=180)
