/* nlbctl __complete KIND [ARG]: the names the shell completions
 * (contrib/bash-completion/nlbctl, contrib/zsh-completion/_nlbctl) offer
 * for an argument, one a line. A completion must never get in the way of
 * typing: nothing is printed on stderr, a request gives up after 2 s, and
 * whatever fails offers nothing. */
#include <stdlib.h>
#include <string.h>

#include "commands.h"

#define COMPLETE_TIMEOUT_MS 2000L

/* Which items of a list to offer: all, or only those in states. */
struct kind {
  const char *name;
  const char *path;   /* then ARG, escaped, and suffix, when suffix is set */
  const char *suffix; /* NULL: the kind takes no ARG */
  const char *key;    /* the answer's array */
  const char *field;
  const char *const *states; /* NULL: every item */
};

static const char *const not_deleted[] = {
    "pendingAcceptance", "available", "rejected", "expired", "failed", NULL};
static const char *const pending[] = {"pendingAcceptance", NULL};
static const char *const live[] = {"pendingAcceptance", "available", NULL};

static const struct kind kinds[] = {
    {"services", "/v1/services", NULL, "services", "name", NULL},
    {"available-services", "/v1/available-services", NULL, "services", "name",
     NULL},
    {"endpoints", "/v1/endpoints", NULL, "endpoints", "id", not_deleted},
    {"target-groups", "/v1/target-groups", NULL, "target_groups", "name", NULL},
    {"principals", "/v1/principals", NULL, "principals", "name", NULL},
    {"nodes", "/v1/nodes", NULL, "nodes", "name", NULL},
    {"networks", "/v1/networks", NULL, "networks", "name", NULL},
    {"tokens", "/v1/principals/", "/tokens", "tokens", "id", NULL},
    {"pending-connections", "/v1/services/", "/connections", "connections",
     "endpoint_id", pending},
    {"live-connections", "/v1/services/", "/connections", "connections",
     "endpoint_id", live},
    {"targets", "/v1/target-groups/", "", "targets", "address", NULL},
};

static bool state_in(const json_t *item, const char *const *states)
{
  const char *state = json_string_value(json_object_get(item, "state"));
  for (size_t i = 0; states != NULL && states[i] != NULL; i++)
    if (state != NULL && strcmp(state, states[i]) == 0)
      return true;
  return states == NULL;
}

/* One GET (a single page: a completion offers what comes quickly). */
static int print_names(const struct cli_context *context,
                       const struct kind *kind, const char *arg)
{
  struct cli_response response;
  char *path = kind->suffix != NULL
                   ? cli_item_path(kind->path, arg, kind->suffix)
                   : cli_strdup(kind->path);
  int r = CLI_EXIT_ERROR;
  if (cli_call(context, "GET", path, NULL, &response) == CLI_EXIT_OK) {
    json_t *answer = json_loadb(response.body, response.len, 0, NULL), *item;
    size_t i;
    json_array_foreach(json_object_get(answer, kind->key), i, item)
    {
      const char *name = json_string_value(json_object_get(item, kind->field));
      if (name != NULL && state_in(item, kind->states))
        puts(name);
    }
    r = answer != NULL ? CLI_EXIT_OK : CLI_EXIT_ERROR;
    json_decref(answer);
    cli_response_free(&response);
  }
  free(path);
  return r;
}

static int print_contexts(void)
{
  struct cli_config config;
  int r = cli_config_read(&config);
  for (size_t i = 0; r == CLI_EXIT_OK && i < config.n_contexts; i++)
    puts(config.contexts[i].name);
  cli_config_free(&config);
  return r;
}

int cli_complete(struct cli_context *context, const struct cli_args *args)
{
  const char *kind = args->positional[0];
  const char *arg = args->n_positional > 1 ? args->positional[1] : NULL;

  if (freopen("/dev/null", "w", stderr) == NULL)
    return CLI_EXIT_ERROR;
  if (strcmp(kind, "contexts") == 0)
    return print_contexts();
  for (size_t i = 0; i < N_COLUMNS(kinds); i++) {
    if (strcmp(kinds[i].name, kind) != 0)
      continue;
    if ((kinds[i].suffix != NULL) != (arg != NULL))
      return CLI_EXIT_USAGE;
    context->overrides.timeout_ms = COMPLETE_TIMEOUT_MS;
    int r = cli_settings_load(&context->overrides, &context->settings);
    if (r != CLI_EXIT_OK)
      return r;
    r = print_names(context, &kinds[i], arg);
    /* A consumer lists no services of its own: the ones it may use. */
    if (r != CLI_EXIT_OK && strcmp(kind, "services") == 0)
      r = print_names(context, &kinds[1], NULL);
    return r;
  }
  return CLI_EXIT_USAGE;
}
