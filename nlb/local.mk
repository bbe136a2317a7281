# The data plane and the daemon that wires everything.
noinst_LIBRARIES += nlb/libnlb.a
nlb_libnlb_a_CFLAGS = $(AM_CFLAGS) $(LIBUV_CFLAGS) $(LIBCONFIG_CFLAGS) \
	$(NGHTTP2_CFLAGS) $(JANSSON_CFLAGS) $(OPENSSL_CFLAGS) $(LDNS_CFLAGS) \
	$(LIBSYSTEMD_CFLAGS) $(LIBBPF_CFLAGS)
nlb_libnlb_a_SOURCES = \
	nlb/capacity.c \
	nlb/config.c \
	nlb/cpus.c \
	nlb/daemon.c \
	nlb/log.c \
	nlb/metrics.c \
	nlb/notify.c \
	nlb/rundir.c \
	nlb/upgrade.c \
	nlb/common/addr.c \
	nlb/common/clienthello.c \
	nlb/common/config_loader.c \
	nlb/common/config_numbers.c \
	nlb/common/duration.c \
	nlb/common/forwarding.c \
	nlb/common/histogram.c \
	nlb/common/hmap.c \
	nlb/common/inherit.c \
	nlb/common/protocol.c \
	nlb/common/text.c \
	nlb/common/tls_client.c \
	nlb/common/tls_server.c \
	nlb/common/tls_settings.c \
	nlb/dataplane/flow.c \
	nlb/dataplane/flow_end.c \
	nlb/dataplane/flow_sockmap.c \
	nlb/dataplane/flow_kinds.c \
	nlb/dataplane/listener.c \
	nlb/dataplane/passthrough.c \
	nlb/dataplane/proxy_v2.c \
	nlb/dataplane/sni_routes.c \
	nlb/dataplane/snapshot.c \
	nlb/dataplane/sockmap.c \
	nlb/dataplane/target.c \
	nlb/dataplane/tls_flow.c \
	nlb/dataplane/udp.c \
	nlb/dataplane/udp_table.c \
	nlb/dataplane/worker.c \
	nlb/dataplane/worker_pool.c \
	nlb/lb/lb_least_conn.c \
	nlb/lb/lb_maglev.c \
	nlb/lb/lb_pool.c \
	nlb/lb/lb_round_robin.c \
	nlb/control/announce.c \
	nlb/control/config_listeners.c \
	nlb/control/config_networks.c \
	nlb/control/config_registry.c \
	nlb/control/config_targets.c \
	nlb/control/config_tls.c \
	nlb/control/endpoints.c \
	nlb/control/health.c \
	nlb/control/health_tls.c \
	nlb/control/netns.c \
	nlb/control/regloop.c \
	nlb/control/router.c \
	nlb/control/router_groups.c \
	nlb/control/router_routes.c \
	nlb/control/router_tls.c \
	nlb/control/services.c \
	nlb/control/status_matcher.c \
	nlb/dns/config_dns.c \
	nlb/dns/dns.c \
	nlb/dns/dns_endpoints.c \
	nlb/dns/dns_message.c \
	nlb/dns/dns_records.c \
	nlb/dns/dns_tcp.c

# Private headers sit beside their code; include/nlb/ holds the contracts
# between components.
noinst_HEADERS += \
	nlb/capacity.h \
	nlb/config.h \
	nlb/config-sections.h \
	nlb/cpus.h \
	nlb/daemon.h \
	nlb/log.h \
	nlb/metrics.h \
	nlb/notify.h \
	nlb/rundir.h \
	nlb/upgrade.h \
	nlb/common/addr.h \
	nlb/common/clienthello.h \
	nlb/common/config-loader.h \
	nlb/common/duration.h \
	nlb/common/forwarding.h \
	nlb/common/histogram.h \
	nlb/common/hmap.h \
	nlb/common/inherit.h \
	nlb/common/protocol.h \
	nlb/common/text.h \
	nlb/common/tls_client.h \
	nlb/common/tls_server.h \
	nlb/dataplane/flow.h \
	nlb/dataplane/flow-int.h \
	nlb/dataplane/flow_kind.h \
	nlb/dataplane/io.h \
	nlb/dataplane/listener.h \
	nlb/dataplane/proxy_v2.h \
	nlb/dataplane/sni_routes.h \
	nlb/dataplane/snapshot.h \
	nlb/dataplane/sockmap.h \
	nlb/dataplane/target.h \
	nlb/dataplane/udp.h \
	nlb/dataplane/udp_table.h \
	nlb/dataplane/worker.h \
	nlb/dataplane/worker-state.h \
	nlb/control/announce.h \
	nlb/control/endpoints.h \
	nlb/control/health.h \
	nlb/control/health_tls.h \
	nlb/control/netns.h \
	nlb/control/regloop.h \
	nlb/control/router.h \
	nlb/control/router-int.h \
	nlb/control/services.h \
	nlb/control/status_matcher.h \
	nlb/dns/dns-endpoints.h \
	nlb/dns/dns-message.h \
	nlb/dns/dns-records.h \
	nlb/dns/dns-tcp.h \
	nlb/dns/dns.h \
	include/nlb/lb.h \
	include/nlb/list.h

# Libraries and flags every program linking the daemon's code needs.
NLB_LIBS = nlb/libnlb.a $(API_LIBS) $(LIBUV_LIBS) $(LIBCONFIG_LIBS) \
	$(LDNS_LIBS) $(LIBSYSTEMD_LIBS) $(LIBBPF_LIBS) -lm

# The sockmap fast path's BPF program: compiled for the BPF target, then
# embedded in nlbd as a libbpf skeleton (the object's bytes are in the
# header), so no separate file is installed.
EXTRA_DIST += nlb/dataplane/bpf/sockmap.bpf.c
if HAVE_LIBBPF
nlb/dataplane/bpf/sockmap.bpf.o: $(srcdir)/nlb/dataplane/bpf/sockmap.bpf.c
	@$(MKDIR_P) nlb/dataplane/bpf
	$(AM_V_GEN)$(BPF_CLANG) -target bpf -O2 -g -Wall \
		-I/usr/include/$(BPF_MULTIARCH) \
		-c $(srcdir)/nlb/dataplane/bpf/sockmap.bpf.c -o $@
nlb/dataplane/bpf/sockmap.skel.h: nlb/dataplane/bpf/sockmap.bpf.o
	$(AM_V_GEN)$(BPFTOOL) gen skeleton nlb/dataplane/bpf/sockmap.bpf.o \
		name nlb_sockmap_bpf >$@.tmp && mv $@.tmp $@
nlb/dataplane/libnlb_a-sockmap.$(OBJEXT): nlb/dataplane/bpf/sockmap.skel.h
CLEANFILES += nlb/dataplane/bpf/sockmap.bpf.o nlb/dataplane/bpf/sockmap.skel.h
endif

# A daemon an administrator starts: sbin, like haproxy and nginx.
sbin_PROGRAMS += nlbd
nlbd_SOURCES = nlb/main.c
nlbd_CPPFLAGS = $(AM_CPPFLAGS) \
	-DNLB_DEFAULT_CONFIG='"$(sysconfdir)/nlb/nlb.cfg"'
nlbd_CFLAGS = $(AM_CFLAGS) $(LIBUV_CFLAGS)
nlbd_LDADD = $(NLB_LIBS)

include nlb/proxy_v2.mk
