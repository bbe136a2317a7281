#include "nlb/dataplane/flow.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nlb/dataplane/flow-int.h"
#include "nlb/dataplane/flow_kind.h"
#include "nlb/log.h"
#include "nlb/dataplane/proxy_v2.h"
#include "nlb/dataplane/snapshot.h"
#include "nlb/dataplane/worker.h"

/* A direction reads its source again only once what it read has been
 * written on: the high-water mark is one pipe (64 KiB, the kernel's default
 * pipe size) or one buffer, the low-water mark is empty. Kernel socket
 * buffers do the rest, and a slow reader costs nlb at most this much. */
#define PIPE_HIGH_WATER (64 * 1024)

/* Rounds of read-then-write per wakeup, so one busy flow cannot starve the
 * others on its worker. */
#define MAX_ROUNDS 8

/* Every flow, idle or not, costs this much: a field added to it shows
 * here first (bench/run.sh measures the memory per idle flow). */
_Static_assert(sizeof(struct nlb_flow) <= 312,
               "struct nlb_flow outgrew its 320-byte malloc chunk");

static uint64_t loop_now(const struct nlb_flow *flow)
{
  return uv_now(nlb_worker_loop(flow->worker));
}

static uint32_t pending_bytes(const struct nlb_direction *dir)
{
  return dir->in_pipe + (dir->buffer_end - dir->buffer_start);
}

static void release_direction(struct nlb_flow *flow, struct nlb_direction *dir)
{
  if (dir->pipe_read >= 0) {
    if (dir->in_pipe == 0) {
      nlb_worker_put_pipe(flow->worker, dir->pipe_read, dir->pipe_write);
    } else {
      /* Bytes left in a pipe would reach the next flow: drop the pipe. */
      nlb_worker_drop_pipe(flow->worker, dir->pipe_read, dir->pipe_write);
    }
    dir->pipe_read = dir->pipe_write = -1;
    dir->in_pipe = 0;
  }
  if (dir->buffer) {
    nlb_worker_put_buffer(flow->worker, dir->buffer);
    dir->buffer = NULL;
    dir->buffer_start = dir->buffer_end = 0;
  }
}

/* Gives back what an emptied direction holds, so idle flows hold nothing. */
static void trim_direction(struct nlb_flow *flow, struct nlb_direction *dir)
{
  if (pending_bytes(dir) == 0)
    release_direction(flow, dir);
}

static void set_linger_reset(int fd)
{
  struct linger reset = {.l_onoff = 1, .l_linger = 0};
  if (fd >= 0)
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
}

/* Closing a socket also takes it out of the worker's epoll. */
static void close_io(struct nlb_io *io)
{
  if (io->fd < 0)
    return;
  close(io->fd);
  io->fd = -1;
  io->events = 0;
}

/* Ends the flow: one access-log record, counters, both sockets closed (with
 * a reset unless the flow ended in an orderly way), pooled pipes and
 * buffers given back. The flow's memory returns to the worker's pool. */
static void finish(struct nlb_flow *flow, enum nlb_flow_end end)
{
  uint64_t now = loop_now(flow);
  bool orderly = end == NLB_END_CLIENT_FIN || end == NLB_END_TARGET_FIN ||
                 end == NLB_END_NO_TARGET;

  if (flow->closing)
    return;
  flow->closing = true;
  flow->end = (uint8_t)end;
  if (flow->kernel)
    nlb_flow_kernel_count_bytes(flow);
  if (!orderly) {
    set_linger_reset(flow->client_io.fd);
    set_linger_reset(flow->target_io.fd);
  }
  close_io(&flow->client_io);
  close_io(&flow->target_io);
  release_direction(flow, &flow->up);
  release_direction(flow, &flow->down);
  nlb_list_remove(&flow->link);
  nlb_list_remove(&flow->route_link);
  nlb_flow_count_end(flow, now);
  if (nlb_log_access_enabled())
    nlb_flow_log_access(flow, now);
  if (flow->tls) {
    SSL_free(flow->client_ssl);
    SSL_free(flow->target_ssl);
    flow->client_ssl = flow->target_ssl = NULL;
  } else if (flow->sni) {
    nlb_worker_put_name(flow->worker, flow->sni);
    flow->sni = NULL;
  }
  nlb_worker_flow_closed(flow->worker);
  nlb_group_route_release(flow->group);
  nlb_route_release(flow->route);
  flow->group = NULL;
  flow->route = NULL;
  flow->target = NULL;
  /* Freed after the current round of events: one may still name it. */
  nlb_worker_free_flow(flow->worker, flow);
}

