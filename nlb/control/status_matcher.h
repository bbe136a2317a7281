/* HTTP status matchers for health checks: "200-399", "200,204", "200". */
#ifndef NLB_STATUS_MATCHER_H
#define NLB_STATUS_MATCHER_H

#include <stdbool.h>

#define NLB_STATUS_MATCHER_MAX_RANGES 16

struct nlb_status_matcher {
  unsigned n_ranges;
  struct {
    unsigned short low;
    unsigned short high;
  } ranges[NLB_STATUS_MATCHER_MAX_RANGES];
};

/* Parses a comma-separated list of codes or low-high ranges, each within
 * 100..599. Returns 0 or -EINVAL (bad syntax, low > high, out of range, more
 * than NLB_STATUS_MATCHER_MAX_RANGES items). */
int nlb_status_matcher_parse(const char *text, struct nlb_status_matcher *out);

/* True when code falls in one of the ranges. */
bool nlb_status_matcher_match(const struct nlb_status_matcher *matcher,
                              unsigned code);

#endif
