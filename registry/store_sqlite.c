/* The SQLite store: one node. WAL, synchronous=FULL, foreign keys, every
 * statement prepared once at open, and a lock on the database file that
 * keeps a second nlbd off it. States and event types are stored by name so
 * that the database reads well in the sqlite3 shell and does not depend on
 * the order of the C enums. Writers are serialized by SQLite itself (BEGIN
 * IMMEDIATE takes the file's write lock); seq is the events table's
 * AUTOINCREMENT rowid, taken under that lock, so it has no gaps and grows
 * in commit order. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "nlb/registry-store.h"
#include "store-int.h"

#define LIVE "('pendingAcceptance','available')"

/* Each entry brings the schema from version i to i + 1. Never edit one that
 * has shipped: append a new one. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE services ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  owner TEXT NOT NULL,"
    "  load_balancer TEXT NOT NULL,"
    "  acceptance_required INTEGER NOT NULL,"
    "  connection_limit INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX services_owner ON services(owner, created_at);"
    "CREATE TABLE service_principals ("
    "  service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,"
    "  principal TEXT NOT NULL,"
    "  PRIMARY KEY (service_id, principal)) WITHOUT ROWID;"
    "CREATE INDEX service_principals_principal"
    "  ON service_principals(principal);"
    "CREATE TABLE endpoints ("
    "  id TEXT PRIMARY KEY,"
    "  service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,"
    "  consumer TEXT NOT NULL,"
    "  network TEXT NOT NULL,"
    "  address TEXT NOT NULL,"
    "  address_key BLOB NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('pendingAcceptance','available',"
    "    'rejected','deleted','expired','failed')),"
    "  reason TEXT NOT NULL DEFAULT '',"
    "  allowed_sources TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE INDEX endpoints_service ON endpoints(service_id, created_at);"
    "CREATE INDEX endpoints_consumer ON endpoints(consumer, created_at);"
    "CREATE INDEX endpoints_state ON endpoints(state, created_at);"
    /* One live endpoint per address per network, whatever registry.c does. */
    "CREATE UNIQUE INDEX endpoints_live_address"
    "  ON endpoints(network, address_key) WHERE state IN " LIVE ";"
    "CREATE TABLE events ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time INTEGER NOT NULL,"
    "  type TEXT NOT NULL,"
    "  service_id TEXT NOT NULL,"
    "  endpoint_id TEXT NOT NULL,"
    "  principal TEXT NOT NULL,"
    "  owner TEXT NOT NULL,"
    "  consumer TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  reason TEXT NOT NULL DEFAULT '');",
    /* 1 -> 2: events are pruned by age (registry.event_retention). */
    "CREATE INDEX events_time ON events(time);",
    /* 2 -> 3: the change feed carries targets and nodes; placements, run-time
     * targets, nodes and address hints; lists page by (created_at, id) and
     * filter by state through an index; streams read a principal's events
     * through an index. */
    "ALTER TABLE events ADD COLUMN target_group TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE events ADD COLUMN target TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE events ADD COLUMN node TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX events_owner ON events(owner, seq) WHERE owner != '';"
    "CREATE INDEX events_consumer ON events(consumer, seq)"
    "  WHERE consumer != '';"
    "CREATE TABLE placements ("
    "  endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,"
    "  node TEXT NOT NULL,"
    "  open INTEGER NOT NULL,"
    "  reason TEXT NOT NULL DEFAULT '',"
    "  updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (endpoint_id, node)) WITHOUT ROWID;"
    "CREATE TABLE targets ("
    "  target_group TEXT NOT NULL,"
    "  address TEXT NOT NULL,"
    "  weight INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (target_group, address)) WITHOUT ROWID;"
    "CREATE TABLE nodes ("
    "  name TEXT PRIMARY KEY,"
    "  version TEXT NOT NULL DEFAULT '',"
    "  started_at INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL,"
    "  applied_seq INTEGER NOT NULL DEFAULT 0,"
    "  draining INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE network_hints ("
    "  network TEXT PRIMARY KEY,"
    "  next_key BLOB NOT NULL);"
    "DROP INDEX endpoints_service;"
    "DROP INDEX endpoints_consumer;"
    "DROP INDEX endpoints_state;"
    "DROP INDEX services_owner;"
    "CREATE INDEX services_page ON services(created_at, id);"
    "CREATE INDEX services_owner ON services(owner, created_at, id);"
    "CREATE INDEX endpoints_page ON endpoints(created_at, id);"
    "CREATE INDEX endpoints_service ON endpoints(service_id, created_at, id);"
    "CREATE INDEX endpoints_service_state"
    "  ON endpoints(service_id, state, created_at, id);"
    "CREATE INDEX endpoints_consumer ON endpoints(consumer, created_at, id);"
    "CREATE INDEX endpoints_consumer_state"
    "  ON endpoints(consumer, state, created_at, id);"
    "CREATE INDEX endpoints_state ON endpoints(state, created_at, id);",
    /* 3 -> 4: principals, tokens and networks made through the API; events
     * name them; endpoints in final states are pruned by age. */
    "CREATE TABLE principals ("
    "  name TEXT PRIMARY KEY,"
    "  role TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE tokens ("
    "  id TEXT PRIMARY KEY,"
    "  principal TEXT NOT NULL REFERENCES principals(name) ON DELETE CASCADE,"
    "  sha256 BLOB NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL DEFAULT 0,"
    "  last_used_at INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX tokens_principal ON tokens(principal, created_at);"
    "CREATE TABLE networks ("
    "  name TEXT PRIMARY KEY,"
    "  range TEXT NOT NULL,"
    "  netns TEXT NOT NULL DEFAULT '',"
    "  principals TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL);"
    "ALTER TABLE events ADD COLUMN subject TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE events ADD COLUMN token_id TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE nodes ADD COLUMN networks TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX endpoints_final ON endpoints(updated_at)"
    "  WHERE state IN ('rejected','deleted','expired','failed');",
    /* 4 -> 5: private DNS names. A service's own host name (lower case,
     * "" = none, unique among services) and each endpoint's opt-in. */
    "ALTER TABLE services ADD COLUMN private_dns_name TEXT NOT NULL"
    "  DEFAULT '';"
    "CREATE UNIQUE INDEX services_private_dns_name"
    "  ON services(private_dns_name) WHERE private_dns_name != '';"
    "ALTER TABLE endpoints ADD COLUMN private_dns INTEGER NOT NULL"
    "  DEFAULT 0;",
    /* 5 -> 6: names unique as DNS compares them, ignoring ASCII case
     * (refuse_case_twins runs first); each principal's since_seq, after
     * the events of an earlier principal of its name. */
    "CREATE UNIQUE INDEX services_name_nocase ON services(lower(name));"
    "CREATE UNIQUE INDEX principals_name_nocase ON principals(lower(name));"
    "ALTER TABLE principals ADD COLUMN since_seq INTEGER NOT NULL DEFAULT 0;"
    /* One pass over the events, not one per principal. */
    "CREATE INDEX events_made ON events(subject, seq)"
    "  WHERE type = 'principal_create';"
    "UPDATE principals SET since_seq = coalesce((SELECT max(seq) FROM events"
    "  WHERE type = 'principal_create' AND subject = principals.name), 0);"
    "DROP INDEX events_made;",
};

/* The migration whose unique indexes ignore case. */
#define NOCASE_MIGRATION 5

#define N_MIGRATIONS (int)(sizeof(migrations) / sizeof(migrations[0]))

#define SERVICE_COLUMNS                                                        \
  "id, name, owner, load_balancer, acceptance_required, connection_limit, "    \
  "created_at, private_dns_name"
#define ENDPOINT_COLUMNS                                                       \
  "e.id, e.service_id, s.name, s.owner, s.load_balancer, e.consumer, "         \
  "e.network, e.address, e.state, e.reason, e.allowed_sources, "               \
  "e.created_at, e.updated_at, (SELECT group_concat(p.node || char(9) || "     \
  "p.open || char(9) || p.updated_at || char(9) || p.reason, char(10)) "       \
  "FROM placements p WHERE p.endpoint_id = e.id), "                            \
  "(SELECT n.netns FROM networks n WHERE n.name = e.network), "                \
  "s.private_dns_name, e.private_dns"
#define ENDPOINT_FROM                                                          \
  "SELECT " ENDPOINT_COLUMNS " FROM endpoints e"                               \
  " JOIN services s ON s.id = e.service_id"
#define EVENT_COLUMNS                                                          \
  "seq, time, type, service_id, endpoint_id, principal, owner, consumer, "     \
  "state, reason, target_group, target, node, subject, token_id"
#define PAGE_AFTER(t) " AND (" t "created_at, " t "id) > (?8, ?9)"
#define PAGE_ORDER(t) " ORDER BY " t "created_at, " t "id LIMIT ?10"

