/* Private to api/: the API tokens the registry holds (made through
 * POST /v1/principals and /tokens), kept on the control thread from the
 * change feed, for authentication. Only their SHA-256 is here, sorted, so
 * a presented token's hash is found by binary search and confirmed with a
 * constant-time compare. The config's principals stay in
 * api_server.principals. Control thread only. */
#ifndef NLB_API_TOKENS_H
#define NLB_API_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nlb/registry.h"

struct api_token {
  uint8_t sha256[32];
  char id[REG_ID_BUF];
  char principal[REG_NAME_BUF];
  enum reg_role role;
  int64_t expires_at; /* unix ms; 0: never */
  int64_t used_at;    /* unix ms of the last use not yet recorded, or 0 */
};

struct api_tokens {
  struct api_token *v; /* sorted by sha256 */
  size_t n, cap;
};

/* Adds or replaces (by id) a token from its registry row. 0 or -ENOMEM. */
int api_tokens_put(struct api_tokens *tokens, const struct reg_token *row);

/* Removes the token id; true (and its hash in *sha256) when it was
 * there. */
bool api_tokens_remove(struct api_tokens *tokens, const char *id,
                       uint8_t sha256[32]);

/* The token whose hash is hash, or NULL. */
struct api_token *api_tokens_find(struct api_tokens *tokens,
                                  const uint8_t hash[32]);

/* Removes every token. */
void api_tokens_clear(struct api_tokens *tokens);

void api_tokens_free(struct api_tokens *tokens);

#endif
