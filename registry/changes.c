/* The change feed (reg_changes_read): the events after a seq with the
 * rows they touched, or, for a resync, the whole current state; what a
 * node applies to its data plane. It reads through reg_tx and the
 * store's table of functions like the operations do. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "registry-int.h"

void reg_changes_release(struct reg_changes *changes)
{
  if (changes == NULL)
    return;
  free(changes->events);
  reg_endpoints_free(changes->endpoints, changes->n_endpoints);
  free(changes->targets);
  free(changes->tokens);
  memset(changes, 0, sizeof(*changes));
}

static bool endpoint_listed(const struct reg_changes *c, const char *id)
{
  for (size_t i = 0; i < c->n_endpoints; i++)
    if (strcmp(c->endpoints[i].id, id) == 0)
      return true;
  return false;
}

static bool target_listed(const struct reg_changes *c, const char *group,
                          const char *address)
{
  for (size_t i = 0; i < c->n_targets; i++)
    if (strcmp(c->targets[i].target_group, group) == 0 &&
        strcmp(c->targets[i].address, address) == 0)
      return true;
  return false;
}

static bool token_listed(const struct reg_changes *c, const char *id)
{
  for (size_t i = 0; i < c->n_tokens; i++)
    if (strcmp(c->tokens[i].id, id) == 0)
      return true;
  return false;
}

static int add_token_row(struct reg *reg, struct reg_changes *c, const char *id)
{
  struct reg_token *grown;
  int r;

  if (token_listed(c, id))
    return 0;
  grown = realloc(c->tokens, (c->n_tokens + 1) * sizeof(*grown));
  if (grown == NULL)
    return -ENOMEM;
  c->tokens = grown;
  r = reg->ops->token_get(reg->store, id, &c->tokens[c->n_tokens]);
  if (r == 0)
    c->n_tokens++;
  return r == -ENOENT ? 0 : r;
}

/* True when an event of c before the i-th is about the same service
 * alone. */
static bool service_listed(const struct reg_changes *c, size_t i)
{
  for (size_t j = 0; j < i; j++)
    if (c->events[j].endpoint_id[0] == '\0' &&
        strcmp(c->events[j].service_id, c->events[i].service_id) == 0)
      return true;
  return false;
}

/* A service's event: the rows of its available endpoints (what a change of
 * its settings may change), each once. */
static int add_service_rows(struct reg *reg, struct reg_changes *c, size_t i)
{
  const enum reg_endpoint_state available = REG_EP_AVAILABLE;
  struct reg_store_endpoint_filter filter = {
      .service_id = c->events[i].service_id, .state = &available};
  struct reg_store_cursor start = {0};
  struct reg_endpoint *v, *grown;
  size_t n, before = c->n_endpoints;
  int r;

  if (service_listed(c, i))
    return 0;
  if ((r = reg->ops->endpoint_list(reg->store, &filter, &start, SIZE_MAX, &v,
                                   &n)) < 0)
    return r;
  grown = n ? realloc(c->endpoints, (before + n) * sizeof(*grown)) : NULL;
  if (n > 0 && grown == NULL) {
    reg_endpoints_free(v, n);
    return -ENOMEM;
  }
  if (n > 0)
    c->endpoints = grown;
  for (size_t k = 0; k < n; k++) {
    bool listed = false;

    for (size_t j = 0; j < before && !listed; j++)
      listed = strcmp(c->endpoints[j].id, v[k].id) == 0;
    if (listed)
      reg_endpoint_release(&v[k]);
    else
      c->endpoints[c->n_endpoints++] = v[k];
  }
  free(v);
  return 0;
}

