/* Services, their permissions, and the provider's view of their endpoints
 * (connections: list, accept, reject). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "registry-int.h"

/* Service names: they appear in URLs and logs, so a tame alphabet, and not
 * shaped like an ID in any case: lookups accept a name or a service's ID,
 * and SERVICE.ZONE must not be an endpoint's name EP-ID.ZONE (DNS ignores
 * case). */
static bool service_name_ok(const char *s)
{
  return reg_name_tame(s) && strncasecmp(s, "svc-", 4) != 0 &&
         !reg_name_like_endpoint_id(s);
}

/* Normalizes a list of principals for a service: "*" or a name (a consumer
 * that exists now or later: whether it does is not the provider's to
 * learn, as a cloud accepts any account in a permission); sorted, without
 * duplicates. */
static int principals_normalize(struct reg *reg, char **v, size_t *n,
                                struct reg_error *err)
{
  reg_strings_sort_unique(v, n);
  if (*n > REG_MAX_ALLOWED_PRINCIPALS)
    return reg_set_error(err, -EINVAL, "allowed_principals",
                         "more than %d principals", REG_MAX_ALLOWED_PRINCIPALS);
  return 0;
}

static int strings_dup(const char *const *src, size_t n, char ***out,
                       struct reg_error *err)
{
  *out = NULL;
  if (n > REG_MAX_ALLOWED_PRINCIPALS * 4)
    return reg_set_error(err, -EINVAL, "allowed_principals", "list too long");
  for (size_t i = 0; i < n; i++)
    if (src[i] == NULL ||
        (strcmp(src[i], "*") != 0 && !reg_name_chars_ok(src[i])))
      return reg_set_error(err, -EINVAL, "allowed_principals",
                           "bad principal name");
  if (reg_strings_copy(src, n, out) < 0)
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
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
    return reg_set_error(err, -ENOENT, "id", "no such service");
  r = reg->ops->service_get(reg->store, id, out);
  if (r == -ENOENT)
    return reg_set_error(err, r, "id", "no such service: %s", id);
  if (r < 0)
    return reg_store_error(reg, err, r);
  if (!is_owner_or_operator(actor, out)) {
    reg_service_release(out);
    return reg_set_error(err, -ENOENT, "id", "no such service: %s", id);
  }
  return 0;
}

static int check_provider_role(const struct reg_actor *actor,
                               struct reg_error *err)
{
  if (actor == NULL || actor->name == NULL)
    return reg_set_error(err, -EACCES, NULL, "no principal");
  if (actor->role != REG_ROLE_PROVIDER && actor->role != REG_ROLE_OPERATOR)
    return reg_set_error(err, -EACCES, NULL, "%s may not manage services",
                         reg_role_name(actor->role));
  return 0;
}

static int check_limit(int64_t limit, struct reg_error *err)
{
  if (limit < 0 || limit > REG_MAX_CONNECTION_LIMIT)
    return reg_set_error(err, -EINVAL, "connection_limit",
                         "connection_limit must be 0..%d",
                         REG_MAX_CONNECTION_LIMIT);
  return 0;
}

/* Hands a finished service to *out (when not NULL), completed with what
 * config knows; releases it otherwise. */
static int hand_service(struct reg *reg, struct reg_service *s,
                        struct reg_service *out, struct reg_error *err)
{
  if (out == NULL) {
    reg_service_release(s);
    return 0;
  }
  *out = *s;
  memset(s, 0, sizeof(*s));
  if (reg_service_complete(reg, out) < 0) {
    reg_service_release(out);
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
  }
  return 0;
}

/* ---- create ------------------------------------------------------------- */

struct create_service {
  struct reg_service service;
  bool limited; /* a provider's (an operator's are not counted) */
};

/* A provider owns at most registry.service_quota services. */
static int check_quota(struct reg *reg, const struct create_service *c,
                       struct reg_error *err)
{
  const struct reg_service *s = &c->service;
  size_t owned = 0;
  int r;

