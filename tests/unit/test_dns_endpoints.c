/* CUnit suite for nlb/dns_endpoints.c: reads of the change feed, built by
 * hand, become the records a real responder answers with (two networks on
 * the host's loopback, asked over UDP with queries ldns builds and reads):
 * a resync serves each available endpoint's names in its network alone,
 * events add and remove them, a name handed from one endpoint to another
 * in one read survives, a resync drops what is stale, and reconfiguration
 * removes networks and replaces the responder. */
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "nlb/dns/dns-endpoints.h"
#include "unit.h"

#define ZONE "nlb.internal"

static uv_loop_t loop;
static struct nlb_dns_endpoints *names;
static uint16_t port_a, port_b; /* network "a" and "b" on 127.0.0.1 */

/* ---- rows and reads of the feed ------------------------------------------ */

struct row_spec {
  const char *id;
  const char *network;
  const char *address;
  enum reg_endpoint_state state;
  const char *names[3];
};

static void fill_row(struct reg_endpoint *e, const struct row_spec *spec)
{
  memset(e, 0, sizeof(*e));
  snprintf(e->id, sizeof(e->id), "%s", spec->id);
  snprintf(e->network, sizeof(e->network), "%s", spec->network);
  snprintf(e->address, sizeof(e->address), "%s", spec->address);
  e->state = spec->state;
  for (size_t i = 0; i < 3 && spec->names[i]; i++)
    e->n_dns_names++;
  e->dns_names = (char **)spec->names; /* borrowed: never released here */
}

/* A read of the feed with rows specs[0..n) and, unless resync, one event
 * per id in events (NULL-terminated). */
static void apply(bool resync, const struct row_spec *specs, size_t n,
                  const char *const *events)
{
  struct reg_endpoint rows[8];
  struct reg_event evs[8];
  struct reg_changes c = {.resync = resync, .endpoints = rows, .events = evs};

  for (size_t i = 0; i < n; i++)
    fill_row(&rows[i], &specs[i]);
  c.n_endpoints = n;
  for (size_t i = 0; !resync && events && events[i]; i++) {
    memset(&evs[i], 0, sizeof(evs[i]));
    evs[i].type = REG_EVENT_MODIFY;
    snprintf(evs[i].endpoint_id, sizeof(evs[i].endpoint_id), "%s", events[i]);
    c.n_events++;
  }
  nlb_dns_endpoints_apply(names, &c);
}

/* ---- asking ------------------------------------------------------------- */

/* Sends a query for name (type A) to 127.0.0.1:port and runs the loop
 * until the answer comes. Returns the rcode and writes the first A
 * address into addr ("" if none), or -1 when nothing came. */
static int ask(uint16_t port, const char *name, char *addr, size_t size)
{
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
  ldns_pkt *q = NULL, *r = NULL;
  uint8_t *wire = NULL, buf[4096];
  size_t len = 0;
  ssize_t got = -1;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  int rcode = -1;

  addr[0] = '\0';
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  CU_ASSERT_FATAL(ldns_pkt_query_new_frm_str(&q, name, LDNS_RR_TYPE_A,
                                             LDNS_RR_CLASS_IN,
                                             LDNS_RD) == LDNS_STATUS_OK);
  CU_ASSERT_FATAL(ldns_pkt2wire(&wire, q, &len) == LDNS_STATUS_OK);
  CU_ASSERT_FATAL(sendto(fd, wire, len, 0, (struct sockaddr *)&to,
                         sizeof(to)) == (ssize_t)len);
  for (int i = 0; i < 200 && got < 0; i++) {
    struct pollfd p = {fd, POLLIN, 0};

    uv_run(&loop, UV_RUN_NOWAIT);
    if (poll(&p, 1, 10) == 1)
      got = recv(fd, buf, sizeof(buf), 0);
  }
  if (got > 0 && ldns_wire2pkt(&r, buf, (size_t)got) == LDNS_STATUS_OK) {
    rcode = ldns_pkt_get_rcode(r);
    if (ldns_pkt_ancount(r) > 0) {
      char *text =
          ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(r), 0), 0));
      snprintf(addr, size, "%s", text);
      free(text);
    }
    ldns_pkt_free(r);
  }
  free(wire);
  ldns_pkt_free(q);
  close(fd);
  return rcode;
}

/* name answers address in the network at port. */
static void expect_a(uint16_t port, const char *name, const char *address)
{
  char got[64];
  int rcode = ask(port, name, got, sizeof(got));

  if (rcode != LDNS_RCODE_NOERROR || strcmp(got, address) != 0)
    fprintf(stderr, "\n  %s at port %u: rcode %d, %s; want %s\n", name,
            (unsigned)port, rcode, got, address);
  CU_ASSERT_EQUAL(rcode, LDNS_RCODE_NOERROR);
  CU_ASSERT_STRING_EQUAL(got, address);
}

static void expect_rcode(uint16_t port, const char *name, int want)
{
  char got[64];

  CU_ASSERT_EQUAL(ask(port, name, got, sizeof(got)), want);
}

/* ---- setup -------------------------------------------------------------- */

