/* A target: one backend address:port of a target group, with its health
 * state and counters.
 *
 * Targets outlive snapshots: the control thread creates one when a target
 * is registered, routing snapshots and flows hold references, and the last
 * nlb_target_release frees it. Fields marked "control" are touched only by
 * the control thread; atomics are shared with workers. */
#ifndef NLB_TARGET_H
#define NLB_TARGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nlb/common/addr.h"
#include "nlb/common/hmap.h"
#include "nlb/common/histogram.h"

enum nlb_target_state {
  NLB_TARGET_INITIAL,
  NLB_TARGET_HEALTHY,
  NLB_TARGET_UNHEALTHY,
  NLB_TARGET_DRAINING,
  NLB_TARGET_UNUSED,
};

/* Counters workers add to when a flow closes or fails; read for /metrics. */
struct nlb_flow_counters {
  atomic_uint_fast64_t active_flows;
  atomic_uint_fast64_t new_flows;
  atomic_uint_fast64_t bytes_up;   /* client to target */
  atomic_uint_fast64_t bytes_down; /* target to client */
  atomic_uint_fast64_t client_resets;
  atomic_uint_fast64_t target_resets;
  atomic_uint_fast64_t lb_resets;
  atomic_uint_fast64_t connect_failures;
};

struct nlb_target {
  atomic_int refs;
  union nlb_sockaddr address;
  uint32_t weight; /* configured weight (control) */
  char name[NLB_ADDR_TEXT_MAX];

  /* Written by the control thread, read by workers. */
  atomic_int state;
  /* Monotonic ms after which a draining target's flows are closed; 0 when
   * not draining. */
  atomic_uint_fast64_t drain_deadline_ms;
  /* Connect failures seen on live traffic since the control thread last
   * looked: the passive health signal. */
  atomic_uint passive_failures;

  struct nlb_flow_counters counters;
  /* From connect(2) to the target accepting, per established flow. */
  struct nlb_histogram connect_time;

  /* Registered through the API: a reload of the file keeps it. (control) */
  bool runtime_registered;
  /* The router's: its group's map by address, and a mark for diffs. */
  struct nlb_hnode group_node;
  bool mark;

  /* Health bookkeeping (control). */
  unsigned consecutive_ok;
  unsigned consecutive_fail;
  uint64_t healthy_since_ms; /* for slow start */
  char reason[64];
  void *health_check; /* owned by the health module */
};

/* Creates a target with one reference, state initial. NULL on ENOMEM. */
struct nlb_target *nlb_target_create(const union nlb_sockaddr *address,
                                     uint32_t weight);

/* Takes another reference. Any thread. */
void nlb_target_acquire(struct nlb_target *target);

/* Drops a reference; the last one frees the target. Any thread. */
void nlb_target_release(struct nlb_target *target);

const char *nlb_target_state_name(enum nlb_target_state state);

/* A connect to target failed on live traffic: counted on the target and
 * on a process-wide total, so that the control thread looks at targets
 * only when some worker saw a failure. Any thread. */
void nlb_target_passive_failure(struct nlb_target *target);
unsigned nlb_target_passive_total(void);

/* Targets draining now, process-wide: workers look for flows past a
 * drain deadline only while it is not 0. nlb_target_set_draining keeps
 * it (the router calls it on each change into or out of draining).
 * Any thread. */
void nlb_target_set_draining(bool draining);
unsigned nlb_target_draining_count(void);

#endif
