#!/usr/bin/env bash
# A cluster of nlbd nodes on one machine, in network namespaces: the README
# demo ("a three-node cluster on your laptop") and the rig of the cluster
# tests and benchmark. docs/cluster-network.md explains every piece.
#
#   scripts/cluster.sh check          can this machine run it? (exit 0/1)
#   scripts/cluster.sh up [N]         build it with N nodes (default 3, 1..9)
#   scripts/cluster.sh status         one line per node: state, routes, pid
#   scripts/cluster.sh kill NODE      kill -9 that node's nlbd
#   scripts/cluster.sh stop NODE      SIGTERM it (withdraw, drain, exit)
#   scripts/cluster.sh drain NODE     POST /v1/nodes/NODE/drain (to the
#                                     first node whose API answers)
#   scripts/cluster.sh start NODE     start its nlbd again
#   scripts/cluster.sh ctl NODE PRINCIPAL ARGS...
#                                     nlbctl in NODE's namespace, as
#                                     PRINCIPAL (ops, payments or shop)
#   scripts/cluster.sh info           names and addresses, KEY=VALUE lines
#   scripts/cluster.sh down           remove everything up made
#
# Needs root (namespaces), iproute2, bird2, nftables, PostgreSQL 15 (server),
# python3, curl and nginx-light (scripts/debian-packages.txt), and a built
# tree (_build/nlbd, _build/nlbctl).
#
# Everything it makes is named after the prefix, NLB_CLUSTER_PREFIX
# (default nlbc): namespaces nlbc-client, nlbc-router, nlbc-targets,
# nlbc-n1..nlbc-nN, nlbc-shop, nlbc-shop-router, nlbc-n1-shop...; its files
# are in NLB_CLUSTER_DIR (default /tmp/nlbc). Addresses are in 10.201.0.0/16
# (the provider side) and 10.202.0.0/16 (the consumer network shop-vpc),
# and exist only inside those namespaces: no interface reaches the host's
# namespace and no namespace has a default route, so no packet can leave
# the rig.
#
# Other settings: NLB_CLUSTER_BUILD (where nlbd and nlbctl are; default
# _build at the top of this tree, then PATH), NLB_CLUSTER_PG_TEMPLATE (an
# initdb'd data directory to copy instead of running initdb),
# NLB_CLUSTER_SHUTDOWN_TIMEOUT (nlbd's shutdown_timeout, default 10s),
# NLB_CLUSTER_ECMP=plain (the routers spread flows with plain multipath
# routes, hash-threshold, instead of resilient groups: only to see what
# resilient hashing saves, bench/cluster.py does).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
P=${NLB_CLUSTER_PREFIX:-nlbc}
DIR=${NLB_CLUSTER_DIR:-/tmp/$P}
BUILD=${NLB_CLUSTER_BUILD:-$top/_build}
AGENT=$top/scripts/cluster/ecmp-agent.py
TARGET=$top/scripts/cluster/target.py

# The address plan. Node i (1..9) is 10.201.(10+i).2 towards the router
# and 10.202.(10+i).2 in its namespace of the consumer network.
VIP=10.201.100.1                 # the load balancer's listeners
VIP_RANGE=10.201.100.0/24        # announced by every node
EP_RANGE=10.202.100.0/24         # shop-vpc: where endpoints get addresses
CLIENT_ADDR=10.201.1.2
SHOP_ADDR=10.202.1.2
TARGET_ADDRS=(10.201.2.11 10.201.2.12 10.201.2.13)
ROUTER_AS=65000
NODE_AS=65010
ANNOUNCE_IF=nlb-up               # the tun device nlbd holds (announce.h)

die() { echo "cluster: $*" >&2; exit 1; }
say() { echo "cluster: [${SECONDS}s] $*" >&2; }

node_addr() { echo "10.201.$((10 + $1)).2"; }
node_shop_addr() { echo "10.202.$((10 + $1)).2"; }

find_tool() { # NAME: in BUILD, else PATH
  if [ -x "$BUILD/$1" ]; then echo "$BUILD/$1"; else command -v "$1" || true; fi
}

