/* What nodes share besides endpoints: targets registered through the API,
 * and the nodes themselves (heartbeats, drain). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry-int.h"

static int check_operator(const struct reg_actor *actor, struct reg_error *err)
{
  if (actor == NULL || actor->name == NULL || actor->role != REG_ROLE_OPERATOR)
    return reg_set_error(err, -EACCES, NULL, "only operators may do this");
  return 0;
}

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

struct target_change {
  const struct reg_actor *actor;
  struct reg_target target;
};

/* ---- preserve_client_ip and networks ------------------------------------ */

/* A target of a preserve_client_ip group answers the client's own address;
 * inside a network's range it would answer that network's clients
 * directly, not through nlb, and their flows would hang (docs/config.md).
 * The config's own check covers its networks and targets; these cover what
 * the API adds. */

static bool range_holds(int family, u128 low, u128 high, const char *target)
{
  int target_family;
  u128 value;

  return family != 0 &&
         reg_target_address_value(target, &target_family, &value) == 0 &&
         target_family == family && value >= low && value <= high;
}

static int refuse_inside(const char *field, const char *group,
                         const char *target, const char *network,
                         const char *range, struct reg_error *err)
{
  return reg_set_error(
      err, -EBUSY, field,
      "preserve_client_ip cannot work for target %s of target group %s: it "
      "is inside network %s (%s), so it would answer that network's clients "
      "directly, not through nlb",
      target, group, network, range);
}

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
    if (range_holds(net->family, net->low, net->high, t->address))
      return refuse_inside("address", t->target_group, t->address, net->name,
                           net->range_text, err);
  }
  if ((r = reg->ops->network_list(reg->store, &nets, &n)) < 0)
    return reg_store_error(reg, err, r);
  for (size_t i = 0; i < n && r == 0; i++) {
    int family;
    u128 low, high;
    unsigned prefix;
    if (reg_parse_cidr(nets[i].range, false, &family, &low, &high, &prefix) ==
            0 &&
        range_holds(family, low, high, t->address))
      r = refuse_inside("address", t->target_group, t->address, nets[i].name,
                        nets[i].range, err);
  }
  reg_networks_free(nets, n);
  return r;
}

int reg_check_network_for_preserved_targets(struct reg *reg,
                                            const struct reg_network_info *net,
                                            struct reg_error *err)
{
  const struct config *cfg = &reg->config;
  struct reg_target *targets = NULL;
  size_t n = 0;
  int family, r;
  u128 low, high;
  unsigned prefix;

  if (cfg->n_preserve_groups == 0 ||
      reg_parse_cidr(net->range, false, &family, &low, &high, &prefix) < 0)
    return 0;
  for (size_t i = 0; i < cfg->n_preserve_targets; i++)
    if (range_holds(family, low, high, cfg->preserve_targets[i]))
      return refuse_inside("range", cfg->preserve_target_groups[i],
                           cfg->preserve_targets[i], net->name, net->range,
                           err);
  if ((r = reg->ops->target_list(reg->store, &targets, &n)) < 0)
    return reg_store_error(reg, err, r);
  for (size_t i = 0; i < n && r == 0; i++)
    if (reg_preserves_client_ip(cfg, targets[i].target_group) &&
        range_holds(family, low, high, targets[i].address))
      r = refuse_inside("range", targets[i].target_group, targets[i].address,
                        net->name, net->range, err);
  free(targets);
  return r;
}

/* ---- registering --------------------------------------------------------- */

static int register_body(struct reg *reg, void *arg, struct reg_error *err)
{
  struct target_change *c = arg;
  int r = check_preserved_target(reg, &c->target, err);

  if (r < 0)
    return r;
  r = reg->ops->target_insert(reg->store, &c->target);

  if (r == -EEXIST)
    return reg_set_error(err, r, "address",
                         "%s is already registered in target group %s",
                         c->target.address, c->target.target_group);
  if (r == 0)
    r = record_target_event(reg, REG_EVENT_REGISTER, &c->target,
                            c->actor->name);
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
  struct target_change c = {.actor = actor};
  int r;

  reg_clear_error(err);
  if ((r = check_operator(actor, err)) < 0 ||
      (r = check_target(reg, target_group, address, &c.target, err)) < 0)
    return r;
  if (weight < 1 || weight > REG_MAX_TARGET_WEIGHT)
    return reg_set_error(err, -EINVAL, "weight", "weight must be 1..%d",
                         REG_MAX_TARGET_WEIGHT);
  c.target.weight = weight;
  c.target.created_at = reg_now_ms();
  if ((r = reg_in_tx(reg, true, register_body, &c, err)) < 0)
    return r;
  if (out != NULL)
    *out = c.target;
  return 0;
}

