/* TLS towards targets (a target group's `tls = { ... }`: re-encryption):
 * the settings as the config file gives them and the OpenSSL client
 * context built from them. The relay (nlb/dataplane/flow_tls.c) and the
 * health checks of such a group share one context per group.
 *
 * The settings hold only paths and names, so that the config loader (and
 * its fuzz build) needs no OpenSSL; the context is built when the config
 * is applied, where a file that does not load fails the start or the
 * reload. Any thread: an SSL_CTX is safe to share once built. */
#ifndef NLB_TLS_CLIENT_H
#define NLB_TLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

struct ssl_ctx_st;
struct ssl_st;

struct nlb_tls_client_settings {
  bool enabled;      /* the group has a tls block */
  char *ca;          /* PEM file of trusted CAs; NULL: the system's */
  char *server_name; /* SNI sent and name verified; NULL: none sent */
  bool verify;       /* check the target's chain (and server_name) */
  char *cert;        /* client certificate (PEM), with key; NULL: none */
  char *key;
  int line; /* of the tls block in the config file */
};

/* Copies src's strings into dst (dst's previous ones are not freed).
 * Returns 0 or -ENOMEM (dst then holds nothing to free). */
int nlb_tls_client_settings_copy(struct nlb_tls_client_settings *dst,
                                 const struct nlb_tls_client_settings *src);

/* Frees the strings of s and clears it. */
void nlb_tls_client_settings_free(struct nlb_tls_client_settings *s);

/* Whether two settings would build the same context. */
bool nlb_tls_client_settings_equal(const struct nlb_tls_client_settings *a,
                                   const struct nlb_tls_client_settings *b);

/* A client context for settings: TLS 1.2 and 1.3, no renegotiation, the
 * CA file (or the system's store) trusted, the client certificate loaded.
 * Returns a context with one reference (SSL_CTX_free drops it), or NULL
 * with a one-line reason naming the file in err. */
struct ssl_ctx_st *
nlb_tls_client_context(const struct nlb_tls_client_settings *settings,
                       char *err, size_t err_size);

/* A client connection over the connected (or connecting) socket fd, in
 * connect state: SNI server_name (NULL: none) and, when the context
 * verifies, that name checked against the target's certificate. The
 * caller drives the handshake (SSL_do_handshake) and frees the result
 * with SSL_free; fd stays the caller's. NULL on ENOMEM. */
struct ssl_st *nlb_tls_client_connection(struct ssl_ctx_st *ctx,
                                         const char *server_name, int fd);

/* OpenSSL's error queue as one line ("no error" when empty), cleared;
 * the queue is per thread. */
void nlb_tls_error_text(char *out, size_t size);

#endif
