/* CUnit suite for target selection (nlb/lb_*.c): Maglev's table shares,
 * disruption and agreement between nodes, round robin's weighted cycle,
 * least_conn's choice, and the retry contract every algorithm shares (never a
 * tried target twice, each target once when all fail). */
#include "nlb/lb.h"

#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#define MAX_TARGETS 64

/* A deterministic generator, so a failure can be replayed. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

struct fixture {
  struct nlb_target *targets[MAX_TARGETS];
  uint32_t weights[MAX_TARGETS];
  size_t n;
};

/* n targets 10.X.Y.Z:PORT with the given weights (NULL: all 1). */
static void make_targets(struct fixture *f, size_t n, const uint32_t *weights)
{
  CU_ASSERT_FATAL(n <= MAX_TARGETS);
  f->n = n;
  for (size_t i = 0; i < n; i++) {
    union nlb_sockaddr addr;
    char text[64];
    snprintf(text, sizeof(text), "10.%zu.%zu.%zu:%zu", (i * 7) % 256,
             (i * 13 + 1) % 256, i % 256, 8000 + i);
    CU_ASSERT_FATAL(nlb_addr_parse(text, &addr) == 0);
    f->targets[i] = nlb_target_create(&addr, weights ? weights[i] : 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->targets[i]);
    f->weights[i] = weights ? weights[i] : 1;
  }
}

static void free_targets(struct fixture *f)
{
  for (size_t i = 0; i < f->n; i++)
    nlb_target_release(f->targets[i]);
  f->n = 0;
}

static struct nlb_pool *make_pool(enum nlb_algorithm algorithm,
                                  struct fixture *f)
{
  struct nlb_pool *pool =
      nlb_pool_create(algorithm, f->targets, f->weights, f->n);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pool);
  return pool;
}

/* Index of target in pool, or -1. */
static int pool_index(const struct nlb_pool *pool,
                      const struct nlb_target *target)
{
  for (size_t i = 0; i < pool->n_targets; i++)
    if (pool->targets[i] == target)
      return (int)i;
  return -1;
}

/* Each target's share of the table is within 1% (relative) of its share of
 * the weights; a target whose share is under 100 slots may be off by the
 * one slot that rounding costs. */
static void check_maglev_shares(struct fixture *f, const char *what)
{
  struct nlb_pool *pool = make_pool(NLB_ALGORITHM_MAGLEV, f);
  const uint32_t *table = nlb_maglev_table(pool);
  size_t counts[MAX_TARGETS] = {0};
  uint64_t total_weight = 0;

  CU_ASSERT_PTR_NOT_NULL_FATAL(table);
  CU_ASSERT_EQUAL_FATAL(pool->n_targets, f->n);
  for (size_t i = 0; i < f->n; i++)
    total_weight += f->weights[i];
  for (size_t slot = 0; slot < NLB_MAGLEV_TABLE_SIZE; slot++) {
    CU_ASSERT_FATAL(table[slot] < f->n);
    counts[table[slot]]++;
  }
  for (size_t i = 0; i < f->n; i++) {
    double share = (double)counts[i] / NLB_MAGLEV_TABLE_SIZE;
    double want = (double)f->weights[i] / (double)total_weight;
    double slack = fmax(0.01 * want, 1.0 / NLB_MAGLEV_TABLE_SIZE);
    if (fabs(share - want) > slack) {
      fprintf(stderr,
              "\n  %s: %zu targets: target %zu weight %u has %.4f%%, want "
              "%.4f%%",
              what, f->n, i, f->weights[i], share * 100, want * 100);
      CU_FAIL("maglev share off by more than 1%");
    }
  }
  nlb_pool_free(pool);
}

static void test_lb_maglev_shares_follow_weights(void)
{
  for (size_t n = 3; n <= 50; n++) {
    struct fixture f;
    uint32_t weights[MAX_TARGETS];

    make_targets(&f, n, NULL);
    check_maglev_shares(&f, "equal weights");
    free_targets(&f);

    /* Weights 1..10 as configured, times 100 as the router scales them. */
    for (size_t i = 0; i < n; i++)
      weights[i] = (uint32_t)(1 + rng() % 10) * 100;
    make_targets(&f, n, weights);
    check_maglev_shares(&f, "weights 1..10");
    free_targets(&f);

    /* One heavy target among light ones. */
    for (size_t i = 0; i < n; i++)
      weights[i] = i == n / 2 ? 1000 : (uint32_t)(1 + i % 3);
    make_targets(&f, n, weights);
    check_maglev_shares(&f, "one heavy");
    free_targets(&f);
  }
}

