/* The SQLite driver: one node. WAL, synchronous=FULL, foreign keys, and a
 * lock on the database file that keeps a second nlbd off it. Writers are
 * serialized by SQLite itself (BEGIN IMMEDIATE takes the file's write
 * lock); an event's seq is the events table's AUTOINCREMENT rowid, taken
 * under that lock, so it has no gaps and grows in commit order. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "nlb/registry-store.h"
#include "sql-driver.h"

/* The migration whose unique indexes ignore case. */
#define NOCASE_MIGRATION 5

/* The schema version this nlb writes: registry/sql/sqlite.sql. */
#define N_MIGRATIONS reg_sql_sqlite_n_migrations

struct reg_sql {
  sqlite3 *db;
  int version;
  int lock_fd;
  uint32_t statement_timeout_ms; /* busy wait outside transactions */
  char errmsg[256];
};

struct reg_sql_stmt {
  sqlite3_stmt *stmt;
  struct reg_sql *db;
};

/* Records the failure and maps it to an errno. */
static int fail(struct reg_sql *db, int rc)
{
  const char *msg = sqlite3_errmsg(db->db);

  snprintf(db->errmsg, sizeof(db->errmsg), "sqlite: %s (%d)", msg, rc);
  switch (rc & 0xff) {
  case SQLITE_NOMEM:
    return -ENOMEM;
  case SQLITE_CONSTRAINT:
    /* The unique index of live addresses is the one on address_key. */
    return rc == SQLITE_CONSTRAINT_UNIQUE && strstr(msg, "address_key")
               ? -EADDRINUSE
               : -EEXIST;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return -EAGAIN;
  default:
    return -EIO;
  }
}

/* ---- statements --------------------------------------------------------- */

static int sqlite_prepare(struct reg_sql *db, const char *sql,
                          struct reg_sql_stmt **out)
{
  struct reg_sql_stmt *stmt = calloc(1, sizeof(*stmt));
  int rc;

  if (stmt == NULL)
    return -ENOMEM;
  rc = sqlite3_prepare_v3(db->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                          &stmt->stmt, NULL);
  if (rc != SQLITE_OK) {
    free(stmt);
    return fail(db, rc);
  }
  stmt->db = db;
  *out = stmt;
  return 0;
}

static void sqlite_finalize(struct reg_sql_stmt *stmt)
{
  if (stmt == NULL)
    return;
  sqlite3_finalize(stmt->stmt);
  free(stmt);
}

static void sqlite_bind_int(struct reg_sql_stmt *stmt, int i, int64_t v)
{
  sqlite3_bind_int64(stmt->stmt, i, v);
}

static void sqlite_bind_text(struct reg_sql_stmt *stmt, int i, const char *s)
{
  sqlite3_bind_text(stmt->stmt, i, s, -1, SQLITE_STATIC);
}

static void sqlite_bind_blob(struct reg_sql_stmt *stmt, int i, const void *p,
                             size_t n)
{
  sqlite3_bind_blob(stmt->stmt, i, p, (int)n, SQLITE_STATIC);
}

static int sqlite_step(struct reg_sql_stmt *stmt)
{
  int rc = sqlite3_step(stmt->stmt);

  return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : fail(stmt->db, rc);
}

static bool sqlite_column_is_null(struct reg_sql_stmt *stmt, int col)
{
  return sqlite3_column_type(stmt->stmt, col) == SQLITE_NULL;
}

static int64_t sqlite_column_int(struct reg_sql_stmt *stmt, int col)
{
  return sqlite3_column_int64(stmt->stmt, col);
}

static const char *sqlite_column_text(struct reg_sql_stmt *stmt, int col)
{
  const unsigned char *s = sqlite3_column_text(stmt->stmt, col);

  return s ? (const char *)s : "";
}

static int sqlite_column_blob(struct reg_sql_stmt *stmt, int col, void *out,
                              size_t n)
{
  if (sqlite3_column_bytes(stmt->stmt, col) != (int)n)
    return -EIO;
  memcpy(out, sqlite3_column_blob(stmt->stmt, col), n);
  return 0;
}

static uint64_t sqlite_changes(struct reg_sql_stmt *stmt)
{
  return (uint64_t)sqlite3_changes(stmt->db->db);
}

static void sqlite_reset(struct reg_sql_stmt *stmt)
{
  sqlite3_reset(stmt->stmt);
  sqlite3_clear_bindings(stmt->stmt);
}

