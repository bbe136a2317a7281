/* The management API: an HTTP server on libuv that serves every route of
 * docs/api.md (described in docs/openapi.yaml) on top of the registry, over
 * HTTP/2 (nghttp2; h2c with prior
 * knowledge, or TLS with ALPN "h2") and HTTP/1.1 (http-parser; plain, or
 * TLS with ALPN "http/1.1" or none) on the same port. Providers, consumers and
 * operators authenticate with "Authorization: Bearer TOKEN"; the API knows only
 * the SHA-256 of each token.
 *
 * Signals: the process must ignore SIGPIPE (nlbd does): a client that
 * closes while an answer is being written makes the write fail with EPIPE,
 * which would otherwise kill the process.
 *
 * Threads: everything here runs on the control thread, the thread that runs
 * the uv_loop_t given to api_server_start(); no function is thread-safe.
 *
 * Dependencies: the registry (given, not owned), libuv, nghttp2,
 * http-parser, jansson and OpenSSL. The data plane is reached only through
 * struct api_dataplane_ops, so the API never includes the daemon's headers. */
#ifndef NLB_API_H
#define NLB_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "nlb/api-limits.h"
#include "nlb/registry.h"

/* Request bodies larger than this are answered 413 PayloadTooLarge. */
#define API_MAX_BODY (64 * 1024)
/* SETTINGS_MAX_CONCURRENT_STREAMS announced to every client. */
#define API_MAX_CONCURRENT_STREAMS 100
/* Defaults for the timeouts of struct api_settings. */
#define API_DEFAULT_REQUEST_TIMEOUT_MS 30000
#define API_DEFAULT_IDLE_TIMEOUT_MS 120000
/* Default of api_settings.output_budget. */
#define API_DEFAULT_OUTPUT_BUDGET (64 * 1024 * 1024)

/* Someone who may call the API. */
struct api_principal {
  const char *name;
  enum reg_role role;
  uint8_t token_sha256[32]; /* SHA-256 of the token's bytes */
};

/* A target as the data plane reports it. */
struct api_target {
  char address[64]; /* "127.0.0.1:9001", "[::1]:9001" */
  uint32_t weight;
  /* "initial", "healthy", "unhealthy", "draining" or "unused"; static
   * strings (or strings that live until the call returns). */
  const char *state;
  const char *reason; /* why it is in that state; NULL or "" if nothing */
};

/* The listeners a provider may see in /metrics: those of the load
 * balancers its services publish, and those of its services' endpoints. */
struct api_metrics_scope {
  const char *const *load_balancers;
  size_t n_load_balancers;
  const char *const *endpoints; /* endpoint IDs */
  size_t n_endpoints;
};

/* What the API asks of the data plane. Every function is called on the
 * control thread with the arg of api_settings.dataplane_arg. Any member may
 * be NULL: the routes that need it answer 503 ServiceUnavailable (the
 * metrics then hold only the API's own). */
struct api_dataplane_ops {
  /* Calls emit(ctx, ...) once per target group, in a stable order, with its
   * targets; targets is borrowed for the call of emit. */
  void (*list_target_groups)(void *arg,
                             void (*emit)(void *ctx, const char *group,
                                          const struct api_target *targets,
                                          size_t n),
                             void *ctx);
  /* Prometheus text (complete lines, with HELP/TYPE) for the data plane's
   * metrics, malloc'd; the API frees it. NULL: nothing to add. scope NULL:
   * everything (an operator); otherwise only the series of the listeners
   * it names (a provider's). */
  char *(*metrics_text)(void *arg, const struct api_metrics_scope *scope);
};

/* How the API reaches the registry, which lives on a thread of its own
 * (nlb/regloop.c in nlbd). */
struct api_registry_ops {
  /* Runs run(reg, arg) where the registry lives, then done(arg) on the
   * control thread once the changes it made are applied on this node
   * (done may come before submit returns). Returns 0, or a negative errno
   * when neither will run. Called on the control thread. */
  int (*submit)(void *ctx, void (*run)(struct reg *reg, void *arg),
                void (*done)(void *arg), void *arg);
  /* Whether the registry could reach its store at its last try, without
   * waiting for it (GET /healthz answers 503 when not). Called on the
   * control thread. NULL: always. */
  bool (*store_available)(void *ctx);
  /* The same for a request that only reads (GET, HEAD): it may run beside
   * the others, so that a write waiting for the store never holds it up.
   * NULL: submit. */
  int (*submit_read)(void *ctx, void (*run)(struct reg *reg, void *arg),
                     void (*done)(void *arg), void *arg);
};

