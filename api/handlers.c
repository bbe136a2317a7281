/* One handler per route: validate the request, call the registry or the
 * data plane, shape the answer as SPEC.md says. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api-int.h"
#include "nlb/api-json.h"

#define N_FIELDS(f) (sizeof(f) / sizeof((f)[0]))

/* Longest target address the API passes to the data plane. */
#define TARGET_ADDRESS_MAX 63
#define TARGET_WEIGHT_MAX 1000

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
  return json_pack("{s:s,s:s,s:s,s:s,s:o,s:s,s:b,s:o,s:I,s:o}", "id", s->id,
                   "name", s->name, "owner", s->owner, "load_balancer",
                   s->load_balancer, "ports", ports_json(s->ports, s->n_ports),
                   "state", s->state, "acceptance_required",
                   s->acceptance_required, "allowed_principals",
                   strings_json(s->allowed_principals, s->n_allowed_principals),
                   "connection_limit", (json_int_t)s->connection_limit,
                   "created_at", time_json(s->created_at));
}

static json_t *available_service_json(const struct reg_service *s)
{
  return json_pack("{s:s,s:s,s:s,s:o,s:b}", "id", s->id, "name", s->name,
                   "owner", s->owner, "ports", ports_json(s->ports, s->n_ports),
                   "acceptance_required", s->acceptance_required);
}

static json_t *connection_json(const struct reg_endpoint *e)
{
  return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o}", "endpoint_id", e->id,
                   "consumer", e->consumer, "state", reg_state_name(e->state),
                   "network", e->network, "address", e->address, "created_at",
                   time_json(e->created_at), "updated_at",
                   time_json(e->updated_at));
}

static json_t *endpoint_json(const struct reg_endpoint *e)
{
  return json_pack(
      "{s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:s,s:o,s:o,s:o}", "id", e->id,
      "service_id", e->service_id, "service", e->service, "consumer",
      e->consumer, "network", e->network, "address", e->address, "ports",
      ports_json(e->ports, e->n_ports), "state", reg_state_name(e->state),
      "reason", e->reason, "allowed_sources",
      strings_json(e->allowed_sources, e->n_allowed_sources), "created_at",
      time_json(e->created_at), "updated_at", time_json(e->updated_at));
}

static json_t *target_json(const struct api_target *t)
{
  return json_pack("{s:s,s:I,s:s,s:s}", "address", t->address, "weight",
                   (json_int_t)t->weight, "state",
                   t->state != NULL ? t->state : "unused", "reason",
                   t->reason != NULL ? t->reason : "");
}

static json_t *event_json(const struct reg_event *ev)
{
  return json_pack("{s:I,s:o,s:s,s:s,s:s,s:s,s:s}", "seq", (json_int_t)ev->seq,
                   "time", time_json(ev->time), "type",
                   reg_event_type_name(ev->type), "service_id", ev->service_id,
                   "endpoint_id", ev->endpoint_id, "principal", ev->principal,
                   "state", reg_state_name(ev->state));
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

/* Reads ?state=S into *state; false after answering 400. */
static bool query_state(const struct api_request *req,
                        struct api_response *resp,
                        enum reg_endpoint_state *state, bool *has_state)
{
  static const char *const names[] = {"state", NULL};
  char value[64];
  *has_state = false;
  if (!query_ok(req, resp, names))
    return false;
  int r = api_query_get(req->match->query, "state", value, sizeof value);
  if (r == -ENOENT)
    return true;
  if (r != 0 || reg_state_parse(value, state) != 0) {
    api_respond_error(resp, 400, "InvalidValue",
                      "state: must be one of pendingAcceptance, available, "
                      "rejected, deleted, expired, failed");
    return false;
  }
  *has_state = true;
  return true;
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
  if (api_json_strings(json_object_get(body, "allowed_principals"), &principals,
                       &params.n_allowed_principals) != 0) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    goto out;
  }
  params.allowed_principals = principals;
  int r = reg_service_create(req->server->registry, &req->actor, &params,
                             &service, &err);
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

  if (!no_query(req, resp))
    return;
  int r =
      reg_service_list(req->server->registry, &req->actor, &services, &n, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, service_json(&services[i]));
  reg_services_free(services, n);
  respond_json(resp, 200, json_pack("{s:o*}", "services", array));
}

static void service_describe(const struct api_request *req,
                             struct api_response *resp)
{
  struct reg_service service;
  struct reg_error err = {0};

