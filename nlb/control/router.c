#include "nlb/control/router-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nlb/dataplane/flow_kind.h"
#include "nlb/dataplane/listener.h"
#include "nlb/dataplane/sni_routes.h"
#include "nlb/log.h"

struct lb_port {
  const char *lb_name;
  uint16_t port;
  const struct nlb_flow_kind *kind;
};

static bool lb_listener_is(const struct nlb_hnode *node, const void *key)
{
  const struct listener_record *l =
      NLB_CONTAINER_OF(node, struct listener_record, node);
  const struct lb_port *k = key;

  return l->port == k->port && l->kind == k->kind &&
         strcmp(l->lb_name, k->lb_name) == 0;
}

/* A load balancer's listener of one kind on port (a tcp_udp port has a
 * TCP and a UDP one). */
static struct listener_record *
find_lb_listener(struct nlb_router *router, const char *lb_name, uint16_t port,
                 const struct nlb_flow_kind *kind)
{
  struct lb_port key = {lb_name, port, kind};
  struct nlb_hnode *node =
      nlb_hmap_find(&router->lb_listeners, router_hash_lb_port(lb_name, port),
                    lb_listener_is, &key);

  return node ? NLB_CONTAINER_OF(node, struct listener_record, node) : NULL;
}

struct nlb_router *nlb_router_create(struct nlb_worker *const *workers,
                                     size_t n_workers)
{
  struct nlb_router *router = calloc(1, sizeof(*router));
  if (!router)
    return NULL;
  router->workers = workers;
  router->n_workers = n_workers;
  router->next_listener_id = 1;
  nlb_list_init(&router->dirty);
  router->retired_tail = &router->retired_head;
  nlb_hmap_init(&router->group_map);
  nlb_hmap_init(&router->lb_listeners);
  nlb_hmap_init(&router->endpoints);
  return router;
}

size_t nlb_router_listener_count(const struct nlb_router *router)
{
  return router->n_listeners;
}

size_t nlb_router_listening_sockets(const struct nlb_router *router)
{
  size_t n = 0;

  for (size_t i = 0; i < router->n_listeners; i++) {
    const struct listener_record *l = router->listeners[i];
    if (l->has_bind && l->kind)
      n += router_sockets_per_listener(router, l->kind);
  }
  return n;
}

void nlb_router_listener(const struct nlb_router *router, size_t index,
                         struct nlb_router_listener *out)
{
  const struct listener_record *l = router->listeners[index];
  out->lb_name = l->lb_name;
  out->port = l->port;
  out->endpoint_id = l->endpoint_id;
  out->stats = l->stats;
  out->tls = l->tls;
}

uint64_t nlb_router_generation(const struct nlb_router *router)
{
  return router->members_generation;
}

size_t nlb_router_group_count(const struct nlb_router *router)
{
  return router->n_groups;
}

struct nlb_group *nlb_router_group(struct nlb_router *router, size_t index)
{
  return index < router->n_groups ? router->groups[index] : NULL;
}

static bool same_bind(const struct listener_record *l,
                      const struct nlb_config_listener *cl)
{
  if (l->has_bind != cl->has_bind)
    return false;
  return !cl->has_bind || nlb_addr_equal(&l->local, &cl->bind);
}

/* A listener being added by an apply, with its sockets. */
struct pending_listener {
  struct listener_record *record;
  int *fds; /* router_sockets_per_listener; NULL: none (endpoints only) */
  size_t n_fds;
};

static void close_fds(int *fds, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= 0)
      close(fds[i]);
}

static void discard_pending(struct nlb_router *router,
                            struct pending_listener *pending, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    if (pending[i].fds)
      close_fds(pending[i].fds, pending[i].n_fds);
    free(pending[i].fds);
    router_free_listener(router, pending[i].record);
  }
  free(pending);
}

/* Opens n sockets of one listener on addr: the first checks the address,
 * the others join it (a UDP listener's socket per worker). fds[] is -1
 * past the first failure, which is returned. */
static int open_sockets(const union nlb_sockaddr *addr,
                        const struct nlb_flow_kind *kind, int *fds, size_t n)
{
  for (size_t i = 0; i < n; i++)
    fds[i] = -1;
  for (size_t i = 0; i < n; i++) {
    int fd = nlb_listener_open(addr, kind->transport);
    if (fd < 0)
      return fd;
    fds[i] = fd;
  }
  return 0;
}