void nlb_flow_finish(struct nlb_flow *flow, enum nlb_flow_end end)
{
  finish(flow, end);
}

/* Reads from src into the direction. Small exchanges (requests, replies)
 * go through a pooled buffer: recv/send cost less than two splices for a
 * few hundred bytes. Once a read fills a whole buffer the direction is
 * bulk and moves through a pipe with splice(2), never copied through user
 * space (HAProxy's splice-auto makes the same call). Returns bytes read, 0
 * at EOF, or a negative errno. */
static ssize_t fill(struct nlb_flow *flow, struct nlb_direction *dir, int src)
{
  ssize_t n;

  if (dir->bulk && dir->pipe_read < 0 && !dir->buffer)
    nlb_worker_get_pipe(flow->worker, &dir->pipe_read, &dir->pipe_write);
  if (dir->pipe_read >= 0) {
    n = splice(src, NULL, dir->pipe_write, NULL, PIPE_HIGH_WATER,
               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0)
      dir->in_pipe += (uint32_t)n;
    return n < 0 ? -errno : n;
  }
  if (!dir->buffer) {
    dir->buffer = nlb_worker_get_buffer(flow->worker);
    if (!dir->buffer)
      return -ENOMEM;
  }
  do
    n = recv(src, dir->buffer, NLB_BUFFER_SIZE, 0);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    dir->buffer_start = 0;
    dir->buffer_end = (uint32_t)n;
    if (n == NLB_BUFFER_SIZE)
      dir->bulk = true;
  }
  return n < 0 ? -errno : n;
}

/* Writes what the direction holds to dst. Returns 0 (all written or dst
 * full for now) or a negative errno for a broken destination. The last
 * bytes before a FIN go with MSG_MORE: the shutdown() or close() that
 * follows at once then sends them and the FIN in one segment, not two
 * (HAProxy does the same), which spares the receiver a wakeup. */
static int flush(struct nlb_direction *dir, int dst)
{
  int flags = MSG_NOSIGNAL | (dir->eof ? MSG_MORE : 0);

  while (dir->buffer_end > dir->buffer_start) {
    ssize_t n = send(dst, dir->buffer + dir->buffer_start,
                     dir->buffer_end - dir->buffer_start, flags);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return errno == EAGAIN ? 0 : -errno;
    }
    dir->buffer_start += (uint32_t)n;
  }
  while (dir->in_pipe > 0) {
    ssize_t n = splice(dir->pipe_read, NULL, dst, NULL, dir->in_pipe,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return errno == EAGAIN ? 0 : -errno;
    }
    dir->in_pipe -= (uint32_t)n;
  }
  return 0;
}

/* Moves bytes one way. src_ready and dst_ready say what poll reported, so
 * no syscall is spent on a side that has nothing to give or take.
 * Returns NLB_END_NONE or the cause that ends the flow. */
