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

static void load_listeners(struct conf_loader *ld,
                           const config_setting_t *lb_item,
                           struct nlb_config *cfg,
                           struct nlb_config_load_balancer *lb)
{
  static const char *const keys[] = {
      "port",     "target_group", "bind", "idle_timeout",
      "protocol", "forwarding",   NULL};
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
    /* A datagram has no stream to put a header in front of. */
    if (l->protocol != NLB_PROTOCOL_TCP && tg->proxy_protocol_v2)
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
