#!/usr/bin/env python3
"""The cluster benchmark: builds scripts/cluster.sh's three-node rig and
measures, in one run,

  - losing a node: from kill -9 of a node's nlbd (three times, a different
    node each time), and from a node frozen whole (every packet of its
    namespaces dropped: BFD must notice), the time until the router
    withdrew it and until the last new flow that failed; the share of
    long-lived flows reset on the surviving nodes; how many established
    flows moved when the node came back;
  - the same kill and return with plain multipath routes (hash-threshold)
    in the routers instead of resilient groups, to see what those save;
  - the aggregate throughput of one node against three (wrk through the
    VIP to nginx targets, keep-alive and a new connection per request).

Writes bench/results-cluster.md (or --out) and the raw figures to
bench/results/raw/cluster.json. Needs what the rig needs (root; see
scripts/cluster.sh check) plus wrk and nginx. About three minutes.

    sudo bench/cluster.py [--out FILE] [--short-rate 100] [--long 300]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "tools"))
from cluster_load import Remote  # noqa: E402

CLUSTER = os.path.join(TOP, "scripts", "cluster.sh")
PREFIX = os.environ.get("NLB_CLUSTER_PREFIX", "nlbcb")
DIR = os.environ.get("NLB_CLUSTER_DIR", "/tmp/" + PREFIX)
NODES = ("n1", "n2", "n3")
ENDPOINT = "10.202.100.10"
ENV = dict(os.environ, NLB_CLUSTER_PREFIX=PREFIX, NLB_CLUSTER_DIR=DIR)


def log(message):
    print("[cluster bench %s] %s" % (time.strftime("%H:%M:%S"), message),
          file=sys.stderr, flush=True)


def rig(*args, check=True, timeout=120):
    r = subprocess.run([CLUSTER] + list(args), env=ENV, capture_output=True,
                       text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("cluster.sh %s: %s" % (" ".join(args),
                                                   r.stderr.strip()))
    return r


def status():
    out = {}
    for line in rig("status").stdout.splitlines():
        words = line.split()
        out[words[0]] = (words[1], words[2], words[-1] != "-")
    return out


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError("timed out waiting for " + what)


def ready():
    for node, (_, _, running) in status().items():
        if not running:
            rig("start", node)
    wait_for(lambda: all(s == ("up", "routed", True)
                         for s in status().values()), 30,
             "every node up and routed")


def kill_nlbd(node):
    """kill -9 of node's nlbd, here rather than through cluster.sh, so that
    the clock starts at the signal."""
    with open("%s/%s/nlbd.pid" % (DIR, node)) as f:
        pid = int(f.read())
    with open("/proc/%d/comm" % pid) as f:
        assert f.read().strip() == "nlbd"
    os.kill(pid, 9)


def routed(router, address):
    try:
        with open("%s/%s.routes" % (DIR, router)) as f:
            return any(address in line.split()[1:] for line in f)
    except OSError:
        return False


def node_addresses(node):
    i = int(node[1:])
    return "10.201.%d.2" % (10 + i), "10.202.%d.2" % (10 + i)


def ctl(node, principal, *args):
    r = rig("ctl", node, principal, "-o", "json", *args)
    return json.loads(r.stdout) if r.stdout.strip() else None


def setup_endpoint():
    ctl("n1", "payments", "services", "create", "web", "--load-balancer",
        "web", "--allow", "shop", "--no-acceptance")
    ctl("n2", "shop", "endpoints", "create", "web", "--network", "shop-vpc",
        "--address", ENDPOINT)

    def open_everywhere():
        ep = ctl("n3", "shop", "endpoints", "get", "web")
        return len([p for p in ep["placements"] if p["state"] == "open"]) == 3
    wait_for(open_everywhere, 15, "the endpoint open on every node")


# ---- losing a node ---------------------------------------------------------

def freeze(node, on):
    """Drops every packet of the node's namespaces (a hung or powered-off
    host: no FIN, no link change; only BFD notices)."""
    for ns in ("%s-%s" % (PREFIX, node), "%s-%s-shop" % (PREFIX, node)):
        if on:
            rules = ("table ip freeze {\n"
                     " chain i { type filter hook input priority -300; drop; }\n"
                     " chain o { type filter hook output priority -300; drop; }\n"
                     "}\n")
            subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"],
                           input=rules, text=True, check=True)
        else:
            subprocess.run(["ip", "netns", "exec", ns, "nft", "delete",
                            "table", "ip", "freeze"], check=True)


def lose_node(victim, how, args):
    """Loads the VIP and the endpoint, loses victim, brings it back;
    returns the figures of both."""
    loads = [Remote("%s-client" % PREFIX, "10.201.100.1:80", args.long,
                    args.short_rate),
             Remote("%s-shop" % PREFIX, ENDPOINT + ":80", args.long,
                    args.short_rate)]
    figures = []
    try:
        for load in loads:
            load.wait_established()
        time.sleep(2)
        vip_addr, shop_addr = node_addresses(victim)
        t0 = time.monotonic()
        if how == "kill":
            kill_nlbd(victim)
        else:
            freeze(victim, True)
        withdrawn = {}
        while len(withdrawn) < 2 and time.monotonic() - t0 < 10:
            for router, addr in (("router", vip_addr),
                                 ("shop-router", shop_addr)):
                if router not in withdrawn and not routed(router, addr):
                    withdrawn[router] = time.monotonic() - t0
            time.sleep(0.005)
        time.sleep(4)
        reports = [load.report() for load in loads]
        # Flows established while the node is out: the ones its return
        # could move (a resilient group gives it back only idle buckets).
        during = [Remote("%s-client" % PREFIX, "10.201.100.1:80", args.long,
                         0),
                  Remote("%s-shop" % PREFIX, ENDPOINT + ":80", args.long, 0)]
        loads += during
        for load in during:
            load.wait_established()
        # Back: the killed nlbd starts again; the frozen node thaws (its
        # nlbd never stopped; bird reconnects).
        t_back = time.monotonic()
        if how == "kill":
            rig("start", victim)
        else:
            freeze(victim, False)
        wait_for(lambda: routed("router", vip_addr) and
                 routed("shop-router", shop_addr), 30, victim + " routed")
        time.sleep(4)
        after = [load.report() for load in loads]
        for name, router, before, later, later_during in zip(
                ("vip", "endpoint"), ("router", "shop-router"), reports,
                after[:2], after[2:]):
            victims = before.long_on(victim)
            survivors = [f for f in before.long if f["node"] != victim]
            failures = [s for s in before.short_failures(t0)]
            figures.append({
                "path": name, "victim": victim, "how": how,
                "withdrawn_ms": round(1000 * withdrawn.get(router, 99)),
                "last_failed_ms": round(1000 * max(
                    (s["t"] - t0 for s in failures), default=0)),
                "short_failed": len(failures),
                "short_total": len([s for s in before.short if s["t"] > t0]),
                "victim_long": len(victims),
                "victim_long_reset": len(before.broken(t0, victim)),
                "survivor_long": len(survivors),
                "survivor_long_reset": len([f for f in before.broken(t0)
                                            if f["node"] != victim]),
                "moved_on_return": len(later.broken(t_back)) +
                len(later_during.broken(t_back)),
                "established_at_return": len(
                    [f for f in later.long if f["state"] == "up"]) +
                len(later_during.long),
                "short_failed_on_return": len(later.short_failures(t_back)),
            })
    finally:
        for load in loads:
            load.stop()
    for f in figures:
        log("%(how)s %(victim)s (%(path)s): withdrawn %(withdrawn_ms)d ms, "
            "last failed new flow %(last_failed_ms)d ms, survivors reset "
            "%(survivor_long_reset)d/%(survivor_long)d, moved on return "
            "%(moved_on_return)d" % f)
    return figures


def restart_agents(mode):
    """The routers' agents again, in mode resilient or plain."""
    for router in ("router", "shop-router"):
        pidfile = "%s/%s.agent.pid" % (DIR, router)
        with open(pidfile) as f:
            pid = int(f.read())
        os.kill(pid, 15)
        for _ in range(50):
            if not os.path.exists("/proc/%d" % pid):
                break
            time.sleep(0.1)
        extra = ["--plain"] if mode == "plain" else []
        out = open("%s/%s.agent.log" % (DIR, router), "a")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", "%s-%s" % (PREFIX, router),
             sys.executable, os.path.join(TOP, "scripts", "cluster",
                                          "ecmp-agent.py"),
             "--table", "200", "--state", "%s/%s.routes" % (DIR, router)] +
            extra, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
            start_new_session=True)
        with open(pidfile, "w") as f:
            f.write("%d\n" % proc.pid)
    time.sleep(2)
    ready()