static enum nlb_flow_end move(struct nlb_flow *flow, struct nlb_direction *dir,
                              int src, int dst, bool src_ready, bool dst_ready,
                              bool src_fin, uint64_t *counter, bool upstream)
{
  enum nlb_flow_end src_reset =
      upstream ? NLB_END_CLIENT_RESET : NLB_END_TARGET_RESET;
  enum nlb_flow_end dst_reset =
      upstream ? NLB_END_TARGET_RESET : NLB_END_CLIENT_RESET;

  if (dst_ready && pending_bytes(dir) > 0 && flush(dir, dst) < 0)
    return dst_reset;
  for (int round = 0; src_ready && round < MAX_ROUNDS; round++) {
    if (dir->eof || pending_bytes(dir) > 0)
      break;
    ssize_t n = fill(flow, dir, src);
    if (n == 0) {
      dir->eof = true;
      if (flow->end == NLB_END_NONE)
        flow->end = upstream ? NLB_END_CLIENT_FIN : NLB_END_TARGET_FIN;
      break;
    }
    if (n < 0) {
      if (n == -EAGAIN)
        dir->partial = false;
      if (n == -EAGAIN || n == -EINTR)
        break;
      return n == -ENOMEM ? NLB_END_LIMIT : src_reset;
    }
    *counter += (uint64_t)n;
    flow->last_active_ms = loop_now(flow);
    /* A short read drained the socket: poll will say when more comes.
     * If poll also saw the peer's FIN (EPOLLRDHUP), nothing more comes:
     * the recv that would return 0 is spared. */
    bool drained =
        dir->pipe_read >= 0 ? n < PIPE_HIGH_WATER : n < NLB_BUFFER_SIZE;
    dir->partial = !drained;
    if (drained && src_fin) {
      dir->eof = true;
      if (flow->end == NLB_END_NONE)
        flow->end = upstream ? NLB_END_CLIENT_FIN : NLB_END_TARGET_FIN;
    }
    if (flush(dir, dst) < 0)
      return dst_reset;
    if (drained)
      break;
  }
  if (dir->eof && !dir->shut && pending_bytes(dir) == 0) {
    /* When the other way is done too, the close that follows sends the
     * FIN: spare the syscall. */
    struct nlb_direction *other = upstream ? &flow->down : &flow->up;
    if (!other->shut)
      shutdown(dst, SHUT_WR);
    dir->shut = true;
  }
  trim_direction(flow, dir);
  return NLB_END_NONE;
}

/* Watches each socket for what its directions need: readable while its
 * outgoing direction is empty and open, writable while bytes wait for it. */
static void update_interest(struct nlb_flow *flow)
{
  uint32_t client = 0, target = 0;

  /* EPOLLRDHUP only with EPOLLIN: level-triggered, a FIN already acted
   * on would be reported for ever. */
  if (!flow->up.eof && pending_bytes(&flow->up) == 0)
    client |= EPOLLIN | EPOLLRDHUP;
  if (pending_bytes(&flow->down) > 0)
    client |= EPOLLOUT;
  if (!flow->down.eof && pending_bytes(&flow->down) == 0)
    target |= EPOLLIN | EPOLLRDHUP;
  if (pending_bytes(&flow->up) > 0)
    target |= EPOLLOUT;
  if (nlb_worker_watch(flow->worker, &flow->client_io, client) < 0 ||
      nlb_worker_watch(flow->worker, &flow->target_io, target) < 0)
    finish(flow, NLB_END_LIMIT);
}

/* Which of the watched events to act on. An error or hang-up counts as
 * every event the socket is watched for: the next recv or send says what
 * happened. */
static void ready_events(const struct nlb_io *io, uint32_t revents,
                         bool *readable, bool *writable, bool *fin)
{
  if (revents & (EPOLLERR | EPOLLHUP))
    revents |= io->events;
  *readable = revents & EPOLLIN;
  *writable = revents & EPOLLOUT;
  /* An error or hang-up is left to recv to tell apart from a FIN. */
  *fin = (revents & (EPOLLRDHUP | EPOLLERR | EPOLLHUP)) == EPOLLRDHUP;
}

/* What poll said of each socket. */
struct readiness {
  bool client_readable, client_writable, client_fin;
  bool target_readable, target_writable, target_fin;
};

static void service(struct nlb_flow *flow, const struct readiness *ready)
{
  enum nlb_flow_end end;

  end = move(flow, &flow->up, flow->client_io.fd, flow->target_io.fd,
             ready->client_readable, ready->target_writable, ready->client_fin,
             &flow->bytes_up, true);
  if (end == NLB_END_NONE)
    end = move(flow, &flow->down, flow->target_io.fd, flow->client_io.fd,
               ready->target_readable, ready->client_writable,
               ready->target_fin, &flow->bytes_down, false);
  if (end != NLB_END_NONE) {
    finish(flow, end);
    return;
  }
  if (flow->up.shut && flow->down.shut) {
    finish(flow, (enum nlb_flow_end)flow->end);
    return;
  }
  if (flow->route->sockmap && !flow->kernel_tried && flow->established &&
      pending_bytes(&flow->up) == 0 && pending_bytes(&flow->down) == 0 &&
      !flow->up.partial && !flow->down.partial && !flow->up.eof &&
      !flow->down.eof) {
    end = nlb_flow_kernel_enter(flow);
    if (flow->kernel) {
      /* Both directions are empty: nothing to hold any more. */
      release_direction(flow, &flow->up);
      release_direction(flow, &flow->down);
    }
    if (end != NLB_END_NONE)
      finish(flow, end);
    if (flow->kernel || flow->closing)
      return;
  }
  update_interest(flow);
}

