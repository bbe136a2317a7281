#include "nlb/control/router.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nlb/dataplane/flow_kind.h"
#include "nlb/dataplane/listener.h"
#include "nlb/log.h"

/* Flows of a drained target are closed at its deadline; it is forgotten
 * this long after, once workers have had time to act. */
#define DRAIN_GRACE_MS 2000
#define SLOW_START_REPUBLISH_MS 1000

struct endpoint_entry;

struct listener_record {
  uint64_t id;
  char *lb_name;
  uint16_t port;
  bool has_bind;
  union nlb_sockaddr local;
  struct nlb_group *group; /* NULL until an apply says which */
  uint64_t idle_timeout_ms;
  char *endpoint_id; /* NULL for a load balancer's own listener */
  struct nlb_cidr *allowed_sources;
  size_t n_allowed_sources;
  struct nlb_listener_stats *stats;
  struct nlb_route *route;    /* as published; NULL: make at the next publish */
  struct nlb_list dirty_link; /* on the router's dirty list while NULL */
  /* A load balancer's listener: in the router's map by (lb, port). An
   * endpoint's: on its entry's list. */
  struct nlb_hnode node;
  struct nlb_list endpoint_link;
  bool seen; /* still in the config being applied */
};

/* The listeners of one endpoint, found by its ID. */
struct endpoint_entry {
  struct nlb_hnode node;
  char *id;
  struct nlb_list listeners;
};

struct nlb_router {
  struct nlb_worker *const *workers;
  size_t n_workers;
  struct nlb_group **groups; /* config order; group->index is the slot */
  size_t n_groups;
  struct nlb_hmap group_map; /* by name */
  /* Every listener, in id order (ids only grow), and its route at the
   * same index: a snapshot copies routes[] as it is, without sorting and
   * without touching a record. */
  struct listener_record **listeners;
  struct nlb_route **routes;
  size_t n_listeners, cap_listeners;
  struct nlb_list dirty; /* records whose route must be made */
  /* Routes no longer published, oldest first, each waiting until every
   * worker has moved past the snapshot generation that dropped it. */
  struct nlb_route *retired_head;
  struct nlb_route **retired_tail;
  struct nlb_hmap lb_listeners; /* load balancers' own, by (lb, port) */
  struct nlb_hmap endpoints;    /* endpoint entries, by ID */
  /* Groups removed by a reload whose targets still drain; freed when the
   * last one is gone. Not routed to. */
  struct nlb_group **retired;
  size_t n_retired;
  uint64_t next_listener_id;
  uint64_t generation;         /* snapshots published */
  uint64_t members_generation; /* nlb_router_generation */
  bool access_json;
  bool flush_due; /* a target state changed since the last publish */
  uint64_t last_slow_start_publish_ms;
  /* The last snapshot gave some target less than its full weight: one
   * more publish is due when slow start ends. */
  bool slow_start_published;
};

/* ---- hashing ------------------------------------------------------------- */

static uint64_t hash_address(const union nlb_sockaddr *a)
{
  if (a->sa.sa_family == AF_INET6)
    return nlb_hash_bytes(&a->in6.sin6_addr, 16) ^ a->in6.sin6_port;
  return nlb_hash_bytes(&a->in.sin_addr, 4) ^ ((uint64_t)a->in.sin_port << 32);
}

static uint64_t hash_lb_port(const char *lb_name, uint16_t port)
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

struct lb_port {
  const char *lb_name;
  uint16_t port;
};

static bool lb_listener_is(const struct nlb_hnode *node, const void *key)
{
  const struct listener_record *l =
      NLB_CONTAINER_OF(node, struct listener_record, node);
  const struct lb_port *k = key;

  return l->port == k->port && strcmp(l->lb_name, k->lb_name) == 0;
}

static bool endpoint_is(const struct nlb_hnode *node, const void *id)
{
  return strcmp(NLB_CONTAINER_OF(node, struct endpoint_entry, node)->id, id) ==
         0;
}

static struct nlb_target *find_target(struct nlb_group *group,
                                      const union nlb_sockaddr *address)
{
  struct nlb_hnode *node = nlb_hmap_find(
      &group->by_address, hash_address(address), target_is, address);

  return node ? NLB_CONTAINER_OF(node, struct nlb_target, group_node) : NULL;
}

static struct listener_record *
find_lb_listener(struct nlb_router *router, const char *lb_name, uint16_t port)
{
  struct lb_port key = {lb_name, port};
  struct nlb_hnode *node = nlb_hmap_find(
      &router->lb_listeners, hash_lb_port(lb_name, port), lb_listener_is, &key);

  return node ? NLB_CONTAINER_OF(node, struct listener_record, node) : NULL;
}

static struct endpoint_entry *find_endpoint(const struct nlb_router *router,
                                            const char *id)
{
  struct nlb_hnode *node =
      nlb_hmap_find(&router->endpoints, nlb_hash_str(id), endpoint_is, id);

  return node ? NLB_CONTAINER_OF(node, struct endpoint_entry, node) : NULL;
}

/* ---- lifetime ------------------------------------------------------------ */

