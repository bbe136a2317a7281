/* Strict JSON for the API's request bodies (jansson): parse one object,
 * check it against a list of known fields and their types, and build the
 * error body {"error":{"code","message"}} and the times of answers. Pure:
 * any thread. */
#ifndef NLB_API_JSON_H
#define NLB_API_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

enum api_json_kind {
  API_JSON_STRING,
  API_JSON_BOOL,
  API_JSON_INTEGER, /* a JSON integer (1.0 is refused) */
  API_JSON_STRINGS, /* an array of strings */
};

struct api_json_field {
  const char *name;
  enum api_json_kind kind;
  bool required;
};

/* Longest array API_JSON_STRINGS accepts. */
#define API_JSON_MAX_ITEMS 1000

struct api_json_error {
  const char *code; /* "InvalidJson", "UnknownField", "InvalidValue" */
  char field[64];   /* the field at fault, "" if none */
  char message[256];
};

/* Parses body[0..len) as exactly one JSON object, refusing duplicate keys
 * and trailing garbage. Returns a new reference, or NULL with *err filled
 * (code "InvalidJson", or "InvalidValue" when it parses but is not an
 * object). */
json_t *api_json_parse_object(const char *body, size_t len,
                              struct api_json_error *err);

/* Checks object against fields[0..n): every key must be one of them with
 * the right kind (arrays: at most API_JSON_MAX_ITEMS strings), every
 * required one present; null is a wrong kind. Returns 0, or -EINVAL with
 * *err naming the first field at fault ("UnknownField" or "InvalidValue"). */
int api_json_check(const json_t *object, const struct api_json_field *fields,
                   size_t n, struct api_json_error *err);

/* Points (*out)[i] at the strings of a checked array (borrowed from it).
 * *out is malloc'd (free() it; NULL when n == 0). Returns 0 or -ENOMEM. */
int api_json_strings(const json_t *array, const char ***out, size_t *n);

/* A malloc'd {"error":{"code":code,"message":message}}, or NULL (no
 * memory). */
char *api_json_error_body(const char *code, const char *message);

/* A new JSON string of the time unix_ms as every answer and event writes
 * it (reg_format_time: RFC 3339, UTC, milliseconds), or NULL (no memory). */
json_t *api_json_time(int64_t unix_ms);

/* Dumps value compactly with a trailing newline, malloc'd; *len gets its
 * length. NULL when out of memory. Does not steal value. */
char *api_json_dump(const json_t *value, size_t *len);

#endif
