/* libFuzzer target for the API behind the protocols: routing, query and
 * JSON body checks, authentication, roles and every handler over a real
 * SQLite registry (api_env.h), one request after another, the registry
 * fresh for each input.
 *
 * An input is requests separated by lines "%%"; each is a line
 * "METHOD PATH [WHO]" and then the body. WHO is a principal (ops, prov,
 * prov2, shop, shop2: its Bearer token), "-" (no token, the default) or
 * the raw Authorization value, or "token": the last API token made. In the
 * path and body, $s and $e stand for the ID of the last service and
 * endpoint created, $S and $E for the first, $t and $k for the last token
 * and its ID, so that an input can create, accept, use, revoke and delete
 * what it made.
 *
 * Every piece goes through the pure functions too (api_route_match for
 * every method, api_query_*, api_percent_decode, api_json_*,
 * api_bearer_token), each checked against its contract. Every answer must
 * be well formed (api_env.h), and none may show a consumer another
 * consumer's endpoints or events. NLB_FUZZ_VERBOSE=1 prints each request
 * and its answer (replaying an input by hand). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api_env.h"
#include "events.h"
#include "exchange.h"
#include "nlb/api-auth.h"
#include "nlb/api-json.h"
#include "nlb/api-router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REQUESTS 16
#define MAX_LINE 8192

struct ids {
  char first_service[REG_ID_BUF], last_service[REG_ID_BUF];
  char first_endpoint[REG_ID_BUF], last_endpoint[REG_ID_BUF];
  char token[128], token_id[REG_ID_BUF]; /* the last token made */
};

static void check_route(const char *path)
{
  static const enum api_method methods[] = {API_METHOD_GET,   API_METHOD_POST,
                                            API_METHOD_PATCH, API_METHOD_DELETE,
                                            API_METHOD_HEAD,  0};

  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
    struct api_route_match match;
    unsigned allowed = 0;
    int r = api_route_match(methods[i], path, &match, &allowed);

    if (r == 0) {
      enum api_method want =
          methods[i] == API_METHOD_HEAD ? API_METHOD_GET : methods[i];
      if (match.route == NULL || match.route->method != want ||
          match.n_params > API_ROUTE_MAX_PARAMS || match.route < api_routes ||
          match.route >= api_routes + api_n_routes)
        abort();
      for (size_t p = 0; p < match.n_params; p++) {
        size_t len = strnlen(match.params[p], API_PARAM_BUF);
        if (len == 0 || len >= API_PARAM_BUF || strchr(match.params[p], '/'))
          abort();
      }
      if (match.query != NULL &&
          (match.query < path || match.query > path + strlen(path) ||
           match.query[-1] != '?'))
        abort();
    } else if (r == -EPERM) {
      if (allowed == 0 || (methods[i] != 0 && (allowed & methods[i])))
        abort();
    } else if (r != -ENOENT && r != -EINVAL) {
      abort();
    }
  }
}

static void check_query(const char *path)
{
  static const char *const names[] = {"limit", "next_token", "state", "after",
                                      NULL};
  const char *query = strchr(path, '?');
  char value[64], bad[32];

  query = query != NULL ? query + 1 : NULL;
  for (const char *const *name = names; *name != NULL; name++) {
    int r = api_query_get(query, *name, value, sizeof value);
    if (r == 0 && strnlen(value, sizeof value) == sizeof value)
      abort();
    if (r != 0 && r != -ENOENT && r != -EINVAL)
      abort();
  }
  int r = api_query_check(query, names, bad, sizeof bad);
  if (r != 0 && (r != -EINVAL || strnlen(bad, sizeof bad) == sizeof bad))
    abort();
  char decoded[256];
  r = api_percent_decode(path, strlen(path), decoded, sizeof decoded);
  if (r >= 0 && ((size_t)r >= sizeof decoded || strlen(decoded) != (size_t)r))
    abort();
}

