#include "nlb/router.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nlb/listener.h"
#include "nlb/log.h"

/* Flows of a drained target are closed at its deadline; it is forgotten
 * this long after, once workers have had time to act. */
#define DRAIN_GRACE_MS 2000
#define SLOW_START_REPUBLISH_MS 1000

struct listener_record {
  uint64_t id;
  char *lb_name;
  uint16_t port;
  bool has_bind;
  union nlb_sockaddr local;
  char *group_name;
  uint64_t idle_timeout_ms;
  char *endpoint_id; /* NULL for a load balancer's own listener */
  struct nlb_cidr *allowed_sources;
  size_t n_allowed_sources;
  struct nlb_listener_stats *stats;
  bool seen; /* still in the config being applied */
};

struct nlb_router {
  struct nlb_worker *const *workers;
  size_t n_workers;
  struct nlb_group **groups;
  size_t n_groups;
  struct listener_record **listeners;
  size_t n_listeners;
  /* Groups removed by a reload whose targets still drain; freed when the
   * last one is gone. Not routed to. */
  struct nlb_group **retired;
  size_t n_retired;
  uint64_t next_listener_id;
  uint64_t generation;
  bool access_json;
  uint64_t last_slow_start_publish_ms;
  /* The last snapshot gave some target less than its full weight: one
   * more publish is due when slow start ends. */
  bool slow_start_published;
};

struct nlb_router *nlb_router_create(struct nlb_worker *const *workers,
                                     size_t n_workers)
{
  struct nlb_router *router = calloc(1, sizeof(*router));
  if (!router)
    return NULL;
  router->workers = workers;
  router->n_workers = n_workers;
  router->next_listener_id = 1;
  return router;
}

static void free_listener(struct listener_record *l)
{
  free(l->lb_name);
  free(l->group_name);
  free(l->endpoint_id);
  free(l->allowed_sources);
  if (l->stats)
    nlb_listener_stats_release(l->stats);
  free(l);
}

static void free_group(struct nlb_group *group)
{
  for (size_t i = 0; i < group->n_targets; i++)
    nlb_target_release(group->targets[i]);
  free(group->targets);
  free(group->name);
  free(group->settings.name);
  free(group->settings.health.path);
  free(group->settings.health.host);
  free(group);
}

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
  return router->generation;
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
  /* During a reload, slots of groups taken over by the new list are NULL. */
  for (size_t i = 0; i < router->n_groups; i++)
    if (router->groups[i] && strcmp(router->groups[i]->name, name) == 0)
      return router->groups[i];
  return NULL;
}

static struct nlb_target *find_target(struct nlb_group *group,
                                      const union nlb_sockaddr *address)
{
  for (size_t i = 0; i < group->n_targets; i++)
    if (nlb_addr_equal(&group->targets[i]->address, address))
      return group->targets[i];
  return NULL;
}

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
  group->targets[group->n_targets++] = target;
  return 0;
}

static void log_registered(const struct nlb_group *group,
                           const struct nlb_target *target, const char *by)
{
  NLB_LOG_EVENT(NLB_LOG_INFO, "target_registered",
                "target {target_group}/{target} registered (initial)",
                NLB_LOG_STR("target_group", group->name),
                NLB_LOG_STR("target", target->name), NLB_LOG_STR("by", by));
}

