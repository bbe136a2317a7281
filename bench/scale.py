#!/usr/bin/env python3
"""Scale within a node: how nlbd's costs grow with the number of endpoints,
targets and registry rows (bench/README-scale.md).

    bench/scale.py [--nlbd PATH] [--sizes 100,1000,10000]
                   [--registry-rows 100000] [--only endpoints,targets,registry]
                   [--label NAME] [--json FILE]
    bench/scale.py --table BEFORE.json AFTER.json [--out FILE]

The first form runs the measurements against one nlbd binary and writes
them as JSON (one object per figure); the second writes the Markdown table
of two such runs side by side, with the growth from the smallest to the
largest N of each per-unit figure.

Everything runs as the invoking user on loopback: endpoints on a host
network in 127.64.0.0/16, targets at 127.65.0.0/16 (one backend socket on
the wildcard address answers for all of them), registry rows in
127.128.0.0/14. Every process started is stopped on exit. Needs root only
to raise nothing: the descriptor limit is taken as it is (the hard limit).
Python 3 stdlib only.
"""

import argparse
import hashlib
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
TOKENS = {"ops": "ops-token", "prov": "prov-token", "cons": "cons-token"}
ROLES = {"ops": "operator", "prov": "provider", "cons": "consumer"}

_started = []
_adopted = []  # pids of nlbds started by an upgrade (not our children)


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_seconds(pid):
    """user + system time of every thread of pid, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_seconds_precise(pid):
    """CPU time of pid's live threads from schedstat (nanoseconds), for
    short windows where clock ticks (10 ms) are too coarse. Threads that
    ended within the window are missed: use cpu_seconds for long ones."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * len(values))) - 1))
    return values[k]


def tcp_states(port):
    """Counts sockets with port as local or remote port, by state."""
    counts = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local = int(fields[1].rsplit(":", 1)[1], 16)
                    remote = int(fields[2].rsplit(":", 1)[1], 16)
                    if port in (local, remote):
                        counts[fields[3]] = counts.get(fields[3], 0) + 1
        except FileNotFoundError:
            pass
    return counts


class Api:
    """HTTP/1.1 keep-alive client of nlbd's API."""

    def __init__(self, port, who):
        self.port = port
        self.who = who
        self.conn = None

    def call(self, method, path, body=None):
        headers = {"Authorization": "Bearer " + TOKENS[self.who]}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=60)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                text = r.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        answer = json.loads(text) if text[:1] in (b"{", b"[") else text
        return r.status, answer, len(text)

    def close(self):
        if self.conn:
            self.conn.close()