enum stmt_id {
  BEGIN_READ,
  BEGIN_WRITE,
  COMMIT,
  ROLLBACK,
  SVC_INSERT,
  SVC_GET,
  SVC_LIST_ALL,
  SVC_LIST_OWNER,
  SVC_LIST_CONSUMER,
  SVC_UPDATE,
  SVC_DELETE,
  SVC_PRINCIPALS,
  SVC_PRINCIPAL_ADD,
  SVC_PRINCIPALS_CLEAR,
  SVC_COUNT_LIVE,
  EP_INSERT,
  EP_GET,
  EP_LIST_ALL,
  EP_LIST_STATE,
  EP_LIST_SERVICE,
  EP_LIST_SERVICE_STATE,
  EP_LIST_CONSUMER,
  EP_LIST_CONSUMER_STATE,
  EP_UPDATE,
  EP_COUNT_LIVE,
  EP_COUNTS,
  ADDR_TAKEN,
  HINT_GET,
  HINT_SET,
  PENDING_BEFORE,
  PLACEMENT_PUT,
  TARGET_INSERT,
  TARGET_GET,
  TARGET_DELETE,
  TARGET_LIST,
  NODE_START,
  NODE_BEAT,
  NODE_LIST,
  NODE_DRAIN,
  EP_PRUNE,
  SVC_COUNT_OWNER,
  PRINCIPAL_INSERT,
  PRINCIPAL_GET,
  PRINCIPAL_LIST,
  PRINCIPAL_DELETE,
  PRINCIPAL_FORGET_ENDPOINTS,
  PRINCIPAL_FORGET_GRANTS,
  PRINCIPAL_SERVICES,
  PRINCIPAL_ENDPOINTS,
  TOKEN_INSERT,
  TOKEN_GET,
  TOKEN_LIST,
  TOKEN_LIST_ALL,
  TOKEN_DELETE,
  TOKEN_TOUCH,
  NETWORK_INSERT,
  NETWORK_GET,
  NETWORK_LIST,
  NETWORK_DELETE,
  NETWORK_COUNT_LIVE,
  EV_INSERT,
  EV_AFTER,
  EV_AFTER_OWNER,
  EV_AFTER_CONSUMER,
  EV_LAST,
  EV_FIRST,
  EV_KEEP_FROM,
  EV_PRUNE,
  N_STMTS,
};