/* The idle timeout of a listener's flows of kind. */
static uint64_t idle_timeout_of(const struct nlb_config_listener *cl,
                                const struct nlb_flow_kind *kind)
{
  return kind->transport == NLB_TRANSPORT_UDP ? cl->udp_idle_timeout_ms
                                              : cl->idle_timeout_ms;
}

/* Whether a listener's TCP flows go into the sockmap: "auto" where
 * nlbd could load its program (the daemon tries before the apply). */
static bool uses_sockmap(const struct nlb_config_listener *cl)
{
  return cl->forwarding == NLB_FORWARDING_SOCKMAP ||
         (cl->forwarding == NLB_FORWARDING_AUTO && nlb_sockmap_loaded());
}

static void set_route_settings(struct nlb_router *router,
                               struct listener_record *l,
                               struct nlb_group *group,
                               uint64_t idle_timeout_ms,
                               struct nlb_tls_server *tls, bool sockmap)
{
  router_tls_set_listener(router, l, tls);
  if (l->group != group || l->idle_timeout_ms != idle_timeout_ms ||
      l->sockmap != sockmap || (l->route && l->route->group != group->index))
    router_listener_changed(router, l);
  l->group = group;
  l->idle_timeout_ms = idle_timeout_ms;
  l->sockmap = sockmap;
}

/* A listener's SNI routes follow sni (NULL: none); the reference is the
 * caller's to keep. */
static void set_sni_routes(struct nlb_router *router, struct listener_record *l,
                           struct nlb_sni_routes *sni)
{
  if (l->sni == sni)
    return;
  nlb_sni_routes_acquire(sni);
  nlb_sni_routes_release(l->sni);
  l->sni = sni;
  router_listener_changed(router, l);
}

/* The SNI routes a tls_passthrough listener's config gives; NULL for any
 * other protocol, or (logged) when memory runs out: its flows then all go
 * to its target group. */
static struct nlb_sni_routes *
sni_routes_of(const struct nlb_config_listener *cl, const char *lb_name)
{
  struct nlb_sni_routes *sni;

  if (cl->protocol != NLB_PROTOCOL_TLS_PASSTHROUGH)
    return NULL;
  sni = nlb_sni_routes_create(cl->n_sni_routes, cl->client_hello_timeout_ms);
  for (size_t i = 0; sni && i < cl->n_sni_routes; i++)
    if (nlb_sni_routes_set(sni, i, cl->sni_routes[i].name,
                           cl->sni_routes[i].target_group) < 0) {
      nlb_sni_routes_release(sni);
      sni = NULL;
    }
  if (!sni)
    NLB_LOG_EVENT(NLB_LOG_ERROR, "sni_routes_failed",
                  "listener {lb}:{port}: no memory for its SNI routes",
                  NLB_LOG_STR("lb", lb_name), NLB_LOG_UINT("port", cl->port));
  return sni;
}

/* Phase 1 of an apply: sockets for every listener the router lacks.
 * Returns the pending listeners (*n_new of them) or NULL with rc set. */
