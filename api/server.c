/* The API server: the listener on the control loop, the settings and
 * principals, the TLS context (ALPN h2 and http/1.1), the timers, reload
 * and shutdown. Connections live in conn.c, the protocols in h2.c and
 * h1.c, one request's routing and accounting in exchange.c, event streams
 * in events.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "events.h"

#define SWEEP_INTERVAL_MS 250
/* Connections the kernel completes before nlbd accepts them (capped by
 * net.core.somaxconn). As many as nlbd keeps, as HAProxy sizes it by
 * maxconn: a burst of connects that overflows the queue makes the kernel
 * drop SYNs, everyone's alike, and a dropped SYN is retried a second
 * later. */
#define API_LISTEN_BACKLOG API_MAX_CONNECTIONS

/* ---- API tokens --------------------------------------------------------- */

/* How often the last use of tokens is written to the registry. */
#define TOKEN_FLUSH_MS 60000

/* Ends the connections a token authenticated: it was revoked or expired.
 * As on a reload, their event streams end at once and no new request is
 * taken, while an answer under way is finished (an operator revoking on a
 * connection that once used the token still gets the DELETE's answer);
 * whatever remains a second later is cut. */
static void close_token_conns(struct api_server *server,
                              const uint8_t sha256[32])
{
  uint64_t deadline = uv_now(server->loop) + 1000;
  struct nlb_list *pos, *tmp;

  NLB_LIST_FOREACH_SAFE(pos, tmp, &server->conns)
  {
    struct api_conn *c = NLB_CONTAINER_OF(pos, struct api_conn, link);
    if (!c->closing && api_conn_used_token(c, sha256))
      api_conn_goaway(c, deadline);
  }
}

static void revoke_token(struct api_server *server, const char *id)
{
  uint8_t sha256[32];

  if (api_tokens_remove(&server->tokens, id, sha256))
    close_token_conns(server, sha256);
}

/* A resync: the registry's tokens replace ours; those gone are revoked. */
static void replace_tokens(struct api_server *server,
                           const struct reg_changes *c)
{
  struct api_tokens old = server->tokens;

  memset(&server->tokens, 0, sizeof(server->tokens));
  for (size_t i = 0; i < c->n_tokens; i++)
    if (api_tokens_put(&server->tokens, &c->tokens[i]) < 0)
      api_log(server, 3, "api: out of memory for tokens");
  for (size_t i = 0; i < old.n; i++)
    if (api_tokens_find(&server->tokens, old.v[i].sha256) == NULL)
      close_token_conns(server, old.v[i].sha256);
  api_tokens_free(&old);
}

void api_server_changes(struct api_server *server, const struct reg_changes *c)
{
  if (c->resync)
    replace_tokens(server, c);
  for (size_t i = 0; !c->resync && i < c->n_events; i++) {
    const struct reg_event *ev = &c->events[i];
    const struct reg_token *row = NULL;

    if (ev->token_id[0] == '\0')
      continue;
    for (size_t k = 0; k < c->n_tokens; k++)
      if (strcmp(c->tokens[k].id, ev->token_id) == 0)
        row = &c->tokens[k];
    if (row == NULL)
      revoke_token(server, ev->token_id);
    else if (api_tokens_put(&server->tokens, row) < 0)
      api_log(server, 3, "api: out of memory for tokens");
  }
  api_events_wake(server, c->events, c->n_events, c->last_seq);
}

struct token_uses {
  char **ids;
  int64_t *used_at;
  size_t n;
};

static void record_uses(struct reg *reg, void *arg)
{
  struct token_uses *job = arg;

  reg_tokens_used(reg, job->ids, job->used_at, job->n);
}

static void free_uses(void *arg)
{
  struct token_uses *job = arg;

  reg_strings_free(job->ids, job->n);
  free(job->used_at);
  free(job);
}

/* Expired tokens go (closing what they authenticated); the last uses are
 * written to the registry now and then, not on every request. */