/* Lists bind the filter at ?1 and ?2 and the page at ?8, ?9, ?10. */
static const char *const stmt_sql[N_STMTS] = {
    [BEGIN_READ] = "BEGIN",
    [BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [COMMIT] = "COMMIT",
    [ROLLBACK] = "ROLLBACK",
    [SVC_INSERT] = "INSERT INTO services (" SERVICE_COLUMNS
                   ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [SVC_GET] = "SELECT " SERVICE_COLUMNS " FROM services WHERE id = ?1"
                " UNION ALL SELECT " SERVICE_COLUMNS
                " FROM services WHERE lower(name) = lower(?1) LIMIT 1",
    /* One statement per filter, so each can use its index. */
    [SVC_LIST_ALL] = "SELECT " SERVICE_COLUMNS " FROM services"
                     " WHERE 1" PAGE_AFTER("") PAGE_ORDER(""),
    [SVC_LIST_OWNER] = "SELECT " SERVICE_COLUMNS " FROM services"
                       " WHERE owner = ?1" PAGE_AFTER("") PAGE_ORDER(""),
    [SVC_LIST_CONSUMER] =
        "SELECT " SERVICE_COLUMNS " FROM services"
        " WHERE id IN (SELECT service_id FROM"
        " service_principals WHERE principal IN (?2, '*'))" PAGE_AFTER("")
            PAGE_ORDER(""),
    [SVC_UPDATE] = "UPDATE services SET acceptance_required = ?2,"
                   " connection_limit = ?3, private_dns_name = ?4"
                   " WHERE id = ?1",
    [SVC_DELETE] = "DELETE FROM services WHERE id = ?1",
    [SVC_PRINCIPALS] = "SELECT principal FROM service_principals"
                       " WHERE service_id = ?1 ORDER BY principal",
    [SVC_PRINCIPAL_ADD] = "INSERT OR IGNORE INTO service_principals"
                          " (service_id, principal) VALUES (?1, ?2)",
    [SVC_PRINCIPALS_CLEAR] =
        "DELETE FROM service_principals WHERE service_id = ?1",
    [SVC_COUNT_LIVE] = "SELECT count(*) FROM endpoints WHERE service_id = ?1"
                       " AND state IN " LIVE,
    [EP_INSERT] = "INSERT INTO endpoints (id, service_id, consumer, network,"
                  " address, address_key, state, reason, allowed_sources,"
                  " created_at, updated_at, private_dns)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,"
                  " ?12)",
    [EP_GET] = ENDPOINT_FROM " WHERE e.id = ?1",
    [EP_LIST_ALL] = ENDPOINT_FROM " WHERE 1" PAGE_AFTER("e.") PAGE_ORDER("e."),
    [EP_LIST_STATE] =
        ENDPOINT_FROM " WHERE e.state = ?2" PAGE_AFTER("e.") PAGE_ORDER("e."),
    [EP_LIST_SERVICE] = ENDPOINT_FROM
    " WHERE e.service_id = ?1" PAGE_AFTER("e.") PAGE_ORDER("e."),
    [EP_LIST_SERVICE_STATE] = ENDPOINT_FROM
    " WHERE e.service_id = ?1 AND e.state = ?2" PAGE_AFTER("e.")
        PAGE_ORDER("e."),
    [EP_LIST_CONSUMER] = ENDPOINT_FROM " WHERE e.consumer = ?1" PAGE_AFTER("e.")
        PAGE_ORDER("e."),
    [EP_LIST_CONSUMER_STATE] = ENDPOINT_FROM
    " WHERE e.consumer = ?1 AND e.state = ?2" PAGE_AFTER("e.") PAGE_ORDER("e."),
    [EP_UPDATE] = "UPDATE endpoints SET state = ?2, reason = ?3,"
                  " allowed_sources = ?4, updated_at = ?5, private_dns = ?6"
                  " WHERE id = ?1",
    [EP_COUNT_LIVE] = "SELECT count(*) FROM endpoints WHERE service_id = ?1"
                      " AND consumer = ?2 AND state IN " LIVE,
    [EP_COUNTS] = "SELECT s.name, e.state, count(*) FROM endpoints e"
                  " JOIN services s ON s.id = e.service_id"
                  " GROUP BY e.service_id, e.state",
    [ADDR_TAKEN] = "SELECT 1 FROM endpoints WHERE network = ?1"
                   " AND address_key = ?2 AND state IN " LIVE,
    [HINT_GET] = "SELECT next_key FROM network_hints WHERE network = ?1",
    [HINT_SET] = "INSERT OR REPLACE INTO network_hints (network, next_key)"
                 " VALUES (?1, ?2)",
    [PENDING_BEFORE] = ENDPOINT_FROM " WHERE e.state = 'pendingAcceptance'"
                                     " AND e.created_at <= ?1"
                                     " ORDER BY e.created_at, e.id LIMIT ?2",
    [PLACEMENT_PUT] = "INSERT OR REPLACE INTO placements (endpoint_id, node,"
                      " open, reason, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    [TARGET_INSERT] = "INSERT INTO targets (target_group, address, weight,"
                      " created_at) VALUES (?1, ?2, ?3, ?4)",
    [TARGET_GET] = "SELECT target_group, address, weight, created_at"
                   " FROM targets WHERE target_group = ?1 AND address = ?2",
    [TARGET_DELETE] =
        "DELETE FROM targets WHERE target_group = ?1 AND address = ?2",
    [TARGET_LIST] = "SELECT target_group, address, weight, created_at"
                    " FROM targets ORDER BY target_group, created_at",
    [NODE_START] = "INSERT OR REPLACE INTO nodes (name, version, started_at,"
                   " last_seen, applied_seq, draining, networks)"
                   " VALUES (?1, ?2, ?3, ?3, ?4, 0, ?5)",
    [NODE_BEAT] = "UPDATE nodes SET version = ?2, last_seen = ?3,"
                  " applied_seq = ?4, networks = ?5 WHERE name = ?1",
    [NODE_LIST] = "SELECT name, version, started_at, last_seen, applied_seq,"
                  " draining, networks FROM nodes ORDER BY name",
    [NODE_DRAIN] = "UPDATE nodes SET draining = 1 WHERE name = ?1",
    [EP_PRUNE] = "DELETE FROM endpoints WHERE id IN (SELECT id FROM endpoints"
                 " WHERE state IN ('rejected','deleted','expired','failed')"
                 " AND updated_at < ?1 ORDER BY updated_at LIMIT ?2)",
    [SVC_COUNT_OWNER] = "SELECT count(*) FROM services WHERE owner = ?1",
    [PRINCIPAL_INSERT] = "INSERT INTO principals (name, role, created_at,"
                         " since_seq) VALUES (?1, ?2, ?3, ?4)",
    [PRINCIPAL_GET] = "SELECT name, role, created_at, since_seq"
                      " FROM principals WHERE name = ?1",
    [PRINCIPAL_LIST] = "SELECT name, role, created_at, since_seq"
                       " FROM principals ORDER BY name",
    [PRINCIPAL_DELETE] = "DELETE FROM principals WHERE name = ?1",
    [PRINCIPAL_FORGET_ENDPOINTS] =
        "DELETE FROM endpoints WHERE consumer = ?1 AND state NOT IN " LIVE,
    [PRINCIPAL_FORGET_GRANTS] =
        "DELETE FROM service_principals WHERE principal = ?1",
    [PRINCIPAL_SERVICES] = "SELECT count(*) FROM services WHERE owner = ?1",
    [PRINCIPAL_ENDPOINTS] = "SELECT count(*) FROM endpoints WHERE consumer = ?1"
                            " AND state IN " LIVE,
    [TOKEN_INSERT] = "INSERT INTO tokens (id, principal, sha256, created_at,"
                     " expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    [TOKEN_GET] = "SELECT t.id, t.principal, p.role, t.sha256, t.created_at,"
                  " t.expires_at, t.last_used_at FROM tokens t"
                  " JOIN principals p ON p.name = t.principal WHERE t.id = ?1",
    [TOKEN_LIST] = "SELECT t.id, t.principal, p.role, t.sha256, t.created_at,"
                   " t.expires_at, t.last_used_at FROM tokens t"
                   " JOIN principals p ON p.name = t.principal"
                   " WHERE t.principal = ?1 ORDER BY t.created_at, t.id",
    [TOKEN_LIST_ALL] =
        "SELECT t.id, t.principal, p.role, t.sha256,"
        " t.created_at, t.expires_at, t.last_used_at"
        " FROM tokens t JOIN principals p ON p.name = t.principal"
        " ORDER BY t.created_at, t.id",
    [TOKEN_DELETE] = "DELETE FROM tokens WHERE id = ?1",
    [TOKEN_TOUCH] = "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1"
                    " AND last_used_at < ?2",
    [NETWORK_INSERT] = "INSERT INTO networks (name, range, netns, principals,"
                       " created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    [NETWORK_GET] = "SELECT name, range, netns, principals, created_at"
                    " FROM networks WHERE name = ?1",
    [NETWORK_LIST] = "SELECT name, range, netns, principals, created_at"
                     " FROM networks ORDER BY name",
    [NETWORK_DELETE] = "DELETE FROM networks WHERE name = ?1",
    [NETWORK_COUNT_LIVE] = "SELECT count(*) FROM endpoints WHERE network = ?1"
                           " AND state IN " LIVE,
    [EV_INSERT] = "INSERT INTO events (time, type, service_id, endpoint_id,"
                  " principal, owner, consumer, state, reason, target_group,"
                  " target, node, subject, token_id)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                  " ?13, ?14)",
    [EV_AFTER] = "SELECT " EVENT_COLUMNS " FROM events WHERE seq > ?1"
                 " ORDER BY seq LIMIT ?2",
    [EV_AFTER_OWNER] = "SELECT " EVENT_COLUMNS " FROM events"
                       " WHERE owner = ?3 AND owner != '' AND seq > ?1"
                       " ORDER BY seq LIMIT ?2",
    [EV_AFTER_CONSUMER] = "SELECT " EVENT_COLUMNS " FROM events"
                          " WHERE consumer = ?3 AND consumer != ''"
                          " AND seq > ?1 ORDER BY seq LIMIT ?2",
    /* AUTOINCREMENT's own counter: pruning every event must not bring seq
     * back to 0. */
    [EV_LAST] = "SELECT coalesce((SELECT seq FROM sqlite_sequence"
                " WHERE name = 'events'), 0)",
    [EV_FIRST] = "SELECT min(seq) FROM events",
    [EV_KEEP_FROM] = "SELECT min(seq) FROM events WHERE time >= ?1",
    [EV_PRUNE] = "DELETE FROM events WHERE seq < ?1",
};

struct reg_store {
  sqlite3 *db;
  sqlite3_stmt *stmt[N_STMTS];
  int version;
  int lock_fd;
  uint32_t statement_timeout_ms; /* busy wait outside transactions */
  char errmsg[256];
};

/* Records the failure and maps it to an errno. */
static int fail(struct reg_store *store, int rc)
{
  snprintf(store->errmsg, sizeof(store->errmsg), "sqlite: %s (%d)",
           sqlite3_errmsg(store->db), rc);
  switch (rc & 0xff) {
  case SQLITE_NOMEM:
    return -ENOMEM;
  case SQLITE_CONSTRAINT:
    return -EEXIST;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return -EAGAIN;
  default:
    return -EIO;
  }
}

/* A statement ready for binding: reset and unbound. */
static sqlite3_stmt *stmt_get(struct reg_store *store, enum stmt_id id)
{
  sqlite3_stmt *stmt = store->stmt[id];

  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  return stmt;
}

/* Steps a statement that returns no rows, then resets it. */
static int stmt_run(struct reg_store *store, sqlite3_stmt *stmt)
{
  int rc = sqlite3_step(stmt);

  sqlite3_reset(stmt);
  if (rc != SQLITE_DONE)
    return fail(store, rc);
  return 0;
}

static void bind_text(sqlite3_stmt *stmt, int i, const char *s)
{
  if (s == NULL)
    sqlite3_bind_null(stmt, i);
  else
    sqlite3_bind_text(stmt, i, s, -1, SQLITE_STATIC);
}

static void bind_page(sqlite3_stmt *stmt, const struct reg_store_cursor *after,
                      size_t limit)
{
  sqlite3_bind_int64(stmt, 8, after->created_at);
  sqlite3_bind_text(stmt, 9, after->id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 10,
                     limit > INT64_MAX ? INT64_MAX : (sqlite3_int64)limit);
}

static void column_copy(sqlite3_stmt *stmt, int col, char *dst, size_t size)
{
  const unsigned char *s = sqlite3_column_text(stmt, col);

  snprintf(dst, size, "%s", s ? (const char *)s : "");
}

/* Steps stmt and keeps each row with from_row(row, item) in a growing
 * array of items of size bytes; *out gets the array. */
static int collect(struct reg_store *store, sqlite3_stmt *stmt, size_t size,
                   int (*from_row)(sqlite3_stmt *, void *), void **out,
                   size_t *n, void (*release)(void *))
{
  char *v = NULL;
  size_t len = 0, cap = 0;
  int rc, r = 0;

  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (len == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      char *nv = realloc(v, ncap * size);

      if (nv == NULL) {
        r = -ENOMEM;
        break;
      }
      v = nv;
      cap = ncap;
    }
    if ((r = from_row(stmt, v + len * size)) < 0)
      break;
    len++;
  }
  if (r == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
    r = fail(store, rc);
  sqlite3_reset(stmt);
  if (r < 0) {
    for (size_t i = 0; release && i < len; i++)
      release(v + i * size);
    free(v);
    return r;
  }
  *out = v;
  *n = len;
  return 0;
}

/* ---- open, migrate, close ----------------------------------------------- */

static int exec(struct reg_store *store, const char *sql)
{
  int rc = sqlite3_exec(store->db, sql, NULL, NULL, NULL);

  return rc == SQLITE_OK ? 0 : fail(store, rc);
}

static int read_user_version(struct reg_store *store, int *version)
{
  sqlite3_stmt *stmt;
  int rc =
      sqlite3_prepare_v2(store->db, "PRAGMA user_version", -1, &stmt, NULL);

  if (rc != SQLITE_OK)
    return fail(store, rc);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW)
    *version = sqlite3_column_int(stmt, 0);
  sqlite3_finalize(stmt);
  return rc == SQLITE_ROW ? 0 : fail(store, rc);
}

/* Before names compare ignoring case: two that differ only in case cannot
 * both stay, and which one goes is their owners' business, not an
 * upgrade's. The store is refused, naming them (the message ends up in
 * nlbd's start failure). */
static int refuse_case_twins(struct reg_store *store)
{
  static const char sql[] =
      "SELECT 'services ' || group_concat(name, ', ') FROM services"
      " GROUP BY lower(name) HAVING count(*) > 1 UNION ALL"
      " SELECT 'principals ' || group_concat(name, ', ') FROM principals"
      " GROUP BY lower(name) HAVING count(*) > 1";
  char twins[160] = "";
  sqlite3_stmt *stmt;
  int rc = sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL);

  if (rc != SQLITE_OK)
    return fail(store, rc);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    size_t used = strlen(twins);

    snprintf(twins + used, sizeof(twins) - used, "%s%s", used ? "; " : "",
             (const char *)sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE)
    return fail(store, rc);
  if (twins[0] == '\0')
    return 0;
  snprintf(store->errmsg, sizeof(store->errmsg),
           "names that differ only in case (%s): this nlb compares names as "
           "DNS does; delete all but one of each with the nlb that made "
           "them, then start this one",
           twins);
  return -EIO;
}

/* Runs the migrations the database lacks, with the version bump, in one
 * transaction, so a crash leaves a consistent version. */
static int migrate(struct reg_store *store)
{
  char sql[64];
  int version = 0;
  int r;

  if ((r = exec(store, "BEGIN IMMEDIATE")) < 0)
    return r;
  r = read_user_version(store, &version);
  if (r == 0 && version > N_MIGRATIONS) {
    snprintf(store->errmsg, sizeof(store->errmsg),
             "store schema version %d is newer than this nlb (%d)", version,
             N_MIGRATIONS);
    r = -EIO;
  }
  for (; r == 0 && version < N_MIGRATIONS; version++) {
    if ((version == NOCASE_MIGRATION && (r = refuse_case_twins(store)) < 0) ||
        (r = exec(store, migrations[version])) < 0)
      break;
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version + 1);
    r = exec(store, sql);
  }
  if (r < 0) {
    sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
    return r;
  }
  store->version = version;
  return exec(store, "COMMIT");
}

