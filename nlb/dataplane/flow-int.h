/* The TCP relay's private parts, called by the relay (flow.c) and calling
 * nothing of it back: flow_end.c tells a flow's end; flow_sockmap.c is the
 * sockmap path, whose steps return the cause that ends the flow (the relay
 * then finishes it), or NLB_END_NONE. Worker thread, like the flows. */
#ifndef NLB_FLOW_INT_H
#define NLB_FLOW_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "nlb/dataplane/flow.h"

/* At a flow's end (flow_end.c): its duration, bytes and end cause added
 * to its route's and target's counters ... */
void nlb_flow_count_end(const struct nlb_flow *flow, uint64_t now);
/* ... and its access-log record, with the TLS fields of a TLS flow. */
void nlb_flow_log_access(const struct nlb_flow *flow, uint64_t now);

/* Puts an established flow whose directions hold nothing into the
 * sockmap (flow->kernel then: the relay gives back its directions' pipes
 * and buffers); where the map refuses it the flow stays on splice
 * (counted: sockmap.h). */
enum nlb_flow_end nlb_flow_kernel_enter(struct nlb_flow *flow);
/* A kernel flow's socket (the client's, or the target's) had an event:
 * passes a FIN on once the bytes before it are through; a reset, or both
 * ways closed, ends the flow. */
enum nlb_flow_end nlb_flow_kernel_ready(struct nlb_flow *flow, bool client);
/* From the flow's timeout check: a FIN held back is tried again, and the
 * flow's last activity is brought up to the program's stamp. */
enum nlb_flow_end nlb_flow_kernel_check(struct nlb_flow *flow, uint64_t now_ms);
/* At the flow's end: adds what the program moved to its byte counts and
 * forgets its counters (the sockets leave the map when closed). */
void nlb_flow_kernel_count_bytes(struct nlb_flow *flow);

#endif
