/* The router's records and their indexes, and the snapshots made from them:
 * pools, routes, publishing. */
#include "nlb/control/router-int.h"

#include <errno.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nlb/dataplane/flow_kind.h"
#include "nlb/dataplane/listener.h"
#include "nlb/dataplane/sni_routes.h"
#include "nlb/log.h"

uint64_t router_hash_address(const union nlb_sockaddr *a)
{
  if (a->sa.sa_family == AF_INET6)
    return nlb_hash_bytes(&a->in6.sin6_addr, 16) ^ a->in6.sin6_port;
  return nlb_hash_bytes(&a->in.sin_addr, 4) ^ ((uint64_t)a->in.sin_port << 32);
}

uint64_t router_hash_lb_port(const char *lb_name, uint16_t port)
{
  return nlb_hash_str(lb_name) ^ ((uint64_t)port * 0x9e3779b97f4a7c15ULL);
}

static bool target_is(const struct nlb_hnode *node, const void *address)
{
  return nlb_addr_equal(
      &NLB_CONTAINER_OF(node, struct nlb_target, group_node)->address, address);
}

static bool group_is(const struct nlb_hnode *node, const void *name)
{
  return strcmp(NLB_CONTAINER_OF(node, struct nlb_group, node)->name, name) ==
         0;
}

static bool endpoint_is(const struct nlb_hnode *node, const void *id)
{
  return strcmp(NLB_CONTAINER_OF(node, struct endpoint_entry, node)->id, id) ==
         0;
}

struct nlb_target *router_find_target(struct nlb_group *group,
                                      const union nlb_sockaddr *address)
{
  struct nlb_hnode *node = nlb_hmap_find(
      &group->by_address, router_hash_address(address), target_is, address);

  return node ? NLB_CONTAINER_OF(node, struct nlb_target, group_node) : NULL;
}

struct endpoint_entry *router_find_endpoint(const struct nlb_router *router,
                                            const char *id)
{
  struct nlb_hnode *node =
      nlb_hmap_find(&router->endpoints, nlb_hash_str(id), endpoint_is, id);

  return node ? NLB_CONTAINER_OF(node, struct endpoint_entry, node) : NULL;
}

/* ---- lifetime ------------------------------------------------------------ */

/* Hands a route the router no longer publishes to the retired queue: the
 * next snapshot lacks it, and once every worker has switched to that one
 * (or a later one) nothing reads it but flows, which hold their own
 * references. */
static void retire_route(struct nlb_router *router, struct nlb_route *route)
{
  if (!route)
    return;
  route->retired_generation = router->generation + 1;
  route->retired_next = NULL;
  *router->retired_tail = route;
  router->retired_tail = &route->retired_next;
}

void router_reap_routes(struct nlb_router *router)
{
  uint64_t seen = UINT64_MAX;

  for (size_t w = 0; w < router->n_workers; w++) {
    uint64_t g = nlb_worker_generation(router->workers[w]);
    if (g < seen)
      seen = g;
  }
  while (router->retired_head &&
         router->retired_head->retired_generation <= seen) {
    struct nlb_route *route = router->retired_head;
    router->retired_head = route->retired_next;
    if (!router->retired_head)
      router->retired_tail = &router->retired_head;
    nlb_route_release(route);
  }
}

struct listener_record *router_new_listener(void)
{
  struct listener_record *l = calloc(1, sizeof(*l));

  if (l) {
    nlb_list_init(&l->dirty_link);
    nlb_list_init(&l->endpoint_link);
  }
  return l;
}

void router_free_listener(struct nlb_router *router, struct listener_record *l)
{
  nlb_list_remove(&l->dirty_link);
  free(l->lb_name);
  free(l->endpoint_id);
  free(l->allowed_sources);
  nlb_tls_server_release(l->tls);
  retire_route(router, l->route);
  nlb_listener_stats_release(l->stats);
  nlb_sni_routes_release(l->sni);
  free(l);
}

void router_free_group(struct nlb_group *group)
{
  for (size_t i = 0; i < group->n_targets; i++) {
    if (atomic_load(&group->targets[i]->state) == NLB_TARGET_DRAINING)
      nlb_target_set_draining(false);
    nlb_target_release(group->targets[i]);
  }
  nlb_hmap_free(&group->by_address);
  nlb_group_route_release(group->route);
  SSL_CTX_free(group->tls_ctx);
  nlb_tls_client_settings_free(&group->settings.tls);
  free(group->targets);
  free(group->name);
  free(group->settings.name);
  free(group->settings.health.path);
  free(group->settings.health.host);
  free(group);
}

/* The published route no longer says what the record says: the next
 * publish makes another. */
void router_listener_changed(struct nlb_router *router,
                             struct listener_record *l)
{
  retire_route(router, l->route);
  l->route = NULL;
  nlb_list_remove(&l->dirty_link);
  nlb_list_append(&router->dirty, &l->dirty_link);
}

