/* The registry's store: where services, permissions, endpoints, placements,
 * run-time targets, nodes and events are kept, behind one table of
 * functions. It is implemented once, in SQL (registry/store_sql.c), over a
 * driver per database (SQLite for one node, PostgreSQL for many), found by
 * the scheme of the store's URL. The store knows nothing of roles,
 * permissions or the state machine: it reads and writes rows inside the
 * transactions the registry opens (reg_tx, registry/core.c).
 *
 * The contract every backend keeps:
 *   - Its schema is versioned inside the store and migrated at open; a
 *     store newer than the code is refused (-EIO).
 *   - begin(write = true) is serialized with every writer of the same store
 *     in every process: once it returns, no other write transaction runs
 *     until this one ends, and every read in it sees everything committed
 *     before. So checks made inside a write transaction (a connection
 *     limit, a free address) still hold at commit.
 *   - Events appended by a transaction get the next sequence numbers, with
 *     no gap, and become visible in commit order: a reader that sees seq N
 *     sees every seq below it.
 *   - A failure another attempt may cure (a serialization failure, a
 *     deadlock, a busy file) is -EAGAIN: the registry rolls back and runs the
 *     whole transaction again. A store that cannot be reached is -ENOTCONN
 *     (the transaction did nothing); the next begin() tries to reconnect,
 *     at most as often as its backoff allows.
 *   - Waits are bounded: begin() is given the time left, and every wait
 *     of the transaction (for a lock another session holds, a busy file, a
 *     slow statement) gives up within it with -ETIMEDOUT. The transaction
 *     is then aborted, never committed later: registry.c rolls it back and
 *     does not run it again. Statements outside transactions (heartbeats)
 *     are bounded by reg_store_settings.statement_timeout_ms.
 *   - One process per node: while a store is open (and across its
 *     reconnections) it holds what makes it this node's alone, the SQLite
 *     file, or the node's name in PostgreSQL; a second process is refused
 *     at open with -EBUSY, its message naming the holder.
 *
 * Service and principal names are unique ignoring ASCII case (a unique
 * index on lower(name)); service_get matches a name in any case.
 *
 * Only registry/ uses this header. One thread, like the registry.
 * Every function returns 0 or a negative errno: -ENOENT (no such row),
 * -EEXIST (a unique key, e.g. a service name, is taken), -EADDRINUSE (a live
 * endpoint already holds that address in that network), -EAGAIN, -ENOTCONN,
 * -ETIMEDOUT, -ENOMEM, -EIO (any other store failure; the store keeps a message
 * for reg_store_ops.errmsg). Results use the registry.h structs; the store
 * fills only the stored fields (not ports, netns, load-balancer proxy settings:
 * those come from config). */
#ifndef NLB_REGISTRY_STORE_H
#define NLB_REGISTRY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "nlb/registry.h"

/* Addresses as 16 bytes in network order (IPv4 as ::ffff:a.b.c.d), so that
 * byte order is numeric order. */
struct reg_addr_key {
  uint8_t bytes[16];
};

/* A position in a list ordered by (created_at, id); id "" = the start. */
struct reg_store_cursor {
  int64_t created_at;
  char id[REG_ID_BUF];
};

/* Which services a list wants: owner NULL = all; consumer non-NULL: only
 * those allowing it or "*". */
struct reg_store_service_filter {
  const char *owner;
  const char *consumer;
};

/* Which endpoints a list wants; NULL members match all. At most one of
 * service_id and consumer is set. */
struct reg_store_endpoint_filter {
  const char *service_id;
  const char *consumer;
  const enum reg_endpoint_state *state;
};

/* Which events a reader may see: both NULL = all; else only the events
 * whose owner is owner, or whose consumer is consumer. */
struct reg_store_event_filter {
  const char *owner;
  const char *consumer;
};

struct reg_store;

/* How a store is opened. Strings are borrowed for the call of open. */
struct reg_store_settings {
  const char *location; /* the store's URL ("sqlite:PATH", "postgresql:...") */
  /* This node's name. PostgreSQL holds it for the connection's life (a
   * session advisory lock, taken again on every reconnection): a second
   * process with the same name is refused. */
  const char *node;
  /* A second store of the same process on the same location, for reads
   * only (nlbd answers reads on a thread of their own): it takes neither
   * the SQLite file's lock nor the node's name, listens for no notices,
   * and cannot write. Opened after the first. */
  bool reader;
  /* The bound on a statement run outside a transaction, ms (> 0). */
  uint32_t statement_timeout_ms;
};

/* Deletes what is older than before_ms, at most limit rows; *removed gets
 * the count (events_prune, endpoints_prune). */
typedef int reg_store_prune_fn(struct reg_store *store, int64_t before_ms,
                               size_t limit, size_t *removed);

