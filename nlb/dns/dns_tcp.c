#include "nlb/dns/dns-tcp.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nlb/dns/dns.h"
#include "nlb/log.h"

/* A connection's buffer starts this large (room for a few queries in one
 * read) and grows only to hold one message that needs more. */
#define BUFFER_MIN 4096

struct client {
  struct nlb_list link; /* in nlb_dns_tcp.clients until closing */
  struct nlb_dns_tcp *tcp;
  uv_tcp_t stream;
  uv_timer_t idle;
  union nlb_sockaddr peer;
  uint8_t *buf; /* what arrived and is not answered yet */
  size_t len;
  size_t cap;
  size_t pending;  /* bytes of answers not yet written */
  unsigned writes; /* writes in flight */
  unsigned handles;
  bool reading;
  bool eof;
  bool closing;
};

struct tcp_write {
  uv_write_t req;
  struct client *client;
  size_t size;
  uint8_t prefix[2];
  uint8_t *body;
};

static const char *const refusal_name[NLB_DNS_TCP_REFUSALS] = {"client",
                                                               "budget"};
static const char *const eviction_name[NLB_DNS_TCP_EVICTIONS] = {"network",
                                                                 "budget"};

/* TCP connections of every responder of the process (each holds a
 * descriptor) and how many the descriptor plan gives them: one budget,
 * whatever responder, network or reconfiguration they belong to. */
static uint64_t tcp_open;
static uint64_t tcp_budget = UINT64_MAX;

void nlb_dns_set_tcp_budget(uint64_t connections)
{
  tcp_budget = connections;
}

/* ---- one connection ---- */

static void on_client_closed(uv_handle_t *handle)
{
  struct client *c = handle->data;
  struct nlb_dns_tcp *tcp = c->tcp;

  if (--c->handles > 0)
    return;
  free(c->buf);
  free(c);
  tcp->alive--;
  tcp->group->closed(tcp);
}

static void close_client(struct client *c)
{
  if (c->closing)
    return;
  c->closing = true;
  nlb_list_remove(&c->link);
  c->tcp->n_clients--;
  tcp_open--;
  uv_close((uv_handle_t *)&c->stream, on_client_closed);
  uv_close((uv_handle_t *)&c->idle, on_client_closed);
}

static void on_idle(uv_timer_t *timer)
{
  close_client(timer->data);
}

static size_t frame_length(const uint8_t *at)
{
  return (size_t)at[0] << 8 | at[1];
}

static void process_frames(struct client *c);
static void start_reading(struct client *c);

static void on_write(uv_write_t *req, int status)
{
  struct tcp_write *w = NLB_CONTAINER_OF(req, struct tcp_write, req);
  struct client *c = w->client;

  c->writes--;
  c->pending -= w->size;
  free(w->body);
  free(w);
  if (c->closing)
    return;
  if (status < 0 || (c->eof && c->writes == 0)) {
    close_client(c);
    return;
  }
  /* The client took answers off the queue: answer what waits, then read
   * again. */
  if (!c->reading && !c->eof && c->pending < NLB_DNS_TCP_PENDING_MAX / 2) {
    process_frames(c);
    if (!c->closing && c->pending < NLB_DNS_TCP_PENDING_MAX)
      start_reading(c);
  }
}

static void send_framed(struct client *c, uint8_t *body, size_t len)
{
  struct tcp_write *w = malloc(sizeof(*w));
  uv_buf_t bufs[2];

  if (!w) {
    free(body);
    close_client(c);
    return;
  }
  w->client = c;
  w->size = len + 2;
  w->body = body;
  w->prefix[0] = (uint8_t)(len >> 8);
  w->prefix[1] = (uint8_t)len;
  bufs[0] = uv_buf_init((char *)w->prefix, 2);
  bufs[1] = uv_buf_init((char *)body, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&c->stream, bufs, 2, on_write) < 0) {
    free(body);
    free(w);
    close_client(c);
    return;
  }
  c->writes++;
  c->pending += w->size;
}

/* Answers every complete message in the buffer, while the answers waiting
 * for the client stay under the limit. */
static void process_frames(struct client *c)
{
  struct nlb_dns_tcp_group *group = c->tcp->group;
  size_t pos = 0;

  while (c->len - pos >= 2 && c->pending < NLB_DNS_TCP_PENDING_MAX) {
    size_t n = frame_length(c->buf + pos);
    uint8_t *response;
    size_t response_len;

    if (c->len - pos - 2 < n)
      break;
    group->answer(c->tcp, &c->peer, c->buf + pos + 2, n, &response,
                  &response_len);
    pos += 2 + n;
    uv_timer_start(&c->idle, on_idle, group->idle_timeout_ms, 0);
    if (response)
      send_framed(c, response, response_len);
    if (c->closing)
      return;
  }
  if (pos == 0)
    return;
  /* Last in line to give way when the network or the budget is full. */
  nlb_list_remove(&c->link);
  nlb_list_append(&c->tcp->clients, &c->link);
  memmove(c->buf, c->buf + pos, c->len - pos);
  c->len -= pos;
  /* An idle connection keeps no big buffer. */
  if (c->len == 0 && c->cap > BUFFER_MIN) {
    free(c->buf);
    c->buf = NULL;
    c->cap = 0;
  }
}

