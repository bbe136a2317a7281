/* nlbd's metrics as Prometheus text (exposition format 0.0.4): the data
 * plane (listeners, target groups, targets), the process, the config and
 * the log. The API adds its own (requests, endpoints) and serves
 * /metrics.
 *
 * Families keep listener and target series apart, so that summing a family
 * counts each flow once: the listener families of docs/metrics.md
 * (nlb_new_flows_total...) carry one series per listener (labels lb,
 * listener, and endpoint for an endpoint's listener); their nlb_target_*
 * twins carry one series per target (labels target_group, target). A flow
 * passes one listener and at most one target.
 *
 * Threads: the text is written on the control thread, from counters the
 * workers update with relaxed atomics (a scrape may see a flow counted in
 * one family and not yet in another). nlb_metrics_config_loaded is for the
 * control thread too. */
#ifndef NLB_METRICS_H
#define NLB_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nlb_router;

/* Which listeners a reader may see (a provider: those of the load
 * balancers its services publish and of its services' endpoints). */
struct nlb_metrics_scope {
  const char *const *load_balancers; /* their own listeners */
  size_t n_load_balancers;
  const char *const *endpoints; /* endpoints' listeners */
  size_t n_endpoints;
};

/* Records that a config was loaded (at start, or a SIGHUP reload) and
 * whether it was applied: nlb_config_last_reload_success and, on success,
 * its _timestamp_seconds (wall clock). Control thread. */
void nlb_metrics_config_loaded(bool success);

/* For nlb_upgrade_generation and nlb_upgrade_handed_over (nlbd -s
 * upgrade: nlb/upgrade.h). Control thread. */
void nlb_metrics_set_upgrade(unsigned generation, bool handed_over);

/* The node's max_flows now, for nlb_flows_max. Control thread. */
void nlb_metrics_set_max_flows(uint64_t max_flows);

/* The text of every family, malloc'd (the caller frees); NULL on ENOMEM.
 * With a scope, only the listener families, with only the listeners in
 * scope (families with no series keep their HELP and TYPE lines). Control
 * thread. */
char *nlb_metrics_text(struct nlb_router *router,
                       const struct nlb_metrics_scope *scope);

#endif
