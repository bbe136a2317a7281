/* The UDP flow table (nlb/dataplane/udp_table.h): every key found at any
 * size and in any removal order (backward-shift deletion keeps probe runs
 * whole), keys told apart by each part of the 5-tuple, and a bound that
 * refuses the key past it and stops the slot array from growing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/dataplane/udp_table.h"

#include "unit.h"

static void make_key(struct nlb_udp_key *key, uint64_t route, unsigned n,
                     uint16_t local_port)
{
  union nlb_sockaddr client, local;
  char text[32];

  snprintf(text, sizeof(text), "10.%u.%u.%u", (n >> 16) & 255, (n >> 8) & 255,
           n & 255);
  CU_ASSERT_FATAL(
      nlb_addr_parse_ip(text, (uint16_t)(1024 + n % 50000), &client) == 0);
  CU_ASSERT_FATAL(nlb_addr_parse_ip("192.0.2.1", local_port, &local) == 0);
  nlb_udp_key_make(key, route, &client, &local);
}

static struct nlb_udp_key *find(struct nlb_udp_table *table,
                                const struct nlb_udp_key *key)
{
  return nlb_udp_table_find(table, key, nlb_udp_key_hash(key));
}

static void test_udp_table_empty_finds_nothing(void)
{
  struct nlb_udp_table table;
  struct nlb_udp_key key;

  nlb_udp_table_init(&table, 10);
  make_key(&key, 1, 1, 53);
  CU_ASSERT_PTR_NULL(find(&table, &key));
  nlb_udp_table_remove(&table, &key, nlb_udp_key_hash(&key));
  CU_ASSERT_EQUAL(table.count, 0);
  nlb_udp_table_free(&table);
}

static void test_udp_table_thousands_found_and_removed_in_any_order(void)
{
  enum { N = 20000 };
  struct nlb_udp_key *keys = calloc(N, sizeof(*keys));
  struct nlb_udp_table table;

  nlb_udp_table_init(&table, N);
  for (unsigned i = 0; i < N; i++) {
    make_key(&keys[i], 7, i, 53);
    CU_ASSERT_EQUAL(
        nlb_udp_table_insert(&table, &keys[i], nlb_udp_key_hash(&keys[i])), 0);
  }
  CU_ASSERT_EQUAL(table.count, N);
  /* Never more than half full. */
  CU_ASSERT_TRUE(table.count * 2 <= table.mask + 1);
  for (unsigned i = 0; i < N; i++)
    CU_ASSERT_PTR_EQUAL(find(&table, &keys[i]), &keys[i]);
  /* Every third, then the rest from the end: the others stay found. */
  for (unsigned i = 0; i < N; i += 3)
    nlb_udp_table_remove(&table, &keys[i], nlb_udp_key_hash(&keys[i]));
  for (unsigned i = 0; i < N; i++) {
    if (i % 3 == 0) {
      CU_ASSERT_PTR_NULL(find(&table, &keys[i]));
    } else {
      CU_ASSERT_PTR_EQUAL(find(&table, &keys[i]), &keys[i]);
    }
  }
  for (unsigned i = N; i-- > 0;)
    if (i % 3 != 0)
      nlb_udp_table_remove(&table, &keys[i], nlb_udp_key_hash(&keys[i]));
  CU_ASSERT_EQUAL(table.count, 0);
  for (size_t s = 0; s <= table.mask; s++)
    CU_ASSERT_PTR_NULL(table.slots[s].key);
  nlb_udp_table_free(&table);
  free(keys);
}

