/* -o yaml: the API's JSON written as a YAML document, block style.
 *
 * A YAML reader guesses the type of a plain (unquoted) scalar: YAML 1.1
 * readers (PyYAML, Go's yaml.v2) take yes/no/on/off for booleans,
 * 2024-05-14T09:12:01Z for a timestamp, 0x1f, 0o17, 1_000 and 1:30 for
 * numbers, ~ for null; and ": ", " #", a leading indicator ("-", "?",
 * "*", "&", "!", "|", ">", "'", "\"", "%", "@", "`", "[", "{", ",") change
 * what the line means. Rather than name every such case, a string is
 * written plain only when it starts with a letter or "/" and holds
 * nothing but letters, digits and a few safe punctuation marks, and is not
 * one of the words a reader resolves; everything else is double-quoted,
 * with escapes for what a YAML stream may not hold as it is. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

#define INDENT 2

/* The words YAML 1.1 and 1.2 readers resolve to null or a boolean. */
static bool reserved(const char *s)
{
  static const char *const words[] = {
      "null", "true", "false", "yes", "no", "on", "off", "y", "n",
  };
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    if (strcasecmp(s, words[i]) == 0)
      return true;
  return false;
}

static bool is_letter(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool plain_ok(const char *s, size_t len)
{
  if (len == 0 || strlen(s) != len || !(is_letter(s[0]) || s[0] == '/'))
    return false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (is_letter(c) || (c >= '0' && c <= '9') ||
        strchr("_-./+=()@", c) != NULL)
      continue;
    /* A space, but never two words that read as "key: " or a comment. */
    if (c == ' ' && i + 1 < len && s[i + 1] != ' ' && s[i + 1] != '#')
      continue;
    if (c == ':' && i + 1 < len && s[i + 1] != ' ')
      continue;
    return false;
  }
  return !reserved(s);
}

/* The code point of the UTF-8 sequence at s (jansson holds valid UTF-8),
 * and its length in *n. */
static unsigned long code_point(const unsigned char *s, size_t *n)
{
  if (s[0] < 0xe0) {
    *n = 2;
    return ((s[0] & 0x1fUL) << 6) | (s[1] & 0x3f);
  }
  if (s[0] < 0xf0) {
    *n = 3;
    return ((s[0] & 0x0fUL) << 12) | ((s[1] & 0x3fUL) << 6) | (s[2] & 0x3f);
  }
  *n = 4;
  return ((s[0] & 0x07UL) << 18) | ((s[1] & 0x3fUL) << 12) |
         ((s[2] & 0x3fUL) << 6) | (s[3] & 0x3f);
}

/* Code points a YAML stream may not hold, or that a reader takes for a
 * line break or a byte order mark. */
static bool must_escape(unsigned long c)
{
  return (c >= 0x80 && c <= 0x9f) || c == 0x2028 || c == 0x2029 ||
         c == 0xfeff || c == 0xfffe || c == 0xffff;
}

static void print_quoted(const char *s, size_t len)
{
  const unsigned char *u = (const unsigned char *)s;

  putchar('"');
  for (size_t i = 0; i < len; i++) {
    unsigned char c = u[i];
    switch (c) {
    case '"':
      fputs("\\\"", stdout);
      continue;
    case '\\':
      fputs("\\\\", stdout);
      continue;
    case '\n':
      fputs("\\n", stdout);
      continue;
    case '\t':
      fputs("\\t", stdout);
      continue;
    case '\r':
      fputs("\\r", stdout);
      continue;
    }
    if (c < 0x20 || c == 0x7f) {
      printf("\\x%02x", c);
    } else if (c < 0x80) {
      putchar(c);
    } else {
      size_t n;
      unsigned long point = code_point(u + i, &n);
      if (must_escape(point))
        printf("\\u%04lx", point);
      else
        fwrite(u + i, 1, n, stdout);
      i += n - 1;
    }
  }
  putchar('"');
}

static void print_string(const char *s, size_t len)
{
  if (plain_ok(s, len))
    fwrite(s, 1, len, stdout);
  else
    print_quoted(s, len);
}

static bool is_collection(const json_t *value)
{
  return (json_is_object(value) && json_object_size(value) > 0) ||
         (json_is_array(value) && json_array_size(value) > 0);
}

/* A scalar, or an empty collection, on the current line. */
static void print_scalar(const json_t *value)
{
  char buf[64];

  switch (json_typeof(value)) {
  case JSON_STRING:
    print_string(json_string_value(value), json_string_length(value));
    break;
  case JSON_INTEGER:
    printf("%" JSON_INTEGER_FORMAT, json_integer_value(value));
    break;
  case JSON_REAL:
    /* Always with a point or an exponent: "1" would read as an int. */
    snprintf(buf, sizeof buf, "%.17g", json_real_value(value));
    fputs(buf, stdout);
    if (strpbrk(buf, ".eE") == NULL)
      fputs(".0", stdout);
    break;
  case JSON_TRUE:
    fputs("true", stdout);
    break;
  case JSON_FALSE:
    fputs("false", stdout);
    break;
  case JSON_OBJECT:
    fputs("{}", stdout);
    break;
  case JSON_ARRAY:
    fputs("[]", stdout);
    break;
  default:
    fputs("null", stdout);
  }
}

static void print_node(const json_t *value, int indent, bool inline_first);

/* The items of an object: "key: value", nested ones on the next lines.
 * inline_first: the first key goes on the current line (after "- "). */
static void print_object(const json_t *object, int indent, bool inline_first)
{
  const char *key;
  json_t *value;
  bool first = true;

  json_object_foreach((json_t *)object, key, value)
  {
    if (!(first && inline_first))
      printf("%*s", indent, "");
    first = false;
    print_string(key, strlen(key));
    if (is_collection(value)) {
      fputs(":\n", stdout);
      /* A sequence inside a mapping may sit at the mapping's indentation,
       * as kubectl writes it. */
      print_node(value, json_is_array(value) ? indent : indent + INDENT, false);
    } else {
      fputs(": ", stdout);
      print_scalar(value);
      putchar('\n');
    }
  }
}

static void print_array(const json_t *array, int indent, bool inline_first)
{
  size_t i;
  json_t *item;

  json_array_foreach(array, i, item)
  {
    if (!(i == 0 && inline_first))
      printf("%*s", indent, "");
    fputs("- ", stdout);
    if (json_is_object(item) && json_object_size(item) > 0) {
      print_object(item, indent + INDENT, true);
    } else if (json_is_array(item) && json_array_size(item) > 0) {
      print_array(item, indent + INDENT, true);
    } else {
      print_scalar(item);
      putchar('\n');
    }
  }
}

static void print_node(const json_t *value, int indent, bool inline_first)
{
  if (json_is_object(value) && json_object_size(value) > 0)
    print_object(value, indent, inline_first);
  else if (json_is_array(value) && json_array_size(value) > 0)
    print_array(value, indent, inline_first);
  else {
    print_scalar(value);
    putchar('\n');
  }
}

void cli_print_yaml(const json_t *value)
{
  print_node(value, 0, false);
}
