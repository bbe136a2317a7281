/* nlbctl's commands: one function per resource and verb, each turning its
 * arguments into API requests and the answers into output. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define N_COLUMNS(c) (sizeof(c) / sizeof((c)[0]))

/* Without --follow, the event stream is read until it stays quiet this
 * long: the API replays stored events at once, then waits for new ones. */
#define EVENTS_IDLE_MS 1000L

static json_t *checked(json_t *value)
{
  if (value == NULL)
    cli_out_of_memory();
  return value;
}

static void set(json_t *object, const char *key, json_t *value)
{
  if (json_object_set_new(object, key, checked(value)) != 0)
    cli_out_of_memory();
}

static json_t *strings_json(char **strings, size_t n)
{
  json_t *array = checked(json_array());
  for (size_t i = 0; i < n; i++)
    if (json_array_append_new(array, checked(json_string(strings[i]))) != 0)
      cli_out_of_memory();
  return array;
}

/* The positional arguments from first on, commas splitting them too. */
static char **positional_list(const struct cli_args *args, size_t first,
                              size_t *n)
{
  char **strings = NULL;
  *n = 0;
  for (size_t i = first; i < args->n_positional; i++)
    cli_strings_split(&strings, n, args->positional[i]);
  return strings;
}

/* A whole number in [min, max] from an option's value; false after a usage
 * error. */
