/* The store (registry-store.h), once, over a SQL driver (sql-driver.h):
 * every statement, its binding and its row mapping are written here in the
 * SQL both SQLite and PostgreSQL read; the drivers keep what differs
 * (connections, locks, schemas, transactions, change notices). States and
 * event types are stored by name, so that the database reads well in a
 * shell and does not depend on the order of the C enums. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql-run.h"

#define LIVE "('pendingAcceptance','available')"
#define SERVICE_FROM                                                           \
  "SELECT id, name, owner, load_balancer, acceptance_required,"                \
  " connection_limit, created_at, private_dns_name FROM services"
/* Placements come as one column of "NODE\tOPEN\tUPDATED\tREASON" lines. */
#define ENDPOINT_FROM                                                          \
  "SELECT e.id, e.service_id, s.name, s.owner, s.load_balancer, e.consumer, "  \
  "e.network, e.address, e.state, e.reason, e.allowed_sources, "               \
  "e.created_at, e.updated_at, (SELECT group_concat(p.node || '\t' || "        \
  "CASE WHEN p.open THEN '1' ELSE '0' END || '\t' || p.updated_at || '\t' || " \
  "p.reason, '\n') FROM placements p WHERE p.endpoint_id = e.id), "            \
  "(SELECT n.netns FROM networks n WHERE n.name = e.network), "                \
  "s.private_dns_name, e.private_dns FROM endpoints e"                         \
  " JOIN services s ON s.id = e.service_id"
#define TOKEN_FROM                                                             \
  "SELECT t.id, t.principal, p.role, t.sha256, t.created_at, t.expires_at,"    \
  " t.last_used_at FROM tokens t JOIN principals p ON p.name = t.principal"
#define NETWORK_FROM                                                           \
  "SELECT name, range, netns, principals, created_at FROM networks"
#define TARGET_FROM                                                            \
  "SELECT target_group, address, weight, created_at FROM targets"
#define PRINCIPAL_FROM                                                         \
  "SELECT name, role, created_at, since_seq FROM principals"
#define EVENT_FROM                                                             \
  "SELECT seq, time, type, service_id, endpoint_id, principal, owner, "        \
  "consumer, state, reason, target_group, target, node, subject, token_id "    \
  "FROM events"
/* Lists bind the filter as ?1 (a key) and ?2 (a state), the page as ?3
 * (created_at), ?4 (id), ?5 (limit); one statement per filter, so that
 * each can use its index. */
#define PAGE(t)                                                                \
  " AND (" t "created_at, " t "id) > (?3, ?4)"                                 \
  " ORDER BY " t "created_at, " t "id LIMIT ?5"
#define NODE_UPSERT                                                            \
  "INSERT INTO nodes (name, version, started_at, last_seen, applied_seq,"      \
  " draining, networks) VALUES (?1, ?2, ?3, ?3, ?4, FALSE, ?5)"                \
  " ON CONFLICT (name) DO UPDATE SET version = ?2, last_seen = ?3,"            \
  " applied_seq = ?4, networks = ?5"

/* A count of live endpoints: where is a condition on ?1 (and ?2). */
#define COUNT_LIVE(where)                                                      \
  "SELECT count(*) FROM endpoints WHERE " where " AND state IN " LIVE

static int64_t limit_of(size_t limit)
{
  return limit > INT64_MAX ? INT64_MAX : (int64_t)limit;
}

static int state_of(const struct sql_row *row, int col,
                    enum reg_endpoint_state *state)
{
  return reg_state_parse(sql_text(row, col), state) < 0 ? -EIO : 0;
}

static int role_of(const struct sql_row *row, int col, enum reg_role *role)
{
  return reg_role_parse(sql_text(row, col), role) < 0 ? -EIO : 0;
}

/* ---- what the driver does ---------------------------------------------- */

static const char *store_name(struct reg_store *store)
{
  return store->sql->name;
}

static const char *errmsg(struct reg_store *store)
{
  return store->sql->errmsg(store->db);
}

static int schema_version(struct reg_store *store)
{
  return store->sql->schema_version(store->db);
}

static int begin(struct reg_store *store, bool write, uint32_t timeout_ms)
{
  return store->sql->begin(store->db, write, timeout_ms);
}

static int commit(struct reg_store *store)
{
  return store->sql->commit(store->db);
}

static void rollback(struct reg_store *store)
{
  store->sql->rollback(store->db);
}

static int wait_fd(struct reg_store *store)
{
  return store->sql->wait_fd(store->db);
}

