/* DNS over TCP for the responders of dns.c: the connections of each
 * network, their framing (RFC 7766: a 2-byte length before every message,
 * queries pipelined, answers in order), back-pressure, idle timeout, and
 * the caps that keep them within nlbd's descriptors (dns.h says which).
 *
 * A responder embeds one struct nlb_dns_tcp_group, and each of its
 * networks one struct nlb_dns_tcp joined to it. The group says how to
 * answer a query and whom to tell when a connection is gone: this module
 * calls the responder through those two pointers alone, so dns.c uses it
 * and never the reverse.
 *
 * The budget of all responders (nlb_dns_set_tcp_budget, dns.h) is kept
 * here, with the count of the connections open in the process.
 *
 * Ownership: the caller owns the group and the struct nlb_dns_tcp (zeroed
 * before nlb_dns_tcp_join); the connections are this module's, freed once
 * their handles closed. A struct nlb_dns_tcp must outlive its
 * connections: group->closed tells of each one freed, and alive says how
 * many are left. Control thread only. */
#ifndef NLB_DNS_TCP_H
#define NLB_DNS_TCP_H

#include <stdint.h>
#include <uv.h>

#include "nlb/common/addr.h"
#include "nlb/common/text.h"
#include "nlb/list.h"

/* Why a new connection was closed as soon as it was accepted. */
enum nlb_dns_tcp_refusal {
  NLB_DNS_TCP_REFUSED_CLIENT, /* its address held per_client already */
  NLB_DNS_TCP_REFUSED_BUDGET, /* the budget was full and nothing in the
                                 group could give way */
  NLB_DNS_TCP_REFUSALS,
};

/* Which cap made an open connection give way to a new one. */
enum nlb_dns_tcp_eviction {
  NLB_DNS_TCP_EVICTED_NETWORK, /* NLB_DNS_TCP_CONNECTIONS_MAX of its network */
  NLB_DNS_TCP_EVICTED_BUDGET,  /* the budget of all responders */
  NLB_DNS_TCP_EVICTIONS,
};

struct nlb_dns_tcp;

struct nlb_dns_tcp_group {
  uv_loop_t *loop;
  uint64_t idle_timeout_ms; /* without a complete query: closed */
  unsigned per_client;      /* connections of one address in a network */
  /* Answers query (len bytes) that came over a connection of tcp from
   * peer: *response is malloc'd and handed over, NULL when there is
   * nothing to send. */
  void (*answer)(struct nlb_dns_tcp *tcp, const union nlb_sockaddr *peer,
                 const uint8_t *query, size_t len, uint8_t **response,
                 size_t *response_len);
  /* A connection of tcp was freed (tcp->alive is one less). */
  void (*closed)(struct nlb_dns_tcp *tcp);
  struct nlb_list networks; /* struct nlb_dns_tcp.link */
};

/* The TCP connections of one network. */
struct nlb_dns_tcp {
  struct nlb_list link; /* in group->networks, joined to leave */
  struct nlb_dns_tcp_group *group;
  const char *network;     /* its name, for metrics; borrowed */
  struct nlb_list clients; /* open ones, the longest without a query first */
  unsigned n_clients;      /* on clients */
  unsigned alive;          /* not freed yet, closing ones included */
  uint64_t refused[NLB_DNS_TCP_REFUSALS];
  uint64_t evicted[NLB_DNS_TCP_EVICTIONS];
};

/* Makes group empty, with the settings given; the caller sets answer and
 * closed before a network joins. */
void nlb_dns_tcp_group_init(struct nlb_dns_tcp_group *group, uv_loop_t *loop,
                            uint64_t idle_timeout_ms, unsigned per_client);

/* Joins tcp (zeroed) to group for the network named network. */
void nlb_dns_tcp_join(struct nlb_dns_tcp_group *group, struct nlb_dns_tcp *tcp,
                      const char *network);

/* Takes the connection waiting on server (a listening socket of tcp's
 * network whose connection callback came with status 0): accepts it,
 * then keeps it, making room for it, or closes it at once. */
void nlb_dns_tcp_accept(struct nlb_dns_tcp *tcp, uv_stream_t *server);

/* Closes every connection of tcp; it may take new ones after. */
void nlb_dns_tcp_close_all(struct nlb_dns_tcp *tcp);

/* Closes every connection of tcp and leaves its group: it takes no more,
 * and the group's others never make room by its connections. */
void nlb_dns_tcp_leave(struct nlb_dns_tcp *tcp);

/* Appends the Prometheus text of the group's networks (families
 * nlb_dns_tcp_connections, nlb_dns_tcp_refused_total,
 * nlb_dns_tcp_evicted_total) and of the budget (nlb_dns_tcp_budget). */
void nlb_dns_tcp_metrics(const struct nlb_dns_tcp_group *group,
                         struct nlb_text *t);

#endif
