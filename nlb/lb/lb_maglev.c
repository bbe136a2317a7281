/* Weighted Maglev hashing (Eisenbud et al., NSDI 2016). Each target walks
 * its own permutation of the table and claims the next free slot; weights
 * are honoured by giving each target turns in proportion to its weight.
 * Permutations depend only on the target's address, and targets take
 * their turns in the order of their addresses, not in the order they were
 * registered: so every node that builds a table from the same targets and
 * weights builds the same table, however the targets reached it (config
 * order, API registrations in another order, a restart). */
#include <stdlib.h>
#include <string.h>

#include "nlb/lb.h"

#define M NLB_MAGLEV_TABLE_SIZE

static uint64_t fnv1a(const char *text, uint64_t seed)
{
  uint64_t h = UINT64_C(0xcbf29ce484222325) ^ seed;
  for (; *text; text++) {
    h ^= (unsigned char)*text;
    h *= UINT64_C(0x100000001b3);
  }
  h ^= h >> 31;
  h *= UINT64_C(0x7fb5d329728ea185);
  h ^= h >> 27;
  return h;
}

/* Pool indexes in the order of the targets' addresses. */
static int compare_names(const void *a, const void *b, void *pool)
{
  struct nlb_target *const *targets = ((const struct nlb_pool *)pool)->targets;

  return strcmp(targets[*(const uint32_t *)a]->name,
                targets[*(const uint32_t *)b]->name);
}

static int maglev_build(struct nlb_pool *pool)
{
  size_t n = pool->n_targets;
  uint32_t *table = malloc(sizeof(uint32_t) * M);
  uint32_t *offset = malloc(sizeof(uint32_t) * n);
  uint32_t *skip = malloc(sizeof(uint32_t) * n);
  uint32_t *order = malloc(sizeof(uint32_t) * n);
  uint64_t *next = calloc(n, sizeof(uint64_t));
  uint64_t *credit = calloc(n, sizeof(uint64_t));
  uint32_t max_weight = 0;
  size_t filled = 0;

  if (!table || !offset || !skip || !order || !next || !credit) {
    free(table);
    free(offset);
    free(skip);
    free(order);
    free(next);
    free(credit);
    return -12; /* -ENOMEM */
  }
  memset(table, 0xff, sizeof(uint32_t) * M);
  for (size_t i = 0; i < n; i++) {
    offset[i] = (uint32_t)(fnv1a(pool->targets[i]->name, 0x9e37) % M);
    skip[i] = (uint32_t)(fnv1a(pool->targets[i]->name, 0x7f4a) % (M - 1)) + 1;
    if (pool->weights[i] > max_weight)
      max_weight = pool->weights[i];
    order[i] = (uint32_t)i;
  }
  qsort_r(order, n, sizeof(*order), compare_names, pool);
  while (filled < M) {
    for (size_t k = 0; k < n && filled < M; k++) {
      uint32_t i = order[k];
      credit[i] += pool->weights[i];
      if (credit[i] < max_weight)
        continue;
      credit[i] -= max_weight;
      uint32_t slot;
      do {
        slot = (uint32_t)((offset[i] + next[i] * skip[i]) % M);
        next[i]++;
      } while (table[slot] != UINT32_MAX);
      table[slot] = i;
      filled++;
    }
  }
  free(offset);
  free(skip);
  free(order);
  free(next);
  free(credit);
  pool->state = table;
  return 0;
}

static void maglev_destroy(struct nlb_pool *pool)
{
  free(pool->state);
  pool->state = NULL;
}

static int maglev_pick(struct nlb_pool *pool, uint64_t flow_hash,
                       const uint32_t *tried, size_t n_tried)
{
  const uint32_t *table = pool->state;
  size_t slot = flow_hash % M;

  /* A retry walks on from the flow's slot: neighbouring slots belong to
   * other targets in proportion to their weights. */
  for (size_t step = 0; step < M; step++) {
    uint32_t index = table[(slot + step) % M];
    if (!nlb_tried_contains(tried, n_tried, index))
      return (int)index;
  }
  /* A target whose weight is tiny next to the others' (a slow start's
   * first moments) may own no slot at all; a flow that failed everywhere
   * else still gets to try it. */
  for (uint32_t index = 0; index < pool->n_targets; index++)
    if (!nlb_tried_contains(tried, n_tried, index))
      return (int)index;
  return -1;
}

const uint32_t *nlb_maglev_table(const struct nlb_pool *pool)
{
  return pool->state;
}

const struct nlb_lb_ops nlb_lb_maglev = {
    .name = "maglev",
    .build = maglev_build,
    .destroy = maglev_destroy,
    .pick = maglev_pick,
};
