/* The HTTP/2 server: a uv_tcp_t listener on the control loop, one nghttp2
 * session per connection, optional TLS through OpenSSL memory BIOs, request
 * assembly and limits, and the long-lived event streams. Handlers live in
 * handlers.c; this file knows nothing of routes beyond dispatching them. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "api-int.h"
#include "nlb/api-auth.h"

/* Header blocks over this answer 431; over the hard limit the connection
 * goes (a CONTINUATION flood costs us no more than this). */
#define HEADER_SOFT_LIMIT (16 * 1024)
#define HEADER_HARD_LIMIT (64 * 1024)
#define PATH_MAX_LEN 4096
/* Stop asking nghttp2 for bytes while this much waits in libuv. */
#define WRITE_HIGH_WATER (256 * 1024)
/* How long a GOAWAY'd connection may take to finish before it is cut. */
#define GOAWAY_GRACE_MS 2000
#define SWEEP_INTERVAL_MS 250
#define EVENTS_BATCH 256
/* How long an early answer waits for the rest of its request. */
#define EARLY_RESET_MS 1000

struct api_conn;

struct api_stream {
  struct nlb_list link;        /* api_conn.streams */
  struct nlb_list events_link; /* api_server.event_streams, when events */
  struct api_conn *conn;
  int32_t id;
  uint64_t started;

  char method[16];
  char *path;
  char *authorization; /* wiped and freed once dispatched */
  size_t authorization_len;
  int64_t content_length; /* -1: not given */
  size_t header_bytes;
  bool headers_too_large;

  char *body;
  size_t body_len, body_cap;
  bool request_done; /* END_STREAM received */
  bool responded;
  uint64_t answered_early; /* when answered before request_done, or 0 */
  bool cancelled;          /* RST_STREAM(CANCEL) sent by the sweep */

  char *out; /* response body, or pending event lines */
  size_t out_len, out_off;
  bool events;
  bool events_ended;
  uint64_t events_cursor;
  char actor_name[REG_NAME_BUF];
  struct reg_actor actor;
};

struct api_conn {
  struct nlb_list link; /* api_server.conns */
  struct api_server *server;
  uv_tcp_t tcp;
  nghttp2_session *session;
  SSL *ssl; /* NULL: h2c */
  BIO *rbio, *wbio;
  bool handshake_done;
  struct nlb_list streams;
  size_t n_streams;
  uint64_t accepted_at;
  uint64_t idle_since;     /* last stream closed, or accepted */
  uint64_t close_deadline; /* 0: none */
  bool goaway_sent;
  bool fatal;   /* the session is dead: write what is queued, then close */
  bool closing; /* uv_close called */
  bool in_recv; /* inside nghttp2_session_mem_recv: no mem_send now */
  bool flush_wanted;
  size_t writes_pending;
  char peer[64];
};

struct write_req {
  uv_write_t req;
  struct api_conn *conn;
  char *data;
};

static nghttp2_session_callbacks *callbacks;

