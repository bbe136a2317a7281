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

#include "nlb/cpus.h"
#include "nlb/duration.h"

/* Collects every error of one load, so a user fixes a file in one pass. */
struct loader {
  const char *path;
  char *dir; /* the file's directory, against which relative paths resolve */
  char *errors;
  size_t errors_len;
  bool failed;
};

/* Copies text into out (len bytes) with control characters written as
 * \n, \t or \xHH: a value quoted from the file stays on its error's line,
 * so that each line still reads FILE:LINE: message (nlbd -t, and the event
 * log's "reload rejected", whose lines a reader must be able to trust). */
static void escape_controls(const char *text, char *out, size_t len)
{
  size_t n = 0;

  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    char code[5];
    if (*p == '\n')
      snprintf(code, sizeof(code), "\\n");
    else if (*p == '\t')
      snprintf(code, sizeof(code), "\\t");
    else if (*p < 0x20 || *p == 0x7f)
      snprintf(code, sizeof(code), "\\x%02x", *p);
    else
      snprintf(code, sizeof(code), "%c", *p);
    if (n + strlen(code) >= len)
      break;
    memcpy(out + n, code, strlen(code));
    n += strlen(code);
  }
  out[n] = '\0';
}

static void vfail_in(struct loader *ld, const char *path, int line,
                     const char *fmt, va_list args)
{
  char raw[512], message[512];
  char where[32] = "";
  char *grown;
  int len;

  vsnprintf(raw, sizeof(raw), fmt, args);
  escape_controls(raw, message, sizeof(message));
  ld->failed = true;
  /* Line 0: the whole file is at fault (it cannot be read). */
  if (line > 0)
    snprintf(where, sizeof(where), "%d:", line);
  len = snprintf(NULL, 0, "%s:%s %s\n", path, where, message);
  grown = realloc(ld->errors, ld->errors_len + (size_t)len + 1);
  if (!grown)
    return;
  ld->errors = grown;
  snprintf(ld->errors + ld->errors_len, (size_t)len + 1, "%s:%s %s\n", path,
           where, message);
  ld->errors_len += (size_t)len;
}

