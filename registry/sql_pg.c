/* The PostgreSQL driver: many nodes share one database. libpq, blocking
 * (the registry runs on a thread of its own), statements prepared on their
 * first run on each connection.
 *
 * Writers are serialized by one row: a write transaction's first statement
 * locks nlb_counter's row (SELECT ... FOR UPDATE) and later statements run
 * in READ COMMITTED, so each sees everything committed before the lock was
 * granted. Events take their seq from that row, which the transaction
 * updates before it commits: a sequence would hand out numbers that commit
 * out of order (a reader polling seq > last would skip one taken earlier
 * and committed later); the locked counter gives numbers without gaps that
 * become visible in commit order. The commit also sends NOTIFY nlb_changes,
 * which wakes the other nodes (each LISTENs); they read the events after
 * the last seq they applied. Reads run in REPEATABLE READ, so a change-feed
 * read sees one consistent snapshot.
 *
 * Every transaction sets its own statement_timeout and lock_timeout to the
 * time it has left, so a lock held elsewhere (another node, or anyone with
 * psql holding nlb_counter's row) aborts it in time instead of letting it
 * commit after its caller was told it failed.
 *
 * A node's name is held by its connection: a session advisory lock keyed
 * by a hash of the name, taken at every connection before anything else.
 * The server lets go of it when the session ends, however it ends (a
 * clean close, a killed process, or a vanished host once the keepalives
 * set on the session find the connection dead), so a crashed node does
 * not keep its name, and two processes never run as one node. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "nlb/registry-store.h"
#include "sql-driver.h"

#define CHANNEL "nlb_changes"
/* Any key: the one lock that makes concurrent migrations wait in line. */
#define MIGRATION_LOCK "4242001"
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define MAX_PARAMS 16
#define TEXT_OID 25 /* pg_type's text */
/* Bounds while connecting and migrating (a migration may rewrite a large
 * table); transactions then set their own. */
#define CONNECT_SETTINGS                                                       \
  "SET statement_timeout = '15s'; SET lock_timeout = '10s';"                   \
  " SET client_min_messages = warning;"                                        \
  " SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5;"            \
  " SET tcp_keepalives_count = 3"
/* Who holds a node's name: the advisory lock (objsubid 1: a bigint key,
 * split in two halves) and the session that holds it. */
#define NAME_HOLDER                                                            \
  "SELECT a.pid, coalesce(a.application_name, ''),"                            \
  " coalesce(host(a.client_addr), '') FROM pg_locks l"                         \
  " JOIN pg_stat_activity a ON a.pid = l.pid"                                  \
  " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"            \
  " AND l.database = (SELECT oid FROM pg_database"                             \
  " WHERE datname = current_database())"                                       \
  " AND l.classid::bigint = $1::bigint AND l.objid::bigint = $2::bigint"

/* The migration whose unique indexes ignore case. */
#define NOCASE_MIGRATION 3

/* The schema version this nlb writes: registry/sql/postgresql.sql. */
#define N_MIGRATIONS reg_sql_postgresql_n_migrations

struct reg_sql {
  PGconn *conn;
  char *conninfo;
  bool reader;
  char node[REG_NAME_BUF];
  int64_t node_key;  /* the name's advisory lock (>= 0) */
  char identity[64]; /* application_name: "nlbd pid N on HOST" */
  int backend_pid;   /* the server process of the last connection */
  uint32_t statement_timeout_ms;
  int version;
  /* Counts connections made: a statement prepared on an earlier one is
   * prepared again. */
  uint64_t generation;
  int n_stmts; /* names the next statement */
  /* Reconnecting: not before next_attempt_ms (monotonic). */
  uint64_t backoff_ms;
  uint64_t next_attempt_ms;
  /* The open write transaction's seq counter. */
  bool in_write;
  uint64_t tx_first_seq; /* the counter + 1 at begin */
  uint64_t tx_next_seq;
  char errmsg[256];
};