static void check_body(const char *body, size_t len)
{
  static const struct api_json_field fields[] = {
      {"name", API_JSON_STRING, false},
      {"acceptance_required", API_JSON_BOOL, false},
      {"allowed_principals", API_JSON_STRINGS, false},
      {"connection_limit", API_JSON_INTEGER, false},
  };
  struct api_json_error err = {0};
  json_t *object = api_json_parse_object(body, len, &err);

  if (object == NULL) {
    if (err.code == NULL)
      abort();
    return;
  }
  if (!json_is_object(object))
    abort();
  if (api_json_check(object, fields, 4, &err) == 0) {
    const json_t *names = json_object_get(object, "allowed_principals");
    const char **strings = NULL;
    size_t n = 0;
    if (names != NULL) {
      if (api_json_strings(names, &strings, &n) != 0 ||
          n != json_array_size(names))
        abort();
      for (size_t i = 0; i < n; i++)
        if (strings[i] == NULL)
          abort();
      free(strings);
    }
  }
  size_t dumped_len;
  char *dumped = api_json_dump(object, &dumped_len);
  if (dumped == NULL || dumped_len == 0 || dumped[dumped_len - 1] != '\n')
    abort();
  free(dumped);
  json_decref(object);
}

static void check_authorization(const char *value)
{
  const char *token;
  size_t token_len, len = value != NULL ? strlen(value) : 0;

  if (value == NULL)
    return;
  if (api_bearer_token(value, len, &token, &token_len) == 0 &&
      (token < value || token + token_len > value + len || token_len == 0 ||
       token_len > API_TOKEN_MAX))
    abort();
}

/* Replaces $s, $e, $S, $E, $t, $k in text by the IDs and token seen so
 * far; malloc'd. */
static char *substitute(const char *text, size_t len, const struct ids *ids)
{
  char *out = malloc(len * sizeof(ids->token) + 1);
  size_t n = 0;

  if (out == NULL)
    abort();
  for (size_t i = 0; i < len; i++) {
    const char *id = NULL;
    if (text[i] == '$' && i + 1 < len) {
      switch (text[i + 1]) {
      case 's':
        id = ids->last_service;
        break;
      case 'S':
        id = ids->first_service;
        break;
      case 'e':
        id = ids->last_endpoint;
        break;
      case 'E':
        id = ids->first_endpoint;
        break;
      case 't':
        id = ids->token;
        break;
      case 'k':
        id = ids->token_id;
        break;
      }
    }
    if (id != NULL) {
      memcpy(out + n, id, strlen(id));
      n += strlen(id);
      i++;
    } else {
      out[n++] = text[i];
    }
  }
  out[n] = '\0';
  return out;
}

static void remember(struct ids *ids, const char *id)
{
  if (strncmp(id, "svc-", 4) == 0) {
    if (ids->first_service[0] == '\0')
      snprintf(ids->first_service, REG_ID_BUF, "%s", id);
    snprintf(ids->last_service, REG_ID_BUF, "%s", id);
  } else if (strncmp(id, "ep-", 3) == 0) {
    if (ids->first_endpoint[0] == '\0')
      snprintf(ids->first_endpoint, REG_ID_BUF, "%s", id);
    snprintf(ids->last_endpoint, REG_ID_BUF, "%s", id);
  }
}

/* A consumer sees only its own endpoints and their events. */
static void check_isolation(const struct api_exchange *x, const char *text,
                            size_t len)
{
  static const char *const consumers[] = {"shop", "shop2"};

  if (!x->authenticated || x->role != REG_ROLE_CONSUMER || text == NULL)
    return;
  for (size_t i = 0; i < 2; i++) {
    char needle[64];
    if (strcmp(consumers[i], x->principal) == 0)
      continue;
    snprintf(needle, sizeof needle, "\"consumer\":\"%s\"", consumers[i]);
    if (memmem(text, len, needle, strlen(needle)) != NULL) {
      fprintf(stderr, "%s saw %s\n", x->principal, needle);
      abort();
    }
  }
}

/* The stream of GET /v1/events, read once to its current end. */
static void read_events(const struct api_exchange *x)
{
  struct reg_actor actor = {x->authenticated ? x->principal : NULL,
                            x->authenticated ? x->role : REG_ROLE_CONSUMER};
  uint64_t cursor = x->resp.events_after;
  char *buf = NULL;
  size_t len = 0;
  int r;

  while ((r = api_events_read(fuzz_api_env()->reg, &actor, &cursor, 7, &buf,
                              &len)) > 0)
    ;
  if (r < 0 && r != -ESTALE)
    abort();
  for (size_t off = 0; off < len;) {
    const char *end = memchr(buf + off, '\n', len - off);
    if (end == NULL)
      abort();
    json_t *line = json_loadb(buf + off, (size_t)(end - buf - off), 0, NULL);
    if (!json_is_object(line))
      abort();
    json_decref(line);
    off = (size_t)(end - buf) + 1;
  }
  check_isolation(x, buf, len);
  free(buf);
}

