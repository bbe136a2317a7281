/* Endpoint names in nlbd's DNS responders: the DNS side of the registry's
 * change feed.
 *
 * It owns the responder (dns.h) and its networks, those of the config that
 * name a `dns` address, and serves in each one the names of its available
 * endpoints at their addresses. The registry decides the names (a row's
 * dns_names: EP-ID.ZONE, SERVICE.ZONE, and the service's private DNS name
 * where the endpoint opted in); this module only makes the record tables
 * say what the rows say. Each read of the feed applies as nlb/endpoints.c
 * applies it: a row says what must be and only the difference is done, so
 * a change read twice applies once; a resync replaces everything. Records
 * that go are removed before records that come, so a name an endpoint
 * hands over to another (an address freed and taken again in one read)
 * is never lost.
 *
 * A reload (nlb_dns_endpoints_configure again) adds and removes networks
 * and sets tcp_per_client in place; a new zone, TTL or log format makes a
 * new responder (the old one closes meanwhile) whose records the next
 * resync brings.
 *
 * Ownership: the caller owns the struct; it owns the responders. Control
 * thread only. */
#ifndef NLB_DNS_ENDPOINTS_H
#define NLB_DNS_ENDPOINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "nlb/common/addr.h"
#include "nlb/registry.h"

struct nlb_dns_endpoints;

/* A network with a responder: its registry name, this node's namespace
 * for it (NULL or "": the host) and the responder's address. */
struct nlb_dns_endpoints_network {
  const char *name;
  const char *netns;
  union nlb_sockaddr address;
};

/* Everything is copied. */
struct nlb_dns_endpoints_settings {
  const char *zone; /* NULL: no responder at all */
  uint32_t ttl;     /* seconds */
  uint32_t negative_ttl;
  unsigned tcp_per_client; /* 0: NLB_DNS_TCP_PER_CLIENT (dns.h) */
  bool access_json;        /* access-log lines as JSON */
  const struct nlb_dns_endpoints_network *networks;
  size_t n_networks;
};

/* An instance without a responder; NULL on ENOMEM. */
struct nlb_dns_endpoints *nlb_dns_endpoints_new(uv_loop_t *loop);

/* Takes settings (at start, and at every reload), before the read of the
 * feed that follows them. Returns 0, or a negative errno from the
 * responder (-EINVAL: zone; -ENOMEM) with the old settings kept when
 * possible. */
int nlb_dns_endpoints_configure(struct nlb_dns_endpoints *names,
                                const struct nlb_dns_endpoints_settings *s);

/* Applies one read of the change feed (reg_changes). */
void nlb_dns_endpoints_apply(struct nlb_dns_endpoints *names,
                             const struct reg_changes *changes);

/* The (endpoint, name) pairs served; for tests and logs. */
size_t nlb_dns_endpoints_count(const struct nlb_dns_endpoints *names);

/* The responder's Prometheus text (nlb_dns_metrics), malloc'd, or NULL
 * when there is no responder (or no memory). */
char *nlb_dns_endpoints_metrics(const struct nlb_dns_endpoints *names);

/* Periodic work: frees responders a reconfiguration replaced once they
 * have closed. */
void nlb_dns_endpoints_tick(struct nlb_dns_endpoints *names);

/* Closes every responder. Idempotent. Run the loop until
 * nlb_dns_endpoints_closed(), then free. */
void nlb_dns_endpoints_shutdown(struct nlb_dns_endpoints *names);
bool nlb_dns_endpoints_closed(const struct nlb_dns_endpoints *names);

/* Frees a closed instance (NULL ok). One that is not closed yet is shut
 * down and left to the loop (its memory is not freed): only an aborted
 * start does that. */
void nlb_dns_endpoints_free(struct nlb_dns_endpoints *names);

#endif
