"""End to end: the cluster data plane on scripts/cluster.sh's rig.

Three nlbd nodes share a PostgreSQL registry; a router namespace spreads
flows over them with a resilient nexthop group fed by BGP (bird2, BFD), and
each node is announced only while its nlbd holds its announce interface.
From the client namespace (the load balancer's VIP) and from a consumer
namespace (an endpoint served by all three nodes) at once, 300 long-lived
flows each plus 20 short flows a second:

  - the flows are spread: each node carries 20-45% of the long ones;
  - kill -9 of one node's nlbd resets that node's flows and no other's,
    and new flows fail for at most 2 s;
  - starting it again moves no established flow;
  - draining a node (the API) resets no flow that ends within
    shutdown_timeout, and no new flow fails.

Also: 10,000 client tuples get the same target from every node (Maglev,
targets listed in another order on each node); health checks are per node
(GET /v1/target-groups shows each node's own view); `down` removes
everything `up` made.

Needs root, network namespaces, bird2, nftables and PostgreSQL; says SKIP
with the reason where the rig cannot run (scripts/cluster.sh check). The
rig's namespaces are named nlbt-c<pid>-*; its files are in /tmp/nlbt-c<pid>.
"""

import collections
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nlbtest import TOP_BUILDDIR, TOP_SRCDIR, Skip, run  # noqa: E402
import pgtest  # noqa: E402

sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "tools"))
from cluster_load import Remote  # noqa: E402

CLUSTER = os.path.join(TOP_SRCDIR, "scripts", "cluster.sh")
PROBE = os.path.join(TOP_SRCDIR, "tests", "tools", "cluster_probe.py")
PREFIX = "nlbt-c%d" % os.getpid()
NODES = ("n1", "n2", "n3")
ENDPOINT_ADDRESS = "10.202.100.10"
PROBE_RANGE = "10.201.200.0/24"