struct nlb_router *nlb_router_create(struct nlb_worker *const *workers,
                                     size_t n_workers)
{
  struct nlb_router *router = calloc(1, sizeof(*router));
  if (!router)
    return NULL;
  router->workers = workers;
  router->n_workers = n_workers;
  router->next_listener_id = 1;
  nlb_list_init(&router->dirty);
  router->retired_tail = &router->retired_head;
  nlb_hmap_init(&router->group_map);
  nlb_hmap_init(&router->lb_listeners);
  nlb_hmap_init(&router->endpoints);
  return router;
}

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

static void reap_routes(struct nlb_router *router)
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

static struct listener_record *new_listener(void)
{
  struct listener_record *l = calloc(1, sizeof(*l));

  if (l) {
    nlb_list_init(&l->dirty_link);
    nlb_list_init(&l->endpoint_link);
  }
  return l;
}

static void free_listener(struct nlb_router *router, struct listener_record *l)
{
  nlb_list_remove(&l->dirty_link);
  free(l->lb_name);
  free(l->endpoint_id);
  free(l->allowed_sources);
  retire_route(router, l->route);
  nlb_listener_stats_release(l->stats);
  free(l);
}

static void free_group(struct nlb_group *group)
{
  for (size_t i = 0; i < group->n_targets; i++) {
    if (atomic_load(&group->targets[i]->state) == NLB_TARGET_DRAINING)
      nlb_target_set_draining(false);
    nlb_target_release(group->targets[i]);
  }
  nlb_hmap_free(&group->by_address);
  nlb_group_route_release(group->route);
  free(group->targets);
  free(group->name);
  free(group->settings.name);
  free(group->settings.health.path);
  free(group->settings.health.host);
  free(group);
}

/* The published route no longer says what the record says: the next
 * publish makes another. */
static void listener_changed(struct nlb_router *router,
                             struct listener_record *l)
{
  retire_route(router, l->route);
  l->route = NULL;
  nlb_list_remove(&l->dirty_link);
  nlb_list_append(&router->dirty, &l->dirty_link);
}

static void group_changed(struct nlb_group *group)
{
  nlb_group_route_release(group->route);
  group->route = NULL;
}

/* ---- accessors ----------------------------------------------------------- */

size_t nlb_router_listener_count(const struct nlb_router *router)
{
  return router->n_listeners;
}

void nlb_router_listener(const struct nlb_router *router, size_t index,
                         struct nlb_router_listener *out)
{
  const struct listener_record *l = router->listeners[index];
  out->lb_name = l->lb_name;
  out->port = l->port;
  out->endpoint_id = l->endpoint_id;
  out->stats = l->stats;
}

uint64_t nlb_router_generation(const struct nlb_router *router)
{
  return router->members_generation;
}

size_t nlb_router_group_count(const struct nlb_router *router)
{
  return router->n_groups;
}

struct nlb_group *nlb_router_group(struct nlb_router *router, size_t index)
{
  return index < router->n_groups ? router->groups[index] : NULL;
}

struct nlb_group *nlb_router_find_group(struct nlb_router *router,
                                        const char *name)
{
  struct nlb_hnode *node =
      nlb_hmap_find(&router->group_map, nlb_hash_str(name), group_is, name);

  return node ? NLB_CONTAINER_OF(node, struct nlb_group, node) : NULL;
}

/* ---- the listener list (id order) -----------------------------------------
 */

