/* Authentication for the API: the Bearer token of a request, its SHA-256,
 * and the principal whose hash it matches, compared in constant time.
 * Tokens are never stored nor logged. Pure: any thread. */
#ifndef NLB_API_AUTH_H
#define NLB_API_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nlb/api.h"

/* Tokens longer than this are refused without hashing. */
#define API_TOKEN_MAX 4096

/* Longest token api_token_new makes, with its NUL. */
#define API_TOKEN_TEXT_BUF 64
/* What every token nlb makes starts with, so that secret scanners find one
 * that leaked. */
#define API_TOKEN_PREFIX "nlb_"

/* A new API token: "nlb_" and 256 random bits in base64url, into text
 * (API_TOKEN_TEXT_BUF bytes); its SHA-256 into sha256; a new id ("tok-" and
 * hex) into id (REG_ID_BUF bytes). 0 or a negative errno (getrandom). */
int api_token_new(char *text, uint8_t sha256[32], char *id);

/* out = SHA-256(token[0..len)). */
void api_token_sha256(const char *token, size_t len, uint8_t out[32]);

/* Finds the token in an Authorization header value ("Bearer TOKEN", the
 * scheme case-insensitive, spaces around the token ignored). Returns 0 with
 * *token pointing into value, or -EINVAL when the header is not a non-empty
 * Bearer token of at most API_TOKEN_MAX bytes. */
int api_bearer_token(const char *value, size_t len, const char **token,
                     size_t *token_len);

/* True when the two hashes are equal, in time independent of their bytes
 * (CRYPTO_memcmp). */
bool api_hash_equal(const uint8_t a[32], const uint8_t b[32]);

/* The principal whose token hashes to hash, or NULL. Compares against every
 * principal whatever matches, so the time does not tell which one did. */
const struct api_principal *
api_principal_find(const struct api_principal *principals, size_t n,
                   const uint8_t hash[32]);

/* The principal an Authorization header value (NULL: none) authenticates,
 * or NULL (401). */
const struct api_principal *
api_authenticate(const struct api_principal *principals, size_t n,
                 const char *authorization, size_t len);

#endif
