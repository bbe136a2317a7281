/* Tenancy at run time: principals, their tokens and networks made through
 * the API, beside the config's (read-only here). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "registry-int.h"

static int record(struct reg *reg, enum reg_event_type type,
                  const char *subject, const char *token_id,
                  const char *principal)
{
  struct reg_event ev;

  memset(&ev, 0, sizeof(ev));
  ev.time = reg_now_ms();
  ev.type = type;
  snprintf(ev.principal, sizeof(ev.principal), "%s", principal);
  snprintf(ev.subject, sizeof(ev.subject), "%s", subject);
  snprintf(ev.token_id, sizeof(ev.token_id), "%s", token_id ? token_id : "");
  return reg->ops->event_append(reg->store, &ev);
}

/* ---- principals --------------------------------------------------------- */

static int create_principal(struct reg *reg, const char *by,
                            struct reg_principal_info *p,
                            const struct reg_token *token,
                            struct reg_error *err)
{
  int r = reg->ops->last_seq(reg->store, &p->since_seq);

  if (r == 0)
    r = reg->ops->principal_insert(reg->store, p);
  if (r == -EEXIST)
    return reg_set_error(err, r, "name",
                         "a principal named %s exists (names are one "
                         "whatever their case)",
                         p->name);
  if (r == 0)
    r = reg->ops->token_insert(reg->store, token);
  if (r == 0)
    r = record(reg, REG_EVENT_PRINCIPAL_CREATE, p->name, NULL, by);
  if (r == 0)
    r = record(reg, REG_EVENT_TOKEN_CREATE, p->name, token->id, by);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

static int check_token_id(const char *id, struct reg_error *err)
{
  if (id == NULL || strncmp(id, "tok-", 4) != 0 || strlen(id) >= REG_ID_BUF)
    return reg_set_error(err, -EINVAL, "id", "bad token id");
  return 0;
}

int reg_principal_create(struct reg *reg, const struct reg_actor *actor,
                         const char *name, enum reg_role role,
                         const uint8_t token_sha256[32], const char *token_id,
                         struct reg_principal_info *principal,
                         struct reg_token *token, struct reg_error *err)
{
  struct reg_principal_info p = {0};
  struct reg_token t = {0};
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  if ((r = reg_check_operator(actor, err)) < 0 ||
      (r = check_token_id(token_id, err)) < 0)
    return r;
  if (!reg_name_tame(name) || strcasecmp(name, REG_SYSTEM_PRINCIPAL) == 0)
    return reg_set_error(err, -EINVAL, "name",
                         "name must be 1-%d of [A-Za-z0-9._-], starting with "
                         "a letter or digit",
                         REG_NAME_MAX);
  if ((unsigned)role > REG_ROLE_CONSUMER)
    return reg_set_error(err, -EINVAL, "role", "unknown role");
  if (reg_find_principal(&reg->config, name))
    return reg_set_error(err, -EEXIST, "name",
                         "a principal named %s exists (in the config; names "
                         "are one whatever their case)",
                         name);
  snprintf(p.name, sizeof(p.name), "%s", name);
  p.role = role;
  p.created_at = reg_now_ms();
  snprintf(t.id, sizeof(t.id), "%s", token_id);
  snprintf(t.principal, sizeof(t.principal), "%s", name);
  t.role = role;
  memcpy(t.sha256, token_sha256, sizeof(t.sha256));
  t.created_at = p.created_at;
  for (reg_tx_start(&tx, reg, true, err); reg_tx_next(&tx, &r);)
    r = create_principal(reg, actor->name, &p, &t, err);
  if (r < 0)
    return r;
  if (principal)
    *principal = p;
  if (token) {
    *token = t;
    memset(token->sha256, 0, sizeof(token->sha256));
  }
  return 0;
}

static int cmp_principal(const void *a, const void *b)
{
  return strcmp(((const struct reg_principal_info *)a)->name,
                ((const struct reg_principal_info *)b)->name);
}

int reg_principals_list(struct reg *reg, const struct reg_actor *actor,
                        struct reg_principal_info **out, size_t *n,
                        struct reg_error *err)
{
  const struct config *cfg = &reg->config;
  struct reg_principal_info *all, *v = NULL;
  size_t n_v = 0;
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  *out = NULL;
  *n = 0;
  if ((r = reg_check_operator(actor, err)) < 0)
    return r;
  for (reg_tx_start(&tx, reg, false, err); reg_tx_next(&tx, &r);) {
    free(v);
    v = NULL;
    if ((r = reg->ops->principal_list(reg->store, &v, &n_v)) < 0)
      reg_store_error(reg, err, r);
  }
  if (r < 0) {
    free(v);
    return r;
  }
  all = calloc(cfg->n_principals + n_v + 1, sizeof(*all));
  if (all == NULL) {
    free(v);
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
  }
  for (size_t i = 0; i < cfg->n_principals; i++) {
    snprintf(all[i].name, sizeof(all[i].name), "%s", cfg->principals[i].name);
    all[i].role = cfg->principals[i].role;
    all[i].from_config = true;
  }
  qsort(all, cfg->n_principals, sizeof(*all), cmp_principal);
  if (n_v > 0)
    memcpy(all + cfg->n_principals, v, n_v * sizeof(*all));
  free(v);
  *out = all;
  *n = cfg->n_principals + n_v;
  return 0;
}

static int revoke_all(struct reg *reg, const char *name, const char *by)
{
  struct reg_token *tokens;
  size_t n;
  int r = reg->ops->token_list(reg->store, name, &tokens, &n);

  for (size_t i = 0; r == 0 && i < n; i++)
    r = record(reg, REG_EVENT_TOKEN_REVOKE, name, tokens[i].id, by);
  free(tokens);
  return r;
}

static int delete_principal(struct reg *reg, const char *by, const char *name,
                            struct reg_error *err)
{
  struct reg_principal_info p;
  size_t services = 0, endpoints = 0;
  int r = reg->ops->principal_get(reg->store, name, &p);

