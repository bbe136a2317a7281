#include "nlb/services.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nlb/api.h"
#include "nlb/endpoints.h"
#include "nlb/log.h"
#include "nlb/registry.h"

/* Pending endpoints are checked for expiry this often. */
#define EXPIRY_CHECK_MS 10000

/* Old events are pruned at most this many per transaction, so the control
 * loop never stalls on a large backlog; a full batch is followed by the
 * next one at the next tick. */
#define PRUNE_BATCH 10000
/* ...and checked for this often (or every retention/2 if that is less,
 * but not more often than once a second). */
#define PRUNE_CHECK_MAX_MS 60000

struct nlb_services {
  uv_loop_t *loop;
  struct nlb_router *router;
  struct nlb_health *health;
  struct reg *reg;
  struct nlb_endpoints *endpoints;
  struct api_server *api;
  uint64_t last_expiry_check_ms;
  uint64_t event_retention_ms;
  uint64_t next_prune_ms;
};

/* The registry's view of the config: borrowed strings, arrays owned here
 * only for the call of reg_open/reg_reload. */
struct reg_view {
  struct reg_config cfg;
  struct reg_principal *principals;
  struct reg_network *networks;
  struct reg_load_balancer *load_balancers;
  uint16_t **ports;
  size_t n_load_balancers;
};

static void free_view(struct reg_view *view)
{
  free(view->principals);
  free(view->networks);
  for (size_t i = 0; i < view->n_load_balancers; i++)
    free(view->ports[i]);
  free(view->ports);
  free(view->load_balancers);
}

static int build_view(const struct nlb_config *cfg, struct reg_view *view)
{
  memset(view, 0, sizeof(*view));
  view->principals = calloc(cfg->n_principals + 1, sizeof(*view->principals));
  view->networks = calloc(cfg->n_networks + 1, sizeof(*view->networks));
  view->load_balancers =
      calloc(cfg->n_load_balancers + 1, sizeof(*view->load_balancers));
  view->ports = calloc(cfg->n_load_balancers + 1, sizeof(*view->ports));
  if (!view->principals || !view->networks || !view->load_balancers ||
      !view->ports)
    goto fail;
  for (size_t i = 0; i < cfg->n_principals; i++) {
    view->principals[i].name = cfg->principals[i].name;
    view->principals[i].role = (enum reg_role)cfg->principals[i].role;
  }
  for (size_t i = 0; i < cfg->n_networks; i++) {
    const struct nlb_config_network *net = &cfg->networks[i];
    view->networks[i].name = net->name;
    view->networks[i].netns = net->netns;
    view->networks[i].range = net->range_text;
    view->networks[i].principals = (const char *const *)net->principals;
    view->networks[i].n_principals = net->n_principals;
  }
  for (size_t i = 0; i < cfg->n_load_balancers; i++) {
    const struct nlb_config_load_balancer *lb = &cfg->load_balancers[i];
    struct reg_load_balancer *rlb = &view->load_balancers[i];
    view->ports[i] = calloc(lb->n_listeners + 1, sizeof(uint16_t));
    if (!view->ports[i])
      goto fail;
    view->n_load_balancers++;
    rlb->name = lb->name;
    rlb->ports = view->ports[i];
    rlb->n_ports = lb->n_listeners;
    for (size_t j = 0; j < lb->n_listeners; j++) {
      view->ports[i][j] = lb->listeners[j].port;
      if (cfg->target_groups[lb->listeners[j].target_group].proxy_protocol_v2)
        rlb->proxy_protocol = true;
    }
  }
  view->cfg.principals = view->principals;
  view->cfg.n_principals = cfg->n_principals;
  view->cfg.networks = view->networks;
  view->cfg.n_networks = cfg->n_networks;
  view->cfg.load_balancers = view->load_balancers;
  view->cfg.n_load_balancers = cfg->n_load_balancers;
  view->cfg.pending_expiry_ms = (int64_t)cfg->registry_pending_expiry_ms;
  return 0;

fail:
  free_view(view);
  return -ENOMEM;
}

static uint64_t loop_clock(void *arg)
{
  return uv_now(arg);
}

/* ---- the data plane as the API sees it ---- */

static void describe_target(const struct nlb_target *target,
                            struct api_target *out)
{
  memset(out, 0, sizeof(*out));
  snprintf(out->address, sizeof(out->address), "%s", target->name);
  out->weight = target->weight;
  out->state =
      nlb_target_state_name((enum nlb_target_state)atomic_load(&target->state));
  out->reason = target->reason;
}