/* Fraction of slots whose target differs between two tables. */
static double moved_fraction(const struct nlb_pool *a, const struct nlb_pool *b)
{
  const uint32_t *ta = nlb_maglev_table(a), *tb = nlb_maglev_table(b);
  size_t moved = 0;
  for (size_t slot = 0; slot < NLB_MAGLEV_TABLE_SIZE; slot++)
    if (a->targets[ta[slot]] != b->targets[tb[slot]])
      moved++;
  return (double)moved / NLB_MAGLEV_TABLE_SIZE;
}

static void check_removal(size_t n, const uint32_t *weights, const char *what)
{
  struct fixture f;
  size_t victim = (size_t)(rng() % n);
  struct nlb_target *rest[MAX_TARGETS];
  uint32_t rest_weights[MAX_TARGETS];
  size_t m = 0;
  uint64_t total = 0;

  make_targets(&f, n, weights);
  struct nlb_pool *before = make_pool(NLB_ALGORITHM_MAGLEV, &f);
  for (size_t i = 0; i < n; i++) {
    total += f.weights[i];
    if (i == victim)
      continue;
    rest[m] = f.targets[i];
    rest_weights[m++] = f.weights[i];
  }
  struct nlb_pool *after =
      nlb_pool_create(NLB_ALGORITHM_MAGLEV, rest, rest_weights, m);
  CU_ASSERT_PTR_NOT_NULL_FATAL(after);
  CU_ASSERT_EQUAL(pool_index(after, f.targets[victim]), -1);

  double moved = moved_fraction(before, after);
  double bound = (double)f.weights[victim] / (double)total + 0.02;
  if (moved > bound) {
    fprintf(stderr, "\n  %s: removing 1 of %zu moved %.2f%% (bound %.2f%%)",
            what, n, moved * 100, bound * 100);
    CU_FAIL("maglev disruption over 1/N + 2%");
  }
  nlb_pool_free(before);
  nlb_pool_free(after);
  free_targets(&f);
}

static void test_lb_maglev_removal_moves_little(void)
{
  for (size_t n = 3; n <= 50; n++) {
    uint32_t weights[MAX_TARGETS];
    check_removal(n, NULL, "equal weights");
    for (size_t i = 0; i < n; i++)
      weights[i] = (uint32_t)(1 + rng() % 4) * 100;
    check_removal(n, weights, "weights 1..4");
  }
}

static void test_lb_maglev_is_deterministic(void)
{
  struct fixture f;
  make_targets(&f, 17, NULL);
  struct nlb_pool *a = make_pool(NLB_ALGORITHM_MAGLEV, &f);
  struct nlb_pool *b = make_pool(NLB_ALGORITHM_MAGLEV, &f);
  CU_ASSERT_EQUAL(memcmp(nlb_maglev_table(a), nlb_maglev_table(b),
                         sizeof(uint32_t) * NLB_MAGLEV_TABLE_SIZE),
                  0);
  nlb_pool_free(a);
  nlb_pool_free(b);
  free_targets(&f);
}

/* The same flow hash lands on the same target; different hashes spread. */
static void test_lb_maglev_pick_follows_table(void)
{
  struct fixture f;
  size_t hits[MAX_TARGETS] = {0};
  make_targets(&f, 5, NULL);
  struct nlb_pool *pool = make_pool(NLB_ALGORITHM_MAGLEV, &f);
  const uint32_t *table = nlb_maglev_table(pool);

  for (int i = 0; i < 5000; i++) {
    uint64_t hash = rng();
    int first = nlb_pool_pick(pool, hash, NULL, 0);
    CU_ASSERT_EQUAL(first, (int)table[hash % NLB_MAGLEV_TABLE_SIZE]);
    CU_ASSERT_EQUAL(nlb_pool_pick(pool, hash, NULL, 0), first);
    if (first >= 0)
      hits[first]++;
  }
  for (size_t i = 0; i < 5; i++)
    CU_ASSERT(hits[i] > 800 && hits[i] < 1200);
  nlb_pool_free(pool);
  free_targets(&f);
}

