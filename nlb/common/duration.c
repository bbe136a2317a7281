#include "nlb/common/duration.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The most milliseconds a parsed string may hold: below INT64_MAX, so that
 * llround's result always fits. */
#define PARSE_MAX_MS 9.2e18

int nlb_duration_parse(const char *text, uint64_t *ms)
{
  static const struct {
    const char *suffix;
    double ms;
  } units[] = {{"ms", 1},     {"s", 1e3},     {"m", 60e3},
               {"h", 3600e3}, {"d", 86400e3}, {"", 1e3}};
  const char *number_end;
  char *end;
  double value;

  if (!text || (*text < '0' || *text > '9'))
    return -EINVAL;
  /* Plain decimals only: strtod alone would also take "0x10" and "1e3". */
  number_end = text;
  while (*number_end >= '0' && *number_end <= '9')
    number_end++;
  if (*number_end == '.') {
    number_end++;
    if (*number_end < '0' || *number_end > '9')
      return -EINVAL;
    while (*number_end >= '0' && *number_end <= '9')
      number_end++;
  }
  errno = 0;
  value = strtod(text, &end);
  if (end != number_end)
    return -EINVAL;
  /* ERANGE is also an underflow ("0.000…1"): a tiny duration, rounded. */
  if (errno == ERANGE && isinf(value))
    return -ERANGE;
  if (!isfinite(value) || !(value >= 0))
    return -EINVAL;
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    if (strcmp(end, units[i].suffix) == 0) {
      double total = value * units[i].ms;
      if (!(total <= PARSE_MAX_MS))
        return -ERANGE;
      *ms = (uint64_t)llround(total);
      return 0;
    }
  }
  return -EINVAL;
}

int nlb_duration_from_seconds(long long seconds, uint64_t max_ms, uint64_t *ms)
{
  if (seconds < 0)
    return -EINVAL;
  if ((unsigned long long)seconds > max_ms / 1000)
    return -ERANGE;
  *ms = (uint64_t)seconds * 1000;
  return 0;
}

int nlb_duration_from_float_seconds(double seconds, uint64_t max_ms,
                                    uint64_t *ms)
{
  double total;

  if (isnan(seconds) || seconds < 0)
    return -EINVAL;
  /* Compared as a double first: converting a value out of the integer's
   * range is undefined behaviour, not a wrap. */
  total = seconds * 1000;
  if (!(total <= (double)max_ms + 0.5))
    return -ERANGE;
  total = round(total);
  if (total > (double)max_ms)
    return -ERANGE;
  *ms = (uint64_t)total;
  return 0;
}