  if (!no_query(req, resp))
    return;
  int r = reg_service_describe(req->server->registry, &req->actor,
                               param(req, 0), &service, &err);
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
  };
  struct reg_service_changes changes = {0};
  struct reg_service service;
  struct reg_error err = {0};
  json_t *body, *v;

  if (!no_query(req, resp) ||
      (body = body_object(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  if ((v = json_object_get(body, "acceptance_required")) != NULL) {
    changes.set_acceptance_required = true;
    changes.acceptance_required = json_is_true(v);
  }
  if ((v = json_object_get(body, "connection_limit")) != NULL) {
    changes.set_connection_limit = true;
    changes.connection_limit = json_integer_value(v);
  }
  json_decref(body);
  int r = reg_service_modify(req->server->registry, &req->actor, param(req, 0),
                             &changes, &service, &err);
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
  int r = reg_service_describe(req->server->registry, &req->actor,
                               param(req, 0), &service, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  r = reg_service_delete(req->server->registry, &req->actor, param(req, 0),
                         &err);
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
  int r = reg_permissions_get(req->server->registry, &req->actor, param(req, 0),
                              &principals, &n, &err);
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
  int r = reg_permissions_modify(req->server->registry, &req->actor,
                                 param(req, 0), add, n_add, remove, n_remove,
                                 reconcile, &principals, &n, &err);
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
  enum reg_endpoint_state state;
  bool has_state;
  struct reg_endpoint *endpoints = NULL;
  size_t n = 0;
  struct reg_error err = {0};

  if (!query_state(req, resp, &state, &has_state))
    return;
  int r =
      reg_connections_list(req->server->registry, &req->actor, param(req, 0),
                           has_state ? &state : NULL, &endpoints, &n, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, connection_json(&endpoints[i]));
  reg_endpoints_free(endpoints, n);
  respond_json(resp, 200, json_pack("{s:o*}", "connections", array));
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
      req->server->registry, &req->actor, param(req, 0), ids, n, results, &err);
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

  if (!no_query(req, resp))
    return;
  int r = reg_available_services(req->server->registry, &req->actor, &services,
                                 &n, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, available_service_json(&services[i]));
  reg_services_free(services, n);
  respond_json(resp, 200, json_pack("{s:o*}", "services", array));
}

static void endpoint_create(const struct api_request *req,
                            struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"service", API_JSON_STRING, true},
      {"network", API_JSON_STRING, true},
      {"address", API_JSON_STRING, false},
      {"allowed_sources", API_JSON_STRINGS, false},
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
  if (api_json_strings(json_object_get(body, "allowed_sources"), &sources,
                       &params.n_allowed_sources) != 0) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    goto out;
  }
  params.allowed_sources = sources;
  int r = reg_endpoint_create(req->server->registry, &req->actor, &params,
                              &endpoint, &err);
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
  enum reg_endpoint_state state;
  bool has_state;
  struct reg_endpoint *endpoints = NULL;
  size_t n = 0;
  struct reg_error err = {0};

  if (!query_state(req, resp, &state, &has_state))
    return;
  int r = reg_endpoint_list(req->server->registry, &req->actor,
                            has_state ? &state : NULL, &endpoints, &n, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, endpoint_json(&endpoints[i]));
  reg_endpoints_free(endpoints, n);
  respond_json(resp, 200, json_pack("{s:o*}", "endpoints", array));
}

static void endpoint_describe(const struct api_request *req,
                              struct api_response *resp)
{
  struct reg_endpoint endpoint;
  struct reg_error err = {0};

  if (!no_query(req, resp))
    return;
  int r = reg_endpoint_describe(req->server->registry, &req->actor,
                                param(req, 0), &endpoint, &err);
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
      {"allowed_sources", API_JSON_STRINGS, true},
  };
  struct reg_endpoint endpoint;
  struct reg_error err = {0};
  const char **sources = NULL;
  size_t n = 0;
  json_t *body;

  if (!no_query(req, resp) ||
      (body = body_object(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  if (api_json_strings(json_object_get(body, "allowed_sources"), &sources,
                       &n) != 0) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    goto out;
  }
  int r = reg_endpoint_modify(req->server->registry, &req->actor, param(req, 0),
                              sources, n, &endpoint, &err);
  if (r != 0) {
    respond_reg_error(req, resp, r, &err);
    goto out;
  }
  /* The registry has no event for a modify: tell the data plane, so the
   * new allow-list applies to new flows at once. */
  if (req->server->dataplane != NULL &&
      req->server->dataplane->endpoint_changed != NULL)
    req->server->dataplane->endpoint_changed(req->server->dataplane_arg,
                                             endpoint.id);
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
  int r = reg_endpoint_delete(req->server->registry, &req->actor, param(req, 0),
                              &endpoint, &err);
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
  const char *only; /* NULL: every group */
};

static void on_target_group(void *ctx, const char *group,
                            const struct api_target *targets, size_t n)
{
  struct group_list *list = ctx;
  if (list->only != NULL && strcmp(list->only, group) != 0)
    return;
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, target_json(&targets[i]));
  json_array_append_new(
      list->groups, json_pack("{s:s,s:o*}", "name", group, "targets", array));
}

