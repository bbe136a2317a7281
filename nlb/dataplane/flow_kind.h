/* Flow kinds: how the flows of one listener protocol run on a worker. For
 * a TCP kind the worker accepts, then hands the client socket to its
 * route's kind (start); a kind whose listening socket does not accept (UDP)
 * reads that socket itself (on_listener_ready). From there the kind owns
 * the flow to its access-log record. Rows: the TCP relay (flow.c), UDP
 * (udp.c), TLS termination (tls_flow.c) and TLS passthrough
 * (passthrough.c, on the relay). They share
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

/* TLS termination (tls_flow.c): the handshake on the worker, then records
 * read and written through OpenSSL with the flow's pooled buffers, to a
 * plain or a TLS (re-encrypting) target. */
extern const struct nlb_flow_kind nlb_flow_kind_tls;

/* TLS passthrough (passthrough.c): reads the ClientHello, picks the target
 * group by its server name, then relays as the TCP relay does. */
extern const struct nlb_flow_kind nlb_flow_kind_tls_passthrough;

/* What the TCP relay (flow.c) lends the stream kinds built on it. Worker
 * thread. */

/* The common start of a stream flow: a flow from the worker's pool for
 * client_fd, holding references on route and group, on route_flows and the
 * worker's connecting list, counted, its sockets' callbacks set. Ended at
 * once (and NULL returned) when refused (end=limit), not allowed
 * (source_denied) or out of memory. */
struct nlb_flow *nlb_flow_begin(struct nlb_worker *worker,
                                struct nlb_route *route,
                                struct nlb_group_route *group, int client_fd,
                                const union nlb_sockaddr *client_addr,
                                struct nlb_list *route_flows, bool refuse,
                                void (*on_client)(struct nlb_io *, uint32_t),
                                void (*on_target)(struct nlb_io *, uint32_t));

/* Picks the next untried target and starts a non-blocking connect to it
 * (target_io.fd set, not watched yet): 0; or the flow has ended
 * (connect_failed, limit) and a negative errno is returned. */
int nlb_flow_connect(struct nlb_flow *flow);

/* A connect (or the first exchange on it) failed: counted against the
 * target, its socket closed. true: another target may be tried
 * (nlb_flow_connect); false: the flow has ended (connect_failed). */
bool nlb_flow_connect_failed(struct nlb_flow *flow);

/* The target connection is up: the flow is established (counters, connect
 * time, the idle list). */
void nlb_flow_connected(struct nlb_flow *flow);

/* Ends the flow (access log, counters, sockets closed with a reset unless
 * end is orderly, TLS connections freed); its memory goes back to the
 * worker's pool after the round. */
void nlb_flow_finish(struct nlb_flow *flow, enum nlb_flow_end end);

/* A kind that reads the client first (TLS passthrough) hands its flow to
 * the relay: it reads into up.buffer at most NLB_BUFFER_SIZE -
 * NLB_FLOW_PROXY_ROOM bytes, then calls nlb_flow_relay, which takes group
 * (a group route of the worker's snapshot; the flow takes its own
 * reference and drops the one on the group it had), sets the relay's
 * callbacks, picks and connects a target, sends the PROXY v2 header if
 * the group asks (with the flow's sni as PP2_TYPE_AUTHORITY), then what
 * up.buffer holds, untouched, and relays from there. */
void nlb_flow_relay(struct nlb_flow *flow, struct nlb_group_route *group);

/* The TCP relay's timeouts (connect, idle, draining), for such a kind once
 * it handed its flow over. */
void nlb_flow_relay_check_timeouts(struct nlb_flow *flow, uint64_t now_ms);

#endif
