/* CUnit suite for the API's pure pieces: routing and path parameters, the
 * route table against docs/openapi.yaml, query strings, strict JSON
 * checks, Bearer tokens and principals. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "../../api/admission.h"
#include "../../api/api-int.h"
#include "../../api/console-assets.h"
#include "../../api/openapi.h"
#include "nlb/api-auth.h"
#include "nlb/api-json.h"
#include "nlb/api-router.h"

#include "unit.h"

/* The name of the route method and path match, or "none". */
static const char *route_of(const char *method, const char *path)
{
  struct api_route_match m;
  if (api_route_match(api_method_parse(method), path, &m, NULL) != 0)
    return "none";
  return m.route->name;
}

/* The row named name ("GET /healthz"); fails the test when there is none. */
static const struct api_route *route_named(const char *name)
{
  for (size_t i = 0; i < api_n_routes; i++)
    if (strcmp(api_routes[i].name, name) == 0)
      return &api_routes[i];
  CU_FAIL_FATAL("no such route");
  return NULL;
}

static void test_api_route_static_paths(void)
{
  CU_ASSERT_STRING_EQUAL(route_of("GET", "/v1/services"), "GET /v1/services");
  CU_ASSERT_STRING_EQUAL(route_of("POST", "/v1/services"), "POST /v1/services");
  CU_ASSERT_STRING_EQUAL(route_of("GET", "/v1/services/"), "GET /v1/services");
  CU_ASSERT_STRING_EQUAL(route_of("GET", "/healthz"), "GET /healthz");
  CU_ASSERT_STRING_EQUAL(route_of("HEAD", "/healthz"), "GET /healthz");
  CU_ASSERT_STRING_EQUAL(route_of("GET", "/metrics"), "GET /metrics");
  CU_ASSERT_STRING_EQUAL(route_of("GET", "/v1/available-services"),
                         "GET /v1/available-services");
  CU_ASSERT_STRING_EQUAL(route_of("GET", "/v1/events?after=3"),
                         "GET /v1/events");
  CU_ASSERT_STRING_EQUAL(route_of("GET", "/v1/target-groups"),
                         "GET /v1/target-groups");
  /* A parameter's name in the pattern is not a literal segment. */
  CU_ASSERT_STRING_EQUAL(route_of("GET", "/v1/services/{id}"),
                         "GET /v1/services/{id}");
  CU_ASSERT_STRING_EQUAL(route_of("GET", "/v1/services/id"),
                         "GET /v1/services/{id}");
}

/* Writes pattern into path with "x" for each parameter. */
static void example_path(const char *pattern, char *path, size_t len)
{
  size_t o = 0;
  for (const char *p = pattern; *p != '\0' && o + 2 < len; p++) {
    if (*p == '{') {
      path[o++] = 'x';
      p = strchr(p, '}');
    } else {
      path[o++] = *p;
    }
  }
  path[o] = '\0';
}

static void test_api_route_every_route_reachable(void)
{
  /* Each row matches its own pattern with "x" for each parameter. */
  for (size_t i = 0; i < api_n_routes; i++) {
    const struct api_route *r = &api_routes[i];
    char path[256];
    struct api_route_match m;

    example_path(r->pattern, path, sizeof path);
    CU_ASSERT_EQUAL_FATAL(api_route_match(r->method, path, &m, NULL), 0);
    CU_ASSERT_PTR_EQUAL(m.route, r);
  }
}

