/* Private to api/: a client connection's transport, apart from the
 * protocol spoken on it.
 *
 * The transport (conn.c) accepts the socket, reads and writes it through
 * libuv, runs TLS through OpenSSL memory BIOs, and decides the protocol: on
 * a plain connection HTTP/2 when the first bytes are the HTTP/2 connection
 * preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), decided as soon as the
 * bytes received can no longer be a prefix of it, otherwise HTTP/1.1; over
 * TLS the ALPN protocol chosen in the handshake ("h2"; "http/1.1" or none
 * at all: HTTP/1.1). The protocol (h2.c, h1.c) sees only plaintext bytes
 * and writes plaintext through api_conn_write().
 *
 * Ownership: the server owns its connections (api_server.conns); a
 * connection owns its protocol state (c->state, freed by protocol->free in
 * the handle's close callback, never while one of its callbacks is on the
 * stack). Threads: the control thread only. */
#ifndef NLB_API_CONN_H
#define NLB_API_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sys/socket.h>

#include "admission.h"
#include "api-int.h"

/* How long a connection told to go (GOAWAY, a last answer) may take to
 * finish before it is cut. */
#define API_GOAWAY_GRACE_MS 2000
/* Producers stop adding output while this much waits in libuv. */
#define API_WRITE_HIGH_WATER (256 * 1024)
/* Request header blocks over this answer 431. */
#define API_HEADER_SOFT_LIMIT (16 * 1024)
/* Longer paths answer 431 too. */
#define API_PATH_MAX_LEN 4096

struct api_conn;

/* A protocol, as the transport drives it. Every member is called on the
 * control thread, never once the connection is finishing or closing
 * (except free). */
struct api_protocol {
  const char *name; /* "HTTP/2", "HTTP/1.1": for logs */
  /* Sets up c->state. 0 or -ENOMEM (the connection is then closed). */
  int (*start)(struct api_conn *c);
  /* Plaintext bytes from the peer. */
  void (*recv)(struct api_conn *c, const char *data, size_t len);
  /* Writes what is ready to be written; called after every read, after
   * every completed write, after sweep and goaway, and on wakes. */
  void (*flush)(struct api_conn *c);
  /* Timeouts, a few times a second. */
  void (*sweep)(struct api_conn *c, uint64_t now);
  /* Reload or shutdown: take no new requests, let open ones finish, end
   * event streams, then finish the connection. */
  void (*goaway)(struct api_conn *c);
  /* Frees c->state (the handle is closed). */
  void (*free)(struct api_conn *c);
};

/* h2.c's and h1.c's; server.c hands them to conn.c (api_server's
 * h2_protocol and h1_protocol), which does not name them. */
extern const struct api_protocol api_h2_protocol;
extern const struct api_protocol api_h1_protocol;

struct api_conn {
  struct nlb_list link; /* api_server.conns */
  struct api_server *server;
  uv_tcp_t tcp;
  uv_shutdown_t shutdown_req;
  SSL *ssl; /* NULL: plain */
  BIO *rbio, *wbio;
  bool handshake_done;
  const struct api_protocol *protocol; /* NULL until decided */
  void *state;                         /* the protocol's */
  char sniffed[24]; /* plain: the first bytes, while they may be a preface */
  size_t n_sniffed;
  uint64_t accepted_at;
  uint64_t close_deadline; /* 0: none */
  bool finishing; /* the protocol is done: write what is queued, then go */
  bool linger;    /* when finishing: FIN, then read until EOF or deadline */
  bool shut_down; /* uv_shutdown done or under way */
  bool closing;   /* uv_close called */
  bool flush_wanted;
  size_t writes_pending;
  char peer[64];
  /* The API tokens (a prefix of their hashes) requests on this connection
   * were authenticated with: a revoked one closes the connection. */
  uint8_t token_tags[4][8];
  uint8_t n_token_tags;
  struct sockaddr_storage peer_addr;
  struct api_conn_admission admission;
};

/* True when a request on c was authenticated by the token hash. Inline,
 * like api_conn_note_token, so that the fuzzers' stand-in for conn.c
 * (tests/fuzz/fake_conn.c) keeps tokens exactly as conn.c does. */
static inline bool api_conn_used_token(const struct api_conn *c,
                                       const uint8_t hash[32])
{
  for (size_t i = 0; i < c->n_token_tags; i++)
    if (memcmp(c->token_tags[i], hash, 8) == 0)
      return true;
  return false;
}

/* Notes that a request on c was authenticated by the API token hash (a
 * prefix of it). More tokens on one connection than token_tags holds: the
 * oldest is forgotten, and revoking it then leaves the connection to its
 * idle timeout. */
static inline void api_conn_note_token(struct api_conn *c,
                                       const uint8_t hash[32])
{
  const size_t max = sizeof(c->token_tags) / sizeof(c->token_tags[0]);

  if (api_conn_used_token(c, hash))
    return;
  if (c->n_token_tags == max)
    memmove(c->token_tags[0], c->token_tags[1],
            sizeof(c->token_tags) - sizeof(c->token_tags[0]));
  else
    c->n_token_tags++;
  memcpy(c->token_tags[c->n_token_tags - 1], hash, 8);
}

/* Writes plaintext data (malloc'd; taken) to the peer, through TLS if any.
 * On failure the connection closes. */
void api_conn_write(struct api_conn *c, char *data, size_t len);

/* Bytes handed to libuv and not yet written. */
size_t api_conn_queued(const struct api_conn *c);

/* The protocol is done with c: no more reads reach it; once what is queued
 * is written the connection closes. With linger (HTTP/1.1's last answer)
 * the write side is shut first (TLS close_notify, then FIN) and reads are
 * drained until the peer closes or API_GOAWAY_GRACE_MS pass, so that a
 * client still sending does not get a reset that destroys the answer. */
void api_conn_finish(struct api_conn *c, bool linger);

/* Stops (false) or resumes (true) reading from the peer: a protocol's
 * backpressure while its answers wait to be written. */
void api_conn_reading(struct api_conn *c, bool on);

/* Closes at once; the memory goes in the handle's close callback. */
void api_conn_close(struct api_conn *c);

/* Asks for protocol->flush on the next turn of the loop (from observers
 * and other places where writing now is not safe). */
void api_conn_wake(struct api_conn *c);

/* uv_connection_cb of the server's listener. */
void api_conn_on_connection(uv_stream_t *listener, int status);

/* Timeouts of c at now (the server's sweep timer). */
void api_conn_sweep(struct api_conn *c, uint64_t now);

/* Reload (deadline 0) or shutdown: the protocol's goaway; deadline, when
 * not 0, is when the connection is cut whatever remains. */
void api_conn_goaway(struct api_conn *c, uint64_t deadline);

/* Logs a line about c ("api: PEER: ..."), through api_log (both in
 * log.c, below every other file of api/). */
void api_conn_log(struct api_conn *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
