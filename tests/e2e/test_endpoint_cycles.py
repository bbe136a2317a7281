#!/usr/bin/env python3
"""nlbd's memory stays flat while endpoints come and go: a consumer creates
an endpoint, the provider accepts it (nlbd opens its listeners), the
consumer deletes it (they close), over and over through the API (HTTP/1.1
keep-alive). After a warm-up, RSS may move by 5% at most.

The warm-up is 2,000 cycles because the registry keeps deleted endpoints
and their events (until they are pruned), so its SQLite file grows by about
1 KB a cycle, and SQLite's page cache (2,000 KiB, its default cache_size)
fills with it during the first 2,000 cycles; then it stays at its bound.
Heap in use (malloc_stats) moved by 336 bytes over the 6,000 cycles after
that.

make check runs 2,000 cycles after the warm-up; bench/endpoint_cycles.py
runs 10,000 and prints RSS as it goes."""

import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nlbtest  # noqa: E402
from apitest import NlbdApi, token  # noqa: E402


class Client:
    """HTTP/1.1 with a principal's token: one keep-alive connection, or a
    new connection per request (fresh) as nlbctl and curl make them."""

    def __init__(self, port, who, fresh=False):
        self.port, self.fresh = port, fresh
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.auth = "Authorization: Bearer %s\r\n" % token(who)

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise AssertionError("the server closed the connection")
        return chunk

    def call(self, method, path, body=None):
        if self.fresh:
            self.sock.close()
            self.sock = socket.create_connection(("127.0.0.1", self.port),
                                                 timeout=10)
        data = json.dumps(body).encode() if body is not None else b""
        self.sock.sendall(("%s %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: "
                           "%d\r\n\r\n" % (method, path, self.auth,
                                           len(data))).encode() + data)
        raw = b""
        while b"\r\n\r\n" not in raw:
            raw += self._recv()
        head, answer = raw.split(b"\r\n\r\n", 1)
        length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")][0])
        while len(answer) < length:
            answer += self._recv()
        return int(head.split()[1]), json.loads(answer)


class Cycler:
    """create -> accept -> delete of one endpoint at a time on a service
    with acceptance."""

    def __init__(self, api, fresh=False):
        self.api = api
        self.shop = Client(api.port, "shop", fresh)
        self.payments = Client(api.port, "payments", fresh)
        status, service = self.payments.call(
            "POST", "/v1/services", {"name": "cycled",
                                     "load_balancer": "payments-lb",
                                     "allowed_principals": ["shop"]})
        assert status == 201, service
        self.service = service["id"]
        self.done = 0

    def cycle(self):
        status, ep = self.shop.call("POST", "/v1/endpoints",
                                    {"service": "cycled", "network": "host"})
        assert status == 201, ep
        status, answer = self.payments.call(
            "POST", "/v1/services/%s/connections/accept" % self.service,
            {"endpoint_ids": [ep["id"]]})
        assert status == 200 and answer["unsuccessful"] == [], answer
        status, gone = self.shop.call("DELETE", "/v1/endpoints/" + ep["id"])
        assert status == 200 and gone["state"] == "deleted", gone
        self.done += 1

    def run(self, n):
        for _ in range(n):
            self.cycle()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure(warmup, cycles, step, fresh=False, report=print):
    """Runs warmup cycles, then cycles more, sampling nlbd's RSS every step
    cycles (fresh: a new connection per request). Returns (RSS after
    warm-up, samples [(cycles, KiB)], seconds)."""
    tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with NlbdApi(tmpdir=tmpdir) as api:
        pid = api.nlbd.proc.pid
        cycler = Cycler(api, fresh)
        cycler.run(warmup)
        base = rss_kib(pid)
        report("after %d cycles of warm-up: %d KiB" % (warmup, base))
        samples = []
        started = time.monotonic()
        while cycler.done < warmup + cycles:
            cycler.run(min(step, warmup + cycles - cycler.done))
            samples.append((cycler.done - warmup, rss_kib(pid)))
            report("%6d cycles: %d KiB (%+.1f%%), registry file %.1f MB" % (
                samples[-1][0], samples[-1][1],
                100.0 * (samples[-1][1] - base) / base,
                os.path.getsize(os.path.join(api.dir, "registry.db")) / 1e6))
        elapsed = time.monotonic() - started
        assert api.alive()
    return base, samples, elapsed


def test_memory_flat_over_endpoint_cycles():
    base, samples, elapsed = measure(2000, 2000, 500)
    low = min(kib for _, kib in samples)
    high = max(kib for _, kib in samples)
    print("%d cycles in %.1f s; RSS %d KiB after warm-up, then %d to %d KiB"
          % (samples[-1][0], elapsed, base, low, high))
    assert base * 0.95 <= low and high <= base * 1.05, (base, samples)


if __name__ == "__main__":
    nlbtest.run([test_memory_flat_over_endpoint_cycles], timeout=300)
