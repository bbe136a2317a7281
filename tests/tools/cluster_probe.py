#!/usr/bin/env python3
"""Asks one node of the cluster rig which target it picks for each of a
list of client tuples: run inside the node's namespace, where the probe
range is local (ip route add local RANGE dev lo), so that a flow can come
from any address of it. Stdlib only.

    ip netns exec NODE_NS cluster_probe.py --connect 10.201.100.1:80 \\
        --tuples 10000 --seed 7 --range 10.201.200.0/24

Prints one JSON line: {"targets": [TARGET or null, ...]}, in the order of
the tuples, which the same --seed and --range make the same on every node.
"""

import argparse
import asyncio
import ipaddress
import json
import random
import socket


def tuples(count, seed, network):
    hosts = list(ipaddress.ip_network(network).hosts())
    rng = random.Random(seed)
    seen = set()
    while len(seen) < count:
        seen.add((str(rng.choice(hosts)), rng.randrange(20000, 60000)))
    return sorted(seen)


async def probe(source, host, port, limit):
    async with limit:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        writer = None
        try:
            sock.bind(source)
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, (host, port)),
                5)
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(b"probe\n")
            line = await asyncio.wait_for(reader.readline(), 5)
            parts = line.decode().split()
            return parts[0] if len(parts) == 3 else None
        except (OSError, asyncio.TimeoutError):
            return None
        finally:
            if writer:
                writer.close()
            else:
                sock.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connect", required=True, metavar="ADDRESS:PORT")
    parser.add_argument("--tuples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--range", default="10.201.200.0/24")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    host, port = args.connect.rsplit(":", 1)
    limit = asyncio.Semaphore(args.concurrency)
    targets = await asyncio.gather(*[
        probe(source, host, int(port), limit)
        for source in tuples(args.tuples, args.seed, args.range)])
    print(json.dumps({"targets": targets}))


if __name__ == "__main__":
    asyncio.run(main())