static void on_client_alloc(uv_handle_t *handle, size_t suggested,
                            uv_buf_t *buf)
{
  struct client *c = handle->data;
  size_t want = BUFFER_MIN;

  /* Room for the whole message whose length has arrived. */
  if (c->len >= 2 && 2 + frame_length(c->buf) > want)
    want = 2 + frame_length(c->buf);
  if (c->cap < want) {
    uint8_t *grown = realloc(c->buf, want);
    if (!grown) {
      *buf = uv_buf_init(NULL, 0); /* on_client_read gets UV_ENOBUFS */
      return;
    }
    c->buf = grown;
    c->cap = want;
  }
  *buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void on_client_read(uv_stream_t *stream, ssize_t nread,
                           const uv_buf_t *buf)
{
  struct client *c = stream->data;

  if (nread == UV_EOF) {
    c->eof = true;
    c->reading = false;
    uv_read_stop(stream);
    if (c->writes == 0)
      close_client(c);
    return;
  }
  if (nread < 0) {
    close_client(c);
    return;
  }
  c->len += (size_t)nread;
  process_frames(c);
  if (!c->closing && c->reading && c->pending >= NLB_DNS_TCP_PENDING_MAX) {
    c->reading = false;
    uv_read_stop(stream);
  }
}

static void start_reading(struct client *c)
{
  if (uv_read_start((uv_stream_t *)&c->stream, on_client_alloc,
                    on_client_read) < 0) {
    close_client(c);
    return;
  }
  c->reading = true;
}

/* ---- the caps ---- */

static bool same_host(const union nlb_sockaddr *a, const union nlb_sockaddr *b)
{
  if (a->sa.sa_family != b->sa.sa_family)
    return false;
  if (a->sa.sa_family == AF_INET6)
    return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr,
                  sizeof(a->in6.sin6_addr)) == 0;
  return a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
}

static unsigned connections_from(const struct nlb_dns_tcp *tcp,
                                 const union nlb_sockaddr *peer)
{
  const struct nlb_list *pos;
  unsigned n = 0;

  for (pos = tcp->clients.next; pos != &tcp->clients; pos = pos->next)
    n += same_host(&NLB_CONTAINER_OF(pos, struct client, link)->peer, peer);
  return n;
}

/* The network whose connections give way to one more of tcp's when the
 * budget is full: the one holding the most, tcp itself on a tie (its new
 * connection not counted), so that a network below its share of the
 * budget always gets in and one above it never pushes others out. */
static struct nlb_dns_tcp *largest_holder(struct nlb_dns_tcp *tcp)
{
  struct nlb_dns_tcp_group *group = tcp->group;
  struct nlb_dns_tcp *largest = tcp;
  unsigned most = tcp->n_clients - 1;
  struct nlb_list *pos;

  for (pos = group->networks.next; pos != &group->networks; pos = pos->next) {
    struct nlb_dns_tcp *other = NLB_CONTAINER_OF(pos, struct nlb_dns_tcp, link);
    if (other != tcp && other->n_clients > most) {
      largest = other;
      most = other->n_clients;
    }
  }
  return largest;
}

/* The connection of tcp that has gone longest without a query, other than
 * the new one; NULL when there is none. */
static struct client *oldest_client(struct nlb_dns_tcp *tcp,
                                    const struct client *newcomer)
{
  struct nlb_list *first = tcp->clients.next;

  if (first == &newcomer->link)
    first = first->next;
  return first == &tcp->clients ? NULL
                                : NLB_CONTAINER_OF(first, struct client, link);
}

/* Whether the new connection c of tcp may stay (it is counted already);
 * older connections give way while tcp or the budget is over its cap. */
static bool admit(struct nlb_dns_tcp *tcp, struct client *c)
{
  if (connections_from(tcp, &c->peer) > tcp->group->per_client) {
    tcp->refused[NLB_DNS_TCP_REFUSED_CLIENT]++;
    return false;
  }
  for (;;) {
    struct nlb_dns_tcp *victim;
    struct client *oldest;
    enum nlb_dns_tcp_eviction why;

    if (tcp->n_clients > NLB_DNS_TCP_CONNECTIONS_MAX) {
      victim = tcp;
      why = NLB_DNS_TCP_EVICTED_NETWORK;
    } else if (tcp_open > tcp_budget) {
      victim = largest_holder(tcp);
      why = NLB_DNS_TCP_EVICTED_BUDGET;
    } else {
      return true;
    }
    oldest = oldest_client(victim, c);
    if (!oldest) {
      tcp->refused[NLB_DNS_TCP_REFUSED_BUDGET]++;
      return false;
    }
    victim->evicted[why]++;
    close_client(oldest);
  }
}

static struct client *new_client(struct nlb_dns_tcp *tcp)
{
  struct client *c = calloc(1, sizeof(*c));

