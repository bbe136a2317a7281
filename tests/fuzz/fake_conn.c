/* A stand-in for api/conn.c, linked into the API fuzzers instead of it: the
 * transport as the protocol sees it (api/conn.h), without a socket, so
 * that raw bytes reach api_h1_protocol.recv (or api_h2_protocol's) and
 * what it writes can be read back. Nothing in api/ changes for it: the
 * protocol calls these functions by name and this file defines them all
 * (the link fails if conn.c gains one it lacks), but api_conn_log, which
 * lives in api/log.c.
 *
 * The peer reads what is written when fake_conn_drain() says so; until
 * then api_conn_queued() reports it, scaled by fake_conn.queue_scale so
 * that a few small answers reach API_WRITE_HIGH_WATER and the protocol's
 * backpressure (held bytes, reading stopped) runs. */
#include "fake_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fake_conn fake_conn;

void api_conn_write(struct api_conn *c, char *data, size_t len)
{
  if (c->closing || len == 0) {
    free(data);
    return;
  }
  if (fake_conn.out_len + len > fake_conn.out_cap) {
    size_t cap = fake_conn.out_cap ? fake_conn.out_cap : 4096;
    while (cap < fake_conn.out_len + len)
      cap *= 2;
    char *grown = realloc(fake_conn.out, cap);
    if (grown == NULL)
      abort();
    fake_conn.out = grown;
    fake_conn.out_cap = cap;
  }
  memcpy(fake_conn.out + fake_conn.out_len, data, len);
  fake_conn.out_len += len;
  fake_conn.queued += len;
  c->writes_pending++;
  free(data);
}

size_t api_conn_queued(const struct api_conn *c)
{
  (void)c;
  return fake_conn.queued * fake_conn.queue_scale;
}

void api_conn_finish(struct api_conn *c, bool linger)
{
  if (c->finishing || c->closing)
    return;
  c->finishing = true;
  c->linger = linger;
}

void api_conn_reading(struct api_conn *c, bool on)
{
  (void)c;
  fake_conn.reading = on;
}

void api_conn_close(struct api_conn *c)
{
  c->closing = true;
}

void api_conn_wake(struct api_conn *c)
{
  c->flush_wanted = true;
}

void api_conn_on_connection(uv_stream_t *listener, int status)
{
  (void)listener;
  (void)status; /* nothing connects to the fuzzers' listener */
}

void api_conn_sweep(struct api_conn *c, uint64_t now)
{
  if (!c->closing && !c->finishing)
    c->protocol->sweep(c, now);
}

void api_conn_goaway(struct api_conn *c, uint64_t deadline)
{
  (void)deadline;
  if (!c->closing && !c->finishing)
    c->protocol->goaway(c);
}

/* ---- for the target ----------------------------------------------------- */

struct api_conn *fake_conn_open(struct api_server *server,
                                const struct api_protocol *protocol,
                                size_t queue_scale)
{
  struct api_conn *c = calloc(1, sizeof *c);

  if (c == NULL)
    abort();
  free(fake_conn.out);
  memset(&fake_conn, 0, sizeof fake_conn);
  fake_conn.reading = true;
  fake_conn.queue_scale = queue_scale;
  c->server = server;
  c->protocol = protocol;
  c->handshake_done = true;
  snprintf(c->peer, sizeof c->peer, "fuzz");
  /* On the server's list, as conn.c puts it: a revoked token closes it. */
  nlb_list_append(&server->conns, &c->link);
  server->n_conns++;
  if (protocol->start(c) != 0)
    abort();
  return c;
}

bool fake_conn_open_for_reads(const struct api_conn *c)
{
  return !c->closing && !c->finishing && fake_conn.reading;
}

void fake_conn_recv(struct api_conn *c, const uint8_t *data, size_t n)
{
  char *piece = malloc(n ? n : 1);

  if (piece == NULL)
    abort();
  memcpy(piece, data, n);
  c->protocol->recv(c, piece, n);
  free(piece);
}

bool fake_conn_drain(struct api_conn *c)
{
  bool progress = fake_conn.queued > 0 || c->flush_wanted;

  /* Every write completed: the transport flushes after each. */
  fake_conn.queued = 0;
  c->writes_pending = 0;
  c->flush_wanted = false;
  if (progress && !c->closing && !c->finishing)
    c->protocol->flush(c);
  return progress;
}

void fake_conn_free(struct api_conn *c)
{
  c->closing = true;
  c->protocol->free(c);
  nlb_list_remove(&c->link);
  c->server->n_conns--;
  free(c);
}
