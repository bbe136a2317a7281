#!/usr/bin/env python3
"""End to end, issue 25: preserve_client_ip. A target group with
preserve_client_ip = true makes its TCP connections and UDP datagrams
leave nlb from the client's own address (IP_TRANSPARENT), so the target
sees the client, not nlb.

Three namespaces and two veth pairs, 10.x addresses inside them only (no
veth into the host, no default route out):

    client ns 10.77.1.2 --- 10.77.1.1 nlb ns 10.77.2.1 --- 10.77.2.2 target ns

The target's route back to clients goes through the nlb namespace
(default via 10.77.2.1), and in the nlb namespace answers addressed to a
client are delivered to nlbd's transparent sockets: nftables marks
packets that belong to a transparent socket (`socket transparent 1`), and
`ip rule fwmark 1 lookup 100` + `ip route add local 0.0.0.0/0 dev lo table
100` hand them to the local stack (docs/config.md). nlbd, the target and
the client each run with `ip netns exec`.

Also: without CAP_NET_ADMIN (or CAP_NET_RAW) nlbd refuses such a config
at start. Needs root, ip and nft; says SKIP otherwise."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netnstest  # noqa: E402
import nlbtest  # noqa: E402
from netnstest import sh  # noqa: E402
from nlbtest import NLBD, Nlbd, Skip, run, wait_until  # noqa: E402

PID = os.getpid()
CLIENT, NLB_NS, TARGET = (netnstest.name(r) for r in ("pcc", "pcn", "pct"))
CLIENT_IP, NLB_FRONT, NLB_BACK, TARGET_IP = (
    "10.77.1.2", "10.77.1.1", "10.77.2.1", "10.77.2.2")
PORT, TARGET_PORT = 5300, 7000

TARGET_SCRIPT = r'''
import socket, sys, threading
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", %(port)d)); tcp.listen(64)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", %(port)d))
def serve_udp():
    while True:
        data, peer = udp.recvfrom(2048)
        udp.sendto(("%%s:%%d" %% peer).encode(), peer)
threading.Thread(target=serve_udp, daemon=True).start()
print("ready", flush=True)
while True:
    conn, peer = tcp.accept()
    try:
        conn.sendall(("%%s\n" %% peer[0]).encode())
    except OSError:
        pass
    conn.close()
''' % {"port": TARGET_PORT}

CLIENT_SCRIPT = r'''
import json, socket
out = {}
t = socket.create_connection(("%(lb)s", %(port)d), timeout=5)
out["tcp"] = t.makefile().readline().strip()
t.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(2)
u.connect(("%(lb)s", %(port)d))
for _ in range(3):
    u.send(b"who")
    try:
        out["udp"] = u.recv(2048).decode()
        break
    except socket.timeout:
        pass
out["local"] = u.getsockname()[0]
print(json.dumps(out))
''' % {"lb": NLB_FRONT, "port": PORT}


def need():
    if os.geteuid() != 0:
        raise Skip("needs root (network namespaces, CAP_NET_ADMIN)")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            raise Skip("%s is not installed" % tool)


def veth(a, a_dev, a_ip, b, b_dev, b_ip):
    sh("ip", "link", "add", a_dev, "netns", a, "type", "veth", "peer",
       "name", b_dev, "netns", b)
    for ns, dev, ip in ((a, a_dev, a_ip), (b, b_dev, b_ip)):
        sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")


def topology():
    for ns in (CLIENT, NLB_NS, TARGET):
        netnstest.netns_add(ns)
    veth(CLIENT, "pcc%d" % PID, CLIENT_IP, NLB_NS, "pcn%d" % PID, NLB_FRONT)
    veth(NLB_NS, "pcb%d" % PID, NLB_BACK, TARGET, "pct%d" % PID, TARGET_IP)
    sh("ip", "-n", CLIENT, "route", "add", "default", "via", NLB_FRONT)
    # The target answers every client through the nlb namespace.
    sh("ip", "-n", TARGET, "route", "add", "default", "via", NLB_BACK)
    # In the nlb namespace: answers to a client's address that belong to a
    # transparent socket are marked and delivered locally.
    sh("ip", "-n", NLB_NS, "rule", "add", "fwmark", "1", "lookup", "100")
    sh("ip", "-n", NLB_NS, "route", "add", "local", "0.0.0.0/0", "dev", "lo",
       "table", "100")
    rules = ("table ip nlb {\n chain prerouting {\n"
             "  type filter hook prerouting priority mangle;\n"
             "  meta l4proto { tcp, udp } socket transparent 1 "
             "meta mark set 1\n }\n}\n")
    r = subprocess.run(["ip", "netns", "exec", NLB_NS, "nft", "-f", "-"],
                       input=rules, capture_output=True, text=True,
                       timeout=10)
    if r.returncode != 0:
        raise Skip("nft socket match unavailable: %s" % r.stderr.strip())


def teardown():
    for ns in (CLIENT, NLB_NS, TARGET):
        netnstest.netns_del(ns)


class NsNlbd(Nlbd):
    """nlbd started with `ip netns exec NS` (and an optional prefix, such
    as setpriv)."""

    def __init__(self, config, ns, prefix=()):
        super().__init__(config)
        self.ns = ns
        self.prefix = list(prefix)

    def start(self, wait_port=None, wait_host=None):
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns] + self.prefix +
            [NLBD, "-c", self.config_path], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=open(self.stderr_path, "w"))
        nlbtest._track(self)
        wait_until(lambda: "started" in self.events() or
                   self.proc.poll() is not None, what="nlbd to start")
        return self


def config(preserve):
    return ('target_groups = ( { name = "tg"; preserve_client_ip = %s;\n'
            '  health_check = { interval = "1s"; timeout = "500ms"; };\n'
            '  targets = ( { address = "%s:%d"; } ); } );\n'
            'load_balancers = ( { name = "lb"; listeners = (\n'
            '  { port = %d; protocol = "tcp_udp"; target_group = "tg";\n'
            '    bind = "%s"; idle_timeout = 5; } ); } );\n' % (
                "true" if preserve else "false", TARGET_IP, TARGET_PORT,
                PORT, NLB_FRONT))


def from_client():
    r = sh("ip", "netns", "exec", CLIENT, sys.executable, "-c",
           CLIENT_SCRIPT, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_targets_see_the_client_address():
    """Without preserve_client_ip the target sees nlb's address (TCP and
    UDP); with it, after a reload, the client's own."""
    need()
    target = None
    try:
        topology()
        target = subprocess.Popen(
            ["ip", "netns", "exec", TARGET, sys.executable, "-c",
             TARGET_SCRIPT], stdout=subprocess.PIPE, text=True)
        assert target.stdout.readline().strip() == "ready"
        with NsNlbd(config(False), NLB_NS).start() as nlbd:
            assert nlbd.proc.poll() is None, nlbd.stderr()
            seen = from_client()
            assert seen["tcp"] == NLB_BACK, seen
            assert seen["udp"].split(":")[0] == NLB_BACK, seen
            nlbd.reload(config(True))
            seen = from_client()
            assert seen["local"] == CLIENT_IP, seen
            assert seen["tcp"] == CLIENT_IP, seen
            assert seen["udp"].split(":")[0] == CLIENT_IP, seen
            print("target saw %s over TCP and %s over UDP" % (
                seen["tcp"], seen["udp"]))
    finally:
        if target:
            target.kill()
            target.wait()
        teardown()


def test_refused_without_the_capability():
    """nlbd without CAP_NET_ADMIN or CAP_NET_RAW refuses a
    preserve_client_ip group at start, naming the setting's line."""
    need()
    if shutil.which("setpriv") is None:
        raise Skip("setpriv is not installed")
    try:
        topology()
        nlbd = NsNlbd(config(True), NLB_NS, prefix=(
            "setpriv", "--inh-caps=-net_admin,-net_raw",
            "--bounding-set=-net_admin,-net_raw"))
        nlbd.start()
        status = nlbd.wait_exit(10)
        assert status != 0, status
        text = nlbd.events() + nlbd.stderr()
        assert ("nlb.cfg:3: target group \"tg\": preserve_client_ip needs "
                "CAP_NET_ADMIN or CAP_NET_RAW") in text, text
    finally:
        teardown()


if __name__ == "__main__":
    netnstest.at_exit(teardown)
    run([test_targets_see_the_client_address,
         test_refused_without_the_capability])
