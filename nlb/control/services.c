#include "build-config.h"
#include "nlb/control/services.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/api.h"
#include "nlb/dns/dns-endpoints.h"
#include "nlb/control/endpoints.h"
#include "nlb/common/hmap.h"
#include "nlb/common/inherit.h"
#include "nlb/log.h"
#include "nlb/metrics.h"
#include "nlb/control/regloop.h"
#include "nlb/registry.h"

struct nlb_services {
  uv_loop_t *loop;
  struct nlb_router *router;
  struct nlb_health *health;
  struct nlb_regloop *regloop;
  struct nlb_endpoints *endpoints;
  struct nlb_dns_endpoints *dns;
  struct api_server *api;
  bool drain_requested; /* this node's record says draining */
  bool
      handed_over; /* an upgrade's new process serves: nlb_services_hand_over */
  uint64_t view;   /* view_fingerprint() of the config applied */
};

/* The registry's view of the config: borrowed strings, arrays owned here
 * only for the call of reg_open/reg_reload. */
struct reg_view {
  struct reg_config cfg;
  struct reg_principal *principals;
  struct reg_network *networks;
  struct reg_load_balancer *load_balancers;
  const char **target_groups;
  const char **preserve_groups;  /* reg_config.preserve_client_ip_groups */
  const char **preserve_targets; /* texts in preserve_text */
  const char **preserve_target_groups;
  char (*preserve_text)[NLB_ADDR_TEXT_MAX];
  uint16_t **ports;
  size_t n_load_balancers;
  struct reg_netns_mapping node_networks[REG_NODE_NETWORKS_MAX];
};

static void free_view(struct reg_view *view)
{
  free(view->principals);
  free(view->networks);
  for (size_t i = 0; i < view->n_load_balancers; i++)
    free(view->ports[i]);
  free(view->ports);
  free(view->load_balancers);
  free(view->target_groups);
  free(view->preserve_groups);
  free(view->preserve_targets);
  free(view->preserve_target_groups);
  free(view->preserve_text);
}

static int view_load_balancers(const struct nlb_config *cfg,
                               struct reg_view *view)
{
  for (size_t i = 0; i < cfg->n_load_balancers; i++) {
    const struct nlb_config_load_balancer *lb = &cfg->load_balancers[i];
    struct reg_load_balancer *rlb = &view->load_balancers[i];

    view->ports[i] = calloc(lb->n_listeners + 1, sizeof(uint16_t));
    if (!view->ports[i])
      return -ENOMEM;
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
  return 0;
}

/* The preserve_client_ip groups and their configured targets. */
static int view_preserve_client_ip(const struct nlb_config *cfg,
                                   struct reg_view *view)
{
  size_t n_targets = 0, n_groups = 0;