pg_bindir() {
  local d
  d=$(pg_config --bindir 2>/dev/null || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

nodes() { seq 1 "$(cat "$DIR/nodes" 2>/dev/null || echo 0)"; }

node_index() { # n2 -> 2, after checking it exists
  local n=${1#n}
  [ -f "$DIR/nodes" ] || die "not up (no $DIR/nodes)"
  [[ $n =~ ^[1-9]$ ]] && [ "$n" -le "$(cat "$DIR/nodes" 2>/dev/null || echo 0)" ] ||
    die "no node '$1' (nodes are n1..n$(cat "$DIR/nodes" 2>/dev/null || echo 0))"
  echo "$n"
}

# A process we started is alive when its pid file names a live process of
# the expected command.
alive() { # PIDFILE COMM
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

stop_pidfile() { # PIDFILE COMM SIGNAL
  alive "$1" "$2" && kill "-$3" "$(cat "$1")" 2>/dev/null || true
}

# ---- check ----------------------------------------------------------------

# Prints why the rig cannot run here, or nothing.
why_not() {
  [ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; return; }
  local tool
  for tool in ip bird birdc nft python3 curl runuser; do
    command -v "$tool" >/dev/null ||
      { echo "$tool not found (apt-get install the packages of scripts/debian-packages.txt)"; return; }
  done
  [ -n "$(pg_bindir)" ] || { echo "no PostgreSQL server (apt-get install postgresql-15)"; return; }
  id postgres >/dev/null 2>&1 || { echo "no postgres user"; return; }
  [ -n "$(find_tool nlbd)" ] || { echo "no nlbd: build the tree (scripts/build.sh)"; return; }
  [ -c /dev/net/tun ] || { echo "no /dev/net/tun"; return; }
  local ns=$P-check out=""
  ip netns add "$ns" 2>/dev/null || { echo "cannot create network namespaces"; return; }
  {
    ip -n "$ns" link add name chk0 type veth peer name chk1 &&
      ip -n "$ns" link set chk0 up && ip -n "$ns" link set chk1 up &&
      ip -n "$ns" addr add 10.201.0.1/24 dev chk0 &&
      ip -n "$ns" nexthop add id 1 via 10.201.0.2 dev chk0 &&
      ip -n "$ns" nexthop add id 2 group 1 type resilient buckets 8
  } >/dev/null 2>&1 || out="the kernel or iproute2 has no resilient nexthop groups (Linux >= 5.13)"
  if [ -z "$out" ] && ! ip netns exec "$ns" nft -f - >/dev/null 2>&1 <<EOF
table ip t {
  chain c {
    type filter hook postrouting priority mangle;
    ct state new ct mark set 1
  }
}
EOF
  then out="nftables cannot track connections here (nf_tables, nf_conntrack)"; fi
  ip netns del "$ns"
  echo "$out"
}

cmd_check() {
  local reason
  reason=$(why_not)
  [ -z "$reason" ] || die "cannot run here: $reason"
  echo "cluster: this machine can run the rig"
}

# ---- the network ----------------------------------------------------------

add_ns() {
  ip netns add "$P-$1"
  echo "$P-$1" >>"$DIR/namespaces"
  ip -n "$P-$1" link set lo up
}

# link NS_A IF_A ADDR_A NS_B IF_B ADDR_B: a veth pair between two of the
# rig's namespaces (never the host's).
link() {
  ip link add name "$2" netns "$P-$1" type veth peer name "$5" netns "$P-$4"
  ip -n "$P-$1" addr add "$3" dev "$2"
  ip -n "$P-$1" link set "$2" up
  ip -n "$P-$4" addr add "$6" dev "$5"
  ip -n "$P-$4" link set "$5" up
}

router_sysctls() {
  ip netns exec "$P-$1" sysctl -q -w net.ipv4.ip_forward=1 \
    net.ipv4.fib_multipath_hash_policy=1 net.ipv4.conf.all.rp_filter=0 \
    net.ipv4.conf.default.rp_filter=0
  # A withdrawn node's flows stay on it by their conntrack mark (the
  # agent): let conntrack accept any in-window segment.
  ip netns exec "$P-$1" sysctl -q -w net.netfilter.nf_conntrack_tcp_be_liberal=1 \
    2>/dev/null || true
}

build_network() {
  local n=$1 i t
  add_ns client
  add_ns router
  add_ns targets
  add_ns shop
  add_ns shop-router
  router_sysctls router
  router_sysctls shop-router
  link router client 10.201.1.1/24 client eth0 $CLIENT_ADDR/24
  ip -n "$P-client" route add $VIP_RANGE via 10.201.1.1
  link router targets 10.201.2.1/24 targets eth0 10.201.2.2/24
  for t in "${TARGET_ADDRS[@]}"; do
    ip -n "$P-targets" addr add "$t/24" dev eth0
  done
  ip -n "$P-targets" route add 10.201.0.0/16 via 10.201.2.1
  link shop-router shop 10.202.1.1/24 shop eth0 $SHOP_ADDR/24
  ip -n "$P-shop" route add $EP_RANGE via 10.202.1.1
  for i in $(seq 1 "$n"); do
    add_ns "n$i"
    link router "n$i" "10.201.$((10 + i)).1/24" "n$i" uplink "$(node_addr "$i")/24"
    ip -n "$P-n$i" route add 10.201.1.0/24 via "10.201.$((10 + i)).1"
    ip -n "$P-n$i" route add 10.201.2.0/24 via "10.201.$((10 + i)).1"
    # AnyIP: nlbd may bind any address of the range here.
    ip -n "$P-n$i" route add local $VIP_RANGE dev lo
    add_ns "n$i-shop"
    link shop-router "n$i" "10.202.$((10 + i)).1/24" "n$i-shop" uplink \
      "$(node_shop_addr "$i")/24"
    ip -n "$P-n$i-shop" route add 10.202.1.0/24 via "10.202.$((10 + i)).1"
    ip -n "$P-n$i-shop" route add local $EP_RANGE dev lo
  done
}

# ---- PostgreSQL -------------------------------------------------------------

start_postgres() {
  local bin pg=$DIR/pg
  bin=$(pg_bindir)
  mkdir -p "$pg"
  if [ -n "${NLB_CLUSTER_PG_TEMPLATE:-}" ] && [ -f "$NLB_CLUSTER_PG_TEMPLATE/PG_VERSION" ]; then
    cp -a "$NLB_CLUSTER_PG_TEMPLATE" "$pg/data"
  else
    mkdir -p "$pg/data"
    chown postgres: "$pg/data"
    runuser -u postgres -- "$bin/initdb" -D "$pg/data" -A trust -E UTF8 \
      --locale=C -N >"$pg/initdb.log" 2>&1 || die "initdb failed: see $pg/initdb.log"
  fi
  chown -R postgres: "$pg"
  chmod 700 "$pg/data"
  runuser -u postgres -- "$bin/pg_ctl" -D "$pg/data" -w -t 30 -l "$pg/log" \
    -o "-c listen_addresses='' -k $pg -c fsync=off -c max_connections=100 -c shared_buffers=16MB" \
    start >/dev/null || die "PostgreSQL did not start: see $pg/log"
  "$bin/psql" -X -q -h "$pg" -U postgres -d postgres -c "CREATE DATABASE nlb" ||
    die "cannot create the database"
}

stop_postgres() {
  local bin
  bin=$(pg_bindir)
  [ -f "$DIR/pg/data/postmaster.pid" ] && [ -n "$bin" ] &&
    runuser -u postgres -- "$bin/pg_ctl" -D "$DIR/pg/data" -m immediate stop \
      >/dev/null 2>&1 || true
}

# ---- targets ------------------------------------------------------------------

start_targets() {
  local n=$1 i args=() d=$DIR/targets
  mkdir -p "$d/nginx"
  for i in $(seq 1 "$n"); do
    args+=(--node "$(node_addr "$i")=n$i")
  done
  for i in 0 1 2; do
    args+=("t$((i + 1))=${TARGET_ADDRS[$i]}:8000")
  done
  setsid ip netns exec "$P-targets" python3 "$TARGET" "${args[@]}" \
    >"$d/target.log" 2>&1 </dev/null &
  echo $! >"$d/target.pid"
  command -v nginx >/dev/null || { say "no nginx: port 8080 has no targets"; return 0; }
  cat >"$d/nginx/nginx.conf" <<EOF
# The rig's fast HTTP targets (port 8080 of the load balancer).
daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $d/nginx/nginx.pid;
error_log $d/nginx/error.log warn;
events { worker_connections 8000; }
http {
  access_log off;
  client_body_temp_path $d/nginx/body;
  proxy_temp_path $d/nginx/proxy;
  fastcgi_temp_path $d/nginx/fastcgi;
  uwsgi_temp_path $d/nginx/uwsgi;
  scgi_temp_path $d/nginx/scgi;
  keepalive_requests 1000000;
  server { listen ${TARGET_ADDRS[0]}:8080; return 200 "t1\n"; }
  server { listen ${TARGET_ADDRS[1]}:8080; return 200 "t2\n"; }
  server { listen ${TARGET_ADDRS[2]}:8080; return 200 "t3\n"; }
}
EOF
  setsid ip netns exec "$P-targets" nginx -c "$d/nginx/nginx.conf" \
    >"$d/nginx/out.log" 2>&1 </dev/null &
  echo $! >"$d/nginx.pid"
}

# ---- routing: bird and the agent ------------------------------------------------

bfd_block() {
  cat <<EOF
protocol bfd {
  interface "*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}
EOF
}

# The router side: BGP from every node, routes merged into multipath
# routes exported to table 200, which the agent installs as resilient
# groups.
router_bird_conf() { # NS_NAME SUBNET_PREFIX ROUTER_ID
  local i
  cat <<EOF
# bird of $P-$1 (scripts/cluster.sh)
log "$DIR/bird/$1.log" all;
router id $3;
protocol device { }
protocol kernel {
  ipv4 { import none; export all; };
  kernel table 200;
  merge paths on;
}
$(bfd_block)
template bgp node {
  local as $ROUTER_AS;
  hold time 9; keepalive time 3;
  connect retry time 1; error wait time 1, 5;
  bfd on;
  ipv4 { import all; export none; };
}
EOF
  for i in $(nodes); do
    echo "protocol bgp n$i from node { neighbor $2.$((10 + i)).2 as $NODE_AS; }"
  done
}

# The node side: announce RANGE while $ANNOUNCE_IF is up (nlbd holds it).
node_bird_conf() { # NAME ADDRESS RANGE
  cat <<EOF
# bird of $P-$1 (scripts/cluster.sh)
log "$DIR/bird/$1.log" all;
router id $2;
protocol device { }
protocol static announce {
  ipv4;
  check link yes;   # the route goes when the link of $ANNOUNCE_IF does
  route $3 via "$ANNOUNCE_IF";
}
$(bfd_block)
protocol bgp uplink {
  local $2 as $NODE_AS;
  neighbor ${2%.2}.1 as $ROUTER_AS;
  hold time 9; keepalive time 3;
  connect retry time 1; error wait time 1, 5;
  bfd on;
  ipv4 { import none; export where proto = "announce"; next hop self; };
}
EOF
}

# Routing runs at a higher priority than the rest of the rig: on real
# machines the routers and each node's bird have CPUs the load generators
# and the other nodes do not take.
start_bird() { # NS_NAME (CONF written to bird/NS_NAME.conf)
  nice -n -10 ip netns exec "$P-$1" bird -c "$DIR/bird/$1.conf" -s "$DIR/bird/$1.ctl" \
    -P "$DIR/bird/$1.pid" || die "bird in $P-$1 did not start"
}

start_routing() {
  local i ecmp=""
  case "${NLB_CLUSTER_ECMP:-resilient}" in
    resilient) ;;
    plain) ecmp=--plain ;;
    *) die "NLB_CLUSTER_ECMP must be resilient or plain" ;;
  esac
  mkdir -p "$DIR/bird"
  router_bird_conf router 10.201 10.201.0.1 >"$DIR/bird/router.conf"
  router_bird_conf shop-router 10.202 10.202.0.1 >"$DIR/bird/shop-router.conf"
  start_bird router
  start_bird shop-router
  for r in router shop-router; do
    setsid nice -n -10 ip netns exec "$P-$r" python3 "$AGENT" --table 200 \
      --state "$DIR/$r.routes" $ecmp >"$DIR/$r.agent.log" 2>&1 </dev/null &
    echo $! >"$DIR/$r.agent.pid"
  done
  for i in $(nodes); do
    node_bird_conf "n$i" "$(node_addr "$i")" $VIP_RANGE >"$DIR/bird/n$i.conf"
    node_bird_conf "n$i-shop" "$(node_shop_addr "$i")" $EP_RANGE \
      >"$DIR/bird/n$i-shop.conf"
    start_bird "n$i"
    start_bird "n$i-shop"
  done
}

# ---- nodes ----------------------------------------------------------------------

token() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

make_tokens() {
  local p
  for p in ops payments shop; do
    (umask 077 && token >"$DIR/$p.token")
  done
}

sha() { sha256sum <"$DIR/$1.token" | cut -d' ' -f1; }

# Node i's config. The targets are listed in another order on each node:
# Maglev's choice does not depend on it.
node_conf() {
  local i=$1 t order=() fast=() k
  for k in 0 1 2; do
    t=${TARGET_ADDRS[$(((k + i - 1) % 3))]}
    order+=("{ address = \"$t:8000\"; }")
    fast+=("{ address = \"$t:8080\"; }")
  done
  cat <<EOF
# nlbd of node n$i in the cluster rig (scripts/cluster.sh).
workers = 1;
worker_cpu_affinity = "off";   # the nodes share this machine's CPUs
shutdown_timeout = "${NLB_CLUSTER_SHUTDOWN_TIMEOUT:-10s}";
node = { name = "n$i"; announce_interface = "$ANNOUNCE_IF"; withdraw_delay = "1s"; };
log = { access = "$DIR/n$i/access.log"; events = "$DIR/n$i/events.log"; };
api = { listen = "127.0.0.1:9180"; };
registry = { postgresql = "host=$DIR/pg dbname=nlb user=postgres"; };
principals = (
  { name = "ops";      role = "operator"; token_sha256 = "$(sha ops)"; },
  { name = "payments"; role = "provider"; token_sha256 = "$(sha payments)"; },
  { name = "shop";     role = "consumer"; token_sha256 = "$(sha shop)"; }
);
networks = (
  { name = "shop-vpc"; netns = "$P-n$i-shop"; range = "$EP_RANGE"; principals = [ "shop" ]; }
);
target_groups = (
  { name = "web";
    health_check = { interval = "1s"; timeout = "500ms"; healthy_threshold = 2; };
    targets = ( $(IFS=,; echo "${order[*]}") ); },
  { name = "web-fast";
    health_check = { interval = "1s"; timeout = "500ms"; healthy_threshold = 2; };
    targets = ( $(IFS=,; echo "${fast[*]}") ); }
);
load_balancers = (
  { name = "web";
    listeners = ( { port = 80; target_group = "web"; bind = "$VIP"; },
                  { port = 8080; target_group = "web-fast"; bind = "$VIP"; } ); }
);
EOF
}

start_nlbd() {
  local i=$1 d=$DIR/n$1 nlbd
  nlbd=$(find_tool nlbd)
  if alive "$d/nlbd.pid" nlbd; then say "n$i: nlbd already runs"; return 0; fi
  setsid ip netns exec "$P-n$i" "$nlbd" -c "$d/nlbd.cfg" >>"$d/nlbd.out" 2>&1 </dev/null &
  echo $! >"$d/nlbd.pid"
}

start_nodes() {
  local i nlbd
  nlbd=$(find_tool nlbd)
  for i in $(nodes); do
    mkdir -p "$DIR/n$i"
    node_conf "$i" >"$DIR/n$i/nlbd.cfg"
    "$nlbd" -t -c "$DIR/n$i/nlbd.cfg" >/dev/null || die "n$i: bad config"
    start_nlbd "$i"
  done
}

# ---- status -------------------------------------------------------------------------

api_get() { # NODE_INDEX PATH
  ip netns exec "$P-n$1" curl -sf -m 2 -H "Authorization: Bearer $(cat "$DIR/ops.token")" \
    "http://127.0.0.1:9180$2"
}

api_post() { # NODE_INDEX PATH
  ip netns exec "$P-n$1" curl -sf -m 5 -X POST -H "Authorization: Bearer $(cat "$DIR/ops.token")" \
    -H "Content-Type: application/json" -d '{}' "http://127.0.0.1:9180$2"
}

# "NAME STATE" lines from the first node whose API answers.
registry_states() {
  local i out
  for i in $(nodes); do
    alive "$DIR/n$i/nlbd.pid" nlbd || continue
    out=$(api_get "$i" /v1/nodes 2>/dev/null) || continue
    grep -o '"name":"[^"]*","state":"[^"]*"' <<<"$out" |
      sed 's/"name":"\([^"]*\)","state":"\([^"]*\)"/\1 \2/'
    return 0
  done
}

# "yes" when the router's group for RANGE has ADDRESS (the agent's state
# file: a line per prefix, its next hops after it).
routed() { # ROUTER RANGE ADDRESS
  awk -v r="$2" -v a="$3" '$1 == r { for (i = 2; i <= NF; i++) if ($i == a) f = 1 }
    END { print f ? "yes" : "no" }' "$DIR/$1.routes" 2>/dev/null || echo no
}

cmd_status() {
  [ -f "$DIR/nodes" ] || die "not up (no $DIR/nodes)"
  local states i state vip ep routes pid
  states=$(registry_states)
  for i in $(nodes); do
    state=$(awk -v n="n$i" '$1 == n { print $2 }' <<<"$states")
    vip=$(routed router $VIP_RANGE "$(node_addr "$i")")
    ep=$(routed shop-router $EP_RANGE "$(node_shop_addr "$i")")
    case "$vip$ep" in
      yesyes) routes=routed ;;
      nono) routes=withdrawn ;;
      yesno) routes="routed (vip only)" ;;
      *) routes="routed (shop-vpc only)" ;;
    esac
    pid=-
    alive "$DIR/n$i/nlbd.pid" nlbd && pid="nlbd $(cat "$DIR/n$i/nlbd.pid")"
    printf 'n%-3s %-9s %-24s %s\n' "$i" "${state:-down}" "$routes" "$pid"
  done
}