static void api_list_target_groups(void *arg,
                                   void (*emit)(void *ctx, const char *group,
                                                const struct api_target *,
                                                size_t n),
                                   void *ctx)
{
  struct nlb_services *services = arg;
  for (size_t g = 0; g < nlb_router_group_count(services->router); g++) {
    struct nlb_group *group = nlb_router_group(services->router, g);
    struct api_target *targets = calloc(group->n_targets + 1, sizeof(*targets));
    if (!targets)
      return;
    for (size_t i = 0; i < group->n_targets; i++) {
      describe_target(group->targets[i], &targets[i]);
      /* A group no listener routes to has no use for its targets. */
      if (!group->in_use &&
          atomic_load(&group->targets[i]->state) != NLB_TARGET_DRAINING)
        targets[i].state = "unused";
    }
    emit(ctx, group->name, targets, group->n_targets);
    free(targets);
  }
}

static int api_register_target(void *arg, const char *group,
                               const char *address, uint32_t weight,
                               struct api_target *out)
{
  struct nlb_services *services = arg;
  union nlb_sockaddr addr;
  struct nlb_target *target;
  int rc;

  if (nlb_addr_parse(address, &addr) < 0 || nlb_addr_port(&addr) == 0)
    return -EINVAL;
  rc = nlb_router_register_target(services->router, group, &addr, weight,
                                  uv_now(services->loop), &target);
  if (rc < 0)
    return rc;
  nlb_health_sync(services->health);
  describe_target(target, out);
  return 0;
}

static int api_deregister_target(void *arg, const char *group,
                                 const char *address, struct api_target *out)
{
  struct nlb_services *services = arg;
  union nlb_sockaddr addr;
  struct nlb_target *target;
  int rc;

  if (nlb_addr_parse(address, &addr) < 0)
    return -ENOENT;
  rc = nlb_router_deregister_target(services->router, group, &addr,
                                    uv_now(services->loop), &target);
  if (rc < 0)
    return rc;
  nlb_health_sync(services->health);
  describe_target(target, out);
  return 0;
}

static char *api_metrics_text(void *arg)
{
  struct nlb_services *services = arg;
  return nlb_router_metrics(services->router);
}

static void api_endpoint_changed(void *arg, const char *endpoint_id)
{
  struct nlb_services *services = arg;
  if (services->endpoints)
    nlb_endpoints_refresh(services->endpoints, endpoint_id);
}

static const struct api_dataplane_ops dataplane_ops = {
    .endpoint_changed = api_endpoint_changed,
    .list_target_groups = api_list_target_groups,
    .register_target = api_register_target,
    .deregister_target = api_deregister_target,
    .metrics_text = api_metrics_text,
};

static void api_log(void *arg, int level, const char *line)
{
  nlb_log_event((enum nlb_log_level)(level & 3), "%s", line);
}

static int fill_api_settings(struct nlb_services *services,
                             const struct nlb_config *cfg,
                             struct api_settings *s,
                             struct api_principal **principals, char *listen,
                             size_t listen_size)
{
  *principals = calloc(cfg->n_principals + 1, sizeof(**principals));
  if (!*principals)
    return -ENOMEM;
  for (size_t i = 0; i < cfg->n_principals; i++) {
    (*principals)[i].name = cfg->principals[i].name;
    (*principals)[i].role = (enum reg_role)cfg->principals[i].role;
    memcpy((*principals)[i].token_sha256, cfg->principals[i].token_sha256, 32);
  }
  nlb_addr_format(&cfg->api_listen, listen, listen_size);
  memset(s, 0, sizeof(*s));
  s->listen = listen;
  s->tls_cert = cfg->api_tls_cert;
  s->tls_key = cfg->api_tls_key;
  s->principals = *principals;
  s->n_principals = cfg->n_principals;
  s->registry = services->reg;
  s->dataplane = &dataplane_ops;
  s->dataplane_arg = services;
  s->log_event = api_log;
  s->log_arg = services;
  return 0;
}

int nlb_services_start(uv_loop_t *loop, const struct nlb_config *cfg,
                       struct nlb_router *router, struct nlb_health *health,
                       struct nlb_services **out, char *err, size_t err_size)
{
  struct nlb_services *services = calloc(1, sizeof(*services));
  struct reg_view view;
  struct reg_error reg_err = {0};
  int rc;

