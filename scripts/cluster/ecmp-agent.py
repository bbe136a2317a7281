#!/usr/bin/env python3
"""ecmp-agent: the cluster rig's router glue (scripts/cluster.sh).

The routing daemon of the router namespace (bird2) learns each node's
announcements over BGP and exports them, merged into multipath routes, to a
kernel table of their own (--table). bird2 cannot install nexthop objects,
and a plain multipath route spreads flows by hash-threshold: removing or
adding one next hop moves flows of the OTHER next hops too. This agent
follows that table and installs each route into the main table through a
nexthop group of type resilient instead: a next hop that leaves takes only
its own buckets with it (they go to the others), one that comes back gets
only buckets that were idle for --idle-timer seconds, so established flows
of the other nodes never move.

It also keeps a withdrawn next hop's established flows on it (--pin, on by
default), which is what a node's drain needs: the router marks every new
flow's conntrack entry with the interface it left by; when a next hop is
withdrawn, the flows marked for it keep being routed to it (an ip rule by
mark, a route in a table of that interface's), while new flows follow the
group without it. When the next hop returns, the pin goes.

Run it inside the router's namespace, as root. Stdlib only. It reacts to
`ip monitor route` at once and also rereads the table every second.

    ip netns exec ROUTER ecmp-agent.py --table 200 --state FILE
"""

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import time

NFT_TABLE = "nlb_ecmp"


def log(message):
    stamp = time.strftime("%H:%M:%S", time.localtime())
    print("%s.%03d %s" % (stamp, int(time.time() * 1000) % 1000, message),
          flush=True)


def ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def ip_json(*args):
    out = ip("-j", *args).stdout.strip()
    return json.loads(out) if out else []


def read_table(table):
    """{dst: frozenset((gateway, dev))} of the daemon's routes."""
    routes = {}
    r = ip("-j", "-4", "route", "show", "table", str(table), check=False)
    if r.returncode != 0 or "interrupted" in r.stderr:
        if "does not exist" in r.stderr:  # nothing exported yet
            return routes
        # A dump the kernel interrupted (the routes changed meanwhile) may
        # lack routes that exist: never act on it.
        raise RuntimeError("ip route show table %d: %s"
                           % (table, r.stderr.strip()))
    for r in json.loads(r.stdout or "[]"):
        if r.get("type", "unicast") != "unicast":
            continue
        hops = r.get("nexthops") or [r]
        members = frozenset((h["gateway"], h["dev"]) for h in hops
                            if "gateway" in h and "dev" in h)
        if members:
            routes[r["dst"]] = members
    return routes