static bool number_arg(const struct cli_context *context, const char *option,
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

/* --page-size N, checked, into *size (NULL when not given). Returns
 * CLI_EXIT_OK or CLI_EXIT_USAGE (printed). */
static int page_size(const struct cli_context *context,
                     const struct cli_args *args, const char **size)
{
  long long n;
  *size = cli_arg(args, "page-size");
  if (*size == NULL)
    return CLI_EXIT_OK;
  if (!number_arg(context, "--page-size", *size, 1, 1000, &n))
    return CLI_EXIT_USAGE;
  return CLI_EXIT_OK;
}

/* One request whose answer is one object, printed. */
static int show_call(const struct cli_context *context, const char *method,
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
static char *item_path(const char *prefix, const char *name, const char *suffix)
{
  char *segment = cli_segment(name);
  char *path = cli_path("%s%s%s", prefix, segment, suffix);
  free(segment);
  return path;
}

/* show_call on the path item_path() makes. */
static int show_call_on(const struct cli_context *context, const char *method,
                        const char *prefix, const char *name,
                        const char *suffix, const json_t *body)
{
  char *path = item_path(prefix, name, suffix);
  int r = show_call(context, method, path, body);
  free(path);
  return r;
}

static char *acceptance_text(const json_t *object, const char *key)
{
  const json_t *v = json_object_get(object, key);
  return cli_strdup(json_is_boolean(v) ? (json_is_true(v) ? "required" : "auto")
                                       : "-");
}

static char *sources_text(const json_t *object, const char *key)
{
  const json_t *v = json_object_get(object, key);
  if (json_is_array(v) && json_array_size(v) == 0)
    return cli_strdup("any");
  return cli_value_text(v);
}

#define PAGE_SIZE_OPTION                                                       \
  {                                                                            \
    "page-size", 0, "N", false,                                                \
        "ask for N items a page (1..1000); every page is read"                 \
  }
#define END_OPTIONS                                                            \
  {                                                                            \
    NULL, 0, NULL, false, NULL                                                 \
  }

/* ---- services ------------------------------------------------------------ */

static int services_list(struct cli_context *context,
                         const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"ID", "id", NULL},
      {"NAME", "name", NULL},
      {"OWNER", "owner", NULL},
      {"LOAD-BALANCER", "load_balancer", NULL},
      {"PORTS", "ports", NULL},
      {"ACCEPTANCE", "acceptance_required", acceptance_text},
      {"ALLOWED", "allowed_principals", NULL},
  };
  const char *size;
  if (page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  return cli_show_list(context, "/v1/services", NULL, "services", size, columns,
                       N_COLUMNS(columns), "services");
}

static int service_call(struct cli_context *context, const char *method,
                        const char *service, const json_t *body)
{
  char *segment = cli_segment(service);
  char *path = cli_path("/v1/services/%s", segment);
  int r = show_call(context, method, path, body);
  free(path);
  free(segment);
  return r;
}

static int services_get(struct cli_context *context,
                        const struct cli_args *args)
{
  return service_call(context, "GET", args->positional[0], NULL);
}

/* --acceptance / --no-acceptance / --connection-limit /
 * --private-dns-name / --no-private-dns-name into body; false after a
 * usage error. */
static bool service_settings(const struct cli_context *context,
                             const struct cli_args *args, json_t *body)
{
  bool on = cli_arg(args, "acceptance") != NULL;
  bool off = cli_arg(args, "no-acceptance") != NULL;
  const char *limit = cli_arg(args, "connection-limit");
  const char *dns_name = cli_arg(args, "private-dns-name");
  bool no_dns_name = cli_arg(args, "no-private-dns-name") != NULL;
  long long n;

  if (on && off) {
    cli_usage_error(context->command,
                    "--acceptance and --no-acceptance contradict each other");
    return false;
  }
  if (dns_name != NULL && no_dns_name) {
    cli_usage_error(context->command, "--private-dns-name and "
                                      "--no-private-dns-name contradict each "
                                      "other");
    return false;
  }
  if (dns_name != NULL || no_dns_name)
    set(body, "private_dns_name", json_string(no_dns_name ? "" : dns_name));
  if (on || off)
    set(body, "acceptance_required", json_boolean(on));
  if (limit != NULL) {
    if (!number_arg(context, "--connection-limit", limit, 0, INT32_MAX, &n))
      return false;
    set(body, "connection_limit", json_integer(n));
  }
  return true;
}

static int services_create(struct cli_context *context,
                           const struct cli_args *args)
{
  const char *lb = cli_arg(args, "load-balancer");
  size_t n;
  int r = CLI_EXIT_USAGE;

  if (lb == NULL)
    return cli_usage_error(context->command, "--load-balancer is required");
  json_t *body = checked(json_object());
  set(body, "name", json_string(args->positional[0]));
  set(body, "load_balancer", json_string(lb));
  char **allow = cli_arg_list(args, "allow", &n);
  if (allow != NULL)
    set(body, "allowed_principals", strings_json(allow, n));
  cli_strings_free(allow, n);
  if (service_settings(context, args, body))
    r = show_call(context, "POST", "/v1/services", body);
  json_decref(body);
  return r;
}

static int services_update(struct cli_context *context,
                           const struct cli_args *args)
{
  int r = CLI_EXIT_USAGE;
  json_t *body = checked(json_object());

  if (!service_settings(context, args, body))
    goto out;
  if (json_object_size(body) == 0) {
    cli_usage_error(context->command,
                    "nothing to change: give --acceptance, --no-acceptance, "
                    "--connection-limit, --private-dns-name or "
                    "--no-private-dns-name");
    goto out;
  }
  r = service_call(context, "PATCH", args->positional[0], body);
out:
  json_decref(body);
  return r;
}

static int services_delete(struct cli_context *context,
                           const struct cli_args *args)
{
  return service_call(context, "DELETE", args->positional[0], NULL);
}

/* ---- permissions --------------------------------------------------------- */

static int permissions_call(struct cli_context *context, const char *method,
                            const char *service, const json_t *body)
{
  static const struct cli_column columns[] = {
      {"ALLOWED-PRINCIPAL", "principal", NULL},
  };
  struct cli_response response;
  char *segment = cli_segment(service);
  char *path = cli_path("/v1/services/%s/permissions", segment);
  int r = cli_call(context, method, path, body, &response);
  free(path);
  free(segment);
  if (r != CLI_EXIT_OK)
    return r;
  if (context->format == CLI_FORMAT_JSON) {
    cli_print_raw(response.body, response.len);
  } else {
    json_t *answer = cli_answer_json(&response);
    json_t *rows = checked(json_array()), *p;
    size_t i;
    json_array_foreach(json_object_get(answer, "allowed_principals"), i, p)
    {
      json_array_append_new(rows, json_pack("{s:O}", "principal", p));
    }
    if (answer != NULL)
      cli_print_table(rows, columns, N_COLUMNS(columns), "allowed principals");
    else
      r = CLI_EXIT_ERROR;
    json_decref(rows);
    json_decref(answer);
  }
  cli_response_free(&response);
  return r;
}

static int permissions_get(struct cli_context *context,
                           const struct cli_args *args)
{
  return permissions_call(context, "GET", args->positional[0], NULL);
}

static int permissions_change(struct cli_context *context,
                              const struct cli_args *args, const char *key)
{
  size_t n;
  char **principals = positional_list(args, 1, &n);
  if (n == 0)
    return cli_usage_error(context->command, "no principal given");
  json_t *body = checked(json_object());
  set(body, key, strings_json(principals, n));
  cli_strings_free(principals, n);
  if (cli_arg(args, "reject-endpoints") != NULL)
    set(body, "reject_endpoints", json_true());
  int r = permissions_call(context, "PATCH", args->positional[0], body);
  json_decref(body);
  return r;
}

static int permissions_add(struct cli_context *context,
                           const struct cli_args *args)
{
  return permissions_change(context, args, "add");
}

static int permissions_remove(struct cli_context *context,
                              const struct cli_args *args)
{
  return permissions_change(context, args, "remove");
}

/* ---- connections --------------------------------------------------------- */

static char *state_query(const struct cli_args *args)
{
  const char *state = cli_arg(args, "state");
  if (state == NULL)
    return NULL;
  char *segment = cli_segment(state);
  char *query = cli_path("state=%s", segment);
  free(segment);
  return query;
}

static int connections_list(struct cli_context *context,
                            const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"ENDPOINT", "endpoint_id", NULL}, {"CONSUMER", "consumer", NULL},
      {"STATE", "state", NULL},          {"NETWORK", "network", NULL},
      {"ADDRESS", "address", NULL},      {"UPDATED", "updated_at", NULL},
  };
  const char *size;
  if (page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  char *segment = cli_segment(args->positional[0]);
  char *path = cli_path("/v1/services/%s/connections", segment);
  char *query = state_query(args);
  int r = cli_show_list(context, path, query, "connections", size, columns,
                        N_COLUMNS(columns), "connections");
  free(query);
  free(path);
  free(segment);
  return r;
}

/* The status an item's error code has as a whole answer, so a batch's
 * failures read like every other API error. */
static int code_status(const char *code)
{
  static const struct {
    const char *code;
    int status;
  } codes[] = {
      {"InvalidValue", 400},  {"Forbidden", 403},        {"NotFound", 404},
      {"AlreadyExists", 409}, {"InvalidState", 409},     {"AddressInUse", 409},
      {"LimitExceeded", 409}, {"AddressExhausted", 409}, {"Internal", 500},
  };
  for (size_t i = 0; code != NULL && i < N_COLUMNS(codes); i++)
    if (strcmp(codes[i].code, code) == 0)
      return codes[i].status;
  return 0;
}

/* Adds the IDs of the connections of consumers that the decision can
 * apply to (pending; for reject also available). */
