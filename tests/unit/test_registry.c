/* CUnit suite of the registry: the state machine, permission checks per
 * role, connection limits, reconcile, address allocation, expiry, events,
 * the change feed, pages, targets, nodes, placements and reopening.
 *
 * It runs against a real SQLite file in a temporary directory, or, when
 * NLB_TEST_PG holds a libpq connection string, against that PostgreSQL
 * database (tests/e2e/test_registry_pg.py starts a server of its own and
 * runs this program so): every case starts from an empty schema. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "nlb/registry.h"

#include "unit.h"

static const struct reg_actor OPS = {"ops", REG_ROLE_OPERATOR};
static const struct reg_actor PAY = {"pay", REG_ROLE_PROVIDER};
static const struct reg_actor PAY2 = {"pay2", REG_ROLE_PROVIDER};
static const struct reg_actor SHOP = {"shop", REG_ROLE_CONSUMER};
static const struct reg_actor ACME = {"acme", REG_ROLE_CONSUMER};

static const struct reg_principal principals[] = {
    {"ops", REG_ROLE_OPERATOR, NULL, 0},  {"pay", REG_ROLE_PROVIDER, NULL, 0},
    {"pay2", REG_ROLE_PROVIDER, NULL, 0}, {"shop", REG_ROLE_CONSUMER, NULL, 0},
    {"acme", REG_ROLE_CONSUMER, NULL, 0},
};
static const char *const shop_only[] = {"shop"};
static const struct reg_network networks[] = {
    {"host", NULL, "127.77.0.0/16", NULL, 0, NULL},
    {"shop-vpc", "shop", "10.0.0.0/30", shop_only, 1, NULL},
    {"shop-vpc2", "shop2", "10.0.0.0/30", shop_only, 1, NULL},
    {"v6", NULL, "fd00::/120", NULL, 0, NULL},
    {"p2p", NULL, "127.1.0.0/31", NULL, 0, NULL},
    {"one", NULL, "127.2.0.9/32", NULL, 0, NULL},
};
static const uint16_t lb1_ports[] = {8080, 8443};
static const uint16_t lb2_ports[] = {9000};
static const struct reg_load_balancer load_balancers[] = {
    {"lb1", lb1_ports, 2, false},
    {"lb2", lb2_ports, 1, true},
};
static const struct reg_config config = {
    .principals = principals,
    .n_principals = sizeof(principals) / sizeof(principals[0]),
    .networks = networks,
    .n_networks = sizeof(networks) / sizeof(networks[0]),
    .load_balancers = load_balancers,
    .n_load_balancers = 2,
};

static char dir[64];
static char path[128];
static struct reg *reg;
static char tok[REG_TOKEN_BUF];

/* The PostgreSQL database under test, or NULL for SQLite. */
static const char *pg(void)
{
  const char *conninfo = getenv("NLB_TEST_PG");

  return conninfo && *conninfo ? conninfo : NULL;
}

static int open_store(struct reg **out, const struct reg_config *cfg,
                      struct reg_error *err)
{
  char url[256];

  snprintf(url, sizeof(url), "%s:%s", pg() ? "postgresql" : "sqlite",
           pg() ? pg() : path);
  return reg_open(out, url, cfg, err);
}

/* Every case starts from an empty PostgreSQL schema. */
static void pg_reset(void)
{
  PGconn *conn = PQconnectdb(pg());
  PGresult *res;

  CU_ASSERT_EQUAL_FATAL(PQstatus(conn), CONNECTION_OK);
  res = PQexec(conn, "SET client_min_messages = warning;"
                     " DROP SCHEMA public CASCADE; CREATE SCHEMA public");
  CU_ASSERT_EQUAL(PQresultStatus(res), PGRES_COMMAND_OK);
  PQclear(res);
  PQfinish(conn);
}

static void open_fresh(void)
{
  struct reg_error err;

  snprintf(dir, sizeof(dir), "/tmp/nlb-registry-XXXXXX");
  CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
  snprintf(path, sizeof(path), "%s/registry.db", dir);
  if (pg())
    pg_reset();
  CU_ASSERT_EQUAL_FATAL(open_store(&reg, &config, &err), 0);
}

static void reopen(void)
{
  struct reg_error err;

  reg_close(reg);
  CU_ASSERT_EQUAL_FATAL(open_store(&reg, &config, &err), 0);
}

static void close_fresh(void)
{
  char file[160];

  reg_close(reg);
  reg = NULL;
  snprintf(file, sizeof(file), "%s-wal", path);
  unlink(file);
  snprintf(file, sizeof(file), "%s-shm", path);
  unlink(file);
  snprintf(file, sizeof(file), "%s.lock", path);
  unlink(file);
  unlink(path);
  rmdir(dir);
}

/* This node's data plane could not open ep: with one node, it fails. */
static int fail_ep(const char *ep, const char *reason)
{
  struct reg_placement_report rep = {ep, false, reason};

  return reg_placements_report(reg, &rep, 1);
}

/* Acts as node `name` from now on (a reload that renames the node), and
 * records its heartbeat. */
static void become_node(const char *name)
{
  struct reg_config c = config;

  c.node = name;
  CU_ASSERT_EQUAL_FATAL(reg_reload(reg, &c, NULL), 0);
  CU_ASSERT_EQUAL(reg_node_heartbeat(reg, true, 0), 0);
}

/* Creates a service owned by actor; returns its id in id. */
static int service(const struct reg_actor *actor, const char *name,
                   bool acceptance, const char *const *allowed, size_t n,
                   int64_t limit, char *id)
{
  struct reg_service_params p = {name, "lb1", acceptance, allowed,
                                 n,    limit, NULL};
  struct reg_service s;
  int r = reg_service_create(reg, actor, &p, &s, NULL);

  if (r == 0) {
    if (id)
      strcpy(id, s.id);
    reg_service_release(&s);
  }
  return r;
}

static int endpoint(const struct reg_actor *actor, const char *svc,
                    const char *network, const char *address, char *id,
                    char *addr_out)
{
  struct reg_endpoint_params p = {svc, network, address, NULL, 0, false};
  struct reg_endpoint e;
  int r = reg_endpoint_create(reg, actor, &p, &e, NULL);

  if (r == 0) {
    if (id)
      strcpy(id, e.id);
    if (addr_out)
      strcpy(addr_out, e.address);
    reg_endpoint_release(&e);
  }
  return r;
}

static int state_of(const char *id)
{
  struct reg_endpoint e;
  int r = reg_endpoint_get(reg, id, &e);

  if (r < 0)
    return r;
  reg_endpoint_release(&e);
  return (int)e.state;
}

/* Accepts or rejects one endpoint: the item's code, or the call's. */
static int decide1(const struct reg_actor *actor, const char *svc,
                   const char *ep, bool accept)
{
  struct reg_item_result res;
  const char *ids[] = {ep};
  int r = accept ? reg_connections_accept(reg, actor, svc, ids, 1, &res, NULL)
                 : reg_connections_reject(reg, actor, svc, ids, 1, &res, NULL);

  return r < 0 ? r : res.code;
}

static bool is_id(const char *id, const char *prefix)
{
  size_t len = strlen(prefix);

  if (strncmp(id, prefix, len) != 0 || strlen(id) != len + REG_ID_HEX)
    return false;
  for (const char *p = id + len; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return false;
  return true;
}

static const char *const ALL[] = {"*"};
static const char *const SHOP_LIST[] = {"shop"};

/* ---- tests -------------------------------------------------------------- */

static void test_registry_schema_version(void)
{
  sqlite3 *db;
  sqlite3_stmt *stmt;
  struct reg_error err;

  if (pg()) {
    open_fresh();
    CU_ASSERT_EQUAL(reg_schema_version(reg), 4);
    CU_ASSERT_STRING_EQUAL(reg_store_name(reg), "postgresql");
    close_fresh();
    return;
  }
  open_fresh();
  CU_ASSERT_EQUAL(reg_schema_version(reg), 6);
  CU_ASSERT_STRING_EQUAL(reg_store_name(reg), "sqlite");
  CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
  CU_ASSERT_EQUAL(
      sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL),
      SQLITE_OK);
  CU_ASSERT_EQUAL(sqlite3_step(stmt), SQLITE_ROW);
  CU_ASSERT_EQUAL(sqlite3_column_int(stmt, 0), 6);
  sqlite3_finalize(stmt);
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, NULL);
  CU_ASSERT_EQUAL(sqlite3_step(stmt), SQLITE_ROW);
  CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(stmt, 0), "wal");
  sqlite3_finalize(stmt);
  /* A second registry on the same file is refused, naming the holder. */
  {
    struct reg *second = NULL;
    char want[64], url[160];

    snprintf(url, sizeof(url), "sqlite:%s", path);
    CU_ASSERT_EQUAL(reg_open(&second, url, &config, &err), -EBUSY);
    snprintf(want, sizeof(want), "in use by another nlbd (pid %ld)",
             (long)getpid());
    CU_ASSERT(strstr(err.message, want) != NULL);
    CU_ASSERT(strstr(err.message, path) != NULL);
  }
  /* A version 1 store (no events_time index) is migrated when opened. */
  reg_close(reg);
  CU_ASSERT_EQUAL(sqlite3_exec(db,
                               "DROP INDEX events_time;"
                               "PRAGMA user_version = 1",
                               NULL, NULL, NULL),
                  SQLITE_OK);
  /* The tables and indexes of versions 2 to 6 were made by the steps
   * above version 1. */
  CU_ASSERT_EQUAL(sqlite3_exec(db,
                               "DROP INDEX services_name_nocase;"
                               "DROP INDEX services_private_dns_name;"
                               "ALTER TABLE services DROP COLUMN"
                               "  private_dns_name;"
                               "ALTER TABLE endpoints DROP COLUMN private_dns;"
                               "DROP TABLE tokens; DROP TABLE principals;"
                               "DROP TABLE networks;"
                               "DROP INDEX endpoints_final;"
                               "ALTER TABLE events DROP COLUMN subject;"
                               "ALTER TABLE events DROP COLUMN token_id;"
                               "DROP TABLE placements; DROP TABLE targets;"
                               "DROP TABLE nodes; DROP TABLE network_hints;"
                               "DROP INDEX events_owner;"
                               "DROP INDEX events_consumer;"
                               "ALTER TABLE events DROP COLUMN target_group;"
                               "ALTER TABLE events DROP COLUMN target;"
                               "ALTER TABLE events DROP COLUMN node;"
                               "DROP INDEX services_page;"
                               "DROP INDEX endpoints_page;"
                               "DROP INDEX endpoints_service_state;"
                               "DROP INDEX endpoints_consumer_state;"
                               "DROP INDEX endpoints_service;"
                               "DROP INDEX endpoints_consumer;"
                               "DROP INDEX endpoints_state;"
                               "DROP INDEX services_owner;"
                               "CREATE INDEX services_owner"
                               "  ON services(owner, created_at);"
                               "CREATE INDEX endpoints_service"
                               "  ON endpoints(service_id, created_at);"
                               "CREATE INDEX endpoints_consumer"
                               "  ON endpoints(consumer, created_at);"
                               "CREATE INDEX endpoints_state"
                               "  ON endpoints(state, created_at);",
                               NULL, NULL, NULL),
                  SQLITE_OK);
  CU_ASSERT_EQUAL_FATAL(open_store(&reg, &config, NULL), 0);
  CU_ASSERT_EQUAL(reg_schema_version(reg), 6);
  sqlite3_prepare_v2(db,
                     "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                     " AND name IN ('events_time', 'endpoints_consumer_state')",
                     -1, &stmt, NULL);
  CU_ASSERT_EQUAL(sqlite3_step(stmt), SQLITE_ROW);
  CU_ASSERT_EQUAL(sqlite3_column_int(stmt, 0), 2);
  sqlite3_finalize(stmt);
  /* A database from a newer nlb is refused. */
  sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL);
  sqlite3_close(db);
  reg_close(reg);
  CU_ASSERT_EQUAL(open_store(&reg, &config, NULL), -EIO);
  reg = NULL;
  close_fresh();
}

static void test_registry_service_create(void)
{
  struct reg_service_params p = {"payments", "lb1", true, SHOP_LIST,
                                 1,          3,     NULL};
  const char *const bad_principal[] = {"no body"};
  const char *const unknown_principal[] = {"nobody"};
  struct reg_service s;
  struct reg_error err;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(reg_service_create(reg, &PAY, &p, &s, &err), 0);
  CU_ASSERT(is_id(s.id, "svc-"));
  CU_ASSERT_STRING_EQUAL(s.name, "payments");
  CU_ASSERT_STRING_EQUAL(s.owner, "pay");
  CU_ASSERT_STRING_EQUAL(s.load_balancer, "lb1");
  CU_ASSERT_STRING_EQUAL(s.state, "available");
  CU_ASSERT_EQUAL(s.n_ports, 2);
  CU_ASSERT(s.n_ports == 2 && s.ports[0] == 8080 && s.ports[1] == 8443);
  CU_ASSERT(s.acceptance_required);
  CU_ASSERT(s.n_allowed_principals == 1 &&
            strcmp(s.allowed_principals[0], "shop") == 0);
  CU_ASSERT_EQUAL(s.connection_limit, 3);
  CU_ASSERT(llabs(s.created_at - (int64_t)time(NULL) * 1000) < 5000);
  reg_service_release(&s);

  CU_ASSERT_EQUAL(reg_service_create(reg, &PAY2, &p, NULL, &err), -EEXIST);
  p.name = "bad name";
  CU_ASSERT_EQUAL(reg_service_create(reg, &PAY, &p, NULL, &err), -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "name");
  CU_ASSERT(err.message[0] != '\0');
  p.name = "svc-0123";
  CU_ASSERT_EQUAL(reg_service_create(reg, &PAY, &p, NULL, &err), -EINVAL);
  p.name = "other";
  p.load_balancer = "nolb";
  CU_ASSERT_EQUAL(reg_service_create(reg, &PAY, &p, NULL, &err), -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "load_balancer");
  p.load_balancer = "lb1";
  p.connection_limit = -1;
  CU_ASSERT_EQUAL(reg_service_create(reg, &PAY, &p, NULL, &err), -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "connection_limit");
  p.connection_limit = 0;
  p.allowed_principals = bad_principal;
  CU_ASSERT_EQUAL(reg_service_create(reg, &PAY, &p, NULL, &err), -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "allowed_principals");
  /* A name nobody holds (yet) is accepted: whether a principal exists is
   * not a provider's to learn. */
  p.allowed_principals = unknown_principal;
  CU_ASSERT_EQUAL(reg_service_create(reg, &PAY, &p, &s, &err), 0);
  CU_ASSERT(s.n_allowed_principals == 1 &&
            strcmp(s.allowed_principals[0], "nobody") == 0);
  reg_service_release(&s);
  p.name = "other2";
  p.allowed_principals = ALL;
  CU_ASSERT_EQUAL(reg_service_create(reg, &SHOP, &p, NULL, &err), -EACCES);
  CU_ASSERT_EQUAL(err.code, -EACCES);
  /* The operator may create services too (it owns them). */
  CU_ASSERT_EQUAL(reg_service_create(reg, &OPS, &p, &s, &err), 0);
  CU_ASSERT_STRING_EQUAL(s.owner, "ops");
  reg_service_release(&s);
  close_fresh();
}

static void test_registry_service_visibility(void)
{
  struct reg_service_changes ch = {true, false, false, 0, false, NULL};
  struct reg_service s;
  struct reg_service *v;
  char svc[REG_ID_BUF];
  char **pr;
  size_t n;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  CU_ASSERT_EQUAL(service(&PAY2, "b", true, ALL, 1, 0, NULL), 0);
  /* Another provider learns nothing: 404, never 403. */
  CU_ASSERT_EQUAL(reg_service_describe(reg, &PAY2, svc, &s, NULL), -ENOENT);
  CU_ASSERT_EQUAL(reg_service_modify(reg, &PAY2, svc, &ch, NULL, NULL),
                  -ENOENT);
  CU_ASSERT_EQUAL(reg_service_delete(reg, &PAY2, svc, NULL), -ENOENT);
  CU_ASSERT_EQUAL(reg_permissions_get(reg, &PAY2, svc, &pr, &n, NULL), -ENOENT);
  CU_ASSERT_EQUAL(reg_connections_list(reg, &PAY2, svc, NULL, NULL,
                                       (struct reg_endpoint **)&v, &n, tok,
                                       NULL),
                  -ENOENT);
  CU_ASSERT_EQUAL(
      reg_service_describe(reg, &PAY, "svc-00000000000000000", &s, NULL),
      -ENOENT);
  /* Consumers may not use provider routes at all. */
  CU_ASSERT_EQUAL(reg_service_describe(reg, &SHOP, svc, &s, NULL), -EACCES);
  CU_ASSERT_EQUAL(reg_service_list(reg, &SHOP, NULL, &v, &n, tok, NULL),
                  -EACCES);
  CU_ASSERT_EQUAL(service(&SHOP, "c", true, ALL, 1, 0, NULL), -EACCES);

  CU_ASSERT_EQUAL(reg_service_list(reg, &PAY, NULL, &v, &n, tok, NULL), 0);
  CU_ASSERT(n == 1 && strcmp(v[0].name, "a") == 0);
  reg_services_free(v, n);
  CU_ASSERT_EQUAL(reg_service_list(reg, &OPS, NULL, &v, &n, tok, NULL), 0);
  CU_ASSERT_EQUAL(n, 2);
  reg_services_free(v, n);
  /* The operator acts on every service. */
  CU_ASSERT_EQUAL(reg_service_describe(reg, &OPS, svc, &s, NULL), 0);
  reg_service_release(&s);
  CU_ASSERT_EQUAL(reg_service_modify(reg, &OPS, svc, &ch, &s, NULL), 0);
  CU_ASSERT_FALSE(s.acceptance_required);
  reg_service_release(&s);
  close_fresh();
}

