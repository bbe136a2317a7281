/* Listening sockets: opened by the control thread (or a helper thread that
 * entered a network namespace) and handed to workers, one per worker. */
#ifndef NLB_LISTENER_H
#define NLB_LISTENER_H

#include "nlb/addr.h"

/* Backlog of every listening socket; the kernel caps it at somaxconn. */
#define NLB_LISTEN_BACKLOG 4096

/* Opens a non-blocking TCP socket bound to addr with SO_REUSEPORT (so each
 * worker can have its own and the kernel spreads flows over them) and
 * listening. An IPv6 socket is IPv6-only, so "::" and "0.0.0.0" may both be
 * used. Returns the fd or a negative errno (e.g. -EADDRINUSE). */
int nlb_listener_open(const union nlb_sockaddr *addr);

#endif