/* ---- open, migrate, close ----------------------------------------------- */

static int exec(struct reg_sql *db, const char *sql)
{
  int rc = sqlite3_exec(db->db, sql, NULL, NULL, NULL);

  return rc == SQLITE_OK ? 0 : fail(db, rc);
}

/* The first column of sql's one row as text into out. */
static int pragma(struct reg_sql *db, const char *sql, char *out, size_t len)
{
  sqlite3_stmt *stmt;
  int rc = sqlite3_prepare_v2(db->db, sql, -1, &stmt, NULL);

  if (rc != SQLITE_OK)
    return fail(db, rc);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW)
    snprintf(out, len, "%s", (const char *)sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  return rc == SQLITE_ROW ? 0 : fail(db, rc);
}

/* Runs the migrations the database lacks, with the version bump, in one
 * transaction, so a crash leaves a consistent version. */
static int migrate(struct reg_sql *db)
{
  char sql[64] = "0";
  int version;
  int r;

  if ((r = exec(db, "BEGIN IMMEDIATE")) < 0)
    return r;
  r = pragma(db, "PRAGMA user_version", sql, sizeof(sql));
  version = atoi(sql);
  if (r == 0 && version > N_MIGRATIONS) {
    snprintf(db->errmsg, sizeof(db->errmsg),
             "store schema version %d is newer than this nlb (%d)", version,
             N_MIGRATIONS);
    r = -EIO;
  }
  for (; r == 0 && version < N_MIGRATIONS; version++) {
    if ((version == NOCASE_MIGRATION &&
         (r = sql_refuse_case_twins(&reg_sql_sqlite, db, db->errmsg,
                                    sizeof(db->errmsg))) < 0) ||
        (r = exec(db, reg_sql_sqlite_migrations[version])) < 0)
      break;
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version + 1);
    r = exec(db, sql);
  }
  if (r < 0) {
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
    return r;
  }
  db->version = version;
  return exec(db, "COMMIT");
}

/* One nlbd per database, whatever path names it (a symbolic link, a hard
 * link): the lock is on the file itself, an open file description lock
 * (F_OFD_SETLK) on a byte far past the ranges SQLite locks (around 1 GiB),
 * so that it is tied to the inode and to this descriptor alone: SQLite
 * closing its own descriptors never drops it, the kernel drops it when the
 * process ends, however it ends. The holder also locks byte
 * GUARD_PID_BASE + its pid, so that a refusal can name it (an OFD lock
 * reports no pid of its own). SQLite's locks would let two processes write
 * the same file, but two nlbd on it would each think their endpoints are
 * theirs alone, under the same node name. */
#define GUARD_BYTE ((off_t)1 << 40)
#define GUARD_PID_BASE (GUARD_BYTE + 1)
#define GUARD_PID_SPAN ((off_t)1 << 22) /* PID_MAX_LIMIT */

static int ofd_lock(int fd, int cmd, off_t start, off_t len, struct flock *fl)
{
  memset(fl, 0, sizeof(*fl));
  fl->l_type = F_WRLCK;
  fl->l_whence = SEEK_SET;
  fl->l_start = start;
  fl->l_len = len;
  return fcntl(fd, cmd, fl);
}

/* The pid of the process that holds the guard, or 0 if it did not say
 * (yet). */
static long guard_holder(int fd)
{
  struct flock fl;

  if (ofd_lock(fd, F_OFD_GETLK, GUARD_PID_BASE, GUARD_PID_SPAN, &fl) < 0 ||
      fl.l_type == F_UNLCK)
    return 0;
  return (long)(fl.l_start - GUARD_PID_BASE);
}

static atomic_int held_guard = -1;
static atomic_int adopted_guard = -1;

int reg_sqlite_writer_guard(void)
{
  return atomic_load(&held_guard);
}

void reg_sqlite_adopt_writer_guard(int fd)
{
  int old = atomic_exchange(&adopted_guard, fd);
  if (old >= 0)
    close(old);
}

/* fd itself when the guard handed over names the same file (then the
 * guard's description is the one locked: the same owner, no conflict). */
static int adopt_guard(int fd)
{
  struct stat mine, theirs;
  int adopted = atomic_load(&adopted_guard);

  if (adopted < 0 || fstat(fd, &mine) < 0 || fstat(adopted, &theirs) < 0 ||
      mine.st_dev != theirs.st_dev || mine.st_ino != theirs.st_ino ||
      !atomic_compare_exchange_strong(&adopted_guard, &adopted, -1))
    return fd;
  close(fd);
  return adopted;
}