/* How long a flow where neither side has spoken may go before it asks
 * whether its target is connected (see waiting_for_first_bytes). */
#define SILENT_PROBE_MS 1000

/* How long a refused client may take to close its side before it is
 * reset. */
#define REFUSE_LINGER_MS 2000

/* A refused client read what it sent? Closing a socket with unread bytes
 * sends a reset, so read and drop them until the client closes too. */
static void discard_until_eof(struct nlb_flow *flow)
{
  char sink[4096];
  for (;;) {
    ssize_t n = recv(flow->client_io.fd, sink, sizeof(sink), 0);
    if (n > 0)
      continue;
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return;
    finish(flow, NLB_END_NO_TARGET);
    return;
  }
}

static void read_while_connecting(struct nlb_flow *flow);

static void on_client_ready(struct nlb_io *io, uint32_t revents)
{
  struct nlb_flow *flow = NLB_CONTAINER_OF(io, struct nlb_flow, client_io);
  struct readiness ready = {0};

  if (flow->closing)
    return;
  if (flow->kernel) {
    enum nlb_flow_end end = nlb_flow_kernel_ready(flow, true);
    if (end != NLB_END_NONE)
      finish(flow, end);
    return;
  }
  if (flow->refusing) {
    discard_until_eof(flow);
    return;
  }
  if (!flow->established) {
    read_while_connecting(flow);
    return;
  }
  ready_events(io, revents, &ready.client_readable, &ready.client_writable,
               &ready.client_fin);
  service(flow, &ready);
}

static void try_connect(struct nlb_flow *flow);

bool nlb_flow_connect_failed(struct nlb_flow *flow)
{
  const struct nlb_group_route *group = flow->group;

  atomic_fetch_add_explicit(&flow->target->counters.connect_failures, 1,
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&flow->route->stats->counters.connect_failures, 1,
                            memory_order_relaxed);
  nlb_target_passive_failure(flow->target);
  close_io(&flow->target_io);
  flow->connected_ms = 0; /* that target's, if TCP_INFO gave it */
  if (flow->n_tried <= group->connect_retries && flow->n_tried < NLB_MAX_TRIES)
    return true;
  finish(flow, NLB_END_CONNECT_FAILED);
  return false;
}

static void on_connect_failed(struct nlb_flow *flow)
{
  if (nlb_flow_connect_failed(flow))
    try_connect(flow);
}

/* Puts the PROXY v2 header in front of what the up buffer holds (nothing,
 * or a TLS passthrough flow's ClientHello, which left room for it). A
 * flow that read a server name passes it on as PP2_TYPE_AUTHORITY. */
static void write_proxy_header(struct nlb_flow *flow)
{
  union nlb_sockaddr local = flow->route->local;
  struct nlb_direction *up = &flow->up;
  socklen_t len = sizeof(local);
  uint8_t header[NLB_FLOW_PROXY_ROOM];
  uint32_t held = up->buffer_end - up->buffer_start;
  int n;

  /* A wildcard bind does not say which address the client reached. */
  if (nlb_addr_is_any(&local))
    getsockname(flow->client_io.fd, &local.sa, &len);
  n = nlb_proxy_v2_encode(header, sizeof(header), &flow->client_addr.sa,
                          &local.sa, flow->route->endpoint_id);
  if (n > 0 && nlb_flow_sni(flow))
    n = nlb_proxy_v2_add_tlv(header, (size_t)n, sizeof(header),
                             PP2_TYPE_AUTHORITY, flow->sni, strlen(flow->sni));
  if (n > 0 && (size_t)n + held > NLB_BUFFER_SIZE)
    n = -ENOSPC;
  if (n < 0) {
    NLB_LOG_EVENT(NLB_LOG_ERROR, "proxy_v2_failed",
                  "proxy v2 header for target group {target_group}: {error}",
                  NLB_LOG_STR("target_group", flow->group->name),
                  NLB_LOG_STR("error", strerror(-n)));
    finish(flow, NLB_END_CONNECT_FAILED);
    return;
  }
  memmove(up->buffer + n, up->buffer + up->buffer_start, held);
  memcpy(up->buffer, header, (size_t)n);
  up->buffer_start = 0;
  up->buffer_end = (uint32_t)n + held;
}

