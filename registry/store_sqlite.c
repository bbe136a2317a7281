/* The SQLite store: WAL, synchronous=FULL, foreign keys, every statement
 * prepared once at open. States and event types are stored by name so that
 * the database reads well in the sqlite3 shell and does not depend on the
 * order of the C enums. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "nlb/registry-store.h"

#define BUSY_TIMEOUT_MS 5000
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
};

#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))
_Static_assert(N_MIGRATIONS == REG_SCHEMA_VERSION,
               "REG_SCHEMA_VERSION must count the migrations");

#define SERVICE_COLUMNS                                                        \
  "id, name, owner, load_balancer, acceptance_required, connection_limit, "    \
  "created_at"
#define ENDPOINT_COLUMNS                                                       \
  "e.id, e.service_id, s.name, s.owner, s.load_balancer, e.consumer, "         \
  "e.network, e.address, e.state, e.reason, e.allowed_sources, "               \
  "e.created_at, e.updated_at"
#define EVENT_COLUMNS                                                          \
  "seq, time, type, service_id, endpoint_id, principal, owner, consumer, "     \
  "state, reason"

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
  EP_LIST_SERVICE,
  EP_LIST_CONSUMER,
  EP_LIST_STATE,
  EP_UPDATE,
  EP_COUNT_LIVE,
  NET_USED,
  PENDING_BEFORE,
  EV_INSERT,
  EV_AFTER,
  EV_LAST,
  EV_FIRST,
  EV_KEEP_FROM,
  EV_PRUNE,
  N_STMTS,
};

static const char *const stmt_sql[N_STMTS] = {
    [BEGIN_READ] = "BEGIN",
    [BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [COMMIT] = "COMMIT",
    [ROLLBACK] = "ROLLBACK",
    [SVC_INSERT] = "INSERT INTO services (" SERVICE_COLUMNS
                   ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [SVC_GET] = "SELECT " SERVICE_COLUMNS " FROM services WHERE id = ?1"
                " UNION ALL SELECT " SERVICE_COLUMNS
                " FROM services WHERE name = ?1 LIMIT 1",
    /* One statement per filter, so each can use its index. */
    [SVC_LIST_ALL] = "SELECT " SERVICE_COLUMNS " FROM services"
                     " ORDER BY created_at, rowid",
    [SVC_LIST_OWNER] = "SELECT " SERVICE_COLUMNS " FROM services"
                       " WHERE owner = ?1 ORDER BY created_at, rowid",
    [SVC_LIST_CONSUMER] = "SELECT " SERVICE_COLUMNS " FROM services"
                          " WHERE id IN (SELECT service_id FROM"
                          " service_principals WHERE principal IN (?1, '*'))"
                          " ORDER BY created_at, rowid",
    [SVC_UPDATE] = "UPDATE services SET acceptance_required = ?2,"
                   " connection_limit = ?3 WHERE id = ?1",
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
                  " created_at, updated_at)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [EP_GET] = "SELECT " ENDPOINT_COLUMNS " FROM endpoints e"
               " JOIN services s ON s.id = e.service_id WHERE e.id = ?1",
    [EP_LIST_ALL] = "SELECT " ENDPOINT_COLUMNS " FROM endpoints e"
                    " JOIN services s ON s.id = e.service_id"
                    " ORDER BY e.created_at, e.rowid",
    [EP_LIST_SERVICE] = "SELECT " ENDPOINT_COLUMNS " FROM endpoints e"
                        " JOIN services s ON s.id = e.service_id"
                        " WHERE e.service_id = ?1"
                        " AND (?2 IS NULL OR e.state = ?2)"
                        " ORDER BY e.created_at, e.rowid",
    [EP_LIST_CONSUMER] = "SELECT " ENDPOINT_COLUMNS " FROM endpoints e"
                         " JOIN services s ON s.id = e.service_id"
                         " WHERE e.consumer = ?1"
                         " AND (?2 IS NULL OR e.state = ?2)"
                         " ORDER BY e.created_at, e.rowid",
    [EP_LIST_STATE] = "SELECT " ENDPOINT_COLUMNS " FROM endpoints e"
                      " JOIN services s ON s.id = e.service_id"
                      " WHERE e.state = ?2 ORDER BY e.created_at, e.rowid",
    [EP_UPDATE] = "UPDATE endpoints SET state = ?2, reason = ?3,"
                  " allowed_sources = ?4, updated_at = ?5 WHERE id = ?1",
    [EP_COUNT_LIVE] = "SELECT count(*) FROM endpoints WHERE service_id = ?1"
                      " AND consumer = ?2 AND state IN " LIVE,
    [NET_USED] = "SELECT address_key FROM endpoints WHERE network = ?1"
                 " AND state IN " LIVE " ORDER BY address_key",
    [PENDING_BEFORE] = "SELECT " ENDPOINT_COLUMNS " FROM endpoints e"
                       " JOIN services s ON s.id = e.service_id"
                       " WHERE e.state = 'pendingAcceptance'"
                       " AND e.created_at <= ?1 ORDER BY e.created_at, e.rowid",
    [EV_INSERT] = "INSERT INTO events (time, type, service_id, endpoint_id,"
                  " principal, owner, consumer, state, reason)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [EV_AFTER] = "SELECT " EVENT_COLUMNS " FROM events WHERE seq > ?1"
                 " ORDER BY seq LIMIT ?2",
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

