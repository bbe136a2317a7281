/* The route table and matching a request's path against it. */
#include <errno.h>
#include <string.h>

#include "nlb/api-router.h"

#define OP API_ROLE_BIT(REG_ROLE_OPERATOR)
#define PROV API_ROLE_BIT(REG_ROLE_PROVIDER)
#define CONS API_ROLE_BIT(REG_ROLE_CONSUMER)

/* Indexed by enum api_route_id. */
static const struct api_route routes[API_ROUTE_COUNT] = {
    {API_ROUTE_HEALTHZ, API_METHOD_GET, "/healthz", 0, false, "GET /healthz"},
    {API_ROUTE_METRICS, API_METHOD_GET, "/metrics", OP | PROV, false,
     "GET /metrics"},
    {API_ROUTE_OPENAPI, API_METHOD_GET, "/v1/openapi.yaml", 0, false,
     "GET /v1/openapi.yaml"},
    {API_ROUTE_SERVICE_CREATE, API_METHOD_POST, "/v1/services", OP | PROV, true,
     "POST /v1/services"},
    {API_ROUTE_SERVICE_LIST, API_METHOD_GET, "/v1/services", OP | PROV, false,
     "GET /v1/services"},
    {API_ROUTE_SERVICE_DESCRIBE, API_METHOD_GET, "/v1/services/*", OP | PROV,
     false, "GET /v1/services/{id}"},
    {API_ROUTE_SERVICE_MODIFY, API_METHOD_PATCH, "/v1/services/*", OP | PROV,
     true, "PATCH /v1/services/{id}"},
    {API_ROUTE_SERVICE_DELETE, API_METHOD_DELETE, "/v1/services/*", OP | PROV,
     true, "DELETE /v1/services/{id}"},
    {API_ROUTE_PERMISSIONS_GET, API_METHOD_GET, "/v1/services/*/permissions",
     OP | PROV, false, "GET /v1/services/{id}/permissions"},
    {API_ROUTE_PERMISSIONS_MODIFY, API_METHOD_PATCH,
     "/v1/services/*/permissions", OP | PROV, true,
     "PATCH /v1/services/{id}/permissions"},
    {API_ROUTE_CONNECTIONS_LIST, API_METHOD_GET, "/v1/services/*/connections",
     OP | PROV, false, "GET /v1/services/{id}/connections"},
    {API_ROUTE_CONNECTIONS_ACCEPT, API_METHOD_POST,
     "/v1/services/*/connections/accept", OP | PROV, true,
     "POST /v1/services/{id}/connections/accept"},
    {API_ROUTE_CONNECTIONS_REJECT, API_METHOD_POST,
     "/v1/services/*/connections/reject", OP | PROV, true,
     "POST /v1/services/{id}/connections/reject"},
    {API_ROUTE_AVAILABLE_SERVICES, API_METHOD_GET, "/v1/available-services",
     OP | CONS, false, "GET /v1/available-services"},
    {API_ROUTE_ENDPOINT_CREATE, API_METHOD_POST, "/v1/endpoints", CONS, true,
     "POST /v1/endpoints"},
    {API_ROUTE_ENDPOINT_LIST, API_METHOD_GET, "/v1/endpoints", OP | CONS, false,
     "GET /v1/endpoints"},
    {API_ROUTE_ENDPOINT_DESCRIBE, API_METHOD_GET, "/v1/endpoints/*", OP | CONS,
     false, "GET /v1/endpoints/{id}"},
    {API_ROUTE_ENDPOINT_MODIFY, API_METHOD_PATCH, "/v1/endpoints/*", OP | CONS,
     true, "PATCH /v1/endpoints/{id}"},
    {API_ROUTE_ENDPOINT_DELETE, API_METHOD_DELETE, "/v1/endpoints/*", OP | CONS,
     true, "DELETE /v1/endpoints/{id}"},
    {API_ROUTE_TARGET_GROUP_LIST, API_METHOD_GET, "/v1/target-groups", OP,
     false, "GET /v1/target-groups"},
    {API_ROUTE_TARGET_GROUP_DESCRIBE, API_METHOD_GET, "/v1/target-groups/*", OP,
     false, "GET /v1/target-groups/{name}"},
    {API_ROUTE_TARGET_REGISTER, API_METHOD_POST, "/v1/target-groups/*/targets",
     OP, true, "POST /v1/target-groups/{name}/targets"},
    {API_ROUTE_TARGET_DEREGISTER, API_METHOD_DELETE,
     "/v1/target-groups/*/targets/*", OP, true,
     "DELETE /v1/target-groups/{name}/targets/{address}"},
    {API_ROUTE_EVENTS, API_METHOD_GET, "/v1/events", OP | PROV | CONS, false,
     "GET /v1/events"},
    {API_ROUTE_NODE_LIST, API_METHOD_GET, "/v1/nodes", OP, false,
     "GET /v1/nodes"},
    {API_ROUTE_NODE_DRAIN, API_METHOD_POST, "/v1/nodes/*/drain", OP, true,
     "POST /v1/nodes/{name}/drain"},
    {API_ROUTE_PRINCIPAL_CREATE, API_METHOD_POST, "/v1/principals", OP, true,
     "POST /v1/principals"},
    {API_ROUTE_PRINCIPAL_LIST, API_METHOD_GET, "/v1/principals", OP, false,
     "GET /v1/principals"},
    {API_ROUTE_PRINCIPAL_DELETE, API_METHOD_DELETE, "/v1/principals/*", OP,
     true, "DELETE /v1/principals/{name}"},
    {API_ROUTE_TOKEN_CREATE, API_METHOD_POST, "/v1/principals/*/tokens", OP,
     true, "POST /v1/principals/{name}/tokens"},
    {API_ROUTE_TOKEN_LIST, API_METHOD_GET, "/v1/principals/*/tokens", OP, false,
     "GET /v1/principals/{name}/tokens"},
    {API_ROUTE_TOKEN_REVOKE, API_METHOD_DELETE, "/v1/principals/*/tokens/*", OP,
     true, "DELETE /v1/principals/{name}/tokens/{id}"},
    {API_ROUTE_NETWORK_CREATE, API_METHOD_POST, "/v1/networks", OP, true,
     "POST /v1/networks"},
    {API_ROUTE_NETWORK_LIST, API_METHOD_GET, "/v1/networks", OP, false,
     "GET /v1/networks"},
    {API_ROUTE_NETWORK_DELETE, API_METHOD_DELETE, "/v1/networks/*", OP, true,
     "DELETE /v1/networks/{name}"},
};

