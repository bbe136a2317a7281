/* TLS termination contexts (tls_server.h). One OpenSSL context per
 * listener holds the first certificate; the others are handed to a
 * connection in the certificate callback, chosen by the client's SNI. */
#include "nlb/common/tls_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nlb/common/tls_client.h"

/* TLS 1.2 suites with forward secrecy and an AEAD only (TLS 1.3's are
 * all such). */
#define DEFAULT_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"

/* A new ticket key every hour; tickets are accepted under the previous
 * ones too (TICKET_KEYS). */
#define TICKET_ROTATE_SECONDS 3600
#define TICKET_KEYS 3

struct certificate {
  X509 *cert;
  EVP_PKEY *key;
  STACK_OF(X509) * chain;
  char **names; /* lower case; "*.example.com" for a wildcard */
  size_t n_names;
  char *file;
  int64_t not_after;
};

struct nlb_tls_server {
  atomic_int refs;
  SSL_CTX *ctx;
  struct certificate *certificates;
  size_t n_certificates;
  unsigned char *alpn;
  size_t alpn_len;
  uint64_t handshake_timeout_ms;
  uint64_t max_pending_handshakes;
  bool refuse_unknown_sni;
};

/* The session ticket keys every context shares: [0] the newest. */
struct ticket_key {
  unsigned char name[16];
  unsigned char aes[32];
  unsigned char hmac[32];
  bool set;
};

static pthread_rwlock_t ticket_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct ticket_key ticket_keys[TICKET_KEYS];
static time_t ticket_made;

int nlb_tls_ticket_keys_rotate(void)
{
  struct ticket_key key = {.set = true};

  if (RAND_bytes(key.name, sizeof(key.name)) != 1 ||
      RAND_bytes(key.aes, sizeof(key.aes)) != 1 ||
      RAND_bytes(key.hmac, sizeof(key.hmac)) != 1)
    return -EIO;
  pthread_rwlock_wrlock(&ticket_lock);
  memmove(&ticket_keys[1], &ticket_keys[0],
          sizeof(ticket_keys[0]) * (TICKET_KEYS - 1));
  ticket_keys[0] = key;
  ticket_made = time(NULL);
  pthread_rwlock_unlock(&ticket_lock);
  OPENSSL_cleanse(&key, sizeof(key));
  return 0;
}

/* The key a ticket is sealed with is due for rotation: whichever worker
 * issues the first ticket after the hour makes the next one, so every
 * worker and listener turns over together without a timer of its own. */
static void rotate_when_due(void)
{
  bool due;

  pthread_rwlock_rdlock(&ticket_lock);
  due =
      !ticket_keys[0].set || time(NULL) - ticket_made >= TICKET_ROTATE_SECONDS;
  pthread_rwlock_unlock(&ticket_lock);
  if (due)
    nlb_tls_ticket_keys_rotate();
}

static int set_ticket_cipher(const struct ticket_key *key, unsigned char *iv,
                             EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac, int enc)
{
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)key->hmac,
                                        sizeof(key->hmac)),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
      OSSL_PARAM_construct_end()};

  if (EVP_MAC_CTX_set_params(mac, params) != 1)
    return -1;
  return EVP_CipherInit_ex(cipher, EVP_aes_256_cbc(), NULL, key->aes, iv,
                           enc) == 1
             ? 0
             : -1;
}

/* OpenSSL's ticket callback: seal with the newest key; open with any key
 * still held, asking for a new ticket (2) when it was not the newest, and
 * always over TLS 1.3: there a client uses a ticket once (RFC 8446 C.4;
 * OpenSSL's client keeps no resumable session after resuming), so a
 * resumption that sent none left the client's next connection to a full
 * handshake, every other connection of a client such as wrk. */
