/* The registry's core: its copy of the config, opening the store,
 * transactions (with retries), events and the change feed. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "registry-int.h"

/* A transaction the store could not serialize runs again this often. */
#define TX_ATTEMPTS 5

/* ---- config ------------------------------------------------------------- */

static void config_free(struct config *config)
{
  for (size_t i = 0; i < config->n_principals; i++)
    reg_strings_free(config->principals[i].dns_domains,
                     config->principals[i].n_dns_domains);
  for (size_t i = 0; i < config->n_networks; i++)
    reg_strings_free(config->networks[i].principals,
                     config->networks[i].n_principals);
  for (size_t i = 0; i < config->n_load_balancers; i++)
    free(config->load_balancers[i].ports);
  reg_strings_free(config->target_groups, config->n_target_groups);
  reg_strings_free(config->preserve_groups, config->n_preserve_groups);
  reg_strings_free(config->preserve_targets, config->n_preserve_targets);
  reg_strings_free(config->preserve_target_groups,
                   config->n_preserve_target_groups);
  free(config->principals);
  free(config->networks);
  free(config->load_balancers);
  memset(config, 0, sizeof(*config));
}

int reg_network_from_spec(struct config_network *dst,
                          const struct reg_network *src, struct reg_error *err)
{
  char why[512];
  unsigned prefix;

  if (!reg_name_ok(src->name))
    return reg_set_error(err, -EINVAL, "networks", "bad network name");
  snprintf(dst->name, sizeof(dst->name), "%s", src->name);
  if (src->netns && src->netns[0]) {
    if (reg_netns_name_check(src->netns, why, sizeof(why)) < 0)
      return reg_set_error(err, -EINVAL, "netns", "%s", why);
    snprintf(dst->netns, sizeof(dst->netns), "%s", src->netns);
  }
  if (src->range != NULL)
    snprintf(dst->range_text, sizeof(dst->range_text), "%s", src->range);
  if (src->range == NULL || reg_parse_cidr(src->range, false, &dst->family,
                                           &dst->low, &dst->high, &prefix) < 0)
    return reg_set_error(
        err, -EINVAL, "networks",
        "network %s: range %s is not a CIDR with zero host bits", src->name,
        src->range ? src->range : "(none)");
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
  for (size_t i = 0; i < src->n_principals; i++)
    if (!reg_name_ok(src->principals[i]))
      return reg_set_error(err, -EINVAL, "networks",
                           "network %s: bad principal name", src->name);
  if (reg_strings_copy(src->principals, src->n_principals, &dst->principals) <
      0)
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
  dst->n_principals = src->n_principals;
  dst->dns = src->dns && src->dns[0];
  return 0;
}

/* A provider's DNS domains, checked and in lower case. */
static int copy_dns_domains(struct config_principal *dst,
                            const struct reg_principal *src,
                            struct reg_error *err)
{
  if (src->n_dns_domains > 0 && src->role != REG_ROLE_PROVIDER)
    return reg_set_error(err, -EINVAL, "principals",
                         "principal %s: only providers have dns_domains",
                         src->name);
  if (src->n_dns_domains == 0)
    return 0;
  dst->dns_domains = calloc(src->n_dns_domains, sizeof(char *));
  if (dst->dns_domains == NULL)
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
  for (size_t i = 0; i < src->n_dns_domains; i++) {
    char name[REG_DNS_NAME_BUF];

    if (reg_dns_name_parse(src->dns_domains[i], 1, name) < 0)
      return reg_set_error(err, -EINVAL, "principals",
                           "principal %s: %s is not a DNS domain", src->name,
                           src->dns_domains[i] ? src->dns_domains[i] : "");
    if ((dst->dns_domains[i] = strdup(name)) == NULL)
      return reg_set_error(err, -ENOMEM, NULL, "out of memory");
    dst->n_dns_domains++;
  }
  return 0;
}