static struct pending_listener *open_new_listeners(struct nlb_router *router,
                                                   const struct nlb_config *cfg,
                                                   size_t *n_new, int *rc,
                                                   char *err, size_t err_size)
{
  size_t total = 0;
  struct pending_listener *pending;

  *n_new = 0;
  for (size_t i = 0; i < cfg->n_load_balancers; i++)
    total += cfg->load_balancers[i].n_listeners * NLB_PROTOCOL_KINDS_MAX;
  pending = calloc(total ? total : 1, sizeof(*pending));
  *rc = -ENOMEM;
  if (!pending)
    return NULL;
  for (size_t i = 0; i < router->n_listeners; i++)
    router->listeners[i]->seen = router->listeners[i]->endpoint_id != NULL;
  for (size_t i = 0; i < cfg->n_load_balancers; i++) {
    const struct nlb_config_load_balancer *lb = &cfg->load_balancers[i];
    for (size_t j = 0; j < lb->n_listeners; j++) {
      const struct nlb_config_listener *cl = &lb->listeners[j];
      const char *const *kinds = nlb_protocol_kinds(cl->protocol);
      for (size_t k = 0; kinds[k]; k++) {
        const struct nlb_flow_kind *kind = nlb_flow_kind_find(kinds[k]);
        struct listener_record *found;
        struct listener_record *l;
        struct pending_listener *p = &pending[*n_new];
        int fd;

        if (!kind) {
          snprintf(err, err_size, "%s:%d: protocol %s: no flow kind %s",
                   cfg->path, cl->line, nlb_protocol_name(cl->protocol),
                   kinds[k]);
          *rc = -EINVAL;
          goto fail;
        }
        found = find_lb_listener(router, lb->name, cl->port, kind);
        if (found && same_bind(found, cl)) {
          found->seen = true;
          continue;
        }
        if (!(l = router_new_listener()))
          goto fail;
        p->record = l;
        (*n_new)++;
        l->lb_name = strdup(lb->name);
        l->port = cl->port;
        l->kind = kind;
        l->has_bind = cl->has_bind;
        l->local = cl->bind;
        l->stats = nlb_listener_stats_create();
        if (!l->lb_name || !l->stats)
          goto fail;
        if (!cl->has_bind)
          continue;
        p->n_fds = router_sockets_per_listener(router, kind);
        if (!(p->fds = calloc(p->n_fds, sizeof(*p->fds))))
          goto fail;
        fd = open_sockets(&cl->bind, kind, p->fds, p->n_fds);
        if (fd < 0) {
          char where[NLB_ADDR_TEXT_MAX];
          snprintf(err, err_size,
                   "%s:%d: load balancer \"%s\": cannot listen on %s (%s): "
                   "%s",
                   cfg->path, cl->line, lb->name,
                   nlb_addr_format(&cl->bind, where, sizeof(where)), kind->name,
                   strerror(-fd));
          *rc = fd;
          goto fail;
        }
      }
    }
  }
  return pending;

fail:
  discard_pending(router, pending, *n_new);
  return NULL;
}

/* After a reload, endpoint listeners follow their load balancer's listener
 * on the same port; one whose port is gone closes. */
static void resolve_endpoint_listeners(struct nlb_router *router)
{
  for (size_t i = 0; i < router->n_listeners;) {
    struct listener_record *l = router->listeners[i];
    struct listener_record *lb;
    if (!l->endpoint_id) {
      i++;
      continue;
    }
    lb = find_lb_listener(router, l->lb_name, l->port, l->kind);
    if (!lb || !lb->group) {
      NLB_LOG_EVENT(NLB_LOG_WARN, "listener_close",
                    "endpoint {endpoint}: load balancer {lb} has no port "
                    "{port} any more; closing that listener",
                    NLB_LOG_STR("endpoint", l->endpoint_id),
                    NLB_LOG_STR("lb", l->lb_name),
                    NLB_LOG_UINT("port", l->port),
                    NLB_LOG_STR("reason", "port removed"));
      router_remove_listener(router, l, true);
      continue;
    }
    set_route_settings(router, l, lb->group, lb->idle_timeout_ms, lb->tls,
                       lb->sockmap);
    set_sni_routes(router, l, lb->sni);
    i++;
  }
}

/* Phase 3 of an apply: listeners the config dropped close, new ones join
 * (in id order, after every older one), settings follow the config. */
static void apply_listeners(struct nlb_router *router,
                            const struct nlb_config *cfg,
                            struct pending_listener *pending, size_t n_new,
                            struct router_tls *tls)
{
  size_t n_listener = 0;