void router_group_changed(struct nlb_group *group)
{
  nlb_group_route_release(group->route);
  group->route = NULL;
}

/* ---- accessors ----------------------------------------------------------- */

struct nlb_group *nlb_router_find_group(struct nlb_router *router,
                                        const char *name)
{
  struct nlb_hnode *node =
      nlb_hmap_find(&router->group_map, nlb_hash_str(name), group_is, name);

  return node ? NLB_CONTAINER_OF(node, struct nlb_group, node) : NULL;
}

/* ---- the listener list (id order) -----------------------------------------
 */

int router_reserve_listeners(struct nlb_router *router, size_t more)
{
  size_t need = router->n_listeners + more;
  struct listener_record **grown;
  struct nlb_route **routes;
  size_t cap;

  if (need <= router->cap_listeners)
    return 0;
  cap = router->cap_listeners ? router->cap_listeners : 16;
  while (cap < need)
    cap *= 2;
  grown = realloc(router->listeners, cap * sizeof(*grown));
  if (!grown)
    return -ENOMEM;
  router->listeners = grown;
  routes = realloc(router->routes, cap * sizeof(*routes));
  if (!routes)
    return -ENOMEM;
  router->routes = routes;
  router->cap_listeners = cap;
  return 0;
}

/* Appends a record given a fresh id: the list stays in id order. Room was
 * reserved. */
void router_append_listener(struct nlb_router *router,
                            struct listener_record *l)
{
  l->id = router->next_listener_id++;
  router->routes[router->n_listeners] = NULL;
  router->listeners[router->n_listeners++] = l;
  nlb_list_append(&router->dirty, &l->dirty_link);
}

static size_t listener_index(const struct nlb_router *router, uint64_t id)
{
  size_t low = 0, high = router->n_listeners;

  while (low < high) {
    size_t mid = (low + high) / 2;
    if (router->listeners[mid]->id < id)
      low = mid + 1;
    else
      high = mid;
  }
  return low;
}

/* Takes the record out of the list and of its map or entry, tells the
 * workers, and frees it. */
void router_remove_listener(struct nlb_router *router,
                            struct listener_record *l, bool reset_flows)
{
  size_t i = listener_index(router, l->id);

  for (size_t w = 0; w < router->n_workers; w++)
    nlb_worker_remove_listener(router->workers[w], l->id, reset_flows);
  memmove(&router->listeners[i], &router->listeners[i + 1],
          (router->n_listeners - i - 1) * sizeof(*router->listeners));
  memmove(&router->routes[i], &router->routes[i + 1],
          (router->n_listeners - i - 1) * sizeof(*router->routes));
  router->n_listeners--;
  if (l->endpoint_id)
    nlb_list_remove(&l->endpoint_link);
  else
    nlb_hmap_remove(&router->lb_listeners, &l->node);
  router_free_listener(router, l);
}

/* Hands a new listening socket to every worker; fd is closed on failure. */
int router_share_socket(struct nlb_router *router, uint64_t id, int fd)
{
  struct nlb_listen_socket *socket =
      nlb_listen_socket_create(fd, (int)router->n_workers);

  if (!socket)
    return -ENOMEM;
  for (size_t w = 0; w < router->n_workers; w++)
    nlb_worker_add_listener(router->workers[w], id, socket);
  return 0;
}

size_t router_sockets_per_listener(const struct nlb_router *router,
                                   const struct nlb_flow_kind *kind)
{
  return kind->socket_per_worker ? router->n_workers : 1;
}

int router_hand_sockets(struct nlb_router *router,
                        const struct listener_record *l, const int *fds)
{
  int rc = 0;

  if (!l->kind->socket_per_worker)
    return router_share_socket(router, l->id, fds[0]);
  /* Each worker reads its own socket of the listener, and alone. */
  for (size_t w = 0; w < router->n_workers; w++) {
    struct nlb_listen_socket *socket = nlb_listen_socket_create(fds[w], 1);
    if (!socket) {
      rc = -ENOMEM;
      continue;
    }
    nlb_worker_add_listener(router->workers[w], l->id, socket);
  }
  return rc;
}

/* ---- targets ------------------------------------------------------------- */

uint32_t nlb_slow_start_weight(uint32_t weight, uint64_t slow_start_ms,
                               uint64_t healthy_since_ms, uint64_t now_ms)
{
  uint64_t scaled = (uint64_t)weight * NLB_WEIGHT_SCALE;
  if (slow_start_ms && healthy_since_ms && now_ms >= healthy_since_ms &&
      now_ms - healthy_since_ms < slow_start_ms) {
    scaled = scaled * (now_ms - healthy_since_ms) / slow_start_ms;
    if (scaled == 0 && weight > 0)
      scaled = 1;
  }
  return (uint32_t)scaled;
}

static uint32_t effective_weight(const struct nlb_group *group,
                                 const struct nlb_target *target,
                                 uint64_t now_ms)
{
  return nlb_slow_start_weight(target->weight, group->settings.slow_start_ms,
                               target->healthy_since_ms, now_ms);
}

