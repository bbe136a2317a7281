/* Endpoints: the consumer routes, expiry, and what the data plane reports
 * (placements) and reads. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry-int.h"

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

/* Hands a finished endpoint to *out (when not NULL), completed with what
 * config knows; releases it otherwise. */
static int hand_endpoint(struct reg *reg, struct reg_endpoint *e,
                         struct reg_endpoint *out, struct reg_error *err)
{
  if (out == NULL) {
    reg_endpoint_release(e);
    return 0;
  }
  *out = *e;
  memset(e, 0, sizeof(*e));
  if (reg_endpoint_complete(reg, out) < 0) {
    reg_endpoint_release(out);
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
  }
  return 0;
}

int reg_endpoints_page(struct reg *reg, int r, struct reg_endpoint *v, size_t n,
                       size_t limit, struct reg_endpoint **out, size_t *n_out,
                       char *next_token, struct reg_error *err)
{
  bool more = n > limit;

  if (r == 0 && (r = reg_complete_endpoints(reg, v, n)) < 0)
    reg_set_error(err, r, NULL, "out of memory");
  if (r < 0) {
    reg_endpoints_free(v, n);
    return r;
  }
  if (more)
    reg_endpoint_release(&v[--n]);
  reg_page_next(next_token, more, n ? v[n - 1].created_at : 0,
                n ? v[n - 1].id : "");
  *out = v;
  *n_out = n;
  return 0;
}

/* ---- create ------------------------------------------------------------- */

struct create {
  const struct reg_actor *actor;
  const struct reg_endpoint_params *params;
  const struct config_network *net;
  struct config_network store_net; /* a network made through the API */
  struct reg_endpoint endpoint;    /* sources set; the rest filled here */
};

/* The service the consumer asks for, if it may see it. */
static int load_allowed_service(struct reg *reg, const struct create *c,
                                struct reg_service *s, struct reg_error *err)
{
  int r = reg->ops->service_get(reg->store, c->params->service, s);

  if (r == 0 && !reg_service_allows(s, c->actor->name)) {
    reg_service_release(s);
    r = -ENOENT;
  }
  if (r == -ENOENT)
    return reg_set_error(err, r, "service", "no such service: %s",
                         c->params->service);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

static int check_connection_limit(struct reg *reg, const struct create *c,
                                  const struct reg_service *s,
                                  struct reg_error *err)
{
  size_t live = 0;
  int r;

  if (s->connection_limit == 0)
    return 0;
  r = reg->ops->endpoint_count_live(reg->store, s->id, c->actor->name, &live);
  if (r < 0)
    return reg_store_error(reg, err, r);
  if (live >= s->connection_limit)
    return reg_set_error(err, -EDQUOT, "service",
                         "connection limit of %u reached on service %s",
                         s->connection_limit, s->name);
  return 0;
}

static void fill_endpoint(struct reg_endpoint *e, const struct reg_service *s,
                          const struct create *c)
{
  snprintf(e->service_id, sizeof(e->service_id), "%s", s->id);
  snprintf(e->service, sizeof(e->service), "%s", s->name);
  snprintf(e->owner, sizeof(e->owner), "%s", s->owner);
  snprintf(e->load_balancer, sizeof(e->load_balancer), "%s", s->load_balancer);
  snprintf(e->consumer, sizeof(e->consumer), "%s", c->actor->name);
  snprintf(e->network, sizeof(e->network), "%s", c->net->name);
  snprintf(e->private_dns_name, sizeof(e->private_dns_name), "%s",
           s->private_dns_name);
  e->private_dns = c->params->private_dns;
  e->state =
      s->acceptance_required ? REG_EP_PENDING_ACCEPTANCE : REG_EP_AVAILABLE;
  e->created_at = e->updated_at = reg_now_ms();
}

static int load_network(struct reg *reg, struct create *c,
                        struct reg_error *err)
{
  int r;

  reg_strings_free(c->store_net.principals, c->store_net.n_principals);
  r = reg_load_network(reg, c->params->network, &c->store_net, &c->net, err);
  if (r < 0)
    return r;
  if (!network_allows(c->net, c->actor->name))
    return reg_set_error(err, -EACCES, "network",
                         "%s may not place endpoints in network %s",
                         c->actor->name, c->net->name);
  return 0;
}

static int create_endpoint(struct reg *reg, struct create *c,
                           struct reg_error *err)
{
  struct reg_endpoint *e = &c->endpoint;
  struct reg_service s;
  struct reg_addr_key key;
  int r;

