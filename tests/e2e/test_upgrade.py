#!/usr/bin/env python3
"""End to end, issue 26: `nlbd -s upgrade`, a binary upgrade by socket
hand-over.

nlbd runs from a copy of the built binary in a temporary directory (the
"installed" binary a package would replace: a file renamed over it). A
connect probe every 10 ms (connect, one echoed line, close) against a
balancer listener and, as root, an endpoint listener and the DNS
responder (TCP) in a consumer's network namespace sees no refused or
failed connection across an upgrade (and the responder answers UDP and TCP
after it);
50 long flows keep echoing through it and end by themselves; the API
answers and writes on the new process; a failing new binary (a script, a
config it refuses, an address it cannot bind, one that hangs) leaves the
old one serving and the command exits 1 with its error; a second upgrade
while one runs is refused; an old nlbd killed mid-way leaves the new one
serving; a run directory another nlbd holds is refused; PostgreSQL's node
name passes over; systemd hears the new main pid.
test_restart_versus_upgrade prints the probe's figures for a plain
restart (SIGTERM, then a new nlbd) and an upgrade, side by side."""

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nlbtest import (NLBD, Nlbd, Server, Skip, api_request,  # noqa: E402
                     echo_handler, free_port, recv_line, run, wait_until)

PID = os.getpid()
OPS = "ops-token-upgrade"
PROVIDER = "payments-token-upgrade"
CONSUMER = "shop-token-upgrade"
ENDPOINT_ADDRESS = "127.100.0.5"
DNS_ADDRESS = "127.100.0.53"  # the namespace's DNS responder
PROBE_EVERY_S = 0.010
# What ASan, LSan and UBSan print (a --enable-sanitizers build).
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:")


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def config(d, api_port, lb_port, backend, netns=None, registry=None):
    network = ""
    if netns:
        network = ('dns = { zone = "nlb.internal"; };\n'
                   'networks = ( { name = "net-a"; netns = "%s"; '
                   'range = "127.100.0.0/24"; principals = [ "shop" ]; '
                   'dns = "%s"; } );\n' % (netns, DNS_ADDRESS))
    return ('shutdown_timeout = "20s";\n'
            'api = { listen = "127.0.0.1:%d"; };\n'
            'registry = { %s };\n'
            'principals = (\n'
            ' { name = "ops"; role = "operator"; token_sha256 = "%s"; },\n'
            ' { name = "payments"; role = "provider"; token_sha256 = "%s"; },\n'
            ' { name = "shop"; role = "consumer"; token_sha256 = "%s"; } );\n'
            '%s'
            'target_groups = ( { name = "tg"; health_check = { protocol = '
            '"tcp"; interval = "500ms"; timeout = "400ms"; };\n'
            '  targets = ( { address = "%s"; } ); } );\n'
            'load_balancers = ( { name = "lb"; listeners = ( { port = %d; '
            'target_group = "tg"; bind = "127.0.0.1"; idle_timeout = "60s"; '
            '} ); } );\n'
            % (api_port, registry or 'path = "%s/registry.db";' % d, sha(OPS), sha(PROVIDER), sha(CONSUMER), network,
               backend, lb_port))


