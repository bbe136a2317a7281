/* nlbctl's provider commands: services, permissions, connections. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"

/* ---- services ------------------------------------------------------------ */

int cli_services_list(struct cli_context *context, const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"ID", "id", NULL},
      {"NAME", "name", NULL},
      {"OWNER", "owner", NULL},
      {"LOAD-BALANCER", "load_balancer", NULL},
      {"PORTS", "ports", NULL},
      {"ACCEPTANCE", "acceptance_required", cli_acceptance_text},
      {"ALLOWED", "allowed_principals", NULL},
  };
  const char *size;
  if (cli_page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  return cli_show_list(context, "/v1/services", NULL, "services", size, columns,
                       N_COLUMNS(columns), "services");
}

static int service_call(struct cli_context *context, const char *method,
                        const char *service, const json_t *body)
{
  char *segment = cli_segment(service);
  char *path = cli_path("/v1/services/%s", segment);
  int r = cli_show_call(context, method, path, body);
  free(path);
  free(segment);
  return r;
}

int cli_services_get(struct cli_context *context, const struct cli_args *args)
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
    cli_set(body, "private_dns_name", json_string(no_dns_name ? "" : dns_name));
  if (on || off)
    cli_set(body, "acceptance_required", json_boolean(on));
  if (limit != NULL) {
    if (!cli_number_arg(context, "--connection-limit", limit, 0, INT32_MAX, &n))
      return false;
    cli_set(body, "connection_limit", json_integer(n));
  }
  return true;
}

int cli_services_create(struct cli_context *context,
                        const struct cli_args *args)
{
  const char *lb = cli_arg(args, "load-balancer");
  size_t n;
  int r = CLI_EXIT_USAGE;

  if (lb == NULL)
    return cli_usage_error(context->command, "--load-balancer is required");
  json_t *body = cli_checked(json_object());
  cli_set(body, "name", json_string(args->positional[0]));
  cli_set(body, "load_balancer", json_string(lb));
  char **allow = cli_arg_list(args, "allow", &n);
  if (allow != NULL)
    cli_set(body, "allowed_principals", cli_strings_json(allow, n));
  cli_strings_free(allow, n);
  if (service_settings(context, args, body))
    r = cli_show_call(context, "POST", "/v1/services", body);
  json_decref(body);
  return r;
}

int cli_services_update(struct cli_context *context,
                        const struct cli_args *args)
{
  int r = CLI_EXIT_USAGE;
  json_t *body = cli_checked(json_object());

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

int cli_services_delete(struct cli_context *context,
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
    json_t *rows = cli_checked(json_array()), *p;
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

int cli_permissions_get(struct cli_context *context,
                        const struct cli_args *args)
{
  return permissions_call(context, "GET", args->positional[0], NULL);
}

static int permissions_change(struct cli_context *context,
                              const struct cli_args *args, const char *key)
{
  size_t n;
  char **principals = cli_positional_list(args, 1, &n);
  if (n == 0)
    return cli_usage_error(context->command, "no principal given");
  json_t *body = cli_checked(json_object());
  cli_set(body, key, cli_strings_json(principals, n));
  cli_strings_free(principals, n);
  if (cli_arg(args, "reject-endpoints") != NULL)
    cli_set(body, "reject_endpoints", json_true());
  int r = permissions_call(context, "PATCH", args->positional[0], body);
  json_decref(body);
  return r;
}

int cli_permissions_add(struct cli_context *context,
                        const struct cli_args *args)
{
  return permissions_change(context, args, "add");
}

int cli_permissions_remove(struct cli_context *context,
                           const struct cli_args *args)
{
  return permissions_change(context, args, "remove");
}

/* ---- connections --------------------------------------------------------- */

int cli_connections_list(struct cli_context *context,
                         const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"ENDPOINT", "endpoint_id", NULL}, {"CONSUMER", "consumer", NULL},
      {"STATE", "state", NULL},          {"NETWORK", "network", NULL},
      {"ADDRESS", "address", NULL},      {"UPDATED", "updated_at", NULL},
  };
  const char *size;
  if (cli_page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  char *segment = cli_segment(args->positional[0]);
  char *path = cli_path("/v1/services/%s/connections", segment);
  char *query = cli_state_query(args);
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
  char **given = cli_positional_list(args, 1, &n_given);
  char **consumers = cli_arg_list(args, "consumer", &n_consumers);
  json_t *ids = cli_strings_json(given, n_given);
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
  r = cli_call(context, "POST", path, cli_checked(body), &response);
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

int cli_connections_accept(struct cli_context *context,
                           const struct cli_args *args)
{
  return connections_decide(context, args, true);
}

int cli_connections_reject(struct cli_context *context,
                           const struct cli_args *args)
{
  return connections_decide(context, args, false);
}
