#include "nlb/dataplane/snapshot.h"

#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/common/tls_server.h"
#include "nlb/dataplane/sni_routes.h"

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

void nlb_snapshot_acquire(struct nlb_snapshot *snapshot)
{
  atomic_fetch_add_explicit(&snapshot->refs, 1, memory_order_relaxed);
}

void nlb_snapshot_release(struct nlb_snapshot *snapshot)
{
  if (!snapshot ||
      atomic_fetch_sub_explicit(&snapshot->refs, 1, memory_order_acq_rel) != 1)
    return;
  for (size_t i = 0; i < snapshot->n_groups; i++)
    nlb_group_route_release(snapshot->groups[i]);
  free(snapshot->groups);
  free(snapshot->routes);
  free(snapshot);
}

struct nlb_route *nlb_snapshot_find_route(const struct nlb_snapshot *snapshot,
                                          uint64_t id)
{
  size_t low = 0, high = snapshot->n_routes;
  while (low < high) {
    size_t mid = (low + high) / 2;
    uint64_t here = snapshot->routes[mid]->id;
    if (here == id)
      return snapshot->routes[mid];
    if (here < id)
      low = mid + 1;
    else
      high = mid;
  }
  return NULL;
}

struct nlb_route *
nlb_route_create(uint64_t id, const struct nlb_flow_kind *kind,
                 const char *lb_name, uint16_t port,
                 const union nlb_sockaddr *local, const char *endpoint_id,
                 uint64_t idle_timeout_ms, size_t group,
                 const struct nlb_cidr *allowed_sources,
                 size_t n_allowed_sources, struct nlb_listener_stats *stats)
{
  struct nlb_route *route = calloc(1, sizeof(*route));

  if (!route)
    return NULL;
  atomic_init(&route->refs, 1);
  route->id = id;
  route->kind = kind;
  route->port = port;
  route->local = *local;
  route->idle_timeout_ms = idle_timeout_ms;
  route->group = group;
  route->lb_name = strdup(lb_name);
  route->endpoint_id = endpoint_id ? strdup(endpoint_id) : NULL;
  if (n_allowed_sources) {
    route->allowed_sources =
        malloc(n_allowed_sources * sizeof(*route->allowed_sources));
    if (route->allowed_sources) {
      memcpy(route->allowed_sources, allowed_sources,
             n_allowed_sources * sizeof(*route->allowed_sources));
      route->n_allowed_sources = n_allowed_sources;
    }
  }
  nlb_listener_stats_acquire(stats);
  route->stats = stats;
  if (!route->lb_name || (endpoint_id && !route->endpoint_id) ||
      (n_allowed_sources && !route->allowed_sources)) {
    nlb_route_release(route);
    return NULL;
  }
  return route;
}

void nlb_route_acquire(struct nlb_route *route)
{
  atomic_fetch_add_explicit(&route->refs, 1, memory_order_relaxed);
}

void nlb_route_release(struct nlb_route *route)
{
  if (!route ||
      atomic_fetch_sub_explicit(&route->refs, 1, memory_order_acq_rel) != 1)
    return;
  free(route->lb_name);
  free(route->endpoint_id);
  free(route->allowed_sources);
  nlb_tls_server_release(route->tls);
  nlb_sni_routes_release(route->sni);
  nlb_listener_stats_release(route->stats);
  free(route);
}

struct nlb_group_route *nlb_group_route_create(const char *name,
                                               struct nlb_pool *pool,
                                               bool proxy_protocol_v2,
                                               unsigned connect_retries,
                                               uint64_t connect_timeout_ms)
{
  struct nlb_group_route *group = calloc(1, sizeof(*group));

  if (!pool)
    pool = nlb_pool_create(NLB_ALGORITHM_ROUND_ROBIN, NULL, NULL, 0);
  if (!group || !pool || !(group->name = strdup(name))) {
    nlb_pool_free(pool);
    free(group);
    return NULL;
  }
  atomic_init(&group->refs, 1);
  group->pool = pool;
  group->proxy_protocol_v2 = proxy_protocol_v2;
  group->connect_retries = connect_retries;
  group->connect_timeout_ms = connect_timeout_ms;
  return group;
}

void nlb_group_route_acquire(struct nlb_group_route *group)
{
  atomic_fetch_add_explicit(&group->refs, 1, memory_order_relaxed);
}

void nlb_group_route_release(struct nlb_group_route *group)
{
  if (!group ||
      atomic_fetch_sub_explicit(&group->refs, 1, memory_order_acq_rel) != 1)
    return;
  nlb_pool_free(group->pool);
  SSL_CTX_free(group->tls_ctx);
  free(group->tls_server_name);
  free(group->name);
  free(group);
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
  if (stats &&
      atomic_fetch_sub_explicit(&stats->refs, 1, memory_order_acq_rel) == 1)
    free(stats);
}