  if (reg->config.service_quota == 0 || !c->limited)
    return 0;
  if ((r = reg->ops->service_count_owner(reg->store, s->owner, &owned)) < 0)
    return reg_store_error(reg, err, r);
  if (owned >= reg->config.service_quota)
    return reg_set_error(err, -EDQUOT, "name",
                         "%s owns %zu services, its quota "
                         "(registry.service_quota)",
                         s->owner, owned);
  return 0;
}

/* The name is looked up first (in any case): after a failed insert
 * PostgreSQL reads nothing more in the transaction, and the insert's
 * failure alone would not say which key was taken. The answer says the
 * name is not available, never whose it is nor how it is spelt there:
 * names are unique across providers. */
static int create_service(struct reg *reg, const struct create_service *c,
                          struct reg_error *err)
{
  const struct reg_service *s = &c->service;
  struct reg_service other;
  int r = check_quota(reg, c, err);

  if (r < 0)
    return r;
  r = reg->ops->service_get(reg->store, s->name, &other);

  if (r == 0) {
    reg_service_release(&other);
    return reg_set_error(err, -EEXIST, "name",
                         "the service name %s is not available (names are "
                         "unique across providers, whatever their case)",
                         s->name);
  }
  if (r == -ENOENT)
    r = reg->ops->service_insert(reg->store, s);
  if (r == -EEXIST)
    return reg_set_error(err, r, "private_dns_name",
                         "another service has the private_dns_name %s",
                         s->private_dns_name);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_service_create(struct reg *reg, const struct reg_actor *actor,
                       const struct reg_service_params *params,
                       struct reg_service *out, struct reg_error *err)
{
  struct create_service c = {.limited =
                                 actor && actor->role == REG_ROLE_PROVIDER};
  struct reg_service *sp = &c.service;
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if (!service_name_ok(params->name))
    return reg_set_error(err, -EINVAL, "name",
                         "name must be 1-%d of [A-Za-z0-9._-], starting with "
                         "a letter or digit, and not shaped like an ID "
                         "(svc-..., ep- and hex digits)",
                         REG_NAME_MAX);
  if (params->load_balancer == NULL ||
      !reg_find_load_balancer(&reg->config, params->load_balancer))
    return reg_set_error(err, -EINVAL, "load_balancer",
                         "no such load balancer: %s",
                         params->load_balancer ? params->load_balancer : "");
  if ((r = check_limit(params->connection_limit, err)) < 0 ||
      (r = reg_private_dns_name_check(reg, actor->name,
                                      params->private_dns_name,
                                      sp->private_dns_name, err)) < 0)
    return r;
  if ((r = strings_dup(params->allowed_principals, params->n_allowed_principals,
                       &sp->allowed_principals, err)) < 0)
    return r;
  sp->n_allowed_principals = params->n_allowed_principals;
  if ((r = principals_normalize(reg, sp->allowed_principals,
                                &sp->n_allowed_principals, err)) < 0)
    goto fail_release;
  if ((r = reg_make_id(sp->id, "svc-")) < 0) {
    reg_set_error(err, r, NULL, "getrandom failed");
    goto fail_release;
  }
  snprintf(sp->name, sizeof(sp->name), "%s", params->name);
  snprintf(sp->owner, sizeof(sp->owner), "%s", actor->name);
  snprintf(sp->load_balancer, sizeof(sp->load_balancer), "%s",
           params->load_balancer);
  sp->acceptance_required = params->acceptance_required;
  sp->connection_limit = (uint32_t)params->connection_limit;
  sp->created_at = reg_now_ms();
  for (reg_tx_start(&tx, reg, true, err); reg_tx_next(&tx, &r);)
    r = create_service(reg, &c, err);
  if (r < 0)
    goto fail_release;
  return hand_service(reg, sp, out, err);

fail_release:
  reg_service_release(sp);
  return r;
}

/* ---- describe, list ----------------------------------------------------- */

/* What describe, modify and delete do to the service id (loaded into *s)
 * in the open transaction. */
typedef int owned_service_op(struct reg *reg, const struct reg_actor *actor,
                             const char *id,
                             const struct reg_service_changes *changes,
                             struct reg_service *s, struct reg_error *err);

/* Runs op in a transaction and hands the service to *out (NULL: none). */
static int on_owned_service(struct reg *reg, bool write, owned_service_op *op,
                            const struct reg_actor *actor, const char *id,
                            const struct reg_service_changes *changes,
                            struct reg_service *out, struct reg_error *err)
{
  struct reg_service s = {0};
  struct reg_tx tx;
  int r;

