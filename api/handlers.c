/* One handler per route: validate the request, call the registry or the
 * data plane, shape the answer as SPEC.md says. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "api-int.h"
#include "nlb/api-auth.h"
#include "openapi.h"
#include "nlb/api-json.h"

#define N_FIELDS(f) (sizeof(f) / sizeof((f)[0]))

void api_respond_error(struct api_response *resp, int status, const char *code,
                       const char *fmt, ...)
{
  char message[512];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  free(resp->body);
  resp->status = status;
  resp->content_type = NULL;
  resp->events = false;
  resp->static_body = NULL;
  resp->body = api_json_error_body(code, message);
  if (resp->body == NULL) /* not UTF-8, or no memory */
    resp->body = api_json_error_body(code, "(unprintable message)");
  resp->len = resp->body != NULL ? strlen(resp->body) : 0;
}

/* Takes value (a new reference) as the answer. */
static void respond_json(struct api_response *resp, int status, json_t *value)
{
  if (value == NULL) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    return;
  }
  free(resp->body);
  resp->body = api_json_dump(value, &resp->len);
  json_decref(value);
  if (resp->body == NULL) {
    api_respond_error(resp, 500, "Internal", "cannot encode the answer");
    return;
  }
  resp->status = status;
  resp->content_type = NULL;
}

static void respond_json_error(struct api_response *resp,
                               const struct api_json_error *err)
{
  api_respond_error(resp, 400, err->code, "%s", err->message);
}

/* The HTTP status and error code for a registry errno. */
static int reg_status(int code, const char **name)
{
  switch (code) {
  case -EINVAL:
    *name = "InvalidValue";
    return 400;
  case -EACCES:
    *name = "Forbidden";
    return 403;
  case -ENOENT:
    *name = "NotFound";
    return 404;
  case -EEXIST:
    *name = "AlreadyExists";
    return 409;
  case -EBUSY:
    *name = "InvalidState";
    return 409;
  case -EADDRINUSE:
    *name = "AddressInUse";
    return 409;
  case -EDQUOT:
    *name = "LimitExceeded";
    return 409;
  case -ENOSPC:
    *name = "AddressExhausted";
    return 409;
  case -ENOTCONN:
    *name = "StoreUnavailable";
    return 503;
  default:
    *name = "Internal";
    return 500;
  }
}

static void respond_reg_error(struct api_request const *req,
                              struct api_response *resp, int code,
                              const struct reg_error *err)
{
  const char *name;
  int status = reg_status(code, &name);
  const char *message = err->message[0] != '\0' ? err->message : name;

  if (status == 500) {
    api_log(req->server, 3, "api: %s failed: %s", req->match->route->name,
            message);
    api_respond_error(resp, 500, name, "internal error");
  } else if (status == 503) {
    /* How the store failed (hosts, paths) is the operator's business. */
    api_log(req->server, 2, "api: %s: %s", req->match->route->name, message);
    api_respond_error(resp, 503, name,
                      "the registry's store is unavailable: nothing was "
                      "changed; try again later");
  } else if (err->field[0] != '\0' && strstr(message, err->field) == NULL) {
    api_respond_error(resp, status, name, "%s: %s", err->field, message);
  } else {
    api_respond_error(resp, status, name, "%s", message);
  }
}

/* ---- shapes ------------------------------------------------------------- */

static json_t *time_json(int64_t unix_ms)
{
  char buf[REG_TIME_BUF];
  return json_string(reg_format_time(unix_ms, buf));
}

static json_t *ports_json(const uint16_t *ports, size_t n)
{
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, json_integer(ports[i]));
  return array;
}

static json_t *strings_json(char *const *strings, size_t n)
{
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, json_string(strings[i]));
  return array;
}

static json_t *service_json(const struct reg_service *s)
{
  return json_pack(
      "{s:s,s:s,s:s,s:s,s:o,s:s,s:b,s:o,s:I,s:o,s:s}", "id", s->id, "name",
      s->name, "owner", s->owner, "load_balancer", s->load_balancer, "ports",
      ports_json(s->ports, s->n_ports), "state", s->state,
      "acceptance_required", s->acceptance_required, "allowed_principals",
      strings_json(s->allowed_principals, s->n_allowed_principals),
      "connection_limit", (json_int_t)s->connection_limit, "created_at",
      time_json(s->created_at), "private_dns_name", s->private_dns_name);
}

/* A consumer sees the private DNS name it may opt into. */
static json_t *available_service_json(const struct reg_service *s)
{
  return json_pack("{s:s,s:s,s:s,s:o,s:b,s:s}", "id", s->id, "name", s->name,
                   "owner", s->owner, "ports", ports_json(s->ports, s->n_ports),
                   "acceptance_required", s->acceptance_required,
                   "private_dns_name", s->private_dns_name);
}

static json_t *connection_json(const struct reg_endpoint *e)
{
  return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o}", "endpoint_id", e->id,
                   "consumer", e->consumer, "state", reg_state_name(e->state),
                   "network", e->network, "address", e->address, "created_at",
                   time_json(e->created_at), "updated_at",
                   time_json(e->updated_at));
}

static json_t *placements_json(const struct reg_endpoint *e)
{
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < e->n_placements; i++) {
    const struct reg_placement *p = &e->placements[i];
    json_array_append_new(array, json_pack("{s:s,s:s,s:s}", "node", p->node,
                                           "state", p->open ? "open" : "failed",
                                           "reason", p->reason));
  }
  return array;
}

static json_t *endpoint_json(const struct reg_endpoint *e)
{
  return json_pack(
      "{s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:s,s:o,s:o,s:o,s:o,s:b,s:o}", "id",
      e->id, "service_id", e->service_id, "service", e->service, "consumer",
      e->consumer, "network", e->network, "address", e->address, "ports",
      ports_json(e->ports, e->n_ports), "state", reg_state_name(e->state),
      "reason", e->reason, "allowed_sources",
      strings_json(e->allowed_sources, e->n_allowed_sources), "placements",
      placements_json(e), "created_at", time_json(e->created_at), "updated_at",
      time_json(e->updated_at), "private_dns", e->private_dns, "dns_names",
      strings_json(e->dns_names, e->n_dns_names));
}

static json_t *target_json(const struct api_target *t)
{
  return json_pack("{s:s,s:I,s:s,s:s}", "address", t->address, "weight",
                   (json_int_t)t->weight, "state",
                   t->state != NULL ? t->state : "unused", "reason",
                   t->reason != NULL ? t->reason : "");
}

/* Endpoint events name the endpoint; target and node events what they are
 * about instead, and a service's modify event the service alone. */
