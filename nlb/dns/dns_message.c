#include "nlb/dns/dns-message.h"

#include <errno.h>
#include <ldns/ldns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DNS_CLASSIC_UDP_MAX 512
#define DNS_TCP_MAX 65535

/* SOA timers a secondary would use; nobody transfers these zones, but the
 * fields must hold something sensible. */
#define SOA_REFRESH 3600
#define SOA_RETRY 600
#define SOA_EXPIRE 86400

/* Queries carry their OPT and perhaps a TSIG in the additional section;
 * anything longer is not a query a stub or resolver sends, and parsing it
 * would only cost time. */
#define QUERY_ADDITIONAL_MAX 2

/* How much of an answer goes into the response: all of it, all but the
 * glue (which a client may do without, RFC 2181 9), or nothing but the
 * question with TC set. */
enum fill {
  FILL_ALL,
  FILL_NO_ADDITIONAL,
  FILL_TRUNCATED,
};

/* Everything a response is built from, so that it can be built again
 * with less in it when it does not fit. */
struct plan {
  const struct nlb_dns_zone *zone;
  const ldns_pkt *query;
  const ldns_rr *question;
  int rcode;
  bool authoritative;
  /* Where the zone's apex starts among the question's labels. */
  uint8_t apex_labels;
  bool soa_answer;    /* SOA in the answer (an SOA or ANY query at an apex) */
  bool ns_answer;     /* NS in the answer, glue in additional */
  bool soa_authority; /* NXDOMAIN or NODATA */
  const struct in_addr *a;
  size_t n_a;
  const struct in6_addr *aaaa;
  size_t n_aaaa;
};

const char *nlb_dns_rcode_name(int rcode)
{
  switch (rcode) {
  case NLB_DNS_NOERROR:
    return "NOERROR";
  case NLB_DNS_FORMERR:
    return "FORMERR";
  case NLB_DNS_SERVFAIL:
    return "SERVFAIL";
  case NLB_DNS_NXDOMAIN:
    return "NXDOMAIN";
  case NLB_DNS_NOTIMP:
    return "NOTIMP";
  case NLB_DNS_REFUSED:
    return "REFUSED";
  case NLB_DNS_BADVERS:
    return "BADVERS";
  default:
    return "other";
  }
}

static bool is_host_char(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int nlb_dns_name_to_wire(const char *name, uint8_t wire[NLB_DNS_WIRE_MAX])
{
  size_t len = 0;
  const char *p = name;

  if (!name || !*name || strcmp(name, ".") == 0)
    return -EINVAL;
  while (*p) {
    size_t label = 0;
    while (p[label] && p[label] != '.') {
      if (!is_host_char(p[label]) || label == 63)
        return -EINVAL;
      label++;
    }
    /* The label, its length byte and the root's zero must fit. */
    if (label == 0 || len + 1 + label + 1 > NLB_DNS_WIRE_MAX)
      return -EINVAL;
    wire[len++] = (uint8_t)label;
    for (size_t i = 0; i < label; i++) {
      char c = p[i];
      wire[len++] = (uint8_t)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    p += label;
    if (*p == '.')
      p++;
  }
  wire[len++] = 0;
  return (int)len;
}

static ldns_rr *new_rr(ldns_rdf *owner, ldns_rr_type type, uint32_t ttl)
{
  ldns_rr *rr;

  if (!owner)
    return NULL;
  rr = ldns_rr_new();
  if (!rr) {
    ldns_rdf_deep_free(owner);
    return NULL;
  }
  ldns_rr_set_owner(rr, owner);
  ldns_rr_set_type(rr, type);
  ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
  ldns_rr_set_ttl(rr, ttl);
  return rr;
}

/* Appends rdf to rr; frees both and returns false when either is missing
 * or memory runs out. */
static bool add_rdf(ldns_rr *rr, ldns_rdf *rdf)
{
  if (rdf && ldns_rr_push_rdf(rr, rdf))
    return true;
  ldns_rdf_deep_free(rdf);
  ldns_rr_free(rr);
  return false;
}

/* Pushes rr into section; frees it and returns false on failure. */
static bool push(ldns_pkt *pkt, ldns_pkt_section section, ldns_rr *rr)
{
  if (rr && ldns_pkt_push_rr(pkt, section, rr))
    return true;
  ldns_rr_free(rr);
  return false;
}

static ldns_rdf *zone_apex(const struct plan *plan)
{
  return ldns_dname_new_frm_data((uint16_t)plan->zone->apex_len,
                                 plan->zone->apex);
}

/* The apex of the question's zone, spelt as the question spelt it. */
static ldns_rdf *question_apex(const struct plan *plan)
{
  return ldns_dname_clone_from(ldns_rr_owner(plan->question),
                               plan->apex_labels);
}

static ldns_rr *soa_rr(const struct plan *plan, uint32_t ttl)
{
  const struct nlb_dns_zone *zone = plan->zone;
  uint8_t mailbox[NLB_DNS_WIRE_MAX + 11];
  ldns_rr *rr = new_rr(question_apex(plan), LDNS_RR_TYPE_SOA, ttl);

  if (!rr)
    return NULL;
  /* hostmaster.ZONE; dropped to the bare zone if it would be too long. */
  memcpy(mailbox, "\012hostmaster", 11);
  memcpy(mailbox + 11, zone->apex, zone->apex_len);
  size_t mailbox_len = zone->apex_len + 11;
  const uint8_t *rname = mailbox;
  if (mailbox_len > NLB_DNS_WIRE_MAX) {
    rname = zone->apex;
    mailbox_len = zone->apex_len;
  }
  if (!add_rdf(rr, zone_apex(plan)) ||
      !add_rdf(rr, ldns_dname_new_frm_data((uint16_t)mailbox_len, rname)) ||
      !add_rdf(rr, ldns_native2rdf_int32(LDNS_RDF_TYPE_INT32, zone->serial)) ||
      !add_rdf(rr, ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, SOA_REFRESH)) ||
      !add_rdf(rr, ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, SOA_RETRY)) ||
      !add_rdf(rr, ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, SOA_EXPIRE)) ||
      !add_rdf(rr,
               ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, zone->negative_ttl)))
    return NULL;
  return rr;
}

