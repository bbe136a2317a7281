/* Endpoint services in nlbd: the registry on its own thread (regloop.h),
 * opened from the config's registry, principals, networks and node; what
 * its change feed says applied to this node (endpoints, run-time targets,
 * a drain); and the HTTP/2 API in front of them, with the data-plane
 * operations the API needs (target groups, metrics). Everything here runs
 * on the control thread. */
#ifndef NLB_SERVICES_H
#define NLB_SERVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "nlb/config.h"
#include "nlb/control/health.h"
#include "nlb/control/router.h"

struct nlb_services;

/* Opens the registry (when cfg has one) and reads its state, before
 * anything else is opened: a SQLite file another nlbd holds stops this one
 * before it binds a port. On failure returns a negative errno with the
 * reason in err, and nothing stays open. A config without registry and API
 * gives a services object that does nothing. */
int nlb_services_open(uv_loop_t *loop, const struct nlb_config *cfg,
                      struct nlb_services **out, char *err, size_t err_size);

/* Applies the state read at open (endpoints open, run-time targets
 * registered) and starts the API (when cfg has one). On failure returns a
 * negative errno with the reason in err; free the services then. */
int nlb_services_start(struct nlb_services *services,
                       const struct nlb_config *cfg, struct nlb_router *router,
                       struct nlb_health *health, char *err, size_t err_size);

/* Takes a reloaded config: principals, networks and load balancers for the
 * registry, principals for the API (existing API connections get GOAWAY),
 * endpoints reopened where load balancers changed. Registry path and API
 * address need a restart (logged). cfg must outlive the next reload. */
void nlb_services_reload(struct nlb_services *services,
                         const struct nlb_config *cfg);

/* Periodic work: endpoints follow their namespaces (nlb_endpoints_tick).
 * Expiry, pruning and heartbeats run on the registry's thread. */
void nlb_services_tick(struct nlb_services *services, uint64_t now_ms);

/* True once this node's registry record says it must drain (POST
 * /v1/nodes/NAME/drain, from any node). */
bool nlb_services_drain_requested(const struct nlb_services *services);

/* This node drains (SIGTERM, or the request above): its record says so, for
 * GET /v1/nodes. */
void nlb_services_draining(struct nlb_services *services, const char *node);

/* Stops the API (GOAWAY, connections closed); the loop finishes closing. */
void nlb_services_shutdown(struct nlb_services *services);

/* An upgrade's new process serves now (nlbd -s upgrade): the API stops as
 * nlb_services_shutdown, and the registry's changes are no longer applied
 * here (the new process applies them; the endpoints stay as they are while
 * their flows drain). The registry stays open for the answers under way. */
void nlb_services_hand_over(struct nlb_services *services);

/* Closes the registry and frees everything, once the loop has closed the
 * API's handles. NULL ok. */
void nlb_services_free(struct nlb_services *services);

#endif
