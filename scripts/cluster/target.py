#!/usr/bin/env python3
"""The cluster rig's targets (scripts/cluster.sh): TCP servers that say who
they are and through which node a flow came, so that a client can tell
where the balancer sent it. Stdlib only.

    target.py --node 10.201.11.2=n1 ... t1=10.201.2.11:8000 t2=...

Each NAME=ADDRESS:PORT is one target. Answers, per connection:
  - HTTP (a first line "GET ..." or "HEAD ..."): 200 with the body
    "NAME via NODE\\n", then close;
  - anything else, line by line: each line L gets "NAME NODE L\\n" back,
    until the client closes.
NODE is the name --node gives the address the flow came from (the node's
own address: nlbd connects from there), or that address itself.
"""

import argparse
import asyncio
import signal


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--node", action="append", default=[],
                        metavar="ADDRESS=NAME")
    parser.add_argument("targets", nargs="+", metavar="NAME=ADDRESS:PORT")
    return parser.parse_args()


async def serve(name, host, port, nodes):
    async def on_flow(reader, writer):
        peer = writer.get_extra_info("peername")[0]
        node = nodes.get(peer, peer)
        try:
            line = await reader.readline()
            if line.startswith((b"GET ", b"HEAD ")):
                while (await reader.readline()).strip():
                    pass
                body = ("%s via %s\n" % (name, node)).encode()
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain"
                             b"\r\nContent-Length: %d\r\nConnection: close"
                             b"\r\n\r\n" % len(body))
                if not line.startswith(b"HEAD "):
                    writer.write(body)
                await writer.drain()
                return
            prefix = ("%s %s " % (name, node)).encode()
            while line:
                writer.write(prefix + line)
                await writer.drain()
                line = await reader.readline()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_flow, host, port, backlog=1024,
                                        reuse_address=True)
    return server


async def main():
    args = parse_args()
    nodes = dict(n.split("=", 1) for n in args.node)
    servers = []
    for spec in args.targets:
        name, address = spec.split("=", 1)
        host, port = address.rsplit(":", 1)
        servers.append(await serve(name, host, int(port), nodes))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
