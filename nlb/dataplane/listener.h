/* Listening sockets: opened by the control thread (or a helper thread that
 * entered a network namespace) and handed to workers: one socket and one
 * descriptor per listener, whatever the number of workers. Every worker's
 * epoll set watches that one descriptor (an epoll set may watch a
 * descriptor another set watches too), and the last worker to let go of
 * it closes it. */
#ifndef NLB_LISTENER_H
#define NLB_LISTENER_H

#include <stdatomic.h>
#include <stddef.h>

#include "nlb/common/addr.h"

/* Backlog of every listening socket; the kernel caps it at somaxconn. */
#define NLB_LISTEN_BACKLOG 4096

/* Opens a non-blocking TCP socket bound to addr with SO_REUSEPORT (so that
 * a reload can open the new listener before the old one closes) and
 * listening. An IPv6 socket is IPv6-only, so "::" and "0.0.0.0" may both be
 * used. Returns the fd or a negative errno (e.g. -EADDRINUSE). */
int nlb_listener_open(const union nlb_sockaddr *addr);

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