static int consumer_connections(struct cli_context *context,
                                const char *service, char **consumers, size_t n,
                                bool accept, json_t *ids)
{
  json_t *list, *connection;
  size_t i;
  char *segment = cli_segment(service);
  char *path = cli_path("/v1/services/%s/connections", segment);
  int r = cli_list(context, path, NULL, "connections", NULL, &list, NULL);
  free(path);
  free(segment);
  if (r != CLI_EXIT_OK)
    return r;
  for (size_t k = 0; k < n; k++) {
    size_t found = 0;
    json_array_foreach(json_object_get(list, "connections"), i, connection)
    {
      const char *consumer =
          json_string_value(json_object_get(connection, "consumer"));
      const char *state =
          json_string_value(json_object_get(connection, "state"));
      if (consumer == NULL || state == NULL ||
          strcmp(consumer, consumers[k]) != 0)
        continue;
      if (strcmp(state, "pendingAcceptance") == 0 ||
          (!accept && strcmp(state, "available") == 0)) {
        json_array_append(ids, json_object_get(connection, "endpoint_id"));
        found++;
      }
    }
    if (found == 0) {
      fprintf(stderr, "nlbctl: consumer %s has no %s connection on %s\n",
              consumers[k], accept ? "pending" : "pending or available",
              service);
      r = CLI_EXIT_ERROR;
    }
  }
  json_decref(list);
  return r;
}

static bool in_unsuccessful(const json_t *unsuccessful, const char *id)
{
  json_t *item;
  size_t i;
  json_array_foreach(unsuccessful, i, item)
  {
    const char *failed =
        json_string_value(json_object_get(item, "endpoint_id"));
    if (failed != NULL && strcmp(failed, id) == 0)
      return true;
  }
  return false;
}

/* Prints what the batch did: the IDs it changed (table), each failure on
 * stderr as "ID: STATUS CODE: message". */
static int decision_report(const struct cli_context *context,
                           const struct cli_response *response,
                           const json_t *ids, bool accept)
{
  json_t *answer = cli_answer_json(response), *item;
  json_t *unsuccessful = json_object_get(answer, "unsuccessful");
  size_t i;

  if (answer == NULL)
    return CLI_EXIT_ERROR;
  if (context->format == CLI_FORMAT_JSON)
    cli_print_raw(response->body, response->len);
  json_array_foreach(ids, i, item)
  {
    const char *id = json_string_value(item);
    if (context->format == CLI_FORMAT_TABLE &&
        !in_unsuccessful(unsuccessful, id))
      printf("%s %s\n", id, accept ? "accepted" : "rejected");
  }
  json_array_foreach(unsuccessful, i, item)
  {
    json_t *error = json_object_get(item, "error");
    const char *id = json_string_value(json_object_get(item, "endpoint_id"));
    const char *code = json_string_value(json_object_get(error, "code"));
    const char *message = json_string_value(json_object_get(error, "message"));
    fprintf(stderr, "%s: %d %s: %s\n", id != NULL ? id : "?", code_status(code),
            code != NULL ? code : "?", message != NULL ? message : "");
  }
  int r = json_array_size(unsuccessful) > 0 ? CLI_EXIT_ERROR : CLI_EXIT_OK;
  json_decref(answer);
  return r;
}

static int connections_decide(struct cli_context *context,
                              const struct cli_args *args, bool accept)
{
  const char *service = args->positional[0];
  size_t n_given, n_consumers;
  char **given = positional_list(args, 1, &n_given);
  char **consumers = cli_arg_list(args, "consumer", &n_consumers);
  json_t *ids = strings_json(given, n_given);
  struct cli_response response;
  int r;

  cli_strings_free(given, n_given);
  if (n_given == 0 && n_consumers == 0) {
    r = cli_usage_error(context->command,
                        "name the endpoints: their IDs, or --consumer NAME");
    goto out;
  }
  if (n_consumers > 0) {
    r = consumer_connections(context, service, consumers, n_consumers, accept,
                             ids);
    if (r != CLI_EXIT_OK)
      goto out;
  }
  json_t *body = json_pack("{s:O}", "endpoint_ids", ids);
  char *segment = cli_segment(service);
  char *path = cli_path("/v1/services/%s/connections/%s", segment,
                        accept ? "accept" : "reject");
  r = cli_call(context, "POST", path, checked(body), &response);
  free(path);
  free(segment);
  json_decref(body);
  if (r == CLI_EXIT_OK) {
    r = decision_report(context, &response, ids, accept);
    cli_response_free(&response);
  }
out:
  cli_strings_free(consumers, n_consumers);
  json_decref(ids);
  return r;
}

static int connections_accept(struct cli_context *context,
                              const struct cli_args *args)
{
  return connections_decide(context, args, true);
}

static int connections_reject(struct cli_context *context,
                              const struct cli_args *args)
{
  return connections_decide(context, args, false);
}

/* ---- available services -------------------------------------------------- */

static int available_services(struct cli_context *context,
                              const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"ID", "id", NULL},
      {"NAME", "name", NULL},
      {"OWNER", "owner", NULL},
      {"PORTS", "ports", NULL},
      {"ACCEPTANCE", "acceptance_required", acceptance_text},
  };
  const char *size;
  if (page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  return cli_show_list(context, "/v1/available-services", NULL, "services",
                       size, columns, N_COLUMNS(columns), "available services");
}

/* ---- endpoints ----------------------------------------------------------- */

static int endpoints_list(struct cli_context *context,
                          const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"ID", "id", NULL},
      {"SERVICE", "service", NULL},
      {"CONSUMER", "consumer", NULL},
      {"NETWORK", "network", NULL},
      {"ADDRESS", "address", NULL},
      {"STATE", "state", NULL},
      {"SOURCES", "allowed_sources", sources_text},
      {"REASON", "reason", NULL},
  };
  const char *size;
  if (page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  char *query = state_query(args);
  int r = cli_show_list(context, "/v1/endpoints", query, "endpoints", size,
                        columns, N_COLUMNS(columns), "endpoints");
  free(query);
  return r;
}

