/* The DNS responder of the consumer networks.
 *
 * For each network that has a `dns` address, nlbd answers DNS on UDP and
 * TCP port 53 at that address, inside the network's namespace (or on the
 * host when the network has none), for the names of that network alone:
 * EP-ID.ZONE, SERVICE.ZONE and the private DNS names its endpoints opted
 * into (see dns-records.h for the zones, dns-message.h for the answers).
 *
 * Threads: everything runs on the libuv loop given to nlb_dns_new (the
 * control thread's), and every function is called from that thread. The
 * sockets are created inside the namespace by a short-lived helper thread
 * (nlb_netns_run) and handed to the loop; nothing else leaves the loop.
 *
 * Ownership: the caller owns the struct nlb_dns; it owns its networks,
 * their record tables, sockets and TCP connections, and copies every
 * string it is given.
 *
 * Life of a network: nlb_dns_add_network registers it (records may be set
 * at once) and opens its sockets; when they cannot be opened (no such
 * namespace yet, address not configured, port taken) it says why in the
 * event log and tries again every second. A namespace deleted, or deleted
 * and added again under the same name, is noticed within a second: the
 * sockets close and open again in the namespace the name stands for now.
 *
 * Limits, so that no client can stall nlbd or take its memory or its
 * descriptors: UDP answers that would not go out at once are dropped (the
 * client asks again). TCP connections hold a descriptor each, so they
 * have three caps: tcp_per_client from one client address in a network
 * (more are closed as soon as they are accepted), NLB_DNS_TCP_CONNECTIONS_MAX
 * per network, and the budget of the whole process (nlb_dns_set_tcp_budget,
 * a share of the descriptor limit that flows never count on: capacity.h).
 * When a network or the budget is full, a new connection still gets in:
 * the connection that has gone longest without a query gives way, taken
 * from the network itself when it is the network that is full, else from
 * the network that holds the most (so that no network keeps another out).
 * A TCP connection holds one message of at most 65535 bytes as it
 * arrives, stops being read while NLB_DNS_TCP_PENDING_MAX bytes of
 * answers wait for the client, and is closed after tcp_idle_timeout_ms
 * without a complete query.
 *
 * Counters (nlb_dns_metrics): queries by response code, dropped messages,
 * truncated answers, TCP connections open, refused and closed to make
 * room, records, per network. Refused, malformed and dropped queries each
 * get one access-log line, at most log_per_second a second; the lines
 * held back are counted in one line the next second. */
#ifndef NLB_DNS_H
#define NLB_DNS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "nlb/common/addr.h"

#define NLB_DNS_PORT 53
#define NLB_DNS_TCP_CONNECTIONS_MAX 128
#define NLB_DNS_TCP_PER_CLIENT 16 /* tcp_per_client's default */
#define NLB_DNS_TCP_PENDING_MAX (128 * 1024)

struct nlb_dns;

struct nlb_dns_settings {
  const char *zone;             /* "nlb.internal" */
  uint32_t ttl;                 /* seconds, of every answer */
  uint32_t negative_ttl;        /* seconds, NXDOMAIN/NODATA; 0: ttl */
  uint64_t tcp_idle_timeout_ms; /* 0: 10 s */
  unsigned tcp_per_client;      /* TCP connections of one client address
                                   in a network; 0: NLB_DNS_TCP_PER_CLIENT */
  unsigned log_per_second;      /* access-log lines; 0: 10 */
  bool access_json;             /* log lines as JSON objects */
};

/* Creates the responder on loop, serving no network yet. Returns 0 with
 * *out set, -EINVAL (zone is not a host name) or -ENOMEM. */
int nlb_dns_new(uv_loop_t *loop, const struct nlb_dns_settings *settings,
                struct nlb_dns **out);

/* New TCP connections of one client address in a network, at most, from
 * now on (0: NLB_DNS_TCP_PER_CLIENT); open ones stay. */
void nlb_dns_set_tcp_per_client(struct nlb_dns *dns, unsigned tcp_per_client);

/* The TCP connections every responder of the process may hold together:
 * the DNS share of the descriptor plan (capacity.h). Unlimited until set;
 * a lower budget is reached as new connections come (older ones give
 * way). Control thread. */
void nlb_dns_set_tcp_budget(uint64_t connections);

/* Registers network (its name, for records, metrics and logs), served at
 * address (port 0 means 53) inside /run/netns/<netns>, or on the host when
 * netns is NULL or "". Opens its sockets at once or, failing that, every
 * second until it can. Returns 0, -EEXIST (a network of that name is
 * registered), -EINVAL (address is not IPv4 or IPv6) or -ENOMEM. */
int nlb_dns_add_network(struct nlb_dns *dns, const char *network,
                        const char *netns, const union nlb_sockaddr *address);

/* Closes the network's sockets and connections and forgets its records
 * and counters. Returns 0 or -ENOENT. */
int nlb_dns_remove_network(struct nlb_dns *dns, const char *network);

/* 0 while the network's sockets are open; else the negative errno of the
 * last attempt to open them (-ENOENT: no such namespace, -EADDRNOTAVAIL:
 * the address is not on an interface there, -EACCES: port 53 needs
 * CAP_NET_BIND_SERVICE...), or -EAGAIN before the first attempt ends.
 * -ENOENT too when no such network is registered. */
int nlb_dns_network_error(const struct nlb_dns *dns, const char *network);

/* Adds address (its IP; the port is ignored) to name in network: A or
 * AAAA as its family says. name is a host name ("ep-1a2b.nlb.internal",
 * "payments.nlb.internal", "api.payments.example"); a name outside the
 * zone is served as a zone of its own while it has an address. Answers
 * change at once. Adding a pair that is there already does nothing.
 * Returns 0, -ENOENT (no such network), -EINVAL (bad name, the zone's own
 * apex, or a family other than IPv4/IPv6) or -ENOMEM. */
int nlb_dns_add_record(struct nlb_dns *dns, const char *network,
                       const char *name, const union nlb_sockaddr *address);

/* Removes what nlb_dns_add_record added: from then on the name answers
 * NODATA for that family, or NXDOMAIN (REFUSED for a private DNS name)
 * once its last address is gone. Returns 0, -ENOENT (no such network or
 * pair) or -EINVAL. */
int nlb_dns_remove_record(struct nlb_dns *dns, const char *network,
                          const char *name, const union nlb_sockaddr *address);

/* Queries of network answered with rcode (enum nlb_dns_rcode) since the
 * network was added; 0 for an unknown network. */
uint64_t nlb_dns_queries(const struct nlb_dns *dns, const char *network,
                         int rcode);

/* Prometheus text of the counters (families nlb_dns_queries_total{network,
 * rcode}, nlb_dns_dropped_total{network}, nlb_dns_truncated_total{network},
 * nlb_dns_tcp_connections{network}, nlb_dns_tcp_refused_total{network,
 * reason="client"|"budget"}, nlb_dns_tcp_evicted_total{network,
 * reason="network"|"budget"}, nlb_dns_tcp_budget, nlb_dns_records{network}),
 * malloc'd: the caller frees it. NULL when memory runs out. */
char *nlb_dns_metrics(const struct nlb_dns *dns);

/* Closes every socket and connection. Idempotent. Run the loop until
 * nlb_dns_closed() is true, then nlb_dns_free(). */
void nlb_dns_shutdown(struct nlb_dns *dns);

/* True once every handle of the responder is closed. */
bool nlb_dns_closed(const struct nlb_dns *dns);

/* Frees a closed responder (or does nothing with NULL). */
void nlb_dns_free(struct nlb_dns *dns);

#endif