static void sweep_tokens(struct api_server *server, uint64_t now)
{
  struct timespec ts;
  struct token_uses *job;
  int64_t wall;

  clock_gettime(CLOCK_REALTIME, &ts);
  wall = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  for (size_t i = server->tokens.n; i-- > 0;)
    if (server->tokens.v[i].expires_at != 0 &&
        server->tokens.v[i].expires_at <= wall)
      revoke_token(server, server->tokens.v[i].id);
  if (now < server->next_token_flush_ms || server->registry == NULL)
    return;
  server->next_token_flush_ms = now + TOKEN_FLUSH_MS;
  if ((job = calloc(1, sizeof(*job))) == NULL ||
      (job->ids = calloc(server->tokens.n + 1, sizeof(char *))) == NULL ||
      (job->used_at = calloc(server->tokens.n + 1, sizeof(int64_t))) == NULL) {
    if (job)
      free_uses(job);
    return;
  }
  for (size_t i = 0; i < server->tokens.n; i++) {
    struct api_token *t = &server->tokens.v[i];

    if (t->used_at == 0 || (job->ids[job->n] = strdup(t->id)) == NULL)
      continue;
    job->used_at[job->n++] = t->used_at;
    t->used_at = 0;
  }
  if (job->n == 0 || server->registry->submit(server->registry_ctx, record_uses,
                                              free_uses, job) != 0)
    free_uses(job);
}

/* ---- memory held for clients --------------------------------------------- */

/* Worth giving back: this much output held at once, or this many
 * connections closed, since the last time; at most every
 * TRIM_INTERVAL_MS. */
#define TRIM_AFTER_BYTES (16 * 1024 * 1024)
#define TRIM_AFTER_CONNS 64
#define TRIM_INTERVAL_MS 10000

/* Once clients that made the API hold memory (answers they did not read,
 * request bodies, their connections' state) have left, the freed memory
 * goes back to the system. glibc keeps freed heap: nlbd asks it to keep
 * up to 64 MiB at the top (nlb/daemon.c), and pages freed in the middle
 * of the heap stay resident whatever the threshold; malloc_trim(0) hands
 * back both. It walks the heap, so not on every close: only when nothing
 * is held any more after a burst. */
static void maybe_trim(struct api_server *server, uint64_t now)
{
  if (server->output_held > 0 || server->admission.bytes_held > 0 ||
      (server->output_peak < TRIM_AFTER_BYTES &&
       server->conns_closed < TRIM_AFTER_CONNS) ||
      now - server->trimmed_at < TRIM_INTERVAL_MS)
    return;
  server->trimmed_at = now;
  server->output_peak = 0;
  server->conns_closed = 0;
#ifdef __GLIBC__
  uint64_t started = uv_hrtime();
  malloc_trim(0);
  api_log(server, 0,
          "api: freed memory given back to the system in %" PRIu64 " us",
          (uv_hrtime() - started) / 1000);
#endif
}

static void on_sweep_timer(uv_timer_t *timer)
{
  struct api_server *server = timer->data;
  uint64_t now = uv_now(server->loop);
  struct nlb_list *pos, *tmp;

  NLB_LIST_FOREACH_SAFE(pos, tmp, &server->conns)
  {
    struct api_conn *c = NLB_CONTAINER_OF(pos, struct api_conn, link);
    if (!c->closing)
      api_conn_sweep(c, now);
  }
  sweep_tokens(server, now);
  maybe_trim(server, now);
}

/* ---- server ------------------------------------------------------------- */

static void on_server_handle_close(uv_handle_t *handle)
{
  struct api_server *server = handle->data;
  server->open_handles--;
}

/* Closes the server's timers once it is shutting down and its last
 * connection has closed (conn.c calls it as each one closes). */
static void maybe_finish(struct api_server *server)
{
  if (!server->shutting_down || server->n_conns > 0 || server->timers_closed)
    return;
  server->timers_closed = true;
  uv_close((uv_handle_t *)&server->sweep_timer, on_server_handle_close);
  uv_close((uv_handle_t *)&server->flush_timer, on_server_handle_close);
}

