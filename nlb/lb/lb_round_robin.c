/* Weighted round robin. The schedule is computed once per pool with the
 * smooth weighted round-robin method (NGINX's), so a target with weight 3
 * next to one with weight 1 is picked A A B A rather than A A A B; workers
 * then only step a shared atomic cursor through it. */
#include <stdlib.h>

#include "nlb/lb.h"

#define SCHEDULE_MAX 65536

struct schedule {
  size_t length;
  uint32_t order[];
};

static uint32_t gcd(uint32_t a, uint32_t b)
{
  while (b) {
    uint32_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

static int round_robin_build(struct nlb_pool *pool)
{
  size_t n = pool->n_targets;
  uint32_t divisor = 0;
  uint64_t total = 0;
  int64_t *current = calloc(n, sizeof(int64_t));
  struct schedule *schedule;

  if (!current)
    return -12;
  for (size_t i = 0; i < n; i++)
    divisor = gcd(divisor, pool->weights[i]);
  for (size_t i = 0; i < n; i++)
    total += pool->weights[i] / divisor;
  /* Keep the schedule small: past SCHEDULE_MAX entries, scale weights down
   * (no target below one turn). */
  if (total > SCHEDULE_MAX) {
    uint64_t scaled_total = 0;
    for (size_t i = 0; i < n; i++) {
      uint64_t w = (uint64_t)pool->weights[i] / divisor * SCHEDULE_MAX / total;
      pool->weights[i] = (uint32_t)(w ? w : 1);
      scaled_total += pool->weights[i];
    }
    divisor = 1;
    total = scaled_total;
  }
  schedule = malloc(sizeof(*schedule) + sizeof(uint32_t) * total);
  if (!schedule) {
    free(current);
    return -12;
  }
  schedule->length = total;
  for (size_t k = 0; k < total; k++) {
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
      current[i] += pool->weights[i] / divisor;
      if (current[i] > current[best])
        best = i;
    }
    current[best] -= (int64_t)total;
    schedule->order[k] = (uint32_t)best;
  }
  free(current);
  pool->state = schedule;
  return 0;
}

static void round_robin_destroy(struct nlb_pool *pool)
{
  free(pool->state);
  pool->state = NULL;
}

static int round_robin_pick(struct nlb_pool *pool, uint64_t flow_hash,
                            const uint32_t *tried, size_t n_tried)
{
  const struct schedule *schedule = pool->state;
  /* Only a flow's first pick moves the shared cursor: retries walk on from
   * where it stands, so they neither skew the rotation nor make every flow
   * start at the same target when some are down. */
  uint64_t start =
      n_tried == 0
          ? atomic_fetch_add_explicit(&pool->cursor, 1, memory_order_relaxed)
          : atomic_load_explicit(&pool->cursor, memory_order_relaxed) + n_tried;

  for (size_t step = 0; step < schedule->length; step++) {
    uint32_t index = schedule->order[(start + step) % schedule->length];
    if (!nlb_tried_contains(tried, n_tried, index))
      return (int)index;
  }
  return -1;
}

const struct nlb_lb_ops nlb_lb_round_robin = {
    .name = "round_robin",
    .build = round_robin_build,
    .destroy = round_robin_destroy,
    .pick = round_robin_pick,
};
