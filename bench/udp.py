#!/usr/bin/env python3
"""UDP benchmark: nlbd against NGINX's stream module (and direct, the
limit), in one run, on 127.0.0.1. See bench/README-udp.md.

    bench/udp.py [--quick] [--runs N] [--seconds S] [--flows N] [--out FILE]

Environment: NLBD (default ./nlbd at the top of the repository, else
_build/nlbd), UDP_LOAD (default bench/udp_load beside nlbd). Ports
19100-19199 on 127.0.0.1 belong to this script."""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)

P_ECHO = 19101     # the target: udp_load echo
P_HEALTH = 19102   # a TCP port nlbd's health check connects to
P_ECHO_GRO = 19103  # the bulk test's target: udp_load echo ... gro
P_NGINX = 19111
P_NGINX_BULK = 19112
P_NLBD = 19121
P_NLBD_BULK = 19122
# The bulk test: a few flows of large datagrams, each flow's window sent
# as one GSO send (as QUIC senders do), to a target taking them with UDP
# GRO and answering likewise.
BULK_FLOWS, BULK_SIZE, BULK_WINDOW = 8, 1200, 32
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def find(env, *candidates):
    if os.environ.get(env):
        return os.environ[env]
    for c in candidates:
        if os.path.exists(c):
            return c
    sys.exit("udp.py: none of %s (set %s)" % (", ".join(candidates), env))


def log(text):
    print("[udp bench %s] %s" % (time.strftime("%H:%M:%S"), text),
          file=sys.stderr, flush=True)


class Proc:
    def __init__(self, name, args, work, **kw):
        self.log_path = os.path.join(work, name + ".log")
        self.proc = subprocess.Popen(args, stdout=open(self.log_path, "w"),
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],
                         capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def answers(port, timeout=10):
    """Waits until a datagram sent to port is answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            s.connect(("127.0.0.1", port))
            try:
                s.send(b"probe")
                if s.recv(100):
                    return True
            except (socket.timeout, ConnectionRefusedError):
                pass
    return False


def cpu_seconds(pids):
    """user + system time of the processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def start_nginx(work, layout):
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""load_module %s;
worker_processes %s;
daemon off;
pid %s/nginx.pid;
error_log %s/nginx-error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 30000; }
stream {
    upstream echo { server 127.0.0.1:%d; }
    upstream echo_gro { server 127.0.0.1:%d; }
    server {
        listen 127.0.0.1:%d udp reuseport rcvbuf=4m;
        proxy_pass echo;
        proxy_timeout 120s;
    }
    server {
        listen 127.0.0.1:%d udp reuseport rcvbuf=4m;
        proxy_pass echo_gro;
        proxy_timeout 120s;
    }
}
""" % (STREAM_MODULE, "1" if layout == "pinned" else "auto", work, work,
       P_ECHO, P_ECHO_GRO, P_NGINX, P_NGINX_BULK))
    p = Proc("nginx", PIN[layout]["balancer"] +
             ["nginx", "-c", conf, "-p", work], work)
    return p, lambda: [p.proc.pid] + children(p.proc.pid)


def start_nlbd(work, nlbd, layout):
    conf = os.path.join(work, "nlb.cfg")
    with open(conf, "w") as f:
        f.write("""workers = %d;
worker_cpu_affinity = "%s";
log = { access = "off"; events = "%s/nlbd-events.log"; };
target_groups = ( { name = "echo";
  health_check = { port = %d; };
  targets = ( { address = "127.0.0.1:%d"; } ); },
  { name = "echo_gro"; health_check = { port = %d; };
  targets = ( { address = "127.0.0.1:%d"; } ); } );
load_balancers = ( { name = "udp"; listeners = (
  { port = %d; protocol = "udp"; target_group = "echo";
    bind = "127.0.0.1"; },
  { port = %d; protocol = "udp"; target_group = "echo_gro";
    bind = "127.0.0.1"; } ); } );