  for (reg_tx_start(&tx, reg, write, err); reg_tx_next(&tx, &r);) {
    reg_service_release(&s);
    r = op(reg, actor, id, changes, &s, err);
  }
  if (r < 0) {
    reg_service_release(&s);
    return r;
  }
  return hand_service(reg, &s, out, err);
}

static int describe_service(struct reg *reg, const struct reg_actor *actor,
                            const char *id,
                            const struct reg_service_changes *changes,
                            struct reg_service *s, struct reg_error *err)
{
  return load_owned_service(reg, actor, id, s, err);
}

int reg_service_describe(struct reg *reg, const struct reg_actor *actor,
                         const char *id, struct reg_service *out,
                         struct reg_error *err)
{
  int r;

  reg_clear_error(err);
  memset(out, 0, sizeof(*out));
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  return on_owned_service(reg, false, describe_service, actor, id, NULL, out,
                          err);
}

static int read_services(struct reg *reg,
                         const struct reg_store_service_filter *filter,
                         const struct reg_store_cursor *after, size_t rows,
                         struct reg_service **v, size_t *n,
                         struct reg_error *err)
{
  int r;

  reg_services_free(*v, *n);
  *v = NULL;
  *n = 0;
  r = reg->ops->service_list(reg->store, filter, after, rows, v, n);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

static int list_services(struct reg *reg,
                         const struct reg_store_service_filter *filter,
                         const struct reg_page *page, struct reg_service **out,
                         size_t *n, char *next_token, struct reg_error *err)
{
  struct reg_store_cursor after;
  struct reg_service *v = NULL;
  size_t limit, n_v = 0;
  struct reg_tx tx;
  int r;

  if ((r = reg_page_parse(page, &after, &limit, err)) < 0)
    return r;
  for (reg_tx_start(&tx, reg, false, err); reg_tx_next(&tx, &r);)
    r = read_services(reg, filter, &after, reg_page_rows(limit), &v, &n_v, err);
  if (r == 0 && (r = reg_complete_services(reg, v, n_v)) < 0)
    reg_set_error(err, r, NULL, "out of memory");
  if (r < 0) {
    reg_services_free(v, n_v);
    return r;
  }
  /* One row past the page was read: it says whether more remain. */
  bool more = n_v > limit;
  if (more)
    reg_service_release(&v[--n_v]);
  reg_page_next(next_token, more, n_v ? v[n_v - 1].created_at : 0,
                n_v ? v[n_v - 1].id : "");
  *out = v;
  *n = n_v;
  return 0;
}

int reg_service_list(struct reg *reg, const struct reg_actor *actor,
                     const struct reg_page *page, struct reg_service **out,
                     size_t *n, char *next_token, struct reg_error *err)
{
  struct reg_store_service_filter filter = {0};
  int r;

  reg_clear_error(err);
  *out = NULL;
  *n = 0;
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if (actor->role != REG_ROLE_OPERATOR)
    filter.owner = actor->name;
  return list_services(reg, &filter, page, out, n, next_token, err);
}

int reg_available_services(struct reg *reg, const struct reg_actor *actor,
                           const struct reg_page *page,
                           struct reg_service **out, size_t *n,
                           char *next_token, struct reg_error *err)
{
  struct reg_store_service_filter filter = {0};

  reg_clear_error(err);
  *out = NULL;
  *n = 0;
  if (actor == NULL || actor->name == NULL || actor->role == REG_ROLE_PROVIDER)
    return reg_set_error(err, -EACCES, NULL,
                         "only consumers list available services");
  if (actor->role == REG_ROLE_CONSUMER)
    filter.consumer = actor->name;
  return list_services(reg, &filter, page, out, n, next_token, err);
}

/* ---- modify, delete ----------------------------------------------------- */

/* Applies the changes to s; true when a value changed. */
static bool apply_changes(struct reg_service *s,
                          const struct reg_service_changes *ch,
                          const char *private_dns_name)
{
  struct reg_service before = *s;

  if (ch->set_acceptance_required)
    s->acceptance_required = ch->acceptance_required;
  if (ch->set_connection_limit)
    s->connection_limit = (uint32_t)ch->connection_limit;
  if (ch->set_private_dns_name)
    snprintf(s->private_dns_name, sizeof(s->private_dns_name), "%s",
             private_dns_name);
  return before.acceptance_required != s->acceptance_required ||
         before.connection_limit != s->connection_limit ||
         strcmp(before.private_dns_name, s->private_dns_name) != 0;
}

static int modify_service(struct reg *reg, const struct reg_actor *actor,
                          const char *id,
                          const struct reg_service_changes *changes,
                          struct reg_service *s, struct reg_error *err)
{
  char private_dns_name[REG_DNS_NAME_BUF] = "";
  bool changed;
  int r;