static bool take_notices(struct reg_store *store)
{
  return store->sql->take_notices(store->db);
}

/* The database's: nodes with skewed clocks agree on who is silent. */
static int now(struct reg_store *store, int64_t *now_ms)
{
  return store->sql->now(store->db, now_ms);
}

/* ---- services ----------------------------------------------------------- */

static int add_principals(struct reg_store *store, const char *id,
                          char *const *principals, size_t n)
{
  int r = 0;

  for (size_t i = 0; r == 0 && i < n; i++)
    r = sql_run(store, NULL,
                "INSERT INTO service_principals (service_id, principal)"
                " VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                ARGS("ss", id, principals[i]));
  return r;
}

static int service_insert(struct reg_store *store, const struct reg_service *s)
{
  int r = sql_run(store, NULL,
                  "INSERT INTO services (id, name, owner, load_balancer,"
                  " acceptance_required, connection_limit, created_at,"
                  " private_dns_name) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                  ARGS("ssssbiis", s->id, s->name, s->owner, s->load_balancer,
                       s->acceptance_required, (int64_t)s->connection_limit,
                       s->created_at, s->private_dns_name));

  return r < 0 ? r
               : add_principals(store, s->id, s->allowed_principals,
                                s->n_allowed_principals);
}

static int string_from_row(const struct sql_row *row, void *item)
{
  *(char **)item = strdup(sql_text(row, 0));
  return *(char **)item ? 0 : -ENOMEM;
}

static void free_string(void *item)
{
  free(*(char **)item);
}

static const struct sql_rows string_rows = {sizeof(char *), string_from_row,
                                            free_string};

static int load_principals(struct reg_store *store, struct reg_service *s)
{
  return sql_list(
      store, &string_rows, (void **)&s->allowed_principals,
      &s->n_allowed_principals,
      "SELECT principal FROM service_principals WHERE service_id = ?1"
      " ORDER BY principal COLLATE \"C\"",
      ARGS("s", s->id));
}

static int service_from_row(const struct sql_row *row, void *item)
{
  struct reg_service *s = item;

  memset(s, 0, sizeof(*s));
  COPY(row, 0, s->id);
  COPY(row, 1, s->name);
  COPY(row, 2, s->owner);
  COPY(row, 3, s->load_balancer);
  s->acceptance_required = sql_int(row, 4) != 0;
  s->connection_limit = (uint32_t)sql_int(row, 5);
  s->created_at = sql_int(row, 6);
  COPY(row, 7, s->private_dns_name);
  s->state = "available";
  return 0;
}

static void release_service(void *item)
{
  reg_service_release(item);
}

static const struct sql_rows service_rows = {sizeof(struct reg_service),
                                             service_from_row, release_service};

static int service_get(struct reg_store *store, const char *id_or_name,
                       struct reg_service *out)
{
  int r = sql_get(store, &service_rows, out,
                  SERVICE_FROM " WHERE id = ?1 OR lower(name) = lower(?1)"
                               " ORDER BY id = ?1 DESC LIMIT 1",
                  ARGS("s", id_or_name));

  return r < 0 ? r : load_principals(store, out);
}

static int service_list(struct reg_store *store,
                        const struct reg_store_service_filter *filter,
                        const struct reg_store_cursor *after, size_t limit,
                        struct reg_service **out, size_t *n)
{
  static const char *const all = SERVICE_FROM " WHERE TRUE" PAGE("");
  static const char *const owner = SERVICE_FROM " WHERE owner = ?1" PAGE("");
  static const char *const consumer =
      SERVICE_FROM " WHERE id IN (SELECT service_id FROM service_principals"
                   " WHERE principal IN (?1, '*'))" PAGE("");
  int r =
      sql_list(store, &service_rows, (void **)out, n,
               filter->owner      ? owner
               : filter->consumer ? consumer
                                  : all,
               ARGS("ssisi", filter->owner ? filter->owner : filter->consumer,
                    NULL, after->created_at, after->id, limit_of(limit)));

  /* Principals come from another statement, so after the scan. */
  for (size_t i = 0; r == 0 && i < *n; i++)
    if ((r = load_principals(store, &(*out)[i])) < 0) {
      reg_services_free(*out, *n);
      *out = NULL;
      *n = 0;
    }
  return r;
}

static int service_update(struct reg_store *store, const struct reg_service *s)
{
  return sql_run(store, NULL,
                 "UPDATE services SET acceptance_required = ?2,"
                 " connection_limit = ?3, private_dns_name = ?4 WHERE id = ?1",
                 ARGS("sbis", s->id, s->acceptance_required,
                      (int64_t)s->connection_limit, s->private_dns_name));
}

