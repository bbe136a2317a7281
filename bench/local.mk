# Benchmarks.
# Load-balancer benchmark (bench/README.md): run by hand, bench/run.sh.
EXTRA_DIST += bench/run.sh bench/idle_flows.py bench/report.py \
	bench/README.md bench/results.md

# UDP against NGINX stream (bench/README-udp.md): run by hand,
# bench/udp.py; its load generator and echo target are built by make.
noinst_PROGRAMS += bench/udp_load
bench_udp_load_SOURCES = bench/udp_load.c
EXTRA_DIST += bench/udp.py bench/README-udp.md bench/results-udp.md

# TLS termination against HAProxy: run by hand, bench/tls.py.
EXTRA_DIST += bench/tls.py bench/results-tls.md bench/results-tls.json

# Registry benchmark (bench/README-registry.md): built by make, run by hand.
noinst_PROGRAMS += bench/registry_bench
bench_registry_bench_SOURCES = bench/registry_bench.c
bench_registry_bench_LDADD = $(REGISTRY_LIBS)
EXTRA_DIST += bench/README-registry.md bench/cluster_propagation.py

# nlbd's RSS over 10,000 endpoint cycles through the API, run by hand.
EXTRA_DIST += bench/endpoint_cycles.py

# Cluster benchmark (bench/results-cluster.md): run by hand, as root,
# sudo bench/cluster.py.
EXTRA_DIST += bench/cluster.py bench/results-cluster.md

# Scale within a node (bench/README-scale.md): run by hand.
EXTRA_DIST += bench/scale.py bench/README-scale.md