  if ((r = load_owned_service(reg, actor, id, s, err)) < 0)
    return r;
  /* The owner's domains, whoever acts: an operator cannot hand a provider's
   * service a name outside them either. */
  if (changes->set_private_dns_name &&
      (r = reg_private_dns_name_check(reg, s->owner, changes->private_dns_name,
                                      private_dns_name, err)) < 0)
    return r;
  changed = apply_changes(s, changes, private_dns_name);
  r = reg->ops->service_update(reg->store, s);
  if (r == -EEXIST)
    return reg_set_error(err, r, "private_dns_name",
                         "another service has the private_dns_name %s",
                         s->private_dns_name);
  if (r == 0 && changed)
    r = reg_record_service_event(reg, s, actor->name, reg_now_ms());
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_service_modify(struct reg *reg, const struct reg_actor *actor,
                       const char *id,
                       const struct reg_service_changes *changes,
                       struct reg_service *out, struct reg_error *err)
{
  int r;

  reg_clear_error(err);
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if (changes->set_connection_limit &&
      (r = check_limit(changes->connection_limit, err)) < 0)
    return r;
  return on_owned_service(reg, true, modify_service, actor, id, changes, out,
                          err);
}

static int delete_service(struct reg *reg, const struct reg_actor *actor,
                          const char *id,
                          const struct reg_service_changes *changes,
                          struct reg_service *s, struct reg_error *err)
{
  size_t live = 0;
  int r;