static void test_api_route_params(void)
{
  struct api_route_match m;
  CU_ASSERT_EQUAL_FATAL(
      api_route_match(API_METHOD_POST,
                      "/v1/services/svc-0123/connections/accept", &m, NULL),
      0);
  CU_ASSERT_STRING_EQUAL(m.route->name,
                         "POST /v1/services/{id}/connections/accept");
  CU_ASSERT_EQUAL(m.n_params, 1);
  CU_ASSERT_STRING_EQUAL(m.params[0], "svc-0123");
  CU_ASSERT_PTR_NULL(m.query);

  CU_ASSERT_EQUAL_FATAL(
      api_route_match(API_METHOD_DELETE,
                      "/v1/target-groups/web-tg/targets/%5B%3A%3A1%5D%3A9001",
                      &m, NULL),
      0);
  CU_ASSERT_STRING_EQUAL(m.route->name,
                         "DELETE /v1/target-groups/{name}/targets/{address}");
  CU_ASSERT_EQUAL(m.n_params, 2);
  CU_ASSERT_STRING_EQUAL(m.params[0], "web-tg");
  CU_ASSERT_STRING_EQUAL(m.params[1], "[::1]:9001");

  CU_ASSERT_EQUAL_FATAL(
      api_route_match(API_METHOD_GET,
                      "/v1/services/svc-1/connections?state=available", &m,
                      NULL),
      0);
  CU_ASSERT_STRING_EQUAL(m.query, "state=available");
  CU_ASSERT_FALSE(m.trailing_slash);

  /* A trailing slash names the same route, and says it was there. */
  CU_ASSERT_EQUAL_FATAL(api_route_match(API_METHOD_GET, "/ui/", &m, NULL), 0);
  CU_ASSERT_STRING_EQUAL(m.route->name, "GET /ui");
  CU_ASSERT_TRUE(m.trailing_slash);
  CU_ASSERT_EQUAL_FATAL(api_route_match(API_METHOD_GET, "/ui?x=1", &m, NULL),
                        0);
  CU_ASSERT_STRING_EQUAL(m.route->name, "GET /ui");
  CU_ASSERT_FALSE(m.trailing_slash);
  CU_ASSERT_EQUAL_FATAL(api_route_match(API_METHOD_GET, "/ui/app.js", &m, NULL),
                        0);
  CU_ASSERT_STRING_EQUAL(m.route->name, "GET /ui/{file}");
  CU_ASSERT_STRING_EQUAL(m.params[0], "app.js");
}

static void test_api_route_errors(void)
{
  struct api_route_match m;
  unsigned allowed;
  CU_ASSERT_EQUAL(api_route_match(API_METHOD_GET, "/v2/services", &m, NULL),
                  -ENOENT);
  CU_ASSERT_EQUAL(
      api_route_match(API_METHOD_GET, "/v1/services/a/b/c", &m, NULL), -ENOENT);
  CU_ASSERT_EQUAL(api_route_match(API_METHOD_GET, "/v1//", &m, NULL), -ENOENT);
  CU_ASSERT_EQUAL(api_route_match(API_METHOD_GET, "v1/services", &m, NULL),
                  -EINVAL);
  /* An empty segment is not a parameter. */
  CU_ASSERT_EQUAL(
      api_route_match(API_METHOD_GET, "/v1/services//permissions", &m, NULL),
      -ENOENT);
  CU_ASSERT_EQUAL(
      api_route_match(API_METHOD_DELETE, "/v1/services", &m, &allowed), -EPERM);
  CU_ASSERT_EQUAL(allowed, API_METHOD_GET | API_METHOD_HEAD | API_METHOD_POST);
  CU_ASSERT_EQUAL(
      api_route_match(API_METHOD_POST, "/v1/endpoints/ep-1", &m, &allowed),
      -EPERM);
  CU_ASSERT_EQUAL(allowed, API_METHOD_GET | API_METHOD_HEAD | API_METHOD_PATCH |
                               API_METHOD_DELETE);
  /* Bad escapes, an encoded slash or NUL. */
  CU_ASSERT_EQUAL(api_route_match(API_METHOD_GET, "/v1/services/%zz", &m, NULL),
                  -EINVAL);
  CU_ASSERT_EQUAL(api_route_match(API_METHOD_GET, "/v1/services/a%2", &m, NULL),
                  -EINVAL);
  CU_ASSERT_EQUAL(
      api_route_match(API_METHOD_GET, "/v1/services/a%2Fb", &m, NULL), -EINVAL);
  CU_ASSERT_EQUAL(
      api_route_match(API_METHOD_GET, "/v1/services/a%00", &m, NULL), -EINVAL);
  char longpath[600] = "/v1/services/";
  memset(longpath + strlen(longpath), 'a', 400);
  CU_ASSERT_EQUAL(api_route_match(API_METHOD_GET, longpath, &m, NULL), -EINVAL);
  CU_ASSERT_EQUAL(api_method_parse("PUT"), 0);
  CU_ASSERT_EQUAL(api_method_parse("get"), 0);
}

