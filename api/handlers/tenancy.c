/* Tenancy, the operator's: principals made through the API (each with its
 * first token), their further tokens, and the networks endpoints are
 * placed in. A token is shown once, in the answer that makes it. And who
 * the caller is, for every principal. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "handlers.h"
#include "nlb/api-auth.h"

/* ---- tenancy (operator) ------------------------------------------------- */

static json_t *principal_json(const struct reg_principal_info *p)
{
  json_t *value = json_pack("{s:s,s:s,s:s}", "name", p->name, "role",
                            reg_role_name(p->role), "source",
                            p->from_config ? "config" : "api");
  if (value != NULL && !p->from_config)
    json_object_set_new(value, "created_at", api_json_time(p->created_at));
  return value;
}

static json_t *optional_time(int64_t unix_ms)
{
  return unix_ms != 0 ? api_json_time(unix_ms) : json_null();
}

static json_t *token_json(const struct reg_token *t)
{
  return json_pack("{s:s,s:o,s:o,s:o}", "id", t->id, "created_at",
                   api_json_time(t->created_at), "expires_at",
                   optional_time(t->expires_at), "last_used_at",
                   optional_time(t->last_used_at));
}

static json_t *network_json(const struct reg_network_info *n)
{
  json_t *value =
      json_pack("{s:s,s:s,s:o,s:o,s:s}", "name", n->name, "range", n->range,
                "netns", n->netns[0] ? json_string(n->netns) : json_null(),
                "principals", api_strings_json(n->principals, n->n_principals),
                "source", n->from_config ? "config" : "api");
  if (value != NULL && !n->from_config)
    json_object_set_new(value, "created_at", api_json_time(n->created_at));
  return value;
}

/* "2025-01-02T03:04:05Z", with optional fractions and an offset. */
static int parse_time(const char *text, int64_t *unix_ms)
{
  struct tm tm = {0};
  const char *rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
  int64_t ms = 0, scale = 100, offset = 0;

  if (rest == NULL)
    return -EINVAL;
  if (*rest == '.')
    for (rest++; *rest >= '0' && *rest <= '9'; rest++, scale /= 10)
      ms += (*rest - '0') * scale;
  if (*rest == 'Z' && rest[1] == '\0') {
    offset = 0;
  } else if ((*rest == '+' || *rest == '-') && strlen(rest) == 6 &&
             rest[3] == ':') {
    int h = atoi(rest + 1), m = atoi(rest + 4);
    offset = (rest[0] == '-' ? -1 : 1) * (h * 3600 + m * 60);
  } else {
    return -EINVAL;
  }
  *unix_ms = ((int64_t)timegm(&tm) - offset) * 1000 + ms;
  return 0;
}

/* The one answer that carries a token: shown once, never again. */
static void respond_token(struct api_response *resp, json_t *value,
                          const char *token, const char *token_id)
{
  if (value != NULL) {
    json_object_set_new(value, "token", json_string(token));
    if (token_id != NULL)
      json_object_set_new(value, "token_id", json_string(token_id));
  }
  api_respond_json(resp, 201, value);
}

