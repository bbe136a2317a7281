# The management API: HTTP/2 (nghttp2) and HTTP/1.1 (http-parser) on
# libuv, JSON (jansson), TLS and token hashing (OpenSSL). Depends on the
# registry only.
noinst_LIBRARIES += api/libapi.a
api_libapi_a_SOURCES = \
	api/admission.c \
	api/admission.h \
	api/api-int.h \
	api/auth.c \
	api/conn.c \
	api/conn.h \
	api/console-assets.h \
	api/events.c \
	api/tokens.c \
	api/tokens.h \
	api/events.h \
	api/exchange.c \
	api/exchange.h \
	api/h1.c \
	api/h2.c \
	api/handlers/common.c \
	api/handlers/console.c \
	api/handlers/endpoints.c \
	api/handlers/events.c \
	api/handlers/handlers.h \
	api/handlers/nodes.c \
	api/handlers/services.c \
	api/handlers/status.c \
	api/handlers/targets.c \
	api/handlers/tenancy.c \
	api/json.c \
	api/log.c \
	api/openapi.h \
	api/query.c \
	api/router.c \
	api/routes.c \
	api/server.c
api_libapi_a_CFLAGS = $(AM_CFLAGS) $(LIBUV_CFLAGS) $(NGHTTP2_CFLAGS) \
	$(JANSSON_CFLAGS) $(OPENSSL_CFLAGS) $(HTTP_PARSER_CFLAGS)
# The OpenAPI document, compiled in (api/openapi.h): api/openapi-doc.c is
# generated from docs/openapi.yaml with od, so nlbd serves at
# GET /v1/openapi.yaml exactly the file of the tree it was built from. The
# file is installed for tools too.
nodist_api_libapi_a_SOURCES = api/openapi-doc.c api/console-assets.c
api_libapi_a_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/api
CLEANFILES += api/openapi-doc.c
openapidir = $(pkgdatadir)
dist_openapi_DATA = docs/openapi.yaml
api/openapi-doc.c: $(top_srcdir)/docs/openapi.yaml
	$(AM_V_GEN)$(MKDIR_P) api && { \
	  echo '/* Generated from docs/openapi.yaml by api/local.mk. */'; \
	  echo '#include "openapi.h"'; \
	  echo 'const unsigned char api_openapi_yaml[] = {'; \
	  od -An -v -tx1 $(top_srcdir)/docs/openapi.yaml | \
	    sed -e 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; \
	  echo 'const size_t api_openapi_yaml_len = sizeof api_openapi_yaml;'; \
	} > $@-t && mv $@-t $@

# The web console's files (api/ui/, docs/console.md), compiled in the same
# way: api/console-assets.c holds their bytes, content types and ETags.
CLEANFILES += api/console-assets.c
EXTRA_DIST += api/ui/gen-assets.sh api/ui/index.html api/ui/app.js \
	api/ui/app.css
api/console-assets.c: $(top_srcdir)/api/ui/gen-assets.sh \
		$(top_srcdir)/api/ui/index.html $(top_srcdir)/api/ui/app.js \
		$(top_srcdir)/api/ui/app.css
	$(AM_V_GEN)$(MKDIR_P) api && $(SHELL) $(top_srcdir)/api/ui/gen-assets.sh \
	  $(top_srcdir)/api/ui index.html app.js app.css > $@-t && mv $@-t $@

EXTRA_DIST += api/README.md api/handlers/README.md

noinst_HEADERS += \
	include/nlb/api.h \
	include/nlb/api-auth.h \
	include/nlb/api-json.h \
	include/nlb/api-limits.h \
	include/nlb/api-router.h

# Everything a program linking the API needs, registry included.
API_LIBS = api/libapi.a $(REGISTRY_LIBS) $(LIBUV_LIBS) \
	$(NGHTTP2_LIBS) $(HTTP_PARSER_LIBS) $(JANSSON_LIBS) $(OPENSSL_LIBS)

# Unit tests of the pure pieces: routing, JSON checks, authentication.
check_PROGRAMS += tests/unit/test_api
TESTS += tests/unit/test_api
tests_unit_test_api_SOURCES = tests/unit/test_api.c
tests_unit_test_api_CFLAGS = $(AM_CFLAGS) $(CUNIT_CFLAGS) $(LIBUV_CFLAGS) \
	$(JANSSON_CFLAGS) $(OPENSSL_CFLAGS)
tests_unit_test_api_LDADD = $(API_LIBS) $(CUNIT_LIBS)

# A standalone API server over a temporary registry, for the end-to-end
# tests until (and besides) nlbd serves the API.
check_PROGRAMS += tests/tools/api_server_main
tests_tools_api_server_main_SOURCES = tests/tools/api_server_main.c
tests_tools_api_server_main_CFLAGS = $(AM_CFLAGS) $(LIBUV_CFLAGS) \
	$(OPENSSL_CFLAGS)
tests_tools_api_server_main_LDADD = $(API_LIBS)

TESTS += tests/e2e/test_api.py tests/e2e/test_api_http1.py \
	tests/e2e/test_tenancy.py tests/e2e/test_openapi.py
EXTRA_DIST += tests/e2e/test_api.py tests/e2e/test_api_http1.py \
	tests/e2e/test_tenancy.py tests/e2e/test_openapi.py tests/e2e/apitest.py

# Clients without a token: budgets, probation, bodies, lifetime.
TESTS += tests/e2e/test_api_admission.py
EXTRA_DIST += tests/e2e/test_api_admission.py

# Answers clients do not read: budgets, static answers, memory given back.
TESTS += tests/e2e/test_api_output.py
EXTRA_DIST += tests/e2e/test_api_output.py

# 40 event streams over a million stored events; other requests meanwhile.
TESTS += tests/e2e/test_api_event_load.py
EXTRA_DIST += tests/e2e/test_api_event_load.py

# RSS flat over endpoint cycles (the full 10,000: bench/endpoint_cycles.py).
TESTS += tests/e2e/test_endpoint_cycles.py
EXTRA_DIST += tests/e2e/test_endpoint_cycles.py

EXTRA_DIST += bench/h2load_api.sh bench/README-api.md

# The web console in headless Chromium, each role at its work (SKIP
# without chromium, chromium-driver and python3-selenium); it leaves a
# screenshot of each view in tests/e2e/console-screens/.
TESTS += tests/e2e/test_console.py
EXTRA_DIST += tests/e2e/test_console.py
CLEAN_LOCAL_DIRS += tests/e2e/console-screens
