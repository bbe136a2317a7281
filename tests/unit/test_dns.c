/* CUnit suite for nlb/dns_message.c and nlb/dns_records.c: every kind of
 * answer (A, AAAA, NODATA, NXDOMAIN, REFUSED, SOA/NS at an apex, private
 * DNS names, empty non-terminals), truncation at each EDNS size, case,
 * malformed and unsupported queries, and the record table's set semantics
 * and cost at 10,000 records. Queries are built and responses read back
 * with ldns, independently of the code under test. */
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "nlb/dns/dns-message.h"
#include "nlb/dns/dns-records.h"
#include "unit.h"

#define TTL 30
#define NEGATIVE_TTL 5
#define NO_EDNS -1

static struct nlb_dns_records *records;

static union nlb_sockaddr ip(const char *text)
{
  union nlb_sockaddr addr;
  CU_ASSERT_FATAL(nlb_addr_parse_ip(text, 0, &addr) == 0);
  return addr;
}

static void add(const char *name, const char *address)
{
  union nlb_sockaddr addr = ip(address);
  CU_ASSERT_EQUAL_FATAL(nlb_dns_records_add(records, name, &addr), 0);
}

/* Outside a test case (no CUnit assertions): 0 or -1. */
static int seed(const char *name, const char *address)
{
  union nlb_sockaddr addr;
  if (nlb_addr_parse_ip(address, 0, &addr) < 0 ||
      nlb_dns_records_add(records, name, &addr) < 0)
    return -1;
  return 0;
}

static int setup(void)
{
  char text[64];
  int rc = 0;

  records = nlb_dns_records_new("nlb.internal");
  if (!records)
    return 1;
  rc |= seed("nlb.internal", "10.0.0.2"); /* the responder's own address */
  rc |= seed("ep-1.nlb.internal", "10.0.0.5");
  rc |= seed("payments.nlb.internal", "10.0.0.5");
  rc |= seed("payments.nlb.internal", "fd00::5");
  rc |= seed("a.b.nlb.internal", "10.0.0.9");
  rc |= seed("api.payments.example", "10.0.0.5");
  for (int i = 0; i < 100; i++) {
    snprintf(text, sizeof(text), "fd00::1:%x", i);
    rc |= seed("big.nlb.internal", text);
  }
  for (int i = 0; i < 40; i++) {
    snprintf(text, sizeof(text), "10.0.1.%d", i);
    rc |= seed("forty.nlb.internal", text);
  }
  return rc ? 1 : 0;
}

static int teardown(void)
{
  nlb_dns_records_free(records);
  return 0;
}

static struct nlb_dns_zone zone(void)
{
  struct nlb_dns_zone z = {.ttl = TTL,
                           .negative_ttl = NEGATIVE_TTL,
                           .serial = nlb_dns_records_serial(records),
                           .lookup = nlb_dns_records_lookup,
                           .ctx = records};
  z.apex = nlb_dns_records_zone(records, &z.apex_len);
  return z;
}

/* A query for name/type with ID 0x1234; edns_size NO_EDNS for none. */
static size_t make_query(uint8_t *out, size_t size, const char *name,
                         ldns_rr_type type, int edns_size)
{
  ldns_pkt *q = NULL;
  uint8_t *wire = NULL;
  size_t len = 0;

  CU_ASSERT_FATAL(ldns_pkt_query_new_frm_str(&q, name, type, LDNS_RR_CLASS_IN,
                                             LDNS_RD) == LDNS_STATUS_OK);
  ldns_pkt_set_id(q, 0x1234);
  if (edns_size != NO_EDNS)
    ldns_pkt_set_edns_udp_size(q, (uint16_t)edns_size);
  CU_ASSERT_FATAL(ldns_pkt2wire(&wire, q, &len) == LDNS_STATUS_OK);
  CU_ASSERT_FATAL(len <= size);
  memcpy(out, wire, len);
  free(wire);
  ldns_pkt_free(q);
  return len;
}

/* Answers the raw query; returns the parsed response (NULL when dropped)
 * and checks what every response must be: QR set, ID and RD echoed, within
 * the size the transport allows. */
static ldns_pkt *ask_raw(const uint8_t *query, size_t len,
                         enum nlb_dns_transport transport, size_t limit,
                         struct nlb_dns_outcome *outcome)
{
  struct nlb_dns_zone z = zone();
  struct nlb_dns_outcome ignored;
  uint8_t *response = NULL;
  size_t response_len = 0;
  ldns_pkt *pkt = NULL;