static void remember_ids(struct ids *ids, const struct api_response *resp)
{
  json_t *body, *value;
  const char *key;

  if (resp->status / 100 != 2 || resp->content_type != NULL ||
      resp->body == NULL)
    return;
  body = json_loadb(resp->body, resp->len, 0, NULL);
  json_object_foreach(body, key, value)
  {
    if (!json_is_string(value))
      continue;
    if (strcmp(key, "id") == 0)
      remember(ids, json_string_value(value));
    if (strcmp(key, "id") == 0 || strcmp(key, "token_id") == 0)
      if (strncmp(json_string_value(value), "tok-", 4) == 0)
        snprintf(ids->token_id, sizeof ids->token_id, "%s",
                 json_string_value(value));
    if (strcmp(key, "token") == 0)
      snprintf(ids->token, sizeof ids->token, "%s", json_string_value(value));
  }
  json_decref(body);
}

static void not_deferred(struct api_exchange *x, void *arg)
{
  (void)x;
  (void)arg;
  abort(); /* the registry answers inline here */
}

static void run_request(struct ids *ids, const char *head, size_t head_len,
                        const char *body, size_t body_len)
{
  char line[MAX_LINE];
  char method[32] = "", who[MAX_LINE] = "-";
  char *path, *text;

  if (head_len >= sizeof line)
    return;
  memcpy(line, head, head_len);
  line[head_len] = '\0';
  /* METHOD PATH [WHO...]: the rest of the line is WHO, spaces and all. */
  char *sp = strchr(line, ' ');
  if (sp == NULL || (size_t)(sp - line) >= sizeof method)
    return;
  memcpy(method, line, (size_t)(sp - line));
  char *path_start = sp + 1, *path_end = strchr(path_start, ' ');
  if (path_end != NULL) {
    snprintf(who, sizeof who, "%s", path_end + 1);
    *path_end = '\0';
  }
  path = substitute(path_start, strlen(path_start), ids);
  text = substitute(body, body_len, ids);

  char bearer[160];
  const char *authorization = fuzz_api_env_authorization(who);
  if (strcmp(who, "token") == 0) {
    snprintf(bearer, sizeof bearer, "Bearer %s", ids->token);
    authorization = bearer;
  }
  check_route(path);
  check_query(path);
  check_body(text, strlen(text));
  check_authorization(authorization);

  struct api_exchange x = {
      .method = method,
      .path = path,
      .authorization = authorization,
      .authorization_len = authorization ? strlen(authorization) : 0,
      .body = text,
      .body_len = strlen(text),
  };
  if (api_exchange_run(fuzz_api_env()->server, &x, not_deferred, NULL) != 0)
    abort();
  if (getenv("NLB_FUZZ_VERBOSE") != NULL)
    fprintf(stderr, "%s %s %s -> %d %.*s\n", method, path, who, x.resp.status,
            (int)(x.resp.len < 300 ? x.resp.len : 300),
            x.resp.body != NULL ? x.resp.body : "");
  fuzz_api_env_check_response(&x.resp);
  check_isolation(&x, x.resp.body, x.resp.len);
  if (x.resp.events && x.resp.status == 200)
    read_events(&x);
  remember_ids(ids, &x.resp);
  api_exchange_clear(&x);
  free(path);
  free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const char *p = (const char *)data, *end = p + size;
  struct ids ids;
  int requests = 0;

  /* Requests are text: a NUL would cut them where the protocols refuse. */
  if (memchr(data, '\0', size) != NULL)
    return 0;
  memset(&ids, 0, sizeof ids);
  fuzz_api_env_reset(false);
  while (p < end && requests++ < MAX_REQUESTS) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *head_end = eol != NULL ? eol : end;
    const char *body = eol != NULL ? eol + 1 : end;
    const char *body_end = body;
    const char *next = end;

    /* The body runs to a line "%%" or to the end. */
    for (const char *q = body; q < end;) {
      const char *line_end = memchr(q, '\n', (size_t)(end - q));
      size_t line_len = (size_t)((line_end ? line_end : end) - q);
      if (line_len == 2 && q[0] == '%' && q[1] == '%') {
        next = line_end ? line_end + 1 : end;
        break;
      }
      q = line_end ? line_end + 1 : end;
      body_end = q;
    }
    if (body_end > body && body_end[-1] == '\n')
      body_end--;
    run_request(&ids, p, (size_t)(head_end - p), body,
                (size_t)(body_end - body));
    p = next;
  }
  return 0;
}
