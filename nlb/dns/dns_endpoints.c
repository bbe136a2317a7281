#include "nlb/dns/dns-endpoints.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/dns/dns.h"
#include "nlb/common/hmap.h"
#include "nlb/list.h"
#include "nlb/log.h"

/* An endpoint whose names are served: what was added, to be removed
 * exactly. */
struct served {
  struct nlb_hnode node; /* nlb_dns_endpoints.served, by id */
  char id[REG_ID_BUF];
  char network[REG_NAME_BUF];
  union nlb_sockaddr address;
  char **names;
  size_t n_names;
  bool keep; /* a resync's mark */
};

struct network {
  char name[REG_NAME_BUF];
  char netns[REG_NAME_BUF];
  union nlb_sockaddr address;
};

struct nlb_dns_endpoints {
  uv_loop_t *loop;
  struct nlb_dns *dns; /* NULL: no zone configured */
  char *zone;
  uint32_t ttl, negative_ttl;
  bool access_json;
  struct network *networks;
  size_t n_networks;
  struct nlb_hmap served;
  size_t n_pairs;
  /* Responders a reconfiguration replaced, closing. */
  struct nlb_dns **retired;
  size_t n_retired;
  bool shut;
};

/* ---- what is served ----------------------------------------------------- */

static bool served_is(const struct nlb_hnode *node, const void *id)
{
  return strcmp(NLB_CONTAINER_OF(node, struct served, node)->id, id) == 0;
}

static struct served *find(const struct nlb_dns_endpoints *names,
                           const char *id)
{
  struct nlb_hnode *node =
      nlb_hmap_find(&names->served, nlb_hash_str(id), served_is, id);

  return node ? NLB_CONTAINER_OF(node, struct served, node) : NULL;
}

static const struct network *network_of(const struct nlb_dns_endpoints *names,
                                        const char *name)
{
  for (size_t i = 0; i < names->n_networks; i++)
    if (strcmp(names->networks[i].name, name) == 0)
      return &names->networks[i];
  return NULL;
}

/* Whether row's names belong in a responder here. */
static bool wanted(const struct nlb_dns_endpoints *names,
                   const struct reg_endpoint *row)
{
  return names->dns && row->state == REG_EP_AVAILABLE && row->n_dns_names > 0 &&
         network_of(names, row->network) != NULL;
}

static bool same(const struct served *s, const struct reg_endpoint *row)
{
  union nlb_sockaddr address;

  if (strcmp(s->network, row->network) != 0 || s->n_names != row->n_dns_names ||
      nlb_addr_parse_ip(row->address, 0, &address) < 0 ||
      !nlb_addr_equal(&address, &s->address))
    return false;
  for (size_t i = 0; i < s->n_names; i++)
    if (strcmp(s->names[i], row->dns_names[i]) != 0)
      return false;
  return true;
}

static void free_served(struct served *s)
{
  for (size_t i = 0; i < s->n_names; i++)
    free(s->names[i]);
  free(s->names);
  free(s);
}

/* Forgets s; its records go too unless the responder took them along
 * (a network removed, a responder replaced). */
static void unserve(struct nlb_dns_endpoints *names, struct served *s,
                    bool records)
{
  for (size_t i = 0; records && i < s->n_names; i++)
    nlb_dns_remove_record(names->dns, s->network, s->names[i], &s->address);
  names->n_pairs -= s->n_names;
  nlb_hmap_remove(&names->served, &s->node);
  free_served(s);
}

static void log_trouble(const struct reg_endpoint *row, const char *name,
                        int rc)
{
  NLB_LOG_EVENT(NLB_LOG_WARN, "dns_record_failed",
                "dns {network}: cannot serve {name} for endpoint {endpoint}: "
                "{error}",
                NLB_LOG_STR("network", row->network), NLB_LOG_STR("name", name),
                NLB_LOG_STR("endpoint", row->id),
                NLB_LOG_STR("error", strerror(-rc)));
}

/* Adds row's records and remembers what was added. */
static void serve(struct nlb_dns_endpoints *names,
                  const struct reg_endpoint *row)
{
  struct served *s = calloc(1, sizeof(*s));
  int rc = -ENOMEM;

  if (s == NULL ||
      (s->names = calloc(row->n_dns_names, sizeof(char *))) == NULL) {
    free(s);
    log_trouble(row, row->dns_names[0], rc);
    return;
  }
  snprintf(s->id, sizeof(s->id), "%s", row->id);
  snprintf(s->network, sizeof(s->network), "%s", row->network);
  if ((rc = nlb_addr_parse_ip(row->address, 0, &s->address)) < 0 ||
      (rc = nlb_hmap_insert(&names->served, &s->node, nlb_hash_str(s->id))) <
          0) {
    free_served(s);
    log_trouble(row, row->dns_names[0], rc);
    return;
  }
  for (size_t i = 0; i < row->n_dns_names; i++) {
    const char *name = row->dns_names[i];

    if ((rc = nlb_dns_add_record(names->dns, s->network, name, &s->address)) <
        0) {
      log_trouble(row, name, rc);
      continue;
    }
    if ((s->names[s->n_names] = strdup(name)) == NULL) {
      nlb_dns_remove_record(names->dns, s->network, name, &s->address);
      log_trouble(row, name, -ENOMEM);
      continue;
    }
    s->n_names++;
    names->n_pairs++;
  }
}