  if (!outcome)
    outcome = &ignored;
  CU_ASSERT_EQUAL_FATAL(nlb_dns_answer(&z, transport, query, len, &response,
                                       &response_len, outcome),
                        0);
  if (!response) {
    CU_ASSERT_TRUE(outcome->dropped);
    return NULL;
  }
  CU_ASSERT_FALSE(outcome->dropped);
  CU_ASSERT_TRUE(response_len <= limit);
  CU_ASSERT_EQUAL_FATAL(ldns_wire2pkt(&pkt, response, response_len),
                        LDNS_STATUS_OK);
  CU_ASSERT_TRUE(ldns_pkt_qr(pkt));
  CU_ASSERT_FALSE(ldns_pkt_ra(pkt)); /* nlb never recurses */
  if (len >= 12) {
    CU_ASSERT_EQUAL(ldns_pkt_id(pkt), (query[0] << 8) | query[1]);
    CU_ASSERT_EQUAL(ldns_pkt_rd(pkt), (query[2] & 1) != 0);
  }
  free(response);
  return pkt;
}

static ldns_pkt *ask(const char *name, ldns_rr_type type, int edns_size,
                     enum nlb_dns_transport transport,
                     struct nlb_dns_outcome *outcome)
{
  uint8_t query[512];
  size_t limit = transport == NLB_DNS_TCP ? 65535
                 : edns_size == NO_EDNS   ? 512
                 : edns_size < 512        ? 512
                 : edns_size > 1232       ? 1232
                                          : (size_t)edns_size;
  size_t len = make_query(query, sizeof(query), name, type, edns_size);
  ldns_pkt *pkt = ask_raw(query, len, transport, limit, outcome);

  CU_ASSERT_PTR_NOT_NULL_FATAL(pkt);
  /* The question comes back exactly as asked. */
  CU_ASSERT_EQUAL_FATAL(ldns_pkt_qdcount(pkt), 1);
  const ldns_rr *q = ldns_rr_list_rr(ldns_pkt_question(pkt), 0);
  char *owner = ldns_rdf2str(ldns_rr_owner(q));
  char asked[300];
  snprintf(asked, sizeof(asked), "%s.", name);
  CU_ASSERT_STRING_EQUAL(owner, asked);
  free(owner);
  CU_ASSERT_EQUAL(ldns_rr_get_type(q), type);
  return pkt;
}

static const ldns_rr *rr_at(const ldns_pkt *pkt, ldns_pkt_section section,
                            size_t i)
{
  ldns_rr_list *list = section == LDNS_SECTION_ANSWER ? ldns_pkt_answer(pkt)
                       : section == LDNS_SECTION_AUTHORITY
                           ? ldns_pkt_authority(pkt)
                           : ldns_pkt_additional(pkt);
  return ldns_rr_list_rr(list, i);
}

static void expect_text(const ldns_rdf *rdf, const char *want)
{
  char *text = ldns_rdf2str(rdf);
  if (strcmp(text, want) != 0)
    fprintf(stderr, "\n  got %s, want %s", text, want);
  CU_ASSERT_STRING_EQUAL(text, want);
  free(text);
}