static int service_set_principals(struct reg_store *store, const char *id,
                                  char *const *principals, size_t n)
{
  int r = sql_run(store, NULL,
                  "DELETE FROM service_principals WHERE service_id = ?1",
                  ARGS("s", id));

  return r < 0 ? r : add_principals(store, id, principals, n);
}

/* Deletes the one row whose key is ?1: -ENOENT if none. */
static int delete_one(struct reg_store *store, const char *query,
                      const char *key)
{
  uint64_t changed = 0;
  int r = sql_run(store, &changed, query, ARGS("s", key));

  return r < 0 ? r : changed == 1 ? 0 : -ENOENT;
}

static int service_delete(struct reg_store *store, const char *id)
{
  return delete_one(store, "DELETE FROM services WHERE id = ?1", id);
}

static int service_count_live(struct reg_store *store, const char *service_id,
                              size_t *n)
{
  return sql_get(store, &sql_count_rows, n, COUNT_LIVE("service_id = ?1"),
                 ARGS("s", service_id));
}

static int service_count_owner(struct reg_store *store, const char *owner,
                               size_t *n)
{
  return sql_get(store, &sql_count_rows, n,
                 "SELECT count(*) FROM services WHERE owner = ?1",
                 ARGS("s", owner));
}

/* ---- endpoints ---------------------------------------------------------- */

static int endpoint_from_row(const struct sql_row *row, void *item)
{
  struct reg_endpoint *e = item;
  int r;

  memset(e, 0, sizeof(*e));
  COPY(row, 0, e->id);
  COPY(row, 1, e->service_id);
  COPY(row, 2, e->service);
  COPY(row, 3, e->owner);
  COPY(row, 4, e->load_balancer);
  COPY(row, 5, e->consumer);
  COPY(row, 6, e->network);
  COPY(row, 7, e->address);
  if (state_of(row, 8, &e->state) < 0)
    return -EIO;
  COPY(row, 9, e->reason);
  e->created_at = sql_int(row, 11);
  e->updated_at = sql_int(row, 12);
  COPY(row, 14, e->netns);
  COPY(row, 15, e->private_dns_name);
  e->private_dns = sql_int(row, 16) != 0;
  if ((r = sql_split_lines(sql_text(row, 10), &e->allowed_sources,
                           &e->n_allowed_sources)) < 0 ||
      (r = sql_parse_placements(sql_text(row, 13), e)) < 0)
    reg_endpoint_release(e);
  return r;
}

static void release_endpoint(void *item)
{
  reg_endpoint_release(item);
}

static const struct sql_rows endpoint_rows = {
    sizeof(struct reg_endpoint), endpoint_from_row, release_endpoint};

static int endpoint_insert(struct reg_store *store,
                           const struct reg_endpoint *e,
                           const struct reg_addr_key *key)
{
  char *sources = sql_join_lines(e->allowed_sources, e->n_allowed_sources);
  int r;

  if (sources == NULL)
    return -ENOMEM;
  r = sql_run(
      store, NULL,
      "INSERT INTO endpoints (id, service_id, consumer, network, address,"
      " address_key, state, reason, allowed_sources, created_at,"
      " updated_at, private_dns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"
      " ?9, ?10, ?11, ?12)",
      ARGS("sssssksssiib", e->id, e->service_id, e->consumer, e->network,
           e->address, key, reg_state_name(e->state), e->reason, sources,
           e->created_at, e->updated_at, e->private_dns));
  free(sources);
  return r;
}

static int endpoint_get(struct reg_store *store, const char *id,
                        struct reg_endpoint *out)
{
  return sql_get(store, &endpoint_rows, out, ENDPOINT_FROM " WHERE e.id = ?1",
                 ARGS("s", id));
}

static int endpoint_list(struct reg_store *store,
                         const struct reg_store_endpoint_filter *filter,
                         const struct reg_store_cursor *after, size_t limit,
                         struct reg_endpoint **out, size_t *n)
{
  /* By [service, consumer, neither][without, with a state]. */
  static const char *const lists[3][2] = {
      {ENDPOINT_FROM " WHERE e.service_id = ?1" PAGE("e."),
       ENDPOINT_FROM " WHERE e.service_id = ?1 AND e.state = ?2" PAGE("e.")},
      {ENDPOINT_FROM " WHERE e.consumer = ?1" PAGE("e."),
       ENDPOINT_FROM " WHERE e.consumer = ?1 AND e.state = ?2" PAGE("e.")},
      {ENDPOINT_FROM " WHERE TRUE" PAGE("e."),
       ENDPOINT_FROM " WHERE e.state = ?2" PAGE("e.")},
  };
  int by = filter->service_id ? 0 : filter->consumer ? 1 : 2;

