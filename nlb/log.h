/* The access log and the event log.
 *
 * Any thread may log. Each thread writes into its own ring of fixed-size
 * slots (allocated on its first log call) and never blocks: when the ring is
 * full the line is dropped and counted. One writer thread drains the rings
 * every 5 ms while lines come (backing off to 100 ms while none do) and
 * writes to the files, so a slow disk or a full pipe never stalls a
 * worker. Only that thread writes while it runs, and it writes whole lines,
 * so access and event lines sharing one file or stderr never mix within a
 * line.
 *
 * An event has a level, a short machine name ("target_state", "reload")
 * and fields (key and typed value). One call gives both renderings: the
 * text line "TIME LEVEL message", where the message is a template whose
 * "{key}" places are replaced by the fields' values, and the JSON line
 * {"time","level","event","message", then each field as a key}. Which one
 * is written is log.events_format. Under journald (or when asked), event
 * lines on stderr start with the syslog priority "<N>" so the journal
 * keeps their level. */
#ifndef NLB_LOG_H
#define NLB_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum nlb_log_level {
  NLB_LOG_DEBUG,
  NLB_LOG_INFO,
  NLB_LOG_WARN,
  NLB_LOG_ERROR,
};

/* Longest line kept; longer text lines are cut, longer JSON lines lose
 * their last fields (and say "truncated":true) so they still parse. */
#define NLB_LOG_LINE_MAX 1000

/* Where the logs go and how they look. Strings are copied. */
struct nlb_log_settings {
  const char *access; /* "stderr", "off" or a path, appended to */
  const char *events;
  enum nlb_log_level level; /* events below it are skipped */
  bool events_json;         /* JSON lines instead of text */
  /* "<N>" before each event line written to stderr: 1 on, 0 off, -1 when
   * stderr is the journal (systemd's JOURNAL_STREAM names it). */
  int stderr_priority;
};

/* Opens the destinations and starts the writer thread. Before this, and
 * after nlb_log_stop, lines go straight to stderr. Returns 0 or a negative
 * errno from open(2). Control thread. */
int nlb_log_start(const struct nlb_log_settings *settings);

/* Points the logs at new destinations and formats (a reload). Returns 0 or
 * a negative errno, keeping the old settings on failure. Control thread. */
int nlb_log_configure(const struct nlb_log_settings *settings);

/* Asks the writer to reopen its files (SIGUSR1, after logrotate moved
 * them). Async-signal-safe. */
void nlb_log_reopen(void);

/* Flushes every ring and stops the writer thread. Control thread. */
void nlb_log_stop(void);

/* False when the access log goes nowhere ("off"): callers skip
 * formatting lines. Any thread. */
bool nlb_log_access_enabled(void);

/* Queues one access-log line (without newline). Any thread. */
void nlb_log_access(const char *line, size_t len);

enum nlb_log_type {
  NLB_LOG_T_STR,
  NLB_LOG_T_INT,
  NLB_LOG_T_UINT,
  NLB_LOG_T_BOOL,
};

/* One field of an event. Keys are short snake_case names; a NULL string
 * value is written as null (text: "-"). */
struct nlb_log_field {
  const char *key;
  enum nlb_log_type type;
  union {
    const char *s;
    int64_t i;
    uint64_t u;
    bool b;
  } v;
};

#define NLB_LOG_STR(k, value)                                                  \
  {                                                                            \
    .key = (k), .type = NLB_LOG_T_STR, .v.s = (value)                          \
  }
#define NLB_LOG_INT(k, value)                                                  \
  {                                                                            \
    .key = (k), .type = NLB_LOG_T_INT, .v.i = (int64_t)(value)                 \
  }
#define NLB_LOG_UINT(k, value)                                                 \
  {                                                                            \
    .key = (k), .type = NLB_LOG_T_UINT, .v.u = (uint64_t)(value)               \
  }
#define NLB_LOG_BOOL(k, value)                                                 \
  {                                                                            \
    .key = (k), .type = NLB_LOG_T_BOOL, .v.b = (value)                         \
  }

/* Queues one event (see the top of this file). fields are borrowed for the
 * call. Any thread. */
void nlb_log_emit(enum nlb_log_level level, const char *event,
                  const char *message, const struct nlb_log_field *fields,
                  size_t n_fields);

/* The usual way to call nlb_log_emit, with the fields listed inline:
 *   NLB_LOG_EVENT(NLB_LOG_INFO, "listener_open",
 *                 "listener {lb}:{port} open on {address}",
 *                 NLB_LOG_STR("lb", name), NLB_LOG_UINT("port", port),
 *                 NLB_LOG_STR("address", where)); */
#define NLB_LOG_EVENT(level, event, message, ...)                              \
  nlb_log_emit((level), (event), (message),                                    \
               (const struct nlb_log_field[]){__VA_ARGS__},                    \
               sizeof((const struct nlb_log_field[]){__VA_ARGS__}) /           \
                   sizeof(struct nlb_log_field))

/* An event with no structure but its text: event "log", the formatted
 * text as message. For code that has not named its events yet; prefer
 * NLB_LOG_EVENT. Any thread. */
void nlb_log_event(enum nlb_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Renders an event into line (at most NLB_LOG_LINE_MAX bytes, no newline,
 * NUL-terminated; size must exceed NLB_LOG_LINE_MAX) as text or JSON, with
 * the time given. Returns the length. Pure: the unit tests use it. */
size_t nlb_log_render(char *line, size_t size, bool json, const char *when,
                      enum nlb_log_level level, const char *event,
                      const char *message, const struct nlb_log_field *fields,
                      size_t n_fields);

/* Lines dropped because a ring was full, since start. */
uint64_t nlb_log_dropped(void);

/* Writes the current UTC time as RFC 3339 with milliseconds
 * ("2026-11-26T06:13:59.123Z") into buf (at least 32 bytes). */
void nlb_log_time(char *buf, size_t size);

/* The syslog priority (3 error .. 7 debug) of a level. */
int nlb_log_priority(enum nlb_log_level level);

#endif
