# Registry component: endpoint services, the state machine and the store.
# Pure C + SQLite and libpq: no libuv, no jansson.

noinst_LIBRARIES += registry/libregistry.a
registry_libregistry_a_SOURCES = \
	registry/registry-int.h \
	registry/sql-driver.h \
	registry/sql-run.h \
	registry/names.c \
	registry/core.c \
	registry/address.c \
	registry/services.c \
	registry/endpoints.c \
	registry/cluster.c \
	registry/tenancy.c \
	registry/dns.c \
	registry/changes.c \
	registry/store_sql.c \
	registry/sql_run.c \
	registry/backends.c \
	registry/sql_migrate.c \
	registry/sql_sqlite.c \
	registry/sql_pg.c
registry_libregistry_a_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS) $(LIBPQ_CFLAGS)
# The drivers' schemas and migrations, written as SQL (registry/sql/) and
# compiled in: registry/sql-migrations.c is generated into the build tree.
nodist_registry_libregistry_a_SOURCES = registry/sql-migrations.c
CLEANFILES += registry/sql-migrations.c
REGISTRY_SQL = $(top_srcdir)/registry/sql/sqlite.sql \
	$(top_srcdir)/registry/sql/postgresql.sql
EXTRA_DIST += registry/sql/gen-migrations.sh registry/sql/sqlite.sql \
	registry/sql/postgresql.sql
registry/sql-migrations.c: $(top_srcdir)/registry/sql/gen-migrations.sh \
		$(REGISTRY_SQL)
	$(AM_V_GEN)$(MKDIR_P) registry && $(SHELL) \
	  $(top_srcdir)/registry/sql/gen-migrations.sh \
	  reg_sql_sqlite=$(top_srcdir)/registry/sql/sqlite.sql \
	  reg_sql_postgresql=$(top_srcdir)/registry/sql/postgresql.sql \
	  > $@-t && mv $@-t $@
noinst_HEADERS += include/nlb/registry.h include/nlb/registry-store.h

# Everything a program linking the registry needs.
REGISTRY_LIBS = registry/libregistry.a $(SQLITE3_LIBS) $(LIBPQ_LIBS)

# Unit tests: a real SQLite file in a temporary directory.
check_PROGRAMS += tests/unit/test_registry
TESTS += tests/unit/test_registry
# The same suite against PostgreSQL (a server of the test's own).
TESTS += tests/e2e/test_registry_pg.py
EXTRA_DIST += tests/e2e/test_registry_pg.py tests/e2e/pgtest.py
CLEAN_LOCAL_DIRS += tests/pg-template

# One nlbd per SQLite file and per node name; bounded waits on a held
# store lock (PostgreSQL from pgtest; its cases say SKIP without it).
TESTS += tests/e2e/test_registry_guards.py
EXTRA_DIST += tests/e2e/test_registry_guards.py

# Three nlbd nodes on one PostgreSQL (needs root and namespaces).
TESTS += tests/e2e/test_cluster_control.py
EXTRA_DIST += tests/e2e/test_cluster_control.py tests/e2e/clustertest.py
tests_unit_test_registry_SOURCES = tests/unit/test_registry.c
tests_unit_test_registry_CFLAGS = $(AM_CFLAGS) $(CUNIT_CFLAGS) $(LIBPQ_CFLAGS)
tests_unit_test_registry_LDADD = $(REGISTRY_LIBS) $(CUNIT_LIBS)

# Durability: a writer killed with SIGKILL at random moments, and a driver
# that checks every committed operation survived.
check_PROGRAMS += tests/registry/crash_writer
tests_registry_crash_writer_SOURCES = tests/registry/crash_writer.c
tests_registry_crash_writer_LDADD = $(REGISTRY_LIBS)
TESTS += tests/e2e/test_registry_durability.py
EXTRA_DIST += tests/e2e/test_registry_durability.py registry/README.md