/* A port free for both UDP and TCP on 127.0.0.1 now (the responder takes
 * both). */
static uint16_t free_port(void)
{
  for (;;) {
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    bool free;

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    CU_ASSERT_FATAL(bind(udp, (struct sockaddr *)&a, sizeof(a)) == 0);
    getsockname(udp, (struct sockaddr *)&a, &len);
    free = bind(tcp, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(udp);
    close(tcp);
    if (free)
      return ntohs(a.sin_port);
  }
}

/* Networks "a" and "b" (or only those of mask: 1 a, 2 b), zone zone. */
static int configure(const char *zone, uint32_t ttl, int mask)
{
  struct nlb_dns_endpoints_network nets[2];
  struct nlb_dns_endpoints_settings s = {
      .zone = zone, .ttl = ttl, .networks = nets};

  if (mask & 1) {
    nets[s.n_networks].name = "a";
    nets[s.n_networks].netns = NULL;
    nlb_addr_parse_ip("127.0.0.1", port_a, &nets[s.n_networks++].address);
  }
  if (mask & 2) {
    nets[s.n_networks].name = "b";
    nets[s.n_networks].netns = "";
    nlb_addr_parse_ip("127.0.0.1", port_b, &nets[s.n_networks++].address);
  }
  return nlb_dns_endpoints_configure(names, &s);
}

static void start(void)
{
  uv_loop_init(&loop);
  port_a = free_port();
  do
    port_b = free_port();
  while (port_b == port_a);
  names = nlb_dns_endpoints_new(&loop);
  CU_ASSERT_PTR_NOT_NULL_FATAL(names);
  CU_ASSERT_EQUAL_FATAL(configure(ZONE, 30, 3), 0);
}

static void stop(void)
{
  nlb_dns_endpoints_shutdown(names);
  while (!nlb_dns_endpoints_closed(names))
    uv_run(&loop, UV_RUN_ONCE);
  nlb_dns_endpoints_free(names);
  names = NULL;
  uv_run(&loop, UV_RUN_NOWAIT);
  CU_ASSERT_EQUAL(uv_loop_close(&loop), 0);
}

/* ---- cases -------------------------------------------------------------- */

static const struct row_spec EP1 = {
    "ep-1",
    "a",
    "127.90.0.5",
    REG_EP_AVAILABLE,
    {"ep-1." ZONE, "payments." ZONE, "api.payments.example"}};
static const struct row_spec EP2 = {"ep-2",
                                    "b",
                                    "127.90.0.5",
                                    REG_EP_AVAILABLE,
                                    {"ep-2." ZONE, "payments." ZONE, NULL}};

static void test_dns_endpoints_resync_serves_each_network(void)
{
  const struct row_spec rows[] = {
      EP1,
      EP2,
      /* pending, and in a network without a responder: nothing */
      {"ep-3", "a", "127.90.0.6", REG_EP_PENDING_ACCEPTANCE, {"ep-3." ZONE}},
      {"ep-4", "c", "127.90.0.7", REG_EP_AVAILABLE, {"ep-4." ZONE}},
  };

  start();
  apply(true, rows, 4, NULL);
  CU_ASSERT_EQUAL(nlb_dns_endpoints_count(names), 5);
  expect_a(port_a, "payments." ZONE, "127.90.0.5");
  expect_a(port_a, "ep-1." ZONE, "127.90.0.5");
  expect_a(port_a, "API.payments.example", "127.90.0.5");
  expect_a(port_b, "ep-2." ZONE, "127.90.0.5");
  /* Another network's names are not answered here. */
  expect_rcode(port_a, "ep-2." ZONE, LDNS_RCODE_NXDOMAIN);
  expect_rcode(port_b, "ep-1." ZONE, LDNS_RCODE_NXDOMAIN);
  expect_rcode(port_b, "api.payments.example", LDNS_RCODE_REFUSED);
  expect_rcode(port_a, "ep-3." ZONE, LDNS_RCODE_NXDOMAIN);
  stop();
}

static void test_dns_endpoints_events(void)
{
  const char *const ep1[] = {"ep-1", NULL};
  const char *const both[] = {"ep-1", "ep-2", NULL};
  struct row_spec rejected = EP1, opted_out = EP1;

  rejected.state = REG_EP_REJECTED;
  opted_out.names[2] = NULL;
  start();
  apply(false, &EP1, 1, ep1);
  expect_a(port_a, "api.payments.example", "127.90.0.5");
  /* Read again: nothing changes. */
  apply(false, &EP1, 1, ep1);
  CU_ASSERT_EQUAL(nlb_dns_endpoints_count(names), 3);
  /* The private name alone goes. */
  apply(false, &opted_out, 1, ep1);
  CU_ASSERT_EQUAL(nlb_dns_endpoints_count(names), 2);
  expect_rcode(port_a, "api.payments.example", LDNS_RCODE_REFUSED);
  expect_a(port_a, "payments." ZONE, "127.90.0.5");
  /* Rejected: every name goes. */
  apply(false, &rejected, 1, ep1);
  CU_ASSERT_EQUAL(nlb_dns_endpoints_count(names), 0);
  expect_rcode(port_a, "payments." ZONE, LDNS_RCODE_NXDOMAIN);
  /* An event whose endpoint has no row any more: gone. */
  apply(false, &EP2, 1, both);
  apply(false, NULL, 0, both);
  CU_ASSERT_EQUAL(nlb_dns_endpoints_count(names), 0);
  expect_rcode(port_b, "ep-2." ZONE, LDNS_RCODE_NXDOMAIN);
  stop();
}

/* ep-1 leaves and ep-9 takes its address and service name in the same
 * read, with ep-9's row first (a service's event brings rows in any
 * order): the shared (name, address) pair stays. */
static void test_dns_endpoints_handover_in_one_read(void)
{
  const char *const events[] = {"ep-1", "ep-9", NULL};
  struct row_spec rows[2] = {
      {"ep-9",
       "a",
       "127.90.0.5",
       REG_EP_AVAILABLE,
       {"ep-9." ZONE, "payments." ZONE}},
      EP1,
  };

  start();
  apply(true, &EP1, 1, NULL);
  rows[1].state = REG_EP_DELETED;
  apply(false, rows, 2, events);
  expect_a(port_a, "payments." ZONE, "127.90.0.5");
  expect_a(port_a, "ep-9." ZONE, "127.90.0.5");
  expect_rcode(port_a, "ep-1." ZONE, LDNS_RCODE_NXDOMAIN);
  CU_ASSERT_EQUAL(nlb_dns_endpoints_count(names), 2);
  /* The same through a resync that finds ep-1 stale. */
  apply(true, &EP1, 1, NULL);
  apply(true, rows, 1, NULL);
  expect_a(port_a, "payments." ZONE, "127.90.0.5");
  expect_rcode(port_a, "ep-1." ZONE, LDNS_RCODE_NXDOMAIN);
  CU_ASSERT_EQUAL(nlb_dns_endpoints_count(names), 2);
  stop();
}

static void test_dns_endpoints_reconfigure(void)
{
  const struct row_spec rows[] = {EP1, EP2};
  char got[64];

  start();
  apply(true, rows, 2, NULL);
  /* Network b goes: its responder stops answering; a is untouched. */
  CU_ASSERT_EQUAL(configure(ZONE, 30, 1), 0);
  CU_ASSERT_EQUAL(nlb_dns_endpoints_count(names), 3);
  for (int i = 0; i < 5; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  CU_ASSERT_EQUAL(ask(port_b, "ep-2." ZONE, got, sizeof(got)), -1);
  expect_a(port_a, "ep-1." ZONE, "127.90.0.5");
  /* Back, empty until the resync that a reload is followed by. */
  CU_ASSERT_EQUAL(configure(ZONE, 30, 3), 0);
  expect_rcode(port_b, "ep-2." ZONE, LDNS_RCODE_NXDOMAIN);
  apply(true, rows, 2, NULL);
  expect_a(port_b, "ep-2." ZONE, "127.90.0.5");
  /* A new TTL: a new responder, filled by the next resync. */
  CU_ASSERT_EQUAL(configure(ZONE, 60, 3), 0);
  CU_ASSERT_EQUAL(nlb_dns_endpoints_count(names), 0);
  apply(true, rows, 2, NULL);
  expect_a(port_a, "ep-1." ZONE, "127.90.0.5");
  expect_a(port_b, "ep-2." ZONE, "127.90.0.5");
  nlb_dns_endpoints_tick(names);
  /* No zone: no responder at all, and reads change nothing. */
  CU_ASSERT_EQUAL(configure(NULL, 0, 0), 0);
  apply(true, rows, 2, NULL);
  CU_ASSERT_EQUAL(nlb_dns_endpoints_count(names), 0);
  CU_ASSERT_PTR_NULL(nlb_dns_endpoints_metrics(names));
  stop();
}

static void test_dns_endpoints_metrics(void)
{
  char *text;

  start();
  apply(true, &EP1, 1, NULL);
  expect_a(port_a, "ep-1." ZONE, "127.90.0.5");
  text = nlb_dns_endpoints_metrics(names);
  CU_ASSERT_PTR_NOT_NULL_FATAL(text);
  /* Three names and the responder's own address at the apex. */
  CU_ASSERT(strstr(text, "nlb_dns_records{network=\"a\"} 4\n") != NULL);
  CU_ASSERT(strstr(text, "nlb_dns_queries_total{network=\"a\","
                         "rcode=\"NOERROR\"} 1\n") != NULL);
  free(text);
  stop();
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_dns_endpoints_resync_serves_each_network),
      NLB_UNIT_CASE(test_dns_endpoints_events),
      NLB_UNIT_CASE(test_dns_endpoints_handover_in_one_read),
      NLB_UNIT_CASE(test_dns_endpoints_reconfigure),
      NLB_UNIT_CASE(test_dns_endpoints_metrics),
  };
  return nlb_unit_run("dns_endpoints", NULL, NULL, cases,
                      NLB_UNIT_COUNT(cases));
}
