/* What probes, scrapers and tools read about the server itself: /healthz,
 * /metrics (the registry's series on its thread, the API's and the data
 * plane's added on the control thread) and the OpenAPI document. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "openapi.h"

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

/* For a load balancer in front of the API: while the registry cannot reach
 * its store every registry route answers 503, so this node is no use to
 * API clients; it still serves the data plane. Answered from what the
 * registry's thread last saw, never by waiting for it. */
void api_handle_healthz(const struct api_request *req,
                        struct api_response *resp)
{
  const struct api_server *server = req->server;
  const char *store = "none";
  bool ok = true;

  if (server->registry != NULL) {
    ok = server->registry->store_available == NULL ||
         server->registry->store_available(server->registry_ctx);
    store = ok ? "ok" : "unavailable";
  }
  api_respond_json(
      resp, ok ? 200 : 503,
      json_pack("{s:s,s:s}", "status", ok ? "ok" : "degraded", "store", store));
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