struct reg_store_ops {
  /* Opens the store at s->location, a URL whose scheme names the
   * backend: "sqlite:PATH" (also "sqlite:///var/lib/nlb/registry.db"),
   * "postgresql:CONNINFO" (a libpq connection string) or a libpq URI
   * "postgresql://...", and migrates it (a reader does not). -EINVAL when
   * no backend has that name; -EBUSY: another process holds the file or
   * the node's name. errbuf gets the reason of a failure. */
  int (*open)(struct reg_store **out, const struct reg_store_settings *s,
              char *errbuf, size_t errlen);
  void (*close)(struct reg_store *store);
  /* The backend's name: "sqlite", "postgresql". */
  const char *(*name)(struct reg_store *store);
  /* The last failure's text, for -EIO. */
  const char *(*errmsg)(struct reg_store *store);
  int (*schema_version)(struct reg_store *store);

  /* Transactions (see the contract above); every wait of this one ends
   * within timeout_ms (> 0). */
  int (*begin)(struct reg_store *store, bool write, uint32_t timeout_ms);
  int (*commit)(struct reg_store *store);
  void (*rollback)(struct reg_store *store);
  /* Change notices from other processes: a descriptor to poll, -1 if
   * none; take_notices consumes them and says whether one came. */
  int (*wait_fd)(struct reg_store *store);
  bool (*take_notices)(struct reg_store *store);

  /* Services; allowed_principals are stored with them. */
  int (*service_insert)(struct reg_store *store, const struct reg_service *s);
  int (*service_get)(struct reg_store *store, const char *id_or_name,
                     struct reg_service *out);
  /* At most limit services after cursor, by (created_at, id). */
  int (*service_list)(struct reg_store *store,
                      const struct reg_store_service_filter *filter,
                      const struct reg_store_cursor *after, size_t limit,
                      struct reg_service **out, size_t *n);
  int (*service_update)(struct reg_store *store, const struct reg_service *s);
  int (*service_set_principals)(struct reg_store *store, const char *id,
                                char *const *principals, size_t n);
  int (*service_delete)(struct reg_store *store, const char *id);

  /* Endpoints, with their placements when read (and, for a network made
   * through the API, its netns). */
  int (*endpoint_insert)(struct reg_store *store, const struct reg_endpoint *e,
                         const struct reg_addr_key *key);
  int (*endpoint_get)(struct reg_store *store, const char *id,
                      struct reg_endpoint *out);
  int (*endpoint_list)(struct reg_store *store,
                       const struct reg_store_endpoint_filter *filter,
                       const struct reg_store_cursor *after, size_t limit,
                       struct reg_endpoint **out, size_t *n);
  /* State, reason, allowed_sources and updated_at of e->id. */
  int (*endpoint_update)(struct reg_store *store, const struct reg_endpoint *e);
  /* Live (pendingAcceptance/available) endpoints of consumer on service. */
  int (*endpoint_count_live)(struct reg_store *store, const char *service_id,
                             const char *consumer, size_t *n);
  /* Count of live endpoints of a service (any consumer). */
  int (*service_count_live)(struct reg_store *store, const char *service_id,
                            size_t *n);
  /* Whether a live endpoint of network holds key. */
  int (*address_taken)(struct reg_store *store, const char *network,
                       const struct reg_addr_key *key, bool *taken);
  /* The network's lowest possibly free address (no live endpoint holds an
   * address of the range below it); -ENOENT when none was recorded. */
  int (*network_hint_get)(struct reg_store *store, const char *network,
                          struct reg_addr_key *key);
  int (*network_hint_set)(struct reg_store *store, const char *network,
                          const struct reg_addr_key *key);
  /* At most limit pendingAcceptance endpoints created at or before
   * cutoff_ms. */
  int (*pending_before)(struct reg_store *store, int64_t cutoff_ms,
                        size_t limit, struct reg_endpoint **out, size_t *n);
  /* Endpoint counts by service name and state. */
  int (*endpoint_counts)(struct reg_store *store,
                         struct reg_endpoint_count **out, size_t *n);

  /* Placements: this node's view of one endpoint (insert or replace). */
  int (*placement_put)(struct reg_store *store, const char *endpoint_id,
                       const struct reg_placement *placement);

  /* Run-time targets. */
  int (*target_insert)(struct reg_store *store, const struct reg_target *t);
  int (*target_get)(struct reg_store *store, const char *target_group,
                    const char *address, struct reg_target *out);
  int (*target_delete)(struct reg_store *store, const char *target_group,
                       const char *address);
  int (*target_list)(struct reg_store *store, struct reg_target **out,
                     size_t *n);

