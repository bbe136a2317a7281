/* The main() every CUnit suite shares: one suite of cases, run verbosely
 * (so CI and scripts/summarize-tests.py read CUnit's run summary), exit
 * status 0 only when no assertion failed. */
#ifndef NLB_TESTS_UNIT_H
#define NLB_TESTS_UNIT_H

#include "build-config.h"

/* configure leaves CUnit optional so that nlbd builds without it. */
#ifndef HAVE_CUNIT
#error "CUnit is missing: install libcunit1-dev, configure again"
#endif

#include <CUnit/Basic.h>
#include <stddef.h>

struct nlb_unit_case {
  const char *name;
  CU_TestFunc run;
};

/* A case named after its function: NLB_UNIT_CASE(test_lb_maglev_...). */
#define NLB_UNIT_CASE(fn)                                                      \
  {                                                                            \
#fn, fn                                                                    \
  }

#define NLB_UNIT_COUNT(cases) (sizeof(cases) / sizeof((cases)[0]))

static inline int nlb_unit_run(const char *suite_name, CU_InitializeFunc init,
                               CU_CleanupFunc clean,
                               const struct nlb_unit_case *cases, size_t n)
{
  CU_pSuite suite;
  unsigned failures;

  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  suite = CU_add_suite(suite_name, init, clean);
  if (suite == NULL)
    goto fail_cleanup_registry;
  for (size_t i = 0; i < n; i++)
    if (CU_add_test(suite, cases[i].name, cases[i].run) == NULL)
      goto fail_cleanup_registry;
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  failures = CU_get_number_of_failures();
  CU_cleanup_registry();
  return failures == 0 ? 0 : 1;

fail_cleanup_registry:
  CU_cleanup_registry();
  return 1;
}

#endif
