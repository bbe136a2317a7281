#include "nlb/control/endpoints.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nlb/common/hmap.h"
#include "nlb/list.h"
#include "nlb/log.h"
#include "nlb/control/netns.h"

/* How often namespaces are looked at. */
#define NETNS_CHECK_MS 1000
/* A name gone for this many checks in a row (a second apart) fails its
 * endpoints: `ip netns del NAME; ip netns add NAME` leaves a short gap that
 * must read as a replacement, not a deletion. */
#define NETNS_MISSING_CHECKS 2

/* A namespace that endpoints live in, and which namespace its name stood
 * for when they were opened. */
struct netns_watch {
  struct nlb_hnode node; /* nlb_endpoints.namespaces, by name */
  char name[REG_NAME_BUF];
  dev_t dev;
  ino_t ino;
  bool known;       /* dev/ino were read */
  unsigned missing; /* checks in a row that found no such name */
  struct nlb_list endpoints;
};

/* An available endpoint this node knows of: open, or failed here. */
struct endpoint {
  struct nlb_hnode node; /* nlb_endpoints.endpoints, by id */
  struct nlb_list netns_link;
  struct netns_watch *watch; /* NULL: host network */
  struct reg_endpoint row;   /* as last applied */
  bool open;                 /* listeners open on this node */
  bool seen;                 /* in the resync being applied */
  int reported;              /* -1 none yet, 0 failed, 1 open */
  char reason[REG_REASON_BUF];
};

struct nlb_endpoints {
  struct nlb_endpoints_settings settings;
  struct nlb_hmap endpoints;
  struct nlb_hmap namespaces;
  size_t n_open;
  uint64_t last_netns_check_ms;
  /* Placements to report at the end of the current apply or tick. */
  struct reg_placement_report *reports;
  char (*report_ids)[REG_ID_BUF];
  char (*report_reasons)[REG_REASON_BUF];
  size_t n_reports, cap_reports;
};

static uint64_t now_ms(struct nlb_endpoints *eps)
{
  return eps->settings.clock(eps->settings.arg);
}

/* ---- lookups ------------------------------------------------------------ */

static bool endpoint_is(const struct nlb_hnode *node, const void *id)
{
  return strcmp(NLB_CONTAINER_OF(node, struct endpoint, node)->row.id, id) == 0;
}

static struct endpoint *find_endpoint(struct nlb_endpoints *eps, const char *id)
{
  struct nlb_hnode *node =
      nlb_hmap_find(&eps->endpoints, nlb_hash_str(id), endpoint_is, id);

  return node ? NLB_CONTAINER_OF(node, struct endpoint, node) : NULL;
}