void api_log(struct api_server *server, int level, const char *fmt, ...)
{
  char line[1024];
  va_list ap;

  if (server->log_event == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  server->log_event(server->log_arg, level, line);
}

/* ---- connection lifetime ------------------------------------------------ */

static void stream_free(struct api_stream *s)
{
  struct api_conn *c = s->conn;
  nlb_list_remove(&s->link);
  nlb_list_remove(&s->events_link);
  if (s->authorization != NULL) {
    OPENSSL_cleanse(s->authorization, s->authorization_len);
    free(s->authorization);
  }
  free(s->path);
  free(s->body);
  free(s->out);
  free(s);
  c->n_streams--;
  if (c->n_streams == 0)
    c->idle_since = uv_now(c->server->loop);
}

static void maybe_finish(struct api_server *server);

static void on_conn_close(uv_handle_t *handle)
{
  struct api_conn *c = handle->data;
  struct api_server *server = c->server;
  struct nlb_list *pos, *tmp;

  nlb_list_remove(&c->link);
  server->n_conns--;
  if (c->session != NULL)
    nghttp2_session_del(c->session);
  NLB_LIST_FOREACH_SAFE(pos, tmp, &c->streams)
  stream_free(NLB_CONTAINER_OF(pos, struct api_stream, link));
  if (c->ssl != NULL)
    SSL_free(c->ssl); /* frees both BIOs */
  free(c);
  maybe_finish(server);
}

/* Starts closing; the memory goes in on_conn_close, never while a callback
 * of this connection is on the stack. */
static void conn_close(struct api_conn *c)
{
  struct nlb_list *pos;
  if (c->closing)
    return;
  c->closing = true;
  /* No observer may touch a closing connection's streams. */
  for (pos = c->streams.next; pos != &c->streams; pos = pos->next)
    nlb_list_remove(
        &NLB_CONTAINER_OF(pos, struct api_stream, link)->events_link);
  uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

/* ---- writing ------------------------------------------------------------ */

static void conn_flush(struct api_conn *c);

static void on_write(uv_write_t *req, int status)
{
  struct write_req *w = NLB_CONTAINER_OF(req, struct write_req, req);
  struct api_conn *c = w->conn;

  free(w->data);
  free(w);
  c->writes_pending--;
  if (c->closing)
    return;
  if (status < 0) {
    api_log(c->server, 0, "api: %s: write failed: %s", c->peer,
            uv_strerror(status));
    conn_close(c);
    return;
  }
  conn_flush(c);
}

/* Writes data (malloc'd; taken) to the socket. */
static void conn_write_raw(struct api_conn *c, char *data, size_t len)
{
  struct write_req *w = malloc(sizeof *w);
  if (w == NULL) {
    free(data);
    conn_close(c);
    return;
  }
  w->conn = c;
  w->data = data;
  uv_buf_t buf = uv_buf_init(data, (unsigned)len);
  int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
  if (r != 0) {
    free(data);
    free(w);
    conn_close(c);
    return;
  }
  c->writes_pending++;
}

/* Sends what OpenSSL has queued in the write BIO. */
static void conn_tls_drain(struct api_conn *c)
{
  size_t pending = BIO_ctrl_pending(c->wbio);
  if (pending == 0 || c->closing)
    return;
  char *data = malloc(pending);
  if (data == NULL) {
    conn_close(c);
    return;
  }
  int n = BIO_read(c->wbio, data, (int)pending);
  if (n <= 0) {
    free(data);
    return;
  }
  conn_write_raw(c, data, (size_t)n);
}

/* Writes plaintext HTTP/2 bytes (malloc'd; taken). */
static void conn_write(struct api_conn *c, char *data, size_t len)
{
  if (c->ssl == NULL) {
    conn_write_raw(c, data, len);
    return;
  }
  /* A memory BIO never blocks, so SSL_write takes everything. */
  int n = SSL_write(c->ssl, data, (int)len);
  free(data);
  if (n <= 0) {
    ERR_clear_error();
    c->fatal = true;
    return;
  }
  conn_tls_drain(c);
}

static void conn_flush(struct api_conn *c)
{
  if (c->closing)
    return;
  if (c->in_recv) {
    c->flush_wanted = true;
    return;
  }
  if (c->fatal) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (c->writes_pending == 0)
      conn_close(c);
    return;
  }
  if (c->ssl != NULL && !c->handshake_done)
    return;

  char *out = NULL;
  size_t len = 0, cap = 0;
  while (c->tcp.write_queue_size + len < WRITE_HIGH_WATER) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(c->session, &data);
    if (n < 0) {
      api_log(c->server, 0, "api: %s: %s", c->peer, nghttp2_strerror((int)n));
      c->fatal = true;
      break;
    }
    if (n == 0)
      break;
    if (len + (size_t)n > cap) {
      size_t grown_cap = (len + (size_t)n) * 2;
      char *grown = realloc(out, grown_cap);
      if (grown == NULL) {
        c->fatal = true;
        break;
      }
      out = grown;
      cap = grown_cap;
    }
    memcpy(out + len, data, (size_t)n);
    len += (size_t)n;
  }
  if (len > 0)
    conn_write(c, out, len);
  else
    free(out);
  if (c->closing)
    return;
  if (c->fatal || (!nghttp2_session_want_read(c->session) &&
                   !nghttp2_session_want_write(c->session))) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->fatal = true;
    if (c->writes_pending == 0)
      conn_close(c);
  }
}

