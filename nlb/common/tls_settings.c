/* TLS settings as the config holds them: copied, compared, freed. No
 * OpenSSL here, so that the config loader's fuzz build links it alone
 * (tls_client.h, tls_server.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/common/tls_client.h"
#include "nlb/common/tls_server.h"

static bool same_text(const char *a, const char *b)
{
  return a == b || (a && b && strcmp(a, b) == 0);
}

static int dup_text(char **dst, const char *src)
{
  *dst = NULL;
  if (src && !(*dst = strdup(src)))
    return -ENOMEM;
  return 0;
}

int nlb_tls_client_settings_copy(struct nlb_tls_client_settings *dst,
                                 const struct nlb_tls_client_settings *src)
{
  *dst = *src;
  if (dup_text(&dst->ca, src->ca) < 0 ||
      dup_text(&dst->server_name, src->server_name) < 0 ||
      dup_text(&dst->cert, src->cert) < 0 ||
      dup_text(&dst->key, src->key) < 0) {
    nlb_tls_client_settings_free(dst);
    return -ENOMEM;
  }
  return 0;
}

void nlb_tls_client_settings_free(struct nlb_tls_client_settings *s)
{
  free(s->ca);
  free(s->server_name);
  free(s->cert);
  free(s->key);
  memset(s, 0, sizeof(*s));
}

bool nlb_tls_client_settings_equal(const struct nlb_tls_client_settings *a,
                                   const struct nlb_tls_client_settings *b)
{
  return a->enabled == b->enabled && a->verify == b->verify &&
         same_text(a->ca, b->ca) && same_text(a->server_name, b->server_name) &&
         same_text(a->cert, b->cert) && same_text(a->key, b->key);
}

void nlb_tls_server_settings_free(struct nlb_tls_server_settings *s)
{
  for (size_t i = 0; i < s->n_certificates; i++) {
    free(s->certificates[i].cert);
    free(s->certificates[i].key);
  }
  free(s->certificates);
  free(s->alpn);
  free(s->ciphers);
  free(s->ciphersuites);
  memset(s, 0, sizeof(*s));
}