  if ((r = load_owned_service(reg, actor, id, s, err)) < 0)
    return r;
  if ((r = reg->ops->service_count_live(reg->store, s->id, &live)) < 0)
    return reg_store_error(reg, err, r);
  if (live > 0)
    return reg_set_error(err, -EBUSY, NULL,
                         "service %s has %zu pendingAcceptance or available "
                         "endpoints: reject them first",
                         s->id, live);
  r = reg->ops->service_delete(reg->store, s->id);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_service_delete(struct reg *reg, const struct reg_actor *actor,
                       const char *id, struct reg_error *err)
{
  int r;

  reg_clear_error(err);
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  return on_owned_service(reg, true, delete_service, actor, id, NULL, NULL,
                          err);
}

/* ---- permissions -------------------------------------------------------- */

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

struct permissions {
  const struct reg_actor *actor;
  const char *id;
  char *const *add; /* normalized */
  size_t n_add;
  const char *const *remove;
  size_t n_remove;
  bool reconcile;
  struct reg_service service; /* with the new list */
};

static bool removed(const struct permissions *c, const char *p)
{
  for (size_t j = 0; j < c->n_remove; j++)
    if (strcmp(p, c->remove[j]) == 0)
      return true;
  return false;
}

/* (current + added) - removed, sorted and unique. */
static int merge_principals(const struct permissions *c, char ***out, size_t *n)
{
  const struct reg_service *s = &c->service;
  size_t total = s->n_allowed_principals + c->n_add;
  char **merged = calloc(total + 1, sizeof(*merged));
  size_t len = 0;

  if (merged == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < total; i++) {
    const char *p = i < s->n_allowed_principals
                        ? s->allowed_principals[i]
                        : c->add[i - s->n_allowed_principals];
    if (removed(c, p))
      continue;
    if ((merged[len] = strdup(p)) == NULL) {
      reg_strings_free(merged, len);
      return -ENOMEM;
    }
    len++;
  }
  reg_strings_sort_unique(merged, &len);
  *out = merged;
  *n = len;
  return 0;
}

/* Rejects the live endpoints of s whose consumer s no longer allows. */
static int reconcile_endpoints(struct reg *reg, const struct reg_actor *actor,
                               const struct reg_service *s, int64_t now)
{
  struct reg_store_endpoint_filter filter = {.service_id = s->id};
  struct reg_store_cursor start = {0};
  struct reg_endpoint *v;
  size_t n;
  int r;

  if ((r = reg->ops->endpoint_list(reg->store, &filter, &start, SIZE_MAX, &v,
                                   &n)) < 0)
    return r;
  for (size_t i = 0; r == 0 && i < n; i++) {
    if (!reg_transition_legal(v[i].state, REG_EP_REJECTED) ||
        reg_service_allows(s, v[i].consumer))
      continue;
    r = reg_transition(reg, &v[i], REG_EP_REJECTED, "permission removed",
                       actor->name, now);
  }
  reg_endpoints_free(v, n);
  return r;
}

static int change_permissions(struct reg *reg, struct permissions *c,
                              struct reg_error *err)
{
  char **merged;
  size_t n;
  int r;

  reg_service_release(&c->service);
  if ((r = load_owned_service(reg, c->actor, c->id, &c->service, err)) < 0)
    return r;
  if (merge_principals(c, &merged, &n) < 0)
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
  reg_strings_free(c->service.allowed_principals,
                   c->service.n_allowed_principals);
  c->service.allowed_principals = merged;
  c->service.n_allowed_principals = n;
  if (n > REG_MAX_ALLOWED_PRINCIPALS)
    return reg_set_error(err, -EINVAL, "add", "more than %d principals",
                         REG_MAX_ALLOWED_PRINCIPALS);
  if ((r = reg->ops->service_set_principals(reg->store, c->service.id, merged,
                                            n)) < 0 ||
      (c->reconcile &&
       (r = reconcile_endpoints(reg, c->actor, &c->service, reg_now_ms())) < 0))
    return reg_store_error(reg, err, r);
  return 0;
}

int reg_permissions_modify(struct reg *reg, const struct reg_actor *actor,
                           const char *id, const char *const *add, size_t n_add,
                           const char *const *remove, size_t n_remove,
                           bool reconcile, char ***out, size_t *n,
                           struct reg_error *err)
{
  struct permissions c = {.actor = actor,
                          .id = id,
                          .n_add = n_add,
                          .remove = remove,
                          .n_remove = n_remove,
                          .reconcile = reconcile};
  char **added = NULL;
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  if (out != NULL) {
    *out = NULL;
    *n = 0;
  }
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if ((r = strings_dup(add, n_add, &added, err)) < 0)
    return r;
  for (size_t i = 0; i < n_remove; i++)
    if (remove[i] == NULL || !reg_name_ok(remove[i])) {
      reg_strings_free(added, n_add);
      return reg_set_error(err, -EINVAL, "remove", "bad principal name");
    }
  if ((r = principals_normalize(reg, added, &c.n_add, err)) < 0)
    goto done;
  c.add = added;
  for (reg_tx_start(&tx, reg, true, err); reg_tx_next(&tx, &r);)
    r = change_permissions(reg, &c, err);
  if (r < 0)
    goto done;
  if (out != NULL) {
    *out = c.service.allowed_principals;
    *n = c.service.n_allowed_principals;
    c.service.allowed_principals = NULL;
    c.service.n_allowed_principals = 0;
  }
done:
  reg_strings_free(added, c.n_add);
  reg_service_release(&c.service);
  return r;
}

/* ---- connections -------------------------------------------------------- */

static int read_connections(struct reg *reg, const struct reg_actor *actor,
                            const char *service_id,
                            struct reg_store_endpoint_filter *filter,
                            const struct reg_store_cursor *after, size_t rows,
                            struct reg_endpoint **v, size_t *n,
                            struct reg_error *err)
{
  struct reg_service s;
  int r;

