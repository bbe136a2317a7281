/* nlbctl's config verbs: the contexts of the config file, one for each
 * installation nlbctl talks to. They read and edit the file through
 * config.c and never call the API. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"

/* Reads the config file; CLI_EXIT_OK, or CLI_EXIT_USAGE (printed). A
 * config without a home to live in cannot be edited either. */
static int read_config(struct cli_config *config, bool to_edit)
{
  int r = cli_config_read(config);
  if (r == CLI_EXIT_OK && to_edit && config->path == NULL) {
    fputs("nlbctl: no config file: neither XDG_CONFIG_HOME nor a home "
          "directory is set\n",
          stderr);
    r = CLI_EXIT_USAGE;
  }
  return r;
}

static json_t *string_or_null(const char *s)
{
  return s != NULL ? json_string(s) : json_null();
}

static json_t *context_json(const struct cli_config_context *c)
{
  json_t *object = cli_checked(json_object());
  cli_set(object, "name", json_string(c->name));
  cli_set(object, "api", string_or_null(c->api));
  cli_set(object, "token_file", string_or_null(c->token_file));
  cli_set(object, "cacert", string_or_null(c->cacert));
  /* Whether the file holds a token for it, never the token. */
  cli_set(object, "inline_token", json_boolean(c->token != NULL));
  return object;
}

static char *current_text(const json_t *object, const char *key)
{
  return cli_strdup(json_is_true(json_object_get(object, key)) ? "*" : "");
}

static char *token_text(const json_t *object, const char *key)
{
  if (json_is_true(json_object_get(object, "inline_token")) &&
      !json_is_string(json_object_get(object, key)))
    return cli_strdup("(token in the file)");
  return cli_value_text(json_object_get(object, key));
}

int cli_config_get_contexts(struct cli_context *context,
                            const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"CURRENT", "current", current_text, false},
      {"NAME", "name", NULL, false},
      {"API", "api", NULL, false},
      {"TOKEN-FILE", "token_file", token_text, false},
      {"CACERT", "cacert", NULL, false},
  };
  struct cli_config config;
  (void)args;
  int r = read_config(&config, false);
  if (r != CLI_EXIT_OK) {
    cli_config_free(&config);
    return r;
  }
  json_t *contexts = cli_checked(json_array());
  for (size_t i = 0; i < config.n_contexts; i++) {
    json_t *c = context_json(&config.contexts[i]);
    bool current = config.current_context != NULL &&
                   strcmp(config.current_context, config.contexts[i].name) == 0;
    if (!cli_format_document(context))
      cli_set(c, "current", json_boolean(current));
    json_array_append_new(contexts, c);
  }
  if (cli_format_document(context)) {
    json_t *document = cli_checked(json_pack(
        "{s:o,s:O}", "current_context", string_or_null(config.current_context),
        "contexts", contexts));
    cli_print_value(context, document);
    json_decref(document);
  } else {
    cli_print_rows(context, contexts, columns, N_COLUMNS(columns), "contexts");
  }
  json_decref(contexts);
  cli_config_free(&config);
  return CLI_EXIT_OK;
}

int cli_config_current_context(struct cli_context *context,
                               const struct cli_args *args)
{
  struct cli_config config;
  (void)context;
  (void)args;
  int r = read_config(&config, false);
  if (r == CLI_EXIT_OK && config.current_context == NULL) {
    fputs("nlbctl: no current context (nlbctl config use-context NAME "
          "chooses one)\n",
          stderr);
    r = CLI_EXIT_ERROR;
  } else if (r == CLI_EXIT_OK) {
    puts(config.current_context);
  }
  cli_config_free(&config);
  return r;
}

/* Reads the config and finds the context args->positional[0] names;
 * CLI_EXIT_ERROR after saying there is none. */
static int existing_context(const struct cli_args *args,
                            struct cli_config *config)
{
  const char *name = args->positional[0];
  int r = read_config(config, true);
  if (r == CLI_EXIT_OK && cli_config_find(config, name) == NULL) {
    fprintf(stderr,
            "nlbctl: no context \"%s\" (nlbctl config set-context %s "
            "--api URL --token-file FILE makes it)\n",
            name, name);
    r = CLI_EXIT_ERROR;
  }
  return r;
}

int cli_config_use_context(struct cli_context *context,
                           const struct cli_args *args)
{
  struct cli_config config;
  (void)context;
  int r = existing_context(args, &config);
  if (r == CLI_EXIT_OK)
    r = cli_config_write_current(&config, args->positional[0]);
  if (r == CLI_EXIT_OK)
    printf("Switched to context \"%s\".\n", args->positional[0]);
  cli_config_free(&config);
  return r;
}

int cli_config_delete_context(struct cli_context *context,
                              const struct cli_args *args)
{
  struct cli_config config;
  (void)context;
  int r = existing_context(args, &config);
  if (r == CLI_EXIT_OK)
    r = cli_config_remove_context(&config, args->positional[0]);
  if (r == CLI_EXIT_OK)
    printf("Deleted context \"%s\".\n", args->positional[0]);
  cli_config_free(&config);
  return r;
}

/* A path given on the command line, as the config file keeps it: absolute
 * (the file reads relative paths from its own directory). malloc'd. */
static char *absolute(const char *path)
{
  char cwd[PATH_MAX];
  if (path[0] == '/' || (path[0] == '~' && path[1] == '/'))
    return cli_strdup(path);
  if (getcwd(cwd, sizeof cwd) == NULL) {
    fprintf(stderr, "nlbctl: the current directory: %s\n", strerror(errno));
    return NULL;
  }
  return cli_path("%s/%s", cwd, path);
}

static bool one_line(const char *value)
{
  return value == NULL || strpbrk(value, "\r\n") == NULL;
}

int cli_config_set_context(struct cli_context *context,
                           const struct cli_args *args)
{
  const char *name = args->positional[0];
  const char *api = cli_arg(args, "api");
  const char *token_file = cli_arg(args, "token-file");
  const char *cacert = cli_arg(args, "cacert");
  struct cli_config_context values = {.name = (char *)name};
  struct cli_config config = {0};
  int r = CLI_EXIT_USAGE;

  if (!cli_context_name_ok(name))
    return cli_usage_error(context->command,
                           "\"%s\" is not a context's name: 1-63 of A-Z a-z "
                           "0-9 . _ - (not starting with . or -)",
                           name);
  if (api != NULL && !cli_api_ok(api))
    return cli_usage_error(context->command,
                           "--api: \"%s\" does not start with http:// or "
                           "https://",
                           api);
  if (!one_line(api) || !one_line(token_file) || !one_line(cacert))
    return cli_usage_error(context->command, "a value holds a line break");
  values.api = (char *)api;
  if (token_file != NULL && (values.token_file = absolute(token_file)) == NULL)
    goto out;
  if (cacert != NULL && (values.cacert = absolute(cacert)) == NULL)
    goto out;
  r = read_config(&config, true);
  if (r != CLI_EXIT_OK)
    goto out;
  bool created = cli_config_find(&config, name) == NULL;
  r = cli_config_write_context(&config, &values);
  if (r == CLI_EXIT_OK)
    printf("Context \"%s\" %s.\n", name, created ? "created" : "modified");
out:
  free(values.token_file);
  free(values.cacert);
  cli_config_free(&config);
  return r;
}