static int reserve_listeners(struct nlb_router *router, size_t more)
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
static void append_listener(struct nlb_router *router,
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
static void remove_listener(struct nlb_router *router,
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
  free_listener(router, l);
}

/* Hands a new listening socket to every worker; fd is closed on failure. */
static int share_socket(struct nlb_router *router, uint64_t id, int fd)
{
  struct nlb_listen_socket *socket =
      nlb_listen_socket_create(fd, (int)router->n_workers);

  if (!socket)
    return -ENOMEM;
  for (size_t w = 0; w < router->n_workers; w++)
    nlb_worker_add_listener(router->workers[w], id, socket);
  return 0;
}

/* ---- targets ------------------------------------------------------------- */

static int append_target(struct nlb_group *group, struct nlb_target *target)
{
  if (group->n_targets == group->capacity) {
    size_t capacity = group->capacity ? group->capacity * 2 : 8;
    struct nlb_target **grown =
        realloc(group->targets, capacity * sizeof(*grown));
    if (!grown)
      return -ENOMEM;
    group->targets = grown;
    group->capacity = capacity;
  }
  if (nlb_hmap_insert(&group->by_address, &target->group_node,
                      hash_address(&target->address)) < 0)
    return -ENOMEM;
  group->targets[group->n_targets++] = target;
  return 0;
}

static struct nlb_target *add_target(struct nlb_router *router,
                                     struct nlb_group *group,
                                     const union nlb_sockaddr *address,
                                     uint32_t weight, const char *by)
{
  struct nlb_target *target = nlb_target_create(address, weight);

  if (!target || append_target(group, target) < 0) {
    if (target)
      nlb_target_release(target);
    return NULL;
  }
  snprintf(target->reason, sizeof(target->reason), "registered");
  NLB_LOG_EVENT(NLB_LOG_INFO, "target_registered",
                "target {target_group}/{target} registered (initial)",
                NLB_LOG_STR("target_group", group->name),
                NLB_LOG_STR("target", target->name), NLB_LOG_STR("by", by));
  router->members_generation++;
  if (group->settings.fail_open)
    group_changed(group); /* an initial target may take flows */
  return target;
}

static void start_draining(struct nlb_router *router, struct nlb_group *group,
                           struct nlb_target *target, uint64_t now_ms,
                           const char *reason)
{
  int old = atomic_load(&target->state);
  if (old == NLB_TARGET_DRAINING)
    return;
  atomic_store(&target->drain_deadline_ms,
               now_ms + group->settings.deregistration_delay_ms);
  atomic_store(&target->state, NLB_TARGET_DRAINING);
  snprintf(target->reason, sizeof(target->reason), "%s", reason);
  group->n_draining++;
  nlb_target_set_draining(true);
  router->members_generation++;
  group_changed(group);
  NLB_LOG_EVENT(
      NLB_LOG_INFO, "target_state",
      "target {target_group}/{target} state {from} -> {to} ({reason}; delay "
      "{delay_ms}ms)",
      NLB_LOG_STR("target_group", group->name),
      NLB_LOG_STR("target", target->name),
      NLB_LOG_STR("from", nlb_target_state_name((enum nlb_target_state)old)),
      NLB_LOG_STR("to", "draining"), NLB_LOG_STR("reason", reason),
      NLB_LOG_UINT("delay_ms", group->settings.deregistration_delay_ms));
}

/* A draining target registered again starts over as initial. */
static void undrain(struct nlb_router *router, struct nlb_group *group,
                    struct nlb_target *target)
{
  atomic_store(&target->drain_deadline_ms, 0);
  atomic_store(&target->state, NLB_TARGET_INITIAL);
  target->consecutive_ok = target->consecutive_fail = 0;
  snprintf(target->reason, sizeof(target->reason), "re-registered");
  group->n_draining--;
  nlb_target_set_draining(false);
  router->members_generation++;
  group_changed(group);
  NLB_LOG_EVENT(NLB_LOG_INFO, "target_state",
                "target {target_group}/{target} state {from} -> {to} "
                "({reason})",
                NLB_LOG_STR("target_group", group->name),
                NLB_LOG_STR("target", target->name),
                NLB_LOG_STR("from", "draining"), NLB_LOG_STR("to", "initial"),
                NLB_LOG_STR("reason", "re-registered"));
}

static void set_weight(struct nlb_group *group, struct nlb_target *target,
                       uint32_t weight)
{
  if (target->weight == weight)
    return;
  target->weight = weight;
  group_changed(group);
}

/* ---- apply: groups ------------------------------------------------------- */

/* Settings that a group's pool or its group route depend on. */
static bool routing_differs(const struct nlb_config_target_group *a,
                            const struct nlb_config_target_group *b)
{
  return a->algorithm != b->algorithm || a->fail_open != b->fail_open ||
         a->slow_start_ms != b->slow_start_ms ||
         a->proxy_protocol_v2 != b->proxy_protocol_v2 ||
         a->connect_retries != b->connect_retries ||
         a->connect_timeout_ms != b->connect_timeout_ms;
}

static void copy_settings(struct nlb_group *group,
                          const struct nlb_config_target_group *cfg)
{
  if (!group->settings.name || routing_differs(&group->settings, cfg))
    group_changed(group);
  free(group->settings.name);
  free(group->settings.health.path);
  free(group->settings.health.host);
  group->settings = *cfg;
  group->settings.name = strdup(cfg->name);
  group->settings.health.path = strdup(cfg->health.path);
  group->settings.health.host =
      cfg->health.host ? strdup(cfg->health.host) : NULL;
  group->settings.targets = NULL;
  group->settings.n_targets = 0;
}

/* Brings a group's targets in line with the config: new ones start
 * initial, missing ones drain (unless registered through the API). Each
 * configured target is found by hash and marked; one pass over the group
 * then finds those the config no longer lists. */
static int apply_group(struct nlb_router *router, struct nlb_group *group,
                       const struct nlb_config_target_group *cfg,
                       uint64_t now_ms)
{
  copy_settings(group, cfg);
  group->generation++;
  for (size_t i = 0; i < group->n_targets; i++)
    group->targets[i]->mark = false;
  for (size_t i = 0; i < cfg->n_targets; i++) {
    const struct nlb_config_target *ct = &cfg->targets[i];
    struct nlb_target *target = find_target(group, &ct->address);
    if (target) {
      set_weight(group, target, ct->weight);
      target->runtime_registered = false;
      if (atomic_load(&target->state) == NLB_TARGET_DRAINING)
        undrain(router, group, target);
    } else {
      target = add_target(router, group, &ct->address, ct->weight, "config");
      if (!target)
        return -ENOMEM;
    }
    target->mark = true;
  }
  for (size_t i = 0; i < group->n_targets; i++) {
    struct nlb_target *target = group->targets[i];
    if (!target->mark && !target->runtime_registered)
      start_draining(router, group, target, now_ms, "removed from config");
  }
  return 0;
}

static void index_groups(struct nlb_router *router)
{
  for (size_t i = 0; i < router->n_groups; i++)
    router->groups[i]->index = i;
}

/* Phase 2 of an apply: the new list of groups, same-named ones kept. */
static int apply_groups(struct nlb_router *router, const struct nlb_config *cfg,
                        uint64_t now_ms)
{
  struct nlb_group **groups =
      calloc(cfg->n_target_groups ? cfg->n_target_groups : 1, sizeof(*groups));

  if (!groups)
    return -ENOMEM;
  for (size_t k = 0; k < router->n_groups; k++)
    router->groups[k]->in_use = false; /* marks "kept" below */
  for (size_t i = 0; i < cfg->n_target_groups; i++) {
    const struct nlb_config_target_group *ct = &cfg->target_groups[i];
    struct nlb_group *group = nlb_router_find_group(router, ct->name);
    if (!group) {
      group = calloc(1, sizeof(*group));
      if (!group || !(group->name = strdup(ct->name)) ||
          nlb_hmap_insert(&router->group_map, &group->node,
                          nlb_hash_str(ct->name)) < 0) {
        /* Half of the groups are moved already: no clean way back. */
        NLB_LOG_EVENT(NLB_LOG_ERROR, "out_of_memory", "reload: out of memory");
        abort();
      }
      nlb_hmap_init(&group->by_address);
      router->members_generation++;
    }
    group->in_use = true;
    if (apply_group(router, group, ct, now_ms) < 0) {
      NLB_LOG_EVENT(NLB_LOG_ERROR, "out_of_memory", "reload: out of memory");
      abort();
    }
    groups[i] = group;
  }
  /* Groups gone from the config: their targets drain, held by the flows
   * still using them. */
  for (size_t k = 0; k < router->n_groups; k++) {
    struct nlb_group *old = router->groups[k];
    struct nlb_group **grown;
    if (old->in_use)
      continue;
    nlb_hmap_remove(&router->group_map, &old->node);
    for (size_t t = 0; t < old->n_targets; t++)
      start_draining(router, old, old->targets[t], now_ms, "group removed");
    router->members_generation++;
    NLB_LOG_EVENT(NLB_LOG_INFO, "target_group_removed",
                  "target group {target_group} removed",
                  NLB_LOG_STR("target_group", old->name));
    grown = realloc(router->retired, (router->n_retired + 1) * sizeof(*grown));
    if (!grown) {
      free_group(old); /* its targets are simply not reported unused */
      continue;
    }
    router->retired = grown;
    router->retired[router->n_retired++] = old;
  }
  free(router->groups);
  router->groups = groups;
  router->n_groups = cfg->n_target_groups;
  index_groups(router);
  for (size_t i = 0; i < router->n_groups; i++)
    router->groups[i]->in_use = false; /* set again by the listeners */
  return 0;
}

/* ---- apply: listeners ---------------------------------------------------- */

static bool same_bind(const struct listener_record *l,
                      const struct nlb_config_listener *cl)
{
  if (l->has_bind != cl->has_bind)
    return false;
  return !cl->has_bind || nlb_addr_equal(&l->local, &cl->bind);
}

/* A listener being added by an apply, with its socket. */
struct pending_listener {
  struct listener_record *record;
  int fd; /* -1: none (reachable only through endpoints) */
};

static void discard_pending(struct nlb_router *router,
                            struct pending_listener *pending, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    if (pending[i].fd >= 0)
      close(pending[i].fd);
    free_listener(router, pending[i].record);
  }
  free(pending);
}

