/* Listening sockets: opened by the control thread (or a helper thread that
 * entered a network namespace) and handed to workers: one socket per
 * listener, one descriptor of it per worker. */
#ifndef NLB_LISTENER_H
#define NLB_LISTENER_H

#include "nlb/addr.h"

/* Backlog of every listening socket; the kernel caps it at somaxconn. */
#define NLB_LISTEN_BACKLOG 4096

/* Opens a non-blocking TCP socket bound to addr with SO_REUSEPORT (so that
 * a reload can open the new listener before the old one closes) and
 * listening. An IPv6 socket is IPv6-only, so "::" and "0.0.0.0" may both be
 * used. Returns the fd or a negative errno (e.g. -EADDRINUSE). */
int nlb_listener_open(const union nlb_sockaddr *addr);

/* Another descriptor of the listening socket fd, for one more worker: the
 * workers share one accept queue (see worker.c). Returns it or a negative
 * errno. */
int nlb_listener_share(int fd);

#endif