  if ((r = load_network(reg, c, err)) < 0 ||
      (r = load_allowed_service(reg, c, &s, err)) < 0)
    return r;
  if ((r = check_connection_limit(reg, c, &s, err)) < 0 ||
      (r = reg_allocate_address(reg, c->net, c->params->address, &key,
                                e->address, err)) < 0) {
    reg_service_release(&s);
    return r;
  }
  fill_endpoint(e, &s, c);
  reg_service_release(&s);
  r = reg->ops->endpoint_insert(reg->store, e, &key);
  /* Nothing about who holds it. */
  if (r == -EADDRINUSE)
    return reg_set_error(err, r, "address",
                         "that address is not available in network %s",
                         c->net->name);
  if (r == 0)
    r = reg_record_event(reg, REG_EVENT_CONNECT, e, c->actor->name);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_endpoint_create(struct reg *reg, const struct reg_actor *actor,
                        const struct reg_endpoint_params *params,
                        struct reg_endpoint *out, struct reg_error *err)
{
  struct create c = {.actor = actor, .params = params};
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  if (actor == NULL || actor->name == NULL || actor->role != REG_ROLE_CONSUMER)
    return reg_set_error(err, -EACCES, NULL, "only consumers create endpoints");
  if (params->service == NULL || *params->service == '\0')
    return reg_set_error(err, -EINVAL, "service", "no service named");
  if ((r = reg_sources_normalize(params->allowed_sources,
                                 params->n_allowed_sources,
                                 &c.endpoint.allowed_sources, err)) < 0)
    return r;
  c.endpoint.n_allowed_sources = params->n_allowed_sources;
  if ((r = reg_make_id(c.endpoint.id, "ep-")) < 0) {
    reg_endpoint_release(&c.endpoint);
    return reg_set_error(err, r, NULL, "getrandom failed");
  }
  for (reg_tx_start(&tx, reg, true, err); reg_tx_next(&tx, &r);)
    r = create_endpoint(reg, &c, err);
  reg_strings_free(c.store_net.principals, c.store_net.n_principals);
  if (r < 0) {
    reg_endpoint_release(&c.endpoint);
    return r;
  }
  return hand_endpoint(reg, &c.endpoint, out, err);
}

/* ---- describe, list ----------------------------------------------------- */

/* Loads an endpoint for the consumer routes inside an open transaction. */
static int load_own_endpoint(struct reg *reg, const struct reg_actor *actor,
                             const char *id, struct reg_endpoint *out,
                             struct reg_error *err)
{
  int r;

  memset(out, 0, sizeof(*out));
  if (actor == NULL || actor->name == NULL || actor->role == REG_ROLE_PROVIDER)
    return reg_set_error(err, -EACCES, NULL,
                         "providers see endpoints as connections of a service");
  if (id == NULL)
    return reg_set_error(err, -ENOENT, "id", "no such endpoint");
  r = reg->ops->endpoint_get(reg->store, id, out);
  if (r == 0 && actor->role != REG_ROLE_OPERATOR &&
      strcmp(out->consumer, actor->name) != 0) {
    reg_endpoint_release(out);
    r = -ENOENT;
  }
  if (r == -ENOENT)
    return reg_set_error(err, r, "id", "no such endpoint: %s", id);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

/* What describe, change and delete do to the consumer's endpoint id
 * (loaded into *e) in the open transaction. */
typedef int own_endpoint_op(struct reg *reg, const struct reg_actor *actor,
                            const char *id,
                            const struct reg_endpoint_changes *changes,
                            struct reg_endpoint *e, struct reg_error *err);

/* Runs op in a transaction and hands the endpoint to *out. */
static int on_own_endpoint(struct reg *reg, bool write, own_endpoint_op *op,
                           const struct reg_actor *actor, const char *id,
                           const struct reg_endpoint_changes *changes,
                           struct reg_endpoint *out, struct reg_error *err)
{
  struct reg_endpoint e = {0};
  struct reg_tx tx;
  int r;