class Agent:
    def __init__(self, args):
        self.args = args
        self.hop_ids = {}    # (gateway, dev) -> nexthop id
        self.groups = {}     # dst -> (group id, frozenset of members)
        self.marks = {}      # dev -> conntrack mark (its ifindex)
        self.pinned = set()  # (dst, gateway, dev)
        self.next_group = args.group_base
        self.batch = []      # ip commands of one change, applied at once
        self.notes = []      # what they do, logged once applied

    # ---- pinning a withdrawn hop's flows ------------------------------------

    def setup_pinning(self):
        subprocess.run(["nft", "delete", "table", "ip", NFT_TABLE],
                       capture_output=True)
        rules = """
table ip %s {
  map hop_mark { type ifname : mark; }
  chain restore {
    type filter hook prerouting priority mangle; policy accept;
    meta mark set ct mark
  }
  chain remember {
    type filter hook postrouting priority mangle; policy accept;
    ct state new ct mark set oifname map @hop_mark
  }
}
""" % NFT_TABLE
        r = subprocess.run(["nft", "-f", "-"], input=rules, text=True,
                           capture_output=True)
        if r.returncode != 0:
            raise RuntimeError("nft: " + r.stderr.strip())

    def mark_of(self, dev):
        """Registers dev's mark (its ifindex) before any flow leaves by it,
        with its rule and table; returns the mark."""
        if dev in self.marks:
            return self.marks[dev]
        mark = ip_json("link", "show", "dev", dev)[0]["ifindex"]
        if self.args.pin:
            r = subprocess.run(
                ["nft", "add", "element", "ip", NFT_TABLE, "hop_mark",
                 '{ "%s" : %d }' % (dev, mark)], capture_output=True,
                text=True)
            if r.returncode != 0:
                raise RuntimeError("nft: " + r.stderr.strip())
            table = str(self.args.pin_table_base + mark)
            ip("rule", "del", "fwmark", str(mark), "lookup", table,
               check=False)
            ip("rule", "add", "fwmark", str(mark), "lookup", table, "pref",
               str(self.args.pin_priority))
        self.marks[dev] = mark
        return mark

    def pin(self, dst, gateway, dev):
        if not self.args.pin or (dst, gateway, dev) in self.pinned:
            return
        table = self.args.pin_table_base + self.mark_of(dev)
        self.batch.append("route replace %s via %s dev %s table %d"
                          % (dst, gateway, dev, table))
        self.pinned.add((dst, gateway, dev))
        self.notes.append("%s: %s withdrawn; its established flows stay on "
                          "it" % (dst, gateway))

    def unpin(self, dst, gateway, dev):
        if (dst, gateway, dev) not in self.pinned:
            return
        table = self.args.pin_table_base + self.mark_of(dev)
        self.batch.append("route del %s via %s dev %s table %d"
                          % (dst, gateway, dev, table))
        self.pinned.discard((dst, gateway, dev))

    # ---- resilient groups ---------------------------------------------------

    def hop_id(self, gateway, dev):
        key = (gateway, dev)
        if key not in self.hop_ids:
            self.mark_of(dev)
            hop = len(self.hop_ids) + 1
            ip("nexthop", "replace", "id", str(hop), "via", gateway, "dev",
               dev)
            self.hop_ids[key] = hop
        return self.hop_ids[key]

    def group_spec(self, members):
        ids = sorted(self.hop_id(g, d) for g, d in members)
        return "/".join(str(i) for i in ids)

    def install(self, dst, members):
        spec = self.group_spec(members)
        old = self.groups.get(dst, (None, frozenset()))[1]
        # Pinned before the group lets go of it: a packet of its flows
        # routed by the group in between would be reset by another node.
        for gateway, dev in old - members:
            self.pin(dst, gateway, dev)
        if self.args.plain:
            self.batch.append("route replace %s proto static %s" % (
                dst, " ".join("nexthop via %s dev %s" % hop
                              for hop in sorted(members))))
            group = 0
        elif dst not in self.groups:
            group = self.next_group
            self.next_group += 1
            self.batch.append(
                "nexthop replace id %d group %s type resilient buckets %d "
                "idle_timer %d unbalanced_timer %d" % (
                    group, spec, self.args.buckets, self.args.idle_timer,
                    self.args.unbalanced_timer))
            self.batch.append("route replace %s nhid %d proto static"
                              % (dst, group))
        else:
            group = self.groups[dst][0]
            self.batch.append("nexthop replace id %d group %s type resilient"
                              % (group, spec))
        self.groups[dst] = (group, members)
        for gateway, dev in members - old:
            self.unpin(dst, gateway, dev)
        self.notes.append("%s: %s over %s" % (
            dst, "plain multipath" if self.args.plain else "group %d" % group,
            " ".join(sorted(g for g, _ in members))))

    def remove(self, dst):
        group, old = self.groups.pop(dst)
        for gateway, dev in old:
            self.pin(dst, gateway, dev)
        self.batch.append("route del %s" % dst)
        if not self.args.plain:
            self.batch.append("nexthop del id %d" % group)
        self.notes.append("%s: no next hop left" % dst)

    def sync(self):
        wanted = read_table(self.args.table)
        if any(not members <= wanted.get(dst, frozenset())
               for dst, (_, members) in self.groups.items()):
            # A next hop to take away: only if a second read agrees, so
            # that no flow is moved on the word of one inconsistent read.
            first, wanted = wanted, read_table(self.args.table)
            for dst, (_, members) in self.groups.items():
                kept = members & first.get(dst, frozenset())
                if kept:
                    wanted[dst] = wanted.get(dst, frozenset()) | kept
        for dst, members in sorted(wanted.items()):
            if self.groups.get(dst, (None, None))[1] != members:
                self.install(dst, members)
        for dst in sorted(set(self.groups) - set(wanted)):
            self.remove(dst)
        if self.batch:
            self.apply()
        if self.notes or not os.path.exists(self.args.state or "/"):
            self.write_state()
        for note in self.notes:
            log(note)
        self.notes = []

    def apply(self):
        """One ip process for the whole change, in order: a withdrawn hop
        is pinned before its group lets go of it."""
        commands, self.batch = self.batch, []
        r = subprocess.run(["ip", "-force", "-batch", "-"],
                           input="\n".join(commands) + "\n", text=True,
                           capture_output=True)
        if r.returncode != 0:
            log("error: ip -batch: %s" % r.stderr.strip())

    def write_state(self):
        if not self.args.state:
            return
        tmp = self.args.state + ".tmp"
        with open(tmp, "w") as f:
            for dst, (_, members) in sorted(self.groups.items()):
                f.write(" ".join([dst] + sorted(g for g, _ in members)))
                f.write("\n")
        os.replace(tmp, self.args.state)