static void fail_at(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_at(struct loader *ld, int line, const char *fmt, ...)
{
  va_list args;

  va_start(args, fmt);
  vfail_in(ld, ld->path, line, fmt, args);
  va_end(args);
}

/* The same for a line of another file (one that the config @includes). */
static void fail_in(struct loader *ld, const char *path, int line,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void fail_in(struct loader *ld, const char *path, int line,
                    const char *fmt, ...)
{
  va_list args;

  va_start(args, fmt);
  vfail_in(ld, path, line, fmt, args);
  va_end(args);
}

static int line_of(const config_setting_t *setting)
{
  return (int)config_setting_source_line(setting);
}

/* Unknown keys are errors: a typo must not silently become a default. */
static void check_keys(struct loader *ld, const config_setting_t *group,
                       const char *what, const char *const *allowed)
{
  int count = config_setting_length(group);

  for (int i = 0; i < count; i++) {
    const config_setting_t *member = config_setting_get_elem(group, i);
    const char *name = config_setting_name(member);
    bool known = false;
    if (!name)
      continue;
    for (const char *const *a = allowed; *a; a++)
      if (strcmp(*a, name) == 0)
        known = true;
    if (!known)
      fail_at(ld, line_of(member), "unknown setting '%s' in %s", name, what);
  }
}

static const config_setting_t *member_of(const config_setting_t *group,
                                         const char *name)
{
  return config_setting_get_member(group, name);
}

static char *dup_or_die(const char *text)
{
  char *copy = strdup(text);
  if (!copy) {
    fprintf(stderr, "nlbd: out of memory\n");
    exit(1);
  }
  return copy;
}

static void *calloc_or_die(size_t n, size_t size)
{
  void *p = calloc(n ? n : 1, size);
  if (!p) {
    fprintf(stderr, "nlbd: out of memory\n");
    exit(1);
  }
  return p;
}

/* The directory of the config file (its symbolic links resolved), so that
 * the file means the same whatever directory nlbd is started from. */
static char *config_dir(const char *path)
{
  char *copy = dup_or_die(path);
  char *slash = strrchr(copy, '/');
  char *dir;

  if (slash == copy)
    slash[1] = '\0';
  else if (slash)
    *slash = '\0';
  dir = realpath(slash ? copy : ".", NULL);
  if (!dir)
    dir = dup_or_die(slash ? copy : ".");
  free(copy);
  return dir;
}

/* A path the config names: relative ones are taken from the config file's
 * directory. */
static char *resolve_path(const struct loader *ld, const char *path)
{
  size_t size;
  char *full;

  if (path[0] == '/' || !path[0])
    return dup_or_die(path);
  size = strlen(ld->dir) + strlen(path) + 2;
  full = malloc(size);
  if (!full) {
    fprintf(stderr, "nlbd: out of memory\n");
    exit(1);
  }
  snprintf(full, size, "%s/%s", ld->dir, path);
  return full;
}

/* A log destination: "stderr", "off", or a path. */
static char *log_destination(const struct loader *ld, const char *text)
{
  if (strcmp(text, "stderr") == 0 || strcmp(text, "off") == 0)
    return dup_or_die(text);
  return resolve_path(ld, text);
}

/* Reads an optional string; returns false (and reports) on a wrong type. */
static bool get_string(struct loader *ld, const config_setting_t *group,
                       const char *name, const char **out)
{
  const config_setting_t *s = member_of(group, name);
  if (!s)
    return false;
  if (config_setting_type(s) != CONFIG_TYPE_STRING) {
    fail_at(ld, line_of(s), "'%s' must be a string", name);
    return false;
  }
  *out = config_setting_get_string(s);
  return true;
}

static bool get_bool(struct loader *ld, const config_setting_t *group,
                     const char *name, bool *out)
{
  const config_setting_t *s = member_of(group, name);
  if (!s)
    return false;
  if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
    fail_at(ld, line_of(s), "'%s' must be true or false", name);
    return false;
  }
  *out = config_setting_get_bool(s);
  return true;
}

static bool get_int(struct loader *ld, const config_setting_t *group,
                    const char *name, long long min, long long max,
                    long long *out)
{
  const config_setting_t *s = member_of(group, name);
  long long value;
  if (!s)
    return false;
  if (config_setting_type(s) == CONFIG_TYPE_INT)
    value = config_setting_get_int(s);
  else if (config_setting_type(s) == CONFIG_TYPE_INT64)
    value = config_setting_get_int64(s);
  else {
    fail_at(ld, line_of(s), "'%s' must be an integer", name);
    return false;
  }
  if (value < min || value > max) {
    fail_at(ld, line_of(s), "'%s' must be between %lld and %lld, not %lld",
            name, min, max, value);
    return false;
  }
  *out = value;
  return true;
}

static void duration_out_of_range(struct loader *ld, const config_setting_t *s,
                                  const char *name, uint64_t min_ms,
                                  uint64_t max_ms, const char *value)
{
  fail_at(ld, line_of(s), "'%s' must be between %llums and %llums, not %s",
          name, (unsigned long long)min_ms, (unsigned long long)max_ms, value);
}

/* Each form is range-checked before it is converted (see duration.h): a
 * huge number is an error, never a wrapped small one. */
static bool get_duration(struct loader *ld, const config_setting_t *group,
                         const char *name, uint64_t min_ms, uint64_t max_ms,
                         uint64_t *out)
{
  const config_setting_t *s = member_of(group, name);
  char value[64];
  uint64_t ms;
  int rc;

  if (!s)
    return false;
  switch (config_setting_type(s)) {
  case CONFIG_TYPE_INT:
  case CONFIG_TYPE_INT64: {
    long long seconds = config_setting_get_int64(s);
    snprintf(value, sizeof(value), "%lld seconds", seconds);
    rc = nlb_duration_from_seconds(seconds, max_ms, &ms);
    break;
  }
  case CONFIG_TYPE_FLOAT: {
    double seconds = config_setting_get_float(s);
    snprintf(value, sizeof(value), "%g seconds", seconds);
    rc = nlb_duration_from_float_seconds(seconds, max_ms, &ms);
    break;
  }
  case CONFIG_TYPE_STRING: {
    const char *text = config_setting_get_string(s);
    snprintf(value, sizeof(value), "\"%.40s%s\"", text,
             strlen(text) > 40 ? "..." : "");
    rc = nlb_duration_parse(text, &ms);
    if (rc == -EINVAL) {
      fail_at(ld, line_of(s),
              "'%s': bad duration %s (use e.g. \"250ms\", \"10s\", \"5m\")",
              name, value);
      return false;
    }
    break;
  }
  default:
    fail_at(ld, line_of(s), "'%s' must be a duration", name);
    return false;
  }
  if (rc == -EINVAL) {
    fail_at(ld, line_of(s), "'%s' must not be negative", name);
    return false;
  }
  if (rc < 0 || ms < min_ms || ms > max_ms) {
    duration_out_of_range(ld, s, name, min_ms, max_ms, value);
    return false;
  }
  *out = ms;
  return true;
}

/* Lists in the file may be written as lists "( )" or arrays "[ ]". */
static bool is_sequence(const config_setting_t *s)
{
  return config_setting_is_list(s) || config_setting_is_array(s);
}

static const config_setting_t *
get_list(struct loader *ld, const config_setting_t *group, const char *name)
{
  const config_setting_t *s = member_of(group, name);
  if (s && !is_sequence(s)) {
    fail_at(ld, line_of(s), "'%s' must be a list", name);
    return NULL;
  }
  return s;
}

static bool is_valid_name(const char *name)
{
  if (!*name || strlen(name) > 63)
    return false;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
      return false;
  return true;
}

/* Reads the required "name" of a list item; NULL (reported) when absent. */
static const char *item_name(struct loader *ld, const config_setting_t *item,
                             const char *what)
{
  const char *name = NULL;
  if (!get_string(ld, item, "name", &name)) {
    if (!member_of(item, "name"))
      fail_at(ld, line_of(item), "%s needs a 'name'", what);
    return NULL;
  }
  if (!is_valid_name(name)) {
    fail_at(ld, line_of(member_of(item, "name")),
            "%s name \"%s\" must be 1-63 letters, digits, '-', '_' or '.'",
            what, name);
    return NULL;
  }
  return name;
}

static int hex_value(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static void get_log_format(struct loader *ld, const config_setting_t *log,
                           const char *name, enum nlb_log_format *out)
{
  const char *text;
  if (!get_string(ld, log, name, &text))
    return;
  if (strcmp(text, "text") == 0)
    *out = NLB_LOG_TEXT;
  else if (strcmp(text, "json") == 0)
    *out = NLB_LOG_JSON;
  else
    fail_at(ld, line_of(member_of(log, name)),
            "%s must be \"text\" or \"json\", not \"%s\"", name, text);
}

static void load_log(struct loader *ld, const config_setting_t *root,
                     struct nlb_config *cfg)
{
  static const char *const keys[] = {
      "access", "access_format",   "events", "events_format",
      "level",  "priority_prefix", NULL};
  const config_setting_t *log = member_of(root, "log");
  const char *text;
  bool priority_prefix;

  cfg->log_access = dup_or_die("stderr");
  cfg->log_events = dup_or_die("stderr");
  cfg->log_level = 1;
  cfg->log_access_format = NLB_LOG_TEXT;
  cfg->log_events_format = NLB_LOG_TEXT;
  cfg->log_priority_prefix = -1;
  if (!log)
    return;
  if (!config_setting_is_group(log)) {
    fail_at(ld, line_of(log), "'log' must be a group { ... }");
    return;
  }
  check_keys(ld, log, "log", keys);
  if (get_string(ld, log, "access", &text)) {
    free(cfg->log_access);
    cfg->log_access = log_destination(ld, text);
  }
  if (get_string(ld, log, "events", &text)) {
    free(cfg->log_events);
    cfg->log_events = log_destination(ld, text);
  }
  get_log_format(ld, log, "access_format", &cfg->log_access_format);
  get_log_format(ld, log, "events_format", &cfg->log_events_format);
  if (get_bool(ld, log, "priority_prefix", &priority_prefix))
    cfg->log_priority_prefix = priority_prefix;
  if (get_string(ld, log, "level", &text)) {
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    int found = -1;
    for (int i = 0; i < 4; i++)
      if (strcmp(levels[i], text) == 0)
        found = i;
    if (found < 0)
      fail_at(ld, line_of(member_of(log, "level")),
              "level must be debug, info, warn or error, not \"%s\"", text);
    else
      cfg->log_level = found;
  }
}

static void load_api(struct loader *ld, const config_setting_t *root,
                     struct nlb_config *cfg)
{
  static const char *const keys[] = {"listen", "tls", "insecure", NULL};
  static const char *const tls_keys[] = {"cert", "key", NULL};
  const config_setting_t *api = member_of(root, "api");
  const config_setting_t *tls;
  const char *text = "127.0.0.1:9180";

  if (!api)
    return;
  if (!config_setting_is_group(api)) {
    fail_at(ld, line_of(api), "'api' must be a group { ... }");
    return;
  }
  check_keys(ld, api, "api", keys);
  cfg->has_api = true;
  get_string(ld, api, "listen", &text);
  if (nlb_addr_parse(text, &cfg->api_listen) < 0)
    fail_at(ld,
            line_of(member_of(api, "listen") ? member_of(api, "listen") : api),
            "api.listen \"%s\" is not ADDRESS:PORT", text);
  get_bool(ld, api, "insecure", &cfg->api_insecure);
  tls = member_of(api, "tls");
  if (tls) {
    const char *cert = NULL, *key = NULL;
    if (!config_setting_is_group(tls)) {
      fail_at(ld, line_of(tls), "'tls' must be a group { cert; key; }");
      return;
    }
    check_keys(ld, tls, "api.tls", tls_keys);
    get_string(ld, tls, "cert", &cert);
    get_string(ld, tls, "key", &key);
    if (!cert || !key) {
      fail_at(ld, line_of(tls), "api.tls needs both 'cert' and 'key'");
      return;
    }
    cfg->api_tls_cert = resolve_path(ld, cert);
    cfg->api_tls_key = resolve_path(ld, key);
  }
  if (!cfg->api_tls_cert && !cfg->api_insecure &&
      cfg->api_listen.sa.sa_family && !nlb_addr_is_loopback(&cfg->api_listen))
    fail_at(ld, line_of(api),
            "api.listen %s is not a loopback address: set api.tls, or "
            "api.insecure = true to serve plain h2c anyway",
            text);
}

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
static char *registry_url(struct loader *ld, const config_setting_t *reg)
{
  const char *url = NULL, *path = NULL, *conninfo = NULL;
  char *resolved, *full;

  if (member_of(reg, "url") && (!get_string(ld, reg, "url", &url) || !*url)) {
    fail_at(ld, line_of(reg), "registry.url must be a string");
    return NULL;
  }
  if (member_of(reg, "path") &&
      (!get_string(ld, reg, "path", &path) || !*path)) {
    fail_at(ld, line_of(reg), "registry.path must be a file name");
    return NULL;
  }
  if (member_of(reg, "postgresql") &&
      (!get_string(ld, reg, "postgresql", &conninfo) || !*conninfo)) {
    fail_at(ld, line_of(reg),
            "registry.postgresql must be a libpq connection string or URI");
    return NULL;
  }
  if (!!url + !!path + !!conninfo != 1) {
    fail_at(ld, line_of(reg),
            "registry needs one of 'url' (\"sqlite:FILE\" or "
            "\"postgresql:CONNINFO\"), 'path' (SQLite) or 'postgresql'");
    return NULL;
  }
  if (conninfo)
    return concat_or_die("postgresql:", conninfo);
  if (url && strncmp(url, "postgresql:", 11) == 0)
    return dup_or_die(url);
  if (url && strncmp(url, "sqlite:", 7) != 0) {
    fail_at(ld, line_of(reg),
            "registry.url must start with sqlite: or postgresql:");
    return NULL;
  }
  if (url)
    path = url + 7 + (strncmp(url + 7, "//", 2) == 0 ? 2 : 0);
  if (!*path) {
    fail_at(ld, line_of(reg), "registry.url names no SQLite file");
    return NULL;
  }
  resolved = resolve_path(ld, path);
  full = concat_or_die("sqlite://", resolved);
  free(resolved);
  return full;
}

static void load_registry(struct loader *ld, const config_setting_t *root,
                          struct nlb_config *cfg)
{
  static const char *const keys[] = {"url",
                                     "path",
                                     "postgresql",
                                     "pending_expiry",
                                     "event_retention",
                                     "endpoint_retention",
                                     "service_quota",
                                     NULL};
  const config_setting_t *reg = member_of(root, "registry");
  long long quota;

  cfg->registry_pending_expiry_ms = 7ull * 24 * 3600 * 1000;
  cfg->registry_event_retention_ms = 7ull * 24 * 3600 * 1000;
  cfg->registry_endpoint_retention_ms = 7ull * 24 * 3600 * 1000;
  cfg->registry_service_quota = 1000;
  if (!reg)
    return;
  if (!config_setting_is_group(reg)) {
    fail_at(ld, line_of(reg), "'registry' must be a group { url; }");
    return;
  }
  check_keys(ld, reg, "registry", keys);
  if ((cfg->registry_url = registry_url(ld, reg)) == NULL)
    return;
  cfg->has_registry = true;
  get_duration(ld, reg, "pending_expiry", 1000, UINT64_C(10) * 365 * 86400000,
               &cfg->registry_pending_expiry_ms);
  get_duration(ld, reg, "event_retention", 1000, UINT64_C(10) * 365 * 86400000,
               &cfg->registry_event_retention_ms);
  get_duration(ld, reg, "endpoint_retention", 1000,
               UINT64_C(10) * 365 * 86400000,
               &cfg->registry_endpoint_retention_ms);
  if (get_int(ld, reg, "service_quota", 0, 1000000, &quota))
    cfg->registry_service_quota = (uint32_t)quota;
}

/* node.networks = ( { name = "vpc9"; netns = "vpc9-here"; } ): where this
 * node opens the endpoints of networks made through the API. */
static void load_node_networks(struct loader *ld, const config_setting_t *node,
                               struct nlb_config *cfg)
{
  static const char *const keys[] = {"name", "netns", NULL};
  const config_setting_t *list = get_list(ld, node, "networks");
  int count = list ? config_setting_length(list) : 0;

  if (count > NLB_NODE_NETWORKS_MAX) {
    fail_at(ld, line_of(list), "node.networks: at most %d mappings",
            NLB_NODE_NETWORKS_MAX);
    return;
  }
  cfg->node_networks =
      calloc_or_die((size_t)count, sizeof(*cfg->node_networks));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_netns_mapping *m =
        &cfg->node_networks[cfg->n_node_networks];
    const char *name, *netns = NULL;

    if (!config_setting_is_group(item)) {
      fail_at(ld, line_of(item),
              "a node.networks entry must be a group { name; netns; }");
      continue;
    }
    check_keys(ld, item, "node.networks entry", keys);
    name = item_name(ld, item, "node.networks entry");
    if (!name)
      continue;
    for (size_t j = 0; j < cfg->n_node_networks; j++)
      if (strcmp(cfg->node_networks[j].network, name) == 0)
        fail_at(ld, line_of(item), "node.networks names \"%s\" twice", name);
    if (get_string(ld, item, "netns", &netns) &&
        (!is_valid_name(netns) || strcmp(netns, ".") == 0 ||
         strcmp(netns, "..") == 0)) {
      fail_at(ld, line_of(member_of(item, "netns")),
              "netns \"%s\" is not a namespace name", netns);
      continue;
    }
    m->network = dup_or_die(name);
    m->netns = netns ? dup_or_die(netns) : NULL;
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
static void load_node_announce(struct loader *ld, const config_setting_t *node,
                               struct nlb_config *cfg)
{
  const char *ifname = NULL;

  if (get_string(ld, node, "announce_interface", &ifname)) {
    if (is_valid_ifname(ifname))
      cfg->announce_interface = dup_or_die(ifname);
    else
      fail_at(ld, line_of(member_of(node, "announce_interface")),
              "announce_interface \"%s\": an interface name is 1-15 "
              "characters, without '/', ':' or spaces",
              ifname);
  }
  get_duration(ld, node, "withdraw_delay", 0, 600000, &cfg->withdraw_delay_ms);
}

/* node = { name = "n1"; networks = (...); announce_interface = "nlb-up";
 * withdraw_delay = "2s"; }: this node's name in a cluster (the host name
 * by default), its mapping of API networks, and the interface nlbd holds
 * while it serves. */
static void load_node(struct loader *ld, const config_setting_t *root,
                      struct nlb_config *cfg)
{
  static const char *const keys[] = {"name", "networks", "announce_interface",
                                     "withdraw_delay", NULL};
  const config_setting_t *node = member_of(root, "node");
  const char *name = NULL;
  char host[256] = "";

  cfg->withdraw_delay_ms = 2000;
  if (node && !config_setting_is_group(node)) {
    fail_at(ld, line_of(node), "'node' must be a group { name; }");
    return;
  }
  if (node) {
    check_keys(ld, node, "node", keys);
    if (member_of(node, "name") && !(name = item_name(ld, node, "node")))
      return;
    load_node_networks(ld, node, cfg);
    load_node_announce(ld, node, cfg);
  }
  if (!name) {
    gethostname(host, sizeof(host) - 1);
    host[strcspn(host, ".")] = '\0'; /* the short name, as a label */
    name = is_valid_name(host) ? host : "local";
  }
  cfg->node_name = dup_or_die(name);
}

/* A DNS name as the registry takes it: labels of 1-63 letters, digits or
 * '-' (not first or last), 253 bytes, a trailing dot allowed. A malloc'd
 * copy in lower case without the dot, or NULL. */
static char *dns_name(const char *text)
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
  copy = dup_or_die(text);
  copy[len] = '\0';
  for (char *p = copy; *p; p++)
    if (*p >= 'A' && *p <= 'Z')
      *p = (char)(*p - 'A' + 'a');
  return copy;
}

/* dns_domains = [ "payments.example" ]: where a provider's services may
 * take private DNS names. */
static void load_dns_domains(struct loader *ld, const config_setting_t *item,
                             struct nlb_config_principal *p)
{
  const config_setting_t *list = get_list(ld, item, "dns_domains");
  int n = list ? config_setting_length(list) : 0;

  if (!list)
    return;
  if (p->role != NLB_ROLE_PROVIDER) {
    fail_at(ld, line_of(list), "only a provider has 'dns_domains'");
    return;
  }
  p->dns_domains = calloc_or_die((size_t)n, sizeof(char *));
  for (int j = 0; j < n; j++) {
    const char *text = config_setting_get_string_elem(list, j);
    char *domain = text ? dns_name(text) : NULL;
    if (!domain) {
      fail_at(ld, line_of(list),
              "dns_domains: \"%s\" is not a DNS domain (labels of letters, "
              "digits and '-')",
              text ? text : "(not a string)");
      continue;
    }
    p->dns_domains[p->n_dns_domains++] = domain;
  }
}

static void load_principals(struct loader *ld, const config_setting_t *root,
                            struct nlb_config *cfg)
{
  static const char *const keys[] = {"name", "role", "token_sha256",
                                     "dns_domains", NULL};
  const config_setting_t *list = get_list(ld, root, "principals");
  int count = list ? config_setting_length(list) : 0;

  cfg->principals = calloc_or_die((size_t)count, sizeof(*cfg->principals));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_principal *p = &cfg->principals[cfg->n_principals];
    const char *name, *role = NULL, *hash = NULL;

    if (!config_setting_is_group(item)) {
      fail_at(ld, line_of(item), "a principal must be a group { ... }");
      continue;
    }
    check_keys(ld, item, "principal", keys);
    name = item_name(ld, item, "principal");
    if (!name)
      continue;
    for (size_t j = 0; j < cfg->n_principals; j++)
      if (strcmp(cfg->principals[j].name, name) == 0)
        fail_at(ld, line_of(item), "duplicate principal name \"%s\"", name);
    p->line = line_of(item);
    if (!get_string(ld, item, "role", &role))
      fail_at(ld, line_of(item), "principal \"%s\" needs a 'role'", name);
    else if (strcmp(role, "operator") == 0)
      p->role = NLB_ROLE_OPERATOR;
    else if (strcmp(role, "provider") == 0)
      p->role = NLB_ROLE_PROVIDER;
    else if (strcmp(role, "consumer") == 0)
      p->role = NLB_ROLE_CONSUMER;
    else
      fail_at(ld, line_of(member_of(item, "role")),
              "role must be operator, provider or consumer, not \"%s\"", role);
    if (!get_string(ld, item, "token_sha256", &hash)) {
      fail_at(ld, line_of(item), "principal \"%s\" needs a 'token_sha256'",
              name);
    } else {
      bool ok = strlen(hash) == 64;
      for (int b = 0; ok && b < 32; b++) {
        int hi = hex_value(hash[2 * b]), lo = hex_value(hash[2 * b + 1]);
        if (hi < 0 || lo < 0)
          ok = false;
        else
          p->token_sha256[b] = (uint8_t)(hi << 4 | lo);
      }
      if (!ok)
        fail_at(ld, line_of(member_of(item, "token_sha256")),
                "token_sha256 must be 64 hex digits (printf %%s TOKEN | "
                "sha256sum)");
    }
    load_dns_domains(ld, item, p);
    p->name = dup_or_die(name);
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

/* dns = "ADDRESS": the network's DNS responder, any address of its
 * namespace (or of the host), port 53. */
static void load_network_dns(struct loader *ld, const config_setting_t *item,
                             const struct nlb_config *cfg,
                             struct nlb_config_network *net)
{
  const char *text;

  if (!get_string(ld, item, "dns", &text))
    return;
  if (nlb_addr_parse_ip(text, 53, &net->dns) < 0 || nlb_addr_is_any(&net->dns))
    fail_at(ld, line_of(member_of(item, "dns")),
            "dns \"%s\" is not an IPv4 or IPv6 address", text);
  else if (!cfg->has_dns)
    fail_at(ld, line_of(member_of(item, "dns")),
            "network dns needs a top-level dns = { zone = \"...\"; }");
  else {
    net->has_dns = true;
    net->dns_text = dup_or_die(text);
  }
}

/* dns = { zone = "nlb.internal"; ttl = "30s"; negative_ttl = "30s"; } */
static void load_dns(struct loader *ld, const config_setting_t *root,
                     struct nlb_config *cfg)
{
  static const char *const keys[] = {"zone", "ttl", "negative_ttl", NULL};
  const config_setting_t *dns = member_of(root, "dns");
  uint64_t ttl_ms = 30000, negative_ms;
  const char *zone;

  if (!dns)
    return;
  if (!config_setting_is_group(dns)) {
    fail_at(ld, line_of(dns), "'dns' must be a group { zone; ttl; }");
    return;
  }
  check_keys(ld, dns, "dns", keys);
  if (!get_string(ld, dns, "zone", &zone)) {
    if (!member_of(dns, "zone"))
      fail_at(ld, line_of(dns), "dns needs a 'zone' (e.g. \"nlb.internal\")");
    return;
  }
  if ((cfg->dns_zone = dns_name(zone)) == NULL) {
    fail_at(ld, line_of(member_of(dns, "zone")),
            "dns zone \"%s\" is not a DNS name (labels of letters, digits "
            "and '-')",
            zone);
    return;
  }
  get_duration(ld, dns, "ttl", 0, 86400000, &ttl_ms);
  negative_ms = ttl_ms;
  get_duration(ld, dns, "negative_ttl", 0, 86400000, &negative_ms);
  cfg->dns_ttl = (uint32_t)(ttl_ms / 1000);
  cfg->dns_negative_ttl = (uint32_t)(negative_ms / 1000);
  cfg->has_dns = true;
  if (!cfg->has_registry)
    fail_at(ld, line_of(dns),
            "'dns' needs a 'registry': names follow its endpoints");
}

static void load_networks(struct loader *ld, const config_setting_t *root,
                          struct nlb_config *cfg)
{
  static const char *const keys[] = {"name",       "netns", "range",
                                     "principals", "dns",   NULL};
  const config_setting_t *list = get_list(ld, root, "networks");
  int count = list ? config_setting_length(list) : 0;

  cfg->networks = calloc_or_die((size_t)count, sizeof(*cfg->networks));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_network *net = &cfg->networks[cfg->n_networks];
    const config_setting_t *allowed;
    const char *name, *range = NULL, *netns = NULL;

    if (!config_setting_is_group(item)) {
      fail_at(ld, line_of(item), "a network must be a group { ... }");
      continue;
    }
    check_keys(ld, item, "network", keys);
    name = item_name(ld, item, "network");
    if (!name)
      continue;
    for (size_t j = 0; j < cfg->n_networks; j++)
      if (strcmp(cfg->networks[j].name, name) == 0)
        fail_at(ld, line_of(item), "duplicate network name \"%s\"", name);
    net->line = line_of(item);
    if (!get_string(ld, item, "range", &range))
      fail_at(ld, line_of(item), "network \"%s\" needs a 'range'", name);
    else if (nlb_cidr_parse(range, &net->range) < 0)
      fail_at(ld, line_of(member_of(item, "range")),
              "range \"%s\" is not a CIDR such as 10.0.0.0/24 (host bits "
              "must be zero)",
              range);
    else
      net->range_text = dup_or_die(range);
    if (get_string(ld, item, "netns", &netns)) {
      if (!is_valid_name(netns) || strcmp(netns, ".") == 0 ||
          strcmp(netns, "..") == 0)
        fail_at(ld, line_of(member_of(item, "netns")),
                "netns \"%s\" is not a namespace name", netns);
      else
        net->netns = dup_or_die(netns);
    }
    allowed = get_list(ld, item, "principals");
    if (allowed) {
      int n = config_setting_length(allowed);
      net->principals = calloc_or_die((size_t)n, sizeof(char *));
      for (int j = 0; j < n; j++) {
        const config_setting_t *e = config_setting_get_elem(allowed, j);
        const char *pname = config_setting_get_string(e);
        const struct nlb_config_principal *p;
        if (!pname) {
          fail_at(ld, line_of(allowed), "principals must be strings");
          continue;
        }
        p = find_principal(cfg, pname);
        if (!p)
          fail_at(ld, line_of(allowed), "unknown principal \"%s\"", pname);
        else if (p->role != NLB_ROLE_CONSUMER)
          fail_at(ld, line_of(allowed), "principal \"%s\" is not a consumer",
                  pname);
        net->principals[net->n_principals++] = dup_or_die(pname);
      }
    }
    load_network_dns(ld, item, cfg, net);
    net->name = dup_or_die(name);
    cfg->n_networks++;
  }
}

static void load_health(struct loader *ld, const config_setting_t *group,
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
  const config_setting_t *s = member_of(group, "health_check");
  const char *text;
  long long value;

  hc->protocol = NLB_HEALTH_TCP;
  hc->interval_ms = 10000;
  hc->timeout_ms = 5000;
  hc->healthy_threshold = 3;
  hc->unhealthy_threshold = 2;
  hc->path = dup_or_die("/");
  nlb_status_matcher_parse("200-399", &hc->matcher);
  if (!s)
    return;
  if (!config_setting_is_group(s)) {
    fail_at(ld, line_of(s), "'health_check' must be a group { ... }");
    return;
  }
  check_keys(ld, s, "health_check", keys);
  if (get_string(ld, s, "protocol", &text)) {
    if (strcmp(text, "tcp") == 0)
      hc->protocol = NLB_HEALTH_TCP;
    else if (strcmp(text, "http") == 0)
      hc->protocol = NLB_HEALTH_HTTP;
    else
      fail_at(ld, line_of(member_of(s, "protocol")),
              "protocol must be \"tcp\" or \"http\", not \"%s\"", text);
  }
  if (get_int(ld, s, "port", 0, 65535, &value))
    hc->port = (uint16_t)value;
  get_duration(ld, s, "interval", 100, 3600000, &hc->interval_ms);
  get_duration(ld, s, "timeout", 10, 3600000, &hc->timeout_ms);
  if (get_int(ld, s, "healthy_threshold", 1, 100, &value))
    hc->healthy_threshold = (unsigned)value;
  if (get_int(ld, s, "unhealthy_threshold", 1, 100, &value))
    hc->unhealthy_threshold = (unsigned)value;
  if (get_string(ld, s, "path", &text)) {
    if (text[0] != '/' || strpbrk(text, " \r\n"))
      fail_at(ld, line_of(member_of(s, "path")),
              "path must start with '/' and hold no spaces");
    free(hc->path);
    hc->path = dup_or_die(text);
  }
  if (get_string(ld, s, "host", &text)) {
    if (!*text || strpbrk(text, " \r\n"))
      fail_at(ld, line_of(member_of(s, "host")), "host must be one word");
    hc->host = dup_or_die(text);
  }
  if (get_string(ld, s, "matcher", &text) &&
      nlb_status_matcher_parse(text, &hc->matcher) < 0)
    fail_at(ld, line_of(member_of(s, "matcher")),
            "matcher \"%s\" must be codes or ranges such as \"200-399\" or "
            "\"200,204\"",
            text);
  if (hc->timeout_ms > hc->interval_ms)
    fail_at(ld, line_of(s), "health_check timeout must not exceed interval");
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

struct placed_address {
  const union nlb_sockaddr *address;
  int line;
  size_t order; /* where it was written: ties keep it */
  const char *owner;
};

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
static void report_duplicates(struct loader *ld, struct placed_address *addr,
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
      fail_at(ld, addr[i].line, "duplicate target %s in target group \"%s\"",
              text, addr[i].owner);
    else
      fail_at(ld, addr[i].line,
              "listener port %u on this address is already used by \"%s\"",
              nlb_addr_port(addr[i].address), addr[first].owner);
  }
}

static void load_targets(struct loader *ld, const config_setting_t *group,
                         struct nlb_config_target_group *tg)
{
  static const char *const keys[] = {"address", "weight", NULL};
  const config_setting_t *list = get_list(ld, group, "targets");
  int count = list ? config_setting_length(list) : 0;

  tg->targets = calloc_or_die((size_t)count, sizeof(*tg->targets));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_target *t = &tg->targets[tg->n_targets];
    const char *address = NULL;
    long long weight = 1;

    if (!config_setting_is_group(item)) {
      fail_at(ld, line_of(item), "a target must be a group { address; }");
      continue;
    }
    check_keys(ld, item, "target", keys);
    t->line = line_of(item);
    if (!get_string(ld, item, "address", &address)) {
      fail_at(ld, line_of(item), "target needs an 'address'");
      continue;
    }
    if (nlb_addr_parse(address, &t->address) < 0 ||
        nlb_addr_port(&t->address) == 0) {
      fail_at(ld, line_of(member_of(item, "address")),
              "target address \"%s\" is not IP:PORT or [IPv6]:PORT", address);
      continue;
    }
    get_int(ld, item, "weight", 0, 1000, &weight);
    t->weight = (uint32_t)weight;
    tg->n_targets++;
  }
  struct placed_address *placed = calloc_or_die(tg->n_targets, sizeof(*placed));
  for (size_t i = 0; i < tg->n_targets; i++)
    placed[i] = (struct placed_address){&tg->targets[i].address,
                                        tg->targets[i].line, i, tg->name};
  report_duplicates(ld, placed, tg->n_targets, "target");
  free(placed);
}

static void load_target_groups(struct loader *ld, const config_setting_t *root,
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
                                     NULL};
  const config_setting_t *list = get_list(ld, root, "target_groups");
  int count = list ? config_setting_length(list) : 0;

  cfg->target_groups =
      calloc_or_die((size_t)count, sizeof(*cfg->target_groups));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_target_group *tg =
        &cfg->target_groups[cfg->n_target_groups];
    const char *name, *text;
    long long value;

    if (!config_setting_is_group(item)) {
      fail_at(ld, line_of(item), "a target group must be a group { ... }");
      continue;
    }
    check_keys(ld, item, "target group", keys);
    name = item_name(ld, item, "target group");
    if (!name)
      continue;
    if (nlb_config_find_target_group(cfg, name))
      fail_at(ld, line_of(item), "duplicate target group name \"%s\"", name);
    tg->name = dup_or_die(name);
    tg->line = line_of(item);
    tg->algorithm = NLB_ALGORITHM_MAGLEV;
    tg->fail_open = true;
    tg->deregistration_delay_ms = 300000;
    tg->connect_timeout_ms = 5000;
    tg->connect_retries = 2;
    if (get_string(ld, item, "algorithm", &text)) {
      if (strcmp(text, "maglev") == 0)
        tg->algorithm = NLB_ALGORITHM_MAGLEV;
      else if (strcmp(text, "round_robin") == 0)
        tg->algorithm = NLB_ALGORITHM_ROUND_ROBIN;
      else if (strcmp(text, "least_conn") == 0)
        tg->algorithm = NLB_ALGORITHM_LEAST_CONN;
      else
        fail_at(ld, line_of(member_of(item, "algorithm")),
                "algorithm must be maglev, round_robin or least_conn, not "
                "\"%s\"",
                text);
    }
    if (get_string(ld, item, "proxy_protocol", &text)) {
      if (strcmp(text, "v2") == 0)
        tg->proxy_protocol_v2 = true;
      else if (strcmp(text, "off") != 0)
        fail_at(ld, line_of(member_of(item, "proxy_protocol")),
                "proxy_protocol must be \"off\" or \"v2\", not \"%s\"", text);
    }
    get_bool(ld, item, "fail_open", &tg->fail_open);
    get_duration(ld, item, "deregistration_delay", 0, 3600000,
                 &tg->deregistration_delay_ms);
    get_duration(ld, item, "slow_start", 0, 900000, &tg->slow_start_ms);
    get_duration(ld, item, "connect_timeout", 10, 600000,
                 &tg->connect_timeout_ms);
    if (get_int(ld, item, "connect_retries", 0, 16, &value))
      tg->connect_retries = (unsigned)value;
    load_health(ld, item, &tg->health);
    load_targets(ld, item, tg);
    cfg->n_target_groups++;
  }
}