static bool dataplane_ready(const struct api_request *req,
                            struct api_response *resp, const void *fn)
{
  if (req->server->dataplane != NULL && fn != NULL)
    return true;
  api_respond_error(resp, 503, "ServiceUnavailable",
                    "no data plane is attached to this API");
  return false;
}

static void target_groups(const struct api_request *req,
                          struct api_response *resp, const char *only)
{
  struct api_server *server = req->server;
  struct group_list list = {json_array(), only};

  if (!no_query(req, resp) ||
      !dataplane_ready(req, resp,
                       server->dataplane != NULL
                           ? (const void *)server->dataplane->list_target_groups
                           : NULL)) {
    json_decref(list.groups);
    return;
  }
  if (list.groups == NULL) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    return;
  }
  server->dataplane->list_target_groups(server->dataplane_arg, on_target_group,
                                        &list);
  if (only == NULL) {
    respond_json(resp, 200, json_pack("{s:o}", "target_groups", list.groups));
  } else if (json_array_size(list.groups) == 0) {
    json_decref(list.groups);
    api_respond_error(resp, 404, "NotFound", "no target group named %s", only);
  } else {
    json_t *group = json_incref(json_array_get(list.groups, 0));
    json_decref(list.groups);
    respond_json(resp, 200, group);
  }
}

static void respond_dataplane_error(struct api_response *resp, int r,
                                    const char *group, const char *address)
{
  switch (r) {
  case -ENOENT:
    api_respond_error(resp, 404, "NotFound", "no target %s in group %s",
                      address, group);
    break;
  case -EINVAL:
    api_respond_error(resp, 400, "InvalidValue",
                      "address: not ADDRESS:PORT (\"%s\")", address);
    break;
  case -EEXIST:
    api_respond_error(resp, 409, "AlreadyExists",
                      "%s is already registered in %s", address, group);
    break;
  default:
    api_respond_error(resp, 500, "Internal", "the data plane failed: %s",
                      strerror(-r));
  }
}

