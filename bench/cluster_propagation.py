#!/usr/bin/env python3
"""How fast a change made on one node is applied on the others: three nlbd
nodes on one PostgreSQL (tests/e2e/clustertest.py), and CHANGES endpoints
(service without acceptance: each create is one change that opens
listeners), made round robin on nodes 1, 2, 3. For each, the time from the
API's answer to the endpoint's listener being open in each OTHER node's
namespace (a connect that succeeds, polled every millisecond from a thread
that stays inside that namespace). Prints p50, p90, p99 and max.

    sudo python3 bench/cluster_propagation.py [CHANGES]   (default 100)

Run from the source tree after building (_build/nlbd, or top_builddir in
the environment); needs root and PostgreSQL's server binaries."""

import ctypes
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
os.environ.setdefault("top_builddir", os.path.join(HERE, "..", "_build"))

import clustertest  # noqa: E402
import netnstest  # noqa: E402


class Prober(threading.Thread):
    """A thread inside node i's namespace that reports when each address
    asked for accepts a connection."""

    def __init__(self, cluster, i):
        super().__init__(daemon=True)
        self.cluster, self.i = cluster, i
        self.wanted = {}  # address -> answer time (monotonic)
        self.seen = {}    # address -> first successful connect
        self.lock = threading.Lock()
        self.stop = False

    def ask(self, address, since):
        with self.lock:
            self.wanted[address] = since

    def run(self):
        fd = os.open("/run/netns/" + self.cluster.netns(self.i), os.O_RDONLY)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, netnstest.CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        os.close(fd)
        while not self.stop:
            with self.lock:
                pending = [a for a in self.wanted if a not in self.seen]
            for address in pending:
                s = socket.socket()
                s.settimeout(0.2)
                try:
                    s.connect((address, self.cluster.lb_port))
                    with self.lock:
                        self.seen[address] = time.monotonic()
                except OSError:
                    pass
                finally:
                    s.close()
            time.sleep(0.001)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def main():
    changes = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    with clustertest.Cluster(3) as c:
        c.api(1, "POST", "/v1/services", "payments", {
            "name": "bench", "load_balancer": "lb",
            "acceptance_required": False, "allowed_principals": ["shop"]},
            status=201)
        probers = {i: Prober(c, i) for i in (1, 2, 3)}
        for p in probers.values():
            p.start()
        delays = []
        for k in range(changes):
            node = k % 3 + 1
            ep = c.api(node, "POST", "/v1/endpoints", "shop",
                       {"service": "bench", "network": "shop-vpc"},
                       status=201)
            answered = time.monotonic()
            others = [i for i in (1, 2, 3) if i != node]
            for i in others:
                probers[i].ask(ep["address"], answered)
            deadline = answered + 5
            while time.monotonic() < deadline and not all(
                    ep["address"] in probers[i].seen for i in others):
                time.sleep(0.001)
            for i in others:
                seen = probers[i].seen.get(ep["address"])
                delays.append((seen - answered) * 1000 if seen else 5000)
        for p in probers.values():
            p.stop = True
        print("cluster_propagation: %d changes, %d (change, other node) "
              "pairs, %d CPUs" % (changes, len(delays), os.cpu_count()))
        print("  API answer -> listener open on another node: p50 %.1f ms, "
              "p90 %.1f ms, p99 %.1f ms, max %.1f ms" % (
                  percentile(delays, 50), percentile(delays, 90),
                  percentile(delays, 99), max(delays)))


if __name__ == "__main__":
    main()
