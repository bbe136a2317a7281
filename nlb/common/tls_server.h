/* TLS termination on a listener (`protocol = "tls"`): the settings as the
 * config file gives them, and the server context built from them: its
 * certificates (one chosen per handshake by the client's SNI), ALPN,
 * versions, ciphers, and session tickets whose keys every worker shares
 * and a timer rotates.
 *
 * The settings hold only paths and words, so that the config loader (and
 * its fuzz build) needs no OpenSSL; the context is built when the config
 * is applied (start, reload), where a file that does not load fails it.
 * A built context is immutable and reference counted: a route holds one
 * reference, and each connection's SSL holds the OpenSSL context, so a
 * reload gives new flows new certificates while running flows keep
 * theirs. */
#ifndef NLB_TLS_SERVER_H
#define NLB_TLS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ssl_st;

struct nlb_tls_certificate_files {
  char *cert; /* PEM: the certificate, then its chain */
  char *key;  /* PEM private key */
  int line;
};

struct nlb_tls_server_settings {
  bool enabled; /* the listener has a tls block */
  struct nlb_tls_certificate_files *certificates; /* the first: default */
  size_t n_certificates;
  /* ALPN protocols in the server's order of preference, as one wire
   * vector (length-prefixed names); alpn_len 0: ALPN not answered. */
  unsigned char *alpn;
  size_t alpn_len;
  int min_version;    /* 0x0303 (1.2, the default) or 0x0304 (1.3) */
  char *ciphers;      /* TLS 1.2 cipher list; NULL: nlb's default */
  char *ciphersuites; /* TLS 1.3 suites; NULL: OpenSSL's default */
  uint64_t handshake_timeout_ms;
  /* A client whose SNI no certificate carries: refused (an alert) instead
   * of served the first certificate. */
  bool refuse_unknown_sni;
  /* Flows of the listener still in their handshake (all workers): past
   * it, a new connection is reset at once (handshake result "refused"),
   * so that clients that stall cost a bounded amount. */
  uint64_t max_pending_handshakes;
  int line;
};

/* Frees what s holds and clears it. */
void nlb_tls_server_settings_free(struct nlb_tls_server_settings *s);

struct nlb_tls_server;

/* Builds the context for settings: every certificate and key loaded and
 * matched, their names (SAN DNS names, else the CN) indexed for SNI.
 * Returns it with one reference, or NULL with a one-line reason naming
 * the file in err. Control thread. */
struct nlb_tls_server *
nlb_tls_server_create(const struct nlb_tls_server_settings *settings, char *err,
                      size_t err_size);

/* Any thread; the last release frees the context (connections still open
 * keep the OpenSSL objects they use). */
void nlb_tls_server_acquire(struct nlb_tls_server *server);
void nlb_tls_server_release(struct nlb_tls_server *server);

/* A server connection over the accepted socket fd, in accept state; the
 * caller drives the handshake and frees it with SSL_free (fd stays the
 * caller's). NULL on ENOMEM. Worker thread. */
struct ssl_st *nlb_tls_server_connection(struct nlb_tls_server *server, int fd);

/* The handshake timeout and admission limit of the listener. */
uint64_t nlb_tls_server_handshake_timeout_ms(const struct nlb_tls_server *s);
uint64_t nlb_tls_server_max_pending(const struct nlb_tls_server *s);

/* The latest notAfter (Unix seconds) of certificate i, and its file; i past
 * the last: returns false. Any thread. */
bool nlb_tls_server_certificate(const struct nlb_tls_server *server, size_t i,
                                const char **file, int64_t *not_after);

/* Session ticket keys, shared by every listener and worker: a new key is
 * made every rotation (the control thread's timer calls
 * nlb_tls_ticket_keys_rotate); tickets are issued with the newest and
 * accepted under the previous two, so a ticket lives two to three
 * rotation periods. Returns 0 or -EIO (no randomness). Any thread. */
int nlb_tls_ticket_keys_rotate(void);

/* Whether this kernel offers kTLS (setsockopt TCP_ULP "tls" on a TCP
 * socket): asked once, the answer cached. Any thread. */
bool nlb_tls_ktls_available(void);

#endif