/* NXDOMAIN and NODATA: the SOA of apex (as spelt) alone in authority. */
static void expect_negative(const ldns_pkt *pkt, const char *apex)
{
  CU_ASSERT_TRUE(ldns_pkt_aa(pkt));
  CU_ASSERT_EQUAL(ldns_pkt_ancount(pkt), 0);
  CU_ASSERT_EQUAL_FATAL(ldns_pkt_nscount(pkt), 1);
  const ldns_rr *soa = rr_at(pkt, LDNS_SECTION_AUTHORITY, 0);
  CU_ASSERT_EQUAL(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
  CU_ASSERT_EQUAL(ldns_rr_ttl(soa), NEGATIVE_TTL);
  expect_text(ldns_rr_owner(soa), apex);
  /* MNAME may point at the question's spelling of the apex (ldns
   * compresses names case-insensitively). */
  char *mname = ldns_rdf2str(ldns_rr_rdf(soa, 0));
  CU_ASSERT_EQUAL(strcasecmp(mname, "nlb.internal."), 0);
  free(mname);
  /* The minimum: how long resolvers cache the negative answer. */
  CU_ASSERT_EQUAL(ldns_rdf2native_int32(ldns_rr_rdf(soa, 6)), NEGATIVE_TTL);
}

static void test_dns_a_answer(void)
{
  ldns_pkt *pkt =
      ask("ep-1.nlb.internal", LDNS_RR_TYPE_A, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
  CU_ASSERT_TRUE(ldns_pkt_aa(pkt));
  CU_ASSERT_FALSE(ldns_pkt_tc(pkt));
  CU_ASSERT_EQUAL_FATAL(ldns_pkt_ancount(pkt), 1);
  const ldns_rr *a = rr_at(pkt, LDNS_SECTION_ANSWER, 0);
  CU_ASSERT_EQUAL(ldns_rr_get_type(a), LDNS_RR_TYPE_A);
  CU_ASSERT_EQUAL(ldns_rr_ttl(a), TTL);
  expect_text(ldns_rr_owner(a), "ep-1.nlb.internal.");
  expect_text(ldns_rr_rdf(a, 0), "10.0.0.5");
  CU_ASSERT_EQUAL(ldns_pkt_nscount(pkt), 0);
  CU_ASSERT_EQUAL(ldns_pkt_arcount(pkt), 0);
  /* No EDNS asked, none answered. */
  CU_ASSERT_FALSE(ldns_pkt_edns(pkt));
  ldns_pkt_free(pkt);
}

static void test_dns_aaaa_and_any(void)
{
  ldns_pkt *pkt =
      ask("payments.nlb.internal", LDNS_RR_TYPE_AAAA, 1232, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
  CU_ASSERT_EQUAL_FATAL(ldns_pkt_ancount(pkt), 1);
  expect_text(ldns_rr_rdf(rr_at(pkt, LDNS_SECTION_ANSWER, 0), 0), "fd00::5");
  CU_ASSERT_TRUE(ldns_pkt_edns(pkt));
  CU_ASSERT_EQUAL(ldns_pkt_edns_udp_size(pkt), NLB_DNS_UDP_PAYLOAD_MAX);
  ldns_pkt_free(pkt);

  pkt = ask("payments.nlb.internal", LDNS_RR_TYPE_ANY, NO_EDNS, NLB_DNS_UDP,
            NULL);
  CU_ASSERT_EQUAL(ldns_pkt_ancount(pkt), 2);
  CU_ASSERT_EQUAL(ldns_rr_get_type(rr_at(pkt, LDNS_SECTION_ANSWER, 0)),
                  LDNS_RR_TYPE_A);
  CU_ASSERT_EQUAL(ldns_rr_get_type(rr_at(pkt, LDNS_SECTION_ANSWER, 1)),
                  LDNS_RR_TYPE_AAAA);
  ldns_pkt_free(pkt);
}

static void test_dns_nodata(void)
{
  static const ldns_rr_type others[] = {LDNS_RR_TYPE_AAAA, LDNS_RR_TYPE_MX,
                                        LDNS_RR_TYPE_TXT,  LDNS_RR_TYPE_SOA,
                                        LDNS_RR_TYPE_NS,   LDNS_RR_TYPE_HTTPS};
  for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
    ldns_pkt *pkt =
        ask("ep-1.nlb.internal", others[i], NO_EDNS, NLB_DNS_UDP, NULL);
    CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
    expect_negative(pkt, "nlb.internal.");
    ldns_pkt_free(pkt);
  }
}

static void test_dns_nxdomain(void)
{
  struct nlb_dns_outcome outcome;
  ldns_pkt *pkt = ask("ep-gone.nlb.internal", LDNS_RR_TYPE_A, NO_EDNS,
                      NLB_DNS_UDP, &outcome);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NXDOMAIN);
  CU_ASSERT_EQUAL(outcome.rcode, NLB_DNS_NXDOMAIN);
  CU_ASSERT_PTR_NULL(outcome.why); /* an ordinary answer, not logged */
  expect_negative(pkt, "nlb.internal.");
  ldns_pkt_free(pkt);
  /* Below a name that exists: nothing there either. */
  pkt = ask("x.ep-1.nlb.internal", LDNS_RR_TYPE_A, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NXDOMAIN);
  ldns_pkt_free(pkt);
}

static void test_dns_refused_outside_zones(void)
{
  static const char *const outside[] = {"example.com",      "internal",
                                        "payments.example", "nlb.internal.evil",
                                        "xnlb.internal",    "com"};
  for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
    struct nlb_dns_outcome outcome;
    ldns_pkt *pkt =
        ask(outside[i], LDNS_RR_TYPE_A, NO_EDNS, NLB_DNS_UDP, &outcome);
    CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_REFUSED);
    CU_ASSERT_FALSE(ldns_pkt_aa(pkt));
    CU_ASSERT_EQUAL(ldns_pkt_ancount(pkt) + ldns_pkt_nscount(pkt) +
                        ldns_pkt_arcount(pkt),
                    0);
    CU_ASSERT_PTR_NOT_NULL(outcome.why);
    ldns_pkt_free(pkt);
  }
}

