/* Flow kinds: how the flows of one listener protocol run on a worker. For
 * a TCP kind the worker accepts, then hands the client socket to its
 * route's kind (start); a kind whose listening socket does not accept (UDP)
 * reads that socket itself (on_listener_ready). From there the kind owns
 * the flow to its access-log record. Rows: the TCP relay (flow.c), UDP
 * (udp.c) and TLS passthrough (passthrough.c, on the relay); TLS
 * termination is a row to come. They share
 * target choice, health, draining, PROXY v2, access logs and metrics. A
 * listener's protocol (nlb/common/protocol.h) names the kinds it runs, one
 * listening socket each (tcp_udp: both on one port). Adding a kind is a new
 * file, a row of flow_kinds.c and, for a new protocol name, a row of
 * protocol.c. */
#ifndef NLB_FLOW_KIND_H
#define NLB_FLOW_KIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nlb/common/addr.h"
#include "nlb/dataplane/flow.h"
#include "nlb/dataplane/listener.h"
#include "nlb/list.h"

struct nlb_flow_kind {
  /* Its name in a protocol's row (nlb/common/protocol.c). */
  const char *name;
  /* What its listening sockets are. */
  enum nlb_transport transport;
  /* false: one listening socket every worker watches (accept spreads the
   * flows); true: one socket per worker on the same address (SO_REUSEPORT),
   * each read only by its worker. */
  bool socket_per_worker;
  /* Takes a just-accepted client socket: see nlb_flow_start for the
   * ownership of each argument. NULL for a kind with on_listener_ready.
   * Worker thread. */
  void (*start)(struct nlb_worker *worker, struct nlb_route *route,
                struct nlb_group_route *group, int client_fd,
                const union nlb_sockaddr *client_addr,
                struct nlb_list *route_flows, bool refuse);
  /* Optional: reads the worker's listening socket fd of route route_id,
   * which epoll says is readable, instead of accept + start. The flows it
   * makes join route_flows; they answer through fd, so the worker aborts
   * them when it closes that socket (end=endpoint_closed, or shutdown).
   * Worker thread. */
  void (*on_listener_ready)(struct nlb_worker *worker, uint64_t route_id,
                            int fd, struct nlb_list *route_flows);
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

/* The i-th row (from 0), NULL past the last: for whoever must look at
 * every kind (a listener's sockets on one port). Any thread. */
const struct nlb_flow_kind *nlb_flow_kind_at(size_t i);

/* The TCP relay (flow.c): splice or copy, half-close and resets carried
 * across. */
extern const struct nlb_flow_kind nlb_flow_kind_tcp;

/* UDP (udp.c): flows by 5-tuple, datagrams in batches, answers from the
 * listener's address, ended by their idle timeout. */
extern const struct nlb_flow_kind nlb_flow_kind_udp;

/* TLS passthrough (passthrough.c): reads the ClientHello, picks the target
 * group by its server name, then relays as the TCP relay does. */
extern const struct nlb_flow_kind nlb_flow_kind_tls_passthrough;

#endif
