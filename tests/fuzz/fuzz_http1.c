/* libFuzzer target for HTTP/1.1 on the API port (api/h1.c): the input is
 * the raw bytes a client sends on one connection, handed to
 * api_h1_protocol.recv through a fake transport (fake_conn.c) and answered
 * by the real exchange, handlers and a fresh SQLite registry (api_env.h).
 *
 * Each input runs twice: once in one read, with the registry answering
 * inline and a peer that reads at once; once in reads of 1 to 16 bytes,
 * with the registry answering later (as nlbd's registry thread does) and a
 * peer slow enough that the protocol's backpressure holds bytes between
 * answers. What was written must parse as a sequence of HTTP/1.1 answers
 * (nothing after one that says "connection: close"), and both runs must
 * give the same statuses in the same order: how the bytes arrive and when
 * the registry answers must not change what a client gets (except which
 * 4xx refuses a request that is wrong in two ways). Then the
 * connection times out, goes away and is freed, with registry calls still
 * under way. NLB_FUZZ_VERBOSE=1 prints what each run wrote. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_env.h"
#include "fake_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ANSWERS 256
/* More turns than any input can need: past it the protocol spins. */
#define MAX_TURNS 100000

struct outcome {
  int status[MAX_ANSWERS];
  size_t n;
  bool closed; /* an answer said connection: close */
};

/* Registry answers and completed writes, until neither has anything to
 * do. */
static bool pump(struct api_conn *c)
{
  bool progress = false;

  for (int turns = 0;; turns++) {
    size_t ran = fuzz_api_env_run_pending();
    bool drained = fake_conn_drain(c);
    if (ran == 0 && !drained)
      return progress;
    progress = true;
    if (turns > MAX_TURNS) {
      fprintf(stderr, "fuzz_http1: the connection never settles\n");
      abort();
    }
  }
}

static bool starts_with(const char *p, const char *end, const char *prefix)
{
  size_t n = strlen(prefix);
  return (size_t)(end - p) >= n && memcmp(p, prefix, n) == 0;
}

static const char *line_end(const char *p, const char *end)
{
  for (; p + 1 < end; p++)
    if (p[0] == '\r' && p[1] == '\n')
      return p;
  return NULL;
}

/* Reads the chunks of an answer; NULL when the output ends inside them
 * (an event stream still open). */
static const char *chunked_body(const char *p, const char *end)
{
  for (;;) {
    const char *eol = line_end(p, end);
    char *hex_end;
    if (eol == NULL)
      return NULL;
    unsigned long n = strtoul(p, &hex_end, 16);
    if (hex_end != eol || eol == p)
      abort();
    p = eol + 2;
    if ((size_t)(end - p) < n + 2)
      return NULL;
    if (p[n] != '\r' || p[n + 1] != '\n')
      abort();
    p += n + 2;
    if (n == 0)
      return p;
  }
}

/* Parses what the protocol wrote as HTTP/1.1 answers; abort()s on
 * anything else. */
static void parse_answers(const char *out, size_t len, struct outcome *o)
{
  if (len == 0) {
    memset(o, 0, sizeof *o);
    return;
  }
  const char *p = out, *end = out + len;

  memset(o, 0, sizeof *o);
  while (p < end) {
    const char *eol = line_end(p, end);
    size_t content_length = 0;
    bool has_length = false, chunked = false, close = false;

    if (o->closed) {
      fprintf(stderr, "fuzz_http1: bytes after connection: close\n");
      abort();
    }
    if (eol == NULL || !starts_with(p, end, "HTTP/1.1 ") || eol - p < 12 ||
        p[12] != ' ')
      abort();
    int status = atoi(p + 9);
    if (status < 100 || status > 599 || o->n == MAX_ANSWERS)
      abort();
    o->status[o->n++] = status;
    p = eol + 2;
    for (;;) {
      eol = line_end(p, end);
      if (eol == NULL)
        abort();
      if (eol == p)
        break;
      const char *colon = memchr(p, ':', (size_t)(eol - p));
      if (colon == NULL || colon[1] != ' ' || status == 100)
        abort();
      size_t name_len = (size_t)(colon - p);
      const char *value = colon + 2;
      if (name_len == 14 && strncmp(p, "content-length", 14) == 0) {
        content_length = strtoul(value, NULL, 10);
        has_length = true;
      } else if (name_len == 17 && strncmp(p, "transfer-encoding", 17) == 0) {
        chunked = strncmp(value, "chunked", 7) == 0;
      } else if (name_len == 10 && strncmp(p, "connection", 10) == 0) {
        close = strncmp(value, "close", 5) == 0;
      }
      p = eol + 2;
    }
    p += 2;
    if (status == 100)
      continue;
    if (has_length == chunked && !(close && !has_length))
      abort(); /* one framing (or, closing, none: the stream's) */
    o->closed = close;
    if (chunked) {
      p = chunked_body(p, end);
      if (p == NULL)
        return;
    } else if (has_length) {
      /* A HEAD answer has the length and no body: then the next answer
       * (or nothing) follows at once. */
      size_t left = (size_t)(end - p);
      if (left >= content_length &&
          (left == content_length ||
           starts_with(p + content_length, end, "HTTP/1.1 ")))
        p += content_length;
      else if (!(left == 0 || starts_with(p, end, "HTTP/1.1 ")))
        abort();
    } else {
      p = end; /* an event stream over HTTP/1.0: to the end */
    }
  }
}

