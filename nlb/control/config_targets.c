/* The config's `target_groups` section: targets, health checks, algorithm,
 * draining. */
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

static void load_health(struct conf_loader *ld, const config_setting_t *group,
                        struct nlb_config_health *hc)
{
  static const char *const keys[] = {"protocol",
                                     "port",
                                     "interval",
                                     "timeout",
                                     "healthy_threshold",
                                     "unhealthy_threshold",
                                     "path",
                                     "matcher",
                                     "host",
                                     NULL};
  const config_setting_t *s = conf_member_of(group, "health_check");
  const char *text;
  long long value;

  hc->protocol = NLB_HEALTH_TCP;
  hc->interval_ms = 10000;
  hc->timeout_ms = 5000;
  hc->healthy_threshold = 3;
  hc->unhealthy_threshold = 2;
  hc->path = conf_dup_or_die("/");
  nlb_status_matcher_parse("200-399", &hc->matcher);
  if (!s)
    return;
  if (!config_setting_is_group(s)) {
    conf_fail_at(ld, conf_line_of(s), "'health_check' must be a group { ... }");
    return;
  }
  conf_check_keys(ld, s, "health_check", keys);
  if (conf_get_string(ld, s, "protocol", &text)) {
    if (strcmp(text, "tcp") == 0)
      hc->protocol = NLB_HEALTH_TCP;
    else if (strcmp(text, "http") == 0)
      hc->protocol = NLB_HEALTH_HTTP;
    else
      conf_fail_at(ld, conf_line_of(conf_member_of(s, "protocol")),
                   "protocol must be \"tcp\" or \"http\", not \"%s\"", text);
  }
  if (conf_get_int(ld, s, "port", 0, 65535, &value))
    hc->port = (uint16_t)value;
  conf_get_duration(ld, s, "interval", 100, 3600000, &hc->interval_ms);
  conf_get_duration(ld, s, "timeout", 10, 3600000, &hc->timeout_ms);
  if (conf_get_int(ld, s, "healthy_threshold", 1, 100, &value))
    hc->healthy_threshold = (unsigned)value;
  if (conf_get_int(ld, s, "unhealthy_threshold", 1, 100, &value))
    hc->unhealthy_threshold = (unsigned)value;
  if (conf_get_string(ld, s, "path", &text)) {
    if (text[0] != '/' || strpbrk(text, " \r\n"))
      conf_fail_at(ld, conf_line_of(conf_member_of(s, "path")),
                   "path must start with '/' and hold no spaces");
    free(hc->path);
    hc->path = conf_dup_or_die(text);
  }
  if (conf_get_string(ld, s, "host", &text)) {
    if (!*text || strpbrk(text, " \r\n"))
      conf_fail_at(ld, conf_line_of(conf_member_of(s, "host")),
                   "host must be one word");
    hc->host = conf_dup_or_die(text);
  }
  if (conf_get_string(ld, s, "matcher", &text) &&
      nlb_status_matcher_parse(text, &hc->matcher) < 0)
    conf_fail_at(
        ld, conf_line_of(conf_member_of(s, "matcher")),
        "matcher \"%s\" must be codes or ranges such as \"200-399\" or "
        "\"200,204\"",
        text);
  if (hc->timeout_ms > hc->interval_ms)
    conf_fail_at(ld, conf_line_of(s),
                 "health_check timeout must not exceed interval");
}

/* Orders addresses for duplicate checks: family, address, port. */
static int compare_addresses(const union nlb_sockaddr *a,
                             const union nlb_sockaddr *b)
{
  if (a->sa.sa_family != b->sa.sa_family)
    return a->sa.sa_family < b->sa.sa_family ? -1 : 1;
  if (a->sa.sa_family == AF_INET6) {
    int c = memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16);
    if (c)
      return c;
    return memcmp(&a->in6.sin6_port, &b->in6.sin6_port, 2);
  }
  if (a->in.sin_addr.s_addr != b->in.sin_addr.s_addr)
    return memcmp(&a->in.sin_addr, &b->in.sin_addr, 4);
  return memcmp(&a->in.sin_port, &b->in.sin_port, 2);
}

