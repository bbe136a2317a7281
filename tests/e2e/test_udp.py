#!/usr/bin/env python3
"""End-to-end tests of UDP listeners (issue 25): flows by 5-tuple, each
stuck to one target and spread over the group; answers from the address
the client sent to; the idle timeout ending a flow with its access-log
record; datagrams coalesced by UDP GRO leaving as the same datagrams;
bad input (empty and 65,507-byte datagrams, a target's port
unreachable, a flood of new 5-tuples); health checks steering new flows,
draining, max_flows and the UDP metrics; tcp_udp on one port; config
errors.

Real sockets on loopback: UDP targets are threads answering NAME|payload;
nlbd is the built one. Stdlib only; every test has a hard timeout
(nlbtest.run) and stops everything it started."""

import hashlib
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import netnstest  # noqa: E402
import nlbtest  # noqa: E402
from nlbtest import (NLBD, Nlbd, Server, free_port, run,  # noqa: E402
                     wait_until)


class UdpTarget(threading.Thread):
    """A UDP target: answers each datagram with NAME|payload (the payload
    alone when that would not fit in a datagram), and remembers the source
    address of each one it got."""

    def __init__(self, name, host="127.0.0.1", port=0):
        super().__init__(daemon=True)
        self.name = name
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.host = host
        self.sources = []
        self.payloads = []
        self.lock = threading.Lock()
        self.running = True
        nlbtest._track(self)
        self.start()

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def run(self):
        while self.running:
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            try:
                data, source = self.sock.recvfrom(70000)
            except OSError:
                continue
            with self.lock:
                self.sources.append(source)
                self.payloads.append(data)
            answer = self.name.encode() + b"|" + data
            if len(answer) > 65507:
                answer = data
            try:
                self.sock.sendto(answer, source)
            except OSError:
                pass

    def seen(self):
        with self.lock:
            return list(self.sources)

    def stop(self):
        self.running = False
        self.join(2)
        self.sock.close()
        nlbtest._untrack(self)


def udp_free_port(host="127.0.0.1"):
    """A port free for both TCP and UDP now (for tcp_udp listeners)."""
    for _ in range(50):
        port = free_port(host)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((host, port))
            return port
        except OSError:
            continue
    raise AssertionError("no port free for TCP and UDP")


