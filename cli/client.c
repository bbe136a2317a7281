/* The API calls commands make: one request with its error printed, a list
 * read across its pages, an endpoint found by its service's name. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

char *cli_path(const char *fmt, ...)
{
  va_list ap;
  char *path;

  va_start(ap, fmt);
  int n = vasprintf(&path, fmt, ap);
  va_end(ap);
  if (n < 0)
    cli_out_of_memory();
  return path;
}

char *cli_segment(const char *text)
{
  char *escaped = cli_escape(text);
  if (escaped == NULL)
    cli_out_of_memory();
  return escaped;
}

int cli_call(const struct cli_context *context, const char *method,
             const char *path, const json_t *body,
             struct cli_response *response)
{
  char *text = NULL;

  if (body != NULL && (text = json_dumps(body, JSON_COMPACT)) == NULL)
    cli_out_of_memory();
  int r = cli_http_request(&context->settings, method, path, text, response);
  free(text);
  if (r != 0)
    return r;
  if (response->status >= 200 && response->status < 300)
    return CLI_EXIT_OK;
  cli_print_api_error(response);
  if (response->status == 401 && context->settings.token == NULL)
    fputs("nlbctl: no token was given: use --token-file, NLB_TOKEN or the "
          "config file\n",
          stderr);
  cli_response_free(response);
  return CLI_EXIT_ERROR;
}

json_t *cli_answer_json(const struct cli_response *response)
{
  json_error_t error;
  json_t *value = json_loadb(response->body, response->len, 0, &error);
  if (value == NULL)
    fprintf(stderr, "nlbctl: the API's answer is not JSON: %s\n", error.text);
  return value;
}

bool cli_format_document(const struct cli_context *context)
{
  return context->format == CLI_FORMAT_JSON ||
         context->format == CLI_FORMAT_YAML;
}

int cli_print_document(const struct cli_context *context, const char *body,
                       size_t len)
{
  if (context->format != CLI_FORMAT_YAML) {
    cli_print_raw(body, len);
    return CLI_EXIT_OK;
  }
  struct cli_response response = {.body = (char *)body, .len = len};
  json_t *value = cli_answer_json(&response);
  if (value == NULL)
    return CLI_EXIT_ERROR;
  cli_print_yaml(value);
  json_decref(value);
  return CLI_EXIT_OK;
}

void cli_print_value(const struct cli_context *context, const json_t *value)
{
  if (context->format == CLI_FORMAT_YAML) {
    cli_print_yaml(value);
    return;
  }
  char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
  if (text == NULL)
    cli_out_of_memory();
  puts(text);
  free(text);
}

size_t cli_columns_shown(const struct cli_context *context,
                         const struct cli_column *columns, size_t n,
                         struct cli_column **shown)
{
  size_t k = 0;
  if (context->format == CLI_FORMAT_COLUMNS) {
    columns = context->columns;
    n = context->n_columns;
  }
  *shown = calloc(n + 1, sizeof **shown);
  if (*shown == NULL)
    cli_out_of_memory();
  for (size_t i = 0; i < n; i++)
    if (!columns[i].wide || context->format != CLI_FORMAT_TABLE)
      (*shown)[k++] = columns[i];
  return k;
}

void cli_print_rows(const struct cli_context *context, const json_t *rows,
                    const struct cli_column *columns, size_t n,
                    const char *what)
{
  struct cli_column *shown;
  size_t k = cli_columns_shown(context, columns, n, &shown);
  cli_print_table(rows, shown, k, what);
  free(shown);
}

int cli_show(const struct cli_context *context,
             const struct cli_response *response)
{
  if (context->format == CLI_FORMAT_JSON) {
    cli_print_raw(response->body, response->len);
    return CLI_EXIT_OK;
  }
  json_t *value = cli_answer_json(response);
  if (value == NULL)
    return CLI_EXIT_ERROR;
  if (context->format == CLI_FORMAT_YAML) {
    cli_print_yaml(value);
  } else if (context->format == CLI_FORMAT_COLUMNS) {
    json_t *rows = json_pack("[O]", value);
    if (rows == NULL)
      cli_out_of_memory();
    cli_print_rows(context, rows, NULL, 0, "objects");
    json_decref(rows);
  } else {
    cli_print_object(value);
  }
  json_decref(value);
  return CLI_EXIT_OK;
}

/* The path of one page: path, then the query, the page size and the
 * token of the page, those that are set. */
