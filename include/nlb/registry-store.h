/* The registry's store: where services, permissions, endpoints and events
 * are kept, behind one table of functions so that a PostgreSQL store can be
 * added next to the SQLite one without touching registry.c. The store knows
 * nothing of roles, permissions or the state machine: it reads and writes
 * rows inside the transactions registry.c opens.
 *
 * Only registry/ uses this header. One thread, like the registry.
 * Every function returns 0 or a negative errno: -ENOENT (no such row),
 * -EEXIST (a unique key, e.g. a service name, is taken), -EADDRINUSE (a live
 * endpoint already holds that address in that network), -ENOMEM, -EIO (any
 * other store failure; the store keeps a message for reg_store_ops.errmsg).
 * Results use the registry.h structs; the store fills only the stored
 * fields (not ports, netns, load-balancer proxy settings: those come from
 * config). */
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

/* Which endpoints a list wants; NULL/empty members match all. */
struct reg_store_endpoint_filter {
  const char *service_id;
  const char *consumer;
  const enum reg_endpoint_state *state;
};

struct reg_store;

struct reg_store_ops {
  const char *name; /* "sqlite" */

  /* Opens the store at location, migrating it to REG_SCHEMA_VERSION. */
  int (*open)(struct reg_store **out, const char *location, char *errbuf,
              size_t errlen);
  void (*close)(struct reg_store *store);
  /* The last failure's text, for -EIO. */
  const char *(*errmsg)(struct reg_store *store);
  int (*schema_version)(struct reg_store *store);

  /* Transactions: write = take the write lock at once (BEGIN IMMEDIATE). */
  int (*begin)(struct reg_store *store, bool write);
  int (*commit)(struct reg_store *store);
  void (*rollback)(struct reg_store *store);

  /* Services; allowed_principals are stored with them. */
  int (*service_insert)(struct reg_store *store, const struct reg_service *s);
  int (*service_get)(struct reg_store *store, const char *id_or_name,
                     struct reg_service *out);
  /* owner NULL: all; consumer non-NULL: only those allowing it or "*". */
  int (*service_list)(struct reg_store *store, const char *owner,
                      const char *consumer, struct reg_service **out,
                      size_t *n);
  int (*service_update)(struct reg_store *store, const struct reg_service *s);
  int (*service_set_principals)(struct reg_store *store, const char *id,
                                char *const *principals, size_t n);
  int (*service_delete)(struct reg_store *store, const char *id);

  /* Endpoints. */
  int (*endpoint_insert)(struct reg_store *store, const struct reg_endpoint *e,
                         const struct reg_addr_key *key);
  int (*endpoint_get)(struct reg_store *store, const char *id,
                      struct reg_endpoint *out);
  int (*endpoint_list)(struct reg_store *store,
                       const struct reg_store_endpoint_filter *filter,
                       struct reg_endpoint **out, size_t *n);
  /* State, reason, allowed_sources and updated_at of e->id. */
  int (*endpoint_update)(struct reg_store *store, const struct reg_endpoint *e);
  /* Live (pendingAcceptance/available) endpoints of consumer on service. */
  int (*endpoint_count_live)(struct reg_store *store, const char *service_id,
                             const char *consumer, size_t *n);
  /* Count of live endpoints of a service (any consumer). */
  int (*service_count_live)(struct reg_store *store, const char *service_id,
                            size_t *n);
  /* Address keys of live endpoints of network, ascending. */
  int (*network_used)(struct reg_store *store, const char *network,
                      struct reg_addr_key **out, size_t *n);
  /* pendingAcceptance endpoints created at or before cutoff_ms. */
  int (*pending_before)(struct reg_store *store, int64_t cutoff_ms,
                        struct reg_endpoint **out, size_t *n);

  /* Events: append assigns ev->seq. */
  int (*event_append)(struct reg_store *store, struct reg_event *ev);
  int (*events_after)(struct reg_store *store, uint64_t after, size_t limit,
                      struct reg_event **out, size_t *n);
  int (*last_seq)(struct reg_store *store, uint64_t *seq);
  /* The lowest seq still stored; last_seq + 1 when none is. */
  int (*first_seq)(struct reg_store *store, uint64_t *seq);
  /* Deletes the oldest events, a prefix in seq order: those before the
   * first event at or after before_ms, at most limit of them. *removed
   * gets the count. */
  int (*events_prune)(struct reg_store *store, int64_t before_ms,
                      size_t limit, size_t *removed);
};

/* The SQLite store (registry/store_sqlite.c). location is a file path. */
extern const struct reg_store_ops reg_store_sqlite;

#endif
