#!/usr/bin/env python3
"""Measures a balancer's memory per idle flow.

    idle_flows.py --connect 127.0.0.1:PORT --count 5000 --pid PID
                  --backend-port BPORT [--settle 1.0] [--timeout 20]

Reads the VmRSS of process PID, opens COUNT TCP connections to HOST:PORT
(in batches, so the listen backlog never overflows), waits until the
balancer holds COUNT established connections to the backend port BPORT (or
the timeout runs out), waits --settle seconds more, reads VmRSS again, then
closes everything. Prints one JSON object:

    {"count": 5000, "opened": 5000, "backend_flows": 5000,
     "rss_before_kib": 9000, "rss_after_kib": 14000,
     "bytes_per_flow": 1024.0, "open_seconds": 0.8}

RSS counts user-space memory only: kernel socket buffers are not in it.
Python 3 stdlib only.
"""

import argparse
import errno
import json
import resource
import selectors
import socket
import sys
import time

BATCH = 250


def rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def established_to_port(port):
    """Counts ESTABLISHED IPv4/IPv6 sockets whose remote port is port: the
    balancer's side of its flows to the backend."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] != "01":
                        continue
                    if int(fields[2].rsplit(":", 1)[1], 16) == port:
                        count += 1
        except FileNotFoundError:
            pass
    return count


def open_batch(addr, n, deadline):
    """Opens n connections; returns the sockets that connected."""
    sel = selectors.DefaultSelector()
    pending = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex(addr)
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            continue
        pending.append(s)
        sel.register(s, selectors.EVENT_WRITE)
    done = []
    left = len(pending)
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(deadline - time.monotonic(), 0)):
            s = key.fileobj
            sel.unregister(s)
            left -= 1
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                done.append(s)
            else:
                s.close()
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return done


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connect", required=True, help="HOST:PORT")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--backend-port", type=int, required=True)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=20.0)
    args = ap.parse_args()

    host, _, port = args.connect.rpartition(":")
    addr = (host, int(port))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    base_backend = established_to_port(args.backend_port)
    rss_before = rss_kib(args.pid)
    start = time.monotonic()
    deadline = start + args.timeout
    socks = []
    while len(socks) < args.count and time.monotonic() < deadline:
        socks += open_batch(addr, min(BATCH, args.count - len(socks)),
                            deadline)
    open_seconds = time.monotonic() - start

    backend = 0
    while time.monotonic() < deadline:
        backend = established_to_port(args.backend_port) - base_backend
        if backend >= len(socks):
            break
        time.sleep(0.1)
    time.sleep(args.settle)
    rss_after = rss_kib(args.pid)
    backend = established_to_port(args.backend_port) - base_backend

    for s in socks:
        s.close()
    opened = len(socks)
    per_flow = (rss_after - rss_before) * 1024.0 / opened if opened else None
    json.dump({"count": args.count, "opened": opened,
               "backend_flows": backend, "rss_before_kib": rss_before,
               "rss_after_kib": rss_after, "bytes_per_flow": per_flow,
               "open_seconds": round(open_seconds, 3)}, sys.stdout)
    print()
    return 0 if opened == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