/* METHOD on the endpoint args->positional[0] names. */
static int endpoint_call(struct cli_context *context,
                         const struct cli_args *args, const char *method,
                         const json_t *body)
{
  char *id;
  int r = cli_endpoint_id(context, args->positional[0], &id);
  if (r != CLI_EXIT_OK)
    return r;
  char *segment = cli_segment(id);
  char *path = cli_path("/v1/endpoints/%s", segment);
  r = show_call(context, method, path, body);
  free(path);
  free(segment);
  free(id);
  return r;
}

static int endpoints_get(struct cli_context *context,
                         const struct cli_args *args)
{
  return endpoint_call(context, args, "GET", NULL);
}

static int endpoints_create(struct cli_context *context,
                            const struct cli_args *args)
{
  const char *service = cli_arg(args, "service");
  const char *network = cli_arg(args, "network");
  const char *address = cli_arg(args, "address");
  size_t n;

  if (args->n_positional > 0) {
    if (service != NULL && strcmp(service, args->positional[0]) != 0)
      return cli_usage_error(context->command,
                             "two services given: %s and --service %s",
                             args->positional[0], service);
    service = args->positional[0];
  }
  if (service == NULL)
    return cli_usage_error(context->command, "--service is required");
  if (network == NULL)
    return cli_usage_error(context->command, "--network is required");
  json_t *body = checked(json_object());
  set(body, "service", json_string(service));
  set(body, "network", json_string(network));
  if (address != NULL)
    set(body, "address", json_string(address));
  char **sources = cli_arg_list(args, "allow-source", &n);
  if (sources != NULL)
    set(body, "allowed_sources", strings_json(sources, n));
  cli_strings_free(sources, n);
  if (cli_arg(args, "private-dns") != NULL)
    set(body, "private_dns", json_true());
  int r = show_call(context, "POST", "/v1/endpoints", body);
  json_decref(body);
  return r;
}

static int endpoints_update(struct cli_context *context,
                            const struct cli_args *args)
{
  bool any = cli_arg(args, "any-source") != NULL;
  bool dns_on = cli_arg(args, "private-dns") != NULL;
  bool dns_off = cli_arg(args, "no-private-dns") != NULL;
  size_t n;
  char **sources = cli_arg_list(args, "allow-source", &n);
  int r;

  if ((any && sources != NULL) || (dns_on && dns_off) ||
      (!any && sources == NULL && !dns_on && !dns_off)) {
    cli_strings_free(sources, n);
    return cli_usage_error(
        context->command,
        any && sources != NULL
            ? "--any-source and --allow-source contradict each other"
        : dns_on && dns_off
            ? "--private-dns and --no-private-dns contradict each other"
            : "give --allow-source CIDR, --any-source, --private-dns or "
              "--no-private-dns");
  }
  json_t *body = checked(json_object());
  if (any || sources != NULL)
    set(body, "allowed_sources", strings_json(sources, n));
  if (dns_on || dns_off)
    set(body, "private_dns", json_boolean(dns_on));
  cli_strings_free(sources, n);
  r = endpoint_call(context, args, "PATCH", body);
  json_decref(body);
  return r;
}

static int endpoints_delete(struct cli_context *context,
                            const struct cli_args *args)
{
  return endpoint_call(context, args, "DELETE", NULL);
}

/* ---- target groups and targets ------------------------------------------ */

static const struct cli_column target_columns[] = {
    {"TARGET-GROUP", "target_group", NULL},
    {"ADDRESS", "address", NULL},
    {"WEIGHT", "weight", NULL},
    {"STATE", "state", NULL},
    {"REASON", "reason", NULL},
};

/* One row per target, its group's name first; a group without targets
 * still gets a row. */
static json_t *target_rows(const json_t *groups)
{
  json_t *rows = checked(json_array()), *group, *target;
  size_t i, k;
  json_array_foreach(groups, i, group)
  {
    json_t *name = json_object_get(group, "name");
    json_t *targets = json_object_get(group, "targets");
    if (json_array_size(targets) == 0)
      json_array_append_new(rows, json_pack("{s:O*}", "target_group", name));
    json_array_foreach(targets, k, target)
    {
      json_t *row = checked(json_deep_copy(target));
      if (name != NULL)
        json_object_set(row, "target_group", name);
      json_array_append_new(rows, row);
    }
  }
  return rows;
}