static ldns_rr *ns_rr(const struct plan *plan)
{
  ldns_rr *rr = new_rr(question_apex(plan), LDNS_RR_TYPE_NS, plan->zone->ttl);

  if (!rr || !add_rdf(rr, zone_apex(plan)))
    return NULL;
  return rr;
}

static ldns_rr *address_rr(ldns_rdf *owner, ldns_rr_type type,
                           const void *address, uint32_t ttl)
{
  bool v4 = type == LDNS_RR_TYPE_A;
  ldns_rr *rr = new_rr(owner, type, ttl);

  if (!rr || !add_rdf(rr, ldns_rdf_new_frm_data(v4 ? LDNS_RDF_TYPE_A
                                                   : LDNS_RDF_TYPE_AAAA,
                                                v4 ? 4 : 16, address)))
    return NULL;
  return rr;
}

static bool push_addresses(ldns_pkt *pkt, ldns_pkt_section section,
                           const ldns_rdf *owner, const struct in_addr *a,
                           size_t n_a, const struct in6_addr *aaaa,
                           size_t n_aaaa, uint32_t ttl)
{
  for (size_t i = 0; i < n_a; i++)
    if (!push(pkt, section,
              address_rr(ldns_rdf_clone(owner), LDNS_RR_TYPE_A, &a[i], ttl)))
      return false;
  for (size_t i = 0; i < n_aaaa; i++)
    if (!push(pkt, section,
              address_rr(ldns_rdf_clone(owner), LDNS_RR_TYPE_AAAA, &aaaa[i],
                         ttl)))
      return false;
  return true;
}

/* The main zone's own addresses, the NS record's glue. */
static bool push_glue(ldns_pkt *pkt, const struct plan *plan)
{
  const struct nlb_dns_zone *zone = plan->zone;
  struct nlb_dns_found found = {.apex_offset = -1};
  ldns_rdf *owner;
  bool ok;

  zone->lookup(zone->ctx, zone->apex, zone->apex_len, &found);
  if (found.n_a + found.n_aaaa == 0)
    return true;
  owner = zone_apex(plan);
  if (!owner)
    return false;
  ok = push_addresses(pkt, LDNS_SECTION_ADDITIONAL, owner, found.a, found.n_a,
                      found.aaaa, found.n_aaaa, zone->ttl);
  ldns_rdf_deep_free(owner);
  return ok;
}

