/* TLS for health-check probes (health_tls.h), over two memory BIOs: what
 * the target sent goes in one, what OpenSSL writes comes out of the other
 * for health.c to send. */
#include "nlb/control/health_tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/common/tls_client.h"

struct nlb_health_tls {
  SSL *ssl;
  BIO *in;  /* the target's bytes, owned by ssl */
  BIO *out; /* bytes for the target, owned by ssl */
};

struct nlb_health_tls *nlb_health_tls_new(struct ssl_ctx_st *ctx,
                                          const char *server_name)
{
  struct nlb_health_tls *tls = calloc(1, sizeof(*tls));

  if (!tls)
    return NULL;
  /* The socket BIO set for fd -1 is replaced at once by the memory ones. */
  tls->ssl = nlb_tls_client_connection(ctx, server_name, -1);
  tls->in = BIO_new(BIO_s_mem());
  tls->out = BIO_new(BIO_s_mem());
  if (!tls->ssl || !tls->in || !tls->out) {
    BIO_free(tls->in);
    BIO_free(tls->out);
    SSL_free(tls->ssl);
    free(tls);
    return NULL;
  }
  SSL_set_bio(tls->ssl, tls->in, tls->out);
  return tls;
}

void nlb_health_tls_free(struct nlb_health_tls *tls)
{
  if (!tls)
    return;
  SSL_free(tls->ssl);
  free(tls);
}

int nlb_health_tls_feed(struct nlb_health_tls *tls, const void *data,
                        size_t len)
{
  while (len > 0) {
    int n = BIO_write(tls->in, data, len > 65536 ? 65536 : (int)len);
    if (n <= 0)
      return -ENOMEM;
    data = (const char *)data + n;
    len -= (size_t)n;
  }
  return 0;
}

int nlb_health_tls_handshake(struct nlb_health_tls *tls, char *why,
                             size_t why_size)
{
  char reason[256];
  long verify;
  int rc = SSL_do_handshake(tls->ssl);

  if (rc == 1)
    return 1;
  switch (SSL_get_error(tls->ssl, rc)) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE:
    return 0;
  default:
    break;
  }
  nlb_tls_error_text(reason, sizeof(reason));
  verify = SSL_get_verify_result(tls->ssl);
  if (verify != X509_V_OK)
    snprintf(why, why_size, "tls handshake: certificate: %s",
             X509_verify_cert_error_string(verify));
  else
    snprintf(why, why_size, "tls handshake: %s", reason);
  return -EPROTO;
}

int nlb_health_tls_write(struct nlb_health_tls *tls, const void *data,
                         size_t len)
{
  size_t written = 0;

  if (len == 0)
    return 0;
  if (SSL_write_ex(tls->ssl, data, len, &written) != 1 || written != len) {
    ERR_clear_error();
    return -EPROTO;
  }
  return 0;
}

ssize_t nlb_health_tls_read(struct nlb_health_tls *tls, void *buf, size_t size)
{
  size_t n = 0;

  if (SSL_read_ex(tls->ssl, buf, size, &n) == 1)
    return (ssize_t)n;
  switch (SSL_get_error(tls->ssl, 0)) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE:
    return 0;
  case SSL_ERROR_ZERO_RETURN:
    return -EPIPE;
  default:
    ERR_clear_error();
    return -EPROTO;
  }
}

ssize_t nlb_health_tls_take_output(struct nlb_health_tls *tls, char **out)
{
  char *data;
  long len = BIO_get_mem_data(tls->out, &data);

  *out = NULL;
  if (len <= 0)
    return 0;
  if (!(*out = malloc((size_t)len)))
    return -ENOMEM;
  memcpy(*out, data, (size_t)len);
  (void)BIO_reset(tls->out);
  return len;
}