static char *page_path(const char *path, const char *query,
                       const char *page_size, const char *next_token)
{
  const char *names[] = {"", "limit=", "next_token="};
  const char *values[] = {query, page_size, next_token};
  char *page = cli_path("%s", path);
  bool first = true;

  for (size_t i = 0; i < 3; i++) {
    if (values[i] == NULL)
      continue;
    /* The query comes encoded; the others are encoded here. */
    char *value = i == 0 ? cli_strdup(values[i]) : cli_segment(values[i]);
    char *longer =
        cli_path("%s%c%s%s", page, first ? '?' : '&', names[i], value);
    free(value);
    free(page);
    page = longer;
    first = false;
  }
  return page;
}

/* Appends page's items to merged's; false when page has no such array. */
static bool merge_page(json_t *merged, json_t *page, const char *key)
{
  json_t *items = json_object_get(page, key);
  if (!json_is_array(items))
    return false;
  if (json_array_extend(json_object_get(merged, key), items) != 0)
    cli_out_of_memory();
  return true;
}

int cli_list(const struct cli_context *context, const char *path,
             const char *query, const char *key, const char *page_size,
             json_t **merged, struct cli_response *first)
{
  struct cli_response response;
  char *next_token = NULL;
  size_t pages = 0;
  int r = CLI_EXIT_OK;

  *merged = NULL;
  do {
    char *page_at = page_path(path, query, page_size, next_token);
    r = cli_call(context, "GET", page_at, NULL, &response);
    free(page_at);
    if (r != CLI_EXIT_OK)
      break;
    json_t *page = cli_answer_json(&response);
    if (page == NULL || !json_is_array(json_object_get(page, key))) {
      if (page != NULL)
        fprintf(stderr, "nlbctl: the API's answer has no \"%s\" list\n", key);
      json_decref(page);
      cli_response_free(&response);
      r = CLI_EXIT_ERROR;
      break;
    }
    const char *token = json_string_value(json_object_get(page, "next_token"));
    if (token != NULL && token[0] != '\0' && next_token != NULL &&
        strcmp(token, next_token) == 0) {
      fprintf(stderr, "nlbctl: the API answered the same next_token twice\n");
      r = CLI_EXIT_ERROR;
    }
    free(next_token);
    next_token = token != NULL && token[0] != '\0' ? cli_strdup(token) : NULL;
    if (pages++ == 0) {
      *merged = json_incref(page);
    } else {
      merge_page(*merged, page, key);
    }
    json_decref(page);
    /* The first page as it came, for -o json when it is the only one. */
    if (pages == 1 && first != NULL)
      *first = response;
    else
      cli_response_free(&response);
  } while (r == CLI_EXIT_OK && next_token != NULL);
  free(next_token);
  if (*merged != NULL)
    json_object_del(*merged, "next_token");
  if (r != CLI_EXIT_OK) {
    json_decref(*merged);
    *merged = NULL;
    if (first != NULL && pages > 0)
      cli_response_free(first);
  } else if (first != NULL && pages > 1) {
    /* Several pages: the merged document stands for them all. */
    cli_response_free(first);
  }
  return r;
}

void cli_print_list_document(const struct cli_context *context,
                             const json_t *merged,
                             const struct cli_response *first)
{
  if (context->format == CLI_FORMAT_JSON && first != NULL &&
      first->body != NULL) {
    cli_print_raw(first->body, first->len);
    return;
  }
  cli_print_value(context, merged);
}

json_t *cli_list_rows(const struct cli_list *list, const json_t *merged)
{
  if (list->rows != NULL)
    return list->rows(merged);
  return json_incref(json_object_get(merged, list->key));
}

