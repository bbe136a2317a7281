#include "nlb/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RING_SLOTS 4096
/* The writer drains every 5 ms while lines come, and backs off to 100 ms
 * while none do, so an idle log costs the workers' cores no wakeups. */
#define DRAIN_INTERVAL_MIN_NS 5000000L
#define DRAIN_INTERVAL_MAX_NS 100000000L

enum stream {
  STREAM_ACCESS,
  STREAM_EVENTS,
};

struct slot {
  uint16_t len;
  uint8_t stream;
  char text[NLB_LOG_LINE_MAX + 1]; /* room for the newline */
};

/* Single producer (its thread), single consumer (the writer). */
struct ring {
  atomic_uint_fast64_t head; /* next slot the producer fills */
  atomic_uint_fast64_t tail; /* next slot the writer drains */
  struct ring *next_ring;
  struct slot slots[RING_SLOTS];
};

struct destination {
  char *spec; /* "stderr", "off" or a path */
  int fd;     /* -1 when off */
};

static struct {
  pthread_mutex_t lock; /* guards rings list and destinations */
  struct ring *rings;
  struct destination dest[2];
  atomic_int level;
  atomic_bool running;
  atomic_bool reopen_wanted;
  atomic_bool access_off;
  atomic_uint_fast64_t dropped;
  pthread_t writer;
} logger = {.lock = PTHREAD_MUTEX_INITIALIZER,
            .dest = {{NULL, 2}, {NULL, 2}},
            .level = NLB_LOG_INFO};

static _Thread_local struct ring *thread_ring;

static int open_destination(const char *spec, int *fd)
{
  if (strcmp(spec, "off") == 0) {
    *fd = -1;
    return 0;
  }
  if (strcmp(spec, "stderr") == 0) {
    *fd = STDERR_FILENO;
    return 0;
  }
  *fd = open(spec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  return *fd < 0 ? -errno : 0;
}

static void close_destination(struct destination *d)
{
  if (d->fd > STDERR_FILENO)
    close(d->fd);
  free(d->spec);
  d->spec = NULL;
  d->fd = -1;
}

static void write_all(int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return; /* nowhere to report a failing log; drop the line */
    }
    buf += n;
    len -= (size_t)n;
  }
}

/* Batches lines per destination so a busy ring costs few write(2) calls. */
struct batch {
  char buf[65536];
  size_t len;
};

static void batch_flush(struct batch *b, int fd)
{
  if (b->len && fd >= 0)
    write_all(fd, b->buf, b->len);
  b->len = 0;
}

/* Returns the number of lines written. */
static size_t drain_rings(void)
{
  size_t lines = 0;
  static struct batch batches[2];

  pthread_mutex_lock(&logger.lock);
  for (struct ring *r = logger.rings; r; r = r->next_ring) {
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    lines += head - tail;
    for (; tail != head; tail++) {
      struct slot *s = &r->slots[tail % RING_SLOTS];
      struct batch *b = &batches[s->stream];
      if (b->len + s->len > sizeof(b->buf))
        batch_flush(b, logger.dest[s->stream].fd);
      memcpy(b->buf + b->len, s->text, s->len);
      b->len += s->len;
    }
    atomic_store_explicit(&r->tail, tail, memory_order_release);
  }
  for (int i = 0; i < 2; i++)
    batch_flush(&batches[i], logger.dest[i].fd);
  pthread_mutex_unlock(&logger.lock);
  return lines;
}

static void reopen_files(void)
{
  pthread_mutex_lock(&logger.lock);
  for (int i = 0; i < 2; i++) {
    struct destination *d = &logger.dest[i];
    int fd;
    if (!d->spec || d->fd <= STDERR_FILENO)
      continue;
    if (open_destination(d->spec, &fd) == 0) {
      close(d->fd);
      d->fd = fd;
    }
  }
  pthread_mutex_unlock(&logger.lock);
}

static void *writer_main(void *arg)
{
  long interval = DRAIN_INTERVAL_MIN_NS;
  while (atomic_load(&logger.running)) {
    if (atomic_exchange(&logger.reopen_wanted, false))
      reopen_files();
    if (drain_rings() > 0)
      interval = DRAIN_INTERVAL_MIN_NS;
    else if (interval < DRAIN_INTERVAL_MAX_NS / 2)
      interval *= 2;
    else
      interval = DRAIN_INTERVAL_MAX_NS;
    struct timespec pause = {0, interval};
    nanosleep(&pause, NULL);
  }
  drain_rings();
  return NULL;
}

