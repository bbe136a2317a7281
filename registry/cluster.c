/* What nodes share besides endpoints: targets registered through the API,
 * and the nodes themselves (heartbeats, drain). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry-int.h"

/* ---- targets ------------------------------------------------------------ */

static int record_target_event(struct reg *reg, enum reg_event_type type,
                               const struct reg_target *t,
                               const char *principal)
{
  struct reg_event ev;

  memset(&ev, 0, sizeof(ev));
  ev.time = reg_now_ms();
  ev.type = type;
  snprintf(ev.principal, sizeof(ev.principal), "%s", principal);
  snprintf(ev.target_group, sizeof(ev.target_group), "%s", t->target_group);
  snprintf(ev.target, sizeof(ev.target), "%s", t->address);
  return reg->ops->event_append(reg->store, &ev);
}

/* ---- preserve_client_ip and networks ------------------------------------ */

/* A target of a preserve_client_ip group answers the client's own address;
 * inside a network's range it would answer that network's clients
 * directly, not through nlb, and their flows would hang (docs/config.md).
 * The config's own check covers its networks and targets; this one a
 * target the API registers, tenancy.c's a network the API makes. */

/* Target t of a preserve_client_ip group lies in no network's range (the
 * config's or the API's); called in the registering transaction. */
static int check_preserved_target(struct reg *reg, const struct reg_target *t,
                                  struct reg_error *err)
{
  const struct config *cfg = &reg->config;
  struct reg_network_info *nets = NULL;
  size_t n = 0;
  int r;

  if (!reg_preserves_client_ip(cfg, t->target_group))
    return 0;
  for (size_t i = 0; i < cfg->n_networks; i++) {
    const struct config_network *net = &cfg->networks[i];
    if (reg_range_holds_target(net->family, net->low, net->high, t->address))
      return reg_refuse_preserved_inside("address", t->target_group, t->address,
                                         net->name, net->range_text, err);
  }
  if ((r = reg->ops->network_list(reg->store, &nets, &n)) < 0)
    return reg_store_error(reg, err, r);
  for (size_t i = 0; i < n && r == 0; i++) {
    int family;
    u128 low, high;
    unsigned prefix;
    if (reg_parse_cidr(nets[i].range, false, &family, &low, &high, &prefix) ==
            0 &&
        reg_range_holds_target(family, low, high, t->address))
      r = reg_refuse_preserved_inside("address", t->target_group, t->address,
                                      nets[i].name, nets[i].range, err);
  }
  reg_networks_free(nets, n);
  return r;
}

/* ---- registering --------------------------------------------------------- */