  return sql_list(
      store, &endpoint_rows, (void **)out, n, lists[by][filter->state != NULL],
      ARGS("ssisi", filter->service_id ? filter->service_id : filter->consumer,
           filter->state ? reg_state_name(*filter->state) : NULL,
           after->created_at, after->id, limit_of(limit)));
}

static int endpoint_update(struct reg_store *store,
                           const struct reg_endpoint *e)
{
  char *sources = sql_join_lines(e->allowed_sources, e->n_allowed_sources);
  uint64_t changed = 0;
  int r;

  if (sources == NULL)
    return -ENOMEM;
  r = sql_run(
      store, &changed,
      "UPDATE endpoints SET state = ?2, reason = ?3, allowed_sources = ?4,"
      " updated_at = ?5, private_dns = ?6 WHERE id = ?1",
      ARGS("ssssib", e->id, reg_state_name(e->state), e->reason, sources,
           e->updated_at, e->private_dns));
  free(sources);
  return r < 0 ? r : changed == 1 ? 0 : -ENOENT;
}

static int endpoint_count_live(struct reg_store *store, const char *service_id,
                               const char *consumer, size_t *n)
{
  return sql_get(store, &sql_count_rows, n,
                 COUNT_LIVE("service_id = ?1 AND consumer = ?2"),
                 ARGS("ss", service_id, consumer));
}

static int address_taken(struct reg_store *store, const char *network,
                         const struct reg_addr_key *key, bool *taken)
{
  int64_t value;
  int r = sql_get(store, &sql_int_rows, &value,
                  "SELECT 1 FROM endpoints WHERE network = ?1"
                  " AND address_key = ?2 AND state IN " LIVE,
                  ARGS("sk", network, key));

  *taken = r == 0;
  return r == -ENOENT ? 0 : r;
}

static int key_from_row(const struct sql_row *row, void *item)
{
  struct reg_addr_key *key = item;

  /* A hint of another size is no hint. */
  if (row->sql->column_blob(row->stmt, 0, key->bytes, sizeof(key->bytes)) < 0)
    return -ENOENT;
  return 0;
}

static int network_hint_get(struct reg_store *store, const char *network,
                            struct reg_addr_key *key)
{
  static const struct sql_rows keys = {sizeof(*key), key_from_row, NULL};

  return sql_get(store, &keys, key,
                 "SELECT next_key FROM network_hints WHERE network = ?1",
                 ARGS("s", network));
}

static int network_hint_set(struct reg_store *store, const char *network,
                            const struct reg_addr_key *key)
{
  return sql_run(
      store, NULL,
      "INSERT INTO network_hints (network, next_key) VALUES (?1, ?2)"
      " ON CONFLICT (network) DO UPDATE SET next_key = excluded.next_key",
      ARGS("sk", network, key));
}

static int pending_before(struct reg_store *store, int64_t cutoff_ms,
                          size_t limit, struct reg_endpoint **out, size_t *n)
{
  return sql_list(store, &endpoint_rows, (void **)out, n,
                  ENDPOINT_FROM " WHERE e.state = 'pendingAcceptance'"
                                " AND e.created_at <= ?1"
                                " ORDER BY e.created_at, e.id LIMIT ?2",
                  ARGS("ii", cutoff_ms, limit_of(limit)));
}

static int count_from_row(const struct sql_row *row, void *item)
{
  struct reg_endpoint_count *c = item;

  COPY(row, 0, c->service);
  c->count = (uint64_t)sql_int(row, 2);
  return state_of(row, 1, &c->state);
}

static int endpoint_counts(struct reg_store *store,
                           struct reg_endpoint_count **out, size_t *n)
{
  static const struct sql_rows counts = {sizeof(**out), count_from_row, NULL};

  /* Sorted, so that a service's rows come together. */
  return sql_list(store, &counts, (void **)out, n,
                  "SELECT s.name, e.state, count(*) FROM endpoints e"
                  " JOIN services s ON s.id = e.service_id"
                  " GROUP BY s.name, e.state ORDER BY s.name, e.state",
                  ARGS(""));
}