/* Nodes of a cluster build their pools apart, each from its own target
 * objects, which may reach them in any order (config files written
 * differently, API registrations, a restart). Given the same targets and
 * weights, every node must send a flow to the same target, first pick
 * and retry alike: 10,000 random client tuples against one VIP, every
 * order of three targets (as three nodes would see them), and shuffled
 * orders of a larger weighted group. */
static struct nlb_pool *node_pool(const char *const *addresses,
                                  const uint32_t *weights, const size_t *order,
                                  size_t n)
{
  struct nlb_target *targets[MAX_TARGETS];
  uint32_t ordered_weights[MAX_TARGETS];
  struct nlb_pool *pool;

  for (size_t i = 0; i < n; i++) {
    union nlb_sockaddr addr;
    CU_ASSERT_FATAL(nlb_addr_parse(addresses[order[i]], &addr) == 0);
    targets[i] = nlb_target_create(&addr, weights[order[i]]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(targets[i]);
    ordered_weights[i] = weights[order[i]] * 100;
  }
  pool = nlb_pool_create(NLB_ALGORITHM_MAGLEV, targets, ordered_weights, n);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pool);
  for (size_t i = 0; i < n; i++)
    nlb_target_release(targets[i]); /* the pool keeps its own */
  return pool;
}

/* Counts tuples on which some pool picks (first or on retry) a target of
 * another name than pools[0]. */
static size_t disagreements(struct nlb_pool *const *pools, size_t n_pools,
                            size_t tuples)
{
  union nlb_sockaddr vip;
  size_t differ = 0;

  CU_ASSERT_FATAL(nlb_addr_parse("10.201.100.1:80", &vip) == 0);
  for (size_t t = 0; t < tuples; t++) {
    union nlb_sockaddr client;
    char text[64];
    uint64_t r = rng();
    snprintf(text, sizeof(text), "10.%u.%u.%u:%u", (unsigned)(r >> 8) & 255,
             (unsigned)(r >> 16) & 255, (unsigned)(r >> 24) & 255,
             1024 + (unsigned)((r >> 32) % 64512));
    CU_ASSERT_FATAL(nlb_addr_parse(text, &client) == 0);
    uint64_t hash = nlb_flow_hash(&client, &vip);
    int first0 = nlb_pool_pick(pools[0], hash, NULL, 0);
    uint32_t tried0 = (uint32_t)first0;
    int retry0 = nlb_pool_pick(pools[0], hash, &tried0, 1);
    for (size_t p = 1; p < n_pools; p++) {
      int first = nlb_pool_pick(pools[p], hash, NULL, 0);
      uint32_t tried = (uint32_t)first;
      int retry = nlb_pool_pick(pools[p], hash, &tried, 1);
      if (first < 0 || retry < 0 ||
          strcmp(pools[p]->targets[first]->name,
                 pools[0]->targets[first0]->name) != 0 ||
          strcmp(pools[p]->targets[retry]->name,
                 pools[0]->targets[retry0]->name) != 0) {
        differ++;
        break;
      }
    }
  }
  return differ;
}