/* The second pass of every apply: what must be served and is not. */
static void serve_missing(struct nlb_dns_endpoints *names,
                          const struct reg_changes *c)
{
  for (size_t i = 0; i < c->n_endpoints; i++)
    if (wanted(names, &c->endpoints[i]) && !find(names, c->endpoints[i].id))
      serve(names, &c->endpoints[i]);
}

static void apply_resync(struct nlb_dns_endpoints *names,
                         const struct reg_changes *c)
{
  struct nlb_hnode *node, *next;

  for (node = nlb_hmap_next(&names->served, NULL); node; node = next) {
    next = nlb_hmap_next(&names->served, node);
    NLB_CONTAINER_OF(node, struct served, node)->keep = false;
  }
  for (size_t i = 0; i < c->n_endpoints; i++) {
    struct served *s = find(names, c->endpoints[i].id);

    if (s && wanted(names, &c->endpoints[i]) && same(s, &c->endpoints[i]))
      s->keep = true;
  }
  for (node = nlb_hmap_next(&names->served, NULL); node; node = next) {
    struct served *s = NLB_CONTAINER_OF(node, struct served, node);

    next = nlb_hmap_next(&names->served, node);
    if (!s->keep)
      unserve(names, s, true);
  }
  serve_missing(names, c);
}

/* Events name the endpoints that changed; rows hold those that still
 * exist (and, after a service's event, its available endpoints). An
 * endpoint named by an event and without a row is gone. */
static void apply_events(struct nlb_dns_endpoints *names,
                         const struct reg_changes *c)
{
  for (size_t i = 0; i < c->n_events; i++) {
    struct served *s = find(names, c->events[i].endpoint_id);

    if (s)
      s->keep = false; /* false: no row seen yet */
  }
  for (size_t i = 0; i < c->n_endpoints; i++) {
    const struct reg_endpoint *row = &c->endpoints[i];
    struct served *s = find(names, row->id);

    if (s == NULL)
      continue;
    s->keep = true;
    if (!wanted(names, row) || !same(s, row))
      unserve(names, s, true);
  }
  for (size_t i = 0; i < c->n_events; i++) {
    struct served *s = find(names, c->events[i].endpoint_id);

    if (s && !s->keep)
      unserve(names, s, true);
  }
  serve_missing(names, c);
}

void nlb_dns_endpoints_apply(struct nlb_dns_endpoints *names,
                             const struct reg_changes *c)
{
  if (names->dns == NULL)
    return;
  if (c->resync)
    apply_resync(names, c);
  else
    apply_events(names, c);
}

size_t nlb_dns_endpoints_count(const struct nlb_dns_endpoints *names)
{
  return names->n_pairs;
}

/* ---- configuration ------------------------------------------------------ */

/* Forgets what is served in network (NULL: everywhere) without touching
 * the records: they went with their network. */
static void forget(struct nlb_dns_endpoints *names, const char *network)
{
  struct nlb_hnode *node, *next;

  for (node = nlb_hmap_next(&names->served, NULL); node; node = next) {
    struct served *s = NLB_CONTAINER_OF(node, struct served, node);

    next = nlb_hmap_next(&names->served, node);
    if (network == NULL || strcmp(s->network, network) == 0)
      unserve(names, s, false);
  }
}

static void retire(struct nlb_dns_endpoints *names)
{
  struct nlb_dns **grown;

  if (names->dns == NULL)
    return;
  forget(names, NULL);
  nlb_dns_shutdown(names->dns);
  grown = realloc(names->retired, (names->n_retired + 1) * sizeof(*grown));
  if (grown == NULL) {
    /* Not freed: its handles are still closing. The memory stays. */
    names->dns = NULL;
    return;
  }
  names->retired = grown;
  names->retired[names->n_retired++] = names->dns;
  names->dns = NULL;
}

static bool same_network(const struct network *a,
                         const struct nlb_dns_endpoints_network *b)
{
  return strcmp(a->name, b->name) == 0 &&
         strcmp(a->netns, b->netns ? b->netns : "") == 0 &&
         nlb_addr_equal(&a->address, &b->address);
}

static const struct nlb_dns_endpoints_network *
setting_of(const struct nlb_dns_endpoints_settings *s, const char *name)
{
  for (size_t i = 0; i < s->n_networks; i++)
    if (strcmp(s->networks[i].name, name) == 0)
      return &s->networks[i];
  return NULL;
}

static bool settings_changed(const struct nlb_dns_endpoints *names,
                             const struct nlb_dns_endpoints_settings *s)
{
  return strcmp(names->zone ? names->zone : "", s->zone ? s->zone : "") != 0 ||
         names->ttl != s->ttl || names->negative_ttl != s->negative_ttl ||
         names->access_json != s->access_json;
}