void api_handle_principal_create(const struct api_request *req,
                                 struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"name", API_JSON_STRING, true},
      {"role", API_JSON_STRING, true},
  };
  struct reg_principal_info principal;
  struct reg_error err = {0};
  char token[API_TOKEN_TEXT_BUF], id[REG_ID_BUF];
  uint8_t sha256[32];
  enum reg_role role;
  json_t *body;

  if (!api_no_query(req, resp) ||
      (body = api_read_body(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  if (reg_role_parse(json_string_value(json_object_get(body, "role")), &role) !=
      0) {
    api_respond_error(resp, 400, "InvalidValue",
                      "role: must be operator, provider or consumer");
  } else if (api_token_new(token, sha256, id) != 0) {
    api_respond_error(resp, 500, "Internal", "no randomness");
  } else {
    int r = reg_principal_create(
        req->reg, &req->actor, json_string_value(json_object_get(body, "name")),
        role, sha256, id, &principal, NULL, &err);
    if (r != 0)
      api_respond_reg_error(req, resp, r, &err);
    else
      respond_token(resp, principal_json(&principal), token, id);
  }
  OPENSSL_cleanse(token, sizeof token);
  json_decref(body);
}

/* Items of a list held in memory, ordered by name. Both structs start
 * with their name, so the name is the item's first bytes. */
struct named_items {
  void *v;
  size_t n, size;
  json_t *(*to_json)(const void *item);
};

_Static_assert(offsetof(struct reg_principal_info, name) == 0,
               "a principal starts with its name");
_Static_assert(offsetof(struct reg_network_info, name) == 0,
               "a network starts with its name");

static int cmp_named(const void *a, const void *b)
{
  return strcmp((const char *)a, (const char *)b);
}

/* Answers one page of items under key, sorted by name: a token is the
 * last name of the page before (a name that comes and goes meanwhile
 * never makes one seen twice). */
static void respond_named_page(struct api_response *resp,
                               const struct api_list_query *q, const char *key,
                               const struct named_items *items)
{
  char next[REG_NAME_BUF] = "";
  const char *base = items->v;
  size_t i = 0, shown = 0;
  json_t *array = json_array();

  qsort(items->v, items->n, items->size, cmp_named);
  while (q->token[0] != '\0' && i < items->n &&
         strcmp(base + i * items->size, q->token) <= 0)
    i++;
  for (; array != NULL && i < items->n; i++) {
    if (q->page.limit != 0 && shown == q->page.limit) {
      snprintf(next, sizeof next, "%s", base + (i - 1) * items->size);
      break;
    }
    json_array_append_new(array, items->to_json(base + i * items->size));
    shown++;
  }
  api_respond_list(resp, key, array, next);
}

static json_t *principal_item_json(const void *item)
{
  return principal_json(item);
}

static json_t *network_item_json(const void *item)
{
  return network_json(item);
}

void api_handle_principal_list(const struct api_request *req,
                               struct api_response *resp)
{
  struct named_items items = {NULL, 0, sizeof(struct reg_principal_info),
                              principal_item_json};
  struct reg_error err = {0};
  struct api_list_query q;

  if (!api_read_list_query(req, resp, false, &q))
    return;
  int r = reg_principals_list(req->reg, &req->actor,
                              (struct reg_principal_info **)&items.v, &items.n,
                              &err);
  if (r != 0)
    api_respond_reg_error(req, resp, r, &err);
  else
    respond_named_page(resp, &q, "principals", &items);
  free(items.v);
}

void api_handle_principal_delete(const struct api_request *req,
                                 struct api_response *resp)
{
  struct reg_error err = {0};

  if (!api_no_query(req, resp))
    return;
  int r = reg_principal_delete(req->reg, &req->actor, api_param(req, 0), &err);
  if (r != 0)
    api_respond_reg_error(req, resp, r, &err);
  else
    api_respond_json(resp, 200, json_pack("{s:s}", "name", api_param(req, 0)));
}

void api_handle_token_create(const struct api_request *req,
                             struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"expires_at", API_JSON_STRING, false},
  };
  struct reg_token made;
  struct reg_error err = {0};
  char token[API_TOKEN_TEXT_BUF], id[REG_ID_BUF];
  uint8_t sha256[32];
  int64_t expires_at = 0;
  const char *when;
  json_t *body;

  if (!api_no_query(req, resp))
    return;
  /* An empty body is no expiry. */
  body = req->body_len == 0
             ? json_object()
             : api_read_body(req, resp, fields, N_FIELDS(fields));
  if (body == NULL)
    return;
  when = json_string_value(json_object_get(body, "expires_at"));
  if (when != NULL && parse_time(when, &expires_at) != 0) {
    api_respond_error(resp, 400, "InvalidValue",
                      "expires_at: must be RFC 3339, e.g. "
                      "2030-01-02T03:04:05Z");
  } else if (api_token_new(token, sha256, id) != 0) {
    api_respond_error(resp, 500, "Internal", "no randomness");
  } else {
    int r = reg_token_create(req->reg, &req->actor, api_param(req, 0), sha256,
                             id, expires_at, &made, &err);
    if (r != 0)
      api_respond_reg_error(req, resp, r, &err);
    else
      respond_token(resp, token_json(&made), token, NULL);
  }
  OPENSSL_cleanse(token, sizeof token);
  json_decref(body);
}

