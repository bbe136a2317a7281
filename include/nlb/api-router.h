/* The API's routes: which (method, path) pairs exist, which roles may call
 * each, where each runs and its handler, in one table (api/routes.c); and
 * how a request path splits into its parameters and query. Pure functions
 * over strings and constant data: no I/O, no allocation, any thread. */
#ifndef NLB_API_ROUTER_H
#define NLB_API_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "nlb/registry.h"

enum api_method {
  API_METHOD_GET = 1,
  API_METHOD_POST = 2,
  API_METHOD_PATCH = 4,
  API_METHOD_DELETE = 8,
  API_METHOD_HEAD = 16,
};

/* Bits of api_route.roles: 1 << enum reg_role, or API_ROLE_ANYONE. */
#define API_ROLE_BIT(role) (1u << (role))
#define API_ROLES_ALL                                                          \
  (API_ROLE_BIT(REG_ROLE_OPERATOR) | API_ROLE_BIT(REG_ROLE_PROVIDER) |         \
   API_ROLE_BIT(REG_ROLE_CONSUMER))
/* Anyone, without a token. A route with no bit at all is called by no
 * one: a row that forgets its roles fails closed. */
#define API_ROLE_ANYONE (1u << 31)

/* Where a route's handler runs. */
enum api_route_registry {
  API_REGISTRY_NONE,   /* on the control thread: it needs no registry */
  API_REGISTRY_NEEDED, /* where the registry lives; 503 when there is none */
  API_REGISTRY_IF_ANY, /* where the registry lives if there is one, else on
                          the control thread without it */
};

struct api_request;  /* api/api-int.h */
struct api_response; /* api/api-int.h */
struct api_server;

/* One row of the route table (api/routes.c): everything about a route. */
struct api_route {
  enum api_method method;
  /* The path as docs/openapi.yaml writes it: segments separated by '/'; a
   * segment "{name}" matches one non-empty segment, which becomes a
   * parameter (percent-decoded). */
  const char *pattern;
  const char *name; /* "METHOD PATTERN", for logs and errors */
  unsigned roles;   /* API_ROLE_BIT()s allowed, or API_ROLE_ANYONE */
  enum api_route_registry registry;
  /* Fills resp (api/handlers/handlers.h), where registry says. */
  void (*handle)(const struct api_request *req, struct api_response *resp);
  /* NULL, or the control thread's part of a 200 answer, after handle
   * wherever it ran (GET /metrics adds the API's and the data plane's
   * series). */
  void (*finish)(struct api_server *server, struct api_response *resp);
  /* Its answer may be an event stream, which counts against the
   * principal's event streams (api/admission.h) from the request on. */
  bool event_stream;
};

/* The route table: every route the API serves, once. */
extern const struct api_route api_routes[];
extern const size_t api_n_routes;

#define API_ROUTE_MAX_PARAMS 2
#define API_PARAM_BUF 256 /* longest decoded parameter + NUL */

struct api_route_match {
  const struct api_route *route;
  char params[API_ROUTE_MAX_PARAMS][API_PARAM_BUF];
  size_t n_params;
  const char *query; /* after '?' in the matched path (borrowed), or NULL */
  /* The path ended in '/' (which names the same resource): the console's
   * page tells "/ui" (redirected) from "/ui/". */
  bool trailing_slash;
};

/* Parses an HTTP method name ("GET"...); 0 if it is not one the API knows. */
enum api_method api_method_parse(const char *method);

/* Finds the route for method and path (":path", with its query). Returns 0
 * and fills *match; -ENOENT when no pattern matches the path; -EPERM when a
 * pattern matches but not for this method (405; *allowed, if not NULL, gets
 * the API_METHOD_* bits that would match); -EINVAL when the path is not
 * absolute, has a bad percent escape, or a parameter is longer than
 * API_PARAM_BUF - 1 or decodes to something with a NUL or '/'. HEAD matches
 * the GET routes. */
int api_route_match(enum api_method method, const char *path,
                    struct api_route_match *match, unsigned *allowed);

/* True when role may call route (every role may call the routes open to
 * anyone). */
bool api_route_allows(const struct api_route *route, enum reg_role role);

/* Finds query parameter name in query ("a=1&b=2", may be NULL) and copies
 * its percent-decoded value ('+' is a space) into buf of len bytes. Returns
 * 0, -ENOENT when absent, -EINVAL on a bad escape or when it does not fit. */
int api_query_get(const char *query, const char *name, char *buf, size_t len);

/* Checks that every parameter of query is one of the NULL-terminated names
 * and none appears twice. Returns 0, or -EINVAL and copies the offending name
 * (truncated) into bad, of bad_len bytes. */
int api_query_check(const char *query, const char *const *names, char *bad,
                    size_t bad_len);

/* Percent-decodes in[0..n) into out (out_len bytes, NUL-terminated). Returns
 * the decoded length, or -EINVAL on a bad escape, an encoded NUL, or when it
 * does not fit. */
int api_percent_decode(const char *in, size_t n, char *out, size_t out_len);

#endif