  for (size_t k = 0; k < router->n_listeners;) {
    struct listener_record *l = router->listeners[k];
    if (l->seen) {
      k++;
      continue;
    }
    NLB_LOG_EVENT(NLB_LOG_INFO, "listener_close", "listener {lb}:{port} closed",
                  NLB_LOG_STR("lb", l->lb_name), NLB_LOG_UINT("port", l->port),
                  NLB_LOG_STR("reason", "removed from config"));
    router_remove_listener(router, l, false);
  }
  for (size_t i = 0; i < n_new; i++) {
    struct listener_record *l = pending[i].record;
    router_append_listener(router, l);
    /* Room was reserved; a failed insert only leaves the map without it
     * (found again by the next reload's scan). */
    nlb_hmap_insert(&router->lb_listeners, &l->node,
                    router_hash_lb_port(l->lb_name, l->port));
  }
  for (size_t i = 0; i < cfg->n_load_balancers; i++) {
    const struct nlb_config_load_balancer *lb = &cfg->load_balancers[i];
    for (size_t j = 0; j < lb->n_listeners; j++) {
      const struct nlb_config_listener *cl = &lb->listeners[j];
      const char *const *kinds = nlb_protocol_kinds(cl->protocol);
      struct nlb_group *group = router->groups[cl->target_group];
      struct nlb_tls_server *server = tls->servers[n_listener++];
      struct nlb_sni_routes *sni = sni_routes_of(cl, lb->name);
      for (size_t k = 0; kinds[k]; k++) {
        const struct nlb_flow_kind *kind = nlb_flow_kind_find(kinds[k]);
        struct listener_record *l =
            kind ? find_lb_listener(router, lb->name, cl->port, kind) : NULL;
        if (!l)
          continue;
        set_route_settings(router, l, group, idle_timeout_of(cl, kind), server,
                           uses_sockmap(cl));
        set_sni_routes(router, l, sni);
        group->in_use = true;
      }
      for (size_t k = 0; k < cl->n_sni_routes; k++)
        router->groups[cl->sni_routes[k].target_group]->in_use = true;
      nlb_sni_routes_release(sni);
    }
  }
  resolve_endpoint_listeners(router);
}

/* A group that preserves client addresses needs IP_TRANSPARENT: without
 * CAP_NET_ADMIN (or CAP_NET_RAW) every flow to it would fail, so the
 * config is refused. */
static int check_transparent(const struct nlb_config *cfg, char *err,
                             size_t err_size)
{
  for (size_t i = 0; i < cfg->n_target_groups; i++) {
    const struct nlb_config_target_group *tg = &cfg->target_groups[i];
    int rc;
    if (!tg->preserve_client_ip || (rc = nlb_transparent_allowed()) == 0)
      continue;
    snprintf(err, err_size,
             "%s:%d: target group \"%s\": preserve_client_ip needs "
             "CAP_NET_ADMIN or CAP_NET_RAW (IP_TRANSPARENT): %s",
             cfg->path, tg->preserve_client_ip_line, tg->name, strerror(-rc));
    return rc;
  }
  return 0;
}

int nlb_router_apply(struct nlb_router *router, const struct nlb_config *cfg,
                     uint64_t now_ms, char *err, size_t err_size)
{
  size_t n_new = 0;
  struct router_tls tls;
  int rc = check_transparent(cfg, err, err_size);
  struct pending_listener *pending;

  if (rc < 0 || (rc = router_tls_load(cfg, &tls, err, err_size)) < 0)
    return rc;
  pending = open_new_listeners(router, cfg, &n_new, &rc, err, err_size);
  /* Nothing has changed until every new socket is open and every
   * certificate loaded. */
  if (!pending) {
    router_tls_free(&tls);
    return rc;
  }
  if (router_reserve_listeners(router, n_new) < 0) {
    discard_pending(router, pending, n_new);
    router_tls_free(&tls);
    return -ENOMEM;
  }
  router_apply_groups(router, cfg, now_ms);
  router_tls_give_groups(router, &tls);
  apply_listeners(router, cfg, pending, n_new, &tls);
  router_tls_free(&tls);
  router->access_json = cfg->log_access_format == NLB_LOG_JSON;
  nlb_router_publish(router, now_ms);

  /* New sockets go to the workers after the snapshot that names their
   * routes (commands reach a worker in order). */
  for (size_t i = 0; i < n_new; i++) {
    struct listener_record *l = pending[i].record;
    char where[NLB_ADDR_TEXT_MAX];
    int handed = pending[i].fds ? router_hand_sockets(router, l, pending[i].fds)
                                : -ENOENT;
    free(pending[i].fds);
    if (handed < 0)
      continue;
    NLB_LOG_EVENT(NLB_LOG_INFO, "listener_open",
                  "listener {lb}:{port} ({protocol}) open on {address} "
                  "({workers} workers)",
                  NLB_LOG_STR("lb", l->lb_name), NLB_LOG_UINT("port", l->port),
                  NLB_LOG_STR("protocol", l->kind->name),
                  NLB_LOG_STR("address",
                              nlb_addr_format(&l->local, where, sizeof(where))),
                  NLB_LOG_UINT("workers", router->n_workers));
    router_tls_say_listener(l);
  }
  free(pending);
  return 0;
}