static void load_listeners(struct loader *ld, const config_setting_t *lb_item,
                           struct nlb_config *cfg,
                           struct nlb_config_load_balancer *lb)
{
  static const char *const keys[] = {"port", "target_group", "bind",
                                     "idle_timeout", NULL};
  const config_setting_t *list = get_list(ld, lb_item, "listeners");
  int count = list ? config_setting_length(list) : 0;

  if (!list)
    fail_at(ld, lb->line, "load balancer \"%s\" needs 'listeners'", lb->name);
  lb->listeners = calloc_or_die((size_t)count, sizeof(*lb->listeners));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_listener *l = &lb->listeners[lb->n_listeners];
    const char *group = NULL, *bind = NULL;
    const struct nlb_config_target_group *tg;
    long long port;

    if (!config_setting_is_group(item)) {
      fail_at(ld, line_of(item), "a listener must be a group { ... }");
      continue;
    }
    check_keys(ld, item, "listener", keys);
    l->line = line_of(item);
    l->idle_timeout_ms = 350000;
    if (!get_int(ld, item, "port", 1, 65535, &port)) {
      if (!member_of(item, "port"))
        fail_at(ld, l->line, "listener needs a 'port'");
      continue;
    }
    l->port = (uint16_t)port;
    for (size_t j = 0; j < lb->n_listeners; j++)
      if (lb->listeners[j].port == l->port)
        fail_at(ld, l->line, "duplicate listener port %u in \"%s\"", l->port,
                lb->name);
    if (!get_string(ld, item, "target_group", &group)) {
      fail_at(ld, l->line, "listener needs a 'target_group'");
      continue;
    }
    tg = nlb_config_find_target_group(cfg, group);
    if (!tg) {
      fail_at(ld, line_of(member_of(item, "target_group")),
              "unknown target group \"%s\"", group);
      continue;
    }
    l->target_group = (size_t)(tg - cfg->target_groups);
    if (get_string(ld, item, "bind", &bind)) {
      if (nlb_addr_parse_ip(bind, l->port, &l->bind) < 0) {
        fail_at(ld, line_of(member_of(item, "bind")),
                "bind \"%s\" is not an IP address", bind);
        continue;
      }
      l->has_bind = true;
    }
    get_duration(ld, item, "idle_timeout", 1000, 7 * 86400000ull,
                 &l->idle_timeout_ms);
    lb->n_listeners++;
  }
}

