#ifndef NLB_CPUS_H
#define NLB_CPUS_H

#include <stddef.h>

/* The CPUs this process may run on (its affinity mask: taskset, a cgroup
 * cpuset), lowest first. Fills up to max ids into cpus (may be NULL with
 * max 0) and returns how many there are in all, at least 1. */
size_t nlb_cpus_allowed(int *cpus, size_t max);

#endif