struct api_settings {
  /* "127.0.0.1:9180", "[::1]:9180"; port 0 lets the kernel choose (see
   * api_server_port()). */
  const char *listen;
  /* > 0: a socket already listening on listen (a previous nlbd handed it
   * over: nlbd -s upgrade), served instead of binding one; the server owns
   * it from the call on, closed on failure too. 0: bind. */
  int listen_fd;
  /* PEM files; both NULL: plain (h2c with prior knowledge, HTTP/1.1). */
  const char *tls_cert;
  const char *tls_key;
  /* Copied by api_server_start/api_server_reload. */
  const struct api_principal *principals;
  size_t n_principals;
  /* Borrowed until api_server_shutdown() has been called. NULL: no
   * endpoint services; their routes answer 503 and only the target-group
   * listing, /metrics and /healthz serve. */
  const struct api_registry_ops *registry;
  void *registry_ctx;
  /* Both may be NULL; ops and arg are borrowed like the registry. */
  const struct api_dataplane_ops *dataplane;
  void *dataplane_arg;
  /* One line per audit record (every mutating request: principal, route,
   * status — never a token), protocol trouble and errors. level: 0 debug,
   * 1 info, 2 warning, 3 error. line is borrowed for the call. NULL: none. */
  void (*log_event)(void *arg, int level, const char *line);
  /* The audit record of a mutating request as fields (strings borrowed for
   * the call; "-" for an unknown principal). NULL: the record goes to
   * log_event as "api audit: principal=P role=R method=M path=P
   * status=N". Called with log_arg. */
  void (*log_request)(void *arg, const char *principal, const char *role,
                      const char *method, const char *path, int status);
  void *log_arg;
  /* 0: the API_DEFAULT_* values. A request whose headers and body have not
   * all arrived within request_timeout_ms is answered 408 (HTTP/1.1: and
   * the connection closed); a connection without open requests for
   * idle_timeout_ms is closed (HTTP/2: after a GOAWAY). */
  uint64_t request_timeout_ms;
  uint64_t idle_timeout_ms;
  /* 0: 60 s. A connection none of whose requests has presented a known
   * token ends this long after it was accepted, whatever it does. */
  uint64_t unauthenticated_lifetime_ms;
  /* 0: API_DEFAULT_OUTPUT_BUDGET. Bytes of memory the API may hold for
   * answers its clients have not taken (read), all connections together;
   * past it the connections holding the most are closed. Each connection
   * also stops being read past 256 KiB of answers waiting (docs/api.md). */
  size_t output_budget;
  /* What each principal may hold, by role, and the operators' reserve
   * (nlb/api-limits.h); copied. NULL: API_DEFAULT_LIMITS. */
  const struct api_limits *limits;
};

struct api_server;

/* Binds s->listen on loop, loads the TLS certificate if any, and starts
 * serving. On success *out owns the
 * server (see api_server_shutdown/api_server_free). Errors: a negative
 * errno from bind/listen (UV_EADDRINUSE, UV_EADDRNOTAVAIL, UV_EACCES...:
 * libuv's codes are negative errnos on Linux), -EINVAL (listen is not
 * "ADDRESS:PORT", only one of cert/key, or the certificate or key cannot be
 * loaded: the reason goes to log_event), -ENOMEM. On error nothing is left:
 * no handle on the loop, no memory. */
int api_server_start(uv_loop_t *loop, const struct api_settings *s,
                     struct api_server **out);

/* The bound port (useful with port 0). */
int api_server_port(const struct api_server *server);

/* Takes the principals (and timeouts, limits, logger, dataplane) of s;
 * listen, TLS and registry are not changed (those need a restart).
 * Existing connections get GOAWAY (HTTP/1.1: close after the answer under
 * way, at once when idle): their open requests finish, event streams end,
 * and clients reconnect with the new principals. Returns 0 or -ENOMEM (the
 * old principals stay). */
int api_server_reload(struct api_server *server, const struct api_settings *s);

/* This node applied a read of the registry's change feed (borrowed):
 * event streams that may see one of its events wake up and read; API
 * tokens made, revoked or expired take effect (the connections a revoked
 * one authenticated are closed, its event streams with them). Control
 * thread. */
void api_server_changes(struct api_server *server,
                        const struct reg_changes *changes);

/* Stops listening, sends GOAWAY to every connection (HTTP/1.1: as on
 * reload), ends event streams and closes every connection once its pending
 * writes are out (at most about two seconds later). Idempotent. Run the
 * loop until api_server_closed()
 * is true, then api_server_free(). */
void api_server_shutdown(struct api_server *server);

/* True once every handle of the server is closed. */
bool api_server_closed(const struct api_server *server);

/* Frees a closed server (or does nothing with NULL). The registry is no
 * longer used from api_server_shutdown() on. */
void api_server_free(struct api_server *server);

#endif
