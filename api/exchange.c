/* One request and its answer, the same for HTTP/2 and HTTP/1.1: routing,
 * authentication, the handler, status counts and the audit line. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include <openssl/crypto.h>

#include "conn.h"
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

/* Who asked and what, for the audit line: copied, so that an answer that
 * comes later is audited after the protocol has let go of the request. */
struct audit {
  char method[16];
  char path[256];
  bool authenticated;
  char principal[REG_NAME_BUF];
  enum reg_role role;
};

static void audit_init(struct audit *a, const struct api_exchange *x)
{
  snprintf(a->method, sizeof a->method, "%s", x->method);
  loggable_path(x->path, a->path, sizeof a->path);
  a->authenticated = x->authenticated;
  snprintf(a->principal, sizeof a->principal, "%s", x->principal);
  a->role = x->role;
}

/* Counts the status; every request that may change something gets an
 * audit line, whatever its outcome. */
static void account(struct api_server *server, const struct audit *a,
                    int status)
{
  if (status >= API_STATUS_MIN && status <= API_STATUS_MAX)
    server->requests_by_status[status - API_STATUS_MIN]++;
  /* No method: bytes that were not a request (logged by the protocol). */
  if (a->method[0] == '\0' || is_read(a->method))
    return;
  const char *name = a->authenticated ? a->principal : "-";
  const char *role = a->authenticated ? reg_role_name(a->role) : "-";
  if (server->log_request != NULL)
    server->log_request(server->log_arg, name, role, a->method, a->path,
                        status);
  else
    api_log(server, 1,
            "api audit: principal=%s role=%s method=%s path=%s status=%d", name,
            role, a->method, a->path, status);
}

