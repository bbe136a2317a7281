
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
#include "handlers/handlers.h"
#include "nlb/api-auth.h"
#include "openapi.h"
#include "nlb/api-json.h"

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
void api_respond_json(struct api_response *resp, int status, json_t *value)
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
int api_reg_status(int code, const char **name)
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

void api_respond_reg_error(struct api_request const *req,
                           struct api_response *resp, int code,
                           const struct reg_error *err)
{
  const char *name;
  int status = api_reg_status(code, &name);
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

json_t *api_ports_json(const uint16_t *ports, size_t n)
{
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, json_integer(ports[i]));
  return array;
}

json_t *api_strings_json(char *const *strings, size_t n)
{
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, json_string(strings[i]));
  return array;
}

/* ---- request helpers ---------------------------------------------------- */

/* Parses and checks the body; NULL after answering 400. */
json_t *api_read_body(const struct api_request *req, struct api_response *resp,
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
bool api_check_query(const struct api_request *req, struct api_response *resp,
                     const char *const *names)
{
  char bad[64];
  if (api_query_check(req->match->query, names, bad, sizeof bad) == 0)
    return true;
  api_respond_error(resp, 400, "UnknownField",
                    "unknown or repeated query parameter \"%s\"", bad);
  return false;
}

static bool query_limit(const struct api_request *req,
                        struct api_response *resp, struct api_list_query *q)
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
                        struct api_response *resp, struct api_list_query *q)
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
bool api_read_list_query(const struct api_request *req,
                         struct api_response *resp, bool with_state,
                         struct api_list_query *q)
{
  static const char *const with[] = {"state", "limit", "next_token", NULL};
  static const char *const without[] = {"limit", "next_token", NULL};
  int r;

  memset(q, 0, sizeof *q);
  q->page.token = q->token;
  if (!api_check_query(req, resp, with_state ? with : without) ||
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
void api_respond_list(struct api_response *resp, const char *key, json_t *array,
                      const char *next_token)
{
  json_t *value = json_pack("{s:o*}", key, array);

  if (value != NULL && next_token != NULL && next_token[0] != '\0')
    json_object_set_new(value, "next_token", json_string(next_token));
  api_respond_json(resp, 200, value);
}

bool api_no_query(const struct api_request *req, struct api_response *resp)
{
  static const char *const none[] = {NULL};
  return api_check_query(req, resp, none);
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
void api_handle_metrics(const struct api_request *req,
                        struct api_response *resp)
{
  struct metrics_scope *scope = NULL;
  struct text t = {0};

  if (!api_no_query(req, resp))
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
void api_finish_metrics(struct api_server *server, struct api_response *resp)
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

void api_handle_healthz(const struct api_request *req,
                        struct api_response *resp)
{
  free(resp->body);
  resp->body = strdup("ok\n");
  resp->len = resp->body != NULL ? 3 : 0;
  resp->status = 200;
  resp->content_type = "text/plain; charset=utf-8";
}

/* The compiled-in docs/openapi.yaml: the same bytes on every request. */
void api_handle_openapi(const struct api_request *req,
                        struct api_response *resp)
{
  if (!api_no_query(req, resp))
    return;
  free(resp->body);
  resp->body = malloc(api_openapi_yaml_len);
  if (resp->body == NULL)
    return; /* api_handle answers 500 */
  memcpy(resp->body, api_openapi_yaml, api_openapi_yaml_len);
  resp->len = api_openapi_yaml_len;
  resp->status = 200;
  resp->content_type = "application/yaml";
}

bool api_route_remote(const struct api_server *server,
                      const struct api_route *route)
{
  return server->registry != NULL && route->registry != API_REGISTRY_NONE;
}

void api_handle(const struct api_request *req, struct api_response *resp)
{
  const struct api_route *route = req->match->route;

  if (req->reg == NULL && route->registry == API_REGISTRY_NEEDED)
    api_respond_error(resp, 503, "ServiceUnavailable",
                      "this nlbd has no registry: endpoint services are off");
  else
    route->handle(req, resp);
  if (resp->body == NULL && !resp->events)
    api_respond_error(resp, 500, "Internal", "out of memory");
}

void api_handle_finish(struct api_server *server, const struct api_route *route,
                       struct api_response *resp)
{
  if (route->finish != NULL && resp->status == 200)
    route->finish(server, resp);
}