static int take_lock(struct reg_sql *db, const char *location)
{
  struct flock fl;
  long pid;
  int fd;

  /* SQLite creates missing files with the same mode. */
  fd = open(location, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(db->errmsg, sizeof(db->errmsg), "cannot open %.200s: %s", location,
             strerror(errno));
    return -EIO;
  }
  fd = adopt_guard(fd);
  if (ofd_lock(fd, F_OFD_SETLK, GUARD_BYTE, 1, &fl) < 0) {
    int e = errno;

    if (e != EAGAIN && e != EACCES) {
      snprintf(db->errmsg, sizeof(db->errmsg), "cannot lock %.200s: %s",
               location, strerror(e));
      close(fd);
      return -EIO;
    }
    pid = guard_holder(fd);
    if (pid > 0)
      snprintf(db->errmsg, sizeof(db->errmsg),
               "registry %s is in use by another nlbd (pid %ld)", location,
               pid);
    else
      snprintf(db->errmsg, sizeof(db->errmsg),
               "registry %s is in use by another nlbd (pid unknown)", location);
    close(fd);
    return -EBUSY;
  }
  if (ofd_lock(fd, F_OFD_SETLK, GUARD_PID_BASE + getpid(), 1, &fl) < 0) {
    /* The guard holds; only the pid in a refusal would be missing. */
  }
  db->lock_fd = fd;
  atomic_store(&held_guard, fd);
  return 0;
}

static void sqlite_close(struct reg_sql *db)
{
  if (db == NULL)
    return;
  sqlite3_close(db->db);
  if (db->lock_fd >= 0) {
    int held = db->lock_fd;
    atomic_compare_exchange_strong(&held_guard, &held, -1);
    close(db->lock_fd);
  }
  free(db);
}

static int set_wal(struct reg_sql *db, const char *location)
{
  char mode[16] = "";
  int r = pragma(db, "PRAGMA journal_mode = WAL", mode, sizeof(mode));

  /* journal_mode answers with the mode it got: a read-only or in-memory
   * database silently stays out of WAL. */
  if (r < 0 || sqlite3_stricmp(mode, "wal") == 0)
    return r;
  snprintf(db->errmsg, sizeof(db->errmsg), "cannot put %s in WAL mode",
           location);
  return -EIO;
}

/* PostgreSQL's byte order, which the store's SQL names: SQLite's BINARY. */
static int compare_bytes(void *arg, int n1, const void *s1, int n2,
                         const void *s2)
{
  int c = memcmp(s1, s2, (size_t)(n1 < n2 ? n1 : n2));

  return c ? c : n1 - n2;
}

/* A reader (reader: a second connection of this process, after the first
 * has locked and migrated the file) is read-only, so that no write can
 * slip in beside the writer's, and migrates nothing. */
static int setup(struct reg_sql *db, const char *location, bool reader)
{
  char version[16] = "0";
  int rc;
  int r;

  sqlite3_extended_result_codes(db->db, 1);
  sqlite3_busy_timeout(db->db, (int)db->statement_timeout_ms);
  rc = sqlite3_create_collation_v2(db->db, "C", SQLITE_UTF8, NULL,
                                   compare_bytes, NULL);
  if (rc != SQLITE_OK)
    return fail(db, rc);
  if (reader) {
    if ((r = pragma(db, "PRAGMA user_version", version, sizeof(version))) < 0)
      return r;
    db->version = atoi(version);
    if (db->version == N_MIGRATIONS)
      return 0;
    snprintf(db->errmsg, sizeof(db->errmsg),
             "store schema version %d, this nlb reads %d", db->version,
             N_MIGRATIONS);
    return -EIO;
  }
  if ((r = set_wal(db, location)) < 0 ||
      (r = exec(db, "PRAGMA synchronous = FULL")) < 0 ||
      (r = exec(db, "PRAGMA foreign_keys = ON")) < 0)
    return r;
  return migrate(db);
}