static void test_dns_apex_soa_and_ns(void)
{
  ldns_pkt *pkt =
      ask("nlb.internal", LDNS_RR_TYPE_SOA, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
  CU_ASSERT_TRUE(ldns_pkt_aa(pkt));
  CU_ASSERT_EQUAL_FATAL(ldns_pkt_ancount(pkt), 1);
  const ldns_rr *soa = rr_at(pkt, LDNS_SECTION_ANSWER, 0);
  CU_ASSERT_EQUAL(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
  CU_ASSERT_EQUAL(ldns_rr_ttl(soa), TTL);
  expect_text(ldns_rr_rdf(soa, 1), "hostmaster.nlb.internal.");
  CU_ASSERT_EQUAL(ldns_rdf2native_int32(ldns_rr_rdf(soa, 2)),
                  nlb_dns_records_serial(records));
  CU_ASSERT_EQUAL(ldns_pkt_nscount(pkt), 0);
  ldns_pkt_free(pkt);

  pkt = ask("nlb.internal", LDNS_RR_TYPE_NS, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL_FATAL(ldns_pkt_ancount(pkt), 1);
  const ldns_rr *ns = rr_at(pkt, LDNS_SECTION_ANSWER, 0);
  CU_ASSERT_EQUAL(ldns_rr_get_type(ns), LDNS_RR_TYPE_NS);
  expect_text(ldns_rr_rdf(ns, 0), "nlb.internal.");
  /* Glue: the responder's own address. */
  CU_ASSERT_EQUAL_FATAL(ldns_pkt_arcount(pkt), 1);
  expect_text(ldns_rr_rdf(rr_at(pkt, LDNS_SECTION_ADDITIONAL, 0), 0),
              "10.0.0.2");
  ldns_pkt_free(pkt);

  pkt = ask("nlb.internal", LDNS_RR_TYPE_ANY, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL(ldns_pkt_ancount(pkt), 3); /* SOA, NS, A */
  ldns_pkt_free(pkt);
}

static void test_dns_private_name(void)
{
  ldns_pkt *pkt =
      ask("api.payments.example", LDNS_RR_TYPE_A, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
  CU_ASSERT_TRUE(ldns_pkt_aa(pkt));
  CU_ASSERT_EQUAL_FATAL(ldns_pkt_ancount(pkt), 1);
  expect_text(ldns_rr_rdf(rr_at(pkt, LDNS_SECTION_ANSWER, 0), 0), "10.0.0.5");
  ldns_pkt_free(pkt);

  /* Its own zone: NODATA and NXDOMAIN carry its SOA. */
  pkt = ask("api.payments.example", LDNS_RR_TYPE_AAAA, NO_EDNS, NLB_DNS_UDP,
            NULL);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
  expect_negative(pkt, "api.payments.example.");
  ldns_pkt_free(pkt);
  pkt = ask("v2.api.payments.example", LDNS_RR_TYPE_A, NO_EDNS, NLB_DNS_UDP,
            NULL);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NXDOMAIN);
  expect_negative(pkt, "api.payments.example.");
  ldns_pkt_free(pkt);
  pkt =
      ask("api.payments.example", LDNS_RR_TYPE_NS, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL_FATAL(ldns_pkt_ancount(pkt), 1);
  expect_text(ldns_rr_rdf(rr_at(pkt, LDNS_SECTION_ANSWER, 0), 0),
              "nlb.internal.");
  ldns_pkt_free(pkt);

  /* Gone with its last address: no longer served at all. */
  union nlb_sockaddr addr = ip("10.0.0.5");
  CU_ASSERT_EQUAL(
      nlb_dns_records_remove(records, "api.payments.example", &addr), 0);
  pkt = ask("api.payments.example", LDNS_RR_TYPE_A, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_REFUSED);
  ldns_pkt_free(pkt);
  add("api.payments.example", "10.0.0.5");
}

static void test_dns_case_kept(void)
{
  ldns_pkt *pkt =
      ask("EP-1.NLB.Internal", LDNS_RR_TYPE_A, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
  CU_ASSERT_EQUAL_FATAL(ldns_pkt_ancount(pkt), 1);
  expect_text(ldns_rr_owner(rr_at(pkt, LDNS_SECTION_ANSWER, 0)),
              "EP-1.NLB.Internal.");
  ldns_pkt_free(pkt);
  pkt = ask("Nope.NLB.Internal", LDNS_RR_TYPE_A, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NXDOMAIN);
  expect_negative(pkt, "NLB.Internal.");
  ldns_pkt_free(pkt);
  pkt = ask("API.Payments.EXAMPLE", LDNS_RR_TYPE_A, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL(ldns_pkt_ancount(pkt), 1);
  ldns_pkt_free(pkt);
}

static void test_dns_empty_non_terminal(void)
{
  ldns_pkt *pkt =
      ask("b.nlb.internal", LDNS_RR_TYPE_A, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
  expect_negative(pkt, "nlb.internal.");
  ldns_pkt_free(pkt);

  union nlb_sockaddr addr = ip("10.0.0.9");
  CU_ASSERT_EQUAL(nlb_dns_records_remove(records, "a.b.nlb.internal", &addr),
                  0);
  pkt = ask("b.nlb.internal", LDNS_RR_TYPE_A, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NXDOMAIN);
  ldns_pkt_free(pkt);
  add("a.b.nlb.internal", "10.0.0.9");
}

static void test_dns_truncation(void)
{
  struct nlb_dns_outcome outcome;
  /* 100 AAAA: about 2.9 KB. */
  ldns_pkt *pkt = ask("big.nlb.internal", LDNS_RR_TYPE_AAAA, NO_EDNS,
                      NLB_DNS_UDP, &outcome);
  CU_ASSERT_TRUE(ldns_pkt_tc(pkt));
  CU_ASSERT_TRUE(outcome.truncated);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
  CU_ASSERT_EQUAL(ldns_pkt_ancount(pkt), 0);
  ldns_pkt_free(pkt);

  pkt = ask("big.nlb.internal", LDNS_RR_TYPE_AAAA, 4096, NLB_DNS_UDP, NULL);
  CU_ASSERT_TRUE(ldns_pkt_tc(pkt));
  CU_ASSERT_TRUE(ldns_pkt_edns(pkt)); /* the OPT stays */
  ldns_pkt_free(pkt);

  pkt = ask("big.nlb.internal", LDNS_RR_TYPE_AAAA, NO_EDNS, NLB_DNS_TCP,
            &outcome);
  CU_ASSERT_FALSE(ldns_pkt_tc(pkt));
  CU_ASSERT_FALSE(outcome.truncated);
  CU_ASSERT_EQUAL(ldns_pkt_ancount(pkt), 100);
  ldns_pkt_free(pkt);
}

static void test_dns_edns_sizes(void)
{
  /* 40 A records: between 512 and 1232 bytes. */
  static const struct {
    int edns_size;
    bool truncated;
  } cases[] = {{NO_EDNS, true}, {0, true},     {100, true},   {511, true},
               {512, true},     {600, true},   {1000, false}, {1232, false},
               {4096, false},   {65535, false}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    ldns_pkt *pkt = ask("forty.nlb.internal", LDNS_RR_TYPE_A,
                        cases[i].edns_size, NLB_DNS_UDP, NULL);
    if (ldns_pkt_tc(pkt) != cases[i].truncated)
      fprintf(stderr, "\n  EDNS size %d: TC %d", cases[i].edns_size,
              ldns_pkt_tc(pkt));
    CU_ASSERT_EQUAL(ldns_pkt_tc(pkt), cases[i].truncated);
    CU_ASSERT_EQUAL(ldns_pkt_ancount(pkt), cases[i].truncated ? 0 : 40);
    ldns_pkt_free(pkt);
  }
}

/* The NS answer's glue goes before anything else, without TC. */
static void test_dns_glue_dropped_first(void)
{
  char text[64];
  for (int i = 0; i < 80; i++) {
    snprintf(text, sizeof(text), "fd00::2:%x", i);
    union nlb_sockaddr addr = ip(text);
    /* Internal use of the apex: the responder's addresses. */
    CU_ASSERT_EQUAL(nlb_dns_records_add(records, "nlb.internal", &addr), 0);
  }
  ldns_pkt *pkt =
      ask("nlb.internal", LDNS_RR_TYPE_NS, NO_EDNS, NLB_DNS_UDP, NULL);
  CU_ASSERT_FALSE(ldns_pkt_tc(pkt));
  CU_ASSERT_EQUAL(ldns_pkt_ancount(pkt), 1);
  CU_ASSERT_EQUAL(ldns_pkt_arcount(pkt), 0);
  ldns_pkt_free(pkt);
  pkt = ask("nlb.internal", LDNS_RR_TYPE_NS, NO_EDNS, NLB_DNS_TCP, NULL);
  CU_ASSERT_EQUAL(ldns_pkt_arcount(pkt), 81);
  ldns_pkt_free(pkt);
  for (int i = 0; i < 80; i++) {
    snprintf(text, sizeof(text), "fd00::2:%x", i);
    union nlb_sockaddr addr = ip(text);
    CU_ASSERT_EQUAL(nlb_dns_records_remove(records, "nlb.internal", &addr), 0);
  }
}

static void test_dns_do_bit_and_badvers(void)
{
  uint8_t query[512];
  size_t len = make_query(query, sizeof(query), "ep-1.nlb.internal",
                          LDNS_RR_TYPE_A, 1232);
  /* The OPT record closes the query: its TTL field is ext-rcode,
   * version, flags (DO is the top bit). */
  CU_ASSERT_EQUAL_FATAL(query[len - 11 + 1], 0); /* type OPT = 41 */
  CU_ASSERT_EQUAL_FATAL(query[len - 11 + 2], 41);
  query[len - 11 + 7] = 0x80; /* DO */
  struct nlb_dns_outcome outcome;
  ldns_pkt *pkt = ask_raw(query, len, NLB_DNS_UDP, 1232, &outcome);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pkt);
  CU_ASSERT_TRUE(ldns_pkt_edns_do(pkt));
  CU_ASSERT_EQUAL(ldns_pkt_ancount(pkt), 1);
  ldns_pkt_free(pkt);

  query[len - 11 + 6] = 1; /* EDNS version 1 */
  pkt = ask_raw(query, len, NLB_DNS_UDP, 1232, &outcome);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pkt);
  CU_ASSERT_EQUAL(outcome.rcode, NLB_DNS_BADVERS);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), 0);
  CU_ASSERT_EQUAL(ldns_pkt_edns_extended_rcode(pkt), 1);
  CU_ASSERT_EQUAL(ldns_pkt_edns_version(pkt), 0);
  CU_ASSERT_EQUAL(ldns_pkt_ancount(pkt), 0);
  ldns_pkt_free(pkt);
}

static void expect_rcode(const uint8_t *query, size_t len, int rcode)
{
  struct nlb_dns_outcome outcome;
  ldns_pkt *pkt = ask_raw(query, len, NLB_DNS_UDP, 512, &outcome);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pkt);
  if (outcome.rcode != rcode)
    fprintf(stderr, "\n  rcode %d (%s), want %d", outcome.rcode,
            outcome.why ? outcome.why : "", rcode);
  CU_ASSERT_EQUAL(outcome.rcode, rcode);
  CU_ASSERT_EQUAL(ldns_pkt_get_rcode(pkt), rcode & 0xf);
  CU_ASSERT_PTR_NOT_NULL(outcome.why);
  CU_ASSERT_FALSE(ldns_pkt_aa(pkt));
  CU_ASSERT_EQUAL(ldns_pkt_ancount(pkt), 0);
  ldns_pkt_free(pkt);
}

static void test_dns_malformed(void)
{
  uint8_t good[512], q[600];
  size_t len = make_query(good, sizeof(good), "ep-1.nlb.internal",
                          LDNS_RR_TYPE_A, NO_EDNS);

  /* No question; two questions (the second missing). */
  memcpy(q, good, len);
  q[5] = 0;
  expect_rcode(q, len, NLB_DNS_FORMERR);
  q[5] = 2;
  expect_rcode(q, len, NLB_DNS_FORMERR);
  /* An answer record in a query. */
  memcpy(q, good, len);
  q[7] = 1;
  expect_rcode(q, len, NLB_DNS_FORMERR);
  /* Additional records beyond an OPT and a TSIG. */
  memcpy(q, good, len);
  q[11] = 3;
  expect_rcode(q, len, NLB_DNS_FORMERR);
  /* The question cut anywhere. */
  for (size_t cut = 12; cut < len; cut++)
    expect_rcode(good, cut, NLB_DNS_FORMERR);
  /* A label longer than the rest of the packet; a label over 63. */
  memcpy(q, good, len);
  q[12] = 60;
  expect_rcode(q, len, NLB_DNS_FORMERR);
  q[12] = 64;
  expect_rcode(q, len, NLB_DNS_FORMERR);
  /* A compression pointer to itself. */
  memcpy(q, good, 12);
  memcpy(q + 12, "\xc0\x0c\x00\x01\x00\x01", 6);
  expect_rcode(q, 18, NLB_DNS_FORMERR);
  /* An OPT record announced but absent; two OPT records. */
  memcpy(q, good, len);
  q[11] = 1;
  expect_rcode(q, len, NLB_DNS_FORMERR);
  static const uint8_t opt[11] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0};
  memcpy(q + len, opt, 11);
  memcpy(q + len + 11, opt, 11);
  q[11] = 2;
  expect_rcode(q, len + 22, NLB_DNS_FORMERR);
  /* OPT as the question's type. */
  size_t n =
      make_query(q, sizeof(q), "ep-1.nlb.internal", LDNS_RR_TYPE_OPT, NO_EDNS);
  expect_rcode(q, n, NLB_DNS_FORMERR);
}

static void test_dns_unsupported(void)
{
  uint8_t q[512];
  size_t len =
      make_query(q, sizeof(q), "ep-1.nlb.internal", LDNS_RR_TYPE_A, NO_EDNS);
  /* NOTIFY (4) and UPDATE (5): not implemented. */
  q[2] = (uint8_t)((q[2] & 0x87) | 4 << 3);
  expect_rcode(q, len, NLB_DNS_NOTIMP);
  q[2] = (uint8_t)((q[2] & 0x87) | 5 << 3);
  expect_rcode(q, len, NLB_DNS_NOTIMP);
  /* Class CHAOS (version.bind and friends). */
  len = make_query(q, sizeof(q), "ep-1.nlb.internal", LDNS_RR_TYPE_A, NO_EDNS);
  q[len - 1] = 3;
  expect_rcode(q, len, NLB_DNS_REFUSED);
  /* Class ANY is answered as IN. */
  q[len - 1] = 255;
  struct nlb_dns_outcome outcome;
  ldns_pkt *pkt = ask_raw(q, len, NLB_DNS_UDP, 512, &outcome);
  CU_ASSERT_EQUAL(ldns_pkt_ancount(pkt), 1);
  ldns_pkt_free(pkt);
  /* Zone transfers are not offered. */
  len = make_query(q, sizeof(q), "nlb.internal", LDNS_RR_TYPE_AXFR, NO_EDNS);
  expect_rcode(q, len, NLB_DNS_REFUSED);
}

static void test_dns_dropped(void)
{
  uint8_t q[512];
  size_t len =
      make_query(q, sizeof(q), "ep-1.nlb.internal", LDNS_RR_TYPE_A, NO_EDNS);
  struct nlb_dns_outcome outcome;

  for (size_t cut = 0; cut < 12; cut++) {
    CU_ASSERT_PTR_NULL(ask_raw(q, cut, NLB_DNS_UDP, 512, &outcome));
    CU_ASSERT_TRUE(outcome.dropped);
  }
  q[2] |= 0x80; /* QR: a response */
  CU_ASSERT_PTR_NULL(ask_raw(q, len, NLB_DNS_UDP, 512, &outcome));
  CU_ASSERT_TRUE(outcome.dropped);
  CU_ASSERT_PTR_NOT_NULL(outcome.why);
}

static void test_dns_describe_query(void)
{
  uint8_t q[512];
  char text[300];
  size_t len =
      make_query(q, sizeof(q), "ep-1.nlb.internal", LDNS_RR_TYPE_AAAA, NO_EDNS);
  CU_ASSERT_STRING_EQUAL(nlb_dns_describe_query(q, len, text, sizeof(text)),
                         "ep-1.nlb.internal. AAAA");
  /* Bytes that would break a log line come out escaped. */
  q[13] = '\n';
  q[14] = ' ';
  q[15] = '"';
  nlb_dns_describe_query(q, len, text, sizeof(text));
  CU_ASSERT_PTR_NULL(strchr(text, '\n'));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "\\010"));
  CU_ASSERT_STRING_EQUAL(nlb_dns_describe_query(q, 5, text, sizeof(text)), "-");
}

