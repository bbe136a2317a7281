/* The SQL store's statements run through its driver, and their rows
 * (sql-run.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql-run.h"

/* ---- open, close ------------------------------------------------------- */

void sql_close(struct reg_store *store)
{
  if (store == NULL)
    return;
  for (size_t i = 0; i < store->n_stmts; i++)
    store->sql->finalize(store->stmts[i].stmt);
  store->sql->close(store->db);
  free(store);
}

int sql_open(struct reg_store **out, const struct reg_store_settings *s,
             char *errbuf, size_t errlen)
{
  struct reg_store *store = calloc(1, sizeof(*store));
  int r;

  if (store == NULL)
    return -ENOMEM;
  if ((store->sql = reg_sql_driver_find(s->location)) == NULL) {
    snprintf(errbuf, errlen, "no such store: %s", s->location);
    free(store);
    return -EINVAL;
  }
  if ((r = store->sql->open(&store->db, s, errbuf, errlen)) < 0) {
    free(store);
    return r;
  }
  *out = store;
  return 0;
}

/* ---- running statements ------------------------------------------------- */

/* The statement of query (prepared at its first use), reset, with its
 * parameters bound (sql-run.h's ARGS); NULL when it cannot be prepared. */
static struct reg_sql_stmt *bind(struct reg_store *store, const char *query,
                                 const char *fmt, va_list ap)
{
  const struct reg_sql_driver *sql = store->sql;
  struct reg_sql_stmt *stmt = NULL;
  size_t i = 0;

  while (i < store->n_stmts && store->stmts[i].query != query)
    i++;
  if (i < store->n_stmts)
    stmt = store->stmts[i].stmt;
  else if (i < SQL_MAX_STMTS && sql->prepare(store->db, query, &stmt) == 0) {
    store->stmts[i].query = query;
    store->stmts[store->n_stmts++].stmt = stmt;
  }
  if (stmt == NULL)
    return NULL;
  sql->reset(stmt);
  for (int n = 1; *fmt; fmt++, n++) {
    if (*fmt == 's')
      sql->bind_text(stmt, n, va_arg(ap, const char *));
    else if (*fmt == 'i')
      sql->bind_int(stmt, n, va_arg(ap, int64_t));
    else if (*fmt == 'b')
      sql->bind_int(stmt, n, va_arg(ap, int) != 0);
    else if (*fmt == 'k')
      sql->bind_blob(stmt, n, va_arg(ap, const struct reg_addr_key *)->bytes,
                     sizeof(((struct reg_addr_key *)0)->bytes));
    else if (*fmt == 'h')
      sql->bind_blob(stmt, n, va_arg(ap, const uint8_t *), 32);
  }
  return stmt;
}

/* Steps stmt once: 1 a row, 0 done, or a negative errno. */
static int step(struct reg_store *store, struct reg_sql_stmt *stmt)
{
  return stmt ? store->sql->step(stmt) : -EIO;
}

static int finish(struct reg_store *store, struct reg_sql_stmt *stmt, int r)
{
  if (stmt)
    store->sql->reset(stmt);
  return r;
}

int sql_run(struct reg_store *store, uint64_t *changed, const char *query,
            const char *fmt, ...)
{
  struct reg_sql_stmt *stmt;
  va_list ap;
  int r;

  va_start(ap, fmt);
  stmt = bind(store, query, fmt, ap);
  va_end(ap);
  while ((r = step(store, stmt)) > 0)
    ;
  if (r == 0 && changed)
    *changed = store->sql->changes(stmt);
  return finish(store, stmt, r);
}

const char *sql_text(const struct sql_row *row, int col)
{
  return row->sql->column_text(row->stmt, col);
}

int64_t sql_int(const struct sql_row *row, int col)
{
  return row->sql->column_int(row->stmt, col);
}

int sql_get(struct reg_store *store, const struct sql_rows *rows, void *item,
            const char *query, const char *fmt, ...)
{
  struct sql_row row = {store->sql, NULL};
  va_list ap;
  int r;

  va_start(ap, fmt);
  row.stmt = bind(store, query, fmt, ap);
  va_end(ap);
  r = step(store, row.stmt);
  return finish(store, row.stmt,
                r > 0    ? rows->from_row(&row, item)
                : r == 0 ? -ENOENT
                         : r);
}