class Nlbd:
    base_dir = None  # --dir

    def __init__(self, nlbd, body, tag):
        self.dir = tempfile.mkdtemp(prefix="nlb-scale-%s-" % tag,
                                    dir=Nlbd.base_dir)
        self.events_path = os.path.join(self.dir, "events.log")
        self.run_dir = os.path.join(self.dir, "run")
        self.config_path = os.path.join(self.dir, "nlb.cfg")
        self.api_port = free_port()
        principals = ",\n".join(
            '  { name = "%s"; role = "%s"; token_sha256 = "%s"; }' %
            (n, ROLES[n], hashlib.sha256(t.encode()).hexdigest())
            for n, t in TOKENS.items())
        with open(self.config_path, "w") as f:
            f.write('workers = 2;\nshutdown_timeout = "1s";\n'
                    'log = { access = "off"; events = "%s"; level = "info"; };\n'
                    'api = { listen = "127.0.0.1:%d"; };\n'
                    'registry = { path = "%s/registry.db"; };\n'
                    'principals = (\n%s\n);\n%s' %
                    (self.events_path, self.api_port, self.dir, principals,
                     body))
        self.nlbd = nlbd
        self.proc = None
        self._events_pos = 0

    def start(self):
        os.makedirs(self.run_dir, exist_ok=True)
        self.t_exec = time.monotonic()
        self.proc = subprocess.Popen(
            [self.nlbd, "-c", self.config_path, "--run-dir", self.run_dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "stderr.log"), "w"))
        _started.append(self.proc)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 300
        pid_file = os.path.join(self.run_dir, "nlbd.pid")
        # The pid file is written right before the start event, and not
        # through the log writer (which may lag a burst of lines).
        while not os.path.exists(pid_file):
            if self.proc.poll() is not None:
                raise RuntimeError("nlbd exited: %s" % self.stderr())
            if time.monotonic() > deadline:
                raise RuntimeError("nlbd did not start")
            time.sleep(0.001)
        self.t_started = time.monotonic()
        while "started" not in self.read_events(0):
            if self.proc.poll() is not None:
                raise RuntimeError("nlbd exited: %s" % self.stderr())
            time.sleep(0.002)
        return self

    def stderr(self):
        with open(os.path.join(self.dir, "stderr.log")) as f:
            return f.read()[-2000:]

    def read_events(self, pos=None):
        try:
            with open(self.events_path) as f:
                if pos is not None:
                    f.seek(pos)
                return f.read()
        except FileNotFoundError:
            return ""

    def reload_seq(self):
        try:
            with open(os.path.join(self.run_dir, "reload")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def sighup(self):
        """Wall time from SIGHUP to the reload outcome, and nlbd's CPU
        time over it (every thread)."""
        before = self.reload_seq()
        cpu0 = cpu_seconds_precise(self.pid)
        t0 = time.monotonic()
        os.kill(self.pid, signal.SIGHUP)
        while self.reload_seq() == before:
            if time.monotonic() - t0 > 120:
                raise RuntimeError("no reload outcome")
            time.sleep(0.0005)
        wall = time.monotonic() - t0
        time.sleep(0.2)  # what the reload queued for the other threads
        return wall, (cpu_seconds_precise(self.pid) - cpu0 -
                      (wall + 0.2) * self.base)

    def upgrade(self):
        """nlbd -s upgrade: wall time until the command returns (the new
        process has adopted every listener and said ready), and the new
        process's CPU time until then. Later figures are the new one's."""
        t0 = time.monotonic()
        out = subprocess.run(
            [self.nlbd, "-s", "upgrade", "--run-dir", self.run_dir],
            capture_output=True, text=True, timeout=300)
        wall = time.monotonic() - t0
        if out.returncode != 0:
            raise RuntimeError("upgrade failed: %s" % out.stderr[-500:])
        with open(os.path.join(self.run_dir, "nlbd.pid")) as f:
            self.pid = int(f.read().split()[0])
        _adopted.append(self.pid)
        return wall, cpu_seconds_precise(self.pid)

    base = 0.0  # CPU seconds per second when idle, measured by idle_cpu

    def idle_cpu(self, seconds=3.0):
        c0, t0 = cpu_seconds_precise(self.pid), time.monotonic()
        time.sleep(seconds)
        self.base = (cpu_seconds_precise(self.pid) - c0) / (time.monotonic() -
                                                             t0)
        return 100.0 * self.base

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.pid != self.proc.pid:
            stop_adopted(self.pid)
        shutil.rmtree(self.dir, ignore_errors=True)


def stop_adopted(pid):
    """SIGTERM, then SIGKILL after 30 s, for an nlbd that is not our
    child (started by an upgrade)."""
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while os.path.exists("/proc/%d" % pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    except ProcessLookupError:
        pass


def wait_api(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                c.close()
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("API did not answer")


class Backend:
    """Accepts and closes on 0.0.0.0:port, in a child process of its own
    (so its CPU is not nlbd's, nor ours)."""

    CODE = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4096)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.CODE, str(self.port)],
            stdout=subprocess.PIPE, text=True)
        _started.append(self.proc)
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def addr(base, i):
    """The i-th host address of base/16 (i from 1)."""
    return "%s.%d.%d" % (base, i // 256, i % 256)


def record(results, section, n, name, value, unit, note=""):
    entry = {"section": section, "n": n, "name": name, "value": value,
             "unit": unit, "load": round(loadavg(), 2)}
    if note:
        entry["note"] = note
    results.append(entry)
    shown = "%.3f" % value if isinstance(value, float) else str(value)
    print("  %-9s N=%-6s %-34s %12s %s  (load %.2f)%s" % (
        section, n, name, shown, unit, entry["load"],
        " " + note if note else ""), flush=True)


# ---- endpoints --------------------------------------------------------------

ENDPOINTS_CFG = """networks = ( { name = "host"; range = "127.64.0.0/16"; } );
target_groups = ( { name = "tg";
  targets = ( { address = "127.0.0.1:%(backend)d"; } ); } );
load_balancers = ( { name = "lb"; listeners = (
  { port = %(port)d; target_group = "tg"; } ); } );
"""


def bench_endpoints(nlbd_path, n, results):
    backend = Backend()
    port = free_port()
    d = Nlbd(nlbd_path, ENDPOINTS_CFG % {"backend": backend.port,
                                         "port": port}, "ep%d" % n)
    try:
        d.start()
        wait_api(d.api_port)
        prov, cons = Api(d.api_port, "prov"), Api(d.api_port, "cons")
        status, svc, _ = prov.call("POST", "/v1/services", {
            "name": "svc", "load_balancer": "lb",
            "acceptance_required": False, "allowed_principals": ["cons"]})
        assert status == 201, (status, svc)
        latencies = []
        t_fill = time.monotonic()
        cpu_last = None
        for i in range(n):
            if i == n - min(n, 200):
                cpu_last = cpu_seconds_precise(d.pid)
            t0 = time.monotonic()
            status, ep, _ = cons.call("POST", "/v1/endpoints", {
                "service": "svc", "network": "host"})
            latencies.append(time.monotonic() - t0)
            if status != 201:
                record(results, "endpoints", n, "fill failed at", i, "rows",
                       "%s %s" % (status, str(ep)[:200]))
                return
        fill = time.monotonic() - t_fill
        last = latencies[-min(len(latencies), 200):]
        record(results, "endpoints", n, "create CPU (last 200, all threads)",
               1000 * (cpu_seconds_precise(d.pid) - cpu_last) / len(last),
               "ms")
        record(results, "endpoints", n, "create p50 (last 200)",
               1000 * statistics.median(last), "ms")
        record(results, "endpoints", n, "create p99 (last 200)",
               1000 * percentile(last, 99), "ms")
        record(results, "endpoints", n, "fill rate", n / fill, "creates/s")
        time.sleep(1.5)
        status, answer, size = cons.call("GET", "/v1/endpoints?limit=1")
        opened = answer["endpoints"][0]["placements"] if status == 200 else []
        fds = fd_count(d.pid)
        record(results, "endpoints", n, "descriptors", fds, "fds")
        record(results, "endpoints", n, "descriptors per endpoint",
               round(fds / n, 3), "fds")
        record(results, "endpoints", n, "RSS", rss_kib(d.pid), "KiB")
        cpu = d.idle_cpu(4.0)
        record(results, "endpoints", n, "idle CPU", round(cpu, 3), "%")
        walls, cpus = [], []
        for _ in range(3):
            wall, used = d.sighup()
            walls.append(wall)
            cpus.append(used)
        record(results, "endpoints", n, "SIGHUP wall (median of 3)",
               1000 * statistics.median(walls), "ms")
        record(results, "endpoints", n, "SIGHUP CPU (median of 3)",
               1000 * statistics.median(cpus), "ms")
        # A new binary (the same one) takes over every endpoint's listener:
        # the creates and deletes below are the new process's.
        wall, used = d.upgrade()
        record(results, "endpoints", n, "upgrade wall (nlbd -s upgrade)",
               1000 * wall, "ms")
        record(results, "endpoints", n, "upgrade: new process CPU to ready",
               1000 * used, "ms")
        record(results, "endpoints", n, "upgrade: new process descriptors",
               fd_count(d.pid), "fds")
        # One more endpoint at N, and one removed: the cost of a change
        # (median of 5 of each).
        creates, deletes = [], []
        for _ in range(5):
            t0 = time.monotonic()
            status, ep, _ = cons.call("POST", "/v1/endpoints", {
                "service": "svc", "network": "host"})
            creates.append(time.monotonic() - t0)
            t0 = time.monotonic()
            status, _, _ = cons.call("DELETE", "/v1/endpoints/" + ep["id"])
            deletes.append(time.monotonic() - t0)
        record(results, "endpoints", n, "one more create at N",
               1000 * statistics.median(creates), "ms")
        record(results, "endpoints", n, "one delete at N",
               1000 * statistics.median(deletes), "ms")
        pages, cpus = [], []
        for _ in range(3):
            c0 = cpu_seconds_precise(d.pid)
            t0 = time.monotonic()
            status, answer, size = cons.call("GET", "/v1/endpoints")
            pages.append(time.monotonic() - t0)
            cpus.append(cpu_seconds_precise(d.pid) - c0)
        record(results, "endpoints", n, "GET /v1/endpoints (first page)",
               1000 * statistics.median(pages), "ms")
        record(results, "endpoints", n, "GET /v1/endpoints CPU",
               1000 * statistics.median(cpus), "ms")
        prov.close()
        cons.close()
    finally:
        d.stop()
        backend.stop()


# ---- targets ----------------------------------------------------------------

TARGETS_CFG = """target_groups = ( { name = "tg";
  health_check = { interval = "1s"; timeout = "1s"; healthy_threshold = 2; };
  targets = (
%(targets)s
  ); } );
load_balancers = ( { name = "lb"; listeners = (
  { port = %(port)d; target_group = "tg"; bind = "127.0.0.1"; } ); } );
"""


def bench_targets(nlbd_path, n, results):
    backend = Backend()
    port = free_port()
    targets = ",\n".join('    { address = "%s:%d"; }' %
                         (addr("127.65", i + 1), backend.port)
                         for i in range(n))
    d = Nlbd(nlbd_path, TARGETS_CFG % {"targets": targets, "port": port},
             "tg%d" % n)
    try:
        d.start()
        record(results, "targets", n, "start (exec to started)",
               1000 * (d.t_started - d.t_exec), "ms")
        healthy, pos, partial = 0, 0, ""
        deadline = time.monotonic() + 120
        while healthy < n and time.monotonic() < deadline:
            chunk = d.read_events(pos)
            pos += len(chunk.encode())
            lines = (partial + chunk).split("\n")
            partial = lines.pop()
            healthy += sum(1 for line in lines if "-> healthy" in line)
            time.sleep(0.005)
        t_all = time.monotonic() - d.t_exec
        cpu = cpu_seconds(d.pid)
        if healthy < n:
            record(results, "targets", n, "all healthy", "no", "",
                   "%d of %d after 120 s" % (healthy, n))
        record(results, "targets", n, "exec to all healthy", t_all, "s")
        record(results, "targets", n, "CPU to all healthy", cpu, "s")
        time.sleep(1.0)
        steady = d.idle_cpu(3.0)
        record(results, "targets", n, "CPU checking (1 s interval)",
               round(steady, 2), "%")
        record(results, "targets", n, "CPU per 1,000 checks/s",
               round(steady * 1000.0 / n, 3), "%")
        states = tcp_states(backend.port)
        record(results, "targets", n, "TIME_WAIT (backend port)",
               states.get("06", 0), "sockets")
        record(results, "targets", n, "descriptors", fd_count(d.pid), "fds")
        walls, cpus = [], []
        for _ in range(3):
            wall, used = d.sighup()
            walls.append(wall)
            cpus.append(used)
        record(results, "targets", n, "SIGHUP wall (median of 3)",
               1000 * statistics.median(walls), "ms")
        record(results, "targets", n, "SIGHUP CPU (median of 3)",
               1000 * statistics.median(cpus), "ms")
        ops = Api(d.api_port, "ops")
        times = []
        for i in range(5):
            t0 = time.monotonic()
            status, _, size = ops.call("POST", "/v1/target-groups/tg/targets",
                                       {"address": "%s:%d" % (
                                           addr("127.66", i + 1),
                                           backend.port)})
            times.append(time.monotonic() - t0)
        record(results, "targets", n, "register one target at N",
               1000 * statistics.median(times), "ms",
               "median of 5, status %d" % status)
        ops.close()
    finally:
        d.stop()
        backend.stop()


# ---- registry rows ----------------------------------------------------------

REGISTRY_CFG = """registry = { path = "%(dir)s/registry.db"; };
networks = ( { name = "big"; range = "127.128.0.0/14"; } );
target_groups = ( { name = "tg"; targets = ( { address = "127.0.0.1:9"; } ); } );
load_balancers = ( { name = "lb"; listeners = (
  { port = %(port)d; target_group = "tg"; } ); } );
"""


def bench_registry(nlbd_path, rows, results, checkpoints):
    port = free_port()
    d = Nlbd(nlbd_path, "", "reg")
    with open(d.config_path) as f:
        text = f.read().replace('registry = { path = "%s/registry.db"; };\n'
                                % d.dir, "")
    with open(d.config_path, "w") as f:
        f.write(text + REGISTRY_CFG % {"dir": d.dir, "port": port})
    try:
        d.start()
        wait_api(d.api_port)
        prov = Api(d.api_port, "prov")
        status, svc, _ = prov.call("POST", "/v1/services", {
            "name": "svc", "load_balancer": "lb",
            "acceptance_required": True, "allowed_principals": ["*"]})
        assert status == 201, (status, svc)
        # Fill with a few connections at once (the registry runs one
        # operation at a time), then measure at each checkpoint alone.
        made = [0]
        lock = threading.Lock()

        def fill(until):
            api = Api(d.api_port, "cons")
            while True:
                with lock:
                    if made[0] >= until:
                        break
                    made[0] += 1
                status, ep, _ = api.call("POST", "/v1/endpoints", {
                    "service": "svc", "network": "big"})
                assert status == 201, (status, ep)
            api.close()

        cons = Api(d.api_port, "cons")
        for mark in checkpoints:
            if mark > rows:
                break
            t0 = time.monotonic()
            target = mark - 200
            if made[0] < target:
                threads = [threading.Thread(target=fill, args=(target,))
                           for _ in range(3)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            fill_s = time.monotonic() - t0
            lat = []
            c0 = cpu_seconds_precise(d.pid)
            while made[0] < mark:
                t1 = time.monotonic()
                status, ep, _ = cons.call("POST", "/v1/endpoints", {
                    "service": "svc", "network": "big"})
                lat.append(time.monotonic() - t1)
                assert status == 201, (status, ep)
                made[0] += 1
            record(results, "registry", mark, "create p50 (200 at N rows)",
                   1000 * statistics.median(lat), "ms",
                   "fill %.0f/s" % ((mark - 200) / max(fill_s, 1e-9))
                   if mark > 200 else "")
            record(results, "registry", mark, "create p99 (200 at N rows)",
                   1000 * percentile(lat, 99), "ms")
            record(results, "registry", mark, "create CPU (200 at N rows)",
                   1000 * (cpu_seconds_precise(d.pid) - c0) / len(lat), "ms")
            times, sizes, cpus = [], [], []
            token = None
            for _ in range(3):
                c0 = cpu_seconds_precise(d.pid)
                t1 = time.monotonic()
                path = "/v1/endpoints?limit=1000"
                if token:
                    path += "&next_token=" + token
                status, answer, size = cons.call("GET", path)
                times.append(time.monotonic() - t1)
                cpus.append(cpu_seconds_precise(d.pid) - c0)
                sizes.append(size)
                token = answer.get("next_token") if status == 200 else None
            record(results, "registry", mark, "a page of 1,000 endpoints",
                   1000 * statistics.median(times), "ms",
                   "%d bytes" % sizes[0])
            record(results, "registry", mark, "a page of 1,000: CPU",
                   1000 * statistics.median(cpus), "ms")
            times = []
            for _ in range(5):
                t1 = time.monotonic()
                status, answer, _ = cons.call("GET",
                                              "/v1/endpoints?state=available")
                times.append(time.monotonic() - t1)
            record(results, "registry", mark, "?state=available (empty)",
                   1000 * statistics.median(times), "ms",
                   "%d items" % len(answer.get("endpoints", [])))
        cons.close()
        prov.close()
        record(results, "registry", rows, "idle CPU", round(d.idle_cpu(3.0),
                                                            3), "%")
        wall, used = d.sighup()
        record(results, "registry", rows, "SIGHUP wall", 1000 * wall, "ms")
    finally:
        d.stop()


# ---- the table --------------------------------------------------------------

# Figures that are per unit (per operation, per endpoint, per target):
# they must stay flat, within 2x, from the smallest N to the largest.
PER_UNIT = {
    "create p50 (last 200)", "create p99 (last 200)",
    "create CPU (last 200, all threads)", "descriptors per endpoint",
    "one more create at N", "one delete at N",
    "CPU per 1,000 checks/s", "register one target at N",
    "create p50 (200 at N rows)", "create p99 (200 at N rows)",
    "create CPU (200 at N rows)", "a page of 1,000 endpoints",
    "a page of 1,000: CPU", "?state=available (empty)",
}


def show(entry):
    if not entry:
        return "–"
    v = entry["value"]
    if isinstance(v, float):
        v = "%.3g" % v if abs(v) < 1000 else "{:,.0f}".format(v)
    elif isinstance(v, int):
        v = "{:,}".format(v)
    return "%s %s" % (v, entry["unit"]) if entry["unit"] else str(v)


def table(before_path, after_path, out):
    """One row per figure and N, before and after side by side, with the
    growth of per-unit figures from the smallest N to the largest."""
    runs = {}
    for label, path in (("before", before_path), ("after", after_path)):
        with open(path) as f:
            runs[label] = json.load(f)
    index = {}
    order = []
    for label, run in runs.items():
        for e in run["results"]:
            key = (e["section"], e["name"])
            if key not in index:
                index[key] = {"before": {}, "after": {}}
                order.append(key)
            index[key][label][e["n"]] = e
    lines = ["| work | figure | N | before | after | load before / after |",
             "|---|---|---|---|---|---|"]
    for key in order:
        section, name = key
        ns = sorted(set(index[key]["before"]) | set(index[key]["after"]))
        for n in ns:
            b = index[key]["before"].get(n)
            a = index[key]["after"].get(n)
            lines.append("| %s | %s | %s | %s | %s | %s / %s |" % (
                section, name, "{:,}".format(n), show(b), show(a),
                b["load"] if b else "–", a["load"] if a else "–"))
        if name in PER_UNIT and len(ns) > 1:
            growth = []
            for label in ("before", "after"):
                first = index[key][label].get(ns[0])
                last = index[key][label].get(ns[-1])
                if first and last and isinstance(first["value"], (int, float)) \
                        and first["value"] > 0:
                    growth.append("%.1fx" % (last["value"] / first["value"]))
                else:
                    growth.append("–")
            lines.append("| %s | %s: growth %s to %s | | %s | %s | |" % (
                section, name, "{:,}".format(ns[0]), "{:,}".format(ns[-1]),
                growth[0], growth[1]))
    meta = ["Before: %s (load %.1f at start). After: %s (load %.1f at "
            "start). Descriptor limit %d." % (
                runs["before"]["meta"]["nlbd"],
                runs["before"]["meta"]["load_at_start"],
                runs["after"]["meta"]["nlbd"],
                runs["after"]["meta"]["load_at_start"],
                runs["after"]["meta"]["fd_hard_limit"]), ""]
    text = "\n".join(meta + lines) + "\n"
    if out:
        with open(out, "w") as f:
            f.write(text)
    print(text)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nlbd", default=os.environ.get("NLBD") or
                   os.path.join(TOP, "nlbd"))
    p.add_argument("--sizes", default="100,1000,10000")
    p.add_argument("--registry-rows", type=int, default=100000)
    p.add_argument("--only", default="endpoints,targets,registry")
    p.add_argument("--label", default="run")
    p.add_argument("--json")
    p.add_argument("--table", nargs=2, metavar=("BEFORE", "AFTER"))
    p.add_argument("--out")
    p.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm")
                   else None, help="where nlbd's files (and the registry) "
                   "go: tmpfs by default, so that fsync is not measured")
    args = p.parse_args()
    Nlbd.base_dir = args.dir
    if args.table:
        table(args.table[0], args.table[1], args.out)
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # SIGTERM and Ctrl-C stop what was started (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sizes = [int(s) for s in args.sizes.split(",") if s]
    only = args.only.split(",")
    results = []
    meta = {"label": args.label, "nlbd": args.nlbd, "started": time.time(),
            "load_at_start": loadavg(), "fd_hard_limit": hard}
    print("nlbd %s, descriptor limit %d, load %.2f" % (args.nlbd, hard,
                                                       loadavg()))
    try:
        for what in only:
            for n in sizes if what != "registry" else [args.registry_rows]:
                try:
                    if what == "endpoints":
                        bench_endpoints(args.nlbd, n, results)
                    elif what == "targets":
                        bench_targets(args.nlbd, n, results)
                    elif what == "registry":
                        marks = [m for m in (1000, 10000, 100000)
                                 if m < n] + [n]
                        bench_registry(args.nlbd, n, results, marks)
                except Exception as e:  # one size failing is a figure too
                    record(results, what, n, "failed", 0, "", repr(e)[:300])
    finally:
        for proc in _started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for pid in _adopted:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    meta["finished"] = time.time()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
