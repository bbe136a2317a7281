/* nlbctl's operator commands: target groups and targets, events, nodes,
 * principals and their tokens, networks. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"

/* ---- target groups and targets ------------------------------------------ */

static const struct cli_column target_columns[] = {
    {"TARGET-GROUP", "target_group", NULL, false},
    {"ADDRESS", "address", NULL, false},
    {"WEIGHT", "weight", NULL, false},
    {"STATE", "state", NULL, false},
    {"REASON", "reason", NULL, false},
};

/* One row per target, its group's name first; a group without targets
 * still gets a row. */
static json_t *target_rows(const json_t *groups)
{
  json_t *rows = cli_checked(json_array()), *group, *target;
  size_t i, k;
  json_array_foreach(groups, i, group)
  {
    json_t *name = json_object_get(group, "name");
    json_t *targets = json_object_get(group, "targets");
    if (json_array_size(targets) == 0)
      json_array_append_new(rows, json_pack("{s:O*}", "target_group", name));
    json_array_foreach(targets, k, target)
    {
      json_t *row = cli_checked(json_deep_copy(target));
      if (name != NULL)
        json_object_set(row, "target_group", name);
      json_array_append_new(rows, row);
    }
  }
  return rows;
}

static json_t *group_list_rows(const json_t *merged)
{
  return target_rows(json_object_get(merged, "target_groups"));
}

int cli_target_groups_list(struct cli_context *context,
                           const struct cli_args *args)
{
  struct cli_list list = {.path = "/v1/target-groups",
                          .key = "target_groups",
                          .columns = target_columns,
                          .n_columns = N_COLUMNS(target_columns),
                          .what = "target groups",
                          .rows = group_list_rows,
                          .event_key = "target_group"};
  return cli_run_list(context, args, &list);
}

int cli_target_groups_get(struct cli_context *context,
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
  if (cli_format_document(context)) {
    r = cli_print_document(context, response.body, response.len);
  } else {
    json_t *group = cli_answer_json(&response);
    json_t *groups = json_pack("[O*]", group);
    json_t *rows = target_rows(groups);
    if (group == NULL)
      r = CLI_EXIT_ERROR;
    else
      cli_print_rows(context, rows, target_columns, N_COLUMNS(target_columns),
                     "targets");
    json_decref(rows);
    json_decref(groups);
    json_decref(group);
  }
  cli_response_free(&response);
  return r;
}

int cli_targets_add(struct cli_context *context, const struct cli_args *args)
{
  const char *weight = cli_arg(args, "weight");
  long long n;

  json_t *body = cli_checked(json_object());
  cli_set(body, "address", json_string(args->positional[1]));
  if (weight != NULL) {
    if (!cli_number_arg(context, "--weight", weight, 1, 1000, &n)) {
      json_decref(body);
      return CLI_EXIT_USAGE;
    }
    cli_set(body, "weight", json_integer(n));
  }
  int r = cli_show_call_on(context, "POST", "/v1/target-groups/",
                           args->positional[0], "/targets", body);
  json_decref(body);
  return r;
}

int cli_targets_remove(struct cli_context *context, const struct cli_args *args)
{
  char *targets =
      cli_item_path("/v1/target-groups/", args->positional[0], "/targets/");
  int r = cli_show_call_on(context, "DELETE", targets, args->positional[1], "",
                           NULL);
  free(targets);
  return r;
}

/* ---- events -------------------------------------------------------------- */

struct events {
  const struct cli_context *context;
  struct cli_table table;
  struct cli_column *shown;
  size_t count;
  char last_seq[32]; /* "" until an event was seen */
};

/* The keys of an event the table's other columns do not show, as
 * "key=value" words: a target's group and address, a node, a principal
 * made or deleted, a network. */
