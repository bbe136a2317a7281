#!/usr/bin/env bash
# The "run" command of the README: installs what nlb needs, builds it, and
# starts nlbd in the foreground on examples/quickstart.cfg with three demo
# web servers behind it. Ctrl-C stops everything.
#   NLB_QUICKSTART_NO_BUILD=1  use the existing build in _build
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

if [ "${NLB_QUICKSTART_NO_BUILD:-0}" != 1 ]; then
  "$top/scripts/install-deps.sh"
  echo "quickstart: building (autotools, out of tree in _build)..."
  "$top/scripts/build.sh" >/dev/null
fi
nlbd="$top/_build/nlbd"
[ -x "$nlbd" ] || { echo "quickstart: $nlbd missing; run without NLB_QUICKSTART_NO_BUILD" >&2; exit 1; }

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
  mkdir -p "$demo/$n"
  echo "hello from demo backend $n (127.0.0.1:900$n)" > "$demo/$n/index.html"
  python3 -m http.server "900$n" --bind 127.0.0.1 --directory "$demo/$n" \
    >/dev/null 2>&1 &
  pids+=($!)
done

"$nlbd" -t -c "$top/examples/quickstart.cfg" >/dev/null
cat <<TXT
quickstart: nlbd is starting on 127.0.0.1:8080 with 3 demo backends (9001-9003).
try:
  curl http://127.0.0.1:8080/              # answered by backend 1, 2, 3 in turn
  kill \$(pgrep -f 'http.server 9002')     # backend 2 turns unhealthy in ~4s
  kill -HUP \$(pgrep -x nlbd)             # reload examples/quickstart.cfg
Access and event logs follow on stderr; Ctrl-C stops nlbd and the backends.
TXT
"$nlbd" -c "$top/examples/quickstart.cfg" &
pids+=($!)
wait "${pids[-1]}" || true