static int target_groups_list(struct cli_context *context,
                              const struct cli_args *args)
{
  struct cli_response first = {0};
  json_t *merged;
  const char *size;
  if (page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  int r = cli_list(context, "/v1/target-groups", NULL, "target_groups", size,
                   &merged, &first);
  if (r != CLI_EXIT_OK)
    return r;
  if (context->format == CLI_FORMAT_JSON) {
    cli_print_list_json(merged, &first);
  } else {
    json_t *rows = target_rows(json_object_get(merged, "target_groups"));
    cli_print_table(rows, target_columns, N_COLUMNS(target_columns),
                    "target groups");
    json_decref(rows);
  }
  cli_response_free(&first);
  json_decref(merged);
  return CLI_EXIT_OK;
}

static int target_groups_get(struct cli_context *context,
                             const struct cli_args *args)
{
  struct cli_response response;
  char *segment = cli_segment(args->positional[0]);
  char *path = cli_path("/v1/target-groups/%s", segment);
  int r = cli_call(context, "GET", path, NULL, &response);
  free(path);
  free(segment);
  if (r != CLI_EXIT_OK)
    return r;
  if (context->format == CLI_FORMAT_JSON) {
    cli_print_raw(response.body, response.len);
  } else {
    json_t *group = cli_answer_json(&response);
    json_t *groups = json_pack("[O*]", group);
    json_t *rows = target_rows(groups);
    if (group == NULL)
      r = CLI_EXIT_ERROR;
    else
      cli_print_table(rows, target_columns, N_COLUMNS(target_columns),
                      "targets");
    json_decref(rows);
    json_decref(groups);
    json_decref(group);
  }
  cli_response_free(&response);
  return r;
}

static int targets_add(struct cli_context *context, const struct cli_args *args)
{
  const char *weight = cli_arg(args, "weight");
  long long n;

  json_t *body = checked(json_object());
  set(body, "address", json_string(args->positional[1]));
  if (weight != NULL) {
    if (!number_arg(context, "--weight", weight, 1, 1000, &n)) {
      json_decref(body);
      return CLI_EXIT_USAGE;
    }
    set(body, "weight", json_integer(n));
  }
  int r = show_call_on(context, "POST", "/v1/target-groups/",
                       args->positional[0], "/targets", body);
  json_decref(body);
  return r;
}

static int targets_remove(struct cli_context *context,
                          const struct cli_args *args)
{
  char *targets =
      item_path("/v1/target-groups/", args->positional[0], "/targets/");
  int r =
      show_call_on(context, "DELETE", targets, args->positional[1], "", NULL);
  free(targets);
  return r;
}

/* ---- events -------------------------------------------------------------- */

struct events {
  const struct cli_context *context;
  bool header_done;
  size_t count;
  char last_seq[32]; /* "" until an event was seen */
};

static void event_row(const json_t *event)
{
  static const struct {
    const char *key;
    int width;
  } columns[] = {{"seq", 6},      {"time", 24},       {"type", 7},
                 {"state", 17},   {"service_id", 21}, {"endpoint_id", 20},
                 {"principal", 0}};
  for (size_t i = 0; i < N_COLUMNS(columns); i++) {
    char *text = cli_value_text(json_object_get(event, columns[i].key));
    if (columns[i].width > 0)
      printf("%-*s   ", columns[i].width, text);
    else
      printf("%s\n", text);
    free(text);
  }
}

static int on_event(const char *line, void *arg)
{
  struct events *events = arg;
  json_t *event;

  if (line[0] == '\0')
    return 0;
  event = json_loads(line, 0, NULL);
  json_t *seq = json_object_get(event, "seq");
  if (json_is_integer(seq))
    snprintf(events->last_seq, sizeof events->last_seq, "%" JSON_INTEGER_FORMAT,
             json_integer_value(seq));
  events->count++;
  if (events->context->format == CLI_FORMAT_JSON || event == NULL) {
    puts(line);
  } else {
    if (!events->header_done) {
      printf("%-6s   %-24s   %-7s   %-17s   %-21s   %-20s   %s\n", "SEQ",
             "TIME", "TYPE", "STATE", "SERVICE", "ENDPOINT", "PRINCIPAL");
      events->header_done = true;
    }
    event_row(event);
  }
  json_decref(event);
  fflush(stdout);
  return 0;
}

static bool is_number(const char *s)
{
  if (*s == '\0' || strlen(s) > 20)
    return false;
  for (; *s != '\0'; s++)
    if (*s < '0' || *s > '9')
      return false;
  return true;
}

static int events_read(struct cli_context *context, const struct cli_args *args)
{
  bool follow = cli_arg(args, "follow") != NULL;
  const char *after = cli_arg(args, "after");
  struct events events = {.context = context};
  struct cli_response response;

  if (after != NULL && !is_number(after))
    return cli_usage_error(context->command,
                           "--after: \"%s\" is not an event sequence number",
                           after);
  /* Without --follow, what is stored; with it, from now on. */
  if (after == NULL && !follow)
    after = "0";
  for (;;) {
    char *path = after != NULL ? cli_path("/v1/events?after=%s", after)
                               : cli_path("/v1/events");
    time_t started = time(NULL);
    int r =
        cli_http_stream(&context->settings, path, follow ? 0 : EVENTS_IDLE_MS,
                        on_event, &events, &response);
    free(path);
    if (r != CLI_EXIT_OK)
      return r;
    if (response.status < 200 || response.status >= 300) {
      r = cli_print_api_error(&response);
      cli_response_free(&response);
      return r;
    }
    cli_response_free(&response);
    if (!follow)
      break;
    /* The server ended the stream (a reload does): go on from the last
     * event seen, as the API asks of its clients. */
    if (events.last_seq[0] != '\0')
      after = events.last_seq;
    if (time(NULL) - started < 1) {
      struct timespec pause = {1, 0};
      nanosleep(&pause, NULL);
    }
  }
  if (events.count == 0 && context->format == CLI_FORMAT_TABLE)
    fputs("No events found.\n", stderr);
  return CLI_EXIT_OK;
}

/* ---- nodes --------------------------------------------------------------- */

static int nodes_list(struct cli_context *context, const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"NAME", "name", NULL},           {"STATE", "state", NULL},
      {"LAST-SEEN", "last_seen", NULL}, {"APPLIED-SEQ", "applied_seq", NULL},
      {"VERSION", "version", NULL},
  };
  const char *size;
  if (page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  return cli_show_list(context, "/v1/nodes", NULL, "nodes", size, columns,
                       N_COLUMNS(columns), "nodes");
}

static int nodes_drain(struct cli_context *context, const struct cli_args *args)
{
  return show_call_on(context, "POST", "/v1/nodes/", args->positional[0],
                      "/drain", NULL);
}

/* ---- principals, tokens, networks (operator) ----------------------------- */

static int principals_list(struct cli_context *context,
                           const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"NAME", "name", NULL},
      {"ROLE", "role", NULL},
      {"SOURCE", "source", NULL},
      {"CREATED", "created_at", NULL},
  };
  const char *size;
  if (page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  return cli_show_list(context, "/v1/principals", NULL, "principals", size,
                       columns, N_COLUMNS(columns), "principals");
}

/* An answer that carries a new token: shown, with a reminder (on stderr,
 * so a script capturing stdout gets the answer alone) that it is the only
 * time. */
static int show_new_token(struct cli_context *context, const char *path,
                          const json_t *body)
{
  int r = show_call(context, "POST", path, body);
  if (r == CLI_EXIT_OK && context->format == CLI_FORMAT_TABLE)
    fputs("Save the token now: nlb keeps only its hash and never shows it "
          "again.\n",
          stderr);
  return r;
}

