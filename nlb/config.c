/* The config file: the top level (workers, CPUs, shutdown, max_flows), the
 * log and the API, and the one table of sections, each parsed beside the
 * module that owns it (config-sections.h). */
#include "nlb/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nlb/config-sections.h"
#include "nlb/common/duration.h"
#include "nlb/cpus.h"
#include "nlb/lb.h"

/* A log destination: "stderr", "off", or a path. */
static char *log_destination(const struct conf_loader *ld, const char *text)
{
  if (strcmp(text, "stderr") == 0 || strcmp(text, "off") == 0)
    return conf_dup_or_die(text);
  return conf_resolve_path(ld, text);
}

static void get_log_format(struct conf_loader *ld, const config_setting_t *log,
                           const char *name, enum nlb_log_format *out)
{
  const char *text;
  if (!conf_get_string(ld, log, name, &text))
    return;
  if (strcmp(text, "text") == 0)
    *out = NLB_LOG_TEXT;
  else if (strcmp(text, "json") == 0)
    *out = NLB_LOG_JSON;
  else
    conf_fail_at(ld, conf_line_of(conf_member_of(log, name)),
                 "%s must be \"text\" or \"json\", not \"%s\"", name, text);
}

static void load_log(struct conf_loader *ld, const config_setting_t *root,
                     struct nlb_config *cfg)
{
  static const char *const keys[] = {
      "access", "access_format",   "events", "events_format",
      "level",  "priority_prefix", NULL};
  const config_setting_t *log = conf_member_of(root, "log");
  const char *text;
  bool priority_prefix;

  cfg->log_access = conf_dup_or_die("stderr");
  cfg->log_events = conf_dup_or_die("stderr");
  cfg->log_level = 1;
  cfg->log_access_format = NLB_LOG_TEXT;
  cfg->log_events_format = NLB_LOG_TEXT;
  cfg->log_priority_prefix = -1;
  if (!log)
    return;
  if (!config_setting_is_group(log)) {
    conf_fail_at(ld, conf_line_of(log), "'log' must be a group { ... }");
    return;
  }
  conf_check_keys(ld, log, "log", keys);
  if (conf_get_string(ld, log, "access", &text)) {
    free(cfg->log_access);
    cfg->log_access = log_destination(ld, text);
  }
  if (conf_get_string(ld, log, "events", &text)) {
    free(cfg->log_events);
    cfg->log_events = log_destination(ld, text);
  }
  get_log_format(ld, log, "access_format", &cfg->log_access_format);
  get_log_format(ld, log, "events_format", &cfg->log_events_format);
  if (conf_get_bool(ld, log, "priority_prefix", &priority_prefix))
    cfg->log_priority_prefix = priority_prefix;
  if (conf_get_string(ld, log, "level", &text)) {
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    int found = -1;
    for (int i = 0; i < 4; i++)
      if (strcmp(levels[i], text) == 0)
        found = i;
    if (found < 0)
      conf_fail_at(ld, conf_line_of(conf_member_of(log, "level")),
                   "level must be debug, info, warn or error, not \"%s\"",
                   text);
    else
      cfg->log_level = found;
  }
}

/* api.limits = { operator = { connections; requests; event_streams; };
 * provider = ...; consumer = ...; operator_reserve; }: what the file says
 * over API_DEFAULT_LIMITS. */
static void load_api_limits(struct conf_loader *ld, const config_setting_t *api,
                            struct api_limits *limits)
{
  static const char *const keys[] = {"operator", "provider", "consumer",
                                     "operator_reserve", NULL};
  static const char *const roles[API_ROLES] = {
      [NLB_ROLE_OPERATOR] = "operator",
      [NLB_ROLE_PROVIDER] = "provider",
      [NLB_ROLE_CONSUMER] = "consumer",
  };
  static const char *const role_keys[] = {"connections", "requests",
                                          "event_streams", NULL};
  const config_setting_t *group = conf_member_of(api, "limits");
  long long value;

  *limits = (struct api_limits)API_DEFAULT_LIMITS;
  if (!group)
    return;
  if (!config_setting_is_group(group)) {
    conf_fail_at(ld, conf_line_of(group),
                 "'api.limits' must be a group { ... }");
    return;
  }
  conf_check_keys(ld, group, "api.limits", keys);
  if (conf_get_int(ld, group, "operator_reserve", 0, API_MAX_CONNECTIONS / 2,
                   &value))
    limits->operator_reserve = (uint32_t)value;
  for (int r = 0; r < API_ROLES; r++) {
    const char *role = roles[r];
    const config_setting_t *limit = conf_member_of(group, role);
    struct api_principal_limits *l = &limits->role[r];
    char what[32];

    if (!limit)
      continue;
    snprintf(what, sizeof(what), "api.limits.%s", role);
    if (!config_setting_is_group(limit)) {
      conf_fail_at(ld, conf_line_of(limit),
                   "'%s' must be a group { connections; requests; "
                   "event_streams; }",
                   what);
      continue;
    }
    conf_check_keys(ld, limit, what, role_keys);
    if (conf_get_int(ld, limit, "connections", 0, API_MAX_CONNECTIONS, &value))
      l->connections = (uint32_t)value;
    if (conf_get_int(ld, limit, "requests", 0, 1000000, &value))
      l->requests = (uint32_t)value;
    if (conf_get_int(ld, limit, "event_streams", 0, 1000000, &value))
      l->event_streams = (uint32_t)value;
  }
}

