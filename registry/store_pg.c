/* The PostgreSQL store: many nodes share one database. libpq, blocking (the
 * registry runs on a thread of its own), statements prepared on first use.
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
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "nlb/registry-store.h"
#include "store-int.h"

#define LIVE "('pendingAcceptance','available')"
#define CHANNEL "nlb_changes"
/* Any key: the one lock that makes concurrent migrations wait in line. */
#define MIGRATION_LOCK "4242001"
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define DB_NOW "(extract(epoch from clock_timestamp()) * 1000)::bigint"
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

static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE nlb_counter (id integer PRIMARY KEY CHECK (id = 1),"
    "  last_seq bigint NOT NULL);"
    "INSERT INTO nlb_counter VALUES (1, 0);"
    "CREATE TABLE services ("
    "  id text COLLATE \"C\" PRIMARY KEY,"
    "  name text NOT NULL UNIQUE,"
    "  owner text NOT NULL,"
    "  load_balancer text NOT NULL,"
    "  acceptance_required boolean NOT NULL,"
    "  connection_limit bigint NOT NULL,"
    "  created_at bigint NOT NULL);"
    "CREATE INDEX services_page ON services (created_at, id);"
    "CREATE INDEX services_owner ON services (owner, created_at, id);"
    "CREATE TABLE service_principals ("
    "  service_id text NOT NULL REFERENCES services(id) ON DELETE CASCADE,"
    "  principal text NOT NULL,"
    "  PRIMARY KEY (service_id, principal));"
    "CREATE INDEX service_principals_principal"
    "  ON service_principals (principal);"
    "CREATE TABLE endpoints ("
    "  id text COLLATE \"C\" PRIMARY KEY,"
    "  service_id text NOT NULL REFERENCES services(id) ON DELETE CASCADE,"
    "  consumer text NOT NULL,"
    "  network text NOT NULL,"
    "  address text NOT NULL,"
    "  address_key bytea NOT NULL,"
    "  state text NOT NULL CHECK (state IN ('pendingAcceptance','available',"
    "    'rejected','deleted','expired','failed')),"
    "  reason text NOT NULL DEFAULT '',"
    "  allowed_sources text NOT NULL DEFAULT '',"
    "  created_at bigint NOT NULL,"
    "  updated_at bigint NOT NULL);"
    "CREATE INDEX endpoints_page ON endpoints (created_at, id);"
    "CREATE INDEX endpoints_service ON endpoints (service_id, created_at, id);"
    "CREATE INDEX endpoints_service_state"
    "  ON endpoints (service_id, state, created_at, id);"
    "CREATE INDEX endpoints_consumer ON endpoints (consumer, created_at, id);"
    "CREATE INDEX endpoints_consumer_state"
    "  ON endpoints (consumer, state, created_at, id);"
    "CREATE INDEX endpoints_state ON endpoints (state, created_at, id);"
    "CREATE UNIQUE INDEX endpoints_live_address"
    "  ON endpoints (network, address_key) WHERE state IN " LIVE ";"
    "CREATE TABLE placements ("
    "  endpoint_id text NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,"
    "  node text NOT NULL,"
    "  open boolean NOT NULL,"
    "  reason text NOT NULL DEFAULT '',"
    "  updated_at bigint NOT NULL,"
    "  PRIMARY KEY (endpoint_id, node));"
    "CREATE TABLE targets ("
    "  target_group text NOT NULL,"
    "  address text NOT NULL,"
    "  weight bigint NOT NULL,"
    "  created_at bigint NOT NULL,"
    "  PRIMARY KEY (target_group, address));"
    "CREATE TABLE nodes ("
    "  name text PRIMARY KEY,"
    "  version text NOT NULL DEFAULT '',"
    "  started_at bigint NOT NULL,"
    "  last_seen bigint NOT NULL,"
    "  applied_seq bigint NOT NULL DEFAULT 0,"
    "  draining boolean NOT NULL DEFAULT false);"
    "CREATE TABLE network_hints ("
    "  network text PRIMARY KEY,"
    "  next_key bytea NOT NULL);"
    "CREATE TABLE events ("
    "  seq bigint PRIMARY KEY,"
    "  time bigint NOT NULL,"
    "  type text NOT NULL,"
    "  service_id text NOT NULL DEFAULT '',"
    "  endpoint_id text NOT NULL DEFAULT '',"
    "  principal text NOT NULL DEFAULT '',"
    "  owner text NOT NULL DEFAULT '',"
    "  consumer text NOT NULL DEFAULT '',"
    "  state text NOT NULL DEFAULT '',"
    "  reason text NOT NULL DEFAULT '',"
    "  target_group text NOT NULL DEFAULT '',"
    "  target text NOT NULL DEFAULT '',"
    "  node text NOT NULL DEFAULT '');"
    "CREATE INDEX events_time ON events (time);"
    "CREATE INDEX events_owner ON events (owner, seq) WHERE owner <> '';"
    "CREATE INDEX events_consumer ON events (consumer, seq)"
    "  WHERE consumer <> '';",
    /* 1 -> 2: principals, tokens and networks made through the API; events
     * name them; endpoints in final states are pruned by age. */
    "CREATE TABLE principals ("
    "  name text PRIMARY KEY,"
    "  role text NOT NULL,"
    "  created_at bigint NOT NULL);"
    "CREATE TABLE tokens ("
    "  id text COLLATE \"C\" PRIMARY KEY,"
    "  principal text NOT NULL REFERENCES principals(name) ON DELETE CASCADE,"
    "  sha256 bytea NOT NULL UNIQUE,"
    "  created_at bigint NOT NULL,"
    "  expires_at bigint NOT NULL DEFAULT 0,"
    "  last_used_at bigint NOT NULL DEFAULT 0);"
    "CREATE INDEX tokens_principal ON tokens (principal, created_at);"
    "CREATE TABLE networks ("
    "  name text PRIMARY KEY,"
    "  range text NOT NULL,"
    "  netns text NOT NULL DEFAULT '',"
    "  principals text NOT NULL DEFAULT '',"
    "  created_at bigint NOT NULL);"
    "ALTER TABLE events ADD COLUMN subject text NOT NULL DEFAULT '';"
    "ALTER TABLE events ADD COLUMN token_id text NOT NULL DEFAULT '';"
    "ALTER TABLE nodes ADD COLUMN networks text NOT NULL DEFAULT '';"
    "CREATE INDEX endpoints_final ON endpoints (updated_at)"
    "  WHERE state IN ('rejected','deleted','expired','failed');",
    /* 2 -> 3: private DNS names. A service's own host name (lower case,
     * "" = none, unique among services) and each endpoint's opt-in. */
    "ALTER TABLE services ADD COLUMN private_dns_name text NOT NULL"
    "  DEFAULT '';"
    "CREATE UNIQUE INDEX services_private_dns_name"
    "  ON services (private_dns_name) WHERE private_dns_name <> '';"
    "ALTER TABLE endpoints ADD COLUMN private_dns boolean NOT NULL"
    "  DEFAULT false;",
    /* 3 -> 4: names unique as DNS compares them, ignoring ASCII case
     * (refuse_case_twins runs first); each principal's since_seq, after
     * the events of an earlier principal of its name. */
    "CREATE UNIQUE INDEX services_name_nocase ON services (lower(name));"
    "CREATE UNIQUE INDEX principals_name_nocase ON principals (lower(name));"
    "ALTER TABLE principals ADD COLUMN since_seq bigint NOT NULL DEFAULT 0;"
    "UPDATE principals p SET since_seq = m.seq FROM (SELECT subject,"
    "  max(seq) AS seq FROM events WHERE type = 'principal_create'"
    "  GROUP BY subject) m WHERE m.subject = p.name;",
};

/* The migration whose unique indexes ignore case. */
#define NOCASE_MIGRATION 3

#define N_MIGRATIONS (int)(sizeof(migrations) / sizeof(migrations[0]))

#define SERVICE_COLUMNS                                                        \
  "id, name, owner, load_balancer, acceptance_required, connection_limit, "    \
  "created_at, private_dns_name"
#define ENDPOINT_COLUMNS                                                       \
  "e.id, e.service_id, s.name, s.owner, s.load_balancer, e.consumer, "         \
  "e.network, e.address, e.state, e.reason, e.allowed_sources, "               \
  "e.created_at, e.updated_at, (SELECT string_agg(p.node || E'\\t' || "        \
  "CASE WHEN p.open THEN '1' ELSE '0' END || E'\\t' || p.updated_at || "       \
  "E'\\t' || p.reason, E'\\n') FROM placements p WHERE p.endpoint_id = "       \
  "e.id), "                                                                    \
  "(SELECT n.netns FROM networks n WHERE n.name = e.network), "                \
  "s.private_dns_name, e.private_dns"