/* One nlbd per database, whatever path names it (a symbolic link, a hard
 * link): the lock is on the file itself, an open file description lock
 * (F_OFD_SETLK) on a byte far past the ranges SQLite locks (around 1 GiB),
 * so that it is tied to the inode and to this descriptor alone: SQLite
 * closing its own descriptors never drops it, the kernel drops it when the
 * process ends, however it ends. The holder also locks byte
 * GUARD_PID_BASE + its pid, so that a refusal can name it (an OFD lock
 * reports no pid of its own). SQLite's locks would let two processes write
 * the same file, but two nlbd on it would each think their endpoints are
 * theirs alone, under the same node name. */
#define GUARD_BYTE ((off_t)1 << 40)
#define GUARD_PID_BASE (GUARD_BYTE + 1)
#define GUARD_PID_SPAN ((off_t)1 << 22) /* PID_MAX_LIMIT */

static int ofd_lock(int fd, int cmd, off_t start, off_t len, struct flock *fl)
{
  memset(fl, 0, sizeof(*fl));
  fl->l_type = F_WRLCK;
  fl->l_whence = SEEK_SET;
  fl->l_start = start;
  fl->l_len = len;
  return fcntl(fd, cmd, fl);
}

/* The pid of the process that holds the guard, or 0 if it did not say
 * (yet). */
static long guard_holder(int fd)
{
  struct flock fl;

  if (ofd_lock(fd, F_OFD_GETLK, GUARD_PID_BASE, GUARD_PID_SPAN, &fl) < 0 ||
      fl.l_type == F_UNLCK)
    return 0;
  return (long)(fl.l_start - GUARD_PID_BASE);
}

static int take_lock(struct reg_store *store, const char *location)
{
  struct flock fl;
  long pid;
  int fd;

  /* SQLite creates missing files with the same mode. */
  fd = open(location, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(store->errmsg, sizeof(store->errmsg), "cannot open %.200s: %s",
             location, strerror(errno));
    return -EIO;
  }
  if (ofd_lock(fd, F_OFD_SETLK, GUARD_BYTE, 1, &fl) < 0) {
    int e = errno;

    if (e != EAGAIN && e != EACCES) {
      snprintf(store->errmsg, sizeof(store->errmsg), "cannot lock %.200s: %s",
               location, strerror(e));
      close(fd);
      return -EIO;
    }
    pid = guard_holder(fd);
    if (pid > 0)
      snprintf(store->errmsg, sizeof(store->errmsg),
               "registry %s is in use by another nlbd (pid %ld)", location,
               pid);
    else
      snprintf(store->errmsg, sizeof(store->errmsg),
               "registry %s is in use by another nlbd (pid unknown)", location);
    close(fd);
    return -EBUSY;
  }
  if (ofd_lock(fd, F_OFD_SETLK, GUARD_PID_BASE + getpid(), 1, &fl) < 0) {
    /* The guard holds; only the pid in a refusal would be missing. */
  }
  store->lock_fd = fd;
  return 0;
}

static void store_close(struct reg_store *store)
{
  if (store == NULL)
    return;
  for (int i = 0; i < N_STMTS; i++)
    sqlite3_finalize(store->stmt[i]);
  sqlite3_close(store->db);
  if (store->lock_fd >= 0)
    close(store->lock_fd);
  free(store);
}

static int set_wal(struct reg_store *store, const char *location)
{
  sqlite3_stmt *stmt;
  int rc = sqlite3_prepare_v2(store->db, "PRAGMA journal_mode = WAL", -1, &stmt,
                              NULL);
  bool wal;

  if (rc != SQLITE_OK)
    return fail(store, rc);
  /* journal_mode answers with the mode it got: a read-only or in-memory
   * database silently stays out of WAL. */
  rc = sqlite3_step(stmt);
  wal = rc == SQLITE_ROW &&
        sqlite3_stricmp((const char *)sqlite3_column_text(stmt, 0), "wal") == 0;
  sqlite3_finalize(stmt);
  if (wal)
    return 0;
  snprintf(store->errmsg, sizeof(store->errmsg), "cannot put %s in WAL mode",
           location);
  return -EIO;
}

static int prepare_all(struct reg_store *store)
{
  for (int i = 0; i < N_STMTS; i++) {
    int rc =
        sqlite3_prepare_v3(store->db, stmt_sql[i], -1,
                           SQLITE_PREPARE_PERSISTENT, &store->stmt[i], NULL);
    if (rc != SQLITE_OK)
      return fail(store, rc);
  }
  return 0;
}

/* A reader: a second connection of this process, after the first has
 * locked and migrated the file; read-only, so that no write can slip in
 * beside the writer's. */
static int open_reader(struct reg_store *store, const char *location)
{
  int rc = sqlite3_open_v2(location, &store->db, SQLITE_OPEN_READONLY, NULL);
  int r;

  if (rc != SQLITE_OK)
    return store->db ? fail(store, rc) : -ENOMEM;
  sqlite3_extended_result_codes(store->db, 1);
  sqlite3_busy_timeout(store->db, (int)store->statement_timeout_ms);
  if ((r = read_user_version(store, &store->version)) < 0)
    return r;
  if (store->version != N_MIGRATIONS) {
    snprintf(store->errmsg, sizeof(store->errmsg),
             "store schema version %d, this nlb reads %d", store->version,
             N_MIGRATIONS);
    return -EIO;
  }
  return prepare_all(store);
}

static int open_writer(struct reg_store *store, const char *location)
{
  int rc = sqlite3_open_v2(location, &store->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  int r;

  if (rc != SQLITE_OK)
    return store->db ? fail(store, rc) : -ENOMEM;
  sqlite3_extended_result_codes(store->db, 1);
  sqlite3_busy_timeout(store->db, (int)store->statement_timeout_ms);
  if ((r = set_wal(store, location)) < 0 ||
      (r = exec(store, "PRAGMA synchronous = FULL")) < 0 ||
      (r = exec(store, "PRAGMA foreign_keys = ON")) < 0 ||
      (r = migrate(store)) < 0 || (r = prepare_all(store)) < 0)
    return r;
  return 0;
}

static int store_open(struct reg_store **out,
                      const struct reg_store_settings *s, char *errbuf,
                      size_t errlen)
{
  struct reg_store *store;
  int r;

  store = calloc(1, sizeof(*store));
  if (store == NULL)
    return -ENOMEM;
  store->lock_fd = -1;
  store->statement_timeout_ms = s->statement_timeout_ms;
  if (!s->reader && (r = take_lock(store, s->location)) < 0) {
    snprintf(errbuf, errlen, "%s", store->errmsg);
    store_close(store);
    return r;
  }
  r = s->reader ? open_reader(store, s->location)
                : open_writer(store, s->location);
  if (r < 0) {
    snprintf(errbuf, errlen, "%s: %s", s->location,
             store->errmsg[0] ? store->errmsg : strerror(-r));
    store_close(store);
    return r;
  }
  *out = store;
  return 0;
}

static const char *store_errmsg(struct reg_store *store)
{
  return store->errmsg;
}

static int store_schema_version(struct reg_store *store)
{
  return store->version;
}

/* ---- transactions ------------------------------------------------------- */

/* A busy file (another process's lock) is waited for at most timeout_ms;
 * SQLite has no other wait to bound. After the transaction, statements
 * outside one get the default bound back. */
static int store_begin(struct reg_store *store, bool write, uint32_t timeout_ms)
{
  int r;

  sqlite3_busy_timeout(store->db, (int)timeout_ms);
  r = stmt_run(store, stmt_get(store, write ? BEGIN_WRITE : BEGIN_READ));
  if (r < 0)
    sqlite3_busy_timeout(store->db, (int)store->statement_timeout_ms);
  return r == -EAGAIN ? -ETIMEDOUT : r;
}

static int store_commit(struct reg_store *store)
{
  int r = stmt_run(store, stmt_get(store, COMMIT));

  /* A failed COMMIT (e.g. an I/O error) may leave the transaction open. */
  if (r < 0 && !sqlite3_get_autocommit(store->db))
    stmt_run(store, stmt_get(store, ROLLBACK));
  sqlite3_busy_timeout(store->db, (int)store->statement_timeout_ms);
  return r;
}

static void store_rollback(struct reg_store *store)
{
  /* Reset every statement first: an unfinished read would keep the
   * transaction's read lock. */
  for (int i = 0; i < N_STMTS; i++)
    sqlite3_reset(store->stmt[i]);
  if (!sqlite3_get_autocommit(store->db))
    stmt_run(store, stmt_get(store, ROLLBACK));
  sqlite3_busy_timeout(store->db, (int)store->statement_timeout_ms);
}

/* One process writes: no notices from others. */
static int store_wait_fd(struct reg_store *store)
{
  return -1;
}

static bool store_take_notices(struct reg_store *store)
{
  return false;
}

static int store_now(struct reg_store *store, int64_t *now_ms)
{
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  *now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  return 0;
}

/* ---- services ----------------------------------------------------------- */

static int add_principals(struct reg_store *store, const char *id,
                          char *const *principals, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    sqlite3_stmt *stmt = stmt_get(store, SVC_PRINCIPAL_ADD);
    int r;

    bind_text(stmt, 1, id);
    bind_text(stmt, 2, principals[i]);
    if ((r = stmt_run(store, stmt)) < 0)
      return r;
  }
  return 0;
}

