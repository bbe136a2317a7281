"""End-to-end tests of nlbd as a systemd service, without systemd: a fake
NOTIFY_SOCKET (an AF_UNIX datagram socket) hears READY=1 once the
listeners accept, RELOADING=1 (with MONOTONIC_USEC) then READY=1 around a
reload, and STOPPING=1 at shutdown; `nlbd -s reload` (the unit's
ExecReload) reports a reload nlbd refused at apply time as a failure, and
nlb_config_last_reload_success says 0."""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from nlbtest import (NLBD, TOP_BUILDDIR, Server, Skip, _track, _untrack,
                     can_connect, echo_handler, free_port, run, wait_until)

TOKEN = "ops-token"


def built_with_libsystemd():
    with open(os.path.join(TOP_BUILDDIR, "build-config.h")) as f:
        return "#define HAVE_LIBSYSTEMD 1" in f.read()


class Service:
    """nlbd started the way its unit starts it: NOTIFY_SOCKET set, a run
    directory, events on stderr."""

    def __init__(self):
        if not built_with_libsystemd():
            raise Skip("built without libsystemd (configure --without-systemd"
                       " or no libsystemd-dev): nlbd does not notify")
        self.dir = tempfile.mkdtemp(prefix="nlb-systemd-")
        self.run_dir = os.path.join(self.dir, "run")
        os.mkdir(self.run_dir)
        self.notify_path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.notify_path)
        self.sock.settimeout(0.1)
        self.messages = []
        self.backend = Server(echo_handler)
        self.port = free_port()
        self.api = free_port()
        self.config_path = os.path.join(self.dir, "nlb.cfg")
        self.events_path = os.path.join(self.dir, "events.log")
        self.write_config()
        self.proc = None

    def write_config(self, extra_listener=""):
        with open(self.config_path, "w") as f:
            f.write("""workers = 2; shutdown_timeout = "2s";
log = { access = "off"; events = "%s"; };
api = { listen = "127.0.0.1:%d"; };
registry = { path = "registry.db"; };
principals = ( { name = "ops"; role = "operator"; token_sha256 = "%s"; } );
target_groups = ( { name = "tg";
  targets = ( { address = "127.0.0.1:%d"; } ); } );
load_balancers = ( { name = "lb"; listeners = (
  { port = %d; target_group = "tg"; bind = "127.0.0.1"; } %s ); } );
""" % (self.events_path, self.api, hashlib.sha256(TOKEN.encode()).hexdigest(),
       self.backend.port, self.port, extra_listener))

    def start(self):
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path)
        self.proc = subprocess.Popen(
            [NLBD, "-c", self.config_path, "--run-dir", self.run_dir],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "stderr"), "w"))
        _track(self)

    def next_message(self, timeout=10):
        """The next notification as a dict, and whether the listener
        accepted at the moment it arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            accepting = can_connect("127.0.0.1", self.port)
            fields = dict(line.split("=", 1) for line in
                          data.decode().split("\n") if "=" in line)
            self.messages.append(fields)
            return fields, accepting
        raise AssertionError("no notification within %ss (so far: %r)" % (
            timeout, self.messages))

    def reload(self):
        """nlbd -s reload, as ExecReload runs it."""
        return subprocess.run([NLBD, "-s", "reload", "--run-dir",
                               self.run_dir], capture_output=True, text=True,
                              timeout=90)

    def metric(self, name):
        r = subprocess.run(
            ["curl", "-s", "--http2-prior-knowledge", "-H",
             "Authorization: Bearer " + TOKEN,
             "http://127.0.0.1:%d/metrics" % self.api],
            capture_output=True, text=True, timeout=15)
        for line in r.stdout.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError("no %s in %s" % (name, r.stdout))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _untrack(self)
        self.backend.stop()
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self):
        self.stop()


def test_notify_protocol_and_reload_outcomes():
    need_curl()
    s = Service()
    try:
        s.start()
        ready, accepting = s.next_message()
        assert ready.get("READY") == "1", ready
        assert accepting, "READY=1 came before the listener accepted"
        assert "running" in ready.get("STATUS", ""), ready
        with open(os.path.join(s.run_dir, "nlbd.pid")) as f:
            assert int(f.read()) == s.proc.pid

        # A reload that applies: RELOADING=1 with the monotonic clock,
        # then READY=1; nlbd -s reload says so and exits 0.
        before_us = time.monotonic() * 1e6
        r = s.reload()
        assert r.returncode == 0 and "reload applied" in r.stdout, r
        reloading, _ = s.next_message()
        assert reloading.get("RELOADING") == "1", reloading
        assert before_us <= int(reloading["MONOTONIC_USEC"]) <= \
            time.monotonic() * 1e6, (before_us, reloading)
        ready, _ = s.next_message()
        assert ready.get("READY") == "1" and "RELOADING" not in ready, ready
        assert s.metric("nlb_config_last_reload_success") == 1

        # A reload nlbd refuses when applying it (a new listener whose port
        # is taken): the file checks (nlbd -t passes, as ExecReload's first
        # line), nlbd -s reload fails, systemd still hears READY=1 with
        # the reason, the metric turns 0, the old listener still serves.
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        s.write_config(', { port = %d; target_group = "tg"; '
                       'bind = "127.0.0.1"; }' % taken.getsockname()[1])
        check = subprocess.run([NLBD, "-t", "-c", s.config_path],
                               capture_output=True, text=True, timeout=10)
        assert check.returncode == 0, check
        r = s.reload()
        taken.close()
        assert r.returncode == 1, r
        assert "reload rejected" in r.stderr and "cannot listen" in \
            r.stderr, r.stderr
        reloading, _ = s.next_message()
        assert reloading.get("RELOADING") == "1", reloading
        ready, accepting = s.next_message()
        assert ready.get("READY") == "1", ready
        assert "reload rejected" in ready.get("STATUS", ""), ready
        assert accepting
        assert s.metric("nlb_config_last_reload_success") == 0

        # A file that does not parse: ExecReload's nlbd -t stops it first
        # (exit 2); sent anyway, nlbd refuses it too.
        with open(s.config_path, "a") as f:
            f.write("not libconfig\n")
        check = subprocess.run([NLBD, "-t", "-c", s.config_path],
                               capture_output=True, text=True, timeout=10)
        assert check.returncode == 2, check
        r = s.reload()
        assert r.returncode == 1 and "syntax error" in r.stderr, r
        s.next_message()
        s.next_message()

        # SIGTERM: STOPPING=1, then the run directory is emptied.
        s.proc.send_signal(signal.SIGTERM)
        stopping, _ = s.next_message()
        assert stopping.get("STOPPING") == "1", stopping
        assert s.proc.wait(15) == 0
        assert os.listdir(s.run_dir) == [], os.listdir(s.run_dir)
        r = s.reload()
        assert r.returncode == 1 and "nlbd.pid" in r.stderr, r
    finally:
        s.stop()


def test_signal_reload_needs_a_run_directory():
    env = {k: v for k, v in os.environ.items() if k != "RUNTIME_DIRECTORY"}
    r = subprocess.run([NLBD, "-s", "reload"], capture_output=True,
                       text=True, timeout=10, env=env)
    assert r.returncode == 2 and "--run-dir" in r.stderr, r
    r = subprocess.run([NLBD, "-s", "stop"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2, r


def need_curl():
    if not shutil.which("curl"):
        raise Skip("curl is not installed")


if __name__ == "__main__":
    if not os.path.exists(NLBD):
        print("SKIP: %s is not built" % NLBD)
        raise SystemExit(77)
    run([test_notify_protocol_and_reload_outcomes,
         test_signal_reload_needs_a_run_directory])