# Waits until every node is up in the registry and routed by both routers.
wait_ready() {
  local deadline=$((SECONDS + ${1:-60})) line
  while [ $SECONDS -lt $deadline ]; do
    line=$(cmd_status 2>/dev/null || true)
    if [ -n "$line" ] && ! grep -qv ' up  *routed  ' <<<"$line"; then
      return 0
    fi
    sleep 0.5
  done
  cmd_status >&2 || true
  die "not every node came up and routed within ${1:-60}s (logs in $DIR)"
}

# ---- commands ---------------------------------------------------------------------------

cmd_up() {
  local n=${1:-3} reason
  [[ $n =~ ^[1-9]$ ]] || die "up: N must be 1..9"
  reason=$(why_not)
  [ -z "$reason" ] || die "cannot run here: $reason"
  [ ! -e "$DIR/nodes" ] || die "already up in $DIR (scripts/cluster.sh down first)"
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  : >"$DIR/namespaces"
  echo "$n" >"$DIR/nodes"
  make_tokens
  say "network: namespaces $P-*"
  build_network "$n"
  say "PostgreSQL on a Unix socket in $DIR/pg"
  start_postgres
  say "targets t1..t3 in $P-targets"
  start_targets "$n"
  say "routers: bird + the resilient-group agent; nodes: bird"
  start_routing
  say "nodes: nlbd n1..n$n"
  start_nodes
  wait_ready 60
  cmd_status
  cat >&2 <<EOF
cluster: up. Try:
  ip netns exec $P-client curl -s http://$VIP/
  $0 kill n2; $0 status; $0 start n2
  $0 down
EOF
}