static int store_service_insert(struct reg_store *store,
                                const struct reg_service *s)
{
  sqlite3_stmt *stmt = stmt_get(store, SVC_INSERT);
  int r;

  bind_text(stmt, 1, s->id);
  bind_text(stmt, 2, s->name);
  bind_text(stmt, 3, s->owner);
  bind_text(stmt, 4, s->load_balancer);
  sqlite3_bind_int(stmt, 5, s->acceptance_required);
  sqlite3_bind_int64(stmt, 6, s->connection_limit);
  sqlite3_bind_int64(stmt, 7, s->created_at);
  bind_text(stmt, 8, s->private_dns_name);
  if ((r = stmt_run(store, stmt)) < 0)
    return r;
  return add_principals(store, s->id, s->allowed_principals,
                        s->n_allowed_principals);
}

static int string_from_row(sqlite3_stmt *stmt, void *item)
{
  const unsigned char *s = sqlite3_column_text(stmt, 0);

  *(char **)item = strdup(s ? (const char *)s : "");
  return *(char **)item ? 0 : -ENOMEM;
}

static void free_string(void *item)
{
  free(*(char **)item);
}

static int load_principals(struct reg_store *store, struct reg_service *s)
{
  sqlite3_stmt *stmt = stmt_get(store, SVC_PRINCIPALS);

  bind_text(stmt, 1, s->id);
  return collect(store, stmt, sizeof(char *), string_from_row,
                 (void **)&s->allowed_principals, &s->n_allowed_principals,
                 free_string);
}

static int service_from_row(sqlite3_stmt *stmt, void *item)
{
  struct reg_service *s = item;

  memset(s, 0, sizeof(*s));
  column_copy(stmt, 0, s->id, sizeof(s->id));
  column_copy(stmt, 1, s->name, sizeof(s->name));
  column_copy(stmt, 2, s->owner, sizeof(s->owner));
  column_copy(stmt, 3, s->load_balancer, sizeof(s->load_balancer));
  s->acceptance_required = sqlite3_column_int(stmt, 4) != 0;
  s->connection_limit = (uint32_t)sqlite3_column_int64(stmt, 5);
  s->created_at = sqlite3_column_int64(stmt, 6);
  column_copy(stmt, 7, s->private_dns_name, sizeof(s->private_dns_name));
  s->state = "available";
  return 0;
}

static int store_service_get(struct reg_store *store, const char *id_or_name,
                             struct reg_service *out)
{
  sqlite3_stmt *stmt = stmt_get(store, SVC_GET);
  int rc;

  bind_text(stmt, 1, id_or_name);
  rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW) {
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? -ENOENT : fail(store, rc);
  }
  service_from_row(stmt, out);
  sqlite3_reset(stmt);
  return load_principals(store, out);
}

static void release_service(void *item)
{
  reg_service_release(item);
}

static int store_service_list(struct reg_store *store,
                              const struct reg_store_service_filter *filter,
                              const struct reg_store_cursor *after,
                              size_t limit, struct reg_service **out, size_t *n)
{
  sqlite3_stmt *stmt;
  int r;

  if (filter->owner != NULL)
    stmt = stmt_get(store, SVC_LIST_OWNER);
  else if (filter->consumer != NULL)
    stmt = stmt_get(store, SVC_LIST_CONSUMER);
  else
    stmt = stmt_get(store, SVC_LIST_ALL);
  bind_text(stmt, 1, filter->owner);
  bind_text(stmt, 2, filter->consumer);
  bind_page(stmt, after, limit);
  if ((r = collect(store, stmt, sizeof(**out), service_from_row, (void **)out,
                   n, release_service)) < 0)
    return r;
  /* Principals come from another statement, so after the scan. */
  for (size_t i = 0; r == 0 && i < *n; i++)
    r = load_principals(store, &(*out)[i]);
  if (r < 0) {
    reg_services_free(*out, *n);
    *out = NULL;
    *n = 0;
  }
  return r;
}

static int store_service_update(struct reg_store *store,
                                const struct reg_service *s)
{
  sqlite3_stmt *stmt = stmt_get(store, SVC_UPDATE);

  bind_text(stmt, 1, s->id);
  sqlite3_bind_int(stmt, 2, s->acceptance_required);
  sqlite3_bind_int64(stmt, 3, s->connection_limit);
  bind_text(stmt, 4, s->private_dns_name);
  return stmt_run(store, stmt);
}

static int store_service_set_principals(struct reg_store *store, const char *id,
                                        char *const *principals, size_t n)
{
  sqlite3_stmt *stmt = stmt_get(store, SVC_PRINCIPALS_CLEAR);
  int r;

  bind_text(stmt, 1, id);
  if ((r = stmt_run(store, stmt)) < 0)
    return r;
  return add_principals(store, id, principals, n);
}

static int store_service_delete(struct reg_store *store, const char *id)
{
  sqlite3_stmt *stmt = stmt_get(store, SVC_DELETE);
  int r;

  bind_text(stmt, 1, id);
  if ((r = stmt_run(store, stmt)) < 0)
    return r;
  return sqlite3_changes(store->db) == 1 ? 0 : -ENOENT;
}

static int step_int64(struct reg_store *store, sqlite3_stmt *stmt,
                      int64_t *value, bool *null_out)
{
  int rc = sqlite3_step(stmt);

  if (rc == SQLITE_ROW) {
    *null_out = sqlite3_column_type(stmt, 0) == SQLITE_NULL;
    *value = sqlite3_column_int64(stmt, 0);
  } else if (rc == SQLITE_DONE) {
    *null_out = true;
    *value = 0;
  }
  sqlite3_reset(stmt);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(store, rc);
}

static int count(struct reg_store *store, sqlite3_stmt *stmt, size_t *n)
{
  int64_t value;
  bool none;
  int r = step_int64(store, stmt, &value, &none);

  *n = (size_t)value;
  return r;
}

static int store_service_count_live(struct reg_store *store,
                                    const char *service_id, size_t *n)
{
  sqlite3_stmt *stmt = stmt_get(store, SVC_COUNT_LIVE);

  bind_text(stmt, 1, service_id);
  return count(store, stmt, n);
}

/* ---- endpoints ---------------------------------------------------------- */

static int endpoint_from_row(sqlite3_stmt *stmt, void *item)
{
  struct reg_endpoint *e = item;
  int r;

  memset(e, 0, sizeof(*e));
  column_copy(stmt, 0, e->id, sizeof(e->id));
  column_copy(stmt, 1, e->service_id, sizeof(e->service_id));
  column_copy(stmt, 2, e->service, sizeof(e->service));
  column_copy(stmt, 3, e->owner, sizeof(e->owner));
  column_copy(stmt, 4, e->load_balancer, sizeof(e->load_balancer));
  column_copy(stmt, 5, e->consumer, sizeof(e->consumer));
  column_copy(stmt, 6, e->network, sizeof(e->network));
  column_copy(stmt, 7, e->address, sizeof(e->address));
  if (store_state_parse((const char *)sqlite3_column_text(stmt, 8), &e->state) <
      0)
    return -EIO;
  column_copy(stmt, 9, e->reason, sizeof(e->reason));
  e->created_at = sqlite3_column_int64(stmt, 11);
  e->updated_at = sqlite3_column_int64(stmt, 12);
  column_copy(stmt, 14, e->netns, sizeof(e->netns));
  column_copy(stmt, 15, e->private_dns_name, sizeof(e->private_dns_name));
  e->private_dns = sqlite3_column_int(stmt, 16) != 0;
  if ((r = store_split_lines((const char *)sqlite3_column_text(stmt, 10),
                             &e->allowed_sources, &e->n_allowed_sources)) < 0 ||
      (r = store_parse_placements((const char *)sqlite3_column_text(stmt, 13),
                                  e)) < 0) {
    reg_endpoint_release(e);
    return r;
  }
  return 0;
}

static int store_endpoint_insert(struct reg_store *store,
                                 const struct reg_endpoint *e,
                                 const struct reg_addr_key *key)
{
  sqlite3_stmt *stmt = stmt_get(store, EP_INSERT);
  char *sources = store_join_lines(e->allowed_sources, e->n_allowed_sources);
  int rc;

  if (sources == NULL)
    return -ENOMEM;
  bind_text(stmt, 1, e->id);
  bind_text(stmt, 2, e->service_id);
  bind_text(stmt, 3, e->consumer);
  bind_text(stmt, 4, e->network);
  bind_text(stmt, 5, e->address);
  sqlite3_bind_blob(stmt, 6, key->bytes, sizeof(key->bytes), SQLITE_STATIC);
  bind_text(stmt, 7, store_state_name(e->state));
  bind_text(stmt, 8, e->reason);
  bind_text(stmt, 9, sources);
  sqlite3_bind_int64(stmt, 10, e->created_at);
  sqlite3_bind_int64(stmt, 11, e->updated_at);
  sqlite3_bind_int(stmt, 12, e->private_dns);
  rc = sqlite3_step(stmt);
  sqlite3_reset(stmt);
  free(sources);
  if (rc == SQLITE_DONE)
    return 0;
  if (rc == SQLITE_CONSTRAINT_UNIQUE &&
      strstr(sqlite3_errmsg(store->db), "address_key") != NULL) {
    fail(store, rc);
    return -EADDRINUSE;
  }
  return fail(store, rc);
}