static void set_route_settings(struct nlb_router *router,
                               struct listener_record *l,
                               struct nlb_group *group,
                               uint64_t idle_timeout_ms)
{
  if (l->group != group || l->idle_timeout_ms != idle_timeout_ms ||
      (l->route && l->route->group != group->index))
    listener_changed(router, l);
  l->group = group;
  l->idle_timeout_ms = idle_timeout_ms;
}

/* Phase 1 of an apply: a socket for every listener the router lacks.
 * Returns the pending listeners (*n_new of them) or NULL with rc set. */
static struct pending_listener *open_new_listeners(struct nlb_router *router,
                                                   const struct nlb_config *cfg,
                                                   size_t *n_new, int *rc,
                                                   char *err, size_t err_size)
{
  size_t total = 0;
  struct pending_listener *pending;

  *n_new = 0;
  for (size_t i = 0; i < cfg->n_load_balancers; i++)
    total += cfg->load_balancers[i].n_listeners;
  pending = calloc(total ? total : 1, sizeof(*pending));
  *rc = -ENOMEM;
  if (!pending)
    return NULL;
  for (size_t i = 0; i < router->n_listeners; i++)
    router->listeners[i]->seen = router->listeners[i]->endpoint_id != NULL;
  for (size_t i = 0; i < cfg->n_load_balancers; i++) {
    const struct nlb_config_load_balancer *lb = &cfg->load_balancers[i];
    for (size_t j = 0; j < lb->n_listeners; j++) {
      const struct nlb_config_listener *cl = &lb->listeners[j];
      struct listener_record *found =
          find_lb_listener(router, lb->name, cl->port);
      struct listener_record *l;
      struct pending_listener *p = &pending[*n_new];
      int fd;

      if (found && same_bind(found, cl)) {
        found->seen = true;
        continue;
      }
      if (!(l = new_listener()))
        goto fail;
      p->record = l;
      p->fd = -1;
      (*n_new)++;
      l->lb_name = strdup(lb->name);
      l->port = cl->port;
      l->has_bind = cl->has_bind;
      l->local = cl->bind;
      l->stats = nlb_listener_stats_create();
      if (!l->lb_name || !l->stats)
        goto fail;
      if (!cl->has_bind)
        continue;
      fd = nlb_listener_open(&cl->bind);
      if (fd < 0) {
        char where[NLB_ADDR_TEXT_MAX];
        snprintf(err, err_size,
                 "%s:%d: load balancer \"%s\": cannot listen on %s: %s",
                 cfg->path, cl->line, lb->name,
                 nlb_addr_format(&cl->bind, where, sizeof(where)),
                 strerror(-fd));
        *rc = fd;
        goto fail;
      }
      p->fd = fd;
    }
  }
  return pending;

fail:
  discard_pending(router, pending, *n_new);
  return NULL;
}

