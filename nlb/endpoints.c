#include "nlb/endpoints.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nlb/log.h"
#include "nlb/netns.h"

/* How often the namespaces of open endpoints are looked at. */
#define NETNS_CHECK_MS 1000

/* An open endpoint in a namespace and which namespace that was: the name
 * under /run/netns may later be deleted, or bound to a new namespace. */
struct watched_endpoint {
  char id[REG_ID_BUF];
  char netns[REG_NAME_BUF];
  dev_t dev;
  ino_t ino;
  unsigned missing; /* checks in a row that found no such name */
};

/* A name gone for this many checks in a row (a second apart) fails the
 * endpoint: `ip netns del NAME; ip netns add NAME` leaves a short gap that
 * must read as a replacement, not a deletion. */
#define NETNS_MISSING_CHECKS 2

struct nlb_endpoints {
  struct reg *reg;
  struct nlb_router *router;
  uint64_t (*clock)(void *);
  void *clock_arg;
  struct watched_endpoint *watched;
  size_t n_watched;
  size_t watched_capacity;
  uint64_t last_netns_check_ms;
};

static uint64_t now_ms(struct nlb_endpoints *eps)
{
  return eps->clock(eps->clock_arg);
}

/* Parses the endpoint's allowed sources; *out is malloc'd (NULL when
 * none). The registry stored them validated, so a parse failure is a
 * corrupt store: refuse rather than open the endpoint to everyone. */
static int parse_sources(const struct reg_endpoint *ep, struct nlb_cidr **out)
{
  *out = NULL;
  if (ep->n_allowed_sources == 0)
    return 0;
  *out = calloc(ep->n_allowed_sources, sizeof(**out));
  if (!*out)
    return -ENOMEM;
  for (size_t i = 0; i < ep->n_allowed_sources; i++)
    if (nlb_cidr_parse(ep->allowed_sources[i], &(*out)[i]) < 0) {
      free(*out);
      *out = NULL;
      return -EINVAL;
    }
  return 0;
}

/* The identity of the namespace /run/netns/<netns> names now. */
static int netns_identity(const char *netns, dev_t *dev, ino_t *ino)
{
  char path[PATH_MAX];
  struct stat st;

  snprintf(path, sizeof(path), "/run/netns/%s", netns);
  if (stat(path, &st) < 0)
    return -errno;
  *dev = st.st_dev;
  *ino = st.st_ino;
  return 0;
}

static void watch(struct nlb_endpoints *eps, const struct reg_endpoint *ep,
                  dev_t dev, ino_t ino)
{
  struct watched_endpoint *w;

  if (eps->n_watched == eps->watched_capacity) {
    size_t capacity = eps->watched_capacity ? eps->watched_capacity * 2 : 8;
    struct watched_endpoint *grown =
        realloc(eps->watched, capacity * sizeof(*grown));
    if (!grown) {
      nlb_log_event(NLB_LOG_WARN,
                    "endpoint %s: out of memory, its namespace is not watched",
                    ep->id);
      return;
    }
    eps->watched = grown;
    eps->watched_capacity = capacity;
  }
  w = &eps->watched[eps->n_watched++];
  snprintf(w->id, sizeof(w->id), "%s", ep->id);
  snprintf(w->netns, sizeof(w->netns), "%s", ep->netns);
  w->dev = dev;
  w->ino = ino;
  w->missing = 0;
}

static void unwatch(struct nlb_endpoints *eps, const char *id)
{
  for (size_t i = 0; i < eps->n_watched; i++)
    if (strcmp(eps->watched[i].id, id) == 0) {
      eps->watched[i] = eps->watched[--eps->n_watched];
      return;
    }
}

static void fail_endpoint(struct nlb_endpoints *eps, const char *id,
                          const char *reason)
{
  struct reg_error err;
  nlb_log_event(NLB_LOG_WARN, "endpoint %s failed: %s", id, reason);
  if (reg_endpoint_fail(eps->reg, id, reason, &err) < 0)
    nlb_log_event(NLB_LOG_ERROR, "endpoint %s: cannot record failure: %s", id,
                  err.message);
}

