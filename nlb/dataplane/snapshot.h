/* The routing snapshot: everything a worker needs to place a new flow,
 * built by the control thread and never changed after it is published.
 *
 * A snapshot is an array of routes (one per listener) and an array of
 * group routes (one per target group), each piece immutable and reference
 * counted on its own. A change rebuilds only the pieces it touches and
 * shares the rest with the previous snapshot: adding an endpoint makes
 * its routes and copies pointers, a health change rebuilds one group's
 * pool (a Maglev table) and nothing else.
 *
 * Each worker holds one reference on its current snapshot. A snapshot
 * holds one reference on each group route, but its routes are borrowed
 * from the router, which releases a route it no longer publishes only
 * once every worker has moved to a snapshot without it (the generation
 * each worker acknowledges): copying the pointers is then all a snapshot
 * costs per listener, with no atomic operation. A flow holds one
 * reference on its route and one on its group route, not on the
 * snapshot, so a long-lived flow keeps alive only what it uses, and a
 * reload, a health change or a deregistration never disturbs flows
 * already running. */
#ifndef NLB_SNAPSHOT_H
#define NLB_SNAPSHOT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nlb/common/addr.h"
#include "nlb/lb.h"
#include "nlb/dataplane/target.h"

/* A target group as routed: its usable targets and flow settings. */
struct nlb_group_route {
  atomic_int refs;
  char *name;
  struct nlb_pool *pool; /* usable targets; empty: no target */
  bool proxy_protocol_v2;
  /* Connections and datagrams to targets leave from the client's own
   * address (nlb_bind_client_address); set before the first publish. */
  bool preserve_client_ip;
  unsigned connect_retries;
  uint64_t connect_timeout_ms;
  /* Flows speak TLS to the targets with this client context (one
   * reference; tls_client.h), sending tls_server_name; NULL: plain. Set
   * before the first publish. */
  struct ssl_ctx_st *tls_ctx;
  char *tls_server_name;
};

/* TLS handshakes of a listener, by result (nlb_tls_handshakes_total). */
enum nlb_tls_result {
  NLB_TLS_OK,
  NLB_TLS_RESUMED,
  NLB_TLS_FAILED,
  NLB_TLS_TIMEOUT,
  NLB_TLS_REFUSED,       /* over max_pending_handshakes */
  NLB_TLS_TARGET_FAILED, /* the re-encrypting handshake to a target */
  NLB_TLS_RESULTS,
};

/* Counters of one listener (a load balancer port or an endpoint port);
 * reference counted so they survive the routes that point at them. */
struct nlb_listener_stats {
  atomic_int refs;
  struct nlb_flow_counters counters;
  struct nlb_histogram flow_duration; /* accept to close, every flow */
  /* A TLS listener's handshakes (tls_flow.c) and their time, accept to
   * done, in nlb_tls_handshake_bounds_ms. */
  atomic_uint_fast64_t tls_handshakes[NLB_TLS_RESULTS];
  atomic_uint_fast64_t tls_pending; /* flows in their client handshake */
  struct nlb_histogram tls_handshake_time;
};

/* One listening address: a load balancer's own port, or one port of an
 * endpoint inside a consumer's network. */
struct nlb_flow_kind;
struct nlb_tls_server;
struct ssl_ctx_st;
struct nlb_sni_routes;

struct nlb_route {
  atomic_int refs;
  uint64_t id; /* stable across snapshots while the listener lives */
  const struct nlb_flow_kind *kind; /* how its flows run (flow_kind.h) */
  char *lb_name;
  uint16_t port;
  union nlb_sockaddr local; /* the listening address (may be a wildcard) */
  char *endpoint_id;        /* NULL for a load balancer's own listener */
  uint64_t idle_timeout_ms;
  /* Its TCP flows go into the sockmap once established (sockmap.h);
   * set by the router before the route is published. */
  bool sockmap;
  size_t group; /* index into the groups of any snapshot holding it */
  struct nlb_cidr *allowed_sources; /* n_allowed_sources 0: anyone */
  size_t n_allowed_sources;
  struct nlb_listener_stats *stats; /* one reference */
  /* A TLS listener's certificates: one reference, set by the builder
   * before the first publish; NULL for other protocols. */
  struct nlb_tls_server *tls;
  /* A tls_passthrough listener's SNI routes (one reference, set before
   * the first publish); NULL for any other listener. */
  struct nlb_sni_routes *sni;
  /* The router's, while the route waits for workers to let go of it. */
  struct nlb_route *retired_next;
  uint64_t retired_generation;
};

struct nlb_snapshot {
  atomic_int refs;
  uint64_t generation;
  struct nlb_group_route **groups; /* one reference each */
  size_t n_groups;
  struct nlb_route **routes; /* sorted by id; borrowed (above) */
  size_t n_routes;
  bool access_json; /* access-log lines as JSON instead of text */
};

/* Allocates an empty snapshot with room for the given counts and one
 * reference. The builder appends groups (handing over one reference on
 * each) and routes (borrowed), in id order. NULL on ENOMEM. Control
 * thread. */
struct nlb_snapshot *nlb_snapshot_alloc(size_t n_groups, size_t n_routes);

/* Reference counting; any thread. The last release drops the snapshot's
 * references on its groups and frees the arrays. */
void nlb_snapshot_acquire(struct nlb_snapshot *snapshot);
void nlb_snapshot_release(struct nlb_snapshot *snapshot);

/* Finds the route with the given id (binary search); NULL if the listener
 * is gone. */
struct nlb_route *nlb_snapshot_find_route(const struct nlb_snapshot *snapshot,
                                          uint64_t id);

/* A route with one reference, its strings and sources copied, holding a
 * reference on stats; its flows run as kind (static, never freed). NULL on
 * ENOMEM. Control thread. */
struct nlb_route *
nlb_route_create(uint64_t id, const struct nlb_flow_kind *kind,
                 const char *lb_name, uint16_t port,
                 const union nlb_sockaddr *local, const char *endpoint_id,
                 uint64_t idle_timeout_ms, size_t group,
                 const struct nlb_cidr *allowed_sources,
                 size_t n_allowed_sources, struct nlb_listener_stats *stats);
/* Any thread; the last release frees it. */
void nlb_route_acquire(struct nlb_route *route);
void nlb_route_release(struct nlb_route *route);

/* A group route with one reference, taking over pool (NULL: an empty
 * pool is made). NULL on ENOMEM (pool freed). Control thread. */
struct nlb_group_route *nlb_group_route_create(const char *name,
                                               struct nlb_pool *pool,
                                               bool proxy_protocol_v2,
                                               unsigned connect_retries,
                                               uint64_t connect_timeout_ms);
/* Any thread; the last release frees it with its pool. */
void nlb_group_route_acquire(struct nlb_group_route *group);
void nlb_group_route_release(struct nlb_group_route *group);

struct nlb_listener_stats *nlb_listener_stats_create(void);
void nlb_listener_stats_acquire(struct nlb_listener_stats *stats);
void nlb_listener_stats_release(struct nlb_listener_stats *stats);

#endif