static void test_registry_service_modify(void)
{
  struct reg_service_changes ch = {true, false, true, 7, false, NULL};
  struct reg_service s;
  struct reg_error err;
  char svc[REG_ID_BUF];
  char ep[REG_ID_BUF];

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep, NULL), 0);
  CU_ASSERT_EQUAL(state_of(ep), REG_EP_PENDING_ACCEPTANCE);
  CU_ASSERT_EQUAL(reg_service_modify(reg, &PAY, svc, &ch, &s, &err), 0);
  CU_ASSERT_FALSE(s.acceptance_required);
  CU_ASSERT_EQUAL(s.connection_limit, 7);
  reg_service_release(&s);
  /* Turning acceptance off does not accept what is pending. */
  CU_ASSERT_EQUAL(state_of(ep), REG_EP_PENDING_ACCEPTANCE);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep, NULL), 0);
  CU_ASSERT_EQUAL(state_of(ep), REG_EP_AVAILABLE);
  ch.connection_limit = -5;
  CU_ASSERT_EQUAL(reg_service_modify(reg, &PAY, svc, &ch, NULL, &err), -EINVAL);
  reopen();
  CU_ASSERT_EQUAL(reg_service_describe(reg, &PAY, svc, &s, &err), 0);
  CU_ASSERT_EQUAL(s.connection_limit, 7);
  CU_ASSERT_FALSE(s.acceptance_required);
  reg_service_release(&s);
  close_fresh();
}

static void test_registry_permissions(void)
{
  const char *const add[] = {"shop", "acme", "shop"};
  const char *const rm[] = {"acme", "absent"};
  const char *const bad[] = {"no such!"};
  struct reg_service *v;
  char svc[REG_ID_BUF];
  char **pr;
  size_t n;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, NULL, 0, 0, svc), 0);
  CU_ASSERT_EQUAL(reg_permissions_get(reg, &PAY, svc, &pr, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 0);
  /* Nobody allowed: no consumer sees it. */
  CU_ASSERT_EQUAL(reg_available_services(reg, &SHOP, NULL, &v, &n, tok, NULL),
                  0);
  CU_ASSERT_EQUAL(n, 0);
  reg_services_free(v, n);
  CU_ASSERT_EQUAL(reg_permissions_modify(reg, &PAY, svc, add, 3, NULL, 0, false,
                                         &pr, &n, NULL),
                  0);
  CU_ASSERT(n == 2 && strcmp(pr[0], "acme") == 0 && strcmp(pr[1], "shop") == 0);
  reg_strings_free(pr, n);
  CU_ASSERT_EQUAL(reg_permissions_modify(reg, &PAY, svc, NULL, 0, rm, 2, false,
                                         &pr, &n, NULL),
                  0);
  CU_ASSERT(n == 1 && strcmp(pr[0], "shop") == 0);
  reg_strings_free(pr, n);
  CU_ASSERT_EQUAL(reg_permissions_modify(reg, &PAY, svc, bad, 1, NULL, 0, false,
                                         NULL, NULL, NULL),
                  -EINVAL);
  CU_ASSERT_EQUAL(reg_permissions_modify(reg, &SHOP, svc, add, 1, NULL, 0,
                                         false, NULL, NULL, NULL),
                  -EACCES);
  CU_ASSERT_EQUAL(reg_available_services(reg, &SHOP, NULL, &v, &n, tok, NULL),
                  0);
  CU_ASSERT(n == 1 && strcmp(v[0].id, svc) == 0 && v[0].n_ports == 2);
  reg_services_free(v, n);
  CU_ASSERT_EQUAL(reg_available_services(reg, &ACME, NULL, &v, &n, tok, NULL),
                  0);
  CU_ASSERT_EQUAL(n, 0);
  reg_services_free(v, n);
  CU_ASSERT_EQUAL(reg_permissions_modify(reg, &PAY, svc, ALL, 1, NULL, 0, false,
                                         NULL, NULL, NULL),
                  0);
  CU_ASSERT_EQUAL(reg_available_services(reg, &ACME, NULL, &v, &n, tok, NULL),
                  0);
  CU_ASSERT_EQUAL(n, 1);
  reg_services_free(v, n);
  CU_ASSERT_EQUAL(reg_available_services(reg, &PAY, NULL, &v, &n, tok, NULL),
                  -EACCES);
  close_fresh();
}

static void test_registry_endpoint_create_checks(void)
{
  struct reg_endpoint_params p = {"a", "host", NULL, NULL, 0, false};
  const char *const sources[] = {"10.1.0.0/16", "192.168.1.7", "fd00::/8"};
  const char *const bad_sources[] = {"10.1.0.1/16"};
  struct reg_endpoint e;
  struct reg_error err;
  char svc[REG_ID_BUF];

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, SHOP_LIST, 1, 0, svc), 0);
  CU_ASSERT_EQUAL(service(&PAY, "b", true, NULL, 0, 0, NULL), 0);
  /* Not allowed on the service: it does not exist for acme. */
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &ACME, &p, &e, &err), -ENOENT);
  p.service = "b";
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &p, &e, &err), -ENOENT);
  p.service = "nope";
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &p, &e, &err), -ENOENT);
  p.service = "a";
  p.network = "nonet";
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &p, &e, &err), -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "network");
  /* A network that does not allow the consumer. */
  CU_ASSERT_EQUAL(reg_permissions_modify(reg, &PAY, svc, ALL, 1, NULL, 0, false,
                                         NULL, NULL, NULL),
                  0);
  p.network = "shop-vpc";
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &ACME, &p, &e, &err), -EACCES);
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &PAY, &p, &e, &err), -EACCES);
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &OPS, &p, &e, &err), -EACCES);
  p.allowed_sources = bad_sources;
  p.n_allowed_sources = 1;
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &p, &e, &err), -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "allowed_sources");
  p.allowed_sources = sources;
  p.n_allowed_sources = 3;
  CU_ASSERT_EQUAL_FATAL(reg_endpoint_create(reg, &SHOP, &p, &e, &err), 0);
  CU_ASSERT(is_id(e.id, "ep-"));
  CU_ASSERT_STRING_EQUAL(e.service_id, svc);
  CU_ASSERT_STRING_EQUAL(e.service, "a");
  CU_ASSERT_STRING_EQUAL(e.consumer, "shop");
  CU_ASSERT_STRING_EQUAL(e.network, "shop-vpc");
  CU_ASSERT_STRING_EQUAL(e.netns, "shop");
  CU_ASSERT_STRING_EQUAL(e.address, "10.0.0.1");
  CU_ASSERT(e.n_ports == 2 && e.ports[0] == 8080);
  CU_ASSERT_EQUAL(e.state, REG_EP_PENDING_ACCEPTANCE);
  CU_ASSERT_EQUAL_FATAL(e.n_allowed_sources, 3);
  CU_ASSERT_STRING_EQUAL(e.allowed_sources[1], "192.168.1.7/32");
  CU_ASSERT_STRING_EQUAL(e.allowed_sources[2], "fd00::/8");
  CU_ASSERT_EQUAL(e.created_at, e.updated_at);
  reg_endpoint_release(&e);
  close_fresh();
}

static void test_registry_transitions_legal(void)
{
  char svc[REG_ID_BUF];
  char auto_svc[REG_ID_BUF];
  char ep[8][REG_ID_BUF];
  struct reg_endpoint e;
  size_t n;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "auto", false, ALL, 1, 0, auto_svc), 0);
  for (int i = 0; i < 8; i++)
    CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep[i], NULL), 0);
  for (int i = 0; i < 8; i++)
    CU_ASSERT_EQUAL(state_of(ep[i]), REG_EP_PENDING_ACCEPTANCE);

  /* pendingAcceptance -> available -> rejected -> deleted */
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[0], true), 0);
  CU_ASSERT_EQUAL(state_of(ep[0]), REG_EP_AVAILABLE);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[0], false), 0);
  CU_ASSERT_EQUAL(state_of(ep[0]), REG_EP_REJECTED);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[0], &e, NULL), 0);
  CU_ASSERT_EQUAL(e.state, REG_EP_DELETED);
  reg_endpoint_release(&e);
  /* pendingAcceptance -> rejected */
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[1], false), 0);
  CU_ASSERT_EQUAL(state_of(ep[1]), REG_EP_REJECTED);
  /* available -> deleted */
  CU_ASSERT_EQUAL(decide1(&OPS, svc, ep[2], true), 0);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[2], NULL, NULL), 0);
  CU_ASSERT_EQUAL(state_of(ep[2]), REG_EP_DELETED);
  /* pendingAcceptance -> deleted */
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &OPS, ep[3], NULL, NULL), 0);
  CU_ASSERT_EQUAL(state_of(ep[3]), REG_EP_DELETED);
  /* available -> failed (no node could open it) -> deleted */
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[4], true), 0);
  CU_ASSERT_EQUAL(fail_ep(ep[4], "netns gone"), 0);
  CU_ASSERT_EQUAL(reg_endpoint_get(reg, ep[4], &e), 0);
  CU_ASSERT_EQUAL(e.state, REG_EP_FAILED);
  CU_ASSERT_STRING_EQUAL(e.reason, "netns gone");
  reg_endpoint_release(&e);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[4], NULL, NULL), 0);
  CU_ASSERT_EQUAL(state_of(ep[4]), REG_EP_DELETED);
  /* available -> failed */
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[5], true), 0);
  CU_ASSERT_EQUAL(fail_ep(ep[5], "EADDRNOTAVAIL"), 0);
  CU_ASSERT_EQUAL(state_of(ep[5]), REG_EP_FAILED);
  /* pendingAcceptance -> expired -> deleted */
  CU_ASSERT_EQUAL(reg_expire_pending(reg,
                                     (int64_t)time(NULL) * 1000 +
                                         REG_DEFAULT_PENDING_EXPIRY_MS + 5000,
                                     &n),
                  0);
  CU_ASSERT_EQUAL(n, 2); /* ep[6], ep[7] */
  CU_ASSERT_EQUAL(state_of(ep[6]), REG_EP_EXPIRED);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[6], NULL, NULL), 0);
  CU_ASSERT_EQUAL(state_of(ep[6]), REG_EP_DELETED);
  /* (new) -> available when acceptance is not required: one connect
   * event whose state is available. */
  CU_ASSERT_EQUAL(endpoint(&SHOP, "auto", "host", NULL, ep[0], NULL), 0);
  CU_ASSERT_EQUAL(state_of(ep[0]), REG_EP_AVAILABLE);
  {
    struct reg_event *ev;
    uint64_t last;

    CU_ASSERT_EQUAL(reg_last_seq(reg, &last), 0);
    CU_ASSERT_EQUAL(reg_events_after(reg, NULL, last - 1, 10, &ev, &n, NULL),
                    0);
    CU_ASSERT(n == 1 && ev[0].type == REG_EVENT_CONNECT &&
              ev[0].state == REG_EP_AVAILABLE &&
              strcmp(ev[0].endpoint_id, ep[0]) == 0);
    free(ev);
  }
  close_fresh();
}

static void test_registry_transitions_illegal(void)
{
  char svc[REG_ID_BUF];
  char pending[REG_ID_BUF], available[REG_ID_BUF], rejected[REG_ID_BUF];
  char deleted[REG_ID_BUF], expired[REG_ID_BUF], failed[REG_ID_BUF];
  struct reg_error err;
  size_t n;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, expired, NULL), 0);
  CU_ASSERT_EQUAL(reg_expire_pending(reg,
                                     (int64_t)time(NULL) * 1000 +
                                         REG_DEFAULT_PENDING_EXPIRY_MS + 5000,
                                     &n),
                  0);
  CU_ASSERT_EQUAL(n, 1);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, pending, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, available, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, rejected, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, deleted, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, failed, NULL), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, available, true), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, rejected, false), 0);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, deleted, NULL, NULL), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, failed, true), 0);
  CU_ASSERT_EQUAL(fail_ep(failed, "x"), 0);

  /* accept: only from pendingAcceptance */
  CU_ASSERT_EQUAL(decide1(&PAY, svc, available, true), -EBUSY);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, rejected, true), -EBUSY);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, deleted, true), -EBUSY);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, expired, true), -EBUSY);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, failed, true), -EBUSY);
  /* reject: only from pendingAcceptance or available */
  CU_ASSERT_EQUAL(decide1(&PAY, svc, rejected, false), -EBUSY);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, deleted, false), -EBUSY);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, expired, false), -EBUSY);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, failed, false), -EBUSY);
  /* delete: from anything but deleted */
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, deleted, NULL, &err), -EBUSY);
  CU_ASSERT_EQUAL(err.code, -EBUSY);
  /* fail: only from available; reports about others change nothing */
  CU_ASSERT_EQUAL(fail_ep(rejected, "x"), 0);
  CU_ASSERT_EQUAL(fail_ep(deleted, "x"), 0);
  CU_ASSERT_EQUAL(fail_ep(pending, "x"), 0);
  CU_ASSERT_EQUAL(fail_ep("ep-nope", "x"), 0);
  CU_ASSERT_EQUAL(state_of(rejected), REG_EP_REJECTED);
  CU_ASSERT_EQUAL(state_of(deleted), REG_EP_DELETED);
  CU_ASSERT_EQUAL(state_of(pending), REG_EP_PENDING_ACCEPTANCE);
  /* expire: only pendingAcceptance, and never the others */
  CU_ASSERT_EQUAL(reg_expire_pending(reg,
                                     (int64_t)time(NULL) * 1000 +
                                         REG_DEFAULT_PENDING_EXPIRY_MS + 5000,
                                     &n),
                  0);
  CU_ASSERT_EQUAL(n, 1); /* pending only */
  CU_ASSERT_EQUAL(state_of(pending), REG_EP_EXPIRED);
  CU_ASSERT_EQUAL(state_of(available), REG_EP_AVAILABLE);
  CU_ASSERT_EQUAL(state_of(rejected), REG_EP_REJECTED);
  CU_ASSERT_EQUAL(state_of(deleted), REG_EP_DELETED);
  CU_ASSERT_EQUAL(state_of(failed), REG_EP_FAILED);
  close_fresh();
}

static void test_registry_role_checks(void)
{
  struct reg_item_result res[3];
  const char *ids[3];
  struct reg_endpoint e;
  struct reg_endpoint *v;
  char svc[REG_ID_BUF], svc2[REG_ID_BUF];
  char ep[REG_ID_BUF], ep2[REG_ID_BUF];
  size_t n;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  CU_ASSERT_EQUAL_FATAL(service(&PAY2, "b", true, ALL, 1, 0, svc2), 0);
  CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(endpoint(&ACME, "b", "host", NULL, ep2, NULL), 0);
  /* A consumer cannot accept or reject, not even its own. */
  CU_ASSERT_EQUAL(decide1(&SHOP, svc, ep, true), -EACCES);
  CU_ASSERT_EQUAL(decide1(&SHOP, svc, ep, false), -EACCES);
  /* A provider cannot touch another provider's service. */
  CU_ASSERT_EQUAL(decide1(&PAY2, svc, ep, true), -ENOENT);
  /* An endpoint of another service is absent from this one. */
  ids[0] = ep2;
  ids[1] = ep;
  ids[2] = "ep-00000000000000000";
  CU_ASSERT_EQUAL(reg_connections_accept(reg, &PAY, svc, ids, 3, res, NULL), 0);
  CU_ASSERT_EQUAL(res[0].code, -ENOENT);
  CU_ASSERT_EQUAL(res[1].code, 0);
  CU_ASSERT_EQUAL(res[2].code, -ENOENT);
  CU_ASSERT_EQUAL(state_of(ep2), REG_EP_PENDING_ACCEPTANCE);
  CU_ASSERT_EQUAL(state_of(ep), REG_EP_AVAILABLE);
  /* Endpoints are seen by their consumer and the operator only. */
  CU_ASSERT_EQUAL(reg_endpoint_describe(reg, &ACME, ep, &e, NULL), -ENOENT);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &ACME, ep, NULL, NULL), -ENOENT);
  CU_ASSERT_EQUAL(reg_endpoint_modify(reg, &ACME, ep, NULL, 0, NULL, NULL),
                  -ENOENT);
  CU_ASSERT_EQUAL(reg_endpoint_describe(reg, &PAY, ep, &e, NULL), -EACCES);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &PAY, ep, NULL, NULL), -EACCES);
  CU_ASSERT_EQUAL(reg_endpoint_modify(reg, &PAY, ep, NULL, 0, NULL, NULL),
                  -EACCES);
  CU_ASSERT_EQUAL(reg_endpoint_list(reg, &PAY, NULL, NULL, &v, &n, tok, NULL),
                  -EACCES);
  CU_ASSERT_EQUAL(reg_endpoint_describe(reg, &SHOP, ep, &e, NULL), 0);
  reg_endpoint_release(&e);
  CU_ASSERT_EQUAL(reg_endpoint_describe(reg, &OPS, ep, &e, NULL), 0);
  reg_endpoint_release(&e);
  CU_ASSERT_EQUAL(reg_endpoint_list(reg, &SHOP, NULL, NULL, &v, &n, tok, NULL),
                  0);
  CU_ASSERT(n == 1 && strcmp(v[0].id, ep) == 0);
  reg_endpoints_free(v, n);
  CU_ASSERT_EQUAL(reg_endpoint_list(reg, &OPS, NULL, NULL, &v, &n, tok, NULL),
                  0);
  CU_ASSERT_EQUAL(n, 2);
  reg_endpoints_free(v, n);
  /* Connections of a service: its owner and the operator. */
  CU_ASSERT_EQUAL(
      reg_connections_list(reg, &PAY, svc, NULL, NULL, &v, &n, tok, NULL), 0);
  CU_ASSERT(n == 1 && strcmp(v[0].id, ep) == 0 &&
            strcmp(v[0].consumer, "shop") == 0);
  reg_endpoints_free(v, n);
  CU_ASSERT_EQUAL(
      reg_connections_list(reg, &SHOP, svc, NULL, NULL, &v, &n, tok, NULL),
      -EACCES);
  close_fresh();
}

