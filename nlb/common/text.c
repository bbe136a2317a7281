#include "nlb/common/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void nlb_text_printf(struct nlb_text *t, const char *fmt, ...)
{
  va_list args;
  int n;

  if (t->failed)
    return;
  for (;;) {
    va_start(args, fmt);
    n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->cap - t->len, fmt, args);
    va_end(args);
    if (n < 0) {
      t->failed = true;
      return;
    }
    if ((size_t)n < t->cap - t->len) {
      t->len += (size_t)n;
      return;
    }
    /* Doubling keeps appends amortized O(1) over a long text. */
    size_t cap = (t->cap + (size_t)n + 1) * 2;
    char *grown = realloc(t->buf, cap);
    if (!grown) {
      t->failed = true;
      return;
    }
    t->buf = grown;
    t->cap = cap;
  }
}

char *nlb_text_take(struct nlb_text *t)
{
  char *text = t->buf;

  if (t->failed || !text) {
    free(text);
    text = NULL;
  }
  t->buf = NULL;
  t->len = t->cap = 0;
  return text;
}
