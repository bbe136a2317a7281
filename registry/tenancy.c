/* Tenancy at run time: principals, their tokens and networks made through
 * the API, beside the config's (read-only here). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "registry-int.h"

static int check_operator(const struct reg_actor *actor, struct reg_error *err)
{
  if (actor == NULL || actor->name == NULL || actor->role != REG_ROLE_OPERATOR)
    return reg_set_error(err, -EACCES, NULL, "only operators may do this");
  return 0;
}

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

struct principal_create {
  const struct reg_actor *actor;
  struct reg_principal_info principal;
  struct reg_token token;
};

static int principal_create_body(struct reg *reg, void *arg,
                                 struct reg_error *err)
{
  struct principal_create *c = arg;
  int r = reg->ops->last_seq(reg->store, &c->principal.since_seq);

  if (r == 0)
    r = reg->ops->principal_insert(reg->store, &c->principal);
  if (r == -EEXIST)
    return reg_set_error(err, r, "name",
                         "a principal named %s exists (names are one "
                         "whatever their case)",
                         c->principal.name);
  if (r == 0)
    r = reg->ops->token_insert(reg->store, &c->token);
  if (r == 0)
    r = record(reg, REG_EVENT_PRINCIPAL_CREATE, c->principal.name, NULL,
               c->actor->name);
  if (r == 0)
    r = record(reg, REG_EVENT_TOKEN_CREATE, c->principal.name, c->token.id,
               c->actor->name);
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
  struct principal_create c = {.actor = actor};
  int r;

  reg_clear_error(err);
  if ((r = check_operator(actor, err)) < 0 ||
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
  snprintf(c.principal.name, sizeof(c.principal.name), "%s", name);
  c.principal.role = role;
  c.principal.created_at = reg_now_ms();
  snprintf(c.token.id, sizeof(c.token.id), "%s", token_id);
  snprintf(c.token.principal, sizeof(c.token.principal), "%s", name);
  c.token.role = role;
  memcpy(c.token.sha256, token_sha256, sizeof(c.token.sha256));
  c.token.created_at = c.principal.created_at;
  if ((r = reg_in_tx(reg, true, principal_create_body, &c, err)) < 0)
    return r;
  if (principal)
    *principal = c.principal;
  if (token) {
    *token = c.token;
    memset(token->sha256, 0, sizeof(token->sha256));
  }
  return 0;
}

struct principal_list {
  struct reg_principal_info *v;
  size_t n;
};

static int principal_list_body(struct reg *reg, void *arg,
                               struct reg_error *err)
{
  struct principal_list *c = arg;
  int r;

  free(c->v);
  c->v = NULL;
  c->n = 0;
  r = reg->ops->principal_list(reg->store, &c->v, &c->n);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
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
  struct principal_list c = {NULL, 0};
  const struct config *cfg = &reg->config;
  struct reg_principal_info *all;
  int r;

  reg_clear_error(err);
  *out = NULL;
  *n = 0;
  if ((r = check_operator(actor, err)) < 0 ||
      (r = reg_in_tx(reg, false, principal_list_body, &c, err)) < 0)
    return r;
  all = calloc(cfg->n_principals + c.n + 1, sizeof(*all));
  if (all == NULL) {
    free(c.v);
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
  }
  for (size_t i = 0; i < cfg->n_principals; i++) {
    snprintf(all[i].name, sizeof(all[i].name), "%s", cfg->principals[i].name);
    all[i].role = cfg->principals[i].role;
    all[i].from_config = true;
  }
  qsort(all, cfg->n_principals, sizeof(*all), cmp_principal);
  if (c.n > 0)
    memcpy(all + cfg->n_principals, c.v, c.n * sizeof(*all));
  free(c.v);
  *out = all;
  *n = cfg->n_principals + c.n;
  return 0;
}

struct principal_delete {
  const struct reg_actor *actor;
  const char *name;
};

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

static int principal_delete_body(struct reg *reg, void *arg,
                                 struct reg_error *err)
{
  struct principal_delete *c = arg;
  struct reg_principal_info p;
  size_t services = 0, endpoints = 0;
  int r = reg->ops->principal_get(reg->store, c->name, &p);

  if (r == -ENOENT)
    return reg_set_error(err, r, "name", "no such principal: %s", c->name);
  if (r == 0)
    r = reg->ops->principal_holdings(reg->store, c->name, &services,
                                     &endpoints);
  if (r < 0)
    return reg_store_error(reg, err, r);
  if (services > 0 || endpoints > 0)
    return reg_set_error(err, -EBUSY, "name",
                         "%s owns %zu services and holds %zu live endpoints: "
                         "delete them first",
                         c->name, services, endpoints);
  if ((r = revoke_all(reg, c->name, c->actor->name)) < 0 ||
      (r = reg->ops->principal_delete(reg->store, c->name)) < 0 ||
      (r = record(reg, REG_EVENT_PRINCIPAL_DELETE, c->name, NULL,
                  c->actor->name)) < 0)
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
  struct principal_delete c = {actor, name};
  int r;

  reg_clear_error(err);
  if ((r = check_operator(actor, err)) < 0)
    return r;
  if (name && reg_find_principal(&reg->config, name))
    return refuse_config("principal", name, err);
  return reg_in_tx(reg, true, principal_delete_body, &c, err);
}

/* ---- tokens ------------------------------------------------------------- */