static char *event_detail(const json_t *event, const char *key)
{
  static const char *const shown[] = {
      "seq", "time", "type", "state", "service_id", "endpoint_id", "principal"};
  const char *k;
  json_t *value, *words = cli_checked(json_array());
  (void)key;
  json_object_foreach((json_t *)event, k, value)
  {
    bool other = true;
    for (size_t i = 0; i < N_COLUMNS(shown); i++)
      other = other && strcmp(k, shown[i]) != 0;
    if (!other)
      continue;
    char *text = cli_value_text(value);
    json_array_append_new(words, json_sprintf("%s=%s", k, text));
    free(text);
  }
  char *text = cli_strdup("");
  size_t i;
  json_array_foreach(words, i, value)
  {
    char *longer =
        cli_path("%s%s%s", text, i > 0 ? " " : "", json_string_value(value));
    free(text);
    text = longer;
  }
  json_decref(words);
  if (text[0] == '\0') {
    free(text);
    return cli_strdup("-");
  }
  return text;
}

static const struct cli_column event_columns[] = {
    {"SEQ", "seq", NULL, false},
    {"TIME", "time", NULL, false},
    {"TYPE", "type", NULL, false},
    {"STATE", "state", NULL, false},
    {"SERVICE", "service_id", NULL, false},
    {"ENDPOINT", "endpoint_id", NULL, false},
    {"PRINCIPAL", "principal", NULL, false},
    {"DETAIL", NULL, event_detail, true},
};

/* The table's columns as wide as an event's usually are, so that rows
 * printed as they come line up. */
