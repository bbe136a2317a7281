# Tests: CUnit suites (one per module) and end-to-end scripts that start
# nlbd with real backends and clients. `make check` runs them all.
TEST_EXTENSIONS = .py
PY_LOG_COMPILER = python3
AM_TESTS_ENVIRONMENT = \
	top_builddir='$(abs_top_builddir)'; export top_builddir; \
	top_srcdir='$(abs_top_srcdir)'; export top_srcdir; \
	PYTHONDONTWRITEBYTECODE=1; export PYTHONDONTWRITEBYTECODE;

NLB_TEST_CFLAGS = $(AM_CFLAGS) $(CUNIT_CFLAGS) $(LIBUV_CFLAGS)
NLB_TEST_LIBS = $(NLB_LIBS) $(CUNIT_LIBS)

check_PROGRAMS += tests/unit/test_config
TESTS += tests/unit/test_config
tests_unit_test_config_SOURCES = tests/unit/test_config.c
tests_unit_test_config_CFLAGS = $(NLB_TEST_CFLAGS)
tests_unit_test_config_LDADD = $(NLB_TEST_LIBS)

check_PROGRAMS += tests/unit/test_lb
TESTS += tests/unit/test_lb
tests_unit_test_lb_SOURCES = tests/unit/test_lb.c
tests_unit_test_lb_CFLAGS = $(NLB_TEST_CFLAGS)
tests_unit_test_lb_LDADD = $(NLB_TEST_LIBS)

EXTRA_DIST += tests/e2e/nlbtest.py
noinst_HEADERS += tests/unit/unit.h

check_PROGRAMS += tests/unit/test_clienthello
TESTS += tests/unit/test_clienthello
tests_unit_test_clienthello_SOURCES = tests/unit/test_clienthello.c
tests_unit_test_clienthello_CFLAGS = $(NLB_TEST_CFLAGS)
tests_unit_test_clienthello_LDADD = $(NLB_TEST_LIBS)

check_PROGRAMS += tests/unit/test_sni_routes
TESTS += tests/unit/test_sni_routes
tests_unit_test_sni_routes_SOURCES = tests/unit/test_sni_routes.c
tests_unit_test_sni_routes_CFLAGS = $(NLB_TEST_CFLAGS)
tests_unit_test_sni_routes_LDADD = $(NLB_TEST_LIBS)

check_PROGRAMS += tests/unit/test_duration
TESTS += tests/unit/test_duration
tests_unit_test_duration_SOURCES = tests/unit/test_duration.c
tests_unit_test_duration_CFLAGS = $(NLB_TEST_CFLAGS)
tests_unit_test_duration_LDADD = $(NLB_TEST_LIBS)

check_PROGRAMS += tests/unit/test_hmap
TESTS += tests/unit/test_hmap
tests_unit_test_hmap_SOURCES = tests/unit/test_hmap.c
tests_unit_test_hmap_CFLAGS = $(NLB_TEST_CFLAGS)
tests_unit_test_hmap_LDADD = $(NLB_TEST_LIBS)

check_PROGRAMS += tests/unit/test_udp_table
TESTS += tests/unit/test_udp_table
tests_unit_test_udp_table_SOURCES = tests/unit/test_udp_table.c
tests_unit_test_udp_table_CFLAGS = $(NLB_TEST_CFLAGS)
tests_unit_test_udp_table_LDADD = $(NLB_TEST_LIBS)

check_PROGRAMS += tests/unit/test_health
TESTS += tests/unit/test_health
tests_unit_test_health_SOURCES = tests/unit/test_health.c
tests_unit_test_health_CFLAGS = $(NLB_TEST_CFLAGS)
tests_unit_test_health_LDADD = $(NLB_TEST_LIBS)

check_PROGRAMS += tests/unit/test_sockmap
TESTS += tests/unit/test_sockmap
tests_unit_test_sockmap_SOURCES = tests/unit/test_sockmap.c
tests_unit_test_sockmap_CFLAGS = $(NLB_TEST_CFLAGS)
tests_unit_test_sockmap_LDADD = $(NLB_TEST_LIBS)

check_PROGRAMS += tests/unit/test_router
TESTS += tests/unit/test_router
tests_unit_test_router_SOURCES = tests/unit/test_router.c
tests_unit_test_router_CFLAGS = $(NLB_TEST_CFLAGS)
tests_unit_test_router_LDADD = $(NLB_TEST_LIBS)

TESTS += tests/e2e/test_balancer.py
EXTRA_DIST += tests/e2e/test_balancer.py
# The sockmap fast path: its own cases, then the relay's files again with
# forwarding = "sockmap" (both skip where nlbd cannot load BPF programs).
TESTS += tests/e2e/test_sockmap.py tests/e2e/test_sockmap_matrix.py
EXTRA_DIST += tests/e2e/test_sockmap.py tests/e2e/test_sockmap_matrix.py

# The whole suite with forwarding = "sockmap" (nlbtest.py puts
# NLB_TEST_FORWARDING into every config it writes; the unit tests do not
# read it). make check-sockmap TESTS='tests/e2e/test_x.py' for a part.
check-sockmap:
	NLB_TEST_FORWARDING=sockmap $(MAKE) $(AM_MAKEFLAGS) check