struct token_change {
  const struct reg_actor *actor;
  struct reg_token token;
};

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

static int token_create_body(struct reg *reg, void *arg, struct reg_error *err)
{
  struct token_change *c = arg;
  struct reg_principal_info p;
  int r = load_api_principal(reg, c->token.principal, &p, err);

  if (r < 0)
    return r;
  c->token.role = p.role;
  if ((r = reg->ops->token_insert(reg->store, &c->token)) == 0)
    r = record(reg, REG_EVENT_TOKEN_CREATE, c->token.principal, c->token.id,
               c->actor->name);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_token_create(struct reg *reg, const struct reg_actor *actor,
                     const char *principal, const uint8_t token_sha256[32],
                     const char *token_id, int64_t expires_at,
                     struct reg_token *out, struct reg_error *err)
{
  struct token_change c = {.actor = actor};
  int r;

  reg_clear_error(err);
  if ((r = check_operator(actor, err)) < 0 ||
      (r = check_token_id(token_id, err)) < 0)
    return r;
  c.token.created_at = reg_now_ms();
  if (expires_at != 0 && expires_at <= c.token.created_at)
    return reg_set_error(err, -EINVAL, "expires_at",
                         "expires_at must be in the future");
  snprintf(c.token.id, sizeof(c.token.id), "%s", token_id);
  snprintf(c.token.principal, sizeof(c.token.principal), "%s",
           principal ? principal : "");
  memcpy(c.token.sha256, token_sha256, sizeof(c.token.sha256));
  c.token.expires_at = expires_at;
  if ((r = reg_in_tx(reg, true, token_create_body, &c, err)) < 0)
    return r;
  if (out) {
    *out = c.token;
    memset(out->sha256, 0, sizeof(out->sha256));
  }
  return 0;
}

struct token_list {
  const char *principal;
  struct reg_token *v;
  size_t n;
};

static int token_list_body(struct reg *reg, void *arg, struct reg_error *err)
{
  struct token_list *c = arg;
  struct reg_principal_info p;
  int r;

  free(c->v);
  c->v = NULL;
  c->n = 0;
  if ((r = load_api_principal(reg, c->principal, &p, err)) < 0)
    return r;
  r = reg->ops->token_list(reg->store, c->principal, &c->v, &c->n);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_tokens_list(struct reg *reg, const struct reg_actor *actor,
                    const char *principal, struct reg_token **out, size_t *n,
                    struct reg_error *err)
{
  struct token_list c = {principal, NULL, 0};
  int r;

  reg_clear_error(err);
  *out = NULL;
  *n = 0;
  if ((r = check_operator(actor, err)) < 0 ||
      (r = reg_in_tx(reg, false, token_list_body, &c, err)) < 0) {
    free(c.v);
    return r;
  }
  for (size_t i = 0; i < c.n; i++)
    memset(c.v[i].sha256, 0, sizeof(c.v[i].sha256));
  *out = c.v;
  *n = c.n;
  return 0;
}

static int token_revoke_body(struct reg *reg, void *arg, struct reg_error *err)
{
  struct token_change *c = arg;
  struct reg_token t;
  int r = reg->ops->token_get(reg->store, c->token.id, &t);

  if (r == -ENOENT || (r == 0 && strcmp(t.principal, c->token.principal)))
    return reg_set_error(err, -ENOENT, "id", "no such token of %s",
                         c->token.principal);
  if (r == 0)
    r = reg->ops->token_delete(reg->store, c->token.id);
  if (r == 0)
    r = record(reg, REG_EVENT_TOKEN_REVOKE, c->token.principal, c->token.id,
               c->actor->name);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_token_revoke(struct reg *reg, const struct reg_actor *actor,
                     const char *principal, const char *id,
                     struct reg_error *err)
{
  struct token_change c = {.actor = actor};
  int r;

  reg_clear_error(err);
  if ((r = check_operator(actor, err)) < 0)
    return r;
  if (principal && reg_find_principal(&reg->config, principal))
    return refuse_config("principal", principal, err);
  snprintf(c.token.principal, sizeof(c.token.principal), "%s",
           principal ? principal : "");
  snprintf(c.token.id, sizeof(c.token.id), "%s", id ? id : "");
  return reg_in_tx(reg, true, token_revoke_body, &c, err);
}

struct tokens_used {
  char *const *ids;
  const int64_t *used_at;
  size_t n;
};

static int tokens_used_body(struct reg *reg, void *arg, struct reg_error *err)
{
  struct tokens_used *c = arg;
  int r = 0;

  for (size_t i = 0; r == 0 && i < c->n; i++)
    r = reg->ops->token_touch(reg->store, c->ids[i], c->used_at[i]);
  return r;
}

int reg_tokens_used(struct reg *reg, char *const *ids, const int64_t *used_at,
                    size_t n)
{
  struct tokens_used c = {ids, used_at, n};

  /* A write (read-only transactions may not update); once a minute at
   * most, so taking the writers' lock costs nothing. */
  return n == 0 ? 0 : reg_in_tx(reg, true, tokens_used_body, &c, NULL);
}

/* ---- networks ----------------------------------------------------------- */

void reg_networks_free(struct reg_network_info *networks, size_t n)
{
  for (size_t i = 0; networks && i < n; i++)
    reg_strings_free(networks[i].principals, networks[i].n_principals);
  free(networks);
}

struct network_create {
  const struct reg_actor *actor;
  struct reg_network_info net;
};

static int network_create_body(struct reg *reg, void *arg,
                               struct reg_error *err)
{
  struct network_create *c = arg;
  int r = reg_check_network_for_preserved_targets(reg, &c->net, err);

  if (r < 0)
    return r;
  r = reg->ops->network_insert(reg->store, &c->net);

  if (r == -EEXIST)
    return reg_set_error(err, r, "name", "a network named %s exists",
                         c->net.name);
  if (r == 0)
    r = record(reg, REG_EVENT_NETWORK_CREATE, c->net.name, NULL,
               c->actor->name);
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
  if (p->n_principals == 0)
    return 0;
  if ((net->principals = calloc(p->n_principals, sizeof(char *))) == NULL)
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
  for (size_t i = 0; i < p->n_principals; i++) {
    if ((net->principals[i] = strdup(p->principals[i])) == NULL)
      return reg_set_error(err, -ENOMEM, NULL, "out of memory");
    net->n_principals++;
  }
  return 0;
}

int reg_network_create(struct reg *reg, const struct reg_actor *actor,
                       const struct reg_network_params *params,
                       struct reg_network_info *out, struct reg_error *err)
{
  struct network_create c = {.actor = actor};
  int r;

  reg_clear_error(err);
  if ((r = check_operator(actor, err)) < 0)
    return r;
  if (params->name && reg_find_network(&reg->config, params->name))
    return reg_set_error(err, -EEXIST, "name",
                         "a network named %s exists (in the config)",
                         params->name);
  if ((r = network_from_params(&c.net, params, err)) < 0 ||
      (r = reg_in_tx(reg, true, network_create_body, &c, err)) < 0) {
    reg_strings_free(c.net.principals, c.net.n_principals);
    return r;
  }
  if (out)
    *out = c.net;
  else
    reg_strings_free(c.net.principals, c.net.n_principals);
  return 0;
}

struct network_list {
  struct reg_network_info *v;
  size_t n;
};

static int network_list_body(struct reg *reg, void *arg, struct reg_error *err)
{
  struct network_list *c = arg;
  int r;

  reg_networks_free(c->v, c->n);
  c->v = NULL;
  c->n = 0;
  r = reg->ops->network_list(reg->store, &c->v, &c->n);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

static int cmp_network(const void *a, const void *b)
{
  return strcmp(((const struct reg_network_info *)a)->name,
                ((const struct reg_network_info *)b)->name);
}

/* The config's network i as the API shows it. */
static int config_network_info(const struct config_network *net,
                               const struct reg_network *spec,
                               struct reg_network_info *out)
{
  snprintf(out->name, sizeof(out->name), "%s", net->name);
  snprintf(out->range, sizeof(out->range), "%s", spec ? spec->range : "");
  snprintf(out->netns, sizeof(out->netns), "%s", net->netns);
  out->from_config = true;
  if (net->n_principals == 0)
    return 0;
  if ((out->principals = calloc(net->n_principals, sizeof(char *))) == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < net->n_principals; i++) {
    if ((out->principals[i] = strdup(net->principals[i])) == NULL)
      return -ENOMEM;
    out->n_principals++;
  }
  return 0;
}

int reg_networks_list(struct reg *reg, const struct reg_actor *actor,
                      struct reg_network_info **out, size_t *n,
                      struct reg_error *err)
{
  struct network_list c = {NULL, 0};
  const struct config *cfg = &reg->config;
  struct reg_network_info *all;
  int r;

  reg_clear_error(err);
  *out = NULL;
  *n = 0;
  if ((r = check_operator(actor, err)) < 0 ||
      (r = reg_in_tx(reg, false, network_list_body, &c, err)) < 0)
    return r;
  all = calloc(cfg->n_networks + c.n + 1, sizeof(*all));
  for (size_t i = 0; all && i < cfg->n_networks; i++)
    if (config_network_info(&cfg->networks[i], NULL, &all[i]) < 0) {
      reg_networks_free(all, i + 1);
      all = NULL;
    }
  if (all == NULL) {
    reg_networks_free(c.v, c.n);
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
  }
  for (size_t i = 0; i < cfg->n_networks; i++)
    snprintf(all[i].range, sizeof(all[i].range), "%s",
             cfg->networks[i].range_text);
  qsort(all, cfg->n_networks, sizeof(*all), cmp_network);
  if (c.n > 0)
    memcpy(all + cfg->n_networks, c.v, c.n * sizeof(*all));
  free(c.v); /* the members moved */
  *out = all;
  *n = cfg->n_networks + c.n;
  return 0;
}

struct network_delete {
  const struct reg_actor *actor;
  const char *name;
};

static int network_delete_body(struct reg *reg, void *arg,
                               struct reg_error *err)
{
  struct network_delete *c = arg;
  size_t live = 0;
  int r = reg->ops->network_count_live(reg->store, c->name, &live);

  if (r < 0)
    return reg_store_error(reg, err, r);
  if (live > 0)
    return reg_set_error(err, -EBUSY, "name",
                         "network %s holds %zu live endpoints", c->name, live);
  r = reg->ops->network_delete(reg->store, c->name);
  if (r == -ENOENT)
    return reg_set_error(err, r, "name", "no such network: %s", c->name);
  if (r == 0)
    r = record(reg, REG_EVENT_NETWORK_DELETE, c->name, NULL, c->actor->name);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_network_delete(struct reg *reg, const struct reg_actor *actor,
                       const char *name, struct reg_error *err)
{
  struct network_delete c = {actor, name ? name : ""};
  int r;

  reg_clear_error(err);
  if ((r = check_operator(actor, err)) < 0)
    return r;
  if (name && reg_find_network(&reg->config, name))
    return refuse_config("network", name, err);
  return reg_in_tx(reg, true, network_delete_body, &c, err);
}
