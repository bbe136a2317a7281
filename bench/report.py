#!/usr/bin/env python3
"""Helpers for bench/run.sh: parse tool outputs, sample a process's CPU time,
and write the Markdown results table. Python 3 stdlib only.

    report.py iperf FILE        iperf3 -J output -> "GBITS_PER_S BYTES"
    report.py wrk FILE          wrk --latency output -> "REQ_PER_S P99_MS ERRORS"
    report.py cpu PID           user+sys seconds of PID (all its threads)
    report.py hostcpu           busy seconds of the whole host (/proc/stat)
    report.py table RAW META    Markdown table from the raw JSON lines

RAW holds one JSON object a line: {"setup", "metric", "run", "value"}, with
setup one of direct, haproxy, haproxy-splice, nlbd, nlbd-sockmap. META is a JSON object
describing the run (date, commit, host, versions, parameters, notes).
"""

import json
import os
import re
import statistics
import sys

# metric key -> (label, unit, higher is better)
METRICS = [
    ("iperf_gbps", "Bulk throughput (iperf3, 1 stream)", "Gbit/s", True),
    ("ka_rps", "Keep-alive request rate (wrk -c50)", "req/s", True),
    ("ka_p99_ms", "Keep-alive p99 latency (wrk -c50)", "ms", False),
    ("close_rps", "New-connection rate (wrk -c50, Connection: close)",
     "conn/s", True),
    ("idle_bytes_per_flow", "Memory per idle flow (RSS growth)",
     "bytes/flow", False),
    ("cpu_s_per_gb", "CPU per GB moved (user+sys, during iperf3)",
     "s/GB", False),
    # Every process and the kernel's own work (softirq, work queues): the
    # sockmap's forwarding is charged to no process. Includes iperf3 and
    # whatever else the host runs.
    ("host_cpu_s_per_gb", "Host CPU per GB moved (all CPUs, during iperf3)",
     "s/GB", False),
    # The rates above are bounded by the CPU the balancer shares with wrk
    # and nginx on the same cores; what the balancer itself costs is this.
    ("ka_cpu_us_per_req", "CPU per keep-alive request (user+sys)",
     "us/req", False),
    ("close_cpu_us_per_conn", "CPU per new connection (user+sys)",
     "us/conn", False),
]


def parse_iperf(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("error"):
        raise SystemExit(f"iperf3: {data['error']}")
    recv = data["end"]["sum_received"]
    return recv["bits_per_second"] / 1e9, int(recv["bytes"])


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"bad wrk duration {text!r}")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[m.group(2)]
    return float(m.group(1)) * scale