static int placement_put(struct reg_store *store, const char *endpoint_id,
                         const struct reg_placement *p)
{
  char reason[REG_REASON_BUF];

  /* Tabs and newlines would break the aggregated column. */
  snprintf(reason, sizeof(reason), "%s", p->reason);
  for (char *c = reason; *c; c++)
    if (*c == '\t' || *c == '\n' || *c == '\r')
      *c = ' ';
  return sql_run(
      store, NULL,
      "INSERT INTO placements (endpoint_id, node, open, reason,"
      " updated_at) VALUES (?1, ?2, ?3, ?4, ?5)"
      " ON CONFLICT (endpoint_id, node) DO UPDATE SET"
      " open = excluded.open, reason = excluded.reason,"
      " updated_at = excluded.updated_at",
      ARGS("ssbsi", endpoint_id, p->node, p->open, reason, p->updated_at));
}

static int endpoints_prune(struct reg_store *store, int64_t before_ms,
                           size_t limit, size_t *removed)
{
  uint64_t changed = 0;
  int r = sql_run(store, &changed,
                  "DELETE FROM endpoints WHERE id IN (SELECT id FROM endpoints"
                  " WHERE state IN ('rejected','deleted','expired','failed')"
                  " AND updated_at < ?1 ORDER BY updated_at LIMIT ?2)",
                  ARGS("ii", before_ms, limit_of(limit)));

  *removed = (size_t)changed;
  return r;
}

/* ---- targets ------------------------------------------------------------ */

static int target_from_row(const struct sql_row *row, void *item)
{
  struct reg_target *t = item;

  memset(t, 0, sizeof(*t));
  COPY(row, 0, t->target_group);
  COPY(row, 1, t->address);
  t->weight = (uint32_t)sql_int(row, 2);
  t->created_at = sql_int(row, 3);
  return 0;
}

static const struct sql_rows target_rows = {sizeof(struct reg_target),
                                            target_from_row, NULL};

static int target_insert(struct reg_store *store, const struct reg_target *t)
{
  return sql_run(
      store, NULL,
      "INSERT INTO targets (target_group, address, weight, created_at)"
      " VALUES (?1, ?2, ?3, ?4)",
      ARGS("ssii", t->target_group, t->address, (int64_t)t->weight,
           t->created_at));
}

static int target_get(struct reg_store *store, const char *target_group,
                      const char *address, struct reg_target *out)
{
  return sql_get(store, &target_rows, out,
                 TARGET_FROM " WHERE target_group = ?1 AND address = ?2",
                 ARGS("ss", target_group, address));
}

static int target_delete(struct reg_store *store, const char *target_group,
                         const char *address)
{
  uint64_t changed = 0;
  int r =
      sql_run(store, &changed,
              "DELETE FROM targets WHERE target_group = ?1 AND address = ?2",
              ARGS("ss", target_group, address));

  return r < 0 ? r : changed == 1 ? 0 : -ENOENT;
}

static int target_list(struct reg_store *store, struct reg_target **out,
                       size_t *n)
{
  return sql_list(store, &target_rows, (void **)out, n,
                  TARGET_FROM " ORDER BY target_group, created_at", ARGS(""));
}

/* ---- nodes -------------------------------------------------------------- */

static int node_heartbeat(struct reg_store *store, const char *name,
                          const char *version, const char *networks,
                          uint64_t applied_seq, bool starting)
{
  static const char *const start =
      NODE_UPSERT ", started_at = ?3, draining = FALSE";
  static const char *const beat = NODE_UPSERT;
  int64_t now_ms;
  int r = now(store, &now_ms);

  return r < 0 ? r
               : sql_run(store, NULL, starting ? start : beat,
                         ARGS("ssiis", name, version, now_ms,
                              (int64_t)applied_seq, networks));
}

static int node_from_row(const struct sql_row *row, void *item)
{
  struct reg_node *node = item;

  memset(node, 0, sizeof(*node));
  COPY(row, 0, node->name);
  COPY(row, 1, node->version);
  node->started_at = sql_int(row, 2);
  node->last_seen = sql_int(row, 3);
  node->applied_seq = (uint64_t)sql_int(row, 4);
  node->state = sql_int(row, 5) ? REG_NODE_DRAINING : REG_NODE_UP;
  COPY(row, 6, node->networks);
  return 0;
}

static int node_list(struct reg_store *store, struct reg_node **out, size_t *n,
                     int64_t *now_ms)
{
  static const struct sql_rows nodes = {sizeof(**out), node_from_row, NULL};
  int r = now(store, now_ms);

  return r < 0 ? r
               : sql_list(store, &nodes, (void **)out, n,
                          "SELECT name, version, started_at, last_seen,"
                          " applied_seq, draining, networks FROM nodes"
                          " ORDER BY name",
                          ARGS(""));
}

