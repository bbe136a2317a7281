/* Active health checks, run by the control loop for every target of every
 * target group, plus the passive signal (connect failures seen by workers
 * on live traffic). Results move targets between initial, healthy and
 * unhealthy through the router, which logs each change with its reason and
 * republishes routing only when the usable set changed. */
#ifndef NLB_HEALTH_H
#define NLB_HEALTH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "nlb/control/router.h"
#include "nlb/dataplane/target.h"

struct nlb_health;

/* Starts checking every target the router knows. NULL on ENOMEM. */
struct nlb_health *nlb_health_start(uv_loop_t *loop, struct nlb_router *router);

/* Picks up targets and settings changed by a reload or the API: new
 * targets get a check, removed or draining ones lose theirs. */
void nlb_health_sync(struct nlb_health *health);

/* Applies the passive signal: each connect failure a worker saw since the
 * last call counts as one failed check. Called every control tick. */
void nlb_health_tick(struct nlb_health *health, uint64_t now_ms);

/* How the first round of checks ended: its targets, how many had a first
 * result (pass or fail) and how many are healthy. */
struct nlb_health_first_round {
  uint64_t elapsed_ms; /* since nlb_health_start */
  size_t targets;
  size_t answered;
  size_t healthy;
};

/* The first round: the targets known when this is called (those of
 * nlb_health_start and those added since, e.g. from the registry). Calls
 * done(arg, round) once, when each has had its first result, or when the
 * round's bound passed (the longest check timeout of the groups, at most
 * 10 s), or at once (before returning) when there is none. The round's
 * state changes are published before done runs, so that the pool a caller
 * starts serving from reflects every target's first answer. Never called
 * after nlb_health_stop. Call once, before the loop runs. Targets added
 * later (reload, API) are not part of the round. */
void nlb_health_await_first_round(
    struct nlb_health *health,
    void (*done)(void *arg, const struct nlb_health_first_round *round),
    void *arg);

/* Probes open now, and started so far. */
struct nlb_health_stats {
  uint64_t probes_started;
  size_t in_flight; /* at most NLB_CAPACITY_PROBES */
};
void nlb_health_get_stats(const struct nlb_health *health,
                          struct nlb_health_stats *stats);

/* Stops every check; their handles close asynchronously. */
void nlb_health_stop(struct nlb_health *health);

/* Frees the module after the loop has closed its handles. */
void nlb_health_free(struct nlb_health *health);

/* The threshold state machine, pure: given a target's state and its runs of
 * consecutive passes and failures, records one result and returns the new
 * state. An initial target becomes healthy on its first pass, an unhealthy
 * one after healthy_threshold passes in a row; initial and healthy ones become
 * unhealthy after unhealthy_threshold failures in a row. Draining and
 * unused targets stay as they are. */
enum nlb_target_state
nlb_health_next_state(enum nlb_target_state state, unsigned *consecutive_ok,
                      unsigned *consecutive_fail, bool passed,
                      unsigned healthy_threshold, unsigned unhealthy_threshold);

/* Parses an HTTP/1.x status line ("HTTP/1.1 200 OK") at the start of buf.
 * Returns the code (100-599), 0 when the line is not complete yet, or
 * -EPROTO when it is not an HTTP status line. */
int nlb_health_parse_status(const char *buf, size_t len);

#endif
