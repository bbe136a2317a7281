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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RING_SLOTS 4096
/* The writer drains every 5 ms while lines come, and backs off to 100 ms
 * while none do, so an idle log costs the workers' cores no wakeups. */
#define DRAIN_INTERVAL_MIN_NS 5000000L
#define DRAIN_INTERVAL_MAX_NS 100000000L
/* Room for "<7>". */
#define PRIORITY_MAX 3

enum stream {
  STREAM_ACCESS,
  STREAM_EVENTS,
};

struct slot {
  uint16_t len;
  uint8_t stream;
  uint8_t level;                   /* of an event line, for the "<N>" prefix */
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
  atomic_bool events_json;
  bool stderr_priority; /* "<N>" before event lines on stderr (lock) */
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
      int fd = logger.dest[s->stream].fd;
      if (b->len + s->len + PRIORITY_MAX > sizeof(b->buf))
        batch_flush(b, fd);
      if (s->stream == STREAM_EVENTS && fd == STDERR_FILENO &&
          logger.stderr_priority)
        b->len += (size_t)snprintf(b->buf + b->len, PRIORITY_MAX + 1, "<%d>",
                                   nlb_log_priority(s->level));
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

/* systemd sets JOURNAL_STREAM to "DEVICE:INODE" of the journal's socket on
 * the service's stdout/stderr; a child that inherited the variable but not
 * the descriptor must not take it for the journal. */
static bool stderr_is_journal(void)
{
  const char *stream = getenv("JOURNAL_STREAM");
  unsigned long long dev, ino;
  struct stat st;

  if (!stream || sscanf(stream, "%llu:%llu", &dev, &ino) != 2 ||
      fstat(STDERR_FILENO, &st) < 0)
    return false;
  return (unsigned long long)st.st_dev == dev &&
         (unsigned long long)st.st_ino == ino;
}

static void set_format(const struct nlb_log_settings *settings)
{
  bool priority = settings->stderr_priority < 0 ? stderr_is_journal()
                                                : settings->stderr_priority;
  pthread_mutex_lock(&logger.lock);
  logger.stderr_priority = priority;
  pthread_mutex_unlock(&logger.lock);
  atomic_store(&logger.events_json, settings->events_json);
  atomic_store(&logger.level, settings->level);
}

int nlb_log_start(const struct nlb_log_settings *settings)
{
  int rc = set_destinations(settings->access, settings->events);
  if (rc < 0)
    return rc;
  set_format(settings);
  atomic_store(&logger.running, true);
  rc = pthread_create(&logger.writer, NULL, writer_main, NULL);
  if (rc != 0) {
    atomic_store(&logger.running, false);
    return -rc;
  }
  return 0;
}

int nlb_log_configure(const struct nlb_log_settings *settings)
{
  drain_rings();
  int rc = set_destinations(settings->access, settings->events);
  if (rc == 0)
    set_format(settings);
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

static void enqueue(enum stream stream, enum nlb_log_level level,
                    const char *text, size_t len)
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
  s->level = (uint8_t)level;
  atomic_store_explicit(&r->head, head + 1, memory_order_release);
}

bool nlb_log_access_enabled(void)
{
  return !atomic_load_explicit(&logger.access_off, memory_order_relaxed);
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

int nlb_log_priority(enum nlb_log_level level)
{
  static const int priorities[] = {7, 6, 4, 3}; /* LOG_DEBUG .. LOG_ERR */
  return priorities[level & 3];
}

/* A bounded line being written. Writes past limit are refused whole
 * (full is set), so a caller can roll back to a length it saved. */
struct out {
  char *buf;
  size_t len;
  size_t limit;
  bool full;
  bool cut;    /* a string was cut to fit */
  bool escape; /* a text line: control bytes escaped (out_text) */
};

static void out_bytes(struct out *o, const char *bytes, size_t n)
{
  if (o->full || o->len + n > o->limit) {
    o->full = true;
    return;
  }
  memcpy(o->buf + o->len, bytes, n);
  o->len += n;
}

static void out_str(struct out *o, const char *text)
{
  out_bytes(o, text, strlen(text));
}

static bool is_control(unsigned char c)
{
  return c < 0x20 || c == 0x7f;
}

/* Plain text, cut where the line ends. In a text line each control byte
 * is written \n, \t or \xHH, as the config loader writes them (and never
 * cut in half): a value holding a newline must not end the line and start
 * one that looks like another event. */
static void out_text(struct out *o, const char *text, size_t n)
{
  while (n > 0 && !o->full) {
    size_t plain = o->escape ? 0 : n, room = o->limit - o->len;
    char escape[8];

    while (plain < n && !is_control((unsigned char)text[plain]))
      plain++;
    if (plain > room) {
      plain = room;
      o->full = true;
    }
    memcpy(o->buf + o->len, text, plain);
    o->len += plain;
    text += plain;
    n -= plain;
    if (n == 0 || o->full)
      break;
    if (*text == '\n' || *text == '\t')
      snprintf(escape, sizeof(escape), "\\%c", *text == '\n' ? 'n' : 't');
    else
      snprintf(escape, sizeof(escape), "\\x%02x", (unsigned char)*text);
    out_bytes(o, escape, strlen(escape));
    text++;
    n--;
  }
}

void nlb_log_access(const char *line, size_t len)
{
  char escaped[NLB_LOG_LINE_MAX + 1];
  struct out o = {escaped, 0, NLB_LOG_LINE_MAX, false, false, true};

  /* Its writers escape what they copy in; a control byte that still comes
   * is escaped as in an event line, so the line stays one line. */
  for (size_t i = 0; i < len; i++)
    if (is_control((unsigned char)line[i])) {
      out_text(&o, line, len);
      enqueue(STREAM_ACCESS, NLB_LOG_INFO, escaped, o.len);
      return;
    }
  enqueue(STREAM_ACCESS, NLB_LOG_INFO, line, len);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0. */
static size_t utf8_length(const unsigned char *s)
{
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf;

  if (s[0] >= 0xc2 && s[0] <= 0xdf)
    n = 2;
  else if (s[0] >= 0xe0 && s[0] <= 0xef)
    n = 3;
  else if (s[0] >= 0xf0 && s[0] <= 0xf4)
    n = 4;
  else
    return 0;
  /* No overlong forms, no surrogates, nothing past U+10FFFF. */
  if (s[0] == 0xe0)
    lo = 0xa0;
  else if (s[0] == 0xed)
    hi = 0x9f;
  else if (s[0] == 0xf0)
    lo = 0x90;
  else if (s[0] == 0xf4)
    hi = 0x8f;
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return n;
}

/* A JSON string. Text that does not fit is cut between characters (never
 * inside an escape or a UTF-8 sequence) and the string still closes;
 * bytes that are not UTF-8 become U+FFFD. */
static void out_json_string(struct out *o, const char *text)
{
  const unsigned char *c = (const unsigned char *)(text ? text : "");
  size_t limit = o->limit;

  if (o->full || o->len + 2 > o->limit) {
    o->full = true;
    return;
  }
  o->limit -= 1; /* the closing quote always fits */
  out_bytes(o, "\"", 1);
  while (*c && !o->full) {
    char escape[8];
    size_t n = utf8_length(c);
    if (*c == '"' || *c == '\\') {
      escape[0] = '\\';
      escape[1] = (char)*c;
      out_bytes(o, escape, 2);
      n = 1;
    } else if (*c < 0x20) {
      snprintf(escape, sizeof(escape), "\\u%04x", *c);
      out_bytes(o,
                *c == '\n'   ? "\\n"
                : *c == '\t' ? "\\t"
                             : escape,
                *c == '\n' || *c == '\t' ? 2 : 6);
      n = 1;
    } else if (*c < 0x80) {
      out_bytes(o, (const char *)c, 1);
      n = 1;
    } else if (n > 0) {
      out_bytes(o, (const char *)c, n);
    } else {
      out_bytes(o, "\\ufffd", 6);
      n = 1;
    }
    c += n;
  }
  if (o->full)
    o->cut = true;
  o->full = false;
  o->limit = limit;
  out_bytes(o, "\"", 1);
}

/* A field's value as text: the string itself, or number written in buf. */
static const char *value_text(const struct nlb_log_field *f, char *buf,
                              size_t size)
{
  switch (f->type) {
  case NLB_LOG_T_STR:
    return f->v.s ? f->v.s : "-";
  case NLB_LOG_T_INT:
    snprintf(buf, size, "%lld", (long long)f->v.i);
    break;
  case NLB_LOG_T_UINT:
    snprintf(buf, size, "%llu", (unsigned long long)f->v.u);
    break;
  case NLB_LOG_T_BOOL:
    snprintf(buf, size, "%s", f->v.b ? "true" : "false");
    break;
  }
  return buf;
}

static void out_value_json(struct out *o, const struct nlb_log_field *f)
{
  char number[24];
  if (f->type == NLB_LOG_T_STR && !f->v.s)
    out_str(o, "null");
  else if (f->type == NLB_LOG_T_STR)
    out_json_string(o, f->v.s);
  else
    out_str(o, value_text(f, number, sizeof(number)));
}

static const struct nlb_log_field *
find_field(const struct nlb_log_field *fields, size_t n, const char *key,
           size_t key_len)
{
  for (size_t i = 0; i < n; i++)
    if (strncmp(fields[i].key, key, key_len) == 0 &&
        fields[i].key[key_len] == '\0')
      return &fields[i];
  return NULL;
}

/* The message with each "{key}" replaced by that field's value; a "{"
 * that names no field stays as written. */
static void out_message(struct out *o, const char *message,
                        const struct nlb_log_field *fields, size_t n)
{
  const char *p = message;
  while (*p && !o->full) {
    const char *open = strchr(p, '{');
    const char *close = open ? strchr(open, '}') : NULL;
    const struct nlb_log_field *f =
        close ? find_field(fields, n, open + 1, (size_t)(close - open - 1))
              : NULL;
    char number[24];
    const char *value;
    if (!f) {
      size_t upto = open ? (size_t)(open - p) + 1 : strlen(p);
      out_text(o, p, upto);
      p += upto;
      continue;
    }
    out_text(o, p, (size_t)(open - p));
    value = value_text(f, number, sizeof(number));
    out_text(o, value, strlen(value));
    p = close + 1;
  }
}

static const char *level_name(enum nlb_log_level level)
{
  static const char *const names[] = {"debug", "info", "warn", "error"};
  return names[level & 3];
}

static size_t render_text(struct out *o, const char *when,
                          enum nlb_log_level level, const char *message,
                          const struct nlb_log_field *fields, size_t n)
{
  out_text(o, when, strlen(when));
  out_text(o, " ", 1);
  out_text(o, level_name(level), strlen(level_name(level)));
  out_text(o, " ", 1);
  out_message(o, message, fields, n);
  /* A cut line keeps what fitted. */
  return o->len;
}

/* Fields come before the message in the budget: when a line is too long
 * the message is cut first, then the last fields go (and the line says
 * "truncated":true), so it always parses. */
static size_t render_json(struct out *o, const char *when,
                          enum nlb_log_level level, const char *event,
                          const char *message,
                          const struct nlb_log_field *fields, size_t n)
{
  static const char truncated[] = ",\"truncated\":true}";
  static const char message_key[] = ",\"message\":";
  char text[NLB_LOG_LINE_MAX + 1], rest[NLB_LOG_LINE_MAX + 1];
  struct out msg = {text, 0, NLB_LOG_LINE_MAX, false, false, false};
  struct out f = {rest, 0, 0, false, false, false};
  bool dropped = false;

  out_str(o, "{\"time\":");
  out_json_string(o, when);
  out_str(o, ",\"level\":");
  out_json_string(o, level_name(level));
  out_str(o, ",\"event\":");
  out_json_string(o, event);
  /* Room for the fields: all but the message's key, an empty message and
   * the end. */
  f.limit = o->limit - o->len - (sizeof(message_key) - 1) - 2 -
            (sizeof(truncated) - 1);
  for (size_t i = 0; i < n && !dropped; i++) {
    size_t before = f.len;
    out_str(&f, ",");
    out_json_string(&f, fields[i].key);
    out_str(&f, ":");
    out_value_json(&f, &fields[i]);
    if (f.full || f.cut) {
      f.len = before;
      dropped = true;
    }
  }
  out_message(&msg, message, fields, n);
  text[msg.len] = '\0';
  o->limit -= f.len + (dropped ? sizeof(truncated) - 1 : 1);
  out_str(o, message_key);
  out_json_string(o, text);
  o->limit += f.len + (dropped ? sizeof(truncated) - 1 : 1);
  out_bytes(o, rest, f.len);
  out_str(o, dropped ? truncated : "}");
  return o->len;
}

size_t nlb_log_render(char *line, size_t size, bool json, const char *when,
                      enum nlb_log_level level, const char *event,
                      const char *message, const struct nlb_log_field *fields,
                      size_t n_fields)
{
  size_t max = size - 1 < NLB_LOG_LINE_MAX ? size - 1 : NLB_LOG_LINE_MAX;
  struct out o = {line, 0, max, false, false, !json};
  size_t len =
      json ? render_json(&o, when, level, event, message, fields, n_fields)
           : render_text(&o, when, level, message, fields, n_fields);
  line[len] = '\0';
  return len;
}

void nlb_log_emit(enum nlb_log_level level, const char *event,
                  const char *message, const struct nlb_log_field *fields,
                  size_t n_fields)
{
  char line[NLB_LOG_LINE_MAX + 1];
  char when[32];
  size_t len;

  if ((int)level < atomic_load_explicit(&logger.level, memory_order_relaxed))
    return;
  nlb_log_time(when, sizeof(when));
  len = nlb_log_render(
      line, sizeof(line),
      atomic_load_explicit(&logger.events_json, memory_order_relaxed), when,
      level, event, message, fields, n_fields);
  enqueue(STREAM_EVENTS, level, line, len);
}

void nlb_log_event(enum nlb_log_level level, const char *fmt, ...)
{
  char text[NLB_LOG_LINE_MAX + 1];
  va_list args;

  if ((int)level < atomic_load_explicit(&logger.level, memory_order_relaxed))
    return;
  va_start(args, fmt);
  vsnprintf(text, sizeof(text), fmt, args);
  va_end(args);
  /* No field: braces in the text stay as they are. */
  nlb_log_emit(level, "log", text, NULL, 0);
}