static void test_dns_name_to_wire(void)
{
  uint8_t wire[NLB_DNS_WIRE_MAX];
  char long_label[70], long_name[300];

  CU_ASSERT_EQUAL(nlb_dns_name_to_wire("Ab.c", wire), 6);
  CU_ASSERT_EQUAL(memcmp(wire, "\002ab\001c\000", 6), 0);
  CU_ASSERT_EQUAL(nlb_dns_name_to_wire("ab.c.", wire), 6);
  CU_ASSERT_EQUAL(nlb_dns_name_to_wire("_x-1.y", wire), 8);
  static const char *const bad[] = {"",    ".",     "a..b",  ".a",    "a b",
                                    "a/b", "a\\.b", "é.com", "a.b..", NULL};
  for (const char *const *name = bad; *name; name++)
    CU_ASSERT_EQUAL(nlb_dns_name_to_wire(*name, wire), -EINVAL);
  CU_ASSERT_EQUAL(nlb_dns_name_to_wire(NULL, wire), -EINVAL);
  memset(long_label, 'a', 64);
  long_label[64] = '\0';
  CU_ASSERT_EQUAL(nlb_dns_name_to_wire(long_label, wire), -EINVAL);
  long_label[63] = '\0';
  CU_ASSERT_EQUAL(nlb_dns_name_to_wire(long_label, wire), 65);
  /* 4 x 63 + 3 dots = 255 characters: 257 bytes of wire, too long. */
  snprintf(long_name, sizeof(long_name), "%s.%s.%s.%s", long_label, long_label,
           long_label, long_label);
  CU_ASSERT_EQUAL(nlb_dns_name_to_wire(long_name, wire), -EINVAL);
  long_name[strlen(long_name) - 2] = '\0'; /* 253 characters: fits */
  CU_ASSERT_EQUAL(nlb_dns_name_to_wire(long_name, wire), 255);
}