static int parse_listen(const char *listen, struct sockaddr_storage *addr)
{
  char host[INET6_ADDRSTRLEN + 2];
  const char *colon;
  char *end;
  long port;

  if (listen == NULL)
    return -EINVAL;
  if (listen[0] == '[') {
    const char *close = strchr(listen, ']');
    if (close == NULL || close[1] != ':' ||
        (size_t)(close - listen - 1) >= sizeof host)
      return -EINVAL;
    memcpy(host, listen + 1, (size_t)(close - listen - 1));
    host[close - listen - 1] = '\0';
    colon = close + 1;
  } else {
    colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof host)
      return -EINVAL;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
  }
  errno = 0;
  port = strtol(colon + 1, &end, 10);
  if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535 ||
      errno != 0)
    return -EINVAL;
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)addr) == 0)
    return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)addr) == 0)
    return 0;
  return -EINVAL;
}

static void principals_free(struct api_principal *principals, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free((char *)principals[i].name);
    OPENSSL_cleanse(principals[i].token_sha256,
                    sizeof principals[i].token_sha256);
  }
  free(principals);
}

static int principals_copy(const struct api_settings *s,
                           struct api_principal **out)
{
  struct api_principal *copy =
      calloc(s->n_principals > 0 ? s->n_principals : 1, sizeof *copy);
  if (copy == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < s->n_principals; i++) {
    copy[i] = s->principals[i];
    copy[i].name = strdup(s->principals[i].name);
    if (copy[i].name == NULL) {
      principals_free(copy, i);
      return -ENOMEM;
    }
  }
  *out = copy;
  return 0;
}

static void take_settings(struct api_server *server,
                          const struct api_settings *s)
{
  server->dataplane = s->dataplane;
  server->dataplane_arg = s->dataplane_arg;
  server->log_event = s->log_event;
  server->log_request = s->log_request;
  server->log_arg = s->log_arg;
  server->request_timeout_ms = s->request_timeout_ms != 0
                                   ? s->request_timeout_ms
                                   : API_DEFAULT_REQUEST_TIMEOUT_MS;
  server->idle_timeout_ms = s->idle_timeout_ms != 0
                                ? s->idle_timeout_ms
                                : API_DEFAULT_IDLE_TIMEOUT_MS;
  server->admission.lifetime_ms = s->unauthenticated_lifetime_ms != 0
                                      ? s->unauthenticated_lifetime_ms
                                      : API_DEFAULT_UNAUTHENTICATED_LIFETIME_MS;
  server->output_budget =
      s->output_budget != 0 ? s->output_budget : API_DEFAULT_OUTPUT_BUDGET;
  api_admission_set_limits(&server->admission, s->limits);
}

/* Finds protocol (length-prefixed) in the client's ALPN list; true with
 * *out pointing at it. */
static bool alpn_find(const unsigned char *in, unsigned inlen,
                      const char *protocol, const unsigned char **out)
{
  size_t len = strlen(protocol);
  for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
    if (in[i] == len && i + 1 + len <= inlen &&
        memcmp(in + i + 1, protocol, len) == 0) {
      *out = in + i + 1;
      return true;
    }
  }
  return false;
}

/* h2 when the client offers it, else http/1.1; a client that offers
 * neither is refused (no_application_protocol). A client without ALPN
 * never gets here and speaks HTTP/1.1. */
