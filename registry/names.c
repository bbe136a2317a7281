/* The registry's names, frees, errors, small helpers and the config's
 * things found by name, which the other files of registry/ use: this one
 * uses none of them. The checks of names that depend on nothing are here
 * too: the config loader (nlb/) and the registry both call
 * reg_netns_name_check, so a name one accepts the other does too, with the
 * same message; services.c and dns.c both ask whether a name is shaped like
 * an endpoint ID. Nothing here touches the store: the config fuzzer links
 * this file alone. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "registry-int.h"

/* ---- names -------------------------------------------------------------- */

static const char *const role_names[] = {"operator", "provider", "consumer"};
static const char *const state_names[REG_EP_STATE_COUNT] = {
    "pendingAcceptance", "available", "rejected",
    "deleted",           "expired",   "failed",
};
static const char *const event_names[REG_EVENT_TYPE_COUNT] = {
    "connect",      "accept",       "reject",           "delete",
    "expire",       "fail",         "modify",           "register",
    "deregister",   "drain",        "principal_create", "principal_delete",
    "token_create", "token_revoke", "network_create",   "network_delete",
};
static const char *const node_state_names[] = {"up", "draining", "down"};

static int parse_name(const char *s, const char *const *names, int n)
{
  for (int i = 0; s && i < n; i++)
    if (strcmp(s, names[i]) == 0)
      return i;
  return -EINVAL;
}

const char *reg_role_name(enum reg_role role)
{
  return (unsigned)role < 3 ? role_names[role] : "unknown";
}

int reg_role_parse(const char *s, enum reg_role *out)
{
  int i = parse_name(s, role_names, 3);

  if (i < 0)
    return i;
  *out = (enum reg_role)i;
  return 0;
}

const char *reg_state_name(enum reg_endpoint_state state)
{
  return (unsigned)state < REG_EP_STATE_COUNT ? state_names[state] : "unknown";
}

int reg_state_parse(const char *s, enum reg_endpoint_state *out)
{
  int i = parse_name(s, state_names, REG_EP_STATE_COUNT);

  if (i < 0)
    return i;
  *out = (enum reg_endpoint_state)i;
  return 0;
}

const char *reg_event_type_name(enum reg_event_type type)
{
  return (unsigned)type < REG_EVENT_TYPE_COUNT ? event_names[type] : "unknown";
}

int reg_event_type_parse(const char *s, enum reg_event_type *out)
{
  int i = parse_name(s, event_names, REG_EVENT_TYPE_COUNT);

  if (i < 0)
    return i;
  *out = (enum reg_event_type)i;
  return 0;
}

const char *reg_node_state_name(enum reg_node_state state)
{
  return (unsigned)state < 3 ? node_state_names[state] : "unknown";
}

char *reg_format_time(int64_t unix_ms, char *buf)
{
  time_t secs = (time_t)(unix_ms / 1000);
  int ms = (int)(unix_ms % 1000);
  struct tm tm;
  size_t len;

  if (ms < 0) {
    ms += 1000;
    secs--;
  }
  gmtime_r(&secs, &tm);
  len = strftime(buf, REG_TIME_BUF - 5, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + len, REG_TIME_BUF - len, ".%03dZ", ms % 1000);
  return buf;
}

/* ---- frees -------------------------------------------------------------- */

