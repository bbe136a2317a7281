"""End to end: node.announce_interface (nlb/announce.c), one nlbd in a
network namespace, no routing daemon needed.

  - nlbd holds a tun device of that name, link up, in its own namespace and
    in its networks' namespaces, node.networks' included (a missing one is
    a warning);
  - SIGTERM drops it first, then the listeners keep accepting for
    withdraw_delay, then close; kill -9 drops it too (the kernel does);
  - a second nlbd in the same namespace exits 1 (the device is held);
  - a persistent device made beforehand is attached to, and its link goes
    down (the device stays) when nlbd lets go.

Needs root and network namespaces (names nlbt-an*-<pid>); says SKIP
without them."""

import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nlbtest import NLBD, Skip, run  # noqa: E402

PID = os.getpid()
NS = "nlbt-an-%d" % PID
NS_NET = "nlbt-annet-%d" % PID
NS_GONE = "nlbt-angone-%d" % PID
NS_MAP = "nlbt-anmap-%d" % PID  # node.networks: a network made by the API
PORT = 8080


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=10, check=check)


class World:
    def __enter__(self):
        if os.getuid() != 0:
            raise Skip("needs root (network namespaces)")
        if not os.path.exists("/dev/net/tun"):
            raise Skip("no /dev/net/tun")
        for ns in (NS, NS_NET, NS_MAP):
            r = sh("ip", "netns", "add", ns, check=False)
            if r.returncode != 0:
                raise Skip("ip netns add failed: " + r.stderr.strip())
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.dir = tempfile.mkdtemp(prefix="nlbt-announce-")
        self.procs = []
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for ns in (NS, NS_NET, NS_MAP):
            sh("ip", "netns", "del", ns, check=False)
        subprocess.run(["rm", "-rf", self.dir])

    def config(self, name, ifname="nlb-up", delay="1s"):
        path = os.path.join(self.dir, name + ".cfg")
        with open(path, "w") as f:
            f.write("""
workers = 1;
worker_cpu_affinity = "off";
shutdown_timeout = "5s";
node = { name = "a1"; announce_interface = "%s"; withdraw_delay = "%s";
         networks = ( { name = "apinet"; netns = "%s"; } ); };
networks = (
  { name = "net"; netns = "%s"; range = "10.9.0.0/24"; },
  { name = "gone"; netns = "%s"; range = "10.9.1.0/24"; }
);
target_groups = ( { name = "tg"; targets = ( { address = "127.0.0.1:9"; } ); } );
load_balancers = ( { name = "lb"; listeners = ( { port = %d;
  target_group = "tg"; bind = "127.0.0.1"; } ); } );
""" % (ifname, delay, NS_MAP, NS_NET, NS_GONE, PORT))
        return path

    def nlbd(self, cfg):
        p = subprocess.Popen(["ip", "netns", "exec", NS, NLBD, "-c", cfg],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        self.procs.append(p)
        return p


def link(ns, ifname):
    """The device's flags, or None when it does not exist."""
    r = sh("ip", "-n", ns, "-o", "link", "show", "dev", ifname, check=False)
    if r.returncode != 0:
        return None
    return r.stdout.split("<", 1)[1].split(">", 1)[0].split(",")


def listening(ns):
    r = sh("ip", "netns", "exec", ns, "ss", "-Hltn", "sport", "= :%d" % PORT)
    return bool(r.stdout.strip())


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def started(proc):
    return wait_for(lambda: listening(NS) and link(NS, "nlb-up"), 10,
                    "nlbd listening and holding nlb-up") if proc else None


def test_held_while_serving_dropped_first_on_sigterm():
    with World() as w:
        # withdraw_delay 2 s: the test sees the device gone and the
        # listener still open within it, with a few `ip` and `ss` runs
        # that are slow on a loaded machine.
        p = w.nlbd(w.config("a", delay="2s"))
        started(p)
        for ns in (NS, NS_NET, NS_MAP):
            flags = link(ns, "nlb-up")
            assert flags and "UP" in flags and "LOWER_UP" in flags, (ns, flags)
        # A second nlbd here cannot hold it, and says so.
        second = w.nlbd(w.config("b"))
        out, _ = second.communicate(timeout=10)
        assert second.returncode == 1, out
        assert "cannot hold nlb-up in nlbd's namespace: another process " \
            "holds it" in out, out
        assert link(NS, "nlb-up") and p.poll() is None

        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        wait_for(lambda: link(NS, "nlb-up") is None and
                 link(NS_NET, "nlb-up") is None and
                 link(NS_MAP, "nlb-up") is None, 1.5, "nlb-up gone")
        assert listening(NS), "stopped accepting before withdraw_delay"
        wait_for(lambda: not listening(NS), 4, "listener closed")
        closed_after = time.monotonic() - t0
        assert 1.8 <= closed_after <= 3.5, closed_after
        out, _ = p.communicate(timeout=10)
        assert p.returncode == 0, out
        assert "in namespace %s: no such namespace; network gone is not " \
            "announced here" % NS_GONE in out, out
        assert "withdrew 3 announcements" in out, out


def test_dropped_when_killed():
    with World() as w:
        p = w.nlbd(w.config("a"))
        started(p)
        p.kill()
        p.wait()
        wait_for(lambda: link(NS, "nlb-up") is None and
                 link(NS_NET, "nlb-up") is None, 3, "nlb-up gone after kill -9")


def test_persistent_device_loses_its_link():
    with World() as w:
        sh("ip", "-n", NS, "tuntap", "add", "nlb-p", "mode", "tun")
        sh("ip", "-n", NS, "link", "set", "nlb-p", "up")
        assert "NO-CARRIER" in link(NS, "nlb-p")
        p = w.nlbd(w.config("a", ifname="nlb-p", delay="0s"))
        wait_for(lambda: "LOWER_UP" in (link(NS, "nlb-p") or []), 10,
                 "nlb-p carrier up")
        p.kill()
        p.wait()
        wait_for(lambda: "NO-CARRIER" in (link(NS, "nlb-p") or []), 3,
                 "nlb-p carrier down")


if __name__ == "__main__":
    run([test_held_while_serving_dropped_first_on_sigterm,
         test_dropped_when_killed,
         test_persistent_device_loses_its_link], timeout=60)
