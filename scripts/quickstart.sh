#!/usr/bin/env bash
# The "run" command of the README: installs what nlb needs, builds it, and
# starts nlbd in the foreground on examples/quickstart.cfg with three demo
# web servers behind it. Ctrl-C stops everything.
#   NLB_QUICKSTART_NO_BUILD=1      use the existing build in _build
#   NLB_QUICKSTART_PORT=8080        the load balancer's port
#   NLB_QUICKSTART_BACKEND_PORT=9001  first demo backend (then +1, +2)
#   NLB_QUICKSTART_API_PORT=9180    the API
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

if [ "${NLB_QUICKSTART_NO_BUILD:-0}" != 1 ]; then
  "$top/scripts/install-deps.sh"
  echo "quickstart: building (autotools, out of tree in _build)..."
  "$top/scripts/build.sh" >/dev/null
fi
nlbd="$top/_build/nlbd"
[ -x "$nlbd" ] || { echo "quickstart: $nlbd missing; run without NLB_QUICKSTART_NO_BUILD" >&2; exit 1; }

lb_port=${NLB_QUICKSTART_PORT:-8080}
backend_port=${NLB_QUICKSTART_BACKEND_PORT:-9001}
api_port=${NLB_QUICKSTART_API_PORT:-9180}
demo=$(mktemp -d)
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$demo"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

for n in 1 2 3; do
  port=$((backend_port + n - 1))
  mkdir -p "$demo/$n"
  echo "hello from demo backend $n (127.0.0.1:$port)" > "$demo/$n/index.html"
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$demo/$n" \
    >/dev/null 2>&1 &
  pids+=($!)
  echo $! > "$demo/backend-$n.pid"
done
# nlbd accepts once its first round of health checks has answered: the
# backends listen first, so that round finds all three up (10 s at most).
for n in 1 2 3; do
  port=$((backend_port + n - 1))
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done

# A copy of the example with the chosen ports; its relative registry path
# then puts the registry in the temporary directory.
config="$demo/quickstart.cfg"
sed -e "s/port = 8080;/port = $lb_port;/" \
    -e "s/127.0.0.1:9001/127.0.0.1:$backend_port/" \
    -e "s/127.0.0.1:9002/127.0.0.1:$((backend_port + 1))/" \
    -e "s/127.0.0.1:9003/127.0.0.1:$((backend_port + 2))/" \
    -e "s/127.0.0.1:9180/127.0.0.1:$api_port/" \
    "$top/examples/quickstart.cfg" > "$config"
"$nlbd" -t -c "$config" >/dev/null
api="curl -s --http2-prior-knowledge http://127.0.0.1:$api_port"
cat <<TXT
quickstart: nlbd is starting on 127.0.0.1:$lb_port with 3 demo backends ($backend_port-$((backend_port + 2))), API on 127.0.0.1:$api_port.
try:
  curl http://127.0.0.1:$lb_port/              # answered by backend 1, 2, 3 in turn
  kill \$(cat $demo/backend-2.pid)     # backend 2 turns unhealthy in ~4s
  $nlbd -s reload --run-dir $demo     # reload the config, print the outcome
  $api/v1/target-groups -H 'Authorization: Bearer demo-ops'
  $api/v1/services -H 'Authorization: Bearer demo-provider' \\
    -d '{"name":"demo","load_balancer":"demo-lb","acceptance_required":false,"allowed_principals":["consumer"]}'
  $api/v1/endpoints -H 'Authorization: Bearer demo-consumer' \\
    -d '{"service":"demo","network":"host"}'     # then: curl http://127.77.0.1:$lb_port/
Access and event logs follow on stderr; Ctrl-C stops nlbd and the backends.
TXT
"$nlbd" -c "$config" --run-dir "$demo" &
pids+=($!)
wait "${pids[-1]}" || true