static int principals_create(struct cli_context *context,
                             const struct cli_args *args)
{
  const char *role = cli_arg(args, "role");

  if (role == NULL)
    return cli_usage_error(context->command,
                           "--role is required: operator, provider or "
                           "consumer");
  json_t *body = checked(json_object());
  set(body, "name", json_string(args->positional[0]));
  set(body, "role", json_string(role));
  int r = show_new_token(context, "/v1/principals", body);
  json_decref(body);
  return r;
}

static int principals_delete(struct cli_context *context,
                             const struct cli_args *args)
{
  return show_call_on(context, "DELETE", "/v1/principals/", args->positional[0],
                      "", NULL);
}

static int tokens_list(struct cli_context *context, const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"ID", "id", NULL},
      {"CREATED", "created_at", NULL},
      {"EXPIRES", "expires_at", NULL},
      {"LAST-USED", "last_used_at", NULL},
  };
  const char *size;
  if (page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  char *path = item_path("/v1/principals/", args->positional[0], "/tokens");
  int r = cli_show_list(context, path, NULL, "tokens", size, columns,
                        N_COLUMNS(columns), "tokens");
  free(path);
  return r;
}

/* "90d", "12h", "30m", "45s": seconds, or -1. */
static long long duration_seconds(const char *text)
{
  char *end;
  errno = 0;
  long long n = strtoll(text, &end, 10);
  long long unit;

  if (errno != 0 || end == text || text[0] == '-' || text[0] == '+' || n <= 0 ||
      end[0] == '\0' || end[1] != '\0')
    return -1;
  switch (*end) {
  case 's':
    unit = 1;
    break;
  case 'm':
    unit = 60;
    break;
  case 'h':
    unit = 3600;
    break;
  case 'd':
    unit = 86400;
    break;
  default:
    return -1;
  }
  return n > 100LL * 365 * 86400 / unit ? -1 : n * unit;
}

static int tokens_create(struct cli_context *context,
                         const struct cli_args *args)
{
  const char *at = cli_arg(args, "expires-at");
  const char *in = cli_arg(args, "expires-in");
  char when[32];

  if (at != NULL && in != NULL)
    return cli_usage_error(context->command,
                           "give --expires-at or --expires-in, not both");
  if (in != NULL) {
    long long seconds = duration_seconds(in);
    time_t t = time(NULL) + (time_t)seconds;
    struct tm tm;
    if (seconds < 0)
      return cli_usage_error(context->command,
                             "--expires-in: \"%s\" is not a duration such as "
                             "90d, 12h, 30m or 45s",
                             in);
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    at = when;
  }
  json_t *body = checked(json_object());
  if (at != NULL)
    set(body, "expires_at", json_string(at));
  char *path = item_path("/v1/principals/", args->positional[0], "/tokens");
  int r = show_new_token(context, path, body);
  free(path);
  json_decref(body);
  return r;
}

static int tokens_revoke(struct cli_context *context,
                         const struct cli_args *args)
{
  char *tokens = item_path("/v1/principals/", args->positional[0], "/tokens/");
  int r =
      show_call_on(context, "DELETE", tokens, args->positional[1], "", NULL);
  free(tokens);
  return r;
}

static int networks_list(struct cli_context *context,
                         const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"NAME", "name", NULL},     {"RANGE", "range", NULL},
      {"NETNS", "netns", NULL},   {"PRINCIPALS", "principals", NULL},
      {"SOURCE", "source", NULL},
  };
  const char *size;
  if (page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  return cli_show_list(context, "/v1/networks", NULL, "networks", size, columns,
                       N_COLUMNS(columns), "networks");
}

static int networks_create(struct cli_context *context,
                           const struct cli_args *args)
{
  const char *range = cli_arg(args, "range");
  const char *netns = cli_arg(args, "netns");
  size_t n;

  if (range == NULL)
    return cli_usage_error(context->command, "--range is required");
  json_t *body = checked(json_object());
  set(body, "name", json_string(args->positional[0]));
  set(body, "range", json_string(range));
  if (netns != NULL)
    set(body, "netns", json_string(netns));
  char **allow = cli_arg_list(args, "allow", &n);
  if (allow != NULL)
    set(body, "principals", strings_json(allow, n));
  cli_strings_free(allow, n);
  int r = show_call(context, "POST", "/v1/networks", body);
  json_decref(body);
  return r;
}

static int networks_delete(struct cli_context *context,
                           const struct cli_args *args)
{
  return show_call_on(context, "DELETE", "/v1/networks/", args->positional[0],
                      "", NULL);
}

/* ---- the table ----------------------------------------------------------- */

static const struct cli_option list_options[] = {PAGE_SIZE_OPTION, END_OPTIONS};
static const struct cli_option no_options[] = {END_OPTIONS};

static const struct cli_option service_create_options[] = {
    {"load-balancer", 0, "LB", false,
     "the load balancer to publish (required)"},
    {"allow", 0, "PRINCIPAL", true,
     "a consumer allowed to connect (repeat, or a,b; \"*\": every "
     "consumer)"},
    {"acceptance", 0, NULL, false,
     "connections wait for the provider's acceptance (the default)"},
    {"no-acceptance", 0, NULL, false,
     "allowed consumers' endpoints are available at once"},
    {"connection-limit", 0, "N", false,
     "live endpoints per consumer (0, the default: no limit)"},
    {"private-dns-name", 0, "NAME", false,
     "your host name for the service, in a DNS domain the operator granted "
     "you; it resolves to each endpoint that opts in"},
    END_OPTIONS};