static int store_endpoint_get(struct reg_store *store, const char *id,
                              struct reg_endpoint *out)
{
  sqlite3_stmt *stmt = stmt_get(store, EP_GET);
  int rc;
  int r;

  bind_text(stmt, 1, id);
  rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW) {
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? -ENOENT : fail(store, rc);
  }
  r = endpoint_from_row(stmt, out);
  sqlite3_reset(stmt);
  return r;
}

static void release_endpoint(void *item)
{
  reg_endpoint_release(item);
}

static enum stmt_id
endpoint_list_stmt(const struct reg_store_endpoint_filter *f)
{
  if (f->service_id != NULL)
    return f->state ? EP_LIST_SERVICE_STATE : EP_LIST_SERVICE;
  if (f->consumer != NULL)
    return f->state ? EP_LIST_CONSUMER_STATE : EP_LIST_CONSUMER;
  return f->state ? EP_LIST_STATE : EP_LIST_ALL;
}

static int store_endpoint_list(struct reg_store *store,
                               const struct reg_store_endpoint_filter *filter,
                               const struct reg_store_cursor *after,
                               size_t limit, struct reg_endpoint **out,
                               size_t *n)
{
  sqlite3_stmt *stmt = stmt_get(store, endpoint_list_stmt(filter));

  bind_text(stmt, 1,
            filter->service_id ? filter->service_id : filter->consumer);
  bind_text(stmt, 2, filter->state ? store_state_name(*filter->state) : NULL);
  bind_page(stmt, after, limit);
  return collect(store, stmt, sizeof(**out), endpoint_from_row, (void **)out, n,
                 release_endpoint);
}

static int store_endpoint_update(struct reg_store *store,
                                 const struct reg_endpoint *e)
{
  sqlite3_stmt *stmt = stmt_get(store, EP_UPDATE);
  char *sources = store_join_lines(e->allowed_sources, e->n_allowed_sources);
  int r;

  if (sources == NULL)
    return -ENOMEM;
  bind_text(stmt, 1, e->id);
  bind_text(stmt, 2, store_state_name(e->state));
  bind_text(stmt, 3, e->reason);
  bind_text(stmt, 4, sources);
  sqlite3_bind_int64(stmt, 5, e->updated_at);
  sqlite3_bind_int(stmt, 6, e->private_dns);
  r = stmt_run(store, stmt);
  free(sources);
  if (r < 0)
    return r;
  return sqlite3_changes(store->db) == 1 ? 0 : -ENOENT;
}

static int store_endpoint_count_live(struct reg_store *store,
                                     const char *service_id,
                                     const char *consumer, size_t *n)
{
  sqlite3_stmt *stmt = stmt_get(store, EP_COUNT_LIVE);

  bind_text(stmt, 1, service_id);
  bind_text(stmt, 2, consumer);
  return count(store, stmt, n);
}

static int store_address_taken(struct reg_store *store, const char *network,
                               const struct reg_addr_key *key, bool *taken)
{
  sqlite3_stmt *stmt = stmt_get(store, ADDR_TAKEN);
  int64_t value;
  bool none;
  int r;

  bind_text(stmt, 1, network);
  sqlite3_bind_blob(stmt, 2, key->bytes, sizeof(key->bytes), SQLITE_STATIC);
  r = step_int64(store, stmt, &value, &none);
  *taken = !none;
  return r;
}

static int store_network_hint_get(struct reg_store *store, const char *network,
                                  struct reg_addr_key *key)
{
  sqlite3_stmt *stmt = stmt_get(store, HINT_GET);
  int rc;

  bind_text(stmt, 1, network);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW &&
      sqlite3_column_bytes(stmt, 0) == (int)sizeof(key->bytes)) {
    memcpy(key->bytes, sqlite3_column_blob(stmt, 0), sizeof(key->bytes));
    sqlite3_reset(stmt);
    return 0;
  }
  sqlite3_reset(stmt);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? -ENOENT : fail(store, rc);
}

static int store_network_hint_set(struct reg_store *store, const char *network,
                                  const struct reg_addr_key *key)
{
  sqlite3_stmt *stmt = stmt_get(store, HINT_SET);

  bind_text(stmt, 1, network);
  sqlite3_bind_blob(stmt, 2, key->bytes, sizeof(key->bytes), SQLITE_STATIC);
  return stmt_run(store, stmt);
}

static int store_pending_before(struct reg_store *store, int64_t cutoff_ms,
                                size_t limit, struct reg_endpoint **out,
                                size_t *n)
{
  sqlite3_stmt *stmt = stmt_get(store, PENDING_BEFORE);

  sqlite3_bind_int64(stmt, 1, cutoff_ms);
  sqlite3_bind_int64(stmt, 2, (sqlite3_int64)limit);
  return collect(store, stmt, sizeof(**out), endpoint_from_row, (void **)out, n,
                 release_endpoint);
}

static int count_from_row(sqlite3_stmt *stmt, void *item)
{
  struct reg_endpoint_count *c = item;

  column_copy(stmt, 0, c->service, sizeof(c->service));
  c->count = (uint64_t)sqlite3_column_int64(stmt, 2);
  return store_state_parse((const char *)sqlite3_column_text(stmt, 1),
                           &c->state);
}

static int store_endpoint_counts(struct reg_store *store,
                                 struct reg_endpoint_count **out, size_t *n)
{
  return collect(store, stmt_get(store, EP_COUNTS), sizeof(**out),
                 count_from_row, (void **)out, n, NULL);
}

static int store_placement_put(struct reg_store *store, const char *endpoint_id,
                               const struct reg_placement *p)
{
  sqlite3_stmt *stmt = stmt_get(store, PLACEMENT_PUT);
  char reason[REG_REASON_BUF];

  store_placement_reason(p->reason, reason, sizeof(reason));
  bind_text(stmt, 1, endpoint_id);
  bind_text(stmt, 2, p->node);
  sqlite3_bind_int(stmt, 3, p->open);
  bind_text(stmt, 4, reason);
  sqlite3_bind_int64(stmt, 5, p->updated_at);
  return stmt_run(store, stmt);
}

/* ---- targets ------------------------------------------------------------ */

static int target_from_row(sqlite3_stmt *stmt, void *item)
{
  struct reg_target *t = item;

  memset(t, 0, sizeof(*t));
  column_copy(stmt, 0, t->target_group, sizeof(t->target_group));
  column_copy(stmt, 1, t->address, sizeof(t->address));
  t->weight = (uint32_t)sqlite3_column_int64(stmt, 2);
  t->created_at = sqlite3_column_int64(stmt, 3);
  return 0;
}

static int store_target_insert(struct reg_store *store,
                               const struct reg_target *t)
{
  sqlite3_stmt *stmt = stmt_get(store, TARGET_INSERT);

  bind_text(stmt, 1, t->target_group);
  bind_text(stmt, 2, t->address);
  sqlite3_bind_int64(stmt, 3, t->weight);
  sqlite3_bind_int64(stmt, 4, t->created_at);
  return stmt_run(store, stmt);
}

static int store_target_get(struct reg_store *store, const char *target_group,
                            const char *address, struct reg_target *out)
{
  sqlite3_stmt *stmt = stmt_get(store, TARGET_GET);
  int rc;

  bind_text(stmt, 1, target_group);
  bind_text(stmt, 2, address);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW)
    target_from_row(stmt, out);
  sqlite3_reset(stmt);
  if (rc == SQLITE_DONE)
    return -ENOENT;
  return rc == SQLITE_ROW ? 0 : fail(store, rc);
}

static int store_target_delete(struct reg_store *store,
                               const char *target_group, const char *address)
{
  sqlite3_stmt *stmt = stmt_get(store, TARGET_DELETE);
  int r;

  bind_text(stmt, 1, target_group);
  bind_text(stmt, 2, address);
  if ((r = stmt_run(store, stmt)) < 0)
    return r;
  return sqlite3_changes(store->db) == 1 ? 0 : -ENOENT;
}

static int store_target_list(struct reg_store *store, struct reg_target **out,
                             size_t *n)
{
  return collect(store, stmt_get(store, TARGET_LIST), sizeof(**out),
                 target_from_row, (void **)out, n, NULL);
}

/* ---- nodes -------------------------------------------------------------- */