  for (reg_tx_start(&tx, reg, write, err); reg_tx_next(&tx, &r);) {
    reg_endpoint_release(&e);
    r = op(reg, actor, id, changes, &e, err);
  }
  if (r < 0) {
    reg_endpoint_release(&e);
    return r;
  }
  return hand_endpoint(reg, &e, out, err);
}

static int describe_endpoint(struct reg *reg, const struct reg_actor *actor,
                             const char *id,
                             const struct reg_endpoint_changes *changes,
                             struct reg_endpoint *e, struct reg_error *err)
{
  return load_own_endpoint(reg, actor, id, e, err);
}

int reg_endpoint_describe(struct reg *reg, const struct reg_actor *actor,
                          const char *id, struct reg_endpoint *out,
                          struct reg_error *err)
{
  reg_clear_error(err);
  memset(out, 0, sizeof(*out));
  return on_own_endpoint(reg, false, describe_endpoint, actor, id, NULL, out,
                         err);
}

/* A page of the endpoints filter asks for. */
static int list_endpoints(struct reg *reg,
                          const struct reg_store_endpoint_filter *filter,
                          const struct reg_store_cursor *after, size_t rows,
                          struct reg_endpoint **v, size_t *n,
                          struct reg_error *err)
{
  int r;

  reg_endpoints_free(*v, *n);
  *v = NULL;
  *n = 0;
  r = reg->ops->endpoint_list(reg->store, filter, after, rows, v, n);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_endpoint_list(struct reg *reg, const struct reg_actor *actor,
                      const enum reg_endpoint_state *state,
                      const struct reg_page *page, struct reg_endpoint **out,
                      size_t *n, char *next_token, struct reg_error *err)
{
  struct reg_store_endpoint_filter filter = {.state = state};
  struct reg_store_cursor after;
  struct reg_endpoint *v = NULL;
  size_t limit, n_v = 0;
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  *out = NULL;
  *n = 0;
  if (actor == NULL || actor->name == NULL || actor->role == REG_ROLE_PROVIDER)
    return reg_set_error(err, -EACCES, NULL,
                         "providers see endpoints as connections of a service");
  if (state && (unsigned)*state >= REG_EP_STATE_COUNT)
    return reg_set_error(err, -EINVAL, "state", "unknown state");
  if (actor->role == REG_ROLE_CONSUMER)
    filter.consumer = actor->name;
  if ((r = reg_page_parse(page, &after, &limit, err)) < 0)
    return r;
  for (reg_tx_start(&tx, reg, false, err); reg_tx_next(&tx, &r);)
    r = list_endpoints(reg, &filter, &after, reg_page_rows(limit), &v, &n_v,
                       err);
  return reg_endpoints_page(reg, r, v, n_v, limit, out, n, next_token, err);
}

/* ---- modify, delete ----------------------------------------------------- */

static int change_endpoint(struct reg *reg, const struct reg_actor *actor,
                           const char *id,
                           const struct reg_endpoint_changes *changes,
                           struct reg_endpoint *e, struct reg_error *err)
{
  char **sources;
  int r;

  if ((r = load_own_endpoint(reg, actor, id, e, err)) < 0)
    return r;
  if (e->state == REG_EP_DELETED)
    return reg_set_error(err, -EBUSY, "id", "endpoint %s is deleted", e->id);
  if (changes->set_allowed_sources) {
    if ((r = reg_sources_normalize(changes->allowed_sources,
                                   changes->n_allowed_sources, &sources, err)) <
        0)
      return r;
    reg_strings_free(e->allowed_sources, e->n_allowed_sources);
    e->allowed_sources = sources;
    e->n_allowed_sources = changes->n_allowed_sources;
  }
  if (changes->set_private_dns)
    e->private_dns = changes->private_dns;
  e->updated_at = reg_now_ms();
  if ((r = reg->ops->endpoint_update(reg->store, e)) < 0 ||
      (r = reg_record_event(reg, REG_EVENT_MODIFY, e, actor->name)) < 0)
    return reg_store_error(reg, err, r);
  return 0;
}

int reg_endpoint_change(struct reg *reg, const struct reg_actor *actor,
                        const char *id,
                        const struct reg_endpoint_changes *changes,
                        struct reg_endpoint *out, struct reg_error *err)
{
  char **checked;
  int r;

