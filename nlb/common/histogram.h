/* Latency histograms that workers fill without a lock or an allocation:
 * an observation is one relaxed atomic add to its bucket and one to the
 * sum. Buckets are counted apart (not cumulatively); the reader (metrics)
 * adds them up. Times are in milliseconds, the flows' clock. */
#ifndef NLB_HISTOGRAM_H
#define NLB_HISTOGRAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bounds per histogram; one more bucket holds what is above all. */
#define NLB_HISTOGRAM_BOUNDS 12

struct nlb_histogram {
  atomic_uint_fast64_t count[NLB_HISTOGRAM_BOUNDS + 1];
  atomic_uint_fast64_t sum_ms;
};

/* Bucket bounds (ms, ascending) of the two histograms nlbd keeps: the
 * time a target took to accept a connection, and a flow's duration. */
extern const uint64_t nlb_connect_time_bounds_ms[NLB_HISTOGRAM_BOUNDS];
extern const uint64_t nlb_flow_duration_bounds_ms[NLB_HISTOGRAM_BOUNDS];

/* Counts one observation of ms. Any thread. */
static inline void nlb_histogram_observe(struct nlb_histogram *h,
                                         const uint64_t *bounds_ms, uint64_t ms)
{
  size_t i = 0;
  while (i < NLB_HISTOGRAM_BOUNDS && ms > bounds_ms[i])
    i++;
  atomic_fetch_add_explicit(&h->count[i], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum_ms, ms, memory_order_relaxed);
}

#endif