static bool fill_records(ldns_pkt *pkt, const struct plan *plan, enum fill fill)
{
  const ldns_rdf *owner;
  uint32_t ttl = plan->zone->ttl;

  /* Errors before the question was read answer with the header alone. */
  if (!plan->question)
    return true;
  owner = ldns_rr_owner(plan->question);
  if (plan->soa_answer && !push(pkt, LDNS_SECTION_ANSWER, soa_rr(plan, ttl)))
    return false;
  if (plan->ns_answer && !push(pkt, LDNS_SECTION_ANSWER, ns_rr(plan)))
    return false;
  if (!push_addresses(pkt, LDNS_SECTION_ANSWER, owner, plan->a, plan->n_a,
                      plan->aaaa, plan->n_aaaa, ttl))
    return false;
  if (plan->soa_authority && !push(pkt, LDNS_SECTION_AUTHORITY,
                                   soa_rr(plan, plan->zone->negative_ttl)))
    return false;
  if (plan->ns_answer && fill == FILL_ALL && !push_glue(pkt, plan))
    return false;
  return true;
}

/* A response with the query's ID, opcode, RD and CD, without question. */
static ldns_pkt *response_header(const uint8_t *query, int rcode)
{
  ldns_pkt *pkt = ldns_pkt_new();

  if (!pkt)
    return NULL;
  ldns_pkt_set_id(pkt, LDNS_ID_WIRE(query));
  ldns_pkt_set_qr(pkt, true);
  ldns_pkt_set_opcode(pkt, (ldns_pkt_opcode)LDNS_OPCODE_WIRE(query));
  ldns_pkt_set_rd(pkt, LDNS_RD_WIRE(query) != 0);
  ldns_pkt_set_cd(pkt, LDNS_CD_WIRE(query) != 0);
  ldns_pkt_set_rcode(pkt, (uint8_t)(rcode & 0xf));
  return pkt;
}

static ldns_pkt *build(const struct plan *plan, const uint8_t *query,
                       enum fill fill)
{
  ldns_pkt *pkt = response_header(query, plan->rcode);

  if (!pkt)
    return NULL;
  ldns_pkt_set_aa(pkt, plan->authoritative);
  if (plan->question &&
      !push(pkt, LDNS_SECTION_QUESTION, ldns_rr_clone(plan->question)))
    goto fail_free_packet;
  if (plan->query && ldns_pkt_edns(plan->query)) {
    ldns_pkt_set_edns_udp_size(pkt, NLB_DNS_UDP_PAYLOAD_MAX);
    ldns_pkt_set_edns_do(pkt, ldns_pkt_edns_do(plan->query));
    /* The upper eight bits of a 12-bit code ride in the OPT record. */
    ldns_pkt_set_edns_extended_rcode(pkt, (uint8_t)(plan->rcode >> 4));
  }
  if (fill == FILL_TRUNCATED)
    ldns_pkt_set_tc(pkt, true);
  else if (!fill_records(pkt, plan, fill))
    goto fail_free_packet;
  return pkt;

fail_free_packet:
  ldns_pkt_free(pkt);
  return NULL;
}

/* The most a response may hold: 65535 over TCP; over UDP the client's
 * EDNS size (512 without EDNS, never less), capped at ours. */
static size_t size_limit(const ldns_pkt *query,
                         enum nlb_dns_transport transport)
{
  size_t offered;

  if (transport == NLB_DNS_TCP)
    return DNS_TCP_MAX;
  if (!query || !ldns_pkt_edns(query))
    return DNS_CLASSIC_UDP_MAX;
  offered = ldns_pkt_edns_udp_size(query);
  if (offered < DNS_CLASSIC_UDP_MAX)
    return DNS_CLASSIC_UDP_MAX;
  return offered < NLB_DNS_UDP_PAYLOAD_MAX ? offered : NLB_DNS_UDP_PAYLOAD_MAX;
}