static void load_api(struct conf_loader *ld, const config_setting_t *root,
                     struct nlb_config *cfg)
{
  static const char *const keys[] = {"listen", "tls", "insecure", "limits",
                                     NULL};
  static const char *const tls_keys[] = {"cert", "key", NULL};
  const config_setting_t *api = conf_member_of(root, "api");
  const config_setting_t *tls;
  const char *text = "127.0.0.1:9180";

  if (!api)
    return;
  if (!config_setting_is_group(api)) {
    conf_fail_at(ld, conf_line_of(api), "'api' must be a group { ... }");
    return;
  }
  conf_check_keys(ld, api, "api", keys);
  cfg->has_api = true;
  load_api_limits(ld, api, &cfg->api_limits);
  conf_get_string(ld, api, "listen", &text);
  if (nlb_addr_parse(text, &cfg->api_listen) < 0)
    conf_fail_at(ld,
                 conf_line_of(conf_member_of(api, "listen")
                                  ? conf_member_of(api, "listen")
                                  : api),
                 "api.listen \"%s\" is not ADDRESS:PORT", text);
  conf_get_bool(ld, api, "insecure", &cfg->api_insecure);
  tls = conf_member_of(api, "tls");
  if (tls) {
    const char *cert = NULL, *key = NULL;
    if (!config_setting_is_group(tls)) {
      conf_fail_at(ld, conf_line_of(tls),
                   "'tls' must be a group { cert; key; }");
      return;
    }
    conf_check_keys(ld, tls, "api.tls", tls_keys);
    conf_get_string(ld, tls, "cert", &cert);
    conf_get_string(ld, tls, "key", &key);
    if (!cert || !key) {
      conf_fail_at(ld, conf_line_of(tls),
                   "api.tls needs both 'cert' and 'key'");
      return;
    }
    cfg->api_tls_cert = conf_resolve_path(ld, cert);
    cfg->api_tls_key = conf_resolve_path(ld, key);
  }
  if (!cfg->api_tls_cert && !cfg->api_insecure &&
      cfg->api_listen.sa.sa_family && !nlb_addr_is_loopback(&cfg->api_listen))
    conf_fail_at(ld, conf_line_of(api),
                 "api.listen %s is not a loopback address: set api.tls, or "
                 "api.insecure = true to serve plain h2c anyway",
                 text);
}

static void load_cpu_affinity(struct conf_loader *ld,
                              const config_setting_t *root,
                              struct nlb_config *cfg)
{
  const char *text = "auto";

  conf_get_string(ld, root, "worker_cpu_affinity", &text);
  if (strcmp(text, "auto") == 0)
    cfg->pin_workers = true;
  else if (strcmp(text, "off") == 0)
    cfg->pin_workers = false;
  else
    conf_fail_at(ld, conf_line_of(conf_member_of(root, "worker_cpu_affinity")),
                 "worker_cpu_affinity \"%s\": expected \"auto\" or \"off\"",
                 text);
}

/* The sections, in the order they load: a later one may refer to what an
 * earlier one declared (networks name principals, listeners name target
 * groups). */
static const struct {
  const char *key;
  void (*load)(struct conf_loader *ld, const config_setting_t *root,
               struct nlb_config *cfg);
} sections[] = {
    {"log", load_log},
    {"api", load_api},
    {"registry", conf_load_registry},
    {"node", conf_load_node},
    {"dns", conf_load_dns},
    {"principals", conf_load_principals},
    {"networks", conf_load_networks},
    {"target_groups", conf_load_target_groups},
    {"load_balancers", conf_load_load_balancers},
};
#define N_SECTIONS (sizeof(sections) / sizeof(sections[0]))

struct nlb_config *nlb_config_load(const char *path, char **errors)
{
  static const char *const top_keys[] = {"workers", "worker_cpu_affinity",
                                         "shutdown_timeout", "max_flows",
                                         "forwarding"};
  const char *keys[sizeof(top_keys) / sizeof(top_keys[0]) + N_SECTIONS + 1];
  size_t n_keys = 0;
  struct conf_loader ld = {.path = path};
  struct nlb_config *cfg;
  config_t file;
  const config_setting_t *root;
  long long workers = 0, max_flows = 0;