static json_t *event_json(const struct reg_event *ev)
{
  if (ev->endpoint_id[0] == '\0' && ev->service_id[0] != '\0')
    return json_pack("{s:I,s:o,s:s,s:s,s:s}", "seq", (json_int_t)ev->seq,
                     "time", time_json(ev->time), "type",
                     reg_event_type_name(ev->type), "service_id",
                     ev->service_id, "principal", ev->principal);
  if (ev->target[0] != '\0')
    return json_pack("{s:I,s:o,s:s,s:s,s:s,s:s}", "seq", (json_int_t)ev->seq,
                     "time", time_json(ev->time), "type",
                     reg_event_type_name(ev->type), "target_group",
                     ev->target_group, "target", ev->target, "principal",
                     ev->principal);
  if (ev->node[0] != '\0')
    return json_pack("{s:I,s:o,s:s,s:s,s:s}", "seq", (json_int_t)ev->seq,
                     "time", time_json(ev->time), "type",
                     reg_event_type_name(ev->type), "node", ev->node,
                     "principal", ev->principal);
  if (ev->token_id[0] != '\0')
    return json_pack("{s:I,s:o,s:s,s:s,s:s,s:s}", "seq", (json_int_t)ev->seq,
                     "time", time_json(ev->time), "type",
                     reg_event_type_name(ev->type), "name", ev->subject,
                     "token_id", ev->token_id, "principal", ev->principal);
  if (ev->subject[0] != '\0')
    return json_pack("{s:I,s:o,s:s,s:s,s:s}", "seq", (json_int_t)ev->seq,
                     "time", time_json(ev->time), "type",
                     reg_event_type_name(ev->type),
                     ev->type == REG_EVENT_NETWORK_CREATE ||
                             ev->type == REG_EVENT_NETWORK_DELETE
                         ? "network"
                         : "name",
                     ev->subject, "principal", ev->principal);
  return json_pack("{s:I,s:o,s:s,s:s,s:s,s:s,s:s}", "seq", (json_int_t)ev->seq,
                   "time", time_json(ev->time), "type",
                   reg_event_type_name(ev->type), "service_id", ev->service_id,
                   "endpoint_id", ev->endpoint_id, "principal", ev->principal,
                   "state", reg_state_name(ev->state));
}

/* [{"network","netns"|null}] of a node's "NETWORK=NETNS" lines. */
static json_t *node_networks_json(const char *text)
{
  json_t *list = json_array();

  while (list != NULL && *text != '\0') {
    const char *end = strchr(text, '\n'), *eq = strchr(text, '=');
    size_t len = end ? (size_t)(end - text) : strlen(text);
    char network[REG_NAME_BUF];

    if (eq != NULL && eq < text + len &&
        (size_t)(eq - text) < sizeof(network)) {
      memcpy(network, text, (size_t)(eq - text));
      network[eq - text] = '\0';
      json_array_append_new(
          list,
          json_pack("{s:s,s:o}", "network", network, "netns",
                    eq + 1 == text + len
                        ? json_null()
                        : json_stringn(eq + 1, (size_t)(text + len - eq - 1))));
    }
    text += len + (end != NULL);
  }
  return list;
}

static json_t *node_json(const struct reg_node *node)
{
  return json_pack("{s:s,s:s,s:o,s:I,s:s,s:o}", "name", node->name, "state",
                   reg_node_state_name(node->state), "last_seen",
                   time_json(node->last_seen), "applied_seq",
                   (json_int_t)node->applied_seq, "version", node->version,
                   "networks", node_networks_json(node->networks));
}

/* ---- request helpers ---------------------------------------------------- */

/* Parses and checks the body; NULL after answering 400. */
static json_t *body_object(const struct api_request *req,
                           struct api_response *resp,
                           const struct api_json_field *fields, size_t n)
{
  struct api_json_error err;
  json_t *body = api_json_parse_object(req->body, req->body_len, &err);
  if (body == NULL) {
    respond_json_error(resp, &err);
    return NULL;
  }
  if (api_json_check(body, fields, n, &err) != 0) {
    respond_json_error(resp, &err);
    json_decref(body);
    return NULL;
  }
  return body;
}

/* Refuses any query parameter but those named (NULL-terminated). */
static bool query_ok(const struct api_request *req, struct api_response *resp,
                     const char *const *names)
{
  char bad[64];
  if (api_query_check(req->match->query, names, bad, sizeof bad) == 0)
    return true;
  api_respond_error(resp, 400, "UnknownField",
                    "unknown or repeated query parameter \"%s\"", bad);
  return false;
}

/* The query of a list route: ?limit=N&next_token=T, and ?state=S where the
 * route filters by state. */
struct list_query {
  enum reg_endpoint_state state;
  bool has_state;
  struct reg_page page;
  char token[REG_TOKEN_BUF];
};

static bool query_limit(const struct api_request *req,
                        struct api_response *resp, struct list_query *q)
{
  char value[32], *end;
  int r = api_query_get(req->match->query, "limit", value, sizeof value);
  unsigned long limit;

  if (r == -ENOENT)
    return true;
  errno = 0;
  limit = r == 0 && value[0] >= '0' && value[0] <= '9'
              ? strtoul(value, &end, 10)
              : 0;
  if (r != 0 || limit < 1 || limit > REG_PAGE_MAX || *end != '\0' ||
      errno != 0) {
    api_respond_error(resp, 400, "InvalidValue", "limit: must be 1..%d",
                      REG_PAGE_MAX);
    return false;
  }
  q->page.limit = limit;
  return true;
}

static bool query_state(const struct api_request *req,
                        struct api_response *resp, struct list_query *q)
{
  char value[64];
  int r = api_query_get(req->match->query, "state", value, sizeof value);

  if (r == -ENOENT)
    return true;
  if (r != 0 || reg_state_parse(value, &q->state) != 0) {
    api_respond_error(resp, 400, "InvalidValue",
                      "state: must be one of pendingAcceptance, available, "
                      "rejected, deleted, expired, failed");
    return false;
  }
  q->has_state = true;
  return true;
}

/* Reads the list query into *q; false after answering 400. */
static bool query_list(const struct api_request *req, struct api_response *resp,
                       bool with_state, struct list_query *q)
{
  static const char *const with[] = {"state", "limit", "next_token", NULL};
  static const char *const without[] = {"limit", "next_token", NULL};
  int r;

  memset(q, 0, sizeof *q);
  q->page.token = q->token;
  if (!query_ok(req, resp, with_state ? with : without) ||
      (with_state && !query_state(req, resp, q)) || !query_limit(req, resp, q))
    return false;
  r = api_query_get(req->match->query, "next_token", q->token, sizeof q->token);
  if (r != 0 && r != -ENOENT) {
    api_respond_error(resp, 400, "InvalidValue",
                      "next_token: not a token this API gave");
    return false;
  }
  return true;
}

/* {"KEY":[...], "next_token":"..."} (the token only while more remain). */
static void respond_list(struct api_response *resp, const char *key,
                         json_t *array, const char *next_token)
{
  json_t *value = json_pack("{s:o*}", key, array);

  if (value != NULL && next_token != NULL && next_token[0] != '\0')
    json_object_set_new(value, "next_token", json_string(next_token));
  respond_json(resp, 200, value);
}

static bool no_query(const struct api_request *req, struct api_response *resp)
{
  static const char *const none[] = {NULL};
  return query_ok(req, resp, none);
}

static const char *param(const struct api_request *req, size_t i)
{
  return req->match->params[i];
}