struct reg_sql_stmt {
  struct reg_sql *db;
  char name[16];
  char *sql; /* with $N */
  int n_params;
  Oid types[MAX_PARAMS];
  uint64_t prepared; /* the generation it was prepared on; 0: none */
  const char *values[MAX_PARAMS];
  int lengths[MAX_PARAMS];
  int formats[MAX_PARAMS];
  char ints[MAX_PARAMS][24];
  PGresult *res; /* the run's rows; NULL before the first step */
  int row;
};

/* ---- errors ------------------------------------------------------------- */

static void set_errmsg(struct reg_sql *db, const char *what, const char *detail)
{
  snprintf(db->errmsg, sizeof(db->errmsg), "postgresql: %s%s%.*s", what,
           detail && *detail ? ": " : "",
           detail ? (int)strcspn(detail, "\n") : 0, detail ? detail : "");
}

static bool connection_lost(struct reg_sql *db)
{
  return db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK;
}

/* Maps a failed result to an errno, keeps its message, frees it. */
static int result_error(struct reg_sql *db, PGresult *res)
{
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *constraint =
      res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
  int r = -EIO;

  set_errmsg(db, "query failed",
             res ? PQresultErrorMessage(res) : PQerrorMessage(db->conn));
  if (connection_lost(db) || state == NULL)
    r = -ENOTCONN;
  else if (strcmp(state, "57014") == 0 || strcmp(state, "55P03") == 0)
    r = -ETIMEDOUT; /* statement_timeout, lock_timeout */
  else if (strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0)
    r = -ENOTCONN;
  else if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
    r = -EAGAIN;
  else if (strcmp(state, "23505") == 0)
    r = constraint && strcmp(constraint, "endpoints_live_address") == 0
            ? -EADDRINUSE
            : -EEXIST;
  else if (strcmp(state, "23503") == 0)
    r = -ENOENT;
  PQclear(res);
  return r;
}

/* ---- statements --------------------------------------------------------- */

/* The store's SQL in PostgreSQL's words: ?N becomes $N, and a parameter
 * the statement does not use is declared text, so that statements sharing
 * a binding may skip some; group_concat is string_agg. */
static int translate(struct reg_sql_stmt *stmt, const char *sql)
{
  bool used[MAX_PARAMS + 1] = {false};
  bool quoted = false;
  char *out = malloc(strlen(sql) + 1);
  char *o = out;

  if (out == NULL)
    return -ENOMEM;
  for (const char *p = sql; *p;) {
    quoted ^= *p == '\'';
    if (!quoted && *p == '?') {
      char *end;
      long n = strtol(p + 1, &end, 10);

      if (n < 1 || n > MAX_PARAMS) {
        free(out);
        return -EINVAL;
      }
      used[n] = true;
      stmt->n_params = n > stmt->n_params ? (int)n : stmt->n_params;
      o += sprintf(o, "$%ld", n);
      p = end;
    } else if (!quoted && strncmp(p, "group_concat(", 13) == 0) {
      o = stpcpy(o, "string_agg(");
      p += 13;
    } else {
      *o++ = *p++;
    }
  }
  *o = '\0';
  for (int i = 0; i < stmt->n_params; i++)
    stmt->types[i] = used[i + 1] ? 0 : TEXT_OID;
  stmt->sql = out;
  return 0;
}

static int pg_prepare(struct reg_sql *db, const char *sql,
                      struct reg_sql_stmt **out)
{
  struct reg_sql_stmt *stmt = calloc(1, sizeof(*stmt));
  int r;

  if (stmt == NULL)
    return -ENOMEM;
  if ((r = translate(stmt, sql)) < 0) {
    snprintf(db->errmsg, sizeof(db->errmsg), "bad statement: %s", sql);
    free(stmt);
    return r;
  }
  stmt->db = db;
  snprintf(stmt->name, sizeof(stmt->name), "s%d", db->n_stmts++);
  *out = stmt;
  return 0;
}

static void pg_reset(struct reg_sql_stmt *stmt)
{
  PQclear(stmt->res);
  stmt->res = NULL;
  memset(stmt->values, 0, sizeof(stmt->values));
  memset(stmt->lengths, 0, sizeof(stmt->lengths));
  memset(stmt->formats, 0, sizeof(stmt->formats));
}

