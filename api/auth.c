/* Bearer tokens and principals. The hash of the presented token is compared
 * with every principal's so that timing reveals neither a match nor which. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "nlb/api-auth.h"

void api_token_sha256(const char *token, size_t len, uint8_t out[32])
{
  SHA256((const unsigned char *)token, len, out);
}

int api_bearer_token(const char *value, size_t len, const char **token,
                     size_t *token_len)
{
  static const char scheme[] = "Bearer";
  size_t i = 0;

  if (value == NULL)
    return -EINVAL;
  while (i < len && value[i] == ' ')
    i++;
  if (len - i < sizeof scheme ||
      strncasecmp(value + i, scheme, sizeof scheme - 1) != 0 ||
      value[i + sizeof scheme - 1] != ' ')
    return -EINVAL;
  i += sizeof scheme;
  while (i < len && value[i] == ' ')
    i++;
  size_t end = len;
  while (end > i && value[end - 1] == ' ')
    end--;
  if (end == i || end - i > API_TOKEN_MAX)
    return -EINVAL;
  for (size_t k = i; k < end; k++)
    if (value[k] == ' ' || value[k] == '\t')
      return -EINVAL;
  *token = value + i;
  *token_len = end - i;
  return 0;
}

bool api_hash_equal(const uint8_t a[32], const uint8_t b[32])
{
  return CRYPTO_memcmp(a, b, 32) == 0;
}

const struct api_principal *
api_principal_find(const struct api_principal *principals, size_t n,
                   const uint8_t hash[32])
{
  const struct api_principal *found = NULL;
  for (size_t i = 0; i < n; i++) {
    bool equal = api_hash_equal(principals[i].token_sha256, hash);
    /* No early exit: every principal costs the same compare. */
    if (equal && found == NULL)
      found = &principals[i];
  }
  return found;
}

const struct api_principal *
api_authenticate(const struct api_principal *principals, size_t n,
                 const char *authorization, size_t len)
{
  const char *token;
  size_t token_len;
  uint8_t hash[32];

  if (authorization == NULL ||
      api_bearer_token(authorization, len, &token, &token_len) != 0)
    return NULL;
  api_token_sha256(token, token_len, hash);
  const struct api_principal *p = api_principal_find(principals, n, hash);
  OPENSSL_cleanse(hash, sizeof hash);
  return p;
}

static int fill_random(void *buf, size_t n)
{
  size_t got = 0;

  while (got < n) {
    ssize_t r = getrandom((char *)buf + got, n - got, 0);

    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    got += (size_t)r;
  }
  return 0;
}

int api_token_new(char *text, uint8_t sha256[32], char *id)
{
  static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  static const char hex[] = "0123456789abcdef";
  unsigned char bits[33] = {0}; /* 256 bits, padded to whole sextets */
  unsigned char idbits[9];
  size_t len = strlen(API_TOKEN_PREFIX);
  int r;

  if ((r = fill_random(bits, 32)) < 0 ||
      (r = fill_random(idbits, sizeof idbits)) < 0)
    return r;
  memcpy(text, API_TOKEN_PREFIX, len);
  for (size_t i = 0; i < 33; i += 3) {
    uint32_t v = (uint32_t)bits[i] << 16 | (uint32_t)bits[i + 1] << 8 |
                 bits[i + 2];
    for (int k = 0; k < 4 && len < (4 + 43); k++)
      text[len++] = b64[(v >> (18 - 6 * k)) & 63];
  }
  text[len] = '\0';
  api_token_sha256(text, len, sha256);
  OPENSSL_cleanse(bits, sizeof bits);
  memcpy(id, "tok-", 4);
  for (int i = 0; i < 17; i++)
    id[4 + i] = hex[(idbits[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
  id[21] = '\0';
  return 0;
}