def client(host, port, timeout=2.0):
    """A UDP client socket connected to host:port: it only takes answers
    whose source is exactly that address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def ask(sock, payload, tries=3):
    """Sends payload and returns the answer, sending again if an answer is
    lost (a datagram may be dropped under load)."""
    for attempt in range(tries):
        sock.send(payload)
        try:
            return sock.recv(70000)
        except socket.timeout:
            if attempt == tries - 1:
                raise
    return None


def udp_config(port, targets, protocol="udp", bind="127.0.0.1", extra_lb="",
               extra_tg="", top=""):
    return (top +
            'target_groups = ( { name = "tg"; deregistration_delay = 1;\n'
            '  %s\n  targets = ( %s ); } );\n'
            'load_balancers = ( { name = "lb"; listeners = (\n'
            '  { port = %d; protocol = "%s"; target_group = "tg";\n'
            '    bind = "%s"; %s } ); } );\n' % (
                extra_tg,
                ", ".join('{ address = "%s"; }' % t for t in targets), port,
                protocol, bind, extra_lb))


def udp_fields(line):
    """key=value fields of a text access-log line."""
    return dict(re.findall(r"(\w+)=(\S+)", line))


# ---- flows ------------------------------------------------------------------

def test_udp_flows_stick_to_a_target_and_spread():
    """Every datagram of a flow reaches one target (from one source port:
    the flow's socket), and 60 flows spread over the three targets."""
    targets = [UdpTarget("t%d" % i) for i in range(3)]
    port = free_port()
    with Nlbd(udp_config(port, [t.address for t in targets])).start():
        clients = [client("127.0.0.1", port) for _ in range(60)]
        names_by_client = []
        for c in clients:
            names = set()
            for i in range(4):
                answer = ask(c, b"ping %d" % i)
                names.add(answer.split(b"|")[0])
            names_by_client.append(names)
        for names in names_by_client:
            assert len(names) == 1, names
        used = set().union(*names_by_client)
        assert len(used) >= 2, used
        # A flow reaches its target from one socket of its own.
        sources = [s for t in targets for s in t.seen()]
        assert len(set(sources)) == 60, len(set(sources))
        for c in clients:
            c.close()


def test_udp_answers_leave_from_the_address_sent_to():
    """A wildcard listener answers from the address each client sent to
    (IP_PKTINFO): a client connected to 127.0.0.2 or 127.0.0.3 takes only
    answers from that address, and gets them."""
    target = UdpTarget("t")
    port = free_port()
    with Nlbd(udp_config(port, [target.address], bind="0.0.0.0")).start():
        for host in ("127.0.0.2", "127.0.0.3", "127.0.0.1"):
            c = client(host, port)
            assert ask(c, b"hi") == b"t|hi"
            c.close()


def test_udp_over_ipv6():
    """IPv6 listeners, a wildcard one answering from the address sent to
    (IPV6_PKTINFO), and an IPv6 target."""
    if not socket.has_ipv6:
        raise nlbtest.Skip("no IPv6")
    target = UdpTarget("t6", host="::1")
    port = free_port("::1")
    for bind in ("::1", "::"):
        config = udp_config(port, ["[::1]:%d" % target.port], bind=bind)
        with Nlbd(config).start():
            c = client("::1", port)
            assert ask(c, b"six") == b"t6|six"
            assert ask(c, b"") == b"t6|"
            c.close()


def test_udp_idle_timeout_ends_the_flow_with_a_record():
    """A flow ends after the listener's idle_timeout without datagrams,
    with one access-log line: proto=udp, datagrams and bytes each way; the
    client's next datagram makes a new flow (JSON too)."""
    target = UdpTarget("t")
    port = free_port()
    config = udp_config(port, [target.address], extra_lb='idle_timeout = 1;')
    with Nlbd(config).start() as nlbd:
        c = client("127.0.0.1", port)
        sent = time.monotonic()
        assert ask(c, b"abc") == b"t|abc"
        assert ask(c, b"") == b"t|"
        assert ask(c, b"0123456789") == b"t|0123456789"
        lines = nlbd.wait_access(1, timeout=10)
        ended = time.monotonic()
        fields = udp_fields(lines[0])
        assert fields["proto"] == "udp", lines[0]
        assert fields["end"] == "idle_timeout", lines[0]
        assert fields["datagrams_up"] == "3", lines[0]
        assert fields["datagrams_down"] == "3", lines[0]
        assert fields["up"] == "13", lines[0]
        assert fields["down"] == str(13 + 3 * 2), lines[0]
        assert fields["connect"] == "-", lines[0]
        assert int(fields["duration"]) >= 1000, lines[0]
        assert ended - sent < 5, ended - sent
        assert " 127.0.0.1:%d -> %s " % (c.getsockname()[1],
                                         target.address) in lines[0]
        # The same 5-tuple again: a new flow.
        assert ask(c, b"again") == b"t|again"
        lines = nlbd.wait_access(2, timeout=10)
        assert udp_fields(lines[1])["datagrams_up"] == "1", lines[1]
        c.close()
    import json
    with Nlbd(config, access_format="json").start() as nlbd:
        c = client("127.0.0.1", port)
        assert ask(c, b"abc") == b"t|abc"
        record = json.loads(nlbd.wait_access(1, timeout=10)[0])
        assert record["proto"] == "udp" and record["end"] == "idle_timeout"
        assert record["datagrams_up"] == 1 and record["datagrams_down"] == 1
        assert record["up"] == 3 and record["connect"] is None, record
        c.close()


# ---- bad input ----------------------------------------------------------------

def test_udp_empty_and_largest_datagrams_pass_whole():
    """An empty datagram is forwarded as an empty datagram, a 65,507-byte
    one whole, both ways."""
    target = UdpTarget("t")
    port = free_port()
    with Nlbd(udp_config(port, [target.address])).start():
        c = client("127.0.0.1", port)
        assert ask(c, b"") == b"t|"
        assert target.payloads[-1] == b""
        big = bytes(range(256)) * 255 + b"x" * (65507 - 256 * 255)
        assert len(big) == 65507
        answer = ask(c, big)
        assert target.payloads[-1] == big
        assert answer == big, len(answer)
        c.close()


def test_udp_bursts_arrive_whole_and_one_by_one():
    """A burst of one flow's datagrams (which nlbd may send on as one UDP
    GSO send, both ways) reaches the target and comes back as as many
    datagrams, each whole, the last shorter one too."""
    target = UdpTarget("t")
    port = free_port()
    with Nlbd(udp_config(port, [target.address])).start():
        c = client("127.0.0.1", port)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        assert ask(c, b"warm") == b"t|warm"
        sent = [b"%04d" % i + b"." * 196 for i in range(59)] + [b"last"]
        for payload in sent:
            c.send(payload)
        got = []
        try:
            while len(got) < len(sent):
                got.append(c.recv(70000))
        except socket.timeout:
            pass
        # Loopback may drop a datagram under load; none may be merged,
        # cut or changed.
        assert len(got) >= len(sent) * 0.9, len(got)
        assert set(got) <= {b"t|" + p for p in sent}, got[:3]
        c.close()


UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)


