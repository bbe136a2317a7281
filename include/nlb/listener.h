/* Listening sockets: opened by the control thread (or a helper thread that
 * entered a network namespace) and handed to workers: one socket per
 * listener, one descriptor of it per worker. */
#ifndef NLB_LISTENER_H
#define NLB_LISTENER_H

#include <stddef.h>

#include "nlb/addr.h"

/* Backlog of every listening socket; the kernel caps it at somaxconn. */
#define NLB_LISTEN_BACKLOG 4096

/* Opens a non-blocking TCP socket bound to addr with SO_REUSEPORT (so that
 * a reload can open the new listener before the old one closes) and
 * listening. An IPv6 socket is IPv6-only, so "::" and "0.0.0.0" may both be
 * used. Returns the fd or a negative errno (e.g. -EADDRINUSE). */
int nlb_listener_open(const union nlb_sockaddr *addr);

/* Opens one listening socket (nlb_listener_open) and fills fds with copies
 * descriptors of it, one per worker: the workers share one accept queue
 * (see worker.c). Returns 0, or a negative errno with nothing left open (and
 * fds as it was but for -1 where a copy was closed). */
int nlb_listener_open_shared(const union nlb_sockaddr *addr, size_t copies,
                             int *fds);

#endif