static void pg_finalize(struct reg_sql_stmt *stmt)
{
  if (stmt == NULL)
    return;
  pg_reset(stmt);
  free(stmt->sql);
  free(stmt);
}

static void pg_bind_int(struct reg_sql_stmt *stmt, int i, int64_t v)
{
  if (i > stmt->n_params)
    return;
  snprintf(stmt->ints[i - 1], sizeof(stmt->ints[i - 1]), "%" PRId64, v);
  stmt->values[i - 1] = stmt->ints[i - 1];
}

static void pg_bind_text(struct reg_sql_stmt *stmt, int i, const char *s)
{
  if (i <= stmt->n_params)
    stmt->values[i - 1] = s;
}

static void pg_bind_blob(struct reg_sql_stmt *stmt, int i, const void *p,
                         size_t n)
{
  if (i > stmt->n_params)
    return;
  stmt->values[i - 1] = p;
  stmt->lengths[i - 1] = (int)n;
  stmt->formats[i - 1] = 1;
}

/* Runs the statement at its first step; each step moves to the next row
 * of the result. */
static int pg_step(struct reg_sql_stmt *stmt)
{
  struct reg_sql *db = stmt->db;
  PGresult *res;
  ExecStatusType st;

  if (stmt->res == NULL) {
    if (connection_lost(db))
      return -ENOTCONN;
    if (stmt->prepared != db->generation) {
      res = PQprepare(db->conn, stmt->name, stmt->sql, stmt->n_params,
                      stmt->types);
      if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return result_error(db, res);
      PQclear(res);
      stmt->prepared = db->generation;
    }
    res = PQexecPrepared(db->conn, stmt->name, stmt->n_params, stmt->values,
                         stmt->lengths, stmt->formats, 0);
    st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
      return result_error(db, res);
    stmt->res = res;
    stmt->row = -1;
  }
  return ++stmt->row < PQntuples(stmt->res) ? 1 : 0;
}

static bool pg_column_is_null(struct reg_sql_stmt *stmt, int col)
{
  return PQgetisnull(stmt->res, stmt->row, col);
}

static const char *pg_column_text(struct reg_sql_stmt *stmt, int col)
{
  return PQgetvalue(stmt->res, stmt->row, col);
}

/* Booleans come as "t" and "f". */
static int64_t pg_column_int(struct reg_sql_stmt *stmt, int col)
{
  const char *v = pg_column_text(stmt, col);

  return v[0] == 't' ? 1 : strtoll(v, NULL, 10);
}

/* bytea comes as text "\x0011..." (hex output). */
static int pg_column_blob(struct reg_sql_stmt *stmt, int col, void *out,
                          size_t n)
{
  const char *text = pg_column_text(stmt, col);

  if (strncmp(text, "\\x", 2) != 0 || strlen(text) != 2 + 2 * n)
    return -EIO;
  for (size_t i = 0; i < n; i++) {
    unsigned byte;

    if (sscanf(text + 2 + 2 * i, "%2x", &byte) != 1)
      return -EIO;
    ((uint8_t *)out)[i] = (uint8_t)byte;
  }
  return 0;
}

static uint64_t pg_changes(struct reg_sql_stmt *stmt)
{
  return stmt->res ? strtoull(PQcmdTuples(stmt->res), NULL, 10) : 0;
}

/* ---- connection --------------------------------------------------------- */

static int exec_simple(struct reg_sql *db, const char *sql)
{
  PGresult *res = PQexec(db->conn, sql);
  ExecStatusType st = PQresultStatus(res);

  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    return result_error(db, res);
  PQclear(res);
  return 0;
}

/* The first column of sql's one row as a number. */
static int exec_int(struct reg_sql *db, const char *sql, int64_t *value)
{
  PGresult *res = PQexec(db->conn, sql);

  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    return result_error(db, res);
  *value = PQntuples(res) > 0 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
  PQclear(res);
  return 0;
}

/* Brings the schema up to date in one transaction, under an advisory lock,
 * so that nodes starting together migrate once, in line. */
