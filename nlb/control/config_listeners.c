/* The config's `load_balancers` section and their listeners. */
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

/* A name of sni_routes: a DNS name, or "*." and one (a wildcard for one
 * label more). The malloc'd lower-case form, or NULL. */
static char *sni_route_name(const char *text)
{
  bool wildcard = strncmp(text, "*.", 2) == 0;
  char *name = conf_dns_name(wildcard ? text + 2 : text);
  char *out;

  if (!name || !wildcard)
    return name;
  out = conf_calloc_or_die(1, strlen(name) + 3);
  memcpy(out, "*.", 2);
  memcpy(out + 2, name, strlen(name) + 1);
  free(name);
  return out;
}

/* sni_routes = ( { names = [ "a.example", "*.b.example" ]; target_group =
 * "x"; }, ... ): one route per name, each name once per listener. */
static void load_sni_routes(struct conf_loader *ld,
                            const config_setting_t *item,
                            struct nlb_config *cfg,
                            struct nlb_config_listener *l)
{
  static const char *const keys[] = {"names", "target_group", NULL};
  const config_setting_t *list = conf_get_list(ld, item, "sni_routes");
  int count = list ? config_setting_length(list) : 0;
  size_t total = 0;

  if (!list)
    return;
  if (l->protocol != NLB_PROTOCOL_TLS_PASSTHROUGH) {
    conf_fail_at(ld, conf_line_of(list),
                 "listener on port %u: sni_routes needs protocol = "
                 "\"tls_passthrough\"",
                 l->port);
    return;
  }
  for (int i = 0; i < count; i++) {
    const config_setting_t *names =
        conf_member_of(config_setting_get_elem(list, i), "names");
    total += names && config_setting_is_aggregate(names)
                 ? (size_t)config_setting_length(names)
                 : 0;
  }
  l->sni_routes = conf_calloc_or_die(total ? total : 1, sizeof(*l->sni_routes));
  for (int i = 0; i < count; i++) {
    const config_setting_t *route = config_setting_get_elem(list, i);
    const config_setting_t *names;
    const struct nlb_config_target_group *tg;
    const char *group = NULL;
    int line = conf_line_of(route);

    if (!config_setting_is_group(route)) {
      conf_fail_at(ld, line,
                   "an SNI route must be a group { names; "
                   "target_group; }");
      continue;
    }
    conf_check_keys(ld, route, "SNI route", keys);
    names = conf_get_list(ld, route, "names");
    if (!names || config_setting_length(names) == 0) {
      conf_fail_at(ld, line,
                   "an SNI route needs 'names' (a list of server "
                   "names)");
      continue;
    }
    if (!conf_get_string(ld, route, "target_group", &group)) {
      if (!conf_member_of(route, "target_group"))
        conf_fail_at(ld, line, "an SNI route needs a 'target_group'");
      continue;
    }
    tg = nlb_config_find_target_group(cfg, group);
    if (!tg) {
      conf_fail_at(ld, conf_line_of(conf_member_of(route, "target_group")),
                   "unknown target group \"%s\"", group);
      continue;
    }
    for (int j = 0; j < config_setting_length(names); j++) {
      const char *text = config_setting_get_string_elem(names, j);
      char *name = text ? sni_route_name(text) : NULL;
      struct nlb_config_sni_route *r = &l->sni_routes[l->n_sni_routes];

      if (!name) {
        conf_fail_at(ld, conf_line_of(names),
                     "SNI route: \"%s\" is not a server name (a DNS name, "
                     "or \"*.\" and a DNS name)",
                     text ? text : "(not a string)");
        continue;
      }
      for (size_t k = 0; k < l->n_sni_routes; k++)
        if (strcmp(l->sni_routes[k].name, name) == 0)
          conf_fail_at(ld, conf_line_of(names),
                       "SNI route: \"%s\" is already routed (line %d)", name,
                       l->sni_routes[k].line);
      r->name = name;
      r->target_group = (size_t)(tg - cfg->target_groups);
      r->line = conf_line_of(names);
      l->n_sni_routes++;
    }
  }
}

