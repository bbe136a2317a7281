/* nlbctl's consumer commands: available services and endpoints. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"

/* ---- available services -------------------------------------------------- */

int cli_available_services(struct cli_context *context,
                           const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"ID", "id", NULL, false},
      {"NAME", "name", NULL, false},
      {"OWNER", "owner", NULL, false},
      {"PORTS", "ports", NULL, false},
      {"ACCEPTANCE", "acceptance_required", cli_acceptance_text, false},
      {"PRIVATE-DNS-NAME", "private_dns_name", NULL, true},
  };
  struct cli_list list = {.path = "/v1/available-services",
                          .key = "services",
                          .columns = columns,
                          .n_columns = N_COLUMNS(columns),
                          .what = "available services",
                          .event_key = "service_id"};
  return cli_run_list(context, args, &list);
}

/* ---- endpoints ----------------------------------------------------------- */

/* "node=state" for each placement, comma-joined; "-" for none. */
static char *placements_text(const json_t *object, const char *key)
{
  json_t *placement, *parts = cli_checked(json_array());
  size_t i;
  json_array_foreach(json_object_get(object, key), i, placement)
  {
    char *node = cli_value_text(json_object_get(placement, "node"));
    char *state = cli_value_text(json_object_get(placement, "state"));
    json_array_append_new(parts, json_sprintf("%s=%s", node, state));
    free(node);
    free(state);
  }
  char *text = cli_value_text(parts);
  json_decref(parts);
  return text;
}

/* What --wait waits for: an endpoint to be available (create) or deleted
 * (delete); the last answer about it, to print. */
struct endpoint_wait {
  char **ids;
  size_t n;
  bool deleted;             /* waiting for deleted, or gone */
  struct cli_response last; /* the last answer about ids[n - 1] */
};

static enum cli_wait_state endpoint_look_one(const struct cli_context *context,
                                             struct endpoint_wait *w,
                                             const char *id, char *where,
                                             size_t size)
{
  struct cli_response response;
  char *path = cli_item_path("/v1/endpoints/", id, "");
  int r = cli_http_request(&context->settings, "GET", path, NULL, &response);
  free(path);
  if (r != CLI_EXIT_OK)
    return CLI_WAIT_FAILED;
  if (response.status == 404 && w->deleted) {
    cli_response_free(&response);
    return CLI_WAIT_DONE;
  }
  if (response.status < 200 || response.status >= 300) {
    cli_print_api_error(&response);
    cli_response_free(&response);
    return CLI_WAIT_FAILED;
  }
  json_t *endpoint = json_loadb(response.body, response.len, 0, NULL);
  const char *state = json_string_value(json_object_get(endpoint, "state"));
  const char *reason = json_string_value(json_object_get(endpoint, "reason"));
  enum cli_wait_state result = CLI_WAIT_PENDING;
  if (state == NULL) {
    fprintf(stderr, "nlbctl: the API's answer has no endpoint state\n");
    result = CLI_WAIT_FAILED;
  } else if (strcmp(state, w->deleted ? "deleted" : "available") == 0) {
    result = CLI_WAIT_DONE;
  } else if (!w->deleted && strcmp(state, "pendingAcceptance") != 0) {
    fprintf(stderr, "nlbctl: %s is %s%s%s, not available\n", id, state,
            reason != NULL && reason[0] != '\0' ? ": " : "",
            reason != NULL ? reason : "");
    result = CLI_WAIT_FAILED;
  } else {
    snprintf(where, size, "%s is %s", id, state);
  }
  json_decref(endpoint);
  cli_response_free(&w->last);
  w->last = response;
  return result;
}

static enum cli_wait_state endpoint_look(const struct cli_context *context,
                                         void *arg, char *where, size_t size)
{
  struct endpoint_wait *w = arg;
  enum cli_wait_state all = CLI_WAIT_DONE;
  for (size_t i = 0; i < w->n && all != CLI_WAIT_FAILED; i++) {
    enum cli_wait_state one =
        endpoint_look_one(context, w, w->ids[i], where, size);
    if (one != CLI_WAIT_DONE)
      all = one;
  }
  return all;
}