  for (size_t i = 0; i < cfg->n_target_groups; i++)
    if (cfg->target_groups[i].preserve_client_ip)
      n_targets += cfg->target_groups[i].n_targets;
  view->preserve_groups =
      calloc(cfg->n_target_groups + 1, sizeof(*view->preserve_groups));
  view->preserve_targets = calloc(n_targets + 1, sizeof(char *));
  view->preserve_target_groups = calloc(n_targets + 1, sizeof(char *));
  view->preserve_text = calloc(n_targets + 1, sizeof(*view->preserve_text));
  if (!view->preserve_groups || !view->preserve_targets ||
      !view->preserve_target_groups || !view->preserve_text)
    return -ENOMEM;
  n_targets = 0;
  for (size_t i = 0; i < cfg->n_target_groups; i++) {
    const struct nlb_config_target_group *tg = &cfg->target_groups[i];
    if (!tg->preserve_client_ip)
      continue;
    view->preserve_groups[n_groups++] = tg->name;
    for (size_t t = 0; t < tg->n_targets; t++, n_targets++) {
      view->preserve_targets[n_targets] = nlb_addr_format(
          &tg->targets[t].address, view->preserve_text[n_targets],
          sizeof(view->preserve_text[n_targets]));
      view->preserve_target_groups[n_targets] = tg->name;
    }
  }
  view->cfg.preserve_client_ip_groups = view->preserve_groups;
  view->cfg.n_preserve_client_ip_groups = n_groups;
  view->cfg.preserve_client_ip_targets = view->preserve_targets;
  view->cfg.preserve_client_ip_target_groups = view->preserve_target_groups;
  view->cfg.n_preserve_client_ip_targets = n_targets;
  return 0;
}

static int build_view(const struct nlb_config *cfg, struct reg_view *view)
{
  memset(view, 0, sizeof(*view));
  view->principals = calloc(cfg->n_principals + 1, sizeof(*view->principals));
  view->networks = calloc(cfg->n_networks + 1, sizeof(*view->networks));
  view->load_balancers =
      calloc(cfg->n_load_balancers + 1, sizeof(*view->load_balancers));
  view->ports = calloc(cfg->n_load_balancers + 1, sizeof(*view->ports));
  view->target_groups =
      calloc(cfg->n_target_groups + 1, sizeof(*view->target_groups));
  if (!view->principals || !view->networks || !view->load_balancers ||
      !view->ports || !view->target_groups ||
      view_load_balancers(cfg, view) < 0 ||
      view_preserve_client_ip(cfg, view) < 0) {
    free_view(view);
    return -ENOMEM;
  }
  for (size_t i = 0; i < cfg->n_principals; i++) {
    view->principals[i].name = cfg->principals[i].name;
    view->principals[i].role = (enum reg_role)cfg->principals[i].role;
    view->principals[i].dns_domains =
        (const char *const *)cfg->principals[i].dns_domains;
    view->principals[i].n_dns_domains = cfg->principals[i].n_dns_domains;
  }
  for (size_t i = 0; i < cfg->n_networks; i++) {
    const struct nlb_config_network *net = &cfg->networks[i];
    view->networks[i].name = net->name;
    view->networks[i].netns = net->netns;
    view->networks[i].range = net->range_text;
    view->networks[i].principals = (const char *const *)net->principals;
    view->networks[i].n_principals = net->n_principals;
    view->networks[i].dns = net->has_dns ? net->dns_text : NULL;
  }
  for (size_t i = 0; i < cfg->n_target_groups; i++)
    view->target_groups[i] = cfg->target_groups[i].name;
  view->cfg.principals = view->principals;
  view->cfg.n_principals = cfg->n_principals;
  view->cfg.networks = view->networks;
  view->cfg.n_networks = cfg->n_networks;
  view->cfg.load_balancers = view->load_balancers;
  view->cfg.n_load_balancers = cfg->n_load_balancers;
  view->cfg.target_groups = view->target_groups;
  view->cfg.n_target_groups = cfg->n_target_groups;
  view->cfg.pending_expiry_ms = (int64_t)cfg->registry_pending_expiry_ms;
  view->cfg.service_quota = cfg->registry_service_quota;
  view->cfg.write_timeout_ms = (uint32_t)cfg->registry_write_timeout_ms;
  view->cfg.read_timeout_ms = (uint32_t)cfg->registry_read_timeout_ms;
  for (size_t i = 0; i < cfg->n_node_networks && i < REG_NODE_NETWORKS_MAX;
       i++) {
    view->node_networks[i].network = cfg->node_networks[i].network;
    view->node_networks[i].netns = cfg->node_networks[i].netns;
  }
  view->cfg.node_networks = view->node_networks;
  view->cfg.n_node_networks = cfg->n_node_networks;
  view->cfg.node = cfg->node_name;
  view->cfg.version = PACKAGE_VERSION;
  view->cfg.dns_zone = cfg->has_dns ? cfg->dns_zone : NULL;
  return 0;
}

/* The registry's view of the config, as a number: the rows the change
 * feed hands over depend on nothing else of it (load balancers' ports,
 * namespaces, DNS names and zone, run-time target groups...). A reload
 * that leaves it alone needs no resync (reading every endpoint again: 0.3
 * s at 10,000). */
static uint64_t mix(uint64_t h, const char *text)
{
  return h * 1099511628211ULL ^ nlb_hash_str(text ? text : "\x01");
}

static uint64_t view_fingerprint(const struct reg_config *c)
{
  uint64_t h = nlb_hash_str("view");

  for (size_t i = 0; i < c->n_principals; i++) {
    h = mix(h, c->principals[i].name) + c->principals[i].role;
    for (size_t j = 0; j < c->principals[i].n_dns_domains; j++)
      h = mix(h, c->principals[i].dns_domains[j]);
  }
  for (size_t i = 0; i < c->n_networks; i++) {
    const struct reg_network *n = &c->networks[i];
    h = mix(mix(mix(mix(h, n->name), n->netns), n->range), n->dns);
    for (size_t j = 0; j < n->n_principals; j++)
      h = mix(h, n->principals[j]);
  }
  for (size_t i = 0; i < c->n_load_balancers; i++) {
    const struct reg_load_balancer *lb = &c->load_balancers[i];
    h = mix(h, lb->name) + lb->proxy_protocol;
    for (size_t j = 0; j < lb->n_ports; j++)
      h = h * 31 + lb->ports[j];
  }
  for (size_t i = 0; i < c->n_target_groups; i++)
    h = mix(h, c->target_groups[i]);
  for (size_t i = 0; i < c->n_node_networks; i++)
    h = mix(mix(h, c->node_networks[i].network), c->node_networks[i].netns);
  h = mix(mix(h, c->node), c->dns_zone);
  return h * 31 + (uint64_t)c->pending_expiry_ms * 7 + c->service_quota;
}

static uint64_t loop_clock(void *arg)
{
  struct nlb_services *services = arg;

  return uv_now(services->loop);
}

/* ---- the change feed ---------------------------------------------------- */

/* Run-time targets: the whole set after a resync, else the ones named. */
static void apply_targets(struct nlb_services *services,
                          const struct reg_changes *c)
{
  uint64_t now = uv_now(services->loop);
  struct nlb_runtime_target *v = calloc(c->n_targets + 1, sizeof(*v));
  size_t n = 0;

  if (v == NULL)
    return;
  for (size_t i = 0; i < c->n_targets; i++)
    if (nlb_addr_parse(c->targets[i].address, &v[n].address) == 0) {
      v[n].group = c->targets[i].target_group;
      v[n++].weight = c->targets[i].weight;
    }
  if (c->resync) {
    nlb_router_sync_runtime_targets(services->router, v, n, now);
  } else {
    for (size_t i = 0; i < c->n_events; i++) {
      const struct reg_event *ev = &c->events[i];
      union nlb_sockaddr address;
      uint32_t weight = 0;

      if (ev->target[0] == '\0' || nlb_addr_parse(ev->target, &address) < 0)
        continue;
      for (size_t k = 0; k < n; k++)
        if (strcmp(v[k].group, ev->target_group) == 0 &&
            nlb_addr_equal(&v[k].address, &address))
          weight = v[k].weight;
      nlb_router_set_runtime_target(services->router, ev->target_group,
                                    &address, weight, now);
    }
    nlb_router_flush(services->router, now);
  }
  free(v);
  nlb_health_sync(services->health);
}

static void on_changes(const struct reg_changes *c, void *arg)
{
  struct nlb_services *services = arg;

  /* Handed over: the new process applies the registry's changes; this one
   * opening an endpoint's listener now would find its address taken, by
   * the new one, and say the endpoint failed. */
  if (services->handed_over)
    return;

  if (services->endpoints)
    nlb_endpoints_apply(services->endpoints, c);
  if (services->dns)
    nlb_dns_endpoints_apply(services->dns, c);
  if (services->router && (c->resync || c->n_targets > 0 || c->n_events > 0))
    apply_targets(services, c);
  if (c->node_draining && !services->drain_requested) {
    NLB_LOG_EVENT(NLB_LOG_INFO, "node_drain",
                  "registry: this node was asked to drain");
    services->drain_requested = true;
  }
  if (services->api)
    api_server_changes(services->api, c);
}

/* ---- placements --------------------------------------------------------- */

struct report_job {
  struct reg_placement_report *reports;
  char (*ids)[REG_ID_BUF];
  char (*reasons)[REG_REASON_BUF];
  size_t n;
};

static void run_report(struct reg *reg, void *arg)
{
  struct report_job *job = arg;
  int rc = reg_placements_report(reg, job->reports, job->n);

  if (rc < 0)
    NLB_LOG_EVENT(NLB_LOG_ERROR, "registry_error",
                  "registry: cannot record {placements} placements of this "
                  "node: {error}",
                  NLB_LOG_UINT("placements", job->n),
                  NLB_LOG_STR("error", strerror(-rc)));
}

static void free_report(void *arg)
{
  struct report_job *job = arg;

  free(job->reports);
  free(job->ids);
  free(job->reasons);
  free(job);
}

/* The applier's reports are borrowed: copied for the registry's thread. */
static void report_placements(const struct reg_placement_report *reports,
                              size_t n, void *arg)
{
  struct nlb_services *services = arg;
  struct report_job *job = calloc(1, sizeof(*job));

  if (job == NULL || !(job->reports = calloc(n, sizeof(*job->reports))) ||
      !(job->ids = calloc(n, sizeof(*job->ids))) ||
      !(job->reasons = calloc(n, sizeof(*job->reasons)))) {
    if (job)
      free_report(job);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    snprintf(job->ids[i], REG_ID_BUF, "%s", reports[i].endpoint_id);
    snprintf(job->reasons[i], REG_REASON_BUF, "%s",
             reports[i].reason ? reports[i].reason : "");
    job->reports[i].endpoint_id = job->ids[i];
    job->reports[i].reason = job->reasons[i];
    job->reports[i].open = reports[i].open;
  }
  job->n = n;
  if (nlb_regloop_submit(services->regloop, run_report, free_report, job) < 0)
    free_report(job);
}

/* ---- the API's view of the data plane and the registry ------------------ */

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

/* The data plane's text and, for an operator, the DNS responders'. */
static char *all_metrics_text(struct nlb_services *services)
{
  char *text = nlb_metrics_text(services->router, NULL);
  char *dns = services->dns ? nlb_dns_endpoints_metrics(services->dns) : NULL;
  char *both;

  if (text == NULL || dns == NULL) {
    free(dns);
    return text;
  }
  both = realloc(text, strlen(text) + strlen(dns) + 1);
  if (both != NULL)
    strcat(both, dns);
  free(dns);
  return both ? both : text;
}

static char *api_metrics_text(void *arg, const struct api_metrics_scope *scope)
{
  struct nlb_services *services = arg;
  struct nlb_metrics_scope listeners;

  /* A provider sees no DNS series: they are about consumers' networks. */
  if (!scope)
    return all_metrics_text(services);
  listeners = (struct nlb_metrics_scope){
      .load_balancers = scope->load_balancers,
      .n_load_balancers = scope->n_load_balancers,
      .endpoints = scope->endpoints,
      .n_endpoints = scope->n_endpoints,
  };
  return nlb_metrics_text(services->router, &listeners);
}

static const struct api_dataplane_ops dataplane_ops = {
    .list_target_groups = api_list_target_groups,
    .metrics_text = api_metrics_text,
};

static int registry_submit(void *ctx, void (*run)(struct reg *, void *),
                           void (*done)(void *), void *arg)
{
  return nlb_regloop_submit(ctx, run, done, arg);
}

static bool registry_store_available(void *ctx)
{
  return nlb_regloop_store_available(ctx);
}

static int registry_submit_read(void *ctx, void (*run)(struct reg *, void *),
                                void (*done)(void *), void *arg)
{
  return nlb_regloop_submit_read(ctx, run, done, arg);
}

static const struct api_registry_ops registry_ops = {
    .submit = registry_submit,
    .store_available = registry_store_available,
    .submit_read = registry_submit_read,
};

static void api_log(void *arg, int level, const char *line)
{
  nlb_log_emit((enum nlb_log_level)(level & 3), "api", line, NULL, 0);
}

static void api_log_request(void *arg, const char *principal, const char *role,
                            const char *method, const char *path, int status)
{
  NLB_LOG_EVENT(NLB_LOG_INFO, "api_request",
                "api audit: principal={principal} role={role} "
                "method={method} path={path} status={status}",
                NLB_LOG_STR("principal", principal), NLB_LOG_STR("role", role),
                NLB_LOG_STR("method", method), NLB_LOG_STR("path", path),
                NLB_LOG_INT("status", status));
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
  s->limits = &cfg->api_limits;
  if (services->regloop) {
    s->registry = &registry_ops;
    s->registry_ctx = services->regloop;
  }
  s->dataplane = &dataplane_ops;
  s->dataplane_arg = services;
  s->log_event = api_log;
  s->log_request = api_log_request;
  s->log_arg = services;
  return 0;
}

/* ---- DNS ---------------------------------------------------------------- */

/* The responders the config asks for: cfg->dns and each network's dns. */
static int configure_dns(struct nlb_services *services,
                         const struct nlb_config *cfg)
{
  struct nlb_dns_endpoints_network *v = calloc(cfg->n_networks + 1, sizeof(*v));
  struct nlb_dns_endpoints_settings s = {
      .zone = cfg->has_dns ? cfg->dns_zone : NULL,
      .ttl = cfg->dns_ttl,
      .negative_ttl = cfg->dns_negative_ttl,
      .tcp_per_client = cfg->dns_tcp_per_client,
      .access_json = cfg->log_access_format == NLB_LOG_JSON,
      .networks = v,
  };
  int rc;

  if (v == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < cfg->n_networks; i++) {
    if (!cfg->networks[i].has_dns)
      continue;
    v[s.n_networks].name = cfg->networks[i].name;
    v[s.n_networks].netns = cfg->networks[i].netns;
    v[s.n_networks++].address = cfg->networks[i].dns;
  }
  rc = nlb_dns_endpoints_configure(services->dns, &s);
  free(v);
  return rc;
}

/* ---- lifetime ----------------------------------------------------------- */

static int open_registry(struct nlb_services *services,
                         const struct nlb_config *cfg, char *err,
                         size_t err_size)
{
  struct nlb_regloop_settings s = {0};
  struct reg_error reg_err = {0};
  struct reg_view view;
  int rc;

  if ((rc = build_view(cfg, &view)) < 0) {
    snprintf(err, err_size, "out of memory");
    return rc;
  }
  s.url = cfg->registry_url;
  s.config = &view.cfg;
  s.retention.events_ms = cfg->registry_event_retention_ms;
  s.retention.endpoints_ms = cfg->registry_endpoint_retention_ms;
  s.on_changes = on_changes;
  s.arg = services;
  rc = nlb_regloop_start(services->loop, &s, &services->regloop, &reg_err);
  services->view = view_fingerprint(&view.cfg);
  free_view(&view);
  if (rc < 0)
    snprintf(err, err_size, "%s: %s", cfg->path,
             reg_err.message[0] ? reg_err.message : strerror(-rc));
  return rc;
}

int nlb_services_open(uv_loop_t *loop, const struct nlb_config *cfg,
                      struct nlb_services **out, char *err, size_t err_size)
{
  struct nlb_services *services = calloc(1, sizeof(*services));
  int rc;

