/* Announcing this node: what ties the routes to this node to nlbd being
 * alive and not draining.
 *
 * In a cluster, routers spread flows over the nodes that announce an
 * address (ECMP; BGP from a routing daemon on each node in production).
 * With node.announce_interface set, nlbd holds a tun device of that name
 * open in its own network namespace and in the namespace of every network
 * of its config and of node.networks (this node's namespaces for networks
 * made through the API): the places its listeners and endpoints live. A
 * network made through the API that node.networks does not map is served
 * in the network's own namespace, which the config does not name: it is
 * not announced. The routing
 * daemon announces the node's addresses in a namespace only while that
 * interface's link is up (bird: a static route via the interface with
 * `check link`; FRR: a static route to the interface). A tun device's link
 * is up exactly while a process holds it, so the announcement ends when
 * nlbd lets go (drain, shutdown: nlb_announce_withdraw, before it stops
 * accepting) and when nlbd dies without cleaning up (kill -9, a crash: the
 * kernel closes the descriptor), with nobody running a command.
 *
 * A device that does not exist is created, non-persistent (it goes away
 * with the descriptor; needs CAP_NET_ADMIN), and set up. A persistent one
 * made beforehand (`ip tuntap add NAME mode tun user nlb`, then `ip link
 * set NAME up`) is attached to, which needs no privilege when it belongs
 * to nlbd's user; its link goes down when nlbd lets go.
 *
 * Everything here runs on the control thread. The module owns the
 * descriptors; nothing else sees them. */
#ifndef NLB_ANNOUNCE_H
#define NLB_ANNOUNCE_H

#include <stddef.h>

#include "nlb/config.h"

struct nlb_announce;

/* Holds cfg->announce_interface in nlbd's namespace and in every
 * network's and node.networks' namespace (blocking for the few milliseconds
 * each namespace takes). A network namespace that cannot be entered or where
 * the interface cannot be held is logged and skipped (a reload tries again). In
 * nlbd's own namespace it is an error: returns a negative errno (-EBUSY:
 * another process holds the device; -EPERM: not allowed to create it; -EINVAL:
 * a device of that name that is not a tun device) with reason filled, and holds
 * nothing. Without announce_interface, *out is NULL and it returns 0: nothing
 * to announce, and the other functions do nothing with NULL. */
int nlb_announce_start(const struct nlb_config *cfg, struct nlb_announce **out,
                       char *reason, size_t reason_size);

/* Follows a reloaded config: holds the interface (by its new name, if it
 * changed) in the namespaces cfg names and lets go of the others. After
 * nlb_announce_withdraw it does nothing: a draining node stays withdrawn.
 * A reload cannot turn announcing on or off (that takes a restart). */
void nlb_announce_reload(struct nlb_announce *announce,
                         const struct nlb_config *cfg);

/* Lets go of every interface, for good: routers stop sending new flows
 * here. Returns how many were held. */
size_t nlb_announce_withdraw(struct nlb_announce *announce);

/* Withdraws (if not done) and frees. */
void nlb_announce_free(struct nlb_announce *announce);

#endif
