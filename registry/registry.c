/* The registry: permission checks, the endpoint state machine, address
 * allocation and event delivery, on top of a store (registry-store.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "nlb/registry-store.h"
#include "nlb/registry.h"

typedef unsigned __int128 u128;

struct config_principal {
  char name[REG_NAME_BUF];
  enum reg_role role;
};

struct config_network {
  char name[REG_NAME_BUF];
  char netns[REG_NAME_BUF];
  int family;     /* AF_INET or AF_INET6 */
  u128 first;     /* lowest address a endpoint may get */
  u128 last;      /* highest */
  u128 low, high; /* the whole range, as keys */
  char **principals;
  size_t n_principals;
};

struct config_load_balancer {
  char name[REG_NAME_BUF];
  uint16_t *ports;
  size_t n_ports;
  bool proxy_protocol;
};

struct config {
  struct config_principal *principals;
  size_t n_principals;
  struct config_network *networks;
  size_t n_networks;
  struct config_load_balancer *load_balancers;
  size_t n_load_balancers;
  int64_t pending_expiry_ms;
};

struct observer {
  reg_observer_fn cb;
  void *arg;
  bool removed;
};

struct event_queue {
  struct reg_event *v;
  size_t len;
  size_t cap;
};

struct reg {
  const struct reg_store_ops *ops;
  struct reg_store *store;
  struct config config;
  struct observer *observers;
  size_t n_observers;
  size_t cap_observers;
  struct event_queue tx_events; /* made by the open transaction */
  struct event_queue delivery;  /* committed, not yet delivered */
  bool dispatching;
};

/* ---- small helpers ------------------------------------------------------ */

static const char *const role_names[] = {"operator", "provider", "consumer"};
static const char *const state_names[REG_EP_STATE_COUNT] = {
    "pendingAcceptance", "available", "rejected",
    "deleted",           "expired",   "failed",
};
static const char *const event_names[] = {
    "connect", "accept", "reject", "delete", "expire", "fail",
};

const char *reg_role_name(enum reg_role role)
{
  return (unsigned)role < 3 ? role_names[role] : "unknown";
}

int reg_role_parse(const char *s, enum reg_role *out)
{
  for (int i = 0; s && i < 3; i++)
    if (strcmp(s, role_names[i]) == 0) {
      *out = (enum reg_role)i;
      return 0;
    }
  return -EINVAL;
}

const char *reg_state_name(enum reg_endpoint_state state)
{
  return (unsigned)state < REG_EP_STATE_COUNT ? state_names[state] : "unknown";
}

int reg_state_parse(const char *s, enum reg_endpoint_state *out)
{
  for (int i = 0; s && i < REG_EP_STATE_COUNT; i++)
    if (strcmp(s, state_names[i]) == 0) {
      *out = (enum reg_endpoint_state)i;
      return 0;
    }
  return -EINVAL;
}

const char *reg_event_type_name(enum reg_event_type type)
{
  return (unsigned)type < 6 ? event_names[type] : "unknown";
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
  endpoint->ports = NULL;
  endpoint->n_ports = 0;
  endpoint->allowed_sources = NULL;
  endpoint->n_allowed_sources = 0;
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

__attribute__((format(printf, 4, 5))) static int
set_error(struct reg_error *err, int code, const char *field, const char *fmt,
          ...)
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

static void clear_error(struct reg_error *err)
{
  if (err != NULL)
    memset(err, 0, sizeof(*err));
}

/* A store failure: the store's own text for -EIO. */
static int store_error(struct reg *reg, struct reg_error *err, int r)
{
  if (r == -ENOMEM)
    return set_error(err, r, NULL, "out of memory");
  return set_error(err, r, NULL, "%s", reg->ops->errmsg(reg->store));
}

static int64_t now_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* prefix + 17 random lowercase hex digits. */
static int make_id(char *buf, const char *prefix)
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

static bool name_ok(const char *s)
{
  size_t len = s ? strlen(s) : 0;

  return len > 0 && len <= REG_NAME_MAX;
}

/* Service names: they appear in URLs and logs, so a tame alphabet, and not
 * shaped like an ID (lookups accept either). */
static bool service_name_ok(const char *s)
{
  if (!name_ok(s) || strncmp(s, "svc-", 4) == 0)
    return false;
  if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
        (s[0] >= '0' && s[0] <= '9')))
    return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
      return false;
  return true;
}