  if (!services)
    return -ENOMEM;
  services->loop = loop;
  services->router = router;
  services->event_retention_ms = cfg->registry_event_retention_ms;
  services->health = health;
  if (cfg->has_registry) {
    rc = build_view(cfg, &view);
    if (rc < 0)
      goto fail_free;
    rc = reg_open(&services->reg, cfg->registry_path, &view.cfg, &reg_err);
    free_view(&view);
    if (rc < 0) {
      snprintf(err, err_size, "%s: registry %s: %s", cfg->path,
               cfg->registry_path,
               reg_err.message[0] ? reg_err.message : strerror(-rc));
      goto fail_free;
    }
    services->endpoints =
        nlb_endpoints_start(services->reg, router, loop_clock, loop);
    if (!services->endpoints) {
      rc = -ENOMEM;
      snprintf(err, err_size, "out of memory");
      goto fail_close_registry;
    }
  }
  if (cfg->has_api) {
    struct api_settings s;
    struct api_principal *principals;
    char listen[NLB_ADDR_TEXT_MAX];
    rc = fill_api_settings(services, cfg, &s, &principals, listen,
                           sizeof(listen));
    if (rc < 0)
      goto fail_stop_endpoints;
    rc = api_server_start(loop, &s, &services->api);
    free(principals);
    if (rc < 0) {
      snprintf(err, err_size, "%s: api: cannot serve on %s: %s", cfg->path,
               listen,
               rc == -EINVAL ? "bad TLS certificate or key (see log)"
                             : uv_strerror(rc));
      goto fail_stop_endpoints;
    }
  }
  *out = services;
  return 0;

fail_stop_endpoints:
  nlb_endpoints_free(services->endpoints);
fail_close_registry:
  reg_close(services->reg);
fail_free:
  free(services);
  return rc;
}

void nlb_services_reload(struct nlb_services *services,
                         const struct nlb_config *cfg)
{
  struct reg_view view;
  struct reg_error reg_err = {0};

  services->event_retention_ms = cfg->registry_event_retention_ms;
  services->next_prune_ms = 0;
  if (services->reg && build_view(cfg, &view) == 0) {
    if (reg_reload(services->reg, &view.cfg, &reg_err) < 0)
      nlb_log_event(NLB_LOG_ERROR, "reload: registry keeps its old config: %s",
                    reg_err.message);
    free_view(&view);
    nlb_endpoints_resync(services->endpoints);
  }
  if (services->api) {
    struct api_settings s;
    struct api_principal *principals;
    char listen[NLB_ADDR_TEXT_MAX];
    if (fill_api_settings(services, cfg, &s, &principals, listen,
                          sizeof(listen)) == 0) {
      if (api_server_reload(services->api, &s) < 0)
        nlb_log_event(NLB_LOG_ERROR, "reload: api keeps its old principals");
      free(principals);
    }
  }
}

/* The registry keeps wall-clock times. */
static int64_t wall_ms(void)
{
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  return (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
}

static void prune_events(struct nlb_services *services, uint64_t now_ms)
{
  uint64_t interval = services->event_retention_ms / 2;
  size_t removed = 0;
  int rc;

  if (now_ms < services->next_prune_ms)
    return;
  if (interval > PRUNE_CHECK_MAX_MS)
    interval = PRUNE_CHECK_MAX_MS;
  if (interval < 1000)
    interval = 1000;
  rc = reg_events_prune(services->reg,
                        wall_ms() - (int64_t)services->event_retention_ms,
                        PRUNE_BATCH, &removed);
  if (rc < 0)
    nlb_log_event(NLB_LOG_ERROR, "registry: cannot prune old events: %s",
                  strerror(-rc));
  else if (removed > 0)
    nlb_log_event(NLB_LOG_INFO,
                  "registry: pruned %zu events older than event_retention",
                  removed);
  services->next_prune_ms = removed == PRUNE_BATCH ? now_ms : now_ms + interval;
}

void nlb_services_tick(struct nlb_services *services, uint64_t now_ms)
{
  size_t expired = 0;
  if (services->endpoints)
    nlb_endpoints_tick(services->endpoints, now_ms);
  if (!services->reg)
    return;
  prune_events(services, now_ms);
  if (now_ms - services->last_expiry_check_ms < EXPIRY_CHECK_MS)
    return;
  services->last_expiry_check_ms = now_ms;
  if (reg_expire_pending(services->reg, wall_ms(), &expired) == 0 && expired)
    nlb_log_event(NLB_LOG_INFO, "%zu pending endpoints expired", expired);
}

void nlb_services_shutdown(struct nlb_services *services)
{
  if (services && services->api)
    api_server_shutdown(services->api);
}

void nlb_services_free(struct nlb_services *services)
{
  if (!services)
    return;
  api_server_free(services->api);
  nlb_endpoints_free(services->endpoints);
  reg_close(services->reg);
  free(services);
}