static void events_table(struct events *events)
{
  static const size_t widths[] = {6, 24, 7, 17, 21, 20};
  size_t n = cli_columns_shown(events->context, event_columns,
                               N_COLUMNS(event_columns), &events->shown);
  cli_table_init(&events->table, events->shown, n);
  if (events->context->format == CLI_FORMAT_COLUMNS)
    return;
  for (size_t i = 0; i < N_COLUMNS(widths); i++)
    events->table.widths[i] = widths[i];
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
  } else if (events->context->format == CLI_FORMAT_YAML) {
    fputs("---\n", stdout);
    cli_print_yaml(event);
  } else {
    json_t *rows = cli_checked(json_pack("[O]", event));
    cli_table_print(&events->table, rows);
    json_decref(rows);
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

int cli_events_read(struct cli_context *context, const struct cli_args *args)
{
  bool follow = cli_arg(args, "follow") != NULL;
  const char *after = cli_arg(args, "after");
  struct events events = {.context = context};
  struct cli_response response;
  int r = CLI_EXIT_OK;

  if (after != NULL && !is_number(after))
    return cli_usage_error(context->command,
                           "--after: \"%s\" is not an event sequence number",
                           after);
  events_table(&events);
  /* Without --follow, what is stored; with it, from now on. */
  if (after == NULL && !follow)
    after = "0";
  for (;;) {
    char *path = after != NULL ? cli_path("/v1/events?after=%s", after)
                               : cli_path("/v1/events");
    time_t started = time(NULL);
    r = cli_http_stream(&context->settings, path, follow ? 0 : EVENTS_IDLE_MS,
                        on_event, NULL, &events, &response);
    free(path);
    if (r != CLI_EXIT_OK)
      break;
    if (response.status < 200 || response.status >= 300) {
      r = cli_print_api_error(&response);
      cli_response_free(&response);
      break;
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
  if (r == CLI_EXIT_OK && events.count == 0 && !cli_format_document(context))
    fputs("No events found.\n", stderr);
  cli_table_free(&events.table);
  free(events.shown);
  return r;
}

/* ---- nodes --------------------------------------------------------------- */

/* "network=netns" for each of a node's mapped networks. */
static char *networks_text(const json_t *object, const char *key)
{
  json_t *mapping, *parts = cli_checked(json_array());
  size_t i;
  json_array_foreach(json_object_get(object, key), i, mapping)
  {
    char *network = cli_value_text(json_object_get(mapping, "network"));
    char *netns = cli_value_text(json_object_get(mapping, "netns"));
    json_array_append_new(parts, json_sprintf("%s=%s", network, netns));
    free(network);
    free(netns);
  }
  char *text = cli_value_text(parts);
  json_decref(parts);
  return text;
}

int cli_nodes_list(struct cli_context *context, const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"NAME", "name", NULL, false},
      {"STATE", "state", NULL, false},
      {"LAST-SEEN", "last_seen", NULL, false},
      {"APPLIED-SEQ", "applied_seq", NULL, false},
      {"VERSION", "version", NULL, false},
      {"NETWORKS", "networks", networks_text, true},
  };
  struct cli_list list = {.path = "/v1/nodes",
                          .key = "nodes",
                          .columns = columns,
                          .n_columns = N_COLUMNS(columns),
                          .what = "nodes",
                          .event_key = "node"};
  return cli_run_list(context, args, &list);
}

/* Asks before a drain, and says so when node is the only one up: its
 * load balancers and endpoints stop serving everywhere. An error reading
 * the nodes is returned (printed): the drain could not work either. */
static int confirm_drain(struct cli_context *context,
                         const struct cli_args *args, const char *node)
{
  json_t *list, *n;
  size_t i, up = 0;
  bool node_up = false;

  if (cli_arg(args, "yes") != NULL)
    return CLI_EXIT_OK;
  int r = cli_list(context, "/v1/nodes", NULL, "nodes", NULL, &list, NULL);
  if (r != CLI_EXIT_OK)
    return r;
  json_array_foreach(json_object_get(list, "nodes"), i, n)
  {
    const char *name = json_string_value(json_object_get(n, "name"));
    const char *state = json_string_value(json_object_get(n, "state"));
    if (state == NULL || strcmp(state, "up") != 0)
      continue;
    up++;
    node_up = node_up || (name != NULL && strcmp(name, node) == 0);
  }
  json_decref(list);
  if (node_up && up == 1)
    return cli_confirm(context, args,
                       "%s is the only node that is up: draining it stops "
                       "every load balancer and endpoint of this "
                       "installation once its flows end. Drain %s?",
                       node, node);
  return cli_confirm(context, args,
                     "Drain node %s? It stops accepting, and its nlbd exits "
                     "once its flows end.",
                     node);
}

int cli_nodes_drain(struct cli_context *context, const struct cli_args *args)
{
  int r = confirm_drain(context, args, args->positional[0]);
  if (r != CLI_EXIT_OK)
    return r;
  return cli_show_call_on(context, "POST", "/v1/nodes/", args->positional[0],
                          "/drain", NULL);
}

/* ---- principals, tokens, networks (operator) ----------------------------- */

int cli_principals_list(struct cli_context *context,
                        const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"NAME", "name", NULL, false},
      {"ROLE", "role", NULL, false},
      {"SOURCE", "source", NULL, false},
      {"CREATED", "created_at", NULL, false},
  };
  struct cli_list list = {.path = "/v1/principals",
                          .key = "principals",
                          .columns = columns,
                          .n_columns = N_COLUMNS(columns),
                          .what = "principals",
                          .event_key = "name"};
  return cli_run_list(context, args, &list);
}

/* An answer that carries a new token: shown, with a reminder (on stderr,
 * so a script capturing stdout gets the answer alone) that it is the only
 * time. */
static int show_new_token(struct cli_context *context, const char *path,
                          const json_t *body)
{
  int r = cli_show_call(context, "POST", path, body);
  if (r == CLI_EXIT_OK && !cli_format_document(context))
    fputs("Save the token now: nlb keeps only its hash and never shows it "
          "again.\n",
          stderr);
  return r;
}