static void load_load_balancers(struct loader *ld, const config_setting_t *root,
                                struct nlb_config *cfg)
{
  static const char *const keys[] = {"name", "listeners", NULL};
  const config_setting_t *list = get_list(ld, root, "load_balancers");
  int count = list ? config_setting_length(list) : 0;

  cfg->load_balancers =
      calloc_or_die((size_t)count, sizeof(*cfg->load_balancers));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_config_load_balancer *lb =
        &cfg->load_balancers[cfg->n_load_balancers];
    const char *name;

    if (!config_setting_is_group(item)) {
      fail_at(ld, line_of(item), "a load balancer must be a group { ... }");
      continue;
    }
    check_keys(ld, item, "load balancer", keys);
    name = item_name(ld, item, "load balancer");
    if (!name)
      continue;
    for (size_t j = 0; j < cfg->n_load_balancers; j++)
      if (strcmp(cfg->load_balancers[j].name, name) == 0)
        fail_at(ld, line_of(item), "duplicate load balancer name \"%s\"", name);
    lb->name = dup_or_die(name);
    lb->line = line_of(item);
    load_listeners(ld, item, cfg, lb);
    cfg->n_load_balancers++;
  }
  /* Two listeners may not claim the same host address and port. */
  size_t n_binds = 0;
  for (size_t a = 0; a < cfg->n_load_balancers; a++)
    n_binds += cfg->load_balancers[a].n_listeners;
  struct placed_address *placed = calloc_or_die(n_binds, sizeof(*placed));
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
  report_duplicates(ld, placed, n_binds, "listener");
  free(placed);
}