static int on_alpn_select(SSL *ssl, const unsigned char **out,
                          unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg)
{
  if (alpn_find(in, inlen, "h2", out)) {
    *outlen = 2;
    return SSL_TLSEXT_ERR_OK;
  }
  if (alpn_find(in, inlen, "http/1.1", out)) {
    *outlen = 8;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static void log_ssl_error(struct api_server *server, const char *what)
{
  unsigned long err = ERR_get_error();
  char text[256] = "unknown error";
  if (err != 0)
    ERR_error_string_n(err, text, sizeof text);
  api_log(server, 3, "api: %s: %s", what, text);
  ERR_clear_error();
}

/* A TLS context for the certificate and key files of s, in *out (NULL
 * when s asks for no TLS). Returns 0 or a negative errno (logged). */
static int tls_context_new(struct api_server *server,
                           const struct api_settings *s, SSL_CTX **out)
{
  *out = NULL;
  if (s->tls_cert == NULL && s->tls_key == NULL)
    return 0;
  if (s->tls_cert == NULL || s->tls_key == NULL) {
    api_log(server, 3, "api: TLS needs both a certificate and a key");
    return -EINVAL;
  }
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL)
    return -ENOMEM;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* RFC 9113 9.2.2: TLS 1.2 with ephemeral keys and AEAD only. */
  SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
  if (SSL_CTX_use_certificate_chain_file(ctx, s->tls_cert) != 1) {
    log_ssl_error(server, s->tls_cert);
    SSL_CTX_free(ctx);
    return -EINVAL;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, s->tls_key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    log_ssl_error(server, s->tls_key);
    SSL_CTX_free(ctx);
    return -EINVAL;
  }
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, NULL);
  *out = ctx;
  return 0;
}

/* On reload, certificate and key files are read again (a renewed
 * certificate at the same paths is the usual case). New connections get
 * the new context; open ones keep theirs (each SSL holds a reference to
 * its context). A file that does not load leaves the old context in use.
 * Turning TLS on or off changes what the listener speaks: that takes a
 * restart, like api.listen. */
static void tls_reload(struct api_server *server, const struct api_settings *s)
{
  SSL_CTX *fresh = NULL;

  if (server->ssl_ctx == NULL) {
    if (s->tls_cert != NULL)
      api_log(server, 2,
              "api: reload: 'api.tls' was added; this takes a "
              "restart, still serving h2c and HTTP/1.1");
    return;
  }
  if (s->tls_cert == NULL) {
    api_log(server, 2,
            "api: reload: 'api.tls' was removed; this takes a "
            "restart, still serving TLS");
    return;
  }
  if (tls_context_new(server, s, &fresh) < 0) {
    api_log(server, 2, "api: reload: keeping the TLS certificate in use");
    return;
  }
  SSL_CTX_free(server->ssl_ctx);
  server->ssl_ctx = fresh;
  api_log(server, 1, "api: TLS certificate reloaded from %s", s->tls_cert);
}

static void on_failed_listener_close(uv_handle_t *handle)
{
  free(handle->data);
}

/* A listening, non-blocking socket bound to addr, in *fd. */
static int open_listen_socket(const struct sockaddr *addr, int *fd)
{
  int one = 1;
  socklen_t len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
  int s =
      socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0)
    return -errno;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (addr->sa_family == AF_INET6)
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(s, addr, len) != 0 || listen(s, API_LISTEN_BACKLOG) != 0) {
    int r = -errno;
    close(s);
    return r;
  }
  *fd = s;
  return 0;
}

int api_server_start(uv_loop_t *loop, const struct api_settings *s,
                     struct api_server **out)
{
  struct sockaddr_storage addr;
  struct api_server *server;
  int fd = s->listen_fd > 0 ? s->listen_fd : -1; /* an upgrade's, or -1 */
  int r;

  if (parse_listen(s->listen, &addr) != 0) {
    r = -EINVAL;
    goto fail_close_fd;
  }
  server = calloc(1, sizeof *server);
  if (server == NULL) {
    r = -ENOMEM;
    goto fail_close_fd;
  }
  server->loop = loop;
  server->registry = s->registry;
  server->registry_ctx = s->registry_ctx;
  server->h2_protocol = &api_h2_protocol;
  server->h1_protocol = &api_h1_protocol;
  server->on_conn_closed = maybe_finish;
  nlb_list_init(&server->conns);
  nlb_list_init(&server->event_streams);
  nlb_list_init(&server->event_reads_waiting);
  api_admission_init(&server->admission, 0);
  take_settings(server, s);
  r = principals_copy(s, &server->principals);
  if (r != 0)
    goto fail_free_server;
  server->n_principals = s->n_principals;
  r = tls_context_new(server, s, &server->ssl_ctx);
  if (r != 0)
    goto fail_free_principals;

