/* Endpoints on the wire: the glue between the registry and the router.
 *
 * It observes the registry: an endpoint that becomes available gets a
 * listener for every port of its service's load balancer, at its address
 * inside its network (a namespace or the host); one that is rejected,
 * deleted, expired or failed loses them and its flows are reset. Listeners
 * that cannot open turn the endpoint failed, with the reason. At start it
 * reopens every endpoint the store holds as available. Every registry
 * transition is written to the event log with its acting principal.
 * Control thread only. */
#ifndef NLB_ENDPOINTS_H
#define NLB_ENDPOINTS_H

#include "nlb/registry.h"
#include "nlb/router.h"

struct nlb_endpoints;

/* Starts observing reg and opens the available endpoints. clock returns
 * the control loop's monotonic ms. NULL on ENOMEM. */
struct nlb_endpoints *nlb_endpoints_start(struct reg *reg,
                                          struct nlb_router *router,
                                          uint64_t (*clock)(void *),
                                          void *clock_arg);

/* Re-reads one endpoint from the store and applies what changed (its
 * source allow-list). Called after the API modified it. */
void nlb_endpoints_refresh(struct nlb_endpoints *endpoints, const char *id);

/* Opens available endpoints that have no listeners (after a reload that
 * changed load balancers). */
void nlb_endpoints_resync(struct nlb_endpoints *endpoints);

/* Periodic work (call it often; it acts once a second): an open endpoint
 * whose namespace name is gone from /run/netns becomes failed ("network
 * namespace NAME was deleted"); one whose name now stands for another
 * namespace is closed (flows reset) and opened in the new one. */
void nlb_endpoints_tick(struct nlb_endpoints *endpoints, uint64_t now_ms);

/* Stops observing and frees. Listeners stay with the router. NULL ok. */
void nlb_endpoints_free(struct nlb_endpoints *endpoints);

#endif