static void load_cpu_affinity(struct loader *ld, const config_setting_t *root,
                              struct nlb_config *cfg)
{
  const char *text = "auto";

  get_string(ld, root, "worker_cpu_affinity", &text);
  if (strcmp(text, "auto") == 0)
    cfg->pin_workers = true;
  else if (strcmp(text, "off") == 0)
    cfg->pin_workers = false;
  else
    fail_at(ld, line_of(member_of(root, "worker_cpu_affinity")),
            "worker_cpu_affinity \"%s\": expected \"auto\" or \"off\"", text);
}

/* libconfig 1.5 reads an integer without the L suffix into an int and
 * wraps what does not fit (4294967376 reads as 80, 0xFFFFFFFF as -1); with
 * the suffix it saturates at the int64 limits. What it read can then no
 * longer be told from a small number, so the integers are checked in the
 * text before libconfig reads it. No setting takes a number near these
 * limits, so one that does not fit is out of range wherever it is. */
#define INCLUDE_DEPTH_MAX 10

static void check_integers_in(struct loader *ld, const char *path, int depth);

static bool is_name_char(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '*';
}

static bool is_digit(char c)
{
  return c >= '0' && c <= '9';
}

/* Reads one number at p (libconfig's integer, integer64, hex, hex64 and
 * float forms); reports an integer that libconfig would not keep. Returns
 * the end of the number. */