cmd_down() {
  local ns pid f
  if [ -d "$DIR" ]; then
    for f in "$DIR"/n*/nlbd.pid; do [ -e "$f" ] && stop_pidfile "$f" nlbd KILL; done
    for f in "$DIR"/*.agent.pid "$DIR"/targets/*.pid; do
      [ -e "$f" ] && { stop_pidfile "$f" python3 TERM; stop_pidfile "$f" nginx TERM; }
    done
    for f in "$DIR"/bird/*.pid; do [ -e "$f" ] && stop_pidfile "$f" bird TERM; done
    stop_postgres
  fi
  # The namespaces up made (its list, else the names it gives them).
  {
    cat "$DIR/namespaces" 2>/dev/null || true
    ip netns list | awk '{ print $1 }' |
      grep -E "^$P-(client|router|targets|shop|shop-router|n[1-9]|n[1-9]-shop)\$" || true
  } | sort -u | while read -r ns; do
    [ -n "$ns" ] && [ -e "/run/netns/$ns" ] || continue
    # Whatever still runs inside is the rig's.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns"
  done
  [ -d "$DIR" ] && rm -rf "$DIR"
  say "down"
}

cmd_info() {
  [ -f "$DIR/nodes" ] || die "not up"
  local i
  echo "prefix=$P"
  echo "dir=$DIR"
  echo "nodes=$(cat "$DIR/nodes")"
  echo "vip=$VIP"
  echo "vip_range=$VIP_RANGE"
  echo "endpoint_range=$EP_RANGE"
  echo "network=shop-vpc"
  echo "client_ns=$P-client"
  echo "client_addr=$CLIENT_ADDR"
  echo "shop_ns=$P-shop"
  echo "shop_addr=$SHOP_ADDR"
  echo "targets_ns=$P-targets"
  echo "router_ns=$P-router"
  echo "shop_router_ns=$P-shop-router"
  for i in $(nodes); do
    echo "n${i}_ns=$P-n$i"
    echo "n${i}_shop_ns=$P-n$i-shop"
    echo "n${i}_addr=$(node_addr "$i")"
    echo "n${i}_shop_addr=$(node_shop_addr "$i")"
  done
  echo "api=http://127.0.0.1:9180"
  for i in ops payments shop; do echo "token_$i=$DIR/$i.token"; done
}

cmd_node() { # VERB NODE
  local i pid j
  i=$(node_index "$2")
  case "$1" in
    kill) stop_pidfile "$DIR/n$i/nlbd.pid" nlbd KILL ;;
    stop) stop_pidfile "$DIR/n$i/nlbd.pid" nlbd TERM ;;
    start) start_nlbd "$i" ;;
    drain)
      for j in $(nodes); do
        alive "$DIR/n$j/nlbd.pid" nlbd || continue
        api_post "$j" "/v1/nodes/n$i/drain" >/dev/null && return 0
      done
      die "drain: no node's API answered"
      ;;
  esac
}

cmd_ctl() { # NODE PRINCIPAL ARGS...
  local i nlbctl
  [ $# -ge 2 ] || die "usage: ctl NODE PRINCIPAL ARGS..."
  i=$(node_index "$1")
  [ -f "$DIR/$2.token" ] || die "no principal '$2' (ops, payments, shop)"
  nlbctl=$(find_tool nlbctl)
  [ -n "$nlbctl" ] || die "no nlbctl: build the tree"
  local principal=$2
  shift 2
  exec ip netns exec "$P-n$i" "$nlbctl" --api http://127.0.0.1:9180 \
    --token-file "$DIR/$principal.token" "$@"
}

case "${1:-}" in
  check) cmd_check ;;
  up) cmd_up "${2:-3}" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  info) cmd_info ;;
  kill | stop | start | drain)
    [ $# -eq 2 ] || die "usage: $1 NODE"
    cmd_node "$1" "$2"
    ;;
  ctl) shift; cmd_ctl "$@" ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