static int compare_placed(const void *x, const void *y)
{
  const struct placed_address *a = x, *b = y;
  int c = compare_addresses(a->address, b->address);

  if (c)
    return c;
  return a->order < b->order ? -1 : a->order > b->order;
}

/* Sorts addr[0..n) and reports every address written again, at the line of
 * each later copy, naming the first: O(n log n), where comparing each with
 * every other made a 10,000-target group take 150 ms to load. */
void conf_report_duplicates(struct conf_loader *ld, struct placed_address *addr,
                            size_t n, const char *what)
{
  qsort(addr, n, sizeof(*addr), compare_placed);
  for (size_t i = 1, first = 0; i < n; i++) {
    char text[NLB_ADDR_TEXT_MAX];
    if (compare_addresses(addr[i].address, addr[first].address) != 0) {
      first = i;
      continue;
    }
    nlb_addr_format(addr[i].address, text, sizeof(text));
    if (strcmp(what, "target") == 0)
      conf_fail_at(ld, addr[i].line,
                   "duplicate target %s in target group \"%s\"", text,
                   addr[i].owner);
    else
      conf_fail_at(ld, addr[i].line,
                   "listener port %u on this address is already used by \"%s\"",
                   nlb_addr_port(addr[i].address), addr[first].owner);
  }
}

static void load_targets(struct conf_loader *ld, const config_setting_t *group,
                         struct nlb_config_target_group *tg)
{
  static const char *const keys[] = {"address", "weight", NULL};
  const config_setting_t *list = conf_get_list(ld, group, "targets");
  int count = list ? config_setting_length(list) : 0;

  tg->targets = conf_calloc_or_die((size_t)count, sizeof(*tg->targets));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_target *t = &tg->targets[tg->n_targets];
    const char *address = NULL;
    long long weight = 1;

    if (!config_setting_is_group(item)) {
      conf_fail_at(ld, conf_line_of(item),
                   "a target must be a group { address; }");
      continue;
    }
    conf_check_keys(ld, item, "target", keys);
    t->line = conf_line_of(item);
    if (!conf_get_string(ld, item, "address", &address)) {
      conf_fail_at(ld, conf_line_of(item), "target needs an 'address'");
      continue;
    }
    if (nlb_addr_parse(address, &t->address) < 0 ||
        nlb_addr_port(&t->address) == 0) {
      conf_fail_at(ld, conf_line_of(conf_member_of(item, "address")),
                   "target address \"%s\" is not IP:PORT or [IPv6]:PORT",
                   address);
      continue;
    }
    conf_get_int(ld, item, "weight", 0, 1000, &weight);
    t->weight = (uint32_t)weight;
    tg->n_targets++;
  }
  struct placed_address *placed =
      conf_calloc_or_die(tg->n_targets, sizeof(*placed));
  for (size_t i = 0; i < tg->n_targets; i++)
    placed[i] = (struct placed_address){&tg->targets[i].address,
                                        tg->targets[i].line, i, tg->name};
  conf_report_duplicates(ld, placed, tg->n_targets, "target");
  free(placed);
}

void conf_load_target_groups(struct conf_loader *ld,
                             const config_setting_t *root,
                             struct nlb_config *cfg)
{
  static const char *const keys[] = {"name",
                                     "algorithm",
                                     "proxy_protocol",
                                     "deregistration_delay",
                                     "fail_open",
                                     "slow_start",
                                     "connect_timeout",
                                     "connect_retries",
                                     "health_check",
                                     "targets",
                                     "preserve_client_ip",
                                     "tls",
                                     NULL};
  const config_setting_t *list = conf_get_list(ld, root, "target_groups");
  int count = list ? config_setting_length(list) : 0;

  cfg->target_groups =
      conf_calloc_or_die((size_t)count, sizeof(*cfg->target_groups));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_target_group *tg =
        &cfg->target_groups[cfg->n_target_groups];
    const char *name, *text;
    long long value;

