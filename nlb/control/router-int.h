/* What the router's three files share: its records and the functions one
 * floor down. router_routes.c (the bottom) keeps the records, their
 * indexes and the snapshots it publishes; router_groups.c applies target
 * groups and targets (config, run time, health, draining); router.c applies
 * listeners and endpoints and is the rest of router.h. Private to
 * nlb/control/; control thread. */
#ifndef NLB_ROUTER_INT_H
#define NLB_ROUTER_INT_H

#include "nlb/common/tls_client.h"
#include "nlb/common/tls_server.h"
#include "nlb/control/router.h"

/* Flows of a drained target are closed at its deadline; it is forgotten
 * this long after, once workers have had time to act. */
#define DRAIN_GRACE_MS 2000
#define SLOW_START_REPUBLISH_MS 1000

struct endpoint_entry;

struct listener_record {
  uint64_t id;
  char *lb_name;
  uint16_t port;
  /* How its flows run; a tcp_udp listener is two records on one port. */
  const struct nlb_flow_kind *kind;
  bool has_bind;
  union nlb_sockaddr local;
  struct nlb_group *group; /* NULL until an apply says which */
  uint64_t idle_timeout_ms;
  bool sockmap;      /* its TCP flows go into the sockmap (route->sockmap) */
  char *endpoint_id; /* NULL for a load balancer's own listener */
  struct nlb_cidr *allowed_sources;
  size_t n_allowed_sources;
  struct nlb_listener_stats *stats;
  /* A TLS listener's certificates (its load balancer listener's, for an
   * endpoint's): one reference; NULL for other protocols. */
  struct nlb_tls_server *tls;
  /* tls_passthrough: its SNI routes, one reference (an endpoint's
   * listener shares its load balancer listener's); else NULL. */
  struct nlb_sni_routes *sni;
  struct nlb_route *route;    /* as published; NULL: make at the next publish */
  struct nlb_list dirty_link; /* on the router's dirty list while NULL */
  /* A load balancer's listener: in the router's map by (lb, port, kind).
   * An endpoint's: on its entry's list. */
  struct nlb_hnode node;
  struct nlb_list endpoint_link;
  bool seen; /* still in the config being applied */
};

/* The listeners of one endpoint, found by its ID. */
struct endpoint_entry {
  struct nlb_hnode node;
  char *id;
  struct nlb_list listeners;
};

struct nlb_router {
  struct nlb_worker *const *workers;
  size_t n_workers;
  struct nlb_group **groups; /* config order; group->index is the slot */
  size_t n_groups;
  struct nlb_hmap group_map; /* by name */
  /* Every listener, in id order (ids only grow), and its route at the
   * same index: a snapshot copies routes[] as it is, without sorting and
   * without touching a record. */
  struct listener_record **listeners;
  struct nlb_route **routes;
  size_t n_listeners, cap_listeners;
  struct nlb_list dirty; /* records whose route must be made */
  /* Routes no longer published, oldest first, each waiting until every
   * worker has moved past the snapshot generation that dropped it. */
  struct nlb_route *retired_head;
  struct nlb_route **retired_tail;
  struct nlb_hmap lb_listeners; /* load balancers' own, by (lb, port) */
  struct nlb_hmap endpoints;    /* endpoint entries, by ID */
  /* Groups removed by a reload whose targets still drain; freed when the
   * last one is gone. Not routed to. */
  struct nlb_group **retired;
  size_t n_retired;
  uint64_t next_listener_id;
  uint64_t generation;         /* snapshots published */
  uint64_t members_generation; /* nlb_router_generation */
  bool access_json;
  bool flush_due; /* a target state changed since the last publish */
  uint64_t last_slow_start_publish_ms;
  /* The last snapshot gave some target less than its full weight: one
   * more publish is due when slow start ends. */
  bool slow_start_published;
};

/* router_routes.c: the records and their indexes. Hashes for the maps. */
uint64_t router_hash_address(const union nlb_sockaddr *a);
uint64_t router_hash_lb_port(const char *lb_name, uint16_t port);
struct nlb_target *router_find_target(struct nlb_group *group,
                                      const union nlb_sockaddr *address);
struct endpoint_entry *router_find_endpoint(const struct nlb_router *router,
                                            const char *id);
/* Frees the retired routes every worker has moved past. */
void router_reap_routes(struct nlb_router *router);
/* A listener record and its end: an id and a route come later; a record
 * freed retires its route (workers may still read it). */
struct listener_record *router_new_listener(void);
void router_free_listener(struct nlb_router *router, struct listener_record *l);
void router_free_group(struct nlb_group *group);
/* A record or group whose route must be made again at the next publish. */
void router_listener_changed(struct nlb_router *router,
                             struct listener_record *l);
void router_group_changed(struct nlb_group *group);
/* The listener list in id order: room for more records first, so that
 * appending cannot fail half-way; a record removed is freed (reset_flows:
 * its flows are reset by the workers); a listening socket handed to every
 * worker. Negative errno on failure. */
int router_reserve_listeners(struct nlb_router *router, size_t more);
void router_append_listener(struct nlb_router *router,
                            struct listener_record *l);
void router_remove_listener(struct nlb_router *router,
                            struct listener_record *l, bool reset_flows);
int router_share_socket(struct nlb_router *router, uint64_t id, int fd);
/* The listening sockets a record of kind has: one, or one per worker. */
size_t router_sockets_per_listener(const struct nlb_router *router,
                                   const struct nlb_flow_kind *kind);
/* Hands a record's sockets (router_sockets_per_listener of them) to the
 * workers: one shared by all, or one to each; closed on failure. */
int router_hand_sockets(struct nlb_router *router,
                        const struct listener_record *l, const int *fds);
/* router_groups.c: applies the config's target groups (new, changed,
 * removed: removed targets drain). 0 or a negative errno. */
int router_apply_groups(struct nlb_router *router, const struct nlb_config *cfg,
                        uint64_t now_ms);

/* router_tls.c: the TLS contexts of one config, built before an apply
 * changes anything. servers[]: one per listener of the config, in the
 * order of its load balancers and their listeners (NULL: not TLS);
 * clients[]: one per target group (NULL: plain). One reference each. */
struct router_tls {
  struct nlb_tls_server **servers;
  size_t n_servers;
  struct ssl_ctx_st **clients;
  size_t n_clients;
};
/* 0, or -EINVAL with "FILE:LINE: what: reason" in err (nothing built). */
int router_tls_load(const struct nlb_config *cfg, struct router_tls *tls,
                    char *err, size_t err_size);
/* Drops what was not handed on. */
void router_tls_free(struct router_tls *tls);
/* After router_apply_groups: each group takes its new client context. */
void router_tls_give_groups(struct nlb_router *router, struct router_tls *tls);
/* A record takes a reference on server (NULL: none), dropping its old one;
 * its route is made again when it changed. */
void router_tls_set_listener(struct nlb_router *router,
                             struct listener_record *l,
                             struct nlb_tls_server *server);
/* The listener_open event's companion: TLS, and whether kTLS is used. */
void router_tls_say_listener(const struct listener_record *l);

#endif