void reg_strings_free(char **strings, size_t n)
{
  if (strings == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    free(strings[i]);
  free(strings);
}

void reg_service_release(struct reg_service *service)
{
  if (service == NULL)
    return;
  free(service->ports);
  reg_strings_free(service->allowed_principals, service->n_allowed_principals);
  service->ports = NULL;
  service->n_ports = 0;
  service->allowed_principals = NULL;
  service->n_allowed_principals = 0;
}

void reg_endpoint_release(struct reg_endpoint *endpoint)
{
  if (endpoint == NULL)
    return;
  free(endpoint->ports);
  reg_strings_free(endpoint->allowed_sources, endpoint->n_allowed_sources);
  free(endpoint->placements);
  reg_strings_free(endpoint->dns_names, endpoint->n_dns_names);
  endpoint->dns_names = NULL;
  endpoint->n_dns_names = 0;
  endpoint->ports = NULL;
  endpoint->n_ports = 0;
  endpoint->allowed_sources = NULL;
  endpoint->n_allowed_sources = 0;
  endpoint->placements = NULL;
  endpoint->n_placements = 0;
}

void reg_services_free(struct reg_service *services, size_t n)
{
  for (size_t i = 0; services && i < n; i++)
    reg_service_release(&services[i]);
  free(services);
}

void reg_endpoints_free(struct reg_endpoint *endpoints, size_t n)
{
  for (size_t i = 0; endpoints && i < n; i++)
    reg_endpoint_release(&endpoints[i]);
  free(endpoints);
}

int reg_strings_copy(const char *const *src, size_t n, char ***out)
{
  *out = NULL;
  if (n == 0)
    return 0;
  if ((*out = calloc(n, sizeof(char *))) == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < n; i++)
    if (((*out)[i] = strdup(src[i])) == NULL) {
      reg_strings_free(*out, i);
      *out = NULL;
      return -ENOMEM;
    }
  return 0;
}

/* ---- errors ------------------------------------------------------------- */

int reg_set_error(struct reg_error *err, int code, const char *field,
                  const char *fmt, ...)
{
  va_list ap;

  if (err == NULL)
    return code;
  err->code = code;
  snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof(err->message), fmt, ap);
  va_end(ap);
  return code;
}

void reg_clear_error(struct reg_error *err)
{
  if (err != NULL)
    memset(err, 0, sizeof(*err));
}

int reg_store_error(struct reg *reg, struct reg_error *err, int r)
{
  if (r == -ENOMEM)
    return reg_set_error(err, r, NULL, "out of memory");
  if (r == -ENOTCONN)
    return reg_set_error(err, r, NULL, "the registry store is unavailable: %s",
                         reg->ops->errmsg(reg->store));
  return reg_set_error(err, r, NULL, "%s", reg->ops->errmsg(reg->store));
}

int reg_check_operator(const struct reg_actor *actor, struct reg_error *err)
{
  if (actor == NULL || actor->name == NULL || actor->role != REG_ROLE_OPERATOR)
    return reg_set_error(err, -EACCES, NULL, "only operators may do this");
  return 0;
}

/* ---- helpers ------------------------------------------------------------ */

