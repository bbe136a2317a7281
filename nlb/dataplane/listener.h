/* Listening sockets: opened by the control thread (or a helper thread that
 * entered a network namespace) and handed to workers. A TCP listener has
 * one socket and one descriptor, whatever the number of workers: every
 * worker's epoll set watches that one descriptor (an epoll set may watch a
 * descriptor another set watches too), and the last worker to let go of
 * it closes it. A UDP listener has one socket per worker on the same
 * address (SO_REUSEPORT): the kernel picks the socket by a hash of the
 * datagram's addresses and ports, so every datagram of a flow reaches the
 * same worker and its flow table, without a lock (flow_kind.h,
 * socket_per_worker). */
#ifndef NLB_LISTENER_H
#define NLB_LISTENER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "nlb/common/addr.h"

/* Backlog of every listening socket; the kernel caps it at somaxconn. */
#define NLB_LISTEN_BACKLOG 4096
/* Receive buffer a UDP listener's socket asks for; the kernel caps it at
 * net.core.rmem_max. */
#define NLB_UDP_LISTEN_RCVBUF (4 << 20)

enum nlb_transport {
  NLB_TRANSPORT_TCP,
  NLB_TRANSPORT_UDP,
};

/* Opens a non-blocking socket bound to addr with SO_REUSEPORT (so that a
 * reload can open the new listener before the old one closes, and a UDP
 * listener can have a socket per worker): TCP listening; UDP reporting
 * each datagram's destination address (IP_PKTINFO, IPV6_RECVPKTINFO) when
 * addr is a wildcard, so that answers leave from the address the client
 * sent to. An IPv6 socket is IPv6-only, so "::" and "0.0.0.0" may both be
 * used. A socket of the same address a previous nlbd handed over
 * (nlb/common/inherit.h) is taken instead of opening one. Returns the fd
 * or a negative errno (e.g. -EADDRINUSE). */
int nlb_listener_open(const union nlb_sockaddr *addr,
                      enum nlb_transport transport);

/* One listening socket to open (where it belongs: netns.h). join: another
 * socket of the previous request's address (a UDP listener's socket for
 * the next worker), which must not be checked for being free. */
struct nlb_listen_request {
  union nlb_sockaddr addr;
  enum nlb_transport transport;
  bool join;
};

/* Makes the not yet connected socket fd leave from the client's address
 * (any port): IP_TRANSPARENT (IPV6_TRANSPARENT) and bind, as HAProxy's
 * "usesrc clientip" and Envoy's original_src do. Needs CAP_NET_ADMIN (or
 * CAP_NET_RAW), and answers come back only where the target routes the
 * client's addresses through this host and this host delivers them to the
 * socket (docs/config.md, preserve_client_ip). 0 or a negative errno (-EPERM
 * without the capability, -EAFNOSUPPORT for a client of another family
 * than the target). Any thread. */
int nlb_bind_client_address(int fd, const union nlb_sockaddr *client);

/* Whether this process may make such sockets: 0, or -EPERM without
 * CAP_NET_ADMIN and CAP_NET_RAW. Any thread. */
int nlb_transparent_allowed(void);

/* A listening descriptor shared by the workers: each holds a reference
 * while its epoll set watches fd. */
struct nlb_listen_socket {
  atomic_int refs;
  int fd;
};

/* Wraps fd with refs references (one per worker). On ENOMEM closes fd and
 * returns NULL. Control thread. */
struct nlb_listen_socket *nlb_listen_socket_create(int fd, int refs);

/* Drops one reference; the last closes the descriptor and frees. The
 * caller has taken fd out of its epoll set first. Any thread. */
void nlb_listen_socket_release(struct nlb_listen_socket *socket);

#endif
