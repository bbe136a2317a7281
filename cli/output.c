/* nlbctl's output: aligned tables for people, the API's JSON for scripts
 * (YAML: yaml.c), and the API's errors as "STATUS CODE: message". */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Between two columns, as kubectl does. */
#define COLUMN_GAP 3

void cli_out_of_memory(void)
{
  fputs("nlbctl: out of memory\n", stderr);
  exit(CLI_EXIT_ERROR);
}

char *cli_strdup(const char *s)
{
  char *copy = strdup(s);
  if (copy == NULL)
    cli_out_of_memory();
  return copy;
}

int cli_print_api_error(const struct cli_response *response)
{
  json_t *body = json_loadb(response->body, response->len, 0, NULL);
  json_t *error = json_object_get(body, "error");
  const char *code = json_string_value(json_object_get(error, "code"));
  const char *message = json_string_value(json_object_get(error, "message"));

  if (code != NULL && message != NULL) {
    fprintf(stderr, "%ld %s: %s\n", response->status, code, message);
  } else {
    /* Not the API's shape (a proxy in between?): its first line says
     * more than nothing. */
    size_t n = strcspn(response->body, "\r\n");
    fprintf(stderr, "%ld: %.*s\n", response->status, (int)(n > 200 ? 200 : n),
            n > 0 ? response->body : "(no message)");
  }
  json_decref(body);
  return CLI_EXIT_ERROR;
}

char *cli_value_text(const json_t *value)
{
  char buf[64];

  switch (value != NULL ? json_typeof(value) : JSON_NULL) {
  case JSON_STRING:
    return cli_strdup(json_string_length(value) > 0 ? json_string_value(value)
                                                    : "-");
  case JSON_INTEGER:
    snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT,
             json_integer_value(value));
    return cli_strdup(buf);
  case JSON_REAL:
    snprintf(buf, sizeof buf, "%g", json_real_value(value));
    return cli_strdup(buf);
  case JSON_TRUE:
    return cli_strdup("true");
  case JSON_FALSE:
    return cli_strdup("false");
  case JSON_ARRAY: {
    size_t len = 0, i;
    json_t *item;
    char *text = cli_strdup("");
    json_array_foreach(value, i, item)
    {
      char *part = cli_value_text(item);
      char *grown = realloc(text, len + strlen(part) + 2);
      if (grown == NULL)
        cli_out_of_memory();
      text = grown;
      len += (size_t)sprintf(text + len, "%s%s", i > 0 ? "," : "", part);
      free(part);
    }
    if (len == 0) {
      free(text);
      return cli_strdup("-");
    }
    return text;
  }
  case JSON_OBJECT: {
    char *text = json_dumps(value, JSON_COMPACT);
    return text != NULL ? text : cli_strdup("-");
  }
  default:
    return cli_strdup("-");
  }
}

/* The cells of object's row, each malloc'd, into cells[0..n). */
static void row_cells(const json_t *object, const struct cli_column *columns,
                      size_t n, char **cells)
{
  for (size_t c = 0; c < n; c++)
    cells[c] = columns[c].format != NULL
                   ? columns[c].format(object, columns[c].key)
                   : cli_value_text(json_object_get(object, columns[c].key));
}

static void print_row(char **cells, const size_t *widths, size_t n)
{
  for (size_t c = 0; c < n; c++) {
    if (c + 1 < n)
      printf("%-*s", (int)(widths[c] + COLUMN_GAP), cells[c]);
    else
      printf("%s\n", cells[c]);
  }
}

void cli_table_init(struct cli_table *table, const struct cli_column *columns,
                    size_t n)
{
  table->columns = columns;
  table->n = n;
  table->widths = calloc(n + 1, sizeof *table->widths);
  table->header_done = false;
  if (table->widths == NULL)
    cli_out_of_memory();
  for (size_t c = 0; c < n; c++)
    table->widths[c] = strlen(columns[c].header);
}

