#include "nlb/capacity.h"

static uint64_t at_most(uint64_t a, uint64_t b)
{
  return a < b ? a : b;
}

void nlb_capacity_compute(const struct nlb_capacity_input *in,
                          struct nlb_capacity *out)
{
  /* Under a small limit the API's, the probes' and DNS TCP's shares
   * shrink with it (at most a sixteenth each), or they would leave no room
   * for flows. */
  uint64_t share = in->fd_limit / 16;
  uint64_t probes = at_most(at_most(in->targets, NLB_CAPACITY_PROBES), share);
  uint64_t api = at_most(in->api_connections, share);
  uint64_t left;

  out->dns_connections = at_most(in->dns_connections, share);
  out->reserve = NLB_CAPACITY_BASE +
                 (uint64_t)in->workers * NLB_CAPACITY_PER_WORKER +
                 in->listeners + probes + api + 2 * in->dns_networks +
                 out->dns_connections;
  left = in->fd_limit > out->reserve ? in->fd_limit - out->reserve : 0;
  out->pipe_fds = left / NLB_CAPACITY_PIPE_SHARE;
  out->max_flows = (left - out->pipe_fds) / 2;
}