static int migrate(struct reg_sql *db)
{
  char sql[96];
  int64_t version = 0;
  int r;

  if ((r = exec_simple(db, "BEGIN; SELECT pg_advisory_xact_lock(" MIGRATION_LOCK
                           "); CREATE TABLE IF NOT EXISTS nlb_schema"
                           " (version integer NOT NULL)")) < 0 ||
      (r = exec_int(db, "SELECT version FROM nlb_schema", &version)) < 0)
    goto fail_rollback;
  if (version > N_MIGRATIONS) {
    snprintf(db->errmsg, sizeof(db->errmsg),
             "store schema version %d is newer than this nlb (%d)",
             (int)version, N_MIGRATIONS);
    r = -EIO;
    goto fail_rollback;
  }
  for (int v = (int)version; v < N_MIGRATIONS; v++)
    if ((v == NOCASE_MIGRATION &&
         (r = sql_refuse_case_twins(&reg_sql_postgresql, db, db->errmsg,
                                    sizeof(db->errmsg))) < 0) ||
        (r = exec_simple(db, reg_sql_postgresql_migrations[v])) < 0)
      goto fail_rollback;
  snprintf(sql, sizeof(sql),
           "DELETE FROM nlb_schema; INSERT INTO nlb_schema VALUES (%d)",
           N_MIGRATIONS);
  if (version < N_MIGRATIONS && (r = exec_simple(db, sql)) < 0)
    goto fail_rollback;
  db->version = N_MIGRATIONS;
  return exec_simple(db, "COMMIT");

fail_rollback:
  if (!connection_lost(db))
    PQclear(PQexec(db->conn, "ROLLBACK"));
  return r;
}

static void disconnect(struct reg_sql *db)
{
  if (db->conn != NULL)
    PQfinish(db->conn);
  db->conn = NULL;
  db->in_write = false;
}

/* ---- the node's name ---------------------------------------------------- */

/* FNV-1a: the same key on every node, whatever the server's version. */
static int64_t name_key(const char *name)
{
  uint64_t h = 14695981039346656037ull;

  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    h = (h ^ *p) * 1099511628211ull;
  return (int64_t)(h >> 1);
}

/* One boolean or integer of a parameterized query run once (no prepared
 * statement: these run while connecting). */
