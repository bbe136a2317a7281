# Fuzz targets. Each target's corpus is replayed by `make check` through a
# plain main() in every build; with clang's libFuzzer (configure says so)
# the target is also built as a fuzzer, run for a bounded time by `make
# check` (NLB_FUZZ_SECONDS, default 10) and by hand with `make fuzz`.

check_PROGRAMS += tests/fuzz/fuzz_dns_replay
TESTS += tests/fuzz/fuzz_dns_replay
tests_fuzz_fuzz_dns_replay_SOURCES = tests/fuzz/fuzz_dns.c \
	tests/fuzz/replay_main.c
tests_fuzz_fuzz_dns_replay_CFLAGS = $(AM_CFLAGS) $(LDNS_CFLAGS)
tests_fuzz_fuzz_dns_replay_LDADD = $(NLB_LIBS)

EXTRA_DIST += tests/fuzz/corpus tests/fuzz/make_dns_corpus.py \
	tests/fuzz/run_fuzzer.py

# What the DNS target compiles, instrumented, instead of libnlb.a.
FUZZ_DNS_FILES = \
	$(top_srcdir)/tests/fuzz/fuzz_dns.c \
	$(top_srcdir)/nlb/dns_message.c \
	$(top_srcdir)/nlb/dns_records.c \
	$(top_srcdir)/nlb/addr.c
FUZZ_CFLAGS = -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

if HAVE_LIBFUZZER
check_SCRIPTS += tests/fuzz/fuzz_dns
TESTS += tests/fuzz/run_fuzzer.py
CLEANFILES += tests/fuzz/fuzz_dns

tests/fuzz/fuzz_dns: $(FUZZ_DNS_FILES) $(noinst_HEADERS)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)$(FUZZ_CC) $(FUZZ_CFLAGS) $(AM_CPPFLAGS) $(LDNS_CFLAGS) \
		-o $@ $(FUZZ_DNS_FILES) $(LDNS_LIBS)

fuzz: tests/fuzz/fuzz_dns
	@echo "run: tests/fuzz/fuzz_dns -max_total_time=300 CORPUS_DIR $(top_srcdir)/tests/fuzz/corpus/dns"
else
fuzz:
	@echo "no libFuzzer: configure found no clang that builds -fsanitize=fuzzer targets"; exit 1
endif
.PHONY: fuzz