static void test_api_route_roles(void)
{
  const struct api_route *r;
  for (size_t i = 0; i < api_n_routes; i++) {
    r = &api_routes[i];
    /* Operators may call everything but endpoint creation (an endpoint
     * belongs to a consumer). */
    CU_ASSERT_EQUAL(api_route_allows(r, REG_ROLE_OPERATOR),
                    strcmp(r->name, "POST /v1/endpoints") != 0);
  }
  r = route_named("GET /healthz");
  CU_ASSERT_EQUAL(r->roles, API_ROLE_ANYONE);
  CU_ASSERT_TRUE(api_route_allows(r, REG_ROLE_CONSUMER));
  r = route_named("POST /v1/services");
  CU_ASSERT_TRUE(api_route_allows(r, REG_ROLE_PROVIDER));
  CU_ASSERT_FALSE(api_route_allows(r, REG_ROLE_CONSUMER));
  r = route_named("POST /v1/endpoints");
  CU_ASSERT_TRUE(api_route_allows(r, REG_ROLE_CONSUMER));
  CU_ASSERT_FALSE(api_route_allows(r, REG_ROLE_PROVIDER));
  r = route_named("POST /v1/target-groups/{name}/targets");
  CU_ASSERT_FALSE(api_route_allows(r, REG_ROLE_PROVIDER));
  CU_ASSERT_FALSE(api_route_allows(r, REG_ROLE_CONSUMER));
  r = route_named("GET /v1/events");
  CU_ASSERT_TRUE(api_route_allows(r, REG_ROLE_CONSUMER));
  CU_ASSERT_TRUE(api_route_allows(r, REG_ROLE_PROVIDER));
  /* A row without roles is called by no one. */
  const struct api_route none = {.method = API_METHOD_GET, .pattern = "/x"};
  CU_ASSERT_FALSE(api_route_allows(&none, REG_ROLE_OPERATOR));
}

/* ---- the route table against docs/openapi.yaml --------------------------
 */

static const char *method_name(enum api_method m)
{
  switch (m) {
  case API_METHOD_GET:
    return "GET";
  case API_METHOD_POST:
    return "POST";
  case API_METHOD_PATCH:
    return "PATCH";
  case API_METHOD_DELETE:
    return "DELETE";
  case API_METHOD_HEAD:
    return "HEAD";
  }
  return "?";
}

/* One operation of the document: "METHOD /path" and its x-nlb-roles. */
struct operation {
  char name[160];
  unsigned roles;
  bool has_roles;
};

/* "[operator, provider]" as role bits; [] is API_ROLE_ANYONE. */
static unsigned roles_of(const char *list)
{
  static const struct {
    const char *name;
    enum reg_role role;
  } names[] = {{"operator", REG_ROLE_OPERATOR},
               {"provider", REG_ROLE_PROVIDER},
               {"consumer", REG_ROLE_CONSUMER}};
  unsigned roles = 0;

  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strstr(list, names[i].name) != NULL)
      roles |= API_ROLE_BIT(names[i].role);
  return roles != 0 ? roles : API_ROLE_ANYONE;
}

/* The operations under "paths:" in the compiled-in document, read from its
 * layout: a path at two spaces of indent, its methods at four, an
 * operation's fields at six. Returns how many (at most max). */
static size_t read_operations(struct operation *ops, size_t max)
{
  const char *doc = (const char *)api_openapi_yaml;
  const char *end = doc + api_openapi_yaml_len;
  char path[128] = "", line[256];
  bool in_paths = false;
  size_t n = 0;

  for (const char *s = doc; s < end;) {
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    size_t len = (size_t)((nl != NULL ? nl : end) - s);
    char method[16];

    snprintf(line, sizeof line, "%.*s", (int)len, s);
    s += len + 1;
    if (line[0] != ' ' && line[0] != '\0' && line[0] != '#')
      in_paths = strcmp(line, "paths:") == 0;
    if (!in_paths)
      continue;
    if (sscanf(line, "  /%126[^:]:", path + 1) == 1 && line[2] == '/') {
      path[0] = '/';
    } else if (strncmp(line, "    ", 4) == 0 && line[4] != ' ' &&
               sscanf(line + 4, "%15[a-z]:", method) == 1 &&
               strcmp(line + 4 + strlen(method), ":") == 0 &&
               strcmp(method, "parameters") != 0) {
      CU_ASSERT_FATAL(n < max);
      for (char *c = method; *c != '\0'; c++)
        *c = (char)(*c - 'a' + 'A');
      snprintf(ops[n].name, sizeof ops[n].name, "%s %s", method, path);
      ops[n].has_roles = false;
      n++;
    } else if (n > 0 && strncmp(line, "      x-nlb-roles: [", 20) == 0) {
      ops[n - 1].roles = roles_of(line + 19);
      ops[n - 1].has_roles = true;
    }
  }
  return n;
}