static const struct cli_option service_update_options[] = {
    {"acceptance", 0, NULL, false, "connections wait for acceptance"},
    {"no-acceptance", 0, NULL, false,
     "new endpoints of allowed consumers are available at once"},
    {"connection-limit", 0, "N", false,
     "live endpoints per consumer (0: no limit)"},
    {"private-dns-name", 0, "NAME", false,
     "your host name for the service (in a domain granted to you)"},
    {"no-private-dns-name", 0, NULL, false, "no private DNS name"},
    END_OPTIONS};

static const struct cli_option permissions_remove_options[] = {
    {"reject-endpoints", 0, NULL, false,
     "also reject the live endpoints of the principals removed"},
    END_OPTIONS};

static const struct cli_option state_list_options[] = {
    {"state", 0, "STATE", false,
     "only this state: pendingAcceptance, available, rejected, deleted, "
     "expired, failed"},
    PAGE_SIZE_OPTION,
    END_OPTIONS};

static const struct cli_option decide_options[] = {
    {"consumer", 0, "NAME", true,
     "every pending connection of this consumer (repeat, or a,b)"},
    END_OPTIONS};

static const struct cli_option reject_options[] = {
    {"consumer", 0, "NAME", true,
     "every pending or available connection of this consumer"},
    END_OPTIONS};

static const struct cli_option endpoint_create_options[] = {
    {"service", 0, "SERVICE", false,
     "the service's name or ID (or give it as the argument)"},
    {"network", 0, "NETWORK", false, "the network to listen in (required)"},
    {"address", 0, "ADDRESS", false,
     "the address in that network (default: the lowest free one)"},
    {"allow-source", 0, "CIDR", true,
     "a client range allowed in (repeat, or a,b; default: any)"},
    {"private-dns", 0, NULL, false,
     "the service's private DNS name resolves to this endpoint, in its "
     "network"},
    END_OPTIONS};

static const struct cli_option endpoint_update_options[] = {
    {"allow-source", 0, "CIDR", true,
     "the client ranges allowed in, replacing the list (repeat, or a,b)"},
    {"any-source", 0, NULL, false, "let every client in"},
    {"private-dns", 0, NULL, false, "opt into the service's private DNS name"},
    {"no-private-dns", 0, NULL, false, "opt out of it"},
    END_OPTIONS};

static const struct cli_option target_add_options[] = {
    {"weight", 0, "N", false, "its share, 1..1000 (default 1)"}, END_OPTIONS};

static const struct cli_option events_options[] = {
    {"follow", 'f', NULL, false,
     "keep printing events as they happen, until interrupted"},
    {"after", 0, "SEQ", false,
     "the events after sequence number SEQ (default: all kept; with "
     "--follow, from now)"},
    END_OPTIONS};

static const struct cli_option principal_create_options[] = {
    {"role", 0, "ROLE", false, "operator, provider or consumer (required)"},
    END_OPTIONS};

static const struct cli_option token_create_options[] = {
    {"expires-at", 0, "TIME", false,
     "when it stops working, RFC 3339 (2030-01-02T03:04:05Z)"},
    {"expires-in", 0, "DURATION", false,
     "when it stops working, from now: 90d, 12h, 30m, 45s"},
    END_OPTIONS};

static const struct cli_option network_create_options[] = {
    {"range", 0, "CIDR", false, "the addresses endpoints get there (required)"},
    {"netns", 0, "NAME", false,
     "the network namespace (the same name on every node; default: "
     "addresses on the host)"},
    {"allow", 0, "PRINCIPAL", true,
     "a consumer that may place endpoints there (repeat, or a,b; default: "
     "any)"},
    END_OPTIONS};

const struct cli_resource cli_resources[] = {
    {"services", "Endpoint services: a provider's load balancer, published"},
    {"permissions", "The consumers allowed to connect to a service"},
    {"connections", "The endpoints consumers made to a service: accept or "
                    "reject them"},
    {"available-services", "The services a consumer may connect to"},
    {"endpoints", "A consumer's endpoints: a service's listeners in its "
                  "network"},
    {"target-groups", "Target groups and the health of their targets"},
    {"targets", "Register and deregister targets at run time"},
    {"events", "The endpoint events: connect, accept, reject, delete, ..."},
    {"nodes", "The nlbd nodes sharing the registry"},
    {"principals", "Who may call the API: operators, providers, consumers"},
    {"tokens", "A principal's API tokens: create, rotate, revoke"},
    {"networks", "Where consumers' endpoints live"},
    {NULL, NULL},
};

#define ANY SIZE_MAX

