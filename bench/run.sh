#!/usr/bin/env bash
# nlb benchmark: direct connections (the limit), HAProxy in TCP mode (its best
# of with and without `option splice-auto`) and nlbd, side by side, on
# loopback. See bench/README.md.
#
#   bench/run.sh [--quick] [--runs N] [--flows N] [--out FILE] [--only LIST]
#                [--sockmap]
#
# --sockmap adds nlbd with forwarding = "sockmap" (setup nlbd-sockmap; needs
# root or CAP_BPF + CAP_NET_ADMIN) and writes bench/results-sockmap.md.
#
# Environment: NLBD (default: ./nlbd at the top of the repository).
# Ports 19000-19099 on 127.0.0.1 belong to this script.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")
NLBD=${NLBD:-$top/nlbd}
PY=${PYTHON:-python3}

quick=0
runs=""
flows=5000
out=""
only="direct haproxy haproxy-splice nlbd"
sockmap=0

usage() {
  sed -n '2,10s/^# \{0,1\}//p' "$0"
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
  --quick) quick=1 ;;
  --runs) runs=$2; shift ;;
  --flows) flows=$2; shift ;;
  --out) out=$2; shift ;;
  --only) only=$2; shift ;;
  --sockmap) sockmap=1 ;;
  -h | --help) usage ;;
  *) echo "run.sh: unknown argument $1" >&2; usage ;;
  esac
  shift
done

if [ "$sockmap" = 1 ]; then
  case " $only " in *" nlbd-sockmap "*) ;; *) only="$only nlbd-sockmap" ;; esac
  [ "$quick" = 1 ] || out=${out:-$here/results-sockmap.md}
fi

if [ "$quick" = 1 ]; then
  mode=quick
  runs=${runs:-1}
  dur=3         # seconds per iperf3 / wrk run
  idle_runs=1
  settle=0.5
  out=${out:-$here/results/raw/results.md}
else
  mode=full
  runs=${runs:-3}
  dur=5
  idle_runs=$runs
  settle=1
  out=${out:-$here/results.md}
fi

P_HTTP=19001      # nginx
P_IPERF=19002     # iperf3 -s
P_HAP_HTTP=19011  # HAProxy frontends
P_HAP_IPERF=19012
P_NLB_HTTP=19021  # nlbd listeners
P_NLB_IPERF=19022

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in nginx haproxy wrk iperf3 curl ss "$PY"; do
  command -v "$tool" >/dev/null || die "$tool not found (see scripts/debian-packages.txt)"
done

# 5,000 idle flows need 10,000 descriptors in the balancer (client and
# target side) and 5,000 in nginx and in the opener.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
nofile=$(ulimit -n)
notes=()
if [ "$nofile" != unlimited ] && [ "$nofile" -lt $((2 * flows + 1000)) ]; then
  flows=$(((nofile - 1000) / 2))
  notes+=("ulimit -n is $nofile: idle flows lowered to $flows")
  log "ulimit -n is $nofile: opening only $flows idle flows"
fi