/* Every operation of the document has its row, with the same roles, and
 * every row is an operation of the document. */
static void test_api_routes_match_openapi(void)
{
  struct operation ops[128];
  size_t n = read_operations(ops, sizeof ops / sizeof ops[0]);

  CU_ASSERT_EQUAL(n, api_n_routes);
  for (size_t i = 0; i < n; i++) {
    const struct api_route *r = NULL;
    for (size_t k = 0; k < api_n_routes; k++)
      if (strcmp(api_routes[k].name, ops[i].name) == 0)
        r = &api_routes[k];
    if (r == NULL) {
      fprintf(stderr,
              "\n  %s: in docs/openapi.yaml, no row in api/routes.c\n  ",
              ops[i].name);
      CU_FAIL("an operation of the document has no route");
      continue;
    }
    CU_ASSERT_TRUE(ops[i].has_roles);
    if (r->roles != ops[i].roles) {
      fprintf(stderr, "\n  %s: roles %#x in api/routes.c, %#x documented\n  ",
              r->name, r->roles, ops[i].roles);
      CU_FAIL("a route's roles differ from its x-nlb-roles");
    }
  }
  for (size_t k = 0; k < api_n_routes; k++) {
    bool found = false;
    for (size_t i = 0; i < n; i++)
      found = found || strcmp(api_routes[k].name, ops[i].name) == 0;
    if (!found) {
      fprintf(stderr, "\n  %s: in api/routes.c, not in docs/openapi.yaml\n  ",
              api_routes[k].name);
      CU_FAIL("a route is not in the document");
    }
  }
}

/* True when a request path could match both patterns: as many segments,
 * each the same or a parameter in either. */
static bool patterns_overlap(const char *a, const char *b)
{
  while (*a != '\0' && *b != '\0') {
    size_t la = strcspn(a + 1, "/"), lb = strcspn(b + 1, "/");
    bool param = a[1] == '{' || b[1] == '{';
    if (!param && (la != lb || memcmp(a + 1, b + 1, la) != 0))
      return false;
    a += 1 + la;
    b += 1 + lb;
  }
  return *a == '\0' && *b == '\0';
}

/* Every row is whole (handler, roles, a name that says its method and
 * pattern) and no two rows answer the same request. */
static void test_api_routes_consistent(void)
{
  for (size_t i = 0; i < api_n_routes; i++) {
    const struct api_route *r = &api_routes[i];
    char name[160];
    size_t n_params = 0;

    CU_ASSERT_PTR_NOT_NULL(r->handle);
    /* Some role, or anyone, not both. */
    CU_ASSERT(r->roles == API_ROLE_ANYONE ||
              (r->roles != 0 && (r->roles & ~API_ROLES_ALL) == 0));
    CU_ASSERT(r->registry == API_REGISTRY_NONE ||
              r->registry == API_REGISTRY_NEEDED ||
              r->registry == API_REGISTRY_IF_ANY);
    CU_ASSERT_EQUAL(r->pattern[0], '/');
    snprintf(name, sizeof name, "%s %s", method_name(r->method), r->pattern);
    CU_ASSERT_STRING_EQUAL(r->name, name);
    for (const char *p = strchr(r->pattern, '{'); p != NULL;
         p = strchr(p + 1, '{'))
      n_params++;
    CU_ASSERT(n_params <= API_ROUTE_MAX_PARAMS);
    for (size_t k = i + 1; k < api_n_routes; k++) {
      const struct api_route *o = &api_routes[k];
      if (o->method == r->method && patterns_overlap(r->pattern, o->pattern)) {
        fprintf(stderr, "\n  %s and %s answer the same requests\n  ", r->name,
                o->name);
        CU_FAIL("two routes collide");
      }
    }
  }
  CU_ASSERT_TRUE(patterns_overlap("/v1/services/{id}", "/v1/services/web"));
  CU_ASSERT_FALSE(patterns_overlap("/v1/services/{id}", "/v1/services"));
  CU_ASSERT_FALSE(
      patterns_overlap("/v1/nodes/{name}/drain", "/v1/nodes/{name}/fill"));
}