class Rig:
    """scripts/cluster.sh with this test's prefix and directory."""

    def __init__(self):
        # A shutdown_timeout long enough for the drain test's clients to
        # end their flows in time on a busy machine.
        self.env = dict(os.environ, NLB_CLUSTER_PREFIX=PREFIX,
                        NLB_CLUSTER_DIR="/tmp/" + PREFIX,
                        NLB_CLUSTER_BUILD=TOP_BUILDDIR,
                        NLB_CLUSTER_SHUTDOWN_TIMEOUT="30s")
        self.is_up = False
        self.skip_reason = None
        self.info = {}

    def sh(self, *args, timeout=60, check=True):
        r = subprocess.run([CLUSTER] + list(args), env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("cluster.sh %s: exit %d\n%s%s" % (
                " ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def up(self):
        if self.skip_reason:
            raise Skip(self.skip_reason)
        if self.is_up:
            return
        if os.getuid() != 0:
            self.skip_reason = "needs root (network namespaces)"
            raise Skip(self.skip_reason)
        r = self.sh("check", check=False)
        if r.returncode != 0:
            self.skip_reason = r.stderr.strip().replace("cluster: ", "")
            raise Skip(self.skip_reason)
        try:  # an initdb'd template, made once per build tree
            self.env["NLB_CLUSTER_PG_TEMPLATE"] = pgtest._template(
                pgtest.bindir(), pgtest._user())
        except pgtest.Unavailable as e:
            self.skip_reason = str(e)
            raise Skip(self.skip_reason)
        self.is_up = True  # from here on, down() has something to remove
        self.sh("up", "3", timeout=120)
        self.info = dict(line.split("=", 1) for line in
                         self.sh("info").stdout.split("\n") if "=" in line)

    def down(self):
        if self.is_up:
            self.is_up = False
            return self.sh("down", check=False, timeout=60)
        return None

    def status(self):
        """{node: (state, routes, nlbd running)}"""
        out = {}
        for line in self.sh("status").stdout.splitlines():
            words = line.split()
            out[words[0]] = (words[1], words[2], words[-1] != "-")
        return out

    def ready(self):
        """Every node's nlbd running, up and routed."""
        for node, (state, routes, running) in self.status().items():
            if not running:
                self.sh("start", node)
        wait_for(lambda: all(s == ("up", "routed", True)
                             for s in self.status().values()),
                 30, "every node up and routed")

    def kill(self, node):
        """kill -9 of node's nlbd, here rather than through cluster.sh, so
        that the clock starts at the signal."""
        with open("/tmp/%s/%s/nlbd.pid" % (PREFIX, node)) as f:
            pid = int(f.read())
        with open("/proc/%d/comm" % pid) as f:
            assert f.read().strip() == "nlbd"
        os.kill(pid, signal.SIGKILL)

    def routed(self, router, address):
        """Whether the router's agent has address in its group (the
        agent's state file: a line per prefix, its next hops after it)."""
        try:
            with open("/tmp/%s/%s.routes" % (PREFIX, router)) as f:
                return any(address in line.split()[1:] for line in f)
        except OSError:
            return False

    def logs(self):
        """The tails of the routers' agents' and the nodes' event logs,
        for a failure's message."""
        text = []
        for name in ("router.agent.log", "shop-router.agent.log",
                     "bird/router.log", "bird/shop-router.log",
                     "n1/events.log", "n2/events.log", "n3/events.log"):
            try:
                with open("/tmp/%s/%s" % (PREFIX, name)) as f:
                    text.append("--- %s\n%s" % (
                        name, "".join(f.readlines()[-6:])))
            except OSError:
                pass
        return "\n".join(text)

    def ctl(self, node, principal, *args):
        r = self.sh("ctl", node, principal, "-o", "json", *args)
        return json.loads(r.stdout) if r.stdout.strip() else None

    def ns(self, name):
        return "%s-%s" % (PREFIX, name)


RIG = Rig()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def services():
    """The service web (the rig's load balancer web) and shop's endpoint
    at ENDPOINT_ADDRESS, open on every node."""
    eps = RIG.ctl("n1", "shop", "endpoints", "list")["endpoints"]
    if not any(e["address"] == ENDPOINT_ADDRESS and e["state"] == "available"
               for e in eps):
        RIG.ctl("n1", "payments", "services", "create", "web",
                "--load-balancer", "web", "--allow", "shop", "--no-acceptance")
        RIG.ctl("n2", "shop", "endpoints", "create", "web", "--network",
                "shop-vpc", "--address", ENDPOINT_ADDRESS)

    def open_everywhere():
        ep = RIG.ctl("n3", "shop", "endpoints", "get", "web")
        return sorted(p["node"] for p in ep["placements"]
                      if p["state"] == "open") == list(NODES)
    wait_for(open_everywhere, 15, "the endpoint open on every node")


def all_targets_healthy(node):
    groups = RIG.ctl(node, "ops", "target-groups", "list")["target_groups"]
    web = [g for g in groups if g["name"] == "web"][0]
    return all(t["state"] == "healthy" for t in web["targets"])


def target_state(node, address):
    groups = RIG.ctl(node, "ops", "target-groups", "list")["target_groups"]
    web = [g for g in groups if g["name"] == "web"][0]
    return [t["state"] for t in web["targets"] if t["address"] == address][0]


def check_spread(name, report):
    shares = report.shares(NODES)
    print("%s: long flows per node %s" % (name, " ".join(
        "%s=%.0f%%" % (n, 100 * s) for n, s in sorted(shares.items()))))
    for node, share in shares.items():
        assert 0.20 <= share <= 0.45, (name, shares)


def node_running(node):
    return RIG.status()[node][2]


# ---- the tests -----------------------------------------------------------

def test_flows_survive_node_loss_return_and_drain():
    RIG.up()
    RIG.ready()
    services()
    loads = [Remote(RIG.ns("client"), RIG.info["vip"] + ":80"),
             Remote(RIG.ns("shop"), ENDPOINT_ADDRESS + ":80")]
    try:
        for load in loads:
            report = load.wait_established()
            failed = [f for f in report.long if f["state"] != "up"]
            assert not failed, failed[:3]
            check_spread(load.name, report)
            assert not report.short_failures(), report.short_failures()[:3]

        # kill -9 of n3: only n3's flows go; new flows fail for <= 2 s.
        t_kill = time.monotonic()
        RIG.kill("n3")
        while RIG.routed("router", RIG.info["n3_addr"]) or \
                RIG.routed("shop-router", RIG.info["n3_shop_addr"]):
            assert time.monotonic() - t_kill < 2, \
                "n3 still routed 2 s after kill -9"
            time.sleep(0.01)
        print("n3 withdrawn by both routers %.0f ms after kill -9"
              % (1000 * (time.monotonic() - t_kill)))
        time.sleep(4)
        for load in loads:
            report = load.report()
            others = [f for f in report.broken() if f["node"] != "n3"]
            assert not others, ("other nodes' flows reset", others[:3])
            n3 = report.long_on("n3")
            assert len(report.broken(node="n3")) == len(n3), \
                [f for f in n3 if f["state"] != "broken"][:3]
            failures = report.short_failures()
            last = max((s["t"] - t_kill for s in failures), default=None)
            print("%s: kill -9 n3 reset %d of its %d long flows, 0 of the "
                  "others' %d; %d short flows failed, the last %s after"
                  % (load.name, len(n3), len(n3), len(report.long) - len(n3),
                     len(failures), "-" if last is None
                     else "%.0f ms" % (1000 * last)))
            # A short flow n3 carried when it died fails too, though it
            # started a moment before (a flow times out after 5 s).
            assert all(-5.0 <= s["t"] - t_kill <= 2.0 for s in failures), \
                ["%+.3f s %s" % (s["t"] - t_kill, s["node"]) for s in failures]

        # n3 back: no established flow moves (neither those from before
        # nor those opened while it was out); new flows reach it again.
        during = [Remote(RIG.ns("client"), RIG.info["vip"] + ":80", 150, 0),
                  Remote(RIG.ns("shop"), ENDPOINT_ADDRESS + ":80", 150, 0)]
        loads += during
        for load in during:
            report = load.wait_established()
            wrong = [f for f in report.long
                     if f["state"] != "up" or f["node"] == "n3"]
            assert not wrong, (len(wrong), wrong[:5])
        t_start = time.monotonic()
        RIG.sh("start", "n3")
        wait_for(lambda: RIG.status()["n3"][:2] == ("up", "routed"), 15,
                 "n3 up and routed again")
        time.sleep(4)
        for load in loads:
            report = load.report()
            assert not report.broken(since=t_start), \
                ("flows moved when n3 came back", report.broken(t_start)[:3])
            assert not report.short_failures(since=t_start), \
                report.short_failures(t_start)[:3]
            if load in during:
                continue
            back = [s for s in report.short if s["t"] > t_start + 2 and
                    s["node"] == "n3"]
            assert back, "no new flow reached n3 after it came back"

        # Drain n2 through the API: it withdraws, its flows (which end
        # within shutdown_timeout) are not reset, no new flow fails. The
        # clients end n2's flows 4 s after the drain began, whatever the
        # checks in between cost on a busy machine.
        t_drain = time.monotonic()
        RIG.sh("drain", "n2")
        wait_for(lambda: not RIG.routed("router", RIG.info["n2_addr"]) and
                 not RIG.routed("shop-router", RIG.info["n2_shop_addr"]), 3,
                 "n2 withdrawn")
        states = {n["name"]: n["state"] for n in RIG.ctl(
            "n1", "ops", "nodes", "list")["nodes"]}
        assert states["n2"] == "draining", states
        assert node_running("n2")
        time.sleep(max(0.0, t_drain + 4 - time.monotonic()))
        for load in loads:  # n2 has stopped accepting; its flows go on
            report = load.report()
            closed = load.ask("close n2")["closed"]
            on_n2 = report.long_on("n2")
            print("%s: %d of n2's %d long flows still up %.1f s into the "
                  "drain, closed by the client" % (
                      load.name, closed, len(on_n2),
                      report.now - t_drain))
            assert closed == len(on_n2), (collections.Counter(
                (f["state"], f["reason"], round(f["t_end"] - t_drain, 1)
                 if f["t_end"] else None) for f in on_n2), RIG.logs())
        wait_for(lambda: not node_running("n2"), 10,
                 "n2's nlbd exits once its flows ended")
        for load in loads:
            report = load.report()
            assert not report.broken(since=t_drain), \
                ("flows reset by the drain", report.broken(t_drain)[:3],
                 RIG.logs())
            assert not report.short_failures(since=t_drain), \
                report.short_failures(t_drain)[:3]
    finally:
        for load in loads:
            load.stop()


def test_maglev_agrees_across_nodes():
    """The same 10,000 client tuples, sent to the VIP from inside each
    node's namespace (where the probe range is local), reach the same
    target on all three nodes; the nodes list the targets in different
    orders."""
    RIG.up()
    RIG.ready()
    wait_for(lambda: all(all_targets_healthy(n) for n in NODES), 10,
             "all targets healthy on every node")
    picks = {}
    for node in NODES:
        ns = RIG.ns(node)
        subprocess.run(["ip", "-n", ns, "route", "replace", "local",
                        PROBE_RANGE, "dev", "lo"], check=True)
        try:
            r = subprocess.run(
                ["ip", "netns", "exec", ns, sys.executable, PROBE,
                 "--connect", RIG.info["vip"] + ":80", "--tuples", "10000",
                 "--range", PROBE_RANGE], capture_output=True, text=True,
                timeout=60, check=True)
        finally:
            subprocess.run(["ip", "-n", ns, "route", "del", "local",
                            PROBE_RANGE, "dev", "lo"])
        picks[node] = json.loads(r.stdout)["targets"]
    assert all(t is not None for t in picks["n1"]), "some probe failed"
    agree = sum(1 for a, b, c in zip(*picks.values()) if a == b == c)
    spread = collections.Counter(picks["n1"])
    print("maglev: %d of %d tuples picked the same target on 3 nodes (%s)"
          % (agree, len(picks["n1"]), dict(sorted(spread.items()))))
    assert agree == len(picks["n1"]) == 10000
    assert len(spread) == 3


def test_health_checks_are_per_node():
    """n1 cannot reach t3 (a blackhole route in n1 alone): n1's
    GET /v1/target-groups says unhealthy, n2's says healthy."""
    RIG.up()
    RIG.ready()
    t3 = "10.201.2.13"
    ns = RIG.ns("n1")
    subprocess.run(["ip", "-n", ns, "route", "add", "blackhole", t3 + "/32"],
                   check=True)
    try:
        wait_for(lambda: target_state("n1", t3 + ":8000") == "unhealthy", 10,
                 "t3 unhealthy on n1")
        assert target_state("n2", t3 + ":8000") == "healthy"
        assert target_state("n3", t3 + ":8000") == "healthy"
    finally:
        subprocess.run(["ip", "-n", ns, "route", "del", "blackhole",
                        t3 + "/32"])
    wait_for(lambda: target_state("n1", t3 + ":8000") == "healthy", 10,
             "t3 healthy again on n1")


def test_down_removes_everything():
    RIG.up()
    status = RIG.status()
    assert sorted(status) == list(NODES), status
    r = RIG.down()
    assert r.returncode == 0, r.stderr
    left = [line.split()[0] for line in subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True).stdout
        .splitlines() if line.startswith(PREFIX + "-")]
    assert not left, left
    assert not os.path.exists("/tmp/" + PREFIX)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        run([test_flows_survive_node_loss_return_and_drain,
             test_maglev_agrees_across_nodes,
             test_health_checks_are_per_node,
             test_down_removes_everything], timeout=150)
    finally:
        if not os.environ.get("NLB_TEST_KEEP_RIG"):  # to look at a failure
            RIG.down()


if __name__ == "__main__":
    main()
