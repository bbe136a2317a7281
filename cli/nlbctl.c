/* nlbctl: the command line. Finds the command in cli_commands, parses its
 * options (and the global ones, accepted anywhere), loads the settings and
 * runs it. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "build-config.h"

#define DEFAULT_TIMEOUT_MS 30000L

static const struct cli_option global_options[] = {
    {"api", 0, "URL", false, "the API's address (default " CLI_DEFAULT_API ")"},
    {"token-file", 0, "FILE", false, "read the token from FILE"},
    {"output", 'o', "FORMAT", false, "table (the default) or json"},
    {"cacert", 0, "FILE", false,
     "CA certificates that sign an https:// API's certificate"},
    {"insecure", 'k', NULL, false, "do not verify the API's certificate"},
    {"timeout", 0, "SECONDS", false,
     "give up on a request after SECONDS (default 30)"},
    {"verbose", 'v', NULL, false,
     "print each request and its answer's status on stderr"},
    {"help", 'h', NULL, false, "show the help of this level"},
    {"version", 0, NULL, false, "print nlbctl's version"},
    {NULL, 0, NULL, false, NULL},
};

/* ---- help --------------------------------------------------------------- */

static void top_usage(FILE *out, bool help)
{
  fputs("Usage: nlbctl ", out);
  cli_print_wrapped("[--api URL] [--token-file FILE] [-o table|json] RESOURCE "
                    "VERB [ARGS]",
                    14, 14, out);
  if (!help) {
    fputs("Run 'nlbctl --help' for the resources and options.\n", out);
    return;
  }
  fputs("\nThe command-line client of nlb's API.\n\nResources:\n", out);
  for (const struct cli_resource *r = cli_resources; r->name != NULL; r++) {
    fprintf(out, "  %-20s  ", r->name);
    cli_print_wrapped(r->summary, 24, 24, out);
  }
  fputs("\nOptions (anywhere on the line):\n", out);
  cli_print_options(global_options, out);
  fputs("\nThe address comes from --api, else NLB_API, else the config file,\n"
        "else " CLI_DEFAULT_API ". The token comes from --token-file, else\n"
        "NLB_TOKEN, else NLB_TOKEN_FILE, else the config file; it is never\n"
        "taken from the command line. The config file is\n"
        "$XDG_CONFIG_HOME/nlb/nlbctl.conf (~/.config/nlb/nlbctl.conf):\n"
        "\"key = value\" lines with the keys api, token_file, token, cacert.\n"
        "\nExit status: 0 done, 1 the API answered an error or could not be\n"
        "reached, 2 bad usage.\n"
        "Run 'nlbctl RESOURCE --help' for the verbs of a resource.\n",
        out);
}

static const struct cli_resource *find_resource(const char *name)
{
  for (const struct cli_resource *r = cli_resources; r->name != NULL; r++)
    if (strcmp(r->name, name) == 0)
      return r;
  return NULL;
}

static const struct cli_command *find_command(const char *resource,
                                              const char *verb)
{
  for (const struct cli_command *c = cli_commands; c->resource != NULL; c++)
    if (strcmp(c->resource, resource) == 0 &&
        (c->verb == NULL || (verb != NULL && strcmp(c->verb, verb) == 0)))
      return c;
  return NULL;
}

static bool has_verbs(const char *resource)
{
  const struct cli_command *c = find_command(resource, NULL);
  return c == NULL || c->verb != NULL;
}

static void resource_usage(const struct cli_resource *resource, FILE *out,
                           bool help)
{
  fprintf(out, "Usage: nlbctl %s VERB [ARGS] [OPTIONS]\n", resource->name);
  if (help)
    fprintf(out, "\n%s.\n", resource->summary);
  fputs("\nVerbs:\n", out);
  for (const struct cli_command *c = cli_commands; c->resource != NULL; c++)
    if (strcmp(c->resource, resource->name) == 0)
      fprintf(out, "  %-8s  %s\n", c->verb, c->summary);
  fprintf(out, "\nRun 'nlbctl %s VERB --help' for the arguments of a verb.\n",
          resource->name);
}

