/* TLS passthrough (nlb_flow_kind_tls_passthrough): a TCP flow that reads
 * its client's ClientHello before it picks a target group, by the server
 * name asked for (the listener's SNI routes, sni_routes.h), then hands the
 * flow to the TCP relay (flow.c), which sends those bytes on untouched:
 * nlb never decrypts, and the client talks TLS with the target itself.
 *
 * The ClientHello is read into the flow's up buffer, which the relay then
 * sends from: no copy, no allocation beyond the pooled buffer the relay
 * would have taken anyway. A client that sends something else, or a hello
 * that is malformed or does not fit, is reset (end=not_tls, bad_hello);
 * one that does not finish its hello within the listener's
 * client_hello_timeout is too (end=hello_timeout). */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "nlb/common/clienthello.h"
#include "nlb/dataplane/flow_kind.h"
#include "nlb/dataplane/sni_routes.h"
#include "nlb/dataplane/snapshot.h"
#include "nlb/dataplane/worker.h"

/* What the ClientHello (and any bytes the client sends with it) may fill
 * of the up buffer: the rest is for the PROXY v2 header. */
#define HELLO_ROOM (NLB_BUFFER_SIZE - NLB_FLOW_PROXY_ROOM)

/* A listener whose SNI routes could not be made (no memory) waits this
 * long for a ClientHello, the config's default. */
#define DEFAULT_HELLO_TIMEOUT_MS 10000

_Static_assert(NLB_WORKER_NAME_SIZE > NLB_HELLO_SNI_MAX,
               "a pooled name holds a server name and its NUL");

/* The group the server name routes to: a route's, or the listener's own
 * (no name, no route for it). Group indices hold in snapshots that hold
 * the route; a reload that dropped it since accept routes by the
 * listener's own group. */
static struct nlb_group_route *pick_group(const struct nlb_flow *flow)
{
  const struct nlb_snapshot *snapshot = nlb_worker_snapshot(flow->worker);
  long index = nlb_sni_routes_match(flow->route->sni, flow->sni);

  if (index < 0 || (size_t)index >= snapshot->n_groups ||
      nlb_snapshot_find_route(snapshot, flow->route->id) != flow->route)
    return flow->group;
  return snapshot->groups[index];
}

static void on_hello(struct nlb_flow *flow, const struct nlb_client_hello *h)
{
  if (h->sni_len > 0) {
    flow->sni = nlb_worker_get_name(flow->worker);
    if (!flow->sni) {
      nlb_flow_finish(flow, NLB_END_LIMIT);
      return;
    }
    memcpy(flow->sni, h->sni, h->sni_len + 1);
  }
  flow->awaiting_hello = false;
  /* The relay watches the client again once the target takes the hello. */
  if (nlb_worker_watch(flow->worker, &flow->client_io, 0) < 0) {
    nlb_flow_finish(flow, NLB_END_LIMIT);
    return;
  }
  nlb_flow_relay(flow, pick_group(flow));
}

/* Reads what the client sent and tries the ClientHello again: a client
 * that sends it in small pieces costs a read and a walk over record
 * headers per piece, until the timeout. */
static void read_hello(struct nlb_flow *flow)
{
  struct nlb_direction *up = &flow->up;
  struct nlb_client_hello hello;
  ssize_t n;

  do
    n = recv(flow->client_io.fd, up->buffer + up->buffer_end,
             HELLO_ROOM - up->buffer_end, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN)
      nlb_flow_finish(flow, NLB_END_CLIENT_RESET);
    return;
  }
  if (n == 0) {
    /* Gone before a word, or in the middle of its hello. */
    nlb_flow_finish(flow,
                    up->buffer_end ? NLB_END_BAD_HELLO : NLB_END_CLIENT_FIN);
    return;
  }
  up->buffer_end += (uint32_t)n;
  flow->bytes_up += (uint64_t)n;
  flow->last_active_ms = uv_now(nlb_worker_loop(flow->worker));
  switch (nlb_client_hello_parse((const uint8_t *)up->buffer, up->buffer_end,
                                 &hello)) {
  case NLB_HELLO_COMPLETE:
    on_hello(flow, &hello);
    break;
  case NLB_HELLO_NEED_MORE:
    if (up->buffer_end == HELLO_ROOM)
      nlb_flow_finish(flow, NLB_END_BAD_HELLO);
    break;
  case NLB_HELLO_NOT_TLS:
    nlb_flow_finish(flow, NLB_END_NOT_TLS);
    break;
  case NLB_HELLO_INVALID:
    nlb_flow_finish(flow, NLB_END_BAD_HELLO);
    break;
  }
}

static void on_hello_ready(struct nlb_io *io, uint32_t revents)
{
  struct nlb_flow *flow = NLB_CONTAINER_OF(io, struct nlb_flow, client_io);

  (void)revents; /* recv says what an error or a hang-up was */
  if (!flow->closing && flow->awaiting_hello)
    read_hello(flow);
}

static void passthrough_start(struct nlb_worker *worker,
                              struct nlb_route *route,
                              struct nlb_group_route *group, int client_fd,
                              const union nlb_sockaddr *client_addr,
                              struct nlb_list *route_flows, bool refuse)
{
  /* The relay's own callbacks come with nlb_flow_relay; nothing watches
   * the target before. */
  struct nlb_flow *flow =
      nlb_flow_begin(worker, route, group, client_fd, client_addr, route_flows,
                     refuse, on_hello_ready, NULL);

  if (!flow)
    return;
  flow->up.buffer = nlb_worker_get_buffer(worker);
  if (!flow->up.buffer) {
    nlb_flow_finish(flow, NLB_END_LIMIT);
    return;
  }
  flow->awaiting_hello = true;
  flow->client_io.on_ready = on_hello_ready;
  if (nlb_worker_watch(worker, &flow->client_io, EPOLLIN) < 0) {
    nlb_flow_finish(flow, NLB_END_LIMIT);
    return;
  }
  /* A client usually sends its hello right after the handshake: it is
   * often there at accept. */
  read_hello(flow);
}

static void passthrough_check_timeouts(struct nlb_flow *flow, uint64_t now_ms)
{
  if (flow->awaiting_hello) {
    const struct nlb_sni_routes *sni = flow->route->sni;
    uint64_t timeout_ms =
        sni ? sni->client_hello_timeout_ms : DEFAULT_HELLO_TIMEOUT_MS;
    if (now_ms - flow->accepted_ms >= timeout_ms)
      nlb_flow_finish(flow, NLB_END_HELLO_TIMEOUT);
    return;
  }
  nlb_flow_relay_check_timeouts(flow, now_ms);
}

const struct nlb_flow_kind nlb_flow_kind_tls_passthrough = {
    .name = "tls_passthrough",
    .transport = NLB_TRANSPORT_TCP,
    .start = passthrough_start,
    .check_timeouts = passthrough_check_timeouts,
    .abort = nlb_flow_finish,
};
