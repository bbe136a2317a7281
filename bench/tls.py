#!/usr/bin/env python3
"""TLS termination: nlbd against HAProxy in one run, on loopback.

Both terminate TLS with the same ECDSA P-256 certificate and the same
cipher (TLS 1.3, TLS_AES_128_GCM_SHA256), with the same number of threads,
and relay the plaintext to one nginx (HTTP/1.1, keep-alive). Measured for
each, alternating runs, median reported:

  - full handshakes per second: 8 `openssl s_time -new -www /` clients at
    once (a new TLS connection, a full handshake and one HTTP/1.0 request
    each time);
  - resumed handshakes per second: wrk with "Connection: close" (a new TLS
    connection per request; wrk resumes each from its previous
    connection's session, with the ticket that connection got);
  - keep-alive requests per second and their p99 latency (wrk --latency);
  - bulk throughput: wrk fetching an 8 MiB file over 4 connections;
  - memory per idle TLS flow: the balancer's RSS before and after COUNT
    handshaken, idle TLS connections (kernel socket buffers not counted);
  - the balancer's CPU time (user + system) per full handshake and per
    keep-alive request: what other load on the machine disturbs least.

Writes bench/results-tls.md (or --out) and the raw figures beside it
(.json). Needs nginx, haproxy, wrk and openssl; the nlbd of the build
directory (--nlbd). About a minute with the defaults.

    bench/tls.py [--nlbd _build/nlbd] [--runs 3] [--duration 3]
                 [--threads 2] [--idle 2000] [--out bench/results-tls.md]
"""

import argparse
import json
import os
import platform
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIPHERSUITE = "TLS_AES_128_GCM_SHA256"


def log(message):
    print("[tls bench %s] %s" % (time.strftime("%H:%M:%S"), message),
          file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("exited %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d never opened" % port)


def make_certificate(work):
    key, cert = os.path.join(work, "key.pem"), os.path.join(work, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=bench.test",
                    "-addext", "subjectAltName=DNS:bench.test"],
                   check=True, capture_output=True)
    combined = os.path.join(work, "combined.pem")
    with open(combined, "w") as f:
        f.write(open(cert).read() + open(key).read())
    return cert, key, combined


def start_nginx(work, port):
    os.makedirs(os.path.join(work, "nginx", "tmp"), exist_ok=True)
    bulk = os.path.join(work, "bulk.bin")
    with open(bulk, "wb") as f:
        f.write(os.urandom(8 << 20))
    os.chmod(bulk, 0o644)
    conf = os.path.join(work, "nginx", "nginx.conf")
    with open(conf, "w") as f:
        f.write("""worker_processes 1;
worker_rlimit_nofile 20000;
pid %(w)s/nginx/nginx.pid;
error_log %(w)s/nginx/error.log warn;
events { worker_connections 16000; }
http {
  access_log off;
  client_body_temp_path %(w)s/nginx/tmp/body;
  proxy_temp_path %(w)s/nginx/tmp/proxy;
  fastcgi_temp_path %(w)s/nginx/tmp/fastcgi;
  uwsgi_temp_path %(w)s/nginx/tmp/uwsgi;
  scgi_temp_path %(w)s/nginx/tmp/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  sendfile on;
  server {
    listen 127.0.0.1:%(p)d backlog=4096;
    location = /bulk { alias %(bulk)s; default_type application/octet-stream; }
    location / { default_type text/plain; return 200 "ok\\n"; }
  }
}
""" % {"w": work, "p": port, "bulk": bulk})
    proc = subprocess.Popen(["nginx", "-p", os.path.join(work, "nginx"),
                             "-c", conf, "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc


def start_nlbd(args, work, port, backend, cert, key):
    conf = os.path.join(work, "nlb.cfg")
    with open(conf, "w") as f:
        f.write("""workers = %d;
log = { access = "off"; events = "%s/nlbd-events.log"; };
target_groups = ( { name = "web"; health_check = { interval = "5s"; };
  targets = ( { address = "127.0.0.1:%d"; } ); } );
load_balancers = ( { name = "web"; listeners = ( { port = %d;
  bind = "127.0.0.1"; target_group = "web"; protocol = "tls";
  tls = { certificates = ( { cert = "%s"; key = "%s"; } );
          alpn = [ "http/1.1" ]; ciphersuites = "%s"; }; } ); } );
""" % (args.threads, work, backend, port, cert, key, CIPHERSUITE))
    proc = subprocess.Popen([args.nlbd, "-c", conf],
                            stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "nlbd.err"), "w"))
    wait_port(port, proc)
    return proc