static int node_set_draining(struct reg_store *store, const char *name)
{
  return sql_run(store, NULL,
                 "UPDATE nodes SET draining = TRUE WHERE name = ?1",
                 ARGS("s", name));
}

/* ---- events ------------------------------------------------------------- */

static int event_append(struct reg_store *store, struct reg_event *ev)
{
  int64_t seq;
  int r;

  /* seq 0: the table numbers it (NULL). */
  if ((r = store->sql->event_seq(store->db, &seq)) < 0 ||
      (r = sql_get(store, &sql_int_rows, &seq,
                   "INSERT INTO events (seq, time, type, service_id,"
                   " endpoint_id, principal, owner, consumer, state, reason,"
                   " target_group, target, node, subject, token_id)"
                   " VALUES (nullif(CAST(?1 AS bigint), 0), ?2, ?3, ?4, ?5,"
                   " ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                   " RETURNING seq",
                   ARGS("iisssssssssssss", seq, ev->time,
                        reg_event_type_name(ev->type), ev->service_id,
                        ev->endpoint_id, ev->principal, ev->owner, ev->consumer,
                        reg_state_name(ev->state), ev->reason, ev->target_group,
                        ev->target, ev->node, ev->subject, ev->token_id))) < 0)
    return r;
  ev->seq = (uint64_t)seq;
  return 0;
}

static int event_from_row(const struct sql_row *row, void *item)
{
  struct reg_event *ev = item;

  memset(ev, 0, sizeof(*ev));
  ev->seq = (uint64_t)sql_int(row, 0);
  ev->time = sql_int(row, 1);
  if (reg_event_type_parse(sql_text(row, 2), &ev->type) < 0)
    return -EIO;
  COPY(row, 3, ev->service_id);
  COPY(row, 4, ev->endpoint_id);
  COPY(row, 5, ev->principal);
  COPY(row, 6, ev->owner);
  COPY(row, 7, ev->consumer);
  COPY(row, 9, ev->reason);
  COPY(row, 10, ev->target_group);
  COPY(row, 11, ev->target);
  COPY(row, 12, ev->node);
  COPY(row, 13, ev->subject);
  COPY(row, 14, ev->token_id);
  return state_of(row, 8, &ev->state);
}

static int events_after(struct reg_store *store, uint64_t after,
                        const struct reg_store_event_filter *filter,
                        size_t limit, struct reg_event **out, size_t *n)
{
  static const struct sql_rows events = {sizeof(**out), event_from_row, NULL};
  static const char *const all =
      EVENT_FROM " WHERE seq > ?1 ORDER BY seq LIMIT ?2";
  static const char *const owner = EVENT_FROM " WHERE owner = ?3 AND"
                                              " owner <> '' AND seq > ?1"
                                              " ORDER BY seq LIMIT ?2";
  static const char *const consumer = EVENT_FROM " WHERE consumer = ?3 AND"
                                                 " consumer <> '' AND seq > ?1"
                                                 " ORDER BY seq LIMIT ?2";
  const char *query = all, *who = NULL;

  if (filter && filter->owner)
    query = owner, who = filter->owner;
  else if (filter && filter->consumer)
    query = consumer, who = filter->consumer;
  return sql_list(store, &events, (void **)out, n, query,
                  ARGS("iis", (int64_t)after, limit_of(limit), who));
}

static int last_seq(struct reg_store *store, uint64_t *seq)
{
  int64_t value = 0;
  int r =
      sql_get(store, &sql_int_rows, &value, store->sql->last_seq_sql, ARGS(""));

  *seq = (uint64_t)value;
  return r;
}

static int first_seq(struct reg_store *store, uint64_t *seq)
{
  int64_t first;
  int r = sql_get(store, &sql_int_rows, &first, "SELECT min(seq) FROM events",
                  ARGS(""));

  if (r == 0)
    *seq = (uint64_t)first;
  else if (r == -ENOENT && (r = last_seq(store, seq)) == 0)
    *seq += 1; /* none: the next one */
  return r;
}