static void start_draining(struct nlb_group *group, struct nlb_target *target,
                           uint64_t now_ms, const char *reason)
{
  int old = atomic_load(&target->state);
  if (old == NLB_TARGET_DRAINING)
    return;
  atomic_store(&target->drain_deadline_ms,
               now_ms + group->settings.deregistration_delay_ms);
  atomic_store(&target->state, NLB_TARGET_DRAINING);
  snprintf(target->reason, sizeof(target->reason), "%s", reason);
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

static void copy_settings(struct nlb_group *group,
                          const struct nlb_config_target_group *cfg)
{
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
 * initial, missing ones drain (unless registered through the API). */
static int apply_group(struct nlb_group *group,
                       const struct nlb_config_target_group *cfg,
                       uint64_t now_ms)
{
  copy_settings(group, cfg);
  group->generation++;
  for (size_t i = 0; i < cfg->n_targets; i++) {
    const struct nlb_config_target *ct = &cfg->targets[i];
    struct nlb_target *target = find_target(group, &ct->address);
    if (target) {
      target->weight = ct->weight;
      target->runtime_registered = false;
      if (atomic_load(&target->state) == NLB_TARGET_DRAINING) {
        atomic_store(&target->drain_deadline_ms, 0);
        atomic_store(&target->state, NLB_TARGET_INITIAL);
        target->consecutive_ok = target->consecutive_fail = 0;
        snprintf(target->reason, sizeof(target->reason), "re-registered");
        NLB_LOG_EVENT(NLB_LOG_INFO, "target_state",
                      "target {target_group}/{target} state {from} -> {to} "
                      "({reason})",
                      NLB_LOG_STR("target_group", group->name),
                      NLB_LOG_STR("target", target->name),
                      NLB_LOG_STR("from", "draining"),
                      NLB_LOG_STR("to", "initial"),
                      NLB_LOG_STR("reason", "re-registered"));
      }
      continue;
    }
    target = nlb_target_create(&ct->address, ct->weight);
    if (!target || append_target(group, target) < 0) {
      if (target)
        nlb_target_release(target);
      return -ENOMEM;
    }
    snprintf(target->reason, sizeof(target->reason), "registered");
    log_registered(group, target, "config");
  }
  for (size_t i = 0; i < group->n_targets; i++) {
    struct nlb_target *target = group->targets[i];
    bool configured = false;
    for (size_t j = 0; j < cfg->n_targets; j++)
      if (nlb_addr_equal(&cfg->targets[j].address, &target->address))
        configured = true;
    if (!configured && !target->runtime_registered)
      start_draining(group, target, now_ms, "removed from config");
  }
  return 0;
}

static bool same_listener(const struct listener_record *l, const char *lb,
                          const struct nlb_config_listener *cl)
{
  if (l->endpoint_id || strcmp(l->lb_name, lb) != 0 || l->port != cl->port ||
      l->has_bind != cl->has_bind)
    return false;
  return !cl->has_bind || nlb_addr_equal(&l->local, &cl->bind);
}

static void close_fds(int *fds, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= 0)
      close(fds[i]);
}

/* A listener being added by an apply, with its sockets (one per worker). */
struct pending_listener {
  struct listener_record *record;
  int *fds;
};

static void discard_pending(struct pending_listener *pending, size_t n,
                            size_t n_workers)
{
  for (size_t i = 0; i < n; i++) {
    if (pending[i].fds)
      close_fds(pending[i].fds, n_workers);
    free(pending[i].fds);
    free_listener(pending[i].record);
  }
  free(pending);
}

static struct listener_record *
find_lb_listener(struct nlb_router *router, const char *lb_name, uint16_t port)
{
  for (size_t i = 0; i < router->n_listeners; i++) {
    struct listener_record *l = router->listeners[i];
    if (!l->endpoint_id && l->port == port && strcmp(l->lb_name, lb_name) == 0)
      return l;
  }
  return NULL;
}

static void remove_listener_at(struct nlb_router *router, size_t index,
                               bool reset_flows)
{
  struct listener_record *l = router->listeners[index];
  for (size_t w = 0; w < router->n_workers; w++)
    nlb_worker_remove_listener(router->workers[w], l->id, reset_flows);
  router->listeners[index] = router->listeners[--router->n_listeners];
  free_listener(l);
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
    if (!lb) {
      NLB_LOG_EVENT(NLB_LOG_WARN, "listener_close",
                    "endpoint {endpoint}: load balancer {lb} has no port "
                    "{port} any more; closing that listener",
                    NLB_LOG_STR("endpoint", l->endpoint_id),
                    NLB_LOG_STR("lb", l->lb_name),
                    NLB_LOG_UINT("port", l->port),
                    NLB_LOG_STR("reason", "port removed"));
      remove_listener_at(router, i, true);
      continue;
    }
    free(l->group_name);
    l->group_name = lb->group_name ? strdup(lb->group_name) : NULL;
    l->idle_timeout_ms = lb->idle_timeout_ms;
    i++;
  }
}

