/* CUnit suite for nlb/dataplane/sni_routes.c: an exact name wins over a
 * wildcard whatever their order, a wildcard covers exactly one label more,
 * and no name (or no table) matches nothing. */
#include "nlb/dataplane/sni_routes.h"

#include <CUnit/CUnit.h>
#include <stdlib.h>

#include "unit.h"

static struct nlb_sni_routes *table_of(const char *const *names,
                                       const size_t *groups, size_t n)
{
  struct nlb_sni_routes *table = nlb_sni_routes_create(n, 5000);

  CU_ASSERT_PTR_NOT_NULL_FATAL(table);
  CU_ASSERT_EQUAL(table->client_hello_timeout_ms, 5000);
  for (size_t i = 0; i < n; i++)
    CU_ASSERT_EQUAL_FATAL(nlb_sni_routes_set(table, i, names[i], groups[i]), 0);
  return table;
}

static void test_sni_routes_exact_before_wildcard(void)
{
  /* The wildcard first: order does not decide, exactness does. */
  static const char *const names[] = {"*.b.example", "exact.b.example",
                                      "a.example"};
  static const size_t groups[] = {2, 1, 0};
  struct nlb_sni_routes *table = table_of(names, groups, 3);

  CU_ASSERT_EQUAL(nlb_sni_routes_match(table, "exact.b.example"), 1);
  CU_ASSERT_EQUAL(nlb_sni_routes_match(table, "x.b.example"), 2);
  CU_ASSERT_EQUAL(nlb_sni_routes_match(table, "a.example"), 0);
  nlb_sni_routes_acquire(table);
  nlb_sni_routes_release(table);
  CU_ASSERT_EQUAL(nlb_sni_routes_match(table, "a.example"), 0);
  nlb_sni_routes_release(table);
}

static void test_sni_routes_wildcard_is_one_label(void)
{
  static const char *const names[] = {"*.b.example"};
  static const size_t groups[] = {7};
  struct nlb_sni_routes *table = table_of(names, groups, 1);

  CU_ASSERT_EQUAL(nlb_sni_routes_match(table, "x.b.example"), 7);
  CU_ASSERT_EQUAL(nlb_sni_routes_match(table, "b.example"), -1);
  CU_ASSERT_EQUAL(nlb_sni_routes_match(table, "y.x.b.example"), -1);
  CU_ASSERT_EQUAL(nlb_sni_routes_match(table, ".b.example"), -1);
  CU_ASSERT_EQUAL(nlb_sni_routes_match(table, "xb.example"), -1);
  CU_ASSERT_EQUAL(nlb_sni_routes_match(table, "*.b.example"), 7);
  nlb_sni_routes_release(table);
}

static void test_sni_routes_no_name(void)
{
  static const char *const names[] = {"a.example"};
  static const size_t groups[] = {3};
  struct nlb_sni_routes *table = table_of(names, groups, 1);

  CU_ASSERT_EQUAL(nlb_sni_routes_match(table, NULL), -1);
  CU_ASSERT_EQUAL(nlb_sni_routes_match(table, ""), -1);
  CU_ASSERT_EQUAL(nlb_sni_routes_match(table, "b.example"), -1);
  CU_ASSERT_EQUAL(nlb_sni_routes_match(NULL, "a.example"), -1);
  nlb_sni_routes_release(table);
  nlb_sni_routes_release(NULL);
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_sni_routes_exact_before_wildcard),
      NLB_UNIT_CASE(test_sni_routes_wildcard_is_one_label),
      NLB_UNIT_CASE(test_sni_routes_no_name),
  };
  return nlb_unit_run("sni_routes", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