static int on_ticket_key(SSL *ssl, unsigned char name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac, int enc)
{
  int result = 0;

  if (enc)
    rotate_when_due();
  pthread_rwlock_rdlock(&ticket_lock);
  if (enc) {
    memcpy(name, ticket_keys[0].name, 16);
    if (RAND_bytes(iv, EVP_CIPHER_iv_length(EVP_aes_256_cbc())) == 1 &&
        set_ticket_cipher(&ticket_keys[0], iv, cipher, mac, 1) == 0)
      result = 1;
    else
      result = -1;
  } else {
    for (int i = 0; i < TICKET_KEYS; i++) {
      if (!ticket_keys[i].set || memcmp(ticket_keys[i].name, name, 16) != 0)
        continue;
      if (set_ticket_cipher(&ticket_keys[i], iv, cipher, mac, 0) == 0)
        result = i == 0 && SSL_version(ssl) < TLS1_3_VERSION ? 1 : 2;
      break;
    }
  }
  pthread_rwlock_unlock(&ticket_lock);
  return result;
}

/* Whether the certificate name (lower case, maybe "*.x.y") covers host:
 * a wildcard stands for exactly one leftmost label. */
static bool name_matches(const char *name, const char *host)
{
  if (name[0] == '*' && name[1] == '.') {
    const char *dot = strchr(host, '.');
    return dot && dot != host && strcasecmp(dot + 1, name + 2) == 0;
  }
  return strcasecmp(name, host) == 0;
}

/* The certificate for host: an exact name first, then a wildcard; NULL
 * when none carries it. */