static int cmp_strings(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- addresses ---------------------------------------------------------- */

static u128 key_to_u128(const struct reg_addr_key *key)
{
  u128 v = 0;

  for (int i = 0; i < 16; i++)
    v = (v << 8) | key->bytes[i];
  return v;
}

static void u128_to_key(u128 v, struct reg_addr_key *key)
{
  for (int i = 15; i >= 0; i--) {
    key->bytes[i] = (uint8_t)v;
    v >>= 8;
  }
}

static void key_format(const struct reg_addr_key *key, int family, char *buf)
{
  if (family == AF_INET)
    inet_ntop(AF_INET, key->bytes + 12, buf, REG_ADDR_BUF);
  else
    inet_ntop(AF_INET6, key->bytes, buf, REG_ADDR_BUF);
}

/* Parses an address of family (0: either) into a key. */
static int parse_address(const char *s, int family, struct reg_addr_key *key,
                         int *family_out)
{
  memset(key, 0, sizeof(*key));
  if (family != AF_INET6 && inet_pton(AF_INET, s, key->bytes + 12) == 1) {
    key->bytes[10] = 0xff;
    key->bytes[11] = 0xff;
    *family_out = AF_INET;
    return 0;
  }
  if (family != AF_INET && strchr(s, ':') != NULL &&
      inet_pton(AF_INET6, s, key->bytes) == 1) {
    *family_out = AF_INET6;
    return 0;
  }
  return -EINVAL;
}

/* Parses "ADDR/LEN" (or, if bare_ok, "ADDR" meaning a single host) into the
 * range [low, high]; host bits must be zero. */
static int parse_cidr(const char *s, bool bare_ok, int *family, u128 *low,
                      u128 *high, unsigned *prefix)
{
  char addr[REG_ADDR_BUF];
  const char *slash = strchr(s, '/');
  size_t len = slash ? (size_t)(slash - s) : strlen(s);
  struct reg_addr_key key;
  unsigned bits;
  unsigned max;
  u128 host_mask;

  if (len == 0 || len >= sizeof(addr) || (!slash && !bare_ok))
    return -EINVAL;
  memcpy(addr, s, len);
  addr[len] = '\0';
  if (parse_address(addr, 0, &key, family) < 0)
    return -EINVAL;
  max = *family == AF_INET ? 32 : 128;
  if (slash) {
    char *end;
    unsigned long v;

    if (slash[1] < '0' || slash[1] > '9')
      return -EINVAL;
    errno = 0;
    v = strtoul(slash + 1, &end, 10);
    if (errno || *end || v > max)
      return -EINVAL;
    bits = (unsigned)v;
  } else {
    bits = max;
  }
  *prefix = bits;
  bits += 128 - max; /* as a prefix of the 128-bit key */
  host_mask = bits == 0 ? ~(u128)0 : (((u128)1 << (128 - bits)) - 1);
  *low = key_to_u128(&key);
  if (*low & host_mask)
    return -EINVAL;
  *high = *low | host_mask;
  return 0;
}

/* ---- config ------------------------------------------------------------- */

static void config_free(struct config *config)
{
  for (size_t i = 0; i < config->n_networks; i++)
    reg_strings_free(config->networks[i].principals,
                     config->networks[i].n_principals);
  for (size_t i = 0; i < config->n_load_balancers; i++)
    free(config->load_balancers[i].ports);
  free(config->principals);
  free(config->networks);
  free(config->load_balancers);
  memset(config, 0, sizeof(*config));
}

static const struct config_principal *find_principal(const struct config *c,
                                                     const char *name)
{
  for (size_t i = 0; i < c->n_principals; i++)
    if (strcmp(c->principals[i].name, name) == 0)
      return &c->principals[i];
  return NULL;
}

static const struct config_network *find_network(const struct config *c,
                                                 const char *name)
{
  for (size_t i = 0; i < c->n_networks; i++)
    if (strcmp(c->networks[i].name, name) == 0)
      return &c->networks[i];
  return NULL;
}

static const struct config_load_balancer *
find_load_balancer(const struct config *c, const char *name)
{
  for (size_t i = 0; i < c->n_load_balancers; i++)
    if (strcmp(c->load_balancers[i].name, name) == 0)
      return &c->load_balancers[i];
  return NULL;
}

static int copy_network(struct config_network *dst,
                        const struct reg_network *src, struct reg_error *err)
{
  unsigned prefix;

  if (!name_ok(src->name))
    return set_error(err, -EINVAL, "networks", "bad network name");
  snprintf(dst->name, sizeof(dst->name), "%s", src->name);
  if (src->netns && src->netns[0]) {
    if (strlen(src->netns) > REG_NAME_MAX || strchr(src->netns, '/'))
      return set_error(err, -EINVAL, "networks", "network %s: bad netns name",
                       src->name);
    snprintf(dst->netns, sizeof(dst->netns), "%s", src->netns);
  }
  if (src->range == NULL || parse_cidr(src->range, false, &dst->family,
                                       &dst->low, &dst->high, &prefix) < 0)
    return set_error(err, -EINVAL, "networks",
                     "network %s: range %s is not a CIDR with zero host bits",
                     src->name, src->range ? src->range : "(none)");
  dst->first = dst->low;
  dst->last = dst->high;
  /* Skip the network address, and for IPv4 the broadcast address, except in
   * point-to-point (/31, /127) and single-host ranges where every address
   * is usable. */
  if ((dst->family == AF_INET && prefix < 31) ||
      (dst->family == AF_INET6 && prefix < 127)) {
    dst->first++;
    if (dst->family == AF_INET)
      dst->last--;
  }
  if (src->n_principals > 0) {
    dst->principals = calloc(src->n_principals, sizeof(char *));
    if (dst->principals == NULL)
      return set_error(err, -ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < src->n_principals; i++) {
      if (!name_ok(src->principals[i]))
        return set_error(err, -EINVAL, "networks",
                         "network %s: bad principal name", src->name);
      dst->principals[i] = strdup(src->principals[i]);
      if (dst->principals[i] == NULL)
        return set_error(err, -ENOMEM, NULL, "out of memory");
      dst->n_principals++;
    }
  }
  return 0;
}

static int config_copy(struct config *dst, const struct reg_config *src,
                       struct reg_error *err)
{
  int r = 0;

  memset(dst, 0, sizeof(*dst));
  dst->pending_expiry_ms = src->pending_expiry_ms > 0
                               ? src->pending_expiry_ms
                               : REG_DEFAULT_PENDING_EXPIRY_MS;
  dst->principals = calloc(src->n_principals + 1, sizeof(*dst->principals));
  dst->networks = calloc(src->n_networks + 1, sizeof(*dst->networks));
  dst->load_balancers =
      calloc(src->n_load_balancers + 1, sizeof(*dst->load_balancers));
  if (!dst->principals || !dst->networks || !dst->load_balancers) {
    r = set_error(err, -ENOMEM, NULL, "out of memory");
    goto fail_free;
  }
  for (size_t i = 0; i < src->n_principals; i++) {
    const struct reg_principal *p = &src->principals[i];

    if (!name_ok(p->name) || strcmp(p->name, "*") == 0 ||
        (unsigned)p->role > REG_ROLE_CONSUMER) {
      r = set_error(err, -EINVAL, "principals", "bad principal %s",
                    p->name ? p->name : "(null)");
      goto fail_free;
    }
    if (find_principal(dst, p->name)) {
      r = set_error(err, -EINVAL, "principals", "duplicate principal %s",
                    p->name);
      goto fail_free;
    }
    snprintf(dst->principals[i].name, REG_NAME_BUF, "%s", p->name);
    dst->principals[i].role = p->role;
    dst->n_principals++;
  }
  for (size_t i = 0; i < src->n_networks; i++) {
    if (src->networks[i].name && find_network(dst, src->networks[i].name)) {
      r = set_error(err, -EINVAL, "networks", "duplicate network %s",
                    src->networks[i].name);
      goto fail_free;
    }
    dst->n_networks++;
    if ((r = copy_network(&dst->networks[i], &src->networks[i], err)) < 0)
      goto fail_free;
  }
  for (size_t i = 0; i < src->n_load_balancers; i++) {
    const struct reg_load_balancer *lb = &src->load_balancers[i];
    struct config_load_balancer *d = &dst->load_balancers[i];

    if (!name_ok(lb->name) || find_load_balancer(dst, lb->name)) {
      r = set_error(err, -EINVAL, "load_balancers",
                    "bad or duplicate load balancer %s",
                    lb->name ? lb->name : "(null)");
      goto fail_free;
    }
    snprintf(d->name, sizeof(d->name), "%s", lb->name);
    d->proxy_protocol = lb->proxy_protocol;
    dst->n_load_balancers++;
    if (lb->n_ports > 0) {
      d->ports = malloc(lb->n_ports * sizeof(*d->ports));
      if (d->ports == NULL) {
        r = set_error(err, -ENOMEM, NULL, "out of memory");
        goto fail_free;
      }
      memcpy(d->ports, lb->ports, lb->n_ports * sizeof(*d->ports));
      d->n_ports = lb->n_ports;
    }
  }
  return 0;

fail_free:
  config_free(dst);
  return r;
}

static bool network_allows(const struct config_network *net,
                           const char *consumer)
{
  if (net->n_principals == 0)
    return true;
  for (size_t i = 0; i < net->n_principals; i++)
    if (strcmp(net->principals[i], consumer) == 0)
      return true;
  return false;
}

static bool service_allows(const struct reg_service *s, const char *consumer)
{
  for (size_t i = 0; i < s->n_allowed_principals; i++)
    if (strcmp(s->allowed_principals[i], "*") == 0 ||
        strcmp(s->allowed_principals[i], consumer) == 0)
      return true;
  return false;
}

static int copy_ports(uint16_t **dst, size_t *n,
                      const struct config_load_balancer *lb)
{
  *dst = NULL;
  *n = 0;
  if (lb == NULL || lb->n_ports == 0)
    return 0;
  *dst = malloc(lb->n_ports * sizeof(**dst));
  if (*dst == NULL)
    return -ENOMEM;
  memcpy(*dst, lb->ports, lb->n_ports * sizeof(**dst));
  *n = lb->n_ports;
  return 0;
}

/* Adds what config knows to a stored service. */
static int service_complete(struct reg *reg, struct reg_service *s)
{
  const struct config_load_balancer *lb =
      find_load_balancer(&reg->config, s->load_balancer);

  s->state = "available";
  s->proxy_protocol = lb ? lb->proxy_protocol : false;
  return copy_ports(&s->ports, &s->n_ports, lb);
}

static int endpoint_complete(struct reg *reg, struct reg_endpoint *e)
{
  const struct config_load_balancer *lb =
      find_load_balancer(&reg->config, e->load_balancer);
  const struct config_network *net = find_network(&reg->config, e->network);

  snprintf(e->netns, sizeof(e->netns), "%s", net ? net->netns : "");
  e->proxy_protocol = lb ? lb->proxy_protocol : false;
  return copy_ports(&e->ports, &e->n_ports, lb);
}

/* ---- transactions and events -------------------------------------------- */

static int queue_push(struct event_queue *q, const struct reg_event *ev)
{
  if (q->len == q->cap) {
    size_t ncap = q->cap ? q->cap * 2 : 16;
    struct reg_event *v = realloc(q->v, ncap * sizeof(*v));

    if (v == NULL)
      return -ENOMEM;
    q->v = v;
    q->cap = ncap;
  }
  q->v[q->len++] = *ev;
  return 0;
}

static void observers_compact(struct reg *reg)
{
  size_t j = 0;

  for (size_t i = 0; i < reg->n_observers; i++)
    if (!reg->observers[i].removed)
      reg->observers[j++] = reg->observers[i];
  reg->n_observers = j;
}

/* Delivers committed events in order. A callback that changes state only
 * queues more events here; the outermost call delivers them. */
static void dispatch(struct reg *reg)
{
  if (reg->dispatching)
    return;
  reg->dispatching = true;
  for (size_t i = 0; i < reg->delivery.len; i++) {
    struct reg_event ev = reg->delivery.v[i]; /* the queue may move */

    for (size_t j = 0; j < reg->n_observers; j++)
      if (!reg->observers[j].removed)
        reg->observers[j].cb(&ev, reg->observers[j].arg);
  }
  reg->delivery.len = 0;
  reg->dispatching = false;
  observers_compact(reg);
}

static int tx_begin(struct reg *reg, bool write, struct reg_error *err)
{
  int r = reg->ops->begin(reg->store, write);

  reg->tx_events.len = 0;
  return r < 0 ? store_error(reg, err, r) : 0;
}

static void tx_abort(struct reg *reg)
{
  reg->ops->rollback(reg->store);
  reg->tx_events.len = 0;
}

/* Commits, then hands the transaction's events to the observers. */
static int tx_commit(struct reg *reg, struct reg_error *err)
{
  int r = reg->ops->commit(reg->store);

  if (r < 0) {
    reg->tx_events.len = 0;
    return store_error(reg, err, r);
  }
  for (size_t i = 0; i < reg->tx_events.len; i++)
    if (queue_push(&reg->delivery, &reg->tx_events.v[i]) < 0)
      break; /* committed anyway; readers still find it by seq */
  reg->tx_events.len = 0;
  dispatch(reg);
  return 0;
}

/* Ends a read transaction: nothing to keep. */
static void tx_end_read(struct reg *reg)
{
  reg->ops->commit(reg->store);
  reg->tx_events.len = 0;
}

static bool transition_legal(enum reg_endpoint_state from,
                             enum reg_endpoint_state to)
{
  switch (to) {
  case REG_EP_AVAILABLE:
  case REG_EP_EXPIRED:
    return from == REG_EP_PENDING_ACCEPTANCE;
  case REG_EP_REJECTED:
  case REG_EP_FAILED:
    return from == REG_EP_PENDING_ACCEPTANCE || from == REG_EP_AVAILABLE;
  case REG_EP_DELETED:
    return from != REG_EP_DELETED;
  default:
    return false;
  }
}

static enum reg_event_type event_for(enum reg_endpoint_state to)
{
  switch (to) {
  case REG_EP_AVAILABLE:
    return REG_EVENT_ACCEPT;
  case REG_EP_REJECTED:
    return REG_EVENT_REJECT;
  case REG_EP_DELETED:
    return REG_EVENT_DELETE;
  case REG_EP_EXPIRED:
    return REG_EVENT_EXPIRE;
  case REG_EP_FAILED:
    return REG_EVENT_FAIL;
  default:
    return REG_EVENT_CONNECT;
  }
}

/* Appends the event for e's (new) state inside the open transaction. */
static int record_event(struct reg *reg, enum reg_event_type type,
                        const struct reg_endpoint *e, const char *principal)
{
  struct reg_event ev;
  int r;

  memset(&ev, 0, sizeof(ev));
  ev.time = e->updated_at;
  ev.type = type;
  snprintf(ev.service_id, sizeof(ev.service_id), "%s", e->service_id);
  snprintf(ev.endpoint_id, sizeof(ev.endpoint_id), "%s", e->id);
  snprintf(ev.principal, sizeof(ev.principal), "%s", principal);
  snprintf(ev.owner, sizeof(ev.owner), "%s", e->owner);
  snprintf(ev.consumer, sizeof(ev.consumer), "%s", e->consumer);
  snprintf(ev.reason, sizeof(ev.reason), "%s", e->reason);
  ev.state = e->state;
  if ((r = reg->ops->event_append(reg->store, &ev)) < 0)
    return r;
  return queue_push(&reg->tx_events, &ev);
}

/* Moves e to state `to` (the caller checked it is legal), stores it and
 * records the event. */
static int transition(struct reg *reg, struct reg_endpoint *e,
                      enum reg_endpoint_state to, const char *reason,
                      const char *principal, int64_t now)
{
  int r;

  e->state = to;
  e->updated_at = now;
  if (reason != NULL)
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
  if ((r = reg->ops->endpoint_update(reg->store, e)) < 0)
    return r;
  return record_event(reg, event_for(to), e, principal);
}

/* ---- lifetime ----------------------------------------------------------- */

int reg_open(struct reg **out, const char *path, const struct reg_config *cfg,
             struct reg_error *err)
{
  struct reg *reg;
  char msg[256] = "";
  int r;

  clear_error(err);
  reg = calloc(1, sizeof(*reg));
  if (reg == NULL)
    return set_error(err, -ENOMEM, NULL, "out of memory");
  reg->ops = &reg_store_sqlite;
  if ((r = config_copy(&reg->config, cfg, err)) < 0)
    goto fail_free;
  if ((r = reg->ops->open(&reg->store, path, msg, sizeof(msg))) < 0) {
    set_error(err, r, "registry.path", "%s", msg);
    goto fail_config;
  }
  *out = reg;
  return 0;

fail_config:
  config_free(&reg->config);
fail_free:
  free(reg);
  return r;
}

void reg_close(struct reg *reg)
{
  if (reg == NULL)
    return;
  reg->ops->close(reg->store);
  config_free(&reg->config);
  free(reg->observers);
  free(reg->tx_events.v);
  free(reg->delivery.v);
  free(reg);
}

int reg_reload(struct reg *reg, const struct reg_config *cfg,
               struct reg_error *err)
{
  struct config config;
  int r;

  clear_error(err);
  if ((r = config_copy(&config, cfg, err)) < 0)
    return r;
  config_free(&reg->config);
  reg->config = config;
  return 0;
}

int reg_schema_version(struct reg *reg)
{
  return reg->ops->schema_version(reg->store);
}

/* ---- services ----------------------------------------------------------- */

/* Validates and normalizes a list of principals for a service: "*" or a
 * configured consumer; sorted, without duplicates. */
static int principals_normalize(struct reg *reg, char **v, size_t *n,
                                struct reg_error *err)
{
  size_t j = 0;

  for (size_t i = 0; i < *n; i++) {
    const struct config_principal *p;

    if (strcmp(v[i], "*") == 0)
      continue;
    p = find_principal(&reg->config, v[i]);
    if (p == NULL || p->role != REG_ROLE_CONSUMER)
      return set_error(err, -EINVAL, "allowed_principals",
                       "%s is not a consumer principal", v[i]);
  }
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
  if (j > REG_MAX_ALLOWED_PRINCIPALS)
    return set_error(err, -EINVAL, "allowed_principals",
                     "more than %d principals", REG_MAX_ALLOWED_PRINCIPALS);
  return 0;
}

static int strings_dup(const char *const *src, size_t n, char ***out,
                       struct reg_error *err)
{
  char **v;

  *out = NULL;
  if (n == 0)
    return 0;
  if (n > REG_MAX_ALLOWED_PRINCIPALS * 4)
    return set_error(err, -EINVAL, "allowed_principals", "list too long");
  v = calloc(n, sizeof(*v));
  if (v == NULL)
    return set_error(err, -ENOMEM, NULL, "out of memory");
  for (size_t i = 0; i < n; i++) {
    if (src[i] == NULL || !name_ok(src[i])) {
      reg_strings_free(v, n);
      return set_error(err, -EINVAL, "allowed_principals",
                       "bad principal name");
    }
    if ((v[i] = strdup(src[i])) == NULL) {
      reg_strings_free(v, n);
      return set_error(err, -ENOMEM, NULL, "out of memory");
    }
  }
  *out = v;
  return 0;
}

static bool is_owner_or_operator(const struct reg_actor *actor,
                                 const struct reg_service *s)
{
  return actor->role == REG_ROLE_OPERATOR || strcmp(s->owner, actor->name) == 0;
}

/* Loads a service for the provider routes inside an open transaction. */
static int load_owned_service(struct reg *reg, const struct reg_actor *actor,
                              const char *id, struct reg_service *out,
                              struct reg_error *err)
{
  int r;

  memset(out, 0, sizeof(*out));
  if (id == NULL || *id == '\0')
    return set_error(err, -ENOENT, "id", "no such service");
  r = reg->ops->service_get(reg->store, id, out);
  if (r == -ENOENT)
    return set_error(err, r, "id", "no such service: %s", id);
  if (r < 0)
    return store_error(reg, err, r);
  if (!is_owner_or_operator(actor, out)) {
    reg_service_release(out);
    return set_error(err, -ENOENT, "id", "no such service: %s", id);
  }
  return 0;
}

static int check_provider_role(const struct reg_actor *actor,
                               struct reg_error *err)
{
  if (actor == NULL || actor->name == NULL)
    return set_error(err, -EACCES, NULL, "no principal");
  if (actor->role != REG_ROLE_PROVIDER && actor->role != REG_ROLE_OPERATOR)
    return set_error(err, -EACCES, NULL, "%s may not manage services",
                     reg_role_name(actor->role));
  return 0;
}

static int check_limit(int64_t limit, struct reg_error *err)
{
  if (limit < 0 || limit > REG_MAX_CONNECTION_LIMIT)
    return set_error(err, -EINVAL, "connection_limit",
                     "connection_limit must be 0..%d",
                     REG_MAX_CONNECTION_LIMIT);
  return 0;
}

int reg_service_create(struct reg *reg, const struct reg_actor *actor,
                       const struct reg_service_params *params,
                       struct reg_service *out, struct reg_error *err)
{
  struct reg_service s;
  int r;

  clear_error(err);
  memset(&s, 0, sizeof(s));
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if (!service_name_ok(params->name))
    return set_error(err, -EINVAL, "name",
                     "name must be 1-%d of [A-Za-z0-9._-], starting with a "
                     "letter or digit, not svc-",
                     REG_NAME_MAX);
  if (params->load_balancer == NULL ||
      !find_load_balancer(&reg->config, params->load_balancer))
    return set_error(err, -EINVAL, "load_balancer", "no such load balancer: %s",
                     params->load_balancer ? params->load_balancer : "");
  if ((r = check_limit(params->connection_limit, err)) < 0)
    return r;
  if ((r = strings_dup(params->allowed_principals, params->n_allowed_principals,
                       &s.allowed_principals, err)) < 0)
    return r;
  s.n_allowed_principals = params->n_allowed_principals;
  if ((r = principals_normalize(reg, s.allowed_principals,
                                &s.n_allowed_principals, err)) < 0)
    goto fail_release;
  if ((r = make_id(s.id, "svc-")) < 0) {
    set_error(err, r, NULL, "getrandom failed");
    goto fail_release;
  }
  snprintf(s.name, sizeof(s.name), "%s", params->name);
  snprintf(s.owner, sizeof(s.owner), "%s", actor->name);
  snprintf(s.load_balancer, sizeof(s.load_balancer), "%s",
           params->load_balancer);
  s.acceptance_required = params->acceptance_required;
  s.connection_limit = (uint32_t)params->connection_limit;
  s.created_at = now_ms();

  if ((r = tx_begin(reg, true, err)) < 0)
    goto fail_release;
  r = reg->ops->service_insert(reg->store, &s);
  if (r == -EEXIST) {
    set_error(err, r, "name", "a service named %s exists", s.name);
    goto fail_abort;
  }
  if (r < 0) {
    store_error(reg, err, r);
    goto fail_abort;
  }
  if ((r = tx_commit(reg, err)) < 0)
    goto fail_release;
  if (out != NULL) {
    *out = s;
    if ((r = service_complete(reg, out)) < 0) {
      reg_service_release(out);
      return set_error(err, r, NULL, "out of memory");
    }
    return 0;
  }
  reg_service_release(&s);
  return 0;

fail_abort:
  tx_abort(reg);
fail_release:
  reg_service_release(&s);
  return r;
}

int reg_service_describe(struct reg *reg, const struct reg_actor *actor,
                         const char *id, struct reg_service *out,
                         struct reg_error *err)
{
  int r;

  clear_error(err);
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if ((r = tx_begin(reg, false, err)) < 0)
    return r;
  r = load_owned_service(reg, actor, id, out, err);
  tx_end_read(reg);
  if (r < 0)
    return r;
  if ((r = service_complete(reg, out)) < 0) {
    reg_service_release(out);
    return set_error(err, r, NULL, "out of memory");
  }
  return 0;
}

static int complete_services(struct reg *reg, struct reg_service *v, size_t n,
                             struct reg_error *err)
{
  for (size_t i = 0; i < n; i++)
    if (service_complete(reg, &v[i]) < 0) {
      reg_services_free(v, n);
      return set_error(err, -ENOMEM, NULL, "out of memory");
    }
  return 0;
}

int reg_service_list(struct reg *reg, const struct reg_actor *actor,
                     struct reg_service **out, size_t *n, struct reg_error *err)
{
  int r;

  clear_error(err);
  *out = NULL;
  *n = 0;
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if ((r = tx_begin(reg, false, err)) < 0)
    return r;
  r = reg->ops->service_list(
      reg->store, actor->role == REG_ROLE_OPERATOR ? NULL : actor->name, NULL,
      out, n);
  tx_end_read(reg);
  if (r < 0)
    return store_error(reg, err, r);
  if ((r = complete_services(reg, *out, *n, err)) < 0) {
    *out = NULL;
    *n = 0;
  }
  return r;
}

int reg_service_modify(struct reg *reg, const struct reg_actor *actor,
                       const char *id,
                       const struct reg_service_changes *changes,
                       struct reg_service *out, struct reg_error *err)
{
  struct reg_service s;
  int r;

  clear_error(err);
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if (changes->set_connection_limit &&
      (r = check_limit(changes->connection_limit, err)) < 0)
    return r;
  if ((r = tx_begin(reg, true, err)) < 0)
    return r;
  if ((r = load_owned_service(reg, actor, id, &s, err)) < 0) {
    tx_abort(reg);
    return r;
  }
  if (changes->set_acceptance_required)
    s.acceptance_required = changes->acceptance_required;
  if (changes->set_connection_limit)
    s.connection_limit = (uint32_t)changes->connection_limit;
  if ((r = reg->ops->service_update(reg->store, &s)) < 0) {
    store_error(reg, err, r);
    tx_abort(reg);
    goto done;
  }
  if ((r = tx_commit(reg, err)) < 0)
    goto done;
  if (out != NULL) {
    *out = s;
    memset(&s, 0, sizeof(s));
    if ((r = service_complete(reg, out)) < 0) {
      reg_service_release(out);
      set_error(err, r, NULL, "out of memory");
    }
  }
done:
  reg_service_release(&s);
  return r;
}

int reg_service_delete(struct reg *reg, const struct reg_actor *actor,
                       const char *id, struct reg_error *err)
{
  struct reg_service s;
  size_t live = 0;
  int r;

  clear_error(err);
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if ((r = tx_begin(reg, true, err)) < 0)
    return r;
  if ((r = load_owned_service(reg, actor, id, &s, err)) < 0)
    goto fail_abort;
  r = reg->ops->service_count_live(reg->store, s.id, &live);
  if (r == 0 && live > 0)
    r = set_error(err, -EBUSY, NULL,
                  "service %s has %zu pendingAcceptance or available "
                  "endpoints: reject them first",
                  s.id, live);
  else if (r == 0 && (r = reg->ops->service_delete(reg->store, s.id)) < 0)
    store_error(reg, err, r);
  else if (r < 0)
    store_error(reg, err, r);
  reg_service_release(&s);
  if (r < 0)
    goto fail_abort;
  return tx_commit(reg, err);

fail_abort:
  tx_abort(reg);
  return r;
}

int reg_permissions_get(struct reg *reg, const struct reg_actor *actor,
                        const char *id, char ***out, size_t *n,
                        struct reg_error *err)
{
  struct reg_service s;
  int r;

  *out = NULL;
  *n = 0;
  if ((r = reg_service_describe(reg, actor, id, &s, err)) < 0)
    return r;
  *out = s.allowed_principals;
  *n = s.n_allowed_principals;
  s.allowed_principals = NULL;
  s.n_allowed_principals = 0;
  reg_service_release(&s);
  return 0;
}

/* Rejects the live endpoints of s whose consumer s no longer allows. */
static int reconcile_endpoints(struct reg *reg, const struct reg_actor *actor,
                               const struct reg_service *s, int64_t now)
{
  struct reg_store_endpoint_filter filter = {.service_id = s->id};
  struct reg_endpoint *v;
  size_t n;
  int r;

  if ((r = reg->ops->endpoint_list(reg->store, &filter, &v, &n)) < 0)
    return r;
  for (size_t i = 0; r == 0 && i < n; i++) {
    if (!transition_legal(v[i].state, REG_EP_REJECTED) ||
        service_allows(s, v[i].consumer))
      continue;
    r = transition(reg, &v[i], REG_EP_REJECTED, "permission removed",
                   actor->name, now);
  }
  reg_endpoints_free(v, n);
  return r;
}

int reg_permissions_modify(struct reg *reg, const struct reg_actor *actor,
                           const char *id, const char *const *add, size_t n_add,
                           const char *const *remove, size_t n_remove,
                           bool reconcile, char ***out, size_t *n,
                           struct reg_error *err)
{
  struct reg_service s;
  char **added = NULL;
  char **merged = NULL;
  size_t n_merged = 0;
  int r;

  clear_error(err);
  if (out != NULL) {
    *out = NULL;
    *n = 0;
  }
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if ((r = strings_dup(add, n_add, &added, err)) < 0)
    return r;
  for (size_t i = 0; i < n_remove; i++)
    if (remove[i] == NULL || !name_ok(remove[i])) {
      reg_strings_free(added, n_add);
      return set_error(err, -EINVAL, "remove", "bad principal name");
    }
  if ((r = principals_normalize(reg, added, &n_add, err)) < 0) {
    reg_strings_free(added, n_add);
    return r;
  }
  if ((r = tx_begin(reg, true, err)) < 0) {
    reg_strings_free(added, n_add);
    return r;
  }
  if ((r = load_owned_service(reg, actor, id, &s, err)) < 0) {
    tx_abort(reg);
    reg_strings_free(added, n_add);
    return r;
  }

  /* merged = (current + added) - removed; normalize sorts and dedups. */
  merged = calloc(s.n_allowed_principals + n_add + 1, sizeof(*merged));
  if (merged == NULL) {
    r = set_error(err, -ENOMEM, NULL, "out of memory");
    goto fail_abort;
  }
  for (size_t i = 0; i < s.n_allowed_principals + n_add; i++) {
    const char *p = i < s.n_allowed_principals
                        ? s.allowed_principals[i]
                        : added[i - s.n_allowed_principals];
    bool removed = false;

    for (size_t j = 0; j < n_remove && !removed; j++)
      removed = strcmp(p, remove[j]) == 0;
    if (removed)
      continue;
    if ((merged[n_merged] = strdup(p)) == NULL) {
      r = set_error(err, -ENOMEM, NULL, "out of memory");
      goto fail_abort;
    }
    n_merged++;
  }
  if (n_merged > 1)
    qsort(merged, n_merged, sizeof(*merged), cmp_strings);
  {
    size_t j = 0;

    for (size_t i = 0; i < n_merged; i++) {
      if (j > 0 && strcmp(merged[j - 1], merged[i]) == 0) {
        free(merged[i]);
        continue;
      }
      merged[j++] = merged[i];
    }
    n_merged = j;
  }
  if (n_merged > REG_MAX_ALLOWED_PRINCIPALS) {
    r = set_error(err, -EINVAL, "add", "more than %d principals",
                  REG_MAX_ALLOWED_PRINCIPALS);
    goto fail_abort;
  }
  if ((r = reg->ops->service_set_principals(reg->store, s.id, merged,
                                            n_merged)) < 0) {
    store_error(reg, err, r);
    goto fail_abort;
  }
  reg_strings_free(s.allowed_principals, s.n_allowed_principals);
  s.allowed_principals = merged;
  s.n_allowed_principals = n_merged;
  merged = NULL;
  if (reconcile && (r = reconcile_endpoints(reg, actor, &s, now_ms())) < 0) {
    store_error(reg, err, r);
    goto fail_abort;
  }
  if ((r = tx_commit(reg, err)) < 0)
    goto done;
  if (out != NULL) {
    *out = s.allowed_principals;
    *n = s.n_allowed_principals;
    s.allowed_principals = NULL;
    s.n_allowed_principals = 0;
  }
  goto done;

fail_abort:
  tx_abort(reg);
done:
  reg_strings_free(merged, n_merged);
  reg_strings_free(added, n_add);
  reg_service_release(&s);
  return r;
}

static int complete_endpoints(struct reg *reg, struct reg_endpoint *v, size_t n,
                              struct reg_error *err)
{
  for (size_t i = 0; i < n; i++)
    if (endpoint_complete(reg, &v[i]) < 0) {
      reg_endpoints_free(v, n);
      return set_error(err, -ENOMEM, NULL, "out of memory");
    }
  return 0;
}

int reg_connections_list(struct reg *reg, const struct reg_actor *actor,
                         const char *service_id,
                         const enum reg_endpoint_state *state,
                         struct reg_endpoint **out, size_t *n,
                         struct reg_error *err)
{
  struct reg_store_endpoint_filter filter = {.state = state};
  struct reg_service s;
  int r;

  clear_error(err);
  *out = NULL;
  *n = 0;
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if (state && (unsigned)*state >= REG_EP_STATE_COUNT)
    return set_error(err, -EINVAL, "state", "unknown state");
  if ((r = tx_begin(reg, false, err)) < 0)
    return r;
  if ((r = load_owned_service(reg, actor, service_id, &s, err)) < 0) {
    tx_end_read(reg);
    return r;
  }
  filter.service_id = s.id;
  r = reg->ops->endpoint_list(reg->store, &filter, out, n);
  tx_end_read(reg);
  reg_service_release(&s);
  if (r < 0)
    return store_error(reg, err, r);
  if ((r = complete_endpoints(reg, *out, *n, err)) < 0) {
    *out = NULL;
    *n = 0;
  }
  return r;
}

__attribute__((format(printf, 3, 4))) static void
item_result(struct reg_item_result *res, int code, const char *fmt, ...)
{
  va_list ap;

  res->code = code;
  va_start(ap, fmt);
  vsnprintf(res->message, sizeof(res->message), fmt, ap);
  va_end(ap);
}

/* Accept or reject a batch of endpoints of one service. */
static int decide(struct reg *reg, const struct reg_actor *actor,
                  const char *service_id, const char *const *ids, size_t n,
                  struct reg_item_result *results, enum reg_endpoint_state to,
                  struct reg_error *err)
{
  struct reg_service s;
  int64_t now = now_ms();
  int r;

  clear_error(err);
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if (n > 0 && (ids == NULL || results == NULL))
    return set_error(err, -EINVAL, "endpoint_ids", "no list");
  if ((r = tx_begin(reg, true, err)) < 0)
    return r;
  if ((r = load_owned_service(reg, actor, service_id, &s, err)) < 0) {
    tx_abort(reg);
    return r;
  }
  for (size_t i = 0; i < n; i++) {
    struct reg_endpoint e;

    memset(&results[i], 0, sizeof(results[i]));
    if (ids[i] == NULL) {
      item_result(&results[i], -EINVAL, "%s", "no endpoint id");
      continue;
    }
    r = reg->ops->endpoint_get(reg->store, ids[i], &e);
    if (r == -ENOENT || (r == 0 && strcmp(e.service_id, s.id) != 0)) {
      if (r == 0)
        reg_endpoint_release(&e);
      item_result(&results[i], -ENOENT, "no such endpoint on this service: %s",
                  ids[i]);
      r = 0;
      continue;
    }
    if (r < 0)
      break;
    if (!transition_legal(e.state, to)) {
      item_result(&results[i], -EBUSY, "endpoint is %s",
                  reg_state_name(e.state));
      reg_endpoint_release(&e);
      continue;
    }
    r = transition(reg, &e, to,
                   to == REG_EP_REJECTED ? "rejected by provider" : "",
                   actor->name, now);
    reg_endpoint_release(&e);
    if (r < 0)
      break;
  }
  reg_service_release(&s);
  if (r < 0) {
    store_error(reg, err, r);
    tx_abort(reg);
    return r;
  }
  return tx_commit(reg, err);
}

int reg_connections_accept(struct reg *reg, const struct reg_actor *actor,
                           const char *service_id, const char *const *ids,
                           size_t n, struct reg_item_result *results,
                           struct reg_error *err)
{
  return decide(reg, actor, service_id, ids, n, results, REG_EP_AVAILABLE, err);
}

int reg_connections_reject(struct reg *reg, const struct reg_actor *actor,
                           const char *service_id, const char *const *ids,
                           size_t n, struct reg_item_result *results,
                           struct reg_error *err)
{
  return decide(reg, actor, service_id, ids, n, results, REG_EP_REJECTED, err);
}

/* ---- consumer routes ---------------------------------------------------- */

static int cmp_service_name(const void *a, const void *b)
{
  return strcmp(((const struct reg_service *)a)->name,
                ((const struct reg_service *)b)->name);
}

int reg_available_services(struct reg *reg, const struct reg_actor *actor,
                           struct reg_service **out, size_t *n,
                           struct reg_error *err)
{
  int r;

  clear_error(err);
  *out = NULL;
  *n = 0;
  if (actor == NULL || actor->name == NULL || actor->role == REG_ROLE_PROVIDER)
    return set_error(err, -EACCES, NULL,
                     "only consumers list available "
                     "services");
  if ((r = tx_begin(reg, false, err)) < 0)
    return r;
  r = reg->ops->service_list(
      reg->store, NULL, actor->role == REG_ROLE_CONSUMER ? actor->name : NULL,
      out, n);
  tx_end_read(reg);
  if (r < 0)
    return store_error(reg, err, r);
  if (*n > 1)
    qsort(*out, *n, sizeof(**out), cmp_service_name);
  if ((r = complete_services(reg, *out, *n, err)) < 0) {
    *out = NULL;
    *n = 0;
  }
  return r;
}

/* Validates allowed_sources into canonical "ADDR/LEN" strings. */
static int sources_normalize(const char *const *src, size_t n, char ***out,
                             struct reg_error *err)
{
  char **v;

  *out = NULL;
  if (n == 0)
    return 0;
  if (n > REG_MAX_ALLOWED_SOURCES)
    return set_error(err, -EINVAL, "allowed_sources", "more than %d sources",
                     REG_MAX_ALLOWED_SOURCES);
  if (src == NULL)
    return set_error(err, -EINVAL, "allowed_sources", "no list");
  v = calloc(n, sizeof(*v));
  if (v == NULL)
    return set_error(err, -ENOMEM, NULL, "out of memory");
  for (size_t i = 0; i < n; i++) {
    char addr[REG_ADDR_BUF];
    char cidr[REG_CIDR_BUF];
    struct reg_addr_key key;
    u128 low, high;
    unsigned prefix;
    int family;

    if (src[i] == NULL ||
        parse_cidr(src[i], true, &family, &low, &high, &prefix) < 0) {
      reg_strings_free(v, n);
      return set_error(err, -EINVAL, "allowed_sources",
                       "%s is not a CIDR (ADDR/LEN with zero host bits)",
                       src[i] ? src[i] : "(null)");
    }
    u128_to_key(low, &key);
    key_format(&key, family, addr);
    snprintf(cidr, sizeof(cidr), "%s/%u", addr, prefix);
    if ((v[i] = strdup(cidr)) == NULL) {
      reg_strings_free(v, n);
      return set_error(err, -ENOMEM, NULL, "out of memory");
    }
  }
  *out = v;
  return 0;
}

/* Picks the endpoint's address inside net: the asked one, or the lowest
 * free. Runs inside the write transaction, so the used set cannot move. */
static int allocate_address(struct reg *reg, const struct config_network *net,
                            const char *asked, struct reg_addr_key *key,
                            char *text, struct reg_error *err)
{
  struct reg_addr_key *used;
  size_t n_used;
  u128 candidate;
  int r;

  if (asked != NULL && *asked != '\0') {
    int family;

    if (parse_address(asked, net->family, key, &family) < 0)
      return set_error(err, -EINVAL, "address", "%s is not an IPv%d address",
                       asked, net->family == AF_INET ? 4 : 6);
    candidate = key_to_u128(key);
    if (candidate < net->first || candidate > net->last)
      return set_error(err, -EINVAL, "address",
                       "%s is not a usable address of network %s", asked,
                       net->name);
    key_format(key, net->family, text);
    /* The store's unique index answers -EADDRINUSE if it is taken. */
    return 0;
  }
  if ((r = reg->ops->network_used(reg->store, net->name, &used, &n_used)) < 0)
    return store_error(reg, err, r);
  candidate = net->first;
  r = -ENOSPC;
  for (size_t i = 0;; i++) {
    u128 u;

    if (candidate > net->last || candidate < net->first)
      break; /* past the end, or wrapped */
    if (i == n_used) {
      r = 0;
      break;
    }
    u = key_to_u128(&used[i]);
    if (u < candidate)
      continue;
    if (u > candidate) {
      r = 0;
      break;
    }
    candidate++;
  }
  free(used);
  if (r < 0)
    return set_error(err, -ENOSPC, "network",
                     "no free address left in network %s", net->name);
  u128_to_key(candidate, key);
  key_format(key, net->family, text);
  return 0;
}

/* Commits the open transaction and hands e to *out (when out is not
 * NULL), completed with its service's fields. e is released (or moved)
 * either way. Returns 0 or the negative errno, with err filled. */
static int commit_endpoint(struct reg *reg, struct reg_endpoint *e,
                           struct reg_endpoint *out, struct reg_error *err)
{
  int r = tx_commit(reg, err);
  if (r == 0 && out != NULL) {
    *out = *e;
    memset(e, 0, sizeof(*e));
    if ((r = endpoint_complete(reg, out)) < 0) {
      reg_endpoint_release(out);
      set_error(err, r, NULL, "out of memory");
    }
  }
  reg_endpoint_release(e);
  return r;
}

int reg_endpoint_create(struct reg *reg, const struct reg_actor *actor,
                        const struct reg_endpoint_params *params,
                        struct reg_endpoint *out, struct reg_error *err)
{
  const struct config_network *net;
  struct reg_service s;
  struct reg_endpoint e;
  struct reg_addr_key key;
  size_t live = 0;
  int r;

  clear_error(err);
  memset(&e, 0, sizeof(e));
  if (actor == NULL || actor->name == NULL || actor->role != REG_ROLE_CONSUMER)
    return set_error(err, -EACCES, NULL, "only consumers create endpoints");
  if (params->service == NULL || *params->service == '\0')
    return set_error(err, -EINVAL, "service", "no service named");
  net = params->network ? find_network(&reg->config, params->network) : NULL;
  if (net == NULL)
    return set_error(err, -EINVAL, "network", "no such network: %s",
                     params->network ? params->network : "");
  if (!network_allows(net, actor->name))
    return set_error(err, -EACCES, "network",
                     "%s may not place endpoints in network %s", actor->name,
                     net->name);
  if ((r = sources_normalize(params->allowed_sources, params->n_allowed_sources,
                             &e.allowed_sources, err)) < 0)
    return r;
  e.n_allowed_sources = params->n_allowed_sources;

  if ((r = tx_begin(reg, true, err)) < 0)
    goto fail_release;
  r = reg->ops->service_get(reg->store, params->service, &s);
  if (r == 0 && !service_allows(&s, actor->name)) {
    reg_service_release(&s);
    r = -ENOENT;
  }
  if (r == -ENOENT) {
    set_error(err, r, "service", "no such service: %s", params->service);
    goto fail_abort;
  }
  if (r < 0) {
    store_error(reg, err, r);
    goto fail_abort;
  }
  if (s.connection_limit > 0) {
    r = reg->ops->endpoint_count_live(reg->store, s.id, actor->name, &live);
    if (r < 0) {
      store_error(reg, err, r);
      goto fail_service;
    }
    if (live >= s.connection_limit) {
      r = set_error(err, -EDQUOT, "service",
                    "connection limit of %u reached on service %s",
                    s.connection_limit, s.name);
      goto fail_service;
    }
  }
  if ((r = allocate_address(reg, net, params->address, &key, e.address, err)) <
      0)
    goto fail_service;
  if ((r = make_id(e.id, "ep-")) < 0) {
    set_error(err, r, NULL, "getrandom failed");
    goto fail_service;
  }
  snprintf(e.service_id, sizeof(e.service_id), "%s", s.id);
  snprintf(e.service, sizeof(e.service), "%s", s.name);
  snprintf(e.owner, sizeof(e.owner), "%s", s.owner);
  snprintf(e.load_balancer, sizeof(e.load_balancer), "%s", s.load_balancer);
  snprintf(e.consumer, sizeof(e.consumer), "%s", actor->name);
  snprintf(e.network, sizeof(e.network), "%s", net->name);
  e.state =
      s.acceptance_required ? REG_EP_PENDING_ACCEPTANCE : REG_EP_AVAILABLE;
  e.created_at = e.updated_at = now_ms();
  reg_service_release(&s);

  r = reg->ops->endpoint_insert(reg->store, &e, &key);
  if (r == -EADDRINUSE) {
    set_error(err, r, "address", "%s is in use in network %s", e.address,
              net->name);
    goto fail_abort;
  }
  if (r == 0)
    r = record_event(reg, REG_EVENT_CONNECT, &e, actor->name);
  if (r < 0) {
    store_error(reg, err, r);
    goto fail_abort;
  }
  return commit_endpoint(reg, &e, out, err);

fail_service:
  reg_service_release(&s);
fail_abort:
  tx_abort(reg);
fail_release:
  reg_endpoint_release(&e);
  return r;
}

/* Loads an endpoint for the consumer routes inside an open transaction. */
static int load_own_endpoint(struct reg *reg, const struct reg_actor *actor,
                             const char *id, struct reg_endpoint *out,
                             struct reg_error *err)
{
  int r;

  memset(out, 0, sizeof(*out));
  if (actor == NULL || actor->name == NULL || actor->role == REG_ROLE_PROVIDER)
    return set_error(err, -EACCES, NULL,
                     "providers see endpoints as connections of a service");
  if (id == NULL)
    return set_error(err, -ENOENT, "id", "no such endpoint");
  r = reg->ops->endpoint_get(reg->store, id, out);
  if (r == 0 && actor->role != REG_ROLE_OPERATOR &&
      strcmp(out->consumer, actor->name) != 0) {
    reg_endpoint_release(out);
    r = -ENOENT;
  }
  if (r == -ENOENT)
    return set_error(err, r, "id", "no such endpoint: %s", id);
  if (r < 0)
    return store_error(reg, err, r);
  return 0;
}

int reg_endpoint_describe(struct reg *reg, const struct reg_actor *actor,
                          const char *id, struct reg_endpoint *out,
                          struct reg_error *err)
{
  int r;

  clear_error(err);
  if ((r = tx_begin(reg, false, err)) < 0)
    return r;
  r = load_own_endpoint(reg, actor, id, out, err);
  tx_end_read(reg);
  if (r < 0)
    return r;
  if ((r = endpoint_complete(reg, out)) < 0) {
    reg_endpoint_release(out);
    return set_error(err, r, NULL, "out of memory");
  }
  return 0;
}

int reg_endpoint_list(struct reg *reg, const struct reg_actor *actor,
                      const enum reg_endpoint_state *state,
                      struct reg_endpoint **out, size_t *n,
                      struct reg_error *err)
{
  struct reg_store_endpoint_filter filter = {.state = state};
  int r;

  clear_error(err);
  *out = NULL;
  *n = 0;
  if (actor == NULL || actor->name == NULL || actor->role == REG_ROLE_PROVIDER)
    return set_error(err, -EACCES, NULL,
                     "providers see endpoints as connections of a service");
  if (state && (unsigned)*state >= REG_EP_STATE_COUNT)
    return set_error(err, -EINVAL, "state", "unknown state");
  if (actor->role == REG_ROLE_CONSUMER)
    filter.consumer = actor->name;
  if ((r = tx_begin(reg, false, err)) < 0)
    return r;
  r = reg->ops->endpoint_list(reg->store, &filter, out, n);
  tx_end_read(reg);
  if (r < 0)
    return store_error(reg, err, r);
  if ((r = complete_endpoints(reg, *out, *n, err)) < 0) {
    *out = NULL;
    *n = 0;
  }
  return r;
}

int reg_endpoint_modify(struct reg *reg, const struct reg_actor *actor,
                        const char *id, const char *const *allowed_sources,
                        size_t n_allowed_sources, struct reg_endpoint *out,
                        struct reg_error *err)
{
  struct reg_endpoint e;
  char **sources;
  int r;

  clear_error(err);
  if ((r = sources_normalize(allowed_sources, n_allowed_sources, &sources,
                             err)) < 0)
    return r;
  if ((r = tx_begin(reg, true, err)) < 0) {
    reg_strings_free(sources, n_allowed_sources);
    return r;
  }
  if ((r = load_own_endpoint(reg, actor, id, &e, err)) < 0) {
    reg_strings_free(sources, n_allowed_sources);
    tx_abort(reg);
    return r;
  }
  reg_strings_free(e.allowed_sources, e.n_allowed_sources);
  e.allowed_sources = sources;
  e.n_allowed_sources = n_allowed_sources;
  if (e.state == REG_EP_DELETED) {
    r = set_error(err, -EBUSY, "id", "endpoint %s is deleted", e.id);
    goto fail_abort;
  }
  e.updated_at = now_ms();
  if ((r = reg->ops->endpoint_update(reg->store, &e)) < 0) {
    store_error(reg, err, r);
    goto fail_abort;
  }
  return commit_endpoint(reg, &e, out, err);

fail_abort:
  tx_abort(reg);
  reg_endpoint_release(&e);
  return r;
}

int reg_endpoint_delete(struct reg *reg, const struct reg_actor *actor,
                        const char *id, struct reg_endpoint *out,
                        struct reg_error *err)
{
  struct reg_endpoint e;
  int r;

  clear_error(err);
  if ((r = tx_begin(reg, true, err)) < 0)
    return r;
  if ((r = load_own_endpoint(reg, actor, id, &e, err)) < 0) {
    tx_abort(reg);
    return r;
  }
  if (!transition_legal(e.state, REG_EP_DELETED)) {
    r = set_error(err, -EBUSY, "id", "endpoint %s is already deleted", e.id);
    goto fail_abort;
  }
  if ((r = transition(reg, &e, REG_EP_DELETED, NULL, actor->name, now_ms())) <
      0) {
    store_error(reg, err, r);
    goto fail_abort;
  }
  return commit_endpoint(reg, &e, out, err);

fail_abort:
  tx_abort(reg);
  reg_endpoint_release(&e);
  return r;
}

/* ---- control loop and data plane ---------------------------------------- */

int reg_expire_pending(struct reg *reg, int64_t now, size_t *n_expired)
{
  struct reg_endpoint *v;
  size_t n;
  char reason[REG_REASON_BUF];
  int r;

  if (n_expired)
    *n_expired = 0;
  snprintf(reason, sizeof(reason), "not accepted within %lld s",
           (long long)(reg->config.pending_expiry_ms / 1000));
  if ((r = tx_begin(reg, true, NULL)) < 0)
    return r;
  r = reg->ops->pending_before(reg->store, now - reg->config.pending_expiry_ms,
                               &v, &n);
  if (r < 0) {
    tx_abort(reg);
    return r;
  }
  for (size_t i = 0; r == 0 && i < n; i++)
    r = transition(reg, &v[i], REG_EP_EXPIRED, reason, REG_SYSTEM_PRINCIPAL,
                   now);
  reg_endpoints_free(v, n);
  if (r < 0) {
    tx_abort(reg);
    return r;
  }
  if ((r = tx_commit(reg, NULL)) < 0)
    return r;
  if (n_expired)
    *n_expired = n;
  return 0;
}

int reg_endpoint_fail(struct reg *reg, const char *id, const char *reason,
                      struct reg_error *err)
{
  struct reg_endpoint e;
  int r;

  clear_error(err);
  if (id == NULL)
    return set_error(err, -ENOENT, "id", "no such endpoint");
  if ((r = tx_begin(reg, true, err)) < 0)
    return r;
  r = reg->ops->endpoint_get(reg->store, id, &e);
  if (r == -ENOENT) {
    tx_abort(reg);
    return set_error(err, r, "id", "no such endpoint: %s", id);
  }
  if (r < 0) {
    store_error(reg, err, r);
    tx_abort(reg);
    return r;
  }
  if (!transition_legal(e.state, REG_EP_FAILED))
    r = set_error(err, -EBUSY, "id", "endpoint %s is %s", e.id,
                  reg_state_name(e.state));
  else if ((r = transition(reg, &e, REG_EP_FAILED, reason ? reason : "failed",
                           REG_SYSTEM_PRINCIPAL, now_ms())) < 0)
    store_error(reg, err, r);
  reg_endpoint_release(&e);
  if (r < 0) {
    tx_abort(reg);
    return r;
  }
  return tx_commit(reg, err);
}

int reg_endpoint_get(struct reg *reg, const char *id, struct reg_endpoint *out)
{
  int r;

  if (id == NULL)
    return -ENOENT;
  if ((r = tx_begin(reg, false, NULL)) < 0)
    return r;
  r = reg->ops->endpoint_get(reg->store, id, out);
  tx_end_read(reg);
  if (r < 0)
    return r;
  if ((r = endpoint_complete(reg, out)) < 0)
    reg_endpoint_release(out);
  return r;
}

int reg_available_endpoints(struct reg *reg, struct reg_endpoint **out,
                            size_t *n)
{
  const enum reg_endpoint_state available = REG_EP_AVAILABLE;
  struct reg_store_endpoint_filter filter = {.state = &available};
  int r;

  *out = NULL;
  *n = 0;
  if ((r = tx_begin(reg, false, NULL)) < 0)
    return r;
  r = reg->ops->endpoint_list(reg->store, &filter, out, n);
  tx_end_read(reg);
  if (r < 0)
    return r;
  if ((r = complete_endpoints(reg, *out, *n, NULL)) < 0) {
    *out = NULL;
    *n = 0;
  }
  return r;
}

/* ---- events ------------------------------------------------------------- */

int reg_events_after(struct reg *reg, uint64_t after, size_t limit,
                     struct reg_event **out, size_t *n)
{
  int r;

  *out = NULL;
  *n = 0;
  if (limit == 0)
    return 0;
  if ((r = tx_begin(reg, false, NULL)) < 0)
    return r;
  r = reg->ops->events_after(reg->store, after, limit, out, n);
  tx_end_read(reg);
  return r;
}

int reg_last_seq(struct reg *reg, uint64_t *seq)
{
  return reg->ops->last_seq(reg->store, seq);
}

int reg_first_seq(struct reg *reg, uint64_t *seq)
{
  return reg->ops->first_seq(reg->store, seq);
}

int reg_events_prune(struct reg *reg, int64_t before_ms, size_t limit,
                     size_t *removed)
{
  size_t n = 0;
  int r;

  if (removed)
    *removed = 0;
  if ((r = tx_begin(reg, true, NULL)) < 0)
    return r;
  if ((r = reg->ops->events_prune(reg->store, before_ms, limit, &n)) < 0) {
    tx_abort(reg);
    return r;
  }
  if ((r = tx_commit(reg, NULL)) < 0)
    return r;
  if (removed)
    *removed = n;
  return 0;
}

bool reg_event_visible(const struct reg_event *event,
                       const struct reg_actor *actor)
{
  if (actor == NULL || actor->name == NULL)
    return false;
  switch (actor->role) {
  case REG_ROLE_OPERATOR:
    return true;
  case REG_ROLE_PROVIDER:
    return strcmp(event->owner, actor->name) == 0;
  case REG_ROLE_CONSUMER:
    return strcmp(event->consumer, actor->name) == 0;
  }
  return false;
}

int reg_observe(struct reg *reg, reg_observer_fn cb, void *arg)
{
  if (reg->n_observers == reg->cap_observers) {
    size_t ncap = reg->cap_observers ? reg->cap_observers * 2 : 4;
    struct observer *v = realloc(reg->observers, ncap * sizeof(*v));

    if (v == NULL)
      return -ENOMEM;
    reg->observers = v;
    reg->cap_observers = ncap;
  }
  reg->observers[reg->n_observers++] =
      (struct observer){.cb = cb, .arg = arg, .removed = false};
  return 0;
}

int reg_unobserve(struct reg *reg, reg_observer_fn cb, void *arg)
{
  for (size_t i = 0; i < reg->n_observers; i++) {
    struct observer *o = &reg->observers[i];

    if (!o->removed && o->cb == cb && o->arg == arg) {
      o->removed = true;
      if (!reg->dispatching)
        observers_compact(reg);
      return 0;
    }
  }
  return -ENOENT;
}