static void run(const uint8_t *data, size_t size, size_t chunk, bool deferred,
                size_t queue_scale, bool goaway_first, struct outcome *o)
{
  struct fuzz_api_env *env = fuzz_api_env();
  struct api_conn *c;
  size_t off = 0;

  fuzz_api_env_reset(deferred);
  c = fake_conn_open(env->server, &api_h1_protocol, queue_scale);
  while (off < size && !c->closing && !c->finishing) {
    if (!fake_conn_open_for_reads(c)) {
      if (!pump(c))
        break; /* reading stays stopped: nothing more is read */
      continue;
    }
    size_t n = size - off < chunk ? size - off : chunk;
    fake_conn_recv(c, data + off, n);
    off += n;
    fake_conn_drain(c); /* the transport flushes after every read */
  }
  pump(c);
  if (getenv("NLB_FUZZ_VERBOSE") != NULL)
    fprintf(stderr, "---- %s reads of %zu bytes, registry %s:\n%.*s\n",
            chunk >= size ? "one" : "small", chunk,
            deferred ? "deferred" : "inline", (int)fake_conn.out_len,
            fake_conn.out);
  parse_answers(fake_conn.out, fake_conn.out_len, o);

  /* Not compared: timeouts and a reload, in either order (an idle
   * connection told to go, or one that timed out), then the close. */
  uint64_t later = uv_now(env->loop) + 10 * API_DEFAULT_IDLE_TIMEOUT_MS;
  if (goaway_first)
    api_conn_goaway(c, 0);
  api_conn_sweep(c, later);
  api_conn_goaway(c, 0);
  fake_conn_drain(c);
  fake_conn_free(c);
  fuzz_api_env_run_pending(); /* cancelled: their answers go nowhere */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct outcome whole, pieces;
  uint32_t hash = 2166136261u;

  for (size_t i = 0; i < size; i++)
    hash = (hash ^ data[i]) * 16777619u;
  run(data, size, size > 0 ? size : 1, false, 1, false, &whole);
  run(data, size, 1 + hash % 16, true, 4096, true, &pieces);
  /* A request refused for two reasons may be refused for either, by
   * whichever check its bytes reach first (a path too long that also
   * holds a NUL: 431 or 400). */
  if (whole.n > 0 && whole.n == pieces.n && whole.closed && pieces.closed &&
      whole.status[whole.n - 1] / 100 == 4 &&
      pieces.status[pieces.n - 1] / 100 == 4)
    pieces.status[pieces.n - 1] = whole.status[whole.n - 1];
  if (whole.n != pieces.n ||
      memcmp(whole.status, pieces.status, whole.n * sizeof(int)) != 0) {
    fprintf(stderr, "fuzz_http1: one read gave %zu answers:", whole.n);
    for (size_t i = 0; i < whole.n; i++)
      fprintf(stderr, " %d", whole.status[i]);
    fprintf(stderr, "\nfuzz_http1: small reads gave %zu answers:", pieces.n);
    for (size_t i = 0; i < pieces.n; i++)
      fprintf(stderr, " %d", pieces.status[i]);
    fprintf(stderr, "\n");
    abort();
  }
  return 0;
}
