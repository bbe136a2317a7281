/* Between the TCP relay (flow.c) and its sockmap path (flow_sockmap.c).
 * Worker thread, like the flows. */
#ifndef NLB_FLOW_INT_H
#define NLB_FLOW_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "nlb/dataplane/flow.h"

/* flow.c: ends the flow (access log, counters, sockets closed, with a
 * reset unless end is orderly); gives back what a direction holds. */
void nlb_flow_finish(struct nlb_flow *flow, enum nlb_flow_end end);
void nlb_flow_release_direction(struct nlb_flow *flow,
                                struct nlb_direction *dir);

/* flow_sockmap.c. Puts an established flow whose directions hold nothing
 * into the sockmap (flow->kernel then); where the map refuses it the flow
 * stays on splice (counted: sockmap.h). */
void nlb_flow_kernel_enter(struct nlb_flow *flow);
/* A kernel flow's socket (the client's, or the target's) had an event:
 * passes a FIN on once the bytes before it are through, or ends the flow
 * on a reset. */
void nlb_flow_kernel_ready(struct nlb_flow *flow, bool client);
/* From the flow's timeout check: a FIN held back is tried again, and the
 * flow's last activity is brought up to the program's stamp. */
void nlb_flow_kernel_check(struct nlb_flow *flow, uint64_t now_ms);
/* At the flow's end: adds what the program moved to its byte counts and
 * forgets its counters (the sockets leave the map when closed). */
void nlb_flow_kernel_count_bytes(struct nlb_flow *flow);

#endif