static void test_registry_connections_by_state(void)
{
  enum reg_endpoint_state st;
  struct reg_endpoint *v;
  char svc[REG_ID_BUF];
  char ep[4][REG_ID_BUF];
  size_t n;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  for (int i = 0; i < 4; i++)
    CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep[i], NULL), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[1], true), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[2], true), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[3], false), 0);
  st = REG_EP_AVAILABLE;
  CU_ASSERT_EQUAL(
      reg_connections_list(reg, &PAY, svc, &st, NULL, &v, &n, tok, NULL), 0);
  /* Oldest first; two made in the same millisecond go by ID. */
  CU_ASSERT_FATAL(n == 2);
  CU_ASSERT((strcmp(v[0].id, ep[1]) == 0 && strcmp(v[1].id, ep[2]) == 0) ||
            (strcmp(v[0].id, ep[2]) == 0 && strcmp(v[1].id, ep[1]) == 0 &&
             v[0].created_at == v[1].created_at));
  reg_endpoints_free(v, n);
  st = REG_EP_PENDING_ACCEPTANCE;
  CU_ASSERT_EQUAL(
      reg_connections_list(reg, &PAY, svc, &st, NULL, &v, &n, tok, NULL), 0);
  CU_ASSERT(n == 1 && strcmp(v[0].id, ep[0]) == 0);
  reg_endpoints_free(v, n);
  CU_ASSERT_EQUAL(
      reg_connections_list(reg, &PAY, svc, NULL, NULL, &v, &n, tok, NULL), 0);
  CU_ASSERT_EQUAL(n, 4);
  reg_endpoints_free(v, n);
  st = REG_EP_REJECTED;
  CU_ASSERT_EQUAL(reg_endpoint_list(reg, &SHOP, &st, NULL, &v, &n, tok, NULL),
                  0);
  CU_ASSERT(n == 1 && strcmp(v[0].id, ep[3]) == 0 &&
            strcmp(v[0].reason, "rejected by provider") == 0);
  reg_endpoints_free(v, n);
  close_fresh();
}

static void test_registry_service_delete(void)
{
  struct reg_service s;
  struct reg_error err;
  char svc[REG_ID_BUF];
  char ep[2][REG_ID_BUF];

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep[0], NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep[1], NULL), 0);
  CU_ASSERT_EQUAL(reg_service_delete(reg, &PAY, svc, &err), -EBUSY);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[0], true), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[1], false), 0);
  /* still one available */
  CU_ASSERT_EQUAL(reg_service_delete(reg, &PAY, svc, &err), -EBUSY);
  CU_ASSERT_EQUAL(reg_service_delete(reg, &SHOP, svc, &err), -EACCES);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[0], false), 0);
  CU_ASSERT_EQUAL(reg_service_delete(reg, &PAY, svc, &err), 0);
  CU_ASSERT_EQUAL(reg_service_describe(reg, &PAY, svc, &s, &err), -ENOENT);
  CU_ASSERT_EQUAL(state_of(ep[0]), -ENOENT);
  CU_ASSERT_EQUAL(reg_service_delete(reg, &PAY, svc, &err), -ENOENT);
  /* The name is free again. */
  CU_ASSERT_EQUAL(service(&PAY2, "a", true, ALL, 1, 0, NULL), 0);
  close_fresh();
}

static void test_registry_connection_limit(void)
{
  struct reg_error err;
  char svc[REG_ID_BUF];
  char ep[3][REG_ID_BUF];
  struct reg_endpoint_params p = {"a", "host", NULL, NULL, 0, false};

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 2, svc), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep[0], NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep[1], NULL), 0);
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &p, NULL, &err), -EDQUOT);
  CU_ASSERT_EQUAL(err.code, -EDQUOT);
  /* Per consumer: acme has its own quota. */
  CU_ASSERT_EQUAL(endpoint(&ACME, "a", "host", NULL, NULL, NULL), 0);
  /* Available still counts; rejected and deleted do not. */
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[0], true), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, NULL), -EDQUOT);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[1], false), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep[2], NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, NULL), -EDQUOT);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[2], NULL, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, NULL), 0);
  /* 0 = no limit */
  CU_ASSERT_EQUAL(service(&PAY, "b", true, ALL, 1, 0, NULL), 0);
  for (int i = 0; i < 20; i++)
    CU_ASSERT_EQUAL(endpoint(&SHOP, "b", "host", NULL, NULL, NULL), 0);
  close_fresh();
}

static void test_registry_reconcile(void)
{
  const char *const rm[] = {"shop"};
  const char *const add[] = {"acme"};
  struct reg_endpoint e;
  struct reg_event *ev;
  char svc[REG_ID_BUF];
  char ep[3][REG_ID_BUF];
  char acme_ep[REG_ID_BUF];
  uint64_t seq;
  size_t n;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, SHOP_LIST, 1, 0, svc), 0);
  CU_ASSERT_EQUAL(reg_permissions_modify(reg, &PAY, svc, add, 1, NULL, 0, false,
                                         NULL, NULL, NULL),
                  0);
  for (int i = 0; i < 3; i++)
    CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep[i], NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&ACME, "a", "host", NULL, acme_ep, NULL), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[0], true), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[2], false), 0);
  /* Without reconcile: existing endpoints stay, new ones are refused. */
  CU_ASSERT_EQUAL(reg_permissions_modify(reg, &PAY, svc, NULL, 0, rm, 1, false,
                                         NULL, NULL, NULL),
                  0);
  CU_ASSERT_EQUAL(state_of(ep[0]), REG_EP_AVAILABLE);
  CU_ASSERT_EQUAL(state_of(ep[1]), REG_EP_PENDING_ACCEPTANCE);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, NULL), -ENOENT);
  /* With reconcile: live endpoints of shop are rejected; acme's stay. */
  reg_last_seq(reg, &seq);
  CU_ASSERT_EQUAL(reg_permissions_modify(reg, &PAY, svc, NULL, 0, rm, 1, true,
                                         NULL, NULL, NULL),
                  0);
  CU_ASSERT_EQUAL(state_of(ep[0]), REG_EP_REJECTED);
  CU_ASSERT_EQUAL(state_of(ep[1]), REG_EP_REJECTED);
  CU_ASSERT_EQUAL(state_of(ep[2]), REG_EP_REJECTED);
  CU_ASSERT_EQUAL(state_of(acme_ep), REG_EP_PENDING_ACCEPTANCE);
  CU_ASSERT_EQUAL(reg_endpoint_get(reg, ep[0], &e), 0);
  CU_ASSERT_STRING_EQUAL(e.reason, "permission removed");
  reg_endpoint_release(&e);
  CU_ASSERT_EQUAL(reg_events_after(reg, NULL, seq, 100, &ev, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 2);
  for (size_t i = 0; i < n; i++) {
    CU_ASSERT_EQUAL(ev[i].type, REG_EVENT_REJECT);
    CU_ASSERT_STRING_EQUAL(ev[i].principal, "pay");
    CU_ASSERT_EQUAL(ev[i].state, REG_EP_REJECTED);
  }
  free(ev);
  /* "*" keeps everyone allowed: reconcile rejects nothing. */
  CU_ASSERT_EQUAL(reg_permissions_modify(reg, &PAY, svc, ALL, 1, add, 1, true,
                                         NULL, NULL, NULL),
                  0);
  CU_ASSERT_EQUAL(state_of(acme_ep), REG_EP_PENDING_ACCEPTANCE);
  close_fresh();
}

static void test_registry_address_allocation(void)
{
  struct reg_error err;
  struct reg_endpoint_params p = {"a", "host", "127.77.0.0", NULL, 0, NULL};
  char addr[REG_ADDR_BUF];
  char ep[REG_ID_BUF];

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", false, ALL, 1, 0, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "127.77.0.1"); /* network address skipped */
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", "127.77.0.3", NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "127.77.0.3");
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "127.77.0.2");
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "127.77.0.4"); /* .3 taken */
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &p, NULL, &err), -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "address");
  p.address = "127.77.255.255";
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &p, NULL, &err), -EINVAL);
  p.address = "127.78.0.1";
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &p, NULL, &err), -EINVAL);
  p.address = "banana";
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &p, NULL, &err), -EINVAL);
  p.address = "127.77.0.3";
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &p, NULL, &err), -EADDRINUSE);
  CU_ASSERT_STRING_EQUAL(err.field, "address");
  /* A deleted endpoint frees its address. */
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep, NULL, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "127.77.0.1");
  close_fresh();
}

static void test_registry_address_exhaustion(void)
{
  struct reg_error err;
  struct reg_endpoint_params p = {"a", "shop-vpc", NULL, NULL, 0, false};
  char addr[REG_ADDR_BUF];
  char ep[REG_ID_BUF];
  char svc[REG_ID_BUF];

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  /* 10.0.0.0/30: .1 and .2 usable; .0 network, .3 broadcast */
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "shop-vpc", NULL, ep, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "10.0.0.1");
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "shop-vpc", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "10.0.0.2");
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &p, NULL, &err), -ENOSPC);
  CU_ASSERT_EQUAL(err.code, -ENOSPC);
  p.address = "10.0.0.3";
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &p, NULL, &err), -EINVAL);
  /* A rejected endpoint frees its address too. */
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep, false), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "shop-vpc", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "10.0.0.1");
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "shop-vpc", NULL, NULL, NULL), -ENOSPC);
  /* /31: both addresses; /32: the one. */
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "p2p", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "127.1.0.0");
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "p2p", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "127.1.0.1");
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "p2p", NULL, NULL, NULL), -ENOSPC);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "one", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "127.2.0.9");
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "one", NULL, NULL, NULL), -ENOSPC);
  close_fresh();
}

static void test_registry_address_ipv6(void)
{
  char addr[REG_ADDR_BUF];

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "v6", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "fd00::1");
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "v6", "fd00:0::00ff", NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "fd00::ff"); /* no broadcast in IPv6 */
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "v6", "fd00::ff", NULL, NULL),
                  -EADDRINUSE);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "v6", "fd00::", NULL, NULL), -EINVAL);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "v6", "fd00::100", NULL, NULL), -EINVAL);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "v6", "10.0.0.1", NULL, NULL), -EINVAL);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", "fd00::2", NULL, NULL), -EINVAL);
  for (int i = 2; i < 0xff; i++)
    CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "v6", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "fd00::fe");
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "v6", NULL, NULL, NULL), -ENOSPC);
  close_fresh();
}

static void test_registry_same_address_two_networks(void)
{
  char a1[REG_ADDR_BUF], a2[REG_ADDR_BUF];

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "shop-vpc", NULL, NULL, a1), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "shop-vpc2", NULL, NULL, a2), 0);
  CU_ASSERT_STRING_EQUAL(a1, "10.0.0.1");
  CU_ASSERT_STRING_EQUAL(a2, "10.0.0.1");
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "shop-vpc2", "10.0.0.2", NULL, a2), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "shop-vpc", "10.0.0.2", NULL, a1), 0);
  close_fresh();
}

static void test_registry_expiry(void)
{
  struct reg_event *ev;
  struct reg_endpoint e;
  char svc[REG_ID_BUF];
  char ep[3][REG_ID_BUF];
  int64_t t0 = (int64_t)time(NULL) * 1000;
  uint64_t seq;
  size_t n;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  for (int i = 0; i < 3; i++)
    CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep[i], NULL), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[2], true), 0);
  reg_last_seq(reg, &seq);
  /* Not yet: a day short of 7 days. */
  CU_ASSERT_EQUAL(
      reg_expire_pending(
          reg, t0 + REG_DEFAULT_PENDING_EXPIRY_MS - 24 * 3600 * 1000, &n),
      0);
  CU_ASSERT_EQUAL(n, 0);
  CU_ASSERT_EQUAL(state_of(ep[0]), REG_EP_PENDING_ACCEPTANCE);
  CU_ASSERT_EQUAL(
      reg_expire_pending(reg, t0 + REG_DEFAULT_PENDING_EXPIRY_MS + 5000, &n),
      0);
  CU_ASSERT_EQUAL(n, 2);
  CU_ASSERT_EQUAL(reg_endpoint_get(reg, ep[0], &e), 0);
  CU_ASSERT_EQUAL(e.state, REG_EP_EXPIRED);
  CU_ASSERT(e.reason[0] != '\0');
  reg_endpoint_release(&e);
  CU_ASSERT_EQUAL(state_of(ep[2]), REG_EP_AVAILABLE);
  CU_ASSERT_EQUAL(reg_events_after(reg, NULL, seq, 10, &ev, &n, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(n, 2);
  CU_ASSERT_EQUAL(ev[0].type, REG_EVENT_EXPIRE);
  CU_ASSERT_STRING_EQUAL(ev[0].principal, REG_SYSTEM_PRINCIPAL);
  CU_ASSERT_EQUAL(ev[0].state, REG_EP_EXPIRED);
  free(ev);
  /* Nothing left to expire: a no-op. */
  CU_ASSERT_EQUAL(
      reg_expire_pending(reg, t0 + REG_DEFAULT_PENDING_EXPIRY_MS + 5000, &n),
      0);
  CU_ASSERT_EQUAL(n, 0);
  close_fresh();
}

static void test_registry_events(void)
{
  struct reg_event *ev;
  struct reg_event *page;
  char svc[REG_ID_BUF];
  char ep[3][REG_ID_BUF];
  static const enum reg_event_type want[] = {
      REG_EVENT_CONNECT, REG_EVENT_CONNECT, REG_EVENT_CONNECT, REG_EVENT_ACCEPT,
      REG_EVENT_FAIL,    REG_EVENT_REJECT,  REG_EVENT_DELETE,  REG_EVENT_DELETE,
  };
  const size_t n_want = sizeof(want) / sizeof(want[0]);
  uint64_t last;
  size_t n, n_page;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  for (int i = 0; i < 3; i++)
    CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep[i], NULL), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[0], true), 0);
  CU_ASSERT_EQUAL(fail_ep(ep[0], "bind failed"), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[1], false), 0);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[1], NULL, NULL), 0);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[2], NULL, NULL), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[2], true), -EBUSY); /* no event */

  CU_ASSERT_EQUAL(reg_events_after(reg, NULL, 0, 1000, &ev, &n, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(n, n_want);
  for (size_t i = 0; i < n; i++) {
    CU_ASSERT_EQUAL(ev[i].seq, i + 1); /* in order, no gaps */
    CU_ASSERT_EQUAL(ev[i].type, want[i]);
    CU_ASSERT_STRING_EQUAL(ev[i].service_id, svc);
    CU_ASSERT_STRING_EQUAL(ev[i].owner, "pay");
    CU_ASSERT_STRING_EQUAL(ev[i].consumer, "shop");
    CU_ASSERT(ev[i].time > 0);
  }
  CU_ASSERT_EQUAL(ev[0].state, REG_EP_PENDING_ACCEPTANCE);
  CU_ASSERT_STRING_EQUAL(ev[0].principal, "shop");
  CU_ASSERT_STRING_EQUAL(ev[3].principal, "pay");
  CU_ASSERT_EQUAL(ev[3].state, REG_EP_AVAILABLE);
  CU_ASSERT_STRING_EQUAL(ev[4].endpoint_id, ep[0]);
  CU_ASSERT_STRING_EQUAL(ev[4].principal, REG_SYSTEM_PRINCIPAL);
  CU_ASSERT_STRING_EQUAL(ev[4].reason, "bind failed");
  CU_ASSERT_EQUAL(ev[4].state, REG_EP_FAILED);

  /* Paging. */
  CU_ASSERT_EQUAL(reg_events_after(reg, NULL, 2, 3, &page, &n_page, NULL), 0);
  CU_ASSERT(n_page == 3 && page[0].seq == 3 && page[2].seq == 5);
  free(page);
  CU_ASSERT_EQUAL(reg_events_after(reg, NULL, n_want, 10, &page, &n_page, NULL),
                  0);
  CU_ASSERT_EQUAL(n_page, 0);
  free(page);
  CU_ASSERT_EQUAL(reg_last_seq(reg, &last), 0);
  CU_ASSERT_EQUAL(last, n_want);

  /* Visibility of events for the API's stream. */
  CU_ASSERT(reg_event_visible(&ev[0], &OPS));
  CU_ASSERT(reg_event_visible(&ev[0], &PAY));
  CU_ASSERT(reg_event_visible(&ev[0], &SHOP));
  CU_ASSERT_FALSE(reg_event_visible(&ev[0], &PAY2));
  CU_ASSERT_FALSE(reg_event_visible(&ev[0], &ACME));
  free(ev);
  close_fresh();
}

static int64_t wall_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(long ms)
{
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, NULL);
}

