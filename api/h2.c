/* HTTP/2 on a connection: one nghttp2 server session, request assembly
 * and limits per stream, answers as DATA under flow control, event streams
 * as DATA frames that never end on their own.
 *
 * A peer may leave its windows shut (SETTINGS_INITIAL_WINDOW_SIZE 0, no
 * WINDOW_UPDATE): answers then wait in their streams. While the answer
 * bytes waiting (in streams, and in the transport) are over the
 * connection's budget (API_WRITE_HIGH_WATER), complete requests wait
 * unanswered (deferred) instead of adding theirs; the socket is still read,
 * for the WINDOW_UPDATE that lets answers go. Static answers are sent from
 * where they are, not copied per stream. A connection whose answers have
 * not moved for the request timeout is closed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>

#include "conn.h"
#include "events.h"

/* Over this the connection goes (a CONTINUATION flood costs us no more). */
#define HEADER_HARD_LIMIT (64 * 1024)
/* How long an early answer waits for the rest of its request. */
#define EARLY_RESET_MS 1000
/* Streams open at once on a connection that has not presented a known
 * token (beyond: RST_STREAM(REFUSED_STREAM)). A client with a token shows
 * it on its first stream, before its second one is read. */
#define UNAUTHENTICATED_STREAMS 8

struct h2_conn;

struct h2_stream {
  struct nlb_list link; /* h2_conn.streams */
  struct h2_conn *h2;
  int32_t id;
  uint64_t started;

  char method[16];
  char *path;
  char *authorization; /* wiped and freed once dispatched */
  size_t authorization_len;
  /* If-None-Match, kept when it came once and fits (else ignored). */
  char if_none_match[API_IF_NONE_MATCH_MAX + 1];
  int n_if_none_match;
  bool if_none_match_fits;
  int64_t content_length; /* -1: not given */
  size_t header_bytes;
  bool headers_too_large;

  char *body;
  size_t body_len, body_cap;
  bool discard_body; /* not authenticated: DATA is read and dropped */
  bool request_done; /* END_STREAM received */
  bool responded;
  uint64_t answered_early; /* when answered before request_done, or 0 */
  bool cancelled;          /* RST_STREAM(CANCEL) sent by the sweep */

  /* The answer's body or the event lines being sent: out_buf (owned), or
   * static bytes (out_buf NULL); out_len - out_off of them wait. */
  const char *out;
  char *out_buf;
  size_t out_len, out_off;
  bool deferred; /* complete, waiting for the output to fall under budget */
  bool events;
  struct api_event_stream event_stream;
  /* The answer is under way on the registry's thread. */
  struct api_exchange x;
  bool waiting;
};

struct h2_conn {
  struct api_conn *conn;
  nghttp2_session *session;
  struct nlb_list streams;
  size_t n_streams;
  uint64_t idle_since; /* last stream closed, or started */
  bool goaway_sent;
  /* Answer bytes of the streams not yet handed to nghttp2, and when some
   * last went (or began to wait). */
  size_t waiting;
  uint64_t moved_at;
  size_t n_deferred;
};

static nghttp2_session_callbacks *callbacks;

static void forget_authorization(struct h2_stream *s)
{
  if (s->authorization == NULL)
    return;
  OPENSSL_cleanse(s->authorization, s->authorization_len);
  free(s->authorization);
  s->authorization = NULL;
}

/* Drops what was read of the request's body. */
static void drop_body(struct h2_stream *s)
{
  api_admission_hold(s->h2->conn->server, -(ptrdiff_t)s->body_cap);
  free(s->body);
  s->body = NULL;
  s->body_len = s->body_cap = 0;
}

/* s sends len bytes from buf (owned, taken) or shared (static). */
static void out_set(struct h2_stream *s, char *buf, const char *shared,
                    size_t len)
{
  struct h2_conn *h2 = s->h2;

  if (h2->waiting == 0)
    h2->moved_at = uv_now(h2->conn->server->loop);
  s->out_buf = buf;
  s->out = buf != NULL ? buf : shared;
  s->out_len = len;
  s->out_off = 0;
  h2->waiting += len;
  if (buf != NULL)
    api_conn_hold_output(h2->conn, (ptrdiff_t)len);
}