static const char *check_number(struct loader *ld, const char *path, int line,
                                const char *p)
{
  const char *start = p, *q;
  unsigned long long magnitude;
  bool hex = false, suffix, fits;

  if (*p == '-' || *p == '+')
    p++;
  if (p == start && p[0] == '0' && (p[1] == 'x' || p[1] == 'X') &&
      isxdigit((unsigned char)p[2])) {
    hex = true;
    for (p += 2; isxdigit((unsigned char)*p);)
      p++;
  } else {
    while (is_digit(*p))
      p++;
    q = p;
    if (*q == '.')
      for (q++; is_digit(*q);)
        q++;
    if ((*q == 'e' || *q == 'E') &&
        (is_digit(q[1]) || ((q[1] == '-' || q[1] == '+') && is_digit(q[2])))) {
      for (q += 2; is_digit(*q);)
        q++;
    }
    if (q != p)
      return q; /* a float: its range is checked where it is used */
  }
  suffix = *p == 'L';
  errno = 0;
  if (hex) {
    magnitude = strtoull(start, NULL, 16);
    fits = errno == 0 && magnitude <= (suffix ? LLONG_MAX : INT_MAX);
  } else {
    long long value = strtoll(start, NULL, 10);
    fits = errno == 0 && (suffix || (value >= INT_MIN && value <= INT_MAX));
  }
  if (suffix)
    p += p[1] == 'L' ? 2 : 1;
  if (!fits)
    fail_in(ld, path, line, "integer %.*s%s is out of range",
            (int)(p - start > 40 ? 40 : p - start), start,
            p - start > 40 ? "..." : "");
  return p;
}