static int copy_principals(struct config *dst, const struct reg_config *src,
                           struct reg_error *err)
{
  for (size_t i = 0; i < src->n_principals; i++) {
    const struct reg_principal *p = &src->principals[i];
    int r;

    if (!reg_name_ok(p->name) || strcmp(p->name, "*") == 0 ||
        (unsigned)p->role > REG_ROLE_CONSUMER)
      return reg_set_error(err, -EINVAL, "principals", "bad principal %s",
                           p->name ? p->name : "(null)");
    if (reg_find_principal(dst, p->name))
      return reg_set_error(err, -EINVAL, "principals", "duplicate principal %s",
                           p->name);
    snprintf(dst->principals[i].name, REG_NAME_BUF, "%s", p->name);
    dst->principals[i].role = p->role;
    dst->n_principals++;
    if ((r = copy_dns_domains(&dst->principals[i], p, err)) < 0)
      return r;
  }
  return 0;
}

static int copy_networks(struct config *dst, const struct reg_config *src,
                         struct reg_error *err)
{
  for (size_t i = 0; i < src->n_networks; i++) {
    int r;

    if (src->networks[i].name && reg_find_network(dst, src->networks[i].name))
      return reg_set_error(err, -EINVAL, "networks", "duplicate network %s",
                           src->networks[i].name);
    dst->n_networks++;
    if ((r = reg_network_from_spec(&dst->networks[i], &src->networks[i], err)) <
        0)
      return r;
  }
  return 0;
}

static int copy_load_balancers(struct config *dst, const struct reg_config *src,
                               struct reg_error *err)
{
  for (size_t i = 0; i < src->n_load_balancers; i++) {
    const struct reg_load_balancer *lb = &src->load_balancers[i];
    struct config_load_balancer *d = &dst->load_balancers[i];

    if (!reg_name_ok(lb->name) || reg_find_load_balancer(dst, lb->name))
      return reg_set_error(err, -EINVAL, "load_balancers",
                           "bad or duplicate load balancer %s",
                           lb->name ? lb->name : "(null)");
    snprintf(d->name, sizeof(d->name), "%s", lb->name);
    d->proxy_protocol = lb->proxy_protocol;
    dst->n_load_balancers++;
    if (lb->n_ports == 0)
      continue;
    if ((d->ports = malloc(lb->n_ports * sizeof(*d->ports))) == NULL)
      return reg_set_error(err, -ENOMEM, NULL, "out of memory");
    memcpy(d->ports, lb->ports, lb->n_ports * sizeof(*d->ports));
    d->n_ports = lb->n_ports;
  }
  return 0;
}

static int config_copy(struct config *dst, const struct reg_config *src,
                       struct reg_error *err)
{
  int r;