busy=$(ss -Htln | awk '{ n = split($4, a, ":"); p = a[n] + 0 }
  p >= 19000 && p <= 19099 { print p }' | sort -u | tr '\n' ' ')
[ -z "$busy" ] || die "port(s) $busy in use; ports 19000-19099 belong to the benchmark"

work=$(mktemp -d /tmp/nlb-bench.XXXXXX)
rawdir=bench/results/raw # where $work is copied at exit
raw=$work/raw.jsonl
: >"$raw"
pids=()
balancer_pid=""

stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

cleanup() {
  local pid
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    stop_pid "$pid"
  done
  if [ -d "$work" ]; then
    rm -rf "$here/results/raw"
    mkdir -p "$here/results"
    cp -r "$work" "$here/results/raw" 2>/dev/null
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# start NAME CMD...: runs CMD in the background, output in $work/NAME.log;
# its pid lands in $last_pid.
start() {
  local name=$1
  shift
  "$@" >"$work/$name.log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
}

forget_pid() {
  local pid=$1 kept=() p
  for p in "${pids[@]}"; do
    [ "$p" = "$pid" ] || kept+=("$p")
  done
  pids=("${kept[@]}")
}

# wait_listen PORT PID SECONDS: until something listens on PORT (without
# connecting: a stray connection upsets iperf3 -s).
wait_listen() {
  local port=$1 pid=$2 i
  for i in $(seq $(($3 * 10))); do
    kill -0 "$pid" 2>/dev/null || return 1
    ss -Htln "( sport = :$port )" | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

# wait_http PORT SECONDS: until GET / through PORT answers "ok".
wait_http() {
  local i
  for i in $(seq $(($2 * 5))); do
    [ "$(curl -sS --max-time 1 "http://127.0.0.1:$1/" 2>/dev/null)" = ok ] && return 0
    sleep 0.2
  done
  return 1
}

# record SETUP METRIC RUN VALUE [EXTRA_JSON_FIELDS]
record() {
  local value=$4
  [ -n "$value" ] || value=null
  printf '{"setup":"%s","metric":"%s","run":%s,"value":%s%s}\n' \
    "$1" "$2" "$3" "$value" "${5:+,$5}" >>"$raw"
}

# --- backends -------------------------------------------------------------

mkdir -p "$work/nginx/tmp"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 16000; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_header_timeout 120s;
  server {
    listen 127.0.0.1:$P_HTTP backlog=4096;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
EOF
start nginx nginx -p "$work/nginx" -e "$work/nginx/error.log" \
  -c "$work/nginx/nginx.conf" -g 'daemon off;'
wait_listen $P_HTTP "$last_pid" 10 || die "nginx did not start: $(cat "$work/nginx.log" "$work/nginx/error.log" 2>/dev/null)"
start iperf3 iperf3 -s -B 127.0.0.1 -p $P_IPERF
wait_listen $P_IPERF "$last_pid" 10 || die "iperf3 -s did not start: $(cat "$work/iperf3.log")"
wait_http $P_HTTP 5 || die "nginx does not answer on $P_HTTP"
log "backends up: nginx on $P_HTTP, iperf3 on $P_IPERF"

# --- balancers --------------------------------------------------------------

write_haproxy_cfg() {
  local cfg=$1 splice=$2
  cat >"$cfg" <<EOF
global
  maxconn 7000
defaults
  mode tcp
  maxconn 7000
  timeout connect 5s
  timeout client 120s
  timeout server 120s
$( [ "$splice" = 1 ] && echo "  option splice-auto" )
frontend web
  bind 127.0.0.1:$P_HAP_HTTP
  default_backend web
backend web
  server nginx 127.0.0.1:$P_HTTP
frontend iperf
  bind 127.0.0.1:$P_HAP_IPERF
  default_backend iperf
backend iperf
  server iperf3 127.0.0.1:$P_IPERF
EOF
}

# Health checks go to nginx for both groups: a bare connect to iperf3 -s
# would disturb the test it is running.
write_nlbd_cfg() {
  cat >"$1" <<EOF
workers = 0;
forwarding = "${2:-splice}";
shutdown_timeout = "1s";
log = { access = "off"; events = "stderr"; };
target_groups = (
  { name = "web"; algorithm = "round_robin";
    health_check = { protocol = "tcp"; port = $P_HTTP; interval = "5s"; };
    targets = ( { address = "127.0.0.1:$P_HTTP"; weight = 1; } ); },
  { name = "iperf"; algorithm = "round_robin";
    health_check = { protocol = "tcp"; port = $P_HTTP; interval = "5s"; };
    targets = ( { address = "127.0.0.1:$P_IPERF"; weight = 1; } ); }
);
load_balancers = (
  { name = "bench";
    listeners = (
      { port = $P_NLB_HTTP; target_group = "web"; bind = "127.0.0.1"; },
      { port = $P_NLB_IPERF; target_group = "iperf"; bind = "127.0.0.1"; }
    ); }
);
EOF
}

# start_balancer SETUP: starts it, sets balancer_pid, http_port, iperf_port;
# returns non-zero (with a note) if it cannot run.
start_balancer() {
  local setup=$1 cfg rc
  balancer_pid=""
  case "$setup" in
  direct)
    http_port=$P_HTTP
    iperf_port=$P_IPERF
    return 0
    ;;
  haproxy | haproxy-splice)
    cfg=$work/$setup.cfg
    write_haproxy_cfg "$cfg" "$([ "$setup" = haproxy-splice ] && echo 1 || echo 0)"
    if ! haproxy -c -q -f "$cfg" >"$work/$setup-check.log" 2>&1; then
      notes+=("$setup skipped: haproxy -c failed: $(head -c 300 "$work/$setup-check.log")")
      return 1
    fi
    start "$setup" haproxy -f "$cfg" -db
    http_port=$P_HAP_HTTP
    iperf_port=$P_HAP_IPERF
    ;;
  nlbd | nlbd-sockmap)
    if [ ! -x "$NLBD" ]; then
      notes+=("nlbd skipped: $NLBD not found or not executable (build it: make; or set NLBD=path)")
      log "nlbd skipped: $NLBD not found or not executable"
      return 1
    fi
    cfg=$work/$setup.cfg
    write_nlbd_cfg "$cfg" "$([ "$setup" = nlbd-sockmap ] && echo sockmap || echo splice)"
    timeout 10 "$NLBD" -t -c "$cfg" >"$work/nlbd-check.log" 2>&1
    rc=$?
    if [ "$rc" != 0 ]; then
      notes+=("nlbd skipped: nlbd -t -c rejected the config (exit $rc): $(head -c 300 "$work/nlbd-check.log" | tr '\n' ' ')")
      log "nlbd skipped: config check failed, exit $rc (see $rawdir/nlbd-check.log)"
      return 1
    fi
    start "$setup" "$NLBD" -c "$cfg"
    http_port=$P_NLB_HTTP
    iperf_port=$P_NLB_IPERF
    ;;
  *)
    notes+=("$setup skipped: unknown setup (direct, haproxy, haproxy-splice, nlbd, nlbd-sockmap)")
    log "unknown setup $setup"
    return 1
    ;;
  esac
  balancer_pid=$last_pid
  if ! wait_listen "$http_port" "$balancer_pid" 10 ||
    ! wait_listen "$iperf_port" "$balancer_pid" 5 ||
    ! wait_http "$http_port" 15; then
    notes+=("$setup skipped: not serving on $http_port within 15 s: $(tail -c 300 "$work/$setup.log" | tr '\n' ' ')")
    log "$setup did not come up; see $rawdir/$setup.log"
    stop_balancer
    return 1
  fi
  return 0
}

stop_balancer() {
  if [ -n "$balancer_pid" ]; then
    stop_pid "$balancer_pid"
    forget_pid "$balancer_pid"
    balancer_pid=""
  fi
}

# --- measurements ------------------------------------------------------------

measure_iperf() {
  local setup=$1 run=$2 file=$work/iperf-$1-$2.json cpu0 cpu1 gbps bytes
  [ -n "$balancer_pid" ] && cpu0=$("$PY" "$here/report.py" cpu "$balancer_pid")
  host0=$("$PY" "$here/report.py" hostcpu)
  timeout $((dur + 15)) iperf3 -c 127.0.0.1 -p "$iperf_port" -t "$dur" \
    --connect-timeout 3000 -J >"$file" 2>&1
  host1=$("$PY" "$here/report.py" hostcpu)
  [ -n "$balancer_pid" ] && cpu1=$("$PY" "$here/report.py" cpu "$balancer_pid")
  if read -r gbps bytes < <("$PY" "$here/report.py" iperf "$file" 2>>"$work/errors.log"); then
    record "$setup" iperf_gbps "$run" "$gbps" "\"bytes\":$bytes"
    # The whole host's: the kernel's own forwarding (softirq, the sockmap's
    # work queue) is charged to no process.
    record "$setup" host_cpu_s_per_gb "$run" \
      "$(awk -v a="$host0" -v b="$host1" -v n="$bytes" 'BEGIN { printf "%.4f", (b - a) / (n / 1e9) }')"
    if [ -n "$balancer_pid" ]; then
      record "$setup" cpu_s_per_gb "$run" \
        "$(awk -v a="$cpu0" -v b="$cpu1" -v n="$bytes" 'BEGIN { printf "%.4f", (b - a) / (n / 1e9) }')" \
        "\"cpu_s\":$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')"
    fi
    log "$setup iperf3 run $run: $gbps Gbit/s"
  else
    record "$setup" iperf_gbps "$run" null
    log "$setup iperf3 run $run failed (see $rawdir/${file##*/})"
  fi
  sleep 0.5 # iperf3 -s needs a moment before the next test
}

# measure_wrk SETUP RUN KIND: KIND keepalive or close.
measure_wrk() {
  local setup=$1 run=$2 kind=$3 file=$work/wrk-$1-$3-$2.txt rps p99 errors
  local hdr=() cpu0 cpu1 cpu_key
  [ "$kind" = close ] && hdr=(-H "Connection: close")
  [ -n "$balancer_pid" ] && cpu0=$("$PY" "$here/report.py" cpu "$balancer_pid")
  timeout $((dur + 15)) wrk -t1 -c50 -d"${dur}s" --latency "${hdr[@]}" \
    "http://127.0.0.1:$http_port/" >"$file" 2>&1
  [ -n "$balancer_pid" ] && cpu1=$("$PY" "$here/report.py" cpu "$balancer_pid")
  if read -r rps p99 errors < <("$PY" "$here/report.py" wrk "$file" 2>>"$work/errors.log"); then
    if [ "$kind" = keepalive ]; then
      record "$setup" ka_rps "$run" "$rps" "\"errors\":$errors"
      record "$setup" ka_p99_ms "$run" "$p99"
      cpu_key=ka_cpu_us_per_req
    else
      record "$setup" close_rps "$run" "$rps" "\"errors\":$errors"
      record "$setup" close_p99_ms "$run" "$p99"
      cpu_key=close_cpu_us_per_conn
    fi
    # Balancer CPU per request: seconds over (rate x duration).
    if [ -n "$balancer_pid" ]; then
      record "$setup" "$cpu_key" "$run" \
        "$(awk -v a="$cpu0" -v b="$cpu1" -v r="$rps" -v d="$dur" 'BEGIN { if (r > 0) printf "%.2f", (b - a) * 1e6 / (r * d); else print "null" }')"
    fi
    log "$setup wrk $kind run $run: $rps req/s, p99 $p99 ms, $errors errors"
  else
    log "$setup wrk $kind run $run failed (see $rawdir/${file##*/})"
  fi
}

measure_idle() {
  local setup=$1 run=$2 file=$work/idle-$1-$2.json per
  timeout 60 "$PY" "$here/idle_flows.py" --connect "127.0.0.1:$http_port" \
    --count "$flows" --pid "$balancer_pid" --backend-port $P_HTTP \
    --settle "$settle" >"$file" 2>>"$work/errors.log"
  per=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("" if d["opened"] != d["count"] or d["backend_flows"] < d["opened"] else "%.1f" % d["bytes_per_flow"])' "$file" 2>>"$work/errors.log")
  record "$setup" idle_bytes_per_flow "$run" "$per" "\"detail\":$(cat "$file" 2>/dev/null || echo null)"
  if [ -n "$per" ]; then
    log "$setup idle flows run $run: $per bytes/flow"
  else
    log "$setup idle flows run $run: not all $flows flows came up ($(cat "$file" 2>/dev/null))"
  fi
  sleep 0.5 # let the closes reach the backend
}

# measure_setup SETUP RUN: one round of every measurement of SETUP on a
# fresh balancer process. Memory comes first, so its growth counts every
# allocation a flow causes, not memory a previous test left in a pool.
measure_setup() {
  local setup=$1 run=$2
  log "== $setup, round $run"
  start_balancer "$setup" || return 0
  if [ -n "$balancer_pid" ] && [ "$run" -le "$idle_runs" ]; then
    measure_idle "$setup" "$run"
  fi
  timeout 10 wrk -t1 -c50 -d1s "http://127.0.0.1:$http_port/" >/dev/null 2>&1 # warm-up
  measure_iperf "$setup" "$run"
  measure_wrk "$setup" "$run" keepalive
  measure_wrk "$setup" "$run" close
  stop_balancer
}

# Rounds go through every setup in turn (direct, HAProxy, nlbd, then again)
# rather than all runs of one setup before the next: whatever drifts during
# a run (TIME_WAIT sockets piling up from the close-rate tests, the host's
# other load) then falls on every setup alike.
started=$(date +%s)
for run in $(seq "$runs"); do
  for setup in $only; do
    measure_setup "$setup" "$run"
  done
done
log "measured in $(($(date +%s) - started)) s"

# --- report -----------------------------------------------------------------

nlbd_version=$([ -x "$NLBD" ] && timeout 5 "$NLBD" --version 2>&1 | head -1)
export B_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
export B_COMMIT=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
export B_MODE=$mode B_RUNS=$runs
export B_HOST="$(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
export B_CPU=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
export B_KERNEL=$(uname -sr)
export B_VERSIONS="$(haproxy -v | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1 | cut -d' ' -f3); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); $(iperf3 --version | head -1 | cut -d' ' -f1-2); nlbd: ${nlbd_version:-n/a}"
export B_PARAMS="setups: $only; $runs run(s) of ${dur} s for iperf3 and wrk (-t1 -c50); $idle_runs run(s) of $flows idle flows; loopback"
export B_NOTES=$(printf '%s\n' "${notes[@]}" | awk '!seen[$0]++')
"$PY" - "$work/meta.json" <<'EOF'
import json, os, sys
env = os.environ
meta = {"date": env["B_DATE"], "commit": env["B_COMMIT"], "mode": env["B_MODE"],
        "runs": int(env["B_RUNS"]), "host": env["B_HOST"], "cpu": env["B_CPU"],
        "kernel": env["B_KERNEL"], "versions": env["B_VERSIONS"],
        "parameters": env["B_PARAMS"],
        "notes": [n for n in env["B_NOTES"].split("\n") if n]}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF
mkdir -p "$(dirname "$out")"
if "$PY" "$here/report.py" table "$raw" "$work/meta.json" >"$work/results.md"; then
  cp "$work/results.md" "$out"
  cat "$out"
  log "results written to $out; raw outputs in $here/results/raw/"
else
  die "could not build the table (raw data in $here/results/raw/)"
fi