/* A GOAWAY frame by hand, for when the session itself is beyond use. */
static void conn_write_goaway(struct api_conn *c, uint32_t error_code)
{
  int32_t last = c->session != NULL
                     ? nghttp2_session_get_last_proc_stream_id(c->session)
                     : 0;
  uint8_t frame[17] = {0, 0, 8, NGHTTP2_GOAWAY, 0, 0, 0, 0, 0};
  frame[9] = (uint8_t)(last >> 24 & 0x7f);
  frame[10] = (uint8_t)(last >> 16);
  frame[11] = (uint8_t)(last >> 8);
  frame[12] = (uint8_t)last;
  frame[13] = (uint8_t)(error_code >> 24);
  frame[14] = (uint8_t)(error_code >> 16);
  frame[15] = (uint8_t)(error_code >> 8);
  frame[16] = (uint8_t)error_code;
  char *data = malloc(sizeof frame);
  if (data == NULL)
    return;
  memcpy(data, frame, sizeof frame);
  conn_write(c, data, sizeof frame);
}

/* ---- responses ---------------------------------------------------------- */

static ssize_t on_read_body(nghttp2_session *session, int32_t stream_id,
                            uint8_t *buf, size_t length, uint32_t *data_flags,
                            nghttp2_data_source *source, void *user_data)
{
  struct api_stream *s = source->ptr;
  struct api_conn *c = user_data;

  if (s->events && !s->events_ended && s->out_off == s->out_len) {
    free(s->out);
    s->out = NULL;
    s->out_len = s->out_off = 0;
    /* Read until a visible event turns up or the log is exhausted. */
    for (;;) {
      int r = api_events_read(c->server, &s->actor, &s->events_cursor,
                              EVENTS_BATCH, &s->out, &s->out_len);
      if (r == -ESTALE) {
        /* The reader fell behind event_retention: end the stream; asking
         * again with its last seq gets a 410 that says why. */
        s->events_ended = true;
        break;
      }
      if (r < 0) {
        api_log(c->server, 3, "api: cannot read events: %s", strerror(-r));
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      }
      if (r == 0 || s->out_len > 0)
        break;
    }
  }
  size_t n = s->out_len - s->out_off;
  if (n > length)
    n = length;
  if (n > 0)
    memcpy(buf, s->out + s->out_off, n);
  s->out_off += n;
  if (s->out_off == s->out_len) {
    if (!s->events || s->events_ended)
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    else if (n == 0)
      return NGHTTP2_ERR_DEFERRED;
  }
  return (ssize_t)n;
}