/* registry.event_retention: old events go oldest first, in bounded
 * batches; seq keeps counting (across a restart too); the first seq kept
 * tells a reader what it missed. */
static void test_registry_events_prune(void)
{
  struct reg_event *ev;
  char svc[REG_ID_BUF], ep[REG_ID_BUF];
  uint64_t first, last;
  int64_t mid;
  size_t n, removed;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  CU_ASSERT_EQUAL(reg_first_seq(reg, &first), 0);
  CU_ASSERT_EQUAL(first, 1); /* none yet: the next one */
  CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep, NULL), 0);
  pause_ms(20);
  mid = wall_now_ms();
  pause_ms(20);
  for (int i = 0; i < 2; i++)
    CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep, NULL), 0);

  CU_ASSERT_EQUAL(reg_events_prune(reg, 0, 100, &removed), 0);
  CU_ASSERT_EQUAL(removed, 0);
  CU_ASSERT_EQUAL(reg_events_prune(reg, mid, 100, &removed), 0);
  CU_ASSERT_EQUAL(removed, 1);
  CU_ASSERT_EQUAL(reg_first_seq(reg, &first), 0);
  CU_ASSERT_EQUAL(first, 2);
  CU_ASSERT_EQUAL(reg_events_after(reg, NULL, 0, 10, &ev, &n, NULL), 0);
  CU_ASSERT(n == 2 && ev[0].seq == 2 && ev[1].seq == 3);
  free(ev);

  /* A batch limit holds. */
  CU_ASSERT_EQUAL(reg_events_prune(reg, wall_now_ms() + 60000, 1, &removed), 0);
  CU_ASSERT_EQUAL(removed, 1);
  CU_ASSERT_EQUAL(reg_first_seq(reg, &first), 0);
  CU_ASSERT_EQUAL(first, 3);

  /* All gone: seq does not start again. */
  CU_ASSERT_EQUAL(reg_events_prune(reg, wall_now_ms() + 60000, 100, &removed),
                  0);
  CU_ASSERT_EQUAL(removed, 1);
  CU_ASSERT_EQUAL(reg_last_seq(reg, &last), 0);
  CU_ASSERT_EQUAL(last, 3);
  CU_ASSERT_EQUAL(reg_first_seq(reg, &first), 0);
  CU_ASSERT_EQUAL(first, 4);
  reopen();
  CU_ASSERT_EQUAL(reg_last_seq(reg, &last), 0);
  CU_ASSERT_EQUAL(last, 3);
  CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep, NULL), 0);
  CU_ASSERT_EQUAL(reg_events_after(reg, NULL, 0, 10, &ev, &n, NULL), 0);
  CU_ASSERT(n == 1 && ev[0].seq == 4);
  free(ev);
  CU_ASSERT_EQUAL(reg_first_seq(reg, &first), 0);
  CU_ASSERT_EQUAL(first, 4);
  close_fresh();
}

static void test_registry_reopen(void)
{
  struct reg_service s;
  struct reg_endpoint *v;
  struct reg_event *ev;
  const char *const sources[] = {"192.0.2.0/24"};
  struct reg_endpoint_params p = {"b", "shop-vpc", NULL, sources, 1, false};
  char svc[REG_ID_BUF], svc2[REG_ID_BUF];
  char ep[3][REG_ID_BUF];
  uint64_t last;
  size_t n;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 4, svc), 0);
  {
    struct reg_service_params sp = {"b", "lb2", false, SHOP_LIST, 1, 0, NULL};

    CU_ASSERT_EQUAL_FATAL(reg_service_create(reg, &PAY, &sp, &s, NULL), 0);
    strcpy(svc2, s.id);
    reg_service_release(&s);
  }
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep[0], NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep[1], NULL), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[0], true), 0);
  {
    struct reg_endpoint e;

    CU_ASSERT_EQUAL_FATAL(reg_endpoint_create(reg, &SHOP, &p, &e, NULL), 0);
    strcpy(ep[2], e.id);
    reg_endpoint_release(&e);
  }
  reopen();
  CU_ASSERT_EQUAL(reg_schema_version(reg), pg() ? 4 : 6);
  CU_ASSERT_EQUAL(reg_service_describe(reg, &PAY, svc, &s, NULL), 0);
  CU_ASSERT_STRING_EQUAL(s.name, "a");
  CU_ASSERT_EQUAL(s.connection_limit, 4);
  CU_ASSERT(s.n_allowed_principals == 1 &&
            strcmp(s.allowed_principals[0], "*") == 0);
  reg_service_release(&s);
  CU_ASSERT_EQUAL(state_of(ep[0]), REG_EP_AVAILABLE);
  CU_ASSERT_EQUAL(state_of(ep[1]), REG_EP_PENDING_ACCEPTANCE);
  CU_ASSERT_EQUAL(state_of(ep[2]), REG_EP_AVAILABLE);

  /* What nlbd reopens at start. */
  CU_ASSERT_EQUAL(reg_available_endpoints(reg, &v, &n), 0);
  CU_ASSERT_EQUAL_FATAL(n, 2);
  CU_ASSERT_STRING_EQUAL(v[0].id, ep[0]);
  CU_ASSERT_STRING_EQUAL(v[0].load_balancer, "lb1");
  CU_ASSERT_STRING_EQUAL(v[0].address, "127.77.0.1");
  CU_ASSERT_STRING_EQUAL(v[0].netns, "");
  CU_ASSERT(v[0].n_ports == 2 && !v[0].proxy_protocol);
  CU_ASSERT_STRING_EQUAL(v[1].id, ep[2]);
  CU_ASSERT_STRING_EQUAL(v[1].service_id, svc2);
  CU_ASSERT_STRING_EQUAL(v[1].load_balancer, "lb2");
  CU_ASSERT_STRING_EQUAL(v[1].netns, "shop");
  CU_ASSERT_STRING_EQUAL(v[1].address, "10.0.0.1");
  CU_ASSERT(v[1].n_ports == 1 && v[1].ports[0] == 9000);
  CU_ASSERT(v[1].proxy_protocol);
  CU_ASSERT(v[1].n_allowed_sources == 1 &&
            strcmp(v[1].allowed_sources[0], "192.0.2.0/24") == 0);
  reg_endpoints_free(v, n);

  /* Sequence numbers continue without a gap. */
  CU_ASSERT_EQUAL(reg_last_seq(reg, &last), 0);
  CU_ASSERT_EQUAL(last, 4); /* connect, connect, accept, connect */
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[1], false), 0);
  CU_ASSERT_EQUAL(reg_events_after(reg, NULL, 0, 100, &ev, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 5);
  for (size_t i = 0; i < n; i++)
    CU_ASSERT_EQUAL(ev[i].seq, i + 1);
  free(ev);
  /* Allocation still sees addresses taken before the restart. */
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", "127.77.0.1", NULL, NULL),
                  -EADDRINUSE);
  close_fresh();
}

static void test_registry_endpoint_modify(void)
{
  const char *const sources[] = {"10.0.0.0/8", "2001:db8::1"};
  const char *const bad[] = {"10.0.0.0/33"};
  struct reg_endpoint e;
  struct reg_error err;
  char ep[REG_ID_BUF];

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep, NULL), 0);
  CU_ASSERT_EQUAL(reg_endpoint_modify(reg, &SHOP, ep, sources, 2, &e, &err), 0);
  CU_ASSERT(e.n_allowed_sources == 2 &&
            strcmp(e.allowed_sources[1], "2001:db8::1/128") == 0);
  CU_ASSERT(e.updated_at >= e.created_at);
  reg_endpoint_release(&e);
  CU_ASSERT_EQUAL(reg_endpoint_modify(reg, &SHOP, ep, bad, 1, &e, &err),
                  -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "allowed_sources");
  CU_ASSERT_EQUAL(reg_endpoint_modify(reg, &SHOP, ep, NULL, 0, &e, &err), 0);
  CU_ASSERT_EQUAL(e.n_allowed_sources, 0);
  reg_endpoint_release(&e);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep, NULL, NULL), 0);
  CU_ASSERT_EQUAL(reg_endpoint_modify(reg, &SHOP, ep, sources, 1, &e, &err),
                  -EBUSY);
  close_fresh();
}

static void test_registry_reload(void)
{
  static const struct reg_load_balancer lbs[] = {{"lb2", lb2_ports, 1, 1}};
  struct reg_config c2 = config;
  struct reg_network bad_net = {"x", NULL, "10.0.0.1/24", NULL, 0, NULL};
  struct reg_service s;
  struct reg_error err;
  char svc[REG_ID_BUF];

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  c2.load_balancers = lbs;
  c2.n_load_balancers = 1;
  CU_ASSERT_EQUAL(reg_reload(reg, &c2, &err), 0);
  CU_ASSERT_EQUAL(reg_service_describe(reg, &PAY, svc, &s, NULL), 0);
  CU_ASSERT_EQUAL(s.n_ports, 0); /* its LB is gone */
  reg_service_release(&s);
  CU_ASSERT_EQUAL(service(&PAY, "b", true, ALL, 1, 0, NULL), -EINVAL);
  /* A bad config is refused and the old one stays. */
  c2.networks = &bad_net;
  c2.n_networks = 1;
  CU_ASSERT_EQUAL(reg_reload(reg, &c2, &err), -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "networks");
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, NULL), 0);
  CU_ASSERT_EQUAL(reg_reload(reg, &config, &err), 0);
  CU_ASSERT_EQUAL(reg_service_describe(reg, &PAY, svc, &s, NULL), 0);
  CU_ASSERT_EQUAL(s.n_ports, 2);
  reg_service_release(&s);
  close_fresh();
}

static void test_registry_helpers(void)
{
  char buf[REG_TIME_BUF];
  enum reg_endpoint_state st;
  enum reg_role role;

  CU_ASSERT_STRING_EQUAL(reg_format_time(0, buf), "1970-01-01T00:00:00.000Z");
  CU_ASSERT_STRING_EQUAL(reg_format_time(1700000000123LL, buf),
                         "2023-11-14T22:13:20.123Z");
  CU_ASSERT_EQUAL(reg_state_parse("pendingAcceptance", &st), 0);
  CU_ASSERT_EQUAL(st, REG_EP_PENDING_ACCEPTANCE);
  CU_ASSERT_EQUAL(reg_state_parse("Available", &st), -EINVAL);
  for (int i = 0; i < REG_EP_STATE_COUNT; i++) {
    CU_ASSERT_EQUAL(reg_state_parse(reg_state_name(i), &st), 0);
    CU_ASSERT_EQUAL(st, i);
  }
  CU_ASSERT_STRING_EQUAL(reg_event_type_name(REG_EVENT_EXPIRE), "expire");
  CU_ASSERT_EQUAL(reg_role_parse("provider", &role), 0);
  CU_ASSERT_EQUAL(role, REG_ROLE_PROVIDER);
  CU_ASSERT_STRING_EQUAL(reg_role_name(REG_ROLE_CONSUMER), "consumer");
}

static void test_registry_ids_unique(void)
{
  char ids[50][REG_ID_BUF];

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", false, ALL, 1, 0, NULL), 0);
  for (int i = 0; i < 50; i++) {
    CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ids[i], NULL), 0);
    CU_ASSERT(is_id(ids[i], "ep-"));
    for (int j = 0; j < i; j++)
      CU_ASSERT(strcmp(ids[i], ids[j]) != 0);
  }
  close_fresh();
}

/* Pages: a token is a position, so a reader sees every item that existed
 * throughout exactly once, whatever is created meanwhile. */
static void test_registry_pages(void)
{
  char seen[60][REG_ID_BUF];
  size_t n_seen = 0;
  char token[REG_TOKEN_BUF] = "";
  struct reg_endpoint *v;
  struct reg_page page = {7, token};
  struct reg_error err;
  size_t n;
  int pages = 0;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", false, ALL, 1, 0, NULL), 0);
  for (int i = 0; i < 30; i++)
    CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, NULL, NULL), 0);
  do {
    CU_ASSERT_EQUAL_FATAL(
        reg_endpoint_list(reg, &SHOP, NULL, &page, &v, &n, tok, &err), 0);
    CU_ASSERT(n <= 7);
    for (size_t i = 0; i < n && n_seen < 60; i++) {
      for (size_t j = 0; j < n_seen; j++)
        CU_ASSERT(strcmp(seen[j], v[i].id) != 0);
      strcpy(seen[n_seen++], v[i].id);
    }
    reg_endpoints_free(v, n);
    /* Two more between pages: a later page may hold them. */
    if (pages++ < 3) {
      CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, NULL), 0);
      CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, NULL), 0);
    }
    strcpy(token, tok);
  } while (token[0] != '\0');
  CU_ASSERT(n_seen >= 30 && n_seen <= 36);
  /* Bad pages. */
  page.limit = REG_PAGE_MAX + 1;
  CU_ASSERT_EQUAL(reg_endpoint_list(reg, &SHOP, NULL, &page, &v, &n, tok, &err),
                  -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "limit");
  page.limit = 1;
  strcpy(token, "garbage");
  CU_ASSERT_EQUAL(reg_endpoint_list(reg, &SHOP, NULL, &page, &v, &n, tok, &err),
                  -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "next_token");
  /* A page that holds the last item says nothing more remains; one short
   * of it gives a token. */
  page.limit = 36;
  token[0] = '\0';
  CU_ASSERT_EQUAL(reg_endpoint_list(reg, &SHOP, NULL, &page, &v, &n, tok, &err),
                  0);
  reg_endpoints_free(v, n);
  CU_ASSERT(n == 36 && tok[0] == '\0');
  page.limit = 35;
  CU_ASSERT_EQUAL(reg_endpoint_list(reg, &SHOP, NULL, &page, &v, &n, tok, &err),
                  0);
  reg_endpoints_free(v, n);
  CU_ASSERT(n == 35 && tok[0] != '\0');
  /* The page token may be the same buffer as the next one. */
  strcpy(token, tok);
  CU_ASSERT_EQUAL(
      reg_endpoint_list(reg, &SHOP, NULL, &page, &v, &n, token, &err), 0);
  reg_endpoints_free(v, n);
  CU_ASSERT(n == 1 && token[0] == '\0');
  close_fresh();
}

/* Freed addresses are found again from the network's hint, lowest first. */
static void test_registry_address_reuse(void)
{
  char ep[5][REG_ID_BUF];
  char addr[REG_ADDR_BUF];

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, NULL), 0);
  for (int i = 0; i < 5; i++)
    CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep[i], addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "127.77.0.5");
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[3], NULL, NULL), 0);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[1], NULL, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "127.77.0.2");
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "127.77.0.4");
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "127.77.0.6");
  /* An address asked for above the hint is skipped later. */
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", "127.77.0.7", NULL, addr), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, NULL, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "127.77.0.8");
  close_fresh();
}

/* The event stream's read: only what the principal may see, and a cursor
 * that may move past what it may not. */
