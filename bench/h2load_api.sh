#!/bin/sh
# Requests per second of the management API: h2load against
# GET /v1/services (10 services in the registry) and GET /healthz, on the
# standalone api_server_main over a temporary SQLite registry.
#
#   bench/h2load_api.sh [BUILDDIR]   (default: the current directory)
#
# Environment: REQUESTS (default 50000), CLIENTS (10), STREAMS (10 per
# client), SERVICES (10).
set -eu

builddir=${1:-.}
server="$builddir/tests/tools/api_server_main"
requests=${REQUESTS:-50000}
clients=${CLIENTS:-10}
streams=${STREAMS:-10}
services=${SERVICES:-10}

for tool in h2load curl; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
[ -x "$server" ] || { echo "no $server: build it (make tests/tools/api_server_main)"; exit 2; }

dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
"$server" --db "$dir/registry.db" --principal bench:provider:bench-token \
  --principal shop:consumer:shop-token --lb bench-lb:8080 \
  >"$dir/port" 2>"$dir/stderr" &
pid=$!
for _ in 1 2 3 4 5 6 7 8 9 10; do
  [ -s "$dir/port" ] && break
  sleep 0.2
done
port=$(awk '{print $2}' "$dir/port")
base="http://127.0.0.1:$port"

i=0
while [ "$i" -lt "$services" ]; do
  curl -sf --http2-prior-knowledge -o /dev/null \
    -H 'Authorization: Bearer bench-token' \
    -d "{\"name\":\"bench-$i\",\"load_balancer\":\"bench-lb\",\"allowed_principals\":[\"shop\"]}" \
    "$base/v1/services"
  i=$((i + 1))
done

echo "api_server_main on $base, $services services, $(nproc) CPUs"
for path in /v1/services /healthz; do
  echo "== h2load -n $requests -c $clients -m $streams GET $path"
  h2load -n "$requests" -c "$clients" -m "$streams" \
    -H 'Authorization: Bearer bench-token' "$base$path" |
    grep -E '^(finished in|requests:|status codes:|time for request:)'
done