def parse_wrk(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    if not rps or not p99:
        raise SystemExit(f"wrk output without Requests/sec or 99%: {path}")
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    return float(rps.group(1)), to_ms(p99.group(1)), errors


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        stat = f.read()
    # Fields after the command name, which may hold spaces: state is field 3,
    # utime field 14, stime field 15.
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def host_cpu_seconds():
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()[1:]
    # user nice system idle iowait irq softirq steal ...: busy is all but
    # idle and iowait.
    values = [int(v) for v in fields[:8]]
    busy = sum(values) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")


def fmt(value):
    if value is None:
        return "n/a"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def load_raw(path):
    runs = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec.get("value") is None:
                continue
            runs.setdefault((rec["setup"], rec["metric"]), []).append(
                float(rec["value"]))
    return runs


def table(raw_path, meta_path):
    runs = load_raw(raw_path)
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)

    def median(setup, metric):
        values = runs.get((setup, metric))
        return statistics.median(values) if values else None

    out = []
    w = out.append
    w("# nlb benchmark results")
    w("")
    w(f"Run {meta.get('date', '?')} on commit `{meta.get('commit', '?')}`"
      f" ({meta.get('mode', '?')} mode, {meta.get('runs', '?')} run(s) per"
      f" measurement; medians). Produced by `bench/run.sh`; see"
      f" `bench/README.md` for the method.")
    w("")
    sockmap = any(setup == "nlbd-sockmap" for setup, _ in runs)
    if sockmap:
        w("| Metric | Unit | Direct (limit) | HAProxy (best) | nlbd splice |"
          " nlbd sockmap | splice/HAProxy | sockmap/HAProxy |"
          " sockmap/splice |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    else:
        w("| Metric | Unit | Direct (limit) | HAProxy (best) | nlbd |"
          " nlbd/HAProxy |")
        w("|---|---|---:|---:|---:|---:|")
    for key, label, unit, higher in METRICS:
        direct = median("direct", key)
        plain = median("haproxy", key)
        splice = median("haproxy-splice", key)
        best, variant = None, ""
        for value, name in ((plain, "no splice"), (splice, "splice-auto")):
            if value is None:
                continue
            if best is None or (value > best if higher else value < best):
                best, variant = value, name
        nlbd = median("nlbd", key)
        ratio = f"{nlbd / best:.2f}" if nlbd is not None and best else "n/a"
        hap = f"{fmt(best)} ({variant})" if best is not None else "n/a"
        arrow = "higher is better" if higher else "lower is better"
        if sockmap:
            sm = median("nlbd-sockmap", key)
            sm_ratio = f"{sm / best:.2f}" if sm is not None and best else "n/a"
            sm_splice = f"{sm / nlbd:.2f}" if sm is not None and nlbd else \
                "n/a"
            w(f"| {label} | {unit}, {arrow} | {fmt(direct)} | {hap} |"
              f" {fmt(nlbd)} | {fmt(sm)} | {ratio} | {sm_ratio} |"
              f" {sm_splice} |")
            continue
        w(f"| {label} | {unit}, {arrow} | {fmt(direct)} | {hap} |"
          f" {fmt(nlbd)} | {ratio} |")
    w("")
    w("Direct connections have no balancer process, so memory and CPU per"
      " flow are n/a there. The ratio is nlbd's median over HAProxy's best"
      " variant: above 1 is better for rates, below 1 for latency, memory"
      " and CPU.")
    w("")

    w("## HAProxy variants")
    w("")
    w("| Metric | no splice | `option splice-auto` |")
    w("|---|---:|---:|")
    for key, label, unit, _ in METRICS:
        w(f"| {label} ({unit}) | {fmt(median('haproxy', key))} |"
          f" {fmt(median('haproxy-splice', key))} |")
    w("")

    w("## Every run")
    w("")
    w("| Setup | Metric | Runs |")
    w("|---|---|---|")
    for setup in ("direct", "haproxy", "haproxy-splice", "nlbd",
                  "nlbd-sockmap"):
        for key, _, _, _ in METRICS:
            values = runs.get((setup, key))
            if values:
                w(f"| {setup} | {key} | {'; '.join(fmt(v) for v in values)}"
                  " |")
    w("")

    w("## Setup")
    w("")
    for name in ("host", "cpu", "kernel", "versions", "parameters"):
        if name in meta:
            w(f"- {name}: {meta[name]}")
    for note in meta.get("notes", []):
        w(f"- note: {note}")
    w("")
    return "\n".join(out)


def main(argv):
    if len(argv) < 2 or (len(argv) < 3 and argv[1] != "hostcpu"):
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "iperf":
        gbps, nbytes = parse_iperf(argv[2])
        print(f"{gbps:.4f} {nbytes}")
    elif cmd == "wrk":
        rps, p99, errors = parse_wrk(argv[2])
        print(f"{rps:.1f} {p99:.3f} {errors}")
    elif cmd == "cpu":
        print(f"{cpu_seconds(int(argv[2])):.2f}")
    elif cmd == "hostcpu":
        print(f"{host_cpu_seconds():.2f}")
    elif cmd == "table" and len(argv) == 4:
        print(table(argv[2], argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