/* ready: what is known of both sockets. The target is writable; the
 * client is readable unless it was read an instant ago (by the optimistic
 * send: a recv now would most likely be wasted). */
void nlb_flow_connected(struct nlb_flow *flow)
{
  flow->established = true;
  if (!flow->connected_ms)
    flow->connected_ms = loop_now(flow);
  nlb_histogram_observe(&flow->target->connect_time, nlb_connect_time_bounds_ms,
                        flow->connected_ms > flow->connect_started_ms
                            ? flow->connected_ms - flow->connect_started_ms
                            : 0);
  flow->last_active_ms = loop_now(flow);
  nlb_worker_track_established(flow->worker, flow);
  atomic_fetch_add_explicit(&flow->target->counters.active_flows, 1,
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&flow->target->counters.new_flows, 1,
                            memory_order_relaxed);
}

static void on_connected(struct nlb_flow *flow, struct readiness ready)
{
  nlb_flow_connected(flow);
  service(flow, &ready);
}

/* What the kernel knows of the target connection; false if it does not
 * say. Asked only off the common path. */
static bool target_tcp_info(const struct nlb_flow *flow, struct tcp_info *info)
{
  socklen_t len = sizeof(*info);
  return getsockopt(flow->target_io.fd, IPPROTO_TCP, TCP_INFO, info, &len) == 0;
}

/* An event fetched in the same batch as the client's, whose send found
 * the target refusing and connected to the next one, names the new
 * socket: act on an error only if that socket did fail. */
static bool target_failed(const struct nlb_flow *flow)
{
  struct tcp_info info;
  return !target_tcp_info(flow, &info) || info.tcpi_state == TCP_CLOSE;
}

static void on_target_ready(struct nlb_io *io, uint32_t revents)
{
  struct nlb_flow *flow = NLB_CONTAINER_OF(io, struct nlb_flow, target_io);
  struct readiness ready = {0};

  if (flow->closing)
    return;
  if (flow->kernel) {
    enum nlb_flow_end end = nlb_flow_kernel_ready(flow, false);
    if (end != NLB_END_NONE)
      finish(flow, end);
    return;
  }
  if (!flow->established) {
    /* A failed connect raises EPOLLERR (and EPOLLHUP): no need to ask
     * SO_ERROR when it did not. */
    if (revents & (EPOLLERR | EPOLLHUP)) {
      if (target_failed(flow))
        on_connect_failed(flow);
      return;
    }
    /* Writable: the handshake is done, and bytes the client sent
     * meanwhile wait unwatched. Readable: a target that speaks first has
     * (the client is watched then: poll tells if it spoke too). */
    if (revents & (EPOLLOUT | EPOLLIN)) {
      ready.client_readable = revents & EPOLLOUT;
      ready.target_writable = true;
      ready.target_readable = revents & EPOLLIN;
      ready.target_fin = (revents & EPOLLRDHUP) != 0;
      on_connected(flow, ready);
    }
    return;
  }
  ready_events(io, revents, &ready.target_readable, &ready.target_writable,
               &ready.target_fin);
  service(flow, &ready);
}

/* Appends what the client sent to the up buffer, before the flow is
 * established (while the buffer holds at most the PROXY header: there is
 * room). Returns bytes read, 0 at EOF, or a negative errno. */