    if (!config_setting_is_group(item)) {
      conf_fail_at(ld, conf_line_of(item),
                   "a target group must be a group { ... }");
      continue;
    }
    conf_check_keys(ld, item, "target group", keys);
    name = conf_item_name(ld, item, "target group");
    if (!name)
      continue;
    if (nlb_config_find_target_group(cfg, name))
      conf_fail_at(ld, conf_line_of(item), "duplicate target group name \"%s\"",
                   name);
    tg->name = conf_dup_or_die(name);
    tg->line = conf_line_of(item);
    tg->algorithm = NLB_ALGORITHM_MAGLEV;
    tg->fail_open = true;
    tg->deregistration_delay_ms = 300000;
    tg->connect_timeout_ms = 5000;
    tg->connect_retries = 2;
    if (conf_get_string(ld, item, "algorithm", &text)) {
      if (nlb_algorithm_parse(text, &tg->algorithm) < 0)
        conf_fail_at(ld, conf_line_of(conf_member_of(item, "algorithm")),
                     "algorithm must be %s, %s or %s, not \"%s\"",
                     nlb_algorithm_name(NLB_ALGORITHM_MAGLEV),
                     nlb_algorithm_name(NLB_ALGORITHM_ROUND_ROBIN),
                     nlb_algorithm_name(NLB_ALGORITHM_LEAST_CONN), text);
    }
    if (conf_get_string(ld, item, "proxy_protocol", &text)) {
      if (strcmp(text, "v2") == 0)
        tg->proxy_protocol_v2 = true;
      else if (strcmp(text, "off") != 0)
        conf_fail_at(ld, conf_line_of(conf_member_of(item, "proxy_protocol")),
                     "proxy_protocol must be \"off\" or \"v2\", not \"%s\"",
                     text);
    }
    conf_get_bool(ld, item, "fail_open", &tg->fail_open);
    if (conf_get_bool(ld, item, "preserve_client_ip", &tg->preserve_client_ip))
      tg->preserve_client_ip_line =
          conf_line_of(conf_member_of(item, "preserve_client_ip"));
    conf_get_duration(ld, item, "deregistration_delay", 0, 3600000,
                      &tg->deregistration_delay_ms);
    conf_get_duration(ld, item, "slow_start", 0, 900000, &tg->slow_start_ms);
    conf_get_duration(ld, item, "connect_timeout", 10, 600000,
                      &tg->connect_timeout_ms);
    if (conf_get_int(ld, item, "connect_retries", 0, 16, &value))
      tg->connect_retries = (unsigned)value;
    load_health(ld, item, &tg->health);
    conf_load_tls_client(ld, item, &tg->tls);
    load_targets(ld, item, tg);
    cfg->n_target_groups++;
  }
}

void conf_check_preserve_client_ip(struct conf_loader *ld,
                                   const struct nlb_config *cfg)
{
  for (size_t g = 0; g < cfg->n_target_groups; g++) {
    const struct nlb_config_target_group *tg = &cfg->target_groups[g];
    if (!tg->preserve_client_ip)
      continue;
    for (size_t t = 0; t < tg->n_targets; t++)
      for (size_t n = 0; n < cfg->n_networks; n++) {
        const struct nlb_config_network *net = &cfg->networks[n];
        char where[NLB_ADDR_TEXT_MAX];
        if (!net->range_text ||
            !nlb_cidr_contains(&net->range, &tg->targets[t].address))
          continue;
        conf_fail_at(
            ld, tg->preserve_client_ip_line,
            "target group \"%s\": preserve_client_ip cannot work "
            "for target %s: it is inside network \"%s\" (%s, line "
            "%d), so it would answer that network's clients "
            "directly, not through nlb; use proxy_protocol = \"v2\" "
            "to tell it the client's address",
            tg->name,
            nlb_addr_format(&tg->targets[t].address, where, sizeof(where)),
            net->name, net->range_text, net->line);
      }
  }
}

const struct nlb_config_target_group *
nlb_config_find_target_group(const struct nlb_config *cfg, const char *name)
{
  for (size_t i = 0; i < cfg->n_target_groups; i++)
    if (cfg->target_groups[i].name &&
        strcmp(cfg->target_groups[i].name, name) == 0)
      return &cfg->target_groups[i];
  return NULL;
}
