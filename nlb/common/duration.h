/* Durations in the config: a number of seconds (an integer or a decimal, as
 * libconfig reads it), or a string with a unit. Every form is checked
 * against its range before anything is converted or multiplied, so that no
 * value can wrap or overflow into a small one. Pure functions, any thread. */
#ifndef NLB_DURATION_H
#define NLB_DURATION_H

#include <stdint.h>

/* Parses "250ms", "10s", "5m", "1h", "2d" or a bare number of seconds
 * ("30", "0.5") into milliseconds, rounded to the nearest. Returns 0, or
 * -EINVAL for anything else (negative, empty, unknown unit, trailing junk)
 * and -ERANGE past ~292 million years. *ms is untouched on error. */
int nlb_duration_parse(const char *text, uint64_t *ms);

/* A whole number of seconds into milliseconds, at most max_ms. Returns 0,
 * -EINVAL for a negative number and -ERANGE above max_ms (checked before
 * the multiply). *ms is untouched on error. */
int nlb_duration_from_seconds(long long seconds, uint64_t max_ms, uint64_t *ms);

/* A decimal number of seconds into milliseconds, rounded to the nearest, at
 * most max_ms (which must not exceed 2^53, where doubles stop counting
 * every millisecond). Returns 0, -EINVAL for a negative number or a NaN and
 * -ERANGE above max_ms, infinity included (checked before the conversion,
 * whose overflow would be undefined). *ms is untouched on error. */
int nlb_duration_from_float_seconds(double seconds, uint64_t max_ms,
                                    uint64_t *ms);

#endif