static int store_node_heartbeat(struct reg_store *store, const char *name,
                                const char *version, const char *networks,
                                uint64_t applied_seq, bool starting)
{
  sqlite3_stmt *stmt = stmt_get(store, starting ? NODE_START : NODE_BEAT);
  int64_t now;

  store_now(store, &now);
  bind_text(stmt, 1, name);
  bind_text(stmt, 2, version);
  sqlite3_bind_int64(stmt, 3, now);
  sqlite3_bind_int64(stmt, 4, (sqlite3_int64)applied_seq);
  bind_text(stmt, 5, networks);
  return stmt_run(store, stmt);
}

static int node_from_row(sqlite3_stmt *stmt, void *item)
{
  struct reg_node *node = item;

  memset(node, 0, sizeof(*node));
  column_copy(stmt, 0, node->name, sizeof(node->name));
  column_copy(stmt, 1, node->version, sizeof(node->version));
  node->started_at = sqlite3_column_int64(stmt, 2);
  node->last_seen = sqlite3_column_int64(stmt, 3);
  node->applied_seq = (uint64_t)sqlite3_column_int64(stmt, 4);
  node->state = sqlite3_column_int(stmt, 5) ? REG_NODE_DRAINING : REG_NODE_UP;
  column_copy(stmt, 6, node->networks, sizeof(node->networks));
  return 0;
}

static int store_node_list(struct reg_store *store, struct reg_node **out,
                           size_t *n, int64_t *now)
{
  store_now(store, now);
  return collect(store, stmt_get(store, NODE_LIST), sizeof(**out),
                 node_from_row, (void **)out, n, NULL);
}

static int store_node_set_draining(struct reg_store *store, const char *name)
{
  sqlite3_stmt *stmt = stmt_get(store, NODE_DRAIN);

  bind_text(stmt, 1, name);
  return stmt_run(store, stmt);
}

/* ---- events ------------------------------------------------------------- */

static int store_event_append(struct reg_store *store, struct reg_event *ev)
{
  sqlite3_stmt *stmt = stmt_get(store, EV_INSERT);
  int r;

  sqlite3_bind_int64(stmt, 1, ev->time);
  bind_text(stmt, 2, store_event_name(ev->type));
  bind_text(stmt, 3, ev->service_id);
  bind_text(stmt, 4, ev->endpoint_id);
  bind_text(stmt, 5, ev->principal);
  bind_text(stmt, 6, ev->owner);
  bind_text(stmt, 7, ev->consumer);
  bind_text(stmt, 8, store_state_name(ev->state));
  bind_text(stmt, 9, ev->reason);
  bind_text(stmt, 10, ev->target_group);
  bind_text(stmt, 11, ev->target);
  bind_text(stmt, 12, ev->node);
  bind_text(stmt, 13, ev->subject);
  bind_text(stmt, 14, ev->token_id);
  if ((r = stmt_run(store, stmt)) < 0)
    return r;
  ev->seq = (uint64_t)sqlite3_last_insert_rowid(store->db);
  return 0;
}

static int event_from_row(sqlite3_stmt *stmt, void *item)
{
  struct reg_event *ev = item;

  memset(ev, 0, sizeof(*ev));
  ev->seq = (uint64_t)sqlite3_column_int64(stmt, 0);
  ev->time = sqlite3_column_int64(stmt, 1);
  if (store_event_parse((const char *)sqlite3_column_text(stmt, 2), &ev->type) <
      0)
    return -EIO;
  column_copy(stmt, 3, ev->service_id, sizeof(ev->service_id));
  column_copy(stmt, 4, ev->endpoint_id, sizeof(ev->endpoint_id));
  column_copy(stmt, 5, ev->principal, sizeof(ev->principal));
  column_copy(stmt, 6, ev->owner, sizeof(ev->owner));
  column_copy(stmt, 7, ev->consumer, sizeof(ev->consumer));
  column_copy(stmt, 9, ev->reason, sizeof(ev->reason));
  column_copy(stmt, 10, ev->target_group, sizeof(ev->target_group));
  column_copy(stmt, 11, ev->target, sizeof(ev->target));
  column_copy(stmt, 12, ev->node, sizeof(ev->node));
  column_copy(stmt, 13, ev->subject, sizeof(ev->subject));
  column_copy(stmt, 14, ev->token_id, sizeof(ev->token_id));
  return store_state_parse((const char *)sqlite3_column_text(stmt, 8),
                           &ev->state);
}

static int store_events_after(struct reg_store *store, uint64_t after,
                              const struct reg_store_event_filter *filter,
                              size_t limit, struct reg_event **out, size_t *n)
{
  enum stmt_id id = EV_AFTER;
  sqlite3_stmt *stmt;

  if (filter && filter->owner)
    id = EV_AFTER_OWNER;
  else if (filter && filter->consumer)
    id = EV_AFTER_CONSUMER;
  stmt = stmt_get(store, id);
  sqlite3_bind_int64(stmt, 1, (sqlite3_int64)after);
  sqlite3_bind_int64(stmt, 2,
                     limit > INT64_MAX ? INT64_MAX : (sqlite3_int64)limit);
  if (id != EV_AFTER)
    bind_text(stmt, 3, filter->owner ? filter->owner : filter->consumer);
  return collect(store, stmt, sizeof(**out), event_from_row, (void **)out, n,
                 NULL);
}

static int store_last_seq(struct reg_store *store, uint64_t *seq)
{
  int64_t value;
  bool none;
  int r = step_int64(store, stmt_get(store, EV_LAST), &value, &none);

  *seq = (uint64_t)value;
  return r;
}

static int store_first_seq(struct reg_store *store, uint64_t *seq)
{
  int64_t first;
  bool none;
  int r = step_int64(store, stmt_get(store, EV_FIRST), &first, &none);

  if (r < 0)
    return r;
  if (!none) {
    *seq = (uint64_t)first;
    return 0;
  }
  if ((r = store_last_seq(store, seq)) < 0)
    return r;
  *seq += 1;
  return 0;
}

static int store_events_prune(struct reg_store *store, int64_t before_ms,
                              size_t limit, size_t *removed)
{
  sqlite3_stmt *keep = stmt_get(store, EV_KEEP_FROM);
  sqlite3_stmt *prune;
  uint64_t first, keep_from;
  int64_t value;
  bool none;
  int r;

  *removed = 0;
  if ((r = store_first_seq(store, &first)) < 0)
    return r;
  sqlite3_bind_int64(keep, 1, before_ms);
  if ((r = step_int64(store, keep, &value, &none)) < 0)
    return r;
  if (none) {
    /* Every event is older: all go. */
    if ((r = store_last_seq(store, &keep_from)) < 0)
      return r;
    keep_from += 1;
  } else {
    keep_from = (uint64_t)value;
  }
  if (keep_from > first + limit)
    keep_from = first + limit;
  if (keep_from <= first)
    return 0;
  prune = stmt_get(store, EV_PRUNE);
  sqlite3_bind_int64(prune, 1, (sqlite3_int64)keep_from);
  if ((r = stmt_run(store, prune)) < 0)
    return r;
  *removed = (size_t)sqlite3_changes(store->db);
  return 0;
}

/* ---- pruning, quotas ---------------------------------------------------- */

static int store_endpoints_prune(struct reg_store *store, int64_t before_ms,
                                 size_t limit, size_t *removed)
{
  sqlite3_stmt *stmt = stmt_get(store, EP_PRUNE);
  int r;

  sqlite3_bind_int64(stmt, 1, before_ms);
  sqlite3_bind_int64(stmt, 2, (sqlite3_int64)limit);
  if ((r = stmt_run(store, stmt)) < 0)
    return r;
  *removed = (size_t)sqlite3_changes(store->db);
  return 0;
}

static int store_service_count_owner(struct reg_store *store, const char *owner,
                                     size_t *n)
{
  sqlite3_stmt *stmt = stmt_get(store, SVC_COUNT_OWNER);

  bind_text(stmt, 1, owner);
  return count(store, stmt, n);
}

/* ---- tenancy ------------------------------------------------------------ */

static int principal_from_row(sqlite3_stmt *stmt, void *item)
{
  struct reg_principal_info *p = item;

  memset(p, 0, sizeof(*p));
  column_copy(stmt, 0, p->name, sizeof(p->name));
  p->created_at = sqlite3_column_int64(stmt, 2);
  p->since_seq = (uint64_t)sqlite3_column_int64(stmt, 3);
  return reg_role_parse((const char *)sqlite3_column_text(stmt, 1), &p->role) <
                 0
             ? -EIO
             : 0;
}

static int store_principal_insert(struct reg_store *store,
                                  const struct reg_principal_info *p)
{
  sqlite3_stmt *stmt = stmt_get(store, PRINCIPAL_INSERT);

  bind_text(stmt, 1, p->name);
  bind_text(stmt, 2, reg_role_name(p->role));
  sqlite3_bind_int64(stmt, 3, p->created_at);
  sqlite3_bind_int64(stmt, 4, (sqlite3_int64)p->since_seq);
  return stmt_run(store, stmt);
}

/* One row of stmt into item with from_row; -ENOENT when none. */
static int one_row(struct reg_store *store, sqlite3_stmt *stmt,
                   int (*from_row)(sqlite3_stmt *, void *), void *item)
{
  int rc = sqlite3_step(stmt);
  int r = rc == SQLITE_ROW    ? from_row(stmt, item)
          : rc == SQLITE_DONE ? -ENOENT
                              : fail(store, rc);

  sqlite3_reset(stmt);
  return r;
}

