/* Helpers nlbctl's commands share: JSON bodies, arguments, a call whose
 * answer is printed. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"

json_t *cli_checked(json_t *value)
{
  if (value == NULL)
    cli_out_of_memory();
  return value;
}

void cli_set(json_t *object, const char *key, json_t *value)
{
  if (json_object_set_new(object, key, cli_checked(value)) != 0)
    cli_out_of_memory();
}

json_t *cli_strings_json(char **strings, size_t n)
{
  json_t *array = cli_checked(json_array());
  for (size_t i = 0; i < n; i++)
    if (json_array_append_new(array, cli_checked(json_string(strings[i]))) != 0)
      cli_out_of_memory();
  return array;
}

/* The positional arguments from first on, commas splitting them too. */
char **cli_positional_list(const struct cli_args *args, size_t first, size_t *n)
{
  char **strings = NULL;
  *n = 0;
  for (size_t i = first; i < args->n_positional; i++)
    cli_strings_split(&strings, n, args->positional[i]);
  return strings;
}

/* A whole number in [min, max] from an option's value; false after a usage
 * error. */
bool cli_number_arg(const struct cli_context *context, const char *option,
                    const char *value, long long min, long long max,
                    long long *out)
{
  char *end;
  errno = 0;
  long long n = strtoll(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || n < min || n > max ||
      value[0] == '-' || value[0] == '+') {
    cli_usage_error(context->command, "%s: \"%s\" is not a number %lld..%lld",
                    option, value, min, max);
    return false;
  }
  *out = n;
  return true;
}

/* --page-size N, cli_checked, into *size (NULL when not given). Returns
 * CLI_EXIT_OK or CLI_EXIT_USAGE (printed). */
int cli_page_size(const struct cli_context *context,
                  const struct cli_args *args, const char **size)
{
  long long n;
  *size = cli_arg(args, "page-size");
  if (*size == NULL)
    return CLI_EXIT_OK;
  if (!cli_number_arg(context, "--page-size", *size, 1, 1000, &n))
    return CLI_EXIT_USAGE;
  return CLI_EXIT_OK;
}

/* One request whose answer is one object, printed. */
int cli_show_call(const struct cli_context *context, const char *method,
                  const char *path, const json_t *body)
{
  struct cli_response response;
  int r = cli_call(context, method, path, body, &response);
  if (r != CLI_EXIT_OK)
    return r;
  r = cli_show(context, &response);
  cli_response_free(&response);
  return r;
}

/* prefix, then name escaped as one path segment, then suffix. */
char *cli_item_path(const char *prefix, const char *name, const char *suffix)
{
  char *segment = cli_segment(name);
  char *path = cli_path("%s%s%s", prefix, segment, suffix);
  free(segment);
  return path;
}

/* cli_show_call on the path cli_item_path() makes. */
int cli_show_call_on(const struct cli_context *context, const char *method,
                     const char *prefix, const char *name, const char *suffix,
                     const json_t *body)
{
  char *path = cli_item_path(prefix, name, suffix);
  int r = cli_show_call(context, method, path, body);
  free(path);
  return r;
}

char *cli_acceptance_text(const json_t *object, const char *key)
{
  const json_t *v = json_object_get(object, key);
  return cli_strdup(json_is_boolean(v) ? (json_is_true(v) ? "required" : "auto")
                                       : "-");
}

char *cli_sources_text(const json_t *object, const char *key)
{
  const json_t *v = json_object_get(object, key);
  if (json_is_array(v) && json_array_size(v) == 0)
    return cli_strdup("any");
  return cli_value_text(v);
}

char *cli_state_query(const struct cli_args *args)
{
  const char *state = cli_arg(args, "state");
  if (state == NULL)
    return NULL;
  char *segment = cli_segment(state);
  char *query = cli_path("state=%s", segment);
  free(segment);
  return query;
}
