#include "nlb/snapshot.h"

#include <stdlib.h>

struct nlb_snapshot *nlb_snapshot_alloc(size_t n_groups, size_t n_routes)
{
  struct nlb_snapshot *snapshot = calloc(1, sizeof(*snapshot));
  if (!snapshot)
    return NULL;
  atomic_init(&snapshot->refs, 1);
  snapshot->groups = calloc(n_groups ? n_groups : 1, sizeof(*snapshot->groups));
  snapshot->routes = calloc(n_routes ? n_routes : 1, sizeof(*snapshot->routes));
  if (!snapshot->groups || !snapshot->routes) {
    free(snapshot->groups);
    free(snapshot->routes);
    free(snapshot);
    return NULL;
  }
  return snapshot;
}

static int compare_routes(const void *a, const void *b)
{
  const struct nlb_route *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

void nlb_snapshot_seal(struct nlb_snapshot *snapshot)
{
  qsort(snapshot->routes, snapshot->n_routes, sizeof(*snapshot->routes),
        compare_routes);
  snapshot->min_idle_timeout_ms = UINT64_MAX;
  for (size_t i = 0; i < snapshot->n_routes; i++)
    if (snapshot->routes[i].idle_timeout_ms < snapshot->min_idle_timeout_ms)
      snapshot->min_idle_timeout_ms = snapshot->routes[i].idle_timeout_ms;
}

void nlb_snapshot_acquire(struct nlb_snapshot *snapshot)
{
  atomic_fetch_add_explicit(&snapshot->refs, 1, memory_order_relaxed);
}

void nlb_snapshot_release(struct nlb_snapshot *snapshot)
{
  if (!snapshot ||
      atomic_fetch_sub_explicit(&snapshot->refs, 1, memory_order_acq_rel) != 1)
    return;
  for (size_t i = 0; i < snapshot->n_groups; i++) {
    nlb_pool_free(snapshot->groups[i].pool);
    free(snapshot->groups[i].name);
  }
  for (size_t i = 0; i < snapshot->n_routes; i++) {
    struct nlb_route *route = &snapshot->routes[i];
    free(route->lb_name);
    free(route->endpoint_id);
    free(route->allowed_sources);
    if (route->stats)
      nlb_listener_stats_release(route->stats);
  }
  free(snapshot->groups);
  free(snapshot->routes);
  free(snapshot);
}

const struct nlb_route *
nlb_snapshot_find_route(const struct nlb_snapshot *snapshot, uint64_t id)
{
  size_t low = 0, high = snapshot->n_routes;
  while (low < high) {
    size_t mid = (low + high) / 2;
    uint64_t here = snapshot->routes[mid].id;
    if (here == id)
      return &snapshot->routes[mid];
    if (here < id)
      low = mid + 1;
    else
      high = mid;
  }
  return NULL;
}

struct nlb_listener_stats *nlb_listener_stats_create(void)
{
  struct nlb_listener_stats *stats = calloc(1, sizeof(*stats));
  if (stats)
    atomic_init(&stats->refs, 1);
  return stats;
}

void nlb_listener_stats_acquire(struct nlb_listener_stats *stats)
{
  atomic_fetch_add_explicit(&stats->refs, 1, memory_order_relaxed);
}

void nlb_listener_stats_release(struct nlb_listener_stats *stats)
{
  if (atomic_fetch_sub_explicit(&stats->refs, 1, memory_order_acq_rel) == 1)
    free(stats);
}