static ssize_t read_client(struct nlb_flow *flow)
{
  struct nlb_direction *up = &flow->up;
  ssize_t n;

  if (!up->buffer && !(up->buffer = nlb_worker_get_buffer(flow->worker))) {
    finish(flow, NLB_END_LIMIT);
    return -ENOMEM;
  }
  do
    n = recv(flow->client_io.fd, up->buffer + up->buffer_end,
             NLB_BUFFER_SIZE - up->buffer_end, 0);
  while (n < 0 && errno == EINTR);
  up->partial = n == (ssize_t)(NLB_BUFFER_SIZE - up->buffer_end);
  if (n < 0)
    n = -errno;
  if (n > 0) {
    up->buffer_end += (uint32_t)n;
    flow->bytes_up += (uint64_t)n;
    flow->last_active_ms = loop_now(flow);
  } else if (n == 0) {
    /* Passed on as a FIN once connected. */
    up->eof = true;
    flow->end = NLB_END_CLIENT_FIN;
  }
  trim_direction(flow, up);
  return n;
}

/* Whether the flow waits for what comes first (send_optimistically): the
 * only state in which the client is watched before the flow is up. */
static bool waiting_for_first_bytes(const struct nlb_flow *flow)
{
  return !flow->established && flow->client_io.events != 0;
}

/* When the target's handshake was done, for the access log's connect
 * time: the SYN-ACK is the last ACK a target that has been sent nothing
 * has sent. 0 when unknown (not yet connected). */
static uint64_t handshake_done_ms(const struct nlb_flow *flow)
{
  struct tcp_info info;
  uint64_t now = loop_now(flow);

  if (!target_tcp_info(flow, &info) || info.tcpi_state != TCP_ESTABLISHED)
    return 0;
  if (info.tcpi_last_ack_recv > now - flow->connect_started_ms)
    return flow->connect_started_ms;
  return now - info.tcpi_last_ack_recv;
}

/* Sends what the flow already holds for the target (the PROXY header and
 * the client's first bytes) right after connect(), as HAProxy does. Where
 * the handshake is done already (loopback, a near target), the send goes
 * through: the connection is established, and the poll round that would
 * have said so is spared. Otherwise send() says EAGAIN and the flow waits
 * for EPOLLOUT; a refusal shows here as an error from send(). */
static void send_optimistically(struct nlb_flow *flow)
{
  struct nlb_direction *up = &flow->up;
  uint32_t unsent = up->buffer_end - up->buffer_start;
  uint32_t client = 0, target = EPOLLOUT;

  if (unsent > 0) {
    /* It spoke late: the handshake may have been done long before (the
     * access log and the connect-time histogram want when). Within the
     * millisecond they count in, now is as good and costs no syscall. */
    if (waiting_for_first_bytes(flow) &&
        loop_now(flow) - flow->connect_started_ms > 1)
      flow->connected_ms = handshake_done_ms(flow);
    if (flush(up, flow->target_io.fd) < 0) {
      on_connect_failed(flow);
      return;
    }
    if (up->buffer_end - up->buffer_start < unsent) {
      on_connected(flow, (struct readiness){.target_writable = true});
      return;
    }
  } else if (!up->eof) {
    /* Nothing to send: the client had not spoken when accepted. Rather
     * than a poll round to learn that the handshake is done, wait for
     * what comes first: the client's bytes (sent at once, which tells),
     * a target that speaks first, or a refusal (EPOLLERR). */
    client = EPOLLIN | EPOLLRDHUP;
    target = EPOLLIN | EPOLLRDHUP;
  }
  /* Otherwise the client is not read until the target takes what the
   * flow holds. */
  if (nlb_worker_watch(flow->worker, &flow->client_io, client) < 0 ||
      nlb_worker_watch(flow->worker, &flow->target_io, target) < 0)
    finish(flow, NLB_END_LIMIT);
}

/* The client spoke while its target was being connected to: its bytes
 * go at once, as they would have at accept. */
static void read_while_connecting(struct nlb_flow *flow)
{
  ssize_t n = read_client(flow);

  if (n == -EAGAIN || flow->closing)
    return;
  if (n < 0) {
    finish(flow, NLB_END_CLIENT_RESET);
    return;
  }
  send_optimistically(flow);
}