static void column_copy(sqlite3_stmt *stmt, int col, char *dst, size_t size)
{
  const unsigned char *s = sqlite3_column_text(stmt, col);

  snprintf(dst, size, "%s", s ? (const char *)s : "");
}

static const char *const state_names[REG_EP_STATE_COUNT] = {
    "pendingAcceptance", "available", "rejected",
    "deleted",           "expired",   "failed",
};

static const char *const event_names[] = {
    "connect", "accept", "reject", "delete", "expire", "fail",
};

static int state_from_column(sqlite3_stmt *stmt, int col,
                             enum reg_endpoint_state *out)
{
  const char *s = (const char *)sqlite3_column_text(stmt, col);

  for (int i = 0; s && i < REG_EP_STATE_COUNT; i++)
    if (strcmp(s, state_names[i]) == 0) {
      *out = (enum reg_endpoint_state)i;
      return 0;
    }
  return -EIO;
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

/* Runs the migrations the database lacks, each in its own transaction with
 * the version bump, so a crash leaves a consistent version. */
static int migrate(struct reg_store *store)
{
  char sql[64];
  int version;
  int r;

  if ((r = exec(store, "BEGIN IMMEDIATE")) < 0)
    return r;
  r = read_user_version(store, &version);
  if (r == 0 && version > (int)N_MIGRATIONS) {
    snprintf(store->errmsg, sizeof(store->errmsg),
             "store schema version %d is newer than this nlb (%d)", version,
             (int)N_MIGRATIONS);
    r = -EIO;
  }
  for (; r == 0 && version < (int)N_MIGRATIONS; version++) {
    if ((r = exec(store, migrations[version])) < 0)
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

static void store_close(struct reg_store *store)
{
  if (store == NULL)
    return;
  for (int i = 0; i < N_STMTS; i++)
    sqlite3_finalize(store->stmt[i]);
  sqlite3_close(store->db);
  free(store);
}

static int store_open(struct reg_store **out, const char *location,
                      char *errbuf, size_t errlen)
{
  struct reg_store *store;
  sqlite3_stmt *stmt;
  int rc;
  int r;

  store = calloc(1, sizeof(*store));
  if (store == NULL)
    return -ENOMEM;
  rc = sqlite3_open_v2(location, &store->db,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    r = store->db ? fail(store, rc) : -ENOMEM;
    goto fail_close;
  }
  sqlite3_extended_result_codes(store->db, 1);
  sqlite3_busy_timeout(store->db, BUSY_TIMEOUT_MS);

  /* journal_mode answers with the mode it got: a read-only or in-memory
   * database silently stays out of WAL. */
  rc = sqlite3_prepare_v2(store->db, "PRAGMA journal_mode = WAL", -1, &stmt,
                          NULL);
  if (rc != SQLITE_OK) {
    r = fail(store, rc);
    goto fail_close;
  }
  rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW ||
      sqlite3_stricmp((const char *)sqlite3_column_text(stmt, 0), "wal")) {
    sqlite3_finalize(stmt);
    snprintf(store->errmsg, sizeof(store->errmsg), "cannot put %s in WAL mode",
             location);
    r = -EIO;
    goto fail_close;
  }
  sqlite3_finalize(stmt);
  if ((r = exec(store, "PRAGMA synchronous = FULL")) < 0 ||
      (r = exec(store, "PRAGMA foreign_keys = ON")) < 0)
    goto fail_close;
  if ((r = migrate(store)) < 0)
    goto fail_close;

  for (int i = 0; i < N_STMTS; i++) {
    rc = sqlite3_prepare_v3(store->db, stmt_sql[i], -1,
                            SQLITE_PREPARE_PERSISTENT, &store->stmt[i], NULL);
    if (rc != SQLITE_OK) {
      r = fail(store, rc);
      goto fail_close;
    }
  }
  *out = store;
  return 0;

fail_close:
  snprintf(errbuf, errlen, "%s: %s", location,
           store->errmsg[0] ? store->errmsg : strerror(-r));
  store_close(store);
  return r;
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

static int store_begin(struct reg_store *store, bool write)
{
  return stmt_run(store, stmt_get(store, write ? BEGIN_WRITE : BEGIN_READ));
}

static int store_commit(struct reg_store *store)
{
  int r = stmt_run(store, stmt_get(store, COMMIT));

  /* A failed COMMIT (e.g. an I/O error) may leave the transaction open. */
  if (r < 0 && !sqlite3_get_autocommit(store->db))
    stmt_run(store, stmt_get(store, ROLLBACK));
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
  if ((r = stmt_run(store, stmt)) < 0)
    return r;
  return add_principals(store, s->id, s->allowed_principals,
                        s->n_allowed_principals);
}

static int load_principals(struct reg_store *store, struct reg_service *s)
{
  sqlite3_stmt *stmt = stmt_get(store, SVC_PRINCIPALS);
  size_t cap = 0;
  int rc;

  bind_text(stmt, 1, s->id);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (s->n_allowed_principals == cap) {
      size_t ncap = cap ? cap * 2 : 4;
      char **v = realloc(s->allowed_principals, ncap * sizeof(*v));

      if (v == NULL)
        goto fail_nomem;
      s->allowed_principals = v;
      cap = ncap;
    }
    s->allowed_principals[s->n_allowed_principals] =
        strdup((const char *)sqlite3_column_text(stmt, 0));
    if (s->allowed_principals[s->n_allowed_principals] == NULL)
      goto fail_nomem;
    s->n_allowed_principals++;
  }
  sqlite3_reset(stmt);
  return rc == SQLITE_DONE ? 0 : fail(store, rc);

fail_nomem:
  sqlite3_reset(stmt);
  return -ENOMEM;
}

static void service_from_row(sqlite3_stmt *stmt, struct reg_service *s)
{
  memset(s, 0, sizeof(*s));
  column_copy(stmt, 0, s->id, sizeof(s->id));
  column_copy(stmt, 1, s->name, sizeof(s->name));
  column_copy(stmt, 2, s->owner, sizeof(s->owner));
  column_copy(stmt, 3, s->load_balancer, sizeof(s->load_balancer));
  s->acceptance_required = sqlite3_column_int(stmt, 4) != 0;
  s->connection_limit = (uint32_t)sqlite3_column_int64(stmt, 5);
  s->created_at = sqlite3_column_int64(stmt, 6);
  s->state = "available";
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

static int store_service_list(struct reg_store *store, const char *owner,
                              const char *consumer, struct reg_service **out,
                              size_t *n)
{
  sqlite3_stmt *stmt;
  struct reg_service *v = NULL;
  size_t len = 0;
  size_t cap = 0;
  int rc;
  int r = 0;

  if (owner != NULL) {
    stmt = stmt_get(store, SVC_LIST_OWNER);
    bind_text(stmt, 1, owner);
  } else if (consumer != NULL) {
    stmt = stmt_get(store, SVC_LIST_CONSUMER);
    bind_text(stmt, 1, consumer);
  } else {
    stmt = stmt_get(store, SVC_LIST_ALL);
  }
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (len == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      struct reg_service *nv = realloc(v, ncap * sizeof(*nv));

      if (nv == NULL) {
        r = -ENOMEM;
        break;
      }
      v = nv;
      cap = ncap;
    }
    service_from_row(stmt, &v[len++]);
  }
  if (r == 0 && rc != SQLITE_DONE)
    r = fail(store, rc);
  sqlite3_reset(stmt);
  /* Principals come from another statement, so after the scan. */
  for (size_t i = 0; r == 0 && i < len; i++)
    r = load_principals(store, &v[i]);
  if (r < 0) {
    reg_services_free(v, len);
    return r;
  }
  *out = v;
  *n = len;
  return 0;
}

static int store_service_update(struct reg_store *store,
                                const struct reg_service *s)
{
  sqlite3_stmt *stmt = stmt_get(store, SVC_UPDATE);

  bind_text(stmt, 1, s->id);
  sqlite3_bind_int(stmt, 2, s->acceptance_required);
  sqlite3_bind_int64(stmt, 3, s->connection_limit);
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

static int count(struct reg_store *store, sqlite3_stmt *stmt, size_t *n)
{
  int rc = sqlite3_step(stmt);

  if (rc == SQLITE_ROW)
    *n = (size_t)sqlite3_column_int64(stmt, 0);
  sqlite3_reset(stmt);
  return rc == SQLITE_ROW ? 0 : fail(store, rc);
}

static int store_service_count_live(struct reg_store *store,
                                    const char *service_id, size_t *n)
{
  sqlite3_stmt *stmt = stmt_get(store, SVC_COUNT_LIVE);

  bind_text(stmt, 1, service_id);
  return count(store, stmt, n);
}

/* ---- endpoints ---------------------------------------------------------- */

/* allowed_sources are kept as one newline-separated column: they are always
 * read and written whole, and a CIDR holds no newline. */
static char *join_lines(char *const *v, size_t n)
{
  size_t len = 1;
  char *s;
  char *p;

  for (size_t i = 0; i < n; i++)
    len += strlen(v[i]) + 1;
  s = malloc(len);
  if (s == NULL)
    return NULL;
  p = s;
  for (size_t i = 0; i < n; i++)
    p += sprintf(p, "%s%s", i ? "\n" : "", v[i]);
  *p = '\0';
  return s;
}

static int split_lines(const char *s, char ***out, size_t *n)
{
  size_t len = 0;
  char **v;

  *out = NULL;
  *n = 0;
  if (s == NULL || *s == '\0')
    return 0;
  for (const char *p = s; p; p = strchr(p + 1, '\n'))
    len++;
  v = calloc(len, sizeof(*v));
  if (v == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < len; i++) {
    const char *end = strchr(s, '\n');
    size_t l = end ? (size_t)(end - s) : strlen(s);

    v[i] = strndup(s, l);
    if (v[i] == NULL) {
      reg_strings_free(v, i);
      return -ENOMEM;
    }
    s += l + 1;
  }
  *out = v;
  *n = len;
  return 0;
}

static int endpoint_from_row(sqlite3_stmt *stmt, struct reg_endpoint *e)
{
  memset(e, 0, sizeof(*e));
  column_copy(stmt, 0, e->id, sizeof(e->id));
  column_copy(stmt, 1, e->service_id, sizeof(e->service_id));
  column_copy(stmt, 2, e->service, sizeof(e->service));
  column_copy(stmt, 3, e->owner, sizeof(e->owner));
  column_copy(stmt, 4, e->load_balancer, sizeof(e->load_balancer));
  column_copy(stmt, 5, e->consumer, sizeof(e->consumer));
  column_copy(stmt, 6, e->network, sizeof(e->network));
  column_copy(stmt, 7, e->address, sizeof(e->address));
  if (state_from_column(stmt, 8, &e->state) < 0)
    return -EIO;
  column_copy(stmt, 9, e->reason, sizeof(e->reason));
  e->created_at = sqlite3_column_int64(stmt, 11);
  e->updated_at = sqlite3_column_int64(stmt, 12);
  return split_lines((const char *)sqlite3_column_text(stmt, 10),
                     &e->allowed_sources, &e->n_allowed_sources);
}

static int store_endpoint_insert(struct reg_store *store,
                                 const struct reg_endpoint *e,
                                 const struct reg_addr_key *key)
{
  sqlite3_stmt *stmt = stmt_get(store, EP_INSERT);
  char *sources = join_lines(e->allowed_sources, e->n_allowed_sources);
  int rc;

  if (sources == NULL)
    return -ENOMEM;
  bind_text(stmt, 1, e->id);
  bind_text(stmt, 2, e->service_id);
  bind_text(stmt, 3, e->consumer);
  bind_text(stmt, 4, e->network);
  bind_text(stmt, 5, e->address);
  sqlite3_bind_blob(stmt, 6, key->bytes, sizeof(key->bytes), SQLITE_STATIC);
  bind_text(stmt, 7, state_names[e->state]);
  bind_text(stmt, 8, e->reason);
  bind_text(stmt, 9, sources);
  sqlite3_bind_int64(stmt, 10, e->created_at);
  sqlite3_bind_int64(stmt, 11, e->updated_at);
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

static int collect_endpoints(struct reg_store *store, sqlite3_stmt *stmt,
                             struct reg_endpoint **out, size_t *n)
{
  struct reg_endpoint *v = NULL;
  size_t len = 0;
  size_t cap = 0;
  int rc;
  int r = 0;

  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (len == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      struct reg_endpoint *nv = realloc(v, ncap * sizeof(*nv));

      if (nv == NULL) {
        r = -ENOMEM;
        break;
      }
      v = nv;
      cap = ncap;
    }
    r = endpoint_from_row(stmt, &v[len++]);
    if (r < 0)
      break;
  }
  if (r == 0 && rc != SQLITE_DONE)
    r = fail(store, rc);
  sqlite3_reset(stmt);
  if (r < 0) {
    reg_endpoints_free(v, len);
    return r;
  }
  *out = v;
  *n = len;
  return 0;
}

static int store_endpoint_list(struct reg_store *store,
                               const struct reg_store_endpoint_filter *filter,
                               struct reg_endpoint **out, size_t *n)
{
  sqlite3_stmt *stmt;

  /* Both service and consumer are never asked for together; service wins. */
  if (filter->service_id != NULL) {
    stmt = stmt_get(store, EP_LIST_SERVICE);
    bind_text(stmt, 1, filter->service_id);
  } else if (filter->consumer != NULL) {
    stmt = stmt_get(store, EP_LIST_CONSUMER);
    bind_text(stmt, 1, filter->consumer);
  } else if (filter->state != NULL) {
    stmt = stmt_get(store, EP_LIST_STATE);
  } else {
    stmt = stmt_get(store, EP_LIST_ALL);
  }
  if (filter->service_id || filter->consumer || filter->state)
    bind_text(stmt, 2, filter->state ? state_names[*filter->state] : NULL);
  return collect_endpoints(store, stmt, out, n);
}

static int store_endpoint_update(struct reg_store *store,
                                 const struct reg_endpoint *e)
{
  sqlite3_stmt *stmt = stmt_get(store, EP_UPDATE);
  char *sources = join_lines(e->allowed_sources, e->n_allowed_sources);
  int r;

  if (sources == NULL)
    return -ENOMEM;
  bind_text(stmt, 1, e->id);
  bind_text(stmt, 2, state_names[e->state]);
  bind_text(stmt, 3, e->reason);
  bind_text(stmt, 4, sources);
  sqlite3_bind_int64(stmt, 5, e->updated_at);
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

static int store_network_used(struct reg_store *store, const char *network,
                              struct reg_addr_key **out, size_t *n)
{
  sqlite3_stmt *stmt = stmt_get(store, NET_USED);
  struct reg_addr_key *v = NULL;
  size_t len = 0;
  size_t cap = 0;
  int rc;

  bind_text(stmt, 1, network);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (sqlite3_column_bytes(stmt, 0) != (int)sizeof(v->bytes))
      continue;
    if (len == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      struct reg_addr_key *nv = realloc(v, ncap * sizeof(*nv));

      if (nv == NULL) {
        sqlite3_reset(stmt);
        free(v);
        return -ENOMEM;
      }
      v = nv;
      cap = ncap;
    }
    memcpy(v[len++].bytes, sqlite3_column_blob(stmt, 0), sizeof(v->bytes));
  }
  sqlite3_reset(stmt);
  if (rc != SQLITE_DONE) {
    free(v);
    return fail(store, rc);
  }
  *out = v;
  *n = len;
  return 0;
}

static int store_pending_before(struct reg_store *store, int64_t cutoff_ms,
                                struct reg_endpoint **out, size_t *n)
{
  sqlite3_stmt *stmt = stmt_get(store, PENDING_BEFORE);

  sqlite3_bind_int64(stmt, 1, cutoff_ms);
  return collect_endpoints(store, stmt, out, n);
}

/* ---- events ------------------------------------------------------------- */

static int store_event_append(struct reg_store *store, struct reg_event *ev)
{
  sqlite3_stmt *stmt = stmt_get(store, EV_INSERT);
  int r;

  sqlite3_bind_int64(stmt, 1, ev->time);
  bind_text(stmt, 2, event_names[ev->type]);
  bind_text(stmt, 3, ev->service_id);
  bind_text(stmt, 4, ev->endpoint_id);
  bind_text(stmt, 5, ev->principal);
  bind_text(stmt, 6, ev->owner);
  bind_text(stmt, 7, ev->consumer);
  bind_text(stmt, 8, state_names[ev->state]);
  bind_text(stmt, 9, ev->reason);
  if ((r = stmt_run(store, stmt)) < 0)
    return r;
  ev->seq = (uint64_t)sqlite3_last_insert_rowid(store->db);
  return 0;
}

static int event_from_row(sqlite3_stmt *stmt, struct reg_event *ev)
{
  const char *type = (const char *)sqlite3_column_text(stmt, 2);
  size_t i;

  memset(ev, 0, sizeof(*ev));
  ev->seq = (uint64_t)sqlite3_column_int64(stmt, 0);
  ev->time = sqlite3_column_int64(stmt, 1);
  for (i = 0; i < sizeof(event_names) / sizeof(event_names[0]); i++)
    if (type && strcmp(type, event_names[i]) == 0)
      break;
  if (i == sizeof(event_names) / sizeof(event_names[0]))
    return -EIO;
  ev->type = (enum reg_event_type)i;
  column_copy(stmt, 3, ev->service_id, sizeof(ev->service_id));
  column_copy(stmt, 4, ev->endpoint_id, sizeof(ev->endpoint_id));
  column_copy(stmt, 5, ev->principal, sizeof(ev->principal));
  column_copy(stmt, 6, ev->owner, sizeof(ev->owner));
  column_copy(stmt, 7, ev->consumer, sizeof(ev->consumer));
  column_copy(stmt, 9, ev->reason, sizeof(ev->reason));
  return state_from_column(stmt, 8, &ev->state);
}

static int store_events_after(struct reg_store *store, uint64_t after,
                              size_t limit, struct reg_event **out, size_t *n)
{
  sqlite3_stmt *stmt = stmt_get(store, EV_AFTER);
  struct reg_event *v = NULL;
  size_t len = 0;
  size_t cap = 0;
  int rc;
  int r = 0;

  sqlite3_bind_int64(stmt, 1, (sqlite3_int64)after);
  sqlite3_bind_int64(stmt, 2, (sqlite3_int64)limit);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (len == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      struct reg_event *nv = realloc(v, ncap * sizeof(*nv));

      if (nv == NULL) {
        r = -ENOMEM;
        break;
      }
      v = nv;
      cap = ncap;
    }
    if ((r = event_from_row(stmt, &v[len++])) < 0)
      break;
  }
  if (r == 0 && rc != SQLITE_DONE)
    r = fail(store, rc);
  sqlite3_reset(stmt);
  if (r < 0) {
    free(v);
    return r;
  }
  *out = v;
  *n = len;
  return 0;
}

static int store_last_seq(struct reg_store *store, uint64_t *seq)
{
  sqlite3_stmt *stmt = stmt_get(store, EV_LAST);
  int rc = sqlite3_step(stmt);

  if (rc == SQLITE_ROW)
    *seq = (uint64_t)sqlite3_column_int64(stmt, 0);
  sqlite3_reset(stmt);
  return rc == SQLITE_ROW ? 0 : fail(store, rc);
}

/* One integer column of a one-row statement; *null_out says it was NULL. */
static int step_int64(struct reg_store *store, sqlite3_stmt *stmt,
                      int64_t *value, bool *null_out)
{
  int rc = sqlite3_step(stmt);

  if (rc == SQLITE_ROW) {
    *null_out = sqlite3_column_type(stmt, 0) == SQLITE_NULL;
    *value = sqlite3_column_int64(stmt, 0);
  }
  sqlite3_reset(stmt);
  return rc == SQLITE_ROW ? 0 : fail(store, rc);
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
  sqlite3_stmt *prune = stmt_get(store, EV_PRUNE);
  uint64_t first, keep_from;
  int64_t value;
  bool none;
  int r, rc;

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
  sqlite3_bind_int64(prune, 1, (sqlite3_int64)keep_from);
  rc = sqlite3_step(prune);
  sqlite3_reset(prune);
  if (rc != SQLITE_DONE)
    return fail(store, rc);
  *removed = (size_t)sqlite3_changes(store->db);
  return 0;
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
    .network_used = store_network_used,
    .pending_before = store_pending_before,
    .event_append = store_event_append,
    .events_after = store_events_after,
    .first_seq = store_first_seq,
    .events_prune = store_events_prune,
    .last_seq = store_last_seq,
};