  if (r == -ENOENT)
    return reg_set_error(err, r, "name", "no such principal: %s", name);
  if (r == 0)
    r = reg->ops->principal_holdings(reg->store, name, &services, &endpoints);
  if (r < 0)
    return reg_store_error(reg, err, r);
  if (services > 0 || endpoints > 0)
    return reg_set_error(err, -EBUSY, "name",
                         "%s owns %zu services and holds %zu live endpoints: "
                         "delete them first",
                         name, services, endpoints);
  if ((r = revoke_all(reg, name, by)) < 0 ||
      (r = reg->ops->principal_delete(reg->store, name)) < 0 ||
      (r = record(reg, REG_EVENT_PRINCIPAL_DELETE, name, NULL, by)) < 0)
    return reg_store_error(reg, err, r);
  return 0;
}

/* The config's principals and networks are read-only through the API. */
static int refuse_config(const char *what, const char *name,
                         struct reg_error *err)
{
  return reg_set_error(err, -EBUSY, "name",
                       "%s %s comes from the config: change it there", what,
                       name);
}

int reg_principal_delete(struct reg *reg, const struct reg_actor *actor,
                         const char *name, struct reg_error *err)
{
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  if ((r = reg_check_operator(actor, err)) < 0)
    return r;
  if (name && reg_find_principal(&reg->config, name))
    return refuse_config("principal", name, err);
  for (reg_tx_start(&tx, reg, true, err); reg_tx_next(&tx, &r);)
    r = delete_principal(reg, actor->name, name, err);
  return r;
}

/* ---- tokens ------------------------------------------------------------- */

/* The API principal name, or -ENOENT; the config's: -EBUSY. */
static int load_api_principal(struct reg *reg, const char *name,
                              struct reg_principal_info *p,
                              struct reg_error *err)
{
  int r;

