/* The routing snapshot: everything a worker needs to place a new flow,
 * built by the control thread and never changed after it is published.
 *
 * A snapshot is reference counted: each worker holds one on its current
 * snapshot and each flow holds one on the snapshot it was placed with, so
 * a reload or a health change never disturbs flows already running. */
#ifndef NLB_SNAPSHOT_H
#define NLB_SNAPSHOT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nlb/addr.h"
#include "nlb/lb.h"
#include "nlb/target.h"

/* A target group as routed: its usable targets and flow settings. */
struct nlb_group_route {
  char *name;
  struct nlb_pool *pool; /* usable targets; empty: no target */
  bool proxy_protocol_v2;
  unsigned connect_retries;
  uint64_t connect_timeout_ms;
};

/* Counters of one listener (a load balancer port or an endpoint port);
 * reference counted so they survive the snapshots that point at them. */
struct nlb_listener_stats {
  atomic_int refs;
  struct nlb_flow_counters counters;
  struct nlb_histogram flow_duration; /* accept to close, every flow */
};

/* One listening address: a load balancer's own port, or one port of an
 * endpoint inside a consumer's network. */
struct nlb_route {
  uint64_t id; /* stable across snapshots while the listener lives */
  char *lb_name;
  uint16_t port;
  union nlb_sockaddr local; /* the listening address (may be a wildcard) */
  char *endpoint_id;        /* NULL for a load balancer's own listener */
  uint64_t idle_timeout_ms;
  struct nlb_group_route *group;
  struct nlb_cidr *allowed_sources; /* n_allowed_sources 0: anyone */
  size_t n_allowed_sources;
  struct nlb_listener_stats *stats;
};

struct nlb_snapshot {
  atomic_int refs;
  uint64_t generation;
  struct nlb_group_route *groups;
  size_t n_groups;
  struct nlb_route *routes; /* sorted by id */
  size_t n_routes;
  uint64_t min_idle_timeout_ms;
  bool access_json; /* access-log lines as JSON instead of text */
};

/* Allocates an empty snapshot with room for the given counts and one
 * reference. The builder fills groups and routes, then sorts with
 * nlb_snapshot_seal. NULL on ENOMEM. Control thread. */
struct nlb_snapshot *nlb_snapshot_alloc(size_t n_groups, size_t n_routes);

/* Sorts routes by id and computes derived fields. */
void nlb_snapshot_seal(struct nlb_snapshot *snapshot);

/* Reference counting; any thread. The last release frees the snapshot,
 * its pools (dropping their target references) and its strings. */
void nlb_snapshot_acquire(struct nlb_snapshot *snapshot);
void nlb_snapshot_release(struct nlb_snapshot *snapshot);

/* Finds the route with the given id; NULL if the listener is gone. */
const struct nlb_route *
nlb_snapshot_find_route(const struct nlb_snapshot *snapshot, uint64_t id);

struct nlb_listener_stats *nlb_listener_stats_create(void);
void nlb_listener_stats_acquire(struct nlb_listener_stats *stats);
void nlb_listener_stats_release(struct nlb_listener_stats *stats);

#endif
