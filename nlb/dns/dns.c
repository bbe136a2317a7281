#include "nlb/dns/dns.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nlb/dns/dns-message.h"
#include "nlb/dns/dns-records.h"
#include "nlb/dns/dns-tcp.h"
#include "nlb/list.h"
#include "nlb/log.h"
#include "nlb/control/netns.h"
#include "nlb/common/inherit.h"
#include "nlb/common/text.h"

/* Namespaces are looked at, failed sockets retried and the log budget
 * renewed this often. */
#define TICK_MS 1000
#define DEFAULT_IDLE_TIMEOUT_MS 10000
#define DEFAULT_LOG_PER_SECOND 10
#define TCP_BACKLOG 128
#define UDP_BUFFER_SIZE 65536

/* The response codes counted; nlbd answers no others. */
enum counter {
  COUNT_NOERROR,
  COUNT_FORMERR,
  COUNT_NXDOMAIN,
  COUNT_NOTIMP,
  COUNT_REFUSED,
  COUNT_BADVERS,
  COUNTERS,
};

static const int counted_rcode[COUNTERS] = {
    NLB_DNS_NOERROR, NLB_DNS_FORMERR, NLB_DNS_NXDOMAIN,
    NLB_DNS_NOTIMP,  NLB_DNS_REFUSED, NLB_DNS_BADVERS,
};

struct network {
  struct nlb_list link; /* in nlb_dns.networks until removed */
  struct nlb_dns *dns;
  char *name;
  char *netns; /* "" for the host */
  union nlb_sockaddr address;
  struct nlb_dns_records *records;
  uv_udp_t udp;
  uv_tcp_t tcp;
  bool open;    /* udp and tcp are initialised handles */
  bool removed; /* freed once its handles and connections are closed */
  int error;    /* 0 while open; else why the last attempt failed */
  dev_t ns_dev; /* which namespace the sockets are in */
  ino_t ns_ino;
  unsigned handles; /* the sockets' open libuv handles */
  struct nlb_dns_tcp connections;
  uint64_t queries[COUNTERS];
  uint64_t dropped;
  uint64_t truncated;
};

struct nlb_dns {
  uv_loop_t *loop;
  uv_timer_t tick;
  bool tick_open;
  bool shut;
  char *zone;
  uint32_t ttl;
  uint32_t negative_ttl;
  unsigned log_per_second;
  bool access_json;
  struct nlb_list networks;
  struct nlb_dns_tcp_group tcp; /* the networks' connections */
  unsigned networks_closing;    /* removed, their handles still closing */
  unsigned log_budget;          /* lines still allowed this second */
  uint64_t log_held_back;       /* lines not written this second */
  uint8_t udp_buf[UDP_BUFFER_SIZE];
};

/* ---- counters and log lines ---- */

static void count(struct network *net, const struct nlb_dns_outcome *outcome)
{
  if (outcome->dropped) {
    net->dropped++;
    return;
  }
  for (int i = 0; i < COUNTERS; i++)
    if (counted_rcode[i] == outcome->rcode)
      net->queries[i]++;
  if (outcome->truncated)
    net->truncated++;
}

/* Copies text into buf with '"' and '\' escaped, so that the line stays
 * one JSON string or one quoted field whatever the query held. */
static void escape(const char *text, char *buf, size_t size)
{
  size_t out = 0;
  for (; *text && out + 3 < size; text++) {
    if (*text == '"' || *text == '\\')
      buf[out++] = '\\';
    buf[out++] = *text;
  }
  buf[out] = '\0';
}