static void load_listeners(struct conf_loader *ld,
                           const config_setting_t *lb_item,
                           struct nlb_config *cfg,
                           struct nlb_config_load_balancer *lb)
{
  static const char *const keys[] = {"port",       "target_group",
                                     "bind",       "idle_timeout",
                                     "protocol",   "tls",
                                     "sni_routes", "client_hello_timeout",
                                     "forwarding", NULL};
  const config_setting_t *list = conf_get_list(ld, lb_item, "listeners");
  int count = list ? config_setting_length(list) : 0;

  if (!list)
    conf_fail_at(ld, lb->line, "load balancer \"%s\" needs 'listeners'",
                 lb->name);
  lb->listeners = conf_calloc_or_die((size_t)count, sizeof(*lb->listeners));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_listener *l = &lb->listeners[lb->n_listeners];
    const char *group = NULL, *bind = NULL, *protocol = NULL;
    const struct nlb_config_target_group *tg;
    long long port;

    if (!config_setting_is_group(item)) {
      conf_fail_at(ld, conf_line_of(item),
                   "a listener must be a group { ... }");
      continue;
    }
    conf_check_keys(ld, item, "listener", keys);
    l->line = conf_line_of(item);
    l->idle_timeout_ms = 350000;
    if (!conf_get_int(ld, item, "port", 1, 65535, &port)) {
      if (!conf_member_of(item, "port"))
        conf_fail_at(ld, l->line, "listener needs a 'port'");
      continue;
    }
    l->port = (uint16_t)port;
    for (size_t j = 0; j < lb->n_listeners; j++)
      if (lb->listeners[j].port == l->port)
        conf_fail_at(ld, l->line, "duplicate listener port %u in \"%s\"",
                     l->port, lb->name);
    if (!conf_get_string(ld, item, "target_group", &group)) {
      conf_fail_at(ld, l->line, "listener needs a 'target_group'");
      continue;
    }
    tg = nlb_config_find_target_group(cfg, group);
    if (!tg) {
      conf_fail_at(ld, conf_line_of(conf_member_of(item, "target_group")),
                   "unknown target group \"%s\"", group);
      continue;
    }
    l->target_group = (size_t)(tg - cfg->target_groups);
    if (conf_get_string(ld, item, "bind", &bind)) {
      if (nlb_addr_parse_ip(bind, l->port, &l->bind) < 0) {
        conf_fail_at(ld, conf_line_of(conf_member_of(item, "bind")),
                     "bind \"%s\" is not an IP address", bind);
        continue;
      }
      l->has_bind = true;
    }
    if (conf_get_string(ld, item, "protocol", &protocol)) {
      int p = nlb_protocol_parse(protocol);
      if (p < 0) {
        char names[128];
        nlb_protocol_list(names, sizeof(names));
        conf_fail_at(ld, conf_line_of(conf_member_of(item, "protocol")),
                     "unknown protocol \"%s\" (valid: %s)", protocol, names);
        continue;
      }
      l->protocol = (enum nlb_protocol)p;
    }
    conf_load_tls_server(ld, item, &l->tls);
    if (l->protocol == NLB_PROTOCOL_TLS && !l->tls.enabled)
      conf_fail_at(ld, l->line,
                   "listener on port %u: protocol \"tls\" needs a tls = { "
                   "certificates = ( { cert; key; } ); } block",
                   l->port);
    /* The TCP relay and UDP would send a TLS target plaintext: only a
     * TLS listener's flows re-encrypt. */
    if ((l->protocol == NLB_PROTOCOL_TCP || l->protocol == NLB_PROTOCOL_UDP ||
         l->protocol == NLB_PROTOCOL_TCP_UDP) &&
        tg->tls.enabled)
      conf_fail_at(ld, l->line,
                   "listener on port %u: target group \"%s\" has tls (its "
                   "targets speak TLS), which needs protocol = \"tls\"",
                   l->port, tg->name);
    if (l->protocol != NLB_PROTOCOL_TLS && l->tls.enabled)
      conf_fail_at(ld, l->line,
                   "listener on port %u: a tls block needs protocol = \"tls\"",
                   l->port);
    /* A datagram has no stream to put a header in front of. */
    if ((l->protocol == NLB_PROTOCOL_UDP ||
         l->protocol == NLB_PROTOCOL_TCP_UDP) &&
        tg->proxy_protocol_v2)
      conf_fail_at(ld, l->line,
                   "listener on port %u: protocol \"%s\" carries UDP, which "
                   "cannot start with a PROXY v2 header, but target group "
                   "\"%s\" has proxy_protocol = \"v2\" (preserve_client_ip "
                   "tells targets the client's address instead)",
                   l->port, nlb_protocol_name(l->protocol), tg->name);
    l->forwarding = conf_get_forwarding(ld, item, cfg->forwarding);
    l->udp_idle_timeout_ms = 120000;
    if (conf_get_duration(ld, item, "idle_timeout", 1000, 7 * 86400000ull,
                          &l->idle_timeout_ms))
      l->udp_idle_timeout_ms = l->idle_timeout_ms;
    load_sni_routes(ld, item, cfg, l);
    l->client_hello_timeout_ms = 10000;
    if (conf_get_duration(ld, item, "client_hello_timeout", 100, 300000,
                          &l->client_hello_timeout_ms) &&
        l->protocol != NLB_PROTOCOL_TLS_PASSTHROUGH)
      conf_fail_at(ld,
                   conf_line_of(conf_member_of(item, "client_hello_timeout")),
                   "listener on port %u: client_hello_timeout needs protocol "
                   "= \"tls_passthrough\"",
                   l->port);
    lb->n_listeners++;
  }
}

