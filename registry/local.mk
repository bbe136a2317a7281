# Registry component: endpoint services, the state machine and the store.
# Pure C + SQLite: no libuv, no jansson.

noinst_LIBRARIES += registry/libregistry.a
registry_libregistry_a_SOURCES = \
	registry/registry.c \
	registry/store_sqlite.c
registry_libregistry_a_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS)
noinst_HEADERS += include/nlb/registry.h include/nlb/registry-store.h

# Unit tests: a real SQLite file in a temporary directory.
check_PROGRAMS += tests/unit/test_registry
TESTS += tests/unit/test_registry
tests_unit_test_registry_SOURCES = tests/unit/test_registry.c
tests_unit_test_registry_CFLAGS = $(AM_CFLAGS) $(CUNIT_CFLAGS)
tests_unit_test_registry_LDADD = registry/libregistry.a $(SQLITE3_LIBS) \
	$(CUNIT_LIBS)

# Durability: a writer killed with SIGKILL at random moments, and a driver
# that checks every committed operation survived.
check_PROGRAMS += tests/registry/crash_writer
tests_registry_crash_writer_SOURCES = tests/registry/crash_writer.c
tests_registry_crash_writer_LDADD = registry/libregistry.a $(SQLITE3_LIBS)
TESTS += tests/e2e/test_registry_durability.py
EXTRA_DIST += tests/e2e/test_registry_durability.py registry/README.md
