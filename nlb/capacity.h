/* Flow capacity: how many flows one nlbd can hold within its descriptor
 * limit while everything else keeps working.
 *
 * A flow holds two descriptors (the client's socket and the target's).
 * Out of the limit (RLIMIT_NOFILE, which nlbd raises to the hard limit)
 * come first a reserve for what must never fail for want of one: the
 * listening sockets, health-check probes (health.c keeps at most
 * NLB_CAPACITY_PROBES open), the API's connections, the DNS responders'
 * sockets and TCP connections (dns.h holds them to this share), the log,
 * the registry, the workers' own (epoll, eventfd) and a margin (under a
 * small limit the API's, the probes' and DNS TCP's parts shrink to a
 * sixteenth of it each); then a share for splice pipes (a bulk direction
 * moves through a pipe, two descriptors; past the share it moves through a
 * buffer instead). What is left, halved, is the number of flows:
 * max_flows, unless the config says otherwise. A new flow past it is
 * refused at accept, cleanly, while the process still has descriptors for
 * everything in the reserve.
 *
 * Pure arithmetic: any thread. */
#ifndef NLB_CAPACITY_H
#define NLB_CAPACITY_H

#include <stddef.h>
#include <stdint.h>

/* Probes open at once, at most (the health checks' share of the reserve). */
#define NLB_CAPACITY_PROBES 1024
/* Descriptors of the process itself: stdio, log files, the registry's
 * files, signal and wakeup pipes, a margin. */
#define NLB_CAPACITY_BASE 64
/* Per worker: its epoll set, its eventfd, its uv loop's own. */
#define NLB_CAPACITY_PER_WORKER 4
/* One descriptor in this many of what is left is for splice pipes. */
#define NLB_CAPACITY_PIPE_SHARE 16

struct nlb_capacity_input {
  uint64_t fd_limit; /* RLIMIT_NOFILE */
  unsigned workers;
  size_t listeners;       /* listening sockets */
  size_t targets;         /* health-checked targets */
  size_t api_connections; /* the API's cap; 0 without API */
  size_t dns_networks;    /* networks with a DNS responder: 2 sockets each */
  size_t dns_connections; /* their TCP connections' caps, added up */
};

struct nlb_capacity {
  uint64_t reserve;         /* descriptors never used by flows */
  uint64_t dns_connections; /* DNS TCP connections the reserve holds */
  uint64_t pipe_fds;        /* descriptors for splice pipes */
  uint64_t max_flows;       /* flows that fit, two descriptors each; 0 when
                               the limit does not even cover the reserve */
};

/* Fills out from in. */
void nlb_capacity_compute(const struct nlb_capacity_input *in,
                          struct nlb_capacity *out);

#endif