#define ENDPOINT_FROM                                                          \
  "SELECT " ENDPOINT_COLUMNS " FROM endpoints e"                               \
  " JOIN services s ON s.id = e.service_id"
#define EVENT_COLUMNS                                                          \
  "seq, time, type, service_id, endpoint_id, principal, owner, consumer, "     \
  "state, reason, target_group, target, node, subject, token_id"
/* Lists take the filter as $1 and the page as $2 (created_at), $3 (id),
 * $4 (limit). */
#define PAGE(t)                                                                \
  " AND (" t "created_at, " t "id) > ($2::bigint, $3::text)"                   \
  " ORDER BY " t "created_at, " t "id LIMIT $4"

enum stmt_id {
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
  NODE_BEAT,
  NODE_START,
  NODE_LIST,
  NODE_DRAIN,
  NOW,
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

static const char *const stmt_sql[N_STMTS] = {
    [SVC_INSERT] = "INSERT INTO services (" SERVICE_COLUMNS
                   ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    [SVC_GET] = "SELECT " SERVICE_COLUMNS " FROM services"
                " WHERE id = $1 OR lower(name) = lower($1)"
                " ORDER BY id = $1 DESC LIMIT 1",
    [SVC_LIST_ALL] = "SELECT " SERVICE_COLUMNS
                     " FROM services WHERE $1::text IS NULL" PAGE(""),
    [SVC_LIST_OWNER] =
        "SELECT " SERVICE_COLUMNS " FROM services WHERE owner = $1" PAGE(""),
    [SVC_LIST_CONSUMER] =
        "SELECT " SERVICE_COLUMNS " FROM services"
        " WHERE id IN (SELECT service_id FROM"
        " service_principals WHERE principal IN ($1, '*'))" PAGE(""),
    [SVC_UPDATE] = "UPDATE services SET acceptance_required = $2,"
                   " connection_limit = $3, private_dns_name = $4"
                   " WHERE id = $1",
    [SVC_DELETE] = "DELETE FROM services WHERE id = $1",
    [SVC_PRINCIPALS] =
        "SELECT principal FROM service_principals"
        " WHERE service_id = $1 ORDER BY principal COLLATE \"C\"",
    [SVC_PRINCIPAL_ADD] = "INSERT INTO service_principals (service_id,"
                          " principal) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    [SVC_PRINCIPALS_CLEAR] =
        "DELETE FROM service_principals WHERE service_id = $1",
    [SVC_COUNT_LIVE] = "SELECT count(*) FROM endpoints WHERE service_id = $1"
                       " AND state IN " LIVE,
    [EP_INSERT] = "INSERT INTO endpoints (id, service_id, consumer, network,"
                  " address, address_key, state, reason, allowed_sources,"
                  " created_at, updated_at, private_dns)"
                  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
                  " $12)",
    [EP_GET] = ENDPOINT_FROM " WHERE e.id = $1",
    [EP_LIST_ALL] = ENDPOINT_FROM " WHERE $1::text IS NULL" PAGE("e."),
    [EP_LIST_STATE] =
        ENDPOINT_FROM " WHERE $1::text IS NULL AND e.state = $5" PAGE("e."),
    [EP_LIST_SERVICE] = ENDPOINT_FROM " WHERE e.service_id = $1" PAGE("e."),
    [EP_LIST_SERVICE_STATE] =
        ENDPOINT_FROM " WHERE e.service_id = $1 AND e.state = $5" PAGE("e."),
    [EP_LIST_CONSUMER] = ENDPOINT_FROM " WHERE e.consumer = $1" PAGE("e."),
    [EP_LIST_CONSUMER_STATE] =
        ENDPOINT_FROM " WHERE e.consumer = $1 AND e.state = $5" PAGE("e."),
    [EP_UPDATE] = "UPDATE endpoints SET state = $2, reason = $3,"
                  " allowed_sources = $4, updated_at = $5, private_dns = $6"
                  " WHERE id = $1",
    [EP_COUNT_LIVE] = "SELECT count(*) FROM endpoints WHERE service_id = $1"
                      " AND consumer = $2 AND state IN " LIVE,
    [EP_COUNTS] = "SELECT s.name, e.state, count(*) FROM endpoints e"
                  " JOIN services s ON s.id = e.service_id"
                  " GROUP BY s.name, e.state",
    [ADDR_TAKEN] = "SELECT 1 FROM endpoints WHERE network = $1"
                   " AND address_key = $2 AND state IN " LIVE,
    [HINT_GET] = "SELECT next_key FROM network_hints WHERE network = $1",
    [HINT_SET] = "INSERT INTO network_hints (network, next_key)"
                 " VALUES ($1, $2) ON CONFLICT (network)"
                 " DO UPDATE SET next_key = excluded.next_key",
    [PENDING_BEFORE] = ENDPOINT_FROM " WHERE e.state = 'pendingAcceptance'"
                                     " AND e.created_at <= $1"
                                     " ORDER BY e.created_at, e.id LIMIT $2",
    [PLACEMENT_PUT] = "INSERT INTO placements (endpoint_id, node, open,"
                      " reason, updated_at) VALUES ($1, $2, $3, $4, $5)"
                      " ON CONFLICT (endpoint_id, node) DO UPDATE SET"
                      " open = excluded.open, reason = excluded.reason,"
                      " updated_at = excluded.updated_at",
    [TARGET_INSERT] = "INSERT INTO targets (target_group, address, weight,"
                      " created_at) VALUES ($1, $2, $3, $4)",
    [TARGET_GET] = "SELECT target_group, address, weight, created_at"
                   " FROM targets WHERE target_group = $1 AND address = $2",
    [TARGET_DELETE] =
        "DELETE FROM targets WHERE target_group = $1 AND address = $2",
    [TARGET_LIST] = "SELECT target_group, address, weight, created_at"
                    " FROM targets ORDER BY target_group, created_at",
    [NODE_BEAT] = "INSERT INTO nodes (name, version, started_at, last_seen,"
                  " applied_seq, networks)"
                  " VALUES ($1, $2, " DB_NOW ", " DB_NOW ", $3, $4)"
                  " ON CONFLICT (name) DO UPDATE SET version = $2,"
                  " last_seen = " DB_NOW ", applied_seq = $3, networks = $4",
    [NODE_START] = "INSERT INTO nodes (name, version, started_at, last_seen,"
                   " applied_seq, networks)"
                   " VALUES ($1, $2, " DB_NOW ", " DB_NOW ", $3, $4)"
                   " ON CONFLICT (name) DO UPDATE SET version = $2,"
                   " started_at = " DB_NOW ", last_seen = " DB_NOW ","
                   " applied_seq = $3, draining = false, networks = $4",
    [NODE_LIST] = "SELECT name, version, started_at, last_seen, applied_seq,"
                  " draining, networks FROM nodes ORDER BY name",
    [NODE_DRAIN] = "UPDATE nodes SET draining = true WHERE name = $1",
    [NOW] = "SELECT " DB_NOW,
    [EP_PRUNE] = "DELETE FROM endpoints WHERE id IN (SELECT id FROM endpoints"
                 " WHERE state IN ('rejected','deleted','expired','failed')"
                 " AND updated_at < $1 ORDER BY updated_at LIMIT $2)",
    [SVC_COUNT_OWNER] = "SELECT count(*) FROM services WHERE owner = $1",
    [PRINCIPAL_INSERT] = "INSERT INTO principals (name, role, created_at,"
                         " since_seq) VALUES ($1, $2, $3, $4)",
    [PRINCIPAL_GET] = "SELECT name, role, created_at, since_seq"
                      " FROM principals WHERE name = $1",
    [PRINCIPAL_LIST] = "SELECT name, role, created_at, since_seq"
                       " FROM principals ORDER BY name COLLATE \"C\"",
    [PRINCIPAL_DELETE] = "DELETE FROM principals WHERE name = $1",
    [PRINCIPAL_FORGET_ENDPOINTS] =
        "DELETE FROM endpoints WHERE consumer = $1 AND state NOT IN " LIVE,
    [PRINCIPAL_FORGET_GRANTS] =
        "DELETE FROM service_principals WHERE principal = $1",
    [PRINCIPAL_SERVICES] = "SELECT count(*) FROM services WHERE owner = $1",
    [PRINCIPAL_ENDPOINTS] = "SELECT count(*) FROM endpoints WHERE consumer = $1"
                            " AND state IN " LIVE,
    [TOKEN_INSERT] = "INSERT INTO tokens (id, principal, sha256, created_at,"
                     " expires_at) VALUES ($1, $2, $3, $4, $5)",
    [TOKEN_GET] = "SELECT t.id, t.principal, p.role, t.sha256, t.created_at,"
                  " t.expires_at, t.last_used_at FROM tokens t"
                  " JOIN principals p ON p.name = t.principal WHERE t.id = $1",
    [TOKEN_LIST] = "SELECT t.id, t.principal, p.role, t.sha256, t.created_at,"
                   " t.expires_at, t.last_used_at FROM tokens t"
                   " JOIN principals p ON p.name = t.principal"
                   " WHERE t.principal = $1 ORDER BY t.created_at, t.id",
    [TOKEN_LIST_ALL] =
        "SELECT t.id, t.principal, p.role, t.sha256,"
        " t.created_at, t.expires_at, t.last_used_at"
        " FROM tokens t JOIN principals p ON p.name = t.principal"
        " ORDER BY t.created_at, t.id",
    [TOKEN_DELETE] = "DELETE FROM tokens WHERE id = $1",
    [TOKEN_TOUCH] = "UPDATE tokens SET last_used_at = $2 WHERE id = $1"
                    " AND last_used_at < $2",
    [NETWORK_INSERT] = "INSERT INTO networks (name, range, netns, principals,"
                       " created_at) VALUES ($1, $2, $3, $4, $5)",
    [NETWORK_GET] = "SELECT name, range, netns, principals, created_at"
                    " FROM networks WHERE name = $1",
    [NETWORK_LIST] = "SELECT name, range, netns, principals, created_at"
                     " FROM networks ORDER BY name COLLATE \"C\"",
    [NETWORK_DELETE] = "DELETE FROM networks WHERE name = $1",
    [NETWORK_COUNT_LIVE] = "SELECT count(*) FROM endpoints WHERE network = $1"
                           " AND state IN " LIVE,
    [EV_INSERT] = "INSERT INTO events (seq, time, type, service_id,"
                  " endpoint_id, principal, owner, consumer, state, reason,"
                  " target_group, target, node, subject, token_id) VALUES"
                  " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
                  " $14, $15)",
    [EV_AFTER] = "SELECT " EVENT_COLUMNS " FROM events WHERE seq > $1"
                 " ORDER BY seq LIMIT $2",
    [EV_AFTER_OWNER] = "SELECT " EVENT_COLUMNS " FROM events WHERE owner = $3"
                       " AND owner <> '' AND seq > $1 ORDER BY seq LIMIT $2",
    [EV_AFTER_CONSUMER] = "SELECT " EVENT_COLUMNS " FROM events"
                          " WHERE consumer = $3 AND consumer <> ''"
                          " AND seq > $1 ORDER BY seq LIMIT $2",
    [EV_LAST] = "SELECT last_seq FROM nlb_counter WHERE id = 1",
    [EV_FIRST] = "SELECT min(seq) FROM events",
    [EV_KEEP_FROM] = "SELECT min(seq) FROM events WHERE time >= $1",
    [EV_PRUNE] = "DELETE FROM events WHERE seq < $1",
};

struct reg_store {
  PGconn *conn;
  char *conninfo;
  bool reader;
  char node[REG_NAME_BUF];
  int64_t node_key;  /* the name's advisory lock (>= 0) */
  char identity[64]; /* application_name: "nlbd pid N on HOST" */
  int backend_pid;   /* the server process of the last connection */
  uint32_t statement_timeout_ms;
  int version;
  bool prepared[N_STMTS];
  /* Reconnecting: not before next_attempt_ms (monotonic). */
  uint64_t backoff_ms;
  uint64_t next_attempt_ms;
  /* The open write transaction's seq counter. */
  bool in_write;
  uint64_t tx_first_seq; /* the counter + 1 at begin */
  uint64_t tx_next_seq;
  char errmsg[256];
};

static uint64_t monotonic_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- errors ------------------------------------------------------------- */

static void set_errmsg(struct reg_store *store, const char *what,
                       const char *detail)
{
  snprintf(store->errmsg, sizeof(store->errmsg), "postgresql: %s%s%.*s", what,
           detail && *detail ? ": " : "",
           detail ? (int)strcspn(detail, "\n") : 0, detail ? detail : "");
}

static bool connection_lost(struct reg_store *store)
{
  return store->conn == NULL || PQstatus(store->conn) != CONNECTION_OK;
}

/* Maps a failed result to an errno, keeps its message, frees it. */
static int result_error(struct reg_store *store, PGresult *res)
{
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *constraint =
      res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
  int r = -EIO;

  set_errmsg(store, "query failed",
             res ? PQresultErrorMessage(res) : PQerrorMessage(store->conn));
  if (connection_lost(store) || state == NULL)
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

/* ---- connection --------------------------------------------------------- */

static int exec_simple(struct reg_store *store, const char *sql)
{
  PGresult *res = PQexec(store->conn, sql);
  ExecStatusType st = PQresultStatus(res);

  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    return result_error(store, res);
  PQclear(res);
  return 0;
}

static int read_version(struct reg_store *store, int *version)
{
  PGresult *res = PQexec(store->conn, "SELECT version FROM nlb_schema");

  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    return result_error(store, res);
  *version = PQntuples(res) > 0 ? atoi(PQgetvalue(res, 0, 0)) : 0;
  PQclear(res);
  return 0;
}

/* Before names compare ignoring case: two that differ only in case cannot
 * both stay, and which one goes is their owners' business, not an
 * upgrade's. The store is refused, naming them (the message ends up in
 * nlbd's start failure). */
static int refuse_case_twins(struct reg_store *store)
{
  PGresult *res =
      PQexec(store->conn,
             "SELECT 'services ' || string_agg(name, ', ') FROM services"
             " GROUP BY lower(name) HAVING count(*) > 1 UNION ALL"
             " SELECT 'principals ' || string_agg(name, ', ') FROM principals"
             " GROUP BY lower(name) HAVING count(*) > 1");
  char twins[160] = "";

  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    return result_error(store, res);
  for (int i = 0; i < PQntuples(res); i++) {
    size_t used = strlen(twins);

    snprintf(twins + used, sizeof(twins) - used, "%s%s", used ? "; " : "",
             PQgetvalue(res, i, 0));
  }
  PQclear(res);
  if (twins[0] == '\0')
    return 0;
  snprintf(store->errmsg, sizeof(store->errmsg),
           "names that differ only in case (%s): this nlb compares names as "
           "DNS does; delete all but one of each with the nlb that made "
           "them, then start this one",
           twins);
  return -EIO;
}

/* Brings the schema up to date in one transaction, under an advisory lock,
 * so that nodes starting together migrate once, in line. */
static int migrate(struct reg_store *store)
{
  char sql[96];
  int version = 0;
  int r;

  if ((r = exec_simple(store,
                       "BEGIN; SELECT pg_advisory_xact_lock(" MIGRATION_LOCK
                       "); CREATE TABLE IF NOT EXISTS nlb_schema"
                       " (version integer NOT NULL)")) < 0 ||
      (r = read_version(store, &version)) < 0)
    goto fail_rollback;
  if (version > N_MIGRATIONS) {
    snprintf(store->errmsg, sizeof(store->errmsg),
             "store schema version %d is newer than this nlb (%d)", version,
             N_MIGRATIONS);
    r = -EIO;
    goto fail_rollback;
  }
  for (int v = version; v < N_MIGRATIONS; v++)
    if ((v == NOCASE_MIGRATION && (r = refuse_case_twins(store)) < 0) ||
        (r = exec_simple(store, migrations[v])) < 0)
      goto fail_rollback;
  snprintf(sql, sizeof(sql),
           "DELETE FROM nlb_schema; INSERT INTO nlb_schema VALUES (%d)",
           N_MIGRATIONS);
  if (version < N_MIGRATIONS && (r = exec_simple(store, sql)) < 0)
    goto fail_rollback;
  store->version = N_MIGRATIONS;
  return exec_simple(store, "COMMIT");

fail_rollback:
  if (!connection_lost(store))
    PQclear(PQexec(store->conn, "ROLLBACK"));
  return r;
}

static void disconnect(struct reg_store *store)
{
  if (store->conn != NULL)
    PQfinish(store->conn);
  store->conn = NULL;
  memset(store->prepared, 0, sizeof(store->prepared));
  store->in_write = false;
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
static int query_value(struct reg_store *store, const char *sql, int n,
                       const char *const *values, char *out, size_t len)
{
  PGresult *res =
      PQexecParams(store->conn, sql, n, NULL, values, NULL, NULL, 0);

  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    return result_error(store, res);
  snprintf(out, len, "%s", PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
  PQclear(res);
  return 0;
}

static int try_name(struct reg_store *store, bool *got)
{
  char key[24], value[8];
  const char *values[] = {key};
  int r;

  snprintf(key, sizeof(key), "%" PRId64, store->node_key);
  r = query_value(store, "SELECT pg_try_advisory_lock($1::bigint)", 1, values,
                  value, sizeof(value));
  *got = r == 0 && value[0] == 't';
  return r;
}

struct holder {
  int pid; /* its server process; 0: nobody holds the name now */
  char application_name[64];
  char address[64];
};

static int find_holder(struct reg_store *store, struct holder *h)
{
  char high[24], low[24];
  const char *values[] = {high, low};
  PGresult *res;

  memset(h, 0, sizeof(*h));
  snprintf(high, sizeof(high), "%" PRId64, store->node_key >> 32);
  snprintf(low, sizeof(low), "%" PRId64, store->node_key & 0xffffffff);
  res = PQexecParams(store->conn, NAME_HOLDER, 2, NULL, values, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    return result_error(store, res);
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
static int take_back(struct reg_store *store, const struct holder *h, bool *got)
{
  char pid[16], key[24], value[8];
  const char *terminate[] = {pid};
  const char *lock[] = {key};
  int r;

  snprintf(pid, sizeof(pid), "%d", h->pid);
  snprintf(key, sizeof(key), "%" PRId64, store->node_key);
  if ((r = query_value(store, "SELECT pg_terminate_backend($1::int)", 1,
                       terminate, value, sizeof(value))) < 0)
    return r;
  /* Waits (lock_timeout at most) for that session to end. */
  r = query_value(store, "SELECT pg_advisory_lock($1::bigint)", 1, lock, value,
                  sizeof(value));
  *got = r == 0;
  return r == -ETIMEDOUT ? 0 : r;
}

/* Holds this node's name for the connection's life, or says who does
 * (-EBUSY). */
static int hold_name(struct reg_store *store)
{
  struct holder h;
  bool got = false;
  int r;

  if (store->reader)
    return 0;
  for (int attempt = 0; attempt < 2 && !got; attempt++) {
    if ((r = try_name(store, &got)) < 0)
      return r;
    if (got || (r = find_holder(store, &h)) < 0)
      return r;
    if (h.pid != 0 && h.pid == store->backend_pid &&
        strcmp(h.application_name, store->identity) == 0) {
      if ((r = take_back(store, &h, &got)) < 0)
        return r;
      break;
    }
    if (h.pid != 0)
      break; /* else it was let go of meanwhile: try once more */
  }
  if (got)
    return 0;
  snprintf(store->errmsg, sizeof(store->errmsg),
           "node name %s is in use on this registry by %s%s%s%s", store->node,
           h.pid && h.application_name[0] ? h.application_name
                                          : "another process",
           h.address[0] ? " (connected from " : "", h.address,
           h.address[0] ? ")" : "");
  return -EBUSY;
}

/* Connects (blocking), holds the node's name, migrates, and listens for
 * other nodes' commits. */
static int connect_now(struct reg_store *store)
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
  const char *values[] = {"3", store->identity, "10", "5",
                          "3", store->conninfo, NULL};
  char bounds[96];
  int r;

  disconnect(store);
  store->conn = PQconnectdbParams(keys, values, 1);
  if (store->conn == NULL)
    return -ENOMEM;
  if (PQstatus(store->conn) != CONNECTION_OK) {
    set_errmsg(store, "cannot connect", PQerrorMessage(store->conn));
    disconnect(store);
    return -ENOTCONN;
  }
  snprintf(bounds, sizeof(bounds),
           "SET statement_timeout = %" PRIu32 "; SET lock_timeout = %" PRIu32,
           store->statement_timeout_ms, store->statement_timeout_ms);
  if ((r = exec_simple(store, CONNECT_SETTINGS)) < 0 ||
      (r = hold_name(store)) < 0 || (r = migrate(store)) < 0 ||
      (r = exec_simple(store, bounds)) < 0 ||
      (!store->reader && (r = exec_simple(store, "LISTEN " CHANNEL)) < 0)) {
    if (r == -ENOTCONN || r == -EBUSY)
      disconnect(store);
    return r;
  }
  store->backend_pid = PQbackendPID(store->conn);
  PQsetnonblocking(store->conn, 0);
  store->backoff_ms = 0;
  return 0;
}

/* A usable connection, or -ENOTCONN (trying again at most as often as the
 * backoff allows). */
static int ensure_connected(struct reg_store *store)
{
  uint64_t now = monotonic_ms();
  int r;

  if (!connection_lost(store))
    return 0;
  if (now < store->next_attempt_ms)
    return -ENOTCONN;
  r = connect_now(store);
  /* Another process took the name while we were away: this one stays
   * unavailable (serving its last state, writes refused) until it is
   * free again, and never writes as that node meanwhile. */
  if (r == -EBUSY)
    r = -ENOTCONN;
  if (r == -ENOTCONN) {
    store->backoff_ms =
        store->backoff_ms ? store->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (store->backoff_ms > BACKOFF_MAX_MS)
      store->backoff_ms = BACKOFF_MAX_MS;
    store->next_attempt_ms = now + store->backoff_ms;
  }
  return r;
}

static void store_close(struct reg_store *store)
{
  if (store == NULL)
    return;
  disconnect(store);
  free(store->conninfo);
  free(store);
}

/* What the session of this process is called on the server, so that a
 * refused node can name the holder of its name. */
static void set_identity(struct reg_store *store)
{
  char host[256] = "";

  if (gethostname(host, sizeof(host) - 1) < 0)
    snprintf(host, sizeof(host), "?");
  host[strcspn(host, ".")] = '\0';
  snprintf(store->identity, sizeof(store->identity), "nlbd pid %ld on %s",
           (long)getpid(), host);
}

static int store_open(struct reg_store **out,
                      const struct reg_store_settings *s, char *errbuf,
                      size_t errlen)
{
  struct reg_store *store = calloc(1, sizeof(*store));
  const char *location = s->location;
  PQconninfoOption *parsed;
  char *why = NULL;
  int r;

  if (store == NULL || (store->conninfo = strdup(location)) == NULL) {
    free(store);
    return -ENOMEM;
  }
  store->reader = s->reader;
  snprintf(store->node, sizeof(store->node), "%s", s->node ? s->node : "");
  store->node_key = name_key(store->node);
  store->statement_timeout_ms = s->statement_timeout_ms;
  set_identity(store);
  /* A connection string that cannot work is a config error; a server
   * that does not answer yet is not: the node starts and keeps trying. */
  if ((parsed = PQconninfoParse(location, &why)) == NULL) {
    snprintf(errbuf, errlen, "bad PostgreSQL connection string: %.*s",
             why ? (int)strcspn(why, "\n") : 6, why ? why : "(none)");
    PQfreemem(why);
    store_close(store);
    return -EINVAL;
  }
  PQconninfoFree(parsed);
  r = connect_now(store);
  if (r == -ENOTCONN) {
    store->backoff_ms = BACKOFF_MIN_MS;
    store->next_attempt_ms = monotonic_ms() + BACKOFF_MIN_MS;
  } else if (r < 0) {
    snprintf(errbuf, errlen, "%s", store->errmsg);
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

/* ---- statements --------------------------------------------------------- */

static int prepare(struct reg_store *store, enum stmt_id id)
{
  char name[16];
  PGresult *res;

  if (store->prepared[id])
    return 0;
  snprintf(name, sizeof(name), "s%d", (int)id);
  res = PQprepare(store->conn, name, stmt_sql[id], 0, NULL);
  if (PQresultStatus(res) != PGRES_COMMAND_OK)
    return result_error(store, res);
  PQclear(res);
  store->prepared[id] = true;
  return 0;
}

/* Runs statement id with n text parameters (NULL = SQL NULL; lengths and
 * formats say which are binary). *res gets the result when the caller
 * wants rows (else it is freed). */
static int run(struct reg_store *store, enum stmt_id id, int n,
               const char *const *values, const int *lengths,
               const int *formats, PGresult **res_out)
{
  char name[16];
  PGresult *res;
  ExecStatusType st;
  int r;

  if (connection_lost(store))
    return -ENOTCONN;
  if ((r = prepare(store, id)) < 0)
    return r;
  snprintf(name, sizeof(name), "s%d", (int)id);
  res = PQexecPrepared(store->conn, name, n, values, lengths, formats, 0);
  st = PQresultStatus(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    return result_error(store, res);
  if (res_out)
    *res_out = res;
  else
    PQclear(res);
  return 0;
}

/* A statement with only text parameters. */
static int run_text(struct reg_store *store, enum stmt_id id, int n,
                    const char *const *values, PGresult **res)
{
  return run(store, id, n, values, NULL, NULL, res);
}

/* Rows changed by a statement run without keeping its result. */
static int run_changed(struct reg_store *store, enum stmt_id id, int n,
                       const char *const *values, int *changed)
{
  PGresult *res;
  int r = run_text(store, id, n, values, &res);

  if (r < 0)
    return r;
  *changed = atoi(PQcmdTuples(res));
  PQclear(res);
  return 0;
}

static void copy_value(const PGresult *res, int row, int col, char *dst,
                       size_t size)
{
  snprintf(dst, size, "%s", PQgetvalue(res, row, col));
}

static int64_t int_value(const PGresult *res, int row, int col)
{
  return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static bool bool_value(const PGresult *res, int row, int col)
{
  return PQgetvalue(res, row, col)[0] == 't';
}

/* Fills an array of items of size bytes, one per row, with from_row. */
static int rows_to_array(PGresult *res, size_t size,
                         int (*from_row)(const PGresult *, int, void *),
                         void **out, size_t *n, void (*release)(void *))
{
  int rows = PQntuples(res);
  char *v = rows > 0 ? calloc((size_t)rows, size) : NULL;
  int r = 0;
  int i;

  if (rows > 0 && v == NULL) {
    PQclear(res);
    return -ENOMEM;
  }
  for (i = 0; r == 0 && i < rows; i++)
    r = from_row(res, i, v + (size_t)i * size);
  PQclear(res);
  if (r < 0) {
    for (int j = 0; release && j < i - 1; j++)
      release(v + (size_t)j * size);
    free(v);
    return r;
  }
  *out = v;
  *n = (size_t)rows;
  return 0;
}

/* One integer of a one-row result; *none when NULL or no row. */
static int one_int(struct reg_store *store, enum stmt_id id, int n,
                   const char *const *values, int64_t *value, bool *none)
{
  PGresult *res;
  int r = run_text(store, id, n, values, &res);

  if (r < 0)
    return r;
  *none = PQntuples(res) == 0 || PQgetisnull(res, 0, 0);
  *value = *none ? 0 : int_value(res, 0, 0);
  PQclear(res);
  return 0;
}

/* ---- transactions ------------------------------------------------------- */

/* BEGIN with the transaction's bounds (SET LOCAL: back to the session's at
 * its end) and, for a write, the counter row's lock. */
static PGresult *begin_on(struct reg_store *store, bool write,
                          uint32_t timeout_ms)
{
  char sql[256];

  snprintf(sql, sizeof(sql),
           "%s; SET LOCAL statement_timeout = %" PRIu32
           "; SET LOCAL lock_timeout = %" PRIu32 "%s",
           write ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
           timeout_ms, timeout_ms,
           write ? "; SELECT last_seq FROM nlb_counter WHERE id = 1 FOR UPDATE"
                 : "");
  return PQexec(store->conn, sql);
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
static int store_begin(struct reg_store *store, bool write, uint32_t timeout_ms)
{
  PGresult *res;
  int r;

  for (int attempt = 0;; attempt++) {
    if ((r = ensure_connected(store)) < 0)
      return r;
    res = begin_on(store, write, timeout_ms);
    if (begun(res, write))
      break;
    if ((r = result_error(store, res)) != -ENOTCONN) {
      PQclear(PQexec(store->conn, "ROLLBACK"));
      return r;
    }
    /* libpq may still call it CONNECTION_OK: it is not. */
    disconnect(store);
    if (attempt > 0)
      return r;
  }
  if (write) {
    store->tx_first_seq = (uint64_t)int_value(res, 0, 0) + 1;
    store->tx_next_seq = store->tx_first_seq;
    store->in_write = true;
  }
  PQclear(res);
  return 0;
}

static int store_commit(struct reg_store *store)
{
  char sql[160];
  int r;

  if (store->in_write && store->tx_next_seq > store->tx_first_seq) {
    uint64_t last = store->tx_next_seq - 1;

    snprintf(sql, sizeof(sql),
             "UPDATE nlb_counter SET last_seq = %" PRIu64 " WHERE id = 1;"
             " NOTIFY " CHANNEL ", '%" PRIu64 "'; COMMIT",
             last, last);
  } else {
    snprintf(sql, sizeof(sql), "COMMIT");
  }
  store->in_write = false;
  r = exec_simple(store, sql);
  if (r < 0 && !connection_lost(store))
    PQclear(PQexec(store->conn, "ROLLBACK"));
  return r;
}

static void store_rollback(struct reg_store *store)
{
  store->in_write = false;
  if (!connection_lost(store))
    PQclear(PQexec(store->conn, "ROLLBACK"));
}

static int store_wait_fd(struct reg_store *store)
{
  return connection_lost(store) ? -1 : PQsocket(store->conn);
}

static bool store_take_notices(struct reg_store *store)
{
  PGnotify *notice;
  bool got = false;

  if (connection_lost(store))
    return true; /* read again: that reconnects */
  if (!PQconsumeInput(store->conn))
    return true;
  while ((notice = PQnotifies(store->conn)) != NULL) {
    got = true;
    PQfreemem(notice);
  }
  return got;
}

static int store_now(struct reg_store *store, int64_t *now_ms)
{
  bool none;
  int r = ensure_connected(store);

  return r < 0 ? r : one_int(store, NOW, 0, NULL, now_ms, &none);
}

/* ---- services ----------------------------------------------------------- */

#define I64(buf, v) (snprintf(buf, sizeof(buf), "%" PRId64, (int64_t)(v)), buf)

static int add_principals(struct reg_store *store, const char *id,
                          char *const *principals, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    const char *values[] = {id, principals[i]};
    int r = run_text(store, SVC_PRINCIPAL_ADD, 2, values, NULL);

    if (r < 0)
      return r;
  }
  return 0;
}

static int store_service_insert(struct reg_store *store,
                                const struct reg_service *s)
{
  char limit[24], created[24];
  const char *values[] = {s->id,
                          s->name,
                          s->owner,
                          s->load_balancer,
                          s->acceptance_required ? "true" : "false",
                          I64(limit, s->connection_limit),
                          I64(created, s->created_at),
                          s->private_dns_name};
  int r = run_text(store, SVC_INSERT, 8, values, NULL);

  return r < 0 ? r
               : add_principals(store, s->id, s->allowed_principals,
                                s->n_allowed_principals);
}

static int string_from_row(const PGresult *res, int row, void *item)
{
  *(char **)item = strdup(PQgetvalue(res, row, 0));
  return *(char **)item ? 0 : -ENOMEM;
}

static void free_string(void *item)
{
  free(*(char **)item);
}

static int load_principals(struct reg_store *store, struct reg_service *s)
{
  const char *values[] = {s->id};
  PGresult *res;
  int r = run_text(store, SVC_PRINCIPALS, 1, values, &res);

  if (r < 0)
    return r;
  return rows_to_array(res, sizeof(char *), string_from_row,
                       (void **)&s->allowed_principals,
                       &s->n_allowed_principals, free_string);
}

static int service_from_row(const PGresult *res, int row, void *item)
{
  struct reg_service *s = item;

  memset(s, 0, sizeof(*s));
  copy_value(res, row, 0, s->id, sizeof(s->id));
  copy_value(res, row, 1, s->name, sizeof(s->name));
  copy_value(res, row, 2, s->owner, sizeof(s->owner));
  copy_value(res, row, 3, s->load_balancer, sizeof(s->load_balancer));
  s->acceptance_required = bool_value(res, row, 4);
  s->connection_limit = (uint32_t)int_value(res, row, 5);
  s->created_at = int_value(res, row, 6);
  copy_value(res, row, 7, s->private_dns_name, sizeof(s->private_dns_name));
  s->state = "available";
  return 0;
}

static int store_service_get(struct reg_store *store, const char *id_or_name,
                             struct reg_service *out)
{
  const char *values[] = {id_or_name};
  PGresult *res;
  int r = run_text(store, SVC_GET, 1, values, &res);

  if (r < 0)
    return r;
  if (PQntuples(res) == 0) {
    PQclear(res);
    return -ENOENT;
  }
  service_from_row(res, 0, out);
  PQclear(res);
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
  char created[24], lim[24];
  enum stmt_id id = filter->owner      ? SVC_LIST_OWNER
                    : filter->consumer ? SVC_LIST_CONSUMER
                                       : SVC_LIST_ALL;
  const char *values[] = {filter->owner ? filter->owner : filter->consumer,
                          I64(created, after->created_at), after->id,
                          I64(lim, limit > INT64_MAX ? INT64_MAX : limit)};
  PGresult *res;
  int r = run_text(store, id, 4, values, &res);

  if (r < 0 || (r = rows_to_array(res, sizeof(**out), service_from_row,
                                  (void **)out, n, release_service)) < 0)
    return r;
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
  char limit[24];
  const char *values[] = {s->id, s->acceptance_required ? "true" : "false",
                          I64(limit, s->connection_limit), s->private_dns_name};

  return run_text(store, SVC_UPDATE, 4, values, NULL);
}

static int store_service_set_principals(struct reg_store *store, const char *id,
                                        char *const *principals, size_t n)
{
  const char *values[] = {id};
  int r = run_text(store, SVC_PRINCIPALS_CLEAR, 1, values, NULL);

  return r < 0 ? r : add_principals(store, id, principals, n);
}

static int store_service_delete(struct reg_store *store, const char *id)
{
  const char *values[] = {id};
  int changed = 0;
  int r = run_changed(store, SVC_DELETE, 1, values, &changed);

  return r < 0 ? r : changed == 1 ? 0 : -ENOENT;
}

static int count(struct reg_store *store, enum stmt_id id, int n,
                 const char *const *values, size_t *out)
{
  int64_t value;
  bool none;
  int r = one_int(store, id, n, values, &value, &none);

  *out = (size_t)value;
  return r;
}

static int store_service_count_live(struct reg_store *store,
                                    const char *service_id, size_t *n)
{
  const char *values[] = {service_id};

  return count(store, SVC_COUNT_LIVE, 1, values, n);
}

/* ---- endpoints ---------------------------------------------------------- */

static int endpoint_from_row(const PGresult *res, int row, void *item)
{
  struct reg_endpoint *e = item;
  int r;

  memset(e, 0, sizeof(*e));
  copy_value(res, row, 0, e->id, sizeof(e->id));
  copy_value(res, row, 1, e->service_id, sizeof(e->service_id));
  copy_value(res, row, 2, e->service, sizeof(e->service));
  copy_value(res, row, 3, e->owner, sizeof(e->owner));
  copy_value(res, row, 4, e->load_balancer, sizeof(e->load_balancer));
  copy_value(res, row, 5, e->consumer, sizeof(e->consumer));
  copy_value(res, row, 6, e->network, sizeof(e->network));
  copy_value(res, row, 7, e->address, sizeof(e->address));
  if (store_state_parse(PQgetvalue(res, row, 8), &e->state) < 0)
    return -EIO;
  copy_value(res, row, 9, e->reason, sizeof(e->reason));
  e->created_at = int_value(res, row, 11);
  e->updated_at = int_value(res, row, 12);
  copy_value(res, row, 14, e->netns, sizeof(e->netns));
  copy_value(res, row, 15, e->private_dns_name, sizeof(e->private_dns_name));
  e->private_dns = bool_value(res, row, 16);
  if ((r = store_split_lines(PQgetvalue(res, row, 10), &e->allowed_sources,
                             &e->n_allowed_sources)) < 0 ||
      (r = store_parse_placements(PQgetvalue(res, row, 13), e)) < 0) {
    reg_endpoint_release(e);
    return r;
  }
  return 0;
}

static void release_endpoint(void *item)
{
  reg_endpoint_release(item);
}

static int endpoints_from(PGresult *res, struct reg_endpoint **out, size_t *n)
{
  return rows_to_array(res, sizeof(**out), endpoint_from_row, (void **)out, n,
                       release_endpoint);
}

static int store_endpoint_insert(struct reg_store *store,
                                 const struct reg_endpoint *e,
                                 const struct reg_addr_key *key)
{
  char created[24], updated[24];
  char *sources = store_join_lines(e->allowed_sources, e->n_allowed_sources);
  const char *values[] = {e->id,
                          e->service_id,
                          e->consumer,
                          e->network,
                          e->address,
                          (const char *)key->bytes,
                          store_state_name(e->state),
                          e->reason,
                          sources,
                          I64(created, e->created_at),
                          I64(updated, e->updated_at),
                          e->private_dns ? "true" : "false"};
  const int lengths[12] = {[5] = (int)sizeof(key->bytes)};
  const int formats[12] = {[5] = 1};
  int r;

  if (sources == NULL)
    return -ENOMEM;
  r = run(store, EP_INSERT, 12, values, lengths, formats, NULL);
  free(sources);
  return r;
}

static int store_endpoint_get(struct reg_store *store, const char *id,
                              struct reg_endpoint *out)
{
  const char *values[] = {id};
  PGresult *res;
  int r = run_text(store, EP_GET, 1, values, &res);

  if (r < 0)
    return r;
  if (PQntuples(res) == 0) {
    PQclear(res);
    return -ENOENT;
  }
  r = endpoint_from_row(res, 0, out);
  PQclear(res);
  return r;
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
  char created[24], lim[24];
  const char *values[] = {
      filter->service_id ? filter->service_id : filter->consumer,
      I64(created, after->created_at), after->id,
      I64(lim, limit > INT64_MAX ? INT64_MAX : limit),
      filter->state ? store_state_name(*filter->state) : NULL};
  PGresult *res;
  int r = run_text(store, endpoint_list_stmt(filter), filter->state ? 5 : 4,
                   values, &res);

  return r < 0 ? r : endpoints_from(res, out, n);
}

static int store_endpoint_update(struct reg_store *store,
                                 const struct reg_endpoint *e)
{
  char updated[24];
  char *sources = store_join_lines(e->allowed_sources, e->n_allowed_sources);
  const char *values[] = {
      e->id,   store_state_name(e->state),  e->reason,
      sources, I64(updated, e->updated_at), e->private_dns ? "true" : "false"};
  int changed = 0;
  int r;

  if (sources == NULL)
    return -ENOMEM;
  r = run_changed(store, EP_UPDATE, 6, values, &changed);
  free(sources);
  return r < 0 ? r : changed == 1 ? 0 : -ENOENT;
}

static int store_endpoint_count_live(struct reg_store *store,
                                     const char *service_id,
                                     const char *consumer, size_t *n)
{
  const char *values[] = {service_id, consumer};

  return count(store, EP_COUNT_LIVE, 2, values, n);
}

static int store_address_taken(struct reg_store *store, const char *network,
                               const struct reg_addr_key *key, bool *taken)
{
  const char *values[] = {network, (const char *)key->bytes};
  const int lengths[] = {0, (int)sizeof(key->bytes)};
  const int formats[] = {0, 1};
  PGresult *res;
  int r = run(store, ADDR_TAKEN, 2, values, lengths, formats, &res);

  if (r < 0)
    return r;
  *taken = PQntuples(res) > 0;
  PQclear(res);
  return 0;
}

/* bytea comes back as text "\x0011..." (hex output): n bytes of it. */
static int bytes_from_hex(const char *text, uint8_t *out, size_t n)
{
  if (strncmp(text, "\\x", 2) != 0 || strlen(text) != 2 + 2 * n)
    return -EIO;
  for (size_t i = 0; i < n; i++) {
    unsigned byte;

    if (sscanf(text + 2 + 2 * i, "%2x", &byte) != 1)
      return -EIO;
    out[i] = (uint8_t)byte;
  }
  return 0;
}

static int key_from_hex(const char *text, struct reg_addr_key *key)
{
  return bytes_from_hex(text, key->bytes, sizeof(key->bytes));
}

static int store_network_hint_get(struct reg_store *store, const char *network,
                                  struct reg_addr_key *key)
{
  const char *values[] = {network};
  PGresult *res;
  int r = run_text(store, HINT_GET, 1, values, &res);

  if (r < 0)
    return r;
  r = PQntuples(res) == 0 ? -ENOENT : key_from_hex(PQgetvalue(res, 0, 0), key);
  PQclear(res);
  return r;
}

static int store_network_hint_set(struct reg_store *store, const char *network,
                                  const struct reg_addr_key *key)
{
  const char *values[] = {network, (const char *)key->bytes};
  const int lengths[] = {0, (int)sizeof(key->bytes)};
  const int formats[] = {0, 1};

  return run(store, HINT_SET, 2, values, lengths, formats, NULL);
}

static int store_pending_before(struct reg_store *store, int64_t cutoff_ms,
                                size_t limit, struct reg_endpoint **out,
                                size_t *n)
{
  char cutoff[24], lim[24];
  const char *values[] = {I64(cutoff, cutoff_ms), I64(lim, limit)};
  PGresult *res;
  int r = run_text(store, PENDING_BEFORE, 2, values, &res);

  return r < 0 ? r : endpoints_from(res, out, n);
}

static int count_from_row(const PGresult *res, int row, void *item)
{
  struct reg_endpoint_count *c = item;

  copy_value(res, row, 0, c->service, sizeof(c->service));
  c->count = (uint64_t)int_value(res, row, 2);
  return store_state_parse(PQgetvalue(res, row, 1), &c->state);
}

static int store_endpoint_counts(struct reg_store *store,
                                 struct reg_endpoint_count **out, size_t *n)
{
  PGresult *res;
  int r = run_text(store, EP_COUNTS, 0, NULL, &res);

  return r < 0 ? r
               : rows_to_array(res, sizeof(**out), count_from_row, (void **)out,
                               n, NULL);
}

static int store_placement_put(struct reg_store *store, const char *endpoint_id,
                               const struct reg_placement *p)
{
  char reason[REG_REASON_BUF], updated[24];
  const char *values[] = {endpoint_id, p->node, p->open ? "true" : "false",
                          reason, I64(updated, p->updated_at)};

  store_placement_reason(p->reason, reason, sizeof(reason));
  return run_text(store, PLACEMENT_PUT, 5, values, NULL);
}

/* ---- targets ------------------------------------------------------------ */

static int target_from_row(const PGresult *res, int row, void *item)
{
  struct reg_target *t = item;

  memset(t, 0, sizeof(*t));
  copy_value(res, row, 0, t->target_group, sizeof(t->target_group));
  copy_value(res, row, 1, t->address, sizeof(t->address));
  t->weight = (uint32_t)int_value(res, row, 2);
  t->created_at = int_value(res, row, 3);
  return 0;
}

static int store_target_insert(struct reg_store *store,
                               const struct reg_target *t)
{
  char weight[24], created[24];
  const char *values[] = {t->target_group, t->address, I64(weight, t->weight),
                          I64(created, t->created_at)};

  return run_text(store, TARGET_INSERT, 4, values, NULL);
}

static int store_target_get(struct reg_store *store, const char *target_group,
                            const char *address, struct reg_target *out)
{
  const char *values[] = {target_group, address};
  PGresult *res;
  int r = run_text(store, TARGET_GET, 2, values, &res);

  if (r < 0)
    return r;
  r = PQntuples(res) == 0 ? -ENOENT : target_from_row(res, 0, out);
  PQclear(res);
  return r;
}

static int store_target_delete(struct reg_store *store,
                               const char *target_group, const char *address)
{
  const char *values[] = {target_group, address};
  int changed = 0;
  int r = run_changed(store, TARGET_DELETE, 2, values, &changed);

  return r < 0 ? r : changed == 1 ? 0 : -ENOENT;
}

static int store_target_list(struct reg_store *store, struct reg_target **out,
                             size_t *n)
{
  PGresult *res;
  int r = run_text(store, TARGET_LIST, 0, NULL, &res);

  return r < 0 ? r
               : rows_to_array(res, sizeof(**out), target_from_row,
                               (void **)out, n, NULL);
}

/* ---- nodes -------------------------------------------------------------- */

static int store_node_heartbeat(struct reg_store *store, const char *name,
                                const char *version, const char *networks,
                                uint64_t applied_seq, bool starting)
{
  char seq[24];
  const char *values[] = {name, version, I64(seq, applied_seq), networks};
  int r = ensure_connected(store);

  return r < 0 ? r
               : run_text(store, starting ? NODE_START : NODE_BEAT, 4, values,
                          NULL);
}

static int node_from_row(const PGresult *res, int row, void *item)
{
  struct reg_node *node = item;

  memset(node, 0, sizeof(*node));
  copy_value(res, row, 0, node->name, sizeof(node->name));
  copy_value(res, row, 1, node->version, sizeof(node->version));
  node->started_at = int_value(res, row, 2);
  node->last_seen = int_value(res, row, 3);
  node->applied_seq = (uint64_t)int_value(res, row, 4);
  node->state = bool_value(res, row, 5) ? REG_NODE_DRAINING : REG_NODE_UP;
  copy_value(res, row, 6, node->networks, sizeof(node->networks));
  return 0;
}

static int store_node_list(struct reg_store *store, struct reg_node **out,
                           size_t *n, int64_t *now)
{
  PGresult *res;
  bool none;
  int r;

  if ((r = one_int(store, NOW, 0, NULL, now, &none)) < 0 ||
      (r = run_text(store, NODE_LIST, 0, NULL, &res)) < 0)
    return r;
  return rows_to_array(res, sizeof(**out), node_from_row, (void **)out, n,
                       NULL);
}

static int store_node_set_draining(struct reg_store *store, const char *name)
{
  const char *values[] = {name};

  return run_text(store, NODE_DRAIN, 1, values, NULL);
}

/* ---- events ------------------------------------------------------------- */

static int store_event_append(struct reg_store *store, struct reg_event *ev)
{
  char seq[24], time[24];
  const char *values[] = {I64(seq, store->tx_next_seq),
                          I64(time, ev->time),
                          store_event_name(ev->type),
                          ev->service_id,
                          ev->endpoint_id,
                          ev->principal,
                          ev->owner,
                          ev->consumer,
                          store_state_name(ev->state),
                          ev->reason,
                          ev->target_group,
                          ev->target,
                          ev->node,
                          ev->subject,
                          ev->token_id};
  int r;

  if (!store->in_write) {
    snprintf(store->errmsg, sizeof(store->errmsg),
             "event appended outside a write transaction");
    return -EIO;
  }
  if ((r = run_text(store, EV_INSERT, 15, values, NULL)) < 0)
    return r;
  ev->seq = store->tx_next_seq++;
  return 0;
}

static int event_from_row(const PGresult *res, int row, void *item)
{
  struct reg_event *ev = item;

  memset(ev, 0, sizeof(*ev));
  ev->seq = (uint64_t)int_value(res, row, 0);
  ev->time = int_value(res, row, 1);
  if (store_event_parse(PQgetvalue(res, row, 2), &ev->type) < 0)
    return -EIO;
  copy_value(res, row, 3, ev->service_id, sizeof(ev->service_id));
  copy_value(res, row, 4, ev->endpoint_id, sizeof(ev->endpoint_id));
  copy_value(res, row, 5, ev->principal, sizeof(ev->principal));
  copy_value(res, row, 6, ev->owner, sizeof(ev->owner));
  copy_value(res, row, 7, ev->consumer, sizeof(ev->consumer));
  copy_value(res, row, 9, ev->reason, sizeof(ev->reason));
  copy_value(res, row, 10, ev->target_group, sizeof(ev->target_group));
  copy_value(res, row, 11, ev->target, sizeof(ev->target));
  copy_value(res, row, 12, ev->node, sizeof(ev->node));
  copy_value(res, row, 13, ev->subject, sizeof(ev->subject));
  copy_value(res, row, 14, ev->token_id, sizeof(ev->token_id));
  return store_state_parse(PQgetvalue(res, row, 8), &ev->state);
}

static int store_events_after(struct reg_store *store, uint64_t after,
                              const struct reg_store_event_filter *filter,
                              size_t limit, struct reg_event **out, size_t *n)
{
  char seq[24], lim[24];
  enum stmt_id id = EV_AFTER;
  const char *values[3] = {I64(seq, after),
                           I64(lim, limit > INT64_MAX ? INT64_MAX : limit)};
  PGresult *res;
  int r;

  if (filter && filter->owner) {
    id = EV_AFTER_OWNER;
    values[2] = filter->owner;
  } else if (filter && filter->consumer) {
    id = EV_AFTER_CONSUMER;
    values[2] = filter->consumer;
  }
  if ((r = run_text(store, id, id == EV_AFTER ? 2 : 3, values, &res)) < 0)
    return r;
  return rows_to_array(res, sizeof(**out), event_from_row, (void **)out, n,
                       NULL);
}

static int store_last_seq(struct reg_store *store, uint64_t *seq)
{
  int64_t value;
  bool none;
  int r = one_int(store, EV_LAST, 0, NULL, &value, &none);

  *seq = (uint64_t)value;
  return r;
}

static int store_first_seq(struct reg_store *store, uint64_t *seq)
{
  int64_t first;
  bool none;
  int r = one_int(store, EV_FIRST, 0, NULL, &first, &none);

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
  char before[24], from[24];
  const char *keep_values[] = {I64(before, before_ms)};
  uint64_t first, keep_from;
  int64_t value;
  bool none;
  int changed = 0;
  int r;

  *removed = 0;
  if ((r = store_first_seq(store, &first)) < 0 ||
      (r = one_int(store, EV_KEEP_FROM, 1, keep_values, &value, &none)) < 0)
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
  {
    const char *values[] = {I64(from, keep_from)};

    if ((r = run_changed(store, EV_PRUNE, 1, values, &changed)) < 0)
      return r;
  }
  *removed = (size_t)changed;
  return 0;
}

/* ---- pruning, quotas ---------------------------------------------------- */

static int store_endpoints_prune(struct reg_store *store, int64_t before_ms,
                                 size_t limit, size_t *removed)
{
  char before[24], lim[24];
  const char *values[] = {I64(before, before_ms), I64(lim, limit)};
  int changed = 0;
  int r = run_changed(store, EP_PRUNE, 2, values, &changed);

  *removed = r == 0 ? (size_t)changed : 0;
  return r;
}

static int store_service_count_owner(struct reg_store *store, const char *owner,
                                     size_t *n)
{
  const char *values[] = {owner};

  return count(store, SVC_COUNT_OWNER, 1, values, n);
}

/* ---- tenancy ------------------------------------------------------------ */

static int principal_from_row(const PGresult *res, int row, void *item)
{
  struct reg_principal_info *p = item;

  memset(p, 0, sizeof(*p));
  copy_value(res, row, 0, p->name, sizeof(p->name));
  p->created_at = int_value(res, row, 2);
  p->since_seq = (uint64_t)int_value(res, row, 3);
  return reg_role_parse(PQgetvalue(res, row, 1), &p->role) < 0 ? -EIO : 0;
}

static int store_principal_insert(struct reg_store *store,
                                  const struct reg_principal_info *p)
{
  char created[24], since[24];
  const char *values[] = {p->name, reg_role_name(p->role),
                          I64(created, p->created_at),
                          I64(since, p->since_seq)};

  return run_text(store, PRINCIPAL_INSERT, 4, values, NULL);
}

/* The first row of statement id into item; -ENOENT when none. */
static int one_row(struct reg_store *store, enum stmt_id id, int n,
                   const char *const *values,
                   int (*from_row)(const PGresult *, int, void *), void *item)
{
  PGresult *res;
  int r = run_text(store, id, n, values, &res);

  if (r < 0)
    return r;
  r = PQntuples(res) == 0 ? -ENOENT : from_row(res, 0, item);
  PQclear(res);
  return r;
}

static int store_principal_get(struct reg_store *store, const char *name,
                               struct reg_principal_info *out)
{
  const char *values[] = {name};

  return one_row(store, PRINCIPAL_GET, 1, values, principal_from_row, out);
}

static int store_principal_list(struct reg_store *store,
                                struct reg_principal_info **out, size_t *n)
{
  PGresult *res;
  int r = run_text(store, PRINCIPAL_LIST, 0, NULL, &res);

  return r < 0 ? r
               : rows_to_array(res, sizeof(**out), principal_from_row,
                               (void **)out, n, NULL);
}

static int delete_one(struct reg_store *store, enum stmt_id id, const char *key)
{
  const char *values[] = {key};
  int changed = 0;
  int r = run_changed(store, id, 1, values, &changed);

  return r < 0 ? r : changed == 1 ? 0 : -ENOENT;
}

static int store_principal_delete(struct reg_store *store, const char *name)
{
  const char *values[] = {name};
  int r = delete_one(store, PRINCIPAL_DELETE, name);

  if (r == 0)
    r = run_text(store, PRINCIPAL_FORGET_ENDPOINTS, 1, values, NULL);
  if (r == 0)
    r = run_text(store, PRINCIPAL_FORGET_GRANTS, 1, values, NULL);
  return r;
}

static int store_principal_holdings(struct reg_store *store, const char *name,
                                    size_t *services, size_t *endpoints)
{
  const char *values[] = {name};
  int r = count(store, PRINCIPAL_SERVICES, 1, values, services);

  return r < 0 ? r : count(store, PRINCIPAL_ENDPOINTS, 1, values, endpoints);
}

static int token_from_row(const PGresult *res, int row, void *item)
{
  struct reg_token *t = item;

  memset(t, 0, sizeof(*t));
  copy_value(res, row, 0, t->id, sizeof(t->id));
  copy_value(res, row, 1, t->principal, sizeof(t->principal));
  t->created_at = int_value(res, row, 4);
  t->expires_at = int_value(res, row, 5);
  t->last_used_at = int_value(res, row, 6);
  if (bytes_from_hex(PQgetvalue(res, row, 3), t->sha256, sizeof(t->sha256)) < 0)
    return -EIO;
  return reg_role_parse(PQgetvalue(res, row, 2), &t->role) < 0 ? -EIO : 0;
}

static int store_token_insert(struct reg_store *store,
                              const struct reg_token *t)
{
  char created[24], expires[24];
  const char *values[] = {t->id, t->principal, (const char *)t->sha256,
                          I64(created, t->created_at),
                          I64(expires, t->expires_at)};
  const int lengths[] = {0, 0, (int)sizeof(t->sha256), 0, 0};
  const int formats[] = {0, 0, 1, 0, 0};

  return run(store, TOKEN_INSERT, 5, values, lengths, formats, NULL);
}

static int store_token_get(struct reg_store *store, const char *id,
                           struct reg_token *out)
{
  const char *values[] = {id};

  return one_row(store, TOKEN_GET, 1, values, token_from_row, out);
}

static int store_token_list(struct reg_store *store, const char *principal,
                            struct reg_token **out, size_t *n)
{
  const char *values[] = {principal};
  PGresult *res;
  int r = run_text(store, principal ? TOKEN_LIST : TOKEN_LIST_ALL,
                   principal ? 1 : 0, values, &res);

  return r < 0 ? r
               : rows_to_array(res, sizeof(**out), token_from_row, (void **)out,
                               n, NULL);
}

static int store_token_delete(struct reg_store *store, const char *id)
{
  return delete_one(store, TOKEN_DELETE, id);
}

static int store_token_touch(struct reg_store *store, const char *id,
                             int64_t used_at)
{
  char used[24];
  const char *values[] = {id, I64(used, used_at)};

  return run_text(store, TOKEN_TOUCH, 2, values, NULL);
}

static int network_from_row(const PGresult *res, int row, void *item)
{
  struct reg_network_info *net = item;

  memset(net, 0, sizeof(*net));
  copy_value(res, row, 0, net->name, sizeof(net->name));
  copy_value(res, row, 1, net->range, sizeof(net->range));
  copy_value(res, row, 2, net->netns, sizeof(net->netns));
  net->created_at = int_value(res, row, 4);
  return store_split_lines(PQgetvalue(res, row, 3), &net->principals,
                           &net->n_principals);
}

static void release_network(void *item)
{
  struct reg_network_info *net = item;

  reg_strings_free(net->principals, net->n_principals);
}

static int store_network_insert(struct reg_store *store,
                                const struct reg_network_info *net)
{
  char created[24];
  char *principals = store_join_lines(net->principals, net->n_principals);
  const char *values[] = {net->name, net->range, net->netns, principals,
                          I64(created, net->created_at)};
  int r;

  if (principals == NULL)
    return -ENOMEM;
  r = run_text(store, NETWORK_INSERT, 5, values, NULL);
  free(principals);
  return r;
}

static int store_network_get(struct reg_store *store, const char *name,
                             struct reg_network_info *out)
{
  const char *values[] = {name};

  return one_row(store, NETWORK_GET, 1, values, network_from_row, out);
}

static int store_network_list(struct reg_store *store,
                              struct reg_network_info **out, size_t *n)
{
  PGresult *res;
  int r = run_text(store, NETWORK_LIST, 0, NULL, &res);

  return r < 0 ? r
               : rows_to_array(res, sizeof(**out), network_from_row,
                               (void **)out, n, release_network);
}

static int store_network_delete(struct reg_store *store, const char *name)
{
  return delete_one(store, NETWORK_DELETE, name);
}

static int store_network_count_live(struct reg_store *store, const char *name,
                                    size_t *n)
{
  const char *values[] = {name};

  return count(store, NETWORK_COUNT_LIVE, 1, values, n);
}

const struct reg_store_ops reg_store_postgresql = {
    .name = "postgresql",
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
