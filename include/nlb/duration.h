/* Durations in the config: a number of seconds, or a string with a unit. */
#ifndef NLB_DURATION_H
#define NLB_DURATION_H

#include <stdint.h>

/* Parses "250ms", "10s", "5m", "1h", "2d" or a bare number of seconds
 * ("30", "0.5") into milliseconds. Returns 0, or -EINVAL for anything else
 * (negative, empty, unknown unit, trailing junk) and -ERANGE past ~292
 * million years. */
int nlb_duration_parse(const char *text, uint64_t *ms);

#endif