def send_coalesced(sock, datagrams, address=None):
    """Sends datagrams (all of one size but the last, no larger) as one UDP
    GSO send: on loopback they stay one packet up to the receiving socket,
    which takes them as one read if it asked for UDP GRO, or cut back into
    the datagrams if not."""
    control = [(socket.SOL_UDP, UDP_SEGMENT,
                len(datagrams[0]).to_bytes(2, sys.byteorder))]
    if address is None:
        sock.sendmsg([b"".join(datagrams)], control)
    else:
        sock.sendmsg([b"".join(datagrams)], control, 0, address)


def test_udp_coalesced_datagrams_keep_their_boundaries():
    """A flow's datagrams that reach nlbd coalesced in one read (UDP GRO on
    its listener and its flow's socket; a GSO send on loopback arrives so)
    leave as the same datagrams, in order, each whole, the shorter last one
    too, both ways; /metrics counts them as coalesced."""
    target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target.bind(("127.0.0.1", 0))
    target.settimeout(5)
    port, api_port = free_port(), free_port()
    config = api_config(api_port) + udp_config(
        port, ["127.0.0.1:%d" % target.getsockname()[1]])
    with Nlbd(config).start():
        c = client("127.0.0.1", port, timeout=5)
        up = [b"%03d" % i + bytes([i]) * 297 for i in range(20)] + [b"end"]
        send_coalesced(c, up)
        got, source = [], None
        while len(got) < len(up):
            data, source = target.recvfrom(70000)
            got.append(data)
        assert got == up, [len(g) for g in got]
        down = [b"%03d" % i + bytes([i]) * 246 for i in range(10)] + [b"z"]
        send_coalesced(target, down, source)
        answers = [c.recv(70000) for _ in down]
        assert answers == down, [len(a) for a in answers]
        m = metrics(api_port)
        assert m['nlb_udp_datagrams_total{direction="up"}'] == len(up), m
        assert m['nlb_udp_datagrams_total{direction="down"}'] == len(down), m
        assert m['nlb_udp_bytes_total{direction="up"}'] == sum(
            map(len, up)), m
        # Where the kernel has UDP GRO (Linux 5.0 on), they came
        # coalesced; nlbd cut them back all the same.
        assert m['nlb_udp_coalesced_datagrams_total{direction="up"}'] == \
            len(up), m
        assert m['nlb_udp_coalesced_datagrams_total{direction="down"}'] == \
            len(down), m
        c.close()
    target.close()


class NsNlbd(Nlbd):
    """nlbd started with `ip netns exec NS`."""

    def __init__(self, config, ns):
        super().__init__(config)
        self.ns = ns

    def start(self):
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, NLBD, "-c", self.config_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.stderr_path, "w"))
        nlbtest._track(self)
        wait_until(lambda: "started" in self.events() or
                   self.proc.poll() is not None, what="nlbd to start")
        assert self.proc.poll() is None, self.stderr()
        return self