static int register_target(struct reg *reg, const struct reg_actor *actor,
                           const struct reg_target *t, struct reg_error *err)
{
  int r = check_preserved_target(reg, t, err);

  if (r < 0)
    return r;
  r = reg->ops->target_insert(reg->store, t);

  if (r == -EEXIST)
    return reg_set_error(err, r, "address",
                         "%s is already registered in target group %s",
                         t->address, t->target_group);
  if (r == 0)
    r = record_target_event(reg, REG_EVENT_REGISTER, t, actor->name);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

static int check_target(struct reg *reg, const char *group, const char *address,
                        struct reg_target *t, struct reg_error *err)
{
  memset(t, 0, sizeof(*t));
  if (group == NULL || !reg_has_target_group(&reg->config, group))
    return reg_set_error(err, -ENOENT, "target_group",
                         "no such target group: %s", group ? group : "");
  snprintf(t->target_group, sizeof(t->target_group), "%s", group);
  if (reg_target_address_normalize(address, t->address, sizeof(t->address)) < 0)
    return reg_set_error(err, -EINVAL, "address",
                         "address must be IP:PORT or [IPv6]:PORT");
  return 0;
}

int reg_target_register(struct reg *reg, const struct reg_actor *actor,
                        const char *target_group, const char *address,
                        uint32_t weight, struct reg_target *out,
                        struct reg_error *err)
{
  struct reg_target t;
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  if ((r = reg_check_operator(actor, err)) < 0 ||
      (r = check_target(reg, target_group, address, &t, err)) < 0)
    return r;
  if (weight < 1 || weight > REG_MAX_TARGET_WEIGHT)
    return reg_set_error(err, -EINVAL, "weight", "weight must be 1..%d",
                         REG_MAX_TARGET_WEIGHT);
  t.weight = weight;
  t.created_at = reg_now_ms();
  for (reg_tx_start(&tx, reg, true, err); reg_tx_next(&tx, &r);)
    r = register_target(reg, actor, &t, err);
  if (r == 0 && out != NULL)
    *out = t;
  return r;
}

/* Fills *t with the stored row, which goes. */
static int deregister_target(struct reg *reg, const struct reg_actor *actor,
                             struct reg_target *t, struct reg_error *err)
{
  int r = reg->ops->target_get(reg->store, t->target_group, t->address, t);

  if (r == -ENOENT)
    return reg_set_error(err, r, "address",
                         "%s is not registered through the API in %s",
                         t->address, t->target_group);
  if (r == 0)
    r = reg->ops->target_delete(reg->store, t->target_group, t->address);
  if (r == 0)
    r = record_target_event(reg, REG_EVENT_DEREGISTER, t, actor->name);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_target_deregister(struct reg *reg, const struct reg_actor *actor,
                          const char *target_group, const char *address,
                          struct reg_target *out, struct reg_error *err)
{
  struct reg_target t;
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  if ((r = reg_check_operator(actor, err)) < 0)
    return r;
  if ((r = check_target(reg, target_group, address, &t, err)) < 0)
    return r == -EINVAL ? reg_set_error(err, -ENOENT, "address",
                                        "no such target: %s", address)
                        : r;
  for (reg_tx_start(&tx, reg, true, err); reg_tx_next(&tx, &r);)
    r = deregister_target(reg, actor, &t, err);
  if (r == 0 && out != NULL)
    *out = t;
  return r;
}

int reg_targets_list(struct reg *reg, struct reg_target **out, size_t *n)
{
  struct reg_tx tx;
  int r;

  *out = NULL;
  *n = 0;
  for (reg_tx_start(&tx, reg, false, NULL); reg_tx_next(&tx, &r);) {
    free(*out);
    *out = NULL;
    r = reg->ops->target_list(reg->store, out, n);
  }
  if (r < 0) {
    free(*out);
    *out = NULL;
    *n = 0;
  }
  return r;
}

/* ---- nodes -------------------------------------------------------------- */

int reg_node_heartbeat(struct reg *reg, bool starting, uint64_t applied_seq)
{
  return reg->ops->node_heartbeat(
      reg->store, reg->config.node, reg->config.version,
      reg->config.node_networks_text, applied_seq, starting);
}

static void judge(struct reg_node *nodes, size_t n, int64_t now)
{
  for (size_t i = 0; i < n; i++)
    if (now - nodes[i].last_seen > REG_HEARTBEAT_MS * REG_NODE_DOWN_HEARTBEATS)
      nodes[i].state = REG_NODE_DOWN;
}

/* The nodes as stored, each judged up, draining or down. */
static int list_nodes(struct reg *reg, struct reg_node **v, size_t *n,
                      struct reg_error *err)
{
  int64_t now;
  int r;

  free(*v);
  *v = NULL;
  if ((r = reg->ops->node_list(reg->store, v, n, &now)) < 0)
    return reg_store_error(reg, err, r);
  judge(*v, *n, now);
  return 0;
}

int reg_nodes_list(struct reg *reg, const struct reg_actor *actor,
                   struct reg_node **out, size_t *n, struct reg_error *err)
{
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  *out = NULL;
  *n = 0;
  if ((r = reg_check_operator(actor, err)) < 0)
    return r;
  for (reg_tx_start(&tx, reg, false, err); reg_tx_next(&tx, &r);)
    r = list_nodes(reg, out, n, err);
  if (r < 0) {
    free(*out);
    *out = NULL;
    *n = 0;
  }
  return r;
}

static int drain(struct reg *reg, const char *principal, const char *name,
                 struct reg_node *node, struct reg_error *err)
{
  struct reg_node *v = NULL;
  struct reg_event ev;
  size_t n = 0;
  int r;

  memset(node, 0, sizeof(*node));
  if ((r = list_nodes(reg, &v, &n, err)) < 0)
    return r;
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i].name, name) == 0)
      *node = v[i];
  free(v);
  if (node->name[0] == '\0')
    return reg_set_error(err, -ENOENT, "name", "no such node: %s", name);
  if (node->state == REG_NODE_DOWN)
    return reg_set_error(err, -EBUSY, "name", "node %s is down", name);
  if (node->state == REG_NODE_DRAINING)
    return 0;
  memset(&ev, 0, sizeof(ev));
  ev.time = reg_now_ms();
  ev.type = REG_EVENT_DRAIN;
  snprintf(ev.principal, sizeof(ev.principal), "%s", principal);
  snprintf(ev.node, sizeof(ev.node), "%s", name);
  node->state = REG_NODE_DRAINING;
  if ((r = reg->ops->node_set_draining(reg->store, name)) < 0 ||
      (r = reg->ops->event_append(reg->store, &ev)) < 0)
    return reg_store_error(reg, err, r);
  return 0;
}

int reg_node_drain(struct reg *reg, const struct reg_actor *actor,
                   const char *name, struct reg_node *out,
                   struct reg_error *err)
{
  struct reg_node node;
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  if ((r = reg_check_operator(actor, err)) < 0)
    return r;
  for (reg_tx_start(&tx, reg, true, err); reg_tx_next(&tx, &r);)
    r = drain(reg, actor->name, name ? name : "", &node, err);
  if (r == 0 && out != NULL)
    *out = node;
  return r;
}