  /* Nodes. heartbeat inserts or updates name's row: last_seen = the store's
   * clock, applied_seq, version and networks (reg_node.networks); when
   * starting, started_at = now and draining = false. */
  int (*node_heartbeat)(struct reg_store *store, const char *name,
                        const char *version, const char *networks,
                        uint64_t applied_seq, bool starting);
  /* Every node, by name; *now gets the store clock of the read, to judge
   * last_seen against. draining is in out[i].state (UP or DRAINING). */
  int (*node_list)(struct reg_store *store, struct reg_node **out, size_t *n,
                   int64_t *now);
  int (*node_set_draining)(struct reg_store *store, const char *name);

  /* Endpoints in final states whose updated_at is before before_ms, at
   * most limit: deleted (placements go with them). */
  reg_store_prune_fn *endpoints_prune;
  /* Services owned by owner. */
  int (*service_count_owner)(struct reg_store *store, const char *owner,
                             size_t *n);

  /* Tenancy: principals, tokens, networks made through the API. */
  int (*principal_insert)(struct reg_store *store,
                          const struct reg_principal_info *p);
  int (*principal_get)(struct reg_store *store, const char *name,
                       struct reg_principal_info *out);
  int (*principal_list)(struct reg_store *store,
                        struct reg_principal_info **out, size_t *n);
  /* Deletes name, its tokens, the endpoints whose consumer it is (with
   * their placements) and the service permissions naming it; -ENOENT when
   * no such principal. Its events stay. */
  int (*principal_delete)(struct reg_store *store, const char *name);
  /* Services it owns and live endpoints it holds. */
  int (*principal_holdings)(struct reg_store *store, const char *name,
                            size_t *services, size_t *endpoints);
  int (*token_insert)(struct reg_store *store, const struct reg_token *t);
  int (*token_get)(struct reg_store *store, const char *id,
                   struct reg_token *out);
  /* Of principal, or every token when principal is NULL; with role. */
  int (*token_list)(struct reg_store *store, const char *principal,
                    struct reg_token **out, size_t *n);
  int (*token_delete)(struct reg_store *store, const char *id);
  int (*token_touch)(struct reg_store *store, const char *id, int64_t used_at);
  /* Networks; principals are stored with them. */
  int (*network_insert)(struct reg_store *store,
                        const struct reg_network_info *net);
  int (*network_get)(struct reg_store *store, const char *name,
                     struct reg_network_info *out);
  int (*network_list)(struct reg_store *store, struct reg_network_info **out,
                      size_t *n);
  int (*network_delete)(struct reg_store *store, const char *name);
  int (*network_count_live)(struct reg_store *store, const char *name,
                            size_t *n);

  /* Events: append assigns ev->seq. */
  int (*event_append)(struct reg_store *store, struct reg_event *ev);
  /* At most limit events with seq > after passing filter (NULL: all). */
  int (*events_after)(struct reg_store *store, uint64_t after,
                      const struct reg_store_event_filter *filter, size_t limit,
                      struct reg_event **out, size_t *n);
  int (*last_seq)(struct reg_store *store, uint64_t *seq);
  /* The lowest seq still stored; last_seq + 1 when none is. */
  int (*first_seq)(struct reg_store *store, uint64_t *seq);
  /* Deletes the oldest events, a prefix in seq order: those before the
   * first event at or after before_ms, at most limit of them. *removed
   * gets the count. */
  reg_store_prune_fn *events_prune;
};

/* The store, over every SQL backend (store_sql.c). */
extern const struct reg_store_ops reg_store_sql;

/* nlbd -s upgrade hands the SQLite writer guard (the lock that keeps a
 * second nlbd off the file) from the old process to the new one as its
 * descriptor: the lock belongs to the open file description, which both
 * hold then, so the new process's store opens while the old one still
 * runs, and the guard stays held when the old one exits. Any thread.
 *
 * reg_sqlite_writer_guard: the guard's descriptor this process holds (its
 * last writable SQLite store's; borrowed), or -1.
 * reg_sqlite_adopt_writer_guard: fd is a guard a previous process held; the
 * next writable SQLite store opened on the same file takes it (and owns it)
 * instead of locking anew; a store of another file leaves it, and it is
 * closed at the next adoption. */
int reg_sqlite_writer_guard(void);
void reg_sqlite_adopt_writer_guard(int fd);

/* nlbd -s upgrade, PostgreSQL: the node's name is held by the old
 * process's session (a session advisory lock). The new process, told the
 * old one's pid before it opens the store, ends that session
 * (pg_terminate_backend) and takes the name, as it would take back a
 * session of its own from before a reconnection; the old process's store
 * is unavailable from then on (its API answers 503) while it drains, and
 * takes the name back if the new one fails and goes. Call before open. */
void reg_pg_take_over_from(long pid);

#endif