static void test_dns_records_set_semantics(void)
{
  struct nlb_dns_records *r = nlb_dns_records_new("zone.test");
  union nlb_sockaddr a = ip("10.1.0.1"), b = ip("fd00::1");
  union nlb_sockaddr unix_addr = {.sa.sa_family = AF_UNIX};

  CU_ASSERT_PTR_NOT_NULL_FATAL(r);
  CU_ASSERT_PTR_NULL(nlb_dns_records_new("bad name"));
  uint32_t serial = nlb_dns_records_serial(r);
  CU_ASSERT_EQUAL(nlb_dns_records_add(r, "x.zone.test", &a), 0);
  CU_ASSERT_EQUAL(nlb_dns_records_add(r, "X.Zone.Test", &a), 0);
  CU_ASSERT_EQUAL(nlb_dns_records_add(r, "x.zone.test", &b), 0);
  CU_ASSERT_EQUAL(nlb_dns_records_count(r), 2);
  CU_ASSERT_NOT_EQUAL(nlb_dns_records_serial(r), serial);
  CU_ASSERT_EQUAL(nlb_dns_records_add(r, "x..zone.test", &a), -EINVAL);
  CU_ASSERT_EQUAL(nlb_dns_records_add(r, "x.zone.test", &unix_addr), -EINVAL);
  CU_ASSERT_EQUAL(nlb_dns_records_remove(r, "y.zone.test", &a), -ENOENT);
  CU_ASSERT_EQUAL(nlb_dns_records_remove(r, "x.zone.test", &a), 0);
  CU_ASSERT_EQUAL(nlb_dns_records_remove(r, "x.zone.test", &a), -ENOENT);
  CU_ASSERT_EQUAL(nlb_dns_records_remove(r, "x.zone.test", &b), 0);
  CU_ASSERT_EQUAL(nlb_dns_records_count(r), 0);

  /* Malformed wire names are outside every zone. */
  struct nlb_dns_found found;
  nlb_dns_records_lookup(r, (const uint8_t *)"\005zone\004tes", 10, &found);
  CU_ASSERT_EQUAL(found.apex_offset, -1);
  nlb_dns_records_lookup(r, (const uint8_t *)"\000", 1, &found);
  CU_ASSERT_EQUAL(found.apex_offset, -1);
  nlb_dns_records_lookup(r, (const uint8_t *)"\004zone\004test\000", 11,
                         &found);
  CU_ASSERT_EQUAL(found.apex_offset, 0);
  CU_ASSERT_TRUE(found.exists);
  nlb_dns_records_free(r);
}