int cli_principals_create(struct cli_context *context,
                          const struct cli_args *args)
{
  const char *role = cli_arg(args, "role");

  if (role == NULL)
    return cli_usage_error(context->command,
                           "--role is required: operator, provider or "
                           "consumer");
  json_t *body = cli_checked(json_object());
  cli_set(body, "name", json_string(args->positional[0]));
  cli_set(body, "role", json_string(role));
  int r = show_new_token(context, "/v1/principals", body);
  json_decref(body);
  return r;
}

int cli_principals_delete(struct cli_context *context,
                          const struct cli_args *args)
{
  return cli_show_call_on(context, "DELETE", "/v1/principals/",
                          args->positional[0], "", NULL);
}

int cli_tokens_list(struct cli_context *context, const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"ID", "id", NULL, false},
      {"CREATED", "created_at", NULL, false},
      {"EXPIRES", "expires_at", NULL, false},
      {"LAST-USED", "last_used_at", NULL, false},
  };
  char *path = cli_item_path("/v1/principals/", args->positional[0], "/tokens");
  struct cli_list list = {.path = path,
                          .key = "tokens",
                          .columns = columns,
                          .n_columns = N_COLUMNS(columns),
                          .what = "tokens",
                          .event_key = "token_id"};
  int r = cli_run_list(context, args, &list);
  free(path);
  return r;
}

int cli_tokens_create(struct cli_context *context, const struct cli_args *args)
{
  const char *at = cli_arg(args, "expires-at");
  const char *in = cli_arg(args, "expires-in");
  char when[32];

  if (at != NULL && in != NULL)
    return cli_usage_error(context->command,
                           "give --expires-at or --expires-in, not both");
  if (in != NULL) {
    long long seconds = cli_duration_seconds(in, false);
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
  json_t *body = cli_checked(json_object());
  if (at != NULL)
    cli_set(body, "expires_at", json_string(at));
  char *path = cli_item_path("/v1/principals/", args->positional[0], "/tokens");
  int r = show_new_token(context, path, body);
  free(path);
  json_decref(body);
  return r;
}

int cli_tokens_revoke(struct cli_context *context, const struct cli_args *args)
{
  char *tokens =
      cli_item_path("/v1/principals/", args->positional[0], "/tokens/");
  int r = cli_show_call_on(context, "DELETE", tokens, args->positional[1], "",
                           NULL);
  free(tokens);
  return r;
}

int cli_networks_list(struct cli_context *context, const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"NAME", "name", NULL, false},
      {"RANGE", "range", NULL, false},
      {"NETNS", "netns", NULL, false},
      {"PRINCIPALS", "principals", NULL, false},
      {"SOURCE", "source", NULL, false},
      {"CREATED", "created_at", NULL, true},
  };
  struct cli_list list = {.path = "/v1/networks",
                          .key = "networks",
                          .columns = columns,
                          .n_columns = N_COLUMNS(columns),
                          .what = "networks",
                          .event_key = "network"};
  return cli_run_list(context, args, &list);
}

int cli_networks_create(struct cli_context *context,
                        const struct cli_args *args)
{
  const char *range = cli_arg(args, "range");
  const char *netns = cli_arg(args, "netns");
  size_t n;

  if (range == NULL)
    return cli_usage_error(context->command, "--range is required");
  json_t *body = cli_checked(json_object());
  cli_set(body, "name", json_string(args->positional[0]));
  cli_set(body, "range", json_string(range));
  if (netns != NULL)
    cli_set(body, "netns", json_string(netns));
  char **allow = cli_arg_list(args, "allow", &n);
  if (allow != NULL)
    cli_set(body, "principals", cli_strings_json(allow, n));
  cli_strings_free(allow, n);
  int r = cli_show_call(context, "POST", "/v1/networks", body);
  json_decref(body);
  return r;
}

int cli_networks_delete(struct cli_context *context,
                        const struct cli_args *args)
{
  return cli_show_call_on(context, "DELETE", "/v1/networks/",
                          args->positional[0], "", NULL);
}
