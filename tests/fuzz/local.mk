# Fuzz targets. Each target's corpus is replayed by `make check` through a
# plain main() in every build; with clang's libFuzzer (configure says so)
# the targets are also built as fuzzers, run for a bounded time by `make
# check` (NLB_FUZZ_SECONDS, default 10, each) and by hand with `make fuzz`.
#
#   dns       DNS queries (nlb/dns/dns_message.c) over UDP and TCP
#   config    the config loader and the duration parsers
#   proxy_v2  the PROXY v2 encoder, read back by a reader of its own
#   api       routing, queries, JSON bodies, roles and every handler over a
#             real SQLite registry
#   http1     HTTP/1.1 bytes through api/h1.c (fake transport), the
#             exchange and the handlers, in one read and in small ones
#   h2        HTTP/2 bytes (cleartext) through api/h2.c and nghttp2, the
#             same way: frames, answers and limits checked
#   clienthello  a client's first bytes through the TLS ClientHello reader
#             (nlb/common/clienthello.c): server name, ALPN, bounds

# ---- replay programs: every build ------------------------------------------

# The API's private headers (the fuzzers drive what a connection drives).
FUZZ_API_CPPFLAGS = -I$(top_srcdir)/api
FUZZ_API_CFLAGS = $(AM_CFLAGS) $(LIBUV_CFLAGS) $(JANSSON_CFLAGS) \
	$(OPENSSL_CFLAGS) $(NGHTTP2_CFLAGS) $(HTTP_PARSER_CFLAGS)
# fake_conn.c stands in for api/conn.c: it defines every api_conn_*
# function (but api_conn_log, in log.c), so the linker never takes conn.o
# from libapi.a.
FUZZ_API_ENV = tests/fuzz/api_env.c tests/fuzz/api_env.h \
	tests/fuzz/fake_conn.c tests/fuzz/fake_conn.h

check_PROGRAMS += tests/fuzz/fuzz_dns_replay tests/fuzz/fuzz_config_replay \
	tests/fuzz/fuzz_proxy_v2_replay tests/fuzz/fuzz_api_replay \
	tests/fuzz/fuzz_http1_replay tests/fuzz/fuzz_h2_replay \
	tests/fuzz/fuzz_clienthello_replay
TESTS += tests/fuzz/fuzz_dns_replay tests/fuzz/fuzz_config_replay \
	tests/fuzz/fuzz_proxy_v2_replay tests/fuzz/fuzz_api_replay \
	tests/fuzz/fuzz_http1_replay tests/fuzz/fuzz_h2_replay \
	tests/fuzz/fuzz_clienthello_replay

tests_fuzz_fuzz_dns_replay_SOURCES = tests/fuzz/fuzz_dns.c \
	tests/fuzz/replay_main.c
tests_fuzz_fuzz_dns_replay_CFLAGS = $(AM_CFLAGS) $(LDNS_CFLAGS)
tests_fuzz_fuzz_dns_replay_LDADD = $(NLB_LIBS)

tests_fuzz_fuzz_config_replay_SOURCES = tests/fuzz/fuzz_config.c \
	tests/fuzz/replay_main.c
tests_fuzz_fuzz_config_replay_CFLAGS = $(AM_CFLAGS) -DFUZZ_CORPUS='"config"'
tests_fuzz_fuzz_config_replay_LDADD = $(NLB_LIBS)

tests_fuzz_fuzz_proxy_v2_replay_SOURCES = tests/fuzz/fuzz_proxy_v2.c \
	tests/fuzz/replay_main.c
tests_fuzz_fuzz_proxy_v2_replay_CFLAGS = $(AM_CFLAGS) \
	-DFUZZ_CORPUS='"proxy_v2"'
tests_fuzz_fuzz_proxy_v2_replay_LDADD = $(NLB_LIBS)

tests_fuzz_fuzz_api_replay_SOURCES = tests/fuzz/fuzz_api.c $(FUZZ_API_ENV) \
	tests/fuzz/replay_main.c
tests_fuzz_fuzz_api_replay_CPPFLAGS = $(AM_CPPFLAGS) $(FUZZ_API_CPPFLAGS)
tests_fuzz_fuzz_api_replay_CFLAGS = $(FUZZ_API_CFLAGS) -DFUZZ_CORPUS='"api"'
tests_fuzz_fuzz_api_replay_LDADD = $(API_LIBS)

tests_fuzz_fuzz_http1_replay_SOURCES = tests/fuzz/fuzz_http1.c \
	$(FUZZ_API_ENV) tests/fuzz/replay_main.c
tests_fuzz_fuzz_http1_replay_CPPFLAGS = $(AM_CPPFLAGS) $(FUZZ_API_CPPFLAGS)
tests_fuzz_fuzz_http1_replay_CFLAGS = $(FUZZ_API_CFLAGS) \
	-DFUZZ_CORPUS='"http1"'
tests_fuzz_fuzz_http1_replay_LDADD = $(API_LIBS)