/* "sqlite:PATH" or "sqlite://PATH" ("sqlite:///var/lib/nlb/registry.db"). */
static int sqlite_open(struct reg_sql **out, const struct reg_store_settings *s,
                       char *errbuf, size_t errlen)
{
  const char *location = s->location + strlen("sqlite:");
  struct reg_sql *db;
  int rc;
  int r;

  if (strncmp(location, "//", 2) == 0)
    location += 2;
  db = calloc(1, sizeof(*db));
  if (db == NULL)
    return -ENOMEM;
  db->lock_fd = -1;
  db->statement_timeout_ms = s->statement_timeout_ms;
  if (!s->reader && (r = take_lock(db, location)) < 0) {
    snprintf(errbuf, errlen, "%s", db->errmsg);
    sqlite_close(db);
    return r;
  }
  rc = sqlite3_open_v2(location, &db->db,
                       s->reader ? SQLITE_OPEN_READONLY
                                 : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                       NULL);
  r = rc != SQLITE_OK ? (db->db ? fail(db, rc) : -ENOMEM)
                      : setup(db, location, s->reader);
  if (r < 0) {
    snprintf(errbuf, errlen, "%s: %s", location,
             db->errmsg[0] ? db->errmsg : strerror(-r));
    sqlite_close(db);
    return r;
  }
  *out = db;
  return 0;
}

static const char *sqlite_errmsg(struct reg_sql *db)
{
  return db->errmsg;
}

static int sqlite_schema_version(struct reg_sql *db)
{
  return db->version;
}

/* ---- transactions ------------------------------------------------------- */

/* A busy file (another process's lock) is waited for at most timeout_ms;
 * SQLite has no other wait to bound. After the transaction, statements
 * outside one get the default bound back. */
static int sqlite_begin(struct reg_sql *db, bool write, uint32_t timeout_ms)
{
  int r;

  sqlite3_busy_timeout(db->db, (int)timeout_ms);
  r = exec(db, write ? "BEGIN IMMEDIATE" : "BEGIN");
  if (r < 0)
    sqlite3_busy_timeout(db->db, (int)db->statement_timeout_ms);
  return r == -EAGAIN ? -ETIMEDOUT : r;
}

static int sqlite_commit(struct reg_sql *db)
{
  int r = exec(db, "COMMIT");

  /* A failed COMMIT (e.g. an I/O error) may leave the transaction open. */
  if (r < 0 && !sqlite3_get_autocommit(db->db))
    exec(db, "ROLLBACK");
  sqlite3_busy_timeout(db->db, (int)db->statement_timeout_ms);
  return r;
}

static void sqlite_rollback(struct reg_sql *db)
{
  /* Reset every statement first: an unfinished read would keep the
   * transaction's read lock. */
  for (sqlite3_stmt *s = sqlite3_next_stmt(db->db, NULL); s;
       s = sqlite3_next_stmt(db->db, s))
    sqlite3_reset(s);
  if (!sqlite3_get_autocommit(db->db))
    exec(db, "ROLLBACK");
  sqlite3_busy_timeout(db->db, (int)db->statement_timeout_ms);
}

/* One process writes: no notices from others. */
static int sqlite_wait_fd(struct reg_sql *db)
{
  return -1;
}

static bool sqlite_take_notices(struct reg_sql *db)
{
  return false;
}

static int sqlite_now(struct reg_sql *db, int64_t *now_ms)
{
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  *now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  return 0;
}

/* AUTOINCREMENT numbers events under the write lock. */
static int sqlite_event_seq(struct reg_sql *db, int64_t *seq)
{
  *seq = 0;
  return 0;
}

const struct reg_sql_driver reg_sql_sqlite = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .errmsg = sqlite_errmsg,
    .schema_version = sqlite_schema_version,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .wait_fd = sqlite_wait_fd,
    .take_notices = sqlite_take_notices,
    .now = sqlite_now,
    .event_seq = sqlite_event_seq,
    /* AUTOINCREMENT's own counter: pruning every event must not bring seq
     * back to 0. */
    .last_seq_sql = "SELECT coalesce((SELECT seq FROM sqlite_sequence"
                    " WHERE name = 'events'), 0)",
    .prepare = sqlite_prepare,
    .finalize = sqlite_finalize,
    .bind_int = sqlite_bind_int,
    .bind_text = sqlite_bind_text,
    .bind_blob = sqlite_bind_blob,
    .step = sqlite_step,
    .column_is_null = sqlite_column_is_null,
    .column_int = sqlite_column_int,
    .column_text = sqlite_column_text,
    .column_blob = sqlite_column_blob,
    .changes = sqlite_changes,
    .reset = sqlite_reset,
};