void api_handle_token_list(const struct api_request *req,
                           struct api_response *resp)
{
  struct reg_token *v = NULL;
  struct reg_error err = {0};
  struct api_list_query q;
  char next[REG_ID_BUF] = "";
  size_t n = 0, first = 0, shown = 0;

  if (!api_read_list_query(req, resp, false, &q))
    return;
  int r =
      reg_tokens_list(req->reg, &req->actor, api_param(req, 0), &v, &n, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    return;
  }
  /* In the order they were made: a token is the last id of the page. */
  for (size_t i = 0; q.token[0] != '\0' && i < n; i++)
    if (strcmp(v[i].id, q.token) == 0)
      first = i + 1;
  json_t *array = json_array();
  for (size_t i = first; array != NULL && i < n; i++) {
    if (q.page.limit != 0 && shown == q.page.limit) {
      snprintf(next, sizeof next, "%s", v[i - 1].id);
      break;
    }
    json_array_append_new(array, token_json(&v[i]));
    shown++;
  }
  free(v);
  api_respond_list(resp, "tokens", array, next);
}

void api_handle_token_revoke(const struct api_request *req,
                             struct api_response *resp)
{
  struct reg_error err = {0};

  if (!api_no_query(req, resp))
    return;
  int r = reg_token_revoke(req->reg, &req->actor, api_param(req, 0),
                           api_param(req, 1), &err);
  if (r != 0)
    api_respond_reg_error(req, resp, r, &err);
  else
    api_respond_json(
        resp, 200,
        json_pack("{s:s,s:s}", "id", api_param(req, 1), "state", "revoked"));
}

void api_handle_network_create(const struct api_request *req,
                               struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"name", API_JSON_STRING, true},
      {"range", API_JSON_STRING, true},
      {"netns", API_JSON_STRING, false},
      {"principals", API_JSON_STRINGS, false},
  };
  struct reg_network_params params = {0};
  struct reg_network_info made;
  struct reg_error err = {0};
  const char **principals = NULL;
  json_t *body;

  if (!api_no_query(req, resp) ||
      (body = api_read_body(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  params.name = json_string_value(json_object_get(body, "name"));
  params.range = json_string_value(json_object_get(body, "range"));
  params.netns = json_string_value(json_object_get(body, "netns"));
  if (api_json_strings(json_object_get(body, "principals"), &principals,
                       &params.n_principals) != 0) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    goto out;
  }
  params.principals = principals;
  int r = reg_network_create(req->reg, &req->actor, &params, &made, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    goto out;
  }
  api_respond_json(resp, 201, network_json(&made));
  reg_strings_free(made.principals, made.n_principals);
out:
  free(principals);
  json_decref(body);
}

void api_handle_network_list(const struct api_request *req,
                             struct api_response *resp)
{
  struct named_items items = {NULL, 0, sizeof(struct reg_network_info),
                              network_item_json};
  struct reg_error err = {0};
  struct api_list_query q;

  if (!api_read_list_query(req, resp, false, &q))
    return;
  int r =
      reg_networks_list(req->reg, &req->actor,
                        (struct reg_network_info **)&items.v, &items.n, &err);
  if (r != 0)
    api_respond_reg_error(req, resp, r, &err);
  else
    respond_named_page(resp, &q, "networks", &items);
  reg_networks_free(items.v, items.n);
}

void api_handle_network_delete(const struct api_request *req,
                               struct api_response *resp)
{
  struct reg_error err = {0};

  if (!api_no_query(req, resp))
    return;
  int r = reg_network_delete(req->reg, &req->actor, api_param(req, 0), &err);
  if (r != 0)
    api_respond_reg_error(req, resp, r, &err);
  else
    api_respond_json(resp, 200, json_pack("{s:s}", "name", api_param(req, 0)));
}

/* ---- the caller (any principal) ----------------------------------------- */

/* Who the token names, as the API sees it: a client (the console) learns
 * which role's routes it may call without trying them. On the control
 * thread: the principal is the request's, not the registry's. */
void api_handle_whoami(const struct api_request *req, struct api_response *resp)
{
  if (!api_no_query(req, resp))
    return;
  api_respond_json(resp, 200,
                   json_pack("{s:s,s:s}", "name", req->actor.name, "role",
                             reg_role_name(req->actor.role)));
}
