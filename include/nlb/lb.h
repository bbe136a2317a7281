/* Target selection: a pool of usable targets with the lookup state of one
 * algorithm (maglev, round_robin, least_conn), each algorithm in its own
 * file behind struct nlb_lb_ops.
 *
 * A pool is built by the control thread and then only read by workers
 * (its round-robin cursor aside, an atomic). It holds a reference on each
 * of its targets; nlb_pool_free drops them. */
#ifndef NLB_LB_H
#define NLB_LB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "nlb/config.h"
#include "nlb/dataplane/target.h"

/* Targets tried for one flow: the first pick and its retries. */
#define NLB_MAX_TRIES 8

struct nlb_pool;

struct nlb_lb_ops {
  const char *name;
  /* Builds the algorithm's lookup state for pool->targets and
   * pool->weights (all weights > 0). Returns 0 or -ENOMEM. Control thread. */
  int (*build)(struct nlb_pool *pool);
  /* Frees what build made. */
  void (*destroy)(struct nlb_pool *pool);
  /* Returns the index of a target not among tried[0..n_tried), or -1 when
   * every target was tried. Worker threads: no locks, no allocation. */
  int (*pick)(struct nlb_pool *pool, uint64_t flow_hash, const uint32_t *tried,
              size_t n_tried);
};

extern const struct nlb_lb_ops nlb_lb_maglev;
extern const struct nlb_lb_ops nlb_lb_round_robin;
extern const struct nlb_lb_ops nlb_lb_least_conn;

struct nlb_pool {
  const struct nlb_lb_ops *ops;
  size_t n_targets;
  struct nlb_target **targets;
  uint32_t *weights; /* effective weights (slow start applied), all > 0 */
  void *state;       /* the algorithm's own */
  atomic_uint_fast64_t cursor;
};

/* Size of the Maglev lookup table: a prime well above 100 x the targets a
 * group is expected to hold, so shares stay within 1% of weights. */
#define NLB_MAGLEV_TABLE_SIZE 65537

/* Builds a pool over n targets with the given effective weights (entries
 * with weight 0 are left out). Takes a reference on each target kept.
 * Returns NULL on ENOMEM. An empty pool is valid: pick returns -1. */
/* An algorithm's name as the config writes it (its ops' name: the one place
 * it is written). Any thread. */
const char *nlb_algorithm_name(enum nlb_algorithm algorithm);
/* Finds the algorithm a config names: 0, or -ENOENT for a name no algorithm
 * has. Any thread. */
int nlb_algorithm_parse(const char *name, enum nlb_algorithm *algorithm);

struct nlb_pool *nlb_pool_create(enum nlb_algorithm algorithm,
                                 struct nlb_target *const *targets,
                                 const uint32_t *weights, size_t n);

void nlb_pool_free(struct nlb_pool *pool);

/* Picks a target index for a flow; -1 when none is left. Worker threads. */
static inline int nlb_pool_pick(struct nlb_pool *pool, uint64_t flow_hash,
                                const uint32_t *tried, size_t n_tried)
{
  if (n_tried >= pool->n_targets)
    return -1;
  return pool->ops->pick(pool, flow_hash, tried, n_tried);
}

/* True when index is among tried[0..n). */
static inline int nlb_tried_contains(const uint32_t *tried, size_t n,
                                     uint32_t index)
{
  for (size_t i = 0; i < n; i++)
    if (tried[i] == index)
      return 1;
  return 0;
}

/* Hash of a flow's addresses, stable across processes and nodes so that
 * Maglev sends the same flow to the same target everywhere. */
uint64_t nlb_flow_hash(const union nlb_sockaddr *client,
                       const union nlb_sockaddr *local);

/* For tests: the Maglev table of a pool built with nlb_lb_maglev (an array
 * of NLB_MAGLEV_TABLE_SIZE target indexes). */
const uint32_t *nlb_maglev_table(const struct nlb_pool *pool);

#endif
