/* The SNI routes of a tls_passthrough listener: which target group a
 * ClientHello's server name goes to, and how long a client may take to
 * send that ClientHello. Built by the control thread from the config,
 * immutable once a route holds it, reference counted (a route holds one
 * reference, the router's listener record another). */
#ifndef NLB_SNI_ROUTES_H
#define NLB_SNI_ROUTES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct nlb_sni_route {
  char *name;   /* lower case; "*.b.example": one label, then b.example */
  size_t group; /* index into the groups of any snapshot holding it */
};

struct nlb_sni_routes {
  atomic_int refs;
  uint64_t client_hello_timeout_ms;
  size_t n_routes;
  struct nlb_sni_route routes[];
};

/* A table of n_routes empty routes with one reference, for the caller to
 * fill with nlb_sni_routes_set. NULL on ENOMEM. Control thread. */
struct nlb_sni_routes *nlb_sni_routes_create(size_t n_routes,
                                             uint64_t client_hello_timeout_ms);

/* Fills route i with a copy of name (lower case already). 0 or -ENOMEM.
 * Control thread, before the table is shared. */
int nlb_sni_routes_set(struct nlb_sni_routes *table, size_t i, const char *name,
                       size_t group);

/* Any thread; the last release frees the table and its names. NULL is
 * allowed. */
void nlb_sni_routes_acquire(struct nlb_sni_routes *table);
void nlb_sni_routes_release(struct nlb_sni_routes *table);

/* The group for a server name (lower case, as nlb_client_hello_parse gives
 * it; NULL: none): an exact name wins over a wildcard, and a wildcard
 * "*.b.example" matches "x.b.example" but neither "b.example" nor
 * "y.x.b.example". -1 when no name matches (the listener's own target group
 * takes it). Any thread. */
long nlb_sni_routes_match(const struct nlb_sni_routes *table, const char *sni);

#endif
