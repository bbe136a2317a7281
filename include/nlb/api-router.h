/* The API's routes: which (method, path) pairs exist, which roles may call
 * each, and how a request path splits into its parameters and query. Pure
 * functions over strings: no I/O, no allocation, any thread. */
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

/* One value per (method, path pattern): the handler to run. */
enum api_route_id {
  API_ROUTE_HEALTHZ,
  API_ROUTE_METRICS,
  API_ROUTE_OPENAPI,
  API_ROUTE_SERVICE_CREATE,
  API_ROUTE_SERVICE_LIST,
  API_ROUTE_SERVICE_DESCRIBE,
  API_ROUTE_SERVICE_MODIFY,
  API_ROUTE_SERVICE_DELETE,
  API_ROUTE_PERMISSIONS_GET,
  API_ROUTE_PERMISSIONS_MODIFY,
  API_ROUTE_CONNECTIONS_LIST,
  API_ROUTE_CONNECTIONS_ACCEPT,
  API_ROUTE_CONNECTIONS_REJECT,
  API_ROUTE_AVAILABLE_SERVICES,
  API_ROUTE_ENDPOINT_CREATE,
  API_ROUTE_ENDPOINT_LIST,
  API_ROUTE_ENDPOINT_DESCRIBE,
  API_ROUTE_ENDPOINT_MODIFY,
  API_ROUTE_ENDPOINT_DELETE,
  API_ROUTE_TARGET_GROUP_LIST,
  API_ROUTE_TARGET_GROUP_DESCRIBE,
  API_ROUTE_TARGET_REGISTER,
  API_ROUTE_TARGET_DEREGISTER,
  API_ROUTE_EVENTS,
  API_ROUTE_NODE_LIST,
  API_ROUTE_NODE_DRAIN,
  API_ROUTE_PRINCIPAL_CREATE,
  API_ROUTE_PRINCIPAL_LIST,
  API_ROUTE_PRINCIPAL_DELETE,
  API_ROUTE_TOKEN_CREATE,
  API_ROUTE_TOKEN_LIST,
  API_ROUTE_TOKEN_REVOKE,
  API_ROUTE_NETWORK_CREATE,
  API_ROUTE_NETWORK_LIST,
  API_ROUTE_NETWORK_DELETE,
  API_ROUTE_COUNT
};

/* Bits of api_route.roles: 1 << enum reg_role. */
#define API_ROLE_BIT(role) (1u << (role))
#define API_ROLES_ALL                                                          \
  (API_ROLE_BIT(REG_ROLE_OPERATOR) | API_ROLE_BIT(REG_ROLE_PROVIDER) |         \
   API_ROLE_BIT(REG_ROLE_CONSUMER))

struct api_route {
  enum api_route_id id;
  enum api_method method;
  /* Segments separated by '/'; "*" matches one non-empty segment, which
   * becomes a parameter (percent-decoded). */
  const char *pattern;
  unsigned roles;   /* API_ROLE_BIT()s allowed; 0: no token needed */
  bool mutating;    /* audited in the event log */
  const char *name; /* for logs: "POST /v1/services/{id}/connections/accept" */
};

#define API_ROUTE_MAX_PARAMS 2
#define API_PARAM_BUF 256 /* longest decoded parameter + NUL */

struct api_route_match {
  const struct api_route *route;
  char params[API_ROUTE_MAX_PARAMS][API_PARAM_BUF];
  size_t n_params;
  const char *query; /* after '?' in the matched path (borrowed), or NULL */
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

/* The route table entry for id (never NULL for id < API_ROUTE_COUNT). */
const struct api_route *api_route_get(enum api_route_id id);

/* True when role may call route (routes with roles 0 are open to all). */
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