  if (name && reg_find_principal(&reg->config, name))
    return refuse_config("principal", name, err);
  r = reg->ops->principal_get(reg->store, name ? name : "", p);
  if (r == -ENOENT)
    return reg_set_error(err, r, "name", "no such principal: %s",
                         name ? name : "");
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

static int create_token(struct reg *reg, const char *by, struct reg_token *t,
                        struct reg_error *err)
{
  struct reg_principal_info p;
  int r = load_api_principal(reg, t->principal, &p, err);

  if (r < 0)
    return r;
  t->role = p.role;
  if ((r = reg->ops->token_insert(reg->store, t)) == 0)
    r = record(reg, REG_EVENT_TOKEN_CREATE, t->principal, t->id, by);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_token_create(struct reg *reg, const struct reg_actor *actor,
                     const char *principal, const uint8_t token_sha256[32],
                     const char *token_id, int64_t expires_at,
                     struct reg_token *out, struct reg_error *err)
{
  struct reg_token t = {0};
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  if ((r = reg_check_operator(actor, err)) < 0 ||
      (r = check_token_id(token_id, err)) < 0)
    return r;
  t.created_at = reg_now_ms();
  if (expires_at != 0 && expires_at <= t.created_at)
    return reg_set_error(err, -EINVAL, "expires_at",
                         "expires_at must be in the future");
  snprintf(t.id, sizeof(t.id), "%s", token_id);
  snprintf(t.principal, sizeof(t.principal), "%s", principal ? principal : "");
  memcpy(t.sha256, token_sha256, sizeof(t.sha256));
  t.expires_at = expires_at;
  for (reg_tx_start(&tx, reg, true, err); reg_tx_next(&tx, &r);)
    r = create_token(reg, actor->name, &t, err);
  if (r == 0 && out) {
    *out = t;
    memset(out->sha256, 0, sizeof(out->sha256));
  }
  return r;
}

static int list_tokens(struct reg *reg, const char *principal,
                       struct reg_token **v, size_t *n, struct reg_error *err)
{
  struct reg_principal_info p;
  int r;