static int query_value(struct reg_sql *db, const char *sql, int n,
                       const char *const *values, char *out, size_t len)
{
  PGresult *res = PQexecParams(db->conn, sql, n, NULL, values, NULL, NULL, 0);

  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    return result_error(db, res);
  snprintf(out, len, "%s", PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
  PQclear(res);
  return 0;
}

static int try_name(struct reg_sql *db, bool *got)
{
  char key[24], value[8];
  const char *values[] = {key};
  int r;

  snprintf(key, sizeof(key), "%" PRId64, db->node_key);
  r = query_value(db, "SELECT pg_try_advisory_lock($1::bigint)", 1, values,
                  value, sizeof(value));
  *got = r == 0 && value[0] == 't';
  return r;
}

struct holder {
  int pid; /* its server process; 0: nobody holds the name now */
  char application_name[64];
  char address[64];
};

static int find_holder(struct reg_sql *db, struct holder *h)
{
  char high[24], low[24];
  const char *values[] = {high, low};
  PGresult *res;

  memset(h, 0, sizeof(*h));
  snprintf(high, sizeof(high), "%" PRId64, db->node_key >> 32);
  snprintf(low, sizeof(low), "%" PRId64, db->node_key & 0xffffffff);
  res = PQexecParams(db->conn, NAME_HOLDER, 2, NULL, values, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    return result_error(db, res);
  if (PQntuples(res) > 0) {
    h->pid = atoi(PQgetvalue(res, 0, 0));
    snprintf(h->application_name, sizeof(h->application_name), "%s",
             PQgetvalue(res, 0, 1));
    snprintf(h->address, sizeof(h->address), "%s", PQgetvalue(res, 0, 2));
  }
  PQclear(res);
  return 0;
}

/* Our own session from before a reconnection, which the server has not
 * found dead yet: it goes, and the name is ours again once it has. */
static int take_back(struct reg_sql *db, const struct holder *h, bool *got)
{
  char pid[16], key[24], value[8];
  const char *terminate[] = {pid};
  const char *lock[] = {key};
  int r;

  snprintf(pid, sizeof(pid), "%d", h->pid);
  snprintf(key, sizeof(key), "%" PRId64, db->node_key);
  if ((r = query_value(db, "SELECT pg_terminate_backend($1::int)", 1, terminate,
                       value, sizeof(value))) < 0)
    return r;
  /* Waits (lock_timeout at most) for that session to end. */
  r = query_value(db, "SELECT pg_advisory_lock($1::bigint)", 1, lock, value,
                  sizeof(value));
  *got = r == 0;
  return r == -ETIMEDOUT ? 0 : r;
}

/* The session name (set_identity's) of the process an upgrade's new nlbd
 * takes over from: its session goes, as our own old one would. */
static char predecessor[64];

void reg_pg_take_over_from(long pid)
{
  char host[256] = "";

  if (gethostname(host, sizeof(host) - 1) < 0)
    snprintf(host, sizeof(host), "?");
  host[strcspn(host, ".")] = '\0';
  snprintf(predecessor, sizeof(predecessor), "nlbd pid %ld on %s", pid, host);
}

/* Holds this node's name for the connection's life, or says who does
 * (-EBUSY). */
static int hold_name(struct reg_sql *db)
{
  struct holder h;
  bool got = false;
  int r;

  if (db->reader)
    return 0;
  for (int attempt = 0; attempt < 2 && !got; attempt++) {
    if ((r = try_name(db, &got)) < 0)
      return r;
    if (got || (r = find_holder(db, &h)) < 0)
      return r;
    if ((h.pid != 0 && h.pid == db->backend_pid &&
         strcmp(h.application_name, db->identity) == 0) ||
        (h.pid != 0 && predecessor[0] &&
         strcmp(h.application_name, predecessor) == 0)) {
      if ((r = take_back(db, &h, &got)) < 0)
        return r;
      break;
    }
    if (h.pid != 0)
      break; /* else it was let go of meanwhile: try once more */
  }
  if (got)
    return 0;
  snprintf(db->errmsg, sizeof(db->errmsg),
           "node name %s is in use on this registry by %s%s%s%s", db->node,
           h.pid && h.application_name[0] ? h.application_name
                                          : "another process",
           h.address[0] ? " (connected from " : "", h.address,
           h.address[0] ? ")" : "");
  return -EBUSY;
}

/* Connects (blocking), holds the node's name, migrates, and listens for
 * other nodes' commits. */
static int connect_now(struct reg_sql *db)
{
  /* Our defaults come first: the user's connection string overrides
   * them. The keepalives make a server that vanished an error within
   * about 25 s instead of a wait as long as TCP's. */
  const char *keys[] = {"connect_timeout",
                        "application_name",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "dbname",
                        NULL};
  const char *values[] = {"3", db->identity, "10", "5",
                          "3", db->conninfo, NULL};
  char bounds[96];
  int r;

  disconnect(db);
  db->conn = PQconnectdbParams(keys, values, 1);
  if (db->conn == NULL)
    return -ENOMEM;
  if (PQstatus(db->conn) != CONNECTION_OK) {
    set_errmsg(db, "cannot connect", PQerrorMessage(db->conn));
    disconnect(db);
    return -ENOTCONN;
  }
  db->generation++;
  snprintf(bounds, sizeof(bounds),
           "SET statement_timeout = %" PRIu32 "; SET lock_timeout = %" PRIu32,
           db->statement_timeout_ms, db->statement_timeout_ms);
  if ((r = exec_simple(db, CONNECT_SETTINGS)) < 0 || (r = hold_name(db)) < 0 ||
      (r = migrate(db)) < 0 || (r = exec_simple(db, bounds)) < 0 ||
      (!db->reader && (r = exec_simple(db, "LISTEN " CHANNEL)) < 0)) {
    if (r == -ENOTCONN || r == -EBUSY)
      disconnect(db);
    return r;
  }
  db->backend_pid = PQbackendPID(db->conn);
  PQsetnonblocking(db->conn, 0);
  db->backoff_ms = 0;
  return 0;
}

/* A usable connection, or -ENOTCONN (trying again at most as often as the
 * backoff allows). */
static int ensure_connected(struct reg_sql *db)
{
  uint64_t now = reg_monotonic_ms();
  int r;

  if (!connection_lost(db))
    return 0;
  if (now < db->next_attempt_ms)
    return -ENOTCONN;
  r = connect_now(db);
  /* Another process took the name while we were away: this one stays
   * unavailable (serving its last state, writes refused) until it is
   * free again, and never writes as that node meanwhile. */
  if (r == -EBUSY)
    r = -ENOTCONN;
  if (r == -ENOTCONN) {
    db->backoff_ms = db->backoff_ms ? db->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (db->backoff_ms > BACKOFF_MAX_MS)
      db->backoff_ms = BACKOFF_MAX_MS;
    db->next_attempt_ms = now + db->backoff_ms;
  }
  return r;
}

static void pg_close(struct reg_sql *db)
{
  if (db == NULL)
    return;
  disconnect(db);
  free(db->conninfo);
  free(db);
}

/* What the session of this process is called on the server, so that a
 * refused node can name the holder of its name. */
static void set_identity(struct reg_sql *db)
{
  char host[256] = "";

  if (gethostname(host, sizeof(host) - 1) < 0)
    snprintf(host, sizeof(host), "?");
  host[strcspn(host, ".")] = '\0';
  snprintf(db->identity, sizeof(db->identity), "nlbd pid %ld on %s",
           (long)getpid(), host);
}

/* "postgresql:CONNINFO" ("postgresql:host=/run/postgresql dbname=nlb"), or
 * a libpq URI ("postgresql://nlb@db.example/nlb"). */
static int pg_open(struct reg_sql **out, const struct reg_store_settings *s,
                   char *errbuf, size_t errlen)
{
  const char *url = s->location;
  const char *conninfo = url + strlen("postgresql:");
  struct reg_sql *db = calloc(1, sizeof(*db));
  PQconninfoOption *parsed;
  char *why = NULL;
  int r;

  if (strncmp(conninfo, "//", 2) == 0)
    conninfo = url;
  if (db == NULL || (db->conninfo = strdup(conninfo)) == NULL) {
    free(db);
    return -ENOMEM;
  }
  db->reader = s->reader;
  snprintf(db->node, sizeof(db->node), "%s", s->node ? s->node : "");
  db->node_key = name_key(db->node);
  db->statement_timeout_ms = s->statement_timeout_ms;
  set_identity(db);
  /* A connection string that cannot work is a config error; a server
   * that does not answer yet is not: the node starts and keeps trying. */
  if ((parsed = PQconninfoParse(conninfo, &why)) == NULL) {
    snprintf(errbuf, errlen, "bad PostgreSQL connection string: %.*s",
             why ? (int)strcspn(why, "\n") : 6, why ? why : "(none)");
    PQfreemem(why);
    pg_close(db);
    return -EINVAL;
  }
  PQconninfoFree(parsed);
  r = connect_now(db);
  if (r == -ENOTCONN) {
    db->backoff_ms = BACKOFF_MIN_MS;
    db->next_attempt_ms = reg_monotonic_ms() + BACKOFF_MIN_MS;
  } else if (r < 0) {
    snprintf(errbuf, errlen, "%s", db->errmsg);
    pg_close(db);
    return r;
  }
  *out = db;
  return 0;
}

static const char *pg_errmsg(struct reg_sql *db)
{
  return db->errmsg;
}

static int pg_schema_version(struct reg_sql *db)
{
  return db->version;
}

/* ---- transactions ------------------------------------------------------- */

/* BEGIN with the transaction's bounds (SET LOCAL: back to the session's at
 * its end) and, for a write, the counter row's lock. */
static PGresult *begin_on(struct reg_sql *db, bool write, uint32_t timeout_ms)
{
  char sql[256];

  snprintf(sql, sizeof(sql),
           "%s; SET LOCAL statement_timeout = %" PRIu32
           "; SET LOCAL lock_timeout = %" PRIu32 "%s",
           write ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
           timeout_ms, timeout_ms,
           write ? "; SELECT last_seq FROM nlb_counter WHERE id = 1 FOR UPDATE"
                 : "");
  return PQexec(db->conn, sql);
}

static bool begun(PGresult *res, bool write)
{
  if (!write)
    return PQresultStatus(res) == PGRES_COMMAND_OK;
  return PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
}

/* The transaction's statements and lock waits end within timeout_ms. A
 * connection found broken here (the server restarted while it sat idle, as
 * the reader's may for long) is replaced at once: nothing had started on
 * it. */
static int pg_begin(struct reg_sql *db, bool write, uint32_t timeout_ms)
{
  PGresult *res;
  int r;

  for (int attempt = 0;; attempt++) {
    if ((r = ensure_connected(db)) < 0)
      return r;
    res = begin_on(db, write, timeout_ms);
    if (begun(res, write))
      break;
    if ((r = result_error(db, res)) != -ENOTCONN) {
      PQclear(PQexec(db->conn, "ROLLBACK"));
      return r;
    }
    /* libpq may still call it CONNECTION_OK: it is not. */
    disconnect(db);
    if (attempt > 0)
      return r;
  }
  if (write) {
    db->tx_first_seq = strtoull(PQgetvalue(res, 0, 0), NULL, 10) + 1;
    db->tx_next_seq = db->tx_first_seq;
    db->in_write = true;
  }
  PQclear(res);
  return 0;
}

static int pg_commit(struct reg_sql *db)
{
  char sql[160];
  int r;

  if (db->in_write && db->tx_next_seq > db->tx_first_seq) {
    uint64_t last = db->tx_next_seq - 1;

    snprintf(sql, sizeof(sql),
             "UPDATE nlb_counter SET last_seq = %" PRIu64 " WHERE id = 1;"
             " NOTIFY " CHANNEL ", '%" PRIu64 "'; COMMIT",
             last, last);
  } else {
    snprintf(sql, sizeof(sql), "COMMIT");
  }
  db->in_write = false;
  r = exec_simple(db, sql);
  if (r < 0 && !connection_lost(db))
    PQclear(PQexec(db->conn, "ROLLBACK"));
  return r;
}

static void pg_rollback(struct reg_sql *db)
{
  db->in_write = false;
  if (!connection_lost(db))
    PQclear(PQexec(db->conn, "ROLLBACK"));
}

static int pg_wait_fd(struct reg_sql *db)
{
  return connection_lost(db) ? -1 : PQsocket(db->conn);
}

static bool pg_take_notices(struct reg_sql *db)
{
  PGnotify *notice;
  bool got = false;

  if (connection_lost(db))
    return true; /* read again: that reconnects */
  if (!PQconsumeInput(db->conn))
    return true;
  while ((notice = PQnotifies(db->conn)) != NULL) {
    got = true;
    PQfreemem(notice);
  }
  return got;
}

static int pg_now(struct reg_sql *db, int64_t *now_ms)
{
  int r = ensure_connected(db);

  return r < 0 ? r
               : exec_int(db,
                          "SELECT (extract(epoch from clock_timestamp())"
                          " * 1000)::bigint",
                          now_ms);
}

static int pg_event_seq(struct reg_sql *db, int64_t *seq)
{
  if (!db->in_write) {
    snprintf(db->errmsg, sizeof(db->errmsg),
             "event appended outside a write transaction");
    return -EIO;
  }
  *seq = (int64_t)db->tx_next_seq++;
  return 0;
}

const struct reg_sql_driver reg_sql_postgresql = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .errmsg = pg_errmsg,
    .schema_version = pg_schema_version,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .wait_fd = pg_wait_fd,
    .take_notices = pg_take_notices,
    .now = pg_now,
    .event_seq = pg_event_seq,
    .last_seq_sql = "SELECT last_seq FROM nlb_counter WHERE id = 1",
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .bind_int = pg_bind_int,
    .bind_text = pg_bind_text,
    .bind_blob = pg_bind_blob,
    .step = pg_step,
    .column_is_null = pg_column_is_null,
    .column_int = pg_column_int,
    .column_text = pg_column_text,
    .column_blob = pg_column_blob,
    .changes = pg_changes,
    .reset = pg_reset,
};