def test_udp_coalesced_datagrams_over_the_mtu_go_one_by_one():
    """Datagrams a flow sent coalesced (one GSO send; nlbd takes them with
    UDP GRO) that are larger than the MTU of the device towards the target
    (a veth in namespaces of the test's own): the kernel refuses them as
    one GSO send (EMSGSIZE), so nlbd sends them one by one, each
    fragmented and whole at the target, none lost, and keeps GSO for what
    fits (the answers); the same datagrams both ways."""
    if os.geteuid() != 0:
        raise nlbtest.Skip("namespaces need root")
    nlb_ns, target_ns = netnstest.name("ugn"), netnstest.name("ugt")
    nlb_dev, target_dev = "ugn%d" % os.getpid(), "ugt%d" % os.getpid()
    try:
        netnstest.netns_add(nlb_ns)
        netnstest.netns_add(target_ns)
        netnstest.sh("ip", "link", "add", nlb_dev, "netns", nlb_ns, "type",
                     "veth", "peer", "name", target_dev, "netns", target_ns)
        for ns, dev, ip in ((nlb_ns, nlb_dev, "10.78.0.1"),
                            (target_ns, target_dev, "10.78.0.2")):
            netnstest.sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev",
                         dev)
            netnstest.sh("ip", "-n", ns, "link", "set", dev, "up")
        netnstest.sh("ip", "-n", nlb_ns, "link", "set", nlb_dev, "mtu",
                     "1000")

        def bound():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("10.78.0.2", 7000))
            s.settimeout(5)
            return s
        target = netnstest.in_netns(target_ns, bound)
        port = 5301
        with NsNlbd(udp_config(port, ["10.78.0.2:7000"]), nlb_ns) as nlbd:
            nlbd.start()
            c = netnstest.in_netns(
                nlb_ns, lambda: client("127.0.0.1", port, timeout=5))
            up = [b"%03d" % i + bytes([i]) * 1197 for i in range(20)]
            up.append(b"end")
            send_coalesced(c, up)
            got, source = [], None
            try:
                while len(got) < len(up):
                    data, source = target.recvfrom(70000)
                    got.append(data)
            except socket.timeout:
                raise AssertionError("the target got %s" % [
                    len(g) for g in got])
            assert got == up, [len(g) for g in got]
            # Under the MTU: the veth takes it as one packet.
            down = [b"%03d" % i + bytes([i]) * 897 for i in range(10)]
            down.append(b"z")
            send_coalesced(target, down, source)
            answers = [c.recv(70000) for _ in down]
            assert answers == down, [len(a) for a in answers]
            assert "UDP GSO refused" not in nlbd.events(), nlbd.events()
            c.close()
        target.close()
    finally:
        netnstest.netns_del(nlb_ns)
        netnstest.netns_del(target_ns)


def test_udp_target_port_unreachable_ends_the_flow():
    """A target whose port is closed answers ICMP port unreachable: the
    flow ends (end=target_reset), as NGINX's stream proxy ends its UDP
    session on an upstream error; the next datagram makes a new flow."""
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    dead_address = "127.0.0.1:%d" % dead.getsockname()[1]
    dead.close()  # nothing listens there now: port unreachable
    port = free_port()
    with Nlbd(udp_config(port, [dead_address])).start() as nlbd:
        c = client("127.0.0.1", port)
        for _ in range(3):
            c.send(b"anyone?")
            time.sleep(0.05)
        lines = nlbd.wait_access(1, timeout=5)
        assert udp_fields(lines[0])["end"] == "target_reset", lines[0]
        assert udp_fields(lines[0])["proto"] == "udp", lines[0]
        c.close()


# ---- health, draining, bounds, metrics ----------------------------------------

OPS_TOKEN = "udp-ops-token"


def api_config(api_port):
    import hashlib
    return ('api = { listen = "127.0.0.1:%d"; };\n'
            'registry = { path = "%s/registry.db"; };\n'
            'principals = ( { name = "ops"; role = "operator"; '
            'token_sha256 = "%s"; } );\n' % (
                api_port, tempfile.mkdtemp(prefix="nlbtest-udp-"),
                hashlib.sha256(OPS_TOKEN.encode()).hexdigest()))


def metrics(api_port):
    """{(name, labels text): value} of /metrics."""
    status, text = nlbtest.api_request(api_port, "GET", "/metrics",
                                       OPS_TOKEN)
    assert status == 200, (status, text)
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def sanitized():
    """Whether nlbd was built with AddressSanitizer."""
    with open(NLBD, "rb") as f:
        return b"__asan_init" in f.read()