static int events_prune(struct reg_store *store, int64_t before_ms,
                        size_t limit, size_t *removed)
{
  uint64_t first, keep_from = 0, changed = 0;
  int64_t value;
  int r;

  *removed = 0;
  if ((r = first_seq(store, &first)) < 0)
    return r;
  r = sql_get(store, &sql_int_rows, &value,
              "SELECT min(seq) FROM events WHERE time >= ?1",
              ARGS("i", before_ms));
  if (r == 0)
    keep_from = (uint64_t)value;
  else if (r == -ENOENT && (r = last_seq(store, &keep_from)) == 0)
    keep_from += 1; /* every event is older: all go */
  if (r < 0)
    return r;
  if (keep_from > first + limit)
    keep_from = first + limit;
  if (keep_from <= first)
    return 0;
  r = sql_run(store, &changed, "DELETE FROM events WHERE seq < ?1",
              ARGS("i", (int64_t)keep_from));
  *removed = (size_t)changed;
  return r;
}

/* ---- tenancy ------------------------------------------------------------ */

static int principal_from_row(const struct sql_row *row, void *item)
{
  struct reg_principal_info *p = item;

  memset(p, 0, sizeof(*p));
  COPY(row, 0, p->name);
  p->created_at = sql_int(row, 2);
  p->since_seq = (uint64_t)sql_int(row, 3);
  return role_of(row, 1, &p->role);
}

static const struct sql_rows principal_rows = {
    sizeof(struct reg_principal_info), principal_from_row, NULL};

static int principal_insert(struct reg_store *store,
                            const struct reg_principal_info *p)
{
  return sql_run(store, NULL,
                 "INSERT INTO principals (name, role, created_at, since_seq)"
                 " VALUES (?1, ?2, ?3, ?4)",
                 ARGS("ssii", p->name, reg_role_name(p->role), p->created_at,
                      (int64_t)p->since_seq));
}

static int principal_get(struct reg_store *store, const char *name,
                         struct reg_principal_info *out)
{
  return sql_get(store, &principal_rows, out, PRINCIPAL_FROM " WHERE name = ?1",
                 ARGS("s", name));
}

static int principal_list(struct reg_store *store,
                          struct reg_principal_info **out, size_t *n)
{
  return sql_list(store, &principal_rows, (void **)out, n,
                  PRINCIPAL_FROM " ORDER BY name COLLATE \"C\"", ARGS(""));
}

/* A principal made again under this name starts empty: its finished
 * endpoints and its grants go with it (its live ones keep it from being
 * deleted). */
static int principal_delete(struct reg_store *store, const char *name)
{
  int r = delete_one(store, "DELETE FROM principals WHERE name = ?1", name);

  if (r == 0)
    r = sql_run(store, NULL,
                "DELETE FROM endpoints WHERE consumer = ?1"
                " AND state NOT IN " LIVE,
                ARGS("s", name));
  if (r == 0)
    r = sql_run(store, NULL,
                "DELETE FROM service_principals WHERE principal = ?1",
                ARGS("s", name));
  return r;
}

static int principal_holdings(struct reg_store *store, const char *name,
                              size_t *services, size_t *endpoints)
{
  int r = service_count_owner(store, name, services);

  return r < 0 ? r
               : sql_get(store, &sql_count_rows, endpoints,
                         COUNT_LIVE("consumer = ?1"), ARGS("s", name));
}

static int token_from_row(const struct sql_row *row, void *item)
{
  struct reg_token *t = item;

  memset(t, 0, sizeof(*t));
  COPY(row, 0, t->id);
  COPY(row, 1, t->principal);
  t->created_at = sql_int(row, 4);
  t->expires_at = sql_int(row, 5);
  t->last_used_at = sql_int(row, 6);
  if (row->sql->column_blob(row->stmt, 3, t->sha256, sizeof(t->sha256)) < 0)
    return -EIO;
  return role_of(row, 2, &t->role);
}

static const struct sql_rows token_rows = {sizeof(struct reg_token),
                                           token_from_row, NULL};

static int token_insert(struct reg_store *store, const struct reg_token *t)
{
  return sql_run(store, NULL,
                 "INSERT INTO tokens (id, principal, sha256, created_at,"
                 " expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                 ARGS("sshii", t->id, t->principal, t->sha256, t->created_at,
                      t->expires_at));
}

static int token_get(struct reg_store *store, const char *id,
                     struct reg_token *out)
{
  return sql_get(store, &token_rows, out, TOKEN_FROM " WHERE t.id = ?1",
                 ARGS("s", id));
}

static int token_list(struct reg_store *store, const char *principal,
                      struct reg_token **out, size_t *n)
{
  static const char *const all = TOKEN_FROM " ORDER BY t.created_at, t.id";
  static const char *const of =
      TOKEN_FROM " WHERE t.principal = ?1 ORDER BY t.created_at, t.id";