/* Where a route runs is its row's: without a registry, the routes that
 * need one answer 503 and the others run on the control thread. */
static void test_api_routes_run_where_they_say(void)
{
  static struct api_server server; /* no registry, no data plane */
  static const struct api_registry_ops some_registry;
  struct api_route_match match = {0};
  struct api_request req = {.server = &server, .match = &match};

  for (size_t i = 0; i < api_n_routes; i++) {
    const struct api_route *r = &api_routes[i];

    server.registry = NULL;
    CU_ASSERT_FALSE(api_route_remote(&server, r));
    server.registry = &some_registry;
    CU_ASSERT_EQUAL(api_route_remote(&server, r),
                    r->registry != API_REGISTRY_NONE);
  }
  server.registry = NULL;
  req.actor.role = REG_ROLE_OPERATOR;
  req.actor.name = "ops";
  static const struct {
    const char *name;
    int status;
  } answers[] = {
      {"GET /v1/services", 503},
      {"POST /v1/principals", 503},
      {"GET /healthz", 200},
      {"GET /metrics", 200}, /* the registry's series when there is one */
      {"GET /v1/target-groups", 503}, /* no data plane */
  };
  for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
    struct api_response resp = {0};

    match.route = route_named(answers[i].name);
    api_handle(&req, &resp);
    CU_ASSERT_EQUAL(resp.status, answers[i].status);
    if (answers[i].status == 503)
      CU_ASSERT_PTR_NOT_NULL(
          strstr(resp.body, match.route->registry == API_REGISTRY_NONE
                                ? "no data plane"
                                : "no registry"));
    free(resp.body);
    api_metrics_scope_free(resp.metrics_scope);
  }
}

static void test_api_query(void)
{
  static const char *const names[] = {"state", "after", NULL};
  char buf[32], bad[16];
  CU_ASSERT_EQUAL(
      api_query_get("a=1&state=avail%61ble", "state", buf, sizeof buf), 0);
  CU_ASSERT_STRING_EQUAL(buf, "available");
  CU_ASSERT_EQUAL(api_query_get("after=1+2", "after", buf, sizeof buf), 0);
  CU_ASSERT_STRING_EQUAL(buf, "1 2");
  CU_ASSERT_EQUAL(api_query_get("after=", "after", buf, sizeof buf), 0);
  CU_ASSERT_STRING_EQUAL(buf, "");
  CU_ASSERT_EQUAL(api_query_get(NULL, "after", buf, sizeof buf), -ENOENT);
  CU_ASSERT_EQUAL(api_query_get("aft=1", "after", buf, sizeof buf), -ENOENT);
  CU_ASSERT_EQUAL(api_query_get("after=%G1", "after", buf, sizeof buf),
                  -EINVAL);
  CU_ASSERT_EQUAL(api_query_get("after=123456789", "after", buf, 4), -EINVAL);

  CU_ASSERT_EQUAL(api_query_check(NULL, names, bad, sizeof bad), 0);
  CU_ASSERT_EQUAL(api_query_check("state=a&after=2", names, bad, sizeof bad),
                  0);
  CU_ASSERT_EQUAL(api_query_check("state=a&limit=2", names, bad, sizeof bad),
                  -EINVAL);
  CU_ASSERT_STRING_EQUAL(bad, "limit");
  CU_ASSERT_EQUAL(api_query_check("state=a&state=b", names, bad, sizeof bad),
                  -EINVAL);
  CU_ASSERT_STRING_EQUAL(bad, "state");
}

static const struct api_json_field service_fields[] = {
    {"name", API_JSON_STRING, true},
    {"acceptance_required", API_JSON_BOOL, false},
    {"connection_limit", API_JSON_INTEGER, false},
    {"allowed_principals", API_JSON_STRINGS, false},
};

/* Parses and checks text; returns the error code name or "ok". */
static const char *check(const char *text, struct api_json_error *err)
{
  json_t *v = api_json_parse_object(text, strlen(text), err);
  if (v == NULL)
    return err->code;
  int r = api_json_check(v, service_fields, 4, err);
  json_decref(v);
  return r == 0 ? "ok" : err->code;
}