/* After a reload, endpoint listeners follow their load balancer's listener
 * on the same port; one whose port is gone closes. */
static void resolve_endpoint_listeners(struct nlb_router *router)
{
  for (size_t i = 0; i < router->n_listeners;) {
    struct listener_record *l = router->listeners[i];
    struct listener_record *lb;
    if (!l->endpoint_id) {
      i++;
      continue;
    }
    lb = find_lb_listener(router, l->lb_name, l->port);
    if (!lb || !lb->group) {
      NLB_LOG_EVENT(NLB_LOG_WARN, "listener_close",
                    "endpoint {endpoint}: load balancer {lb} has no port "
                    "{port} any more; closing that listener",
                    NLB_LOG_STR("endpoint", l->endpoint_id),
                    NLB_LOG_STR("lb", l->lb_name),
                    NLB_LOG_UINT("port", l->port),
                    NLB_LOG_STR("reason", "port removed"));
      remove_listener(router, l, true);
      continue;
    }
    set_route_settings(router, l, lb->group, lb->idle_timeout_ms);
    i++;
  }
}

/* Phase 3 of an apply: listeners the config dropped close, new ones join
 * (in id order, after every older one), settings follow the config. */
static void apply_listeners(struct nlb_router *router,
                            const struct nlb_config *cfg,
                            struct pending_listener *pending, size_t n_new)
{
  for (size_t k = 0; k < router->n_listeners;) {
    struct listener_record *l = router->listeners[k];
    if (l->seen) {
      k++;
      continue;
    }
    NLB_LOG_EVENT(NLB_LOG_INFO, "listener_close", "listener {lb}:{port} closed",
                  NLB_LOG_STR("lb", l->lb_name), NLB_LOG_UINT("port", l->port),
                  NLB_LOG_STR("reason", "removed from config"));
    remove_listener(router, l, false);
  }
  for (size_t i = 0; i < n_new; i++) {
    struct listener_record *l = pending[i].record;
    append_listener(router, l);
    /* Room was reserved; a failed insert only leaves the map without it
     * (found again by the next reload's scan). */
    nlb_hmap_insert(&router->lb_listeners, &l->node,
                    hash_lb_port(l->lb_name, l->port));
  }
  for (size_t i = 0; i < cfg->n_load_balancers; i++) {
    const struct nlb_config_load_balancer *lb = &cfg->load_balancers[i];
    for (size_t j = 0; j < lb->n_listeners; j++) {
      const struct nlb_config_listener *cl = &lb->listeners[j];
      struct listener_record *l = find_lb_listener(router, lb->name, cl->port);
      struct nlb_group *group = router->groups[cl->target_group];
      if (!l)
        continue;
      set_route_settings(router, l, group, cl->idle_timeout_ms);
      group->in_use = true;
    }
  }
  resolve_endpoint_listeners(router);
}

int nlb_router_apply(struct nlb_router *router, const struct nlb_config *cfg,
                     uint64_t now_ms, char *err, size_t err_size)
{
  size_t n_new = 0;
  int rc = 0;
  struct pending_listener *pending =
      open_new_listeners(router, cfg, &n_new, &rc, err, err_size);

  /* Nothing has changed until every new socket is open. */
  if (!pending)
    return rc;
  if (reserve_listeners(router, n_new) < 0) {
    discard_pending(router, pending, n_new);
    return -ENOMEM;
  }
  apply_groups(router, cfg, now_ms);
  apply_listeners(router, cfg, pending, n_new);
  router->access_json = cfg->log_access_format == NLB_LOG_JSON;
  nlb_router_publish(router, now_ms);

  /* New sockets go to the workers after the snapshot that names their
   * routes (commands reach a worker in order). */
  for (size_t i = 0; i < n_new; i++) {
    struct listener_record *l = pending[i].record;
    char where[NLB_ADDR_TEXT_MAX];
    if (pending[i].fd < 0)
      continue;
    if (share_socket(router, l->id, pending[i].fd) < 0)
      continue;
    NLB_LOG_EVENT(NLB_LOG_INFO, "listener_open",
                  "listener {lb}:{port} open on {address} ({workers} workers)",
                  NLB_LOG_STR("lb", l->lb_name), NLB_LOG_UINT("port", l->port),
                  NLB_LOG_STR("address",
                              nlb_addr_format(&l->local, where, sizeof(where))),
                  NLB_LOG_UINT("workers", router->n_workers));
  }
  free(pending);
  return 0;
}

/* ---- publishing ---------------------------------------------------------- */

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
  return group->route ? 0 : -ENOMEM;
}