static int set_destinations(const char *access_dest, const char *events_dest)
{
  int fds[2];
  int rc = open_destination(access_dest, &fds[0]);
  if (rc < 0)
    return rc;
  rc = open_destination(events_dest, &fds[1]);
  if (rc < 0) {
    if (fds[0] > STDERR_FILENO)
      close(fds[0]);
    return rc;
  }
  pthread_mutex_lock(&logger.lock);
  const char *specs[2] = {access_dest, events_dest};
  atomic_store(&logger.access_off, fds[0] < 0);
  for (int i = 0; i < 2; i++) {
    close_destination(&logger.dest[i]);
    logger.dest[i].spec = strdup(specs[i]);
    logger.dest[i].fd = fds[i];
  }
  pthread_mutex_unlock(&logger.lock);
  return 0;
}

int nlb_log_start(const char *access_dest, const char *events_dest,
                  enum nlb_log_level level)
{
  int rc = set_destinations(access_dest, events_dest);
  if (rc < 0)
    return rc;
  atomic_store(&logger.level, level);
  atomic_store(&logger.running, true);
  rc = pthread_create(&logger.writer, NULL, writer_main, NULL);
  if (rc != 0) {
    atomic_store(&logger.running, false);
    return -rc;
  }
  return 0;
}

int nlb_log_configure(const char *access_dest, const char *events_dest,
                      enum nlb_log_level level)
{
  drain_rings();
  int rc = set_destinations(access_dest, events_dest);
  if (rc == 0)
    atomic_store(&logger.level, level);
  return rc;
}

void nlb_log_reopen(void)
{
  atomic_store(&logger.reopen_wanted, true);
}

void nlb_log_stop(void)
{
  if (!atomic_exchange(&logger.running, false))
    return;
  pthread_join(logger.writer, NULL);
  pthread_mutex_lock(&logger.lock);
  for (int i = 0; i < 2; i++) {
    close_destination(&logger.dest[i]);
    logger.dest[i].fd = STDERR_FILENO;
  }
  pthread_mutex_unlock(&logger.lock);
}

uint64_t nlb_log_dropped(void)
{
  return atomic_load(&logger.dropped);
}

static struct ring *my_ring(void)
{
  if (thread_ring)
    return thread_ring;
  struct ring *r = calloc(1, sizeof(*r));
  if (!r)
    return NULL;
  pthread_mutex_lock(&logger.lock);
  r->next_ring = logger.rings;
  logger.rings = r;
  pthread_mutex_unlock(&logger.lock);
  thread_ring = r;
  return r;
}

static void enqueue(enum stream stream, const char *text, size_t len)
{
  if (len > NLB_LOG_LINE_MAX)
    len = NLB_LOG_LINE_MAX;
  if (!atomic_load_explicit(&logger.running, memory_order_relaxed)) {
    char line[NLB_LOG_LINE_MAX + 1];
    memcpy(line, text, len);
    line[len] = '\n';
    int fd = logger.dest[stream].fd;
    if (fd == -1 && !logger.dest[stream].spec)
      fd = STDERR_FILENO;
    if (fd >= 0)
      write_all(fd, line, len + 1);
    return;
  }
  struct ring *r = my_ring();
  if (!r) {
    atomic_fetch_add(&logger.dropped, 1);
    return;
  }
  uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
  if (head - tail >= RING_SLOTS) {
    atomic_fetch_add_explicit(&logger.dropped, 1, memory_order_relaxed);
    return;
  }
  struct slot *s = &r->slots[head % RING_SLOTS];
  memcpy(s->text, text, len);
  s->text[len] = '\n';
  s->len = (uint16_t)(len + 1);
  s->stream = (uint8_t)stream;
  atomic_store_explicit(&r->head, head + 1, memory_order_release);
}

bool nlb_log_access_enabled(void)
{
  return !atomic_load_explicit(&logger.access_off, memory_order_relaxed);
}

void nlb_log_access(const char *line, size_t len)
{
  enqueue(STREAM_ACCESS, line, len);
}

void nlb_log_time(char *buf, size_t size)
{
  struct timespec now;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           now.tv_nsec / 1000000);
}

void nlb_log_event(enum nlb_log_level level, const char *fmt, ...)
{
  static const char *const names[] = {"debug", "info", "warn", "error"};
  char line[NLB_LOG_LINE_MAX + 1];
  char when[32];
  va_list args;
  int len;

  if ((int)level < atomic_load_explicit(&logger.level, memory_order_relaxed))
    return;
  nlb_log_time(when, sizeof(when));
  len = snprintf(line, sizeof(line), "%s %s ", when, names[level & 3]);
  va_start(args, fmt);
  int more = vsnprintf(line + len, sizeof(line) - (size_t)len, fmt, args);
  va_end(args);
  if (more > 0)
    len += more;
  if (len > NLB_LOG_LINE_MAX)
    len = NLB_LOG_LINE_MAX;
  enqueue(STREAM_EVENTS, line, (size_t)len);
}