/* An "@include" line: the file it names is checked too, as libconfig
 * (without an include directory) opens it: relative to the working
 * directory. */
static const char *check_include(struct loader *ld, const char *p, int depth)
{
  const char *name, *end;
  char *included;

  p += strlen("@include");
  if (*p != ' ' && *p != '\t')
    return p;
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p != '"')
    return p;
  name = p + 1;
  end = strchr(name, '"');
  if (!end || memchr(name, '\n', (size_t)(end - name)))
    return name;
  included = strndup(name, (size_t)(end - name));
  if (included && depth < INCLUDE_DEPTH_MAX)
    check_integers_in(ld, included, depth + 1);
  free(included);
  return end + 1;
}

static void check_integers(struct loader *ld, const char *path,
                           const char *text, int depth)
{
  const char *p = text;
  bool line_start = true;
  int line = 1;

  while (*p) {
    if (*p == '\n') {
      line++;
      line_start = true;
      p++;
    } else if (*p == ' ' || *p == '\t' || *p == '\r') {
      p++;
    } else if (line_start && strncmp(p, "@include", 8) == 0) {
      p = check_include(ld, p, depth);
      line_start = false;
    } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
      p += strcspn(p, "\n");
    } else if (p[0] == '/' && p[1] == '*') {
      const char *end = strstr(p + 2, "*/");
      for (end = end ? end + 2 : p + strlen(p); p < end; p++)
        line += *p == '\n';
    } else if (*p == '"') {
      for (p++; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1])
          p++;
        line += *p == '\n';
      }
      p += *p == '"';
      line_start = false;
    } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
               *p == '*') {
      while (is_name_char(*p))
        p++;
      line_start = false;
    } else if (is_digit(*p) ||
               ((*p == '-' || *p == '+' || *p == '.') &&
                (is_digit(p[1]) || (p[1] == '.' && is_digit(p[2]))))) {
      p = check_number(ld, path, line, p);
      line_start = false;
    } else {
      p++;
      line_start = false;
    }
  }
}