# api/h2.c comes from libapi.a, conn.c still from fake_conn.c.
tests_fuzz_fuzz_h2_replay_SOURCES = tests/fuzz/fuzz_h2.c \
	$(FUZZ_API_ENV) tests/fuzz/replay_main.c
tests_fuzz_fuzz_h2_replay_CPPFLAGS = $(AM_CPPFLAGS) $(FUZZ_API_CPPFLAGS)
tests_fuzz_fuzz_h2_replay_CFLAGS = $(FUZZ_API_CFLAGS) -DFUZZ_CORPUS='"h2"'
tests_fuzz_fuzz_h2_replay_LDADD = $(API_LIBS)

tests_fuzz_fuzz_clienthello_replay_SOURCES = tests/fuzz/fuzz_clienthello.c \
	tests/fuzz/replay_main.c
tests_fuzz_fuzz_clienthello_replay_CFLAGS = $(AM_CFLAGS) \
	-DFUZZ_CORPUS='"clienthello"'
tests_fuzz_fuzz_clienthello_replay_LDADD = $(NLB_LIBS)

EXTRA_DIST += tests/fuzz/corpus tests/fuzz/make_dns_corpus.py \
	tests/fuzz/run_fuzzer.py tests/fuzz/make_seed_corpora.py \
	tests/fuzz/config.dict tests/fuzz/api.dict \
	tests/fuzz/http1.dict tests/fuzz/h2.dict

# ---- libFuzzer targets: with clang -----------------------------------------

# What each target compiles, instrumented, instead of the libraries (which
# may be built by another compiler, with another sanitizer runtime).
FUZZ_DNS_FILES = \
	$(top_srcdir)/tests/fuzz/fuzz_dns.c \
	$(top_srcdir)/nlb/dns/dns_message.c \
	$(top_srcdir)/nlb/dns/dns_records.c \
	$(top_srcdir)/nlb/common/addr.c
FUZZ_CONFIG_FILES = \
	$(top_srcdir)/tests/fuzz/fuzz_config.c \
	$(top_srcdir)/nlb/config.c \
	$(top_srcdir)/nlb/common/config_loader.c \
	$(top_srcdir)/nlb/common/config_numbers.c \
	$(top_srcdir)/nlb/control/config_listeners.c \
	$(top_srcdir)/nlb/common/forwarding.c \
	$(top_srcdir)/nlb/control/config_networks.c \
	$(top_srcdir)/nlb/control/config_registry.c \
	$(top_srcdir)/nlb/control/config_targets.c \
	$(top_srcdir)/nlb/control/config_tls.c \
	$(top_srcdir)/nlb/common/tls_settings.c \
	$(top_srcdir)/nlb/dns/config_dns.c \
	$(top_srcdir)/nlb/common/duration.c \
	$(top_srcdir)/nlb/common/addr.c \
	$(top_srcdir)/nlb/common/protocol.c \
	$(top_srcdir)/nlb/cpus.c \
	$(top_srcdir)/nlb/control/status_matcher.c \
	$(top_srcdir)/nlb/lb/lb_pool.c \
	$(top_srcdir)/nlb/lb/lb_maglev.c \
	$(top_srcdir)/nlb/lb/lb_round_robin.c \
	$(top_srcdir)/nlb/lb/lb_least_conn.c \
	$(top_srcdir)/nlb/dataplane/target.c \
	$(top_srcdir)/nlb/common/hmap.c \
	$(top_srcdir)/registry/names.c
FUZZ_PROXY_V2_FILES = \
	$(top_srcdir)/tests/fuzz/fuzz_proxy_v2.c \
	$(top_srcdir)/nlb/dataplane/proxy_v2.c
FUZZ_CLIENTHELLO_FILES = \
	$(top_srcdir)/tests/fuzz/fuzz_clienthello.c \
	$(top_srcdir)/nlb/common/clienthello.c
# The API and registry libraries' own sources, less the API's transport
# (conn.c: fake_conn.c stands in), compiled by the rules below from the
# build tree (generated files) or the source tree. HTTP/2 (h2.c) is among
# them for every target: server.c hands it to conn.c.
FUZZ_API_LIB_FILES = $(api_libapi_a_SOURCES) \
	$(nodist_api_libapi_a_SOURCES) $(registry_libregistry_a_SOURCES) \
	$(nodist_registry_libregistry_a_SOURCES)
FUZZ_API_COMMON_FILES = \
	$(top_srcdir)/tests/fuzz/api_env.c \
	$(top_srcdir)/tests/fuzz/fake_conn.c
FUZZ_API_FILES = $(top_srcdir)/tests/fuzz/fuzz_api.c $(FUZZ_API_COMMON_FILES)
FUZZ_HTTP1_FILES = $(top_srcdir)/tests/fuzz/fuzz_http1.c \
	$(FUZZ_API_COMMON_FILES)
# HTTP/2: nghttp2 itself is the system's.
FUZZ_H2_FILES = $(top_srcdir)/tests/fuzz/fuzz_h2.c $(FUZZ_API_COMMON_FILES)
# The .c files of FUZZ_API_LIB_FILES, for a recipe's shell.
FUZZ_LIB_C = files=; for f in $(FUZZ_API_LIB_FILES); do \
	  case $$f in *.h|api/conn.c) ;; \
	  *) if test -f $$f; then files="$$files $$f"; \
	     else files="$$files $(top_srcdir)/$$f"; fi ;; esac; \
	done
