/* HTTP/1.1 on a connection, parsed by nodejs/http-parser (Debian's
 * libhttp-parser): keep-alive, Content-Length and chunked bodies, pipelined
 * requests answered in order, Expect: 100-continue, and GET /v1/events as
 * a chunked answer that stays open.
 *
 * The parser (built non-strict, as Debian ships it) lets through framing
 * that RFC 9112 asks a server to refuse and that a proxy in front might
 * read differently, which is how requests get smuggled. Those are refused
 * here with 400 and the connection closed: CR or LF alone outside a body,
 * obs-fold, white space in a header name, a Transfer-Encoding other than a
 * single "chunked", trailer fields, no or several Host in HTTP/1.1, a
 * version other than HTTP/1.x, white space in a chunk line other than
 * before a ";" (http-parser takes "5 \r\n" and "5 x\r\n"; llhttp refuses
 * them). HTTP/1.2 and later minor versions answer 505, an Expect other
 * than 100-continue 417. The parser itself refuses Content-Length beside
 * Transfer-Encoding, a second or bad Content-Length, bad chunk sizes, and
 * NUL or other control characters in header values.
 *
 * Answers are written as they are made, in order; while
 * API_WRITE_HIGH_WATER bytes of them wait to be written nothing more is
 * parsed and the socket is not read (conn.c closes a connection whose
 * answers do not move for the request timeout). A static answer's body is
 * written from where it is. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <openssl/crypto.h>

#include "conn.h"
#include "events.h"

/* Header fields the API reads; other names are only checked. */
#define FIELD_NAME_MAX 32
#define FIELD_VALUE_MAX 64
/* A status line and the API's header fields fit in this. */
#define HEAD_MAX 1024

enum field {
  FIELD_OTHER,
  FIELD_AUTHORIZATION,
  FIELD_HOST,
  FIELD_TRANSFER_ENCODING,
  FIELD_EXPECT,
  FIELD_IF_NONE_MATCH,
};

/* Where the parser was paused by a callback. */
enum pause { PAUSE_NONE, PAUSE_HEADERS, PAUSE_MESSAGE };

/* Where the scan is in a chunked body's framing (RFC 9112 7.1). */
enum chunk_line {
  CHUNK_LINE_NONE,     /* not in a chunk-size line */
  CHUNK_LINE_SIZE,     /* the size */
  CHUNK_LINE_BWS,      /* white space after it: a ";" must come */
  CHUNK_LINE_EXT,      /* chunk extensions */
  CHUNK_LINE_DATA_END, /* the CRLF after chunk data: a size line follows */
};

struct h1_request {
  uint64_t started;
  char method[16];
  char *path;
  size_t path_len, path_cap;
  char *authorization; /* wiped and freed once dispatched */
  size_t authorization_len, authorization_cap;
  int n_authorization, n_host, n_transfer_encoding, n_if_none_match;
  /* If-None-Match, when it came once and fits (else it is ignored). */
  char if_none_match[API_IF_NONE_MATCH_MAX + 1];
  size_t if_none_match_len;
  size_t header_bytes;
  /* The field being read: its name in lower case (FIELD_NAME_MAX + 1: a
   * longer one), and the value of the short ones the API reads. */
  char name[FIELD_NAME_MAX];
  size_t name_len;
  bool in_value;
  enum field field;
  char value[FIELD_VALUE_MAX];
  size_t value_len;
  bool chunked; /* Transfer-Encoding: chunked */
  bool expect_continue;
  bool expect_other; /* an Expect other than 100-continue */
  bool headers_done;
  /* Refused at its head, or without a known token: the body is read and
   * dropped. */
  bool discard_body;
  char *body;
  size_t body_len, body_cap;
};

