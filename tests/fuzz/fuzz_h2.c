/* libFuzzer target for HTTP/2 on the API port (api/h2.c): the input is the
 * raw bytes a client sends on one cleartext connection (the connection
 * preface is put in front when the input does not start with it), handed
 * to api_h2_protocol.recv through a fake transport (fake_conn.c) and
 * answered by the real exchange, handlers and a fresh SQLite registry
 * (api_env.h). nghttp2 does the framing; what is fuzzed is the glue:
 * streams reset or the connection gone while a registry call is under
 * way, flow control and a peer that reads slowly, bodies and header blocks
 * over the limits, GOAWAY, event streams, timeouts.
 *
 * Each input runs twice: once in one read, with the registry answering
 * inline and a peer that reads everything at once; once in reads of 1 to
 * 16 bytes, with the registry answering every few reads (as nlbd's
 * registry thread answers later) and a peer that reads what was written
 * only every few reads, so that the protocol's output waits behind
 * API_WRITE_HIGH_WATER. Then, in an order the input's hash picks, the
 * timeouts (503 with registry calls outstanding, 408, the early answer's
 * reset, the window that never opens, the stuck stream, idle), a reload's
 * GOAWAY and the free, with calls still under way.
 *
 * What was written must parse as HTTP/2 frames after the server's
 * preface: 9-byte headers, lengths within the largest
 * SETTINGS_MAX_FRAME_SIZE the client sent, the frame types and stream IDs
 * a server may send, header blocks that nghttp2's own HPACK inflater
 * decodes (in order: the dynamic table runs across the connection) with a
 * :status first, one answer per stream, DATA only after it and within its
 * content-length, nothing on a stream after its end or our reset, no
 * answer on a stream above the last stream ID of a GOAWAY sent before it,
 * GOAWAY's last stream ID never raised, nothing after a GOAWAY with an
 * error. Where both runs answered a stream before the timeouts, the status
 * is the same, unless either run refused a stream (REFUSED_STREAM: which
 * streams are refused depends on when answers leave, and a refused
 * request may be one that changes what later ones see).
 * NLB_FUZZ_VERBOSE=1 prints the frames each run wrote. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <nghttp2/nghttp2.h>

#include "admission.h"
#include "api_env.h"
#include "fake_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* More turns than any input can need: past it the protocol spins. */
#define MAX_TURNS 100000
#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define PREFACE_LEN 24
#define FRAME_HEADER_LEN 9
#define DEFAULT_MAX_FRAME 16384
/* Request timeout (ms) of the fuzzers' server, the default. */
#define TIMEOUT API_DEFAULT_REQUEST_TIMEOUT_MS

static bool verbose;

/* ---- reading the server's frames ---------------------------------------- */

struct stream_seen {
  int32_t id;
  int status;     /* 0: no answer yet */
  bool compared;  /* answered before the timeouts */
  bool ended;     /* END_STREAM sent */
  bool reset;     /* RST_STREAM sent */
  int64_t length; /* content-length, -1 when none */
  uint64_t data;  /* DATA payload bytes sent */
};

struct outcome {
  struct stream_seen *streams;
  size_t n, cap;
  bool refused; /* some stream got RST_STREAM(REFUSED_STREAM) */
  size_t frames;
};