static int build_route(struct listener_record *l)
{
  /* Every listener is a TCP relay until listeners name their protocol. */
  l->route = nlb_route_create(l->id, &nlb_flow_kind_tcp, l->lb_name, l->port,
                              &l->local, l->endpoint_id, l->idle_timeout_ms,
                              l->group->index, l->allowed_sources,
                              l->n_allowed_sources, l->stats);
  return l->route ? 0 : -ENOMEM;
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

/* Forgets the group's draining targets whose flows are gone or whose
 * deregistration delay has run out. */
static void reap_drained(struct nlb_router *router, struct nlb_group *group,
                         uint64_t now_ms)
{
  for (size_t i = 0; i < group->n_targets && group->n_draining > 0;) {
    struct nlb_target *target = group->targets[i];
    if (atomic_load(&target->state) != NLB_TARGET_DRAINING) {
      i++;
      continue;
    }
    uint64_t deadline = atomic_load(&target->drain_deadline_ms);
    uint64_t active = atomic_load(&target->counters.active_flows);
    if (active > 0 && now_ms < deadline + DRAIN_GRACE_MS) {
      i++;
      continue;
    }
    atomic_store(&target->state, NLB_TARGET_UNUSED);
    NLB_LOG_EVENT(NLB_LOG_INFO, "target_state",
                  "target {target_group}/{target} state {from} -> {to} "
                  "({reason}; removed)",
                  NLB_LOG_STR("target_group", group->name),
                  NLB_LOG_STR("target", target->name),
                  NLB_LOG_STR("from", "draining"), NLB_LOG_STR("to", "unused"),
                  NLB_LOG_STR("reason", active || now_ms >= deadline
                                            ? "deregistration delay expired"
                                            : "no flows left"));
    nlb_hmap_remove(&group->by_address, &target->group_node);
    group->targets[i] = group->targets[--group->n_targets];
    group->n_draining--;
    nlb_target_set_draining(false);
    router->members_generation++;
    nlb_target_release(target);
  }
}

void nlb_router_tick(struct nlb_router *router, uint64_t now_ms)
{
  bool changed = false, slow_start = false;

  reap_routes(router);
  for (size_t g = 0; g < router->n_groups; g++) {
    struct nlb_group *group = router->groups[g];
    if (group->slow_start_until_ms > now_ms) {
      slow_start = true;
      if (now_ms - router->last_slow_start_publish_ms >=
          SLOW_START_REPUBLISH_MS)
        group_changed(group);
    }
    if (group->n_draining > 0)
      reap_drained(router, group, now_ms);
  }
  for (size_t g = 0; g < router->n_retired;) {
    struct nlb_group *group = router->retired[g];
    reap_drained(router, group, now_ms);
    if (group->n_targets == 0) {
      free_group(group);
      router->retired[g] = router->retired[--router->n_retired];
      continue;
    }
    g++;
  }
  if (slow_start &&
      now_ms - router->last_slow_start_publish_ms >= SLOW_START_REPUBLISH_MS) {
    router->last_slow_start_publish_ms = now_ms;
    changed = true;
  }
  /* Slow start just ended: the last snapshot still holds a partial
   * weight, and nothing else would replace it. */
  if (!slow_start && router->slow_start_published) {
    for (size_t g = 0; g < router->n_groups; g++)
      if (router->groups[g]->settings.slow_start_ms)
        group_changed(router->groups[g]);
    changed = true;
  }
  router->slow_start_published = slow_start;
  if (changed || router->flush_due)
    nlb_router_publish(router, now_ms);
}

/* ---- run-time targets ---------------------------------------------------- */

/* A run-time target present with weight, or gone (weight 0: it drains).
 * Returns true when the group changed. Config targets are the config's:
 * the API cannot drain or reweigh them. */
static bool set_runtime_target(struct nlb_router *router,
                               struct nlb_group *group,
                               const union nlb_sockaddr *address,
                               uint32_t weight, uint64_t now_ms)
{
  struct nlb_target *target = find_target(group, address);
  bool draining = target && atomic_load(&target->state) == NLB_TARGET_DRAINING;

  if (weight == 0) {
    if (!target || !target->runtime_registered || draining)
      return false;
    start_draining(router, group, target, now_ms, "deregistered");
    return true;
  }
  if (target && !target->runtime_registered && !draining)
    return false;
  if (target && target->runtime_registered && target->weight == weight &&
      !draining)
    return false;
  if (!target) {
    target = add_target(router, group, address, weight, "api");
    if (!target) {
      NLB_LOG_EVENT(NLB_LOG_ERROR, "out_of_memory",
                    "target group {target_group}: out of memory",
                    NLB_LOG_STR("target_group", group->name));
      return false;
    }
  } else if (draining) {
    undrain(router, group, target);
  }
  set_weight(group, target, weight);
  target->runtime_registered = true;
  group->generation++;
  return true;
}

int nlb_router_set_runtime_target(struct nlb_router *router, const char *name,
                                  const union nlb_sockaddr *address,
                                  uint32_t weight, uint64_t now_ms)
{
  struct nlb_group *group = nlb_router_find_group(router, name);

  if (!group)
    return -ENOENT;
  if (set_runtime_target(router, group, address, weight, now_ms))
    router->flush_due = true;
  return 0;
}

void nlb_router_sync_runtime_targets(struct nlb_router *router,
                                     const struct nlb_runtime_target *targets,
                                     size_t n, uint64_t now_ms)
{
  bool changed = false;

  /* Mark what the list names, then drain the unmarked: one pass each. */
  for (size_t g = 0; g < router->n_groups; g++)
    for (size_t t = 0; t < router->groups[g]->n_targets; t++)
      router->groups[g]->targets[t]->mark = false;
  for (size_t i = 0; i < n; i++) {
    struct nlb_group *group = nlb_router_find_group(router, targets[i].group);
    struct nlb_target *target;

    if (!group)
      continue;
    if (set_runtime_target(router, group, &targets[i].address,
                           targets[i].weight, now_ms))
      changed = true;
    if ((target = find_target(group, &targets[i].address)) != NULL)
      target->mark = true;
  }
  for (size_t g = 0; g < router->n_groups; g++) {
    struct nlb_group *group = router->groups[g];

    for (size_t t = 0; t < group->n_targets; t++) {
      struct nlb_target *target = group->targets[t];

      if (target->runtime_registered && !target->mark &&
          set_runtime_target(router, group, &target->address, 0, now_ms))
        changed = true;
    }
  }
  if (changed)
    nlb_router_publish(router, now_ms);
}

void nlb_router_set_target_state(struct nlb_router *router,
                                 struct nlb_group *group,
                                 struct nlb_target *target,
                                 enum nlb_target_state state,
                                 const char *reason, uint64_t now_ms)
{
  int old = atomic_load(&target->state);
  if (old == (int)state || old == NLB_TARGET_DRAINING ||
      old == NLB_TARGET_UNUSED)
    return;
  atomic_store(&target->state, state);
  snprintf(target->reason, sizeof(target->reason), "%s", reason);
  if (state == NLB_TARGET_HEALTHY) {
    target->healthy_since_ms = now_ms;
    if (group->settings.slow_start_ms &&
        now_ms + group->settings.slow_start_ms > group->slow_start_until_ms)
      group->slow_start_until_ms = now_ms + group->settings.slow_start_ms;
  }
  NLB_LOG_EVENT(
      state == NLB_TARGET_UNHEALTHY ? NLB_LOG_WARN : NLB_LOG_INFO,
      "target_state",
      "target {target_group}/{target} state {from} -> {to} ({reason})",
      NLB_LOG_STR("target_group", group->name),
      NLB_LOG_STR("target", target->name),
      NLB_LOG_STR("from", nlb_target_state_name((enum nlb_target_state)old)),
      NLB_LOG_STR("to", nlb_target_state_name(state)),
      NLB_LOG_STR("reason", reason));
  /* initial <-> unhealthy changes no pool: both are out of it, or both in
   * (fail-open). */
  if (state == NLB_TARGET_HEALTHY || old == NLB_TARGET_HEALTHY) {
    group_changed(group);
    router->flush_due = true;
  }
}

/* ---- endpoints ----------------------------------------------------------- */

static int copy_sources(struct nlb_router *router, struct listener_record *l,
                        const struct nlb_cidr *sources, size_t n)
{
  struct nlb_cidr *copy = NULL;
  if (n) {
    copy = malloc(n * sizeof(*copy));
    if (!copy)
      return -ENOMEM;
    memcpy(copy, sources, n * sizeof(*copy));
  }
  free(l->allowed_sources);
  l->allowed_sources = copy;
  l->n_allowed_sources = n;
  listener_changed(router, l);
  return 0;
}

static struct listener_record *endpoint_port(const struct endpoint_entry *ep,
                                             uint16_t port)
{
  struct nlb_list *pos, *tmp;

  NLB_LIST_FOREACH_SAFE(pos, tmp, &ep->listeners)
  {
    struct listener_record *l =
        NLB_CONTAINER_OF(pos, struct listener_record, endpoint_link);
    if (l->port == port)
      return l;
  }
  return NULL;
}

static void free_endpoint_entry(struct nlb_router *router,
                                struct endpoint_entry *ep)
{
  nlb_hmap_remove(&router->endpoints, &ep->node);
  free(ep->id);
  free(ep);
}

static struct endpoint_entry *endpoint_entry(struct nlb_router *router,
                                             const char *id)
{
  struct endpoint_entry *ep = find_endpoint(router, id);

  if (ep)
    return ep;
  if (!(ep = calloc(1, sizeof(*ep))) || !(ep->id = strdup(id)))
    goto fail_free;
  nlb_list_init(&ep->listeners);
  if (nlb_hmap_insert(&router->endpoints, &ep->node, nlb_hash_str(id)) < 0)
    goto fail_free;
  return ep;

fail_free:
  if (ep)
    free(ep->id);
  free(ep);
  return NULL;
}

int nlb_router_add_endpoint(struct nlb_router *router, const char *endpoint_id,
                            const char *lb_name,
                            const union nlb_sockaddr *address,
                            const uint16_t *ports, size_t n_ports,
                            const struct nlb_cidr *allowed_sources,
                            size_t n_allowed_sources, const int *fds,
                            uint64_t now_ms, char *err, size_t err_size)
{
  size_t first = router->n_listeners;
  struct endpoint_entry *ep = NULL;
  size_t p = 0;
  int rc = -ENOMEM;

  for (size_t i = 0; i < n_ports; i++)
    if (nlb_router_endpoint_has_port(router, endpoint_id, ports[i])) {
      snprintf(err, err_size, "endpoint already listens on port %u", ports[i]);
      rc = -EEXIST;
      goto fail_close_fds;
    }
  if (reserve_listeners(router, n_ports) < 0 ||
      !(ep = endpoint_entry(router, endpoint_id)))
    goto fail_close_fds;
  for (; p < n_ports; p++) {
    struct listener_record *lb = find_lb_listener(router, lb_name, ports[p]);
    struct listener_record *l;
    if (!lb || !lb->group) {
      snprintf(err, err_size, "load balancer %s has no listener on port %u",
               lb_name, ports[p]);
      rc = -ENOENT;
      goto fail_remove_added;
    }
    if (!(l = new_listener()))
      goto fail_remove_added;
    append_listener(router, l);
    nlb_list_append(&ep->listeners, &l->endpoint_link);
    l->lb_name = strdup(lb_name);
    l->port = ports[p];
    l->has_bind = true;
    l->local = *address;
    nlb_addr_set_port(&l->local, ports[p]);
    l->group = lb->group;
    l->idle_timeout_ms = lb->idle_timeout_ms;
    l->endpoint_id = strdup(endpoint_id);
    l->stats = nlb_listener_stats_create();
    if (!l->lb_name || !l->endpoint_id || !l->stats ||
        copy_sources(router, l, allowed_sources, n_allowed_sources) < 0)
      goto fail_remove_added;
  }
  if (nlb_router_publish(router, now_ms) < 0)
    goto fail_remove_added;
  for (size_t i = 0; i < n_ports; i++)
    share_socket(router, router->listeners[first + i]->id, fds[i]);
  return 0;

fail_remove_added:
  while (router->n_listeners > first) {
    struct listener_record *l = router->listeners[--router->n_listeners];
    nlb_list_remove(&l->endpoint_link);
    free_listener(router, l);
  }
  if (nlb_list_empty(&ep->listeners))
    free_endpoint_entry(router, ep);
fail_close_fds:
  for (size_t i = 0; i < n_ports; i++)
    close(fds[i]);
  if (rc == -ENOMEM && !err[0])
    snprintf(err, err_size, "out of memory");
  return rc;
}

int nlb_router_remove_endpoint(struct nlb_router *router,
                               const char *endpoint_id, uint64_t now_ms)
{
  struct endpoint_entry *ep = find_endpoint(router, endpoint_id);

  if (!ep)
    return -ENOENT;
  while (!nlb_list_empty(&ep->listeners))
    remove_listener(router,
                    NLB_CONTAINER_OF(ep->listeners.next, struct listener_record,
                                     endpoint_link),
                    true);
  free_endpoint_entry(router, ep);
  nlb_router_publish(router, now_ms);
  return 0;
}

int nlb_router_set_endpoint_sources(struct nlb_router *router,
                                    const char *endpoint_id,
                                    const struct nlb_cidr *allowed_sources,
                                    size_t n_allowed_sources, uint64_t now_ms)
{
  struct endpoint_entry *ep = find_endpoint(router, endpoint_id);
  struct nlb_list *pos, *tmp;

  if (!ep)
    return -ENOENT;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &ep->listeners)
  {
    if (copy_sources(
            router,
            NLB_CONTAINER_OF(pos, struct listener_record, endpoint_link),
            allowed_sources, n_allowed_sources) < 0)
      return -ENOMEM;
  }
  return nlb_router_publish(router, now_ms);
}