  if (!c)
    return NULL;
  c->tcp = tcp;
  c->stream.data = c;
  c->idle.data = c;
  uv_tcp_init(tcp->group->loop, &c->stream);
  uv_timer_init(tcp->group->loop, &c->idle);
  c->handles = 2;
  tcp->alive++;
  nlb_list_append(&tcp->clients, &c->link);
  tcp->n_clients++;
  tcp_open++;
  return c;
}

/* ---- networks ---- */

void nlb_dns_tcp_group_init(struct nlb_dns_tcp_group *group, uv_loop_t *loop,
                            uint64_t idle_timeout_ms, unsigned per_client)
{
  memset(group, 0, sizeof(*group));
  group->loop = loop;
  group->idle_timeout_ms = idle_timeout_ms;
  group->per_client = per_client;
  nlb_list_init(&group->networks);
}

void nlb_dns_tcp_join(struct nlb_dns_tcp_group *group, struct nlb_dns_tcp *tcp,
                      const char *network)
{
  tcp->group = group;
  tcp->network = network;
  nlb_list_init(&tcp->clients);
  nlb_list_append(&group->networks, &tcp->link);
}

void nlb_dns_tcp_accept(struct nlb_dns_tcp *tcp, uv_stream_t *server)
{
  struct client *c = new_client(tcp);
  int len = sizeof(union nlb_sockaddr);

  if (!c) {
    NLB_LOG_EVENT(NLB_LOG_WARN, "out_of_memory",
                  "dns {network}: out of memory for a TCP connection",
                  NLB_LOG_STR("network", tcp->network));
    return;
  }
  /* A refused connection is closed before anything is read from it or a
   * timer started: it costs its descriptor for this callback alone. */
  if (uv_accept(server, (uv_stream_t *)&c->stream) < 0 ||
      uv_tcp_getpeername(&c->stream, &c->peer.sa, &len) < 0 || !admit(tcp, c)) {
    close_client(c);
    return;
  }
  uv_tcp_nodelay(&c->stream, 1);
  uv_timer_start(&c->idle, on_idle, tcp->group->idle_timeout_ms, 0);
  start_reading(c);
}

void nlb_dns_tcp_close_all(struct nlb_dns_tcp *tcp)
{
  struct nlb_list *pos, *tmp;

  NLB_LIST_FOREACH_SAFE(pos, tmp, &tcp->clients)
  close_client(NLB_CONTAINER_OF(pos, struct client, link));
}

void nlb_dns_tcp_leave(struct nlb_dns_tcp *tcp)
{
  nlb_dns_tcp_close_all(tcp);
  nlb_list_remove(&tcp->link);
}

/* ---- metrics ---- */

/* The connections refused, or evicted, per network and reason. */
static void write_reasons(const struct nlb_dns_tcp_group *group,
                          struct nlb_text *t, const char *name,
                          const char *help, bool evicted)
{
  const char *const *names = evicted ? eviction_name : refusal_name;
  size_t n = evicted ? NLB_DNS_TCP_EVICTIONS : NLB_DNS_TCP_REFUSALS;
  const struct nlb_list *pos;

  nlb_text_printf(t, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
  for (pos = group->networks.next; pos != &group->networks; pos = pos->next) {
    const struct nlb_dns_tcp *tcp =
        NLB_CONTAINER_OF(pos, struct nlb_dns_tcp, link);
    const uint64_t *values = evicted ? tcp->evicted : tcp->refused;
    for (size_t i = 0; i < n; i++)
      nlb_text_printf(t, "%s{network=\"%s\",reason=\"%s\"} %llu\n", name,
                      tcp->network, names[i], (unsigned long long)values[i]);
  }
}

void nlb_dns_tcp_metrics(const struct nlb_dns_tcp_group *group,
                         struct nlb_text *t)
{
  const struct nlb_list *pos;

  nlb_text_printf(t, "# HELP nlb_dns_tcp_connections DNS TCP connections "
                     "open.\n# TYPE nlb_dns_tcp_connections gauge\n");
  for (pos = group->networks.next; pos != &group->networks; pos = pos->next) {
    const struct nlb_dns_tcp *tcp =
        NLB_CONTAINER_OF(pos, struct nlb_dns_tcp, link);
    nlb_text_printf(t, "nlb_dns_tcp_connections{network=\"%s\"} %u\n",
                    tcp->network, tcp->n_clients);
  }
  write_reasons(group, t, "nlb_dns_tcp_refused_total",
                "DNS TCP connections closed as soon as accepted: the "
                "client's address held its share (client), or the "
                "descriptor budget was full (budget).",
                false);
  write_reasons(group, t, "nlb_dns_tcp_evicted_total",
                "DNS TCP connections closed to make room for a new one: "
                "the network held its cap (network), or the descriptor "
                "budget was full (budget).",
                true);
  nlb_text_printf(t, "# HELP nlb_dns_tcp_budget DNS TCP connections all "
                     "networks may hold together: their share of the "
                     "descriptor limit.\n# TYPE nlb_dns_tcp_budget gauge\n");
  if (tcp_budget == UINT64_MAX)
    nlb_text_printf(t, "nlb_dns_tcp_budget +Inf\n");
  else
    nlb_text_printf(t, "nlb_dns_tcp_budget %llu\n",
                    (unsigned long long)tcp_budget);
}
