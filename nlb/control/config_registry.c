/* The config's `registry` and `node` sections: where the registry lives,
 * this node's name, networks and announcements. */
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
#include "nlb/registry.h"

static char *concat_or_die(const char *a, const char *b)
{
  size_t size = strlen(a) + strlen(b) + 1;
  char *s = malloc(size);

  if (!s) {
    fprintf(stderr, "nlbd: out of memory\n");
    exit(1);
  }
  snprintf(s, size, "%s%s", a, b);
  return s;
}

/* The store's URL (registry.url), from it or from the older keys: path
 * (SQLite) or postgresql (a libpq connection string or URI). A SQLite
 * file is taken from the config's directory when it is not absolute. */
static char *registry_url(struct conf_loader *ld, const config_setting_t *reg)
{
  const char *url = NULL, *path = NULL, *conninfo = NULL;
  char *resolved, *full;

  if (conf_member_of(reg, "url") &&
      (!conf_get_string(ld, reg, "url", &url) || !*url)) {
    conf_fail_at(ld, conf_line_of(reg), "registry.url must be a string");
    return NULL;
  }
  if (conf_member_of(reg, "path") &&
      (!conf_get_string(ld, reg, "path", &path) || !*path)) {
    conf_fail_at(ld, conf_line_of(reg), "registry.path must be a file name");
    return NULL;
  }
  if (conf_member_of(reg, "postgresql") &&
      (!conf_get_string(ld, reg, "postgresql", &conninfo) || !*conninfo)) {
    conf_fail_at(
        ld, conf_line_of(reg),
        "registry.postgresql must be a libpq connection string or URI");
    return NULL;
  }
  if (!!url + !!path + !!conninfo != 1) {
    conf_fail_at(ld, conf_line_of(reg),
                 "registry needs one of 'url' (\"sqlite:FILE\" or "
                 "\"postgresql:CONNINFO\"), 'path' (SQLite) or 'postgresql'");
    return NULL;
  }
  if (conninfo)
    return concat_or_die("postgresql:", conninfo);
  if (url && strncmp(url, "postgresql:", 11) == 0)
    return conf_dup_or_die(url);
  if (url && strncmp(url, "sqlite:", 7) != 0) {
    conf_fail_at(ld, conf_line_of(reg),
                 "registry.url must start with sqlite: or postgresql:");
    return NULL;
  }
  if (url)
    path = url + 7 + (strncmp(url + 7, "//", 2) == 0 ? 2 : 0);
  if (!*path) {
    conf_fail_at(ld, conf_line_of(reg), "registry.url names no SQLite file");
    return NULL;
  }
  resolved = conf_resolve_path(ld, path);
  full = concat_or_die("sqlite://", resolved);
  free(resolved);
  return full;
}

void conf_load_registry(struct conf_loader *ld, const config_setting_t *root,
                        struct nlb_config *cfg)
{
  static const char *const keys[] = {"url",
                                     "path",
                                     "postgresql",
                                     "pending_expiry",
                                     "event_retention",
                                     "endpoint_retention",
                                     "service_quota",
                                     "write_timeout",
                                     "read_timeout",
                                     NULL};
  const config_setting_t *reg = conf_member_of(root, "registry");
  long long quota;

  cfg->registry_pending_expiry_ms = 7ull * 24 * 3600 * 1000;
  cfg->registry_event_retention_ms = 7ull * 24 * 3600 * 1000;
  cfg->registry_endpoint_retention_ms = 7ull * 24 * 3600 * 1000;
  cfg->registry_service_quota = 1000;
  cfg->registry_write_timeout_ms = REG_DEFAULT_WRITE_TIMEOUT_MS;
  cfg->registry_read_timeout_ms = REG_DEFAULT_READ_TIMEOUT_MS;
  if (!reg)
    return;
  if (!config_setting_is_group(reg)) {
    conf_fail_at(ld, conf_line_of(reg), "'registry' must be a group { url; }");
    return;
  }
  conf_check_keys(ld, reg, "registry", keys);
  if ((cfg->registry_url = registry_url(ld, reg)) == NULL)
    return;
  cfg->has_registry = true;
  conf_get_duration(ld, reg, "pending_expiry", 1000,
                    UINT64_C(10) * 365 * 86400000,
                    &cfg->registry_pending_expiry_ms);
  conf_get_duration(ld, reg, "event_retention", 1000,
                    UINT64_C(10) * 365 * 86400000,
                    &cfg->registry_event_retention_ms);
  conf_get_duration(ld, reg, "endpoint_retention", 1000,
                    UINT64_C(10) * 365 * 86400000,
                    &cfg->registry_endpoint_retention_ms);
  if (conf_get_int(ld, reg, "service_quota", 0, 1000000, &quota))
    cfg->registry_service_quota = (uint32_t)quota;
  /* At most 20 s: below the API's own request timeout (30 s), so that the
   * registry answers, and rolls back, before the API could give up on a
   * write still under way. */
  conf_get_duration(ld, reg, "write_timeout", 100, 20000,
                    &cfg->registry_write_timeout_ms);
  conf_get_duration(ld, reg, "read_timeout", 100, 20000,
                    &cfg->registry_read_timeout_ms);
}