static void test_registry_events_visible(void)
{
  struct reg_event *ev;
  uint64_t through, last;
  size_t n;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", false, ALL, 1, 0, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, NULL, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(endpoint(&ACME, "a", "host", NULL, NULL, NULL), 0);
  CU_ASSERT_EQUAL(reg_last_seq(reg, &last), 0);
  CU_ASSERT_EQUAL(reg_events_after(reg, &ACME, 0, 10, &ev, &n, &through), 0);
  CU_ASSERT(n == 1 && strcmp(ev[0].consumer, "acme") == 0);
  CU_ASSERT_EQUAL(through, last);
  free(ev);
  CU_ASSERT_EQUAL(reg_events_after(reg, &PAY2, 0, 10, &ev, &n, &through), 0);
  CU_ASSERT_EQUAL(n, 0);
  CU_ASSERT_EQUAL(through, last);
  free(ev);
  CU_ASSERT_EQUAL(reg_events_after(reg, &PAY, 0, 1, &ev, &n, &through), 0);
  CU_ASSERT(n == 1 && through == ev[0].seq && through < last);
  free(ev);
  close_fresh();
}

static void test_registry_targets(void)
{
  static const char *const groups[] = {"tg1", "tg2"};
  struct reg_config c = config;
  struct reg_target t, *v;
  struct reg_error err;
  struct reg_event *ev;
  uint64_t seq;
  size_t n;

  open_fresh();
  c.target_groups = groups;
  c.n_target_groups = 2;
  CU_ASSERT_EQUAL_FATAL(reg_reload(reg, &c, NULL), 0);
  reg_last_seq(reg, &seq);
  CU_ASSERT_EQUAL(
      reg_target_register(reg, &OPS, "tg1", "127.0.0.1:9001", 5, &t, &err), 0);
  CU_ASSERT_STRING_EQUAL(t.address, "127.0.0.1:9001");
  CU_ASSERT_EQUAL(t.weight, 5);
  CU_ASSERT_EQUAL(
      reg_target_register(reg, &OPS, "tg1", "[::1]:80", 1, &t, &err), 0);
  CU_ASSERT_STRING_EQUAL(t.address, "[::1]:80");
  CU_ASSERT_EQUAL(
      reg_target_register(reg, &OPS, "tg1", "127.0.0.1:9001", 1, NULL, &err),
      -EEXIST);
  CU_ASSERT_EQUAL(
      reg_target_register(reg, &OPS, "nope", "127.0.0.1:1", 1, NULL, &err),
      -ENOENT);
  CU_ASSERT_EQUAL(
      reg_target_register(reg, &OPS, "tg1", "127.0.0.1", 1, NULL, &err),
      -EINVAL);
  CU_ASSERT_EQUAL(
      reg_target_register(reg, &OPS, "tg1", "127.0.0.1:2", 0, NULL, &err),
      -EINVAL);
  CU_ASSERT_EQUAL(
      reg_target_register(reg, &PAY, "tg1", "127.0.0.1:2", 1, NULL, &err),
      -EACCES);
  CU_ASSERT_EQUAL(reg_target_deregister(reg, &OPS, "tg1", "[::1]:80", &t, &err),
                  0);
  CU_ASSERT_EQUAL(reg_target_deregister(reg, &OPS, "tg1", "[::1]:80", &t, &err),
                  -ENOENT);
  reopen(); /* they survive a restart */
  CU_ASSERT_EQUAL_FATAL(reg_reload(reg, &c, NULL), 0);
  CU_ASSERT_EQUAL(reg_targets_list(reg, &v, &n), 0);
  CU_ASSERT(n == 1 && strcmp(v[0].address, "127.0.0.1:9001") == 0 &&
            v[0].weight == 5 && strcmp(v[0].target_group, "tg1") == 0);
  free(v);
  CU_ASSERT_EQUAL(reg_events_after(reg, NULL, seq, 10, &ev, &n, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(n, 3);
  CU_ASSERT(ev[0].type == REG_EVENT_REGISTER &&
            ev[2].type == REG_EVENT_DEREGISTER);
  CU_ASSERT_STRING_EQUAL(ev[2].target, "[::1]:80");
  CU_ASSERT_STRING_EQUAL(ev[2].target_group, "tg1");
  CU_ASSERT_STRING_EQUAL(ev[2].principal, "ops");
  /* Only operators see them. */
  CU_ASSERT(reg_event_visible(&ev[0], &OPS));
  CU_ASSERT_FALSE(reg_event_visible(&ev[0], &PAY));
  CU_ASSERT_FALSE(reg_event_visible(&ev[0], &SHOP));
  free(ev);
  close_fresh();
}

static void test_registry_nodes(void)
{
  struct reg_node *v, node;
  struct reg_error err;
  struct reg_event *ev;
  uint64_t seq;
  size_t n;

  open_fresh();
  become_node("n2");
  become_node("n1");
  CU_ASSERT_EQUAL(reg_node_heartbeat(reg, false, 17), 0);
  CU_ASSERT_EQUAL(reg_nodes_list(reg, &PAY, &v, &n, &err), -EACCES);
  CU_ASSERT_EQUAL(reg_nodes_list(reg, &OPS, &v, &n, &err), 0);
  CU_ASSERT_EQUAL_FATAL(n, 2);
  CU_ASSERT_STRING_EQUAL(v[0].name, "n1");
  CU_ASSERT_EQUAL(v[0].state, REG_NODE_UP);
  CU_ASSERT_EQUAL(v[0].applied_seq, 17);
  CU_ASSERT_EQUAL(v[1].state, REG_NODE_UP);
  free(v);
  reg_last_seq(reg, &seq);
  CU_ASSERT_EQUAL(reg_node_drain(reg, &OPS, "n2", &node, &err), 0);
  CU_ASSERT_EQUAL(node.state, REG_NODE_DRAINING);
  CU_ASSERT_EQUAL(reg_node_drain(reg, &OPS, "n2", &node, &err), 0);
  CU_ASSERT_EQUAL(reg_node_drain(reg, &OPS, "n9", &node, &err), -ENOENT);
  CU_ASSERT_EQUAL(reg_node_drain(reg, &PAY, "n2", &node, &err), -EACCES);
  CU_ASSERT_EQUAL(reg_events_after(reg, NULL, seq, 10, &ev, &n, NULL), 0);
  CU_ASSERT(n == 1 && ev[0].type == REG_EVENT_DRAIN &&
            strcmp(ev[0].node, "n2") == 0);
  free(ev);
  /* A node that restarts is up again; one silent for three heartbeats is
   * down. */
  become_node("n2");
  CU_ASSERT_EQUAL(reg_nodes_list(reg, &OPS, &v, &n, &err), 0);
  CU_ASSERT(n == 2 && v[1].state == REG_NODE_UP);
  free(v);
  {
    struct timespec pause = {3, 200 * 1000000L};

    nanosleep(&pause, NULL);
  }
  CU_ASSERT_EQUAL(reg_node_heartbeat(reg, false, 0), 0);
  CU_ASSERT_EQUAL(reg_nodes_list(reg, &OPS, &v, &n, &err), 0);
  CU_ASSERT(n == 2 && v[0].state == REG_NODE_DOWN && v[1].state == REG_NODE_UP);
  free(v);
  CU_ASSERT_EQUAL(reg_node_drain(reg, &OPS, "n1", &node, &err), -EBUSY);
  close_fresh();
}

/* With several nodes, one node's failure is a failed placement; the
 * endpoint fails when every up node failed. */
static void test_registry_placements(void)
{
  char svc[REG_ID_BUF], ep[REG_ID_BUF];
  struct reg_placement_report open = {ep, true, NULL};
  struct reg_endpoint e;

  open_fresh();
  become_node("n1");
  become_node("n2");
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", false, ALL, 1, 0, svc), 0);
  CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep, NULL), 0);
  CU_ASSERT_EQUAL(reg_placements_report(reg, &open, 1), 0); /* n2 open */
  become_node("n1");
  CU_ASSERT_EQUAL(fail_ep(ep, "no such netns"), 0);
  CU_ASSERT_EQUAL(reg_endpoint_get(reg, ep, &e), 0);
  CU_ASSERT_EQUAL(e.state, REG_EP_AVAILABLE);
  CU_ASSERT_EQUAL_FATAL(e.n_placements, 2);
  CU_ASSERT(strcmp(e.placements[0].node, "n1") == 0 && !e.placements[0].open &&
            strcmp(e.placements[0].reason, "no such netns") == 0);
  CU_ASSERT(strcmp(e.placements[1].node, "n2") == 0 && e.placements[1].open);
  reg_endpoint_release(&e);
  become_node("n2");
  CU_ASSERT_EQUAL(fail_ep(ep, "bind failed"), 0);
  CU_ASSERT_EQUAL(reg_endpoint_get(reg, ep, &e), 0);
  CU_ASSERT_EQUAL(e.state, REG_EP_FAILED);
  CU_ASSERT_STRING_EQUAL(e.reason, "bind failed");
  reg_endpoint_release(&e);
  close_fresh();
}

/* Once an endpoint leaves available every node has closed it: its open
 * placements read "closed", a failed one still "failed" with its reason,
 * and later reports change nothing. */
static void test_registry_placements_closed(void)
{
  char svc[REG_ID_BUF], ep[REG_ID_BUF];
  struct reg_placement_report open = {ep, true, NULL};
  struct reg_endpoint e;

  open_fresh();
  become_node("n1");
  become_node("n2");
  become_node("n3");
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep, NULL), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep, true), 0);
  CU_ASSERT_EQUAL(reg_placements_report(reg, &open, 1), 0); /* n3 open */
  become_node("n2");
  CU_ASSERT_EQUAL(reg_placements_report(reg, &open, 1), 0); /* n2 open */
  become_node("n1");
  CU_ASSERT_EQUAL(fail_ep(ep, "no such netns"), 0); /* n1 failed */
  CU_ASSERT_EQUAL(reg_endpoint_get(reg, ep, &e), 0);
  CU_ASSERT_EQUAL_FATAL(e.n_placements, 3);
  CU_ASSERT_STRING_EQUAL(reg_placement_state_name(&e, &e.placements[0]),
                         "failed");
  CU_ASSERT_STRING_EQUAL(reg_placement_state_name(&e, &e.placements[1]),
                         "open");
  CU_ASSERT_STRING_EQUAL(reg_placement_state_name(&e, &e.placements[2]),
                         "open");
  reg_endpoint_release(&e);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep, false), 0);
  become_node("n2");
  CU_ASSERT_EQUAL(reg_placements_report(reg, &open, 1), 0); /* ignored */
  CU_ASSERT_EQUAL(reg_endpoint_get(reg, ep, &e), 0);
  CU_ASSERT_EQUAL(e.state, REG_EP_REJECTED);
  CU_ASSERT_EQUAL_FATAL(e.n_placements, 3);
  CU_ASSERT_STRING_EQUAL(reg_placement_state_name(&e, &e.placements[0]),
                         "failed");
  CU_ASSERT_STRING_EQUAL(e.placements[0].reason, "no such netns");
  CU_ASSERT_STRING_EQUAL(reg_placement_state_name(&e, &e.placements[1]),
                         "closed");
  CU_ASSERT_STRING_EQUAL(reg_placement_state_name(&e, &e.placements[2]),
                         "closed");
  reg_endpoint_release(&e);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep, &e, NULL), 0);
  CU_ASSERT_EQUAL(e.state, REG_EP_DELETED);
  CU_ASSERT_EQUAL_FATAL(e.n_placements, 3);
  CU_ASSERT_STRING_EQUAL(reg_placement_state_name(&e, &e.placements[2]),
                         "closed");
  reg_endpoint_release(&e);
  close_fresh();
}

/* The change feed: the whole state first, then events with the rows they
 * name, and the whole state again after a gap. */
static void test_registry_changes(void)
{
  static const char *const groups[] = {"tg1"};
  struct reg_config c = config;
  struct reg_changes ch;
  char svc[REG_ID_BUF], ep[3][REG_ID_BUF];
  uint64_t seq;

  open_fresh();
  c.target_groups = groups;
  c.n_target_groups = 1;
  CU_ASSERT_EQUAL_FATAL(reg_reload(reg, &c, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", false, ALL, 1, 0, svc), 0);
  CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep[0], NULL), 0);
  CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep[1], NULL), 0);
  CU_ASSERT_EQUAL(
      reg_target_register(reg, &OPS, "tg1", "127.0.0.1:1", 1, NULL, NULL), 0);
  CU_ASSERT_EQUAL(reg_changes_read(reg, 0, 100, true, &ch), 0);
  CU_ASSERT(ch.resync && ch.n_events == 0 && ch.n_endpoints == 2 &&
            ch.n_targets == 1 && ch.last_seq == 3);
  CU_ASSERT(ch.endpoints[0].n_ports == 2); /* completed from config */
  seq = ch.last_seq;
  reg_changes_release(&ch);
  CU_ASSERT_EQUAL(reg_changes_read(reg, seq, 100, false, &ch), 0);
  CU_ASSERT(!ch.resync && ch.n_events == 0 && ch.last_seq == seq);
  reg_changes_release(&ch);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[0], NULL, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep[2], NULL), 0);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[2], NULL, NULL), 0);
  CU_ASSERT_EQUAL(
      reg_target_deregister(reg, &OPS, "tg1", "127.0.0.1:1", NULL, NULL), 0);
  CU_ASSERT_EQUAL(reg_changes_read(reg, seq, 2, false, &ch), 0);
  CU_ASSERT(!ch.resync && ch.n_events == 2 && ch.last_seq == seq + 2);
  CU_ASSERT(ch.n_endpoints == 2); /* ep[0] deleted, ep[2] (deleted now) */
  reg_changes_release(&ch);
  CU_ASSERT_EQUAL(reg_changes_read(reg, seq + 2, 100, false, &ch), 0);
  CU_ASSERT(ch.n_events == 2 && ch.n_targets == 0 && ch.last_seq == seq + 4);
  reg_changes_release(&ch);
  /* Pruned away: the whole state again. */
  CU_ASSERT_EQUAL(reg_events_prune(reg, wall_now_ms() + 1000, 100, NULL), 0);
  CU_ASSERT_EQUAL(reg_changes_read(reg, seq, 100, false, &ch), 0);
  CU_ASSERT(ch.resync && ch.n_endpoints == 1 &&
            strcmp(ch.endpoints[0].id, ep[1]) == 0 && ch.last_seq == seq + 4);
  reg_changes_release(&ch);
  close_fresh();
}

/* ---- tenancy ------------------------------------------------------------ */

static void hash_of(uint8_t out[32], int n)
{
  memset(out, 0, 32);
  out[0] = (uint8_t)n;
  out[31] = 0xa5;
}

static bool zeroed(const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return false;
  return true;
}

