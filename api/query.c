/* Percent-decoding and query strings: the pure string work of a request's
 * path, apart from the route table. */
#include <errno.h>
#include <string.h>

#include "nlb/api-router.h"

static int hex_value(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static int decode(const char *in, size_t n, char *out, size_t out_len,
                  bool plus_is_space)
{
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = in[i];
    if (c == '%') {
      int hi, lo;
      if (i + 2 >= n)
        return -EINVAL;
      hi = hex_value(in[i + 1]);
      lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
        return -EINVAL;
      c = (char)(hi << 4 | lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    if (o + 1 >= out_len)
      return -EINVAL;
    out[o++] = c;
  }
  if (out_len == 0)
    return -EINVAL;
  out[o] = '\0';
  return (int)o;
}

int api_percent_decode(const char *in, size_t n, char *out, size_t out_len)
{
  return decode(in, n, out, out_len, false);
}

/* Calls visit for each "name=value" pair of query; stops at a nonzero
 * return and passes it on. */
static int each_param(const char *query,
                      int (*visit)(const char *name, size_t name_len,
                                   const char *value, size_t value_len,
                                   void *arg),
                      void *arg)
{
  const char *s = query;
  while (s != NULL && *s != '\0') {
    const char *amp = strchr(s, '&');
    size_t n = amp != NULL ? (size_t)(amp - s) : strlen(s);
    if (n > 0) {
      const char *eq = memchr(s, '=', n);
      size_t name_len = eq != NULL ? (size_t)(eq - s) : n;
      const char *value = eq != NULL ? eq + 1 : s + n;
      size_t value_len = eq != NULL ? n - name_len - 1 : 0;
      int r = visit(s, name_len, value, value_len, arg);
      if (r != 0)
        return r;
    }
    s = amp != NULL ? amp + 1 : NULL;
  }
  return 0;
}

struct query_get {
  const char *name;
  char *buf;
  size_t len;
  int result;
};

static int visit_get(const char *name, size_t name_len, const char *value,
                     size_t value_len, void *arg)
{
  struct query_get *g = arg;
  if (strlen(g->name) != name_len || memcmp(g->name, name, name_len) != 0)
    return 0;
  g->result = decode(value, value_len, g->buf, g->len, true) < 0 ? -EINVAL : 0;
  return 1;
}

int api_query_get(const char *query, const char *name, char *buf, size_t len)
{
  struct query_get g = {name, buf, len, -ENOENT};
  each_param(query, visit_get, &g);
  return g.result;
}

struct query_check {
  const char *const *names;
  unsigned seen;
  char *bad;
  size_t bad_len;
};

static int visit_check(const char *name, size_t name_len, const char *value,
                       size_t value_len, void *arg)
{
  struct query_check *c = arg;
  for (size_t i = 0; c->names[i] != NULL && i < 32; i++) {
    if (strlen(c->names[i]) == name_len &&
        memcmp(c->names[i], name, name_len) == 0) {
      if (c->seen & (1u << i))
        break;
      c->seen |= 1u << i;
      return 0;
    }
  }
  if (c->bad_len > 0) {
    size_t n = name_len < c->bad_len - 1 ? name_len : c->bad_len - 1;
    memcpy(c->bad, name, n);
    c->bad[n] = '\0';
  }
  return -EINVAL;
}

int api_query_check(const char *query, const char *const *names, char *bad,
                    size_t bad_len)
{
  struct query_check c = {names, 0, bad, bad_len};
  return each_param(query, visit_check, &c);
}