static void account_exchange(struct api_server *server,
                             const struct api_exchange *x)
{
  struct audit a;

  audit_init(&a, x);
  account(server, &a, x->resp.status);
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

static int64_t wall_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Who the Authorization header names, if it came, whatever the route: a
 * principal of the config, or an API token the registry holds and that has
 * not expired. A known one authenticates x (and, through the protocol, its
 * connection). */
static bool authenticate(struct api_server *server, struct api_exchange *x)
{
  const struct api_principal *p = NULL;
  struct api_token *t = NULL;
  const char *token;
  size_t len;
  uint8_t hash[32];

  if (x->authorization == NULL ||
      api_bearer_token(x->authorization, x->authorization_len, &token, &len) !=
          0)
    return false;
  api_token_sha256(token, len, hash);
  p = api_principal_find(server->principals, server->n_principals, hash);
  if (p == NULL && (t = api_tokens_find(&server->tokens, hash)) != NULL &&
      t->expires_at != 0 && t->expires_at <= wall_ms())
    t = NULL;
  if (t != NULL) {
    t->used_at = wall_ms();
    if (x->conn != NULL)
      api_conn_note_token(x->conn, hash);
  }
  OPENSSL_cleanse(hash, sizeof hash);
  if (p == NULL && t == NULL)
    return false;
  x->authenticated = true;
  snprintf(x->principal, sizeof x->principal, "%s", p ? p->name : t->principal);
  x->role = p ? p->role : t->role;
  return true;
}

/* 0 when x's principal may call r, or answers x with 401/403 and returns
 * -1. */
static int authorize(struct api_exchange *x, const struct api_route *r)
{
  if (r->roles & API_ROLE_ANYONE)
    return 0;
  if (!x->authenticated) {
    api_respond_error(&x->resp, 401, "Unauthorized",
                      "a known bearer token is required");
    return -1;
  }
  if (!api_route_allows(r, x->role)) {
    api_respond_error(&x->resp, 403, "Forbidden", "a %s may not call %s",
                      reg_role_name(x->role), r->name);
    return -1;
  }
  return 0;
}

/* A request whose handler runs where the registry lives. Everything it
 * needs is copied: the protocol may let go of its exchange meanwhile. */
struct exchange_job {
  struct api_server *server;
  struct api_exchange *x; /* NULL once cancelled */
  api_exchange_done_fn done;
  void *arg;
  struct api_route_match match;
  char *path; /* match.query points into it */
  char *body;
  size_t body_len;
  bool has_if_none_match;
  char if_none_match[API_IF_NONE_MATCH_MAX + 1];
  struct reg_actor actor;
  struct audit audit;
  struct api_response resp;
  bool submitting; /* inside submit: an inline registry answers at once */
  bool finished;
};

static void job_free(struct exchange_job *job)
{
  free(job->resp.body);
  free(job->path);
  free(job->body);
  free(job);
}

/* On the registry's thread. */
static void job_run(struct reg *reg, void *arg)
{
  struct exchange_job *job = arg;
  struct api_request req = {
      .server = job->server,
      .reg = reg,
      .match = &job->match,
      .actor = job->actor,
      .body = job->body,
      .body_len = job->body_len,
      .if_none_match = job->has_if_none_match ? job->if_none_match : NULL,
  };

  api_handle(&req, &job->resp);
}

/* Hands the answer to the exchange (if it is still wanted). */
static void job_deliver(struct exchange_job *job)
{
  struct api_exchange *x = job->x;

  if (x != NULL) {
    x->job = NULL;
    free(x->resp.body);
    x->resp = job->resp;
    job->resp.body = NULL;
  }
  job_free(job);
}

/* On the control thread. */
static void job_done(void *arg)
{
  struct exchange_job *job = arg;
  struct api_exchange *x = job->x;
  api_exchange_done_fn done = job->done;
  void *done_arg = job->arg;

  api_handle_finish(job->server, job->match.route, &job->resp);
  account(job->server, &job->audit, job->resp.status);
  job->finished = true;
  if (job->submitting)
    return; /* api_exchange_run delivers it */
  job_deliver(job);
  if (x != NULL)
    done(x, done_arg);
}

static struct exchange_job *job_new(struct api_server *server,
                                    struct api_exchange *x,
                                    const struct api_route_match *match)
{
  struct exchange_job *job = calloc(1, sizeof *job);

  if (job == NULL)
    return NULL;
  job->server = server;
  job->x = x;
  job->match = *match;
  job->path = strdup(x->path);
  job->body = x->body_len > 0 ? malloc(x->body_len) : NULL;
  if (job->path == NULL || (x->body_len > 0 && job->body == NULL)) {
    job_free(job);
    return NULL;
  }
  if (match->query != NULL)
    job->match.query = job->path + (match->query - x->path);
  if (x->body_len > 0)
    memcpy(job->body, x->body, x->body_len);
  job->body_len = x->body_len;
  if (x->if_none_match != NULL &&
      strlen(x->if_none_match) <= API_IF_NONE_MATCH_MAX) {
    job->has_if_none_match = true;
    snprintf(job->if_none_match, sizeof job->if_none_match, "%s",
             x->if_none_match);
  }
  audit_init(&job->audit, x);
  job->actor.name = x->authenticated ? job->audit.principal : NULL;
  job->actor.role = x->authenticated ? x->role : REG_ROLE_CONSUMER;
  return job;
}

typedef int submit_fn(void *ctx, void (*run)(struct reg *, void *),
                      void (*done)(void *), void *arg);

/* Reads go where they need not wait for writes. */
static submit_fn *submit(const struct api_server *server,
                         const struct api_route *route)
{
  if (route->method == API_METHOD_GET && server->registry->submit_read)
    return server->registry->submit_read;
  return server->registry->submit;
}

/* Submits the route to the registry's thread: 1 when the answer is under
 * way, 0 when it is already in x (an inline registry, or a failure). */
static int run_remote(struct api_server *server, struct api_exchange *x,
                      const struct api_route_match *match,
                      api_exchange_done_fn done, void *arg)
{
  struct exchange_job *job = job_new(server, x, match);

  if (job == NULL) {
    api_respond_error(&x->resp, 500, "Internal", "out of memory");
    account_exchange(server, x);
    return 0;
  }
  job->done = done;
  job->arg = arg;
  job->submitting = true;
  x->job = job;
  if (submit(server, match->route)(server->registry_ctx, job_run, job_done,
                                   job) != 0) {
    x->job = NULL;
    job_free(job);
    api_respond_error(&x->resp, 503, "StoreUnavailable",
                      "the registry is stopping");
    account_exchange(server, x);
    return 0;
  }
  job->submitting = false;
  if (!job->finished)
    return 1;
  job_deliver(job);
  return 0;
}

/* Answers x with what admission refused. */
static void refuse_admission(struct api_server *server, struct api_exchange *x,
                             enum api_request_verdict verdict)
{
  uint32_t limit = api_admission_limit(&server->admission, verdict, x->role);
  const char *role = reg_role_name(x->role);

  switch (verdict) {
  case API_OTHER_PRINCIPAL:
    api_respond_error(&x->resp, 421, "MisdirectedRequest",
                      "this connection carries another principal's "
                      "requests: use a connection of your own");
    break;
  case API_OPERATORS_ONLY:
    api_respond_error(&x->resp, 429, "TooManyConnections",
                      "the last %" PRIu32 " connections are kept for "
                      "operators; this one is closed",
                      limit);
    break;
  case API_TOO_MANY_REQUESTS:
    api_respond_error(&x->resp, 429, "TooManyRequests",
                      "%s already has %" PRIu32 " requests under way "
                      "(api.limits.%s.requests)",
                      x->principal, limit, role);
    break;
  case API_TOO_MANY_EVENT_STREAMS:
    api_respond_error(&x->resp, 429, "TooManyEventStreams",
                      "%s already has %" PRIu32 " event streams open "
                      "(api.limits.%s.event_streams)",
                      x->principal, limit, role);
    break;
  default:
    api_respond_error(&x->resp, 429, "TooManyConnections",
                      "%s already has %" PRIu32 " connections "
                      "(api.limits.%s.connections); this one is closed",
                      x->principal, limit, role);
    break;
  }
}

/* x's connection is bound to x's principal (its first known token), or
 * already was: 0, or answers x and returns -1. */
static int admit_connection(struct api_server *server, struct api_exchange *x)
{
  enum api_request_verdict verdict;

  if (!x->authenticated || x->conn == NULL)
    return 0;
  verdict = api_admission_bind(x->conn, x->principal, x->role);
  if (verdict == API_REQUEST_ADMITTED)
    return 0;
  refuse_admission(server, x, verdict);
  return -1;
}

/* One more request (and event stream) of x's principal: 0, or answers x
 * and returns -1. */
static int admit_request(struct api_server *server, struct api_exchange *x)
{
  bool events = x->match.route->event_stream && !api_exchange_is_head(x);
  enum api_request_verdict verdict;

  if (!x->authenticated || x->conn == NULL)
    return 0;
  verdict = api_admission_take(x->conn, events, &x->admission);
  if (verdict == API_REQUEST_ADMITTED)
    return 0;
  refuse_admission(server, x, verdict);
  return -1;
}

int api_exchange_head(struct api_server *server, struct api_exchange *x)
{
  x->head_done = true;
  authenticate(server, x);
  /* The connection's limit first: a known token binds it, whatever the
   * route. */
  if (admit_connection(server, x) != 0 || route(x, &x->match) != 0 ||
      authorize(x, x->match.route) != 0 || admit_request(server, x) != 0) {
    x->refused = true;
    account_exchange(server, x);
    return -1;
  }
  return 0;
}

int api_exchange_run(struct api_server *server, struct api_exchange *x,
                     api_exchange_done_fn done, void *arg)
{
  const struct api_route_match *match = &x->match;

  if (!x->head_done && api_exchange_head(server, x) != 0)
    return 0;
  if (x->refused)
    return 0; /* answered and counted by api_exchange_head */
  if (api_route_remote(server, match->route))
    return run_remote(server, x, match, done, arg);
  struct api_request req = {
      .server = server,
      .match = match,
      .actor = {x->authenticated ? x->principal : NULL,
                x->authenticated ? x->role : REG_ROLE_CONSUMER},
      .body = x->body,
      .body_len = x->body_len,
      .if_none_match = x->if_none_match,
  };
  api_handle(&req, &x->resp);
  api_handle_finish(server, match->route, &x->resp);
  account_exchange(server, x);
  return 0;
}

void api_exchange_cancel(struct api_exchange *x)
{
  if (x->job != NULL)
    x->job->x = NULL;
  x->job = NULL;
}

void api_exchange_fail(struct api_server *server, struct api_exchange *x,
                       int status, const char *code, const char *message)
{
  api_respond_error(&x->resp, status, code, "%s", message);
  account_exchange(server, x);
}

bool api_exchange_is_head(const struct api_exchange *x)
{
  return strcmp(x->method, "HEAD") == 0;
}

void api_exchange_clear(struct api_exchange *x)
{
  api_exchange_cancel(x);
  api_admission_done(&x->admission);
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

/* What a page may do in the browser: run its own script and style, talk
 * to this API, nothing else (no inline script, no other origin, no
 * framing, no form posts). */
#define PAGE_POLICY                                                            \
  "default-src 'none'; script-src 'self'; style-src 'self'; "                  \
  "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "                \
  "form-action 'none'; frame-ancestors 'none'"

void api_response_headers(const struct api_exchange *x,
                          struct api_response_headers *out)
{
  const struct api_response *resp = &x->resp;

  out->n = 0;
  /* A 304 has no body: neither its type nor its length (which would have
   * to be the one of the 200 it stands for, RFC 9110 8.6). */
  if (resp->status != 304)
    add(out, "content-type",
        resp->content_type != NULL ? resp->content_type : "application/json");
  add(out, "cache-control", resp->page ? "no-cache" : "no-store");
  if (!resp->events && resp->status != 304) {
    snprintf(out->length, sizeof out->length, "%zu", resp->len);
    add(out, "content-length", out->length);
  }
  if (resp->etag != NULL)
    add(out, "etag", resp->etag);
  if (resp->location != NULL)
    add(out, "location", resp->location);
  if (resp->page) {
    add(out, "content-security-policy", PAGE_POLICY);
    add(out, "x-frame-options", "DENY");
    add(out, "x-content-type-options", "nosniff");
    add(out, "referrer-policy", "no-referrer");
  }
  if (resp->status == 405) {
    format_allow(x->allow, out->allow, sizeof out->allow);
    add(out, "allow", out->allow);
  }
  if (resp->status == 401)
    add(out, "www-authenticate", "Bearer");
}