.PHONY: check-sockmap

TESTS += tests/e2e/test_config_errors.py
EXTRA_DIST += tests/e2e/test_config_errors.py

TESTS += tests/e2e/test_quickstart.py
EXTRA_DIST += tests/e2e/test_quickstart.py

TESTS += tests/e2e/test_health.py
EXTRA_DIST += tests/e2e/test_health.py
TESTS += tests/e2e/test_upgrade.py
EXTRA_DIST += tests/e2e/test_upgrade.py
TESTS += tests/e2e/test_udp.py
EXTRA_DIST += tests/e2e/test_udp.py
TESTS += tests/e2e/test_tls.py
EXTRA_DIST += tests/e2e/test_tls.py
TESTS += tests/e2e/test_tls_passthrough.py
EXTRA_DIST += tests/e2e/test_tls_passthrough.py
TESTS += tests/e2e/test_udp_endpoints.py
EXTRA_DIST += tests/e2e/test_udp_endpoints.py
TESTS += tests/e2e/test_preserve_client_ip.py
EXTRA_DIST += tests/e2e/test_preserve_client_ip.py

TESTS += tests/e2e/test_scale.py
EXTRA_DIST += tests/e2e/test_scale.py

# Needs root and network namespaces; says SKIP without them.
TESTS += tests/e2e/test_endpoints.py
EXTRA_DIST += tests/e2e/test_endpoints.py tests/tools/ppv2_receiver.py \
	tests/e2e/netnstest.py

check_PROGRAMS += tests/unit/test_dns
TESTS += tests/unit/test_dns
tests_unit_test_dns_SOURCES = tests/unit/test_dns.c
tests_unit_test_dns_CFLAGS = $(NLB_TEST_CFLAGS) $(LDNS_CFLAGS)
tests_unit_test_dns_LDADD = $(NLB_TEST_LIBS)

# The DNS responder alone, with records from its command line (until nlbd
# wires it to the registry), and its end-to-end test in a namespace.
check_PROGRAMS += tests/unit/test_dns_endpoints
TESTS += tests/unit/test_dns_endpoints
tests_unit_test_dns_endpoints_SOURCES = tests/unit/test_dns_endpoints.c
tests_unit_test_dns_endpoints_CFLAGS = $(NLB_TEST_CFLAGS) $(LDNS_CFLAGS)
tests_unit_test_dns_endpoints_LDADD = $(NLB_TEST_LIBS)

check_PROGRAMS += tests/tools/dns_responder
tests_tools_dns_responder_SOURCES = tests/tools/dns_responder_main.c
tests_tools_dns_responder_CFLAGS = $(NLB_TEST_CFLAGS)
tests_tools_dns_responder_LDADD = $(NLB_LIBS)
TESTS += tests/e2e/test_dns.py
EXTRA_DIST += tests/e2e/test_dns.py
# nlbd's names for endpoints in two namespaces, and in a cluster.
TESTS += tests/e2e/test_dns_endpoints.py
EXTRA_DIST += tests/e2e/test_dns_endpoints.py

check_PROGRAMS += tests/unit/test_log
TESTS += tests/unit/test_log
tests_unit_test_log_SOURCES = tests/unit/test_log.c
tests_unit_test_log_CFLAGS = $(NLB_TEST_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_log_LDADD = $(NLB_TEST_LIBS) $(JANSSON_LIBS)

TESTS += tests/e2e/test_logs.py
EXTRA_DIST += tests/e2e/test_logs.py

# make install into a DESTDIR, the unit through systemd-analyze verify, the
# default config path and relative paths.
TESTS += tests/e2e/test_install.py
EXTRA_DIST += tests/e2e/test_install.py

# /metrics: promtool, sums without double counts, histograms, scopes.
TESTS += tests/e2e/test_metrics.py
EXTRA_DIST += tests/e2e/test_metrics.py

# The systemd notify protocol (a fake NOTIFY_SOCKET) and nlbd -s reload.
TESTS += tests/e2e/test_systemd.py
EXTRA_DIST += tests/e2e/test_systemd.py

# node.announce_interface with one nlbd in a namespace. Needs root and
# namespaces; says SKIP without them.
TESTS += tests/e2e/test_announce.py
EXTRA_DIST += tests/e2e/test_announce.py

# The cluster data plane on scripts/cluster.sh's rig (three nodes, routers
# with resilient nexthop groups, bird2, PostgreSQL). Needs root,
# namespaces, bird2 and nftables; says SKIP without them.
TESTS += tests/e2e/test_cluster.py
EXTRA_DIST += tests/e2e/test_cluster.py tests/tools/cluster_load.py \
	tests/tools/cluster_probe.py

# The shape of the tree: no reference cycle, rooms that stay small, the
# contracts apart (reads the objects of this build and the sources).
TESTS += tests/layout/test_layout.py
EXTRA_DIST += tests/layout/test_layout.py
