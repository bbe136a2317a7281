/* TLS for a health check's probe, when its target group has `tls = { ... }`:
 * a client connection over memory buffers, so that the probe keeps its
 * libuv stream (health.c reads and writes it; this only turns bytes into
 * bytes). The handshake verifies as the group's flows do (the group's
 * client context and server_name); the check passes only once it is done.
 * Control thread; one per probe, owned by it. */
#ifndef NLB_HEALTH_TLS_H
#define NLB_HEALTH_TLS_H

#include <stddef.h>
#include <sys/types.h>

struct ssl_ctx_st;
struct nlb_health_tls;

/* A client connection in connect state: SNI server_name (NULL: none), the
 * name verified when the context verifies. NULL on ENOMEM. */
struct nlb_health_tls *nlb_health_tls_new(struct ssl_ctx_st *ctx,
                                          const char *server_name);
void nlb_health_tls_free(struct nlb_health_tls *tls);

/* Takes bytes read from the target. 0 or -ENOMEM. */
int nlb_health_tls_feed(struct nlb_health_tls *tls, const void *data,
                        size_t len);

/* Moves the handshake on with what was fed: 1 when it is done, 0 while it
 * waits for the target, -EPROTO when it failed (why says how, one line:
 * OpenSSL's reason and, for a certificate, the verification error). */
int nlb_health_tls_handshake(struct nlb_health_tls *tls, char *why,
                             size_t why_size);

/* Encrypts len bytes for the target (after the handshake). 0 or -EPROTO. */
int nlb_health_tls_write(struct nlb_health_tls *tls, const void *data,
                         size_t len);

/* Decrypted bytes from the target: > 0 copied to buf, 0 when none yet,
 * -EPIPE when the target closed the TLS session, -EPROTO on an error. */
ssize_t nlb_health_tls_read(struct nlb_health_tls *tls, void *buf, size_t size);

/* Bytes waiting to go to the target, moved into a malloc'd buffer (*out,
 * the caller's to free) of the returned length; 0 (*out NULL) when none,
 * -ENOMEM. */
ssize_t nlb_health_tls_take_output(struct nlb_health_tls *tls, char **out);

#endif