static void test_registry_principals_tokens(void)
{
  static const struct reg_actor T1 = {"tenant1", REG_ROLE_CONSUMER};
  struct reg_principal_info pi, *pv;
  struct reg_token tk, *tv;
  struct reg_event *ev;
  struct reg_changes ch;
  struct reg_error err;
  uint8_t h1[32], h2[32], h3[32];
  char svc[REG_ID_BUF], ep[REG_ID_BUF];
  uint64_t seq;
  size_t n;

  hash_of(h1, 1);
  hash_of(h2, 2);
  hash_of(h3, 3);
  open_fresh();
  CU_ASSERT_EQUAL(reg_last_seq(reg, &seq), 0);
  CU_ASSERT_EQUAL_FATAL(
      reg_principal_create(reg, &OPS, "tenant1", REG_ROLE_CONSUMER, h1,
                           "tok-00000000000000001", &pi, &tk, &err),
      0);
  CU_ASSERT_STRING_EQUAL(pi.name, "tenant1");
  CU_ASSERT_EQUAL(pi.role, REG_ROLE_CONSUMER);
  CU_ASSERT_FALSE(pi.from_config);
  CU_ASSERT(llabs(pi.created_at - wall_now_ms()) < 5000);
  CU_ASSERT_STRING_EQUAL(tk.id, "tok-00000000000000001");
  CU_ASSERT_STRING_EQUAL(tk.principal, "tenant1");
  CU_ASSERT(zeroed(tk.sha256, 32)); /* handed out without its hash */
  CU_ASSERT_EQUAL(tk.expires_at, 0);
  /* Taken names, by the API or by the config; bad names; non-operators. */
  CU_ASSERT_EQUAL(reg_principal_create(reg, &OPS, "tenant1", REG_ROLE_PROVIDER,
                                       h2, "tok-00000000000000002", NULL, NULL,
                                       &err),
                  -EEXIST);
  CU_ASSERT_EQUAL(reg_principal_create(reg, &OPS, "shop", REG_ROLE_CONSUMER, h2,
                                       "tok-00000000000000002", NULL, NULL,
                                       &err),
                  -EEXIST);
  CU_ASSERT_STRING_EQUAL(err.field, "name");
  CU_ASSERT_EQUAL(reg_principal_create(reg, &OPS, "no body", REG_ROLE_CONSUMER,
                                       h2, "tok-00000000000000002", NULL, NULL,
                                       &err),
                  -EINVAL);
  CU_ASSERT_EQUAL(reg_principal_create(reg, &PAY, "x", REG_ROLE_CONSUMER, h2,
                                       "tok-00000000000000002", NULL, NULL,
                                       &err),
                  -EACCES);
  /* The same hash twice is refused by the store (UNIQUE). */
  CU_ASSERT(reg_principal_create(reg, &OPS, "tenant9", REG_ROLE_CONSUMER, h1,
                                 "tok-00000000000000009", NULL, NULL,
                                 &err) < 0);

  /* The config's principals first, then the API's. */
  CU_ASSERT_EQUAL(reg_principals_list(reg, &OPS, &pv, &n, &err), 0);
  CU_ASSERT_EQUAL_FATAL(n, 6);
  CU_ASSERT(pv[0].from_config && pv[0].created_at == 0);
  CU_ASSERT(strcmp(pv[5].name, "tenant1") == 0 && !pv[5].from_config);
  free(pv);
  CU_ASSERT_EQUAL(reg_principals_list(reg, &PAY, &pv, &n, &err), -EACCES);

  /* A second token (rotation), with an expiry. */
  CU_ASSERT_EQUAL(reg_token_create(reg, &OPS, "tenant1", h2,
                                   "tok-00000000000000002",
                                   wall_now_ms() + 3600000, &tk, &err),
                  0);
  CU_ASSERT_EQUAL(tk.role, REG_ROLE_CONSUMER);
  CU_ASSERT_EQUAL(reg_token_create(reg, &OPS, "tenant1", h3,
                                   "tok-00000000000000003", wall_now_ms() - 1,
                                   NULL, &err),
                  -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "expires_at");
  CU_ASSERT_EQUAL(reg_token_create(reg, &OPS, "shop", h3,
                                   "tok-00000000000000003", 0, NULL, &err),
                  -EBUSY);
  CU_ASSERT_EQUAL(reg_token_create(reg, &OPS, "ghost", h3,
                                   "tok-00000000000000003", 0, NULL, &err),
                  -ENOENT);
  CU_ASSERT_EQUAL(reg_tokens_list(reg, &OPS, "tenant1", &tv, &n, &err), 0);
  CU_ASSERT_EQUAL_FATAL(n, 2);
  CU_ASSERT_STRING_EQUAL(tv[0].id, "tok-00000000000000001");
  CU_ASSERT(zeroed(tv[0].sha256, 32) && zeroed(tv[1].sha256, 32));
  CU_ASSERT(tv[1].expires_at > wall_now_ms());
  free(tv);
  CU_ASSERT_EQUAL(reg_tokens_list(reg, &OPS, "ghost", &tv, &n, &err), -ENOENT);

  /* last_used_at is recorded in a batch. */
  {
    char *ids[] = {"tok-00000000000000001"};
    int64_t at[] = {wall_now_ms()};

    CU_ASSERT_EQUAL(reg_tokens_used(reg, ids, at, 1), 0);
    CU_ASSERT_EQUAL(reg_tokens_list(reg, &OPS, "tenant1", &tv, &n, &err), 0);
    CU_ASSERT(n == 2 && tv[0].last_used_at == at[0] && tv[1].last_used_at == 0);
    free(tv);
  }

  /* The change feed hands the tokens with their hashes (what the API
   * authenticates with), and a revoked token as an event without a row. */
  CU_ASSERT_EQUAL(reg_changes_read(reg, seq, 100, false, &ch), 0);
  CU_ASSERT_EQUAL(ch.n_events, 3); /* principal, token, token */
  CU_ASSERT_EQUAL_FATAL(ch.n_tokens, 2);
  CU_ASSERT(memcmp(ch.tokens[0].sha256, h1, 32) == 0 ||
            memcmp(ch.tokens[1].sha256, h1, 32) == 0);
  seq = ch.last_seq;
  reg_changes_release(&ch);
  CU_ASSERT_EQUAL(
      reg_token_revoke(reg, &OPS, "tenant1", "tok-00000000000000001", &err), 0);
  CU_ASSERT_EQUAL(
      reg_token_revoke(reg, &OPS, "tenant1", "tok-00000000000000001", &err),
      -ENOENT);
  CU_ASSERT_EQUAL(reg_changes_read(reg, seq, 100, false, &ch), 0);
  CU_ASSERT(ch.n_events == 1 && ch.events[0].type == REG_EVENT_TOKEN_REVOKE &&
            strcmp(ch.events[0].token_id, "tok-00000000000000001") == 0 &&
            ch.n_tokens == 0);
  reg_changes_release(&ch);
  CU_ASSERT_EQUAL(reg_changes_read(reg, 0, 100, true, &ch), 0);
  CU_ASSERT(ch.resync && ch.n_tokens == 1 &&
            strcmp(ch.tokens[0].id, "tok-00000000000000002") == 0 &&
            memcmp(ch.tokens[0].sha256, h2, 32) == 0);
  reg_changes_release(&ch);

  /* An API principal acts like a config one, and one holding an endpoint
   * may not go. */
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", false, ALL, 1, 0, svc), 0);
  CU_ASSERT_EQUAL_FATAL(endpoint(&T1, "a", "host", NULL, ep, NULL), 0);
  CU_ASSERT_EQUAL(state_of(ep), REG_EP_AVAILABLE);
  CU_ASSERT_EQUAL(reg_principal_delete(reg, &OPS, "tenant1", &err), -EBUSY);
  CU_ASSERT(strstr(err.message, "1 live endpoints") != NULL);
  CU_ASSERT_EQUAL(reg_principal_delete(reg, &OPS, "shop", &err), -EBUSY);
  CU_ASSERT(strstr(err.message, "config") != NULL);
  CU_ASSERT_EQUAL(reg_principal_delete(reg, &OPS, "ghost", &err), -ENOENT);
  CU_ASSERT_EQUAL(reg_principal_delete(reg, &PAY, "tenant1", &err), -EACCES);

  /* Everything survives a restart. */
  reopen();
  CU_ASSERT_EQUAL(reg_tokens_list(reg, &OPS, "tenant1", &tv, &n, &err), 0);
  CU_ASSERT(n == 1 && strcmp(tv[0].id, "tok-00000000000000002") == 0);
  free(tv);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &T1, ep, NULL, NULL), 0);
  CU_ASSERT_EQUAL(reg_principal_delete(reg, &OPS, "tenant1", &err), 0);
  CU_ASSERT_EQUAL(reg_tokens_list(reg, &OPS, "tenant1", &tv, &n, &err),
                  -ENOENT);
  /* Events name the principal and token; providers and consumers see
   * none of them. */
  CU_ASSERT_EQUAL(reg_events_after(reg, NULL, 0, 100, &ev, &n, NULL), 0);
  {
    static const enum reg_event_type want[] = {
        REG_EVENT_PRINCIPAL_CREATE, REG_EVENT_TOKEN_CREATE,
        REG_EVENT_TOKEN_CREATE,     REG_EVENT_TOKEN_REVOKE,
        REG_EVENT_CONNECT,          REG_EVENT_DELETE,
        REG_EVENT_TOKEN_REVOKE,     REG_EVENT_PRINCIPAL_DELETE,
    };

    CU_ASSERT_EQUAL_FATAL(n, 8);
    for (size_t i = 0; i < n; i++)
      CU_ASSERT_EQUAL(ev[i].type, want[i]);
    CU_ASSERT_STRING_EQUAL(ev[0].subject, "tenant1");
    CU_ASSERT_STRING_EQUAL(ev[0].principal, "ops");
    CU_ASSERT_STRING_EQUAL(ev[6].token_id, "tok-00000000000000002");
  }
  free(ev);
  CU_ASSERT_EQUAL(reg_events_after(reg, &PAY, 0, 100, &ev, &n, NULL), 0);
  for (size_t i = 0; i < n; i++)
    CU_ASSERT(ev[i].type < REG_EVENT_PRINCIPAL_CREATE);
  free(ev);
  CU_ASSERT_EQUAL(reg_events_after(reg, &OPS, 0, 100, &ev, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 8);
  free(ev);
  /* The name is free again; and a config that takes an API name is
   * refused. */
  CU_ASSERT_EQUAL(reg_principal_create(reg, &OPS, "tenant1", REG_ROLE_PROVIDER,
                                       h3, "tok-00000000000000003", NULL, NULL,
                                       &err),
                  0);
  {
    struct reg_principal more[6];
    struct reg_config c = config;

    memcpy(more, principals, sizeof(principals));
    more[5] = (struct reg_principal){"tenant1", REG_ROLE_PROVIDER, NULL, 0};
    c.principals = more;
    c.n_principals = 6;
    CU_ASSERT_EQUAL(reg_reload(reg, &c, &err), -EEXIST);
    CU_ASSERT(strstr(err.message, "tenant1") != NULL);
    reg_close(reg);
    CU_ASSERT_EQUAL(open_store(&reg, &c, &err), -EEXIST);
    CU_ASSERT_EQUAL_FATAL(open_store(&reg, &config, &err), 0);
  }
  close_fresh();
}

static void test_registry_networks_api(void)
{
  static const char *const only_shop[] = {"shop"};
  struct reg_network_params p = {"vpc9", "10.9.0.0/30", "ns9", only_shop, 1};
  struct reg_network_info net, *nv;
  struct reg_error err;
  char svc[REG_ID_BUF], ep[REG_ID_BUF], addr[REG_ADDR_BUF];
  size_t n;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(reg_network_create(reg, &OPS, &p, &net, &err), 0);
  CU_ASSERT_STRING_EQUAL(net.name, "vpc9");
  CU_ASSERT_STRING_EQUAL(net.netns, "ns9");
  CU_ASSERT(net.n_principals == 1 && strcmp(net.principals[0], "shop") == 0);
  reg_strings_free(net.principals, net.n_principals);
  CU_ASSERT_EQUAL(reg_network_create(reg, &OPS, &p, NULL, &err), -EEXIST);
  p.name = "host"; /* the config's */
  CU_ASSERT_EQUAL(reg_network_create(reg, &OPS, &p, NULL, &err), -EEXIST);
  p.name = "bad";
  p.range = "10.9.0.1/30"; /* host bits set */
  CU_ASSERT_EQUAL(reg_network_create(reg, &OPS, &p, NULL, &err), -EINVAL);
  p.range = "10.9.0.0/30";
  p.netns = "../etc";
  CU_ASSERT_EQUAL(reg_network_create(reg, &OPS, &p, NULL, &err), -EINVAL);
  CU_ASSERT_EQUAL(reg_network_create(reg, &PAY, &p, NULL, &err), -EACCES);
  CU_ASSERT_EQUAL(reg_networks_list(reg, &OPS, &nv, &n, &err), 0);
  CU_ASSERT_EQUAL_FATAL(n, 7);
  CU_ASSERT(nv[0].from_config && strcmp(nv[6].name, "vpc9") == 0 &&
            !nv[6].from_config && strcmp(nv[6].range, "10.9.0.0/30") == 0);
  reg_networks_free(nv, n);

  /* Endpoints use it like a config network: its principals, its range,
   * its namespace. */
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", false, ALL, 1, 0, svc), 0);
  CU_ASSERT_EQUAL(endpoint(&ACME, "a", "vpc9", NULL, NULL, NULL), -EACCES);
  CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "vpc9", NULL, ep, addr), 0);
  CU_ASSERT_STRING_EQUAL(addr, "10.9.0.1");
  {
    struct reg_endpoint e;

    CU_ASSERT_EQUAL(reg_endpoint_get(reg, ep, &e), 0);
    CU_ASSERT_STRING_EQUAL(e.netns, "ns9");
    reg_endpoint_release(&e);
  }
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "vpc9", NULL, NULL, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "vpc9", NULL, NULL, NULL), -ENOSPC);
  CU_ASSERT_EQUAL(reg_network_delete(reg, &OPS, "vpc9", &err), -EBUSY);
  CU_ASSERT_EQUAL(reg_network_delete(reg, &OPS, "host", &err), -EBUSY);
  CU_ASSERT_EQUAL(reg_network_delete(reg, &OPS, "ghost", &err), -ENOENT);
  reopen();
  {
    struct reg_endpoint *v;

    CU_ASSERT_EQUAL(reg_available_endpoints(reg, &v, &n), 0);
    CU_ASSERT(n == 2 && strcmp(v[0].netns, "ns9") == 0);
    reg_endpoints_free(v, n);
  }
  /* A node that maps vpc9 to a namespace of its own opens its endpoints
   * there, and its node record says so. */
  {
    static const struct reg_netns_mapping here[] = {{"vpc9", "here9"},
                                                    {"vpc10", ""}};
    struct reg_config c = config;
    struct reg_endpoint e;
    struct reg_node *nodes;

    c.node_networks = here;
    c.n_node_networks = 2;
    c.node = "n7";
    CU_ASSERT_EQUAL_FATAL(reg_reload(reg, &c, NULL), 0);
    CU_ASSERT_EQUAL(reg_endpoint_get(reg, ep, &e), 0);
    CU_ASSERT_STRING_EQUAL(e.netns, "here9");
    reg_endpoint_release(&e);
    CU_ASSERT_EQUAL(reg_node_heartbeat(reg, true, 0), 0);
    CU_ASSERT_EQUAL(reg_nodes_list(reg, &OPS, &nodes, &n, NULL), 0);
    CU_ASSERT(n == 1 && strcmp(nodes[0].networks, "vpc9=here9\nvpc10=\n") == 0);
    free(nodes);
  }
  close_fresh();
}

static void test_registry_service_quota(void)
{
  struct reg_config c = config;
  struct reg_error err;

  open_fresh();
  c.service_quota = 2;
  CU_ASSERT_EQUAL_FATAL(reg_reload(reg, &c, NULL), 0);
  CU_ASSERT_EQUAL(service(&PAY, "a", true, ALL, 1, 0, NULL), 0);
  CU_ASSERT_EQUAL(service(&PAY, "b", true, ALL, 1, 0, NULL), 0);
  {
    struct reg_service_params p = {"c", "lb1", true, ALL, 1, 0, NULL};

    CU_ASSERT_EQUAL(reg_service_create(reg, &PAY, &p, NULL, &err), -EDQUOT);
    CU_ASSERT(strstr(err.message, "service_quota") != NULL);
  }
  /* Per provider; operators are not limited. */
  CU_ASSERT_EQUAL(service(&PAY2, "c", true, ALL, 1, 0, NULL), 0);
  CU_ASSERT_EQUAL(service(&OPS, "d", true, ALL, 1, 0, NULL), 0);
  CU_ASSERT_EQUAL(service(&OPS, "e", true, ALL, 1, 0, NULL), 0);
  CU_ASSERT_EQUAL(service(&OPS, "f", true, ALL, 1, 0, NULL), 0);
  c.service_quota = 0;
  CU_ASSERT_EQUAL_FATAL(reg_reload(reg, &c, NULL), 0);
  CU_ASSERT_EQUAL(service(&PAY, "g", true, ALL, 1, 0, NULL), 0);
  close_fresh();
}

static void test_registry_endpoints_prune(void)
{
  char svc[REG_ID_BUF], ep[4][REG_ID_BUF];
  size_t removed;
  int64_t mid;

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", true, ALL, 1, 0, svc), 0);
  for (int i = 0; i < 4; i++)
    CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "a", "host", NULL, ep[i], NULL), 0);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[0], false), 0);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[1], NULL, NULL), 0);
  pause_ms(20);
  mid = wall_now_ms();
  pause_ms(20);
  CU_ASSERT_EQUAL(decide1(&PAY, svc, ep[2], true), 0);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[2], NULL, NULL), 0);

  CU_ASSERT_EQUAL(reg_endpoints_prune(reg, mid, 1, &removed), 0);
  CU_ASSERT_EQUAL(removed, 1); /* the batch limit */
  CU_ASSERT_EQUAL(reg_endpoints_prune(reg, mid, 100, &removed), 0);
  CU_ASSERT_EQUAL(removed, 1);
  CU_ASSERT_EQUAL(state_of(ep[0]), -ENOENT);
  CU_ASSERT_EQUAL(state_of(ep[1]), -ENOENT);
  CU_ASSERT_EQUAL(state_of(ep[2]), REG_EP_DELETED); /* too recent */
  /* Live endpoints are never pruned, however old. */
  CU_ASSERT_EQUAL(
      reg_endpoints_prune(reg, wall_now_ms() + 60000, 100, &removed), 0);
  CU_ASSERT_EQUAL(removed, 1);
  CU_ASSERT_EQUAL(state_of(ep[3]), REG_EP_PENDING_ACCEPTANCE);
  close_fresh();
}

/* ---- private DNS -------------------------------------------------------- */

static const char *const pay_domains[] = {"Payments.Example."};
static const char *const pay2_domains[] = {"other.example"};

/* config with a DNS zone, pay and pay2 granted a domain each, and a
 * responder in "host" and "shop-vpc". */
static void dns_config(struct reg_config *c, struct reg_principal *p,
                       struct reg_network *n)
{
  *c = config;
  memcpy(p, principals, sizeof(principals));
  memcpy(n, networks, sizeof(networks));
  p[1].dns_domains = pay_domains;
  p[1].n_dns_domains = 1;
  p[2].dns_domains = pay2_domains;
  p[2].n_dns_domains = 1;
  n[0].dns = "127.77.0.2";
  n[1].dns = "10.0.0.2";
  c->principals = p;
  c->networks = n;
  c->dns_zone = "NLB.internal";
}

