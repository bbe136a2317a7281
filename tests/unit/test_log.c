/* CUnit suite for the rendering of event lines (nlb/log.c): the text line
 * fills the message's "{key}" places, the JSON line parses (jansson) with
 * every field as a key, and a line too long for NLB_LOG_LINE_MAX still
 * parses. */
#include "nlb/log.h"

#include <CUnit/CUnit.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

#define WHEN "2026-01-02T03:04:05.678Z"

static json_t *render_json(const char *message,
                           const struct nlb_log_field *fields, size_t n,
                           size_t *len)
{
  char line[NLB_LOG_LINE_MAX + 1];
  json_error_t error;
  json_t *obj;

  *len = nlb_log_render(line, sizeof(line), true, WHEN, NLB_LOG_WARN,
                        "target_state", message, fields, n);
  CU_ASSERT(*len <= NLB_LOG_LINE_MAX);
  CU_ASSERT_EQUAL(strlen(line), *len);
  CU_ASSERT_PTR_NULL(strchr(line, '\n'));
  obj = json_loads(line, 0, &error);
  if (!obj)
    fprintf(stderr, "\n  not JSON (%s): %s", error.text, line);
  CU_ASSERT_PTR_NOT_NULL_FATAL(obj);
  return obj;
}

static void test_log_text_fills_fields(void)
{
  const struct nlb_log_field fields[] = {
      NLB_LOG_STR("target_group", "tg"),
      NLB_LOG_STR("target", "127.0.0.1:9001"),
      NLB_LOG_UINT("delay_ms", 300000),
      NLB_LOG_INT("cpu", -1),
      NLB_LOG_BOOL("success", false),
      NLB_LOG_STR("netns", NULL),
  };
  char line[NLB_LOG_LINE_MAX + 1];
  size_t len = nlb_log_render(
      line, sizeof(line), false, WHEN, NLB_LOG_INFO, "target_state",
      "target {target_group}/{target} delay {delay_ms}ms cpu {cpu} "
      "{success} in {netns} {unknown} {",
      fields, 6);

  CU_ASSERT_STRING_EQUAL(line, WHEN " info target tg/127.0.0.1:9001 delay "
                                    "300000ms cpu -1 false in - {unknown} {");
  CU_ASSERT_EQUAL(len, strlen(line));
}

/* A value (or the message itself) holding a newline or another control
 * byte stays on its line: each is written \n, \t or \xHH, never cut in half. */
static void test_log_text_escapes_controls(void)
{
  const struct nlb_log_field fields[] = {
      NLB_LOG_STR("netns", "a\nb"),
      NLB_LOG_STR("reason", "x\r\n2026-01-01T00:00:00.000Z error forged\t\x7f"),
  };
  char line[NLB_LOG_LINE_MAX + 1];
  char big[NLB_LOG_LINE_MAX + 8];
  size_t len =
      nlb_log_render(line, sizeof(line), false, WHEN, NLB_LOG_INFO,
                     "netns_state", "netns {netns}: {reason}\n", fields, 2);

  CU_ASSERT_STRING_EQUAL(line, WHEN " info netns a\\nb: x\\x0d\\n"
                                    "2026-01-01T00:00:00.000Z error forged"
                                    "\\t\\x7f\\n");
  CU_ASSERT_EQUAL(len, strlen(line));
  /* Cut where the line ends, between escapes. */
  memset(big, '\n', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  len = nlb_log_render(line, sizeof(line), false, WHEN, NLB_LOG_INFO, "log",
                       big, NULL, 0);
  CU_ASSERT(len <= NLB_LOG_LINE_MAX);
  CU_ASSERT_PTR_NULL(strchr(line, '\n'));
  CU_ASSERT_EQUAL((len - strlen(WHEN " info ")) % 2, 0);
  CU_ASSERT_STRING_EQUAL(line + len - 2, "\\n");
}

/* An access line that comes with a control byte is written as one line. */
static void test_log_access_line_escaped(void)
{
  char path[] = "/tmp/nlb-test-log-XXXXXX";
  struct nlb_log_settings settings = {.access = path,
                                      .events = "off",
                                      .level = NLB_LOG_INFO,
                                      .stderr_priority = 0};
  char got[256] = "";
  int fd = mkstemp(path);
  ssize_t n;

  CU_ASSERT_FATAL(fd >= 0);
  CU_ASSERT_EQUAL_FATAL(nlb_log_start(&settings), 0);
  nlb_log_access("lb:80 a\nforged line", 19);
  nlb_log_access("plain", 5);
  nlb_log_stop();
  n = read(fd, got, sizeof(got) - 1);
  got[n > 0 ? n : 0] = '\0';
  CU_ASSERT_STRING_EQUAL(got, "lb:80 a\\nforged line\nplain\n");
  close(fd);
  unlink(path);
}

static void test_log_json_has_every_field(void)
{
  const struct nlb_log_field fields[] = {
      NLB_LOG_STR("target_group", "tg"),
      NLB_LOG_STR("reason", "HTTP 503 \"busy\"\n\tback\\slash \x01"),
      NLB_LOG_UINT("flows", UINT64_C(9007199254740993)),
      NLB_LOG_INT("cpu", -3),
      NLB_LOG_BOOL("success", true),
      NLB_LOG_STR("netns", NULL),
  };
  size_t len;
  json_t *obj = render_json("group {target_group}: {reason}", fields, 6, &len);

  CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(obj, "time")), WHEN);
  CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(obj, "level")),
                         "warn");
  CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(obj, "event")),
                         "target_state");
  CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(obj, "message")),
                         "group tg: HTTP 503 \"busy\"\n\tback\\slash \x01");
  CU_ASSERT_STRING_EQUAL(
      json_string_value(json_object_get(obj, "target_group")), "tg");
  CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(obj, "reason")),
                         "HTTP 503 \"busy\"\n\tback\\slash \x01");
  CU_ASSERT_EQUAL(json_integer_value(json_object_get(obj, "flows")),
                  INT64_C(9007199254740993));
  CU_ASSERT_EQUAL(json_integer_value(json_object_get(obj, "cpu")), -3);
  CU_ASSERT(json_is_true(json_object_get(obj, "success")));
  CU_ASSERT(json_is_null(json_object_get(obj, "netns")));
  CU_ASSERT_PTR_NULL(json_object_get(obj, "truncated"));
  json_decref(obj);
}