#define NV(name, value)                                                        \
  {                                                                            \
    (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, strlen(value),    \
        NGHTTP2_NV_FLAG_NO_COPY_NAME                                           \
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

/* Writes "the path, without its query, printable" into buf for the log. */
static void loggable_path(const char *path, char *buf, size_t len)
{
  size_t i = 0;
  for (; path != NULL && path[i] != '\0' && path[i] != '?' && i + 1 < len; i++)
    buf[i] = path[i] > ' ' && path[i] < 127 ? path[i] : '?';
  buf[i] = '\0';
}

/* Submits resp (taking its body) on stream s and accounts for it. */
static void respond(struct api_conn *c, struct api_stream *s,
                    struct api_response *resp, unsigned allow,
                    const struct api_principal *principal)
{
  struct api_server *server = c->server;
  char status[8], length[24], allow_text[64];
  nghttp2_nv nva[6];
  size_t n = 0;
  bool head = strcmp(s->method, "HEAD") == 0;

  if (resp->status >= API_STATUS_MIN && resp->status <= API_STATUS_MAX)
    server->requests_by_status[resp->status - API_STATUS_MIN]++;
  if (strcmp(s->method, "GET") != 0 && !head) {
    char path[256];
    loggable_path(s->path, path, sizeof path);
    api_log(server, 1,
            "api audit: principal=%s role=%s method=%s path=%s status=%d",
            principal != NULL ? principal->name : "-",
            principal != NULL ? reg_role_name(principal->role) : "-", s->method,
            path, resp->status);
  }

  snprintf(status, sizeof status, "%d", resp->status);
  nva[n++] = (nghttp2_nv)NV(":status", status);
  nva[n++] = (nghttp2_nv)NV("content-type", resp->content_type != NULL
                                                ? resp->content_type
                                                : "application/json");
  nva[n++] = (nghttp2_nv)NV("cache-control", "no-store");
  if (!resp->events) {
    snprintf(length, sizeof length, "%zu", resp->len);
    nva[n++] = (nghttp2_nv)NV("content-length", length);
  }
  if (resp->status == 405) {
    format_allow(allow, allow_text, sizeof allow_text);
    nva[n++] = (nghttp2_nv)NV("allow", allow_text);
  }
  if (resp->status == 401)
    nva[n++] = (nghttp2_nv)NV("www-authenticate", "Bearer");

  s->responded = true;
  s->out = resp->body;
  s->out_len = head ? 0 : resp->len;
  s->out_off = 0;
  resp->body = NULL;
  if (resp->events && !head) {
    s->events = true;
    s->events_cursor = resp->events_after;
    snprintf(s->actor_name, sizeof s->actor_name, "%s",
             principal != NULL ? principal->name : "");
    s->actor.name = s->actor_name;
    s->actor.role = principal != NULL ? principal->role : REG_ROLE_CONSUMER;
    nlb_list_append(&server->event_streams, &s->events_link);
  }
  nghttp2_data_provider provider = {.source.ptr = s,
                                    .read_callback = on_read_body};
  bool has_body = s->events || s->out_len > 0;
  int r = nghttp2_submit_response(c->session, s->id, nva, n,
                                  has_body ? &provider : NULL);
  if (r != 0)
    api_log(server, 0, "api: %s: cannot respond: %s", c->peer,
            nghttp2_strerror(r));
}

static void respond_error(struct api_conn *c, struct api_stream *s, int status,
                          const char *code, const char *message)
{
  struct api_response resp = {0};
  api_respond_error(&resp, status, code, "%s", message);
  respond(c, s, &resp, 0, NULL);
  free(resp.body);
}

static void dispatch(struct api_conn *c, struct api_stream *s)
{
  struct api_server *server = c->server;
  struct api_response resp = {0};
  struct api_route_match match;
  const struct api_principal *principal = NULL;
  unsigned allowed = 0;
  enum api_method method = api_method_parse(s->method);
  int r;

  if (s->path == NULL) {
    api_respond_error(&resp, 400, "InvalidValue", "no :path");
    goto answer;
  }
  r = api_route_match(method != 0 ? method : API_METHOD_GET, s->path, &match,
                      &allowed);
  if (method == 0 && (r == 0 || r == -EPERM)) {
    api_respond_error(&resp, 405, "MethodNotAllowed",
                      "method %s is not allowed here", s->method);
    goto answer;
  }
  if (r == -ENOENT) {
    api_respond_error(&resp, 404, "NotFound", "no such route");
    goto answer;
  }
  if (r == -EPERM) {
    api_respond_error(&resp, 405, "MethodNotAllowed",
                      "method %s is not allowed here", s->method);
    goto answer;
  }
  if (r != 0) {
    api_respond_error(&resp, 400, "InvalidValue", "bad path");
    goto answer;
  }
  if (match.route->roles != 0) {
    principal = api_authenticate(server->principals, server->n_principals,
                                 s->authorization, s->authorization_len);
    if (principal == NULL) {
      api_respond_error(&resp, 401, "Unauthorized",
                        "a known bearer token is required");
      goto answer;
    }
    if (!api_route_allows(match.route, principal->role)) {
      api_respond_error(&resp, 403, "Forbidden", "a %s may not call %s",
                        reg_role_name(principal->role), match.route->name);
      goto answer;
    }
  }
  struct api_request req = {
      .server = server,
      .match = &match,
      .actor = {principal != NULL ? principal->name : NULL,
                principal != NULL ? principal->role : REG_ROLE_CONSUMER},
      .body = s->body,
      .body_len = s->body_len,
  };
  api_handle(&req, &resp);
answer:
  if (s->authorization != NULL) {
    OPENSSL_cleanse(s->authorization, s->authorization_len);
    free(s->authorization);
    s->authorization = NULL;
  }
  respond(c, s, &resp, allowed, principal);
  free(resp.body);
}

/* ---- nghttp2 callbacks -------------------------------------------------- */

static int on_begin_headers(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user_data)
{
  struct api_conn *c = user_data;
  if (frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  struct api_stream *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  s->conn = c;
  s->id = frame->hd.stream_id;
  s->started = uv_now(c->server->loop);
  s->content_length = -1;
  nlb_list_init(&s->events_link);
  nlb_list_append(&c->streams, &s->link);
  c->n_streams++;
  nghttp2_session_set_stream_user_data(session, s->id, s);
  return 0;
}

static bool header_is(const uint8_t *name, size_t len, const char *want)
{
  return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user_data)
{
  struct api_stream *s =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (s == NULL || frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  s->header_bytes += namelen + valuelen + 32;
  if (s->header_bytes > HEADER_HARD_LIMIT)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (s->header_bytes > HEADER_SOFT_LIMIT) {
    s->headers_too_large = true;
    return 0;
  }
  if (header_is(name, namelen, ":method")) {
    snprintf(s->method, sizeof s->method, "%.*s", (int)valuelen,
             (const char *)value);
  } else if (header_is(name, namelen, ":path")) {
    if (valuelen > PATH_MAX_LEN) {
      s->headers_too_large = true;
      return 0;
    }
    free(s->path);
    s->path = strndup((const char *)value, valuelen);
    if (s->path == NULL)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  } else if (header_is(name, namelen, "authorization")) {
    if (s->authorization != NULL)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* twice: refuse */
    s->authorization = strndup((const char *)value, valuelen);
    if (s->authorization == NULL)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s->authorization_len = valuelen;
  } else if (header_is(name, namelen, "content-length")) {
    char buf[24];
    snprintf(buf, sizeof buf, "%.*s", (int)valuelen, (const char *)value);
    s->content_length = strtoll(buf, NULL, 10);
  }
  return 0;
}

/* Answers before the request is complete (413, 408, 431). The rest of the
 * request is read and dropped; a client that has not finished it a moment
 * later gets RST_STREAM(NO_ERROR) from the sweep. Not at once: some clients
 * (curl 7.88) take a reset during their upload as a failure, even after a
 * complete answer. */
static void respond_early(struct api_conn *c, struct api_stream *s, int status,
                          const char *code, const char *message)
{
  s->answered_early = uv_now(c->server->loop);
  free(s->body);
  s->body = NULL;
  s->body_len = s->body_cap = 0;
  respond_error(c, s, status, code, message);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data)
{
  struct api_conn *c = user_data;
  struct api_stream *s;

  if (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (s == NULL)
    return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && !s->responded) {
    if (s->headers_too_large)
      respond_early(c, s, 431, "HeadersTooLarge",
                    "the request headers are too large");
    else if (s->content_length > API_MAX_BODY)
      respond_early(c, s, 413, "PayloadTooLarge",
                    "the request body is over 64 KiB");
  }
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
    s->request_done = true;
    if (!s->responded)
      dispatch(c, s);
  }
  return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags,
                              int32_t stream_id, const uint8_t *data,
                              size_t len, void *user_data)
{
  struct api_conn *c = user_data;
  struct api_stream *s =
      nghttp2_session_get_stream_user_data(session, stream_id);
  if (s == NULL || s->responded)
    return 0;
  if (s->body_len + len > API_MAX_BODY) {
    respond_early(c, s, 413, "PayloadTooLarge",
                  "the request body is over 64 KiB");
    return 0;
  }
  if (s->body_len + len > s->body_cap) {
    size_t cap = s->body_cap > 0 ? s->body_cap : 1024;
    while (cap < s->body_len + len)
      cap *= 2;
    char *body = realloc(s->body, cap);
    if (body == NULL)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s->body = body;
    s->body_cap = cap;
  }
  memcpy(s->body + s->body_len, data, len);
  s->body_len += len;
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user_data)
{
  struct api_stream *s =
      nghttp2_session_get_stream_user_data(session, stream_id);
  if (s != NULL) {
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    stream_free(s);
  }
  return 0;
}

static int on_error(nghttp2_session *session, int lib_error_code,
                    const char *msg, size_t len, void *user_data)
{
  struct api_conn *c = user_data;
  api_log(c->server, 0, "api: %s: HTTP/2: %.*s", c->peer, (int)len, msg);
  return 0;
}

static int make_callbacks(void)
{
  if (callbacks != NULL)
    return 0;
  if (nghttp2_session_callbacks_new(&callbacks) != 0)
    return -ENOMEM;
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks,
                                                          on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks,
                                                       on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks,
                                                            on_data_chunk_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks,
                                                         on_stream_close);
  nghttp2_session_callbacks_set_error_callback2(callbacks, on_error);
  return 0;
}

/* ---- reading ------------------------------------------------------------ */

static void conn_recv_h2(struct api_conn *c, const uint8_t *data, size_t len)
{
  c->in_recv = true;
  ssize_t r = nghttp2_session_mem_recv(c->session, data, len);
  c->in_recv = false;
  if (r < 0) {
    api_log(c->server, 0, "api: %s: closing after protocol error: %s", c->peer,
            nghttp2_strerror((int)r));
    conn_write_goaway(c, r == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM
                                                  : NGHTTP2_PROTOCOL_ERROR);
    c->fatal = true;
  }
}

static void conn_recv_tls(struct api_conn *c, const char *data, size_t len)
{
  struct api_server *server = c->server;
  static uint8_t plain[16 * 1024];

  BIO_write(c->rbio, data, (int)len);
  if (!c->handshake_done) {
    int r = SSL_do_handshake(c->ssl);
    conn_tls_drain(c);
    if (r != 1) {
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return;
      unsigned long err = ERR_get_error();
      api_log(server, 0, "api: %s: TLS handshake failed: %s", c->peer,
              err != 0 ? ERR_reason_error_string(err) : "closed");
      ERR_clear_error();
      c->fatal = true;
      return;
    }
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
      api_log(server, 0, "api: %s: client did not negotiate h2", c->peer);
      c->fatal = true;
      return;
    }
    c->handshake_done = true;
  }
  while (!c->fatal && !c->closing) {
    int n = SSL_read(c->ssl, plain, sizeof plain);
    if (n <= 0) {
      int e = SSL_get_error(c->ssl, n);
      if (e != SSL_ERROR_WANT_READ) {
        if (e != SSL_ERROR_ZERO_RETURN)
          api_log(server, 0, "api: %s: TLS error", c->peer);
        c->fatal = true;
      }
      ERR_clear_error();
      break;
    }
    conn_recv_h2(c, plain, (size_t)n);
  }
  conn_tls_drain(c);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
  struct api_conn *c = handle->data;
  *buf = uv_buf_init(c->server->read_buf, sizeof c->server->read_buf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  struct api_conn *c = stream->data;

  if (nread == 0 || c->closing)
    return;
  if (nread < 0) {
    conn_close(c);
    return;
  }
  if (c->fatal)
    return;
  if (c->ssl != NULL)
    conn_recv_tls(c, buf->base, (size_t)nread);
  else
    conn_recv_h2(c, (const uint8_t *)buf->base, (size_t)nread);
  c->flush_wanted = false;
  conn_flush(c);
}

/* ---- accepting ---------------------------------------------------------- */

static int conn_start_session(struct api_conn *c)
{
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, API_MAX_CONCURRENT_STREAMS},
  };
  int r = nghttp2_session_server_new(&c->session, callbacks, c);
  if (r != 0)
    return -ENOMEM;
  r = nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings,
                              sizeof settings / sizeof settings[0]);
  if (r != 0)
    return -ENOMEM;
  if (c->server->ssl_ctx != NULL) {
    c->ssl = SSL_new(c->server->ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
      BIO_free(c->rbio);
      BIO_free(c->wbio);
      return -ENOMEM;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_accept_state(c->ssl);
  }
  return 0;
}