  if (!services)
    return -ENOMEM;
  services->loop = loop;
  if (cfg->has_registry &&
      (rc = open_registry(services, cfg, err, err_size)) < 0) {
    free(services);
    return rc;
  }
  *out = services;
  return 0;
}

int nlb_services_start(struct nlb_services *services,
                       const struct nlb_config *cfg, struct nlb_router *router,
                       struct nlb_health *health, char *err, size_t err_size)
{
  struct nlb_endpoints_settings eps = {router, loop_clock, report_placements,
                                       services};
  int rc;

  services->router = router;
  services->health = health;
  if (services->regloop) {
    if ((services->endpoints = nlb_endpoints_create(&eps)) == NULL ||
        (services->dns = nlb_dns_endpoints_new(services->loop)) == NULL) {
      snprintf(err, err_size, "out of memory");
      return -ENOMEM;
    }
    /* Before the state read at open is applied: it fills the records. */
    if ((rc = configure_dns(services, cfg)) < 0) {
      snprintf(err, err_size, "%s: dns: %s", cfg->path, strerror(-rc));
      nlb_dns_endpoints_shutdown(services->dns);
      return rc;
    }
    /* The state read at open: endpoints open before nlbd says it started. */
    nlb_regloop_apply(services->regloop);
    NLB_LOG_EVENT(NLB_LOG_INFO, "registry_open",
                  "registry: {store} store, node {node}, {endpoints} "
                  "endpoints open",
                  NLB_LOG_STR("store", nlb_regloop_store(services->regloop)),
                  NLB_LOG_STR("node", cfg->node_name),
                  NLB_LOG_UINT("endpoints",
                               nlb_endpoints_open_count(services->endpoints)));
  }
  if (cfg->has_api) {
    struct api_settings s;
    struct api_principal *principals;
    char listen[NLB_ADDR_TEXT_MAX];
    rc = fill_api_settings(services, cfg, &s, &principals, listen,
                           sizeof(listen));
    if (rc < 0)
      return rc;
    s.listen_fd = nlb_inherit_take(&cfg->api_listen, SOCK_STREAM);
    rc = api_server_start(services->loop, &s, &services->api);
    free(principals);
    if (rc < 0) {
      nlb_dns_endpoints_shutdown(services->dns);
      snprintf(err, err_size, "%s: api: cannot serve on %s: %s", cfg->path,
               listen,
               rc == -EINVAL ? "bad TLS certificate or key (see log)"
                             : uv_strerror(rc));
      return rc;
    }
  }
  return 0;
}

void nlb_services_reload(struct nlb_services *services,
                         const struct nlb_config *cfg)
{
  struct reg_view view;
  struct reg_error reg_err = {0};

  struct nlb_regloop_retention retention = {
      cfg->registry_event_retention_ms, cfg->registry_endpoint_retention_ms};

  if (services->dns && configure_dns(services, cfg) < 0)
    NLB_LOG_EVENT(NLB_LOG_ERROR, "dns_failed",
                  "reload: dns: cannot take the new settings (see above)");
  if (services->regloop && build_view(cfg, &view) == 0) {
    uint64_t fingerprint = view_fingerprint(&view.cfg);

    if (nlb_regloop_reload(services->regloop, &view.cfg, &retention, &reg_err) <
        0)
      NLB_LOG_EVENT(NLB_LOG_ERROR, "registry_error",
                    "reload: registry keeps its old config: {error}",
                    NLB_LOG_STR("error", reg_err.message));
    /* The rows carry the load balancers' ports, this node's namespaces
     * and the DNS names: when the view changed, read the whole state
     * again. */
    else if (fingerprint != services->view) {
      nlb_regloop_resync(services->regloop);
      services->view = fingerprint;
    }
    free_view(&view);
  }
  if (services->api) {
    struct api_settings s;
    struct api_principal *principals;
    char listen[NLB_ADDR_TEXT_MAX];
    if (fill_api_settings(services, cfg, &s, &principals, listen,
                          sizeof(listen)) == 0) {
      if (api_server_reload(services->api, &s) < 0)
        NLB_LOG_EVENT(NLB_LOG_ERROR, "api_error",
                      "reload: api keeps its old principals");
      free(principals);
    }
  }
}

void nlb_services_tick(struct nlb_services *services, uint64_t now_ms)
{
  if (services->endpoints)
    nlb_endpoints_tick(services->endpoints, now_ms);
  if (services->dns)
    nlb_dns_endpoints_tick(services->dns);
}

bool nlb_services_drain_requested(const struct nlb_services *services)
{
  return services->drain_requested;
}

struct drain_job {
  char node[REG_NAME_BUF];
};

static void run_drain(struct reg *reg, void *arg)
{
  struct drain_job *job = arg;
  const struct reg_actor system = {REG_SYSTEM_PRINCIPAL, REG_ROLE_OPERATOR};
  struct reg_error err;

  if (reg_node_drain(reg, &system, job->node, NULL, &err) < 0)
    NLB_LOG_EVENT(NLB_LOG_WARN, "registry_error",
                  "registry: cannot mark node {node} draining: {error}",
                  NLB_LOG_STR("node", job->node),
                  NLB_LOG_STR("error", err.message));
}

void nlb_services_draining(struct nlb_services *services, const char *node)
{
  struct drain_job *job;

  services->drain_requested = true;
  if (!services->regloop || (job = calloc(1, sizeof(*job))) == NULL)
    return;
  snprintf(job->node, sizeof(job->node), "%s", node);
  if (nlb_regloop_submit(services->regloop, run_drain, free, job) < 0)
    free(job);
}

void nlb_services_shutdown(struct nlb_services *services)
{
  if (services && services->api)
    api_server_shutdown(services->api);
  if (services)
    nlb_dns_endpoints_shutdown(services->dns);
}

void nlb_services_hand_over(struct nlb_services *services)
{
  if (!services)
    return;
  services->handed_over = true;
  nlb_services_shutdown(services);
}

void nlb_services_free(struct nlb_services *services)
{
  if (!services)
    return;
  /* The API's answers under way end (cancelled) before the server goes. */
  nlb_regloop_stop(services->regloop);
  api_server_free(services->api);
  nlb_endpoints_free(services->endpoints);
  nlb_dns_endpoints_free(services->dns);
  free(services);
}