int64_t reg_now_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t reg_monotonic_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int reg_make_id(char *buf, const char *prefix)
{
  static const char hex[] = "0123456789abcdef";
  unsigned char bytes[(REG_ID_HEX + 1) / 2];
  size_t got = 0;
  size_t len = strlen(prefix);

  while (got < sizeof(bytes)) {
    ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);

    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    got += (size_t)n;
  }
  memcpy(buf, prefix, len);
  for (int i = 0; i < REG_ID_HEX; i++)
    buf[len + i] = hex[(bytes[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
  buf[len + REG_ID_HEX] = '\0';
  return 0;
}

bool reg_name_ok(const char *s)
{
  size_t len = s ? strlen(s) : 0;

  return len > 0 && len <= REG_NAME_MAX;
}

bool reg_name_chars_ok(const char *s)
{
  if (!reg_name_ok(s))
    return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
      return false;
  return true;
}

bool reg_name_tame(const char *s)
{
  return reg_name_chars_ok(s) &&
         ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
          (s[0] >= '0' && s[0] <= '9'));
}

static int cmp_strings(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void reg_strings_sort_unique(char **v, size_t *n)
{
  size_t j = 0;

  if (*n > 1)
    qsort(v, *n, sizeof(*v), cmp_strings);
  for (size_t i = 0; i < *n; i++) {
    if (j > 0 && strcmp(v[j - 1], v[i]) == 0) {
      free(v[i]);
      continue;
    }
    v[j++] = v[i];
  }
  *n = j;
}

/* ---- the config, by name ------------------------------------------------ */

const struct config_principal *reg_find_principal(const struct config *c,
                                                  const char *name)
{
  /* Names are one name whatever their case (see registry.h). */
  for (size_t i = 0; i < c->n_principals; i++)
    if (strcasecmp(c->principals[i].name, name) == 0)
      return &c->principals[i];
  return NULL;
}

const struct config_network *reg_find_network(const struct config *c,
                                              const char *name)
{
  for (size_t i = 0; i < c->n_networks; i++)
    if (strcmp(c->networks[i].name, name) == 0)
      return &c->networks[i];
  return NULL;
}

const struct config_load_balancer *
reg_find_load_balancer(const struct config *c, const char *name)
{
  for (size_t i = 0; i < c->n_load_balancers; i++)
    if (strcmp(c->load_balancers[i].name, name) == 0)
      return &c->load_balancers[i];
  return NULL;
}

bool reg_service_allows(const struct reg_service *s, const char *consumer)
{
  for (size_t i = 0; i < s->n_allowed_principals; i++)
    if (strcmp(s->allowed_principals[i], "*") == 0 ||
        strcmp(s->allowed_principals[i], consumer) == 0)
      return true;
  return false;
}

bool reg_has_target_group(const struct config *c, const char *name)
{
  for (size_t i = 0; i < c->n_target_groups; i++)
    if (strcmp(c->target_groups[i], name) == 0)
      return true;
  return false;
}

bool reg_preserves_client_ip(const struct config *c, const char *name)
{
  for (size_t i = 0; i < c->n_preserve_groups; i++)
    if (strcmp(c->preserve_groups[i], name) == 0)
      return true;
  return false;
}

/* ---- checks of names ---------------------------------------------------- */

bool reg_name_like_endpoint_id(const char *s)
{
  return strncasecmp(s, "ep-", 3) == 0 && s[3] != '\0' &&
         strspn(s + 3, "0123456789abcdefABCDEF") == strlen(s + 3);
}

/* Shows a name that may hold anything in a message: at most 32 of its
 * bytes (the message must fit a reg_error), a newline as \n, a tab as \t,
 * quotes, backslashes and every other byte that is not printable ASCII as
 * \xHH (as the config loader and the event log escape), so that the
 * message stays one line of plain text wherever it is written. */
static void name_shown(const char *name, char *out, size_t len)
{
  size_t n = 0, i;

  for (i = 0; name[i] != '\0' && i < 32 && n + 5 < len; i++) {
    unsigned char c = (unsigned char)name[i];

    if (c == '\n' || c == '\t')
      n += (size_t)snprintf(out + n, len - n, "\\%c", c == '\n' ? 'n' : 't');
    else if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
      n += (size_t)snprintf(out + n, len - n, "\\x%02x", c);
    else
      out[n++] = (char)c;
  }
  if (name[i] != '\0' && n + 4 <= len)
    n += (size_t)snprintf(out + n, len - n, "...");
  out[n] = '\0';
}

int reg_netns_name_check(const char *netns, char *why, size_t len)
{
  char shown[32 * 4 + 4];
  size_t n = netns ? strlen(netns) : 0;

  /* A file name in /run/netns that no tool takes for an option. */
  if (n > 0 && n <= REG_NETNS_NAME_MAX &&
      strspn(netns, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    "0123456789-_.") == n &&
      netns[0] != '-' && strcmp(netns, ".") != 0 && strcmp(netns, "..") != 0)
    return 0;
  name_shown(netns ? netns : "", shown, sizeof(shown));
  snprintf(why, len,
           "netns \"%s\" is not a namespace name (1-%d letters, digits, "
           "'-', '_' or '.', not starting with '-', not . or ..)",
           shown, REG_NETNS_NAME_MAX);
  return -EINVAL;
}