/* Builds and serialises the response, with less in it until it fits. */
static int respond(const struct plan *plan, const uint8_t *query,
                   enum nlb_dns_transport transport, uint8_t **response,
                   size_t *response_len, struct nlb_dns_outcome *outcome)
{
  size_t limit = size_limit(plan->query, transport);

  for (enum fill fill = FILL_ALL; fill <= FILL_TRUNCATED; fill++) {
    uint8_t *wire = NULL;
    size_t len = 0;
    ldns_pkt *pkt;
    ldns_status status;

    if (fill == FILL_NO_ADDITIONAL && !plan->ns_answer)
      continue;
    pkt = build(plan, query, fill);
    if (!pkt)
      return -ENOMEM;
    status = ldns_pkt2wire(&wire, pkt, &len);
    ldns_pkt_free(pkt);
    if (status != LDNS_STATUS_OK) {
      free(wire);
      return -ENOMEM;
    }
    if (len <= limit || fill == FILL_TRUNCATED) {
      *response = wire;
      *response_len = len;
      outcome->rcode = plan->rcode;
      outcome->truncated = fill == FILL_TRUNCATED;
      return 0;
    }
    free(wire);
  }
  return -ENOMEM; /* not reached: the truncated response always returns */
}

/* An answer with rcode and nothing but the question (when it was read):
 * FORMERR, NOTIMP, BADVERS, REFUSED. */
static int error_answer(struct plan *plan, int rcode, const char *why,
                        struct nlb_dns_outcome *outcome)
{
  plan->rcode = rcode;
  plan->authoritative = false;
  outcome->why = why;
  return 0;
}

/* Lower-cases the question's name into key; returns its length. */
static size_t lower_name(const ldns_rdf *name, uint8_t key[NLB_DNS_WIRE_MAX])
{
  size_t len = ldns_rdf_size(name);
  const uint8_t *data = ldns_rdf_data(name);

  if (len > NLB_DNS_WIRE_MAX)
    len = NLB_DNS_WIRE_MAX; /* ldns never parses longer names */
  for (size_t i = 0; i < len; i++)
    key[i] = data[i] >= 'A' && data[i] <= 'Z' ? data[i] - 'A' + 'a' : data[i];
  return len;
}

/* Counts the labels of name before byte offset. */
static uint8_t labels_before(const uint8_t *name, size_t len, size_t offset)
{
  uint8_t labels = 0;
  for (size_t pos = 0; pos < offset && pos < len && name[pos];
       pos += (size_t)name[pos] + 1)
    labels++;
  return labels;
}

/* Decides what the answer holds for a well-formed query of one question.
 * Returns 0 (the plan is set) or a reason to answer with FORMERR. */
static int plan_answer(struct plan *plan, struct nlb_dns_outcome *outcome)
{
  const struct nlb_dns_zone *zone = plan->zone;
  ldns_rr_type type = ldns_rr_get_type(plan->question);
  ldns_rr_class class = ldns_rr_get_class(plan->question);
  uint8_t key[NLB_DNS_WIRE_MAX];
  struct nlb_dns_found found = {.apex_offset = -1};
  size_t len;

  if (type == LDNS_RR_TYPE_OPT)
    return error_answer(plan, NLB_DNS_FORMERR, "OPT as question type", outcome);
  if (class != LDNS_RR_CLASS_IN && class != LDNS_RR_CLASS_ANY)
    return error_answer(plan, NLB_DNS_REFUSED, "class other than IN", outcome);
  len = lower_name(ldns_rr_owner(plan->question), key);
  zone->lookup(zone->ctx, key, len, &found);
  if (found.apex_offset < 0)
    return error_answer(plan, NLB_DNS_REFUSED, "not in a served zone", outcome);
  if (type == LDNS_RR_TYPE_AXFR || type == LDNS_RR_TYPE_IXFR)
    return error_answer(plan, NLB_DNS_REFUSED, "zone transfer", outcome);

  plan->authoritative = true;
  plan->apex_labels = labels_before(key, len, (size_t)found.apex_offset);
  if (!found.exists) {
    plan->rcode = NLB_DNS_NXDOMAIN;
    plan->soa_authority = true;
    return 0;
  }
  bool at_apex = found.apex_offset == 0;
  bool any = type == LDNS_RR_TYPE_ANY;
  plan->rcode = NLB_DNS_NOERROR;
  plan->soa_answer = at_apex && (any || type == LDNS_RR_TYPE_SOA);
  plan->ns_answer = at_apex && (any || type == LDNS_RR_TYPE_NS);
  if (any || type == LDNS_RR_TYPE_A) {
    plan->a = found.a;
    plan->n_a = found.n_a;
  }
  if (any || type == LDNS_RR_TYPE_AAAA) {
    plan->aaaa = found.aaaa;
    plan->n_aaaa = found.n_aaaa;
  }
  plan->soa_authority =
      !plan->soa_answer && !plan->ns_answer && plan->n_a + plan->n_aaaa == 0;
  return 0;
}