int sql_list(struct reg_store *store, const struct sql_rows *rows, void **out,
             size_t *n, const char *query, const char *fmt, ...)
{
  struct sql_row row = {store->sql, NULL};
  char *v = NULL;
  size_t len = 0, cap = 0;
  va_list ap;
  int r;

  va_start(ap, fmt);
  row.stmt = bind(store, query, fmt, ap);
  va_end(ap);
  while ((r = step(store, row.stmt)) > 0) {
    if (len == cap) {
      char *nv = realloc(v, (cap = cap ? cap * 2 : 8) * rows->size);

      if (nv == NULL) {
        r = -ENOMEM;
        break;
      }
      v = nv;
    }
    if ((r = rows->from_row(&row, v + len * rows->size)) < 0)
      break;
    len++;
  }
  if (r < 0) {
    for (size_t i = 0; rows->release && i < len; i++)
      rows->release(v + i * rows->size);
    free(v);
    return finish(store, row.stmt, r);
  }
  *out = v;
  *n = len;
  return finish(store, row.stmt, 0);
}

/* NULL counts as no row: min() of no rows. */
static int int_from_row(const struct sql_row *row, void *item)
{
  if (row->sql->column_is_null(row->stmt, 0))
    return -ENOENT;
  *(int64_t *)item = sql_int(row, 0);
  return 0;
}

static int size_from_row(const struct sql_row *row, void *item)
{
  *(size_t *)item = (size_t)sql_int(row, 0);
  return 0;
}

const struct sql_rows sql_int_rows = {sizeof(int64_t), int_from_row, NULL};
const struct sql_rows sql_count_rows = {sizeof(size_t), size_from_row, NULL};

/* ---- encodings ---------------------------------------------------------- */

char *sql_join_lines(char *const *v, size_t n)
{
  size_t len = 1;
  char *s, *p;

  for (size_t i = 0; i < n; i++)
    len += strlen(v[i]) + 1;
  if ((s = p = malloc(len)) == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++)
    p += sprintf(p, "%s%s", i ? "\n" : "", v[i]);
  *p = '\0';
  return s;
}

int sql_split_lines(const char *s, char ***out, size_t *n)
{
  size_t len = 0;
  char **v;

  *out = NULL;
  *n = 0;
  if (*s == '\0')
    return 0;
  for (const char *p = s; p; p = strchr(p + 1, '\n'))
    len++;
  if ((v = calloc(len, sizeof(*v))) == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < len; s += strcspn(s, "\n") + 1, i++)
    if ((v[i] = strndup(s, strcspn(s, "\n"))) == NULL) {
      reg_strings_free(v, i);
      return -ENOMEM;
    }
  *out = v;
  *n = len;
  return 0;
}

static int cmp_placement(const void *a, const void *b)
{
  return strcmp(((const struct reg_placement *)a)->node,
                ((const struct reg_placement *)b)->node);
}

int sql_parse_placements(const char *s, struct reg_endpoint *e)
{
  char **lines;
  size_t n;
  int r = sql_split_lines(s, &lines, &n);

  if (r < 0 || n == 0)
    return r;
  if ((e->placements = calloc(n, sizeof(*e->placements))) == NULL)
    r = -ENOMEM;
  for (size_t i = 0; r == 0 && i < n; i++) {
    struct reg_placement *p = &e->placements[e->n_placements];
    char *node = lines[i], *open = strchr(node, '\t');
    char *updated = open ? strchr(open + 1, '\t') : NULL;
    char *reason = updated ? strchr(updated + 1, '\t') : NULL;

    if (reason == NULL)
      continue;
    snprintf(p->node, sizeof(p->node), "%.*s", (int)(open - node), node);
    p->open = open[1] == '1' || open[1] == 't';
    p->updated_at = strtoll(updated + 1, NULL, 10);
    snprintf(p->reason, sizeof(p->reason), "%s", reason + 1);
    e->n_placements++;
  }
  reg_strings_free(lines, n);
  qsort(e->placements, e->n_placements, sizeof(*e->placements), cmp_placement);
  return r;
}