static const struct certificate *
find_certificate(const struct nlb_tls_server *s, const char *host)
{
  for (int wildcard = 0; wildcard < 2; wildcard++)
    for (size_t i = 0; i < s->n_certificates; i++)
      for (size_t j = 0; j < s->certificates[i].n_names; j++) {
        const char *name = s->certificates[i].names[j];
        if ((name[0] == '*') == wildcard && name_matches(name, host))
          return &s->certificates[i];
      }
  return NULL;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
  const struct nlb_tls_server *s = arg;
  const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

  if (host && s->refuse_unknown_sni && !find_certificate(s, host)) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

/* Runs once the ClientHello is read: a certificate other than the first
 * (the context's own) is lent to this connection. */
static int on_certificate(SSL *ssl, void *arg)
{
  const struct nlb_tls_server *s = arg;
  const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  const struct certificate *c = host ? find_certificate(s, host) : NULL;

  if (!c || c == &s->certificates[0])
    return 1;
  return SSL_use_cert_and_key(ssl, c->cert, c->key, c->chain, 1) == 1 ? 1 : 0;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
  const struct nlb_tls_server *s = arg;

  (void)ssl;
  /* The server's order of preference decides, as nginx and HAProxy do. */
  if (SSL_select_next_proto((unsigned char **)out, outlen, s->alpn,
                            (unsigned)s->alpn_len, in,
                            inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  return SSL_TLSEXT_ERR_OK;
}

static char *lower_dup(const char *text, size_t len)
{
  char *copy = malloc(len + 1);
  if (!copy)
    return NULL;
  for (size_t i = 0; i < len; i++)
    copy[i] = (char)(text[i] >= 'A' && text[i] <= 'Z' ? text[i] + 32 : text[i]);
  copy[len] = '\0';
  return copy;
}

static int add_name(struct certificate *c, const char *text, size_t len)
{
  char **names = realloc(c->names, (c->n_names + 1) * sizeof(*names));

  if (!names)
    return -ENOMEM;
  c->names = names;
  if (!(names[c->n_names] = lower_dup(text, len)))
    return -ENOMEM;
  c->n_names++;
  return 0;
}

/* The names SNI may pick the certificate by: its DNS SANs, else (no SAN
 * at all) its subject's CN. */
static int read_names(struct certificate *c)
{
  GENERAL_NAMES *sans =
      X509_get_ext_d2i(c->cert, NID_subject_alt_name, NULL, NULL);
  int rc = 0;

  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && rc == 0; i++) {
    const GENERAL_NAME *san = sk_GENERAL_NAME_value(sans, i);
    if (san->type == GEN_DNS)
      rc = add_name(c, (const char *)ASN1_STRING_get0_data(san->d.dNSName),
                    (size_t)ASN1_STRING_length(san->d.dNSName));
  }
  if (!sans) {
    char cn[256];
    int len = X509_NAME_get_text_by_NID(X509_get_subject_name(c->cert),
                                        NID_commonName, cn, sizeof(cn));
    if (len > 0)
      rc = add_name(c, cn, (size_t)len);
  }
  GENERAL_NAMES_free(sans);
  return rc;
}

static void free_certificate(struct certificate *c)
{
  X509_free(c->cert);
  EVP_PKEY_free(c->key);
  sk_X509_pop_free(c->chain, X509_free);
  for (size_t i = 0; i < c->n_names; i++)
    free(c->names[i]);
  free(c->names);
  free(c->file);
}

static int load_certificate(struct certificate *c,
                            const struct nlb_tls_certificate_files *files,
                            char *err, size_t err_size)
{
  char why[256];
  BIO *bio = BIO_new_file(files->cert, "r");
  X509 *extra;
  struct tm tm;

  if (!(c->file = strdup(files->cert)))
    goto fail_no_memory;
  if (!bio || !(c->cert = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
    nlb_tls_error_text(why, sizeof(why));
    snprintf(err, err_size, "cannot load certificate %s: %s", files->cert, why);
    BIO_free(bio);
    return -EINVAL;
  }
  if (!(c->chain = sk_X509_new_null()))
    goto fail_no_memory;
  while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
    if (!sk_X509_push(c->chain, extra)) {
      X509_free(extra);
      goto fail_no_memory;
    }
  ERR_clear_error(); /* the end of the file reads as an error */
  BIO_free(bio);
  bio = BIO_new_file(files->key, "r");
  if (!bio || !(c->key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) ||
      X509_check_private_key(c->cert, c->key) != 1) {
    nlb_tls_error_text(why, sizeof(why));
    snprintf(err, err_size, "cannot load key %s for %s: %s", files->key,
             files->cert, why);
    BIO_free(bio);
    return -EINVAL;
  }
  BIO_free(bio);
  if (ASN1_TIME_to_tm(X509_get0_notAfter(c->cert), &tm) == 1)
    c->not_after = (int64_t)timegm(&tm);
  if (read_names(c) < 0)
    goto fail_no_memory;
  return 0;

fail_no_memory:
  BIO_free(bio);
  snprintf(err, err_size, "out of memory loading %s", files->cert);
  return -ENOMEM;
}

static int configure_context(struct nlb_tls_server *s,
                             const struct nlb_tls_server_settings *settings,
                             char *err, size_t err_size)
{
  SSL_CTX *ctx = s->ctx;
  char why[256];

  SSL_CTX_set_min_proto_version(ctx, settings->min_version);
  /* A peer that closes without close_notify ends its side as a FIN does
   * (what HTTP clients do), not as an error. */
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_IGNORE_UNEXPECTED_EOF |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (nlb_tls_ktls_available())
    SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
  /* Idle flows hold no OpenSSL record buffers. */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  /* Resumption by tickets alone, sealed with keys every worker shares: no
   * session cache to lock or to grow. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 1);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
  if (SSL_CTX_set_cipher_list(ctx, settings->ciphers ? settings->ciphers
                                                     : DEFAULT_CIPHERS) != 1 ||
      (settings->ciphersuites &&
       SSL_CTX_set_ciphersuites(ctx, settings->ciphersuites) != 1)) {
    nlb_tls_error_text(why, sizeof(why));
    snprintf(err, err_size, "ciphers: %s", why);
    return -EINVAL;
  }
  if (SSL_CTX_use_cert_and_key(ctx, s->certificates[0].cert,
                               s->certificates[0].key, s->certificates[0].chain,
                               1) != 1) {
    nlb_tls_error_text(why, sizeof(why));
    snprintf(err, err_size, "certificate %s: %s", s->certificates[0].file, why);
    return -EINVAL;
  }
  SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
  SSL_CTX_set_tlsext_servername_arg(ctx, s);
  SSL_CTX_set_cert_cb(ctx, on_certificate, s);
  if (s->alpn_len)
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, s);
  return 0;
}

struct nlb_tls_server *
nlb_tls_server_create(const struct nlb_tls_server_settings *settings, char *err,
                      size_t err_size)
{
  struct nlb_tls_server *s = calloc(1, sizeof(*s));

  rotate_when_due();
  if (!s || settings->n_certificates == 0)
    goto fail_no_memory;
  atomic_init(&s->refs, 1);
  s->handshake_timeout_ms = settings->handshake_timeout_ms;
  s->refuse_unknown_sni = settings->refuse_unknown_sni;
  s->max_pending_handshakes = settings->max_pending_handshakes;
  s->certificates = calloc(settings->n_certificates, sizeof(*s->certificates));
  if (!s->certificates)
    goto fail_no_memory;
  if (settings->alpn_len) {
    if (!(s->alpn = malloc(settings->alpn_len)))
      goto fail_no_memory;
    memcpy(s->alpn, settings->alpn, settings->alpn_len);
    s->alpn_len = settings->alpn_len;
  }
  for (size_t i = 0; i < settings->n_certificates; i++) {
    s->n_certificates++;
    if (load_certificate(&s->certificates[i], &settings->certificates[i], err,
                         err_size) < 0)
      goto fail_release;
  }
  if (!(s->ctx = SSL_CTX_new(TLS_server_method())))
    goto fail_no_memory;
  if (configure_context(s, settings, err, err_size) < 0)
    goto fail_release;
  return s;

fail_no_memory:
  snprintf(err, err_size, "out of memory");
fail_release:
  if (s)
    nlb_tls_server_release(s);
  return NULL;
}

void nlb_tls_server_acquire(struct nlb_tls_server *server)
{
  atomic_fetch_add_explicit(&server->refs, 1, memory_order_relaxed);
}

void nlb_tls_server_release(struct nlb_tls_server *server)
{
  if (!server ||
      atomic_fetch_sub_explicit(&server->refs, 1, memory_order_acq_rel) != 1)
    return;
  /* Connections still open hold the context; they never call back into
   * the server once their handshake is done, the only time it is used. */
  SSL_CTX_free(server->ctx);
  for (size_t i = 0; i < server->n_certificates; i++)
    free_certificate(&server->certificates[i]);
  free(server->certificates);
  free(server->alpn);
  free(server);
}

struct ssl_st *nlb_tls_server_connection(struct nlb_tls_server *server, int fd)
{
  SSL *ssl = SSL_new(server->ctx);

  if (!ssl)
    return NULL;
  if (SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    return NULL;
  }
  SSL_set_accept_state(ssl);
  return ssl;
}

uint64_t nlb_tls_server_handshake_timeout_ms(const struct nlb_tls_server *s)
{
  return s->handshake_timeout_ms;
}

uint64_t nlb_tls_server_max_pending(const struct nlb_tls_server *s)
{
  return s->max_pending_handshakes;
}

bool nlb_tls_server_certificate(const struct nlb_tls_server *server, size_t i,
                                const char **file, int64_t *not_after)
{
  if (i >= server->n_certificates)
    return false;
  *file = server->certificates[i].file;
  *not_after = server->certificates[i].not_after;
  return true;
}

bool nlb_tls_ktls_available(void)
{
  static atomic_int known; /* 0 unknown, 1 no, 2 yes */
  int answer = atomic_load(&known);

  if (answer == 0) {
    /* The ULP attaches only to a connected socket: ENOTCONN says the
     * module is there, ENOENT that it is not. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = fd >= 0 ? setsockopt(fd, SOL_TCP, TCP_ULP, "tls", 3) : -1;
    answer = rc == 0 || (rc < 0 && errno == ENOTCONN) ? 2 : 1;
    if (fd >= 0)
      close(fd);
    atomic_store(&known, answer);
  }
  return answer == 2;
}