enum api_method api_method_parse(const char *method)
{
  static const struct {
    const char *name;
    enum api_method method;
  } names[] = {{"GET", API_METHOD_GET},
               {"POST", API_METHOD_POST},
               {"PATCH", API_METHOD_PATCH},
               {"DELETE", API_METHOD_DELETE},
               {"HEAD", API_METHOD_HEAD}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(method, names[i].name) == 0)
      return names[i].method;
  return 0;
}

const struct api_route *api_route_get(enum api_route_id id)
{
  return (unsigned)id < API_ROUTE_COUNT ? &routes[id] : NULL;
}

bool api_route_allows(const struct api_route *route, enum reg_role role)
{
  return route->roles == 0 || (route->roles & API_ROLE_BIT(role)) != 0;
}

/* Matches path[0..len) against pattern; params filled on success. */
static int match_pattern(const char *pattern, const char *path, size_t len,
                         struct api_route_match *match)
{
  const char *p = pattern, *s = path, *end = path + len;
  size_t n_params = 0;

  while (*p != '\0' && s < end) {
    if (*p != '/' || *s != '/')
      return -ENOENT;
    p++;
    s++;
    const char *pseg_end = strchr(p, '/');
    if (pseg_end == NULL)
      pseg_end = p + strlen(p);
    const char *sseg_end = memchr(s, '/', (size_t)(end - s));
    if (sseg_end == NULL)
      sseg_end = end;
    size_t plen = (size_t)(pseg_end - p), slen = (size_t)(sseg_end - s);
    if (plen == 1 && *p == '*') {
      if (slen == 0)
        return -ENOENT;
      if (n_params == API_ROUTE_MAX_PARAMS)
        return -ENOENT;
      char *out = match->params[n_params];
      int r = api_percent_decode(s, slen, out, API_PARAM_BUF);
      if (r < 0 || strchr(out, '/') != NULL)
        return -EINVAL;
      n_params++;
    } else if (plen != slen || memcmp(p, s, plen) != 0) {
      return -ENOENT;
    }
    p = pseg_end;
    s = sseg_end;
  }
  if (*p != '\0' || s != end)
    return -ENOENT;
  match->n_params = n_params;
  return 0;
}

int api_route_match(enum api_method method, const char *path,
                    struct api_route_match *match, unsigned *allowed)
{
  const char *q = strchr(path, '?');
  size_t len = q != NULL ? (size_t)(q - path) : strlen(path);
  unsigned methods = 0;
  bool bad = false;
  enum api_method want = method == API_METHOD_HEAD ? API_METHOD_GET : method;

  if (allowed != NULL)
    *allowed = 0;
  if (len == 0 || path[0] != '/')
    return -EINVAL;
  /* A trailing slash names the same resource ("/v1/services/"). */
  if (len > 1 && path[len - 1] == '/')
    len--;

  for (size_t i = 0; i < API_ROUTE_COUNT; i++) {
    struct api_route_match m;
    int r = match_pattern(routes[i].pattern, path, len, &m);
    if (r == -EINVAL)
      bad = true;
    if (r != 0)
      continue;
    if (routes[i].method == want) {
      memcpy(match, &m, sizeof m);
      match->route = &routes[i];
      match->query = q != NULL ? q + 1 : NULL;
      return 0;
    }
    methods |= routes[i].method;
  }
  if (methods != 0) {
    if (methods & API_METHOD_GET)
      methods |= API_METHOD_HEAD;
    if (allowed != NULL)
      *allowed = methods;
    return -EPERM;
  }
  return bad ? -EINVAL : -ENOENT;
}