/* ---- publishing ---------------------------------------------------------- */

static int copy_sources(struct nlb_router *router, struct listener_record *l,
                        const struct nlb_cidr *sources, size_t n)
{
  struct nlb_cidr *copy = NULL;
  if (n) {
    copy = malloc(n * sizeof(*copy));
    if (!copy)
      return -ENOMEM;
    memcpy(copy, sources, n * sizeof(*copy));
  }
  free(l->allowed_sources);
  l->allowed_sources = copy;
  l->n_allowed_sources = n;
  router_listener_changed(router, l);
  return 0;
}

static struct listener_record *endpoint_port(const struct endpoint_entry *ep,
                                             uint16_t port)
{
  struct nlb_list *pos, *tmp;

  NLB_LIST_FOREACH_SAFE(pos, tmp, &ep->listeners)
  {
    struct listener_record *l =
        NLB_CONTAINER_OF(pos, struct listener_record, endpoint_link);
    if (l->port == port)
      return l;
  }
  return NULL;
}

static void free_endpoint_entry(struct nlb_router *router,
                                struct endpoint_entry *ep)
{
  nlb_hmap_remove(&router->endpoints, &ep->node);
  free(ep->id);
  free(ep);
}

static struct endpoint_entry *endpoint_entry(struct nlb_router *router,
                                             const char *id)
{
  struct endpoint_entry *ep = router_find_endpoint(router, id);

  if (ep)
    return ep;
  if (!(ep = calloc(1, sizeof(*ep))) || !(ep->id = strdup(id)))
    goto fail_free;
  nlb_list_init(&ep->listeners);
  if (nlb_hmap_insert(&router->endpoints, &ep->node, nlb_hash_str(id)) < 0)
    goto fail_free;
  return ep;

fail_free:
  if (ep)
    free(ep->id);
  free(ep);
  return NULL;
}

/* The load balancer's listeners an endpoint's ports follow, one per port
 * and kind (a tcp_udp port has two), and the sockets they take. NULL with
 * err set when a port has none (-ENOENT) or on ENOMEM. */
static struct listener_record **
endpoint_plan(struct nlb_router *router, const char *lb_name,
              const uint16_t *ports, size_t n_ports, size_t *n_records,
              size_t *n_sockets, int *rc, char *err, size_t err_size)
{
  struct listener_record **plan =
      calloc(n_ports * NLB_PROTOCOL_KINDS_MAX + 1, sizeof(*plan));

  *n_records = *n_sockets = 0;
  *rc = -ENOMEM;
  if (!plan)
    return NULL;
  for (size_t p = 0; p < n_ports; p++) {
    size_t before = *n_records;
    const struct nlb_flow_kind *kind;
    for (size_t k = 0; (kind = nlb_flow_kind_at(k)); k++) {
      struct listener_record *lb =
          find_lb_listener(router, lb_name, ports[p], kind);
      if (!lb || !lb->group || *n_records == n_ports * NLB_PROTOCOL_KINDS_MAX)
        continue;
      plan[(*n_records)++] = lb;
      *n_sockets += router_sockets_per_listener(router, kind);
    }
    if (*n_records == before) {
      snprintf(err, err_size, "load balancer %s has no listener on port %u",
               lb_name, ports[p]);
      *rc = -ENOENT;
      free(plan);
      return NULL;
    }
  }
  return plan;
}

/* What the opener is asked for: each planned listener's sockets at
 * address on its port, the first of each checked, the others joining. */
static struct nlb_listen_request *
endpoint_requests(const struct nlb_router *router,
                  struct listener_record *const *plan, size_t n_records,
                  size_t n_sockets, const union nlb_sockaddr *address)
{
  struct nlb_listen_request *requests =
      calloc(n_sockets ? n_sockets : 1, sizeof(*requests));
  size_t r = 0;

  if (!requests)
    return NULL;
  for (size_t i = 0; i < n_records; i++) {
    size_t n = router_sockets_per_listener(router, plan[i]->kind);
    for (size_t s = 0; s < n; s++, r++) {
      requests[r].addr = *address;
      nlb_addr_set_port(&requests[r].addr, plan[i]->port);
      requests[r].transport = plan[i]->kind->transport;
      requests[r].join = s > 0;
    }
  }
  return requests;
}