def start_haproxy(args, work, port, backend, combined):
    conf = os.path.join(work, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write("""global
  nbthread %d
  maxconn 8000
  ssl-default-bind-ciphersuites %s
defaults
  mode tcp
  maxconn 8000
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend web
  bind 127.0.0.1:%d ssl crt %s alpn http/1.1
  default_backend web
backend web
  server nginx 127.0.0.1:%d
""" % (args.threads, CIPHERSUITE, port, combined, backend))
    proc = subprocess.Popen(["haproxy", "-f", conf, "-db"],
                            stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "haproxy.err"),
                                        "w"))
    wait_port(port, proc)
    return proc


def wrk(args, url, connections, extra=()):
    out = subprocess.run(
        ["wrk", "-t1", "-c%d" % connections, "-d%ds" % args.duration,
         "--latency"] + list(extra) + [url], capture_output=True, text=True,
        timeout=args.duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    units = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: "
                       r"connect (\d+), read (\d+), write (\d+), timeout "
                       r"(\d+)", out)
    return {"rps": rps,
            "p99_ms": float(p99.group(1)) * scale[p99.group(2)],
            "bytes_per_s": float(transfer.group(1)) * units[transfer.group(2)],
            "errors": errors.group(0) if errors else ""}


def cpu_seconds(pid):
    """User and system CPU time of process pid (all its threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def idle_memory(port, pid, count):
    """Bytes of RSS per idle TLS flow: count handshaken connections held."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    time.sleep(0.5)
    before = rss_kib(pid)
    held = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        held.append(ctx.wrap_socket(raw, server_hostname="bench.test"))
    time.sleep(1.0)
    after = rss_kib(pid)
    for s in held:
        s.close()
    return (after - before) * 1024.0 / count