""" % (1 if layout == "pinned" else 0,
       "auto" if layout == "pinned" else "off", work, P_HEALTH, P_ECHO,
       P_HEALTH, P_ECHO_GRO, P_NLBD, P_NLBD_BULK))
    p = Proc("nlbd", PIN[layout]["balancer"] + [nlbd, "-c", conf], work)
    return p, lambda: [p.proc.pid]


SETUPS = {"direct": P_ECHO, "nginx": P_NGINX, "nlbd": P_NLBD}
BULK_PORTS = {"direct": P_ECHO_GRO, "nginx": P_NGINX_BULK,
              "nlbd": P_NLBD_BULK}

# Where each process runs. shared: anywhere, a balancer worker per CPU,
# neither balancer pinning its workers (nginx's default; nlbd's
# worker_cpu_affinity = "off", as other work shares the CPUs).
# pinned: the balancer (one worker) alone on CPU 0, the load and the echo
# target on CPU 1, so that the balancer is what limits the rate.
PIN = {"shared": {"balancer": [], "load": []},
       "pinned": {"balancer": ["taskset", "-c", "0"],
                  "load": ["taskset", "-c", "1"]}}


# The echo targets' pids, for their CPU time (the peers' share).
ECHO_PIDS = []


def measure(udp_load, port, flows, size, window, seconds, layout, pids,
            gso=False):
    cpu = cpu_seconds(pids()) if pids else 0.0
    echo_cpu = cpu_seconds(ECHO_PIDS)
    r = subprocess.run(PIN[layout]["load"] +
                       [udp_load, "load", str(port), str(flows), str(size),
                        str(window), str(seconds)] + (["gso"] if gso else []),
                       capture_output=True, text=True, timeout=seconds + 30)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    m = json.loads(r.stdout)
    # What the load and the target spent per answered datagram: the same
    # work whatever sits between them, but for how well it batches.
    if m["answered"]:
        m["peers_cpu_us"] = (m["cpu_s"] + cpu_seconds(ECHO_PIDS) -
                             echo_cpu) * 1e6 / m["answered"]
    # The balancer's CPU per answered datagram (warm-up included in the
    # CPU time and excluded from the count: an overestimate for both).
    if pids and m["answered"]:
        m["cpu_us"] = (cpu_seconds(pids()) - cpu) * 1e6 / m["answered"]
    return m


def idle_memory(udp_load, port, pids, flows, work):
    before = rss_kib(pids())
    opener = subprocess.Popen([udp_load, "idle", str(port), str(flows)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    line = opener.stdout.readline().split()
    held = int(line[1]) if len(line) == 2 else 0
    time.sleep(0.5)
    after = rss_kib(pids())
    opener.stdin.close()
    opener.wait(10)
    return {"flows": held, "rss_before_kib": before, "rss_after_kib": after,
            "bytes_per_flow": (after - before) * 1024.0 / held if held else
            None}


def run_one(layout, name, port, r, work, nlbd, udp_load, seconds, results,
            light, bulk, memory, args):
    proc = pids = None
    if name == "nginx":
        proc, pids = start_nginx(work, layout)
    elif name == "nlbd":
        proc, pids = start_nlbd(work, nlbd, layout)
    try:
        if not answers(port):
            raise RuntimeError("%s does not answer" % name)
        m = measure(udp_load, port, 64, 64, args.window, seconds, layout,
                    pids)
        results[layout, name].append(m)
        log("%s run %d %s: %.0f datagrams/s, p99 %d us, %s us CPU each" % (
            layout, r + 1, name, m["rate"], m["p99_us"],
            "%.1f" % m["cpu_us"] if "cpu_us" in m else "-"))
        m = measure(udp_load, port, 8, 64, 1, max(2, seconds - 2), layout,
                    pids)
        light[layout, name].append(m)
        log("%s run %d %s light: p50 %d us, p99 %d us" % (
            layout, r + 1, name, m["p50_us"], m["p99_us"]))
        if layout == "shared":
            m = measure(udp_load, BULK_PORTS[name], BULK_FLOWS, BULK_SIZE,
                        BULK_WINDOW, max(2, seconds - 2), layout, pids,
                        gso=True)
            bulk[name].append(m)
            log("%s run %d %s bulk: %.0f datagrams/s, p99 %d us, %s us "
                "CPU each" % (layout, r + 1, name, m["rate"], m["p99_us"],
                              "%.1f" % m["cpu_us"] if "cpu_us" in m
                              else "-"))
        if r == 0 and layout == "shared" and name != "direct":
            memory[name] = idle_memory(udp_load, port, pids, args.flows,
                                       work)
            log("%s: %s" % (name, memory[name]))
    finally:
        if proc:
            proc.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--seconds", type=int)
    ap.add_argument("--flows", type=int, default=5000,
                    help="idle flows for the memory measurement")
    ap.add_argument("--window", type=int, default=16,
                    help="datagrams in flight per flow in the rate test")
    ap.add_argument("--out")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    seconds = args.seconds or (3 if args.quick else 5)
    out = args.out or os.path.join(
        HERE, "results", "raw", "results-udp.md") if args.quick else \
        args.out or os.path.join(HERE, "results-udp.md")
    nlbd = find("NLBD", os.path.join(TOP, "nlbd"),
                os.path.join(TOP, "_build", "nlbd"))
    udp_load = find("UDP_LOAD", os.path.join(os.path.dirname(nlbd), "bench",
                                             "udp_load"))
    for tool in ("nginx",):
        if shutil.which(tool) is None:
            sys.exit("udp.py: %s not found (scripts/debian-packages.txt)" %
                     tool)
    if not os.path.exists(STREAM_MODULE):
        sys.exit("udp.py: %s missing: install libnginx-mod-stream" %
                 STREAM_MODULE)
    work = tempfile.mkdtemp(prefix="nlb-udp-bench-")
    health = socket.socket()
    health.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    health.bind(("127.0.0.1", P_HEALTH))
    health.listen(64)
    layouts = ("pinned", "shared")
    results = {(l, n): [] for l in layouts for n in SETUPS}
    light = {(l, n): [] for l in layouts for n in SETUPS}
    bulk = {n: [] for n in SETUPS}
    memory = {}
    load_before = os.getloadavg()
    try:
        for layout in layouts:
            echo = Proc("echo-" + layout, PIN[layout]["load"] +
                        [udp_load, "echo", str(P_ECHO)], work)
            echo_gro = Proc("echo-gro-" + layout, PIN[layout]["load"] +
                            [udp_load, "echo", str(P_ECHO_GRO), "gro"], work)
            ECHO_PIDS[:] = [echo.proc.pid, echo_gro.proc.pid]
            try:
                assert answers(P_ECHO), "the echo target does not answer"
                assert answers(P_ECHO_GRO), "the GRO target does not answer"
                for r in range(runs):
                    for name, port in SETUPS.items():
                        run_one(layout, name, port, r, work, nlbd, udp_load,
                                seconds, results, light, bulk, memory, args)
            finally:
                echo.stop()
                echo_gro.stop()
    finally:
        health.close()
    load_after = os.getloadavg()

    def median(rows, key):
        return statistics.median(row[key] for row in rows)

    def cpu(rows, key="cpu_us"):
        values = [row[key] for row in rows if key in row]
        return statistics.median(values) if values else None

    def us(value):
        return "%.2f" % value if value is not None else "-"

    lines = [
        "# UDP: nlbd against NGINX stream", "",
        "`bench/udp.py%s` on %s, %d CPUs, %d run(s) of %d s per setup and "
        "layout (medians); load average %.1f before, %.1f after (other "
        "work shares this machine)." % (
            " --quick" if args.quick else "", time.strftime("%Y-%m-%d"),
            os.cpu_count(), runs, seconds, load_before[0], load_after[0]),
        "",
        "Rate: 64 flows (64 sockets) of 64-byte datagrams, %d in flight "
        "each. Light: 8 flows, 1 in flight. Round trips in microseconds. "
        "CPU: the balancer's user + system time per answered datagram; "
        "load + target: the load generator's and the echo target's." %
        args.window, ""]
    ratios = []
    for layout in layouts:
        lines += ["## %s" % layout, "",
                  "| setup | datagrams/s | p50 | p99 | light p50 | light p99 "
                  "| CPU us per datagram | load + target CPU us |",
                  "|---|---|---|---|---|---|---|---|"]
        t = {}
        for name in SETUPS:
            rows, lrows = results[layout, name], light[layout, name]
            t[name] = (median(rows, "rate"), median(rows, "p99_us"),
                       median(lrows, "p99_us"), cpu(rows))
            c = t[name][3]
            lines.append("| %s | %.0f | %d | %d | %d | %d | %s | %s |" % (
                name, t[name][0], median(rows, "p50_us"), t[name][1],
                median(lrows, "p50_us"), t[name][2], us(c),
                us(cpu(rows, "peers_cpu_us"))))
        nl, ng = t["nlbd"], t["nginx"]
        ratios.append("| %s | %.2fx | %.2fx | %.2fx | %s |" % (
            layout, nl[0] / ng[0], nl[1] / ng[1], nl[2] / ng[2],
            "%.2fx" % (nl[3] / ng[3]) if nl[3] and ng[3] else "-"))
        lines.append("")
    lines += ["## bulk (shared layout)", "",
              "%d flows of %d-byte datagrams, %d in flight each, each "
              "flow's datagrams sent together as one GSO send; the target "
              "takes them with UDP GRO and answers likewise, and so does "
              "the load's socket." % (BULK_FLOWS, BULK_SIZE, BULK_WINDOW),
              "",
              "| setup | datagrams/s | p50 | p99 | CPU us per datagram "
              "| load + target CPU us |",
              "|---|---|---|---|---|---|"]
    tb = {}
    for name in SETUPS:
        rows = bulk[name]
        tb[name] = (median(rows, "rate"), median(rows, "p99_us"), cpu(rows))
        lines.append("| %s | %.0f | %d | %d | %s | %s |" % (
            name, tb[name][0], median(rows, "p50_us"), tb[name][1],
            us(tb[name][2]), us(cpu(rows, "peers_cpu_us"))))
    nl, ng = tb["nlbd"], tb["nginx"]
    ratios.append("| bulk | %.2fx | %.2fx | - | %s |" % (
        nl[0] / ng[0], nl[1] / ng[1],
        "%.2fx" % (nl[2] / ng[2]) if nl[2] and ng[2] else "-"))
    lines.append("")
    lines += ["## nlbd / nginx", "",
              "| layout | datagrams/s | p99 | light p99 | CPU per datagram |",
              "|---|---|---|---|---|"] + ratios + [""]
    lines.append("Memory per idle UDP flow (RSS growth over %d flows each "
                 "holding one answered datagram; user space only):" %
                 args.flows)
    lines.append("")
    lines.append("| setup | flows held | RSS before KiB | after KiB | bytes "
                 "per flow |")
    lines.append("|---|---|---|---|---|")
    for name, m in memory.items():
        lines.append("| %s | %d | %d | %d | %s |" % (
            name, m["flows"], m["rss_before_kib"], m["rss_after_kib"],
            "%.0f" % m["bytes_per_flow"] if m["bytes_per_flow"] is not None
            else "-"))
    lines.append("")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(work, "raw.json"), "w") as f:
        json.dump({"rate": {"%s/%s" % k: v for k, v in results.items()},
                   "light": {"%s/%s" % k: v for k, v in light.items()},
                   "bulk": bulk,
                   "memory": memory}, f)
    print("\n".join(lines))
    log("raw material in %s" % work)


if __name__ == "__main__":
    main()