static int store_principal_get(struct reg_store *store, const char *name,
                               struct reg_principal_info *out)
{
  sqlite3_stmt *stmt = stmt_get(store, PRINCIPAL_GET);

  bind_text(stmt, 1, name);
  return one_row(store, stmt, principal_from_row, out);
}

static int store_principal_list(struct reg_store *store,
                                struct reg_principal_info **out, size_t *n)
{
  return collect(store, stmt_get(store, PRINCIPAL_LIST), sizeof(**out),
                 principal_from_row, (void **)out, n, NULL);
}

static int delete_one(struct reg_store *store, enum stmt_id id, const char *key)
{
  sqlite3_stmt *stmt = stmt_get(store, id);
  int r;

  bind_text(stmt, 1, key);
  if ((r = stmt_run(store, stmt)) < 0)
    return r;
  return sqlite3_changes(store->db) == 1 ? 0 : -ENOENT;
}

/* A delete of any number of rows, keyed by ?1. */
static int delete_all(struct reg_store *store, enum stmt_id id, const char *key)
{
  sqlite3_stmt *stmt = stmt_get(store, id);

  bind_text(stmt, 1, key);
  return stmt_run(store, stmt);
}

static int store_principal_delete(struct reg_store *store, const char *name)
{
  int r = delete_one(store, PRINCIPAL_DELETE, name);

  if (r == 0)
    r = delete_all(store, PRINCIPAL_FORGET_ENDPOINTS, name);
  if (r == 0)
    r = delete_all(store, PRINCIPAL_FORGET_GRANTS, name);
  return r;
}

static int store_principal_holdings(struct reg_store *store, const char *name,
                                    size_t *services, size_t *endpoints)
{
  sqlite3_stmt *stmt = stmt_get(store, PRINCIPAL_SERVICES);
  int r;

  bind_text(stmt, 1, name);
  if ((r = count(store, stmt, services)) < 0)
    return r;
  stmt = stmt_get(store, PRINCIPAL_ENDPOINTS);
  bind_text(stmt, 1, name);
  return count(store, stmt, endpoints);
}

static int token_from_row(sqlite3_stmt *stmt, void *item)
{
  struct reg_token *t = item;

  memset(t, 0, sizeof(*t));
  column_copy(stmt, 0, t->id, sizeof(t->id));
  column_copy(stmt, 1, t->principal, sizeof(t->principal));
  if (sqlite3_column_bytes(stmt, 3) == (int)sizeof(t->sha256))
    memcpy(t->sha256, sqlite3_column_blob(stmt, 3), sizeof(t->sha256));
  t->created_at = sqlite3_column_int64(stmt, 4);
  t->expires_at = sqlite3_column_int64(stmt, 5);
  t->last_used_at = sqlite3_column_int64(stmt, 6);
  return reg_role_parse((const char *)sqlite3_column_text(stmt, 2), &t->role) <
                 0
             ? -EIO
             : 0;
}

static int store_token_insert(struct reg_store *store,
                              const struct reg_token *t)
{
  sqlite3_stmt *stmt = stmt_get(store, TOKEN_INSERT);

  bind_text(stmt, 1, t->id);
  bind_text(stmt, 2, t->principal);
  sqlite3_bind_blob(stmt, 3, t->sha256, sizeof(t->sha256), SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 4, t->created_at);
  sqlite3_bind_int64(stmt, 5, t->expires_at);
  return stmt_run(store, stmt);
}

static int store_token_get(struct reg_store *store, const char *id,
                           struct reg_token *out)
{
  sqlite3_stmt *stmt = stmt_get(store, TOKEN_GET);

  bind_text(stmt, 1, id);
  return one_row(store, stmt, token_from_row, out);
}

static int store_token_list(struct reg_store *store, const char *principal,
                            struct reg_token **out, size_t *n)
{
  sqlite3_stmt *stmt = stmt_get(store, principal ? TOKEN_LIST : TOKEN_LIST_ALL);

  bind_text(stmt, 1, principal);
  return collect(store, stmt, sizeof(**out), token_from_row, (void **)out, n,
                 NULL);
}

static int store_token_delete(struct reg_store *store, const char *id)
{
  return delete_one(store, TOKEN_DELETE, id);
}

static int store_token_touch(struct reg_store *store, const char *id,
                             int64_t used_at)
{
  sqlite3_stmt *stmt = stmt_get(store, TOKEN_TOUCH);

  bind_text(stmt, 1, id);
  sqlite3_bind_int64(stmt, 2, used_at);
  return stmt_run(store, stmt);
}

static int network_from_row(sqlite3_stmt *stmt, void *item)
{
  struct reg_network_info *net = item;

  memset(net, 0, sizeof(*net));
  column_copy(stmt, 0, net->name, sizeof(net->name));
  column_copy(stmt, 1, net->range, sizeof(net->range));
  column_copy(stmt, 2, net->netns, sizeof(net->netns));
  net->created_at = sqlite3_column_int64(stmt, 4);
  return store_split_lines((const char *)sqlite3_column_text(stmt, 3),
                           &net->principals, &net->n_principals);
}

static void release_network(void *item)
{
  struct reg_network_info *net = item;

  reg_strings_free(net->principals, net->n_principals);
}

static int store_network_insert(struct reg_store *store,
                                const struct reg_network_info *net)
{
  sqlite3_stmt *stmt = stmt_get(store, NETWORK_INSERT);
  char *principals = store_join_lines(net->principals, net->n_principals);
  int r;

  if (principals == NULL)
    return -ENOMEM;
  bind_text(stmt, 1, net->name);
  bind_text(stmt, 2, net->range);
  bind_text(stmt, 3, net->netns);
  bind_text(stmt, 4, principals);
  sqlite3_bind_int64(stmt, 5, net->created_at);
  r = stmt_run(store, stmt);
  free(principals);
  return r;
}

static int store_network_get(struct reg_store *store, const char *name,
                             struct reg_network_info *out)
{
  sqlite3_stmt *stmt = stmt_get(store, NETWORK_GET);

  bind_text(stmt, 1, name);
  return one_row(store, stmt, network_from_row, out);
}

static int store_network_list(struct reg_store *store,
                              struct reg_network_info **out, size_t *n)
{
  return collect(store, stmt_get(store, NETWORK_LIST), sizeof(**out),
                 network_from_row, (void **)out, n, release_network);
}

static int store_network_delete(struct reg_store *store, const char *name)
{
  return delete_one(store, NETWORK_DELETE, name);
}

static int store_network_count_live(struct reg_store *store, const char *name,
                                    size_t *n)
{
  sqlite3_stmt *stmt = stmt_get(store, NETWORK_COUNT_LIVE);

  bind_text(stmt, 1, name);
  return count(store, stmt, n);
}

const struct reg_store_ops reg_store_sqlite = {
    .name = "sqlite",
    .open = store_open,
    .close = store_close,
    .errmsg = store_errmsg,
    .schema_version = store_schema_version,
    .begin = store_begin,
    .commit = store_commit,
    .rollback = store_rollback,
    .wait_fd = store_wait_fd,
    .take_notices = store_take_notices,
    .now = store_now,
    .service_insert = store_service_insert,
    .service_get = store_service_get,
    .service_list = store_service_list,
    .service_update = store_service_update,
    .service_set_principals = store_service_set_principals,
    .service_delete = store_service_delete,
    .endpoint_insert = store_endpoint_insert,
    .endpoint_get = store_endpoint_get,
    .endpoint_list = store_endpoint_list,
    .endpoint_update = store_endpoint_update,
    .endpoint_count_live = store_endpoint_count_live,
    .service_count_live = store_service_count_live,
    .address_taken = store_address_taken,
    .network_hint_get = store_network_hint_get,
    .network_hint_set = store_network_hint_set,
    .pending_before = store_pending_before,
    .endpoint_counts = store_endpoint_counts,
    .placement_put = store_placement_put,
    .target_insert = store_target_insert,
    .target_get = store_target_get,
    .target_delete = store_target_delete,
    .target_list = store_target_list,
    .node_heartbeat = store_node_heartbeat,
    .node_list = store_node_list,
    .node_set_draining = store_node_set_draining,
    .endpoints_prune = store_endpoints_prune,
    .service_count_owner = store_service_count_owner,
    .principal_insert = store_principal_insert,
    .principal_get = store_principal_get,
    .principal_list = store_principal_list,
    .principal_delete = store_principal_delete,
    .principal_holdings = store_principal_holdings,
    .token_insert = store_token_insert,
    .token_get = store_token_get,
    .token_list = store_token_list,
    .token_delete = store_token_delete,
    .token_touch = store_token_touch,
    .network_insert = store_network_insert,
    .network_get = store_network_get,
    .network_list = store_network_list,
    .network_delete = store_network_delete,
    .network_count_live = store_network_count_live,
    .event_append = store_event_append,
    .events_after = store_events_after,
    .last_seq = store_last_seq,
    .first_seq = store_first_seq,
    .events_prune = store_events_prune,
};