int cli_show_list(const struct cli_context *context,
                  const struct cli_list *list)
{
  struct cli_response first = {0};
  json_t *merged;

  int r = cli_list(context, list->path, list->query, list->key, list->page_size,
                   &merged, &first);
  if (r != CLI_EXIT_OK)
    return r;
  if (cli_format_document(context)) {
    cli_print_list_document(context, merged, &first);
  } else {
    json_t *rows = cli_list_rows(list, merged);
    cli_print_rows(context, rows, list->columns, list->n_columns, list->what);
    json_decref(rows);
  }
  cli_response_free(&first);
  json_decref(merged);
  return CLI_EXIT_OK;
}

/* ---- endpoints by name --------------------------------------------------- */

/* "ep-" and 17 lowercase hex digits, as the registry makes them. */
static bool is_endpoint_id(const char *s)
{
  if (strncmp(s, "ep-", 3) != 0 || strlen(s) != 20)
    return false;
  for (s += 3; *s != '\0'; s++)
    if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
      return false;
  return true;
}

static bool is_live(const json_t *endpoint)
{
  const char *state = json_string_value(json_object_get(endpoint, "state"));
  return state != NULL && (strcmp(state, "pendingAcceptance") == 0 ||
                           strcmp(state, "available") == 0);
}

static bool of_service(const json_t *endpoint, const char *service)
{
  const char *name = json_string_value(json_object_get(endpoint, "service"));
  const char *id = json_string_value(json_object_get(endpoint, "service_id"));
  return (name != NULL && strcmp(name, service) == 0) ||
         (id != NULL && strcmp(id, service) == 0);
}

/* The endpoints of service, only the live ones when live is set. */
static json_t *matching(const json_t *endpoints, const char *service, bool live)
{
  json_t *found = json_array(), *e;
  size_t i;
  if (found == NULL)
    cli_out_of_memory();
  json_array_foreach(endpoints, i, e)
  {
    if (of_service(e, service) && (!live || is_live(e)))
      json_array_append(found, e);
  }
  return found;
}

static void print_ids(const json_t *endpoints)
{
  json_t *e;
  size_t i;
  json_array_foreach(endpoints, i, e)
  {
    const char *id = json_string_value(json_object_get(e, "id"));
    fprintf(stderr, "%s%s", i > 0 ? ", " : "", id != NULL ? id : "?");
  }
}

int cli_endpoint_id(const struct cli_context *context, const char *name,
                    char **id)
{
  json_t *all;

  if (is_endpoint_id(name)) {
    *id = cli_strdup(name);
    return CLI_EXIT_OK;
  }
  int r =
      cli_list(context, "/v1/endpoints", NULL, "endpoints", NULL, &all, NULL);
  if (r != CLI_EXIT_OK)
    return r;
  /* The live endpoint of a service, else its only endpoint at all. */
  json_t *found = matching(json_object_get(all, "endpoints"), name, true);
  bool live = json_array_size(found) > 0;
  if (!live) {
    json_decref(found);
    found = matching(json_object_get(all, "endpoints"), name, false);
  }
  size_t n = json_array_size(found);
  const char *only =
      json_string_value(json_object_get(json_array_get(found, 0), "id"));
  if (n == 1 && only != NULL) {
    *id = cli_strdup(only);
  } else if (n == 1) {
    fputs("nlbctl: the API's answer has an endpoint without an ID\n", stderr);
    r = CLI_EXIT_ERROR;
  } else if (n == 0) {
    fprintf(stderr,
            "nlbctl: no endpoint \"%s\": name an endpoint by its ID (ep-...) "
            "or by its service when it has one endpoint\n",
            name);
    r = CLI_EXIT_ERROR;
  } else {
    fprintf(stderr, "nlbctl: service \"%s\" has %zu %sendpoints (", name, n,
            live ? "live " : "");
    print_ids(found);
    fputs("): name one by its ID\n", stderr);
    r = CLI_EXIT_USAGE;
  }
  json_decref(found);
  json_decref(all);
  return r;
}