/* The number of OPT records the query held: ldns folds them into the
 * packet's EDNS fields and takes them (and a TSIG) off its count. */
static unsigned opt_records(const uint8_t *query, const ldns_pkt *pkt)
{
  unsigned on_wire = LDNS_ARCOUNT(query);
  unsigned kept = ldns_pkt_arcount(pkt) + (ldns_pkt_tsig(pkt) ? 1u : 0u);
  return on_wire > kept ? on_wire - kept : 0;
}

static int answer_parsed(struct plan *plan, const uint8_t *query,
                         struct nlb_dns_outcome *outcome)
{
  const ldns_pkt *pkt = plan->query;

  if (ldns_rr_list_rr_count(ldns_pkt_question(pkt)) != 1)
    return error_answer(plan, NLB_DNS_FORMERR, "not one question", outcome);
  plan->question = ldns_rr_list_rr(ldns_pkt_question(pkt), 0);
  if (opt_records(query, pkt) > 1)
    return error_answer(plan, NLB_DNS_FORMERR, "more than one OPT", outcome);
  if (ldns_pkt_edns(pkt) && ldns_pkt_edns_version(pkt) != 0)
    return error_answer(plan, NLB_DNS_BADVERS, "EDNS version other than 0",
                        outcome);
  return plan_answer(plan, outcome);
}

int nlb_dns_answer(const struct nlb_dns_zone *zone,
                   enum nlb_dns_transport transport, const uint8_t *query,
                   size_t len, uint8_t **response, size_t *response_len,
                   struct nlb_dns_outcome *outcome)
{
  struct plan plan = {.zone = zone};
  ldns_pkt *parsed = NULL;
  int rc;

  *response = NULL;
  *response_len = 0;
  *outcome = (struct nlb_dns_outcome){0};
  if (len < LDNS_HEADER_SIZE) {
    outcome->dropped = true;
    outcome->why = "shorter than a DNS header";
    return 0;
  }
  /* Answering a response could start a loop between two servers. */
  if (LDNS_QR_WIRE(query)) {
    outcome->dropped = true;
    outcome->why = "a response, not a query";
    return 0;
  }
  if (LDNS_OPCODE_WIRE(query) != LDNS_PACKET_QUERY)
    error_answer(&plan, NLB_DNS_NOTIMP, "opcode other than QUERY", outcome);
  else if (LDNS_QDCOUNT(query) != 1)
    error_answer(&plan, NLB_DNS_FORMERR, "not one question", outcome);
  else if (LDNS_ANCOUNT(query) != 0 || LDNS_NSCOUNT(query) != 0 ||
           LDNS_ARCOUNT(query) > QUERY_ADDITIONAL_MAX)
    error_answer(&plan, NLB_DNS_FORMERR, "records where a query has none",
                 outcome);
  else if (ldns_wire2pkt(&parsed, query, len) != LDNS_STATUS_OK)
    error_answer(&plan, NLB_DNS_FORMERR, "malformed", outcome);
  else {
    plan.query = parsed;
    answer_parsed(&plan, query, outcome);
  }
  rc = respond(&plan, query, transport, response, response_len, outcome);
  ldns_pkt_free(parsed);
  return rc;
}

char *nlb_dns_describe_query(const uint8_t *query, size_t len, char *buf,
                             size_t size)
{
  ldns_pkt *pkt = NULL;
  char *name = NULL, *type = NULL;

  snprintf(buf, size, "-");
  if (len < LDNS_HEADER_SIZE ||
      ldns_wire2pkt(&pkt, query, len) != LDNS_STATUS_OK)
    return buf;
  if (ldns_rr_list_rr_count(ldns_pkt_question(pkt)) > 0) {
    const ldns_rr *q = ldns_rr_list_rr(ldns_pkt_question(pkt), 0);
    name = ldns_rdf2str(ldns_rr_owner(q));
    type = ldns_rr_type2str(ldns_rr_get_type(q));
    if (name && type)
      snprintf(buf, size, "%s %s", name, type);
  }
  free(name);
  free(type);
  ldns_pkt_free(pkt);
  return buf;
}
