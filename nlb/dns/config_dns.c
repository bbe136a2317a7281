/* The config's `dns` section, and a network's `dns` address. */
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
#include "nlb/dns/dns.h"
#include "nlb/lb.h"

/* A DNS name as the registry takes it: labels of 1-63 letters, digits or
 * '-' (not first or last), 253 bytes, a trailing dot allowed. A malloc'd
 * copy in lower case without the dot, or NULL. */
char *conf_dns_name(const char *text)
{
  size_t len = strlen(text), label = 0;
  char *copy;

  if (len > 0 && text[len - 1] == '.')
    len--;
  if (len == 0 || len > 253)
    return NULL;
  for (size_t i = 0; i <= len; i++) {
    char c = i < len ? text[i] : '.';
    if (c == '.') {
      if (label == 0 || label > 63 || text[i - 1] == '-')
        return NULL;
      label = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') || (c == '-' && label > 0)) {
      label++;
    } else {
      return NULL;
    }
  }
  copy = conf_dup_or_die(text);
  copy[len] = '\0';
  for (char *p = copy; *p; p++)
    if (*p >= 'A' && *p <= 'Z')
      *p = (char)(*p - 'A' + 'a');
  return copy;
}

/* dns = "ADDRESS": the network's DNS responder, any address of its
 * namespace (or of the host), port 53. */
void conf_load_network_dns(struct conf_loader *ld, const config_setting_t *item,
                           const struct nlb_config *cfg,
                           struct nlb_config_network *net)
{
  const char *text;

  if (!conf_get_string(ld, item, "dns", &text))
    return;
  if (nlb_addr_parse_ip(text, 53, &net->dns) < 0 || nlb_addr_is_any(&net->dns))
    conf_fail_at(ld, conf_line_of(conf_member_of(item, "dns")),
                 "dns \"%s\" is not an IPv4 or IPv6 address", text);
  else if (!cfg->has_dns)
    conf_fail_at(ld, conf_line_of(conf_member_of(item, "dns")),
                 "network dns needs a top-level dns = { zone = \"...\"; }");
  else {
    net->has_dns = true;
    net->dns_text = conf_dup_or_die(text);
  }
}

/* dns = { zone = "nlb.internal"; ttl = "30s"; negative_ttl = "30s";
 *         tcp_connections_per_client = 16; } */
void conf_load_dns(struct conf_loader *ld, const config_setting_t *root,
                   struct nlb_config *cfg)
{
  static const char *const keys[] = {"zone", "ttl", "negative_ttl",
                                     "tcp_connections_per_client", NULL};
  const config_setting_t *dns = conf_member_of(root, "dns");
  uint64_t ttl_ms = 30000, negative_ms;
  long long per_client = NLB_DNS_TCP_PER_CLIENT;
  const char *zone;

  if (!dns)
    return;
  if (!config_setting_is_group(dns)) {
    conf_fail_at(ld, conf_line_of(dns), "'dns' must be a group { zone; ttl; }");
    return;
  }
  conf_check_keys(ld, dns, "dns", keys);
  if (!conf_get_string(ld, dns, "zone", &zone)) {
    if (!conf_member_of(dns, "zone"))
      conf_fail_at(ld, conf_line_of(dns),
                   "dns needs a 'zone' (e.g. \"nlb.internal\")");
    return;
  }
  if ((cfg->dns_zone = conf_dns_name(zone)) == NULL) {
    conf_fail_at(ld, conf_line_of(conf_member_of(dns, "zone")),
                 "dns zone \"%s\" is not a DNS name (labels of letters, digits "
                 "and '-')",
                 zone);
    return;
  }
  conf_get_duration(ld, dns, "ttl", 0, 86400000, &ttl_ms);
  negative_ms = ttl_ms;
  conf_get_duration(ld, dns, "negative_ttl", 0, 86400000, &negative_ms);
  cfg->dns_ttl = (uint32_t)(ttl_ms / 1000);
  cfg->dns_negative_ttl = (uint32_t)(negative_ms / 1000);
  conf_get_int(ld, dns, "tcp_connections_per_client", 1,
               NLB_DNS_TCP_CONNECTIONS_MAX, &per_client);
  cfg->dns_tcp_per_client = (unsigned)per_client;
  cfg->has_dns = true;
  if (!cfg->has_registry)
    conf_fail_at(ld, conf_line_of(dns),
                 "'dns' needs a 'registry': names follow its endpoints");
}
