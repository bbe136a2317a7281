/* Strict request bodies, the error body and the time format of answers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/api-json.h"
#include "nlb/registry.h"

static void set_error(struct api_json_error *err, const char *code,
                      const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_error(struct api_json_error *err, const char *code,
                      const char *field, const char *fmt, ...)
{
  va_list ap;
  err->code = code;
  snprintf(err->field, sizeof err->field, "%s", field != NULL ? field : "");
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
}

json_t *api_json_parse_object(const char *body, size_t len,
                              struct api_json_error *err)
{
  json_error_t jerr;
  json_t *value;

  if (len == 0) {
    set_error(err, "InvalidJson", NULL, "%s", "the request needs a JSON body");
    return NULL;
  }
  value = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
  if (value == NULL) {
    err->code = "InvalidJson";
    err->field[0] = '\0';
    snprintf(err->message, sizeof err->message,
             "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
             jerr.text);
    return NULL;
  }
  if (!json_is_object(value)) {
    json_decref(value);
    set_error(err, "InvalidValue", NULL, "%s",
              "the body must be a JSON object");
    return NULL;
  }
  return value;
}

static const char *kind_name(enum api_json_kind kind)
{
  switch (kind) {
  case API_JSON_STRING:
    return "a string";
  case API_JSON_BOOL:
    return "a boolean";
  case API_JSON_INTEGER:
    return "an integer";
  case API_JSON_STRINGS:
    return "an array of strings";
  }
  return "?";
}

static bool kind_matches(const json_t *value, enum api_json_kind kind)
{
  switch (kind) {
  case API_JSON_STRING:
    return json_is_string(value);
  case API_JSON_BOOL:
    return json_is_boolean(value);
  case API_JSON_INTEGER:
    return json_is_integer(value);
  case API_JSON_STRINGS: {
    size_t i;
    const json_t *item;
    if (!json_is_array(value) || json_array_size(value) > API_JSON_MAX_ITEMS)
      return false;
    json_array_foreach(value, i, item) if (!json_is_string(item)) return false;
    return true;
  }
  }
  return false;
}

int api_json_check(const json_t *object, const struct api_json_field *fields,
                   size_t n, struct api_json_error *err)
{
  const char *key;
  const json_t *value;

  /* jansson keeps insertion order, so the first bad key is the user's. */
  json_object_foreach((json_t *)object, key, value)
  {
    size_t i;
    for (i = 0; i < n; i++)
      if (strcmp(fields[i].name, key) == 0)
        break;
    if (i == n) {
      set_error(err, "UnknownField", key, "unknown field \"%s\"", key);
      return -EINVAL;
    }
    if (!kind_matches(value, fields[i].kind)) {
      char message[200];
      snprintf(message, sizeof message, "\"%s\" must be %s%s", fields[i].name,
               kind_name(fields[i].kind),
               fields[i].kind == API_JSON_STRINGS ? " (at most 1000)" : "");
      set_error(err, "InvalidValue", key, "%s", message);
      return -EINVAL;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (fields[i].required && json_object_get(object, fields[i].name) == NULL) {
      set_error(err, "InvalidValue", fields[i].name,
                "missing required field \"%s\"", fields[i].name);
      return -EINVAL;
    }
  }
  return 0;
}

int api_json_strings(const json_t *array, const char ***out, size_t *n)
{
  size_t count = array != NULL ? json_array_size(array) : 0;
  *out = NULL;
  *n = 0;
  if (count == 0)
    return 0;
  const char **items = calloc(count, sizeof *items);
  if (items == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < count; i++)
    items[i] = json_string_value(json_array_get(array, i));
  *out = items;
  *n = count;
  return 0;
}

char *api_json_error_body(const char *code, const char *message)
{
  json_t *body =
      json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
  if (body == NULL)
    return NULL;
  char *text = api_json_dump(body, NULL);
  json_decref(body);
  return text;
}

json_t *api_json_time(int64_t unix_ms)
{
  char buf[REG_TIME_BUF];
  return json_string(reg_format_time(unix_ms, buf));
}

char *api_json_dump(const json_t *value, size_t *len)
{
  char *text = json_dumps(value, JSON_COMPACT);
  if (text == NULL)
    return NULL;
  size_t n = strlen(text);
  char *with_newline = realloc(text, n + 2);
  if (with_newline == NULL) {
    free(text);
    return NULL;
  }
  with_newline[n] = '\n';
  with_newline[n + 1] = '\0';
  if (len != NULL)
    *len = n + 1;
  return with_newline;
}