  free(*v);
  *v = NULL;
  if ((r = load_api_principal(reg, principal, &p, err)) < 0)
    return r;
  r = reg->ops->token_list(reg->store, principal, v, n);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_tokens_list(struct reg *reg, const struct reg_actor *actor,
                    const char *principal, struct reg_token **out, size_t *n,
                    struct reg_error *err)
{
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  *out = NULL;
  *n = 0;
  if ((r = reg_check_operator(actor, err)) < 0)
    return r;
  for (reg_tx_start(&tx, reg, false, err); reg_tx_next(&tx, &r);)
    r = list_tokens(reg, principal, out, n, err);
  if (r < 0) {
    free(*out);
    *out = NULL;
    *n = 0;
  }
  for (size_t i = 0; i < *n; i++)
    memset((*out)[i].sha256, 0, sizeof((*out)[i].sha256));
  return r;
}

static int revoke_token(struct reg *reg, const char *by, const char *principal,
                        const char *id, struct reg_error *err)
{
  struct reg_token t;
  int r = reg->ops->token_get(reg->store, id, &t);

  if (r == -ENOENT || (r == 0 && strcmp(t.principal, principal)))
    return reg_set_error(err, -ENOENT, "id", "no such token of %s", principal);
  if (r == 0)
    r = reg->ops->token_delete(reg->store, id);
  if (r == 0)
    r = record(reg, REG_EVENT_TOKEN_REVOKE, principal, id, by);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_token_revoke(struct reg *reg, const struct reg_actor *actor,
                     const char *principal, const char *id,
                     struct reg_error *err)
{
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  if ((r = reg_check_operator(actor, err)) < 0)
    return r;
  if (principal && reg_find_principal(&reg->config, principal))
    return refuse_config("principal", principal, err);
  for (reg_tx_start(&tx, reg, true, err); reg_tx_next(&tx, &r);)
    r = revoke_token(reg, actor->name, principal ? principal : "", id ? id : "",
                     err);
  return r;
}

int reg_tokens_used(struct reg *reg, char *const *ids, const int64_t *used_at,
                    size_t n)
{
  struct reg_tx tx;
  int r;

  /* A write (read-only transactions may not update); once a minute at
   * most, so taking the writers' lock costs nothing. */
  if (n == 0)
    return 0;
  for (reg_tx_start(&tx, reg, true, NULL); reg_tx_next(&tx, &r);) {
    r = 0;
    for (size_t i = 0; r == 0 && i < n; i++)
      r = reg->ops->token_touch(reg->store, ids[i], used_at[i]);
  }
  return r;
}

/* ---- networks ----------------------------------------------------------- */

void reg_networks_free(struct reg_network_info *networks, size_t n)
{
  for (size_t i = 0; networks && i < n; i++)
    reg_strings_free(networks[i].principals, networks[i].n_principals);
  free(networks);
}

/* -EBUSY, err saying why, when net's range holds a target of a
 * preserve_client_ip group (the config's or one registered); called in the
 * transaction that makes net. */
static int check_network_for_preserved_targets(
    struct reg *reg, const struct reg_network_info *net, struct reg_error *err)
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
    if (reg_range_holds_target(family, low, high, cfg->preserve_targets[i]))
      return reg_refuse_preserved_inside(
          "range", cfg->preserve_target_groups[i], cfg->preserve_targets[i],
          net->name, net->range, err);
  if ((r = reg->ops->target_list(reg->store, &targets, &n)) < 0)
    return reg_store_error(reg, err, r);
  for (size_t i = 0; i < n && r == 0; i++)
    if (reg_preserves_client_ip(cfg, targets[i].target_group) &&
        reg_range_holds_target(family, low, high, targets[i].address))
      r = reg_refuse_preserved_inside("range", targets[i].target_group,
                                      targets[i].address, net->name, net->range,
                                      err);
  free(targets);
  return r;
}

static int create_network(struct reg *reg, const char *by,
                          const struct reg_network_info *net,
                          struct reg_error *err)
{
  int r = check_network_for_preserved_targets(reg, net, err);

  if (r < 0)
    return r;
  r = reg->ops->network_insert(reg->store, net);

  if (r == -EEXIST)
    return reg_set_error(err, r, "name", "a network named %s exists",
                         net->name);
  if (r == 0)
    r = record(reg, REG_EVENT_NETWORK_CREATE, net->name, NULL, by);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

static int network_from_params(struct reg_network_info *net,
                               const struct reg_network_params *p,
                               struct reg_error *err)
{
  struct config_network check;
  struct reg_network spec = {p->name,       p->netns,        p->range,
                             p->principals, p->n_principals, NULL};
  int r;