static int deregister_body(struct reg *reg, void *arg, struct reg_error *err)
{
  struct target_change *c = arg;
  struct reg_target *t = &c->target;
  int r = reg->ops->target_get(reg->store, t->target_group, t->address, t);

  if (r == -ENOENT)
    return reg_set_error(err, r, "address",
                         "%s is not registered through the API in %s",
                         t->address, t->target_group);
  if (r == 0)
    r = reg->ops->target_delete(reg->store, t->target_group, t->address);
  if (r == 0)
    r = record_target_event(reg, REG_EVENT_DEREGISTER, t, c->actor->name);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_target_deregister(struct reg *reg, const struct reg_actor *actor,
                          const char *target_group, const char *address,
                          struct reg_target *out, struct reg_error *err)
{
  struct target_change c = {.actor = actor};
  int r;

  reg_clear_error(err);
  if ((r = check_operator(actor, err)) < 0)
    return r;
  if ((r = check_target(reg, target_group, address, &c.target, err)) < 0)
    return r == -EINVAL ? reg_set_error(err, -ENOENT, "address",
                                        "no such target: %s", address)
                        : r;
  if ((r = reg_in_tx(reg, true, deregister_body, &c, err)) < 0)
    return r;
  if (out != NULL)
    *out = c.target;
  return 0;
}

struct target_list {
  struct reg_target *v;
  size_t n;
};

static int target_list_body(struct reg *reg, void *arg, struct reg_error *err)
{
  struct target_list *c = arg;

  free(c->v);
  c->v = NULL;
  c->n = 0;
  return reg->ops->target_list(reg->store, &c->v, &c->n);
}

int reg_targets_list(struct reg *reg, struct reg_target **out, size_t *n)
{
  struct target_list c = {NULL, 0};
  int r = reg_in_tx(reg, false, target_list_body, &c, NULL);

  if (r < 0) {
    free(c.v);
    c.v = NULL;
    c.n = 0;
  }
  *out = c.v;
  *n = c.n;
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

struct node_list {
  struct reg_node *v;
  size_t n;
  const char *name; /* drain */
  struct reg_node node;
  const char *principal;
};

static int node_list_body(struct reg *reg, void *arg, struct reg_error *err)
{
  struct node_list *c = arg;
  int64_t now;
  int r;

  free(c->v);
  c->v = NULL;
  c->n = 0;
  if ((r = reg->ops->node_list(reg->store, &c->v, &c->n, &now)) < 0)
    return reg_store_error(reg, err, r);
  judge(c->v, c->n, now);
  return 0;
}

int reg_nodes_list(struct reg *reg, const struct reg_actor *actor,
                   struct reg_node **out, size_t *n, struct reg_error *err)
{
  struct node_list c = {0};
  int r;

  reg_clear_error(err);
  *out = NULL;
  *n = 0;
  if ((r = check_operator(actor, err)) < 0)
    return r;
  if ((r = reg_in_tx(reg, false, node_list_body, &c, err)) < 0) {
    free(c.v);
    return r;
  }
  *out = c.v;
  *n = c.n;
  return 0;
}

static int drain_body(struct reg *reg, void *arg, struct reg_error *err)
{
  struct node_list *c = arg;
  struct reg_event ev;
  int r;

  memset(&c->node, 0, sizeof(c->node));
  if ((r = node_list_body(reg, c, err)) < 0)
    return r;
  for (size_t i = 0; i < c->n; i++)
    if (strcmp(c->v[i].name, c->name) == 0)
      c->node = c->v[i];
  if (c->node.name[0] == '\0')
    return reg_set_error(err, -ENOENT, "name", "no such node: %s", c->name);
  if (c->node.state == REG_NODE_DOWN)
    return reg_set_error(err, -EBUSY, "name", "node %s is down", c->name);
  if (c->node.state == REG_NODE_DRAINING)
    return 0;
  memset(&ev, 0, sizeof(ev));
  ev.time = reg_now_ms();
  ev.type = REG_EVENT_DRAIN;
  snprintf(ev.principal, sizeof(ev.principal), "%s", c->principal);
  snprintf(ev.node, sizeof(ev.node), "%s", c->name);
  c->node.state = REG_NODE_DRAINING;
  if ((r = reg->ops->node_set_draining(reg->store, c->name)) < 0 ||
      (r = reg->ops->event_append(reg->store, &ev)) < 0)
    return reg_store_error(reg, err, r);
  return 0;
}

int reg_node_drain(struct reg *reg, const struct reg_actor *actor,
                   const char *name, struct reg_node *out,
                   struct reg_error *err)
{
  struct node_list c = {0};
  int r;

  reg_clear_error(err);
  if ((r = check_operator(actor, err)) < 0)
    return r;
  c.name = name ? name : "";
  c.principal = actor->name;
  r = reg_in_tx(reg, true, drain_body, &c, err);
  free(c.v);
  if (r == 0 && out != NULL)
    *out = c.node;
  return r;
}