static void format_peer(struct api_conn *c)
{
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET) {
      struct sockaddr_in *in = (struct sockaddr_in *)&ss;
      uv_ip4_name(in, host, sizeof host);
      port = ntohs(in->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
      uv_ip6_name(in6, host, sizeof host);
      port = ntohs(in6->sin6_port);
    }
  }
  snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
}

static void on_connection(uv_stream_t *listener, int status)
{
  struct api_server *server = listener->data;
  struct api_conn *c;

  if (status < 0) {
    api_log(server, 2, "api: accept failed: %s", uv_strerror(status));
    return;
  }
  c = calloc(1, sizeof *c);
  if (c == NULL)
    return;
  c->server = server;
  nlb_list_init(&c->streams);
  c->accepted_at = c->idle_since = uv_now(server->loop);
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  nlb_list_append(&server->conns, &c->link);
  server->n_conns++;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  format_peer(c);
  if (server->n_conns > API_MAX_CONNECTIONS) {
    api_log(server, 2, "api: %s: over %d connections, closed", c->peer,
            API_MAX_CONNECTIONS);
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (conn_start_session(c) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c);
    return;
  }
  conn_flush(c);
}

/* ---- events, timers ----------------------------------------------------- */

static void on_flush_timer(uv_timer_t *timer);

