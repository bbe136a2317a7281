/* The DNS names of one consumer network and their addresses.
 *
 * A hash table from a name (lower-case wire format) to its A and AAAA
 * addresses: adding or removing one address costs O(1) on average plus
 * O(labels) for the name's ancestors, whatever the table holds, and a
 * lookup O(labels) probes; nothing is ever rebuilt whole (the bucket array
 * doubles now and then, amortised O(1)).
 *
 * The table knows which zone each name falls in:
 *   - the main zone (e.g. "nlb.internal"), always served; names below it
 *     (EP-ID.ZONE, SERVICE.ZONE, or deeper) are its names, and a name
 *     between one of them and the apex exists without records (an empty
 *     non-terminal: NODATA, not NXDOMAIN);
 *   - every name outside the main zone (a private DNS name,
 *     "api.payments.example") is the apex of a zone of its own, served
 *     while it holds an address: the names below it do not exist, and the
 *     names above it are not served.
 * Addresses at the main zone's apex are the responder's own (the NS
 * record's glue).
 *
 * One table per network; not thread-safe: the thread that owns it (the
 * control thread) reads and changes it. */
#ifndef NLB_DNS_RECORDS_H
#define NLB_DNS_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "nlb/common/addr.h"
#include "nlb/dns/dns-message.h"

struct nlb_dns_records;

/* A table serving zone ("nlb.internal"; see nlb_dns_name_to_wire for what
 * a name may hold). Returns NULL when zone is not a valid name or memory
 * runs out. The caller owns the table. */
struct nlb_dns_records *nlb_dns_records_new(const char *zone);

/* Frees the table and everything in it; NULL does nothing. */
void nlb_dns_records_free(struct nlb_dns_records *records);

/* Adds addr's IP (the port is ignored) to name, A or AAAA as its family
 * says; a no-op when it is there already (the table is a set of (name,
 * address) pairs). Returns 0, -EINVAL (bad name, or a family other than
 * AF_INET and AF_INET6) or -ENOMEM (nothing changed). */
int nlb_dns_records_add(struct nlb_dns_records *records, const char *name,
                        const union nlb_sockaddr *addr);

/* Removes addr's IP from name; the name goes when its last address does
 * (and with it a private DNS name's zone). Returns 0, -ENOENT (no such
 * pair) or -EINVAL. */
int nlb_dns_records_remove(struct nlb_dns_records *records, const char *name,
                           const union nlb_sockaddr *addr);

/* The (name, address) pairs the table holds. */
size_t nlb_dns_records_count(const struct nlb_dns_records *records);

/* A number that changes with every change to the table (the zones' SOA
 * serial). */
uint32_t nlb_dns_records_serial(const struct nlb_dns_records *records);

/* The main zone's apex in lower-case wire format (*len bytes); valid as
 * long as the table. */
const uint8_t *nlb_dns_records_zone(const struct nlb_dns_records *records,
                                    size_t *len);

/* The lookup of struct nlb_dns_zone, ctx being the table: fills *found
 * for name (lower-case wire format, as nlb_dns_answer passes it). A name
 * that is not well-formed wire format is outside every zone. */
void nlb_dns_records_lookup(void *records, const uint8_t *name, size_t len,
                            struct nlb_dns_found *found);

#endif
