/* Flow kinds: how the flows of one listener protocol run on a worker. The
 * worker accepts, then hands the client socket to its route's kind; from
 * there the kind owns the flow to its access-log record. Today the TCP
 * relay (flow.c); TLS termination, TLS passthrough and UDP are further rows
 * of nlb_flow_kinds, sharing target choice, health, draining, PROXY v2,
 * access logs and metrics. Adding a kind is a new file and a row. */
#ifndef NLB_FLOW_KIND_H
#define NLB_FLOW_KIND_H

#include <stdbool.h>
#include <stdint.h>

#include "nlb/common/addr.h"
#include "nlb/dataplane/flow.h"
#include "nlb/list.h"

struct nlb_flow_kind {
  /* The listener's `protocol` setting that selects it. */
  const char *name;
  /* Takes a just-accepted client socket: see nlb_flow_start for the
   * ownership of each argument. Worker thread. */
  void (*start)(struct nlb_worker *worker, struct nlb_route *route,
                struct nlb_group_route *group, int client_fd,
                const union nlb_sockaddr *client_addr,
                struct nlb_list *route_flows, bool refuse);
  /* Checks one of the kind's flows against its timeouts at now_ms (the
   * worker loop's clock); may end it. Worker thread. */
  void (*check_timeouts)(struct nlb_flow *flow, uint64_t now_ms);
  /* Ends one of the kind's flows at once with the given cause, resetting
   * what it holds. Worker thread. */
  void (*abort)(struct nlb_flow *flow, enum nlb_flow_end end);
};

/* The kind a listener's protocol names; NULL for a name no row has. The
 * first row ("tcp") is the default. Any thread. */
const struct nlb_flow_kind *nlb_flow_kind_find(const char *name);

/* The TCP relay (flow.c): splice or copy, half-close and resets carried
 * across. */
extern const struct nlb_flow_kind nlb_flow_kind_tcp;

#endif