struct h1_conn {
  struct api_conn *conn;
  http_parser parser;
  enum pause paused;
  bool in_request; /* its first byte arrived, its answer is not given */
  struct h1_request req;
  /* What the checks found wrong; answered once the parser stops. */
  int refusal_status;
  const char *refusal_code;
  char refusal[128];
  /* Line endings outside bodies: where the scan goes on, the byte before,
   * whether chunk data just ended (CRLF must follow), and whether the next
   * parse starts on a byte already scanned. */
  const char *scan_from;
  char scan_prev;
  bool chunk_data_ended;
  size_t scan_skip;
  enum chunk_line chunk_line;
  bool chunk_line_next; /* the next byte scanned starts a chunk-size line */
  /* Bytes received while answers wait to be written (reading stopped). */
  char *held;
  size_t held_len, held_cap;
  bool last_answer; /* given, or under way: nothing more is parsed */
  bool going_away;  /* reload or shutdown: the next answer is the last */
  /* The answer is under way on the registry's thread: nothing more is
   * parsed until it is written. */
  struct api_exchange x;
  bool waiting;
  bool keep_alive;
  bool last_request; /* admission: the connection ends after this answer */
  uint64_t idle_since;
  /* GET /v1/events */
  bool streaming, chunked_out, events_pending, events_done;
  struct api_event_stream event_stream;
};