/* What s had to send goes (sent, or not wanted any more). */
static void out_drop(struct h2_stream *s)
{
  struct h2_conn *h2 = s->h2;

  h2->waiting -= s->out_len - s->out_off;
  if (s->out_buf != NULL)
    api_conn_hold_output(h2->conn, -(ptrdiff_t)s->out_len);
  free(s->out_buf);
  s->out_buf = NULL;
  s->out = NULL;
  s->out_len = s->out_off = 0;
}

static void stream_free(struct h2_stream *s)
{
  struct h2_conn *h2 = s->h2;
  nlb_list_remove(&s->link);
  drop_body(s);
  api_exchange_clear(&s->x);
  api_event_stream_stop(&s->event_stream);
  forget_authorization(s);
  free(s->path);
  out_drop(s);
  if (s->deferred)
    h2->n_deferred--;
  free(s);
  h2->n_streams--;
  if (h2->n_streams == 0)
    h2->idle_since = uv_now(h2->conn->server->loop);
}

/* ---- answers ------------------------------------------------------------ */

/* Refills s->out from the event log once it has been sent. */
static int refill_events(struct h2_stream *s)
{
  char *lines = NULL;
  size_t len = 0;

  if (!s->events || s->event_stream.ended || s->out_off < s->out_len)
    return 0;
  out_drop(s);
  int r = api_event_stream_read(&s->event_stream, &lines, &len);
  if (r != 0) {
    free(lines);
    return r;
  }
  if (len > 0)
    out_set(s, lines, NULL, len);
  else
    free(lines);
  return 0;
}