int nlb_router_add_endpoint(struct nlb_router *router, const char *endpoint_id,
                            const char *lb_name,
                            const union nlb_sockaddr *address,
                            const uint16_t *ports, size_t n_ports,
                            const struct nlb_cidr *allowed_sources,
                            size_t n_allowed_sources, nlb_router_open_fn open,
                            void *open_arg, uint64_t now_ms, char *err,
                            size_t err_size)
{
  size_t first = router->n_listeners;
  struct endpoint_entry *ep = NULL;
  struct listener_record **plan = NULL;
  struct nlb_listen_request *requests = NULL;
  int *fds = NULL;
  size_t n_records = 0, n_sockets = 0, p = 0;
  int rc = -ENOMEM;

  for (size_t i = 0; i < n_ports; i++)
    if (nlb_router_endpoint_has_port(router, endpoint_id, ports[i])) {
      snprintf(err, err_size, "endpoint already listens on port %u", ports[i]);
      return -EEXIST;
    }
  plan = endpoint_plan(router, lb_name, ports, n_ports, &n_records, &n_sockets,
                       &rc, err, err_size);
  if (!plan)
    goto out;
  rc = -ENOMEM;
  requests = endpoint_requests(router, plan, n_records, n_sockets, address);
  fds = calloc(n_sockets ? n_sockets : 1, sizeof(*fds));
  if (!requests || !fds)
    goto out;
  if ((rc = open(open_arg, requests, n_sockets, fds, err, err_size)) < 0)
    goto out;
  rc = -ENOMEM;
  if (router_reserve_listeners(router, n_records) < 0 ||
      !(ep = endpoint_entry(router, endpoint_id)))
    goto fail_close_fds;
  for (; p < n_records; p++) {
    struct listener_record *lb = plan[p];
    struct listener_record *l = router_new_listener();
    if (!l)
      goto fail_remove_added;
    router_append_listener(router, l);
    nlb_list_append(&ep->listeners, &l->endpoint_link);
    l->lb_name = strdup(lb_name);
    l->port = lb->port;
    l->kind = lb->kind;
    l->has_bind = true;
    l->local = *address;
    nlb_addr_set_port(&l->local, lb->port);
    l->group = lb->group;
    l->idle_timeout_ms = lb->idle_timeout_ms;
    if ((l->tls = lb->tls))
      nlb_tls_server_acquire(l->tls);
    nlb_sni_routes_acquire(lb->sni);
    l->sni = lb->sni;
    l->sockmap = lb->sockmap;
    l->endpoint_id = strdup(endpoint_id);
    l->stats = nlb_listener_stats_create();
    if (!l->lb_name || !l->endpoint_id || !l->stats ||
        copy_sources(router, l, allowed_sources, n_allowed_sources) < 0)
      goto fail_remove_added;
  }
  if (nlb_router_publish(router, now_ms) < 0)
    goto fail_remove_added;
  for (size_t i = 0, s = 0; i < n_records; i++) {
    const struct listener_record *l = router->listeners[first + i];
    router_hand_sockets(router, l, &fds[s]);
    s += router_sockets_per_listener(router, l->kind);
  }
  rc = 0;
  goto out;

fail_remove_added:
  while (router->n_listeners > first) {
    struct listener_record *l = router->listeners[--router->n_listeners];
    nlb_list_remove(&l->endpoint_link);
    router_free_listener(router, l);
  }
  if (nlb_list_empty(&ep->listeners))
    free_endpoint_entry(router, ep);
fail_close_fds:
  close_fds(fds, n_sockets);
out:
  if (rc == -ENOMEM && !err[0])
    snprintf(err, err_size, "out of memory");
  free(plan);
  free(requests);
  free(fds);
  return rc;
}

int nlb_router_remove_endpoint(struct nlb_router *router,
                               const char *endpoint_id, uint64_t now_ms)
{
  struct endpoint_entry *ep = router_find_endpoint(router, endpoint_id);

  if (!ep)
    return -ENOENT;
  while (!nlb_list_empty(&ep->listeners))
    router_remove_listener(router,
                           NLB_CONTAINER_OF(ep->listeners.next,
                                            struct listener_record,
                                            endpoint_link),
                           true);
  free_endpoint_entry(router, ep);
  nlb_router_publish(router, now_ms);
  return 0;
}