static void test_api_json_strict(void)
{
  struct api_json_error err;
  CU_ASSERT_STRING_EQUAL(check("{\"name\":\"a\"}", &err), "ok");
  CU_ASSERT_STRING_EQUAL(
      check("{\"name\":\"a\",\"acceptance_required\":false,"
            "\"connection_limit\":3,\"allowed_principals\":[\"x\",\"*\"]}",
            &err),
      "ok");
  CU_ASSERT_STRING_EQUAL(check("", &err), "InvalidJson");
  CU_ASSERT_STRING_EQUAL(check("{\"name\":", &err), "InvalidJson");
  CU_ASSERT_STRING_EQUAL(check("{\"name\":\"a\"} x", &err), "InvalidJson");
  CU_ASSERT_STRING_EQUAL(check("{\"name\":\"a\",\"name\":\"b\"}", &err),
                         "InvalidJson");
  CU_ASSERT_STRING_EQUAL(check("[1]", &err), "InvalidValue");

  CU_ASSERT_STRING_EQUAL(check("{\"name\":\"a\",\"colour\":1}", &err),
                         "UnknownField");
  CU_ASSERT_STRING_EQUAL(err.field, "colour");
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "colour"));

  CU_ASSERT_STRING_EQUAL(
      check("{\"name\":\"a\",\"acceptance_required\":\"yes\"}", &err),
      "InvalidValue");
  CU_ASSERT_STRING_EQUAL(err.field, "acceptance_required");
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "boolean"));

  CU_ASSERT_STRING_EQUAL(
      check("{\"name\":\"a\",\"connection_limit\":1.0}", &err), "InvalidValue");
  CU_ASSERT_STRING_EQUAL(err.field, "connection_limit");
  CU_ASSERT_STRING_EQUAL(check("{\"name\":null}", &err), "InvalidValue");
  CU_ASSERT_STRING_EQUAL(err.field, "name");
  CU_ASSERT_STRING_EQUAL(
      check("{\"name\":\"a\",\"allowed_principals\":[\"x\",2]}", &err),
      "InvalidValue");
  CU_ASSERT_STRING_EQUAL(err.field, "allowed_principals");
  CU_ASSERT_STRING_EQUAL(check("{}", &err), "InvalidValue");
  CU_ASSERT_STRING_EQUAL(err.field, "name");
}

static void test_api_json_strings_and_error_body(void)
{
  json_t *array = json_pack("[s,s]", "a", "b");
  const char **items;
  size_t n;
  CU_ASSERT_EQUAL(api_json_strings(array, &items, &n), 0);
  CU_ASSERT_EQUAL(n, 2);
  CU_ASSERT_STRING_EQUAL(items[1], "b");
  free(items);
  json_decref(array);
  CU_ASSERT_EQUAL(api_json_strings(NULL, &items, &n), 0);
  CU_ASSERT_EQUAL(n, 0);
  CU_ASSERT_PTR_NULL(items);

  char *body = api_json_error_body("NotFound", "no \"x\"");
  CU_ASSERT_STRING_EQUAL(
      body,
      "{\"error\":{\"code\":\"NotFound\",\"message\":\"no \\\"x\\\"\"}}\n");
  free(body);
}

static void test_api_auth_bearer(void)
{
  const char *token;
  size_t len;
  const char *h = "Bearer abc.def";
  CU_ASSERT_EQUAL(api_bearer_token(h, strlen(h), &token, &len), 0);
  CU_ASSERT_EQUAL(len, 7);
  CU_ASSERT_EQUAL(memcmp(token, "abc.def", 7), 0);
  h = "bearer   tok  ";
  CU_ASSERT_EQUAL(api_bearer_token(h, strlen(h), &token, &len), 0);
  CU_ASSERT_EQUAL(len, 3);
  h = "Basic dXNlcjpwYXNz";
  CU_ASSERT_EQUAL(api_bearer_token(h, strlen(h), &token, &len), -EINVAL);
  h = "Bearer ";
  CU_ASSERT_EQUAL(api_bearer_token(h, strlen(h), &token, &len), -EINVAL);
  h = "Bearertok";
  CU_ASSERT_EQUAL(api_bearer_token(h, strlen(h), &token, &len), -EINVAL);
  h = "Bearer a b";
  CU_ASSERT_EQUAL(api_bearer_token(h, strlen(h), &token, &len), -EINVAL);
  CU_ASSERT_EQUAL(api_bearer_token(NULL, 0, &token, &len), -EINVAL);
}

