/* Encodings both stores share (store-int.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store-int.h"

char *store_join_lines(char *const *v, size_t n)
{
  size_t len = 1;
  char *s;
  char *p;

  for (size_t i = 0; i < n; i++)
    len += strlen(v[i]) + 1;
  s = malloc(len);
  if (s == NULL)
    return NULL;
  p = s;
  for (size_t i = 0; i < n; i++)
    p += sprintf(p, "%s%s", i ? "\n" : "", v[i]);
  *p = '\0';
  return s;
}

int store_split_lines(const char *s, char ***out, size_t *n)
{
  size_t len = 0;
  char **v;

  *out = NULL;
  *n = 0;
  if (s == NULL || *s == '\0')
    return 0;
  for (const char *p = s; p; p = strchr(p + 1, '\n'))
    len++;
  v = calloc(len, sizeof(*v));
  if (v == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < len; i++) {
    const char *end = strchr(s, '\n');
    size_t l = end ? (size_t)(end - s) : strlen(s);

    v[i] = strndup(s, l);
    if (v[i] == NULL) {
      reg_strings_free(v, i);
      return -ENOMEM;
    }
    s += l + 1;
  }
  *out = v;
  *n = len;
  return 0;
}

void store_placement_reason(const char *in, char *out, size_t len)
{
  snprintf(out, len, "%s", in ? in : "");
  for (char *p = out; *p; p++)
    if (*p == '\t' || *p == '\n' || *p == '\r')
      *p = ' ';
}

static int cmp_placement(const void *a, const void *b)
{
  return strcmp(((const struct reg_placement *)a)->node,
                ((const struct reg_placement *)b)->node);
}

/* One "NODE\tOPEN\tUPDATED\tREASON" line into p. */
static int parse_placement(const char *line, size_t len,
                           struct reg_placement *p)
{
  char buf[REG_NAME_BUF + REG_REASON_BUF + 64];
  char *fields[4];
  size_t n = 0;

  if (len >= sizeof(buf))
    len = sizeof(buf) - 1;
  memcpy(buf, line, len);
  buf[len] = '\0';
  fields[0] = buf;
  for (char *t = buf; n < 3 && (t = strchr(t, '\t')) != NULL; t++) {
    *t = '\0';
    fields[++n] = t + 1;
  }
  if (n != 3)
    return -EIO;
  memset(p, 0, sizeof(*p));
  snprintf(p->node, sizeof(p->node), "%.*s", REG_NAME_MAX, fields[0]);
  p->open = strcmp(fields[1], "1") == 0 || strcmp(fields[1], "t") == 0;
  p->updated_at = strtoll(fields[2], NULL, 10);
  snprintf(p->reason, sizeof(p->reason), "%.*s", REG_REASON_BUF - 1, fields[3]);
  return 0;
}

int store_parse_placements(const char *s, struct reg_endpoint *e)
{
  size_t lines = 0;

  e->placements = NULL;
  e->n_placements = 0;
  if (s == NULL || *s == '\0')
    return 0;
  for (const char *p = s; p; p = strchr(p + 1, '\n'))
    lines++;
  e->placements = calloc(lines, sizeof(*e->placements));
  if (e->placements == NULL)
    return -ENOMEM;
  while (*s) {
    const char *end = strchr(s, '\n');
    size_t len = end ? (size_t)(end - s) : strlen(s);

    if (parse_placement(s, len, &e->placements[e->n_placements]) == 0)
      e->n_placements++;
    s += len + (end ? 1 : 0);
  }
  qsort(e->placements, e->n_placements, sizeof(*e->placements), cmp_placement);
  return 0;
}

static const char *const state_names[REG_EP_STATE_COUNT] = {
    "pendingAcceptance", "available", "rejected",
    "deleted",           "expired",   "failed",
};

const char *store_state_name(enum reg_endpoint_state state)
{
  return state_names[state];
}

int store_state_parse(const char *s, enum reg_endpoint_state *out)
{
  for (int i = 0; s && i < REG_EP_STATE_COUNT; i++)
    if (strcmp(s, state_names[i]) == 0) {
      *out = (enum reg_endpoint_state)i;
      return 0;
    }
  return -EIO;
}

const char *store_event_name(enum reg_event_type type)
{
  return reg_event_type_name(type);
}

int store_event_parse(const char *s, enum reg_event_type *out)
{
  return reg_event_type_parse(s, out) < 0 ? -EIO : 0;
}
