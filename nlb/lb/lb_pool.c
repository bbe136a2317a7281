#include "nlb/lb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The one table of algorithms: each one's name is its ops' .name. */
static const struct nlb_lb_ops *const algorithms[NLB_ALGORITHM_COUNT] = {
    [NLB_ALGORITHM_MAGLEV] = &nlb_lb_maglev,
    [NLB_ALGORITHM_ROUND_ROBIN] = &nlb_lb_round_robin,
    [NLB_ALGORITHM_LEAST_CONN] = &nlb_lb_least_conn,
};

static const struct nlb_lb_ops *ops_for(enum nlb_algorithm algorithm)
{
  return algorithm < NLB_ALGORITHM_COUNT ? algorithms[algorithm]
                                         : &nlb_lb_maglev;
}

const char *nlb_algorithm_name(enum nlb_algorithm algorithm)
{
  return ops_for(algorithm)->name;
}

int nlb_algorithm_parse(const char *name, enum nlb_algorithm *algorithm)
{
  for (int i = 0; i < NLB_ALGORITHM_COUNT; i++)
    if (strcmp(algorithms[i]->name, name) == 0) {
      *algorithm = (enum nlb_algorithm)i;
      return 0;
    }
  return -ENOENT;
}

struct nlb_pool *nlb_pool_create(enum nlb_algorithm algorithm,
                                 struct nlb_target *const *targets,
                                 const uint32_t *weights, size_t n)
{
  struct nlb_pool *pool = calloc(1, sizeof(*pool));
  if (!pool)
    return NULL;
  pool->ops = ops_for(algorithm);
  pool->targets = calloc(n ? n : 1, sizeof(*pool->targets));
  pool->weights = calloc(n ? n : 1, sizeof(*pool->weights));
  if (!pool->targets || !pool->weights)
    goto fail_free_arrays;
  for (size_t i = 0; i < n; i++) {
    if (weights[i] == 0)
      continue;
    nlb_target_acquire(targets[i]);
    pool->targets[pool->n_targets] = targets[i];
    pool->weights[pool->n_targets] = weights[i];
    pool->n_targets++;
  }
  if (pool->n_targets > 0 && pool->ops->build(pool) < 0)
    goto fail_release_targets;
  return pool;

fail_release_targets:
  for (size_t i = 0; i < pool->n_targets; i++)
    nlb_target_release(pool->targets[i]);
fail_free_arrays:
  free(pool->targets);
  free(pool->weights);
  free(pool);
  return NULL;
}

void nlb_pool_free(struct nlb_pool *pool)
{
  if (!pool)
    return;
  if (pool->n_targets > 0)
    pool->ops->destroy(pool);
  for (size_t i = 0; i < pool->n_targets; i++)
    nlb_target_release(pool->targets[i]);
  free(pool->targets);
  free(pool->weights);
  free(pool);
}

/* 64-bit finaliser from MurmurHash3: cheap and mixes every input bit. */
static uint64_t mix64(uint64_t x)
{
  x ^= x >> 33;
  x *= UINT64_C(0xff51afd7ed558ccd);
  x ^= x >> 33;
  x *= UINT64_C(0xc4ceb9fe1a85ec53);
  x ^= x >> 33;
  return x;
}

static uint64_t hash_addr(uint64_t seed, const union nlb_sockaddr *addr)
{
  uint64_t h = seed;
  if (addr->sa.sa_family == AF_INET6) {
    uint64_t words[2];
    memcpy(words, &addr->in6.sin6_addr, 16);
    h = mix64(h ^ words[0]);
    h = mix64(h ^ words[1]);
    return mix64(h ^ addr->in6.sin6_port);
  }
  return mix64(h ^ ((uint64_t)addr->in.sin_addr.s_addr << 16) ^
               addr->in.sin_port);
}

uint64_t nlb_flow_hash(const union nlb_sockaddr *client,
                       const union nlb_sockaddr *local)
{
  /* The protocol is always TCP, so the 5-tuple is the two addresses. */
  return hash_addr(hash_addr(UINT64_C(0x6e6c62), client), local);
}