void cli_table_print(struct cli_table *table, const json_t *array)
{
  size_t rows = json_array_size(array), n = table->n;
  char **cells = calloc(rows * n + 1, sizeof *cells);
  if (cells == NULL)
    cli_out_of_memory();
  for (size_t r = 0; r < rows; r++)
    row_cells(json_array_get(array, r), table->columns, n, cells + r * n);
  for (size_t i = 0; i < rows * n; i++) {
    size_t len = strlen(cells[i]);
    if (len > table->widths[i % n])
      table->widths[i % n] = len;
  }
  if (!table->header_done && rows > 0) {
    char **headers = calloc(n + 1, sizeof *headers);
    if (headers == NULL)
      cli_out_of_memory();
    for (size_t c = 0; c < n; c++)
      headers[c] = (char *)table->columns[c].header;
    print_row(headers, table->widths, n);
    free(headers);
    table->header_done = true;
  }
  for (size_t r = 0; r < rows; r++)
    print_row(cells + r * n, table->widths, n);
  for (size_t i = 0; i < rows * n; i++)
    free(cells[i]);
  free(cells);
}

void cli_table_free(struct cli_table *table)
{
  free(table->widths);
  table->widths = NULL;
}

void cli_print_table(const json_t *array, const struct cli_column *columns,
                     size_t n, const char *what)
{
  struct cli_table table;
  if (json_array_size(array) == 0) {
    fprintf(stderr, "No %s found.\n", what);
    return;
  }
  cli_table_init(&table, columns, n);
  cli_table_print(&table, array);
  cli_table_free(&table);
}

char *cli_row_text(const json_t *object, const struct cli_column *columns,
                   size_t n)
{
  char **cells = calloc(n + 1, sizeof *cells);
  size_t len = 1;
  if (cells == NULL)
    cli_out_of_memory();
  row_cells(object, columns, n, cells);
  for (size_t c = 0; c < n; c++)
    len += strlen(cells[c]) + 1;
  char *text = malloc(len), *end = text;
  if (text == NULL)
    cli_out_of_memory();
  *end = '\0';
  for (size_t c = 0; c < n; c++) {
    end += sprintf(end, "%s%s", c > 0 ? "\t" : "", cells[c]);
    free(cells[c]);
  }
  free(cells);
  return text;
}

/* ".key", ".key.key", ".key[N]"; a leading "." may be left out. */
char *cli_path_text(const json_t *object, const char *path)
{
  const json_t *value = object;
  const char *p = path;

  while (*p != '\0' && value != NULL) {
    if (*p == '[') {
      char *end;
      unsigned long i = strtoul(p + 1, &end, 10);
      if (end == p + 1 || *end != ']')
        return cli_strdup("-");
      value = json_array_get(value, i);
      p = end + 1;
      continue;
    }
    if (*p == '.')
      p++;
    size_t len = strcspn(p, ".[");
    if (len == 0)
      break;
    char *key = strndup(p, len);
    if (key == NULL)
      cli_out_of_memory();
    value = json_object_get(value, key);
    free(key);
    p += len;
  }
  return cli_value_text(value);
}

static bool objects_inside(const json_t *value)
{
  return json_is_array(value) && json_array_size(value) > 0 &&
         json_is_object(json_array_get(value, 0));
}

/* An object inside an object, on one line: "key=value key=value". */
static void print_inline(const json_t *object)
{
  const char *key;
  json_t *value;
  bool first = true;
  json_object_foreach((json_t *)object, key, value)
  {
    char *text = cli_value_text(value);
    printf("%s%s=%s", first ? "" : " ", key, text);
    free(text);
    first = false;
  }
  putchar('\n');
}

void cli_print_object(const json_t *object)
{
  const char *key;
  json_t *value;
  int width = 0;

  json_object_foreach((json_t *)object, key, value)
  {
    if ((int)strlen(key) > width)
      width = (int)strlen(key);
  }
  width += 1 + COLUMN_GAP; /* "key:" and the gap */
  json_object_foreach((json_t *)object, key, value)
  {
    char label[256];
    snprintf(label, sizeof label, "%s:", key);
    if (objects_inside(value)) {
      size_t i;
      json_t *item;
      json_array_foreach(value, i, item)
      {
        printf("%-*s", width, i == 0 ? label : "");
        if (json_is_object(item)) {
          print_inline(item);
        } else {
          char *text = cli_value_text(item);
          printf("%s\n", text);
          free(text);
        }
      }
      continue;
    }
    char *text = cli_value_text(value);
    printf("%-*s%s\n", width, label, text);
    free(text);
  }
}

void cli_print_raw(const char *body, size_t len)
{
  fwrite(body, 1, len, stdout);
  if (len == 0 || body[len - 1] != '\n')
    putchar('\n');
}