FUZZ_API_INCLUDES = $(top_srcdir)/tests/fuzz/api_env.h \
	$(top_srcdir)/tests/fuzz/fake_conn.h
FUZZ_API_EXTERNAL = $(LIBUV_LIBS) $(JANSSON_LIBS) $(OPENSSL_LIBS) \
	$(HTTP_PARSER_LIBS) $(NGHTTP2_LIBS) $(SQLITE3_LIBS) $(LIBPQ_LIBS)
FUZZ_API_CC_FLAGS = $(AM_CPPFLAGS) $(FUZZ_API_CPPFLAGS) $(LIBUV_CFLAGS) \
	$(JANSSON_CFLAGS) $(OPENSSL_CFLAGS) $(HTTP_PARSER_CFLAGS) \
	$(NGHTTP2_CFLAGS) $(SQLITE3_CFLAGS) $(LIBPQ_CFLAGS)
FUZZ_CFLAGS = -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_TARGETS = tests/fuzz/fuzz_dns tests/fuzz/fuzz_config \
	tests/fuzz/fuzz_proxy_v2 tests/fuzz/fuzz_api tests/fuzz/fuzz_http1 \
	tests/fuzz/fuzz_h2 tests/fuzz/fuzz_clienthello

if HAVE_LIBFUZZER
check_SCRIPTS += $(FUZZ_TARGETS)
TESTS += tests/fuzz/run_fuzzer.py
CLEANFILES += $(FUZZ_TARGETS)

tests/fuzz/fuzz_dns: $(FUZZ_DNS_FILES) $(noinst_HEADERS)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)$(FUZZ_CC) $(FUZZ_CFLAGS) $(AM_CPPFLAGS) $(LDNS_CFLAGS) \
		-o $@ $(FUZZ_DNS_FILES) $(LDNS_LIBS)

tests/fuzz/fuzz_config: $(FUZZ_CONFIG_FILES) $(noinst_HEADERS)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)$(FUZZ_CC) $(FUZZ_CFLAGS) $(AM_CPPFLAGS) \
		$(LIBCONFIG_CFLAGS) -o $@ $(FUZZ_CONFIG_FILES) $(LIBCONFIG_LIBS) -lm

tests/fuzz/fuzz_proxy_v2: $(FUZZ_PROXY_V2_FILES) $(noinst_HEADERS)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)$(FUZZ_CC) $(FUZZ_CFLAGS) $(AM_CPPFLAGS) \
		-o $@ $(FUZZ_PROXY_V2_FILES)

tests/fuzz/fuzz_clienthello: $(FUZZ_CLIENTHELLO_FILES) $(noinst_HEADERS)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)$(FUZZ_CC) $(FUZZ_CFLAGS) $(AM_CPPFLAGS) \
		-o $@ $(FUZZ_CLIENTHELLO_FILES)

tests/fuzz/fuzz_api: $(FUZZ_API_FILES) $(FUZZ_API_LIB_FILES) \
		$(noinst_HEADERS) $(FUZZ_API_INCLUDES)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)$(FUZZ_LIB_C); $(FUZZ_CC) $(FUZZ_CFLAGS) \
		$(FUZZ_API_CC_FLAGS) -o $@ $(FUZZ_API_FILES) $$files \
		$(FUZZ_API_EXTERNAL)

tests/fuzz/fuzz_http1: $(FUZZ_HTTP1_FILES) $(FUZZ_API_LIB_FILES) \
		$(noinst_HEADERS) $(FUZZ_API_INCLUDES)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)$(FUZZ_LIB_C); $(FUZZ_CC) $(FUZZ_CFLAGS) \
		$(FUZZ_API_CC_FLAGS) -o $@ $(FUZZ_HTTP1_FILES) $$files \
		$(FUZZ_API_EXTERNAL)

tests/fuzz/fuzz_h2: $(FUZZ_H2_FILES) $(FUZZ_API_LIB_FILES) \
		$(noinst_HEADERS) $(FUZZ_API_INCLUDES)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)$(FUZZ_LIB_C); $(FUZZ_CC) $(FUZZ_CFLAGS) \
		$(FUZZ_API_CC_FLAGS) -o $@ $(FUZZ_H2_FILES) $$files \
		$(FUZZ_API_EXTERNAL)

fuzz: $(FUZZ_TARGETS)
	@for t in dns config proxy_v2 api http1 h2 clienthello; do \
	  echo "run: tests/fuzz/fuzz_$$t -max_total_time=300 CORPUS_DIR $(top_srcdir)/tests/fuzz/corpus/$$t"; \
	done
	@echo "or: NLB_FUZZ_SECONDS=300 $(top_srcdir)/tests/fuzz/run_fuzzer.py"
else
fuzz:
	@echo "no libFuzzer: configure found no clang that builds -fsanitize=fuzzer targets"; exit 1
endif
.PHONY: fuzz