const struct cli_command cli_commands[] = {
    {"services", "list", "[--page-size N]", "List the services you own",
     "An operator sees every service.\n", list_options, 0, 0, services_list},
    {"services", "get", "SERVICE", "Show a service (by name or ID)", NULL,
     no_options, 1, 1, services_get},
    {"services", "create",
     "NAME --load-balancer LB [--allow PRINCIPAL]... [--no-acceptance] "
     "[--connection-limit N] [--private-dns-name NAME]",
     "Publish a load balancer as a service",
     "Example:\n  nlbctl services create payments --load-balancer payments-lb "
     "--allow shop\n",
     service_create_options, 1, 1, services_create},
    {"services", "update",
     "SERVICE [--acceptance|--no-acceptance] [--connection-limit N] "
     "[--private-dns-name NAME|--no-private-dns-name]",
     "Change acceptance, the limit or the private DNS name", NULL,
     service_update_options, 1, 1, services_update},
    {"services", "delete", "SERVICE", "Delete a service",
     "The API refuses (409) while endpoints are pendingAcceptance or "
     "available:\nreject them first.\n",
     no_options, 1, 1, services_delete},

    {"permissions", "get", "SERVICE", "List the principals allowed to connect",
     NULL, no_options, 1, 1, permissions_get},
    {"permissions", "add", "SERVICE PRINCIPAL...", "Allow principals",
     "\"*\" allows every consumer.\n", no_options, 2, ANY, permissions_add},
    {"permissions", "remove", "SERVICE PRINCIPAL... [--reject-endpoints]",
     "Disallow principals",
     "Their existing endpoints stay, unless --reject-endpoints.\n",
     permissions_remove_options, 2, ANY, permissions_remove},

    {"connections", "list", "SERVICE [--state STATE] [--page-size N]",
     "List the endpoints consumers made to a service", NULL, state_list_options,
     1, 1, connections_list},
    {"connections", "accept", "SERVICE [EP-ID...] [--consumer NAME]...",
     "Accept pending connections",
     "Accepted endpoints become available. Each endpoint that cannot be\n"
     "accepted is printed on stderr, and nlbctl exits 1.\n",
     decide_options, 1, ANY, connections_accept},
    {"connections", "reject", "SERVICE [EP-ID...] [--consumer NAME]...",
     "Reject pending connections, or revoke available ones",
     "Rejecting an available endpoint closes its listeners and resets its\n"
     "flows. Each endpoint that cannot be rejected is printed on stderr,\n"
     "and nlbctl exits 1.\n",
     reject_options, 1, ANY, connections_reject},

    {"available-services", NULL, "[list] [--page-size N]",
     "List the services you may connect to", NULL, list_options, 0, 0,
     available_services},

    {"endpoints", "list", "[--state STATE] [--page-size N]",
     "List your endpoints", "An operator sees every consumer's.\n",
     state_list_options, 0, 0, endpoints_list},
    {"endpoints", "get", "ENDPOINT", "Show an endpoint",
     "ENDPOINT is an ID (ep-...), or a service's name or ID when you have\n"
     "one live endpoint of it (or one endpoint at all).\n",
     no_options, 1, 1, endpoints_get},
    {"endpoints", "create",
     "--service SERVICE --network NETWORK [--address ADDRESS] "
     "[--allow-source CIDR]... [--private-dns]",
     "Connect to a service: an endpoint in your network",
     "It is pendingAcceptance until the provider accepts it, or available\n"
     "at once when the service needs no acceptance.\n",
     endpoint_create_options, 0, 1, endpoints_create},
    {"endpoints", "update",
     "ENDPOINT [--allow-source CIDR...|--any-source] "
     "[--private-dns|--no-private-dns]",
     "Change the clients an endpoint lets in, or its private DNS",
     "ENDPOINT as for 'endpoints get'. Applies to new flows (and DNS\n"
     "answers) at once.\n",
     endpoint_update_options, 1, 1, endpoints_update},
    {"endpoints", "delete", "ENDPOINT", "Delete an endpoint",
     "ENDPOINT as for 'endpoints get'.\n", no_options, 1, 1, endpoints_delete},

    {"target-groups", "list", "[--page-size N]",
     "List the target groups and their targets", NULL, list_options, 0, 0,
     target_groups_list},
    {"target-groups", "get", "NAME", "Show a target group's targets", NULL,
     no_options, 1, 1, target_groups_get},

    {"targets", "add", "TARGET-GROUP ADDRESS:PORT [--weight N]",
     "Register a target", "It starts initial and is health-checked.\n",
     target_add_options, 2, 2, targets_add},
    {"targets", "remove", "TARGET-GROUP ADDRESS:PORT", "Deregister a target",
     "It drains: running flows go on for the group's "
     "deregistration_delay.\n",
     no_options, 2, 2, targets_remove},

    {"events", NULL, "[--follow] [--after SEQ]", "Print the endpoint events",
     "Without --follow: the events kept (after SEQ), then exit. With it: the\n"
     "events from now (or after SEQ) as they happen, until interrupted;\n"
     "when nlbd ends the stream (a reload), nlbctl follows on from the last\n"
     "event it printed. Providers and consumers see their own events.\n",
     events_options, 0, 0, events_read},

    {"nodes", "list", "[--page-size N]", "List the nodes", NULL, list_options,
     0, 0, nodes_list},
    {"nodes", "drain", "NODE", "Drain a node", NULL, no_options, 1, 1,
     nodes_drain},

    {"principals", "list", "[--page-size N]", "List the principals",
     "Those of the config (SOURCE config, read-only here) and those made\n"
     "through the API.\n",
     list_options, 0, 0, principals_list},
    {"principals", "create", "NAME --role ROLE",
     "Make a principal and its first token",
     "The token is printed once: nlb keeps only its hash.\n",
     principal_create_options, 1, 1, principals_create},
    {"principals", "delete", "NAME", "Delete a principal and its tokens",
     "The API refuses (409) while it owns services or holds live\n"
     "endpoints.\n",
     no_options, 1, 1, principals_delete},

    {"tokens", "list", "PRINCIPAL [--page-size N]",
     "List a principal's tokens (never the tokens themselves)", NULL,
     list_options, 1, 1, tokens_list},
    {"tokens", "create", "PRINCIPAL [--expires-at TIME|--expires-in DURATION]",
     "Make another token for a principal",
     "To rotate: create a second token, move clients to it, revoke the\n"
     "first. The token is printed once.\n",
     token_create_options, 1, 1, tokens_create},
    {"tokens", "revoke", "PRINCIPAL TOKEN-ID", "Revoke a token",
     "Every node refuses it within a second, and closes the API\n"
     "connections and event streams it opened.\n",
     no_options, 2, 2, tokens_revoke},

    {"networks", "list", "[--page-size N]", "List the networks", NULL,
     list_options, 0, 0, networks_list},
    {"networks", "create",
     "NAME --range CIDR [--netns NAME] [--allow PRINCIPAL]...",
     "Make a network for consumers' endpoints",
     "Every node opens its endpoints in the namespace of that name on its\n"
     "own host.\n",
     network_create_options, 1, 1, networks_create},
    {"networks", "delete", "NAME", "Delete a network",
     "The API refuses (409) while live endpoints are in it.\n", no_options, 1,
     1, networks_delete},

    {NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, NULL},
};
