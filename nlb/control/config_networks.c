/* The config's `principals` and `networks` sections. */
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

/* dns_domains = [ "payments.example" ]: where a provider's services may
 * take private DNS names. */
static void load_dns_domains(struct conf_loader *ld,
                             const config_setting_t *item,
                             struct nlb_config_principal *p)
{
  const config_setting_t *list = conf_get_list(ld, item, "dns_domains");
  int n = list ? config_setting_length(list) : 0;

  if (!list)
    return;
  if (p->role != NLB_ROLE_PROVIDER) {
    conf_fail_at(ld, conf_line_of(list), "only a provider has 'dns_domains'");
    return;
  }
  p->dns_domains = conf_calloc_or_die((size_t)n, sizeof(char *));
  for (int j = 0; j < n; j++) {
    const char *text = config_setting_get_string_elem(list, j);
    char *domain = text ? conf_dns_name(text) : NULL;
    if (!domain) {
      conf_fail_at(
          ld, conf_line_of(list),
          "dns_domains: \"%s\" is not a DNS domain (labels of letters, "
          "digits and '-')",
          text ? text : "(not a string)");
      continue;
    }
    p->dns_domains[p->n_dns_domains++] = domain;
  }
}

void conf_load_principals(struct conf_loader *ld, const config_setting_t *root,
                          struct nlb_config *cfg)
{
  static const char *const keys[] = {"name", "role", "token_sha256",
                                     "dns_domains", NULL};
  const config_setting_t *list = conf_get_list(ld, root, "principals");
  int count = list ? config_setting_length(list) : 0;

  cfg->principals = conf_calloc_or_die((size_t)count, sizeof(*cfg->principals));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_principal *p = &cfg->principals[cfg->n_principals];
    const char *name, *role = NULL, *hash = NULL;

    if (!config_setting_is_group(item)) {
      conf_fail_at(ld, conf_line_of(item),
                   "a principal must be a group { ... }");
      continue;
    }
    conf_check_keys(ld, item, "principal", keys);
    name = conf_item_name(ld, item, "principal");
    if (!name)
      continue;
    for (size_t j = 0; j < cfg->n_principals; j++)
      if (strcmp(cfg->principals[j].name, name) == 0)
        conf_fail_at(ld, conf_line_of(item), "duplicate principal name \"%s\"",
                     name);
    p->line = conf_line_of(item);
    if (!conf_get_string(ld, item, "role", &role))
      conf_fail_at(ld, conf_line_of(item), "principal \"%s\" needs a 'role'",
                   name);
    else if (strcmp(role, "operator") == 0)
      p->role = NLB_ROLE_OPERATOR;
    else if (strcmp(role, "provider") == 0)
      p->role = NLB_ROLE_PROVIDER;
    else if (strcmp(role, "consumer") == 0)
      p->role = NLB_ROLE_CONSUMER;
    else
      conf_fail_at(ld, conf_line_of(conf_member_of(item, "role")),
                   "role must be operator, provider or consumer, not \"%s\"",
                   role);
    if (!conf_get_string(ld, item, "token_sha256", &hash)) {
      conf_fail_at(ld, conf_line_of(item),
                   "principal \"%s\" needs a 'token_sha256'", name);
    } else {
      bool ok = strlen(hash) == 64;
      for (int b = 0; ok && b < 32; b++) {
        int hi = conf_hex_value(hash[2 * b]),
            lo = conf_hex_value(hash[2 * b + 1]);
        if (hi < 0 || lo < 0)
          ok = false;
        else
          p->token_sha256[b] = (uint8_t)(hi << 4 | lo);
      }
      if (!ok)
        conf_fail_at(ld, conf_line_of(conf_member_of(item, "token_sha256")),
                     "token_sha256 must be 64 hex digits (printf %%s TOKEN | "
                     "sha256sum)");
    }
    load_dns_domains(ld, item, p);
    p->name = conf_dup_or_die(name);
    cfg->n_principals++;
  }
}

static const struct nlb_config_principal *
find_principal(const struct nlb_config *cfg, const char *name)
{
  for (size_t i = 0; i < cfg->n_principals; i++)
    if (strcmp(cfg->principals[i].name, name) == 0)
      return &cfg->principals[i];
  return NULL;
}

void conf_load_networks(struct conf_loader *ld, const config_setting_t *root,
                        struct nlb_config *cfg)
{
  static const char *const keys[] = {"name",       "netns", "range",
                                     "principals", "dns",   NULL};
  const config_setting_t *list = conf_get_list(ld, root, "networks");
  int count = list ? config_setting_length(list) : 0;

  cfg->networks = conf_calloc_or_die((size_t)count, sizeof(*cfg->networks));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_network *net = &cfg->networks[cfg->n_networks];
    const config_setting_t *allowed;
    const char *name, *range = NULL, *netns = NULL;

    if (!config_setting_is_group(item)) {
      conf_fail_at(ld, conf_line_of(item), "a network must be a group { ... }");
      continue;
    }
    conf_check_keys(ld, item, "network", keys);
    name = conf_item_name(ld, item, "network");
    if (!name)
      continue;
    for (size_t j = 0; j < cfg->n_networks; j++)
      if (strcmp(cfg->networks[j].name, name) == 0)
        conf_fail_at(ld, conf_line_of(item), "duplicate network name \"%s\"",
                     name);
    net->line = conf_line_of(item);
    if (!conf_get_string(ld, item, "range", &range))
      conf_fail_at(ld, conf_line_of(item), "network \"%s\" needs a 'range'",
                   name);
    else if (nlb_cidr_parse(range, &net->range) < 0)
      conf_fail_at(ld, conf_line_of(conf_member_of(item, "range")),
                   "range \"%s\" is not a CIDR such as 10.0.0.0/24 (host bits "
                   "must be zero)",
                   range);
    else
      net->range_text = conf_dup_or_die(range);
    if (conf_get_string(ld, item, "netns", &netns)) {
      if (!conf_is_valid_name(netns) || strcmp(netns, ".") == 0 ||
          strcmp(netns, "..") == 0)
        conf_fail_at(ld, conf_line_of(conf_member_of(item, "netns")),
                     "netns \"%s\" is not a namespace name", netns);
      else
        net->netns = conf_dup_or_die(netns);
    }
    allowed = conf_get_list(ld, item, "principals");
    if (allowed) {
      int n = config_setting_length(allowed);
      net->principals = conf_calloc_or_die((size_t)n, sizeof(char *));
      for (int j = 0; j < n; j++) {
        const config_setting_t *e = config_setting_get_elem(allowed, j);
        const char *pname = config_setting_get_string(e);
        const struct nlb_config_principal *p;
        if (!pname) {
          conf_fail_at(ld, conf_line_of(allowed), "principals must be strings");
          continue;
        }
        p = find_principal(cfg, pname);
        if (!p)
          conf_fail_at(ld, conf_line_of(allowed), "unknown principal \"%s\"",
                       pname);
        else if (p->role != NLB_ROLE_CONSUMER)
          conf_fail_at(ld, conf_line_of(allowed),
                       "principal \"%s\" is not a consumer", pname);
        net->principals[net->n_principals++] = conf_dup_or_die(pname);
      }
    }
    conf_load_network_dns(ld, item, cfg, net);
    net->name = conf_dup_or_die(name);
    cfg->n_networks++;
  }
}
