/* What every handler shares: the error, JSON and list answers, the
 * registry's errors as HTTP, the query and body checks; and api_handle,
 * which runs a route's handler from the table. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "handlers.h"

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
  resp->etag = NULL;
  resp->location = NULL;
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
  case -ETIMEDOUT:
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

/* ---- running a route ---------------------------------------------------- */

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
  if (resp->body == NULL && resp->static_body == NULL && !resp->events)
    api_respond_error(resp, 500, "Internal", "out of memory");
}

void api_handle_finish(struct api_server *server, const struct api_route *route,
                       struct api_response *resp)
{
  if (route->finish != NULL && resp->status == 200)
    route->finish(server, resp);
}
