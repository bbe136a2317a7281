# The data plane and the daemon that wires everything.
noinst_LIBRARIES += nlb/libnlb.a
nlb_libnlb_a_CFLAGS = $(AM_CFLAGS) $(LIBUV_CFLAGS) $(LIBCONFIG_CFLAGS) \
	$(NGHTTP2_CFLAGS) $(JANSSON_CFLAGS) $(OPENSSL_CFLAGS) $(LDNS_CFLAGS) \
	$(LIBSYSTEMD_CFLAGS)
nlb_libnlb_a_SOURCES = \
	nlb/addr.c \
	nlb/announce.c \
	nlb/capacity.c \
	nlb/config.c \
	nlb/cpus.c \
	nlb/daemon.c \
	nlb/dns.c \
	nlb/dns_endpoints.c \
	nlb/dns_message.c \
	nlb/dns_records.c \
	nlb/duration.c \
	nlb/endpoints.c \
	nlb/flow.c \
	nlb/health.c \
	nlb/hmap.c \
	nlb/lb_least_conn.c \
	nlb/lb_maglev.c \
	nlb/lb_pool.c \
	nlb/lb_round_robin.c \
	nlb/listener.c \
	nlb/log.c \
	nlb/metrics.c \
	nlb/netns.c \
	nlb/notify.c \
	nlb/proxy_v2.c \
	nlb/regloop.c \
	nlb/router.c \
	nlb/rundir.c \
	nlb/services.c \
	nlb/snapshot.c \
	nlb/status_matcher.c \
	nlb/target.c \
	nlb/text.c \
	nlb/worker.c

noinst_HEADERS += \
	include/nlb/addr.h \
	include/nlb/announce.h \
	include/nlb/capacity.h \
	include/nlb/config.h \
	include/nlb/cpus.h \
	include/nlb/daemon.h \
	include/nlb/dns.h \
	include/nlb/dns-endpoints.h \
	include/nlb/dns-message.h \
	include/nlb/dns-records.h \
	include/nlb/duration.h \
	include/nlb/endpoints.h \
	include/nlb/flow.h \
	include/nlb/health.h \
	include/nlb/histogram.h \
	include/nlb/hmap.h \
	include/nlb/io.h \
	include/nlb/lb.h \
	include/nlb/list.h \
	include/nlb/listener.h \
	include/nlb/log.h \
	include/nlb/metrics.h \
	include/nlb/netns.h \
	include/nlb/notify.h \
	include/nlb/proxy_v2.h \
	include/nlb/regloop.h \
	include/nlb/router.h \
	include/nlb/rundir.h \
	include/nlb/services.h \
	include/nlb/snapshot.h \
	include/nlb/status_matcher.h \
	include/nlb/target.h \
	include/nlb/text.h \
	include/nlb/worker.h

# Libraries and flags every program linking the daemon's code needs.
NLB_LIBS = nlb/libnlb.a $(API_LIBS) $(LIBUV_LIBS) $(LIBCONFIG_LIBS) \
	$(LDNS_LIBS) $(LIBSYSTEMD_LIBS) -lm

# A daemon an administrator starts: sbin, like haproxy and nginx.
sbin_PROGRAMS += nlbd
nlbd_SOURCES = nlb/main.c
nlbd_CPPFLAGS = $(AM_CPPFLAGS) \
	-DNLB_DEFAULT_CONFIG='"$(sysconfdir)/nlb/nlb.cfg"'
nlbd_CFLAGS = $(AM_CFLAGS) $(LIBUV_CFLAGS)
nlbd_LDADD = $(NLB_LIBS)

include nlb/proxy_v2.mk
