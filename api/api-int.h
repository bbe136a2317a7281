/* Private to api/: the server object and the seam between the server
 * (server.c, conn.c, the protocols h2.c and h1.c, exchange.c) and the route
 * handlers (handlers.c). */
#ifndef NLB_API_INT_H
#define NLB_API_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "admission.h"
#include "nlb/api-router.h"
#include "nlb/api.h"
#include "nlb/list.h"
#include "nlb/registry.h"
#include "tokens.h"

struct api_protocol; /* conn.h */

/* Status codes counted by nlb_api_requests_total: 100..599. */
#define API_STATUS_MIN 100
#define API_STATUS_MAX 599

/* Why a connection was closed for the answers it did not take. */
enum api_output_closed {
  API_OUTPUT_CLOSED_BUDGET,  /* it held the most when the API's total went
                                over api_server.output_budget */
  API_OUTPUT_CLOSED_TIMEOUT, /* its answers did not move for the request
                                timeout */
  API_OUTPUT_CLOSED_COUNT,
};

struct api_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_timer_t sweep_timer; /* timeouts, once a second */
  uv_timer_t flush_timer; /* 0 ms: write what event observers woke */
  unsigned open_handles;  /* of the three above; conns count apart */
  bool listener_open;

  struct api_principal *principals; /* owned copy, names strdup'd */
  size_t n_principals;
  struct api_tokens tokens; /* the registry's, from the change feed */
  uint64_t next_token_flush_ms;
  const struct api_registry_ops *registry; /* NULL: none */
  void *registry_ctx;
  const struct api_dataplane_ops *dataplane;
  void *dataplane_arg;
  void (*log_event)(void *arg, int level, const char *line);
  void (*log_request)(void *arg, const char *principal, const char *role,
                      const char *method, const char *path, int status);
  void *log_arg;
  uint64_t request_timeout_ms;
  uint64_t idle_timeout_ms;

  SSL_CTX *ssl_ctx; /* NULL: plain (h2c and HTTP/1.1) */
  bool shutting_down;
  bool timers_closed;
  int port;

  struct nlb_list conns; /* struct api_conn.link (conn.h) */
  size_t n_conns;
  /* conn.c's way up, set by server.c: the protocols it hands connections
   * to, and what it calls as each connection closes. conn.c names neither
   * h2.c and h1.c nor server.c, which all call it. */
  const struct api_protocol *h2_protocol, *h1_protocol;
  void (*on_conn_closed)(struct api_server *server);
  struct api_admission admission; /* admission.h */
  /* struct api_event_stream.link (events.h): GET /v1/events */
  struct nlb_list event_streams;
  /* Event reads queued on the registry's thread, and the streams whose
   * read waits for a turn (.read_link, oldest first). */
  size_t event_reads_in_flight;
  struct nlb_list event_reads_waiting;

  /* Memory held for answers clients have not taken (api_conn_hold_output,
   * conn.h): the open connections' total, its budget, the connections
   * closed over it or for not reading; and when it was given back to the
   * system (api_server's sweep). */
  size_t output_held;
  size_t output_budget;
  uint64_t output_closed[API_OUTPUT_CLOSED_COUNT];
  size_t output_peak;  /* the most output_held since the last trim */
  size_t conns_closed; /* since the last trim */
  uint64_t trimmed_at;

  uint64_t requests_by_status[API_STATUS_MAX - API_STATUS_MIN + 1];
  char read_buf[64 * 1024]; /* one read at a time: the loop is serial */
};

/* The longest If-None-Match value kept (longer ones are ignored: the answer
 * is then the whole representation, as without the field). */
#define API_IF_NONE_MATCH_MAX 128

/* A request after routing and authentication, for a handler. */
struct api_request {
  struct api_server *server;
  /* The registry, for routes that run where it lives (api_route_remote);
   * NULL for the others. */
  struct reg *reg;
  const struct api_route_match *match;
  struct reg_actor actor; /* name NULL for open routes */
  const char *body;
  size_t body_len;
  const char *if_none_match; /* the request's field, or NULL */
};

/* A handler's answer. body is malloc'd and owned by the response. */
struct api_response {
  int status;
  char *body;
  size_t len;
  /* Instead of body (NULL then): len bytes of constant data that outlive
   * the server (the OpenAPI document), written from where they are,
   * never copied per request. */
  const char *static_body;
  const char *content_type; /* static string; NULL: application/json */
  /* The console's answers (handlers/console.c), static strings or NULL: a
   * strong validator (quoted) and the target of a redirect. */
  const char *etag;
  const char *location;
  /* A page and its files: the headers that keep the browser from running
   * anything but the page's own script (Content-Security-Policy and the
   * others, docs/console.md) and "cache-control: no-cache" (revalidate
   * with the ETag) instead of "no-store". */
  bool page;
  /* GET /v1/events: the answer is a stream of events after events_after
   * seen by actor (copied by the server). */
  bool events;
  uint64_t events_after;
  /* GET /metrics of a provider: what it may see, from the registry's
   * thread to api_handle_finish (which frees it). */
  struct metrics_scope *metrics_scope;
};

/* Frees a scope api_handle_finish did not take. NULL ok. */
void api_metrics_scope_free(struct metrics_scope *scope);

/* True when route runs where the registry lives (api_registry_ops.submit):
 * when there is a registry and the route's registry is not
 * API_REGISTRY_NONE. */
bool api_route_remote(const struct api_server *server,
                      const struct api_route *route);

/* Runs the handler of req->match->route and fills *resp (always: on any
 * failure it holds an error answer; 503 for a route that needs the
 * registry when there is none). On the registry's thread for remote
 * routes (req->reg set), else on the control thread. */
void api_handle(const struct api_request *req, struct api_response *resp);

/* The control thread's part of an answer, after api_handle (wherever it
 * ran): the route's finish, if any, on a 200 answer. */
void api_handle_finish(struct api_server *server, const struct api_route *route,
                       struct api_response *resp);

/* Fills resp with status and the error body {code, message}. */
void api_respond_error(struct api_response *resp, int status, const char *code,
                       const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sends one line to the server's event log (printf format). In log.c,
 * which calls nothing else of api/. */
void api_log(struct api_server *server, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