static void test_api_auth_principals(void)
{
  /* SHA-256("abc"), FIPS 180-2 appendix B.1. */
  static const uint8_t abc[32] = {
      0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
      0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
      0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
  uint8_t hash[32];
  api_token_sha256("abc", 3, hash);
  CU_ASSERT_EQUAL(memcmp(hash, abc, 32), 0);
  CU_ASSERT_TRUE(api_hash_equal(hash, abc));
  hash[31] ^= 1;
  CU_ASSERT_FALSE(api_hash_equal(hash, abc));

  struct api_principal principals[3] = {
      {"ops", REG_ROLE_OPERATOR, {0}},
      {"pay", REG_ROLE_PROVIDER, {0}},
      {"shop", REG_ROLE_CONSUMER, {0}},
  };
  api_token_sha256("t-ops", 5, principals[0].token_sha256);
  api_token_sha256("t-pay", 5, principals[1].token_sha256);
  api_token_sha256("abc", 3, principals[2].token_sha256);
  const char *h = "Bearer abc";
  const struct api_principal *p = api_authenticate(principals, 3, h, 10);
  CU_ASSERT_PTR_EQUAL(p, &principals[2]);
  h = "Bearer t-pay";
  CU_ASSERT_PTR_EQUAL(api_authenticate(principals, 3, h, strlen(h)),
                      &principals[1]);
  h = "Bearer t-pa";
  CU_ASSERT_PTR_NULL(api_authenticate(principals, 3, h, strlen(h)));
  CU_ASSERT_PTR_NULL(api_authenticate(principals, 3, NULL, 0));
  CU_ASSERT_PTR_NULL(api_authenticate(principals, 0, "Bearer abc", 10));
  CU_ASSERT_PTR_EQUAL(api_principal_find(principals, 3, abc), &principals[2]);
}

static void source_of(const char *address, uint8_t key[API_SOURCE_KEY_LEN])
{
  struct sockaddr_storage ss = {0};
  struct sockaddr_in *in = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

  if (inet_pton(AF_INET, address, &in->sin_addr) == 1)
    ss.ss_family = AF_INET;
  else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1)
    ss.ss_family = AF_INET6;
  api_admission_source_key(&ss, key);
}

static bool same_source(const char *a, const char *b)
{
  uint8_t ka[API_SOURCE_KEY_LEN], kb[API_SOURCE_KEY_LEN];
  source_of(a, ka);
  source_of(b, kb);
  return memcmp(ka, kb, sizeof ka) == 0;
}

/* One GET of the console, as api_handle answers it (resp to be freed). */
static void console_get(const char *path, const char *if_none_match,
                        struct api_response *resp)
{
  struct api_route_match match;
  struct api_request req = {.match = &match, .if_none_match = if_none_match};

  memset(resp, 0, sizeof *resp);
  CU_ASSERT_EQUAL_FATAL(api_route_match(API_METHOD_GET, path, &match, NULL), 0);
  api_handle(&req, resp);
}

/* The console: /ui goes to /ui/, the page and its files are the compiled
 * bytes with the page's headers and an ETag, and an If-None-Match that
 * names the ETag (alone, weak, in a list, or "*") gets 304 without a body;
 * any other file is 404. */