def name_of(sock):
    return ask(sock, b"who").split(b"|")[0].decode()


def test_udp_health_check_failure_steers_new_flows():
    """UDP targets checked over TCP on another port (health_check.port): a
    target whose check fails gets no new flow; the flows it had go on."""
    hosts = ["127.0.0.11", "127.0.0.12"]
    port = free_port()
    health_port = free_port()
    targets = [UdpTarget(h, host=h, port=0) for h in hosts]
    by_host = {h: Server(lambda conn: None, port=health_port, host=h)
               for h in hosts}
    health = ('health_check = { protocol = "tcp"; port = %d; '
              'interval = "200ms"; timeout = "150ms"; healthy_threshold = 2; '
              'unhealthy_threshold = 2; };' % health_port)
    config = udp_config(port, [t.address for t in targets], extra_tg=health)
    with Nlbd(config).start() as nlbd:
        wait_until(lambda: nlbd.events().count("-> healthy") >= 2,
                   timeout=10, what="both targets healthy")
        clients = [client("127.0.0.1", port) for _ in range(40)]
        before = [name_of(c) for c in clients]
        assert set(before) == set(hosts), set(before)
        by_host["127.0.0.11"].stop()
        wait_until(lambda: "127.0.0.11:%d state healthy -> unhealthy" %
                   targets[0].port in nlbd.events(), timeout=10,
                   what="the first target unhealthy")
        # The new state reaches the workers in their next snapshot: wait
        # until ten new flows in a row avoid the first target (by chance:
        # one in a thousand).
        probes = []

        def steered():
            batch = [client("127.0.0.1", port) for _ in range(10)]
            probes.extend(batch)
            return {name_of(c) for c in batch} == {"127.0.0.12"}
        wait_until(steered, timeout=10, interval=0.05,
                   what="new flows steered off the first target")
        fresh = [client("127.0.0.1", port) for _ in range(40)]
        assert {name_of(c) for c in fresh} == {"127.0.0.12"}
        # Flows already on the unhealthy target stay there.
        assert [name_of(c) for c in clients] == before
        for c in clients + fresh + probes:
            c.close()


def test_udp_draining_target_ends_its_flows_at_the_deadline():
    """A target removed by a reload drains: no new flows, and its flows
    end at the end of deregistration_delay (end=deregistered)."""
    targets = [UdpTarget("a", host="127.0.0.21"),
               UdpTarget("b", host="127.0.0.22")]
    port = free_port()
    both = udp_config(port, [t.address for t in targets],
                      extra_lb="idle_timeout = 60;")
    only_b = udp_config(port, [targets[1].address],
                        extra_lb="idle_timeout = 60;")
    with Nlbd(both).start() as nlbd:
        on_a = None
        for _ in range(60):
            c = client("127.0.0.1", port)
            if name_of(c) == "a":
                on_a = c
                break
            c.close()
        assert on_a is not None, "no flow reached target a"
        nlbd.reload(only_b)
        lines = nlbd.wait_access(1, timeout=10)
        fields = udp_fields(lines[0])
        assert fields["end"] == "deregistered", lines[0]
        assert targets[0].address in lines[0], lines[0]
        for _ in range(20):
            c = client("127.0.0.1", port)
            assert name_of(c) == "b"
            c.close()
        on_a.close()