static int dns_service(const struct reg_actor *actor, const char *name,
                       const char *private_dns_name, char *id,
                       struct reg_error *err)
{
  struct reg_service_params p = {name, "lb1", false,           ALL,
                                 1,    0,     private_dns_name};
  struct reg_service s;
  int r = reg_service_create(reg, actor, &p, &s, err);

  if (r == 0) {
    if (id)
      strcpy(id, s.id);
    reg_service_release(&s);
  }
  return r;
}

static int set_private_dns_name(const struct reg_actor *actor, const char *id,
                                const char *name, struct reg_error *err)
{
  struct reg_service_changes ch = {.set_private_dns_name = true,
                                   .private_dns_name = name};

  return reg_service_modify(reg, actor, id, &ch, NULL, err);
}

static bool has_name(const struct reg_endpoint *e, const char *name)
{
  for (size_t i = 0; i < e->n_dns_names; i++)
    if (strcmp(e->dns_names[i], name) == 0)
      return true;
  return false;
}

static void test_registry_private_dns_name(void)
{
  static const char *const bad[] = {
      "payments.example.com.", /* outside, but first: parsed fine */
      "-a.payments.example",
      "a-.payments.example",
      "a..payments.example",
      "a_b.payments.example",
      "payments",
      "*.payments.example",
      "a b.payments.example",
      "",
  };
  struct reg_principal p[sizeof(principals) / sizeof(principals[0])];
  struct reg_network n[sizeof(networks) / sizeof(networks[0])];
  struct reg_config c;
  struct reg_service s;
  struct reg_error err;
  char svc[REG_ID_BUF], svc2[REG_ID_BUF], long_label[96];

  open_fresh();
  dns_config(&c, p, n);
  CU_ASSERT_EQUAL_FATAL(reg_reload(reg, &c, &err), 0);
  /* Stored in lower case, without the dot; the domain itself is in. */
  CU_ASSERT_EQUAL_FATAL(
      dns_service(&PAY, "a", "API.Payments.example.", svc, &err), 0);
  CU_ASSERT_EQUAL(reg_service_describe(reg, &PAY, svc, &s, NULL), 0);
  CU_ASSERT_STRING_EQUAL(s.private_dns_name, "api.payments.example");
  reg_service_release(&s);
  CU_ASSERT_EQUAL(dns_service(&PAY, "b", "payments.example", svc2, &err), 0);
  /* Outside the owner's domains: 403, whoever asks. */
  CU_ASSERT_EQUAL(dns_service(&PAY, "c", "api.other.example", NULL, &err),
                  -EACCES);
  CU_ASSERT_STRING_EQUAL(err.field, "private_dns_name");
  CU_ASSERT_EQUAL(dns_service(&PAY2, "c", "x.payments.example", NULL, &err),
                  -EACCES);
  CU_ASSERT_EQUAL(set_private_dns_name(&OPS, svc, "x.other.example", &err),
                  -EACCES);
  CU_ASSERT_EQUAL(bad[0][0], 'p');
  CU_ASSERT_EQUAL(set_private_dns_name(&PAY, svc, bad[0], &err), -EACCES);
  /* Not host names: 400. */
  for (size_t i = 1; i + 1 < sizeof(bad) / sizeof(bad[0]); i++) {
    CU_ASSERT_EQUAL(set_private_dns_name(&PAY, svc, bad[i], &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.field, "private_dns_name");
  }
  memset(long_label, 'a', 64);
  strcpy(long_label + 64, ".payments.example");
  CU_ASSERT_EQUAL(set_private_dns_name(&PAY, svc, long_label, &err), -EINVAL);
  strcpy(long_label + 63, ".payments.example");
  CU_ASSERT_EQUAL(set_private_dns_name(&PAY, svc, long_label, &err), 0);
  /* Inside or above the zone: 400, even for an operator's own service. */
  CU_ASSERT_EQUAL(dns_service(&OPS, "o1", "x.nlb.internal", NULL, &err),
                  -EINVAL);
  CU_ASSERT_EQUAL(dns_service(&OPS, "o1", "nlb.internal", NULL, &err), -EINVAL);
  CU_ASSERT_EQUAL(dns_service(&OPS, "o1", "internal.", NULL, &err), -EINVAL);
  CU_ASSERT_EQUAL(dns_service(&OPS, "o1", "anything.example", NULL, &err), 0);
  /* Unique, whatever the case: 409 naming the field. */
  CU_ASSERT_EQUAL(dns_service(&PAY, "d", "Payments.Example", NULL, &err),
                  -EEXIST);
  CU_ASSERT_STRING_EQUAL(err.field, "private_dns_name");
  CU_ASSERT_EQUAL(dns_service(&PAY, "b", "free.payments.example", NULL, &err),
                  -EEXIST);
  CU_ASSERT_STRING_EQUAL(err.field, "name");
  CU_ASSERT_EQUAL(set_private_dns_name(&PAY, svc, "payments.example", &err),
                  -EEXIST);
  CU_ASSERT_STRING_EQUAL(err.field, "private_dns_name");
  /* Cleared with "" (or NULL), and then free for another. */
  CU_ASSERT_EQUAL(set_private_dns_name(&PAY, svc2, "", &err), 0);
  CU_ASSERT_EQUAL(set_private_dns_name(&PAY, svc, "payments.example", &err), 0);
  CU_ASSERT_EQUAL(reg_service_describe(reg, &OPS, svc2, &s, NULL), 0);
  CU_ASSERT_STRING_EQUAL(s.private_dns_name, "");
  reg_service_release(&s);
  close_fresh();
}

static void test_registry_private_dns_config(void)
{
  struct reg_principal p[sizeof(principals) / sizeof(principals[0])];
  struct reg_network n[sizeof(networks) / sizeof(networks[0])];
  static const char *const bad_domain[] = {"a..b"};
  struct reg_config c;
  struct reg_error err;

  open_fresh();
  dns_config(&c, p, n);
  CU_ASSERT_EQUAL(reg_reload(reg, &c, &err), 0);
  c.dns_zone = "bad zone";
  CU_ASSERT_EQUAL(reg_reload(reg, &c, &err), -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "dns");
  c.dns_zone = "nlb.internal";
  p[3].dns_domains = pay_domains; /* a consumer */
  p[3].n_dns_domains = 1;
  CU_ASSERT_EQUAL(reg_reload(reg, &c, &err), -EINVAL);
  CU_ASSERT_STRING_EQUAL(err.field, "principals");
  p[3].n_dns_domains = 0;
  p[1].dns_domains = bad_domain;
  CU_ASSERT_EQUAL(reg_reload(reg, &c, &err), -EINVAL);
  CU_ASSERT(strstr(err.message, "a..b") != NULL);
  close_fresh();
}

static void test_registry_dns_names(void)
{
  struct reg_principal p[sizeof(principals) / sizeof(principals[0])];
  struct reg_network n[sizeof(networks) / sizeof(networks[0])];
  struct reg_endpoint_params ep = {"Pay.V2", "host", NULL, NULL, 0, true};
  struct reg_endpoint_changes off = {.set_private_dns = true};
  struct reg_config c;
  struct reg_endpoint e;
  struct reg_error err;
  char svc[REG_ID_BUF], id[REG_ID_BUF], want[64], long_name[REG_NAME_BUF];

  open_fresh();
  dns_config(&c, p, n);
  CU_ASSERT_EQUAL_FATAL(reg_reload(reg, &c, &err), 0);
  CU_ASSERT_EQUAL_FATAL(
      dns_service(&PAY, "Pay.V2", "api.payments.example", svc, &err), 0);
  /* Available, opted in: three names, in this order. */
  CU_ASSERT_EQUAL_FATAL(reg_endpoint_create(reg, &SHOP, &ep, &e, &err), 0);
  CU_ASSERT_EQUAL_FATAL(e.n_dns_names, 3);
  snprintf(want, sizeof(want), "%s.nlb.internal", e.id);
  CU_ASSERT_STRING_EQUAL(e.dns_names[0], want);
  CU_ASSERT_STRING_EQUAL(e.dns_names[1], "pay.v2.nlb.internal");
  CU_ASSERT_STRING_EQUAL(e.dns_names[2], "api.payments.example");
  CU_ASSERT(e.private_dns);
  CU_ASSERT_STRING_EQUAL(e.private_dns_name, "api.payments.example");
  /* Opting out drops the private name; one modify event. */
  strcpy(id, e.id);
  reg_endpoint_release(&e);
  CU_ASSERT_EQUAL(reg_endpoint_change(reg, &SHOP, id, &off, &e, &err), 0);
  CU_ASSERT(!e.private_dns && e.n_dns_names == 2 &&
            !has_name(&e, "api.payments.example"));
  reg_endpoint_release(&e);
  /* A network without a responder, or a pending endpoint: no names. */
  ep.network = "v6";
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &ep, &e, &err), 0);
  CU_ASSERT_EQUAL(e.n_dns_names, 0);
  reg_endpoint_release(&e);
  ep.network = "host";
  ep.service = "p";
  CU_ASSERT_EQUAL(service(&PAY, "p", true, ALL, 1, 0, NULL), 0);
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &ep, &e, &err), 0);
  CU_ASSERT(e.state == REG_EP_PENDING_ACCEPTANCE && e.n_dns_names == 0);
  reg_endpoint_release(&e);
  /* A service name that is no DNS name (a 64-byte label): EP-ID alone. */
  memset(long_name, 'l', REG_NAME_MAX);
  long_name[REG_NAME_MAX] = '\0';
  CU_ASSERT_EQUAL(dns_service(&PAY, long_name, NULL, NULL, &err), 0);
  ep.service = long_name;
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &ep, &e, &err), 0);
  CU_ASSERT_EQUAL(e.n_dns_names, 1);
  reg_endpoint_release(&e);
  /* Opted in again; then the operator takes pay's grant back. */
  ep.service = "Pay.V2";
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &ep, &e, &err), 0);
  CU_ASSERT(has_name(&e, "api.payments.example"));
  strcpy(id, e.id);
  reg_endpoint_release(&e);
  p[1].n_dns_domains = 0;
  CU_ASSERT_EQUAL(reg_reload(reg, &c, &err), 0);
  CU_ASSERT_EQUAL(reg_endpoint_describe(reg, &SHOP, id, &e, &err), 0);
  CU_ASSERT(e.n_dns_names == 2 && !has_name(&e, "api.payments.example"));
  reg_endpoint_release(&e);
  /* No zone: no names at all. */
  c.dns_zone = NULL;
  CU_ASSERT_EQUAL(reg_reload(reg, &c, &err), 0);
  CU_ASSERT_EQUAL(reg_endpoint_create(reg, &SHOP, &ep, &e, &err), 0);
  CU_ASSERT_EQUAL(e.n_dns_names, 0);
  reg_endpoint_release(&e);
  close_fresh();
}

/* A service's change reaches the change feed: one modify event without an
 * endpoint, seen by its owner and operators, with the rows of its
 * available endpoints as they are now. */
static void test_registry_service_event(void)
{
  struct reg_principal p[sizeof(principals) / sizeof(principals[0])];
  struct reg_network n[sizeof(networks) / sizeof(networks[0])];
  struct reg_config c;
  struct reg_changes ch;
  struct reg_event *ev;
  struct reg_error err;
  char svc[REG_ID_BUF], other[REG_ID_BUF], ep[3][REG_ID_BUF];
  uint64_t seq;
  size_t count;

  open_fresh();
  dns_config(&c, p, n);
  CU_ASSERT_EQUAL_FATAL(reg_reload(reg, &c, &err), 0);
  CU_ASSERT_EQUAL_FATAL(dns_service(&PAY, "a", NULL, svc, &err), 0);
  CU_ASSERT_EQUAL_FATAL(dns_service(&PAY, "b", NULL, other, &err), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep[0], NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "a", "host", NULL, ep[1], NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&SHOP, "b", "host", NULL, ep[2], NULL), 0);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &SHOP, ep[1], NULL, NULL), 0);
  CU_ASSERT_EQUAL(reg_last_seq(reg, &seq), 0);
  CU_ASSERT_EQUAL(set_private_dns_name(&PAY, svc, "api.payments.example", &err),
                  0);
  /* The same value again changes nothing: no event. */
  CU_ASSERT_EQUAL(set_private_dns_name(&PAY, svc, "API.payments.example", &err),
                  0);
  CU_ASSERT_EQUAL(reg_events_after(reg, NULL, seq, 10, &ev, &count, NULL), 0);
  CU_ASSERT_FATAL(count == 1);
  CU_ASSERT(ev[0].type == REG_EVENT_MODIFY && ev[0].endpoint_id[0] == '\0' &&
            strcmp(ev[0].service_id, svc) == 0 &&
            strcmp(ev[0].owner, "pay") == 0 &&
            strcmp(ev[0].principal, "pay") == 0);
  CU_ASSERT(reg_event_visible(&ev[0], &PAY));
  CU_ASSERT(reg_event_visible(&ev[0], &OPS));
  CU_ASSERT(!reg_event_visible(&ev[0], &PAY2));
  CU_ASSERT(!reg_event_visible(&ev[0], &SHOP));
  free(ev);
  /* The feed: ep[0] alone (ep[1] is deleted, ep[2] another service's). */
  CU_ASSERT_EQUAL(reg_changes_read(reg, seq, 100, false, &ch), 0);
  CU_ASSERT_FATAL(ch.n_events == 1 && ch.n_endpoints == 1);
  CU_ASSERT_STRING_EQUAL(ch.endpoints[0].id, ep[0]);
  CU_ASSERT_STRING_EQUAL(ch.endpoints[0].private_dns_name,
                         "api.payments.example");
  CU_ASSERT_EQUAL(ch.endpoints[0].n_dns_names, 2); /* not opted in */
  CU_ASSERT_EQUAL(ch.endpoints[0].n_ports, 2);
  reg_changes_release(&ch);
  /* Two events of the service and one of its endpoint in one read: each
   * row once. */
  CU_ASSERT_EQUAL(set_private_dns_name(&PAY, svc, NULL, &err), 0);
  CU_ASSERT_EQUAL(reg_endpoint_modify(reg, &SHOP, ep[0], NULL, 0, NULL, NULL),
                  0);
  CU_ASSERT_EQUAL(set_private_dns_name(&OPS, svc, "payments.example", &err), 0);
  CU_ASSERT_EQUAL(reg_changes_read(reg, seq, 100, false, &ch), 0);
  CU_ASSERT(ch.n_events == 4 && ch.n_endpoints == 1);
  CU_ASSERT_STRING_EQUAL(ch.events[3].principal, "ops");
  CU_ASSERT_STRING_EQUAL(ch.endpoints[0].private_dns_name, "payments.example");
  reg_changes_release(&ch);
  close_fresh();
}

/* ---- names -------------------------------------------------------------- */

/* Names are one name whatever their case, as DNS compares them: another
 * provider's PAYMENTS is refused while payments exists, with an answer
 * that names neither the service (as it is spelt) nor its owner, and that
 * its owner gets too; names shaped like an ID are refused. */