static int endpoint_wait(const struct cli_context *context,
                         struct endpoint_wait *w, long wait_ms)
{
  json_t *ids = cli_strings_json(w->ids, w->n);
  char *list = cli_value_text(ids);
  char *what =
      cli_path("%s to be %s", list, w->deleted ? "deleted" : "available");
  int r = cli_wait(context, wait_ms, what, endpoint_look, w, ids);
  json_decref(ids);
  free(list);
  free(what);
  return r;
}

int cli_endpoints_list(struct cli_context *context, const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"ID", "id", NULL, false},
      {"SERVICE", "service", NULL, false},
      {"CONSUMER", "consumer", NULL, false},
      {"NETWORK", "network", NULL, false},
      {"ADDRESS", "address", NULL, false},
      {"STATE", "state", NULL, false},
      {"SOURCES", "allowed_sources", cli_sources_text, false},
      {"REASON", "reason", NULL, false},
      {"PORTS", "ports", NULL, true},
      {"PRIVATE-DNS", "private_dns", NULL, true},
      {"DNS-NAMES", "dns_names", NULL, true},
      {"PLACEMENTS", "placements", placements_text, true},
      {"CREATED", "created_at", NULL, true},
      {"UPDATED", "updated_at", NULL, true},
  };
  char *query = cli_state_query(args);
  struct cli_list list = {.path = "/v1/endpoints",
                          .query = query,
                          .key = "endpoints",
                          .columns = columns,
                          .n_columns = N_COLUMNS(columns),
                          .what = "endpoints",
                          .event_key = "endpoint_id"};
  int r = cli_run_list(context, args, &list);
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
  r = cli_show_call(context, method, path, body);
  free(path);
  free(segment);
  free(id);
  return r;
}

int cli_endpoints_get(struct cli_context *context, const struct cli_args *args)
{
  return endpoint_call(context, args, "GET", NULL);
}

/* endpoints create --wait: the endpoint is printed as it is when the
 * wait ends (available, or why not). */
static int create_and_wait(const struct cli_context *context,
                           const json_t *body, long wait_ms)
{
  struct cli_response response;
  int r = cli_call(context, "POST", "/v1/endpoints", body, &response);
  if (r != CLI_EXIT_OK)
    return r;
  json_t *created = cli_answer_json(&response);
  const char *id = json_string_value(json_object_get(created, "id"));
  if (id == NULL) {
    if (created != NULL)
      fputs("nlbctl: the API's answer has no endpoint ID\n", stderr);
    json_decref(created);
    cli_response_free(&response);
    return CLI_EXIT_ERROR;
  }
  char *one[] = {(char *)id};
  struct endpoint_wait w = {.ids = one, .n = 1, .last = response};
  r = endpoint_wait(context, &w, wait_ms);
  int shown = cli_show(context, &w.last);
  cli_response_free(&w.last);
  json_decref(created);
  return r != CLI_EXIT_OK ? r : shown;
}

int cli_endpoints_create(struct cli_context *context,
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
  json_t *body = cli_checked(json_object());
  cli_set(body, "service", json_string(service));
  cli_set(body, "network", json_string(network));
  if (address != NULL)
    cli_set(body, "address", json_string(address));
  char **sources = cli_arg_list(args, "allow-source", &n);
  if (sources != NULL)
    cli_set(body, "allowed_sources", cli_strings_json(sources, n));
  cli_strings_free(sources, n);
  if (cli_arg(args, "private-dns") != NULL)
    cli_set(body, "private_dns", json_true());
  long wait_ms;
  int r = cli_wait_timeout(context, args, &wait_ms);
  if (r == CLI_EXIT_OK && wait_ms == 0)
    r = cli_show_call(context, "POST", "/v1/endpoints", body);
  else if (r == CLI_EXIT_OK)
    r = create_and_wait(context, body, wait_ms);
  json_decref(body);
  return r;
}