  return sql_list(store, &token_rows, (void **)out, n, principal ? of : all,
                  ARGS("s", principal));
}

static int token_delete(struct reg_store *store, const char *id)
{
  return delete_one(store, "DELETE FROM tokens WHERE id = ?1", id);
}

static int token_touch(struct reg_store *store, const char *id, int64_t used_at)
{
  return sql_run(store, NULL,
                 "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1"
                 " AND last_used_at < ?2",
                 ARGS("si", id, used_at));
}

static int network_from_row(const struct sql_row *row, void *item)
{
  struct reg_network_info *net = item;

  memset(net, 0, sizeof(*net));
  COPY(row, 0, net->name);
  COPY(row, 1, net->range);
  COPY(row, 2, net->netns);
  net->created_at = sql_int(row, 4);
  return sql_split_lines(sql_text(row, 3), &net->principals,
                         &net->n_principals);
}

static void release_network(void *item)
{
  struct reg_network_info *net = item;

  reg_strings_free(net->principals, net->n_principals);
}

static const struct sql_rows network_rows = {sizeof(struct reg_network_info),
                                             network_from_row, release_network};

static int network_insert(struct reg_store *store,
                          const struct reg_network_info *net)
{
  char *principals = sql_join_lines(net->principals, net->n_principals);
  int r;

  if (principals == NULL)
    return -ENOMEM;
  r = sql_run(
      store, NULL,
      "INSERT INTO networks (name, range, netns, principals, created_at)"
      " VALUES (?1, ?2, ?3, ?4, ?5)",
      ARGS("ssssi", net->name, net->range, net->netns, principals,
           net->created_at));
  free(principals);
  return r;
}

static int network_get(struct reg_store *store, const char *name,
                       struct reg_network_info *out)
{
  return sql_get(store, &network_rows, out, NETWORK_FROM " WHERE name = ?1",
                 ARGS("s", name));
}

static int network_list(struct reg_store *store, struct reg_network_info **out,
                        size_t *n)
{
  return sql_list(store, &network_rows, (void **)out, n,
                  NETWORK_FROM " ORDER BY name COLLATE \"C\"", ARGS(""));
}

static int network_delete(struct reg_store *store, const char *name)
{
  return delete_one(store, "DELETE FROM networks WHERE name = ?1", name);
}

static int network_count_live(struct reg_store *store, const char *name,
                              size_t *n)
{
  return sql_get(store, &sql_count_rows, n, COUNT_LIVE("network = ?1"),
                 ARGS("s", name));
}

const struct reg_store_ops reg_store_sql = {
    .open = sql_open,
    .close = sql_close,
    .name = store_name,
    .errmsg = errmsg,
    .schema_version = schema_version,
    .begin = begin,
    .commit = commit,
    .rollback = rollback,
    .wait_fd = wait_fd,
    .take_notices = take_notices,
    .service_insert = service_insert,
    .service_get = service_get,
    .service_list = service_list,
    .service_update = service_update,
    .service_set_principals = service_set_principals,
    .service_delete = service_delete,
    .endpoint_insert = endpoint_insert,
    .endpoint_get = endpoint_get,
    .endpoint_list = endpoint_list,
    .endpoint_update = endpoint_update,
    .endpoint_count_live = endpoint_count_live,
    .service_count_live = service_count_live,
    .address_taken = address_taken,
    .network_hint_get = network_hint_get,
    .network_hint_set = network_hint_set,
    .pending_before = pending_before,
    .endpoint_counts = endpoint_counts,
    .placement_put = placement_put,
    .target_insert = target_insert,
    .target_get = target_get,
    .target_delete = target_delete,
    .target_list = target_list,
    .node_heartbeat = node_heartbeat,
    .node_list = node_list,
    .node_set_draining = node_set_draining,
    .endpoints_prune = endpoints_prune,
    .service_count_owner = service_count_owner,
    .principal_insert = principal_insert,
    .principal_get = principal_get,
    .principal_list = principal_list,
    .principal_delete = principal_delete,
    .principal_holdings = principal_holdings,
    .token_insert = token_insert,
    .token_get = token_get,
    .token_list = token_list,
    .token_delete = token_delete,
    .token_touch = token_touch,
    .network_insert = network_insert,
    .network_get = network_get,
    .network_list = network_list,
    .network_delete = network_delete,
    .network_count_live = network_count_live,
    .event_append = event_append,
    .events_after = events_after,
    .last_seq = last_seq,
    .first_seq = first_seq,
    .events_prune = events_prune,
};
