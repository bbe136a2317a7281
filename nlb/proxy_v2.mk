# PROXY protocol v2 encoder: its unit test. nlb/dataplane/proxy_v2.c itself is built
# into nlb/libnlb.a by nlb/local.mk. The test compiles the encoder directly,
# so it runs even while the rest of the daemon does not build.
check_PROGRAMS += tests/unit/test_proxy_v2
TESTS += tests/unit/test_proxy_v2
tests_unit_test_proxy_v2_SOURCES = tests/unit/test_proxy_v2.c nlb/dataplane/proxy_v2.c
tests_unit_test_proxy_v2_CFLAGS = $(AM_CFLAGS) $(CUNIT_CFLAGS)
tests_unit_test_proxy_v2_LDADD = $(CUNIT_LIBS)
EXTRA_DIST += tests/tools/ppv2_receiver.py

# ppv2_send writes the encoder's headers to a socket; test_ppv2_receiver.py
# checks them with the independent reader of tests/tools/ppv2_receiver.py.
check_PROGRAMS += tests/tools/ppv2_send
tests_tools_ppv2_send_SOURCES = tests/tools/ppv2_send.c nlb/dataplane/proxy_v2.c
tests_tools_ppv2_send_CFLAGS = $(AM_CFLAGS)
TESTS += tests/tools/test_ppv2_receiver.py
EXTRA_DIST += tests/tools/test_ppv2_receiver.py