enum nlb_forwarding conf_get_forwarding(struct conf_loader *ld,
                                        const config_setting_t *item,
                                        enum nlb_forwarding fallback)
{
  enum nlb_forwarding forwarding = fallback;
  const char *name;

  if (conf_get_string(ld, item, "forwarding", &name) &&
      nlb_forwarding_parse(name, &forwarding) < 0)
    conf_fail_at(ld, conf_line_of(conf_member_of(item, "forwarding")),
                 "unknown forwarding \"%s\" (valid: splice, sockmap, auto)",
                 name);
  return forwarding;
}

void conf_load_load_balancers(struct conf_loader *ld,
                              const config_setting_t *root,
                              struct nlb_config *cfg)
{
  static const char *const keys[] = {"name", "listeners", NULL};
  const config_setting_t *list = conf_get_list(ld, root, "load_balancers");
  int count = list ? config_setting_length(list) : 0;

  cfg->load_balancers =
      conf_calloc_or_die((size_t)count, sizeof(*cfg->load_balancers));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_load_balancer *lb =
        &cfg->load_balancers[cfg->n_load_balancers];
    const char *name;

    if (!config_setting_is_group(item)) {
      conf_fail_at(ld, conf_line_of(item),
                   "a load balancer must be a group { ... }");
      continue;
    }
    conf_check_keys(ld, item, "load balancer", keys);
    name = conf_item_name(ld, item, "load balancer");
    if (!name)
      continue;
    for (size_t j = 0; j < cfg->n_load_balancers; j++)
      if (strcmp(cfg->load_balancers[j].name, name) == 0)
        conf_fail_at(ld, conf_line_of(item),
                     "duplicate load balancer name \"%s\"", name);
    lb->name = conf_dup_or_die(name);
    lb->line = conf_line_of(item);
    load_listeners(ld, item, cfg, lb);
    cfg->n_load_balancers++;
  }
  /* Two listeners may not claim the same host address and port. */
  size_t n_binds = 0;
  for (size_t a = 0; a < cfg->n_load_balancers; a++)
    n_binds += cfg->load_balancers[a].n_listeners;
  struct placed_address *placed = conf_calloc_or_die(n_binds, sizeof(*placed));
  n_binds = 0;
  for (size_t a = 0; a < cfg->n_load_balancers; a++)
    for (size_t i = 0; i < cfg->load_balancers[a].n_listeners; i++) {
      const struct nlb_config_listener *x =
          &cfg->load_balancers[a].listeners[i];
      if (!x->has_bind)
        continue;
      placed[n_binds] = (struct placed_address){&x->bind, x->line, n_binds,
                                                cfg->load_balancers[a].name};
      n_binds++;
    }
  conf_report_duplicates(ld, placed, n_binds, "listener");
  free(placed);
}