static void test_log_json_replaces_bad_utf8(void)
{
  const struct nlb_log_field fields[] = {
      NLB_LOG_STR("path", "caf\xc3\xa9 \xff \xed\xa0\x80 \xe2\x82"),
  };
  size_t len;
  json_t *obj = render_json("{path}", fields, 1, &len);

  CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(obj, "path")),
                         "caf\xc3\xa9 \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd"
                         "\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd");
  json_decref(obj);
}

/* Longer than a line: the message is cut first, then the last fields go,
 * and the line says so; it parses either way. */
static void test_log_json_too_long_still_parses(void)
{
  char big[3000];
  struct nlb_log_field fields[40];
  char keys[40][16];
  size_t len;
  json_t *obj;

  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  for (int i = 0; i < 40; i++) {
    snprintf(keys[i], sizeof(keys[i]), "field_%d", i);
    fields[i] = (struct nlb_log_field)NLB_LOG_STR(keys[i], "0123456789abcdef");
  }
  obj = render_json(big, fields, 3, &len);
  CU_ASSERT_PTR_NULL(json_object_get(obj, "truncated"));
  CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(obj, "field_2")),
                         "0123456789abcdef");
  CU_ASSERT(strlen(json_string_value(json_object_get(obj, "message"))) > 500);
  json_decref(obj);

  obj = render_json(big, fields, 40, &len);
  CU_ASSERT(json_is_true(json_object_get(obj, "truncated")));
  CU_ASSERT_PTR_NOT_NULL(json_object_get(obj, "field_0"));
  CU_ASSERT_PTR_NULL(json_object_get(obj, "field_39"));
  CU_ASSERT(len > NLB_LOG_LINE_MAX - 60);
  json_decref(obj);

  fields[0] = (struct nlb_log_field)NLB_LOG_STR("huge", big);
  obj = render_json("{huge}", fields, 1, &len);
  CU_ASSERT(json_is_true(json_object_get(obj, "truncated")));
  CU_ASSERT_PTR_NULL(json_object_get(obj, "huge"));
  json_decref(obj);
}

static void test_log_priorities(void)
{
  CU_ASSERT_EQUAL(nlb_log_priority(NLB_LOG_DEBUG), 7);
  CU_ASSERT_EQUAL(nlb_log_priority(NLB_LOG_INFO), 6);
  CU_ASSERT_EQUAL(nlb_log_priority(NLB_LOG_WARN), 4);
  CU_ASSERT_EQUAL(nlb_log_priority(NLB_LOG_ERROR), 3);
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_log_text_fills_fields),
      NLB_UNIT_CASE(test_log_text_escapes_controls),
      NLB_UNIT_CASE(test_log_access_line_escaped),
      NLB_UNIT_CASE(test_log_json_has_every_field),
      NLB_UNIT_CASE(test_log_json_replaces_bad_utf8),
      NLB_UNIT_CASE(test_log_json_too_long_still_parses),
      NLB_UNIT_CASE(test_log_priorities),
  };
  return nlb_unit_run("log", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
