/* libFuzzer target for the DNS query path: whatever bytes arrive, over UDP
 * or TCP, nlb_dns_answer either drops them or answers with a response that
 * ldns reads back, that echoes the query's ID with QR set and that fits the
 * transport. The same function runs without libFuzzer in replay_main.c,
 * which `make check` uses to replay the seed corpus. */
#include <ldns/ldns.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/dns/dns-message.h"
#include "nlb/dns/dns-records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct nlb_dns_records *table(void)
{
  static const char *const pairs[][2] = {
      {"nlb.internal", "10.0.0.2"},
      {"ep-1.nlb.internal", "10.0.0.5"},
      {"payments.nlb.internal", "10.0.0.5"},
      {"payments.nlb.internal", "fd00::5"},
      {"a.b.nlb.internal", "10.0.0.9"},
      {"api.payments.example", "10.0.0.5"},
  };
  static struct nlb_dns_records *records;
  union nlb_sockaddr addr;
  char text[64];

  if (records)
    return records;
  records = nlb_dns_records_new("nlb.internal");
  if (!records)
    abort();
  for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
    if (nlb_addr_parse_ip(pairs[i][1], 0, &addr) < 0 ||
        nlb_dns_records_add(records, pairs[i][0], &addr) < 0)
      abort();
  /* A name whose answer never fits a UDP response. */
  for (int i = 0; i < 100; i++) {
    snprintf(text, sizeof(text), "fd00::1:%x", i);
    if (nlb_addr_parse_ip(text, 0, &addr) < 0 ||
        nlb_dns_records_add(records, "big.nlb.internal", &addr) < 0)
      abort();
  }
  return records;
}

static void check(const uint8_t *query, size_t size,
                  enum nlb_dns_transport transport)
{
  struct nlb_dns_records *records = table();
  struct nlb_dns_zone zone = {.ttl = 30,
                              .negative_ttl = 5,
                              .serial = 1,
                              .lookup = nlb_dns_records_lookup,
                              .ctx = records};
  struct nlb_dns_outcome outcome;
  uint8_t *response = NULL;
  size_t len = 0;
  ldns_pkt *pkt = NULL;

  zone.apex = nlb_dns_records_zone(records, &zone.apex_len);
  if (nlb_dns_answer(&zone, transport, query, size, &response, &len, &outcome) <
      0)
    abort(); /* only -ENOMEM, which a fuzzer's input cannot cause */
  if (!response) {
    /* Dropped only without a header, or for a response. */
    if (!outcome.dropped || (size >= 12 && !(query[2] & 0x80)))
      abort();
    return;
  }
  if (outcome.dropped || len < 12 ||
      len > (transport == NLB_DNS_UDP ? NLB_DNS_UDP_PAYLOAD_MAX : 65535))
    abort();
  if (ldns_wire2pkt(&pkt, response, len) != LDNS_STATUS_OK)
    abort();
  if (!ldns_pkt_qr(pkt) || ldns_pkt_id(pkt) != ((query[0] << 8) | query[1]))
    abort();
  /* Over UDP without EDNS, the classic 512 bytes. */
  if (transport == NLB_DNS_UDP && !ldns_pkt_edns(pkt) && len > 512)
    abort();
  ldns_pkt_free(pkt);
  free(response);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char text[300];

  check(data, size, NLB_DNS_UDP);
  check(data, size, NLB_DNS_TCP);
  nlb_dns_describe_query(data, size, text, sizeof(text));
  /* The same bytes as a host name, the way names come from the API. */
  if (size < sizeof(text)) {
    uint8_t wire[NLB_DNS_WIRE_MAX];
    memcpy(text, data, size);
    text[size] = '\0';
    int n = nlb_dns_name_to_wire(text, wire);
    if (n > NLB_DNS_WIRE_MAX || (n > 0 && wire[n - 1] != 0))
      abort();
  }
  return 0;
}