static void open_endpoint(struct nlb_endpoints *eps,
                          const struct reg_endpoint *ep)
{
  size_t n_workers = nlb_router_worker_count(eps->router);
  union nlb_sockaddr *addrs = NULL;
  struct nlb_cidr *sources = NULL;
  int *fds = NULL;
  char reason[REG_REASON_BUF] = "";
  int failed_index = -1;
  dev_t ns_dev = 0;
  ino_t ns_ino = 0;
  bool ns_known = false;
  int rc;

  bool already_open = nlb_router_has_endpoint(eps->router, ep->id);
  uint16_t *ports = NULL;
  size_t n_ports = 0;

  if (ep->n_ports == 0) {
    fail_endpoint(eps, ep->id, "its load balancer has no listener ports");
    return;
  }
  /* An open endpoint only lacks the ports a reload added to its load
   * balancer; those open without touching the others or their flows. */
  ports = calloc(ep->n_ports, sizeof(*ports));
  addrs = calloc(ep->n_ports, sizeof(*addrs));
  fds = calloc(ep->n_ports * n_workers, sizeof(*fds));
  if (!ports || !addrs || !fds)
    goto out;
  for (size_t p = 0; p < ep->n_ports; p++)
    if (!nlb_router_endpoint_has_port(eps->router, ep->id, ep->ports[p]))
      ports[n_ports++] = ep->ports[p];
  if (n_ports == 0)
    goto out;
  for (size_t p = 0; p < n_ports; p++)
    if (nlb_addr_parse_ip(ep->address, ports[p], &addrs[p]) < 0) {
      snprintf(reason, sizeof(reason), "bad address %s", ep->address);
      fail_endpoint(eps, ep->id, reason);
      goto out;
    }
  if (parse_sources(ep, &sources) < 0) {
    fail_endpoint(eps, ep->id, "bad allowed_sources in the store");
    goto out;
  }
  /* Taken before entering it: if the name moves in between, the next
   * check sees a different namespace and opens the endpoint again. */
  if (ep->netns[0])
    ns_known = netns_identity(ep->netns, &ns_dev, &ns_ino) == 0;
  rc = nlb_netns_open_listeners(ep->netns, addrs, n_ports, n_workers, fds,
                                &failed_index);
  if (rc < 0) {
    char where[NLB_ADDR_TEXT_MAX] = "";
    if (failed_index >= 0)
      nlb_addr_format(&addrs[failed_index], where, sizeof(where));
    if (rc == -ENOENT && ep->netns[0] && failed_index < 0)
      snprintf(reason, sizeof(reason),
               "network namespace %s does not exist (/run/netns/%s)", ep->netns,
               ep->netns);
    else
      snprintf(reason, sizeof(reason), "cannot listen on %s%s%s%s: %s",
               where[0] ? where : ep->address, ep->netns[0] ? " in netns " : "",
               ep->netns, ep->netns[0] ? "" : " (host)", strerror(-rc));
    fail_endpoint(eps, ep->id, reason);
    goto out;
  }
  rc = nlb_router_add_endpoint(
      eps->router, ep->id, ep->load_balancer, &addrs[0], ports, n_ports,
      sources, ep->n_allowed_sources, fds, now_ms(eps), reason, sizeof(reason));
  if (rc < 0) {
    if (rc != -EEXIST)
      fail_endpoint(eps, ep->id, reason);
    goto out;
  }
  if (ns_known && !already_open)
    watch(eps, ep, ns_dev, ns_ino);
  nlb_log_event(NLB_LOG_INFO,
                "endpoint %s of service %s open on %s (%zu %sports) in %s%s",
                ep->id, ep->service, ep->address, n_ports,
                already_open ? "more " : "",
                ep->netns[0] ? "netns " : "the host network", ep->netns);
out:
  free(ports);
  free(addrs);
  free(fds);
  free(sources);
}

static void on_event(const struct reg_event *event, void *arg)
{
  struct nlb_endpoints *eps = arg;
  struct reg_endpoint ep;

  nlb_log_event(NLB_LOG_INFO,
                "registry #%llu %s: endpoint %s of service %s by %s -> %s%s%s",
                (unsigned long long)event->seq,
                reg_event_type_name(event->type), event->endpoint_id,
                event->service_id, event->principal,
                reg_state_name(event->state), event->reason[0] ? ": " : "",
                event->reason);
  if (event->state == REG_EP_AVAILABLE) {
    if (reg_endpoint_get(eps->reg, event->endpoint_id, &ep) == 0) {
      if (ep.state == REG_EP_AVAILABLE)
        open_endpoint(eps, &ep);
      reg_endpoint_release(&ep);
    }
    return;
  }
  if (event->state == REG_EP_PENDING_ACCEPTANCE)
    return;
  unwatch(eps, event->endpoint_id);
  if (nlb_router_remove_endpoint(eps->router, event->endpoint_id,
                                 now_ms(eps)) == 0)
    nlb_log_event(NLB_LOG_INFO,
                  "endpoint %s closed (%s): listeners closed, flows reset",
                  event->endpoint_id, reg_state_name(event->state));
}