void api_server_events(struct api_server *server,
                       const struct reg_event *events, size_t n,
                       uint64_t last_seq)
{
  struct nlb_list *pos;
  bool woke = false;

  for (pos = server->event_streams.next; pos != &server->event_streams;
       pos = pos->next) {
    struct api_stream *s =
        NLB_CONTAINER_OF(pos, struct api_stream, events_link);
    bool visible = false;

    if (last_seq <= s->events_cursor)
      continue;
    for (size_t i = 0; i < n && !visible; i++)
      visible = events[i].seq > s->events_cursor &&
                reg_event_visible(&events[i], &s->actor);
    /* A resync carries no events: let every stream behind look. */
    if (!visible && n > 0)
      continue;
    nghttp2_session_resume_data(s->conn->session, s->id);
    s->conn->flush_wanted = true;
    woke = true;
  }
  /* Changes are applied inside other callbacks (even inside this server's
   * nghttp2 ones): write on the next turn of the loop. */
  if (woke)
    uv_timer_start(&server->flush_timer, on_flush_timer, 0, 0);
}

static void on_flush_timer(uv_timer_t *timer)
{
  struct api_server *server = timer->data;
  struct nlb_list *pos, *tmp;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &server->conns)
  {
    struct api_conn *c = NLB_CONTAINER_OF(pos, struct api_conn, link);
    if (c->flush_wanted) {
      c->flush_wanted = false;
      conn_flush(c);
    }
  }
}