static int new_responder(struct nlb_dns_endpoints *names,
                         const struct nlb_dns_endpoints_settings *s)
{
  struct nlb_dns_settings settings = {
      .zone = s->zone,
      .ttl = s->ttl,
      .negative_ttl = s->negative_ttl,
      .tcp_per_client = s->tcp_per_client,
      .access_json = s->access_json,
  };
  char *zone = strdup(s->zone);
  int rc;

  if (zone == NULL)
    return -ENOMEM;
  if ((rc = nlb_dns_new(names->loop, &settings, &names->dns)) < 0) {
    free(zone);
    return rc;
  }
  free(names->zone);
  names->zone = zone;
  names->ttl = s->ttl;
  names->negative_ttl = s->negative_ttl;
  names->access_json = s->access_json;
  names->n_networks = 0; /* the new responder has none yet */
  return 0;
}

/* Makes the responder's networks those of s: the ones gone or changed
 * go (and what they served with them), the new ones come. */
static int sync_networks(struct nlb_dns_endpoints *names,
                         const struct nlb_dns_endpoints_settings *s)
{
  struct network *v = calloc(s->n_networks + 1, sizeof(*v));
  size_t n = 0;
  int rc = 0;

  if (v == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < names->n_networks; i++) {
    const struct nlb_dns_endpoints_network *want =
        setting_of(s, names->networks[i].name);

    if (want && same_network(&names->networks[i], want))
      continue;
    forget(names, names->networks[i].name);
    nlb_dns_remove_network(names->dns, names->networks[i].name);
  }
  for (size_t i = 0; i < s->n_networks; i++) {
    const struct nlb_dns_endpoints_network *want = &s->networks[i];
    const struct network *had = network_of(names, want->name);
    int r = 0;

    if (had == NULL || !same_network(had, want))
      r = nlb_dns_add_network(names->dns, want->name, want->netns,
                              &want->address);
    if (r < 0) {
      char address[NLB_ADDR_TEXT_MAX];

      NLB_LOG_EVENT(
          NLB_LOG_ERROR, "dns_failed",
          "dns {network}: cannot serve it at {address}: {error}",
          NLB_LOG_STR("network", want->name),
          NLB_LOG_STR("address", nlb_addr_format(&want->address, address,
                                                 sizeof(address))),
          NLB_LOG_STR("error", strerror(-r)));
      rc = r;
      continue;
    }
    snprintf(v[n].name, sizeof(v[n].name), "%s", want->name);
    snprintf(v[n].netns, sizeof(v[n].netns), "%s",
             want->netns ? want->netns : "");
    v[n++].address = want->address;
  }
  free(names->networks);
  names->networks = v;
  names->n_networks = n;
  return rc;
}

int nlb_dns_endpoints_configure(struct nlb_dns_endpoints *names,
                                const struct nlb_dns_endpoints_settings *s)
{
  int rc;

  if (names->shut)
    return -ESHUTDOWN;
  if (names->dns && settings_changed(names, s))
    retire(names);
  if (s->zone == NULL) {
    free(names->zone);
    names->zone = NULL;
    names->n_networks = 0;
    return 0;
  }
  if (names->dns == NULL && (rc = new_responder(names, s)) < 0)
    return rc;
  nlb_dns_set_tcp_per_client(names->dns, s->tcp_per_client);
  return sync_networks(names, s);
}

/* ---- life --------------------------------------------------------------- */

struct nlb_dns_endpoints *nlb_dns_endpoints_new(uv_loop_t *loop)
{
  struct nlb_dns_endpoints *names = calloc(1, sizeof(*names));

  if (names == NULL)
    return NULL;
  names->loop = loop;
  nlb_hmap_init(&names->served);
  return names;
}

char *nlb_dns_endpoints_metrics(const struct nlb_dns_endpoints *names)
{
  return names->dns ? nlb_dns_metrics(names->dns) : NULL;
}

void nlb_dns_endpoints_tick(struct nlb_dns_endpoints *names)
{
  size_t kept = 0;

  for (size_t i = 0; i < names->n_retired; i++) {
    if (nlb_dns_closed(names->retired[i]))
      nlb_dns_free(names->retired[i]);
    else
      names->retired[kept++] = names->retired[i];
  }
  names->n_retired = kept;
}

void nlb_dns_endpoints_shutdown(struct nlb_dns_endpoints *names)
{
  if (names == NULL || names->shut)
    return;
  names->shut = true;
  retire(names);
}

bool nlb_dns_endpoints_closed(const struct nlb_dns_endpoints *names)
{
  for (size_t i = 0; i < names->n_retired; i++)
    if (!nlb_dns_closed(names->retired[i]))
      return false;
  return names->dns == NULL;
}

void nlb_dns_endpoints_free(struct nlb_dns_endpoints *names)
{
  if (names == NULL)
    return;
  nlb_dns_endpoints_shutdown(names);
  if (!nlb_dns_endpoints_closed(names))
    return; /* the loop still closes its handles: see the header */
  nlb_dns_endpoints_tick(names);
  forget(names, NULL);
  nlb_hmap_free(&names->served);
  free(names->retired);
  free(names->networks);
  free(names->zone);
  free(names);
}