/* What a restart would do, without one: an endpoint whose namespace name
 * is gone fails; one whose name now stands for another namespace (deleted
 * and added again) is opened again in the new one. Its listeners in the
 * old namespace could never be reached by anyone entering it by name. */
static void check_namespace(struct nlb_endpoints *eps,
                            const struct watched_endpoint *watched)
{
  char reason[REG_REASON_BUF];
  struct reg_endpoint ep;
  dev_t dev = 0;
  ino_t ino = 0;
  int rc = netns_identity(watched->netns, &dev, &ino);

  struct watched_endpoint *entry = NULL;
  for (size_t i = 0; i < eps->n_watched; i++)
    if (strcmp(eps->watched[i].id, watched->id) == 0)
      entry = &eps->watched[i];
  if (rc == 0 && dev == watched->dev && ino == watched->ino) {
    if (entry)
      entry->missing = 0;
    return;
  }
  if (rc < 0 && entry && ++entry->missing < NETNS_MISSING_CHECKS)
    return;
  if (rc < 0) {
    snprintf(reason, sizeof(reason),
             "network namespace %s was deleted (/run/netns/%s: %s)",
             watched->netns, watched->netns, strerror(-rc));
    fail_endpoint(eps, watched->id, reason);
    return;
  }
  nlb_log_event(NLB_LOG_WARN,
                "endpoint %s: network namespace %s was replaced; opening the "
                "endpoint in the new one (its flows are reset)",
                watched->id, watched->netns);
  nlb_router_remove_endpoint(eps->router, watched->id, now_ms(eps));
  if (reg_endpoint_get(eps->reg, watched->id, &ep) < 0) {
    unwatch(eps, watched->id);
    return;
  }
  unwatch(eps, watched->id);
  if (ep.state == REG_EP_AVAILABLE)
    open_endpoint(eps, &ep);
  reg_endpoint_release(&ep);
}

void nlb_endpoints_tick(struct nlb_endpoints *eps, uint64_t now_ms)
{
  if (now_ms - eps->last_netns_check_ms < NETNS_CHECK_MS)
    return;
  eps->last_netns_check_ms = now_ms;
  /* Backwards, on a copy: failing or reopening an endpoint changes the
   * array (removal moves the last entry into the slot, reopening appends),
   * so every entry not yet visited keeps a lower index. */
  for (size_t i = eps->n_watched; i-- > 0;) {
    struct watched_endpoint watched;
    if (i >= eps->n_watched)
      continue;
    watched = eps->watched[i];
    check_namespace(eps, &watched);
  }
}

void nlb_endpoints_resync(struct nlb_endpoints *eps)
{
  struct reg_endpoint *list = NULL;
  size_t n = 0;
  int rc = reg_available_endpoints(eps->reg, &list, &n);

  if (rc < 0) {
    nlb_log_event(NLB_LOG_ERROR, "cannot list available endpoints: %s",
                  strerror(-rc));
    return;
  }
  for (size_t i = 0; i < n; i++)
    open_endpoint(eps, &list[i]);
  reg_endpoints_free(list, n);
}

void nlb_endpoints_refresh(struct nlb_endpoints *eps, const char *id)
{
  struct reg_endpoint ep;
  struct nlb_cidr *sources = NULL;

  if (reg_endpoint_get(eps->reg, id, &ep) < 0)
    return;
  if (ep.state == REG_EP_AVAILABLE && parse_sources(&ep, &sources) == 0 &&
      nlb_router_set_endpoint_sources(eps->router, id, sources,
                                      ep.n_allowed_sources, now_ms(eps)) == 0)
    nlb_log_event(NLB_LOG_INFO, "endpoint %s: %zu allowed source ranges", id,
                  ep.n_allowed_sources);
  free(sources);
  reg_endpoint_release(&ep);
}

struct nlb_endpoints *nlb_endpoints_start(struct reg *reg,
                                          struct nlb_router *router,
                                          uint64_t (*clock)(void *),
                                          void *clock_arg)
{
  struct nlb_endpoints *eps = calloc(1, sizeof(*eps));
  if (!eps)
    return NULL;
  eps->reg = reg;
  eps->router = router;
  eps->clock = clock;
  eps->clock_arg = clock_arg;
  if (reg_observe(reg, on_event, eps) < 0) {
    free(eps);
    return NULL;
  }
  nlb_endpoints_resync(eps);
  return eps;
}

void nlb_endpoints_free(struct nlb_endpoints *eps)
{
  if (!eps)
    return;
  reg_unobserve(eps->reg, on_event, eps);
  free(eps->watched);
  free(eps);
}