  reg_clear_error(err);
  /* Checked before the transaction too, so a bad list costs no lock. */
  if (changes->set_allowed_sources) {
    if ((r = reg_sources_normalize(changes->allowed_sources,
                                   changes->n_allowed_sources, &checked, err)) <
        0)
      return r;
    reg_strings_free(checked, changes->n_allowed_sources);
  }
  return on_own_endpoint(reg, true, change_endpoint, actor, id, changes, out,
                         err);
}

int reg_endpoint_modify(struct reg *reg, const struct reg_actor *actor,
                        const char *id, const char *const *allowed_sources,
                        size_t n_allowed_sources, struct reg_endpoint *out,
                        struct reg_error *err)
{
  const struct reg_endpoint_changes changes = {
      .set_allowed_sources = true,
      .allowed_sources = allowed_sources,
      .n_allowed_sources = n_allowed_sources,
  };

  return reg_endpoint_change(reg, actor, id, &changes, out, err);
}

static int delete_endpoint(struct reg *reg, const struct reg_actor *actor,
                           const char *id,
                           const struct reg_endpoint_changes *changes,
                           struct reg_endpoint *e, struct reg_error *err)
{
  int r = load_own_endpoint(reg, actor, id, e, err);

  if (r < 0)
    return r;
  if (!reg_transition_legal(e->state, REG_EP_DELETED))
    return reg_set_error(err, -EBUSY, "id", "endpoint %s is already deleted",
                         e->id);
  r = reg_transition(reg, e, REG_EP_DELETED, NULL, actor->name, reg_now_ms());
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_endpoint_delete(struct reg *reg, const struct reg_actor *actor,
                        const char *id, struct reg_endpoint *out,
                        struct reg_error *err)
{
  reg_clear_error(err);
  return on_own_endpoint(reg, true, delete_endpoint, actor, id, NULL, out, err);
}

/* ---- expiry ------------------------------------------------------------- */

/* At most this many endpoints expire in one transaction. */
#define EXPIRE_BATCH 1000

static int expire(struct reg *reg, int64_t now, size_t *expired)
{
  char reason[REG_REASON_BUF];
  struct reg_endpoint *v;
  size_t n;
  int r;

  *expired = 0;
  snprintf(reason, sizeof(reason), "not accepted within %lld s",
           (long long)(reg->config.pending_expiry_ms / 1000));
  r = reg->ops->pending_before(reg->store, now - reg->config.pending_expiry_ms,
                               EXPIRE_BATCH, &v, &n);
  if (r < 0)
    return r;
  for (size_t i = 0; r == 0 && i < n; i++)
    r = reg_transition(reg, &v[i], REG_EP_EXPIRED, reason, REG_SYSTEM_PRINCIPAL,
                       now);
  reg_endpoints_free(v, n);
  *expired = r == 0 ? n : 0;
  return r;
}

int reg_expire_pending(struct reg *reg, int64_t now, size_t *n_expired)
{
  struct reg_tx tx;
  size_t n = 0;
  int r;

  for (reg_tx_start(&tx, reg, true, NULL); reg_tx_next(&tx, &r);)
    r = expire(reg, now, &n);
  if (n_expired)
    *n_expired = r == 0 ? n : 0;
  return r;
}

/* ---- retention ---------------------------------------------------------- */

int reg_endpoints_prune(struct reg *reg, int64_t before_ms, size_t limit,
                        size_t *removed)
{
  return reg_prune(reg, reg->ops->endpoints_prune, before_ms, limit, removed);
}

/* ---- placements --------------------------------------------------------- */

/* True when every up node other than this one has a failed placement of e
 * (this node's report is failed too). */
static bool failed_everywhere(const struct reg_endpoint *e,
                              const struct reg_node *nodes, size_t n_nodes,
                              int64_t now, const char *self)
{
  for (size_t i = 0; i < n_nodes; i++) {
    const struct reg_node *node = &nodes[i];
    bool failed = false;

    if (strcmp(node->name, self) == 0 ||
        now - node->last_seen > REG_HEARTBEAT_MS * REG_NODE_DOWN_HEARTBEATS)
      continue;
    for (size_t j = 0; j < e->n_placements; j++)
      if (strcmp(e->placements[j].node, node->name) == 0)
        failed = !e->placements[j].open;
    if (!failed)
      return false;
  }
  return true;
}

static int report_one(struct reg *reg, const struct reg_placement_report *rep,
                      const struct reg_node *nodes, size_t n_nodes,
                      int64_t store_now)
{
  struct reg_placement p = {.open = rep->open, .updated_at = reg_now_ms()};
  struct reg_endpoint e;
  int r = reg->ops->endpoint_get(reg->store, rep->endpoint_id, &e);

  if (r == -ENOENT)
    return 0;
  if (r < 0)
    return r;
  snprintf(p.node, sizeof(p.node), "%s", reg->config.node);
  snprintf(p.reason, sizeof(p.reason), "%s",
           rep->open ? "" : (rep->reason ? rep->reason : "failed"));
  if (e.state == REG_EP_AVAILABLE &&
      (r = reg->ops->placement_put(reg->store, e.id, &p)) == 0 && !rep->open &&
      failed_everywhere(&e, nodes, n_nodes, store_now, reg->config.node))
    r = reg_transition(reg, &e, REG_EP_FAILED, p.reason, REG_SYSTEM_PRINCIPAL,
                       p.updated_at);
  reg_endpoint_release(&e);
  return r;
}

static int report(struct reg *reg, const struct reg_placement_report *reports,
                  size_t n)
{
  struct reg_node *nodes;
  size_t n_nodes;
  int64_t now;
  int r = reg->ops->node_list(reg->store, &nodes, &n_nodes, &now);

  if (r < 0)
    return r;
  for (size_t i = 0; r == 0 && i < n; i++)
    r = report_one(reg, &reports[i], nodes, n_nodes, now);
  free(nodes);
  return r;
}

int reg_placements_report(struct reg *reg,
                          const struct reg_placement_report *reports, size_t n)
{
  struct reg_tx tx;
  int r = 0;

  if (n > 0)
    for (reg_tx_start(&tx, reg, true, NULL); reg_tx_next(&tx, &r);)
      r = report(reg, reports, n);
  return r;
}

/* Reports on an endpoint that left available are ignored (report_one), so
 * its rows keep what they said while it was: read through its state. */
const char *reg_placement_state_name(const struct reg_endpoint *e,
                                     const struct reg_placement *p)
{
  if (!p->open)
    return "failed";
  return e->state == REG_EP_AVAILABLE ? "open" : "closed";
}

/* ---- data-plane reads --------------------------------------------------- */

static int get_endpoint(struct reg *reg, const struct reg_actor *actor,
                        const char *id,
                        const struct reg_endpoint_changes *changes,
                        struct reg_endpoint *e, struct reg_error *err)
{
  return reg->ops->endpoint_get(reg->store, id, e);
}

int reg_endpoint_get(struct reg *reg, const char *id, struct reg_endpoint *out)
{
  memset(out, 0, sizeof(*out));
  if (id == NULL)
    return -ENOENT;
  return on_own_endpoint(reg, false, get_endpoint, NULL, id, NULL, out, NULL);
}

int reg_available_endpoints(struct reg *reg, struct reg_endpoint **out,
                            size_t *n)
{
  const enum reg_endpoint_state available = REG_EP_AVAILABLE;
  struct reg_store_endpoint_filter filter = {.state = &available};
  struct reg_store_cursor start = {0};
  struct reg_tx tx;
  int r;

  *out = NULL;
  *n = 0;
  for (reg_tx_start(&tx, reg, false, NULL); reg_tx_next(&tx, &r);)
    r = list_endpoints(reg, &filter, &start, SIZE_MAX, out, n, NULL);
  if (r == 0)
    r = reg_complete_endpoints(reg, *out, *n);
  if (r < 0) {
    reg_endpoints_free(*out, *n);
    *out = NULL;
    *n = 0;
  }
  return r;
}

int reg_endpoint_counts(struct reg *reg, struct reg_endpoint_count **out,
                        size_t *n)
{
  struct reg_tx tx;
  int r;

  *out = NULL;
  *n = 0;
  for (reg_tx_start(&tx, reg, false, NULL); reg_tx_next(&tx, &r);) {
    free(*out);
    *out = NULL;
    r = reg->ops->endpoint_counts(reg->store, out, n);
  }
  if (r < 0) {
    free(*out);
    *out = NULL;
    *n = 0;
  }
  return r;
}