static void test_lb_maglev_agrees_across_nodes(void)
{
  static const char *const three[] = {"10.201.2.11:8000", "10.201.2.12:8000",
                                      "10.201.2.13:8000"};
  static const uint32_t ones[] = {1, 1, 1};
  static const size_t orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                      {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  struct nlb_pool *pools[6];
  char names[12][32];
  const char *many[12];
  uint32_t weights[12];
  size_t order[12];

  for (size_t i = 0; i < 6; i++)
    pools[i] = node_pool(three, ones, orders[i], 3);
  CU_ASSERT_EQUAL(disagreements(pools, 3, 10000), 0); /* three nodes */
  CU_ASSERT_EQUAL(disagreements(pools, 6, 10000), 0); /* every order */
  for (size_t i = 0; i < 6; i++)
    nlb_pool_free(pools[i]);

  for (size_t i = 0; i < 12; i++) {
    snprintf(names[i], sizeof(names[i]), "192.0.2.%zu:%zu", 10 + i * 3,
             8000 + i % 2);
    many[i] = names[i];
    weights[i] = 1 + (uint32_t)(rng() % 5);
  }
  for (size_t p = 0; p < 3; p++) {
    for (size_t i = 0; i < 12; i++)
      order[i] = i;
    for (size_t i = 11; p > 0 && i > 0; i--) { /* Fisher-Yates */
      size_t j = (size_t)(rng() % (i + 1)), keep = order[i];
      order[i] = order[j];
      order[j] = keep;
    }
    pools[p] = node_pool(many, weights, order, 12);
  }
  CU_ASSERT_EQUAL(disagreements(pools, 3, 10000), 0);
  for (size_t p = 0; p < 3; p++)
    nlb_pool_free(pools[p]);
}

static void test_lb_flow_hash_is_stable(void)
{
  union nlb_sockaddr client, client2, local, client6;
  CU_ASSERT_FATAL(nlb_addr_parse("192.0.2.1:40000", &client) == 0);
  CU_ASSERT_FATAL(nlb_addr_parse("192.0.2.1:40001", &client2) == 0);
  CU_ASSERT_FATAL(nlb_addr_parse("127.0.0.1:8080", &local) == 0);
  CU_ASSERT_FATAL(nlb_addr_parse("[2001:db8::1]:40000", &client6) == 0);
  uint64_t h = nlb_flow_hash(&client, &local);
  CU_ASSERT_EQUAL(h, nlb_flow_hash(&client, &local));
  CU_ASSERT_NOT_EQUAL(h, nlb_flow_hash(&client2, &local));
  CU_ASSERT_NOT_EQUAL(h, nlb_flow_hash(&local, &client));
  CU_ASSERT_NOT_EQUAL(h, nlb_flow_hash(&client6, &local));
}

/* Round robin: every window of sum(weights) consecutive picks holds each
 * target exactly weight times, and a weight-3 target is not served in one
 * burst. */
static void test_lb_round_robin_cycles_with_weights(void)
{
  static const uint32_t weights[] = {100, 300, 200, 100};
  struct fixture f;
  make_targets(&f, 4, weights);
  struct nlb_pool *pool = make_pool(NLB_ALGORITHM_ROUND_ROBIN, &f);
  int picks[70];

  for (size_t i = 0; i < 70; i++) {
    picks[i] = nlb_pool_pick(pool, rng(), NULL, 0);
    CU_ASSERT_FATAL(picks[i] >= 0 && picks[i] < 4);
  }
  for (size_t start = 0; start + 7 <= 70; start++) {
    int counts[4] = {0};
    for (size_t k = 0; k < 7; k++)
      counts[picks[start + k]]++;
    CU_ASSERT_EQUAL(counts[0], 1);
    CU_ASSERT_EQUAL(counts[1], 3);
    CU_ASSERT_EQUAL(counts[2], 2);
    CU_ASSERT_EQUAL(counts[3], 1);
  }
  /* Smooth: the weight-3 target never runs three times in a row. */
  for (size_t i = 0; i + 3 <= 70; i++)
    CU_ASSERT_FALSE(picks[i] == 1 && picks[i + 1] == 1 && picks[i + 2] == 1);
  nlb_pool_free(pool);
  free_targets(&f);

  /* Equal weights: N consecutive picks visit all N targets. */
  make_targets(&f, 9, NULL);
  pool = make_pool(NLB_ALGORITHM_ROUND_ROBIN, &f);
  for (int round = 0; round < 5; round++) {
    int seen[9] = {0};
    for (int k = 0; k < 9; k++) {
      int index = nlb_pool_pick(pool, 0, NULL, 0);
      CU_ASSERT_FATAL(index >= 0 && index < 9);
      seen[index]++;
    }
    for (int k = 0; k < 9; k++)
      CU_ASSERT_EQUAL(seen[k], 1);
  }
  nlb_pool_free(pool);
  free_targets(&f);
}

/* Weights too many to schedule exactly are scaled; shares still hold. */
static void test_lb_round_robin_large_weights(void)
{
  uint32_t weights[40];
  size_t counts[40] = {0};
  uint64_t total = 0;
  struct fixture f;

  for (size_t i = 0; i < 40; i++) {
    weights[i] = (uint32_t)(1 + rng() % 1000) * 100 + (uint32_t)(i % 7);
    total += weights[i];
  }
  make_targets(&f, 40, weights);
  struct nlb_pool *pool = make_pool(NLB_ALGORITHM_ROUND_ROBIN, &f);
  const size_t picks = 655360;
  for (size_t i = 0; i < picks; i++) {
    int index = nlb_pool_pick(pool, 0, NULL, 0);
    CU_ASSERT_FATAL(index >= 0 && index < 40);
    counts[index]++;
  }
  for (size_t i = 0; i < 40; i++) {
    double share = (double)counts[i] / picks;
    double want = (double)weights[i] / (double)total;
    if (fabs(share - want) > 0.01 * want + 0.0001) {
      fprintf(stderr, "\n  target %zu weight %u: %.4f%%, want %.4f%%", i,
              weights[i], share * 100, want * 100);
      CU_FAIL("round robin share off");
    }
  }
  nlb_pool_free(pool);
  free_targets(&f);
}

static void set_active(struct fixture *f, const uint64_t *active)
{
  for (size_t i = 0; i < f->n; i++)
    atomic_store(&f->targets[i]->counters.active_flows, active[i]);
}

static void test_lb_least_conn_picks_least_loaded(void)
{
  static const uint32_t weights[] = {100, 100, 200, 100, 400};
  struct fixture f;
  make_targets(&f, 5, weights);
  struct nlb_pool *pool = make_pool(NLB_ALGORITHM_LEAST_CONN, &f);

  /* Per unit of weight: 5, 3, 2 (4/2), 6, 2.5 (10/4): target 2. */
  set_active(&f, (const uint64_t[]){5, 3, 4, 6, 10});
  for (int i = 0; i < 20; i++)
    CU_ASSERT_EQUAL(nlb_pool_pick(pool, rng(), NULL, 0), 2);
  /* Its retry goes to the next least loaded: target 4 (2.5). */
  CU_ASSERT_EQUAL(nlb_pool_pick(pool, 0, (const uint32_t[]){2}, 1), 4);
  CU_ASSERT_EQUAL(nlb_pool_pick(pool, 0, (const uint32_t[]){2, 4}, 2), 1);

  /* Weighted: 8 flows on weight 4 (2 each) beat 3 on weight 1. */
  set_active(&f, (const uint64_t[]){3, 3, 9, 3, 8});
  for (int i = 0; i < 20; i++)
    CU_ASSERT_EQUAL(nlb_pool_pick(pool, rng(), NULL, 0), 4);

  /* A fresh target with no flows wins at once. */
  set_active(&f, (const uint64_t[]){7, 7, 0, 7, 7});
  CU_ASSERT_EQUAL(nlb_pool_pick(pool, 0, NULL, 0), 2);

  /* Ties spread instead of piling on one target. */
  set_active(&f, (const uint64_t[]){0, 0, 0, 0, 0});
  int seen[5] = {0};
  for (int i = 0; i < 50; i++) {
    int index = nlb_pool_pick(pool, 0, NULL, 0);
    CU_ASSERT_FATAL(index >= 0 && index < 5);
    seen[index]++;
  }
  for (int i = 0; i < 5; i++)
    CU_ASSERT(seen[i] > 0);
  nlb_pool_free(pool);
  free_targets(&f);
}

/* Simulates a flow whose every connect fails: each target is tried exactly
 * once, never twice, then pick says none is left. */
static void check_each_tried_once(enum nlb_algorithm algorithm, size_t n,
                                  const uint32_t *weights)
{
  struct fixture f;
  make_targets(&f, n, weights);
  struct nlb_pool *pool = make_pool(algorithm, &f);

  for (int flow = 0; flow < 200; flow++) {
    uint32_t tried[MAX_TARGETS];
    size_t n_tried = 0;
    uint64_t hash = rng();
    int index;
    if (algorithm == NLB_ALGORITHM_LEAST_CONN) {
      for (size_t i = 0; i < n; i++)
        atomic_store(&f.targets[i]->counters.active_flows, rng() % 5);
    }
    while ((index = pool->ops->pick(pool, hash, tried, n_tried)) >= 0) {
      CU_ASSERT_FATAL((size_t)index < n);
      CU_ASSERT_FALSE_FATAL(
          nlb_tried_contains(tried, n_tried, (uint32_t)index));
      CU_ASSERT_FATAL(n_tried < n);
      tried[n_tried++] = (uint32_t)index;
    }
    CU_ASSERT_EQUAL(n_tried, n);
    CU_ASSERT_EQUAL(nlb_pool_pick(pool, hash, tried, n_tried), -1);
  }
  nlb_pool_free(pool);
  free_targets(&f);
}

static void test_lb_retries_never_repeat(void)
{
  static const enum nlb_algorithm algorithms[] = {NLB_ALGORITHM_MAGLEV,
                                                  NLB_ALGORITHM_ROUND_ROBIN,
                                                  NLB_ALGORITHM_LEAST_CONN};
  uint32_t weights[MAX_TARGETS];
  for (size_t a = 0; a < 3; a++) {
    for (size_t n = 1; n <= 12; n++) {
      check_each_tried_once(algorithms[a], n, NULL);
      for (size_t i = 0; i < n; i++)
        weights[i] = (uint32_t)(1 + rng() % 9) * 100;
      check_each_tried_once(algorithms[a], n, weights);
    }
    /* A very light target among heavy ones is still reached. */
    for (size_t i = 0; i < 8; i++)
      weights[i] = i == 3 ? 1 : 100000;
    check_each_tried_once(algorithms[a], 8, weights);
  }
}

static void test_lb_empty_and_zero_weight(void)
{
  static const enum nlb_algorithm algorithms[] = {NLB_ALGORITHM_MAGLEV,
                                                  NLB_ALGORITHM_ROUND_ROBIN,
                                                  NLB_ALGORITHM_LEAST_CONN};
  static const uint32_t weights[] = {0, 100, 0};
  for (size_t a = 0; a < 3; a++) {
    struct nlb_pool *pool = nlb_pool_create(algorithms[a], NULL, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pool);
    CU_ASSERT_EQUAL(pool->n_targets, 0);
    CU_ASSERT_EQUAL(nlb_pool_pick(pool, 1, NULL, 0), -1);
    nlb_pool_free(pool);

    struct fixture f;
    make_targets(&f, 3, weights);
    pool = make_pool(algorithms[a], &f);
    CU_ASSERT_EQUAL_FATAL(pool->n_targets, 1);
    CU_ASSERT_PTR_EQUAL(pool->targets[0], f.targets[1]);
    for (int i = 0; i < 10; i++)
      CU_ASSERT_EQUAL(nlb_pool_pick(pool, rng(), NULL, 0), 0);
    /* The pool holds its own reference. */
    CU_ASSERT_EQUAL(atomic_load(&f.targets[1]->refs), 2);
    CU_ASSERT_EQUAL(atomic_load(&f.targets[0]->refs), 1);
    nlb_pool_free(pool);
    CU_ASSERT_EQUAL(atomic_load(&f.targets[1]->refs), 1);
    free_targets(&f);
  }
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_lb_maglev_shares_follow_weights),
      NLB_UNIT_CASE(test_lb_maglev_removal_moves_little),
      NLB_UNIT_CASE(test_lb_maglev_is_deterministic),
      NLB_UNIT_CASE(test_lb_maglev_pick_follows_table),
      NLB_UNIT_CASE(test_lb_maglev_agrees_across_nodes),
      NLB_UNIT_CASE(test_lb_flow_hash_is_stable),
      NLB_UNIT_CASE(test_lb_round_robin_cycles_with_weights),
      NLB_UNIT_CASE(test_lb_round_robin_large_weights),
      NLB_UNIT_CASE(test_lb_least_conn_picks_least_loaded),
      NLB_UNIT_CASE(test_lb_retries_never_repeat),
      NLB_UNIT_CASE(test_lb_empty_and_zero_weight),
  };
  return nlb_unit_run("lb", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