static uint32_t be32(const uint8_t *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

static void fail(const char *what, size_t off)
{
  fprintf(stderr, "fuzz_h2: %s (frame at output byte %zu)\n", what, off);
  abort();
}

static struct stream_seen *stream_of(struct outcome *o, int32_t id)
{
  for (size_t i = 0; i < o->n; i++)
    if (o->streams[i].id == id)
      return &o->streams[i];
  if (o->n == o->cap) {
    o->cap = o->cap ? 2 * o->cap : 16;
    o->streams = realloc(o->streams, o->cap * sizeof *o->streams);
    if (o->streams == NULL)
      abort();
  }
  o->streams[o->n] = (struct stream_seen){.id = id, .length = -1};
  return &o->streams[o->n++];
}

/* The largest SETTINGS_MAX_FRAME_SIZE in the client's frames (as far as
 * they parse): the bound on what the server may send. */
static uint32_t max_frame_size(const uint8_t *in, size_t len)
{
  uint32_t max = DEFAULT_MAX_FRAME;
  size_t off = PREFACE_LEN;

  while (off + FRAME_HEADER_LEN <= len) {
    const uint8_t *h = in + off;
    size_t n = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
    if (off + FRAME_HEADER_LEN + n > len)
      break;
    if (h[3] == NGHTTP2_SETTINGS && !(h[4] & NGHTTP2_FLAG_ACK))
      for (size_t i = 0; i + 6 <= n; i += 6) {
        const uint8_t *e = h + FRAME_HEADER_LEN + i;
        uint32_t v = be32(e + 2);
        if ((e[0] << 8 | e[1]) == NGHTTP2_SETTINGS_MAX_FRAME_SIZE && v > max &&
            v <= 16777215)
          max = v;
      }
    off += FRAME_HEADER_LEN + n;
  }
  return max;
}

static bool name_is(const nghttp2_nv *nv, const char *name)
{
  return nv->namelen == strlen(name) &&
         memcmp(nv->name, name, nv->namelen) == 0;
}

/* Decodes one response header block for s (the inflater's dynamic table
 * carries over from the blocks before). */
static void read_header_block(nghttp2_hd_inflater *inflater,
                              struct stream_seen *s, const uint8_t *block,
                              size_t len, size_t off)
{
  bool first = true;

  for (;;) {
    nghttp2_nv nv;
    int flags = 0;
    ssize_t n = nghttp2_hd_inflate_hd2(inflater, &nv, &flags, block, len, 1);
    if (n < 0)
      fail("a header block HPACK cannot decode", off);
    block += n;
    len -= (size_t)n;
    if (flags & NGHTTP2_HD_INFLATE_EMIT) {
      if (first != name_is(&nv, ":status"))
        fail("an answer without :status first", off);
      if (first) {
        if (nv.valuelen != 3 || nv.value[0] < '2' || nv.value[0] > '5' ||
            nv.value[1] < '0' || nv.value[1] > '9' || nv.value[2] < '0' ||
            nv.value[2] > '9')
          fail("a :status out of 200..599", off);
        s->status = atoi((const char *)nv.value);
      } else if (nv.name[0] == ':') {
        fail("a pseudo-header after :status", off);
      } else if (name_is(&nv, "content-length")) {
        if (nv.valuelen == 0 || nv.valuelen > 18 ||
            strspn((const char *)nv.value, "0123456789") < nv.valuelen)
          fail("a content-length that is not a number", off);
        s->length = strtoll((const char *)nv.value, NULL, 10);
      }
      first = false;
    }
    if (flags & NGHTTP2_HD_INFLATE_FINAL) {
      nghttp2_hd_inflate_end_headers(inflater);
      break;
    }
    if (n == 0 && !(flags & NGHTTP2_HD_INFLATE_EMIT))
      fail("a header block that ends inside a field", off);
  }
  if (first)
    fail("an empty header block", off);
}

/* Parses what the protocol wrote; abort()s where it breaks a rule above.
 * Answers at output bytes below mark are the ones compared. */
static void parse_frames(const uint8_t *out, size_t len, size_t mark,
                         uint32_t max_frame, struct outcome *o)
{
  nghttp2_hd_inflater *inflater;
  uint8_t *block = NULL;
  size_t block_len = 0;
  int32_t block_stream = 0; /* a header block waits for CONTINUATION */
  int64_t goaway_last = -1; /* the last GOAWAY's last stream ID */
  bool fatal = false;       /* a GOAWAY with an error was sent */
  size_t off = 0;

  if (nghttp2_hd_inflate_new(&inflater) != 0)
    abort();
  while (off < len) {
    if (len - off < FRAME_HEADER_LEN)
      fail("output ends inside a frame header", off);
    const uint8_t *h = out + off, *p = h + FRAME_HEADER_LEN;
    size_t n = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
    uint8_t type = h[3], flags = h[4];
    uint32_t sid = be32(h + 5);
    struct stream_seen *s = NULL;

    if (len - off - FRAME_HEADER_LEN < n)
      fail("output ends inside a frame", off);
    if (n > max_frame)
      fail("a frame over the client's SETTINGS_MAX_FRAME_SIZE", off);
    if (sid & 0x80000000u)
      fail("the reserved bit set", off);
    if (fatal)
      fail("a frame after a GOAWAY with an error", off);
    if (o->frames == 0 && (type != NGHTTP2_SETTINGS || flags & 1) &&
        type != NGHTTP2_GOAWAY)
      fail("the first frame is neither SETTINGS nor GOAWAY", off);
    if (block_stream != 0 &&
        (type != NGHTTP2_CONTINUATION || (int32_t)sid != block_stream))
      fail("a header block interrupted", off);
    if (verbose)
      fprintf(stderr, "  frame type %u flags 0x%02x stream %u length %zu\n",
              type, flags, sid, n);
    o->frames++;

    switch (type) {
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS:
    case NGHTTP2_RST_STREAM:
    case NGHTTP2_CONTINUATION:
      if (sid == 0 || sid % 2 == 0)
        fail("a stream frame on stream 0 or a server stream", off);
      s = stream_of(o, (int32_t)sid);
      break;
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PING:
    case NGHTTP2_GOAWAY:
      if (sid != 0)
        fail("a connection frame on a stream", off);
      break;
    case NGHTTP2_WINDOW_UPDATE:
      if (sid % 2 == 0 && sid != 0)
        fail("WINDOW_UPDATE on a server stream", off);
      if (n != 4 || (be32(p) & 0x7fffffffu) == 0)
        fail("a WINDOW_UPDATE of a bad length or increment 0", off);
      break;
    default:
      fail("a frame type a server never sends", off);
    }

    switch (type) {
    case NGHTTP2_HEADERS: {
      size_t pad = 0, skip = 0;
      if (s->status != 0 || block_len != 0)
        fail("a second answer on one stream", off);
      if (s->ended || s->reset)
        fail("HEADERS on a stream already ended or reset", off);
      if (goaway_last >= 0 && (int64_t)sid > goaway_last)
        fail("an answer on a stream above the last GOAWAY's last stream ID",
             off);
      if (flags & NGHTTP2_FLAG_PADDED) {
        if (n < 1)
          fail("HEADERS too short for its padding", off);
        pad = p[0];
        skip = 1;
      }
      if (flags & NGHTTP2_FLAG_PRIORITY)
        skip += 5;
      if (skip + pad > n)
        fail("HEADERS too short for its padding", off);
      /* The status is read once the block is complete (CONTINUATION). */
      block = malloc(n - skip - pad + 1);
      if (block == NULL)
        abort();
      memcpy(block, p + skip, n - skip - pad);
      block_len = n - skip - pad;
      block_stream = (int32_t)sid;
      s->compared = off < mark;
      if (flags & NGHTTP2_FLAG_END_STREAM)
        s->ended = true;
      break;
    }
    case NGHTTP2_CONTINUATION: {
      if (block_stream == 0)
        fail("CONTINUATION without a header block", off);
      uint8_t *grown = realloc(block, block_len + n + 1);
      if (grown == NULL)
        abort();
      block = grown;
      memcpy(block + block_len, p, n);
      block_len += n;
      break;
    }
    case NGHTTP2_DATA: {
      size_t pad = 0;
      if (s->status == 0)
        fail("DATA before the answer's HEADERS", off);
      if (s->ended || s->reset)
        fail("DATA on a stream already ended or reset", off);
      if (flags & NGHTTP2_FLAG_PADDED) {
        if (n < 1 || (size_t)p[0] + 1 > n)
          fail("DATA too short for its padding", off);
        pad = (size_t)p[0] + 1;
      }
      s->data += n - pad;
      if (s->length >= 0 && s->data > (uint64_t)s->length)
        fail("DATA beyond the answer's content-length", off);
      if (flags & NGHTTP2_FLAG_END_STREAM) {
        s->ended = true;
        /* HEAD: the length of the body a GET would get, and none. */
        if (s->length >= 0 && s->data != (uint64_t)s->length && s->data != 0)
          fail("an answer shorter than its content-length", off);
      }
      break;
    }
    case NGHTTP2_RST_STREAM:
      if (n != 4)
        fail("RST_STREAM of a bad length", off);
      s->reset = true;
      if (be32(p) == NGHTTP2_REFUSED_STREAM)
        o->refused = true;
      break;
    case NGHTTP2_SETTINGS:
      if (flags & NGHTTP2_FLAG_ACK ? n != 0 : n % 6 != 0)
        fail("SETTINGS of a bad length", off);
      break;
    case NGHTTP2_PING:
      if (n != 8)
        fail("PING of a bad length", off);
      break;
    case NGHTTP2_GOAWAY: {
      if (n < 8)
        fail("GOAWAY too short", off);
      int64_t last = be32(p) & 0x7fffffff;
      if (goaway_last >= 0 && last > goaway_last)
        fail("a GOAWAY that raises the last stream ID", off);
      goaway_last = last;
      fatal = be32(p + 4) != NGHTTP2_NO_ERROR;
      break;
    }
    default:
      break;
    }

    if ((type == NGHTTP2_HEADERS || type == NGHTTP2_CONTINUATION) &&
        flags & NGHTTP2_FLAG_END_HEADERS) {
      read_header_block(inflater, s, block, block_len, off);
      free(block);
      block = NULL;
      block_len = 0;
      block_stream = 0;
    }
    off += FRAME_HEADER_LEN + n;
  }
  if (block_stream != 0)
    fail("output ends inside a header block", off);
  free(block);
  nghttp2_hd_inflate_del(inflater);
}

/* ---- driving the connection --------------------------------------------- */

/* Registry answers and completed writes, until neither has anything to
 * do. */
static void pump(struct api_conn *c)
{
  for (int turns = 0;; turns++) {
    size_t ran = fuzz_api_env_run_pending();
    bool drained = fake_conn_drain(c);
    if (ran == 0 && !drained)
      return;
    if (turns > MAX_TURNS) {
      fprintf(stderr, "fuzz_h2: the connection never settles\n");
      abort();
    }
  }
}

/* The transport after a read: the protocol writes what it can (the peer
 * has not read anything yet). */
static void flush(struct api_conn *c)
{
  if (!c->closing && !c->finishing)
    c->protocol->flush(c);
}

struct plan {
  size_t chunk;          /* bytes per read */
  bool deferred;         /* the registry answers later */
  size_t queue_scale;    /* fake_conn's */
  unsigned answer_every; /* reads between registry answers */
  unsigned read_every;   /* reads between the peer's reads */
  bool answer_first;     /* the registry answers before the timeouts */
  bool goaway_first;     /* a reload before the timeouts */
  bool free_at_once;     /* no timeouts: freed with everything under way */
  unsigned reload_at;    /* a reload's GOAWAY after this read (0: none) */
  bool silent;           /* the peer reads nothing during the timeouts */
};

/* The timeouts at now; the peer reads what they wrote unless it has gone
 * silent (then the resets wait behind the high water mark and the stream
 * stays stuck). */
static void sweep(struct api_conn *c, uint64_t now, bool silent)
{
  api_conn_sweep(c, now);
  flush(c);
  if (!silent)
    fake_conn_drain(c);
}

static void run(const uint8_t *data, size_t size, const struct plan *plan,
                struct outcome *o)
{
  struct fuzz_api_env *env = fuzz_api_env();
  struct api_conn *c, *evicted;
  size_t off = 0, mark;
  unsigned reads = 0;

  fuzz_api_env_reset(plan->deferred);
  c = fake_conn_open(env->server, &api_h2_protocol, plan->queue_scale);
  /* Counted as conn.c counts it: unauthenticated (few streams at once)
   * until a request shows a known token. */
  struct sockaddr_in *peer = (struct sockaddr_in *)&c->peer_addr;
  peer->sin_family = AF_INET;
  peer->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  c->accepted_at = uv_now(env->loop);
  if (api_admission_accept(env->server, c, &evicted) != API_ADMIT_KEEP ||
      evicted != NULL)
    abort();

  while (off < size && !c->closing && !c->finishing) {
    size_t n = size - off < plan->chunk ? size - off : plan->chunk;
    fake_conn_recv(c, data + off, n);
    off += n;
    flush(c);
    reads++;
    if (reads == plan->reload_at) {
      api_conn_goaway(c, 0);
      flush(c);
    }
    if (reads % plan->answer_every == 0)
      fuzz_api_env_run_pending();
    if (reads % plan->read_every == 0)
      fake_conn_drain(c);
  }
  fake_conn_drain(c);
  if (plan->answer_first)
    pump(c);
  mark = fake_conn.out_len;

  /* Not compared: what the timeouts and a reload answer, then the free. */
  uint64_t now = uv_now(env->loop);
  if (plan->goaway_first) {
    api_conn_goaway(c, 0);
    flush(c);
  }
  if (!plan->free_at_once) {
    sweep(c, now + TIMEOUT, plan->silent); /* 503, 408 */
    fuzz_api_env_run_pending();            /* late answers: dropped */
    flush(c);
    sweep(c, now + TIMEOUT + 1000, plan->silent); /* the early answer's reset */
    sweep(c, now + 4 * TIMEOUT, plan->silent);    /* a window never opened */
    sweep(c, now + 5 * TIMEOUT, plan->silent);    /* a stream stuck */
    api_conn_goaway(c, 0);
    flush(c);
    pump(c);
    sweep(c, now + 10 * API_DEFAULT_IDLE_TIMEOUT_MS, false); /* idle */
    pump(c);
  }
  if (verbose)
    fprintf(stderr, "---- reads of %zu bytes, registry %s: %zu bytes\n",
            plan->chunk, plan->deferred ? "deferred" : "inline",
            fake_conn.out_len);
  parse_frames((const uint8_t *)fake_conn.out, fake_conn.out_len, mark,
               max_frame_size(data, size), o);
  api_admission_release(c);
  fake_conn_free(c);
  fuzz_api_env_run_pending(); /* cancelled: their answers go nowhere */

  /* Nothing of the connection is left on the server. */
  struct api_server *server = env->server;
  if (server->n_conns != 0 || !nlb_list_empty(&server->event_streams) ||
      server->event_reads_in_flight != 0 ||
      !nlb_list_empty(&server->event_reads_waiting) ||
      server->admission.bytes_held != 0 ||
      server->admission.n_unauthenticated != 0 ||
      server->admission.n_authenticated != 0) {
    fprintf(stderr, "fuzz_h2: the server still counts the connection\n");
    abort();
  }
}

static void compare(const struct outcome *whole, const struct outcome *pieces)
{
  if (whole->refused || pieces->refused)
    return;
  for (size_t i = 0; i < whole->n; i++) {
    const struct stream_seen *a = &whole->streams[i];
    for (size_t j = 0; j < pieces->n; j++) {
      const struct stream_seen *b = &pieces->streams[j];
      if (a->id != b->id || !a->compared || !b->compared || a->status == 0 ||
          b->status == 0)
        continue;
      if (a->status != b->status) {
        fprintf(stderr,
                "fuzz_h2: stream %d: %d in one read, %d in small reads\n",
                (int)a->id, a->status, b->status);
        abort();
      }
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct outcome whole = {0}, pieces = {0};
  uint32_t hash = 2166136261u;
  uint8_t *input = (uint8_t *)data;
  size_t len = size;

  verbose = getenv("NLB_FUZZ_VERBOSE") != NULL;
  for (size_t i = 0; i < size; i++)
    hash = (hash ^ data[i]) * 16777619u;
  if (size < PREFACE_LEN || memcmp(data, PREFACE, PREFACE_LEN) != 0) {
    /* Without the preface conn.c would speak HTTP/1.1: put it in. */
    len = PREFACE_LEN + size;
    input = malloc(len);
    if (input == NULL)
      abort();
    memcpy(input, PREFACE, PREFACE_LEN);
    if (size > 0)
      memcpy(input + PREFACE_LEN, data, size);
  }

  struct plan one = {.chunk = len,
                     .deferred = false,
                     .queue_scale = 1,
                     .answer_every = 1,
                     .read_every = 1,
                     .answer_first = true,
                     .goaway_first = hash & 1,
                     .free_at_once = false};
  struct plan small = {.chunk = 1 + (hash >> 1) % 16,
                       .deferred = true,
                       .queue_scale = 4096,
                       .answer_every = 1 + (hash >> 5) % 4,
                       .read_every = 1 + (hash >> 7) % 8,
                       .answer_first = hash & 0x400,
                       .goaway_first = hash & 0x800,
                       .free_at_once = (hash >> 12) % 8 == 0,
                       .reload_at =
                           (hash >> 15) % 4 == 0 ? 1 + (hash >> 17) % 64 : 0,
                       .silent = (hash >> 23) % 4 == 0};
  run(input, len, &one, &whole);
  run(input, len, &small, &pieces);
  compare(&whole, &pieces);
  free(whole.streams);
  free(pieces.streams);
  if (input != data)
    free(input);
  return 0;
}