int nlb_router_set_endpoint_sources(struct nlb_router *router,
                                    const char *endpoint_id,
                                    const struct nlb_cidr *allowed_sources,
                                    size_t n_allowed_sources, uint64_t now_ms)
{
  struct endpoint_entry *ep = router_find_endpoint(router, endpoint_id);
  struct nlb_list *pos, *tmp;

  if (!ep)
    return -ENOENT;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &ep->listeners)
  {
    if (copy_sources(
            router,
            NLB_CONTAINER_OF(pos, struct listener_record, endpoint_link),
            allowed_sources, n_allowed_sources) < 0)
      return -ENOMEM;
  }
  return nlb_router_publish(router, now_ms);
}

bool nlb_router_endpoint_has_port(const struct nlb_router *router,
                                  const char *endpoint_id, uint16_t port)
{
  const struct endpoint_entry *ep = router_find_endpoint(router, endpoint_id);

  return ep && endpoint_port(ep, port);
}

bool nlb_router_has_endpoint(const struct nlb_router *router,
                             const char *endpoint_id)
{
  const struct endpoint_entry *ep = router_find_endpoint(router, endpoint_id);

  return ep && !nlb_list_empty(&ep->listeners);
}

void nlb_router_flows(const struct nlb_router *router,
                      struct nlb_router_flows *out)
{
  memset(out, 0, sizeof(*out));
  for (size_t w = 0; w < router->n_workers; w++) {
    out->active += nlb_worker_active_flows(router->workers[w]);
    out->refused += nlb_worker_flows_refused(router->workers[w]);
    out->accept_errors += nlb_worker_accept_errors(router->workers[w]);
  }
}

void nlb_router_udp(const struct nlb_router *router, struct nlb_router_udp *out)
{
  memset(out, 0, sizeof(*out));
  for (size_t w = 0; w < router->n_workers; w++) {
    const struct nlb_udp_counters *c =
        nlb_worker_udp_counters(router->workers[w]);
    out->flows += atomic_load_explicit(&c->flows, memory_order_relaxed);
    for (int d = 0; d < 2; d++) {
      out->datagrams[d] +=
          atomic_load_explicit(&c->datagrams[d], memory_order_relaxed);
      out->bytes[d] += atomic_load_explicit(&c->bytes[d], memory_order_relaxed);
      out->coalesced[d] +=
          atomic_load_explicit(&c->coalesced[d], memory_order_relaxed);
    }
    for (int r = 0; r < NLB_UDP_DROP_COUNT; r++)
      out->drops[r] += atomic_load_explicit(&c->drops[r], memory_order_relaxed);
  }
}

void nlb_router_stop_accepting(struct nlb_router *router)
{
  for (size_t w = 0; w < router->n_workers; w++)
    nlb_worker_stop_accepting(router->workers[w]);
}

void nlb_router_free(struct nlb_router *router)
{
  struct nlb_hnode *node, *next;

  if (!router)
    return;
  for (size_t i = 0; i < router->n_groups; i++)
    router_free_group(router->groups[i]);
  free(router->groups);
  for (size_t i = 0; i < router->n_retired; i++)
    router_free_group(router->retired[i]);
  free(router->retired);
  /* Workers are stopped: no snapshot is read any more. */
  for (size_t i = 0; i < router->n_listeners; i++)
    router_free_listener(router, router->listeners[i]);
  free(router->listeners);
  free(router->routes);
  while (router->retired_head) {
    struct nlb_route *route = router->retired_head;
    router->retired_head = route->retired_next;
    nlb_route_release(route);
  }
  for (node = nlb_hmap_next(&router->endpoints, NULL); node; node = next) {
    struct endpoint_entry *ep =
        NLB_CONTAINER_OF(node, struct endpoint_entry, node);
    next = nlb_hmap_next(&router->endpoints, node);
    free(ep->id);
    free(ep);
  }
  nlb_hmap_free(&router->endpoints);
  nlb_hmap_free(&router->lb_listeners);
  nlb_hmap_free(&router->group_map);
  free(router);
}