static bool watch_is(const struct nlb_hnode *node, const void *name)
{
  return strcmp(NLB_CONTAINER_OF(node, struct netns_watch, node)->name, name) ==
         0;
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

static struct netns_watch *watch_for(struct nlb_endpoints *eps,
                                     const char *name)
{
  struct nlb_hnode *node =
      nlb_hmap_find(&eps->namespaces, nlb_hash_str(name), watch_is, name);
  struct netns_watch *w;

  if (node)
    return NLB_CONTAINER_OF(node, struct netns_watch, node);
  if ((w = calloc(1, sizeof(*w))) == NULL)
    return NULL;
  snprintf(w->name, sizeof(w->name), "%s", name);
  nlb_list_init(&w->endpoints);
  w->known = netns_identity(name, &w->dev, &w->ino) == 0;
  if (nlb_hmap_insert(&eps->namespaces, &w->node, nlb_hash_str(name)) < 0) {
    free(w);
    return NULL;
  }
  return w;
}

static void unwatch(struct nlb_endpoints *eps, struct endpoint *ep)
{
  struct netns_watch *w = ep->watch;

  if (w == NULL)
    return;
  nlb_list_remove(&ep->netns_link);
  ep->watch = NULL;
  if (nlb_list_empty(&w->endpoints)) {
    nlb_hmap_remove(&eps->namespaces, &w->node);
    free(w);
  }
}

/* ---- placements --------------------------------------------------------- */

static void queue_report(struct nlb_endpoints *eps, struct endpoint *ep,
                         bool open, const char *reason)
{
  size_t i = eps->n_reports;

  if (ep->reported == (open ? 1 : 0) &&
      (open || strcmp(ep->reason, reason) == 0))
    return;
  if (i == eps->cap_reports) {
    size_t cap = eps->cap_reports ? eps->cap_reports * 2 : 16;
    void *a = realloc(eps->reports, cap * sizeof(*eps->reports));
    void *b =
        a ? realloc(eps->report_ids, cap * sizeof(*eps->report_ids)) : NULL;
    void *c =
        b ? realloc(eps->report_reasons, cap * sizeof(*eps->report_reasons))
          : NULL;
    if (a)
      eps->reports = a;
    if (b)
      eps->report_ids = b;
    if (c)
      eps->report_reasons = c;
    if (!c)
      return; /* the next change reports again */
    eps->cap_reports = cap;
  }
  ep->reported = open ? 1 : 0;
  snprintf(ep->reason, sizeof(ep->reason), "%s", open ? "" : reason);
  snprintf(eps->report_ids[i], REG_ID_BUF, "%s", ep->row.id);
  snprintf(eps->report_reasons[i], REG_REASON_BUF, "%s", ep->reason);
  eps->n_reports++;
}

static void flush_reports(struct nlb_endpoints *eps)
{
  for (size_t i = 0; i < eps->n_reports; i++) {
    eps->reports[i].endpoint_id = eps->report_ids[i];
    eps->reports[i].reason = eps->report_reasons[i];
    eps->reports[i].open = eps->report_reasons[i][0] == '\0';
  }
  if (eps->n_reports > 0 && eps->settings.report)
    eps->settings.report(eps->reports, eps->n_reports, eps->settings.arg);
  eps->n_reports = 0;
}

/* ---- opening and closing ------------------------------------------------ */

/* Parses the endpoint's allowed sources; *out is malloc'd (NULL when
 * none). The registry stored them validated, so a parse failure is a
 * corrupt store: refuse rather than open the endpoint to everyone. */
static int parse_sources(const struct reg_endpoint *row, struct nlb_cidr **out)
{
  *out = NULL;
  if (row->n_allowed_sources == 0)
    return 0;
  *out = calloc(row->n_allowed_sources, sizeof(**out));
  if (!*out)
    return -ENOMEM;
  for (size_t i = 0; i < row->n_allowed_sources; i++)
    if (nlb_cidr_parse(row->allowed_sources[i], &(*out)[i]) < 0) {
      free(*out);
      *out = NULL;
      return -EINVAL;
    }
  return 0;
}

static void close_listeners(struct nlb_endpoints *eps, struct endpoint *ep,
                            const char *why)
{
  if (!ep->open)
    return;
  nlb_router_remove_endpoint(eps->settings.router, ep->row.id, now_ms(eps));
  ep->open = false;
  eps->n_open--;
  NLB_LOG_EVENT(NLB_LOG_INFO, "endpoint_close",
                "endpoint {endpoint} closed ({reason}): listeners closed, "
                "flows reset",
                NLB_LOG_STR("endpoint", ep->row.id),
                NLB_LOG_STR("reason", why));
}

static void log_open(const struct reg_endpoint *row, size_t n_ports, bool added)
{
  char message[160];
  snprintf(message, sizeof(message),
           "endpoint {endpoint} of service {service} open on {address} "
           "({ports} %sports) in %s",
           added ? "more " : "",
           row->netns[0] ? "netns {netns}" : "the host network");
  NLB_LOG_EVENT(
      NLB_LOG_INFO, "endpoint_open", message, NLB_LOG_STR("endpoint", row->id),
      NLB_LOG_STR("service", row->service),
      NLB_LOG_STR("address", row->address), NLB_LOG_UINT("ports", n_ports),
      NLB_LOG_STR("netns", row->netns[0] ? row->netns : NULL),
      NLB_LOG_BOOL("added_ports", added));
}

static void describe_failure(const struct reg_endpoint *row, int rc,
                             const union nlb_sockaddr *at, char *reason,
                             size_t len)
{
  char where[NLB_ADDR_TEXT_MAX] = "";

  if (at)
    nlb_addr_format(at, where, sizeof(where));
  if (rc == -ENOENT && row->netns[0] && at == NULL)
    snprintf(reason, len, "network namespace %s does not exist (/run/netns/%s)",
             row->netns, row->netns);
  else
    snprintf(reason, len, "cannot listen on %s%s%s%s: %s",
             where[0] ? where : row->address, row->netns[0] ? " in netns " : "",
             row->netns, row->netns[0] ? "" : " (host)", strerror(-rc));
}

/* Opens an endpoint's sockets in its namespace (nlb_router_open_fn). */
static int open_in_namespace(void *arg,
                             const struct nlb_listen_request *requests,
                             size_t n, int *fds, char *reason, size_t len)
{
  const struct reg_endpoint *row = arg;
  int failed_index = -1;
  int rc =
      nlb_netns_open_listeners(row->netns, requests, n, fds, &failed_index);

  if (rc < 0)
    describe_failure(row, rc,
                     failed_index >= 0 ? &requests[failed_index].addr : NULL,
                     reason, len);
  return rc;
}

/* Opens the ports of ep->row that have no listener yet. */
static int open_ports(struct nlb_endpoints *eps, struct endpoint *ep,
                      char *reason, size_t len)
{
  const struct reg_endpoint *row = &ep->row;
  struct nlb_router *router = eps->settings.router;
  uint16_t *ports = calloc(row->n_ports + 1, sizeof(*ports));
  union nlb_sockaddr address;
  struct nlb_cidr *sources = NULL;
  size_t n_ports = 0;
  int rc = -ENOMEM;

  if (!ports)
    goto out;
  for (size_t p = 0; p < row->n_ports; p++)
    if (!nlb_router_endpoint_has_port(router, row->id, row->ports[p]))
      ports[n_ports++] = row->ports[p];
  rc = 0;
  if (n_ports == 0)
    goto out;
  if (nlb_addr_parse_ip(row->address, 0, &address) < 0) {
    snprintf(reason, len, "bad address %s", row->address);
    rc = -EINVAL;
    goto out;
  }
  if ((rc = parse_sources(row, &sources)) < 0) {
    snprintf(reason, len, "bad allowed_sources in the store");
    goto out;
  }
  rc = nlb_router_add_endpoint(router, row->id, row->load_balancer, &address,
                               ports, n_ports, sources, row->n_allowed_sources,
                               open_in_namespace, (void *)row, now_ms(eps),
                               reason, len);
  if (rc == 0)
    log_open(row, n_ports, ep->open);
out:
  free(ports);
  free(sources);
  return rc;
}

static bool same_sources(const struct reg_endpoint *a,
                         const struct reg_endpoint *b)
{
  if (a->n_allowed_sources != b->n_allowed_sources)
    return false;
  for (size_t i = 0; i < a->n_allowed_sources; i++)
    if (strcmp(a->allowed_sources[i], b->allowed_sources[i]) != 0)
      return false;
  return true;
}

static void update_sources(struct nlb_endpoints *eps, struct endpoint *ep)
{
  struct nlb_cidr *sources = NULL;

  if (parse_sources(&ep->row, &sources) == 0 &&
      nlb_router_set_endpoint_sources(eps->settings.router, ep->row.id, sources,
                                      ep->row.n_allowed_sources,
                                      now_ms(eps)) == 0)
    NLB_LOG_EVENT(NLB_LOG_INFO, "endpoint_sources",
                  "endpoint {endpoint}: {sources} allowed source ranges",
                  NLB_LOG_STR("endpoint", ep->row.id),
                  NLB_LOG_UINT("sources", ep->row.n_allowed_sources));
  free(sources);
}

/* Takes a deep copy of row as ep's row; false on ENOMEM. */
static bool take_row(struct endpoint *ep, const struct reg_endpoint *row)
{
  struct reg_endpoint copy = *row;

  copy.ports = NULL;
  copy.allowed_sources = NULL;
  copy.placements = NULL;
  copy.n_placements = 0;
  copy.n_allowed_sources = 0;
  copy.dns_names = NULL; /* the DNS responder's business, not kept here */
  copy.n_dns_names = 0;
  if (row->n_ports &&
      !(copy.ports = malloc(row->n_ports * sizeof(*copy.ports))))
    return false;
  if (row->n_ports)
    memcpy(copy.ports, row->ports, row->n_ports * sizeof(*copy.ports));
  if (row->n_allowed_sources &&
      !(copy.allowed_sources =
            calloc(row->n_allowed_sources, sizeof(*copy.allowed_sources)))) {
    free(copy.ports);
    return false;
  }
  for (size_t i = 0; i < row->n_allowed_sources; i++) {
    if (!(copy.allowed_sources[i] = strdup(row->allowed_sources[i]))) {
      reg_endpoint_release(&copy);
      return false;
    }
    copy.n_allowed_sources++;
  }
  reg_endpoint_release(&ep->row);
  ep->row = copy;
  return true;
}

/* Opens what is missing; reports the outcome. */
static void try_open(struct nlb_endpoints *eps, struct endpoint *ep)
{
  char reason[REG_REASON_BUF] = "";
  int rc;

  if (ep->row.n_ports == 0) {
    queue_report(eps, ep, false, "its load balancer has no listener ports");
    return;
  }
  rc = open_ports(eps, ep, reason, sizeof(reason));
  if (rc < 0 && rc != -EEXIST) {
    NLB_LOG_EVENT(NLB_LOG_WARN, "endpoint_failed",
                  "endpoint {endpoint} cannot open here: {reason}",
                  NLB_LOG_STR("endpoint", ep->row.id),
                  NLB_LOG_STR("reason", reason[0] ? reason : strerror(-rc)));
    queue_report(eps, ep, false, reason[0] ? reason : strerror(-rc));
    return;
  }
  if (!ep->open) {
    ep->open = true;
    eps->n_open++;
  }
  queue_report(eps, ep, true, "");
}

static void forget(struct nlb_endpoints *eps, struct endpoint *ep,
                   const char *why)
{
  close_listeners(eps, ep, why);
  unwatch(eps, ep);
  nlb_hmap_remove(&eps->endpoints, &ep->node);
  reg_endpoint_release(&ep->row);
  free(ep);
}

static struct endpoint *new_endpoint(struct nlb_endpoints *eps,
                                     const struct reg_endpoint *row)
{
  struct endpoint *ep = calloc(1, sizeof(*ep));

  if (ep == NULL)
    return NULL;
  ep->reported = -1;
  nlb_list_init(&ep->netns_link);
  if (!take_row(ep, row) ||
      nlb_hmap_insert(&eps->endpoints, &ep->node, nlb_hash_str(row->id)) < 0) {
    reg_endpoint_release(&ep->row);
    free(ep);
    return NULL;
  }
  if (row->netns[0] && (ep->watch = watch_for(eps, row->netns)) != NULL)
    nlb_list_append(&ep->watch->endpoints, &ep->netns_link);
  return ep;
}

/* Makes this node match an available endpoint's row. */
static void ensure_open(struct nlb_endpoints *eps,
                        const struct reg_endpoint *row)
{
  struct endpoint *ep = find_endpoint(eps, row->id);
  bool sources_changed;

  if (ep != NULL && (strcmp(ep->row.netns, row->netns) != 0 ||
                     strcmp(ep->row.address, row->address) != 0)) {
    forget(eps, ep, "moved"); /* its network's namespace changed */
    ep = NULL;
  }
  if (ep == NULL) {
    if ((ep = new_endpoint(eps, row)) == NULL) {
      NLB_LOG_EVENT(NLB_LOG_ERROR, "out_of_memory",
                    "endpoint {endpoint}: out of memory",
                    NLB_LOG_STR("endpoint", row->id));
      return;
    }
    try_open(eps, ep);
    return;
  }
  sources_changed = !same_sources(&ep->row, row);
  if (!take_row(ep, row))
    return;
  if (ep->open && sources_changed)
    update_sources(eps, ep);
  /* Ports a reload added, or a second chance after a failure here. */
  try_open(eps, ep);
}

static void ensure_closed(struct nlb_endpoints *eps, const char *id,
                          enum reg_endpoint_state state)
{
  struct endpoint *ep = find_endpoint(eps, id);

  if (ep != NULL)
    forget(eps, ep, reg_state_name(state));
}

/* ---- the change feed ---------------------------------------------------- */

static const struct reg_endpoint *row_of(const struct reg_changes *c,
                                         const char *id)
{
  for (size_t i = 0; i < c->n_endpoints; i++)
    if (strcmp(c->endpoints[i].id, id) == 0)
      return &c->endpoints[i];
  return NULL;
}

static void log_event(const struct reg_event *event)
{
  if (event->endpoint_id[0] == '\0')
    return;
  NLB_LOG_EVENT(NLB_LOG_INFO, "registry_event",
                event->reason[0]
                    ? "registry #{seq} {type}: endpoint {endpoint} of service "
                      "{service} by {principal} -> {state}: {reason}"
                    : "registry #{seq} {type}: endpoint {endpoint} of service "
                      "{service} by {principal} -> {state}",
                NLB_LOG_UINT("seq", event->seq),
                NLB_LOG_STR("type", reg_event_type_name(event->type)),
                NLB_LOG_STR("endpoint", event->endpoint_id),
                NLB_LOG_STR("service", event->service_id),
                NLB_LOG_STR("principal", event->principal),
                NLB_LOG_STR("state", reg_state_name(event->state)),
                NLB_LOG_STR("reason", event->reason[0] ? event->reason : NULL));
}

static void apply_resync(struct nlb_endpoints *eps, const struct reg_changes *c)
{
  struct nlb_hnode *node, *next;

  for (node = nlb_hmap_next(&eps->endpoints, NULL); node; node = next) {
    next = nlb_hmap_next(&eps->endpoints, node);
    NLB_CONTAINER_OF(node, struct endpoint, node)->seen = false;
  }
  for (size_t i = 0; i < c->n_endpoints; i++) {
    struct endpoint *ep;

    ensure_open(eps, &c->endpoints[i]);
    if ((ep = find_endpoint(eps, c->endpoints[i].id)) != NULL)
      ep->seen = true;
  }
  for (node = nlb_hmap_next(&eps->endpoints, NULL); node; node = next) {
    struct endpoint *ep = NLB_CONTAINER_OF(node, struct endpoint, node);

    next = nlb_hmap_next(&eps->endpoints, node);
    if (!ep->seen)
      forget(eps, ep, "no longer available");
  }
}

void nlb_endpoints_apply(struct nlb_endpoints *eps, const struct reg_changes *c)
{
  if (c->resync) {
    apply_resync(eps, c);
  } else {
    for (size_t i = 0; i < c->n_events; i++) {
      const struct reg_event *event = &c->events[i];
      const struct reg_endpoint *row;

      if (event->endpoint_id[0] == '\0')
        continue;
      log_event(event);
      row = row_of(c, event->endpoint_id);
      if (row && row->state == REG_EP_AVAILABLE)
        ensure_open(eps, row);
      else
        ensure_closed(eps, event->endpoint_id,
                      row ? row->state : REG_EP_DELETED);
    }
  }
  flush_reports(eps);
}

/* ---- namespaces --------------------------------------------------------- */

/* A namespace's name now stands for another namespace: what a restart
 * would do, without one. Its listeners in the old namespace could never be
 * reached by anyone entering it by name. */
static void reopen_all(struct nlb_endpoints *eps, struct netns_watch *w)
{
  struct nlb_list *pos, *tmp;

  NLB_LIST_FOREACH_SAFE(pos, tmp, &w->endpoints)
  {
    struct endpoint *ep = NLB_CONTAINER_OF(pos, struct endpoint, netns_link);

    if (ep->open)
      NLB_LOG_EVENT(NLB_LOG_WARN, "endpoint_netns_replaced",
                    "endpoint {endpoint}: network namespace {netns} was "
                    "replaced; opening the endpoint in the new one (its flows "
                    "are reset)",
                    NLB_LOG_STR("endpoint", ep->row.id),
                    NLB_LOG_STR("netns", w->name));
    close_listeners(eps, ep, "namespace replaced");
    try_open(eps, ep);
  }
}

static void fail_all(struct nlb_endpoints *eps, struct netns_watch *w, int rc)
{
  char reason[REG_REASON_BUF];
  struct nlb_list *pos, *tmp;

  snprintf(reason, sizeof(reason),
           "network namespace %s was deleted (/run/netns/%s: %s)", w->name,
           w->name, strerror(-rc));
  NLB_LIST_FOREACH_SAFE(pos, tmp, &w->endpoints)
  {
    struct endpoint *ep = NLB_CONTAINER_OF(pos, struct endpoint, netns_link);

    if (!ep->open)
      continue;
    NLB_LOG_EVENT(NLB_LOG_WARN, "endpoint_failed",
                  "endpoint {endpoint} failed here: {reason}",
                  NLB_LOG_STR("endpoint", ep->row.id),
                  NLB_LOG_STR("reason", reason));
    close_listeners(eps, ep, "namespace deleted");
    queue_report(eps, ep, false, reason);
  }
}

static void check_namespace(struct nlb_endpoints *eps, struct netns_watch *w)
{
  dev_t dev = 0;
  ino_t ino = 0;
  int rc = netns_identity(w->name, &dev, &ino);

  if (rc == 0 && w->known && dev == w->dev && ino == w->ino) {
    w->missing = 0;
    return;
  }
  if (rc < 0) {
    if (++w->missing == NETNS_MISSING_CHECKS)
      fail_all(eps, w, rc);
    return;
  }
  /* There again (replaced, or back after it was deleted). */
  w->missing = 0;
  w->known = true;
  w->dev = dev;
  w->ino = ino;
  reopen_all(eps, w);
}

void nlb_endpoints_tick(struct nlb_endpoints *eps, uint64_t now)
{
  struct nlb_hnode *node, *next;

  if (now - eps->last_netns_check_ms < NETNS_CHECK_MS)
    return;
  eps->last_netns_check_ms = now;
  for (node = nlb_hmap_next(&eps->namespaces, NULL); node; node = next) {
    next = nlb_hmap_next(&eps->namespaces, node);
    check_namespace(eps, NLB_CONTAINER_OF(node, struct netns_watch, node));
  }
  flush_reports(eps);
}

size_t nlb_endpoints_open_count(const struct nlb_endpoints *eps)
{
  return eps->n_open;
}

struct nlb_endpoints *
nlb_endpoints_create(const struct nlb_endpoints_settings *settings)
{
  struct nlb_endpoints *eps = calloc(1, sizeof(*eps));

  if (!eps)
    return NULL;
  eps->settings = *settings;
  nlb_hmap_init(&eps->endpoints);
  nlb_hmap_init(&eps->namespaces);
  return eps;
}

void nlb_endpoints_free(struct nlb_endpoints *eps)
{
  struct nlb_hnode *node, *next;

  if (!eps)
    return;
  for (node = nlb_hmap_next(&eps->endpoints, NULL); node; node = next) {
    struct endpoint *ep = NLB_CONTAINER_OF(node, struct endpoint, node);

    next = nlb_hmap_next(&eps->endpoints, node);
    reg_endpoint_release(&ep->row);
    free(ep);
  }
  for (node = nlb_hmap_next(&eps->namespaces, NULL); node; node = next) {
    next = nlb_hmap_next(&eps->namespaces, node);
    free(NLB_CONTAINER_OF(node, struct netns_watch, node));
  }
  nlb_hmap_free(&eps->endpoints);
  nlb_hmap_free(&eps->namespaces);
  free(eps->reports);
  free(eps->report_ids);
  free(eps->report_reasons);
  free(eps);
}
