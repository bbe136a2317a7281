/* API tokens by hash (tokens.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/api-auth.h"
#include "tokens.h"

/* Where hash is, or would be, in the sorted array. */
static size_t position(const struct api_tokens *tokens, const uint8_t hash[32])
{
  size_t lo = 0, hi = tokens->n;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (memcmp(tokens->v[mid].sha256, hash, 32) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static void remove_at(struct api_tokens *tokens, size_t i)
{
  memmove(&tokens->v[i], &tokens->v[i + 1],
          (tokens->n - i - 1) * sizeof(*tokens->v));
  tokens->n--;
}

bool api_tokens_remove(struct api_tokens *tokens, const char *id,
                       uint8_t sha256[32])
{
  for (size_t i = 0; i < tokens->n; i++)
    if (strcmp(tokens->v[i].id, id) == 0) {
      if (sha256)
        memcpy(sha256, tokens->v[i].sha256, 32);
      remove_at(tokens, i);
      return true;
    }
  return false;
}

int api_tokens_put(struct api_tokens *tokens, const struct reg_token *row)
{
  struct api_token t = {0};
  size_t i;

  api_tokens_remove(tokens, row->id, NULL);
  if (tokens->n == tokens->cap) {
    size_t cap = tokens->cap ? tokens->cap * 2 : 16;
    struct api_token *grown = realloc(tokens->v, cap * sizeof(*grown));

    if (grown == NULL)
      return -ENOMEM;
    tokens->v = grown;
    tokens->cap = cap;
  }
  memcpy(t.sha256, row->sha256, 32);
  snprintf(t.id, sizeof(t.id), "%s", row->id);
  snprintf(t.principal, sizeof(t.principal), "%s", row->principal);
  t.role = row->role;
  t.expires_at = row->expires_at;
  i = position(tokens, t.sha256);
  memmove(&tokens->v[i + 1], &tokens->v[i],
          (tokens->n - i) * sizeof(*tokens->v));
  tokens->v[i] = t;
  tokens->n++;
  return 0;
}

struct api_token *api_tokens_find(struct api_tokens *tokens,
                                  const uint8_t hash[32])
{
  size_t i = position(tokens, hash);

  /* The search compares hashes of random tokens; the match itself is
   * confirmed in constant time. */
  if (i < tokens->n && api_hash_equal(tokens->v[i].sha256, hash))
    return &tokens->v[i];
  return NULL;
}

void api_tokens_clear(struct api_tokens *tokens)
{
  tokens->n = 0;
}

void api_tokens_free(struct api_tokens *tokens)
{
  free(tokens->v);
  memset(tokens, 0, sizeof(*tokens));
}