static void log_query(struct network *net, const char *proto,
                      const union nlb_sockaddr *peer, const uint8_t *query,
                      size_t len, const struct nlb_dns_outcome *outcome)
{
  struct nlb_dns *dns = net->dns;
  char when[32], client[NLB_ADDR_TEXT_MAX], asked[1100], question[2200];
  char line[NLB_LOG_LINE_MAX + 1];
  const char *result =
      outcome->dropped ? "dropped" : nlb_dns_rcode_name(outcome->rcode);
  int n;

  if (!nlb_log_access_enabled())
    return;
  if (dns->log_budget == 0) {
    dns->log_held_back++;
    return;
  }
  dns->log_budget--;
  nlb_log_time(when, sizeof(when));
  nlb_addr_format(peer, client, sizeof(client));
  nlb_dns_describe_query(query, len, asked, sizeof(asked));
  escape(asked, question, sizeof(question));
  if (dns->access_json)
    n = snprintf(line, sizeof(line),
                 "{\"time\":\"%s\",\"dns\":\"%s\",\"proto\":\"%s\","
                 "\"client\":\"%s\",\"result\":\"%s\",\"query\":\"%s\","
                 "\"why\":\"%s\"}",
                 when, net->name, proto, client, result, question,
                 outcome->why ? outcome->why : "");
  else
    n = snprintf(line, sizeof(line),
                 "%s dns %s %s %s %s query=\"%s\" why=\"%s\"", when, net->name,
                 proto, client, result, question,
                 outcome->why ? outcome->why : "");
  if (n > 0)
    nlb_log_access(line,
                   (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void log_held_back(struct nlb_dns *dns)
{
  char when[32], line[200];
  int n;

  if (dns->log_held_back == 0)
    return;
  nlb_log_time(when, sizeof(when));
  if (dns->access_json)
    n = snprintf(line, sizeof(line),
                 "{\"time\":\"%s\",\"dns\":null,\"held_back\":%llu}", when,
                 (unsigned long long)dns->log_held_back);
  else
    n = snprintf(line, sizeof(line),
                 "%s dns - %llu more lines about refused or malformed queries "
                 "held back",
                 when, (unsigned long long)dns->log_held_back);
  if (n > 0)
    nlb_log_access(line,
                   (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
  dns->log_held_back = 0;
}

/* Answers one query of net; *response is NULL when there is none to send
 * (dropped, or memory ran out). */
static void answer(struct network *net, enum nlb_dns_transport transport,
                   const union nlb_sockaddr *peer, const uint8_t *query,
                   size_t len, uint8_t **response, size_t *response_len)
{
  struct nlb_dns *dns = net->dns;
  struct nlb_dns_outcome outcome;
  struct nlb_dns_zone zone = {
      .ttl = dns->ttl,
      .negative_ttl = dns->negative_ttl,
      .serial = nlb_dns_records_serial(net->records),
      .lookup = nlb_dns_records_lookup,
      .ctx = net->records,
  };

  zone.apex = nlb_dns_records_zone(net->records, &zone.apex_len);
  if (nlb_dns_answer(&zone, transport, query, len, response, response_len,
                     &outcome) < 0) {
    outcome = (struct nlb_dns_outcome){.dropped = true, .why = "out of memory"};
  }
  count(net, &outcome);
  if (outcome.dropped || outcome.why)
    log_query(net, transport == NLB_DNS_TCP ? "tcp" : "udp", peer, query, len,
              &outcome);
}

/* ---- UDP ---- */

static void on_udp_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
  struct network *net = handle->data;
  buf->base = (char *)net->dns->udp_buf;
  buf->len = sizeof(net->dns->udp_buf);
}

static void on_udp_recv(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *from, unsigned flags)
{
  struct network *net = udp->data;
  union nlb_sockaddr peer = {0};
  uint8_t *response;
  size_t response_len;

  /* nread 0 without an address: the socket had nothing more to read. */
  if (nread < 0 || !from)
    return;
  memcpy(&peer, from,
         from->sa_family == AF_INET6 ? sizeof(peer.in6) : sizeof(peer.in));
  if ((flags & UV_UDP_PARTIAL) || nlb_addr_port(&peer) == 0) {
    struct nlb_dns_outcome outcome = {
        .dropped = true,
        .why = flags & UV_UDP_PARTIAL ? "oversize" : "source port 0"};
    count(net, &outcome);
    log_query(net, "udp", &peer, NULL, 0, &outcome);
    return;
  }
  answer(net, NLB_DNS_UDP, &peer, (const uint8_t *)buf->base, (size_t)nread,
         &response, &response_len);
  if (!response)
    return;
  /* Never queue: a client that cannot take the answer now asks again. */
  uv_buf_t out = uv_buf_init((char *)response, (unsigned)response_len);
  (void)uv_udp_try_send(udp, &out, 1, &peer.sa);
  free(response);
}

/* ---- TCP ---- */

static void network_handle_closed(struct network *net);

static void answer_tcp(struct nlb_dns_tcp *tcp, const union nlb_sockaddr *peer,
                       const uint8_t *query, size_t len, uint8_t **response,
                       size_t *response_len)
{
  answer(NLB_CONTAINER_OF(tcp, struct network, connections), NLB_DNS_TCP, peer,
         query, len, response, response_len);
}

static void on_connection_closed(struct nlb_dns_tcp *tcp)
{
  network_handle_closed(NLB_CONTAINER_OF(tcp, struct network, connections));
}

static void on_connection(uv_stream_t *server, int status)
{
  struct network *net = server->data;

  if (status == 0)
    nlb_dns_tcp_accept(&net->connections, server);
}

/* ---- sockets ---- */

struct socket_job {
  union nlb_sockaddr address;
  int udp_fd;
  int tcp_fd;
};

static int open_socket(const union nlb_sockaddr *addr, int type)
{
  const int one = 1;
  int fd = nlb_inherit_take(addr, type); /* an upgrade's */
  int rc;

  if (fd >= 0)
    return fd;
  fd = socket(addr->sa.sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  /* No SO_REUSEPORT: nobody else may join the responder's address. */
  if (type == SOCK_STREAM &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
    goto fail_close_socket;
  if (addr->sa.sa_family == AF_INET6 &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
    goto fail_close_socket;
  if (bind(fd, &addr->sa, nlb_addr_len(addr)) < 0)
    goto fail_close_socket;
  if (type == SOCK_STREAM && listen(fd, TCP_BACKLOG) < 0)
    goto fail_close_socket;
  return fd;

fail_close_socket:
  rc = -errno;
  close(fd);
  return rc;
}

/* Runs inside the network's namespace (nlb_netns_run). */
static int open_sockets(void *arg)
{
  struct socket_job *job = arg;

  job->udp_fd = open_socket(&job->address, SOCK_DGRAM);
  if (job->udp_fd < 0)
    return job->udp_fd;
  job->tcp_fd = open_socket(&job->address, SOCK_STREAM);
  if (job->tcp_fd < 0) {
    close(job->udp_fd);
    return job->tcp_fd;
  }
  return 0;
}

static void on_socket_closed(uv_handle_t *handle)
{
  struct network *net = handle->data;

  net->handles--;
  network_handle_closed(net);
}

static void close_sockets(struct network *net)
{
  nlb_dns_tcp_close_all(&net->connections);
  if (!net->open)
    return;
  net->open = false;
  uv_close((uv_handle_t *)&net->udp, on_socket_closed);
  uv_close((uv_handle_t *)&net->tcp, on_socket_closed);
}

/* Hands the two descriptors to the loop; on failure they are closed. */
static int start_sockets(struct network *net, int udp_fd, int tcp_fd)
{
  uv_loop_t *loop = net->dns->loop;
  int rc;

  uv_udp_init(loop, &net->udp);
  uv_tcp_init(loop, &net->tcp);
  net->udp.data = net;
  net->tcp.data = net;
  net->handles += 2;
  net->open = true;
  rc = uv_udp_open(&net->udp, udp_fd);
  if (rc < 0) {
    close(udp_fd);
    close(tcp_fd);
    goto fail_close_sockets;
  }
  rc = uv_tcp_open(&net->tcp, tcp_fd);
  if (rc < 0) {
    close(tcp_fd);
    goto fail_close_sockets;
  }
  rc = uv_listen((uv_stream_t *)&net->tcp, TCP_BACKLOG, on_connection);
  if (rc == 0)
    rc = uv_udp_recv_start(&net->udp, on_udp_alloc, on_udp_recv);
  if (rc < 0)
    goto fail_close_sockets;
  return 0;

fail_close_sockets:
  close_sockets(net);
  return rc;
}

/* The identity of the namespace /run/netns/<netns> names now. */
static int netns_identity(const char *netns, dev_t *dev, ino_t *ino)
{
  char path[PATH_MAX];
  struct stat st;

  snprintf(path, sizeof(path), "/run/netns/%s", netns);
  if (stat(path, &st) < 0)
    return -errno;
  *dev = st.st_dev;
  *ino = st.st_ino;
  return 0;
}

static const char *where(const struct network *net, char *buf, size_t size)
{
  char address[NLB_ADDR_TEXT_MAX];
  nlb_addr_format(&net->address, address, sizeof(address));
  if (net->netns[0])
    snprintf(buf, size, "%s in netns %s", address, net->netns);
  else
    snprintf(buf, size, "%s on the host", address);
  return buf;
}

/* Says why the sockets are not open, once per distinct reason. */
static void set_error(struct network *net, int rc)
{
  char place[NLB_ADDR_TEXT_MAX + 300];

  if (rc == net->error)
    return;
  net->error = rc;
  NLB_LOG_EVENT(NLB_LOG_WARN, "dns_failed",
                "dns {network}: cannot answer at {address}: {error}; trying "
                "again every second",
                NLB_LOG_STR("network", net->name),
                NLB_LOG_STR("address", where(net, place, sizeof(place))),
                NLB_LOG_STR("error", strerror(-rc)));
}

static void try_open(struct network *net)
{
  struct socket_job job = {.address = net->address};
  char place[NLB_ADDR_TEXT_MAX + 300];
  int rc = 0;

  if (net->netns[0])
    rc = netns_identity(net->netns, &net->ns_dev, &net->ns_ino);
  if (rc == 0)
    rc = nlb_netns_run(net->netns, open_sockets, &job);
  if (rc == 0)
    rc = start_sockets(net, job.udp_fd, job.tcp_fd);
  if (rc < 0) {
    set_error(net, rc);
    return;
  }
  net->error = 0;
  NLB_LOG_EVENT(NLB_LOG_INFO, "dns_open",
                "dns {network}: answering at {address}",
                NLB_LOG_STR("network", net->name),
                NLB_LOG_STR("address", where(net, place, sizeof(place))));
}

/* Sockets left in a namespace that the name no longer stands for could
 * never be reached by anyone entering it by name: close them, and open
 * new ones once the name stands for a namespace again. */
static void check_network(struct network *net)
{
  if (net->open && net->netns[0]) {
    dev_t dev = 0;
    ino_t ino = 0;
    int rc = netns_identity(net->netns, &dev, &ino);
    if (rc == 0 && dev == net->ns_dev && ino == net->ns_ino)
      return;
    NLB_LOG_EVENT(NLB_LOG_WARN, "dns_netns_changed",
                  "dns {network}: network namespace {netns} was {change}",
                  NLB_LOG_STR("network", net->name),
                  NLB_LOG_STR("netns", net->netns),
                  NLB_LOG_STR("change", rc < 0 ? "deleted" : "replaced"));
    close_sockets(net);
    net->error = rc < 0 ? rc : -EAGAIN;
    return;
  }
  /* The old handles must be closed before the same ones open again. */
  if (!net->open && net->handles == 0 && net->connections.alive == 0)
    try_open(net);
}

/* ---- networks ---- */

static void free_network(struct network *net)
{
  nlb_dns_records_free(net->records);
  free(net->name);
  free(net->netns);
  free(net);
}

/* A socket or a connection of net was closed. */
static void network_handle_closed(struct network *net)
{
  if (net->handles > 0 || net->connections.alive > 0 || !net->removed)
    return;
  net->dns->networks_closing--;
  free_network(net);
}

static struct network *find_network(const struct nlb_dns *dns, const char *name)
{
  struct nlb_list *pos;
  for (pos = dns->networks.next; pos != &dns->networks; pos = pos->next) {
    struct network *net = NLB_CONTAINER_OF(pos, struct network, link);
    if (strcmp(net->name, name) == 0)
      return net;
  }
  return NULL;
}

static void remove_network(struct network *net)
{
  struct nlb_dns *dns = net->dns;

  nlb_list_remove(&net->link);
  net->removed = true;
  nlb_dns_tcp_leave(&net->connections);
  close_sockets(net);
  if (net->handles == 0 && net->connections.alive == 0)
    free_network(net);
  else
    dns->networks_closing++;
}

int nlb_dns_add_network(struct nlb_dns *dns, const char *network,
                        const char *netns, const union nlb_sockaddr *address)
{
  struct network *net;

  if (find_network(dns, network))
    return -EEXIST;
  if (address->sa.sa_family != AF_INET && address->sa.sa_family != AF_INET6)
    return -EINVAL;
  net = calloc(1, sizeof(*net));
  if (!net)
    return -ENOMEM;
  net->dns = dns;
  net->name = strdup(network);
  net->netns = strdup(netns ? netns : "");
  net->records = nlb_dns_records_new(dns->zone);
  if (!net->name || !net->netns || !net->records)
    goto fail_free_network;
  net->address = *address;
  if (nlb_addr_port(&net->address) == 0)
    nlb_addr_set_port(&net->address, NLB_DNS_PORT);
  /* The responder's own address answers for the apex: the NS record's
   * glue. A wildcard address names no server. */
  if (!nlb_addr_is_any(address) &&
      nlb_dns_records_add(net->records, dns->zone, address) < 0)
    goto fail_free_network;
  nlb_dns_tcp_join(&dns->tcp, &net->connections, net->name);
  net->error = -EAGAIN;
  nlb_list_append(&dns->networks, &net->link);
  try_open(net);
  return 0;

fail_free_network:
  free_network(net);
  return -ENOMEM;
}

int nlb_dns_remove_network(struct nlb_dns *dns, const char *network)
{
  struct network *net = find_network(dns, network);

  if (!net)
    return -ENOENT;
  remove_network(net);
  return 0;
}

int nlb_dns_network_error(const struct nlb_dns *dns, const char *network)
{
  const struct network *net = find_network(dns, network);
  return net ? net->error : -ENOENT;
}

/* The zone's apex holds the responder's own address alone. */
static bool is_zone_apex(const struct nlb_dns *dns, const char *name)
{
  uint8_t zone[NLB_DNS_WIRE_MAX], wire[NLB_DNS_WIRE_MAX];
  int zone_len = nlb_dns_name_to_wire(dns->zone, zone);
  int len = nlb_dns_name_to_wire(name, wire);
  return len > 0 && len == zone_len && memcmp(wire, zone, (size_t)len) == 0;
}

int nlb_dns_add_record(struct nlb_dns *dns, const char *network,
                       const char *name, const union nlb_sockaddr *address)
{
  struct network *net = find_network(dns, network);

  if (!net)
    return -ENOENT;
  if (is_zone_apex(dns, name))
    return -EINVAL;
  return nlb_dns_records_add(net->records, name, address);
}

int nlb_dns_remove_record(struct nlb_dns *dns, const char *network,
                          const char *name, const union nlb_sockaddr *address)
{
  struct network *net = find_network(dns, network);

  if (!net)
    return -ENOENT;
  if (is_zone_apex(dns, name))
    return -EINVAL;
  return nlb_dns_records_remove(net->records, name, address);
}

uint64_t nlb_dns_queries(const struct nlb_dns *dns, const char *network,
                         int rcode)
{
  const struct network *net = find_network(dns, network);

  if (!net)
    return 0;
  for (int i = 0; i < COUNTERS; i++)
    if (counted_rcode[i] == rcode)
      return net->queries[i];
  return 0;
}

/* ---- metrics ---- */

enum network_value {
  VALUE_DROPPED,
  VALUE_TRUNCATED,
  VALUE_RECORDS,
};

static uint64_t network_value(const struct network *net, enum network_value v)
{
  switch (v) {
  case VALUE_DROPPED:
    return net->dropped;
  case VALUE_TRUNCATED:
    return net->truncated;
  default:
    return nlb_dns_records_count(net->records);
  }
}

static void write_family(const struct nlb_dns *dns, struct nlb_text *t,
                         const char *name, const char *type, const char *help,
                         enum network_value v)
{
  const struct nlb_list *pos;

  nlb_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
  for (pos = dns->networks.next; pos != &dns->networks; pos = pos->next) {
    const struct network *net = NLB_CONTAINER_OF(pos, struct network, link);
    nlb_text_printf(t, "%s{network=\"%s\"} %llu\n", name, net->name,
                    (unsigned long long)network_value(net, v));
  }
}

char *nlb_dns_metrics(const struct nlb_dns *dns)
{
  struct nlb_text t = {0};
  const struct nlb_list *pos;

  nlb_text_printf(&t, "# HELP nlb_dns_queries_total DNS queries answered, by "
                      "response code.\n# TYPE nlb_dns_queries_total counter\n");
  for (pos = dns->networks.next; pos != &dns->networks; pos = pos->next) {
    const struct network *net = NLB_CONTAINER_OF(pos, struct network, link);
    for (int i = 0; i < COUNTERS; i++)
      nlb_text_printf(
          &t, "nlb_dns_queries_total{network=\"%s\",rcode=\"%s\"} %llu\n",
          net->name, nlb_dns_rcode_name(counted_rcode[i]),
          (unsigned long long)net->queries[i]);
  }
  write_family(dns, &t, "nlb_dns_dropped_total", "counter",
               "DNS messages dropped without an answer.", VALUE_DROPPED);
  write_family(dns, &t, "nlb_dns_truncated_total", "counter",
               "DNS answers truncated (TC) for the client to ask over TCP.",
               VALUE_TRUNCATED);
  nlb_dns_tcp_metrics(&dns->tcp, &t);
  write_family(dns, &t, "nlb_dns_records", "gauge",
               "DNS (name, address) pairs served, the responder's own "
               "included.",
               VALUE_RECORDS);
  return nlb_text_take(&t);
}

/* ---- the responder ---- */

static void on_tick(uv_timer_t *timer)
{
  struct nlb_dns *dns = timer->data;
  struct nlb_list *pos, *tmp;

  log_held_back(dns);
  dns->log_budget = dns->log_per_second;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &dns->networks)
  check_network(NLB_CONTAINER_OF(pos, struct network, link));
}

void nlb_dns_set_tcp_per_client(struct nlb_dns *dns, unsigned tcp_per_client)
{
  dns->tcp.per_client =
      tcp_per_client ? tcp_per_client : NLB_DNS_TCP_PER_CLIENT;
}

int nlb_dns_new(uv_loop_t *loop, const struct nlb_dns_settings *settings,
                struct nlb_dns **out)
{
  uint8_t wire[NLB_DNS_WIRE_MAX];
  struct nlb_dns *dns;

  if (!settings->zone || nlb_dns_name_to_wire(settings->zone, wire) < 0)
    return -EINVAL;
  dns = calloc(1, sizeof(*dns));
  if (!dns)
    return -ENOMEM;
  dns->zone = strdup(settings->zone);
  if (!dns->zone) {
    free(dns);
    return -ENOMEM;
  }
  dns->loop = loop;
  dns->ttl = settings->ttl;
  dns->negative_ttl =
      settings->negative_ttl ? settings->negative_ttl : settings->ttl;
  nlb_dns_tcp_group_init(&dns->tcp, loop,
                         settings->tcp_idle_timeout_ms
                             ? settings->tcp_idle_timeout_ms
                             : DEFAULT_IDLE_TIMEOUT_MS,
                         settings->tcp_per_client ? settings->tcp_per_client
                                                  : NLB_DNS_TCP_PER_CLIENT);
  dns->tcp.answer = answer_tcp;
  dns->tcp.closed = on_connection_closed;
  dns->log_per_second = settings->log_per_second ? settings->log_per_second
                                                 : DEFAULT_LOG_PER_SECOND;
  dns->log_budget = dns->log_per_second;
  dns->access_json = settings->access_json;
  nlb_list_init(&dns->networks);
  uv_timer_init(loop, &dns->tick);
  dns->tick.data = dns;
  dns->tick_open = true;
  uv_timer_start(&dns->tick, on_tick, TICK_MS, TICK_MS);
  *out = dns;
  return 0;
}

static void on_tick_closed(uv_handle_t *handle)
{
  struct nlb_dns *dns = handle->data;
  dns->tick_open = false;
}

void nlb_dns_shutdown(struct nlb_dns *dns)
{
  struct nlb_list *pos, *tmp;

  if (dns->shut)
    return;
  dns->shut = true;
  log_held_back(dns);
  NLB_LIST_FOREACH_SAFE(pos, tmp, &dns->networks)
  remove_network(NLB_CONTAINER_OF(pos, struct network, link));
  uv_close((uv_handle_t *)&dns->tick, on_tick_closed);
}

bool nlb_dns_closed(const struct nlb_dns *dns)
{
  return dns->shut && !dns->tick_open && dns->networks_closing == 0;
}

void nlb_dns_free(struct nlb_dns *dns)
{
  if (!dns)
    return;
  free(dns->zone);
  free(dns);
}
