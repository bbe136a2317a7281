/* Least connections, weighted: the target with the fewest active flows per
 * unit of weight wins. The scan starts at a rotating position so that ties
 * (an idle group) spread instead of piling onto the first target. */
#include "nlb/lb.h"

static int least_conn_build(struct nlb_pool *pool)
{
  return 0;
}

static void least_conn_destroy(struct nlb_pool *pool)
{
}

static int least_conn_pick(struct nlb_pool *pool, uint64_t flow_hash,
                           const uint32_t *tried, size_t n_tried)
{
  size_t n = pool->n_targets;
  size_t start = (size_t)(atomic_fetch_add_explicit(&pool->cursor, 1,
                                                    memory_order_relaxed) %
                          n);
  int best = -1;
  uint64_t best_active = 0;
  uint32_t best_weight = 1;

  for (size_t step = 0; step < n; step++) {
    uint32_t index = (uint32_t)((start + step) % n);
    if (nlb_tried_contains(tried, n_tried, index))
      continue;
    uint64_t active = atomic_load_explicit(
        &pool->targets[index]->counters.active_flows, memory_order_relaxed);
    uint32_t weight = pool->weights[index];
    /* active/weight < best_active/best_weight, without division. */
    if (best < 0 || active * best_weight < best_active * weight) {
      best = (int)index;
      best_active = active;
      best_weight = weight;
    }
  }
  return best;
}

const struct nlb_lb_ops nlb_lb_least_conn = {
    .name = "least_conn",
    .build = least_conn_build,
    .destroy = least_conn_destroy,
    .pick = least_conn_pick,
};
