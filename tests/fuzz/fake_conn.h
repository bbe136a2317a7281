/* The fake transport of fuzz_http1 and fuzz_h2 (fake_conn.c): one
 * connection at a time, what the protocol wrote kept in fake_conn.out. */
#ifndef NLB_FUZZ_FAKE_CONN_H
#define NLB_FUZZ_FAKE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

struct fake_conn {
  char *out; /* every byte the protocol wrote, in order */
  size_t out_len, out_cap;
  size_t queued;      /* written, not yet read by the peer */
  size_t queue_scale; /* api_conn_queued() reports queued * this */
  bool reading;       /* api_conn_reading() */
  size_t held;        /* api_conn_hold_output()'s total: never below 0 */
};

extern struct fake_conn fake_conn;

/* A new connection speaking protocol (started), fake_conn reset. */
struct api_conn *fake_conn_open(struct api_server *server,
                                const struct api_protocol *protocol,
                                size_t queue_scale);

/* True while the transport would hand the protocol what it reads. */
bool fake_conn_open_for_reads(const struct api_conn *c);

/* Hands the protocol n bytes read from the peer, in a buffer of exactly n
 * bytes (so ASan sees a read past them), as the transport does. */
void fake_conn_recv(struct api_conn *c, const uint8_t *data, size_t n);

/* The peer reads everything written; the protocol flushes, as after a
 * completed write or a wake. True when there was something to do. */
bool fake_conn_drain(struct api_conn *c);

/* The handle closed: the protocol frees its state, then c goes. */
void fake_conn_free(struct api_conn *c);

#endif