  memset(dst, 0, sizeof(*dst));
  dst->pending_expiry_ms = src->pending_expiry_ms > 0
                               ? src->pending_expiry_ms
                               : REG_DEFAULT_PENDING_EXPIRY_MS;
  dst->service_quota = src->service_quota;
  dst->write_timeout_ms = src->write_timeout_ms ? src->write_timeout_ms
                                                : REG_DEFAULT_WRITE_TIMEOUT_MS;
  dst->read_timeout_ms =
      src->read_timeout_ms ? src->read_timeout_ms : REG_DEFAULT_READ_TIMEOUT_MS;
  if (src->n_node_networks > REG_NODE_NETWORKS_MAX)
    return reg_set_error(err, -EINVAL, "node_networks",
                         "more than %d network mappings",
                         REG_NODE_NETWORKS_MAX);
  for (size_t i = 0; i < src->n_node_networks; i++) {
    struct config_netns_mapping *m = &dst->node_networks[i];
    const char *netns = src->node_networks[i].netns;
    size_t used = strlen(dst->node_networks_text);
    char why[512];

    if (netns && netns[0] && reg_netns_name_check(netns, why, sizeof(why)) < 0)
      return reg_set_error(err, -EINVAL, "node_networks", "%s", why);
    snprintf(m->network, sizeof(m->network), "%s",
             src->node_networks[i].network);
    snprintf(m->netns, sizeof(m->netns), "%s", netns ? netns : "");
    snprintf(dst->node_networks_text + used,
             sizeof(dst->node_networks_text) - used, "%s=%s\n", m->network,
             m->netns);
  }
  dst->n_node_networks = src->n_node_networks;
  snprintf(dst->node, sizeof(dst->node), "%s",
           src->node && src->node[0] ? src->node : "local");
  snprintf(dst->version, sizeof(dst->version), "%s",
           src->version ? src->version : "");
  if (!reg_name_ok(dst->node))
    return reg_set_error(err, -EINVAL, "node", "bad node name");
  if (src->dns_zone && src->dns_zone[0] &&
      reg_dns_name_parse(src->dns_zone, 1, dst->dns_zone) < 0)
    return reg_set_error(err, -EINVAL, "dns", "dns zone %s is not a DNS name",
                         src->dns_zone);
  dst->principals = calloc(src->n_principals + 1, sizeof(*dst->principals));
  dst->networks = calloc(src->n_networks + 1, sizeof(*dst->networks));
  dst->load_balancers =
      calloc(src->n_load_balancers + 1, sizeof(*dst->load_balancers));
  /* Counted first: a list a failed copy left NULL frees as nothing. */
  dst->n_target_groups = src->n_target_groups;
  dst->n_preserve_groups = src->n_preserve_client_ip_groups;
  dst->n_preserve_targets = src->n_preserve_client_ip_targets;
  dst->n_preserve_target_groups = src->n_preserve_client_ip_targets;
  if (!dst->principals || !dst->networks || !dst->load_balancers ||
      reg_strings_copy(src->target_groups, src->n_target_groups,
                       &dst->target_groups) < 0 ||
      reg_strings_copy(src->preserve_client_ip_groups,
                       src->n_preserve_client_ip_groups,
                       &dst->preserve_groups) < 0 ||
      reg_strings_copy(src->preserve_client_ip_targets,
                       src->n_preserve_client_ip_targets,
                       &dst->preserve_targets) < 0 ||
      reg_strings_copy(src->preserve_client_ip_target_groups,
                       src->n_preserve_client_ip_targets,
                       &dst->preserve_target_groups) < 0) {
    r = reg_set_error(err, -ENOMEM, NULL, "out of memory");
    goto fail_free;
  }
  if ((r = copy_principals(dst, src, err)) < 0 ||
      (r = copy_networks(dst, src, err)) < 0 ||
      (r = copy_load_balancers(dst, src, err)) < 0)
    goto fail_free;
  return 0;

fail_free:
  config_free(dst);
  return r;
}