  /* Bind and listen before any handle exists, so that a failure (the
   * usual one: the address is taken) leaves nothing for the loop. */
  r = fd >= 0 ? 0 : open_listen_socket((struct sockaddr *)&addr, &fd);
  if (r != 0) {
    api_log(server, 3, "api: cannot listen on %s: %s", s->listen,
            uv_strerror(r));
    goto fail_free_tls;
  }
  r = uv_tcp_init(loop, &server->listener);
  if (r != 0)
    goto fail_free_tls;
  server->listener.data = server;
  r = uv_tcp_open(&server->listener, fd);
  if (r != 0)
    close(fd);
  else
    r = uv_listen((uv_stream_t *)&server->listener, API_LISTEN_BACKLOG,
                  api_conn_on_connection);
  if (r != 0)
    goto fail_close_listener;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  if (uv_tcp_getsockname(&server->listener, (struct sockaddr *)&bound, &len) ==
      0)
    server->port = ntohs(bound.ss_family == AF_INET6
                             ? ((struct sockaddr_in6 *)&bound)->sin6_port
                             : ((struct sockaddr_in *)&bound)->sin_port);
  uv_timer_init(loop, &server->sweep_timer);
  uv_timer_init(loop, &server->flush_timer);
  server->sweep_timer.data = server->flush_timer.data = server;
  uv_timer_start(&server->sweep_timer, on_sweep_timer, SWEEP_INTERVAL_MS,
                 SWEEP_INTERVAL_MS);
  server->listener_open = true;
  server->open_handles = 3;
  api_log(server, 1, "api: listening on %s (%s)", s->listen,
          server->ssl_ctx != NULL ? "TLS, ALPN h2 and http/1.1"
                                  : "h2c and HTTP/1.1");
  *out = server;
  return 0;

fail_close_listener:
  /* The handle is registered with the loop: the server's memory goes in
   * its close callback. */
  SSL_CTX_free(server->ssl_ctx);
  principals_free(server->principals, server->n_principals);
  uv_close((uv_handle_t *)&server->listener, on_failed_listener_close);
  return r;
fail_free_tls:
  SSL_CTX_free(server->ssl_ctx);
fail_free_principals:
  principals_free(server->principals, s->n_principals);
fail_free_server:
  free(server);
fail_close_fd:
  if (fd >= 0)
    close(fd); /* a handed-over socket the server never took */
  return r;
}

int api_server_port(const struct api_server *server)
{
  return server->port;
}

int api_server_reload(struct api_server *server, const struct api_settings *s)
{
  struct api_principal *principals;
  struct nlb_list *pos, *tmp;

  if (principals_copy(s, &principals) != 0)
    return -ENOMEM;
  principals_free(server->principals, server->n_principals);
  server->principals = principals;
  server->n_principals = s->n_principals;
  take_settings(server, s);
  tls_reload(server, s);
  NLB_LIST_FOREACH_SAFE(pos, tmp, &server->conns)
  api_conn_goaway(NLB_CONTAINER_OF(pos, struct api_conn, link), 0);
  api_log(server, 1, "api: reloaded, %zu principals", s->n_principals);
  return 0;
}

void api_server_shutdown(struct api_server *server)
{
  struct nlb_list *pos, *tmp;
  uint64_t deadline;

  if (server->shutting_down)
    return;
  server->shutting_down = true;
  if (server->listener_open) {
    server->listener_open = false;
    uv_close((uv_handle_t *)&server->listener, on_server_handle_close);
  }
  deadline = uv_now(server->loop) + API_GOAWAY_GRACE_MS;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &server->conns)
  api_conn_goaway(NLB_CONTAINER_OF(pos, struct api_conn, link), deadline);
  maybe_finish(server);
}

bool api_server_closed(const struct api_server *server)
{
  return server->open_handles == 0 && server->n_conns == 0;
}

void api_server_free(struct api_server *server)
{
  if (server == NULL)
    return;
  principals_free(server->principals, server->n_principals);
  api_tokens_free(&server->tokens);
  SSL_CTX_free(server->ssl_ctx);
  api_admission_free(&server->admission);
  free(server);
}