static void test_udp_table_tells_each_part_of_the_tuple_apart(void)
{
  struct nlb_udp_key a, other_route, other_port, other_local, copy;
  struct nlb_udp_table table;

  make_key(&a, 1, 5, 53);
  make_key(&other_route, 2, 5, 53);
  make_key(&other_port, 1, 5 + 50000, 53); /* same port, other address */
  make_key(&other_local, 1, 5, 54);
  copy = a;
  nlb_udp_table_init(&table, 100);
  CU_ASSERT_EQUAL(nlb_udp_table_insert(&table, &a, nlb_udp_key_hash(&a)), 0);
  CU_ASSERT_PTR_EQUAL(find(&table, &copy), &a);
  CU_ASSERT_PTR_NULL(find(&table, &other_route));
  CU_ASSERT_PTR_NULL(find(&table, &other_port));
  CU_ASSERT_PTR_NULL(find(&table, &other_local));
  nlb_udp_table_free(&table);
}

static void test_udp_table_bound_refuses_and_does_not_grow(void)
{
  enum { MAX = 1000, FLOOD = 5000 };
  struct nlb_udp_key *keys = calloc(FLOOD, sizeof(*keys));
  struct nlb_udp_table table;
  size_t slots_at_bound = 0, refused = 0;

  nlb_udp_table_init(&table, MAX);
  for (unsigned i = 0; i < FLOOD; i++) {
    int rc;
    make_key(&keys[i], 1, i, 53);
    rc = nlb_udp_table_insert(&table, &keys[i], nlb_udp_key_hash(&keys[i]));
    if (i < MAX) {
      CU_ASSERT_EQUAL(rc, 0);
    } else {
      CU_ASSERT_EQUAL(rc, -ENOSPC);
    }
    if (rc == -ENOSPC)
      refused++;
    if (i == MAX - 1)
      slots_at_bound = table.mask + 1;
  }
  CU_ASSERT_EQUAL(refused, FLOOD - MAX);
  CU_ASSERT_EQUAL(table.count, MAX);
  CU_ASSERT_EQUAL(table.mask + 1, slots_at_bound);
  /* A key leaving makes room for one more. */
  nlb_udp_table_remove(&table, &keys[0], nlb_udp_key_hash(&keys[0]));
  CU_ASSERT_EQUAL(
      nlb_udp_table_insert(&table, &keys[MAX], nlb_udp_key_hash(&keys[MAX])),
      0);
  CU_ASSERT_PTR_EQUAL(find(&table, &keys[MAX]), &keys[MAX]);
  nlb_udp_table_free(&table);
  free(keys);
}

static void test_udp_table_ipv6_keys(void)
{
  union nlb_sockaddr client, local;
  struct nlb_udp_key a, b;
  struct nlb_udp_table table;

  CU_ASSERT_FATAL(nlb_addr_parse_ip("2001:db8::1", 5000, &client) == 0);
  CU_ASSERT_FATAL(nlb_addr_parse_ip("2001:db8::53", 53, &local) == 0);
  nlb_udp_key_make(&a, 1, &client, &local);
  CU_ASSERT_FATAL(nlb_addr_parse_ip("2001:db8::2", 5000, &client) == 0);
  nlb_udp_key_make(&b, 1, &client, &local);
  nlb_udp_table_init(&table, 10);
  CU_ASSERT_EQUAL(nlb_udp_table_insert(&table, &a, nlb_udp_key_hash(&a)), 0);
  CU_ASSERT_PTR_NULL(find(&table, &b));
  CU_ASSERT_EQUAL(nlb_udp_table_insert(&table, &b, nlb_udp_key_hash(&b)), 0);
  CU_ASSERT_PTR_EQUAL(find(&table, &b), &b);
  nlb_udp_table_free(&table);
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_udp_table_empty_finds_nothing),
      NLB_UNIT_CASE(test_udp_table_thousands_found_and_removed_in_any_order),
      NLB_UNIT_CASE(test_udp_table_tells_each_part_of_the_tuple_apart),
      NLB_UNIT_CASE(test_udp_table_bound_refuses_and_does_not_grow),
      NLB_UNIT_CASE(test_udp_table_ipv6_keys),
  };
  return nlb_unit_run("udp_table", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