static void test_registry_names_ignore_case(void)
{
  static const char *const id_shaped[] = {"ep-0123abcd0123abcd0",
                                          "EP-0123ABCD0123ABCD0", "ep-1",
                                          "svc-x", "SVC-0123abcd0123abcd0"};
  struct reg_service_params p = {"payments", "lb1", false, ALL, 1, 0, NULL};
  struct reg_error err, mine;
  struct reg_service s;
  struct reg_endpoint e;
  char svc[REG_ID_BUF], ep[REG_ID_BUF];
  uint8_t h[32];

  open_fresh();
  CU_ASSERT_EQUAL_FATAL(reg_service_create(reg, &PAY, &p, &s, &err), 0);
  strcpy(svc, s.id);
  reg_service_release(&s);
  p.name = "PAYMENTS";
  CU_ASSERT_EQUAL(reg_service_create(reg, &PAY2, &p, NULL, &err), -EEXIST);
  CU_ASSERT_STRING_EQUAL(err.field, "name");
  CU_ASSERT(strstr(err.message, "PAYMENTS") != NULL);
  CU_ASSERT(strstr(err.message, "payments") == NULL);
  CU_ASSERT(strstr(err.message, "pay") == NULL);
  CU_ASSERT(strstr(err.message, svc) == NULL);
  CU_ASSERT_EQUAL(reg_service_create(reg, &PAY, &p, NULL, &mine), -EEXIST);
  CU_ASSERT_STRING_EQUAL(mine.message, err.message);
  /* Found by its name in any case: there is one. */
  CU_ASSERT_EQUAL(reg_service_describe(reg, &PAY, "PayMents", &s, &err), 0);
  CU_ASSERT_STRING_EQUAL(s.id, svc);
  CU_ASSERT_STRING_EQUAL(s.name, "payments");
  reg_service_release(&s);
  CU_ASSERT_EQUAL_FATAL(endpoint(&SHOP, "PAYMENTS", "host", NULL, ep, NULL), 0);
  CU_ASSERT_EQUAL(reg_endpoint_get(reg, ep, &e), 0);
  CU_ASSERT_STRING_EQUAL(e.service_id, svc);
  reg_endpoint_release(&e);
  for (size_t i = 0; i < sizeof(id_shaped) / sizeof(id_shaped[0]); i++) {
    p.name = id_shaped[i];
    CU_ASSERT_EQUAL(reg_service_create(reg, &PAY, &p, NULL, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.field, "name");
  }
  p.name = "ep-gateway"; /* starts like one, is not one */
  CU_ASSERT_EQUAL(reg_service_create(reg, &PAY, &p, NULL, &err), 0);

  /* Principals, the config's and the API's. */
  hash_of(h, 1);
  CU_ASSERT_EQUAL(reg_principal_create(reg, &OPS, "SHOP", REG_ROLE_CONSUMER, h,
                                       "tok-00000000000000001", NULL, NULL,
                                       &err),
                  -EEXIST);
  CU_ASSERT_EQUAL(reg_principal_create(reg, &OPS, "tenant", REG_ROLE_CONSUMER,
                                       h, "tok-00000000000000001", NULL, NULL,
                                       &err),
                  0);
  hash_of(h, 2);
  CU_ASSERT_EQUAL(reg_principal_create(reg, &OPS, "TENANT", REG_ROLE_PROVIDER,
                                       h, "tok-00000000000000002", NULL, NULL,
                                       &err),
                  -EEXIST);
  CU_ASSERT_STRING_EQUAL(err.field, "name");
  CU_ASSERT_EQUAL(reg_principal_create(reg, &OPS, "NLBD", REG_ROLE_CONSUMER, h,
                                       "tok-00000000000000002", NULL, NULL,
                                       &err),
                  -EINVAL);
  /* A config naming an API principal in another case, or one of its own
   * twice, is refused. */
  {
    struct reg_principal more[6];
    struct reg_config c = config;

    memcpy(more, principals, sizeof(principals));
    more[5] = (struct reg_principal){"Tenant", REG_ROLE_CONSUMER, NULL, 0};
    c.principals = more;
    c.n_principals = 6;
    CU_ASSERT_EQUAL(reg_reload(reg, &c, &err), -EEXIST);
    CU_ASSERT(strstr(err.message, "Tenant") != NULL);
    more[5].name = "OPS";
    CU_ASSERT_EQUAL(reg_reload(reg, &c, &err), -EINVAL);
  }
  close_fresh();
}

/* A principal deleted and made again under its name starts empty: none of
 * the old one's endpoints, events or permissions. */
static void test_registry_principal_made_again(void)
{
  static const struct reg_actor T1 = {"tenant1", REG_ROLE_CONSUMER};
  static const char *const only_t1[] = {"tenant1"};
  struct reg_endpoint e, *v;
  struct reg_service *sv;
  struct reg_event *ev;
  struct reg_error err;
  char svc[REG_ID_BUF], ep[REG_ID_BUF];
  char **pr;
  uint8_t h[32];
  size_t n;

  open_fresh();
  hash_of(h, 1);
  CU_ASSERT_EQUAL_FATAL(
      reg_principal_create(reg, &OPS, "tenant1", REG_ROLE_CONSUMER, h,
                           "tok-00000000000000001", NULL, NULL, &err),
      0);
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "a", false, only_t1, 1, 0, svc), 0);
  CU_ASSERT_EQUAL_FATAL(endpoint(&T1, "a", "host", NULL, ep, NULL), 0);
  CU_ASSERT_EQUAL(reg_endpoint_delete(reg, &T1, ep, NULL, NULL), 0);
  CU_ASSERT_EQUAL(reg_events_after(reg, &T1, 0, 100, &ev, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 2); /* connect, delete */
  free(ev);
  CU_ASSERT_EQUAL(reg_principal_delete(reg, &OPS, "tenant1", &err), 0);

  hash_of(h, 2);
  CU_ASSERT_EQUAL_FATAL(
      reg_principal_create(reg, &OPS, "tenant1", REG_ROLE_CONSUMER, h,
                           "tok-00000000000000002", NULL, NULL, &err),
      0);
  CU_ASSERT_EQUAL(reg_endpoint_list(reg, &T1, NULL, NULL, &v, &n, tok, NULL),
                  0);
  CU_ASSERT_EQUAL(n, 0);
  reg_endpoints_free(v, n);
  CU_ASSERT_EQUAL(reg_endpoint_describe(reg, &T1, ep, &e, NULL), -ENOENT);
  CU_ASSERT_EQUAL(reg_events_after(reg, &T1, 0, 100, &ev, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 0);
  free(ev);
  CU_ASSERT_EQUAL(reg_available_services(reg, &T1, NULL, &sv, &n, tok, NULL),
                  0);
  CU_ASSERT_EQUAL(n, 0);
  reg_services_free(sv, n);
  CU_ASSERT_EQUAL(endpoint(&T1, "a", "host", NULL, NULL, NULL), -ENOENT);
  CU_ASSERT_EQUAL(reg_permissions_get(reg, &PAY, svc, &pr, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 0);
  reg_strings_free(pr, n);
  /* The operator still sees what the old one did. */
  CU_ASSERT_EQUAL(reg_events_after(reg, &OPS, 0, 100, &ev, &n, NULL), 0);
  CU_ASSERT(n > 2 && ev[2].type == REG_EVENT_CONNECT &&
            strcmp(ev[2].consumer, "tenant1") == 0);
  free(ev);
  /* What the new one does is its own, after a restart too. */
  CU_ASSERT_EQUAL(reg_permissions_modify(reg, &PAY, svc, only_t1, 1, NULL, 0,
                                         false, NULL, NULL, NULL),
                  0);
  CU_ASSERT_EQUAL(endpoint(&T1, "a", "host", NULL, NULL, NULL), 0);
  reopen();
  CU_ASSERT_EQUAL(reg_events_after(reg, &T1, 0, 100, &ev, &n, NULL), 0);
  CU_ASSERT(n == 1 && ev[0].type == REG_EVENT_CONNECT);
  free(ev);
  CU_ASSERT_EQUAL(reg_endpoint_list(reg, &T1, NULL, NULL, &v, &n, tok, NULL),
                  0);
  CU_ASSERT_EQUAL(n, 1);
  reg_endpoints_free(v, n);
  close_fresh();
}

/* An API network's netns passes the config's check, with its message (one
 * line): not ".", "..", a leading '-', a space or a control byte. */
static void test_registry_netns_names(void)
{
  static const char *const bad[] = {"..",   ".",    "-x", "a b",
                                    "a\nb", "../x", "a/b"};
  static const struct reg_netns_mapping dash[] = {{"vpc9", "-x"}};
  struct reg_network_params p = {"vpc9", "10.9.0.0/30", NULL, NULL, 0};
  struct reg_config c = config;
  struct reg_error err;

  open_fresh();
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    p.netns = bad[i];
    CU_ASSERT_EQUAL(reg_network_create(reg, &OPS, &p, NULL, &err), -EINVAL);
    CU_ASSERT(strstr(err.message, "is not a namespace name") != NULL);
    CU_ASSERT_PTR_NULL(strchr(err.message, '\n'));
  }
  CU_ASSERT(strstr(err.message, "netns \"a/b\"") != NULL);
  p.netns = "a\nb";
  CU_ASSERT_EQUAL(reg_network_create(reg, &OPS, &p, NULL, &err), -EINVAL);
  CU_ASSERT(strstr(err.message, "netns \"a\\nb\"") != NULL);
  p.netns = "ns-9.a_b";
  CU_ASSERT_EQUAL(reg_network_create(reg, &OPS, &p, NULL, &err), 0);
  /* node.networks too. */
  c.node_networks = dash;
  c.n_node_networks = 1;
  CU_ASSERT_EQUAL(reg_reload(reg, &c, &err), -EINVAL);
  CU_ASSERT(strstr(err.message, "is not a namespace name") != NULL);
  close_fresh();
}

/* SQL run on the store under test, beside the registry (closed). */
static void store_exec(const char *sqlite_sql, const char *pg_sql)
{
  if (pg()) {
    PGconn *conn = PQconnectdb(pg());
    PGresult *res = PQexec(conn, pg_sql);

    CU_ASSERT_EQUAL(PQresultStatus(res), PGRES_COMMAND_OK);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
      fprintf(stderr, "\n  %s", PQerrorMessage(conn));
    PQclear(res);
    PQfinish(conn);
  } else {
    sqlite3 *db;
    char *msg = NULL;

    CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
    CU_ASSERT_EQUAL(sqlite3_exec(db, sqlite_sql, NULL, NULL, &msg), SQLITE_OK);
    if (msg)
      fprintf(stderr, "\n  %s", msg);
    sqlite3_free(msg);
    sqlite3_close(db);
  }
}

/* A store from before names ignored case is migrated, each principal
 * after the events of earlier ones of its name; one holding two names
 * that differ only in case is refused, naming them, and left as it was. */
static void test_registry_upgrade_names(void)
{
  static const struct reg_actor T9 = {"t9", REG_ROLE_CONSUMER};
  struct reg_event *ev;
  struct reg_error err;
  uint8_t h[32];
  size_t n;

  open_fresh();
  hash_of(h, 9);
  CU_ASSERT_EQUAL_FATAL(reg_principal_create(reg, &OPS, "t9", REG_ROLE_CONSUMER,
                                             h, "tok-00000000000000009", NULL,
                                             NULL, &err),
                        0);
  CU_ASSERT_EQUAL_FATAL(service(&PAY, "payments", false, ALL, 1, 0, NULL), 0);
  CU_ASSERT_EQUAL(endpoint(&T9, "payments", "host", NULL, NULL, NULL), 0);
  reg_close(reg);
  reg = NULL;
  /* The schema before, t9 made again after that connect (as the old code
   * let it be) and PAYMENTS beside payments. */
  store_exec("DROP INDEX services_name_nocase;"
             "DROP INDEX principals_name_nocase;"
             "ALTER TABLE principals DROP COLUMN since_seq;"
             "INSERT INTO events (time, type, service_id, endpoint_id,"
             "  principal, owner, consumer, state, subject)"
             "  VALUES (0, 'principal_create', '', '', 'ops', '', '',"
             "  'pendingAcceptance', 't9');"
             "INSERT INTO services (id, name, owner, load_balancer,"
             "  acceptance_required, connection_limit, created_at)"
             "  VALUES ('svc-00000000000000001', 'PAYMENTS', 'pay2', 'lb1',"
             "  0, 0, 0);"
             "PRAGMA user_version = 5",
             "DROP INDEX services_name_nocase;"
             "DROP INDEX principals_name_nocase;"
             "ALTER TABLE principals DROP COLUMN since_seq;"
             "UPDATE nlb_counter SET last_seq = last_seq + 1;"
             "INSERT INTO events (seq, time, type, principal, state,"
             "  subject) SELECT last_seq, 0, 'principal_create', 'ops',"
             "  'pendingAcceptance', 't9' FROM nlb_counter;"
             "INSERT INTO services (id, name, owner, load_balancer,"
             "  acceptance_required, connection_limit, created_at)"
             "  VALUES ('svc-00000000000000001', 'PAYMENTS', 'pay2', 'lb1',"
             "  false, 0, 0);"
             "UPDATE nlb_schema SET version = 3");
  CU_ASSERT_EQUAL(open_store(&reg, &config, &err), -EIO);
  CU_ASSERT(strstr(err.message, "differ only in case") != NULL);
  CU_ASSERT(strstr(err.message, "payments, PAYMENTS") != NULL ||
            strstr(err.message, "PAYMENTS, payments") != NULL);
  /* Its owner deletes one (with the nlb that made them): the upgrade goes
   * through. */
  store_exec("DELETE FROM services WHERE id = 'svc-00000000000000001'",
             "DELETE FROM services WHERE id = 'svc-00000000000000001'");
  CU_ASSERT_EQUAL_FATAL(open_store(&reg, &config, &err), 0);
  CU_ASSERT_EQUAL(reg_schema_version(reg), pg() ? 4 : 6);
  CU_ASSERT_EQUAL(reg_events_after(reg, &T9, 0, 100, &ev, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 0);
  free(ev);
  CU_ASSERT_EQUAL(reg_events_after(reg, &OPS, 0, 100, &ev, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 4);
  free(ev);
  CU_ASSERT_EQUAL(service(&PAY2, "PAYMENTS", false, ALL, 1, 0, NULL), -EEXIST);
  close_fresh();
}

/* A service named like an endpoint ID before such names were refused
 * keeps its name but has no SERVICE.ZONE: that name is an endpoint's. */
static void test_registry_legacy_id_shaped_name(void)
{
  struct reg_principal p[sizeof(principals) / sizeof(principals[0])];
  struct reg_network n[sizeof(networks) / sizeof(networks[0])];
  struct reg_endpoint_params ep = {NULL, "host", NULL, NULL, 0, false};
  struct reg_config c;
  struct reg_endpoint e;
  struct reg_error err;
  char svc[REG_ID_BUF], want[64];

  open_fresh();
  dns_config(&c, p, n);
  CU_ASSERT_EQUAL_FATAL(reg_reload(reg, &c, &err), 0);
  CU_ASSERT_EQUAL_FATAL(dns_service(&PAY, "legacy", NULL, svc, &err), 0);
  reg_close(reg);
  reg = NULL;
  store_exec("UPDATE services SET name = 'EP-0123abcd0123abcd0'",
             "UPDATE services SET name = 'EP-0123abcd0123abcd0'");
  CU_ASSERT_EQUAL_FATAL(open_store(&reg, &c, &err), 0);
  ep.service = svc;
  CU_ASSERT_EQUAL_FATAL(reg_endpoint_create(reg, &SHOP, &ep, &e, &err), 0);
  snprintf(want, sizeof(want), "%s.nlb.internal", e.id);
  CU_ASSERT_STRING_EQUAL(e.service, "EP-0123abcd0123abcd0");
  CU_ASSERT(e.n_dns_names == 1 && strcmp(e.dns_names[0], want) == 0);
  reg_endpoint_release(&e);
  close_fresh();
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_registry_schema_version),
      NLB_UNIT_CASE(test_registry_service_create),
      NLB_UNIT_CASE(test_registry_service_visibility),
      NLB_UNIT_CASE(test_registry_service_modify),
      NLB_UNIT_CASE(test_registry_permissions),
      NLB_UNIT_CASE(test_registry_endpoint_create_checks),
      NLB_UNIT_CASE(test_registry_transitions_legal),
      NLB_UNIT_CASE(test_registry_transitions_illegal),
      NLB_UNIT_CASE(test_registry_role_checks),
      NLB_UNIT_CASE(test_registry_connections_by_state),
      NLB_UNIT_CASE(test_registry_service_delete),
      NLB_UNIT_CASE(test_registry_connection_limit),
      NLB_UNIT_CASE(test_registry_reconcile),
      NLB_UNIT_CASE(test_registry_address_allocation),
      NLB_UNIT_CASE(test_registry_address_exhaustion),
      NLB_UNIT_CASE(test_registry_address_ipv6),
      NLB_UNIT_CASE(test_registry_same_address_two_networks),
      NLB_UNIT_CASE(test_registry_expiry),
      NLB_UNIT_CASE(test_registry_events),
      NLB_UNIT_CASE(test_registry_events_prune),
      NLB_UNIT_CASE(test_registry_reopen),
      NLB_UNIT_CASE(test_registry_endpoint_modify),
      NLB_UNIT_CASE(test_registry_reload),
      NLB_UNIT_CASE(test_registry_helpers),
      NLB_UNIT_CASE(test_registry_ids_unique),
      NLB_UNIT_CASE(test_registry_pages),
      NLB_UNIT_CASE(test_registry_address_reuse),
      NLB_UNIT_CASE(test_registry_events_visible),
      NLB_UNIT_CASE(test_registry_targets),
      NLB_UNIT_CASE(test_registry_nodes),
      NLB_UNIT_CASE(test_registry_placements),
      NLB_UNIT_CASE(test_registry_placements_closed),
      NLB_UNIT_CASE(test_registry_changes),
      NLB_UNIT_CASE(test_registry_principals_tokens),
      NLB_UNIT_CASE(test_registry_networks_api),
      NLB_UNIT_CASE(test_registry_service_quota),
      NLB_UNIT_CASE(test_registry_endpoints_prune),
      NLB_UNIT_CASE(test_registry_private_dns_name),
      NLB_UNIT_CASE(test_registry_private_dns_config),
      NLB_UNIT_CASE(test_registry_dns_names),
      NLB_UNIT_CASE(test_registry_service_event),
      NLB_UNIT_CASE(test_registry_names_ignore_case),
      NLB_UNIT_CASE(test_registry_principal_made_again),
      NLB_UNIT_CASE(test_registry_netns_names),
      NLB_UNIT_CASE(test_registry_upgrade_names),
      NLB_UNIT_CASE(test_registry_legacy_id_shaped_name),
  };
  return nlb_unit_run("registry", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