static double seconds_since(const struct timespec *start)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - start->tv_sec) +
         (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* 10,000 endpoints, each EP-ID and its service name: every change is
 * cheap, and what is left answers exactly. */
static void test_dns_records_at_10000(void)
{
  enum { N = 10000 };
  struct nlb_dns_records *r = nlb_dns_records_new("nlb.internal");
  char name[64], address[64];
  struct timespec start;
  uint8_t wire[NLB_DNS_WIRE_MAX];
  struct nlb_dns_found found;

  CU_ASSERT_PTR_NOT_NULL_FATAL(r);
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof(name), "ep-%08x.nlb.internal", i);
    snprintf(address, sizeof(address), "10.%d.%d.%d", i >> 16, (i >> 8) & 255,
             i & 255);
    union nlb_sockaddr addr = ip(address);
    CU_ASSERT_EQUAL(nlb_dns_records_add(r, name, &addr), 0);
    snprintf(name, sizeof(name), "svc-%d.nlb.internal", i % 100);
    CU_ASSERT_EQUAL(nlb_dns_records_add(r, name, &addr), 0);
  }
  double added = seconds_since(&start);
  CU_ASSERT_EQUAL(nlb_dns_records_count(r), 2 * N);

  clock_gettime(CLOCK_MONOTONIC, &start);
  for (int i = 0; i < N; i += 2) {
    snprintf(name, sizeof(name), "ep-%08x.nlb.internal", i);
    snprintf(address, sizeof(address), "10.%d.%d.%d", i >> 16, (i >> 8) & 255,
             i & 255);
    union nlb_sockaddr addr = ip(address);
    CU_ASSERT_EQUAL(nlb_dns_records_remove(r, name, &addr), 0);
  }
  double removed = seconds_since(&start);
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof(name), "ep-%08x.nlb.internal", i);
    int len = nlb_dns_name_to_wire(name, wire);
    nlb_dns_records_lookup(r, wire, (size_t)len, &found);
    CU_ASSERT_EQUAL(found.apex_offset, len - 14); /* "\3nlb\10internal\0" */
    CU_ASSERT_EQUAL(found.exists, i % 2 == 1);
    CU_ASSERT_EQUAL(found.n_a, i % 2 == 1 ? 1u : 0u);
  }
  /* Generous bounds (a busy machine, a sanitizer build): a rebuild per
   * change would take minutes. */
  fprintf(stderr, "\n  20000 adds %.1f ms, 5000 removes %.1f ms", added * 1e3,
          removed * 1e3);
  CU_ASSERT_TRUE(added < 2.0);
  CU_ASSERT_TRUE(removed < 1.0);
  nlb_dns_records_free(r);
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_dns_a_answer),
      NLB_UNIT_CASE(test_dns_aaaa_and_any),
      NLB_UNIT_CASE(test_dns_nodata),
      NLB_UNIT_CASE(test_dns_nxdomain),
      NLB_UNIT_CASE(test_dns_refused_outside_zones),
      NLB_UNIT_CASE(test_dns_apex_soa_and_ns),
      NLB_UNIT_CASE(test_dns_private_name),
      NLB_UNIT_CASE(test_dns_case_kept),
      NLB_UNIT_CASE(test_dns_empty_non_terminal),
      NLB_UNIT_CASE(test_dns_truncation),
      NLB_UNIT_CASE(test_dns_edns_sizes),
      NLB_UNIT_CASE(test_dns_glue_dropped_first),
      NLB_UNIT_CASE(test_dns_do_bit_and_badvers),
      NLB_UNIT_CASE(test_dns_malformed),
      NLB_UNIT_CASE(test_dns_unsupported),
      NLB_UNIT_CASE(test_dns_dropped),
      NLB_UNIT_CASE(test_dns_describe_query),
      NLB_UNIT_CASE(test_dns_name_to_wire),
      NLB_UNIT_CASE(test_dns_records_set_semantics),
      NLB_UNIT_CASE(test_dns_records_at_10000),
  };
  return nlb_unit_run("dns", setup, teardown, cases, NLB_UNIT_COUNT(cases));
}
