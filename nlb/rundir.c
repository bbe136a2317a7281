#include "nlb/rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define PID_FILE "nlbd.pid"
#define RELOAD_FILE "reload"
#define UPGRADE_FILE "upgrade"
#define UPGRADE_LOCK "upgrade.lock"
#define POLL_MS 20

static struct {
  char *dir;
  unsigned long long seq;
} rundir;

const char *nlb_rundir_pick(const char *option)
{
  static char first[4096];
  const char *env = getenv("RUNTIME_DIRECTORY");
  if (option)
    return option;
  if (!env || !*env)
    return NULL;
  /* Several RuntimeDirectory= entries come colon-separated. */
  snprintf(first, sizeof(first), "%.*s", (int)strcspn(env, ":"), env);
  return first;
}

static int file_path(char *buf, size_t size, const char *dir, const char *name)
{
  int n = snprintf(buf, size, "%s/%s", dir, name);
  return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Writes text to dir/name through a temporary file renamed over it, so a
 * reader never sees half of it. */
static int write_whole(const char *dir, const char *name, const char *text)
{
  char path[4096], tmp[4096];
  size_t len = strlen(text);
  int fd, rc = 0;

  if (file_path(path, sizeof(path), dir, name) < 0 ||
      snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
    return -ENAMETOOLONG;
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  if (write(fd, text, len) != (ssize_t)len)
    rc = errno ? -errno : -EIO;
  if (close(fd) < 0 && rc == 0)
    rc = -errno;
  if (rc == 0 && rename(tmp, path) < 0)
    rc = -errno;
  if (rc < 0)
    unlink(tmp);
  return rc;
}

static int read_file(const char *dir, const char *name, char *buf, size_t size)
{
  char path[4096];
  ssize_t n;
  int fd;

  if (file_path(path, sizeof(path), dir, name) < 0)
    return -ENAMETOOLONG;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  n = read(fd, buf, size - 1);
  close(fd);
  if (n < 0)
    return -errno;
  buf[n] = '\0';
  return 0;
}

/* Whether pid is an nlbd that runs (its command name: the binary's, or
 * libtool's wrapper's). */
static bool is_nlbd(long pid)
{
  char path[64], comm[32];
  ssize_t n;
  int fd;

  snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  n = read(fd, comm, sizeof(comm) - 1);
  close(fd);
  comm[n > 0 ? n : 0] = '\0';
  return strncmp(comm, "nlbd", 4) == 0 || strncmp(comm, "lt-nlbd", 7) == 0;
}

int nlb_rundir_start(const char *dir, long previous)
{
  struct timespec now;
  char pid[32], text[64];
  long holder;
  int rc;

  /* Two nlbd writing one pid file would have each signal reach the other
   * one. A stale file (a crash) names a pid that is gone or reused. */
  if (read_file(dir, PID_FILE, text, sizeof(text)) == 0) {
    holder = strtol(text, NULL, 10);
    if (holder > 1 && holder != getpid() && holder != previous &&
        is_nlbd(holder))
      return -EBUSY;
  }
  snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
  rc = write_whole(dir, PID_FILE, pid);
  if (rc < 0)
    return rc;
  free(rundir.dir);
  rundir.dir = strdup(dir);
  /* Distinct from what an earlier nlbd left, so a waiting client cannot
   * take that for this one's answer: microseconds, since an upgrade's new
   * nlbd starts within the second of the old one, which wrote as many
   * lines (clock_gettime never fails with CLOCK_REALTIME). */
  clock_gettime(CLOCK_REALTIME, &now);
  rundir.seq = (unsigned long long)now.tv_sec * 1000000 +
               (unsigned long long)now.tv_nsec / 1000;
  return rundir.dir ? 0 : -ENOMEM;
}

void nlb_rundir_loaded(bool applied, const char *message)
{
  char text[1024];
  if (!rundir.dir)
    return;
  snprintf(text, sizeof(text), "%llu %s\n%s\n", ++rundir.seq,
           applied ? "applied" : "rejected", message);
  write_whole(rundir.dir, RELOAD_FILE, text);
}

void nlb_rundir_upgrade_state(const char *state, const char *message)
{
  char text[1024];
  if (!rundir.dir)
    return;
  snprintf(text, sizeof(text), "%llu %s\n%s\n", ++rundir.seq, state, message);
  write_whole(rundir.dir, UPGRADE_FILE, text);
}

void nlb_rundir_forget(void)
{
  free(rundir.dir);
  rundir.dir = NULL;
}

void nlb_rundir_stop(void)
{
  char path[4096];
  if (!rundir.dir)
    return;
  if (file_path(path, sizeof(path), rundir.dir, PID_FILE) == 0)
    unlink(path);
  if (file_path(path, sizeof(path), rundir.dir, RELOAD_FILE) == 0)
    unlink(path);
  free(rundir.dir);
  rundir.dir = NULL;
}

/* The first line of file ("SEQ applied"); "" when absent. */
static void file_state(const char *dir, const char *file, char *first_line,
                       size_t size, char *message, size_t message_size)
{
  char text[1024];
  size_t len;
  first_line[0] = '\0';
  if (read_file(dir, file, text, sizeof(text)) < 0)
    return;
  len = strcspn(text, "\n");
  snprintf(first_line, size, "%.*s", (int)len, text);
  if (message && text[len] == '\n')
    snprintf(message, message_size, "%.*s", (int)strcspn(text + len + 1, "\n"),
             text + len + 1);
}

int nlb_rundir_reload(const char *dir, uint64_t timeout_ms, char *message,
                      size_t size)
{
  char text[64], before[64], now[64];
  struct timespec pause = {0, POLL_MS * 1000000L};
  long pid;
  int rc = read_file(dir, PID_FILE, text, sizeof(text));

  message[0] = '\0';
  if (rc < 0)
    return rc;
  pid = strtol(text, NULL, 10);
  if (pid <= 1)
    return -EINVAL;
  file_state(dir, RELOAD_FILE, before, sizeof(before), NULL, 0);
  if (kill((pid_t)pid, SIGHUP) < 0)
    return -errno;
  for (uint64_t waited = 0; waited < timeout_ms; waited += POLL_MS) {
    nanosleep(&pause, NULL);
    file_state(dir, RELOAD_FILE, now, sizeof(now), message, size);
    if (now[0] && strcmp(now, before) != 0)
      return strstr(now, " applied") ? 0 : 1;
    if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
      return -ESRCH;
  }
  return -ETIMEDOUT;
}

int nlb_rundir_upgrade(const char *dir, uint64_t timeout_ms, char *message,
                       size_t size)
{
  char text[64], before[64], now[64], path[4096];
  struct timespec pause = {0, POLL_MS * 1000000L};
  long pid;
  int lock, rc = file_path(path, sizeof(path), dir, UPGRADE_LOCK);

  message[0] = '\0';
  if (rc < 0)
    return rc;
  /* One upgrade at a time: the lock goes with this process, however it
   * ends. The daemon refuses a second one too (an upgrade it began
   * otherwise, e.g. a signal sent by hand). */
  lock = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0)
    return -errno;
  if (flock(lock, LOCK_EX | LOCK_NB) < 0) {
    rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
    goto out_close_lock;
  }
  rc = read_file(dir, PID_FILE, text, sizeof(text));
  if (rc < 0)
    goto out_close_lock;
  pid = strtol(text, NULL, 10);
  rc = -EINVAL;
  if (pid <= 1)
    goto out_close_lock;
  file_state(dir, UPGRADE_FILE, before, sizeof(before), NULL, 0);
  if (kill((pid_t)pid, SIGUSR2) < 0) {
    rc = -errno;
    goto out_close_lock;
  }
  rc = -ETIMEDOUT;
  for (uint64_t waited = 0; waited < timeout_ms; waited += POLL_MS) {
    nanosleep(&pause, NULL);
    file_state(dir, UPGRADE_FILE, now, sizeof(now), message, size);
    if (now[0] && strcmp(now, before) != 0 && !strstr(now, " started")) {
      rc = strstr(now, " handed_over") ? 0 : 1;
      break;
    }
    /* The old one exits once it handed over, so its going is no answer
     * until the file says so; read it once more. */
    if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
      file_state(dir, UPGRADE_FILE, now, sizeof(now), message, size);
      if (now[0] && strcmp(now, before) != 0 && !strstr(now, " started"))
        rc = strstr(now, " handed_over") ? 0 : 1;
      else
        rc = -ESRCH;
      break;
    }
  }
out_close_lock:
  close(lock);
  return rc;
}
