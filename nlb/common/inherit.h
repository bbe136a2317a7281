/* Listening sockets a previous nlbd handed over (nlbd -s upgrade:
 * nlb/upgrade.h). Whoever would open a listening socket first asks here
 * for one of the same identity, and adopts it instead of binding: the
 * kernel's listen queue is then the same one the previous process
 * accepted from, and no connection is refused while both run.
 *
 * A socket's identity is what the kernel says of it: its network
 * namespace (the inode of the namespace, SIOCGSKNS), its type (TCP
 * listening or UDP) and the address it is bound to. That names a
 * balancer's listener, an endpoint's listener in a consumer's namespace,
 * a DNS responder's UDP and TCP sockets and the API's listener alike,
 * without the previous process and this one agreeing on any other name.
 * Several sockets of one identity (a UDP listener has one per worker) are
 * handed out one at a time.
 *
 * The table is global, behind a mutex: the control thread fills it before
 * anything is opened, and the helper threads that open sockets inside
 * network namespaces take from it. */
#ifndef NLB_INHERIT_H
#define NLB_INHERIT_H

#include <stdbool.h>
#include <stddef.h>

#include "nlb/common/addr.h"

/* Keeps fd (a listening TCP socket or a bound UDP socket, received from
 * the previous process; the table owns it from now on). Returns 0, or a
 * negative errno (fd is then closed): -ENOTSOCK, -EAFNOSUPPORT for a
 * socket that is not IPv4/IPv6, -ENOMEM. */
int nlb_inherit_add(int fd);

/* A kept socket of the calling thread's network namespace, of type
 * (SOCK_STREAM or SOCK_DGRAM), bound to addr, or -ENOENT. The caller owns
 * the fd returned. Any thread. */
int nlb_inherit_take(const union nlb_sockaddr *addr, int type);

/* How many sockets were kept, and how many of them were taken. */
void nlb_inherit_counts(size_t *kept, size_t *taken);

/* Closes every kept socket nobody took (the config no longer has it), so
 * that its address is free. Returns how many were closed. */
size_t nlb_inherit_close_rest(void);

/* Whether fd is a socket worth handing over: IPv4/IPv6, TCP listening, or
 * UDP bound to a port and not connected (a listener's or a DNS
 * responder's; a health check's or a flow's socket is connected). */
bool nlb_inherit_wanted(int fd);

#endif