/* node.networks = ( { name = "vpc9"; netns = "vpc9-here"; } ): where this
 * node opens the endpoints of networks made through the API. */
static void load_node_networks(struct conf_loader *ld,
                               const config_setting_t *node,
                               struct nlb_config *cfg)
{
  static const char *const keys[] = {"name", "netns", NULL};
  const config_setting_t *list = conf_get_list(ld, node, "networks");
  int count = list ? config_setting_length(list) : 0;

  if (count > NLB_NODE_NETWORKS_MAX) {
    conf_fail_at(ld, conf_line_of(list), "node.networks: at most %d mappings",
                 NLB_NODE_NETWORKS_MAX);
    return;
  }
  cfg->node_networks =
      conf_calloc_or_die((size_t)count, sizeof(*cfg->node_networks));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_netns_mapping *m =
        &cfg->node_networks[cfg->n_node_networks];
    const char *name, *netns = NULL;
    char why[256];

    if (!config_setting_is_group(item)) {
      conf_fail_at(ld, conf_line_of(item),
                   "a node.networks entry must be a group { name; netns; }");
      continue;
    }
    conf_check_keys(ld, item, "node.networks entry", keys);
    name = conf_item_name(ld, item, "node.networks entry");
    if (!name)
      continue;
    for (size_t j = 0; j < cfg->n_node_networks; j++)
      if (strcmp(cfg->node_networks[j].network, name) == 0)
        conf_fail_at(ld, conf_line_of(item), "node.networks names \"%s\" twice",
                     name);
    if (conf_get_string(ld, item, "netns", &netns) &&
        reg_netns_name_check(netns, why, sizeof(why)) < 0) {
      conf_fail_at(ld, conf_line_of(conf_member_of(item, "netns")), "%s", why);
      continue;
    }
    m->network = conf_dup_or_die(name);
    m->netns = netns ? conf_dup_or_die(netns) : NULL;
    cfg->n_node_networks++;
  }
}

/* A Linux interface name: 1..15 characters, none of them '/', ':' or
 * white space (what dev_valid_name accepts, less what confuses tools). */
static bool is_valid_ifname(const char *name)
{
  if (!*name || strlen(name) > 15 || strcmp(name, ".") == 0 ||
      strcmp(name, "..") == 0)
    return false;
  for (const char *p = name; *p; p++)
    if (*p == '/' || *p == ':' || *p <= ' ' || *p == 0x7f)
      return false;
  return true;
}

/* node.announce_interface and node.withdraw_delay (announce.h). */
static void load_node_announce(struct conf_loader *ld,
                               const config_setting_t *node,
                               struct nlb_config *cfg)
{
  const char *ifname = NULL;

  if (conf_get_string(ld, node, "announce_interface", &ifname)) {
    if (is_valid_ifname(ifname))
      cfg->announce_interface = conf_dup_or_die(ifname);
    else
      conf_fail_at(ld, conf_line_of(conf_member_of(node, "announce_interface")),
                   "announce_interface \"%s\": an interface name is 1-15 "
                   "characters, without '/', ':' or spaces",
                   ifname);
  }
  conf_get_duration(ld, node, "withdraw_delay", 0, 600000,
                    &cfg->withdraw_delay_ms);
}

/* node = { name = "n1"; networks = (...); announce_interface = "nlb-up";
 * withdraw_delay = "2s"; }: this node's name in a cluster (the host name
 * by default), its mapping of API networks, and the interface nlbd holds
 * while it serves. */
void conf_load_node(struct conf_loader *ld, const config_setting_t *root,
                    struct nlb_config *cfg)
{
  static const char *const keys[] = {"name", "networks", "announce_interface",
                                     "withdraw_delay", NULL};
  const config_setting_t *node = conf_member_of(root, "node");
  const char *name = NULL;
  char host[256] = "";

  cfg->withdraw_delay_ms = 2000;
  if (node && !config_setting_is_group(node)) {
    conf_fail_at(ld, conf_line_of(node), "'node' must be a group { name; }");
    return;
  }
  if (node) {
    conf_check_keys(ld, node, "node", keys);
    if (conf_member_of(node, "name") &&
        !(name = conf_item_name(ld, node, "node")))
      return;
    load_node_networks(ld, node, cfg);
    load_node_announce(ld, node, cfg);
  }
  if (!name) {
    gethostname(host, sizeof(host) - 1);
    host[strcspn(host, ".")] = '\0'; /* the short name, as a label */
    name = conf_is_valid_name(host) ? host : "local";
  }
  cfg->node_name = conf_dup_or_die(name);
}