int nlb_router_apply(struct nlb_router *router, const struct nlb_config *cfg,
                     uint64_t now_ms, char *err, size_t err_size)
{
  size_t n_new = 0, total = 0;
  struct pending_listener *pending;

  for (size_t i = 0; i < cfg->n_load_balancers; i++)
    total += cfg->load_balancers[i].n_listeners;
  pending = calloc(total ? total : 1, sizeof(*pending));
  if (!pending)
    return -ENOMEM;
  for (size_t i = 0; i < router->n_listeners; i++)
    router->listeners[i]->seen = router->listeners[i]->endpoint_id != NULL;

  /* Phase 1: open every new socket. Nothing is changed until all bind. */
  for (size_t i = 0; i < cfg->n_load_balancers; i++) {
    const struct nlb_config_load_balancer *lb = &cfg->load_balancers[i];
    for (size_t j = 0; j < lb->n_listeners; j++) {
      const struct nlb_config_listener *cl = &lb->listeners[j];
      struct listener_record *found = NULL;
      for (size_t k = 0; k < router->n_listeners && !found; k++)
        if (same_listener(router->listeners[k], lb->name, cl))
          found = router->listeners[k];
      if (found) {
        found->seen = true;
        continue;
      }
      struct listener_record *l = calloc(1, sizeof(*l));
      struct pending_listener *p = &pending[n_new];
      if (!l) {
        discard_pending(pending, n_new, router->n_workers);
        return -ENOMEM;
      }
      p->record = l;
      n_new++;
      l->lb_name = strdup(lb->name);
      l->port = cl->port;
      l->has_bind = cl->has_bind;
      l->local = cl->bind;
      l->stats = nlb_listener_stats_create();
      if (!l->lb_name || !l->stats) {
        discard_pending(pending, n_new, router->n_workers);
        return -ENOMEM;
      }
      if (!cl->has_bind)
        continue;
      p->fds = malloc(router->n_workers * sizeof(int));
      if (!p->fds) {
        discard_pending(pending, n_new, router->n_workers);
        return -ENOMEM;
      }
      for (size_t w = 0; w < router->n_workers; w++)
        p->fds[w] = -1;
      int rc = nlb_listener_open_shared(&cl->bind, router->n_workers, p->fds);
      if (rc < 0) {
        char where[NLB_ADDR_TEXT_MAX];
        snprintf(err, err_size,
                 "%s:%d: load balancer \"%s\": cannot listen on %s: %s",
                 cfg->path, cl->line, lb->name,
                 nlb_addr_format(&cl->bind, where, sizeof(where)),
                 strerror(-rc));
        discard_pending(pending, n_new, router->n_workers);
        return rc;
      }
    }
  }

  /* Phase 2: groups and targets. */
  struct nlb_group **groups =
      calloc(cfg->n_target_groups ? cfg->n_target_groups : 1, sizeof(*groups));
  struct listener_record **listeners =
      calloc(router->n_listeners + n_new ? router->n_listeners + n_new : 1,
             sizeof(*listeners));
  if (!groups || !listeners) {
    free(groups);
    free(listeners);
    discard_pending(pending, n_new, router->n_workers);
    return -ENOMEM;
  }
  for (size_t i = 0; i < cfg->n_target_groups; i++) {
    const struct nlb_config_target_group *ct = &cfg->target_groups[i];
    struct nlb_group *group = nlb_router_find_group(router, ct->name);
    if (group) {
      /* Taken over by the new list; the old slot must not free it. */
      for (size_t k = 0; k < router->n_groups; k++)
        if (router->groups[k] == group)
          router->groups[k] = NULL;
    } else {
      group = calloc(1, sizeof(*group));
      if (!group || !(group->name = strdup(ct->name))) {
        /* Half of the groups are moved already: no clean way back. */
        NLB_LOG_EVENT(NLB_LOG_ERROR, "out_of_memory", "reload: out of memory");
        abort();
      }
    }
    apply_group(group, ct, now_ms);
    group->in_use = false;
    groups[i] = group;
  }
  /* Groups gone from the config: their targets drain, held by the
   * snapshots of the flows still using them. */
  for (size_t k = 0; k < router->n_groups; k++) {
    struct nlb_group *old = router->groups[k];
    if (!old)
      continue;
    for (size_t t = 0; t < old->n_targets; t++)
      start_draining(old, old->targets[t], now_ms, "group removed");
    NLB_LOG_EVENT(NLB_LOG_INFO, "target_group_removed",
                  "target group {target_group} removed",
                  NLB_LOG_STR("target_group", old->name));
    struct nlb_group **grown =
        realloc(router->retired, (router->n_retired + 1) * sizeof(*grown));
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

  /* Phase 3: listeners. Settings of kept ones follow the config. */
  size_t n_kept = 0;
  for (size_t k = 0; k < router->n_listeners; k++) {
    struct listener_record *l = router->listeners[k];
    if (l->seen) {
      listeners[n_kept++] = l;
      continue;
    }
    for (size_t w = 0; w < router->n_workers; w++)
      nlb_worker_remove_listener(router->workers[w], l->id, false);
    NLB_LOG_EVENT(NLB_LOG_INFO, "listener_close", "listener {lb}:{port} closed",
                  NLB_LOG_STR("lb", l->lb_name), NLB_LOG_UINT("port", l->port),
                  NLB_LOG_STR("reason", "removed from config"));
    free_listener(l);
  }
  for (size_t i = 0; i < n_new; i++) {
    pending[i].record->id = router->next_listener_id++;
    listeners[n_kept++] = pending[i].record;
  }
  free(router->listeners);
  router->listeners = listeners;
  router->n_listeners = n_kept;
  for (size_t i = 0; i < cfg->n_load_balancers; i++) {
    const struct nlb_config_load_balancer *lb = &cfg->load_balancers[i];
    for (size_t j = 0; j < lb->n_listeners; j++) {
      const struct nlb_config_listener *cl = &lb->listeners[j];
      for (size_t k = 0; k < router->n_listeners; k++) {
        struct listener_record *l = router->listeners[k];
        if (!same_listener(l, lb->name, cl))
          continue;
        free(l->group_name);
        l->group_name = strdup(cfg->target_groups[cl->target_group].name);
        l->idle_timeout_ms = cl->idle_timeout_ms;
        groups[cl->target_group]->in_use = true;
      }
    }
  }
  resolve_endpoint_listeners(router);
  router->access_json = cfg->log_access_format == NLB_LOG_JSON;
  nlb_router_publish(router, now_ms);

  /* Phase 4: hand new sockets to workers, after the snapshot that names
   * their routes (commands reach a worker in order). */
  for (size_t i = 0; i < n_new; i++) {
    struct listener_record *l = pending[i].record;
    if (pending[i].fds) {
      char where[NLB_ADDR_TEXT_MAX];
      for (size_t w = 0; w < router->n_workers; w++)
        nlb_worker_add_listener(router->workers[w], l->id, pending[i].fds[w]);
      NLB_LOG_EVENT(
          NLB_LOG_INFO, "listener_open",
          "listener {lb}:{port} open on {address} ({workers} workers)",
          NLB_LOG_STR("lb", l->lb_name), NLB_LOG_UINT("port", l->port),
          NLB_LOG_STR("address",
                      nlb_addr_format(&l->local, where, sizeof(where))),
          NLB_LOG_UINT("workers", router->n_workers));
    }
    free(pending[i].fds);
  }
  free(pending);
  return 0;
}

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

static bool in_slow_start(const struct nlb_group *group,
                          const struct nlb_target *target, uint64_t now_ms)
{
  return group->settings.slow_start_ms && target->healthy_since_ms &&
         atomic_load(&target->state) == NLB_TARGET_HEALTHY &&
         now_ms - target->healthy_since_ms < group->settings.slow_start_ms;
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

static int fill_route(struct nlb_snapshot *snapshot, struct nlb_route *route,
                      const struct listener_record *l)
{
  route->id = l->id;
  route->lb_name = strdup(l->lb_name);
  route->port = l->port;
  route->local = l->local;
  route->endpoint_id = l->endpoint_id ? strdup(l->endpoint_id) : NULL;
  route->idle_timeout_ms = l->idle_timeout_ms;
  if (l->n_allowed_sources) {
    route->allowed_sources =
        malloc(l->n_allowed_sources * sizeof(*route->allowed_sources));
    if (!route->allowed_sources)
      return -ENOMEM;
    memcpy(route->allowed_sources, l->allowed_sources,
           l->n_allowed_sources * sizeof(*route->allowed_sources));
    route->n_allowed_sources = l->n_allowed_sources;
  }
  nlb_listener_stats_acquire(l->stats);
  route->stats = l->stats;
  for (size_t g = 0; g < snapshot->n_groups; g++)
    if (l->group_name && strcmp(snapshot->groups[g].name, l->group_name) == 0)
      route->group = &snapshot->groups[g];
  if (!route->lb_name || (l->endpoint_id && !route->endpoint_id) ||
      !route->group)
    return -ENOMEM;
  return 0;
}

int nlb_router_publish(struct nlb_router *router, uint64_t now_ms)
{
  struct nlb_snapshot *snapshot =
      nlb_snapshot_alloc(router->n_groups, router->n_listeners);
  bool slow_start = false;
  if (!snapshot)
    goto fail;
  for (size_t i = 0; i < router->n_groups; i++) {
    const struct nlb_group *group = router->groups[i];
    struct nlb_group_route *gr = &snapshot->groups[snapshot->n_groups++];
    for (size_t t = 0; t < group->n_targets; t++)
      if (in_slow_start(group, group->targets[t], now_ms))
        slow_start = true;
    gr->name = strdup(group->name);
    gr->pool = build_pool(group, now_ms);
    gr->proxy_protocol_v2 = group->settings.proxy_protocol_v2;
    gr->connect_retries = group->settings.connect_retries;
    gr->connect_timeout_ms = group->settings.connect_timeout_ms;
    if (!gr->name || !gr->pool)
      goto fail_release;
  }
  for (size_t i = 0; i < router->n_listeners; i++) {
    struct nlb_route *route = &snapshot->routes[snapshot->n_routes++];
    if (fill_route(snapshot, route, router->listeners[i]) < 0)
      goto fail_release;
  }
  snapshot->generation = ++router->generation;
  snapshot->access_json = router->access_json;
  router->slow_start_published = slow_start;
  nlb_snapshot_seal(snapshot);
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

/* Forgets the group's draining targets whose flows are gone or whose
 * deregistration delay has run out. Returns true when one was. */
static bool reap_drained(struct nlb_group *group, uint64_t now_ms)
{
  bool reaped = false;
  for (size_t i = 0; i < group->n_targets;) {
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
    group->targets[i] = group->targets[--group->n_targets];
    nlb_target_release(target);
    reaped = true;
  }
  return reaped;
}

void nlb_router_tick(struct nlb_router *router, uint64_t now_ms)
{
  bool changed = false, slow_start = false;

  for (size_t g = 0; g < router->n_groups; g++) {
    struct nlb_group *group = router->groups[g];
    for (size_t i = 0; i < group->n_targets; i++)
      if (in_slow_start(group, group->targets[i], now_ms))
        slow_start = true;
    if (reap_drained(group, now_ms))
      changed = true;
  }
  for (size_t g = 0; g < router->n_retired;) {
    struct nlb_group *group = router->retired[g];
    reap_drained(group, now_ms);
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
  if (!slow_start && router->slow_start_published)
    changed = true;
  if (changed)
    nlb_router_publish(router, now_ms);
}

/* A run-time target present with weight, or gone (weight 0: it drains).
 * Returns true when the group changed. Config targets are the config's:
 * the API cannot drain or reweigh them. */
static bool set_runtime_target(struct nlb_group *group,
                               const union nlb_sockaddr *address,
                               uint32_t weight, uint64_t now_ms)
{
  struct nlb_target *target = find_target(group, address);

  if (weight == 0) {
    if (!target || !target->runtime_registered ||
        atomic_load(&target->state) == NLB_TARGET_DRAINING)
      return false;
    start_draining(group, target, now_ms, "deregistered");
    return true;
  }
  if (target && !target->runtime_registered &&
      atomic_load(&target->state) != NLB_TARGET_DRAINING)
    return false;
  if (target && target->runtime_registered && target->weight == weight &&
      atomic_load(&target->state) != NLB_TARGET_DRAINING)
    return false;
  if (!target) {
    target = nlb_target_create(address, weight);
    if (!target || append_target(group, target) < 0) {
      if (target)
        nlb_target_release(target);
      NLB_LOG_EVENT(NLB_LOG_ERROR, "out_of_memory",
                    "target group {target_group}: out of memory",
                    NLB_LOG_STR("target_group", group->name));
      return false;
    }
    snprintf(target->reason, sizeof(target->reason), "registered");
    log_registered(group, target, "api");
  } else if (atomic_load(&target->state) == NLB_TARGET_DRAINING) {
    atomic_store(&target->drain_deadline_ms, 0);
    atomic_store(&target->state, NLB_TARGET_INITIAL);
    target->consecutive_ok = target->consecutive_fail = 0;
    snprintf(target->reason, sizeof(target->reason), "re-registered");
    NLB_LOG_EVENT(NLB_LOG_INFO, "target_state",
                  "target {target_group}/{target} state {from} -> {to} "
                  "({reason})",
                  NLB_LOG_STR("target_group", group->name),
                  NLB_LOG_STR("target", target->name),
                  NLB_LOG_STR("from", "draining"), NLB_LOG_STR("to", "initial"),
                  NLB_LOG_STR("reason", "re-registered"));
  }
  target->weight = weight;
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
  if (set_runtime_target(group, address, weight, now_ms))
    nlb_router_publish(router, now_ms);
  return 0;
}

static bool listed(const struct nlb_runtime_target *targets, size_t n,
                   const char *group, const union nlb_sockaddr *address)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp(targets[i].group, group) == 0 &&
        nlb_addr_equal(&targets[i].address, address))
      return true;
  return false;
}

void nlb_router_sync_runtime_targets(struct nlb_router *router,
                                     const struct nlb_runtime_target *targets,
                                     size_t n, uint64_t now_ms)
{
  bool changed = false;

  for (size_t i = 0; i < n; i++) {
    struct nlb_group *group = nlb_router_find_group(router, targets[i].group);

    if (group && set_runtime_target(group, &targets[i].address,
                                    targets[i].weight, now_ms))
      changed = true;
  }
  for (size_t g = 0; g < router->n_groups; g++) {
    struct nlb_group *group = router->groups[g];

    for (size_t t = 0; t < group->n_targets; t++) {
      struct nlb_target *target = group->targets[t];

      if (target->runtime_registered &&
          !listed(targets, n, group->name, &target->address) &&
          set_runtime_target(group, &target->address, 0, now_ms))
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
  if (state == NLB_TARGET_HEALTHY)
    target->healthy_since_ms = now_ms;
  NLB_LOG_EVENT(
      state == NLB_TARGET_UNHEALTHY ? NLB_LOG_WARN : NLB_LOG_INFO,
      "target_state",
      "target {target_group}/{target} state {from} -> {to} ({reason})",
      NLB_LOG_STR("target_group", group->name),
      NLB_LOG_STR("target", target->name),
      NLB_LOG_STR("from", nlb_target_state_name((enum nlb_target_state)old)),
      NLB_LOG_STR("to", nlb_target_state_name(state)),
      NLB_LOG_STR("reason", reason));
  nlb_router_publish(router, now_ms);
}

static int copy_sources(struct listener_record *l,
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
  return 0;
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
  size_t n_fds = n_ports * router->n_workers;
  struct listener_record **grown;
  int rc = -ENOMEM;

  for (size_t p = 0; p < n_ports; p++)
    if (nlb_router_endpoint_has_port(router, endpoint_id, ports[p])) {
      snprintf(err, err_size, "endpoint already listens on port %u", ports[p]);
      rc = -EEXIST;
      goto fail_close_fds;
    }
  grown = realloc(router->listeners,
                  (router->n_listeners + n_ports) * sizeof(*grown));
  if (!grown)
    goto fail_close_fds;
  router->listeners = grown;
  for (size_t p = 0; p < n_ports; p++) {
    struct listener_record *lb = find_lb_listener(router, lb_name, ports[p]);
    struct listener_record *l;
    if (!lb || !lb->group_name) {
      snprintf(err, err_size, "load balancer %s has no listener on port %u",
               lb_name, ports[p]);
      rc = -ENOENT;
      goto fail_remove_added;
    }
    l = calloc(1, sizeof(*l));
    if (!l)
      goto fail_remove_added;
    router->listeners[router->n_listeners++] = l;
    l->id = router->next_listener_id++;
    l->lb_name = strdup(lb_name);
    l->port = ports[p];
    l->has_bind = true;
    l->local = *address;
    nlb_addr_set_port(&l->local, ports[p]);
    l->group_name = strdup(lb->group_name);
    l->idle_timeout_ms = lb->idle_timeout_ms;
    l->endpoint_id = strdup(endpoint_id);
    l->stats = nlb_listener_stats_create();
    if (!l->lb_name || !l->group_name || !l->endpoint_id || !l->stats ||
        copy_sources(l, allowed_sources, n_allowed_sources) < 0)
      goto fail_remove_added;
  }
  if (nlb_router_publish(router, now_ms) < 0)
    goto fail_remove_added;
  for (size_t p = 0; p < n_ports; p++)
    for (size_t w = 0; w < router->n_workers; w++)
      nlb_worker_add_listener(router->workers[w],
                              router->listeners[first + p]->id,
                              fds[p * router->n_workers + w]);
  return 0;

fail_remove_added:
  while (router->n_listeners > first)
    free_listener(router->listeners[--router->n_listeners]);
fail_close_fds:
  for (size_t i = 0; i < n_fds; i++)
    close(fds[i]);
  if (rc == -ENOMEM && !err[0])
    snprintf(err, err_size, "out of memory");
  return rc;
}

int nlb_router_remove_endpoint(struct nlb_router *router,
                               const char *endpoint_id, uint64_t now_ms)
{
  bool found = false;
  for (size_t i = 0; i < router->n_listeners;) {
    struct listener_record *l = router->listeners[i];
    if (l->endpoint_id && strcmp(l->endpoint_id, endpoint_id) == 0) {
      remove_listener_at(router, i, true);
      found = true;
      continue;
    }
    i++;
  }
  if (!found)
    return -ENOENT;
  nlb_router_publish(router, now_ms);
  return 0;
}

int nlb_router_set_endpoint_sources(struct nlb_router *router,
                                    const char *endpoint_id,
                                    const struct nlb_cidr *allowed_sources,
                                    size_t n_allowed_sources, uint64_t now_ms)
{
  bool found = false;
  for (size_t i = 0; i < router->n_listeners; i++) {
    struct listener_record *l = router->listeners[i];
    if (!l->endpoint_id || strcmp(l->endpoint_id, endpoint_id) != 0)
      continue;
    if (copy_sources(l, allowed_sources, n_allowed_sources) < 0)
      return -ENOMEM;
    found = true;
  }
  if (!found)
    return -ENOENT;
  return nlb_router_publish(router, now_ms);
}

bool nlb_router_endpoint_has_port(const struct nlb_router *router,
                                  const char *endpoint_id, uint16_t port)
{
  for (size_t i = 0; i < router->n_listeners; i++)
    if (router->listeners[i]->endpoint_id &&
        router->listeners[i]->port == port &&
        strcmp(router->listeners[i]->endpoint_id, endpoint_id) == 0)
      return true;
  return false;
}

bool nlb_router_has_endpoint(const struct nlb_router *router,
                             const char *endpoint_id)
{
  for (size_t i = 0; i < router->n_listeners; i++)
    if (router->listeners[i]->endpoint_id &&
        strcmp(router->listeners[i]->endpoint_id, endpoint_id) == 0)
      return true;
  return false;
}

size_t nlb_router_worker_count(const struct nlb_router *router)
{
  return router->n_workers;
}

void nlb_router_stop_accepting(struct nlb_router *router)
{
  for (size_t w = 0; w < router->n_workers; w++)
    nlb_worker_stop_accepting(router->workers[w]);
}

void nlb_router_free(struct nlb_router *router)
{
  if (!router)
    return;
  for (size_t i = 0; i < router->n_groups; i++)
    free_group(router->groups[i]);
  free(router->groups);
  for (size_t i = 0; i < router->n_retired; i++)
    free_group(router->retired[i]);
  free(router->retired);
  for (size_t i = 0; i < router->n_listeners; i++)
    free_listener(router->listeners[i]);
  free(router->listeners);
  free(router);
}
