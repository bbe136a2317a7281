/* CUnit suite for nlb/duration.c: every unit, bare seconds, fractions, and
 * the inputs that must be refused (with the error each one gets), in each
 * of the three forms: strings, integer seconds and decimal seconds. */
#include "nlb/common/duration.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "unit.h"

static void expect_ms(const char *text, uint64_t want)
{
  uint64_t ms = UINT64_C(0xdeadbeef);
  int rc = nlb_duration_parse(text, &ms);
  if (rc != 0 || ms != want)
    fprintf(stderr, "\n  \"%s\": rc %d, %llu ms, want %llu ms", text, rc,
            (unsigned long long)ms, (unsigned long long)want);
  CU_ASSERT_EQUAL(rc, 0);
  CU_ASSERT_EQUAL(ms, want);
}

static void expect_error(const char *text, int want_rc)
{
  uint64_t ms = UINT64_C(0xdeadbeef);
  int rc = nlb_duration_parse(text, &ms);
  if (rc != want_rc)
    fprintf(stderr, "\n  \"%s\": rc %d (%llu ms), want %d",
            text ? text : "NULL", rc, (unsigned long long)ms, want_rc);
  CU_ASSERT_EQUAL(rc, want_rc);
  /* A refused duration leaves the output alone. */
  CU_ASSERT_EQUAL(ms, UINT64_C(0xdeadbeef));
}

static void test_duration_units(void)
{
  expect_ms("250ms", 250);
  expect_ms("0ms", 0);
  expect_ms("10s", 10000);
  expect_ms("5m", 300000);
  expect_ms("1h", 3600000);
  expect_ms("2d", 172800000);
  expect_ms("350s", 350000);
  expect_ms("300s", 300000);
}

static void test_duration_bare_seconds(void)
{
  expect_ms("30", 30000);
  expect_ms("0", 0);
  expect_ms("1", 1000);
  expect_ms("0.5", 500);
  expect_ms("0.25", 250);
}

static void test_duration_fractions(void)
{
  expect_ms("1.5s", 1500);
  expect_ms("0.5m", 30000);
  expect_ms("2.5ms", 3); /* rounded to the nearest millisecond */
  expect_ms("0.001s", 1);
}

static void test_duration_rejects_junk(void)
{
  static const char *const bad[] = {
      "",    "s",    "ms",    "-1",    "-1s",   "+1s", " 10s",  "10s ", "10 s",
      "10x", "10S",  "10sec", "10ms5", "1s2",   "ten", ".5s",   "inf",  "nan",
      "1e3", "1e3s", "0x10",  "0x10s", "1..5s", "5mm", "10s\n", "1,5s", NULL};
  for (const char *const *text = bad; *text; text++)
    expect_error(*text, -EINVAL);
  expect_error(NULL, -EINVAL);
}

static void test_duration_out_of_range(void)
{
  /* ~292 million years is the limit of a uint64 count of milliseconds. */
  expect_error("99999999999999999999d", -ERANGE);
  expect_error("9223372036854775807s", -ERANGE);
  expect_ms("9000000000000000ms", UINT64_C(9000000000000000));
  /* Past DBL_MAX: strtod's overflow, not a wrapped count. */
  char huge[400];
  memset(huge, '9', sizeof(huge) - 2);
  huge[sizeof(huge) - 2] = 's';
  huge[sizeof(huge) - 1] = '\0';
  expect_error(huge, -ERANGE);
  expect_error("1e19", -EINVAL); /* no exponents, whatever their size */
}

/* strtod's underflow (ERANGE with a tiny value) is a tiny duration. */
static void test_duration_underflow_is_zero(void)
{
  char tiny[400] = "0.";
  memset(tiny + 2, '0', sizeof(tiny) - 5);
  tiny[sizeof(tiny) - 3] = '1';
  tiny[sizeof(tiny) - 2] = 's';
  tiny[sizeof(tiny) - 1] = '\0';
  expect_ms(tiny, 0);
}