class Installed(Nlbd):
    """nlbd run from a copy of the binary (bin/nlbd in its directory) with
    a run directory; knows the pid that serves now (nlbd.pid)."""

    def __init__(self, body):
        super().__init__(body)
        self.run_dir = os.path.join(self.dir, "run")
        os.mkdir(self.run_dir)
        self.bin_dir = os.path.join(self.dir, "bin")
        os.mkdir(self.bin_dir)
        self.binary = os.path.join(self.bin_dir, "nlbd")
        self.install(NLBD)
        self.pids = []

    def install(self, source):
        """Puts source at self.binary as a package does: a new file renamed
        over the old one (the running binary cannot be written)."""
        tmp = self.binary + ".new"
        shutil.copy(source, tmp)
        os.chmod(tmp, 0o755)
        os.rename(tmp, self.binary)

    def install_script(self, text):
        tmp = self.binary + ".new"
        with open(tmp, "w") as f:
            f.write("#!/bin/sh\n" + text)
        os.chmod(tmp, 0o755)
        os.rename(tmp, self.binary)

    def start(self, wait_port=None, wait_host="127.0.0.1"):
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        before = self.events().count("accepting after")
        self.proc = subprocess.Popen(
            [self.binary, "-c", self.config_path, "--run-dir", self.run_dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.stderr_path, "a"),
            env=dict(os.environ, **self.extra_env))
        self.pids.append(self.proc.pid)
        wait_until(lambda: self.events().count("accepting after") > before or
                   self.proc.poll() is not None, what="nlbd to accept")
        assert self.proc.poll() is None, self.stderr()
        return self

    def serving_pid(self):
        with open(os.path.join(self.run_dir, "nlbd.pid")) as f:
            return int(f.read())

    def upgrade(self, timeout=90):
        r = subprocess.run([NLBD, "-s", "upgrade", "--run-dir", self.run_dir],
                           capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout + r.stderr

    def stop_all(self):
        """Every nlbd this started (the upgraded ones are not our
        children): SIGTERM, then SIGKILL."""
        pids = set(self.pids)
        try:
            pids.add(self.serving_pid())
        except (OSError, ValueError):
            pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        for pid in pids:
            while time.monotonic() < deadline and alive(pid):
                time.sleep(0.05)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.proc and self.proc.poll() is None:
            self.proc.wait(5)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Probe(threading.Thread):
    """Every 10 ms a connection, one echoed line, a close; counts attempts,
    refusals and other failures. connect() makes the socket (in a
    namespace, for an endpoint)."""

    def __init__(self, name, connect, echo=True):
        super().__init__(daemon=True)
        self.name = name
        self.connect = connect
        self.echo = echo
        self.attempted = self.refused = self.failed = 0
        self.errors = []
        self.running = True
        self.start()

    def run(self):
        while self.running:
            self.attempted += 1
            try:
                s = self.connect()
                try:
                    s.settimeout(5)
                    if self.echo:
                        s.sendall(b"probe\n")
                        if recv_line(s) != "probe\n":
                            raise OSError("no echo")
                finally:
                    s.close()
            except ConnectionRefusedError as e:
                self.refused += 1
                self.errors.append(repr(e))
            except OSError as e:
                self.failed += 1
                self.errors.append(repr(e))
            time.sleep(PROBE_EVERY_S)

    def stop(self):
        self.running = False
        self.join(10)
        return self

    def figures(self):
        return "%s: %d connects attempted, %d refused, %d failed otherwise" % (
            self.name, self.attempted, self.refused, self.failed)


def tcp_connect(port):
    return lambda: socket.create_connection(("127.0.0.1", port), 5)


class LongFlows(threading.Thread):
    """n flows that each echo a line every 100 ms until told to end, then
    close by themselves; any error is kept."""

    def __init__(self, port, n=50):
        super().__init__(daemon=True)
        self.socks = [socket.create_connection(("127.0.0.1", port), 5)
                      for _ in range(n)]
        self.errors = []
        self.rounds = 0
        self.ending = False
        self.start()

    def run(self):
        while not self.ending:
            for i, s in enumerate(self.socks):
                try:
                    s.settimeout(5)
                    s.sendall(b"flow %d\n" % i)
                    if recv_line(s) != "flow %d\n" % i:
                        raise OSError("flow %d: no echo" % i)
                except OSError as e:
                    self.errors.append(repr(e))
                    self.ending = True
            self.rounds += 1
            time.sleep(0.1)
        for s in self.socks:
            s.close()

    def end(self):
        self.ending = True
        self.join(20)
        return self


class World:
    """A backend, an Installed nlbd with the API, and, as root, a consumer
    namespace with an endpoint of the service "shop" in it."""

    def __init__(self, namespace=True, registry=None):
        self.backend = Server(echo_handler)
        self.dir = tempfile.mkdtemp(prefix="nlbt-upgrade-")
        self.netns = None
        self.nlbd = None
        if namespace and os.geteuid() == 0 and shutil.which("ip"):
            from netnstest import netns_add
            self.netns = "nlbt-up-%d" % PID
            try:
                netns_add(self.netns)
            except Skip:
                self.netns = None
        self.api_port = free_port()
        self.lb_port = free_port()
        self.nlbd = Installed(config(self.dir, self.api_port, self.lb_port,
                                     self.backend.address, self.netns,
                                     registry))
        self.nlbd.start()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.nlbd:
            print("--- events\n%s\n--- stderr\n%s" % (
                self.nlbd.events()[-6000:], self.nlbd.stderr()[-3000:]))
        report = None
        if self.nlbd:
            self.nlbd.stop_all()
            # Every nlbd of the test (the upgraded ones inherit the stderr).
            err = self.nlbd.stderr()
            if any(mark in err for mark in SANITIZER_MARKS):
                report = err[-4000:]
        self.backend.stop()
        if self.netns:
            from netnstest import netns_del
            netns_del(self.netns)
        shutil.rmtree(self.dir, ignore_errors=True)
        if exc_type is None and report:
            raise AssertionError("an nlbd's stderr has a sanitizer report:\n"
                                 + report)

    def api(self, method, path, token=OPS, body=None):
        return api_request(self.api_port, method, path, token, body)

    def open_endpoint(self):
        """The service and an endpoint in the namespace; returns a connect
        function for the endpoint's listener."""
        from netnstest import ns_connect
        code, svc = self.api("POST", "/v1/services", PROVIDER, {
            "name": "shop", "load_balancer": "lb",
            "acceptance_required": False, "allowed_principals": ["shop"]})
        assert code == 201, (code, svc)
        code, ep = self.api("POST", "/v1/endpoints", CONSUMER, {
            "service": "shop", "network": "net-a",
            "address": ENDPOINT_ADDRESS})
        assert code == 201, (code, ep)
        wait_until(lambda: "endpoint %s of service" % ep["id"]
                   in self.nlbd.events(), what="endpoint open")
        netns, port = self.netns, self.lb_port
        return lambda: ns_connect(netns, ENDPOINT_ADDRESS, port)


def open_event_stream(port):
    """An HTTP/1.1 GET /v1/events (chunked NDJSON), its head read."""
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(b"GET /v1/events?after=0 HTTP/1.1\r\nHost: nlb\r\n"
              b"Authorization: Bearer " + OPS.encode() + b"\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"chunked" in head.lower(), head
    return s, head.split(b"\r\n\r\n", 1)[1]


def stream_end(s, data, timeout=10):
    """Reads the stream to its end; True when it ended cleanly (the last
    chunk, then the close), not cut."""
    s.settimeout(timeout)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return data.endswith(b"0\r\n\r\n")


def probes_for(world):
    probes = [Probe("balancer listener", tcp_connect(world.lb_port))]
    if world.netns:
        from netnstest import ns_connect
        probes.append(Probe("endpoint listener (namespace)",
                            world.open_endpoint()))
        netns = world.netns
        probes.append(Probe("DNS responder, TCP (namespace)",
                            lambda: ns_connect(netns, DNS_ADDRESS, 53),
                            echo=False))
    return probes


def dns_answers(netns, *options):
    """dig in the namespace gets an answer (any status) from its DNS
    responder."""
    from netnstest import sh
    r = sh("ip", "netns", "exec", netns, "dig", "+tries=1", "+time=2",
           "@" + DNS_ADDRESS, "nothing.nlb.internal", *options, check=False)
    return "status:" in r.stdout


def wait_probed(probes, count=20):
    """Each probe has had count more successful rounds."""
    marks = [p.attempted for p in probes]
    wait_until(lambda: all(p.attempted >= m + count
                           for p, m in zip(probes, marks)),
               timeout=20, what="probes")


def test_upgrade_refuses_nothing_and_flows_finish():
    """An upgrade under load: no probe connect refused or failed (balancer
    listener; endpoint listener in a namespace as root), 50 long flows
    echo on through it and end by themselves, the old process exits once
    they did, an API event stream on the old one ends cleanly (clients
    reconnect), the new one answers the API and takes writes, health states
    carried over."""
    with World() as w:
        old_pid = w.nlbd.serving_pid()
        probes = probes_for(w)
        flows = LongFlows(w.lb_port)
        events, events_data = open_event_stream(w.api_port)
        wait_probed(probes)
        rc, out = w.nlbd.upgrade()
        print("nlbd -s upgrade: %d %s" % (rc, out.strip()))
        assert rc == 0, out
        # The old one's event stream ends cleanly (GOAWAY: reconnect), and
        # the new one serves the next.
        assert stream_end(events, events_data), "event stream cut"
        open_event_stream(w.api_port)[0].close()
        new_pid = w.nlbd.serving_pid()
        assert new_pid != old_pid and alive(new_pid), (old_pid, new_pid)
        w.nlbd.pids.append(new_pid)
        # The old one drains: the long flows still echo through it.
        wait_probed(probes)
        rounds = flows.rounds
        wait_until(lambda: flows.rounds >= rounds + 10, timeout=10,
                   what="long flows echoing after the hand-over")
        assert alive(old_pid), "the old nlbd left before its flows ended"
        flows.end()
        assert flows.errors == [], flows.errors[:5]
        # Its flows ended: it exits by itself, long before shutdown_timeout.
        assert w.nlbd.wait_exit(10) == 0
        wait_probed(probes)
        for p in probes:
            p.stop()
            print(p.figures())
            assert p.refused == 0 and p.failed == 0, (p.figures(),
                                                      p.errors[:5])
        events = w.nlbd.events()
        # Every socket handed over was adopted: balancer and API listeners,
        # and as root the endpoint's and the DNS responder's (UDP, TCP).
        taken, sockets = map(int, re.search(
            r"(\d+) of (\d+) listening sockets adopted", events).groups())
        print("%d of %d sockets adopted" % (taken, sockets))
        assert taken == sockets == (5 if w.netns else 2), (taken, sockets)
        for word in ("upgrade: started", "upgrade: pid %d serves" % new_pid,
                     "upgrade: ready, took over from pid %d" % old_pid,
                     "(carried over by the upgrade)",
                     "nlbd stopped (upgraded: handed over)"):
            assert word in events, word
        # The DNS responder's sockets came over too: UDP and TCP answer.
        if w.netns and shutil.which("dig"):
            assert dns_answers(w.netns) and dns_answers(w.netns, "+tcp")
        # The API is the new process's: it answers, and writes.
        code, text = w.api("GET", "/metrics")
        assert code == 200, (code, text)
        assert 'nlb_upgrade_generation{pid="%d"} 1' % new_pid in text
        code, svc = w.api("POST", "/v1/services", PROVIDER, {
            "name": "after-upgrade", "load_balancer": "lb",
            "acceptance_required": True, "allowed_principals": ["shop"]})
        assert code == 201, (code, svc)
        code, got = w.api("GET", "/v1/services/" + svc["id"], PROVIDER)
        assert code == 200 and got["name"] == "after-upgrade", (code, got)
        # And it upgrades again (generation 2).
        rc, out = w.nlbd.upgrade()
        assert rc == 0, out
        w.nlbd.pids.append(w.nlbd.serving_pid())
        code, text = w.api("GET", "/metrics")
        assert code == 200 and 'nlb_upgrade_generation{pid="%d"} 2' % \
            w.nlbd.serving_pid() in text, text[-500:]


def test_failing_binary_leaves_the_old_one_serving():
    """A new binary that fails (a script that says why and exits 1): the
    command exits 1 with its error, the old nlbd goes on serving with no
    probe refused, and a working binary then upgrades."""
    with World(namespace=False) as w:
        old_pid = w.nlbd.serving_pid()
        probes = probes_for(w)
        wait_probed(probes)
        w.nlbd.install_script(
            'echo "nlbd: simulated failure of the new binary" >&2\nexit 1\n')
        rc, out = w.nlbd.upgrade()
        print("nlbd -s upgrade with a failing binary: %d %s" % (rc,
                                                               out.strip()))
        assert rc == 1, (rc, out)
        assert "simulated failure of the new binary" in out, out
        assert "exited with status 1" in out, out
        assert w.nlbd.serving_pid() == old_pid
        assert "upgrade: the new nlbd failed" in w.nlbd.events()
        wait_probed(probes)
        # The real binary on a config it refuses: its error, and the old
        # one (which read the config before) serves on.
        w.nlbd.install(NLBD)
        with open(w.nlbd.config_path) as f:
            good = f.read()
        with open(w.nlbd.config_path, "a") as f:
            f.write("no_such_setting = 1;\n")
        rc, out = w.nlbd.upgrade()
        print("nlbd -s upgrade with a bad config: %d %s" % (rc, out.strip()))
        assert rc == 1 and "no_such_setting" in out, (rc, out)
        assert w.nlbd.serving_pid() == old_pid
        # One that fails later (the API's new address is taken) says why
        # over the hand-over socket.
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with open(w.nlbd.config_path, "w") as f:
            f.write(good.replace("127.0.0.1:%d" % w.api_port,
                                 "127.0.0.1:%d" % taken.getsockname()[1]))
        rc, out = w.nlbd.upgrade()
        taken.close()
        print("nlbd -s upgrade, API address taken: %d %s" % (rc, out.strip()))
        assert rc == 1 and "api: cannot serve on" in out, (rc, out)
        assert w.nlbd.serving_pid() == old_pid
        with open(w.nlbd.config_path, "w") as f:
            f.write(good)
        wait_probed(probes)
        # The real binary again: the upgrade goes through.
        w.nlbd.install(NLBD)
        rc, out = w.nlbd.upgrade()
        assert rc == 0, out
        w.nlbd.pids.append(w.nlbd.serving_pid())
        wait_probed(probes)
        for p in probes:
            p.stop()
            print(p.figures())
            assert p.refused == 0 and p.failed == 0, p.errors[:5]


def test_second_upgrade_refused_and_old_killed_mid_way():
    """While an upgrade runs (a new binary slow to start), a second `nlbd
    -s upgrade` is refused with exit 1; killing the old nlbd (SIGKILL) once
    it handed the sockets over leaves the new one serving."""
    with World(namespace=False) as w:
        old_pid = w.nlbd.serving_pid()
        # The real binary, started 2 s late.
        w.nlbd.install_script('sleep 2\nexec "%s" "$@"\n' % NLBD)
        first = subprocess.Popen(
            [NLBD, "-s", "upgrade", "--run-dir", w.nlbd.run_dir],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_until(lambda: "upgrade: started" in w.nlbd.events(),
                   what="the upgrade to start")
        rc, out = w.nlbd.upgrade()
        print("second upgrade: %d %s" % (rc, out.strip()))
        assert rc == 1 and "another nlbd -s upgrade is running" in out, out
        # The sockets were handed over when it started: kill the old one
        # (the flows it holds die with it). Connections made while nobody
        # accepts wait in the kernel's queue for the new one.
        os.kill(old_pid, signal.SIGKILL)
        w.nlbd.proc.wait(5)
        probes = probes_for(w)
        out, _ = first.communicate(timeout=30)
        print("first upgrade, old one killed: %d %s" % (first.returncode,
                                                        out.strip()))
        wait_until(lambda: w.nlbd.serving_pid() != old_pid, timeout=20,
                   what="the new nlbd to write its pid")
        w.nlbd.pids.append(w.nlbd.serving_pid())
        wait_until(lambda: "upgrade: ready, took over from pid %d" % old_pid
                   in w.nlbd.events(), timeout=20,
                   what="the new nlbd to be ready")
        wait_probed(probes)
        for p in probes:
            p.stop()
            print(p.figures())
            # Connections made while nobody accepted waited in the queue.
            assert p.refused == 0 and p.failed == 0, p.errors[:5]
        code, _ = w.api("GET", "/v1/services")
        assert code == 200


def test_new_binary_never_ready_is_killed():
    """A new binary that never gets ready (it hangs) is killed after 30 s:
    the command exits 1 saying so, the old nlbd serves on throughout."""
    with World(namespace=False) as w:
        old_pid = w.nlbd.serving_pid()
        probe = Probe("balancer listener", tcp_connect(w.lb_port))
        w.nlbd.install_script("echo hanging >&2\nexec sleep 300\n")
        started = time.monotonic()
        rc, out = w.nlbd.upgrade()
        elapsed = time.monotonic() - started
        print("nlbd -s upgrade with a hanging binary: %d after %.1fs: %s" % (
            rc, elapsed, out.strip()))
        assert rc == 1 and "not ready within 30000 ms" in out, out
        assert "hanging" in out, out
        assert 29 < elapsed < 45, elapsed
        assert w.nlbd.serving_pid() == old_pid
        wait_probed([probe])
        probe.stop()
        print(probe.figures())
        assert probe.refused == 0 and probe.failed == 0, probe.errors[:5]
        hung = int(re.search(r"upgrade: started \S+ as pid (\d+)",
                             w.nlbd.events()).group(1))
        wait_until(lambda: not alive(hung), what="the hanging one killed")


def test_run_directory_of_another_nlbd_is_refused():
    """A second nlbd given the run directory of one that runs (its own
    ports and registry) exits 1 saying so; the first one serves on."""
    with World(namespace=False) as w:
        other_dir = tempfile.mkdtemp(prefix="nlbt-upgrade-other-")
        other = Nlbd(config(other_dir, free_port(), free_port(),
                            w.backend.address))
        try:
            r = subprocess.run(
                [NLBD, "-c", other.config_path, "--run-dir", w.nlbd.run_dir],
                capture_output=True, text=True, timeout=30)
            print("second nlbd on the run directory: %d %s" % (
                r.returncode, r.stderr.strip()))
            assert r.returncode == 1, r
            assert "another nlbd runs with it" in other.events() + r.stderr
            assert w.nlbd.serving_pid() == w.nlbd.proc.pid
            probe = Probe("balancer listener", tcp_connect(w.lb_port))
            wait_probed([probe])
            probe.stop()
            assert probe.refused == 0 and probe.failed == 0, probe.errors
        finally:
            shutil.rmtree(other.dir, ignore_errors=True)
            shutil.rmtree(other_dir, ignore_errors=True)


def test_upgrade_with_postgresql():
    """With a PostgreSQL registry the new process takes the node's name
    from the old one's session; the API writes on it after."""
    import pgtest
    try:
        pg = pgtest.Postgres()
    except pgtest.Unavailable as e:
        raise Skip(str(e))
    with pg, World(namespace=False,
                   registry='url = "postgresql:%s";' % pg.conninfo) as w:
        probes = probes_for(w)
        wait_probed(probes)
        rc, out = w.nlbd.upgrade()
        print("nlbd -s upgrade (PostgreSQL): %d %s" % (rc, out.strip()))
        assert rc == 0, out
        w.nlbd.pids.append(w.nlbd.serving_pid())
        code, svc = w.api("POST", "/v1/services", PROVIDER, {
            "name": "after-upgrade", "load_balancer": "lb",
            "acceptance_required": True, "allowed_principals": ["shop"]})
        assert code == 201, (code, svc)
        wait_probed(probes)
        for p in probes:
            p.stop()
            print(p.figures())
            assert p.refused == 0 and p.failed == 0, p.errors[:5]


def test_systemd_hears_the_new_main_pid():
    """Under systemd (NOTIFY_SOCKET), the new process says READY=1 and
    MAINPID= its own pid; the old one says nothing of stopping."""
    with open(os.path.join(os.path.dirname(NLBD), "build-config.h")) as f:
        if "#define HAVE_LIBSYSTEMD 1" not in f.read():
            raise Skip("built without libsystemd: nlbd does not notify")
    notify_dir = tempfile.mkdtemp(prefix="nlbt-notify-")
    path = os.path.join(notify_dir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    messages = []

    def read():
        try:
            while True:
                messages.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
        return messages

    try:
        os.environ["NOTIFY_SOCKET"] = path
        try:
            w = World(namespace=False)
        finally:
            del os.environ["NOTIFY_SOCKET"]
        with w:
            old_pid = w.nlbd.serving_pid()
            wait_until(lambda: any("READY=1" in m for m in read()),
                       what="READY=1 from the first nlbd")
            messages.clear()
            rc, out = w.nlbd.upgrade()
            assert rc == 0, out
            new_pid = w.nlbd.serving_pid()
            w.nlbd.pids.append(new_pid)
            wait_until(lambda: any("MAINPID=%d" % new_pid in m and
                                   "READY=1" in m for m in read()),
                       what="READY=1 and MAINPID=%d" % new_pid)
            w.nlbd.wait_exit(10)
            read()
            print("notifications during the upgrade: %r" % messages)
            assert not any("STOPPING=1" in m for m in messages), messages
            assert old_pid != new_pid
    finally:
        sock.close()
        shutil.rmtree(notify_dir, ignore_errors=True)


def test_restart_versus_upgrade():
    """The probe's figures for a plain restart (SIGTERM, then a new nlbd
    started as soon as the old one let go of the registry) and for an
    upgrade, side by side. The upgrade refuses none."""
    with World(namespace=False) as w:
        probe = Probe("restart", tcp_connect(w.lb_port))
        wait_probed([probe])
        old = w.nlbd.proc
        old.send_signal(signal.SIGTERM)
        old.wait(30)
        w.nlbd.start()
        wait_probed([probe])
        probe.stop()
        restart = probe.figures()
        probe = Probe("upgrade", tcp_connect(w.lb_port))
        wait_probed([probe])
        rc, out = w.nlbd.upgrade()
        assert rc == 0, out
        w.nlbd.pids.append(w.nlbd.serving_pid())
        wait_probed([probe])
        probe.stop()
        print(restart)
        print(probe.figures())
        assert probe.refused == 0 and probe.failed == 0, probe.errors[:5]


def test_udp_gro_across_a_failed_and_a_good_upgrade():
    """A UDP listener's socket goes to the new process with UDP GRO off (a
    binary that does not know GRO, a downgrade, would take a coalesced run
    of datagrams for one), and the new nlbd turns it on again as it adopts
    it; a failed upgrade gives it back on to the old one. Each time a
    flow's datagrams sent coalesced reach the target whole and are counted
    as coalesced by the process that serves."""
    from test_udp import (client, metrics, send_coalesced, udp_config,
                          OPS_TOKEN)
    target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target.bind(("127.0.0.1", 0))
    target.settimeout(5)
    port, api_port = free_port(), free_port()
    body = ('api = { listen = "127.0.0.1:%d"; };\n'
            'registry = { path = "%%s/registry.db"; };\n'
            'principals = ( { name = "ops"; role = "operator"; '
            'token_sha256 = "%s"; } );\n' % (
                api_port, hashlib.sha256(OPS_TOKEN.encode()).hexdigest()))
    datagrams = [b"%03d" % i + bytes([i]) * 197 for i in range(20)] + [b"end"]

    def coalesced_after_a_flow():
        c = client("127.0.0.1", port, timeout=5)
        send_coalesced(c, datagrams)
        got = [target.recvfrom(70000)[0] for _ in datagrams]
        assert got == datagrams, [len(g) for g in got]
        c.close()
        return metrics(api_port)[
            'nlb_udp_coalesced_datagrams_total{direction="up"}']

    workdir = tempfile.mkdtemp(prefix="nlbtest-upgrade-udp-")
    n = Installed(udp_config(port, ["127.0.0.1:%d" % target.getsockname()[1]],
                             top=body % workdir))
    try:
        n.start()
        assert coalesced_after_a_flow() == len(datagrams)
        n.install_script("exit 3\n")
        rc, out = n.upgrade()
        assert rc == 1, out
        assert coalesced_after_a_flow() == 2 * len(datagrams), \
            "GRO not given back after the failed upgrade"
        n.install(NLBD)
        old = n.serving_pid()
        rc, out = n.upgrade()
        assert rc == 0, out
        # The old process reads the shared socket until it has handed
        # over: only then are the datagrams the new one's.
        wait_until(lambda: "upgrade: pid %d serves" % n.serving_pid()
                   in n.events(), what="the old nlbd to hand over")
        assert n.serving_pid() != old
        assert coalesced_after_a_flow() == len(datagrams), \
            "the new nlbd did not turn GRO back on"
    finally:
        n.stop_all()
        target.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    run([test_upgrade_refuses_nothing_and_flows_finish,
         test_failing_binary_leaves_the_old_one_serving,
         test_second_upgrade_refused_and_old_killed_mid_way,
         test_new_binary_never_ready_is_killed,
         test_run_directory_of_another_nlbd_is_refused,
         test_upgrade_with_postgresql,
         test_systemd_hears_the_new_main_pid,
         test_restart_versus_upgrade,
         test_udp_gro_across_a_failed_and_a_good_upgrade], timeout=150)
