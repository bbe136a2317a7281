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

int cli_target_groups_list(struct cli_context *context,
                           const struct cli_args *args)
{
  struct cli_response first = {0};
  json_t *merged;
  const char *size;
  if (cli_page_size(context, args, &size) != CLI_EXIT_OK)
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

int cli_events_read(struct cli_context *context, const struct cli_args *args)
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

int cli_nodes_list(struct cli_context *context, const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"NAME", "name", NULL},           {"STATE", "state", NULL},
      {"LAST-SEEN", "last_seen", NULL}, {"APPLIED-SEQ", "applied_seq", NULL},
      {"VERSION", "version", NULL},
  };
  const char *size;
  if (cli_page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  return cli_show_list(context, "/v1/nodes", NULL, "nodes", size, columns,
                       N_COLUMNS(columns), "nodes");
}

int cli_nodes_drain(struct cli_context *context, const struct cli_args *args)
{
  return cli_show_call_on(context, "POST", "/v1/nodes/", args->positional[0],
                          "/drain", NULL);
}

/* ---- principals, tokens, networks (operator) ----------------------------- */

int cli_principals_list(struct cli_context *context,
                        const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"NAME", "name", NULL},
      {"ROLE", "role", NULL},
      {"SOURCE", "source", NULL},
      {"CREATED", "created_at", NULL},
  };
  const char *size;
  if (cli_page_size(context, args, &size) != CLI_EXIT_OK)
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
  int r = cli_show_call(context, "POST", path, body);
  if (r == CLI_EXIT_OK && context->format == CLI_FORMAT_TABLE)
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
      {"ID", "id", NULL},
      {"CREATED", "created_at", NULL},
      {"EXPIRES", "expires_at", NULL},
      {"LAST-USED", "last_used_at", NULL},
  };
  const char *size;
  if (cli_page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  char *path = cli_item_path("/v1/principals/", args->positional[0], "/tokens");
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

int cli_tokens_create(struct cli_context *context, const struct cli_args *args)
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
      {"NAME", "name", NULL},     {"RANGE", "range", NULL},
      {"NETNS", "netns", NULL},   {"PRINCIPALS", "principals", NULL},
      {"SOURCE", "source", NULL},
  };
  const char *size;
  if (cli_page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  return cli_show_list(context, "/v1/networks", NULL, "networks", size, columns,
                       N_COLUMNS(columns), "networks");
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
