/* The arguments a command was given and the help a command prints: what
 * the command line (nlbctl.c) and the commands (commands.c) both use. Calls
 * nothing above it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Prints text from column indent on, wrapped before column 80. */
void cli_print_wrapped(const char *text, int column, int indent, FILE *out)
{
  while (*text != '\0') {
    int room = 79 - column, n = (int)strlen(text);
    if (n > room) {
      /* Break before an "[option]" of a synopsis, else at a space. */
      int k = room;
      while (k > 0 && !(text[k] == ' ' && text[k + 1] == '['))
        k--;
      for (n = room; k == 0 && n > 0 && text[n] != ' ';)
        n--;
      if (k > 0)
        n = k;
      if (n == 0)
        n = (int)strcspn(text, " ");
    }
    fprintf(out, "%.*s\n", n, text);
    text += n;
    while (*text == ' ')
      text++;
    if (*text != '\0')
      fprintf(out, "%*s", indent, "");
    column = indent;
  }
}

void cli_print_options(const struct cli_option *options, FILE *out)
{
  for (const struct cli_option *o = options; o->name != NULL; o++) {
    char left[64];
    int n =
        o->short_name != 0
            ? snprintf(left, sizeof left, "-%c, --%s", o->short_name, o->name)
            : snprintf(left, sizeof left, "    --%s", o->name);
    if (o->value_name != NULL && n > 0 && (size_t)n < sizeof left)
      snprintf(left + n, sizeof left - (size_t)n, " %s", o->value_name);
    if (strlen(left) > 24)
      fprintf(out, "  %s\n  %-24s  ", left, "");
    else
      fprintf(out, "  %-24s  ", left);
    cli_print_wrapped(o->help, 28, 28, out);
  }
}

void cli_command_usage(const struct cli_command *command, FILE *out, bool help)
{
  int column = fprintf(out, "Usage: nlbctl %s%s%s ", command->resource,
                       command->verb != NULL ? " " : "",
                       command->verb != NULL ? command->verb : "");
  cli_print_wrapped(command->synopsis, column, column, out);
  if (!help) {
    fprintf(out, "Run 'nlbctl %s%s%s --help' for more.\n", command->resource,
            command->verb != NULL ? " " : "",
            command->verb != NULL ? command->verb : "");
    return;
  }
  fprintf(out, "\n%s.\n", command->summary);
  if (command->description != NULL)
    fprintf(out, "\n%s", command->description);
  if (command->options != NULL && command->options[0].name != NULL) {
    fputs("\nOptions:\n", out);
    cli_print_options(command->options, out);
  }
  fputs("\nGlobal options (--api, --token-file, -o, ...): nlbctl --help.\n",
        out);
}

int cli_usage_error(const struct cli_command *command, const char *fmt, ...)
{
  va_list ap;
  fputs("nlbctl: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  cli_command_usage(command, stderr, false);
  return CLI_EXIT_USAGE;
}

/* ---- arguments ---------------------------------------------------------- */

const char *cli_arg(const struct cli_args *args, const char *name)
{
  const char *value = NULL;
  for (size_t i = 0; i < args->n_given; i++)
    if (strcmp(args->given[i].option->name, name) == 0)
      value = args->given[i].value;
  return value;
}

void cli_strings_split(char ***strings, size_t *n, const char *value)
{
  for (;;) {
    size_t len = strcspn(value, ",");
    if (len > 0) {
      char **grown = realloc(*strings, (*n + 1) * sizeof **strings);
      if (grown == NULL || (grown[*n] = strndup(value, len)) == NULL)
        cli_out_of_memory();
      *strings = grown;
      (*n)++;
    }
    if (value[len] == '\0')
      return;
    value += len + 1;
  }
}

char **cli_arg_list(const struct cli_args *args, const char *name, size_t *n)
{
  char **strings = NULL;
  *n = 0;
  for (size_t i = 0; i < args->n_given; i++) {
    const struct cli_option *o = args->given[i].option;
    const char *v = args->given[i].value;
    if (strcmp(o->name, name) != 0)
      continue;
    if (o->list) {
      cli_strings_split(&strings, n, v);
    } else {
      char **grown = realloc(strings, (*n + 1) * sizeof *strings);
      if (grown == NULL)
        cli_out_of_memory();
      strings = grown;
      strings[(*n)++] = cli_strdup(v);
    }
  }
  return strings;
}

void cli_strings_free(char **strings, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(strings[i]);
  free(strings);
}
