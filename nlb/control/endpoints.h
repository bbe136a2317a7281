/* Endpoints on the wire: the data plane's side of the registry's change
 * feed.
 *
 * It applies each read of the feed (reg_changes): an endpoint that is
 * available gets a listener for every port of its service's load balancer,
 * at its address inside this node's mapping of its network (a namespace or
 * the host); one that is anything else loses them and its flows are reset;
 * a changed allow-list applies to new flows. A resync replaces the whole
 * set. Every change applies once, however often it is read: the rows say
 * what must be, and only the difference is done.
 *
 * What it made of each endpoint (open, or failed with the reason) goes back
 * to the registry as this node's placement, through the report callback.
 * Namespaces are watched, one stat per namespace a second: endpoints in one
 * that was deleted are failed here; in one that was replaced (deleted and
 * added again) they are opened again in the new one.
 *
 * Control thread only. */
#ifndef NLB_ENDPOINTS_H
#define NLB_ENDPOINTS_H

#include "nlb/registry.h"
#include "nlb/control/router.h"

struct nlb_endpoints;

struct nlb_endpoints_settings {
  struct nlb_router *router;
  /* The control loop's monotonic ms. */
  uint64_t (*clock)(void *arg);
  /* This node's placements to record: reports and their strings are
   * borrowed for the call. */
  void (*report)(const struct reg_placement_report *reports, size_t n,
                 void *arg);
  void *arg;
};

/* NULL on ENOMEM. */
struct nlb_endpoints *
nlb_endpoints_create(const struct nlb_endpoints_settings *settings);

/* Applies one read of the change feed. */
void nlb_endpoints_apply(struct nlb_endpoints *endpoints,
                         const struct reg_changes *changes);

/* Periodic work (call it often; it acts once a second): namespaces. */
void nlb_endpoints_tick(struct nlb_endpoints *endpoints, uint64_t now_ms);

/* Endpoints with listeners open on this node. */
size_t nlb_endpoints_open_count(const struct nlb_endpoints *endpoints);

/* Frees; the listeners stay with the router. NULL ok. */
void nlb_endpoints_free(struct nlb_endpoints *endpoints);

#endif