static int refuse(struct h1_conn *h, int status, const char *code,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Notes the first thing found wrong; -1 (stops the parser from a
 * callback). */
static int refuse(struct h1_conn *h, int status, const char *code,
                  const char *fmt, ...)
{
  va_list ap;

  if (h->refusal_status != 0)
    return -1;
  h->refusal_status = status;
  h->refusal_code = code;
  va_start(ap, fmt);
  vsnprintf(h->refusal, sizeof h->refusal, fmt, ap);
  va_end(ap);
  return -1;
}

static int refuse_framing(struct h1_conn *h, const char *what)
{
  return refuse(h, 400, "InvalidRequest", "HTTP/1.1: %s", what);
}

static void forget_authorization(struct h1_request *r)
{
  if (r->authorization == NULL)
    return;
  OPENSSL_cleanse(r->authorization, r->authorization_len);
  free(r->authorization);
  r->authorization = NULL;
}

static void request_clear(struct h1_conn *h)
{
  struct h1_request *r = &h->req;

  forget_authorization(r);
  free(r->path);
  api_admission_hold(h->conn->server, -(ptrdiff_t)r->body_cap);
  free(r->body);
  memset(r, 0, sizeof *r);
}

/* Appends data to *buf (*len bytes, *cap allocated). 0 or -ENOMEM. */
static int append(char **buf, size_t *len, size_t *cap, const char *data,
                  size_t n)
{
  if (*len + n + 1 > *cap) {
    size_t grown_cap = *cap > 0 ? *cap : 256;
    while (grown_cap < *len + n + 1)
      grown_cap *= 2;
    char *grown = realloc(*buf, grown_cap);
    if (grown == NULL)
      return -ENOMEM;
    *buf = grown;
    *cap = grown_cap;
  }
  memcpy(*buf + *len, data, n);
  *len += n;
  (*buf)[*len] = '\0';
  return 0;
}

/* append() for request bytes held in memory (bodies, bytes read ahead),
 * which the server counts. */
static int append_held(struct h1_conn *h, char **buf, size_t *len, size_t *cap,
                       const char *data, size_t n)
{
  size_t before = *cap;
  int r = append(buf, len, cap, data, n);

  api_admission_hold(h->conn->server, (ptrdiff_t)(*cap - before));
  return r;
}

/* ---- line endings ------------------------------------------------------- */

/* One byte of a chunked body's framing: white space in a chunk-size line
 * only before a ";" (BWS: "5 ;x" is taken), never before its CRLF. 0 or
 * -1 (refused). */
static int scan_chunk_line(struct h1_conn *h, char prev, char ch)
{
  bool space = ch == ' ' || ch == '\t';

  if (h->chunk_line_next) {
    h->chunk_line_next = false;
    h->chunk_line = CHUNK_LINE_SIZE;
  }
  switch (h->chunk_line) {
  case CHUNK_LINE_SIZE:
    if (space)
      h->chunk_line = CHUNK_LINE_BWS;
    else if (ch == ';')
      h->chunk_line = CHUNK_LINE_EXT;
    break;
  case CHUNK_LINE_BWS:
    if (ch == ';')
      h->chunk_line = CHUNK_LINE_EXT;
    else if (!space)
      return refuse_framing(h, "white space after a chunk size");
    break;
  case CHUNK_LINE_EXT:
    if (ch == '\r' && (prev == ' ' || prev == '\t'))
      return refuse_framing(h, "white space at the end of a chunk line");
    break;
  default:
    break;
  }
  if (ch == '\n') {
    h->chunk_line_next = h->chunk_line == CHUNK_LINE_DATA_END;
    h->chunk_line = CHUNK_LINE_NONE;
  }
  return 0;
}

/* Scans the bytes from h->scan_from to end, which the parser read outside
 * a body: CR only before LF, LF only after CR, no line that starts with
 * white space, CRLF after chunk data, chunk lines (scan_chunk_line). 0 or
 * -1 (refused). */
static int scan(struct h1_conn *h, const char *end)
{
  for (const char *p = h->scan_from; p < end; p++) {
    char prev = h->scan_prev;
    h->scan_prev = *p;
    if (h->chunk_data_ended) {
      if (*p != '\r')
        return refuse_framing(h, "chunk data not followed by CRLF");
      h->chunk_line = CHUNK_LINE_DATA_END;
    }
    h->chunk_data_ended = false;
    if (prev == '\r' && *p != '\n')
      return refuse_framing(h, "CR without LF");
    if (*p == '\n' && prev != '\r')
      return refuse_framing(h, "LF without CR");
    if (prev == '\n' && (*p == ' ' || *p == '\t'))
      return refuse_framing(h, "obs-fold (a header line starting with white "
                               "space)");
    if (scan_chunk_line(h, prev, *p) != 0)
      return -1;
  }
  if (end > h->scan_from)
    h->scan_from = end;
  return 0;
}

/* ---- parser callbacks: they collect and check, the loop acts ------------ */

static int count_header_bytes(struct h1_conn *h, size_t n)
{
  h->req.header_bytes += n;
  if (h->req.header_bytes > API_HEADER_SOFT_LIMIT)
    return refuse(h, 431, "HeadersTooLarge",
                  "the request headers are too large");
  return 0;
}

static int on_message_begin(http_parser *p)
{
  struct h1_conn *h = p->data;
  request_clear(h);
  h->in_request = true;
  h->req.started = uv_now(h->conn->server->loop);
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
  struct h1_conn *h = p->data;
  struct h1_request *r = &h->req;

  if (r->method[0] == '\0')
    snprintf(r->method, sizeof r->method, "%s",
             http_method_str((enum http_method)p->method));
  if (count_header_bytes(h, len) != 0)
    return -1;
  if (r->path_len + len > API_PATH_MAX_LEN)
    return refuse(h, 431, "HeadersTooLarge", "the request path is too long");
  if (append(&r->path, &r->path_len, &r->path_cap, at, len) != 0)
    return refuse(h, 500, "Internal", "out of memory");
  return 0;
}

static bool value_is(const struct h1_request *r, const char *want)
{
  size_t n = r->value_len;
  if (n > FIELD_VALUE_MAX)
    return false;
  while (n > 0 && (r->value[n - 1] == ' ' || r->value[n - 1] == '\t'))
    n--;
  return n == strlen(want) && strncasecmp(r->value, want, n) == 0;
}

/* The value of the field just read is complete. */
static void end_field(struct h1_request *r)
{
  switch (r->field) {
  case FIELD_HOST:
    r->n_host++;
    break;
  case FIELD_TRANSFER_ENCODING:
    r->n_transfer_encoding++;
    r->chunked = value_is(r, "chunked");
    break;
  case FIELD_EXPECT:
    if (value_is(r, "100-continue"))
      r->expect_continue = true;
    else
      r->expect_other = true;
    break;
  case FIELD_IF_NONE_MATCH:
    r->n_if_none_match++;
    break;
  default:
    break;
  }
  r->in_value = false;
  r->name_len = 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
  struct h1_conn *h = p->data;
  struct h1_request *r = &h->req;

  if (r->headers_done)
    return refuse_framing(h, "trailer fields are not accepted");
  /* ": " and CRLF count once a field: the parser calls back once per
   * read, and a field's name may come in many. */
  bool new_field = r->in_value || r->name_len == 0;
  if (count_header_bytes(h, len + (new_field ? 4 : 0)) != 0)
    return -1;
  if (r->in_value)
    end_field(r);
  for (size_t i = 0; i < len; i++) {
    if (at[i] == ' ' || at[i] == '\t')
      return refuse_framing(h, "white space in a header field name");
    if (r->name_len < FIELD_NAME_MAX)
      r->name[r->name_len] = (char)(at[i] | 0x20); /* tokens: ASCII */
    if (r->name_len <= FIELD_NAME_MAX)
      r->name_len++;
  }
  return 0;
}

static enum field classify(const struct h1_request *r)
{
  static const struct {
    const char *name;
    enum field field;
  } fields[] = {{"authorization", FIELD_AUTHORIZATION},
                {"host", FIELD_HOST},
                {"transfer-encoding", FIELD_TRANSFER_ENCODING},
                {"expect", FIELD_EXPECT},
                {"if-none-match", FIELD_IF_NONE_MATCH}};
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    if (r->name_len == strlen(fields[i].name) &&
        memcmp(r->name, fields[i].name, r->name_len) == 0)
      return fields[i].field;
  return FIELD_OTHER;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
  struct h1_conn *h = p->data;
  struct h1_request *r = &h->req;

  if (count_header_bytes(h, len) != 0)
    return -1;
  if (!r->in_value) {
    r->in_value = true;
    r->field = classify(r);
    r->value_len = 0;
    if (r->field == FIELD_AUTHORIZATION && r->n_authorization++ > 0)
      return refuse_framing(h, "Authorization twice");
  }
  if (r->field == FIELD_AUTHORIZATION) {
    if (append(&r->authorization, &r->authorization_len, &r->authorization_cap,
               at, len) != 0)
      return refuse(h, 500, "Internal", "out of memory");
  } else if (r->field == FIELD_IF_NONE_MATCH) {
    /* if_none_match_len counts every byte, so a longer value is known. */
    size_t room = r->if_none_match_len < API_IF_NONE_MATCH_MAX
                      ? API_IF_NONE_MATCH_MAX - r->if_none_match_len
                      : 0;
    if (room > 0)
      memcpy(r->if_none_match + r->if_none_match_len, at,
             len < room ? len : room);
    r->if_none_match_len += len;
  } else if (r->field != FIELD_OTHER) {
    /* value_len counts every byte, so a longer value matches nothing. */
    size_t room =
        r->value_len < FIELD_VALUE_MAX ? FIELD_VALUE_MAX - r->value_len : 0;
    if (room > 0)
      memcpy(r->value + r->value_len, at, len < room ? len : room);
    r->value_len += len;
  }
  return 0;
}

static int on_headers_complete(http_parser *p)
{
  struct h1_conn *h = p->data;
  if (h->req.in_value)
    end_field(&h->req);
  h->req.headers_done = true;
  h->paused = PAUSE_HEADERS;
  http_parser_pause(p, 1);
  return 0;
}

static int add_body(struct h1_conn *h, const char *at, size_t len)
{
  struct h1_request *r = &h->req;
  if (r->body_len + len > API_MAX_BODY)
    return refuse(h, 413, "PayloadTooLarge", "the request body is over 64 KiB");
  if (r->discard_body) {
    r->body_len += len; /* counted for the limit, not kept */
    return 0;
  }
  if (append_held(h, &r->body, &r->body_len, &r->body_cap, at, len) != 0)
    return refuse(h, 500, "Internal", "out of memory");
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
  struct h1_conn *h = p->data;

  /* The framing before this piece of body is scanned, not the body. */
  if (scan(h, at) != 0)
    return -1;
  h->scan_from = at + len;
  h->scan_prev = '\0';
  h->chunk_data_ended = h->req.chunked;
  return add_body(h, at, len);
}

static int on_chunk_header(http_parser *p)
{
  struct h1_conn *h = p->data;
  if (p->content_length > API_MAX_BODY - h->req.body_len)
    return refuse(h, 413, "PayloadTooLarge", "the request body is over 64 KiB");
  return 0;
}

static int on_message_complete(http_parser *p)
{
  struct h1_conn *h = p->data;
  h->paused = PAUSE_MESSAGE;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_header = on_chunk_header,
    .on_message_complete = on_message_complete,
};

/* ---- answers ------------------------------------------------------------ */

/* Writes the status line and header fields of x into out (HEAD_MAX bytes);
 * returns their length. */
static size_t format_head(const struct h1_conn *h, const struct api_exchange *x,
                          bool keep_alive, bool stream, char *out)
{
  struct api_response_headers headers;
  int status = x->resp.status;
  size_t n = 0;

  api_response_headers(x, &headers);
  n += (size_t)snprintf(out, HEAD_MAX, "HTTP/1.1 %d %s\r\n", status,
                        http_status_str((enum http_status)status));
  for (size_t i = 0; i < headers.n && n < HEAD_MAX; i++)
    n += (size_t)snprintf(out + n, HEAD_MAX - n, "%s: %s\r\n",
                          headers.field[i].name, headers.field[i].value);
  if (stream && h->chunked_out && n < HEAD_MAX)
    n += (size_t)snprintf(out + n, HEAD_MAX - n,
                          "transfer-encoding: chunked\r\n");
  if (n < HEAD_MAX)
    n += (size_t)snprintf(out + n, HEAD_MAX - n, "%s\r\n",
                          !keep_alive ? "connection: close\r\n"
                          : h->parser.http_minor == 0
                              ? "connection: keep-alive\r\n"
                              : "");
  return n < HEAD_MAX ? n : HEAD_MAX - 1;
}

static void on_events_wake(struct api_event_stream *stream)
{
  struct h1_conn *h = NLB_CONTAINER_OF(stream, struct h1_conn, event_stream);
  h->events_pending = true;
  api_conn_wake(h->conn);
}

/* Writes x's answer; the connection stays open for the next request when
 * keep_alive (never after an event stream, which ends the connection). */
static void answer(struct h1_conn *h, struct api_exchange *x, bool keep_alive)
{
  bool head = api_exchange_is_head(x);
  bool stream = x->resp.events && !head;
  size_t body_len = head || stream ? 0 : x->resp.len;
  /* A static body is written from where it is, after the head. */
  const char *shared = x->resp.body == NULL ? x->resp.static_body : NULL;
  char *out = malloc(HEAD_MAX + (shared != NULL ? 0 : body_len));

  if (out == NULL) {
    api_conn_close(h->conn);
    return;
  }
  keep_alive = keep_alive && !stream && !h->going_away;
  h->chunked_out = h->parser.http_minor > 0;
  size_t n = format_head(h, x, keep_alive, stream, out);
  if (shared != NULL) {
    api_conn_write_static(h->conn, out, n, shared, body_len);
  } else {
    if (body_len > 0)
      memcpy(out + n, x->resp.body, body_len);
    api_conn_write(h->conn, out, n + body_len);
  }
  h->in_request = false;
  h->idle_since = uv_now(h->conn->server->loop);
  if (stream) {
    h->streaming = h->events_pending = true;
    api_event_stream_start(&h->event_stream, h->conn->server, x,
                           on_events_wake);
    if (h->going_away)
      api_event_stream_end(&h->event_stream);
  }
  if (!keep_alive)
    h->last_answer = true;
  if (!keep_alive && !stream)
    api_conn_finish(h->conn, true);
}

/* Answers what the checks refused and ends the connection. */
static void answer_refusal(struct h1_conn *h)
{
  struct api_exchange x = {.method = h->req.method, .path = h->req.path};

  api_exchange_clear(&h->x); /* an answer under way is dropped */
  h->waiting = false;
  api_conn_log(h->conn, 0, "%d %s, closing", h->refusal_status, h->refusal);
  api_exchange_fail(h->conn->server, &x, h->refusal_status, h->refusal_code,
                    h->refusal);
  answer(h, &x, false);
  api_exchange_clear(&x);
}

/* An absolute-form target ("http://host/path?q") names its path and query
 * the origin-form way ("/path?q"), which the router reads. */
static void origin_form(struct h1_request *r)
{
  struct http_parser_url url;

  if (r->path == NULL || r->path[0] == '/')
    return;
  http_parser_url_init(&url);
  if (http_parser_parse_url(r->path, r->path_len, 0, &url) != 0 ||
      !(url.field_set & (1 << UF_PATH)))
    return;
  size_t from = url.field_data[UF_PATH].off;
  size_t end = url.field_set & (1 << UF_QUERY)
                   ? url.field_data[UF_QUERY].off + url.field_data[UF_QUERY].len
                   : from + url.field_data[UF_PATH].len;
  memmove(r->path, r->path + from, end - from);
  r->path_len = end - from;
  r->path[r->path_len] = '\0';
}

static void on_answer(struct api_exchange *x, void *arg)
{
  struct h1_conn *h = arg;

  h->waiting = false;
  answer(h, x, h->keep_alive);
  api_exchange_clear(x);
  request_clear(h);
  api_conn_wake(h->conn); /* then the requests that came meanwhile */
}

/* The request is complete: run it and answer (now, or once the registry's
 * thread has). check_head has routed and authenticated it. */
static void message_done(struct h1_conn *h)
{
  struct h1_request *r = &h->req;
  struct api_exchange *x = &h->x;

  x->body = r->discard_body ? NULL : r->body;
  x->body_len = r->discard_body ? 0 : r->body_len;
  h->keep_alive = http_should_keep_alive(&h->parser) != 0 && !h->last_request;
  int ran = api_exchange_run(h->conn->server, x, on_answer, h);
  if (ran > 0) {
    h->waiting = true;
    return;
  }
  answer(h, x, h->keep_alive);
  api_exchange_clear(x);
  request_clear(h);
}

static void write_text(struct h1_conn *h, const char *text)
{
  char *data = strdup(text);
  if (data == NULL)
    api_conn_close(h->conn);
  else
    api_conn_write(h->conn, data, strlen(data));
}

/* The route and the token, once the header fields are in: a request that
 * is refused, or has no known token, has its body dropped as it comes;
 * its answer goes once the request is complete, or at once instead of 100
 * Continue (the connection then ends: the client may send the body or
 * not). */
static void check_route_and_token(struct h1_conn *h, bool body)
{
  struct h1_request *r = &h->req;
  struct api_exchange *x = &h->x;

  origin_form(r);
  memset(x, 0, sizeof *x);
  x->method = r->method;
  x->path = r->path;
  x->authorization = r->authorization;
  x->authorization_len = r->authorization_len;
  if (r->n_if_none_match == 1 &&
      r->if_none_match_len <= API_IF_NONE_MATCH_MAX) {
    r->if_none_match[r->if_none_match_len] = '\0';
    x->if_none_match = r->if_none_match;
  }
  x->conn = h->conn;
  api_exchange_head(h->conn->server, x);
  forget_authorization(r);
  r->discard_body = !x->authenticated || x->refused;
  if (!api_admission_request(h->conn, x->authenticated))
    h->last_request = true;
  if (r->expect_continue && h->parser.http_minor > 0 && body) {
    if (!x->refused) {
      write_text(h, "HTTP/1.1 100 Continue\r\n\r\n");
      return;
    }
    answer(h, x, false);
    api_exchange_clear(x);
  }
}

/* The request line and header fields are in: what the parser let through
 * and the API refuses, the body limit, then the route and the token. 0 or
 * -1. */
static int check_head(struct h1_conn *h)
{
  const http_parser *p = &h->parser;
  const struct h1_request *r = &h->req;

  if (p->http_major != 1)
    return refuse(h, 400, "InvalidRequest", "HTTP/%d.%d is not served",
                  p->http_major, p->http_minor);
  if (p->http_minor > 1)
    return refuse(h, 505, "VersionNotSupported",
                  "HTTP/1.%d is not served, only HTTP/1.0 and HTTP/1.1",
                  p->http_minor);
  if (r->n_transfer_encoding > 1 ||
      (r->n_transfer_encoding == 1 && (!r->chunked || p->http_minor == 0)))
    return refuse_framing(h, "Transfer-Encoding other than one final chunked");
  if (p->http_minor > 0 && r->n_host != 1)
    return refuse_framing(h, "a request needs exactly one Host");
  if (r->expect_other)
    return refuse(h, 417, "ExpectationFailed",
                  "Expect: only 100-continue is served");
  /* Its framing starts with a chunk-size line (the scan is past the
   * header block's end). */
  h->chunk_line_next = r->chunked;
  if (!r->chunked && p->content_length != ULLONG_MAX &&
      p->content_length > API_MAX_BODY)
    return refuse(h, 413, "PayloadTooLarge", "the request body is over 64 KiB");
  bool body =
      r->chunked || (p->content_length != ULLONG_MAX && p->content_length > 0);
  check_route_and_token(h, body);
  return 0;
}

/* ---- the parse loop ----------------------------------------------------- */

static void refuse_parse_error(struct h1_conn *h, enum http_errno e)
{
  if (e == HPE_HEADER_OVERFLOW)
    refuse(h, 431, "HeadersTooLarge", "the request headers are too large");
  else
    refuse_framing(h, http_errno_description(e));
}

/* Parses data up to the next pause, error or its end; returns the bytes
 * used. */
static size_t parse(struct h1_conn *h, const char *data, size_t len)
{
  h->scan_from = data + h->scan_skip;
  h->scan_skip = 0;
  h->paused = PAUSE_NONE;
  size_t n = http_parser_execute(&h->parser, &settings, data, len);
  enum http_errno e = HTTP_PARSER_ERRNO(&h->parser);

  /* Paused on the LF that ends the header fields: it is scanned now and
   * parsed next. */
  if (h->paused == PAUSE_HEADERS)
    h->scan_skip = 1;
  scan(h, data + n + h->scan_skip);
  if (e != HPE_OK && e != HPE_PAUSED)
    refuse_parse_error(h, e);
  else if (h->paused == PAUSE_HEADERS && h->refusal_status == 0)
    check_head(h); /* a head the scan refused is never routed or answered */
  if (h->refusal_status != 0) {
    answer_refusal(h);
    return len;
  }
  if (e == HPE_PAUSED)
    http_parser_pause(&h->parser, 0);
  if (h->paused == PAUSE_MESSAGE)
    message_done(h);
  return n > 0 || h->paused != PAUSE_NONE ? n : len;
}

/* Keeps bytes that cannot be parsed yet and stops reading. */
static void hold(struct h1_conn *h, const char *data, size_t len)
{
  if (append_held(h, &h->held, &h->held_len, &h->held_cap, data, len) != 0) {
    api_conn_close(h->conn);
    return;
  }
  api_conn_reading(h->conn, false);
}

/* Parses requests and answers them in order, while the answers already
 * queued are below the high water mark. */
static void feed(struct h1_conn *h, const char *data, size_t len)
{
  size_t off = 0;
  while (off < len && !h->last_answer && !h->conn->closing) {
    if (h->waiting || api_conn_queued(h->conn) >= API_WRITE_HIGH_WATER) {
      hold(h, data + off, len - off);
      return;
    }
    off += parse(h, data + off, len - off);
  }
}

static void h1_recv(struct api_conn *c, const char *data, size_t len)
{
  struct h1_conn *h = c->state;
  if (h->last_answer)
    return; /* nothing more is read on this connection */
  if (h->held_len > 0)
    hold(h, data, len);
  else
    feed(h, data, len);
}

/* ---- event streams ------------------------------------------------------ */

/* Writes lines (malloc'd; taken) as one chunk. */
static void write_chunk(struct h1_conn *h, char *lines, size_t len)
{
  if (len == 0 || !h->chunked_out) {
    api_conn_write(h->conn, lines, len);
    return;
  }
  char *chunk = malloc(len + 32);
  if (chunk == NULL) {
    free(lines);
    api_conn_close(h->conn);
    return;
  }
  int n = snprintf(chunk, 32, "%zx\r\n", len);
  memcpy(chunk + n, lines, len);
  memcpy(chunk + n + len, "\r\n", 2);
  free(lines);
  api_conn_write(h->conn, chunk, (size_t)n + len + 2);
}

static void flush_events(struct h1_conn *h)
{
  struct api_conn *c = h->conn;

  while (h->events_pending && !h->event_stream.ended &&
         api_conn_queued(c) < API_WRITE_HIGH_WATER && !c->closing) {
    char *lines = NULL;
    size_t len = 0;
    if (api_event_stream_read(&h->event_stream, &lines, &len) != 0) {
      free(lines);
      api_conn_finish(c, false); /* the answer stays incomplete */
      return;
    }
    h->events_pending = len > 0;
    write_chunk(h, lines, len);
  }
  if (h->event_stream.ended && !h->events_done) {
    h->events_done = true;
    if (h->chunked_out)
      write_text(h, "0\r\n\r\n");
    api_conn_finish(c, true);
  }
}

/* ---- the protocol ------------------------------------------------------- */

static void h1_flush(struct api_conn *c)
{
  struct h1_conn *h = c->state;

  if (h->streaming) {
    flush_events(h);
    return;
  }
  if (h->waiting || h->held_len == 0 ||
      api_conn_queued(c) >= API_WRITE_HIGH_WATER)
    return;
  char *held = h->held;
  size_t len = h->held_len, cap = h->held_cap;
  h->held = NULL;
  h->held_len = h->held_cap = 0;
  api_conn_reading(c, true);
  feed(h, held, len);
  api_admission_hold(c->server, -(ptrdiff_t)cap);
  free(held);
}

static void h1_sweep(struct api_conn *c, uint64_t now)
{
  struct h1_conn *h = c->state;
  uint64_t request_timeout = c->server->request_timeout_ms;

  if (h->streaming || h->last_answer)
    return;
  if (h->in_request) {
    if (h->waiting && now - h->req.started >= request_timeout) {
      refuse(h, 503, "StoreUnavailable", "the registry did not answer in time");
      answer_refusal(h);
    } else if (!h->waiting && now - h->req.started >= request_timeout) {
      refuse(h, 408, "RequestTimeout", "the request did not arrive in time");
      answer_refusal(h);
    }
  } else if (api_conn_queued(c) > 0 || h->held_len > 0) {
    /* Not idle: answers wait to be read (conn.c closes the connection if
     * they do not move). */
  } else if (now - h->idle_since >= c->server->idle_timeout_ms) {
    h->last_answer = true;
    api_conn_finish(c, true);
  }
}

static void h1_goaway(struct api_conn *c)
{
  struct h1_conn *h = c->state;

  h->going_away = true;
  if (h->streaming) {
    api_event_stream_end(&h->event_stream);
  } else if (!h->in_request && !h->last_answer) {
    h->last_answer = true;
    api_conn_finish(c, true);
  }
}

static int h1_start(struct api_conn *c)
{
  struct h1_conn *h = calloc(1, sizeof *h);
  if (h == NULL)
    return -ENOMEM;
  h->conn = c;
  http_parser_init(&h->parser, HTTP_REQUEST);
  h->parser.data = h;
  h->idle_since = uv_now(c->server->loop);
  c->state = h;
  return 0;
}

static void h1_free(struct api_conn *c)
{
  struct h1_conn *h = c->state;
  if (h == NULL)
    return;
  api_exchange_clear(&h->x);
  api_event_stream_stop(&h->event_stream);
  request_clear(h);
  api_admission_hold(c->server, -(ptrdiff_t)h->held_cap);
  free(h->held);
  free(h);
  c->state = NULL;
}

const struct api_protocol api_h1_protocol = {
    .name = "HTTP/1.1",
    .start = h1_start,
    .recv = h1_recv,
    .flush = h1_flush,
    .sweep = h1_sweep,
    .goaway = h1_goaway,
    .free = h1_free,
};