static void target_register(const struct api_request *req,
                            struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"address", API_JSON_STRING, true},
      {"weight", API_JSON_INTEGER, false},
  };
  struct api_server *server = req->server;
  struct api_target target = {0};
  json_t *body, *v;

  if (!no_query(req, resp) ||
      !dataplane_ready(req, resp,
                       server->dataplane != NULL
                           ? (const void *)server->dataplane->register_target
                           : NULL) ||
      (body = body_object(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  const char *address = json_string_value(json_object_get(body, "address"));
  json_int_t weight = 1;
  if ((v = json_object_get(body, "weight")) != NULL)
    weight = json_integer_value(v);
  if (weight < 0 || weight > TARGET_WEIGHT_MAX) {
    api_respond_error(resp, 400, "InvalidValue", "weight: must be 0..%d",
                      TARGET_WEIGHT_MAX);
  } else if (address[0] == '\0' || strlen(address) > TARGET_ADDRESS_MAX) {
    api_respond_error(resp, 400, "InvalidValue",
                      "address: must be ADDRESS:PORT");
  } else {
    const char *group = param(req, 0);
    int r = server->dataplane->register_target(
        server->dataplane_arg, group, address, (uint32_t)weight, &target);
    if (r != 0)
      respond_dataplane_error(resp, r, group, address);
    else
      respond_json(resp, 201, target_json(&target));
  }
  json_decref(body);
}

static void target_deregister(const struct api_request *req,
                              struct api_response *resp)
{
  struct api_server *server = req->server;
  struct api_target target = {0};

  if (!no_query(req, resp) ||
      !dataplane_ready(req, resp,
                       server->dataplane != NULL
                           ? (const void *)server->dataplane->deregister_target
                           : NULL))
    return;
  int r = server->dataplane->deregister_target(
      server->dataplane_arg, param(req, 0), param(req, 1), &target);
  if (r != 0)
    respond_dataplane_error(resp, r, param(req, 0), param(req, 1));
  else
    respond_json(resp, 200, target_json(&target));
}

/* ---- events ------------------------------------------------------------- */

int api_events_read(struct api_server *server, const struct reg_actor *actor,
                    uint64_t *cursor, size_t limit, char **buf, size_t *len)
{
  struct reg_event *events = NULL;
  size_t n = 0;
  uint64_t first;
  int r = reg_first_seq(server->registry, &first);
  if (r != 0)
    return r;
  /* Events after the cursor were pruned while this reader lagged: it
   * cannot be given a complete sequence any more. */
  if (*cursor + 1 < first)
    return -ESTALE;
  r = reg_events_after(server->registry, *cursor, limit, &events, &n);
  if (r != 0)
    return r;
  for (size_t i = 0; i < n; i++) {
    *cursor = events[i].seq;
    if (!reg_event_visible(&events[i], actor))
      continue;
    json_t *value = event_json(&events[i]);
    size_t line_len;
    char *line = value != NULL ? api_json_dump(value, &line_len) : NULL;
    json_decref(value);
    char *grown = line != NULL ? realloc(*buf, *len + line_len) : NULL;
    if (grown == NULL) {
      free(line);
      free(events);
      return -ENOMEM;
    }
    memcpy(grown + *len, line, line_len);
    *buf = grown;
    *len += line_len;
    free(line);
  }
  free(events);
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
    if (reg_last_seq(req->server->registry, &after) != 0) {
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
    if (reg_first_seq(req->server->registry, &first) != 0) {
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

static void metrics(const struct api_request *req, struct api_response *resp)
{
  struct api_server *server = req->server;
  struct text t = {0};
  const struct reg_actor system = {REG_SYSTEM_PRINCIPAL, REG_ROLE_OPERATOR};
  struct reg_service *services = NULL;
  size_t n_services = 0;

  if (!no_query(req, resp))
    return;
  text_add(&t, "# HELP nlb_api_requests_total API requests answered, by "
               "HTTP status.\n"
               "# TYPE nlb_api_requests_total counter\n");
  for (int s = API_STATUS_MIN; s <= API_STATUS_MAX; s++) {
    uint64_t count = server->requests_by_status[s - API_STATUS_MIN];
    if (count > 0)
      text_add(&t, "nlb_api_requests_total{code=\"%d\"} %" PRIu64 "\n", s,
               count);
  }
  text_add(&t, "# HELP nlb_endpoints Endpoints by service and state.\n"
               "# TYPE nlb_endpoints gauge\n");
  if (server->registry != NULL &&
      reg_service_list(server->registry, &system, &services, &n_services,
                       NULL) == 0) {
    for (size_t i = 0; i < n_services; i++) {
      struct reg_endpoint *endpoints = NULL;
      size_t n = 0;
      size_t by_state[REG_EP_STATE_COUNT] = {0};
      if (reg_connections_list(server->registry, &system, services[i].id, NULL,
                               &endpoints, &n, NULL) != 0)
        continue;
      for (size_t k = 0; k < n; k++)
        if ((unsigned)endpoints[k].state < REG_EP_STATE_COUNT)
          by_state[endpoints[k].state]++;
      reg_endpoints_free(endpoints, n);
      for (int s = 0; s < REG_EP_STATE_COUNT; s++) {
        text_add(&t, "nlb_endpoints{service=\"");
        text_add_label(&t, services[i].name);
        text_add(&t, "\",state=\"%s\"} %zu\n", reg_state_name(s), by_state[s]);
      }
    }
    reg_services_free(services, n_services);
  }
  if (server->dataplane != NULL && server->dataplane->metrics_text != NULL) {
    char *more = server->dataplane->metrics_text(server->dataplane_arg);
    if (more != NULL) {
      size_t n = strlen(more);
      text_add(&t, "%s%s", more, n > 0 && more[n - 1] != '\n' ? "\n" : "");
      free(more);
    }
  }
  if (t.failed) {
    free(t.data);
    api_respond_error(resp, 500, "Internal", "out of memory");
    return;
  }
  free(resp->body);
  resp->status = 200;
  resp->body = t.data;
  resp->len = t.len;
  resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

static void healthz(const struct api_request *req, struct api_response *resp)
{
  free(resp->body);
  resp->body = strdup("ok\n");
  resp->len = resp->body != NULL ? 3 : 0;
  resp->status = 200;
  resp->content_type = "text/plain; charset=utf-8";
}

/* Routes that work without a registry. */
static bool needs_registry(enum api_route_id id)
{
  switch (id) {
  case API_ROUTE_HEALTHZ:
  case API_ROUTE_METRICS:
  case API_ROUTE_TARGET_GROUP_LIST:
  case API_ROUTE_TARGET_GROUP_DESCRIBE:
  case API_ROUTE_TARGET_REGISTER:
  case API_ROUTE_TARGET_DEREGISTER:
    return false;
  default:
    return true;
  }
}

void api_handle(const struct api_request *req, struct api_response *resp)
{
  if (req->server->registry == NULL && needs_registry(req->match->route->id)) {
    api_respond_error(resp, 503, "ServiceUnavailable",
                      "this nlbd has no registry: endpoint services are off");
    return;
  }
  switch (req->match->route->id) {
  case API_ROUTE_HEALTHZ:
    healthz(req, resp);
    break;
  case API_ROUTE_METRICS:
    metrics(req, resp);
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
  case API_ROUTE_COUNT:
    api_respond_error(resp, 404, "NotFound", "no such route");
    break;
  }
  if (resp->body == NULL && !resp->events)
    api_respond_error(resp, 500, "Internal", "out of memory");
}
