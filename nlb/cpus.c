#include "nlb/cpus.h"

#include <sched.h>
#include <unistd.h>

size_t nlb_cpus_allowed(int *cpus, size_t max)
{
  cpu_set_t set;
  size_t n = 0;

  if (sched_getaffinity(0, sizeof(set), &set) < 0) {
    /* No mask to read: every online CPU, numbered from 0. */
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    n = online > 0 ? (size_t)online : 1;
    for (size_t i = 0; i < n && i < max; i++)
      cpus[i] = (int)i;
    return n;
  }
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
    if (!CPU_ISSET(cpu, &set))
      continue;
    if (n < max)
      cpus[n] = cpu;
    n++;
  }
  return n > 0 ? n : 1;
}