/* Sends GOAWAY: no new streams; open ones finish, event streams end. */
static void conn_goaway(struct api_conn *c, uint64_t deadline)
{
  struct nlb_list *pos;
  if (c->closing)
    return;
  if (deadline != 0 && (c->close_deadline == 0 || deadline < c->close_deadline))
    c->close_deadline = deadline;
  if (c->fatal || (c->ssl != NULL && !c->handshake_done)) {
    conn_close(c);
    return;
  }
  for (pos = c->streams.next; pos != &c->streams; pos = pos->next) {
    struct api_stream *s = NLB_CONTAINER_OF(pos, struct api_stream, link);
    if (s->events && !s->events_ended) {
      s->events_ended = true;
      nlb_list_remove(&s->events_link);
      nghttp2_session_resume_data(c->session, s->id);
    }
  }
  if (!c->goaway_sent) {
    c->goaway_sent = true;
    nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(c->session),
                          NGHTTP2_NO_ERROR, NULL, 0);
  }
  conn_flush(c);
}

static void conn_sweep(struct api_conn *c, uint64_t now)
{
  struct api_server *server = c->server;
  struct nlb_list *pos, *tmp;

  if (c->close_deadline != 0 && now >= c->close_deadline) {
    conn_close(c);
    return;
  }
  if (c->ssl != NULL && !c->handshake_done &&
      now - c->accepted_at >= server->request_timeout_ms) {
    conn_close(c);
    return;
  }
  if (c->n_streams == 0) {
    if (now - c->idle_since >= server->idle_timeout_ms)
      conn_goaway(c, now + GOAWAY_GRACE_MS);
    return;
  }
  NLB_LIST_FOREACH_SAFE(pos, tmp, &c->streams)
  {
    struct api_stream *s = NLB_CONTAINER_OF(pos, struct api_stream, link);
    uint64_t age = now - s->started;
    if (!s->responded && age >= server->request_timeout_ms) {
      respond_early(c, s, 408, "RequestTimeout",
                    "the request did not arrive in time");
    } else if (s->answered_early != 0 && !s->request_done &&
               now - s->answered_early >= EARLY_RESET_MS) {
      s->answered_early = 0;
      nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id,
                                NGHTTP2_NO_ERROR);
    } else if (!s->events && age >= 5 * server->request_timeout_ms) {
      /* Even the reset did not end it (say, a header block that never
       * ends): the connection goes. */
      api_log(server, 0, "api: %s: stream %d stuck, closing", c->peer,
              (int)s->id);
      conn_close(c);
      return;
    } else if (s->responded && !s->events &&
               age >= 4 * server->request_timeout_ms && !s->cancelled) {
      /* A client that never opens its window for our answer. */
      s->cancelled = true;
      nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id,
                                NGHTTP2_CANCEL);
    }
  }
  conn_flush(c);
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
      conn_sweep(c, now);
  }
}

