/* The intrusive hash map that indexes targets, groups, endpoints and
 * listeners by name or address: found at any size, removable in any order,
 * equal hashes told apart by the caller's key, iteration that survives
 * removing the current node. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/common/hmap.h"

#include "unit.h"

struct item {
  struct nlb_hnode node;
  char name[32];
  bool seen;
};

static bool item_named(const struct nlb_hnode *node, const void *key)
{
  const struct item *item = (const struct item *)node;
  return strcmp(item->name, key) == 0;
}

static struct item *find(const struct nlb_hmap *map, const char *name)
{
  return (struct item *)nlb_hmap_find(map, nlb_hash_str(name), item_named,
                                      name);
}

static void test_hmap_empty_map_finds_nothing(void)
{
  struct nlb_hmap map;

  nlb_hmap_init(&map);
  CU_ASSERT_PTR_NULL(find(&map, "a"));
  CU_ASSERT_PTR_NULL(nlb_hmap_next(&map, NULL));
  CU_ASSERT_EQUAL(map.count, 0);
  nlb_hmap_free(&map);
}

/* 20,000 items in, every one found, a half removed, the rest still found
 * and the removed ones gone; the bucket array kept at least as large as
 * the count so chains stay short. */
static void test_hmap_thousands_found_and_removed(void)
{
  enum { N = 20000 };
  struct item *items = calloc(N, sizeof(*items));
  struct nlb_hmap map;

  CU_ASSERT_PTR_NOT_NULL_FATAL(items);
  nlb_hmap_init(&map);
  for (size_t i = 0; i < N; i++) {
    snprintf(items[i].name, sizeof(items[i].name), "target-%zu", i);
    CU_ASSERT_EQUAL_FATAL(
        nlb_hmap_insert(&map, &items[i].node, nlb_hash_str(items[i].name)), 0);
  }
  CU_ASSERT_EQUAL(map.count, N);
  CU_ASSERT(map.n_buckets >= N / 2);
  CU_ASSERT_EQUAL(map.n_buckets & (map.n_buckets - 1), 0);
  for (size_t i = 0; i < N; i++)
    CU_ASSERT_PTR_EQUAL(find(&map, items[i].name), &items[i]);
  CU_ASSERT_PTR_NULL(find(&map, "target-20000"));
  for (size_t i = 0; i < N; i += 2)
    nlb_hmap_remove(&map, &items[i].node);
  CU_ASSERT_EQUAL(map.count, N / 2);
  for (size_t i = 0; i < N; i++)
    CU_ASSERT_PTR_EQUAL(find(&map, items[i].name), i % 2 ? &items[i] : NULL);
  nlb_hmap_free(&map);
  free(items);
}

/* Nodes under one hash (a collision) are told apart by the key, and each
 * can be removed alone. */
static void test_hmap_equal_hashes_told_apart_by_key(void)
{
  struct item a = {.name = "a"}, b = {.name = "b"}, c = {.name = "c"};
  struct nlb_hmap map;

  nlb_hmap_init(&map);
  nlb_hmap_insert(&map, &a.node, 42);
  nlb_hmap_insert(&map, &b.node, 42);
  nlb_hmap_insert(&map, &c.node, 42);
  CU_ASSERT_PTR_EQUAL(nlb_hmap_find(&map, 42, item_named, "a"), &a.node);
  CU_ASSERT_PTR_EQUAL(nlb_hmap_find(&map, 42, item_named, "b"), &b.node);
  CU_ASSERT_PTR_EQUAL(nlb_hmap_find(&map, 42, item_named, "c"), &c.node);
  CU_ASSERT_PTR_NULL(nlb_hmap_find(&map, 42, item_named, "d"));
  nlb_hmap_remove(&map, &b.node);
  CU_ASSERT_PTR_NULL(nlb_hmap_find(&map, 42, item_named, "b"));
  CU_ASSERT_PTR_EQUAL(nlb_hmap_find(&map, 42, item_named, "a"), &a.node);
  CU_ASSERT_PTR_EQUAL(nlb_hmap_find(&map, 42, item_named, "c"), &c.node);
  CU_ASSERT_EQUAL(map.count, 2);
  nlb_hmap_free(&map);
}

/* Iteration visits every node once, and may remove the node it stands on
 * once it has fetched the next one (how the router forgets drained
 * targets). */
static void test_hmap_iteration_visits_each_once_while_removing(void)
{
  enum { N = 3000 };
  struct item *items = calloc(N, sizeof(*items));
  struct nlb_hmap map;
  struct nlb_hnode *node, *next;
  size_t visited = 0;

  CU_ASSERT_PTR_NOT_NULL_FATAL(items);
  nlb_hmap_init(&map);
  for (size_t i = 0; i < N; i++) {
    snprintf(items[i].name, sizeof(items[i].name), "%zu", i);
    nlb_hmap_insert(&map, &items[i].node, nlb_hash_str(items[i].name));
  }
  for (node = nlb_hmap_next(&map, NULL); node; node = next) {
    struct item *item = (struct item *)node;
    next = nlb_hmap_next(&map, node);
    CU_ASSERT_FALSE(item->seen);
    item->seen = true;
    visited++;
    if (atoi(item->name) % 3 == 0)
      nlb_hmap_remove(&map, node);
  }
  CU_ASSERT_EQUAL(visited, N);
  CU_ASSERT_EQUAL(map.count, N - N / 3);
  visited = 0;
  for (node = nlb_hmap_next(&map, NULL); node; node = nlb_hmap_next(&map, node))
    visited++;
  CU_ASSERT_EQUAL(visited, N - N / 3);
  nlb_hmap_free(&map);
  free(items);
}

static void test_hmap_hashes_are_fnv1a(void)
{
  /* FNV-1a 64 of "" is its offset basis; of "a", the published value. */
  CU_ASSERT_EQUAL(nlb_hash_str(""), UINT64_C(0xcbf29ce484222325));
  CU_ASSERT_EQUAL(nlb_hash_str("a"), UINT64_C(0xaf63dc4c8601ec8c));
  CU_ASSERT_EQUAL(nlb_hash_bytes("abc", 3), nlb_hash_str("abc"));
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_hmap_empty_map_finds_nothing),
      NLB_UNIT_CASE(test_hmap_thousands_found_and_removed),
      NLB_UNIT_CASE(test_hmap_equal_hashes_told_apart_by_key),
      NLB_UNIT_CASE(test_hmap_iteration_visits_each_once_while_removing),
      NLB_UNIT_CASE(test_hmap_hashes_are_fnv1a),
  };
  return nlb_unit_run("hmap", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