  reg_endpoints_free(*v, *n);
  *v = NULL;
  *n = 0;
  if ((r = load_owned_service(reg, actor, service_id, &s, err)) < 0)
    return r;
  filter->service_id = s.id;
  r = reg->ops->endpoint_list(reg->store, filter, after, rows, v, n);
  filter->service_id = NULL;
  reg_service_release(&s);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

int reg_connections_list(struct reg *reg, const struct reg_actor *actor,
                         const char *service_id,
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
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if (state && (unsigned)*state >= REG_EP_STATE_COUNT)
    return reg_set_error(err, -EINVAL, "state", "unknown state");
  if ((r = reg_page_parse(page, &after, &limit, err)) < 0)
    return r;
  for (reg_tx_start(&tx, reg, false, err); reg_tx_next(&tx, &r);)
    r = read_connections(reg, actor, service_id, &filter, &after,
                         reg_page_rows(limit), &v, &n_v, err);
  return reg_endpoints_page(reg, r, v, n_v, limit, out, n, next_token, err);
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

struct decision {
  const struct reg_actor *actor;
  const char *service_id;
  const char *const *ids;
  size_t n;
  struct reg_item_result *results;
  enum reg_endpoint_state to;
};

/* One endpoint of a batch: its result, or a store failure (returned). */
static int decide_one(struct reg *reg, const struct decision *c,
                      const struct reg_service *s, size_t i, int64_t now)
{
  struct reg_endpoint e;
  int r;

  memset(&c->results[i], 0, sizeof(c->results[i]));
  if (c->ids[i] == NULL) {
    item_result(&c->results[i], -EINVAL, "%s", "no endpoint id");
    return 0;
  }
  r = reg->ops->endpoint_get(reg->store, c->ids[i], &e);
  if (r == -ENOENT || (r == 0 && strcmp(e.service_id, s->id) != 0)) {
    if (r == 0)
      reg_endpoint_release(&e);
    item_result(&c->results[i], -ENOENT, "no such endpoint on this service: %s",
                c->ids[i]);
    return 0;
  }
  if (r < 0)
    return r;
  if (!reg_transition_legal(e.state, c->to))
    item_result(&c->results[i], -EBUSY, "endpoint is %s",
                reg_state_name(e.state));
  else
    r = reg_transition(reg, &e, c->to,
                       c->to == REG_EP_REJECTED ? "rejected by provider" : "",
                       c->actor->name, now);
  reg_endpoint_release(&e);
  return r;
}

static int decide_all(struct reg *reg, const struct decision *c,
                      struct reg_error *err)
{
  struct reg_service s;
  int64_t now = reg_now_ms();
  int r;

  if ((r = load_owned_service(reg, c->actor, c->service_id, &s, err)) < 0)
    return r;
  for (size_t i = 0; r == 0 && i < c->n; i++)
    r = decide_one(reg, c, &s, i, now);
  reg_service_release(&s);
  return r < 0 ? reg_store_error(reg, err, r) : 0;
}

/* Accept or reject a batch of endpoints of one service. */
static int decide(struct reg *reg, const struct reg_actor *actor,
                  const char *service_id, const char *const *ids, size_t n,
                  struct reg_item_result *results, enum reg_endpoint_state to,
                  struct reg_error *err)
{
  struct decision c = {actor, service_id, ids, n, results, to};
  struct reg_tx tx;
  int r;

  reg_clear_error(err);
  if ((r = check_provider_role(actor, err)) < 0)
    return r;
  if (n > 0 && (ids == NULL || results == NULL))
    return reg_set_error(err, -EINVAL, "endpoint_ids", "no list");
  for (reg_tx_start(&tx, reg, true, err); reg_tx_next(&tx, &r);)
    r = decide_all(reg, &c, err);
  return r;
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
