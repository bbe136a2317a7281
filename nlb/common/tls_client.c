/* TLS towards targets: settings and client contexts (tls_client.h). */
#include "nlb/common/tls_client.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nlb_tls_error_text(char *out, size_t size)
{
  unsigned long code = ERR_get_error();

  if (!code)
    snprintf(out, size, "no error");
  else
    ERR_error_string_n(code, out, size);
  ERR_clear_error();
}

struct ssl_ctx_st *
nlb_tls_client_context(const struct nlb_tls_client_settings *settings,
                       char *err, size_t err_size)
{
  char why[256];
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

  if (!ctx) {
    snprintf(err, err_size, "out of memory");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_IGNORE_UNEXPECTED_EOF);
  /* Idle flows hold no OpenSSL buffers. */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (settings->verify) {
    int ok = settings->ca
                 ? SSL_CTX_load_verify_locations(ctx, settings->ca, NULL)
                 : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
      nlb_tls_error_text(why, sizeof(why));
      snprintf(err, err_size, "cannot load CA file %s: %s",
               settings->ca ? settings->ca : "(system)", why);
      goto fail_free_ctx;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  }
  if (settings->cert) {
    if (SSL_CTX_use_certificate_chain_file(ctx, settings->cert) != 1) {
      nlb_tls_error_text(why, sizeof(why));
      snprintf(err, err_size, "cannot load certificate %s: %s", settings->cert,
               why);
      goto fail_free_ctx;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, settings->key, SSL_FILETYPE_PEM) !=
            1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      nlb_tls_error_text(why, sizeof(why));
      snprintf(err, err_size, "cannot load key %s: %s", settings->key, why);
      goto fail_free_ctx;
    }
  }
  return ctx;

fail_free_ctx:
  SSL_CTX_free(ctx);
  return NULL;
}

struct ssl_st *nlb_tls_client_connection(struct ssl_ctx_st *ctx,
                                         const char *server_name, int fd)
{
  SSL *ssl = SSL_new(ctx);

  if (!ssl)
    return NULL;
  if (SSL_set_fd(ssl, fd) != 1)
    goto fail_free_ssl;
  if (server_name) {
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    bool verify = SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER;
    /* An IP address is checked against the certificate's IP SANs, and is
     * never sent as SNI (RFC 6066, 3). */
    if (X509_VERIFY_PARAM_set1_ip_asc(param, server_name) == 1) {
      if (!verify)
        X509_VERIFY_PARAM_set1_ip(param, NULL, 0);
    } else if (SSL_set_tlsext_host_name(ssl, server_name) != 1 ||
               (verify && SSL_set1_host(ssl, server_name) != 1)) {
      goto fail_free_ssl;
    }
  }
  SSL_set_connect_state(ssl);
  return ssl;

fail_free_ssl:
  SSL_free(ssl);
  return NULL;
}