int cli_endpoints_update(struct cli_context *context,
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
  json_t *body = cli_checked(json_object());
  if (any || sources != NULL)
    cli_set(body, "allowed_sources", cli_strings_json(sources, n));
  if (dns_on || dns_off)
    cli_set(body, "private_dns", json_boolean(dns_on));
  cli_strings_free(sources, n);
  r = endpoint_call(context, args, "PATCH", body);
  json_decref(body);
  return r;
}

/* The IDs of the endpoints the arguments name; NULL after saying why one
 * cannot be found (*r: its exit status). */
static char **endpoint_ids(const struct cli_context *context,
                           const struct cli_args *args, int *r)
{
  char **ids = calloc(args->n_positional + 1, sizeof *ids);
  if (ids == NULL)
    cli_out_of_memory();
  for (size_t i = 0; i < args->n_positional; i++) {
    *r = cli_endpoint_id(context, args->positional[i], &ids[i]);
    if (*r != CLI_EXIT_OK) {
      cli_strings_free(ids, i);
      return NULL;
    }
  }
  return ids;
}

/* Deletes several: "ID deleted" a line (table), or one document of them
 * all ({"endpoints":[...]}). Returns CLI_EXIT_ERROR when one failed (its
 * error printed); the others are deleted all the same. */
static int delete_several(const struct cli_context *context, char **ids,
                          size_t n)
{
  json_t *deleted = cli_checked(json_array());
  int r = CLI_EXIT_OK;
  for (size_t i = 0; i < n; i++) {
    struct cli_response response;
    char *path = cli_item_path("/v1/endpoints/", ids[i], "");
    int one = cli_call(context, "DELETE", path, NULL, &response);
    free(path);
    if (one != CLI_EXIT_OK) {
      r = one;
      continue;
    }
    json_t *endpoint = cli_answer_json(&response);
    if (endpoint != NULL)
      json_array_append_new(deleted, endpoint);
    else
      r = CLI_EXIT_ERROR;
    if (endpoint != NULL && !cli_format_document(context))
      printf("%s deleted\n", ids[i]);
    cli_response_free(&response);
  }
  if (cli_format_document(context)) {
    json_t *document = cli_checked(json_pack("{s:O}", "endpoints", deleted));
    cli_print_value(context, document);
    json_decref(document);
  }
  json_decref(deleted);
  return r;
}

int cli_endpoints_delete(struct cli_context *context,
                         const struct cli_args *args)
{
  size_t n = args->n_positional;
  long wait_ms;
  int r = cli_wait_timeout(context, args, &wait_ms);
  if (r != CLI_EXIT_OK)
    return r;
  char **ids = endpoint_ids(context, args, &r);
  if (ids == NULL)
    return r;
  if (n > 1) {
    json_t *list = cli_strings_json(ids, n);
    char *text = cli_value_text(list);
    r = cli_confirm(context, args,
                    "Delete %zu endpoints (%s)? Their listeners close and "
                    "their flows are reset.",
                    n, text);
    free(text);
    json_decref(list);
  }
  if (r == CLI_EXIT_OK && n == 1) {
    char *path = cli_item_path("/v1/endpoints/", ids[0], "");
    r = cli_show_call(context, "DELETE", path, NULL);
    free(path);
  } else if (r == CLI_EXIT_OK) {
    r = delete_several(context, ids, n);
  }
  if (r == CLI_EXIT_OK && wait_ms > 0) {
    struct endpoint_wait w = {.ids = ids, .n = n, .deleted = true};
    r = endpoint_wait(context, &w, wait_ms);
    cli_response_free(&w.last);
  }
  cli_strings_free(ids, n);
  return r;
}
