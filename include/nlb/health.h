/* Active health checks, run by the control loop for every target of every
 * target group in use, plus the passive signal (connect failures seen by
 * workers). Results move targets between initial, healthy and unhealthy
 * through the router, which logs each change and republishes routing. */
#ifndef NLB_HEALTH_H
#define NLB_HEALTH_H

#include <stdbool.h>
#include <uv.h>

#include "nlb/router.h"

struct nlb_health;

/* Starts checking every target the router knows. NULL on ENOMEM. */
struct nlb_health *nlb_health_start(uv_loop_t *loop, struct nlb_router *router);

/* Picks up targets and settings changed by a reload or the API. */
void nlb_health_sync(struct nlb_health *health);

/* Stops every check; their handles close asynchronously. */
void nlb_health_stop(struct nlb_health *health);

/* Frees the module after the loop has closed its handles. */
void nlb_health_free(struct nlb_health *health);

#endif
