/* Health: the threshold state machine, status-line parsing, matchers and
 * slow-start weights. */
#include <errno.h>
#include <string.h>

#include "nlb/health.h"
#include "nlb/router.h"
#include "nlb/status_matcher.h"

#include "unit.h"

struct step {
  bool passed;
  enum nlb_target_state expect;
};

static void run_steps(enum nlb_target_state state, const struct step *steps,
                      size_t n, unsigned healthy, unsigned unhealthy)
{
  unsigned ok = 0, fail = 0;
  for (size_t i = 0; i < n; i++) {
    state = nlb_health_next_state(state, &ok, &fail, steps[i].passed, healthy,
                                  unhealthy);
    CU_ASSERT_EQUAL(state, steps[i].expect);
  }
}

static void test_health_initial_becomes_healthy_after_threshold(void)
{
  const struct step steps[] = {{true, NLB_TARGET_INITIAL},
                               {true, NLB_TARGET_INITIAL},
                               {true, NLB_TARGET_HEALTHY},
                               {true, NLB_TARGET_HEALTHY}};
  run_steps(NLB_TARGET_INITIAL, steps, 4, 3, 2);
}

static void test_health_initial_becomes_unhealthy_after_threshold(void)
{
  const struct step steps[] = {{false, NLB_TARGET_INITIAL},
                               {false, NLB_TARGET_UNHEALTHY}};
  run_steps(NLB_TARGET_INITIAL, steps, 2, 3, 2);
}

static void test_health_interrupted_runs_do_not_count(void)
{
  /* healthy 2 / unhealthy 2: alternating results never change state. */
  const struct step steps[] = {
      {false, NLB_TARGET_HEALTHY},  {true, NLB_TARGET_HEALTHY},
      {false, NLB_TARGET_HEALTHY},  {true, NLB_TARGET_HEALTHY},
      {false, NLB_TARGET_HEALTHY},  {false, NLB_TARGET_UNHEALTHY},
      {true, NLB_TARGET_UNHEALTHY}, {false, NLB_TARGET_UNHEALTHY},
      {true, NLB_TARGET_UNHEALTHY}, {true, NLB_TARGET_HEALTHY}};
  run_steps(NLB_TARGET_HEALTHY, steps, 10, 2, 2);
}

static void test_health_threshold_one_flips_at_once(void)
{
  const struct step steps[] = {{false, NLB_TARGET_UNHEALTHY},
                               {true, NLB_TARGET_HEALTHY},
                               {false, NLB_TARGET_UNHEALTHY}};
  run_steps(NLB_TARGET_HEALTHY, steps, 3, 1, 1);
}

static void test_health_draining_and_unused_stay(void)
{
  const struct step draining[] = {{true, NLB_TARGET_DRAINING},
                                  {false, NLB_TARGET_DRAINING},
                                  {false, NLB_TARGET_DRAINING}};
  const struct step unused[] = {{true, NLB_TARGET_UNUSED},
                                {true, NLB_TARGET_UNUSED}};
  run_steps(NLB_TARGET_DRAINING, draining, 3, 1, 1);
  run_steps(NLB_TARGET_UNUSED, unused, 2, 1, 1);
}

static void test_health_status_line_parsing(void)
{
  const char *ok = "HTTP/1.1 200 OK\r\n";
  CU_ASSERT_EQUAL(nlb_health_parse_status(ok, strlen(ok)), 200);
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTTP/1.0 503\r\n", 14), 503);
  /* Incomplete lines are never judged. */
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTT", 3), 0);
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTTP/1.1 20", 11), 0);
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTTP/1.1 200 OK", 15), 0);
  CU_ASSERT_EQUAL(nlb_health_parse_status("SSH-2.0-x\r\n", 11), -EPROTO);
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTTP/1.1 2x0 OK\r\n", 17), -EPROTO);
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTTP/1.1 999 OK\r\n", 17), -EPROTO);
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTTP/1.1 2000 OK\r\n", 18), -EPROTO);
}

static void test_health_matcher_parsing(void)
{
  struct nlb_status_matcher m;
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("200-399", &m), 0);
  CU_ASSERT_TRUE(nlb_status_matcher_match(&m, 200));
  CU_ASSERT_TRUE(nlb_status_matcher_match(&m, 302));
  CU_ASSERT_TRUE(nlb_status_matcher_match(&m, 399));
  CU_ASSERT_FALSE(nlb_status_matcher_match(&m, 400));
  CU_ASSERT_FALSE(nlb_status_matcher_match(&m, 199));
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("200,204", &m), 0);
  CU_ASSERT_TRUE(nlb_status_matcher_match(&m, 204));
  CU_ASSERT_FALSE(nlb_status_matcher_match(&m, 201));
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("200, 300-302", &m), 0);
  CU_ASSERT_TRUE(nlb_status_matcher_match(&m, 301));
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("", &m), -EINVAL);
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("399-200", &m), -EINVAL);
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("99", &m), -EINVAL);
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("600", &m), -EINVAL);
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("200,", &m), -EINVAL);
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("2000", &m), -EINVAL);
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("abc", &m), -EINVAL);
}

static void test_health_slow_start_weight_grows_linearly(void)
{
  const uint32_t full = 4 * NLB_WEIGHT_SCALE;
  /* Off: full weight at once. */
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 0, 1000, 1000), full);
  /* 30 s window starting at t=1000 ms. */
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 30000, 1000, 1000), 1);
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 30000, 1000, 1000 + 7500), full / 4);
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 30000, 1000, 1000 + 15000),
                  full / 2);
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 30000, 1000, 1000 + 29999),
                  (uint32_t)((uint64_t)full * 29999 / 30000));
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 30000, 1000, 1000 + 30000), full);
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 30000, 1000, 1000 + 90000), full);
  /* Monotonic over the window. */
  uint32_t last = 0;
  for (uint64_t t = 1000; t <= 31000; t += 250) {
    uint32_t w = nlb_slow_start_weight(4, 30000, 1000, t);
    CU_ASSERT_TRUE(w >= last);
    last = w;
  }
  /* A weight of 0 stays 0: the operator took the target out. */
  CU_ASSERT_EQUAL(nlb_slow_start_weight(0, 30000, 1000, 5000), 0);
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_health_initial_becomes_healthy_after_threshold),
      NLB_UNIT_CASE(test_health_initial_becomes_unhealthy_after_threshold),
      NLB_UNIT_CASE(test_health_interrupted_runs_do_not_count),
      NLB_UNIT_CASE(test_health_threshold_one_flips_at_once),
      NLB_UNIT_CASE(test_health_draining_and_unused_stay),
      NLB_UNIT_CASE(test_health_status_line_parsing),
      NLB_UNIT_CASE(test_health_matcher_parsing),
      NLB_UNIT_CASE(test_health_slow_start_weight_grows_linearly),
  };
  return nlb_unit_run("health", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