def full_handshakes(args, port, proc, clients=8):
    """Full handshakes per second and the balancer's CPU microseconds per
    handshake: clients openssl s_time -new at once, each a new connection,
    a full handshake (s_time never resumes with -new) and one HTTP/1.0
    request after another. The request makes both balancers connect to
    the target for each; a client that closes right after its handshake
    may find HAProxy not connecting at all."""
    before, start = cpu_seconds(proc.pid), time.monotonic()
    runs = [subprocess.Popen(
        ["openssl", "s_time", "-connect", "127.0.0.1:%d" % port, "-new",
         "-www", "/", "-time", str(args.duration), "-ciphersuites",
         CIPHERSUITE],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for _ in range(clients)]
    done = 0
    for run in runs:
        out = run.communicate(timeout=args.duration + 30)[0]
        found = re.search(r"(\d+) connections in [\d.]+ real seconds", out)
        done += int(found.group(1)) if found else 0
    elapsed = time.monotonic() - start
    used = cpu_seconds(proc.pid) - before
    return {"rps": done / elapsed, "cpu_us": used * 1e6 / max(done, 1)}


def cpu_per_request(args, proc, url, connections, extra=()):
    """wrk's figures and the balancer's CPU microseconds per request: a
    figure the other load on the machine changes less than the rates."""
    before = cpu_seconds(proc.pid)
    result = wrk(args, url, connections, extra)
    used = cpu_seconds(proc.pid) - before
    result["cpu_us"] = used * 1e6 / max(result["rps"] * args.duration, 1)
    return result


def measure(args, name, port, proc):
    base = "https://127.0.0.1:%d" % port
    wrk(args, base + "/", 20)  # warm-up
    full = full_handshakes(args, port, proc)
    hs = cpu_per_request(args, proc, base + "/", 50,
                         ["-H", "Connection: close"])
    ka = cpu_per_request(args, proc, base + "/", 50)
    bulk = wrk(args, base + "/bulk", 4)
    mem = idle_memory(port, proc.pid, args.idle)
    result = {"full_handshakes_per_s": full["rps"],
              "cpu_us_per_full_handshake": full["cpu_us"],
              "resumed_per_s": hs["rps"], "keepalive_rps": ka["rps"],
              "cpu_us_per_resumed": hs["cpu_us"],
              "cpu_us_per_keepalive_request": ka["cpu_us"],
              "keepalive_p99_ms": ka["p99_ms"],
              "bulk_bytes_per_s": bulk["bytes_per_s"],
              "idle_bytes_per_flow": mem,
              "errors": [hs["errors"], ka["errors"], bulk["errors"]]}
    log("%s: %s" % (name, json.dumps(result)))
    return result


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def write_report(args, results):
    rows = [("full handshakes/s", "full_handshakes_per_s", "%.0f", True),
            ("resumed handshakes + request/s", "resumed_per_s", "%.0f",
             True),
            ("keep-alive requests/s", "keepalive_rps", "%.0f", True),
            ("keep-alive p99 (ms)", "keepalive_p99_ms", "%.2f", False),
            ("balancer CPU per full handshake (us)",
             "cpu_us_per_full_handshake", "%.0f", False),
            ("balancer CPU per resumed handshake + request (us)",
             "cpu_us_per_resumed", "%.0f", False),
            ("balancer CPU per keep-alive request (us)",
             "cpu_us_per_keepalive_request", "%.1f", False),
            ("bulk throughput (MiB/s)", "bulk_bytes_per_s", "%.0f", True),
            ("memory per idle TLS flow (bytes)", "idle_bytes_per_flow",
             "%.0f", False)]
    lines = ["# TLS termination: nlbd against HAProxy", "",
             "Produced by `bench/tls.py` (%s); %d alternating run(s) per "
             "balancer, medians. %d thread(s) each, loopback, ECDSA P-256, "
             "TLS 1.3 %s, one nginx target; full handshakes: 8 openssl "
             "s_time -new -www / at once; wrk -t1 (-c50 resumed handshakes with "
             "Connection: close, and keep-alive, -c4 bulk of an 8 MiB "
             "file); %d s each; %d idle flows. Load averages (1, 5, 15 "
             "min): %s at the start, %s at the end." % (
                 time.strftime("%Y-%m-%d"), args.runs, args.threads,
                 CIPHERSUITE, args.duration, args.idle,
                 results["load_start"], results["load_end"]),
             "", "Host: %s, %d CPUs, %s; %s." % (
                 platform.node(), os.cpu_count(), platform.release(),
                 subprocess.run(["haproxy", "-v"], capture_output=True,
                                text=True).stdout.splitlines()[0]),
             "", "| metric | nlbd | HAProxy | nlbd / HAProxy |",
             "|---|---|---|---|"]
    for label, key, fmt, higher in rows:
        n, h = median(results["nlbd"], key), median(results["haproxy"], key)
        scale = (1 << 20) if key == "bulk_bytes_per_s" else 1
        lines.append("| %s | %s | %s | %.2fx |" % (
            label, fmt % (n / scale), fmt % (h / scale), n / h if h else 0))
    lines += ["", "Higher is better for rates and throughput, lower for p99 "
              "and memory.", "", "Every run (nlbd; HAProxy), in run order:",
              "", "| metric | nlbd runs | HAProxy runs |", "|---|---|---|"]
    for label, key, fmt, higher in rows:
        scale = (1 << 20) if key == "bulk_bytes_per_s" else 1
        lines.append("| %s | %s | %s |" % (label, ", ".join(
            fmt % (r[key] / scale) for r in results["nlbd"]), ", ".join(
            fmt % (r[key] / scale) for r in results["haproxy"])))
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(results, f, indent=1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nlbd", default=os.path.join(TOP, "_build", "nlbd"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--idle", type=int, default=2000)
    p.add_argument("--out", default=os.path.join(TOP, "bench",
                                                 "results-tls.md"))
    args = p.parse_args()
    for tool in ("nginx", "haproxy", "wrk", "openssl"):
        if not shutil.which(tool):
            sys.exit("bench/tls.py needs %s" % tool)
    work = tempfile.mkdtemp(prefix="nlb-tls-bench-")
    os.chmod(work, 0o755)  # nginx's workers may run as another user
    cert, key, combined = make_certificate(work)
    backend = free_port()
    nginx = start_nginx(work, backend)
    results = {"nlbd": [], "haproxy": [],
               "load_start": "%.2f, %.2f, %.2f" % os.getloadavg()}
    try:
        for run in range(args.runs):
            for name in ("nlbd", "haproxy"):
                port = free_port()
                proc = (start_nlbd(args, work, port, backend, cert, key)
                        if name == "nlbd" else
                        start_haproxy(args, work, port, backend, combined))
                try:
                    time.sleep(0.3)
                    results[name].append(measure(args, name, port, proc))
                finally:
                    proc.terminate()
                    proc.wait(15)
    finally:
        nginx.terminate()
        nginx.wait(10)
    results["load_end"] = "%.2f, %.2f, %.2f" % os.getloadavg()
    write_report(args, results)
    log("wrote %s" % args.out)


if __name__ == "__main__":
    main()
