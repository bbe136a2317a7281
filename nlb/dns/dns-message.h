/* DNS messages: one query in, the authoritative response out.
 *
 * nlb answers for one zone (the `dns.zone` of the config, "nlb.internal")
 * and for a set of extra zones, each a single private DNS name
 * ("api.payments.example"). This module knows no tables and no sockets:
 * it parses a query with ldns, asks a lookup function what the names hold,
 * and builds the response with ldns, so every byte that crosses the wire
 * is read and written by a DNS library rather than by hand.
 *
 *   query                                   response
 *   shorter than a header, or a response    none (dropped)
 *   opcode other than QUERY                 NOTIMP
 *   not exactly one question, records in    FORMERR
 *   the answer or authority section, more
 *   than one OPT, unparsable, qtype OPT
 *   EDNS version other than 0               BADVERS (extended rcode 16)
 *   class other than IN (or ANY)            REFUSED
 *   name outside every zone served          REFUSED
 *   AXFR or IXFR                            REFUSED
 *   name that does not exist in its zone    NXDOMAIN, SOA in authority, AA
 *   name exists, type it has (A, AAAA,      NOERROR with the records, AA
 *   ANY; SOA and NS at a zone's apex)
 *   name exists, other type (NODATA)        NOERROR, no answer, SOA, AA
 *
 * The question is echoed as asked and answer owners keep its case
 * ("EP-1.NLB.Internal"); lookups are case-insensitive. A UDP response fits
 * the client's EDNS payload size (512 bytes without EDNS, at most
 * NLB_DNS_UDP_PAYLOAD_MAX): glue goes first, then the answer, and TC tells
 * the client to ask again over TCP (up to 65535 bytes there).
 *
 * Pure functions apart from malloc: any thread, no global state. */
#ifndef NLB_DNS_MESSAGE_H
#define NLB_DNS_MESSAGE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest UDP response nlb sends whatever the client offers, and the
 * size it advertises: 1232 bytes fits any path's MTU without fragments
 * (DNS flag day 2020). */
#define NLB_DNS_UDP_PAYLOAD_MAX 1232

/* A name in wire format (length-prefixed labels, a zero at the end) is at
 * most 255 bytes. */
#define NLB_DNS_WIRE_MAX 255

/* Response codes, as on the wire. BADVERS is the EDNS extended code. */
enum nlb_dns_rcode {
  NLB_DNS_NOERROR = 0,
  NLB_DNS_FORMERR = 1,
  NLB_DNS_SERVFAIL = 2,
  NLB_DNS_NXDOMAIN = 3,
  NLB_DNS_NOTIMP = 4,
  NLB_DNS_REFUSED = 5,
  NLB_DNS_BADVERS = 16,
};

/* What the lookup function tells about one name. */
struct nlb_dns_found {
  /* Offset, within the name asked about, of the apex of the closest zone
   * that holds it (0: the name is an apex), or -1: outside every zone. */
  int apex_offset;
  /* The name exists: it has addresses, names below it, or is an apex.
   * Meaningless when apex_offset is -1. */
  bool exists;
  /* Its addresses; owned by the lookup's table, valid until the table
   * next changes (the caller uses them before returning). */
  const struct in_addr *a;
  size_t n_a;
  const struct in6_addr *aaaa;
  size_t n_aaaa;
};

/* Where answers come from: the main zone and a lookup over the names of
 * one network. */
struct nlb_dns_zone {
  /* The main zone's apex, lower-case wire format: every zone's NS record
   * and SOA MNAME name it, and its own addresses are the glue. */
  const uint8_t *apex;
  size_t apex_len;
  uint32_t ttl;          /* seconds, of every answer */
  uint32_t negative_ttl; /* seconds: SOA minimum and TTL in NXDOMAIN/NODATA */
  uint32_t serial;       /* SOA serial */
  /* Fills *found for name (lower-case wire format, len bytes). */
  void (*lookup)(void *ctx, const uint8_t *name, size_t len,
                 struct nlb_dns_found *found);
  void *ctx;
};

enum nlb_dns_transport {
  NLB_DNS_UDP,
  NLB_DNS_TCP,
};

/* What became of one query: for counters and log lines. */
struct nlb_dns_outcome {
  bool dropped;    /* no response at all */
  int rcode;       /* enum nlb_dns_rcode of the response */
  bool truncated;  /* TC set: the answer did not fit */
  const char *why; /* dropped, FORMERR, NOTIMP, BADVERS, REFUSED: a short
                    * static reason for the log ("not in a served zone");
                    * otherwise NULL */
};

/* Builds the response to the query (len bytes) for transport. On success
 * returns 0 with *response malloc'd (the caller frees it) and
 * *response_len bytes long, or *response NULL when the query is dropped;
 * *outcome says which. Returns -ENOMEM (nothing allocated) when memory
 * runs out. Never reads beyond len bytes, whatever they hold. */
int nlb_dns_answer(const struct nlb_dns_zone *zone,
                   enum nlb_dns_transport transport, const uint8_t *query,
                   size_t len, uint8_t **response, size_t *response_len,
                   struct nlb_dns_outcome *outcome);

/* Writes "NAME TYPE" of the query's question into buf (e.g.
 * "example.com. A", non-printing bytes escaped as \DDD, so the text is
 * safe in a log line), or "-" when there is none to read. Costs a second
 * parse: for log lines only. Returns buf. */
char *nlb_dns_describe_query(const uint8_t *query, size_t len, char *buf,
                             size_t size);

/* The name of an enum nlb_dns_rcode ("NOERROR", "NXDOMAIN"...), "other"
 * for any other number. Static strings. */
const char *nlb_dns_rcode_name(int rcode);

/* Converts a host name ("Api.Payments.example", a trailing dot allowed)
 * into lower-case wire format. Labels of 1-63 letters, digits, '-' or '_';
 * 255 bytes in all. Returns the length or -EINVAL. */
int nlb_dns_name_to_wire(const char *name, uint8_t wire[NLB_DNS_WIRE_MAX]);

#endif