int reg_load_network(struct reg *reg, const char *name,
                     struct config_network *store_net,
                     const struct config_network **out, struct reg_error *err)
{
  struct reg_network_info info;
  struct reg_network spec;
  int r;

  memset(store_net, 0, sizeof(*store_net));
  if (name == NULL || *name == '\0')
    return reg_set_error(err, -EINVAL, "network", "no network named");
  if ((*out = reg_find_network(&reg->config, name)) != NULL)
    return 0;
  r = reg->ops->network_get(reg->store, name, &info);
  if (r == -ENOENT)
    return reg_set_error(err, -EINVAL, "network", "no such network: %s", name);
  if (r < 0)
    return reg_store_error(reg, err, r);
  spec = (struct reg_network){
      info.name,         info.netns,
      info.range,        (const char *const *)info.principals,
      info.n_principals, NULL};
  r = reg_network_from_spec(store_net, &spec, err);
  reg_strings_free(info.principals, info.n_principals);
  if (r < 0)
    return r;
  *out = store_net;
  return 0;
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

int reg_service_complete(struct reg *reg, struct reg_service *s)
{
  const struct config_load_balancer *lb =
      reg_find_load_balancer(&reg->config, s->load_balancer);

  s->state = "available";
  s->proxy_protocol = lb ? lb->proxy_protocol : false;
  return copy_ports(&s->ports, &s->n_ports, lb);
}

int reg_endpoint_complete(struct reg *reg, struct reg_endpoint *e)
{
  const struct config_load_balancer *lb =
      reg_find_load_balancer(&reg->config, e->load_balancer);
  const struct config_network *net = reg_find_network(&reg->config, e->network);
  int r;

  /* A network made through the API: the store said its netns, unless this
   * node maps it elsewhere. */
  if (net != NULL) {
    snprintf(e->netns, sizeof(e->netns), "%s", net->netns);
  } else {
    for (size_t i = 0; i < reg->config.n_node_networks; i++)
      if (strcmp(reg->config.node_networks[i].network, e->network) == 0)
        snprintf(e->netns, sizeof(e->netns), "%s",
                 reg->config.node_networks[i].netns);
  }
  e->proxy_protocol = lb ? lb->proxy_protocol : false;
  if ((r = copy_ports(&e->ports, &e->n_ports, lb)) < 0)
    return r;
  return reg_endpoint_dns_names(reg, e);
}

int reg_complete_services(struct reg *reg, struct reg_service *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (reg_service_complete(reg, &v[i]) < 0)
      return -ENOMEM;
  return 0;
}

int reg_complete_endpoints(struct reg *reg, struct reg_endpoint *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (reg_endpoint_complete(reg, &v[i]) < 0)
      return -ENOMEM;
  return 0;
}

/* ---- pages -------------------------------------------------------------- */

int reg_page_parse(const struct reg_page *page, struct reg_store_cursor *cursor,
                   size_t *limit, struct reg_error *err)
{
  const char *token = page ? page->token : NULL;
  const char *dot;
  char *end;
  long long created;

  memset(cursor, 0, sizeof(*cursor));
  *limit = page && page->limit ? page->limit : REG_PAGE_MAX;
  if (*limit > REG_PAGE_MAX)
    return reg_set_error(err, -EINVAL, "limit", "limit must be 1..%d",
                         REG_PAGE_MAX);
  if (token == NULL || *token == '\0')
    return 0;
  dot = strchr(token, '.');
  errno = 0;
  created = strtoll(token, &end, 10);
  if (dot == NULL || end != dot || errno != 0 || created < 0 ||
      strlen(dot + 1) == 0 || strlen(dot + 1) >= REG_ID_BUF ||
      strspn(dot + 1, "abcdefghijklmnopqrstuvwxyz0123456789-") !=
          strlen(dot + 1))
    return reg_set_error(err, -EINVAL, "next_token",
                         "not a token this API gave");
  cursor->created_at = created;
  snprintf(cursor->id, sizeof(cursor->id), "%s", dot + 1);
  return 0;
}

size_t reg_page_rows(size_t limit)
{
  return limit == SIZE_MAX ? SIZE_MAX : limit + 1;
}

void reg_page_next(char *next_token, bool more, int64_t created_at,
                   const char *id)
{
  if (!more)
    next_token[0] = '\0';
  else
    snprintf(next_token, REG_TOKEN_BUF, "%" PRId64 ".%s", created_at, id);
}

/* ---- lifetime ----------------------------------------------------------- */

/* A name is the config's or the API's, never both: a config that names
 * what the API made is refused (the API refuses the other way round). */
static int names_clash(struct reg *reg, const struct config *cfg,
                       struct reg_error *err)
{
  struct reg_principal_info *made;
  struct reg_network_info net;
  size_t n_made;
  int r;

  /* Principals compare as one name whatever their case: all of the API's
   * are read (an open or a reload, not a request). */
  if ((r = reg->ops->principal_list(reg->store, &made, &n_made)) < 0)
    return reg_store_error(reg, err, r);
  for (size_t i = 0; i < n_made; i++) {
    const struct config_principal *p = reg_find_principal(cfg, made[i].name);

    if (p == NULL)
      continue;
    reg_set_error(err, -EEXIST, "principals",
                  "principal %s was made through the API%s%s: remove it "
                  "from the config or delete it there",
                  p->name, strcmp(p->name, made[i].name) ? " as " : "",
                  strcmp(p->name, made[i].name) ? made[i].name : "");
    free(made);
    return -EEXIST;
  }
  free(made);
  for (size_t i = 0; i < cfg->n_networks; i++) {
    r = reg->ops->network_get(reg->store, cfg->networks[i].name, &net);
    if (r == 0) {
      reg_strings_free(net.principals, net.n_principals);
      return reg_set_error(err, -EEXIST, "networks",
                           "network %s was made through the API: remove it "
                           "from the config or delete it there",
                           cfg->networks[i].name);
    }
    if (r != -ENOENT)
      return reg_store_error(reg, err, r);
  }
  return 0;
}

/* Unreachable or stuck store: nothing to compare with now. */
static int check_names(struct reg *reg, const struct config *cfg,
                       struct reg_error *err)
{
  struct reg_tx tx;
  int r;

  for (reg_tx_start(&tx, reg, false, err); reg_tx_next(&tx, &r);)
    r = names_clash(reg, cfg, err);
  return r == -ENOTCONN || r == -ETIMEDOUT ? 0 : r;
}

int reg_open(struct reg **out, const char *url, const struct reg_config *cfg,
             struct reg_error *err)
{
  struct reg_store_settings settings;
  struct reg *reg;
  char msg[256] = "";
  int r;

  reg_clear_error(err);
  reg = calloc(1, sizeof(*reg));
  if (reg == NULL)
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
  reg->ops = &reg_store_sql;
  if ((r = config_copy(&reg->config, cfg, err)) < 0)
    goto fail_free;
  settings.location = url;
  settings.node = reg->config.node;
  settings.reader = cfg->reader;
  settings.statement_timeout_ms = reg->config.write_timeout_ms;
  reg->reader = cfg->reader;
  if ((r = reg->ops->open(&reg->store, &settings, msg, sizeof(msg))) < 0) {
    reg_set_error(err, r, "registry", "%s", msg);
    goto fail_config;
  }
  if ((r = check_names(reg, &reg->config, err)) < 0) {
    reg->ops->close(reg->store);
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
  free(reg);
}

int reg_reload(struct reg *reg, const struct reg_config *cfg,
               struct reg_error *err)
{
  struct config config;
  int r;

  reg_clear_error(err);
  if ((r = config_copy(&config, cfg, err)) < 0)
    return r;
  if ((r = check_names(reg, &config, err)) < 0) {
    config_free(&config);
    return r;
  }
  config_free(&reg->config);
  reg->config = config;
  return 0;
}

void reg_set_deadline(struct reg *reg, uint64_t deadline_ms)
{
  reg->deadline_ms = deadline_ms;
}

const char *reg_store_message(struct reg *reg)
{
  return reg->ops->errmsg(reg->store);
}

int reg_schema_version(struct reg *reg)
{
  return reg->ops->schema_version(reg->store);
}

const char *reg_store_name(const struct reg *reg)
{
  return reg->ops->name(reg->store);
}

int reg_wait_fd(struct reg *reg)
{
  return reg->ops->wait_fd(reg->store);
}

bool reg_take_notices(struct reg *reg)
{
  return reg->ops->take_notices(reg->store);
}

/* ---- transactions ------------------------------------------------------- */

/* A transaction that ran out of time: rolled back, and not tried again,
 * since its caller will be told it failed. */
static int timed_out(struct reg *reg, bool write, struct reg_error *err)
{
  return reg_set_error(
      err, -ETIMEDOUT, NULL,
      "the registry store did not answer in time (%s_timeout %" PRIu32
      " ms): %s; nothing was changed",
      write ? "write" : "read",
      write ? reg->config.write_timeout_ms : reg->config.read_timeout_ms,
      reg->ops->errmsg(reg->store));
}

void reg_tx_start(struct reg_tx *tx, struct reg *reg, bool write,
                  struct reg_error *err)
{
  memset(tx, 0, sizeof(*tx));
  tx->reg = reg;
  tx->err = err;
  tx->write = write;
  tx->deadline = reg->deadline_ms ? reg->deadline_ms
                                  : reg_monotonic_ms() +
                                        (write ? reg->config.write_timeout_ms
                                               : reg->config.read_timeout_ms);
}

bool reg_tx_next(struct reg_tx *tx, int *r)
{
  struct reg *reg = tx->reg;

  if (tx->open) {
    tx->open = false;
    if (*r < 0)
      reg->ops->rollback(reg->store);
    else if ((*r = reg->ops->commit(reg->store)) < 0 && *r != -EAGAIN &&
             *r != -ETIMEDOUT)
      reg_store_error(reg, tx->err, *r);
  } else if (tx->attempt == 0) {
    *r = -EAGAIN;
    if (tx->write && reg->reader) {
      *r =
          reg_set_error(tx->err, -EIO, NULL, "a write on the reading registry");
      return false;
    }
  }
  while (*r == -EAGAIN && tx->attempt < TX_ATTEMPTS) {
    uint64_t now = reg_monotonic_ms();

    tx->attempt++;
    if (now >= tx->deadline) {
      *r = -ETIMEDOUT;
      break;
    }
    reg_clear_error(tx->err);
    *r = reg->ops->begin(reg->store, tx->write, (uint32_t)(tx->deadline - now));
    if (*r == 0)
      return tx->open = true;
    if (*r != -EAGAIN && *r != -ETIMEDOUT)
      reg_store_error(reg, tx->err, *r);
  }
  if (*r == -ETIMEDOUT)
    *r = timed_out(reg, tx->write, tx->err);
  else if (*r == -EAGAIN)
    *r = reg_set_error(tx->err, -EIO, NULL,
                       "the store kept failing to serialize this change: %s",
                       reg->ops->errmsg(reg->store));
  return false;
}

/* ---- events and transitions --------------------------------------------- */

static bool state_live(enum reg_endpoint_state state)
{
  return state == REG_EP_PENDING_ACCEPTANCE || state == REG_EP_AVAILABLE;
}

bool reg_transition_legal(enum reg_endpoint_state from,
                          enum reg_endpoint_state to)
{
  switch (to) {
  case REG_EP_AVAILABLE:
  case REG_EP_EXPIRED:
    return from == REG_EP_PENDING_ACCEPTANCE;
  case REG_EP_REJECTED:
    return from == REG_EP_PENDING_ACCEPTANCE || from == REG_EP_AVAILABLE;
  case REG_EP_FAILED:
    return from == REG_EP_AVAILABLE;
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

int reg_record_event(struct reg *reg, enum reg_event_type type,
                     const struct reg_endpoint *e, const char *principal)
{
  struct reg_event ev;

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
  return reg->ops->event_append(reg->store, &ev);
}

int reg_record_service_event(struct reg *reg, const struct reg_service *s,
                             const char *principal, int64_t now)
{
  struct reg_event ev;

  memset(&ev, 0, sizeof(ev));
  ev.time = now;
  ev.type = REG_EVENT_MODIFY;
  snprintf(ev.service_id, sizeof(ev.service_id), "%s", s->id);
  snprintf(ev.principal, sizeof(ev.principal), "%s", principal);
  snprintf(ev.owner, sizeof(ev.owner), "%s", s->owner);
  return reg->ops->event_append(reg->store, &ev);
}

int reg_transition(struct reg *reg, struct reg_endpoint *e,
                   enum reg_endpoint_state to, const char *reason,
                   const char *principal, int64_t now)
{
  bool was_live = state_live(e->state);
  int r;

  e->state = to;
  e->updated_at = now;
  if (reason != NULL)
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
  if ((r = reg->ops->endpoint_update(reg->store, e)) < 0)
    return r;
  if (was_live && !state_live(to) &&
      (r = reg_release_address(reg, e->network, e->address)) < 0)
    return r;
  return reg_record_event(reg, event_for(to), e, principal);
}

/* ---- reading events ----------------------------------------------------- */

bool reg_event_visible(const struct reg_event *event,
                       const struct reg_actor *actor)
{
  if (actor == NULL || actor->name == NULL)
    return false;
  switch (actor->role) {
  case REG_ROLE_OPERATOR:
    return true;
  case REG_ROLE_PROVIDER:
    return event->owner[0] && strcmp(event->owner, actor->name) == 0;
  case REG_ROLE_CONSUMER:
    return event->consumer[0] && strcmp(event->consumer, actor->name) == 0;
  }
  return false;
}

/* Raises *after past the events of earlier principals of name: those
 * made before this one through the API (a principal deleted, then made
 * again) are not its own. */
static int events_since(struct reg *reg, const char *name, uint64_t *after)
{
  struct reg_principal_info p;
  int r = reg->ops->principal_get(reg->store, name, &p);

  if (r == -ENOENT)
    return 0;
  if (r == 0 && p.since_seq > *after)
    *after = p.since_seq;
  return r;
}

/* Reads the events after `after` that actor may see, at most limit, into
 * *v; *through is the seq a reader has seen everything up to. */
static int read_events(struct reg *reg, const struct reg_actor *actor,
                       uint64_t after, size_t limit, struct reg_event **v,
                       size_t *n, uint64_t *through)
{
  struct reg_store_event_filter filter = {0};
  const struct reg_store_event_filter *f = NULL;
  int r;

  free(*v);
  *v = NULL;
  *n = 0;
  if (actor && actor->role == REG_ROLE_PROVIDER) {
    filter.owner = actor->name;
    f = &filter;
  } else if (actor && actor->role == REG_ROLE_CONSUMER) {
    filter.consumer = actor->name;
    f = &filter;
  }
  /* The last seq first: an event committed after it is not in the answer
   * and must not be skipped by a reader that moves its cursor to it. */
  if ((r = reg->ops->last_seq(reg->store, through)) < 0 ||
      (f && (r = events_since(reg, actor->name, &after)) < 0) ||
      (r = reg->ops->events_after(reg->store, after, f, limit, v, n)) < 0)
    return reg_store_error(reg, NULL, r);
  if (*n == limit)
    *through = (*v)[*n - 1].seq;
  return 0;
}

int reg_events_after(struct reg *reg, const struct reg_actor *actor,
                     uint64_t after, size_t limit, struct reg_event **out,
                     size_t *n, uint64_t *through)
{
  uint64_t seen = after;
  struct reg_tx tx;
  int r;

  *out = NULL;
  *n = 0;
  if (limit > 0)
    for (reg_tx_start(&tx, reg, false, NULL); reg_tx_next(&tx, &r);)
      r = read_events(reg, actor, after, limit, out, n, &seen);
  else
    r = 0;
  if (r < 0) {
    free(*out);
    *out = NULL;
    *n = 0;
    return r;
  }
  if (through)
    *through = seen > after ? seen : after;
  return 0;
}

int reg_last_seq(struct reg *reg, uint64_t *seq)
{
  struct reg_tx tx;
  int r;

  for (reg_tx_start(&tx, reg, false, NULL); reg_tx_next(&tx, &r);)
    r = reg->ops->last_seq(reg->store, seq);
  return r;
}

int reg_first_seq(struct reg *reg, uint64_t *seq)
{
  struct reg_tx tx;
  int r;

  for (reg_tx_start(&tx, reg, false, NULL); reg_tx_next(&tx, &r);)
    r = reg->ops->first_seq(reg->store, seq);
  return r;
}

int reg_prune(struct reg *reg, reg_store_prune_fn *op, int64_t before_ms,
              size_t limit, size_t *removed)
{
  size_t n = 0;
  struct reg_tx tx;
  int r;

  for (reg_tx_start(&tx, reg, true, NULL); reg_tx_next(&tx, &r);)
    r = op(reg->store, before_ms, limit, &n);
  if (removed)
    *removed = r == 0 ? n : 0;
  return r;
}

int reg_events_prune(struct reg *reg, int64_t before_ms, size_t limit,
                     size_t *removed)
{
  return reg_prune(reg, reg->ops->events_prune, before_ms, limit, removed);
}
