/* Private to the SQL store (store_sql.c): its statements run through a
 * driver (sql-driver.h), and their rows read into the registry's structs
 * (sql_run.c). One thread, the store's. Functions return 0 or a negative
 * errno as registry-store.h says; -EIO also when a statement cannot be
 * prepared (the driver's errmsg says why). */
#ifndef NLB_SQL_RUN_H
#define NLB_SQL_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nlb/registry-store.h"
#include "sql-driver.h"

/* Statements are prepared at their first run and kept, found by the
 * address of their text: a query is a string that lives as long as the
 * program (a literal), one per statement. */
#define SQL_MAX_STMTS 64

struct reg_store {
  const struct reg_sql_driver *sql;
  struct reg_sql *db;
  struct {
    const char *query;
    struct reg_sql_stmt *stmt;
  } stmts[SQL_MAX_STMTS];
  size_t n_stmts;
};

/* reg_store_ops.open and .close: the driver is the one the scheme of
 * s->location (the store's URL) names. */
int sql_open(struct reg_store **out, const struct reg_store_settings *s,
             char *errbuf, size_t errlen);
void sql_close(struct reg_store *store);

/* A statement's parameters, bound from ?1 on: the letters of fmt, then one
 * argument each: s a string (NULL: NULL), i an int64_t, b a bool, k a
 * struct reg_addr_key *, h a token's 32-byte sha256. ARGS counts the
 * letters against the arguments when it compiles. */
#define ARGS(fmt, ...)                                                         \
  ((void)sizeof(struct {                                                       \
     _Static_assert(sizeof(fmt) - 1 == NARGS(__VA_ARGS__), "fmt");             \
     int unused;                                                               \
   }),                                                                         \
   fmt),                                                                       \
      ##__VA_ARGS__
#define NARGS(...)                                                             \
  NARGS_(_, ##__VA_ARGS__, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define NARGS_(_, a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, count, ...) count

/* Runs query to its end; *changed (NULL: not wanted) gets the rows it
 * changed. */
int sql_run(struct reg_store *store, uint64_t *changed, const char *query,
            const char *fmt, ...);

/* A row being read, and its columns from 0: a NULL text is "", booleans
 * are 1 and 0. */
struct sql_row {
  const struct reg_sql_driver *sql;
  struct reg_sql_stmt *stmt;
};
const char *sql_text(const struct sql_row *row, int col);
int64_t sql_int(const struct sql_row *row, int col);
#define COPY(row, col, field)                                                  \
  snprintf(field, sizeof(field), "%s", sql_text(row, col))

/* How rows of one kind become items of size bytes: from_row fills one (0
 * or a negative errno), release frees what it allocated in one (NULL:
 * nothing). */
struct sql_rows {
  size_t size;
  int (*from_row)(const struct sql_row *row, void *item);
  void (*release)(void *item);
};
/* The first column as an int64_t (NULL: no row), as a size_t. */
extern const struct sql_rows sql_int_rows, sql_count_rows;

/* The first row of query into item; -ENOENT when none. */
int sql_get(struct reg_store *store, const struct sql_rows *rows, void *item,
            const char *query, const char *fmt, ...);
/* Every row of query into a malloc'd array of items: *out, *n. */
int sql_list(struct reg_store *store, const struct sql_rows *rows, void **out,
             size_t *n, const char *query, const char *fmt, ...);

/* allowed_sources and a network's principals are kept as one
 * newline-separated column: they are always read and written whole, and
 * neither holds a newline. join returns a malloc'd string (NULL: ENOMEM);
 * split fills an allocated array (reg_strings_free). */
char *sql_join_lines(char *const *v, size_t n);
int sql_split_lines(const char *s, char ***out, size_t *n);
/* Placements are read as one column of "NODE\tOPEN\tUPDATED\tREASON"
 * lines (OPEN 1 or t). Fills e->placements sorted by node; a line that
 * does not parse is skipped. */
int sql_parse_placements(const char *s, struct reg_endpoint *e);

#endif