/* ---- the command line --------------------------------------------------- */

struct parse {
  const struct cli_resource *resource;
  const struct cli_command *command;
  struct cli_args args;
  bool help;
  bool version;
  bool stop; /* --help or --version: the rest of the line is not read */
};

static int usage_error(const struct parse *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const struct parse *p, const char *fmt, ...)
{
  va_list ap;
  fputs("nlbctl: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (p->command != NULL)
    cli_command_usage(p->command, stderr, false);
  else if (p->resource != NULL)
    resource_usage(p->resource, stderr, false);
  else
    top_usage(stderr, false);
  return CLI_EXIT_USAGE;
}

static const struct cli_option *find_option(const struct parse *p,
                                            const char *name, size_t len,
                                            char short_name)
{
  const struct cli_option *lists[2] = {
      p->command != NULL ? p->command->options : NULL, global_options};
  for (size_t i = 0; i < 2; i++)
    for (const struct cli_option *o = lists[i]; o != NULL && o->name != NULL;
         o++)
      if (short_name != 0
              ? o->short_name == short_name
              : strlen(o->name) == len && strncmp(o->name, name, len) == 0)
        return o;
  return NULL;
}

/* A word that is not an option: the resource, the verb, or an argument. */
static int take_word(struct parse *p, char *word)
{
  if (p->resource == NULL) {
    if (strcmp(word, "help") == 0 && !p->help) {
      p->help = true; /* "nlbctl help services create" */
      return CLI_EXIT_OK;
    }
    p->resource = find_resource(word);
    if (p->resource == NULL)
      return usage_error(p, "unknown resource \"%s\"", word);
    if (!has_verbs(word))
      p->command = find_command(word, NULL);
    return CLI_EXIT_OK;
  }
  if (p->command == NULL) {
    p->command = find_command(p->resource->name, word);
    if (p->command == NULL)
      return usage_error(p, "%s has no verb \"%s\"", p->resource->name, word);
    return CLI_EXIT_OK;
  }
  /* "available-services list" reads as well as "available-services". */
  if (p->command->verb == NULL && p->args.n_positional == 0 &&
      strcmp(word, "list") == 0)
    return CLI_EXIT_OK;
  p->args.positional[p->args.n_positional++] = word;
  return CLI_EXIT_OK;
}

static int take_option(struct parse *p, char **argv, int argc, int *i)
{
  char *arg = argv[*i], *value = NULL;
  const struct cli_option *option;

  if (arg[1] == '-') {
    char *eq = strchr(arg + 2, '=');
    size_t len = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
    option = find_option(p, arg + 2, len, 0);
    if (option == NULL)
      return usage_error(p, "unknown option %.*s", (int)len + 2, arg);
    if (eq != NULL && option->value_name == NULL)
      return usage_error(p, "--%s takes no value", option->name);
    value = eq != NULL ? eq + 1 : NULL;
  } else {
    option = find_option(p, NULL, 0, arg[1]);
    if (option == NULL)
      return usage_error(p, "unknown option -%c", arg[1]);
    if (arg[2] != '\0' && option->value_name == NULL)
      return usage_error(p, "-%c takes no value", arg[1]);
    value = arg[2] != '\0' ? arg + 2 : NULL; /* "-ojson" */
  }
  if (option->value_name != NULL && value == NULL) {
    if (*i + 1 >= argc)
      return usage_error(p, "--%s needs a value (%s)", option->name,
                         option->value_name);
    value = argv[++*i];
  }
  if (strcmp(option->name, "help") == 0)
    p->help = p->stop = true;
  else if (strcmp(option->name, "version") == 0)
    p->version = p->stop = true;
  p->args.given[p->args.n_given].option = option;
  p->args.given[p->args.n_given++].value = value != NULL ? value : "";
  return CLI_EXIT_OK;
}

static int parse(struct parse *p, int argc, char **argv)
{
  bool options_done = false;
  for (int i = 1; i < argc && !p->stop; i++) {
    int r;
    if (options_done || argv[i][0] != '-' || argv[i][1] == '\0')
      r = take_word(p, argv[i]);
    else if (strcmp(argv[i], "--") == 0) {
      options_done = true;
      r = CLI_EXIT_OK;
    } else
      r = take_option(p, argv, argc, &i);
    if (r != CLI_EXIT_OK)
      return r;
  }
  return CLI_EXIT_OK;
}

/* ---- main --------------------------------------------------------------- */

static int global_settings(const struct parse *p, struct cli_overrides *o,
                           enum cli_format *format)
{
  const char *value;

  *format = CLI_FORMAT_TABLE;
  memset(o, 0, sizeof *o);
  o->timeout_ms = DEFAULT_TIMEOUT_MS;
  if ((value = cli_arg(&p->args, "output")) != NULL) {
    if (strcmp(value, "json") == 0)
      *format = CLI_FORMAT_JSON;
    else if (strcmp(value, "table") != 0)
      return usage_error(p, "-o: \"%s\" is not table or json", value);
  }
  if ((value = cli_arg(&p->args, "timeout")) != NULL) {
    char *end;
    errno = 0;
    long seconds = strtol(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || seconds < 0 ||
        seconds > LONG_MAX / 1000)
      return usage_error(p, "--timeout: \"%s\" is not a number of seconds",
                         value);
    o->timeout_ms = seconds * 1000;
  }
  o->api = cli_arg(&p->args, "api");
  o->token_file = cli_arg(&p->args, "token-file");
  o->cacert = cli_arg(&p->args, "cacert");
  o->insecure = cli_arg(&p->args, "insecure") != NULL;
  o->verbose = cli_arg(&p->args, "verbose") != NULL;
  return CLI_EXIT_OK;
}

static int run(struct parse *p)
{
  struct cli_context context = {.command = p->command};
  struct cli_overrides overrides;

  if (p->version) {
    printf("nlbctl %s\n", PACKAGE_VERSION);
    return CLI_EXIT_OK;
  }
  if (p->help) {
    if (p->command != NULL)
      cli_command_usage(p->command, stdout, true);
    else if (p->resource != NULL)
      resource_usage(p->resource, stdout, true);
    else
      top_usage(stdout, true);
    return CLI_EXIT_OK;
  }
  if (p->resource == NULL)
    return usage_error(p, "no resource given");
  if (p->command == NULL)
    return usage_error(p, "no verb given for %s", p->resource->name);
  if (p->args.n_positional < p->command->min_args)
    return usage_error(p, "too few arguments");
  if (p->args.n_positional > p->command->max_args)
    return usage_error(p, "unexpected argument \"%s\"",
                       p->args.positional[p->command->max_args]);
  int r = global_settings(p, &overrides, &context.format);
  if (r != CLI_EXIT_OK)
    return r;
  r = cli_settings_load(&overrides, &context.settings);
  if (r != CLI_EXIT_OK)
    return r;
  r = cli_http_init();
  if (r == CLI_EXIT_OK) {
    r = p->command->run(&context, &p->args);
    cli_http_cleanup();
  }
  cli_settings_free(&context.settings);
  return r;
}

int main(int argc, char **argv)
{
  struct parse p = {0};
  int r;

  /* Every word is at most one positional or one option. */
  p.args.positional = calloc((size_t)argc + 1, sizeof *p.args.positional);
  p.args.given = calloc((size_t)argc + 1, sizeof *p.args.given);
  if (p.args.positional == NULL || p.args.given == NULL) {
    fputs("nlbctl: out of memory\n", stderr);
    return CLI_EXIT_ERROR;
  }
  r = parse(&p, argc, argv);
  if (r == CLI_EXIT_OK)
    r = run(&p);
  if (fflush(stdout) != 0 && r == CLI_EXIT_OK) {
    perror("nlbctl: standard output");
    r = CLI_EXIT_ERROR;
  }
  free(p.args.positional);
  free(p.args.given);
  return r;
}