/* The usable targets of a group: the healthy ones; when none is healthy,
 * every registered one (fail-open), unless the group says otherwise. */
static struct nlb_pool *build_pool(const struct nlb_group *group,
                                   uint64_t now_ms)
{
  size_t n = group->n_targets, n_healthy = 0;
  uint32_t *weights = calloc(n ? n : 1, sizeof(uint32_t));
  struct nlb_pool *pool;

  if (!weights)
    return NULL;
  for (size_t i = 0; i < n; i++)
    if (atomic_load(&group->targets[i]->state) == NLB_TARGET_HEALTHY) {
      weights[i] = effective_weight(group, group->targets[i], now_ms);
      n_healthy++;
    }
  if (n_healthy == 0 && group->settings.fail_open)
    for (size_t i = 0; i < n; i++) {
      int state = atomic_load(&group->targets[i]->state);
      if (state == NLB_TARGET_INITIAL || state == NLB_TARGET_UNHEALTHY)
        weights[i] = group->targets[i]->weight * NLB_WEIGHT_SCALE;
    }
  pool = nlb_pool_create(group->settings.algorithm, group->targets, weights, n);
  free(weights);
  return pool;
}

static int build_group_route(struct nlb_group *group, uint64_t now_ms)
{
  struct nlb_pool *pool = build_pool(group, now_ms);

  if (!pool)
    return -ENOMEM;
  group->pool_builds++;
  group->route = nlb_group_route_create(
      group->name, pool, group->settings.proxy_protocol_v2,
      group->settings.connect_retries, group->settings.connect_timeout_ms);
  if (!group->route)
    return -ENOMEM;
  group->route->preserve_client_ip = group->settings.preserve_client_ip;
  if (group->tls_ctx) {
    const char *name = group->settings.tls.server_name;
    if (name && !(group->route->tls_server_name = strdup(name)))
      return -ENOMEM;
    SSL_CTX_up_ref(group->tls_ctx);
    group->route->tls_ctx = group->tls_ctx;
  }
  return 0;
}

static int build_route(struct listener_record *l)
{
  l->route =
      nlb_route_create(l->id, l->kind, l->lb_name, l->port, &l->local,
                       l->endpoint_id, l->idle_timeout_ms, l->group->index,
                       l->allowed_sources, l->n_allowed_sources, l->stats);
  if (!l->route)
    return -ENOMEM;
  if ((l->route->tls = l->tls))
    nlb_tls_server_acquire(l->tls);
  nlb_sni_routes_acquire(l->sni);
  l->route->sni = l->sni;
  l->route->sockmap = l->sockmap;
  return 0;
}

/* Makes the routes of the records that changed since the last publish. */
static int build_routes(struct nlb_router *router)
{
  struct nlb_list *pos, *tmp;

  NLB_LIST_FOREACH_SAFE(pos, tmp, &router->dirty)
  {
    struct listener_record *l =
        NLB_CONTAINER_OF(pos, struct listener_record, dirty_link);
    if (!l->group)
      continue; /* no group yet: not routed */
    if (build_route(l) < 0)
      return -ENOMEM;
    router->routes[listener_index(router, l->id)] = l->route;
    nlb_list_remove(&l->dirty_link);
  }
  return 0;
}

int nlb_router_publish(struct nlb_router *router, uint64_t now_ms)
{
  struct nlb_snapshot *snapshot =
      nlb_snapshot_alloc(router->n_groups, router->n_listeners);

  if (!snapshot)
    goto fail;
  for (size_t i = 0; i < router->n_groups; i++) {
    struct nlb_group *group = router->groups[i];
    if (!group->route && build_group_route(group, now_ms) < 0)
      goto fail_release;
    nlb_group_route_acquire(group->route);
    snapshot->groups[snapshot->n_groups++] = group->route;
  }
  if (build_routes(router) < 0)
    goto fail_release;
  /* Pointers only: no record is touched, no reference taken. */
  for (size_t i = 0; i < router->n_listeners; i++)
    if (router->routes[i])
      snapshot->routes[snapshot->n_routes++] = router->routes[i];
  snapshot->generation = ++router->generation;
  snapshot->access_json = router->access_json;
  router->flush_due = false;
  for (size_t w = 0; w < router->n_workers; w++)
    nlb_worker_set_snapshot(router->workers[w], snapshot);
  nlb_snapshot_release(snapshot);
  return 0;

fail_release:
  nlb_snapshot_release(snapshot);
fail:
  NLB_LOG_EVENT(NLB_LOG_ERROR, "out_of_memory",
                "routing snapshot: out of memory");
  return -ENOMEM;
}

void nlb_router_flush(struct nlb_router *router, uint64_t now_ms)
{
  if (router->flush_due)
    nlb_router_publish(router, now_ms);
}

/* ---- periodic work ------------------------------------------------------- */