  *errors = NULL;
  cfg = calloc(1, sizeof(*cfg));
  if (!cfg)
    return NULL;
  cfg->path = conf_dup_or_die(path);
  ld.dir = conf_config_dir(path);
  config_init(&file);
  conf_check_integers_in(&ld, path, 0);
  if (!config_read_file(&file, path)) {
    if (config_error_type(&file) == CONFIG_ERR_FILE_IO)
      conf_fail_at(&ld, 0, "cannot read file: %s",
                   strerror(errno ? errno : EIO));
    else
      conf_fail_at(&ld, config_error_line(&file), "syntax error: %s",
                   config_error_text(&file));
    goto done;
  }
  root = config_root_setting(&file);
  for (size_t i = 0; i < sizeof(top_keys) / sizeof(top_keys[0]); i++)
    keys[n_keys++] = top_keys[i];
  for (size_t i = 0; i < N_SECTIONS; i++)
    keys[n_keys++] = sections[i].key;
  keys[n_keys] = NULL;
  conf_check_keys(&ld, root, "the top level", keys);
  if (conf_get_int(&ld, root, "workers", 0, 256, &workers) && workers > 0)
    cfg->workers = (unsigned)workers;
  if (cfg->workers == 0) {
    size_t cpus = nlb_cpus_allowed(NULL, 0);
    cfg->workers = cpus < 256 ? (unsigned)cpus : 256;
  }
  load_cpu_affinity(&ld, root, cfg);
  cfg->shutdown_timeout_ms = 30000;
  conf_get_duration(&ld, root, "shutdown_timeout", 0, 3600000,
                    &cfg->shutdown_timeout_ms);
  if (conf_get_int(&ld, root, "max_flows", 0, 1000000000, &max_flows))
    cfg->max_flows = (uint64_t)max_flows;
  cfg->forwarding = conf_get_forwarding(&ld, root, NLB_FORWARDING_SPLICE);
  for (size_t i = 0; i < N_SECTIONS; i++)
    sections[i].load(&ld, root, cfg);
  conf_check_preserve_client_ip(&ld, cfg);
  /* A config network has its netns right there. */
  for (size_t i = 0; i < cfg->n_node_networks; i++)
    for (size_t j = 0; j < cfg->n_networks; j++)
      if (strcmp(cfg->node_networks[i].network, cfg->networks[j].name) == 0)
        conf_fail_at(&ld, cfg->networks[j].line,
                     "network \"%s\" is in the config: give its netns there, "
                     "not in node.networks",
                     cfg->networks[j].name);
  if (cfg->has_api && !cfg->has_registry)
    conf_fail_at(&ld, conf_line_of(conf_member_of(root, "api")),
                 "'api' needs a 'registry' to store services and endpoints");
done:
  config_destroy(&file);
  free(ld.dir);
  if (ld.failed) {
    nlb_config_free(cfg);
    *errors = ld.errors;
    return NULL;
  }
  free(ld.errors);
  return cfg;
}

void nlb_config_free(struct nlb_config *cfg)
{
  if (!cfg)
    return;
  for (size_t i = 0; i < cfg->n_principals; i++) {
    for (size_t j = 0; j < cfg->principals[i].n_dns_domains; j++)
      free(cfg->principals[i].dns_domains[j]);
    free(cfg->principals[i].dns_domains);
    free(cfg->principals[i].name);
  }
  free(cfg->principals);
  for (size_t i = 0; i < cfg->n_networks; i++) {
    struct nlb_config_network *net = &cfg->networks[i];
    for (size_t j = 0; j < net->n_principals; j++)
      free(net->principals[j]);
    free(net->principals);
    free(net->name);
    free(net->netns);
    free(net->range_text);
    free(net->dns_text);
  }
  free(cfg->networks);
  for (size_t i = 0; i < cfg->n_target_groups; i++) {
    struct nlb_config_target_group *tg = &cfg->target_groups[i];
    free(tg->name);
    free(tg->health.path);
    free(tg->health.host);
    nlb_tls_client_settings_free(&tg->tls);
    free(tg->targets);
  }
  free(cfg->target_groups);
  for (size_t i = 0; i < cfg->n_load_balancers; i++) {
    for (size_t j = 0; j < cfg->load_balancers[i].n_listeners; j++)
      nlb_tls_server_settings_free(&cfg->load_balancers[i].listeners[j].tls);
    free(cfg->load_balancers[i].name);
    for (size_t j = 0; j < cfg->load_balancers[i].n_listeners; j++) {
      struct nlb_config_listener *l = &cfg->load_balancers[i].listeners[j];
      for (size_t k = 0; k < l->n_sni_routes; k++)
        free(l->sni_routes[k].name);
      free(l->sni_routes);
    }
    free(cfg->load_balancers[i].listeners);
  }
  free(cfg->load_balancers);
  free(cfg->log_access);
  free(cfg->log_events);
  free(cfg->api_tls_cert);
  free(cfg->api_tls_key);
  free(cfg->registry_url);
  free(cfg->node_name);
  free(cfg->announce_interface);
  for (size_t i = 0; i < cfg->n_node_networks; i++) {
    free(cfg->node_networks[i].network);
    free(cfg->node_networks[i].netns);
  }
  free(cfg->node_networks);
  free(cfg->dns_zone);
  free(cfg->path);
  free(cfg);
}
