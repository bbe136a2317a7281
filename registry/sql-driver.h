/* Private to the store: what store_sql.c needs of a SQL database, one table
 * per database (sql_sqlite.c, sql_pg.c), found by the scheme of the
 * store's URL in backends.c. A driver owns its connection, its locking,
 * its schema and migrations, its transactions and its change notices; the
 * store owns the statements and every row mapping, and writes its SQL once
 * in the dialect both databases read (numbered parameters ?1, ?2...,
 * ON CONFLICT, RETURNING, TRUE/FALSE, COLLATE "C", group_concat). A
 * driver translates what it must when it prepares a statement (PostgreSQL:
 * ?N becomes $N, group_concat string_agg; SQLite gets a "C" collation).
 *
 * One thread, the registry's. Functions returning int return 0 or a
 * negative errno with the driver's message kept for errmsg(): -EEXIST (a
 * unique key), -EADDRINUSE (the live address index), -ENOENT (a foreign
 * key, PostgreSQL), -EAGAIN (try the transaction again), -ENOTCONN (the
 * server cannot be reached), -ETIMEDOUT (the transaction's time ran out:
 * never tried again), -EBUSY (at open: another process holds the file or
 * the node's name), -ENOMEM, -EIO. */
#ifndef NLB_SQL_DRIVER_H
#define NLB_SQL_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct reg_sql;            /* a connection */
struct reg_store_settings; /* nlb/registry-store.h */
struct reg_sql_stmt;       /* a prepared statement of one connection */

struct reg_sql_driver {
  const char *name; /* the URL scheme: "sqlite", "postgresql" */

  /* Opens the database at s->location (a URL whose scheme is name),
   * migrates its schema and takes what the store's contract asks (SQLite:
   * the lock on the file that keeps a second nlbd off; PostgreSQL: the
   * node's name), unless s->reader: then it only reads, a second
   * connection of the same process. A PostgreSQL server that does not
   * answer is not an error: *out is usable and reconnects at the next
   * begin or now. Statements outside transactions are bounded by
   * s->statement_timeout_ms. errbuf gets the reason of a failure. */
  int (*open)(struct reg_sql **out, const struct reg_store_settings *s,
              char *errbuf, size_t errlen);
  /* Statements must be finalized before. */
  void (*close)(struct reg_sql *db);
  const char *(*errmsg)(struct reg_sql *db);
  int (*schema_version)(struct reg_sql *db);

  /* Transactions, serialized as registry-store.h says; every wait of
   * this one ends within timeout_ms, with -ETIMEDOUT. */
  int (*begin)(struct reg_sql *db, bool write, uint32_t timeout_ms);
  int (*commit)(struct reg_sql *db);
  void (*rollback)(struct reg_sql *db);
  /* Change notices (registry-store.h's wait_fd, take_notices). */
  int (*wait_fd)(struct reg_sql *db);
  bool (*take_notices)(struct reg_sql *db);
  /* The database's clock, unix ms; reconnects if need be. */
  int (*now)(struct reg_sql *db, int64_t *now_ms);
  /* The seq of the event about to be appended in the open write
   * transaction, taken; 0 when the events table numbers it itself. */
  int (*event_seq)(struct reg_sql *db, int64_t *seq);
  /* SELECT of one row and column: the last seq ever appended, 0 if none,
   * even after every event was pruned. */
  const char *last_seq_sql;

  /* Statements. prepare keeps sql (static) and may talk to the server
   * only when the statement first runs. Parameters count from 1; text and
   * blobs are borrowed until the statement is reset. */
  int (*prepare)(struct reg_sql *db, const char *sql,
                 struct reg_sql_stmt **out);
  void (*finalize)(struct reg_sql_stmt *stmt);
  void (*bind_int)(struct reg_sql_stmt *stmt, int i, int64_t v);
  void (*bind_text)(struct reg_sql_stmt *stmt, int i, const char *s);
  void (*bind_blob)(struct reg_sql_stmt *stmt, int i, const void *p, size_t n);
  /* 1: a row is ready, 0: done, or a negative errno. */
  int (*step)(struct reg_sql_stmt *stmt);
  /* Columns of the current row, from 0. A NULL text is "". column_int
   * reads booleans as 1 and 0. column_blob copies exactly n bytes, -EIO
   * when the value has another size. */
  bool (*column_is_null)(struct reg_sql_stmt *stmt, int col);
  int64_t (*column_int)(struct reg_sql_stmt *stmt, int col);
  const char *(*column_text)(struct reg_sql_stmt *stmt, int col);
  int (*column_blob)(struct reg_sql_stmt *stmt, int col, void *out, size_t n);
  /* Rows the last run changed (run to the end first). */
  uint64_t (*changes)(struct reg_sql_stmt *stmt);
  /* Ends the run and clears the bindings. */
  void (*reset)(struct reg_sql_stmt *stmt);
};

extern const struct reg_sql_driver reg_sql_sqlite;     /* sql_sqlite.c */
extern const struct reg_sql_driver reg_sql_postgresql; /* sql_pg.c */

/* Each driver's schema history, written in registry/sql/DRIVER.sql and
 * compiled in (sql-migrations.c, generated): entry i brings the schema
 * from version i to i + 1, one string of statements; the count is the
 * version this nlb writes. */
extern const char *const reg_sql_sqlite_migrations[];
extern const int reg_sql_sqlite_n_migrations;
extern const char *const reg_sql_postgresql_migrations[];
extern const int reg_sql_postgresql_n_migrations;

/* Before names compare ignoring case (a driver's migration to unique
 * indexes on lower(name)), inside that migration's transaction: two names
 * that differ only in case cannot both stay, and which one goes is their
 * owners' business, not an upgrade's. -EIO with errmsg naming them
 * (nlbd's start failure says it), or the driver's error (sql_migrate.c). */
int sql_refuse_case_twins(const struct reg_sql_driver *sql, struct reg_sql *db,
                          char *errmsg, size_t len);

/* The driver named by url's scheme ("sqlite:", "postgresql:"), or NULL
 * (backends.c). */
const struct reg_sql_driver *reg_sql_driver_find(const char *url);

#endif
