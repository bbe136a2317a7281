/* Matching a request's method and path against the route table
 * (routes.c). */
#include <errno.h>
#include <string.h>

#include "nlb/api-router.h"

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

bool api_route_allows(const struct api_route *route, enum reg_role role)
{
  return (route->roles & (API_ROLE_ANYONE | API_ROLE_BIT(role))) != 0;
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
    if (plen > 2 && p[0] == '{' && p[plen - 1] == '}') {
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
  bool bad = false, trailing_slash = false;
  enum api_method want = method == API_METHOD_HEAD ? API_METHOD_GET : method;

  if (allowed != NULL)
    *allowed = 0;
  if (len == 0 || path[0] != '/')
    return -EINVAL;
  /* A trailing slash names the same resource ("/v1/services/"). */
  if (len > 1 && path[len - 1] == '/') {
    len--;
    trailing_slash = true;
  }

  for (size_t i = 0; i < api_n_routes; i++) {
    const struct api_route *route = &api_routes[i];
    struct api_route_match m;
    int r = match_pattern(route->pattern, path, len, &m);
    if (r == -EINVAL)
      bad = true;
    if (r != 0)
      continue;
    if (route->method == want) {
      memcpy(match, &m, sizeof m);
      match->route = route;
      match->query = q != NULL ? q + 1 : NULL;
      match->trailing_slash = trailing_slash;
      return 0;
    }
    methods |= route->method;
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