/* ---- provider routes ---------------------------------------------------- */

static void service_create(const struct api_request *req,
                           struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"name", API_JSON_STRING, true},
      {"load_balancer", API_JSON_STRING, true},
      {"acceptance_required", API_JSON_BOOL, false},
      {"allowed_principals", API_JSON_STRINGS, false},
      {"connection_limit", API_JSON_INTEGER, false},
      {"private_dns_name", API_JSON_STRING, false},
  };
  struct reg_service_params params = {0};
  struct reg_service service;
  struct reg_error err = {0};
  const char **principals = NULL;
  json_t *body, *v;

  if (!no_query(req, resp) ||
      (body = body_object(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  params.name = json_string_value(json_object_get(body, "name"));
  params.load_balancer =
      json_string_value(json_object_get(body, "load_balancer"));
  v = json_object_get(body, "acceptance_required");
  params.acceptance_required = v == NULL || json_is_true(v);
  v = json_object_get(body, "connection_limit");
  params.connection_limit = v != NULL ? json_integer_value(v) : 0;
  params.private_dns_name =
      json_string_value(json_object_get(body, "private_dns_name"));
  if (api_json_strings(json_object_get(body, "allowed_principals"), &principals,
                       &params.n_allowed_principals) != 0) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    goto out;
  }
  params.allowed_principals = principals;
  int r = reg_service_create(req->reg, &req->actor, &params, &service, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    goto out;
  }
  respond_json(resp, 201, service_json(&service));
  reg_service_release(&service);
out:
  free(principals);
  json_decref(body);
}

static void service_list(const struct api_request *req,
                         struct api_response *resp)
{
  struct reg_service *services = NULL;
  size_t n = 0;
  struct reg_error err = {0};
  struct list_query q;
  char next[REG_TOKEN_BUF];

  if (!query_list(req, resp, false, &q))
    return;
  int r = reg_service_list(req->reg, &req->actor, &q.page, &services, &n, next,
                           &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, service_json(&services[i]));
  reg_services_free(services, n);
  respond_list(resp, "services", array, next);
}

static void service_describe(const struct api_request *req,
                             struct api_response *resp)
{
  struct reg_service service;
  struct reg_error err = {0};

  if (!no_query(req, resp))
    return;
  int r = reg_service_describe(req->reg, &req->actor, param(req, 0), &service,
                               &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  respond_json(resp, 200, service_json(&service));
  reg_service_release(&service);
}

static void service_modify(const struct api_request *req,
                           struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"acceptance_required", API_JSON_BOOL, false},
      {"connection_limit", API_JSON_INTEGER, false},
      {"private_dns_name", API_JSON_STRING, false},
  };
  struct reg_service_changes changes = {0};
  struct reg_service service;
  struct reg_error err = {0};
  json_t *body, *v;

  if (!no_query(req, resp) ||
      (body = body_object(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  if ((v = json_object_get(body, "private_dns_name")) != NULL) {
    changes.set_private_dns_name = true;
    changes.private_dns_name = json_string_value(v);
  }
  if ((v = json_object_get(body, "acceptance_required")) != NULL) {
    changes.set_acceptance_required = true;
    changes.acceptance_required = json_is_true(v);
  }
  if ((v = json_object_get(body, "connection_limit")) != NULL) {
    changes.set_connection_limit = true;
    changes.connection_limit = json_integer_value(v);
  }
  int r = reg_service_modify(req->reg, &req->actor, param(req, 0), &changes,
                             &service, &err);
  json_decref(body); /* after: changes borrow its strings */
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  respond_json(resp, 200, service_json(&service));
  reg_service_release(&service);
}

/* Answers the service as it was before the delete. */
static void service_delete(const struct api_request *req,
                           struct api_response *resp)
{
  struct reg_service service;
  struct reg_error err = {0};

  if (!no_query(req, resp))
    return;
  int r = reg_service_describe(req->reg, &req->actor, param(req, 0), &service,
                               &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  r = reg_service_delete(req->reg, &req->actor, param(req, 0), &err);
  if (r != 0) {
    reg_service_release(&service);
    respond_reg_error(req, resp, r, &err);
    return;
  }
  service.state = "deleted";
  respond_json(resp, 200, service_json(&service));
  reg_service_release(&service);
}

static void respond_principals(struct api_response *resp, char **principals,
                               size_t n)
{
  respond_json(
      resp, 200,
      json_pack("{s:o*}", "allowed_principals", strings_json(principals, n)));
  reg_strings_free(principals, n);
}

static void permissions_get(const struct api_request *req,
                            struct api_response *resp)
{
  char **principals = NULL;
  size_t n = 0;
  struct reg_error err = {0};

  if (!no_query(req, resp))
    return;
  int r = reg_permissions_get(req->reg, &req->actor, param(req, 0), &principals,
                              &n, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  respond_principals(resp, principals, n);
}

static void permissions_modify(const struct api_request *req,
                               struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"add", API_JSON_STRINGS, false},
      {"remove", API_JSON_STRINGS, false},
      /* Extension: also reject the live endpoints of removed consumers. */
      {"reject_endpoints", API_JSON_BOOL, false},
  };
  const char **add = NULL, **remove = NULL;
  size_t n_add = 0, n_remove = 0, n = 0;
  char **principals = NULL;
  struct reg_error err = {0};
  json_t *body;

  if (!no_query(req, resp) ||
      (body = body_object(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  if (api_json_strings(json_object_get(body, "add"), &add, &n_add) != 0 ||
      api_json_strings(json_object_get(body, "remove"), &remove, &n_remove) !=
          0) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    goto out;
  }
  bool reconcile = json_is_true(json_object_get(body, "reject_endpoints"));
  int r = reg_permissions_modify(req->reg, &req->actor, param(req, 0), add,
                                 n_add, remove, n_remove, reconcile,
                                 &principals, &n, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    goto out;
  }
  respond_principals(resp, principals, n);
out:
  free(add);
  free(remove);
  json_decref(body);
}

static void connections_list(const struct api_request *req,
                             struct api_response *resp)
{
  struct reg_endpoint *endpoints = NULL;
  size_t n = 0;
  struct reg_error err = {0};
  struct list_query q;
  char next[REG_TOKEN_BUF];

  if (!query_list(req, resp, true, &q))
    return;
  int r = reg_connections_list(req->reg, &req->actor, param(req, 0),
                               q.has_state ? &q.state : NULL, &q.page,
                               &endpoints, &n, next, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, connection_json(&endpoints[i]));
  reg_endpoints_free(endpoints, n);
  respond_list(resp, "connections", array, next);
}

static void connections_decide(const struct api_request *req,
                               struct api_response *resp, bool accept)
{
  static const struct api_json_field fields[] = {
      {"endpoint_ids", API_JSON_STRINGS, true},
  };
  const char **ids = NULL;
  size_t n = 0;
  struct reg_item_result *results = NULL;
  struct reg_error err = {0};
  json_t *body;

  if (!no_query(req, resp) ||
      (body = body_object(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  if (api_json_strings(json_object_get(body, "endpoint_ids"), &ids, &n) != 0 ||
      (results = calloc(n > 0 ? n : 1, sizeof *results)) == NULL) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    goto out;
  }
  int r = (accept ? reg_connections_accept : reg_connections_reject)(
      req->reg, &req->actor, param(req, 0), ids, n, results, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    goto out;
  }
  json_t *unsuccessful = json_array();
  for (size_t i = 0; unsuccessful != NULL && i < n; i++) {
    if (results[i].code == 0)
      continue;
    const char *code;
    reg_status(results[i].code, &code);
    json_array_append_new(
        unsuccessful,
        json_pack("{s:s,s:{s:s,s:s}}", "endpoint_id", ids[i], "error", "code",
                  code, "message",
                  results[i].message[0] != '\0' ? results[i].message : code));
  }
  respond_json(resp, 200, json_pack("{s:o*}", "unsuccessful", unsuccessful));
out:
  free(results);
  free(ids);
  json_decref(body);
}

/* ---- consumer routes ---------------------------------------------------- */

static void available_services(const struct api_request *req,
                               struct api_response *resp)
{
  struct reg_service *services = NULL;
  size_t n = 0;
  struct reg_error err = {0};
  struct list_query q;
  char next[REG_TOKEN_BUF];

  if (!query_list(req, resp, false, &q))
    return;
  int r = reg_available_services(req->reg, &req->actor, &q.page, &services, &n,
                                 next, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, available_service_json(&services[i]));
  reg_services_free(services, n);
  respond_list(resp, "services", array, next);
}

static void endpoint_create(const struct api_request *req,
                            struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"service", API_JSON_STRING, true},
      {"network", API_JSON_STRING, true},
      {"address", API_JSON_STRING, false},
      {"allowed_sources", API_JSON_STRINGS, false},
      {"private_dns", API_JSON_BOOL, false},
  };
  struct reg_endpoint_params params = {0};
  struct reg_endpoint endpoint;
  struct reg_error err = {0};
  const char **sources = NULL;
  json_t *body;

  if (!no_query(req, resp) ||
      (body = body_object(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  params.service = json_string_value(json_object_get(body, "service"));
  params.network = json_string_value(json_object_get(body, "network"));
  params.address = json_string_value(json_object_get(body, "address"));
  params.private_dns = json_is_true(json_object_get(body, "private_dns"));
  if (api_json_strings(json_object_get(body, "allowed_sources"), &sources,
                       &params.n_allowed_sources) != 0) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    goto out;
  }
  params.allowed_sources = sources;
  int r = reg_endpoint_create(req->reg, &req->actor, &params, &endpoint, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    goto out;
  }
  respond_json(resp, 201, endpoint_json(&endpoint));
  reg_endpoint_release(&endpoint);
out:
  free(sources);
  json_decref(body);
}

static void endpoint_list(const struct api_request *req,
                          struct api_response *resp)
{
  struct reg_endpoint *endpoints = NULL;
  size_t n = 0;
  struct reg_error err = {0};
  struct list_query q;
  char next[REG_TOKEN_BUF];

  if (!query_list(req, resp, true, &q))
    return;
  int r =
      reg_endpoint_list(req->reg, &req->actor, q.has_state ? &q.state : NULL,
                        &q.page, &endpoints, &n, next, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, endpoint_json(&endpoints[i]));
  reg_endpoints_free(endpoints, n);
  respond_list(resp, "endpoints", array, next);
}

static void endpoint_describe(const struct api_request *req,
                              struct api_response *resp)
{
  struct reg_endpoint endpoint;
  struct reg_error err = {0};

  if (!no_query(req, resp))
    return;
  int r = reg_endpoint_describe(req->reg, &req->actor, param(req, 0), &endpoint,
                                &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  respond_json(resp, 200, endpoint_json(&endpoint));
  reg_endpoint_release(&endpoint);
}

static void endpoint_modify(const struct api_request *req,
                            struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"allowed_sources", API_JSON_STRINGS, false},
      {"private_dns", API_JSON_BOOL, false},
  };
  struct reg_endpoint_changes changes = {0};
  struct reg_endpoint endpoint;
  struct reg_error err = {0};
  const char **sources = NULL;
  json_t *body, *v;

  if (!no_query(req, resp) ||
      (body = body_object(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  if (json_object_size(body) == 0) {
    api_respond_error(resp, 400, "InvalidValue",
                      "nothing to change: give allowed_sources or "
                      "private_dns");
    goto out;
  }
  if ((v = json_object_get(body, "allowed_sources")) != NULL) {
    changes.set_allowed_sources = true;
    if (api_json_strings(v, &sources, &changes.n_allowed_sources) != 0) {
      api_respond_error(resp, 500, "Internal", "out of memory");
      goto out;
    }
    changes.allowed_sources = sources;
  }
  if ((v = json_object_get(body, "private_dns")) != NULL) {
    changes.set_private_dns = true;
    changes.private_dns = json_is_true(v);
  }
  int r = reg_endpoint_change(req->reg, &req->actor, param(req, 0), &changes,
                              &endpoint, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    goto out;
  }
  respond_json(resp, 200, endpoint_json(&endpoint));
  reg_endpoint_release(&endpoint);
out:
  free(sources);
  json_decref(body);
}

static void endpoint_delete(const struct api_request *req,
                            struct api_response *resp)
{
  struct reg_endpoint endpoint;
  struct reg_error err = {0};

  if (!no_query(req, resp))
    return;
  int r = reg_endpoint_delete(req->reg, &req->actor, param(req, 0), &endpoint,
                              &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  respond_json(resp, 200, endpoint_json(&endpoint));
  reg_endpoint_release(&endpoint);
}

/* ---- operator routes ---------------------------------------------------- */

struct group_list {
  json_t *groups;
  const char *only;  /* NULL: every group */
  const char *after; /* a page starts after this group; "" at the start */
  size_t limit;
  bool skipping;
  char next[REG_NAME_BUF]; /* the last group of a full page */
};

static void on_target_group(void *ctx, const char *group,
                            const struct api_target *targets, size_t n)
{
  struct group_list *list = ctx;
  if (list->only != NULL && strcmp(list->only, group) != 0)
    return;
  if (list->skipping) {
    list->skipping = strcmp(list->after, group) != 0;
    return;
  }
  if (json_array_size(list->groups) == list->limit) {
    /* More remain after a full page. */
    if (list->next[0] == '\0')
      snprintf(list->next, sizeof list->next, "%s",
               json_string_value(json_object_get(
                   json_array_get(list->groups, list->limit - 1), "name")));
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, target_json(&targets[i]));
  json_array_append_new(
      list->groups, json_pack("{s:s,s:o*}", "name", group, "targets", array));
}

static bool dataplane_ready(const struct api_request *req,
                            struct api_response *resp)
{
  if (req->server->dataplane != NULL &&
      req->server->dataplane->list_target_groups != NULL)
    return true;
  api_respond_error(resp, 503, "ServiceUnavailable",
                    "no data plane is attached to this API");
  return false;
}

/* GET /v1/target-groups pages by group name, in the config's order: a
 * token names the last group of the page before. */
static void target_groups(const struct api_request *req,
                          struct api_response *resp, const char *only)
{
  struct api_server *server = req->server;
  struct group_list list = {.groups = json_array(), .only = only};
  struct list_query q;

  if (!(only ? no_query(req, resp) : query_list(req, resp, false, &q)) ||
      !dataplane_ready(req, resp)) {
    json_decref(list.groups);
    return;
  }
  if (list.groups == NULL) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    return;
  }
  list.after = only ? "" : q.token;
  list.skipping = list.after[0] != '\0';
  list.limit = only || q.page.limit == 0 ? REG_PAGE_MAX : q.page.limit;
  server->dataplane->list_target_groups(server->dataplane_arg, on_target_group,
                                        &list);
  if (only == NULL) {
    respond_list(resp, "target_groups", list.groups, list.next);
  } else if (json_array_size(list.groups) == 0) {
    json_decref(list.groups);
    api_respond_error(resp, 404, "NotFound", "no target group named %s", only);
  } else {
    json_t *group = json_incref(json_array_get(list.groups, 0));
    json_decref(list.groups);
    respond_json(resp, 200, group);
  }
}

/* A run-time target as the registry holds it: it starts initial on every
 * node, and drains when deregistered. */
static json_t *registered_target_json(const struct reg_target *t,
                                      const char *state)
{
  return json_pack("{s:s,s:I,s:s,s:s}", "address", t->address, "weight",
                   (json_int_t)t->weight, "state", state, "reason", "");
}

static void target_register(const struct api_request *req,
                            struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"address", API_JSON_STRING, true},
      {"weight", API_JSON_INTEGER, false},
  };
  struct reg_target target;
  struct reg_error err = {0};
  json_t *body, *v;

  if (!no_query(req, resp) ||
      (body = body_object(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  const char *address = json_string_value(json_object_get(body, "address"));
  json_int_t weight = 1;
  if ((v = json_object_get(body, "weight")) != NULL)
    weight = json_integer_value(v);
  if (weight < 1 || weight > REG_MAX_TARGET_WEIGHT) {
    api_respond_error(resp, 400, "InvalidValue", "weight: must be 1..%d",
                      REG_MAX_TARGET_WEIGHT);
  } else {
    int r = reg_target_register(req->reg, &req->actor, param(req, 0), address,
                                (uint32_t)weight, &target, &err);
    if (r != 0)
      respond_reg_error(req, resp, r, &err);
    else
      respond_json(resp, 201, registered_target_json(&target, "initial"));
  }
  json_decref(body);
}

static void target_deregister(const struct api_request *req,
                              struct api_response *resp)
{
  struct reg_target target;
  struct reg_error err = {0};

  if (!no_query(req, resp))
    return;
  int r = reg_target_deregister(req->reg, &req->actor, param(req, 0),
                                param(req, 1), &target, &err);
  if (r != 0)
    respond_reg_error(req, resp, r, &err);
  else
    respond_json(resp, 200, registered_target_json(&target, "draining"));
}

/* ---- nodes -------------------------------------------------------------- */

static void node_list(const struct api_request *req, struct api_response *resp)
{
  struct reg_node *nodes = NULL;
  struct reg_error err = {0};
  struct list_query q;
  size_t n = 0, first = 0, shown = 0;
  char next[REG_NAME_BUF] = "";

  if (!query_list(req, resp, false, &q))
    return;
  int r = reg_nodes_list(req->reg, &req->actor, &nodes, &n, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  /* By name: a token is the last name of the page before. */
  while (q.token[0] != '\0' && first < n &&
         strcmp(nodes[first].name, q.token) <= 0)
    first++;
  json_t *array = json_array();
  for (size_t i = first; array != NULL && i < n; i++) {
    if (q.page.limit != 0 && shown == q.page.limit) {
      snprintf(next, sizeof next, "%s", nodes[i - 1].name);
      break;
    }
    json_array_append_new(array, node_json(&nodes[i]));
    shown++;
  }
  free(nodes);
  respond_list(resp, "nodes", array, next);
}

static void node_drain(const struct api_request *req, struct api_response *resp)
{
  struct reg_node node;
  struct reg_error err = {0};

  if (!no_query(req, resp))
    return;
  int r = reg_node_drain(req->reg, &req->actor, param(req, 0), &node, &err);
  if (r != 0)
    respond_reg_error(req, resp, r, &err);
  else
    respond_json(resp, 200, node_json(&node));
}

/* ---- tenancy (operator) ------------------------------------------------- */

static json_t *principal_json(const struct reg_principal_info *p)
{
  json_t *value = json_pack("{s:s,s:s,s:s}", "name", p->name, "role",
                            reg_role_name(p->role), "source",
                            p->from_config ? "config" : "api");
  if (value != NULL && !p->from_config)
    json_object_set_new(value, "created_at", time_json(p->created_at));
  return value;
}

static json_t *optional_time(int64_t unix_ms)
{
  return unix_ms != 0 ? time_json(unix_ms) : json_null();
}

static json_t *token_json(const struct reg_token *t)
{
  return json_pack("{s:s,s:o,s:o,s:o}", "id", t->id, "created_at",
                   time_json(t->created_at), "expires_at",
                   optional_time(t->expires_at), "last_used_at",
                   optional_time(t->last_used_at));
}

static json_t *network_json(const struct reg_network_info *n)
{
  json_t *value =
      json_pack("{s:s,s:s,s:o,s:o,s:s}", "name", n->name, "range", n->range,
                "netns", n->netns[0] ? json_string(n->netns) : json_null(),
                "principals", strings_json(n->principals, n->n_principals),
                "source", n->from_config ? "config" : "api");
  if (value != NULL && !n->from_config)
    json_object_set_new(value, "created_at", time_json(n->created_at));
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
  respond_json(resp, 201, value);
}

static void principal_create(const struct api_request *req,
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

  if (!no_query(req, resp) ||
      (body = body_object(req, resp, fields, N_FIELDS(fields))) == NULL)
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
      respond_reg_error(req, resp, r, &err);
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
                               const struct list_query *q, const char *key,
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
  respond_list(resp, key, array, next);
}

static json_t *principal_item_json(const void *item)
{
  return principal_json(item);
}

static json_t *network_item_json(const void *item)
{
  return network_json(item);
}

static void principal_list(const struct api_request *req,
                           struct api_response *resp)
{
  struct named_items items = {NULL, 0, sizeof(struct reg_principal_info),
                              principal_item_json};
  struct reg_error err = {0};
  struct list_query q;

  if (!query_list(req, resp, false, &q))
    return;
  int r = reg_principals_list(req->reg, &req->actor,
                              (struct reg_principal_info **)&items.v, &items.n,
                              &err);
  if (r != 0)
    respond_reg_error(req, resp, r, &err);
  else
    respond_named_page(resp, &q, "principals", &items);
  free(items.v);
}

static void principal_delete(const struct api_request *req,
                             struct api_response *resp)
{
  struct reg_error err = {0};

  if (!no_query(req, resp))
    return;
  int r = reg_principal_delete(req->reg, &req->actor, param(req, 0), &err);
  if (r != 0)
    respond_reg_error(req, resp, r, &err);
  else
    respond_json(resp, 200, json_pack("{s:s}", "name", param(req, 0)));
}

static void token_create(const struct api_request *req,
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

  if (!no_query(req, resp))
    return;
  /* An empty body is no expiry. */
  body = req->body_len == 0 ? json_object()
                            : body_object(req, resp, fields, N_FIELDS(fields));
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
    int r = reg_token_create(req->reg, &req->actor, param(req, 0), sha256, id,
                             expires_at, &made, &err);
    if (r != 0)
      respond_reg_error(req, resp, r, &err);
    else
      respond_token(resp, token_json(&made), token, NULL);
  }
  OPENSSL_cleanse(token, sizeof token);
  json_decref(body);
}

static void token_list(const struct api_request *req, struct api_response *resp)
{
  struct reg_token *v = NULL;
  struct reg_error err = {0};
  struct list_query q;
  char next[REG_ID_BUF] = "";
  size_t n = 0, first = 0, shown = 0;

  if (!query_list(req, resp, false, &q))
    return;
  int r = reg_tokens_list(req->reg, &req->actor, param(req, 0), &v, &n, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
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
  respond_list(resp, "tokens", array, next);
}

static void token_revoke(const struct api_request *req,
                         struct api_response *resp)
{
  struct reg_error err = {0};

  if (!no_query(req, resp))
    return;
  int r = reg_token_revoke(req->reg, &req->actor, param(req, 0), param(req, 1),
                           &err);
  if (r != 0)
    respond_reg_error(req, resp, r, &err);
  else
    respond_json(
        resp, 200,
        json_pack("{s:s,s:s}", "id", param(req, 1), "state", "revoked"));
}

static void network_create(const struct api_request *req,
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

  if (!no_query(req, resp) ||
      (body = body_object(req, resp, fields, N_FIELDS(fields))) == NULL)
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
    respond_reg_error(req, resp, r, &err);
    goto out;
  }
  respond_json(resp, 201, network_json(&made));
  reg_strings_free(made.principals, made.n_principals);
out:
  free(principals);
  json_decref(body);
}

static void network_list(const struct api_request *req,
                         struct api_response *resp)
{
  struct named_items items = {NULL, 0, sizeof(struct reg_network_info),
                              network_item_json};
  struct reg_error err = {0};
  struct list_query q;

  if (!query_list(req, resp, false, &q))
    return;
  int r =
      reg_networks_list(req->reg, &req->actor,
                        (struct reg_network_info **)&items.v, &items.n, &err);
  if (r != 0)
    respond_reg_error(req, resp, r, &err);
  else
    respond_named_page(resp, &q, "networks", &items);
  reg_networks_free(items.v, items.n);
}

static void network_delete(const struct api_request *req,
                           struct api_response *resp)
{
  struct reg_error err = {0};

  if (!no_query(req, resp))
    return;
  int r = reg_network_delete(req->reg, &req->actor, param(req, 0), &err);
  if (r != 0)
    respond_reg_error(req, resp, r, &err);
  else
    respond_json(resp, 200, json_pack("{s:s}", "name", param(req, 0)));
}

/* ---- events ------------------------------------------------------------- */

static int append_line(json_t *value, char **buf, size_t *len)
{
  size_t line_len;
  char *line = value != NULL ? api_json_dump(value, &line_len) : NULL;
  char *grown = line != NULL ? realloc(*buf, *len + line_len) : NULL;

  json_decref(value);
  if (grown == NULL) {
    free(line);
    return -ENOMEM;
  }
  memcpy(grown + *len, line, line_len);
  *buf = grown;
  *len += line_len;
  free(line);
  return 0;
}

int api_events_read(struct reg *reg, const struct reg_actor *actor,
                    uint64_t *cursor, size_t limit, char **buf, size_t *len)
{
  struct reg_event *events = NULL;
  size_t n = 0;
  uint64_t first, through;
  int r = reg_first_seq(reg, &first);

  /* Events after the cursor were pruned while this reader lagged: it
   * cannot be given a complete sequence any more. */
  if (r == 0 && *cursor + 1 < first)
    r = -ESTALE;
  if (r == 0)
    r = reg_events_after(reg, actor, *cursor, limit, &events, &n, &through);
  for (size_t i = 0; r == 0 && i < n; i++)
    r = append_line(event_json(&events[i]), buf, len);
  free(events);
  if (r < 0)
    return r;
  *cursor = through;
  return (int)n;
}

static void events(const struct api_request *req, struct api_response *resp)
{
  static const char *const names[] = {"after", NULL};
  char value[32], *end;
  uint64_t after;

  if (!query_ok(req, resp, names))
    return;
  int r = api_query_get(req->match->query, "after", value, sizeof value);
  if (r == -ENOENT) {
    /* No cursor: only what happens from now on. */
    if (reg_last_seq(req->reg, &after) != 0) {
      api_respond_error(resp, 500, "Internal", "cannot read the event log");
      return;
    }
  } else {
    errno = 0;
    after = r == 0 && value[0] >= '0' && value[0] <= '9'
                ? strtoull(value, &end, 10)
                : 0;
    if (r != 0 || value[0] < '0' || value[0] > '9' || *end != '\0' ||
        errno != 0) {
      api_respond_error(resp, 400, "InvalidValue",
                        "after: must be an event sequence number");
      return;
    }
    uint64_t first;
    if (reg_first_seq(req->reg, &first) != 0) {
      api_respond_error(resp, 500, "Internal", "cannot read the event log");
      return;
    }
    if (after + 1 < first) {
      /* Like a Kubernetes watch on a compacted revision: the client must
       * read the current state again, then follow from there. */
      api_respond_error(resp, 410, "EventsPruned",
                        "events after %llu are no longer kept "
                        "(registry.event_retention); the oldest kept is %llu: "
                        "read the current state, then follow with after=%llu",
                        (unsigned long long)after, (unsigned long long)first,
                        (unsigned long long)(first - 1));
      return;
    }
  }
  resp->status = 200;
  resp->content_type = "application/x-ndjson";
  resp->events = true;
  resp->events_after = after;
}

/* ---- metrics and health ------------------------------------------------- */

struct text {
  char *data;
  size_t len, cap;
  bool failed;
};

static void text_add(struct text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void text_add(struct text *t, const char *fmt, ...)
{
  va_list ap;
  for (;;) {
    if (t->failed)
      return;
    size_t room = t->cap - t->len;
    va_start(ap, fmt);
    int n = vsnprintf(t->data != NULL ? t->data + t->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
      t->failed = true;
      return;
    }
    if ((size_t)n < room) {
      t->len += (size_t)n;
      return;
    }
    size_t cap = t->cap * 2 + (size_t)n + 256;
    char *data = realloc(t->data, cap);
    if (data == NULL) {
      t->failed = true;
      return;
    }
    t->data = data;
    t->cap = cap;
  }
}

/* Prometheus label values escape \, " and newline. Names in the registry
 * are [A-Za-z0-9._-], but the escape keeps that an assumption, not a
 * requirement. */
static void text_add_label(struct text *t, const char *value)
{
  for (const char *c = value; *c != '\0'; c++) {
    if (*c == '\\' || *c == '"')
      text_add(t, "\\%c", *c);
    else if (*c == '\n')
      text_add(t, "\\n");
    else
      text_add(t, "%c", *c);
  }
}

/* Names a provider's metrics scope is made of (owned copies). */
struct names {
  char **items;
  size_t n;
  bool failed;
};

static void names_add(struct names *names, const char *name)
{
  char **grown;
  for (size_t i = 0; i < names->n; i++)
    if (strcmp(names->items[i], name) == 0)
      return;
  grown = realloc(names->items, (names->n + 1) * sizeof(*grown));
  if (grown == NULL || (grown[names->n] = strdup(name)) == NULL) {
    names->items = grown != NULL ? grown : names->items;
    names->failed = true;
    return;
  }
  names->items = grown;
  names->n++;
}

static bool names_have(const struct names *names, const char *name)
{
  for (size_t i = 0; i < names->n; i++)
    if (strcmp(names->items[i], name) == 0)
      return true;
  return false;
}

static void names_free(struct names *names)
{
  for (size_t i = 0; i < names->n; i++)
    free(names->items[i]);
  free(names->items);
}

/* What a provider may see in /metrics: its services, their load balancers
 * and their endpoints, read on the registry's thread and used on the
 * control thread to choose the data plane's series. */
struct metrics_scope {
  struct names services, lbs, endpoints;
  int result;
};

void api_metrics_scope_free(struct metrics_scope *scope)
{
  if (scope == NULL)
    return;
  names_free(&scope->services);
  names_free(&scope->lbs);
  names_free(&scope->endpoints);
  free(scope);
}

static void read_service_endpoints(struct reg *reg,
                                   const struct reg_actor *actor,
                                   struct metrics_scope *scope,
                                   const char *service_id)
{
  char token[REG_TOKEN_BUF] = "", next[REG_TOKEN_BUF];
  do {
    const struct reg_page page = {0, token};
    struct reg_endpoint *list = NULL;
    size_t n = 0;
    scope->result = reg_connections_list(reg, actor, service_id, NULL, &page,
                                         &list, &n, next, NULL);
    if (scope->result < 0)
      return;
    for (size_t i = 0; i < n; i++)
      names_add(&scope->endpoints, list[i].id);
    reg_endpoints_free(list, n);
    snprintf(token, sizeof(token), "%s", next);
  } while (token[0] != '\0');
}

static void read_scope(struct reg *reg, const struct reg_actor *actor,
                       struct metrics_scope *scope)
{
  char token[REG_TOKEN_BUF] = "", next[REG_TOKEN_BUF];
  do {
    const struct reg_page page = {0, token};
    struct reg_service *services = NULL;
    size_t n = 0;
    scope->result =
        reg_service_list(reg, actor, &page, &services, &n, next, NULL);
    if (scope->result < 0)
      return;
    for (size_t i = 0; i < n && scope->result == 0; i++) {
      names_add(&scope->services, services[i].name);
      names_add(&scope->lbs, services[i].load_balancer);
      read_service_endpoints(reg, actor, scope, services[i].id);
    }
    reg_services_free(services, n);
    snprintf(token, sizeof(token), "%s", next);
  } while (token[0] != '\0' && scope->result == 0);
}

/* nlb_endpoints{service,state}: every state of each service that has
 * endpoints (the store answers by service and state, sorted so); only the
 * services named in only, when it is not NULL. */
static void endpoint_metrics(struct reg *reg, struct text *t,
                             const struct names *only)
{
  struct reg_endpoint_count *counts = NULL;
  size_t n = 0;

  text_add(t, "# HELP nlb_endpoints Endpoints by service and state.\n"
              "# TYPE nlb_endpoints gauge\n");
  if (reg == NULL || reg_endpoint_counts(reg, &counts, &n) != 0)
    n = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t by_state[REG_EP_STATE_COUNT] = {0};
    size_t k = i;

    for (; k < n && strcmp(counts[k].service, counts[i].service) == 0; k++)
      by_state[counts[k].state] += counts[k].count;
    for (int st = 0; st < REG_EP_STATE_COUNT &&
                     (only == NULL || names_have(only, counts[i].service));
         st++) {
      text_add(t, "nlb_endpoints{service=\"");
      text_add_label(t, counts[i].service);
      text_add(t, "\",state=\"%s\"} %" PRIu64 "\n", reg_state_name(st),
               by_state[st]);
    }
    i = k - 1;
  }
  free(counts);
}

/* The registry's part of /metrics, on its thread: an operator's every
 * service, a provider's own (and what it may see of the data plane, for
 * api_handle_finish). */
static void metrics(const struct api_request *req, struct api_response *resp)
{
  struct metrics_scope *scope = NULL;
  struct text t = {0};

  if (!no_query(req, resp))
    return;
  if (req->actor.role != REG_ROLE_OPERATOR) {
    if ((scope = calloc(1, sizeof(*scope))) == NULL) {
      api_respond_error(resp, 500, "Internal", "out of memory");
      return;
    }
    if (req->reg != NULL)
      read_scope(req->reg, &req->actor, scope);
  }
  endpoint_metrics(req->reg, &t, scope ? &scope->services : NULL);
  if (t.failed || (scope && (scope->services.failed || scope->lbs.failed ||
                             scope->endpoints.failed))) {
    free(t.data);
    api_metrics_scope_free(scope);
    api_respond_error(resp, 500, "Internal", "out of memory");
    return;
  }
  free(resp->body);
  resp->status = 200;
  resp->body = t.data;
  resp->len = t.len;
  resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
  resp->metrics_scope = scope;
}

static void dataplane_metrics(struct api_server *server, struct text *t,
                              const struct api_metrics_scope *scope)
{
  char *more;
  size_t n;

  if (server->dataplane == NULL || server->dataplane->metrics_text == NULL)
    return;
  more = server->dataplane->metrics_text(server->dataplane_arg, scope);
  if (more == NULL)
    return;
  n = strlen(more);
  text_add(t, "%s%s", more, n > 0 && more[n - 1] != '\n' ? "\n" : "");
  free(more);
}

/* The control thread's part of /metrics: for an operator, the API's own
 * counts before the registry's and every data-plane series after; for a
 * provider, the series of its own listeners and endpoints only, and
 * nothing of the API, the targets or the process. */
static void metrics_finish(struct api_server *server, struct api_response *resp)
{
  struct metrics_scope *mine = resp->metrics_scope;
  struct text t = {0};

  resp->metrics_scope = NULL;
  if (mine == NULL) {
    text_add(&t, "# HELP nlb_api_requests_total API requests answered, by "
                 "HTTP status.\n"
                 "# TYPE nlb_api_requests_total counter\n");
    for (int s = API_STATUS_MIN; s <= API_STATUS_MAX; s++) {
      uint64_t count = server->requests_by_status[s - API_STATUS_MIN];
      if (count > 0)
        text_add(&t, "nlb_api_requests_total{code=\"%d\"} %" PRIu64 "\n", s,
                 count);
    }
    char *admission = api_admission_metrics(server);
    if (admission == NULL)
      t.failed = true;
    else
      text_add(&t, "%s", admission);
    free(admission);
    char *output = api_output_metrics(server);
    if (output == NULL)
      t.failed = true;
    else
      text_add(&t, "%s", output);
    free(output);
  }
  text_add(&t, "%.*s", (int)resp->len, resp->body);
  if (mine == NULL) {
    dataplane_metrics(server, &t, NULL);
  } else {
    const struct api_metrics_scope scope = {
        (const char *const *)mine->lbs.items, mine->lbs.n,
        (const char *const *)mine->endpoints.items, mine->endpoints.n};
    dataplane_metrics(server, &t, &scope);
  }
  api_metrics_scope_free(mine);
  if (t.failed) {
    free(t.data);
    api_respond_error(resp, 500, "Internal", "out of memory");
    return;
  }
  free(resp->body);
  resp->body = t.data;
  resp->len = t.len;
}

static void healthz(const struct api_request *req, struct api_response *resp)
{
  free(resp->body);
  resp->body = strdup("ok\n");
  resp->len = resp->body != NULL ? 3 : 0;
  resp->status = 200;
  resp->content_type = "text/plain; charset=utf-8";
}

/* The compiled-in docs/openapi.yaml: the same bytes on every request,
 * written from where they are (87 KB: a copy per request let clients that
 * do not read make nlbd hold hundreds of them). */
static void openapi(const struct api_request *req, struct api_response *resp)
{
  if (!no_query(req, resp))
    return;
  free(resp->body);
  resp->body = NULL;
  resp->static_body = (const char *)api_openapi_yaml;
  resp->len = api_openapi_yaml_len;
  resp->status = 200;
  resp->content_type = "application/yaml";
}

/* Routes that run on the control thread: they need no registry. */
static bool needs_registry(enum api_route_id id)
{
  switch (id) {
  case API_ROUTE_HEALTHZ:
  case API_ROUTE_OPENAPI:
  case API_ROUTE_TARGET_GROUP_LIST:
  case API_ROUTE_TARGET_GROUP_DESCRIBE:
    return false;
  default:
    return true;
  }
}

bool api_route_remote(const struct api_server *server,
                      const struct api_route *route)
{
  return server->registry != NULL && needs_registry(route->id);
}

static void route(const struct api_request *req, struct api_response *resp)
{
  switch (req->match->route->id) {
  case API_ROUTE_HEALTHZ:
    healthz(req, resp);
    break;
  case API_ROUTE_METRICS:
    metrics(req, resp);
    break;
  case API_ROUTE_OPENAPI:
    openapi(req, resp);
    break;
  case API_ROUTE_SERVICE_CREATE:
    service_create(req, resp);
    break;
  case API_ROUTE_SERVICE_LIST:
    service_list(req, resp);
    break;
  case API_ROUTE_SERVICE_DESCRIBE:
    service_describe(req, resp);
    break;
  case API_ROUTE_SERVICE_MODIFY:
    service_modify(req, resp);
    break;
  case API_ROUTE_SERVICE_DELETE:
    service_delete(req, resp);
    break;
  case API_ROUTE_PERMISSIONS_GET:
    permissions_get(req, resp);
    break;
  case API_ROUTE_PERMISSIONS_MODIFY:
    permissions_modify(req, resp);
    break;
  case API_ROUTE_CONNECTIONS_LIST:
    connections_list(req, resp);
    break;
  case API_ROUTE_CONNECTIONS_ACCEPT:
    connections_decide(req, resp, true);
    break;
  case API_ROUTE_CONNECTIONS_REJECT:
    connections_decide(req, resp, false);
    break;
  case API_ROUTE_AVAILABLE_SERVICES:
    available_services(req, resp);
    break;
  case API_ROUTE_ENDPOINT_CREATE:
    endpoint_create(req, resp);
    break;
  case API_ROUTE_ENDPOINT_LIST:
    endpoint_list(req, resp);
    break;
  case API_ROUTE_ENDPOINT_DESCRIBE:
    endpoint_describe(req, resp);
    break;
  case API_ROUTE_ENDPOINT_MODIFY:
    endpoint_modify(req, resp);
    break;
  case API_ROUTE_ENDPOINT_DELETE:
    endpoint_delete(req, resp);
    break;
  case API_ROUTE_TARGET_GROUP_LIST:
    target_groups(req, resp, NULL);
    break;
  case API_ROUTE_TARGET_GROUP_DESCRIBE:
    target_groups(req, resp, param(req, 0));
    break;
  case API_ROUTE_TARGET_REGISTER:
    target_register(req, resp);
    break;
  case API_ROUTE_TARGET_DEREGISTER:
    target_deregister(req, resp);
    break;
  case API_ROUTE_EVENTS:
    events(req, resp);
    break;
  case API_ROUTE_NODE_LIST:
    node_list(req, resp);
    break;
  case API_ROUTE_NODE_DRAIN:
    node_drain(req, resp);
    break;
  case API_ROUTE_PRINCIPAL_CREATE:
    principal_create(req, resp);
    break;
  case API_ROUTE_PRINCIPAL_LIST:
    principal_list(req, resp);
    break;
  case API_ROUTE_PRINCIPAL_DELETE:
    principal_delete(req, resp);
    break;
  case API_ROUTE_TOKEN_CREATE:
    token_create(req, resp);
    break;
  case API_ROUTE_TOKEN_LIST:
    token_list(req, resp);
    break;
  case API_ROUTE_TOKEN_REVOKE:
    token_revoke(req, resp);
    break;
  case API_ROUTE_NETWORK_CREATE:
    network_create(req, resp);
    break;
  case API_ROUTE_NETWORK_LIST:
    network_list(req, resp);
    break;
  case API_ROUTE_NETWORK_DELETE:
    network_delete(req, resp);
    break;
  case API_ROUTE_COUNT:
    api_respond_error(resp, 404, "NotFound", "no such route");
    break;
  }
}

void api_handle(const struct api_request *req, struct api_response *resp)
{
  enum api_route_id id = req->match->route->id;

  if (req->reg == NULL && needs_registry(id) && id != API_ROUTE_METRICS)
    api_respond_error(resp, 503, "ServiceUnavailable",
                      "this nlbd has no registry: endpoint services are off");
  else
    route(req, resp);
  if (resp->body == NULL && resp->static_body == NULL && !resp->events)
    api_respond_error(resp, 500, "Internal", "out of memory");
}

void api_handle_finish(struct api_server *server, const struct api_route *route,
                       struct api_response *resp)
{
  if (route->id == API_ROUTE_METRICS && resp->status == 200)
    metrics_finish(server, resp);
}
