/* Listening sockets inside a network namespace.
 *
 * A socket stays in the namespace it was created in, whichever thread later
 * uses it. So a short-lived helper thread enters the namespace (setns),
 * creates, binds and listens, and hands the descriptors back; the calling
 * thread and the workers never change namespace. */
#ifndef NLB_NETNS_H
#define NLB_NETNS_H

#include <stddef.h>

#include "nlb/common/addr.h"
#include "nlb/dataplane/listener.h"

/* Runs fn(arg) inside the namespace /run/netns/<netns> on a short-lived
 * helper thread that entered it (setns) and ends right after, or on the
 * calling thread when netns is NULL or "" (the host). Sockets fn creates
 * stay in that namespace; fn must not keep the thread or touch the
 * caller's libuv loop. Returns what fn returns, or a negative errno when
 * the namespace cannot be entered: -ENOENT (no such namespace), -EPERM
 * (not allowed to enter it), or pthread_create's error. Blocks until fn
 * returns. Control thread. */
int nlb_netns_run(const char *netns, int (*fn)(void *arg), void *arg);

/* Opens a listening socket (nlb_listener_open) for each of the n requests
 * inside the namespace /run/netns/<netns>, or on the host when netns is
 * NULL or "". fds receives n descriptors, request by request. On failure
 * nothing stays open, *failed_index names the request at fault (or -1)
 * and the result is a negative errno: -ENOENT (no such namespace), -EPERM (not
 * allowed to enter it), -EADDRINUSE (anything listens there already, nlbd's own
 * SO_REUSEPORT listeners included), -EADDRNOTAVAIL... Blocks for the few
 * milliseconds the helper thread takes (up to 50 more while an address
 * stays in use). Control thread. */
int nlb_netns_open_listeners(const char *netns,
                             const struct nlb_listen_request *requests,
                             size_t n, int *fds, int *failed_index);

#endif