  if (!reg_name_tame(p->name))
    return reg_set_error(err, -EINVAL, "name",
                         "name must be 1-%d of [A-Za-z0-9._-], starting with "
                         "a letter or digit",
                         REG_NAME_MAX);
  memset(&check, 0, sizeof(check));
  r = reg_network_from_spec(&check, &spec, err);
  reg_strings_free(check.principals, check.n_principals);
  if (r < 0)
    return r;
  snprintf(net->name, sizeof(net->name), "%s", p->name);
  snprintf(net->range, sizeof(net->range), "%s", p->range);
  snprintf(net->netns, sizeof(net->netns), "%s", p->netns ? p->netns : "");
  net->created_at = reg_now_ms();
  if (reg_strings_copy(p->principals, p->n_principals, &net->principals) < 0)
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
  net->n_principals = p->n_principals;
  return 0;
}

int reg_network_create(struct reg *reg, const struct reg_actor *actor,
                       const struct reg_network_params *params,
                       struct reg_network_info *out, struct reg_error *err)
{
  struct reg_network_info net = {0};
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  if ((r = reg_check_operator(actor, err)) < 0)
    return r;
  if (params->name && reg_find_network(&reg->config, params->name))
    return reg_set_error(err, -EEXIST, "name",
                         "a network named %s exists (in the config)",
                         params->name);
  if ((r = network_from_params(&net, params, err)) == 0)
    for (reg_tx_start(&tx, reg, true, err); reg_tx_next(&tx, &r);)
      r = create_network(reg, actor->name, &net, err);
  if (r == 0 && out)
    *out = net;
  else
    reg_strings_free(net.principals, net.n_principals);
  return r;
}

static int cmp_network(const void *a, const void *b)
{
  return strcmp(((const struct reg_network_info *)a)->name,
                ((const struct reg_network_info *)b)->name);
}

/* The config's network as the API shows it. */
static int config_network_info(const struct config_network *net,
                               struct reg_network_info *out)
{
  snprintf(out->name, sizeof(out->name), "%s", net->name);
  snprintf(out->range, sizeof(out->range), "%s", net->range_text);
  snprintf(out->netns, sizeof(out->netns), "%s", net->netns);
  out->from_config = true;
  out->n_principals = net->n_principals;
  return reg_strings_copy((const char *const *)net->principals,
                          net->n_principals, &out->principals);
}

int reg_networks_list(struct reg *reg, const struct reg_actor *actor,
                      struct reg_network_info **out, size_t *n,
                      struct reg_error *err)
{
  const struct config *cfg = &reg->config;
  struct reg_network_info *all, *v = NULL;
  size_t n_v = 0;
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  *out = NULL;
  *n = 0;
  if ((r = reg_check_operator(actor, err)) < 0)
    return r;
  for (reg_tx_start(&tx, reg, false, err); reg_tx_next(&tx, &r);) {
    reg_networks_free(v, n_v);
    v = NULL;
    n_v = 0;
    if ((r = reg->ops->network_list(reg->store, &v, &n_v)) < 0)
      reg_store_error(reg, err, r);
  }
  if (r < 0) {
    reg_networks_free(v, n_v);
    return r;
  }
  all = calloc(cfg->n_networks + n_v + 1, sizeof(*all));
  for (size_t i = 0; all && i < cfg->n_networks; i++)
    if (config_network_info(&cfg->networks[i], &all[i]) < 0) {
      reg_networks_free(all, i + 1);
      all = NULL;
    }
  if (all == NULL) {
    reg_networks_free(v, n_v);
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
  }
  qsort(all, cfg->n_networks, sizeof(*all), cmp_network);
  if (n_v > 0)
    memcpy(all + cfg->n_networks, v, n_v * sizeof(*all));
  free(v); /* the members moved */
  *out = all;
  *n = cfg->n_networks + n_v;
  return 0;
}

static int delete_network(struct reg *reg, const char *by, const char *name,
                          struct reg_error *err)
{
  size_t live = 0;
  int r = reg->ops->network_count_live(reg->store, name, &live);

  if (r < 0)
    return reg_store_error(reg, err, r);
  if (live > 0)
    return reg_set_error(err, -EBUSY, "name",
                         "network %s holds %zu live endpoints", name, live);
  r = reg->ops->network_delete(reg->store, name);
  if (r == -ENOENT)
    return reg_set_error(err, r, "name", "no such network: %s", name);
  if (r == 0)
    r = record(reg, REG_EVENT_NETWORK_DELETE, name, NULL, by);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_network_delete(struct reg *reg, const struct reg_actor *actor,
                       const char *name, struct reg_error *err)
{
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  if ((r = reg_check_operator(actor, err)) < 0)
    return r;
  if (name && reg_find_network(&reg->config, name))
    return refuse_config("network", name, err);
  for (reg_tx_start(&tx, reg, true, err); reg_tx_next(&tx, &r);)
    r = delete_network(reg, actor->name, name ? name : "", err);
  return r;
}