bool nlb_router_endpoint_has_port(const struct nlb_router *router,
                                  const char *endpoint_id, uint16_t port)
{
  const struct endpoint_entry *ep = find_endpoint(router, endpoint_id);

  return ep && endpoint_port(ep, port);
}

bool nlb_router_has_endpoint(const struct nlb_router *router,
                             const char *endpoint_id)
{
  const struct endpoint_entry *ep = find_endpoint(router, endpoint_id);

  return ep && !nlb_list_empty(&ep->listeners);
}

void nlb_router_flows(const struct nlb_router *router,
                      struct nlb_router_flows *out)
{
  memset(out, 0, sizeof(*out));
  for (size_t w = 0; w < router->n_workers; w++) {
    out->active += nlb_worker_active_flows(router->workers[w]);
    out->refused += nlb_worker_flows_refused(router->workers[w]);
    out->accept_errors += nlb_worker_accept_errors(router->workers[w]);
  }
}

void nlb_router_stop_accepting(struct nlb_router *router)
{
  for (size_t w = 0; w < router->n_workers; w++)
    nlb_worker_stop_accepting(router->workers[w]);
}

void nlb_router_free(struct nlb_router *router)
{
  struct nlb_hnode *node, *next;

  if (!router)
    return;
  for (size_t i = 0; i < router->n_groups; i++)
    free_group(router->groups[i]);
  free(router->groups);
  for (size_t i = 0; i < router->n_retired; i++)
    free_group(router->retired[i]);
  free(router->retired);
  /* Workers are stopped: no snapshot is read any more. */
  for (size_t i = 0; i < router->n_listeners; i++)
    free_listener(router, router->listeners[i]);
  free(router->listeners);
  free(router->routes);
  while (router->retired_head) {
    struct nlb_route *route = router->retired_head;
    router->retired_head = route->retired_next;
    nlb_route_release(route);
  }
  for (node = nlb_hmap_next(&router->endpoints, NULL); node; node = next) {
    struct endpoint_entry *ep =
        NLB_CONTAINER_OF(node, struct endpoint_entry, node);
    next = nlb_hmap_next(&router->endpoints, node);
    free(ep->id);
    free(ep);
  }
  nlb_hmap_free(&router->endpoints);
  nlb_hmap_free(&router->lb_listeners);
  nlb_hmap_free(&router->group_map);
  free(router);
}