def check_hash_policy():
    try:
        with open("/proc/sys/net/ipv4/fib_multipath_hash_policy") as f:
            if f.read().strip() != "1":
                log("warning: net.ipv4.fib_multipath_hash_policy is not 1: "
                    "flows are spread by addresses only, not by ports")
    except OSError:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", type=int, default=200,
                        help="the table the routing daemon exports to")
    parser.add_argument("--buckets", type=int, default=512)
    parser.add_argument("--idle-timer", type=int, default=10,
                        help="seconds a bucket must be idle before it moves "
                        "to a next hop that joined")
    parser.add_argument("--unbalanced-timer", type=int, default=0,
                        help="seconds after which busy buckets move too "
                        "(0: never)")
    parser.add_argument("--group-base", type=int, default=1000)
    parser.add_argument("--plain", action="store_true",
                        help="install plain multipath routes (hash-threshold)"
                        " instead: for comparison only, they move other "
                        "hops' flows")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not keep a withdrawn hop's flows on it")
    parser.add_argument("--pin-table-base", type=int, default=1000)
    parser.add_argument("--pin-priority", type=int, default=100)
    parser.add_argument("--state", help="a file the agent rewrites on each "
                        "change: one line per prefix, its next hops after it")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    check_hash_policy()
    agent = Agent(args)
    if args.pin:
        agent.setup_pinning()
    monitor = subprocess.Popen(["ip", "-o", "monitor", "route"],
                               stdout=subprocess.PIPE)
    os.set_blocking(monitor.stdout.fileno(), False)
    selector = selectors.DefaultSelector()
    selector.register(monitor.stdout, selectors.EVENT_READ)
    log("following table %d (%s, pinning %s)" % (
        args.table, "plain multipath" if args.plain else
        "resilient groups: buckets %d, idle_timer %ds" % (args.buckets,
                                                           args.idle_timer),
        "on" if args.pin else "off"))
    try:
        while True:
            try:
                agent.sync()
            except (RuntimeError, ValueError, KeyError) as e:
                log("error: %s" % e)
            if selector.select(timeout=1.0):
                if not monitor.stdout.read():
                    if monitor.poll() is not None:
                        raise SystemExit("ip monitor ended")
    finally:
        monitor.kill()


if __name__ == "__main__":
    main()
