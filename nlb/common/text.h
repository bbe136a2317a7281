/* A growable text buffer for answers built piece by piece (the Prometheus
 * text of /metrics and of the DNS responders). A failed step (out of
 * memory) marks the buffer failed and makes every later step a no-op, so
 * callers write their whole text and check once at the end.
 *
 * The buffer owns buf until nlb_text_take hands it over. */
#ifndef NLB_TEXT_H
#define NLB_TEXT_H

#include <stdbool.h>
#include <stddef.h>

struct nlb_text {
  char *buf; /* NUL-terminated once something was written */
  size_t len;
  size_t cap;
  bool failed;
};

/* Appends printf-formatted text, growing the buffer as needed. */
void nlb_text_printf(struct nlb_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The text, now the caller's to free, or NULL when a step failed or
 * nothing was written (the buffer's memory is then freed). */
char *nlb_text_take(struct nlb_text *t);

#endif