int nlb_flow_connect(struct nlb_flow *flow)
{
  struct nlb_pool *pool = flow->group->pool;
  const int one = 1;

  for (;;) {
    int index =
        nlb_pool_pick(pool, flow->flow_hash, flow->tried, flow->n_tried);
    if (index < 0 || flow->n_tried >= NLB_MAX_TRIES) {
      finish(flow, NLB_END_CONNECT_FAILED);
      return -EHOSTUNREACH;
    }
    flow->tried[flow->n_tried++] = (uint32_t)index;
    flow->target = pool->targets[index];

    int fd = socket(flow->target->address.sa.sa_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      finish(flow, NLB_END_LIMIT);
      return -errno;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* The target sees the client's own address (listener.h). */
    if (flow->group->preserve_client_ip &&
        nlb_bind_client_address(fd, &flow->client_addr) < 0) {
      close(fd);
      finish(flow, NLB_END_CONNECT_FAILED);
      return -EPERM;
    }
    if (connect(fd, &flow->target->address.sa,
                nlb_addr_len(&flow->target->address)) == 0 ||
        errno == EINPROGRESS) {
      flow->target_io.fd = fd;
      flow->connect_started_ms = loop_now(flow);
      return 0;
    }
    close(fd);
    atomic_fetch_add_explicit(&flow->target->counters.connect_failures, 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&flow->route->stats->counters.connect_failures, 1,
                              memory_order_relaxed);
    nlb_target_passive_failure(flow->target);
    if (flow->n_tried > flow->group->connect_retries) {
      finish(flow, NLB_END_CONNECT_FAILED);
      return -ECONNREFUSED;
    }
  }
}

static void try_connect(struct nlb_flow *flow)
{
  if (nlb_flow_connect(flow) == 0)
    send_optimistically(flow);
}

static bool source_allowed(const struct nlb_route *route,
                           const union nlb_sockaddr *client)
{
  if (route->n_allowed_sources == 0)
    return true;
  for (size_t i = 0; i < route->n_allowed_sources; i++)
    if (nlb_cidr_contains(&route->allowed_sources[i], client))
      return true;
  return false;
}

/* Before connecting: the PROXY header, and whatever the client sent with
 * its handshake (a client usually speaks first, and its request is there
 * at accept), so both can go with the connect (send_optimistically). A
 * server-speaks-first protocol costs one recv that says EAGAIN. */
static void read_first_bytes(struct nlb_flow *flow)
{
  struct nlb_direction *up = &flow->up;
  ssize_t n;

  up->buffer = nlb_worker_get_buffer(flow->worker);
  if (!up->buffer) {
    finish(flow, NLB_END_LIMIT);
    return;
  }
  if (flow->group->proxy_protocol_v2) {
    write_proxy_header(flow);
    if (flow->closing)
      return;
  }
  n = read_client(flow);
  if (n < 0 && n != -EAGAIN && !flow->closing)
    finish(flow, NLB_END_CLIENT_RESET);
}

struct nlb_flow *nlb_flow_begin(struct nlb_worker *worker,
                                struct nlb_route *route,
                                struct nlb_group_route *group, int client_fd,
                                const union nlb_sockaddr *client_addr,
                                struct nlb_list *route_flows, bool refuse,
                                void (*on_client)(struct nlb_io *, uint32_t),
                                void (*on_target)(struct nlb_io *, uint32_t))
{
  struct nlb_flow *flow = nlb_worker_alloc_flow(worker);

  if (!flow) {
    set_linger_reset(client_fd);
    close(client_fd);
    /* The worker counted the flow at accept; finish() never runs for it. */
    nlb_worker_flow_closed(worker);
    return NULL;
  }
  flow->worker = worker;
  nlb_route_acquire(route);
  nlb_group_route_acquire(group);
  flow->route = route;
  flow->group = group;
  flow->access_json = nlb_worker_snapshot(worker)->access_json;
  flow->client_io.fd = client_fd;
  flow->client_io.on_ready = on_client;
  flow->target_io.fd = -1;
  flow->target_io.on_ready = on_target;
  flow->up.pipe_read = flow->up.pipe_write = -1;
  flow->down.pipe_read = flow->down.pipe_write = -1;
  flow->client_addr = *client_addr;
  flow->accepted_ms = loop_now(flow);
  flow->last_active_ms = flow->accepted_ms;
  nlb_list_init(&flow->link);
  nlb_worker_track_connecting(worker, flow);
  nlb_list_append(route_flows, &flow->route_link);
  atomic_fetch_add_explicit(&route->stats->counters.new_flows, 1,
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&route->stats->counters.active_flows, 1,
                            memory_order_relaxed);
  /* TCP_NODELAY comes from the listening socket: accepted sockets inherit
   * it. */

  if (refuse) {
    finish(flow, NLB_END_LIMIT);
    return NULL;
  }
  if (!source_allowed(route, client_addr)) {
    finish(flow, NLB_END_SOURCE_DENIED);
    return NULL;
  }
  flow->flow_hash = nlb_flow_hash(client_addr, &route->local);
  return flow;
}

/* A group without a usable target: a clean close, as fail_open = false
 * promises: FIN now, then wait for the client's (see discard_until_eof).
 * false when the group has targets. */
static bool refuse_without_target(struct nlb_flow *flow)
{
  if (flow->group->pool->n_targets > 0)
    return false;
  flow->refusing = true;
  shutdown(flow->client_io.fd, SHUT_WR);
  if (nlb_worker_watch(flow->worker, &flow->client_io, EPOLLIN) < 0) {
    finish(flow, NLB_END_LIMIT);
    return true;
  }
  discard_until_eof(flow);
  return true;
}

void nlb_flow_relay(struct nlb_flow *flow, struct nlb_group_route *group)
{
  if (group != flow->group) {
    nlb_group_route_acquire(group);
    nlb_group_route_release(flow->group);
    flow->group = group;
  }
  flow->client_io.on_ready = on_client_ready;
  flow->target_io.on_ready = on_target_ready;
  if (refuse_without_target(flow))
    return;
  if (group->proxy_protocol_v2)
    write_proxy_header(flow);
  if (!flow->closing)
    try_connect(flow);
}

static void relay_start(struct nlb_worker *worker, struct nlb_route *route,
                        struct nlb_group_route *group, int client_fd,
                        const union nlb_sockaddr *client_addr,
                        struct nlb_list *route_flows, bool refuse)
{
  struct nlb_flow *flow =
      nlb_flow_begin(worker, route, group, client_fd, client_addr, route_flows,
                     refuse, on_client_ready, on_target_ready);

  if (!flow || refuse_without_target(flow))
    return;
  read_first_bytes(flow);
  if (!flow->closing)
    try_connect(flow);
}

void nlb_flow_relay_check_timeouts(struct nlb_flow *flow, uint64_t now_ms)
{
  if (flow->refusing) {
    if (now_ms - flow->accepted_ms >= REFUSE_LINGER_MS)
      finish(flow, NLB_END_NO_TARGET);
    return;
  }
  if (!flow->established) {
    uint64_t waited_ms = now_ms - flow->connect_started_ms;
    bool timed_out =
        flow->target_io.fd >= 0 && waited_ms >= flow->group->connect_timeout_ms;
    /* Where neither side has spoken yet, nothing said the handshake was
     * done: ask, so that the flow is up (idle timeout, drain, counters)
     * within a second. */
    if (waiting_for_first_bytes(flow) &&
        (timed_out || waited_ms >= SILENT_PROBE_MS)) {
      uint64_t done_ms = handshake_done_ms(flow);
      if (done_ms) {
        flow->connected_ms = done_ms;
        on_connected(flow, (struct readiness){.target_writable = true});
        return;
      }
    }
    if (timed_out)
      on_connect_failed(flow);
    return;
  }
  if (flow->kernel) {
    enum nlb_flow_end end = nlb_flow_kernel_check(flow, now_ms);
    if (end != NLB_END_NONE) {
      finish(flow, end);
      return;
    }
  }
  if (now_ms - flow->last_active_ms >= flow->route->idle_timeout_ms) {
    finish(flow, NLB_END_IDLE_TIMEOUT);
    return;
  }
  uint64_t deadline = atomic_load_explicit(&flow->target->drain_deadline_ms,
                                           memory_order_relaxed);
  if (deadline && now_ms >= deadline)
    finish(flow, NLB_END_DEREGISTERED);
}

const struct nlb_flow_kind nlb_flow_kind_tcp = {
    .name = "tcp",
    .start = relay_start,
    .check_timeouts = nlb_flow_relay_check_timeouts,
    .abort = nlb_flow_finish,
};
