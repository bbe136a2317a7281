/* CUnit suite for nlb/duration.c: every unit, bare seconds, fractions, and
 * the inputs that must be refused (with the error each one gets). */
#include "nlb/duration.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>

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
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_duration_units),
      NLB_UNIT_CASE(test_duration_bare_seconds),
      NLB_UNIT_CASE(test_duration_fractions),
      NLB_UNIT_CASE(test_duration_rejects_junk),
      NLB_UNIT_CASE(test_duration_out_of_range),
  };
  return nlb_unit_run("duration", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
