/* The access log and the event log.
 *
 * Any thread may log. Each thread writes into its own ring of fixed-size
 * slots (allocated on its first log call) and never blocks: when the ring is
 * full the line is dropped and counted. One writer thread drains the rings
 * every 5 ms while lines come (backing off to 100 ms while none do) and
 * writes to the files, so a slow disk or a full pipe never stalls a
 * worker. */
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

/* Longest line kept; longer lines are cut. */
#define NLB_LOG_LINE_MAX 1000

/* Opens the destinations ("stderr", "off" or a path, appended to) and starts
 * the writer thread. Before this, and after nlb_log_stop, lines go straight
 * to stderr. Returns 0 or a negative errno from open(2). Control thread. */
int nlb_log_start(const char *access_dest, const char *events_dest,
                  enum nlb_log_level level);

/* Points the logs at new destinations (a reload). Returns 0 or a negative
 * errno, keeping the old destinations on failure. Control thread. */
int nlb_log_configure(const char *access_dest, const char *events_dest,
                      enum nlb_log_level level);

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

/* Queues one event line, "TIME LEVEL message". Any thread. */
void nlb_log_event(enum nlb_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Lines dropped because a ring was full, since start. */
uint64_t nlb_log_dropped(void);

/* Writes the current UTC time as RFC 3339 with milliseconds
 * ("2026-11-26T06:13:59.123Z") into buf (at least 32 bytes). */
void nlb_log_time(char *buf, size_t size);

#endif
