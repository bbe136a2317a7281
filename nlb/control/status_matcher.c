#include "nlb/control/status_matcher.h"

#include <errno.h>
#include <stdlib.h>

static int parse_code(const char **cursor, unsigned short *code)
{
  const char *p = *cursor;
  unsigned value = 0;
  int digits = 0;

  while (*p >= '0' && *p <= '9' && digits < 4) {
    value = value * 10 + (unsigned)(*p - '0');
    p++;
    digits++;
  }
  if (digits != 3 || value < 100 || value > 599)
    return -EINVAL;
  *code = (unsigned short)value;
  *cursor = p;
  return 0;
}

int nlb_status_matcher_parse(const char *text, struct nlb_status_matcher *out)
{
  const char *p = text;

  out->n_ranges = 0;
  for (;;) {
    unsigned short low, high;
    while (*p == ' ')
      p++;
    if (parse_code(&p, &low) < 0)
      return -EINVAL;
    high = low;
    if (*p == '-') {
      p++;
      if (parse_code(&p, &high) < 0 || high < low)
        return -EINVAL;
    }
    if (out->n_ranges == NLB_STATUS_MATCHER_MAX_RANGES)
      return -EINVAL;
    out->ranges[out->n_ranges].low = low;
    out->ranges[out->n_ranges].high = high;
    out->n_ranges++;
    while (*p == ' ')
      p++;
    if (*p == '\0')
      return 0;
    if (*p != ',')
      return -EINVAL;
    p++;
  }
}

bool nlb_status_matcher_match(const struct nlb_status_matcher *matcher,
                              unsigned code)
{
  for (unsigned i = 0; i < matcher->n_ranges; i++)
    if (code >= matcher->ranges[i].low && code <= matcher->ranges[i].high)
      return true;
  return false;
}