static ssize_t on_read_body(nghttp2_session *session, int32_t stream_id,
                            uint8_t *buf, size_t length, uint32_t *data_flags,
                            nghttp2_data_source *source, void *user_data)
{
  struct h2_stream *s = source->ptr;

  if (refill_events(s) != 0)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  size_t n = s->out_len - s->out_off;
  if (n > length)
    n = length;
  if (n > 0) {
    memcpy(buf, s->out + s->out_off, n);
    s->out_off += n;
    s->h2->waiting -= n;
    s->h2->moved_at = uv_now(s->h2->conn->server->loop);
  }
  if (s->out_off == s->out_len) {
    if (!s->events || s->event_stream.ended) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      out_drop(s); /* nghttp2 has it all: the memory goes now */
    } else if (n == 0) {
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return (ssize_t)n;
}

static void on_events_wake(struct api_event_stream *stream)
{
  struct h2_stream *s =
      NLB_CONTAINER_OF(stream, struct h2_stream, event_stream);
  nghttp2_session_resume_data(s->h2->session, s->id);
  api_conn_wake(s->h2->conn);
}

/* Submits x's answer (taking its body) on stream s. */
static void respond(struct h2_stream *s, struct api_exchange *x)
{
  struct api_conn *c = s->h2->conn;
  struct api_response_headers headers;
  nghttp2_nv nva[API_RESPONSE_HEADERS_MAX + 1];
  char status[8];
  bool head = api_exchange_is_head(x);

  snprintf(status, sizeof status, "%d", x->resp.status);
  nva[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7,
                        strlen(status), NGHTTP2_NV_FLAG_NO_COPY_NAME};
  api_response_headers(x, &headers);
  for (size_t i = 0; i < headers.n; i++)
    nva[i + 1] = (nghttp2_nv){
        (uint8_t *)headers.field[i].name, (uint8_t *)headers.field[i].value,
        strlen(headers.field[i].name), strlen(headers.field[i].value),
        NGHTTP2_NV_FLAG_NO_COPY_NAME};

  s->responded = true;
  if (!head && x->resp.len > 0 && x->resp.body != NULL) {
    out_set(s, x->resp.body, NULL, x->resp.len);
    x->resp.body = NULL;
  } else if (!head && x->resp.len > 0) {
    out_set(s, NULL, x->resp.static_body, x->resp.len);
  }
  if (x->resp.events && !head) {
    s->events = true;
    api_event_stream_start(&s->event_stream, c->server, x, on_events_wake);
  }
  nghttp2_data_provider provider = {.source.ptr = s,
                                    .read_callback = on_read_body};
  bool has_body = s->events || s->out_len > 0;
  int r = nghttp2_submit_response(s->h2->session, s->id, nva, headers.n + 1,
                                  has_body ? &provider : NULL);
  if (r != 0)
    api_conn_log(c, 0, "cannot respond: %s", nghttp2_strerror(r));
}

static void exchange_init(struct h2_stream *s, struct api_exchange *x)
{
  memset(x, 0, sizeof *x);
  x->method = s->method;
  x->path = s->path;
  x->authorization = s->authorization;
  x->authorization_len = s->authorization_len;
  if (s->n_if_none_match == 1 && s->if_none_match_fits)
    x->if_none_match = s->if_none_match;
  x->conn = s->h2->conn;
}

static void on_answer(struct api_exchange *x, void *arg)
{
  struct h2_stream *s = arg;

  s->waiting = false;
  respond(s, x);
  api_exchange_clear(x);
  api_conn_wake(s->h2->conn);
}

/* True while the connection's answers waiting are over its budget: no new
 * answer is made. */
static bool over_budget(const struct h2_conn *h2)
{
  return h2->waiting + api_conn_queued(h2->conn) >= API_WRITE_HIGH_WATER;
}

/* The request is complete: its answer (found by check_head already, or
 * from the handler). */
static void dispatch(struct h2_stream *s)
{
  if (!s->x.head_done)
    exchange_init(s, &s->x);
  s->x.body = s->body;
  s->x.body_len = s->body_len;
  int r = api_exchange_run(s->h2->conn->server, &s->x, on_answer, s);
  forget_authorization(s);
  if (r > 0) {
    s->waiting = true;
    return;
  }
  respond(s, &s->x);
  api_exchange_clear(&s->x);
}

/* Answers before the request is complete (413, 408, 431). The rest of the
 * request is read and dropped; a client that has not finished it a moment
 * later gets RST_STREAM(NO_ERROR) from the sweep. Not at once: some clients
 * (curl 7.88) take a reset during their upload as a failure, even after a
 * complete answer. */
static void respond_early(struct h2_stream *s, int status, const char *code,
                          const char *message)
{
  struct api_exchange x;

  s->answered_early = uv_now(s->h2->conn->server->loop);
  drop_body(s);
  exchange_init(s, &x);
  api_exchange_fail(s->h2->conn->server, &x, status, code, message);
  forget_authorization(s);
  respond(s, &x);
  api_exchange_clear(&x);
}

static void send_goaway(struct h2_conn *h2);

/* The request's header block is in: the limits, then the route and the
 * token. A request that is refused, or has no known token, has its body
 * dropped as it comes; the answer goes once the request is complete. */
static void check_head(struct h2_stream *s)
{
  struct api_conn *c = s->h2->conn;
  bool authenticated = false;

  if (s->headers_too_large) {
    respond_early(s, 431, "HeadersTooLarge",
                  "the request headers are too large");
  } else if (s->content_length > API_MAX_BODY) {
    respond_early(s, 413, "PayloadTooLarge", "the request body is over 64 KiB");
  } else {
    exchange_init(s, &s->x);
    api_exchange_head(c->server, &s->x);
    forget_authorization(s);
    authenticated = s->x.authenticated;
    s->discard_body = !authenticated || s->x.refused;
    if (s->x.refused) {
      /* Its answer is made: the path (up to 4 KiB) is no longer needed. */
      free(s->path);
      s->path = NULL;
      s->x.path = NULL;
    }
  }
  if (!api_admission_request(c, authenticated))
    send_goaway(s->h2);
}

/* ---- nghttp2 callbacks -------------------------------------------------- */

static int on_begin_headers(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user_data)
{
  struct h2_conn *h2 = user_data;
  if (frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  if (h2->conn->admission.state != API_ADMISSION_AUTHENTICATED &&
      h2->n_streams >= UNAUTHENTICATED_STREAMS) {
    /* No stream object: its header fields and DATA find none and are
     * dropped. */
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                              NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  struct h2_stream *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  s->h2 = h2;
  s->id = frame->hd.stream_id;
  s->started = uv_now(h2->conn->server->loop);
  s->content_length = -1;
  nlb_list_append(&h2->streams, &s->link);
  h2->n_streams++;
  nghttp2_session_set_stream_user_data(session, s->id, s);
  return 0;
}

static bool header_is(const uint8_t *name, size_t len, const char *want)
{
  return len == strlen(want) && memcmp(name, want, len) == 0;
}

/* Keeps the header fields the API reads; 0 or an nghttp2 error. */
static int take_header(struct h2_stream *s, const uint8_t *name, size_t namelen,
                       const uint8_t *value, size_t valuelen)
{
  if (header_is(name, namelen, ":method")) {
    snprintf(s->method, sizeof s->method, "%.*s", (int)valuelen,
             (const char *)value);
  } else if (header_is(name, namelen, ":path")) {
    if (valuelen > API_PATH_MAX_LEN) {
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
  } else if (header_is(name, namelen, "if-none-match")) {
    s->n_if_none_match++;
    s->if_none_match_fits = valuelen <= API_IF_NONE_MATCH_MAX;
    if (s->if_none_match_fits)
      snprintf(s->if_none_match, sizeof s->if_none_match, "%.*s", (int)valuelen,
               (const char *)value);
  } else if (header_is(name, namelen, "content-length")) {
    char buf[24];
    snprintf(buf, sizeof buf, "%.*s", (int)valuelen, (const char *)value);
    s->content_length = strtoll(buf, NULL, 10);
  }
  return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user_data)
{
  struct h2_stream *s =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (s == NULL || frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  s->header_bytes += namelen + valuelen + 32;
  if (s->header_bytes > HEADER_HARD_LIMIT)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (s->header_bytes > API_HEADER_SOFT_LIMIT) {
    s->headers_too_large = true;
    return 0;
  }
  return take_header(s, name, namelen, value, valuelen);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data)
{
  struct h2_stream *s;

  if (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (s == NULL)
    return 0;
  if (frame->hd.type == NGHTTP2_HEADERS &&
      frame->headers.cat == NGHTTP2_HCAT_REQUEST && !s->responded)
    check_head(s);
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
    s->request_done = true;
    if (s->responded) {
      /* answered early */
    } else if (over_budget(s->h2)) {
      s->deferred = true;
      s->h2->n_deferred++;
    } else {
      dispatch(s);
    }
  }
  return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags,
                              int32_t stream_id, const uint8_t *data,
                              size_t len, void *user_data)
{
  struct h2_stream *s =
      nghttp2_session_get_stream_user_data(session, stream_id);
  if (s == NULL || s->responded || s->discard_body)
    return 0;
  if (s->body_len + len > API_MAX_BODY) {
    respond_early(s, 413, "PayloadTooLarge", "the request body is over 64 KiB");
    return 0;
  }
  if (s->body_len + len > s->body_cap) {
    size_t cap = s->body_cap > 0 ? s->body_cap : 1024;
    while (cap < s->body_len + len)
      cap *= 2;
    char *body = realloc(s->body, cap);
    if (body == NULL)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    api_admission_hold(s->h2->conn->server, (ptrdiff_t)(cap - s->body_cap));
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
  struct h2_stream *s =
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
  struct h2_conn *h2 = user_data;
  api_conn_log(h2->conn, 0, "HTTP/2: %.*s", (int)len, msg);
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

/* ---- the protocol ------------------------------------------------------- */

/* A GOAWAY frame by hand, for when the session itself is beyond use. */
static void write_goaway(struct h2_conn *h2, uint32_t error_code)
{
  int32_t last = nghttp2_session_get_last_proc_stream_id(h2->session);
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
  api_conn_write(h2->conn, data, sizeof frame);
}

static void h2_recv(struct api_conn *c, const char *data, size_t len)
{
  struct h2_conn *h2 = c->state;
  ssize_t r = nghttp2_session_mem_recv(h2->session, (const uint8_t *)data, len);
  if (r < 0) {
    api_conn_log(c, 0, "closing after protocol error: %s",
                 nghttp2_strerror((int)r));
    write_goaway(h2, r == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM
                                              : NGHTTP2_PROTOCOL_ERROR);
    api_conn_finish(c, false);
  }
}

/* Appends what nghttp2 has to send to *out while libuv is below the high
 * water mark. 0, or -1 when the session failed. */
static int collect_output(struct h2_conn *h2, char **out, size_t *len)
{
  size_t cap = 0;
  while (api_conn_queued(h2->conn) + *len < API_WRITE_HIGH_WATER) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(h2->session, &data);
    if (n < 0) {
      api_conn_log(h2->conn, 0, "%s", nghttp2_strerror((int)n));
      return -1;
    }
    if (n == 0)
      return 0;
    if (*len + (size_t)n > cap) {
      size_t grown_cap = (*len + (size_t)n) * 2;
      char *grown = realloc(*out, grown_cap);
      if (grown == NULL)
        return -1;
      *out = grown;
      cap = grown_cap;
    }
    memcpy(*out + *len, data, (size_t)n);
    *len += (size_t)n;
  }
  return 0;
}

/* Answers the deferred streams, oldest first, while the connection's
 * output is under its budget. */
static void run_deferred(struct h2_conn *h2)
{
  struct nlb_list *pos, *tmp;

  NLB_LIST_FOREACH_SAFE(pos, tmp, &h2->streams)
  {
    struct h2_stream *s = NLB_CONTAINER_OF(pos, struct h2_stream, link);
    if (h2->n_deferred == 0 || over_budget(h2) || h2->conn->closing)
      return;
    if (!s->deferred)
      continue;
    s->deferred = false;
    h2->n_deferred--;
    dispatch(s);
  }
}

static void h2_flush(struct api_conn *c)
{
  struct h2_conn *h2 = c->state;
  char *out = NULL;
  size_t len = 0;

  run_deferred(h2);
  if (c->closing)
    return;
  int r = collect_output(h2, &out, &len);

  if (len > 0)
    api_conn_write(c, out, len);
  else
    free(out);
  if (r != 0 || (!nghttp2_session_want_read(h2->session) &&
                 !nghttp2_session_want_write(h2->session)))
    api_conn_finish(c, false);
}

/* Submits GOAWAY (sent with the next flush): no stream after those
 * already received. Safe inside nghttp2's callbacks. */
static void send_goaway(struct h2_conn *h2)
{
  if (h2->goaway_sent)
    return;
  h2->goaway_sent = true;
  nghttp2_submit_goaway(h2->session, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(h2->session),
                        NGHTTP2_NO_ERROR, NULL, 0);
}

static void h2_goaway(struct api_conn *c)
{
  struct h2_conn *h2 = c->state;
  struct nlb_list *pos;

  for (pos = h2->streams.next; pos != &h2->streams; pos = pos->next) {
    struct h2_stream *s = NLB_CONTAINER_OF(pos, struct h2_stream, link);
    if (s->events && !s->event_stream.ended) {
      api_event_stream_end(&s->event_stream);
      nghttp2_session_resume_data(h2->session, s->id);
    }
  }
  send_goaway(h2);
}

/* The timeouts of one stream; -1 when the connection had to go. */
static int sweep_stream(struct h2_stream *s, uint64_t now)
{
  struct api_conn *c = s->h2->conn;
  uint64_t timeout = c->server->request_timeout_ms;
  uint64_t age = now - s->started;

  if (s->waiting && age >= timeout) {
    api_exchange_clear(&s->x);
    s->waiting = false;
    respond_early(s, 503, "StoreUnavailable",
                  "the registry did not answer in time");
  } else if (!s->responded && !s->waiting && !s->deferred && age >= timeout) {
    respond_early(s, 408, "RequestTimeout",
                  "the request did not arrive in time");
  } else if (s->answered_early != 0 && !s->request_done &&
             now - s->answered_early >= EARLY_RESET_MS) {
    s->answered_early = 0;
    nghttp2_submit_rst_stream(s->h2->session, NGHTTP2_FLAG_NONE, s->id,
                              NGHTTP2_NO_ERROR);
  } else if (!s->events && age >= 5 * timeout) {
    /* Even the reset did not end it (say, a header block that never
     * ends): the connection goes. */
    api_conn_log(c, 0, "stream %d stuck, closing", (int)s->id);
    api_conn_close(c);
    return -1;
  } else if (s->responded && !s->events && age >= 4 * timeout &&
             !s->cancelled) {
    /* A client that never opens its window for our answer. */
    s->cancelled = true;
    nghttp2_submit_rst_stream(s->h2->session, NGHTTP2_FLAG_NONE, s->id,
                              NGHTTP2_CANCEL);
  }
  return 0;
}

static void h2_sweep(struct api_conn *c, uint64_t now)
{
  struct h2_conn *h2 = c->state;
  struct nlb_list *pos, *tmp;

  if (h2->n_streams == 0) {
    if (now - h2->idle_since >= c->server->idle_timeout_ms)
      api_conn_goaway(c, now + API_GOAWAY_GRACE_MS);
    return;
  }
  /* Answers waiting for a window that has not opened for the request
   * timeout: the peer holds them, and the connection goes. While they
   * wait behind the transport instead, the transport judges (conn.c). */
  if (api_conn_queued(c) >= API_WRITE_HIGH_WATER)
    h2->moved_at = now;
  if (h2->waiting > 0 && now - h2->moved_at >= c->server->request_timeout_ms) {
    api_conn_stalled(c);
    return;
  }
  NLB_LIST_FOREACH_SAFE(pos, tmp, &h2->streams)
  {
    if (sweep_stream(NLB_CONTAINER_OF(pos, struct h2_stream, link), now) != 0)
      return;
  }
}

static int h2_start(struct api_conn *c)
{
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, API_MAX_CONCURRENT_STREAMS},
  };
  struct h2_conn *h2;

  if (make_callbacks() != 0 || (h2 = calloc(1, sizeof *h2)) == NULL)
    return -ENOMEM;
  h2->conn = c;
  h2->idle_since = uv_now(c->server->loop);
  nlb_list_init(&h2->streams);
  c->state = h2;
  if (nghttp2_session_server_new(&h2->session, callbacks, h2) != 0)
    return -ENOMEM;
  if (nghttp2_submit_settings(h2->session, NGHTTP2_FLAG_NONE, settings,
                              sizeof settings / sizeof settings[0]) != 0)
    return -ENOMEM;
  return 0;
}

static void h2_free(struct api_conn *c)
{
  struct h2_conn *h2 = c->state;
  struct nlb_list *pos, *tmp;

  if (h2 == NULL)
    return;
  if (h2->session != NULL)
    nghttp2_session_del(h2->session);
  NLB_LIST_FOREACH_SAFE(pos, tmp, &h2->streams)
  stream_free(NLB_CONTAINER_OF(pos, struct h2_stream, link));
  free(h2);
  c->state = NULL;
}

const struct api_protocol api_h2_protocol = {
    .name = "HTTP/2",
    .start = h2_start,
    .recv = h2_recv,
    .flush = h2_flush,
    .sweep = h2_sweep,
    .goaway = h2_goaway,
    .free = h2_free,
};
