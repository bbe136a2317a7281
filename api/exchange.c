/* One request and its answer, the same for HTTP/2 and HTTP/1.1: routing,
 * authentication, the handler, status counts and the audit line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"
#include "nlb/api-auth.h"

/* Writes "the path, without its query, printable" into buf for the log. */
static void loggable_path(const char *path, char *buf, size_t len)
{
  size_t i = 0;
  for (; path != NULL && path[i] != '\0' && path[i] != '?' && i + 1 < len; i++)
    buf[i] = path[i] > ' ' && path[i] < 127 ? path[i] : '?';
  buf[i] = '\0';
}

static bool is_read(const char *method)
{
  return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

/* Counts x's status; every request that may change something gets an audit
 * line, whatever its outcome. */
static void account(struct api_server *server, const struct api_exchange *x)
{
  int status = x->resp.status;
  if (status >= API_STATUS_MIN && status <= API_STATUS_MAX)
    server->requests_by_status[status - API_STATUS_MIN]++;
  /* No method: bytes that were not a request (logged by the protocol). */
  if (x->method[0] == '\0' || is_read(x->method))
    return;
  char path[256];
  const char *name = x->authenticated ? x->principal : "-";
  const char *role = x->authenticated ? reg_role_name(x->role) : "-";
  loggable_path(x->path, path, sizeof path);
  if (server->log_request != NULL)
    server->log_request(server->log_arg, name, role, x->method, path, status);
  else
    api_log(server, 1,
            "api audit: principal=%s role=%s method=%s path=%s status=%d", name,
            role, x->method, path, status);
}

/* Finds x's route; 0, or answers x with 404/405/400 and returns -1. */
static int route(struct api_exchange *x, struct api_route_match *match)
{
  enum api_method method = api_method_parse(x->method);
  int r;

  if (x->path == NULL) {
    api_respond_error(&x->resp, 400, "InvalidValue", "no :path");
    return -1;
  }
  /* An unknown method matches no route: 405 with the Allow of the path. */
  r = api_route_match(method, x->path, match, &x->allow);
  if (r == -ENOENT) {
    api_respond_error(&x->resp, 404, "NotFound", "no such route");
    return -1;
  }
  if (r == -EPERM) {
    api_respond_error(&x->resp, 405, "MethodNotAllowed",
                      "method %s is not allowed here", x->method);
    return -1;
  }
  if (r != 0) {
    api_respond_error(&x->resp, 400, "InvalidValue", "bad path");
    return -1;
  }
  return 0;
}

/* Checks the token when the route needs one; 0, or answers x with 401/403
 * and returns -1. */
static int authorize(struct api_server *server, struct api_exchange *x,
                     const struct api_route *r)
{
  if (r->roles == 0)
    return 0;
  const struct api_principal *principal =
      api_authenticate(server->principals, server->n_principals,
                       x->authorization, x->authorization_len);
  if (principal == NULL) {
    api_respond_error(&x->resp, 401, "Unauthorized",
                      "a known bearer token is required");
    return -1;
  }
  x->authenticated = true;
  snprintf(x->principal, sizeof x->principal, "%s", principal->name);
  x->role = principal->role;
  if (!api_route_allows(r, principal->role)) {
    api_respond_error(&x->resp, 403, "Forbidden", "a %s may not call %s",
                      reg_role_name(principal->role), r->name);
    return -1;
  }
  return 0;
}

void api_exchange_run(struct api_server *server, struct api_exchange *x)
{
  struct api_route_match match;

  if (route(x, &match) == 0 && authorize(server, x, match.route) == 0) {
    struct api_request req = {
        .server = server,
        .match = &match,
        .actor = {x->authenticated ? x->principal : NULL,
                  x->authenticated ? x->role : REG_ROLE_CONSUMER},
        .body = x->body,
        .body_len = x->body_len,
    };
    api_handle(&req, &x->resp);
  }
  account(server, x);
}

void api_exchange_fail(struct api_server *server, struct api_exchange *x,
                       int status, const char *code, const char *message)
{
  api_respond_error(&x->resp, status, code, "%s", message);
  account(server, x);
}

bool api_exchange_is_head(const struct api_exchange *x)
{
  return strcmp(x->method, "HEAD") == 0;
}

void api_exchange_clear(struct api_exchange *x)
{
  free(x->resp.body);
  x->resp.body = NULL;
}

static void format_allow(unsigned methods, char *buf, size_t len)
{
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {{API_METHOD_GET, "GET"},
               {API_METHOD_HEAD, "HEAD"},
               {API_METHOD_POST, "POST"},
               {API_METHOD_PATCH, "PATCH"},
               {API_METHOD_DELETE, "DELETE"}};
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (!(methods & names[i].bit))
      continue;
    size_t used = strlen(buf);
    snprintf(buf + used, len - used, "%s%s", used > 0 ? ", " : "",
             names[i].name);
  }
}

static void add(struct api_response_headers *out, const char *name,
                const char *value)
{
  out->field[out->n].name = name;
  out->field[out->n].value = value;
  out->n++;
}

void api_response_headers(const struct api_exchange *x,
                          struct api_response_headers *out)
{
  const struct api_response *resp = &x->resp;

  out->n = 0;
  add(out, "content-type",
      resp->content_type != NULL ? resp->content_type : "application/json");
  add(out, "cache-control", "no-store");
  if (!resp->events) {
    snprintf(out->length, sizeof out->length, "%zu", resp->len);
    add(out, "content-length", out->length);
  }
  if (resp->status == 405) {
    format_allow(x->allow, out->allow, sizeof out->allow);
    add(out, "allow", out->allow);
  }
  if (resp->status == 401)
    add(out, "www-authenticate", "Bearer");
}