# ---- throughput ---------------------------------------------------------------

def wrk(close, seconds):
    cmd = ["ip", "netns", "exec", "%s-client" % PREFIX, "wrk", "-t2",
           "-c32", "-d%ds" % seconds]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(cmd + ["http://10.201.100.1:8080/"],
                         capture_output=True, text=True, timeout=seconds + 30)
    for line in out.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError("wrk: no rate in %r" % out.stdout[-300:])


def one_node(on):
    """n2 and n3 drained and withdrawn (on), or back."""
    if not on:
        ready()
        return
    for node in ("n2", "n3"):
        rig("stop", node)
    wait_for(lambda: [s[2] for s in status().values()] ==
             [True, False, False], 30, "n2 and n3 stopped")
    wait_for(lambda: not routed("router", "10.201.12.2") and
             not routed("router", "10.201.13.2"), 10, "withdrawn")


def throughput(seconds, rounds):
    """Medians over rounds that alternate three nodes and one, so that a
    drift of the machine's other load falls on both alike."""
    samples = {}
    for _ in range(rounds):
        for nodes in (3, 1):
            one_node(nodes == 1)
            for close in (False, True):
                wrk(close, 1)  # warm up
                rate = wrk(close, seconds)
                key = "%d-%s" % (nodes, "close" if close else "keepalive")
                samples.setdefault(key, []).append(rate)
                log("%d node(s), %s: %.0f requests/s" % (
                    nodes, "new connection each" if close else "keep-alive",
                    rate))
    one_node(False)
    return {key: sorted(v)[len(v) // 2] for key, v in samples.items()}, \
        samples


# ---- the report ---------------------------------------------------------------------

def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", TOP, "rev-parse", "--short",
                             "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    return {"cores": os.cpu_count(), "cpu": model, "loadavg": loadavg,
            "kernel": platform.release(), "commit": commit,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def span(values, what):
    if not values:
        return what + ": not measured"
    return "%s after %d to %d ms" % (what, min(values), max(values))


def rate_spread(samples):
    return "; ".join("%s %s" % (key, "/".join("%.0f" % v for v in values))
                     for key, values in sorted(samples.items()))


def write_report(path, m, losses, plain, rates, rate_samples, args):
    lines = [
        "# Cluster benchmark",
        "",
        "`bench/cluster.py` on scripts/cluster.sh's rig: three nlbd nodes "
        "(1 worker each, `worker_cpu_affinity \"off\"`), a router namespace "
        "per network spreading flows with a resilient nexthop group (512 "
        "buckets, idle_timer 10 s) fed by bird2 over BGP with BFD (100 ms x "
        "3), targets in a namespace of their own. Everything shares one "
        "machine: **%d cores** (%s), Linux %s; nlb %s, %s." % (
            m["cores"], m["cpu"] or "unknown CPU", m["kernel"], m["commit"],
            m["date"]),
        "",
        "Load during each loss: %d long-lived flows (a line every second "
        "each) and %g new short flows a second, through the VIP and through "
        "an endpoint at once; while the node is out, %d more long-lived "
        "flows on each path, the ones its return could move. Load average "
        "when the run started: %s (other work on the machine)." % (
            args.long, args.short_rate, args.long, m["loadavg"]),
        "",
        "## Losing a node, and its return",
        "",
        "| event | path | routes withdrawn after | last failed new flow "
        "after | new flows failed | long flows reset on surviving nodes | "
        "the lost node's long flows reset | established flows moved on "
        "return |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in losses:
        event = ("kill -9 nlbd of %s" % f["victim"] if f["how"] == "kill"
                 else "%s frozen (all packets dropped)" % f["victim"])
        lines.append(
            "| %s | %s | %d ms | %s | %d of %d | %d of %d (%.1f%%) | %d of %d "
            "| %d of %d |" % (
                event, f["path"], f["withdrawn_ms"],
                "%d ms" % f["last_failed_ms"] if f["short_failed"]
                else "none failed", f["short_failed"], f["short_total"],
                f["survivor_long_reset"], f["survivor_long"],
                100.0 * f["survivor_long_reset"] / max(1, f["survivor_long"]),
                f["victim_long_reset"], f["victim_long"],
                f["moved_on_return"], f["established_at_return"]))
    lines += [
        "",
        "A killed nlbd's tun device goes with the process; the node's bird "
        "withdraws at once, the router's bird updates its table and the "
        "agent takes the hop out of the group: %s. The killed nlbd's flows "
        "are reset (the kernel closes its sockets). A frozen node says "
        "nothing; BFD declares it down after 3 x 100 ms: %s. Its flows stay "
        "pinned to it by the router, as a withdrawn node's do: they stall, "
        "and go on if it comes back before TCP gives up (here it came back "
        "after about 4.5 s); new flows that met it before BFD noticed "
        "waited for a SYN retransmission (1 s) rather than failing."
        % (span([f["withdrawn_ms"] for f in losses if f["how"] == "kill"],
                "the routes went"),
           span([f["withdrawn_ms"] for f in losses if f["how"] != "kill"],
                "the routes went")),
        "",
        "## What resilient groups save (kill -9, then start again)",
        "",
        "| routers spread with | path | long flows reset on surviving "
        "nodes | established flows moved on return |",
        "|---|---|---|---|",
    ]
    for mode, rows in (("resilient nexthop group", [
            f for f in losses if f["how"] == "kill"][:2]), (
            "plain multipath route (hash-threshold)", plain)):
        for f in rows:
            lines.append("| %s | %s | %d of %d (%.1f%%) | %d of %d |" % (
                mode, f["path"], f["survivor_long_reset"],
                f["survivor_long"], 100.0 * f["survivor_long_reset"] /
                max(1, f["survivor_long"]), f["moved_on_return"],
                f["established_at_return"]))
    ratio_k = rates["3-keepalive"] / rates["1-keepalive"]
    spread_k = rate_spread(rate_samples)
    ratio_c = rates["3-close"] / rates["1-close"]
    lines += [
        "",
        "## Throughput: one node against three",
        "",
        "wrk (2 threads, 32 connections, %d s) from the client namespace "
        "through the VIP to nginx targets (1 worker each); one node = n2 "
        "and n3 drained and withdrawn. Medians of %d rounds alternating "
        "three nodes and one (every sample: %s)." % (
            args.seconds, args.rounds, spread_k),
        "",
        "| load | 1 node | 3 nodes | 3 nodes / 1 node |",
        "|---|---|---|---|",
        "| keep-alive requests/s | %.0f | %.0f | %.2f |" % (
            rates["1-keepalive"], rates["3-keepalive"], ratio_k),
        "| requests/s, a new connection each | %.0f | %.0f | %.2f |" % (
            rates["1-close"], rates["3-close"], ratio_c),
        "",
        "On %d cores the ratio cannot approach 3: wrk, nginx, the routers "
        "(forwarding and tracking every packet) and every nlbd share them, "
        "and one node's single worker already takes most of a core. What "
        "three nodes can add here is the other core's share, less the cost "
        "of more processes competing for two cores; on separate machines "
        "each node brings its own cores." % m["cores"],
        "",
        "Rerun: `sudo bench/cluster.py` (about three minutes; "
        "`--out FILE` writes elsewhere).",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(TOP, "bench",
                                                      "results-cluster.md"))
    parser.add_argument("--long", type=int, default=300)
    parser.add_argument("--short-rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3,
                        help="throughput rounds (three nodes, then one)")
    parser.add_argument("--from-raw", metavar="JSON",
                        help="only write the report again from a run's "
                        "raw figures (bench/results/raw/cluster.json)")
    args = parser.parse_args()
    if args.from_raw:
        with open(args.from_raw) as f:
            raw = json.load(f)
        for key, value in raw["args"].items():
            if key not in ("out", "from_raw"):
                setattr(args, key, value)
        write_report(args.out, raw["machine"], raw["losses"], raw["plain"],
                     raw["rates"], raw["rate_samples"], args)
        return

    check = rig("check", check=False)
    if check.returncode != 0:
        sys.exit(check.stderr.strip())
    for tool in ("wrk", "nginx"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            sys.exit("cluster bench: %s not found" % tool)
    if os.path.exists(os.path.join(DIR, "nodes")):
        sys.exit("cluster bench: a rig is up in %s (NLB_CLUSTER_PREFIX=%s "
                 "scripts/cluster.sh down)" % (DIR, PREFIX))
    m = machine()
    log("rig up (prefix %s)" % PREFIX)
    try:
        rig("up", "3")
        setup_endpoint()
        rates, rate_samples = throughput(args.seconds, args.rounds)
        losses = []
        for victim in ("n3", "n1", "n2"):
            losses += lose_node(victim, "kill", args)
            ready()
        losses += lose_node("n3", "freeze", args)
        ready()
        restart_agents("plain")
        plain = lose_node("n3", "kill", args)
        restart_agents("resilient")
        raw_dir = os.path.join(TOP, "bench", "results", "raw")
        os.makedirs(raw_dir, exist_ok=True)
        with open(os.path.join(raw_dir, "cluster.json"), "w") as f:
            json.dump({"machine": m, "losses": losses, "plain": plain,
                       "rates": rates, "rate_samples": rate_samples,
                       "args": vars(args)}, f, indent=1)
        write_report(args.out, m, losses, plain, rates, rate_samples, args)
        log("wrote " + args.out)
    finally:
        rig("down", check=False)


if __name__ == "__main__":
    main()
