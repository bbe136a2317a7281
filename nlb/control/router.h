/* The router: the control thread's model of listeners, target groups and
 * targets, and the builder of the routing snapshots workers use.
 *
 * It applies a config (at start and on SIGHUP) as a diff: unchanged
 * listeners keep their sockets, new ones are opened before anything is
 * changed (so a reload that cannot bind changes nothing), removed targets
 * drain. Listeners, endpoints, groups and targets are found by hash, so a
 * change costs what it touches: an endpoint added or removed makes or
 * drops its own routes and shares every group's pool with the previous
 * snapshot; a health change rebuilds only its group's pool, once per
 * publish however many targets changed (the caller batches). Control
 * thread only. */
#ifndef NLB_ROUTER_H
#define NLB_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nlb/config.h"
#include "nlb/common/hmap.h"
#include "nlb/dataplane/snapshot.h"
#include "nlb/dataplane/target.h"
#include "nlb/dataplane/udp.h"
#include "nlb/dataplane/worker.h"

struct nlb_router;

/* A target group as the control thread keeps it. */
struct nlb_group {
  char *name;
  struct nlb_config_target_group settings; /* strings owned by the group;
                                               targets/n_targets unused */
  struct nlb_target **targets;             /* registered and draining targets */
  size_t n_targets;
  size_t capacity;
  bool in_use;          /* some listener routes to it */
  uint64_t generation;  /* bumped when health must look again */
  uint64_t pool_builds; /* pools (Maglev tables) built for it so far */
  /* Private to the router. */
  struct nlb_hnode node;         /* the router's groups, by name */
  struct nlb_hmap by_address;    /* targets, by address */
  size_t index;                  /* in the router's groups (and snapshots) */
  struct nlb_group_route *route; /* published; NULL: build at next publish */
  /* settings.tls built (one reference): the targets' TLS client context,
   * for flows and health checks; NULL: plain TCP. */
  struct ssl_ctx_st *tls_ctx;
  size_t n_draining;
  uint64_t slow_start_until_ms; /* some target is in slow start until then */
};

/* Creates a router publishing to the given workers (not owned). */
struct nlb_router *nlb_router_create(struct nlb_worker *const *workers,
                                     size_t n_workers);

/* Loads every certificate, key and CA file cfg's TLS listeners and target
 * groups name, as an apply would, and lets them go: 0, or -EINVAL with
 * "FILE:LINE: ..." in err. For `nlbd -t`. */
int nlb_router_check_tls(const struct nlb_config *cfg, char *err,
                         size_t err_size);

/* Applies cfg. On failure nothing changes and err holds the reason.
 * Returns 0 or a negative errno. now_ms is the control loop's clock. */
int nlb_router_apply(struct nlb_router *router, const struct nlb_config *cfg,
                     uint64_t now_ms, char *err, size_t err_size);

/* Builds and publishes a snapshot from the current state: the pools of
 * groups whose usable set changed are rebuilt, the rest shared. Returns 0
 * or -ENOMEM (the previous snapshot stays). */
int nlb_router_publish(struct nlb_router *router, uint64_t now_ms);

/* Publishes when a target state change (nlb_router_set_target_state) is
 * waiting for it; health calls it once per batching window. */
void nlb_router_flush(struct nlb_router *router, uint64_t now_ms);

/* Periodic work: drained targets removed, slow-start weights refreshed.
 * Publishes when something changed. */
void nlb_router_tick(struct nlb_router *router, uint64_t now_ms);

/* Bumped whenever targets are added or leave (drain, removal) or groups
 * change: a cheap way for health checks to notice there is work. */
uint64_t nlb_router_generation(const struct nlb_router *router);

/* Target groups, for health checks, the API and metrics. */
size_t nlb_router_group_count(const struct nlb_router *router);
struct nlb_group *nlb_router_group(struct nlb_router *router, size_t index);
struct nlb_group *nlb_router_find_group(struct nlb_router *router,
                                        const char *name);

/* A target registered through the API, as the registry holds it. */
struct nlb_runtime_target {
  const char *group;
  union nlb_sockaddr address;
  uint32_t weight;
};

/* One run-time target: registered with weight (1..), or, with weight 0,
 * gone (it drains). An address the config lists stays the config's. The
 * change is published by the next nlb_router_flush (the caller's, after a
 * batch: one pool rebuilt per group, not one per target). Returns 0 or
 * -ENOENT (no such group here). */
int nlb_router_set_runtime_target(struct nlb_router *router, const char *group,
                                  const union nlb_sockaddr *address,
                                  uint32_t weight, uint64_t now_ms);

/* Makes the run-time targets of every group exactly targets[0..n): what is
 * missing registers, weights follow, run-time targets not listed drain.
 * Groups this node lacks are skipped. */
void nlb_router_sync_runtime_targets(struct nlb_router *router,
                                     const struct nlb_runtime_target *targets,
                                     size_t n, uint64_t now_ms);

/* Sets a target's health state with a reason, logs the change as an event
 * and marks its group for the next publish, which the caller asks for
 * (nlb_router_flush) once it has collected the changes of a short window:
 * a group's pool is then rebuilt once, not once per target. */
