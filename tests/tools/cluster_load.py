#!/usr/bin/env python3
"""Flows against the cluster rig (scripts/cluster.sh), for its tests and
its benchmark: long-lived flows that keep talking, and a steady rate of
short ones, each told apart by the node that carried it. Stdlib only.

    ip netns exec NS cluster_load.py --connect 10.201.100.1:80 \\
        --long 300 --short-rate 20

The targets (scripts/cluster/target.py) answer each line L with
"TARGET NODE L", so every flow learns its node and target.

Long flows open at start, then each sends a line every --interval seconds
and must get its answer within --timeout; a flow that is reset, sees EOF
or times out is "broken" (with the time), one closed on command is
"closed". Short flows start every 1/--short-rate seconds: connect, one
line, its answer, close; each is ok or failed (with the reason).

Commands on stdin, one a line; each answer is one JSON line on stdout:
  report        {"now", "long": [[id, node, target, state, t_up, t_end,
                 reason]],
                 "short": [[t_start, ok, node_or_reason]]} (every short flow
                 since start; times are CLOCK_MONOTONIC seconds, as Python's
                 time.monotonic() in any process of this machine)
  close NODE    closes the long flows NODE carries (the client ends them);
                answers {"closed": N}
  close all     the same for every long flow
  quit          closes everything, answers a last report, exits

Tests and benchmarks drive it from Python with Remote (below), which runs
it in a namespace and reads its reports into Report objects.
"""

import argparse
import asyncio
import collections
import json
import subprocess
import sys
import time


class Load:
    def __init__(self, args):
        self.args = args
        host, port = args.connect.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.long = []   # dicts: id, node, target, state, t_up, t_end, writer
        self.short = []  # [t_start, ok, node_or_reason]
        self.tasks = set()

    def spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def open_flow(self):
        return await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port),
            self.args.timeout)

    async def exchange(self, reader, writer, word):
        writer.write(word.encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), self.args.timeout)
        parts = line.decode(errors="replace").split()
        if len(parts) != 3 or parts[2] != word:
            raise ConnectionError("EOF" if not line else "bad answer %r" % line)
        return parts[0], parts[1]

    async def long_flow(self, flow):
        writer = None
        try:
            reader, writer = await self.open_flow()
            flow["writer"] = writer
            flow["target"], flow["node"] = await self.exchange(
                reader, writer, "hello%d" % flow["id"])
            flow["state"], flow["t_up"] = "up", time.monotonic()
            # Spread the pings over the interval.
            await asyncio.sleep(self.args.interval * (flow["id"] % 97) / 97)
            while flow["state"] == "up":
                target, node = await self.exchange(reader, writer, "ping")
                if (target, node) != (flow["target"], flow["node"]):
                    raise ConnectionError("moved to %s %s" % (target, node))
                await asyncio.sleep(self.args.interval)
        except (OSError, ConnectionError, asyncio.TimeoutError) as e:
            if flow["state"] in ("connecting", "up"):
                flow["state"] = "broken" if flow["t_up"] else "failed"
                flow["t_end"] = time.monotonic()
                flow["reason"] = str(e) or type(e).__name__
        finally:
            if writer:
                writer.close()

    async def short_flow(self):
        started = time.monotonic()
        writer = None
        try:
            reader, writer = await self.open_flow()
            _, node = await self.exchange(reader, writer, "short")
            self.short.append([started, True, node])
        except (OSError, ConnectionError, asyncio.TimeoutError) as e:
            self.short.append([started, False, str(e) or type(e).__name__])
        finally:
            if writer:
                writer.close()

    async def short_flows(self):
        if self.args.short_rate <= 0:
            return
        period = 1.0 / self.args.short_rate
        next_at = time.monotonic()
        while True:
            self.spawn(self.short_flow())
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def close(self, node):
        closed = 0
        for flow in self.long:
            if flow["state"] == "up" and node in ("all", flow["node"]):
                flow["state"], flow["t_end"] = "closed", time.monotonic()
                flow["writer"].close()
                closed += 1
        return closed

    def report(self):
        return {"now": time.monotonic(),
                "long": [[f["id"], f["node"], f["target"], f["state"],
                          f["t_up"], f["t_end"], f.get("reason")]
                         for f in self.long],
                "short": self.short}

    async def commands(self):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            words = (await reader.readline()).decode().split()
            if not words or words[0] == "quit":
                self.close("all")
                return
            if words[0] == "report":
                answer = self.report()
            elif words[0] == "close" and len(words) == 2:
                answer = {"closed": self.close(words[1])}
            else:
                answer = {"error": "unknown command %r" % " ".join(words)}
            print(json.dumps(answer), flush=True)

    async def run(self):
        for i in range(self.args.long):
            flow = {"id": i, "node": None, "target": None,
                    "state": "connecting", "t_up": None, "t_end": None,
                    "writer": None}
            self.long.append(flow)
            self.spawn(self.long_flow(flow))
            if i % 20 == 19:
                await asyncio.sleep(0.01)
        self.spawn(self.short_flows())
        await self.commands()
        print(json.dumps(self.report()), flush=True)


class Report:
    """One report: long flows and short flows as dicts."""

    def __init__(self, raw):
        self.now = raw["now"]
        self.long = [dict(zip(("id", "node", "target", "state", "t_up",
                               "t_end", "reason"), f)) for f in raw["long"]]
        self.short = [dict(zip(("t", "ok", "node"), s)) for s in raw["short"]]

    def long_on(self, node):
        return [f for f in self.long if f["node"] == node]

    def broken(self, since=0.0, node=None):
        return [f for f in self.long if f["state"] == "broken" and
                f["t_end"] > since and node in (None, f["node"])]

    def short_failures(self, since=0.0):
        return [s for s in self.short if not s["ok"] and s["t"] > since]

    def shares(self, nodes):
        counts = collections.Counter(f["node"] for f in self.long)
        return {n: counts[n] / max(1, len(self.long)) for n in nodes}


class Remote:
    """This tool in network namespace ns, driven through its stdin."""

    def __init__(self, ns, address, long=300, short_rate=20.0):
        self.name = ns
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable,
             __file__, "--connect", address, "--long", str(long),
             "--short-rate", str(short_rate)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("%s: cluster_load.py ended" % self.name)
        return json.loads(line)

    def report(self):
        return Report(self.ask("report"))

    def wait_established(self, timeout=30):
        """Waits until no long flow is still connecting; returns the
        report."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.report()
            if all(f["state"] != "connecting" for f in report.long):
                return report
            if time.monotonic() > deadline:
                raise RuntimeError("%s: long flows not established in %ss"
                                   % (self.name, timeout))
            time.sleep(0.2)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.ask("quit")
            except (RuntimeError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connect", required=True, metavar="ADDRESS:PORT")
    parser.add_argument("--long", type=int, default=300)
    parser.add_argument("--short-rate", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=1.0)
    # Long enough that a load generator starved of CPU for a moment on a
    # busy machine does not call its flows broken: a reset or an EOF is
    # seen at once anyway.
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(Load(args).run())


if __name__ == "__main__":
    main()
