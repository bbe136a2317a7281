#include "nlb/common/histogram.h"

/* A connect to a target takes well under a millisecond on a host and up
 * to its connect_timeout (default 10 s) when it does not answer. */
const uint64_t nlb_connect_time_bounds_ms[NLB_HISTOGRAM_BOUNDS] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000};
/* Flows last from a refused instant to hours of an idle keep-alive. */
const uint64_t nlb_flow_duration_bounds_ms[NLB_HISTOGRAM_BOUNDS] = {
    5,     25,    100,    500,    1000,    5000,
    15000, 60000, 300000, 900000, 3600000, 14400000};