/* The current row of what the i-th event names, added to c once. */
static int add_current_row(struct reg *reg, struct reg_changes *c, size_t i)
{
  const struct reg_event *ev = &c->events[i];
  int r;

  if (ev->endpoint_id[0] == '\0' && ev->service_id[0] &&
      ev->type == REG_EVENT_MODIFY)
    return add_service_rows(reg, c, i);
  if (ev->token_id[0])
    return add_token_row(reg, c, ev->token_id);
  if (ev->endpoint_id[0] && !endpoint_listed(c, ev->endpoint_id)) {
    struct reg_endpoint *grown =
        realloc(c->endpoints, (c->n_endpoints + 1) * sizeof(*grown));
    if (grown == NULL)
      return -ENOMEM;
    c->endpoints = grown;
    r = reg->ops->endpoint_get(reg->store, ev->endpoint_id,
                               &c->endpoints[c->n_endpoints]);
    if (r == 0)
      c->n_endpoints++;
    return r == -ENOENT ? 0 : r;
  }
  if (ev->target[0] && !target_listed(c, ev->target_group, ev->target)) {
    struct reg_target *grown =
        realloc(c->targets, (c->n_targets + 1) * sizeof(*grown));
    if (grown == NULL)
      return -ENOMEM;
    c->targets = grown;
    r = reg->ops->target_get(reg->store, ev->target_group, ev->target,
                             &c->targets[c->n_targets]);
    if (r == 0)
      c->n_targets++;
    return r == -ENOENT ? 0 : r;
  }
  return 0;
}

/* This node's draining mark, as stored. */
static int node_draining(struct reg *reg, bool *draining)
{
  struct reg_node *nodes;
  size_t n;
  int64_t now;
  int r = reg->ops->node_list(reg->store, &nodes, &n, &now);

  *draining = false;
  if (r < 0)
    return r;
  for (size_t i = 0; i < n; i++)
    if (strcmp(nodes[i].name, reg->config.node) == 0)
      *draining = nodes[i].state == REG_NODE_DRAINING;
  free(nodes);
  return 0;
}

static int read_whole_state(struct reg *reg, struct reg_changes *c)
{
  const enum reg_endpoint_state available = REG_EP_AVAILABLE;
  struct reg_store_endpoint_filter filter = {.state = &available};
  struct reg_store_cursor start = {0};
  int r;

  c->resync = true;
  if ((r = reg->ops->last_seq(reg->store, &c->last_seq)) < 0 ||
      (r = reg->ops->endpoint_list(reg->store, &filter, &start, SIZE_MAX,
                                   &c->endpoints, &c->n_endpoints)) < 0 ||
      (r = reg->ops->target_list(reg->store, &c->targets, &c->n_targets)) < 0 ||
      (r = reg->ops->token_list(reg->store, NULL, &c->tokens, &c->n_tokens)) <
          0 ||
      (r = node_draining(reg, &c->node_draining)) < 0)
    return r;
  return 0;
}

static int read_changes(struct reg *reg, uint64_t after, size_t limit,
                        bool resync, struct reg_changes *out)
{
  uint64_t first;
  int r;

  reg_changes_release(out);
  if ((r = reg->ops->first_seq(reg->store, &first)) < 0)
    return r;
  if (resync || after + 1 < first)
    return read_whole_state(reg, out);
  out->last_seq = after;
  if ((r = reg->ops->events_after(reg->store, after, NULL, limit, &out->events,
                                  &out->n_events)) < 0)
    return r;
  for (size_t i = 0; i < out->n_events; i++) {
    if ((r = add_current_row(reg, out, i)) < 0)
      return r;
    if (out->events[i].type == REG_EVENT_DRAIN &&
        strcmp(out->events[i].node, reg->config.node) == 0)
      out->node_draining = true;
    out->last_seq = out->events[i].seq;
  }
  return 0;
}

int reg_changes_read(struct reg *reg, uint64_t after, size_t limit, bool resync,
                     struct reg_changes *out)
{
  struct reg_tx tx;
  int r;

  memset(out, 0, sizeof(*out));
  for (reg_tx_start(&tx, reg, false, NULL); reg_tx_next(&tx, &r);)
    r = read_changes(reg, after, limit ? limit : 1, resync, out);
  if (r == 0)
    r = reg_complete_endpoints(reg, out->endpoints, out->n_endpoints);
  if (r < 0)
    reg_changes_release(out);
  return r;
}