void nlb_router_set_target_state(struct nlb_router *router,
                                 struct nlb_group *group,
                                 struct nlb_target *target,
                                 enum nlb_target_state state,
                                 const char *reason, uint64_t now_ms);

/* Weights in snapshots are scaled by this, so that slow start can hand out
 * fractions of a configured weight. */
#define NLB_WEIGHT_SCALE 100

/* The routing weight of a target healthy since healthy_since_ms: grows
 * linearly from 1 to weight * NLB_WEIGHT_SCALE over slow_start_ms (0: no
 * slow start, full weight at once). Pure. */
uint32_t nlb_slow_start_weight(uint32_t weight, uint64_t slow_start_ms,
                               uint64_t healthy_since_ms, uint64_t now_ms);

/* A listener as metrics see it; strings and stats borrowed until the
 * router next changes (an apply, an endpoint call). */
struct nlb_router_listener {
  const char *lb_name;
  uint16_t port;
  const char *endpoint_id; /* NULL for a load balancer's own listener */
  const struct nlb_listener_stats *stats;
  const struct nlb_tls_server *tls; /* a TLS listener's; NULL otherwise */
};

/* Listeners (load balancers' own and endpoints'), for metrics: index runs
 * from 0 to nlb_router_listener_count() - 1. */
size_t nlb_router_listener_count(const struct nlb_router *router);
/* The listening sockets they hold: one per bound TCP listener, one per
 * worker for a UDP one (for the descriptor plan, capacity.h). */
size_t nlb_router_listening_sockets(const struct nlb_router *router);
void nlb_router_listener(const struct nlb_router *router, size_t index,
                         struct nlb_router_listener *out);

/* Opens an endpoint's n listening sockets where it listens (its network
 * namespace: netns.h), fds[i] for requests[i]. On failure nothing stays
 * open, err says why (which address) and the result is a negative errno. */
typedef int (*nlb_router_open_fn)(void *arg,
                                  const struct nlb_listen_request *requests,
                                  size_t n, int *fds, char *err,
                                  size_t err_size);

/* Adds the listeners of an endpoint: for each port, one per listener the
 * load balancer lb_name has on that port (a tcp_udp port has a TCP and a
 * UDP one), at address (its port is ignored) in the consumer's network,
 * routed like that listener. open makes their sockets (one, or one per
 * worker for UDP), which the router hands to the workers. allowed_sources
 * (n may be 0: anyone) is copied. An endpoint already open gets the ports
 * it lacks (a reload added them to its load balancer). Returns 0, -ENOENT
 * (lb_name has no listener on a port; err says which), -EEXIST (the
 * endpoint already listens on one of ports), open's error, -ENOMEM. */
int nlb_router_add_endpoint(struct nlb_router *router, const char *endpoint_id,
                            const char *lb_name,
                            const union nlb_sockaddr *address,
                            const uint16_t *ports, size_t n_ports,
                            const struct nlb_cidr *allowed_sources,
                            size_t n_allowed_sources, nlb_router_open_fn open,
                            void *open_arg, uint64_t now_ms, char *err,
                            size_t err_size);

/* Closes an endpoint's listeners and resets its flows at once
 * (end=endpoint_closed). Returns 0 or -ENOENT. */
int nlb_router_remove_endpoint(struct nlb_router *router,
                               const char *endpoint_id, uint64_t now_ms);

/* Replaces an endpoint's source allow-list for new flows. 0 or -ENOENT. */
int nlb_router_set_endpoint_sources(struct nlb_router *router,
                                    const char *endpoint_id,
                                    const struct nlb_cidr *allowed_sources,
                                    size_t n_allowed_sources, uint64_t now_ms);

/* True when the endpoint listens on port. */
bool nlb_router_endpoint_has_port(const struct nlb_router *router,
                                  const char *endpoint_id, uint16_t port);

/* True when the endpoint has listeners open. */
bool nlb_router_has_endpoint(const struct nlb_router *router,
                             const char *endpoint_id);

/* Flows over every worker, flows refused at max_flows, accept(2) failures
 * for want of descriptors. */
struct nlb_router_flows {
  uint64_t active;
  uint64_t refused;
  uint64_t accept_errors;
};
void nlb_router_flows(const struct nlb_router *router,
                      struct nlb_router_flows *out);

/* UDP over every worker (udp.h): flows open, datagrams and bytes each way
 * ([0] client to target), datagrams dropped by reason. */
struct nlb_router_udp {
  uint64_t flows;
  uint64_t datagrams[2];
  uint64_t bytes[2];
  uint64_t drops[NLB_UDP_DROP_COUNT];
  uint64_t coalesced[2];
};
void nlb_router_udp(const struct nlb_router *router,
                    struct nlb_router_udp *out);

/* Closes every listening socket; flows go on (UDP flows end: they answer
 * through their listener's socket). */
void nlb_router_stop_accepting(struct nlb_router *router);

void nlb_router_free(struct nlb_router *router);

#endif
