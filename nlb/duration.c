#include "nlb/duration.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
  if (errno == ERANGE && value != 0)
    return -ERANGE;
  if (errno || !isfinite(value) || value < 0)
    return -EINVAL;
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    if (strcmp(end, units[i].suffix) == 0) {
      double total = value * units[i].ms;
      if (total > 9.2e18)
        return -ERANGE;
      *ms = (uint64_t)llround(total);
      return 0;
    }
  }
  return -EINVAL;
}