def test_udp_flood_of_new_tuples_is_bounded_and_counted():
    """max_flows counts UDP flows: past it a new 5-tuple's datagram is
    dropped (no_flow_slot, flows_refused, said once), the table and the
    memory stop growing, and the UDP metrics say what moved."""
    target = UdpTarget("t")
    port, api_port = free_port(), free_port()
    config = (api_config(api_port) + "max_flows = 50;\n" +
              udp_config(port, [target.address],
                         extra_lb="idle_timeout = 3600;"))
    # The flows of the first flood must outlive the whole test (a slow,
    # sanitized run included): an idle timeout far past its hard timeout.
    with Nlbd(config).start() as nlbd:
        def placed():
            m = metrics(api_port)
            return (m.get('nlb_udp_drops_total{reason="no_flow_slot"}', 0) +
                    m.get("nlb_udp_flows", 0))

        def flood(n):
            """n new 5-tuples, 100 at a time: a burst larger than the
            listener's socket buffer would be dropped by the kernel before
            nlbd sees it."""
            socks = []
            for start in range(0, n, 100):
                target_count = placed() + min(100, n - start)
                for _ in range(min(100, n - start)):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.connect(("127.0.0.1", port))
                    s.send(b"x" * 10)
                    socks.append(s)
                wait_until(lambda: placed() >= target_count, timeout=10,
                           what="%d datagrams placed or dropped" %
                           target_count)
            return socks
        started = time.monotonic()
        first = flood(600)
        # A flow is counted when made and its datagram a moment later, when
        # sent: a worker preempted in between (a loaded machine) shows the
        # first without the second, so wait for the datagrams.
        wait_until(lambda: metrics(api_port).get(
            'nlb_udp_datagrams_total{direction="up"}') == 50, timeout=5,
            what="50 datagrams up")
        m = metrics(api_port)
        assert m["nlb_udp_flows"] == 50, m["nlb_udp_flows"]
        assert m["nlb_flows_active"] == 50, m["nlb_flows_active"]
        assert m['nlb_udp_drops_total{reason="no_flow_slot"}'] == 550, m
        assert m["nlb_flows_refused_total"] == 550, m
        assert m['nlb_udp_datagrams_total{direction="up"}'] == 50, m
        assert m['nlb_udp_bytes_total{direction="up"}'] == 500, m
        wait_until(lambda: metrics(api_port).get(
            'nlb_udp_datagrams_total{direction="down"}') == 50, timeout=5,
            what="50 answers")
        rss = nlbd.rss_kib()
        second = flood(3000)
        assert metrics(api_port)[
            'nlb_udp_drops_total{reason="no_flow_slot"}'] == 550 + 3000
        grown = nlbd.rss_kib() - rss
        # 3,000 flows would take about 1 MiB. (A sanitizer build's
        # quarantine and shadow memory move RSS by more than that.)
        if not sanitized():
            assert grown < 1024, "RSS grew %d KiB past the bound" % grown
        assert metrics(api_port)["nlb_udp_flows"] == 50
        # Said once a minute at most: once, unless this run was slow
        # enough to span another minute.
        said = nlbd.events().count("refusing new flows")
        allowed = 1 + int((time.monotonic() - started) // 60)
        assert 1 <= said <= allowed, (said, allowed, nlbd.events())
        for s in first + second:
            s.close()


# ---- tcp_udp ------------------------------------------------------------------

def test_tcp_udp_listens_for_both_on_one_port():
    """protocol = "tcp_udp": one port, a TCP relay and UDP flows to the
    same group; with maglev a client's TCP and UDP flows reach the same
    target; each flow kind logs its own lines. A reload from "tcp" to
    "tcp_udp" keeps the TCP socket and adds the UDP one."""
    hosts = ["127.0.0.31", "127.0.0.32"]
    target_port = udp_free_port(hosts[0])
    for h in hosts[1:]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((h, target_port))
    tcp = [Server(nlbtest.named_handler(h), port=target_port, host=h)
           for h in hosts]
    udp = [UdpTarget(h, host=h, port=target_port) for h in hosts]
    port = udp_free_port()
    addresses = ["%s:%d" % (h, target_port) for h in hosts]
    with Nlbd(udp_config(port, addresses, protocol="tcp",
                         extra_lb="idle_timeout = 1;")).start(
            wait_port=port) as nlbd:
        c = client("127.0.0.1", port, timeout=0.5)
        c.send(b"nobody")
        try:
            c.recv(100)
            raise AssertionError("a UDP answer from a tcp listener")
        except (socket.timeout, ConnectionRefusedError):
            pass
        c.close()
        nlbd.reload(udp_config(port, addresses, protocol="tcp_udp",
                               extra_lb="idle_timeout = 1;"))
        assert "listener lb:%d (udp) open" % port in nlbd.events()
        assert nlbd.events().count("listener lb:%d (tcp) open" % port) == 1
        same = 0
        for i in range(20):
            t = socket.create_connection(("127.0.0.1", port), timeout=5)
            local = t.getsockname()
            tcp_name = nlbtest.recv_line(t).strip()
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.settimeout(2)
            u.bind(local)  # the same address and port as the TCP flow
            u.connect(("127.0.0.1", port))
            udp_name = ask(u, b"who").split(b"|")[0].decode()
            assert tcp_name in hosts and udp_name in hosts
            same += tcp_name == udp_name
            t.close()
            u.close()
        assert same == 20, same
        # The UDP flows end a second after their datagram; the probe of
        # start(wait_port=...) is a TCP line too, so 40 lines may come
        # before the last UDP one: wait for the 20 UDP lines themselves.
        lines = wait_until(
            lambda: sum("proto=udp" in l for l in nlbd.access()) >= 20 and
            nlbd.access(), timeout=10, what="20 UDP access-log lines")
        assert sum("proto=udp" in l for l in lines) == 20, lines
        assert sum("proto=udp" not in l for l in lines) >= 20, lines
    for s in tcp:
        s.stop()


# ---- config -----------------------------------------------------------------

def test_udp_bad_protocol_name_is_refused_with_its_line():
    """protocol = "sctp" fails at load with FILE:LINE naming the valid
    names."""
    directory = tempfile.mkdtemp(prefix="nlbtest-udp-")
    path = os.path.join(directory, "bad.cfg")
    with open(path, "w") as f:
        f.write('target_groups = ( { name = "tg"; } );\n'
                'load_balancers = ( { name = "lb"; listeners = (\n'
                '  { port = 53; target_group = "tg";\n'
                '    protocol = "sctp"; } ); } );\n')
    p = subprocess.run([NLBD, "-t", "-c", path], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert ('%s:4: unknown protocol "sctp" (valid: tcp, udp, tcp_udp, tls, tls_passthrough)' %
            path) in p.stderr, p.stderr


def test_udp_with_proxy_protocol_is_refused():
    """A UDP (or tcp_udp) listener whose group sends PROXY v2 headers is
    refused: a datagram has no stream to put one in front of."""
    directory = tempfile.mkdtemp(prefix="nlbtest-udp-")
    path = os.path.join(directory, "bad.cfg")
    with open(path, "w") as f:
        f.write('target_groups = ( { name = "tg"; proxy_protocol = "v2"; '
                '} );\n'
                'load_balancers = ( { name = "lb"; listeners = (\n'
                '  { port = 53; target_group = "tg"; protocol = "tcp_udp"; '
                '} ); } );\n')
    p = subprocess.run([NLBD, "-t", "-c", path], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert ('%s:3: listener on port 53: protocol "tcp_udp" carries UDP, '
            'which cannot start with a PROXY v2 header' % path) in p.stderr, \
        p.stderr


def test_preserve_client_ip_where_it_cannot_work_is_refused():
    """preserve_client_ip on a group whose target lies inside a consumer
    network's range: the target would answer those clients directly, so
    the config is refused at the setting's line."""
    directory = tempfile.mkdtemp(prefix="nlbtest-udp-")
    path = os.path.join(directory, "bad.cfg")
    with open(path, "w") as f:
        f.write('networks = ( { name = "shop-vpc";\n'
                '  range = "10.1.0.0/24"; } );\n'
                'target_groups = ( { name = "tg";\n'
                '  preserve_client_ip = true;\n'
                '  targets = ( { address = "10.1.0.5:53"; } ); } );\n'
                'load_balancers = ( { name = "lb"; listeners = (\n'
                '  { port = 53; target_group = "tg"; protocol = "udp"; } ); '
                '} );\n')
    p = subprocess.run([NLBD, "-t", "-c", path], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert ('%s:4: target group "tg": preserve_client_ip cannot work for '
            'target 10.1.0.5:53: it is inside network "shop-vpc" '
            '(10.1.0.0/24, line 1)' % path) in p.stderr, p.stderr


def test_preserve_client_ip_where_it_cannot_work_is_refused_by_the_api():
    """The same rule for what the API adds: a target registered in a
    preserve_client_ip group inside a network's range (the config's or one
    made through the API), and a network made through the API whose range
    holds such a target (configured or registered), are refused with 409
    InvalidState naming both; a group without the setting, and ranges
    apart, are not."""
    if os.geteuid() != 0:
        raise nlbtest.Skip("preserve_client_ip needs CAP_NET_ADMIN (root)")
    port, api = free_port(), free_port()
    d = Nlbd("", workers=1)
    d.write_config(
        'api = { listen = "127.0.0.1:%d"; };\n'
        'registry = { path = "%s"; };\n'
        'principals = ( { name = "ops"; role = "operator";\n'
        '  token_sha256 = "%s"; } );\n'
        'networks = ( { name = "shop-vpc"; range = "10.1.0.0/24"; } );\n'
        'target_groups = (\n'
        '  { name = "tg"; preserve_client_ip = true;\n'
        '    targets = ( { address = "10.2.0.5:53"; } ); },\n'
        '  { name = "plain"; } );\n'
        'load_balancers = ( { name = "lb"; listeners = (\n'
        '  { port = %d; bind = "127.0.0.1"; protocol = "udp";\n'
        '    target_group = "tg"; } ); } );\n'
        % (api, os.path.join(d.dir, "registry.db"),
           hashlib.sha256(b"ops-token").hexdigest(), port))

    def call(method, path, body):
        return nlbtest.api_request(api, method, path, "ops-token", body)

    def refused(answer, *words):
        status, body = answer
        assert status == 409, answer
        assert body["error"]["code"] == "InvalidState", answer
        message = body["error"]["message"]
        for word in ("preserve_client_ip cannot work",) + words:
            assert word in message, (word, message)

    with d:
        d.start()
        wait_until(lambda: call("GET", "/v1/whoami", None)[0] == 200,
                   what="the API")
        # Inside the config's network.
        refused(call("POST", "/v1/target-groups/tg/targets",
                     {"address": "10.1.0.7:53"}),
                "target 10.1.0.7:53 of target group tg",
                "inside network shop-vpc (10.1.0.0/24)")
        assert call("POST", "/v1/target-groups/plain/targets",
                    {"address": "10.1.0.7:53"})[0] == 201
        # A network holding the configured target.
        refused(call("POST", "/v1/networks",
                     {"name": "lab", "range": "10.2.0.0/16"}),
                "target 10.2.0.5:53 of target group tg",
                "inside network lab (10.2.0.0/16)")
        # A target inside a network the API made.
        assert call("POST", "/v1/networks",
                    {"name": "lab", "range": "10.3.0.0/24"})[0] == 201
        refused(call("POST", "/v1/target-groups/tg/targets",
                     {"address": "10.3.0.9:53"}),
                "target 10.3.0.9:53", "inside network lab (10.3.0.0/24)")
        # A network holding a registered target.
        assert call("POST", "/v1/target-groups/tg/targets",
                    {"address": "10.4.0.9:53"})[0] == 201
        refused(call("POST", "/v1/networks",
                     {"name": "lab2", "range": "10.4.0.0/24"}),
                "target 10.4.0.9:53 of target group tg",
                "inside network lab2 (10.4.0.0/24)")
        assert call("POST", "/v1/networks",
                    {"name": "lab2", "range": "10.5.0.0/24"})[0] == 201
        status, groups = call("GET", "/v1/target-groups/tg", None)
        assert status == 200, groups
        assert sorted(t["address"] for t in groups["targets"]) == [
            "10.2.0.5:53", "10.4.0.9:53"], groups


if __name__ == "__main__":
    run([test_udp_flows_stick_to_a_target_and_spread,
         test_udp_answers_leave_from_the_address_sent_to,
         test_udp_over_ipv6,
         test_udp_idle_timeout_ends_the_flow_with_a_record,
         test_udp_empty_and_largest_datagrams_pass_whole,
         test_udp_bursts_arrive_whole_and_one_by_one,
         test_udp_coalesced_datagrams_keep_their_boundaries,
         test_udp_coalesced_datagrams_over_the_mtu_go_one_by_one,
         test_udp_target_port_unreachable_ends_the_flow,
         test_udp_health_check_failure_steers_new_flows,
         test_udp_draining_target_ends_its_flows_at_the_deadline,
         test_udp_flood_of_new_tuples_is_bounded_and_counted,
         test_tcp_udp_listens_for_both_on_one_port,
         test_udp_bad_protocol_name_is_refused_with_its_line,
         test_udp_with_proxy_protocol_is_refused,
         test_preserve_client_ip_where_it_cannot_work_is_refused,
         test_preserve_client_ip_where_it_cannot_work_is_refused_by_the_api])