/* ---- server ------------------------------------------------------------- */

static void on_server_handle_close(uv_handle_t *handle)
{
  struct api_server *server = handle->data;
  server->open_handles--;
}

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
  server->log_arg = s->log_arg;
  server->request_timeout_ms = s->request_timeout_ms != 0
                                   ? s->request_timeout_ms
                                   : API_DEFAULT_REQUEST_TIMEOUT_MS;
  server->idle_timeout_ms = s->idle_timeout_ms != 0
                                ? s->idle_timeout_ms
                                : API_DEFAULT_IDLE_TIMEOUT_MS;
}

static int on_alpn_select(SSL *ssl, const unsigned char **out,
                          unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg)
{
  for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
    if (in[i] == 2 && i + 3 <= inlen && memcmp(in + i + 1, "h2", 2) == 0) {
      *out = in + i + 1;
      *outlen = 2;
      return SSL_TLSEXT_ERR_OK;
    }
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
              "restart, still serving h2c");
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
  if (bind(s, addr, len) != 0 || listen(s, 128) != 0) {
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
  int r;

  if (parse_listen(s->listen, &addr) != 0)
    return -EINVAL;
  if (make_callbacks() != 0)
    return -ENOMEM;
  server = calloc(1, sizeof *server);
  if (server == NULL)
    return -ENOMEM;
  server->loop = loop;
  server->registry = s->registry;
  server->registry_ctx = s->registry_ctx;
  nlb_list_init(&server->conns);
  nlb_list_init(&server->event_streams);
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
  int fd = -1;
  r = open_listen_socket((struct sockaddr *)&addr, &fd);
  if (r != 0) {
    api_log(server, 3, "api: cannot listen on %s: %s", s->listen,
            uv_strerror(r));
    goto fail_free_tls;
  }
  r = uv_tcp_init(loop, &server->listener);
  if (r != 0) {
    close(fd);
    goto fail_free_tls;
  }
  server->listener.data = server;
  r = uv_tcp_open(&server->listener, fd);
  if (r != 0)
    close(fd);
  else
    r = uv_listen((uv_stream_t *)&server->listener, 128, on_connection);
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
          server->ssl_ctx != NULL ? "TLS, h2" : "h2c");
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
  conn_goaway(NLB_CONTAINER_OF(pos, struct api_conn, link), 0);
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
  deadline = uv_now(server->loop) + GOAWAY_GRACE_MS;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &server->conns)
  conn_goaway(NLB_CONTAINER_OF(pos, struct api_conn, link), deadline);
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
  SSL_CTX_free(server->ssl_ctx);
  free(server);
}
