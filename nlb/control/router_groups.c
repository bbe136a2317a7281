/* Target groups and their targets: applied from the config and at run time,
 * health and weights, draining and its deadline. */
#include "nlb/control/router-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nlb/dataplane/flow_kind.h"
#include "nlb/dataplane/listener.h"
#include "nlb/log.h"

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
                      router_hash_address(&target->address)) < 0)
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
    router_group_changed(group); /* an initial target may take flows */
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
  router_group_changed(group);
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
  router_group_changed(group);
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
  router_group_changed(group);
}

/* ---- apply: groups ------------------------------------------------------- */

/* Settings that a group's pool or its group route depend on. */
static bool routing_differs(const struct nlb_config_target_group *a,
                            const struct nlb_config_target_group *b)
{
  return a->algorithm != b->algorithm || a->fail_open != b->fail_open ||
         a->slow_start_ms != b->slow_start_ms ||
         a->proxy_protocol_v2 != b->proxy_protocol_v2 ||
         a->preserve_client_ip != b->preserve_client_ip ||
         a->connect_retries != b->connect_retries ||
         a->connect_timeout_ms != b->connect_timeout_ms;
}

static void copy_settings(struct nlb_group *group,
                          const struct nlb_config_target_group *cfg)
{
  if (!group->settings.name || routing_differs(&group->settings, cfg))
    router_group_changed(group);
  free(group->settings.name);
  free(group->settings.health.path);
  free(group->settings.health.host);
  nlb_tls_client_settings_free(&group->settings.tls);
  group->settings = *cfg;
  if (nlb_tls_client_settings_copy(&group->settings.tls, &cfg->tls) < 0)
    group->settings.tls.enabled = false; /* ENOMEM: its context goes too */
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
    struct nlb_target *target = router_find_target(group, &ct->address);
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
int router_apply_groups(struct nlb_router *router, const struct nlb_config *cfg,
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
      router_free_group(old); /* its targets are simply not reported unused */
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

  router_reap_routes(router);
  for (size_t g = 0; g < router->n_groups; g++) {
    struct nlb_group *group = router->groups[g];
    if (group->slow_start_until_ms > now_ms) {
      slow_start = true;
      if (now_ms - router->last_slow_start_publish_ms >=
          SLOW_START_REPUBLISH_MS)
        router_group_changed(group);
    }
    if (group->n_draining > 0)
      reap_drained(router, group, now_ms);
  }
  for (size_t g = 0; g < router->n_retired;) {
    struct nlb_group *group = router->retired[g];
    reap_drained(router, group, now_ms);
    if (group->n_targets == 0) {
      router_free_group(group);
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
        router_group_changed(router->groups[g]);
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
  struct nlb_target *target = router_find_target(group, address);
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
    if ((target = router_find_target(group, &targets[i].address)) != NULL)
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
    router_group_changed(group);
    router->flush_due = true;
  }
}

/* ---- endpoints ----------------------------------------------------------- */