/* Reads the file and checks its integers; a file that cannot be read is
 * left to libconfig, which says so. */
static void check_integers_in(struct loader *ld, const char *path, int depth)
{
  FILE *f = fopen(path, "r");
  char *text = NULL;
  size_t size = 0;
  size_t got;
  char chunk[4096];

  if (!f)
    return;
  while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
    char *grown = realloc(text, size + got + 1);
    if (!grown)
      goto close_file;
    text = grown;
    memcpy(text + size, chunk, got);
    size += got;
  }
  if (text) {
    text[size] = '\0';
    check_integers(ld, path, text, depth);
  }
close_file:
  free(text);
  fclose(f);
}

struct nlb_config *nlb_config_load(const char *path, char **errors)
{
  static const char *const keys[] = {"workers",
                                     "worker_cpu_affinity",
                                     "shutdown_timeout",
                                     "max_flows",
                                     "log",
                                     "api",
                                     "registry",
                                     "principals",
                                     "networks",
                                     "target_groups",
                                     "load_balancers",
                                     "node",
                                     "dns",
                                     NULL};
  struct loader ld = {.path = path};
  struct nlb_config *cfg;
  config_t file;
  const config_setting_t *root;
  long long workers = 0, max_flows = 0;

  *errors = NULL;
  cfg = calloc(1, sizeof(*cfg));
  if (!cfg)
    return NULL;
  cfg->path = dup_or_die(path);
  ld.dir = config_dir(path);
  config_init(&file);
  check_integers_in(&ld, path, 0);
  if (!config_read_file(&file, path)) {
    if (config_error_type(&file) == CONFIG_ERR_FILE_IO)
      fail_at(&ld, 0, "cannot read file: %s", strerror(errno ? errno : EIO));
    else
      fail_at(&ld, config_error_line(&file), "syntax error: %s",
              config_error_text(&file));
    goto done;
  }
  root = config_root_setting(&file);
  check_keys(&ld, root, "the top level", keys);
  if (get_int(&ld, root, "workers", 0, 256, &workers) && workers > 0)
    cfg->workers = (unsigned)workers;
  if (cfg->workers == 0) {
    size_t cpus = nlb_cpus_allowed(NULL, 0);
    cfg->workers = cpus < 256 ? (unsigned)cpus : 256;
  }
  load_cpu_affinity(&ld, root, cfg);
  cfg->shutdown_timeout_ms = 30000;
  get_duration(&ld, root, "shutdown_timeout", 0, 3600000,
               &cfg->shutdown_timeout_ms);
  if (get_int(&ld, root, "max_flows", 0, 1000000000, &max_flows))
    cfg->max_flows = (uint64_t)max_flows;
  load_log(&ld, root, cfg);
  load_api(&ld, root, cfg);
  load_registry(&ld, root, cfg);
  load_node(&ld, root, cfg);
  load_dns(&ld, root, cfg);
  load_principals(&ld, root, cfg);
  load_networks(&ld, root, cfg);
  load_target_groups(&ld, root, cfg);
  load_load_balancers(&ld, root, cfg);
  /* A config network has its netns right there. */
  for (size_t i = 0; i < cfg->n_node_networks; i++)
    for (size_t j = 0; j < cfg->n_networks; j++)
      if (strcmp(cfg->node_networks[i].network, cfg->networks[j].name) == 0)
        fail_at(&ld, cfg->networks[j].line,
                "network \"%s\" is in the config: give its netns there, "
                "not in node.networks",
                cfg->networks[j].name);
  if (cfg->has_api && !cfg->has_registry)
    fail_at(&ld, line_of(member_of(root, "api")),
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
    free(tg->targets);
  }
  free(cfg->target_groups);
  for (size_t i = 0; i < cfg->n_load_balancers; i++) {
    free(cfg->load_balancers[i].name);
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

const struct nlb_config_target_group *
nlb_config_find_target_group(const struct nlb_config *cfg, const char *name)
{
  for (size_t i = 0; i < cfg->n_target_groups; i++)
    if (cfg->target_groups[i].name &&
        strcmp(cfg->target_groups[i].name, name) == 0)
      return &cfg->target_groups[i];
  return NULL;
}

const char *nlb_algorithm_name(enum nlb_algorithm algorithm)
{
  switch (algorithm) {
  case NLB_ALGORITHM_ROUND_ROBIN:
    return "round_robin";
  case NLB_ALGORITHM_LEAST_CONN:
    return "least_conn";
  default:
    return "maglev";
  }
}