static void expect_seconds(long long seconds, uint64_t max_ms, int want_rc,
                           uint64_t want_ms)
{
  uint64_t ms = UINT64_C(0xdeadbeef);
  int rc = nlb_duration_from_seconds(seconds, max_ms, &ms);
  if (rc != want_rc || ms != want_ms)
    fprintf(stderr, "\n  %lld s (max %llu ms): rc %d, %llu ms", seconds,
            (unsigned long long)max_ms, rc, (unsigned long long)ms);
  CU_ASSERT_EQUAL(rc, want_rc);
  CU_ASSERT_EQUAL(ms, want_ms);
}

static void expect_float_seconds(double seconds, uint64_t max_ms, int want_rc,
                                 uint64_t want_ms)
{
  uint64_t ms = UINT64_C(0xdeadbeef);
  int rc = nlb_duration_from_float_seconds(seconds, max_ms, &ms);
  if (rc != want_rc || ms != want_ms)
    fprintf(stderr, "\n  %g s (max %llu ms): rc %d, %llu ms", seconds,
            (unsigned long long)max_ms, rc, (unsigned long long)ms);
  CU_ASSERT_EQUAL(rc, want_rc);
  CU_ASSERT_EQUAL(ms, want_ms);
}

#define UNTOUCHED UINT64_C(0xdeadbeef)

/* Integers: the range is checked before the multiply, so a count that
 * would wrap (18446744073709552 s is 384 ms once wrapped) is refused. */
static void test_duration_integer_seconds(void)
{
  expect_seconds(0, 3600000, 0, 0);
  expect_seconds(30, 3600000, 0, 30000);
  expect_seconds(3600, 3600000, 0, 3600000);
  expect_seconds(3601, 3600000, -ERANGE, UNTOUCHED);
  expect_seconds(3600, 3599999, -ERANGE, UNTOUCHED);
  expect_seconds(-1, 3600000, -EINVAL, UNTOUCHED);
  expect_seconds(LLONG_MIN, 3600000, -EINVAL, UNTOUCHED);
  expect_seconds(18446744073709552LL, 3600000, -ERANGE, UNTOUCHED);
  expect_seconds(18446744073709552LL, UINT64_MAX, -ERANGE, UNTOUCHED);
  expect_seconds(LLONG_MAX, UINT64_MAX, -ERANGE, UNTOUCHED);
  expect_seconds(LLONG_MAX / 1000, UINT64_MAX, 0,
                 (uint64_t)(LLONG_MAX / 1000) * 1000);
}

/* Decimals: compared as doubles before the conversion, whose overflow
 * (1e19 s) would be undefined behaviour. */
static void test_duration_float_seconds(void)
{
  expect_float_seconds(0, 3600000, 0, 0);
  expect_float_seconds(-0.0, 3600000, 0, 0);
  expect_float_seconds(0.25, 3600000, 0, 250);
  expect_float_seconds(0.0004, 3600000, 0, 0);
  expect_float_seconds(0.0005, 3600000, 0, 1);
  expect_float_seconds(3600, 3600000, 0, 3600000);
  expect_float_seconds(3600.0004, 3600000, 0, 3600000);
  expect_float_seconds(3600.0006, 3600000, -ERANGE, UNTOUCHED);
  expect_float_seconds(1e19, 3600000, -ERANGE, UNTOUCHED);
  expect_float_seconds(1e300, 3600000, -ERANGE, UNTOUCHED);
  expect_float_seconds(HUGE_VAL, 3600000, -ERANGE, UNTOUCHED);
  expect_float_seconds(1e19, UINT64_C(1) << 53, -ERANGE, UNTOUCHED);
  expect_float_seconds(-0.5, 3600000, -EINVAL, UNTOUCHED);
  expect_float_seconds(-HUGE_VAL, 3600000, -EINVAL, UNTOUCHED);
  expect_float_seconds(NAN, 3600000, -EINVAL, UNTOUCHED);
  expect_float_seconds(-NAN, 3600000, -EINVAL, UNTOUCHED);
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_duration_units),
      NLB_UNIT_CASE(test_duration_bare_seconds),
      NLB_UNIT_CASE(test_duration_fractions),
      NLB_UNIT_CASE(test_duration_rejects_junk),
      NLB_UNIT_CASE(test_duration_out_of_range),
      NLB_UNIT_CASE(test_duration_underflow_is_zero),
      NLB_UNIT_CASE(test_duration_integer_seconds),
      NLB_UNIT_CASE(test_duration_float_seconds),
  };
  return nlb_unit_run("duration", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