static void test_api_console(void)
{
  struct api_response resp;
  char list[256];

  CU_ASSERT_TRUE(api_n_console_assets >= 3);
  console_get("/ui", NULL, &resp);
  CU_ASSERT_EQUAL(resp.status, 301);
  CU_ASSERT_STRING_EQUAL(resp.location, "/ui/");
  CU_ASSERT_TRUE(resp.page);
  free(resp.body);
  for (size_t i = 0; i < api_n_console_assets; i++) {
    const struct api_console_asset *a = &api_console_assets[i];
    char path[64];

    snprintf(path, sizeof path, "/ui/%s", a->name);
    console_get(strcmp(a->name, "index.html") == 0 ? "/ui/" : path, NULL,
                &resp);
    CU_ASSERT_EQUAL(resp.status, 200);
    CU_ASSERT_EQUAL(resp.len, a->len);
    CU_ASSERT_PTR_NULL(resp.body); /* written from where it is */
    CU_ASSERT_EQUAL(memcmp(resp.static_body, a->data, a->len), 0);
    CU_ASSERT_STRING_EQUAL(resp.etag, a->etag);
    CU_ASSERT_STRING_EQUAL(resp.content_type, a->content_type);
    CU_ASSERT_TRUE(resp.page);
    CU_ASSERT_EQUAL(strlen(a->etag), 34);
    free(resp.body);

    const char *unchanged[] = {a->etag, list, list + 3, "*"};
    snprintf(list, sizeof list, "W/%s", a->etag);
    for (size_t k = 0; k < 4; k++) {
      if (k == 2)
        snprintf(list, sizeof list, "W/\"0\", %s ,\"1\"", a->etag);
      console_get(path, unchanged[k], &resp);
      CU_ASSERT_EQUAL(resp.status, 304);
      CU_ASSERT_EQUAL(resp.len, 0);
      CU_ASSERT_STRING_EQUAL(resp.etag, a->etag);
      free(resp.body);
    }
    /* Another tag, or this one's digits without the quotes. */
    snprintf(list, sizeof list, "%.*s", 32, a->etag + 1);
    const char *changed[] = {"\"0\"", list, ""};
    for (size_t k = 0; k < 3; k++) {
      console_get(path, changed[k], &resp);
      CU_ASSERT_EQUAL(resp.status, 200);
      CU_ASSERT_EQUAL(resp.len, a->len);
      free(resp.body);
    }
  }
  console_get("/ui/nothing.js", NULL, &resp);
  CU_ASSERT_EQUAL(resp.status, 404);
  CU_ASSERT_PTR_NULL(resp.etag);
  free(resp.body);
  console_get("/ui/app.js?v=1", NULL, &resp);
  CU_ASSERT_EQUAL(resp.status, 400);
  free(resp.body);
}

/* GET /v1/whoami answers the request's principal, without a registry. */
static void test_api_whoami(void)
{
  struct api_route_match match;
  struct api_request req = {.match = &match,
                            .actor = {"payments", REG_ROLE_PROVIDER}};
  struct api_response resp = {0};

  CU_ASSERT_EQUAL_FATAL(
      api_route_match(API_METHOD_GET, "/v1/whoami", &match, NULL), 0);
  CU_ASSERT_EQUAL(match.route->registry, API_REGISTRY_NONE);
  /* Any principal, but one: no token, no answer. */
  CU_ASSERT_EQUAL(match.route->roles, API_ROLES_ALL);
  api_handle(&req, &resp);
  CU_ASSERT_EQUAL(resp.status, 200);
  CU_ASSERT_STRING_EQUAL(resp.body, "{\"name\":\"payments\",\"role\":"
                                    "\"provider\"}\n");
  free(resp.body);
}

/* Admission budgets count IPv4 addresses, and IPv6 ones by /64. */
static void test_api_admission_sources(void)
{
  CU_ASSERT_TRUE(same_source("192.0.2.1", "192.0.2.1"));
  CU_ASSERT_FALSE(same_source("192.0.2.1", "192.0.2.2"));
  CU_ASSERT_TRUE(same_source("::ffff:192.0.2.1", "192.0.2.1"));
  CU_ASSERT_TRUE(same_source("2001:db8:1:2::1", "2001:db8:1:2:ffff::9"));
  CU_ASSERT_FALSE(same_source("2001:db8:1:2::1", "2001:db8:1:3::1"));
  /* An IPv6 /64 whose bytes look like an IPv4 address is not one. */
  CU_ASSERT_FALSE(same_source("c000:201::", "192.0.2.1"));
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_api_route_static_paths),
      NLB_UNIT_CASE(test_api_route_every_route_reachable),
      NLB_UNIT_CASE(test_api_route_params),
      NLB_UNIT_CASE(test_api_route_errors),
      NLB_UNIT_CASE(test_api_route_roles),
      NLB_UNIT_CASE(test_api_routes_match_openapi),
      NLB_UNIT_CASE(test_api_routes_consistent),
      NLB_UNIT_CASE(test_api_routes_run_where_they_say),
      NLB_UNIT_CASE(test_api_query),
      NLB_UNIT_CASE(test_api_json_strict),
      NLB_UNIT_CASE(test_api_json_strings_and_error_body),
      NLB_UNIT_CASE(test_api_auth_bearer),
      NLB_UNIT_CASE(test_api_auth_principals),
      NLB_UNIT_CASE(test_api_admission_sources),
      NLB_UNIT_CASE(test_api_console),
      NLB_UNIT_CASE(test_api_whoami),
  };
  return nlb_unit_run("api", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
