/* TLS termination (flow_kind.h): the client's handshake runs on the worker
 * that accepted it, non-blocking, driven by the worker's epoll; once done
 * the flow connects to a target (with a PROXY v2 header carrying the
 * client's SNI, ALPN, version and cipher when its group asks), speaks TLS
 * to it too when its group re-encrypts, and moves bytes both ways through
 * OpenSSL and the flow's two pooled buffers. A FIN (or close_notify) is
 * passed on as close_notify and FIN; a reset as a reset, as the TCP relay
 * does. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nlb/common/tls_client.h"
#include "nlb/common/tls_server.h"
#include "nlb/dataplane/flow_kind.h"
#include "nlb/dataplane/proxy_v2.h"
#include "nlb/dataplane/snapshot.h"
#include "nlb/dataplane/worker.h"

/* Where a flow is: flow->tls_state. */
enum {
  TLS_HANDSHAKE,        /* with the client; counted in stats->tls_pending */
  TLS_CONNECTING,       /* to a target */
  TLS_TARGET_HANDSHAKE, /* with a re-encrypting group's target */
  TLS_ESTABLISHED,
};

/* Read-then-write rounds per wakeup, so one busy flow cannot starve the
 * others; records OpenSSL already holds are always drained (no event would
 * say they are there). */
#define MAX_ROUNDS 8

static uint64_t loop_now(const struct nlb_flow *flow)
{
  return uv_now(nlb_worker_loop(flow->worker));
}

static void count_handshake(struct nlb_flow *flow, enum nlb_tls_result result)
{
  atomic_fetch_add_explicit(&flow->route->stats->tls_handshakes[result], 1,
                            memory_order_relaxed);
}

/* The flow leaves its client handshake (done, failed or cut short). */
static void leave_handshake(struct nlb_flow *flow, uint8_t state)
{
  if (flow->tls_state == TLS_HANDSHAKE)
    atomic_fetch_sub_explicit(&flow->route->stats->tls_pending, 1,
                              memory_order_relaxed);
  flow->tls_state = state;
}

static void end_flow(struct nlb_flow *flow, enum nlb_flow_end end)
{
  leave_handshake(flow, flow->tls_state == TLS_HANDSHAKE ? TLS_CONNECTING
                                                         : flow->tls_state);
  nlb_flow_finish(flow, end);
}

static void watch(struct nlb_flow *flow, struct nlb_io *io, uint32_t events)
{
  if (nlb_worker_watch(flow->worker, io, events) < 0)
    end_flow(flow, NLB_END_LIMIT);
}

/* What an SSL call that did not succeed wants: 0 with *events set for a
 * retry when the socket is ready, or the negative errno that ends it (0
 * read means EOF: returned as -EPIPE never; see read_side). */
static int ssl_wants(SSL *ssl, int ret, uint32_t *events)
{
  switch (SSL_get_error(ssl, ret)) {
  case SSL_ERROR_WANT_READ:
    *events = EPOLLIN;
    return 0;
  case SSL_ERROR_WANT_WRITE:
    *events = EPOLLOUT;
    return 0;
  case SSL_ERROR_ZERO_RETURN:
    return -EPIPE;
  case SSL_ERROR_SYSCALL:
    return errno ? -errno : -ECONNRESET;
  default:
    return -EPROTO;
  }
}

/* Reads from one side: bytes read, 0 at its end (close_notify or FIN),
 * -EAGAIN, or a negative errno. On -EAGAIN *wants gains what OpenSSL
 * waits for when it is not readiness to read: a TLS 1.3 read may have to
 * write (the answer to a KeyUpdate) into a full socket, and then waits
 * for EPOLLOUT, which watching for EPOLLIN alone would never see. */
static ssize_t read_side(SSL *ssl, int fd, char *buffer, size_t size,
                         uint32_t *wants)
{
  uint32_t events;
  ssize_t n;
  int rc;

  if (!ssl) {
    do
      n = recv(fd, buffer, size, 0);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
  }
  ERR_clear_error();
  errno = 0;
  n = SSL_read(ssl, buffer, (int)size);
  if (n > 0)
    return n;
  rc = ssl_wants(ssl, (int)n, &events);
  if (rc == 0)
    *wants |= events & ~(uint32_t)EPOLLIN;
  return rc == 0 ? -EAGAIN : rc == -EPIPE ? 0 : rc;
}

/* Writes to one side: bytes written, -EAGAIN, or a negative errno. On
 * -EAGAIN *wants gains what OpenSSL waits for when it is not readiness to
 * write (a write that must first read). */
static ssize_t write_side(SSL *ssl, int fd, const char *buffer, size_t len,
                          uint32_t *wants)
{
  uint32_t events;
  ssize_t n;
  int rc;

  if (!ssl) {
    do
      n = send(fd, buffer, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
  }
  ERR_clear_error();
  errno = 0;
  n = SSL_write(ssl, buffer, (int)len);
  if (n > 0)
    return n;
  rc = ssl_wants(ssl, (int)n, &events);
  if (rc == 0)
    *wants |= events & ~(uint32_t)EPOLLOUT;
  return rc == 0 ? -EAGAIN : rc;
}

static uint32_t pending(const struct nlb_direction *dir)
{
  return dir->buffer_end - dir->buffer_start;
}

/* Moves bytes one way, from src (ssl or plain fd) to dst. Returns
 * NLB_END_NONE or the cause that ends the flow; *src_wants and *dst_wants
 * gain the readiness OpenSSL waits for on either side beyond what the
 * bytes in flight ask (see read_side). */
static enum nlb_flow_end move(struct nlb_flow *flow, struct nlb_direction *dir,
                              SSL *src_ssl, int src, SSL *dst_ssl, int dst,
                              uint64_t *counter, bool upstream,
                              uint32_t *src_wants, uint32_t *dst_wants)
{
  enum nlb_flow_end src_reset =
      upstream ? NLB_END_CLIENT_RESET : NLB_END_TARGET_RESET;
  enum nlb_flow_end dst_reset =
      upstream ? NLB_END_TARGET_RESET : NLB_END_CLIENT_RESET;

  for (int round = 0;
       round < MAX_ROUNDS || (src_ssl && SSL_has_pending(src_ssl)); round++) {
    ssize_t n;
    if (pending(dir) > 0) {
      n = write_side(dst_ssl, dst, dir->buffer + dir->buffer_start,
                     pending(dir), dst_wants);
      if (n < 0 && n != -EAGAIN)
        return dst_reset;
      if (n > 0)
        dir->buffer_start += (uint32_t)n;
      if (pending(dir) > 0)
        break;
    }
    if (dir->eof)
      break;
    if (!dir->buffer && !(dir->buffer = nlb_worker_get_buffer(flow->worker)))
      return NLB_END_LIMIT;
    n = read_side(src_ssl, src, dir->buffer, NLB_BUFFER_SIZE, src_wants);
    if (n == -EAGAIN)
      break;
    if (n == 0) {
      dir->eof = true;
      if (flow->end == NLB_END_NONE)
        flow->end = upstream ? NLB_END_CLIENT_FIN : NLB_END_TARGET_FIN;
      break;
    }
    if (n < 0)
      return src_reset;
    dir->buffer_start = 0;
    dir->buffer_end = (uint32_t)n;
    *counter += (uint64_t)n;
    flow->last_active_ms = loop_now(flow);
  }
  if (dir->eof && !dir->shut && pending(dir) == 0) {
    if (dst_ssl)
      SSL_shutdown(dst_ssl); /* close_notify; its answer is not awaited */
    shutdown(dst, SHUT_WR);
    dir->shut = true;
  }
  if (pending(dir) == 0 && dir->buffer) {
    /* Idle flows hold no buffer. */
    nlb_worker_put_buffer(flow->worker, dir->buffer);
    dir->buffer = NULL;
    dir->buffer_start = dir->buffer_end = 0;
  }
  return NLB_END_NONE;
}

static void pump(struct nlb_flow *flow)
{
  enum nlb_flow_end end;
  uint32_t client = 0, target = 0;

  end = move(flow, &flow->up, flow->client_ssl, flow->client_io.fd,
             flow->target_ssl, flow->target_io.fd, &flow->bytes_up, true,
             &client, &target);
  if (end == NLB_END_NONE)
    end = move(flow, &flow->down, flow->target_ssl, flow->target_io.fd,
               flow->client_ssl, flow->client_io.fd, &flow->bytes_down, false,
               &target, &client);
  if (end != NLB_END_NONE) {
    end_flow(flow, end);
    return;
  }
  if (flow->up.shut && flow->down.shut) {
    end_flow(flow, (enum nlb_flow_end)flow->end);
    return;
  }
  /* Level-triggered: readable while a direction is empty and open,
   * writable while bytes wait, and whatever OpenSSL waits for besides. */
  if (!flow->up.eof && pending(&flow->up) == 0)
    client |= EPOLLIN;
  if (pending(&flow->down) > 0)
    client |= EPOLLOUT;
  if (!flow->down.eof && pending(&flow->down) == 0)
    target |= EPOLLIN;
  if (pending(&flow->up) > 0)
    target |= EPOLLOUT;
  watch(flow, &flow->client_io, client);
  if (!flow->closing)
    watch(flow, &flow->target_io, target);
}

static void established(struct nlb_flow *flow)
{
  flow->tls_state = TLS_ESTABLISHED;
  nlb_flow_connected(flow);
  pump(flow);
}

static void target_handshake(struct nlb_flow *flow)
{
  uint32_t events = 0;
  int rc;

  ERR_clear_error();
  errno = 0;
  rc = SSL_do_handshake(flow->target_ssl);
  if (rc == 1) {
    established(flow);
    return;
  }
  if (ssl_wants(flow->target_ssl, rc, &events) == 0) {
    watch(flow, &flow->target_io, events);
    return;
  }
  count_handshake(flow, NLB_TLS_TARGET_FAILED);
  end_flow(flow, NLB_END_TARGET_TLS_FAILED);
}

static void start_connect(struct nlb_flow *flow);

/* The target accepted the connection: the PROXY header goes first, in
 * the clear; then the TLS handshake of a re-encrypting group. */
static void on_target_connected(struct nlb_flow *flow)
{
  struct nlb_direction *up = &flow->up;
  int error = 0;
  socklen_t len = sizeof(error);

  if (getsockopt(flow->target_io.fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0 ||
      error != 0 ||
      (pending(up) > 0 &&
       write_side(NULL, flow->target_io.fd, up->buffer + up->buffer_start,
                  pending(up), &(uint32_t){0}) != (ssize_t)pending(up))) {
    if (nlb_flow_connect_failed(flow))
      start_connect(flow);
    return;
  }
  up->buffer_start = up->buffer_end = 0;
  if (!flow->group->tls_ctx) {
    established(flow);
    return;
  }
  flow->target_ssl = nlb_tls_client_connection(
      flow->group->tls_ctx, flow->group->tls_server_name, flow->target_io.fd);
  if (!flow->target_ssl) {
    end_flow(flow, NLB_END_LIMIT);
    return;
  }
  SSL_set_mode(flow->target_ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  flow->tls_state = TLS_TARGET_HANDSHAKE;
  target_handshake(flow);
}

static void start_connect(struct nlb_flow *flow)
{
  if (nlb_flow_connect(flow) < 0)
    return;
  flow->tls_state = TLS_CONNECTING;
  watch(flow, &flow->target_io, EPOLLOUT);
}

/* The PROXY v2 header with the client's TLS, at the start of the up
 * buffer, sent once the target is connected. */
static int write_proxy_header(struct nlb_flow *flow)
{
  union nlb_sockaddr local = flow->route->local;
  socklen_t len = sizeof(local);
  const SSL *ssl = flow->client_ssl;
  struct nlb_proxy_v2_tls tls = {
      .sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name),
      .version = SSL_get_version(ssl),
      .cipher = SSL_get_cipher_name(ssl),
  };
  unsigned alpn_len = 0;
  int n;

  if (!(flow->up.buffer = nlb_worker_get_buffer(flow->worker)))
    return -ENOMEM;
  SSL_get0_alpn_selected(ssl, &tls.alpn, &alpn_len);
  tls.alpn_len = alpn_len;
  if (nlb_addr_is_any(&local))
    getsockname(flow->client_io.fd, &local.sa, &len);
  n = nlb_proxy_v2_encode((uint8_t *)flow->up.buffer, NLB_BUFFER_SIZE,
                          &flow->client_addr.sa, &local.sa,
                          flow->route->endpoint_id);
  if (n > 0)
    n = nlb_proxy_v2_append_tls((uint8_t *)flow->up.buffer, (size_t)n,
                                NLB_BUFFER_SIZE, &tls);
  if (n < 0)
    return n;
  flow->up.buffer_start = 0;
  flow->up.buffer_end = (uint32_t)n;
  return 0;
}

static void handshake_done(struct nlb_flow *flow)
{
  uint64_t now = loop_now(flow);

  flow->handshake_ms = (uint32_t)(now - flow->accepted_ms);
  nlb_histogram_observe(&flow->route->stats->tls_handshake_time,
                        nlb_connect_time_bounds_ms, flow->handshake_ms);
  count_handshake(flow, SSL_session_reused(flow->client_ssl) ? NLB_TLS_RESUMED
                                                             : NLB_TLS_OK);
  leave_handshake(flow, TLS_CONNECTING);
  flow->last_active_ms = now;
  /* The client is read again once the target is there to take it. */
  watch(flow, &flow->client_io, 0);
  if (flow->closing)
    return;
  if (flow->group->pool->n_targets == 0) {
    SSL_shutdown(flow->client_ssl);
    end_flow(flow, NLB_END_NO_TARGET);
    return;
  }
  if (flow->group->proxy_protocol_v2 && write_proxy_header(flow) < 0) {
    end_flow(flow, NLB_END_LIMIT);
    return;
  }
  start_connect(flow);
}

static void client_handshake(struct nlb_flow *flow)
{
  uint32_t events = 0;
  int rc;

  ERR_clear_error();
  errno = 0;
  rc = SSL_do_handshake(flow->client_ssl);
  if (rc == 1) {
    handshake_done(flow);
    return;
  }
  if (ssl_wants(flow->client_ssl, rc, &events) == 0) {
    watch(flow, &flow->client_io, events);
    return;
  }
  count_handshake(flow, NLB_TLS_FAILED);
  end_flow(flow, NLB_END_TLS_FAILED);
}

static void on_client_ready(struct nlb_io *io, uint32_t revents)
{
  struct nlb_flow *flow = NLB_CONTAINER_OF(io, struct nlb_flow, client_io);

  (void)revents;
  if (flow->closing)
    return;
  if (flow->tls_state == TLS_HANDSHAKE)
    client_handshake(flow);
  else if (flow->tls_state == TLS_ESTABLISHED)
    pump(flow);
}

static void on_target_ready(struct nlb_io *io, uint32_t revents)
{
  struct nlb_flow *flow = NLB_CONTAINER_OF(io, struct nlb_flow, target_io);

  (void)revents;
  if (flow->closing)
    return;
  if (flow->tls_state == TLS_CONNECTING)
    on_target_connected(flow);
  else if (flow->tls_state == TLS_TARGET_HANDSHAKE)
    target_handshake(flow);
  else if (flow->tls_state == TLS_ESTABLISHED)
    pump(flow);
}

static void tls_start(struct nlb_worker *worker, struct nlb_route *route,
                      struct nlb_group_route *group, int client_fd,
                      const union nlb_sockaddr *client_addr,
                      struct nlb_list *route_flows, bool refuse)
{
  struct nlb_listener_stats *stats = route->stats;
  bool over = !route->tls ||
              atomic_load_explicit(&stats->tls_pending, memory_order_relaxed) >=
                  nlb_tls_server_max_pending(route->tls);
  struct nlb_flow *flow;

  if (over && !refuse)
    atomic_fetch_add_explicit(&stats->tls_handshakes[NLB_TLS_REFUSED], 1,
                              memory_order_relaxed);
  /* Counted before the flow can end: end_flow takes it back. */
  atomic_fetch_add_explicit(&stats->tls_pending, 1, memory_order_relaxed);
  flow =
      nlb_flow_begin(worker, route, group, client_fd, client_addr, route_flows,
                     refuse || over, on_client_ready, on_target_ready);
  if (!flow) {
    atomic_fetch_sub_explicit(&stats->tls_pending, 1, memory_order_relaxed);
    return;
  }
  flow->tls = true;
  flow->tls_state = TLS_HANDSHAKE;
  flow->client_ssl = nlb_tls_server_connection(route->tls, client_fd);
  if (!flow->client_ssl) {
    end_flow(flow, NLB_END_LIMIT);
    return;
  }
  SSL_set_mode(flow->client_ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* The ClientHello is most often there at accept. */
  client_handshake(flow);
}

static void tls_check_timeouts(struct nlb_flow *flow, uint64_t now_ms)
{
  switch (flow->tls_state) {
  case TLS_HANDSHAKE:
    if (now_ms - flow->accepted_ms >=
        nlb_tls_server_handshake_timeout_ms(flow->route->tls)) {
      count_handshake(flow, NLB_TLS_TIMEOUT);
      end_flow(flow, NLB_END_HANDSHAKE_TIMEOUT);
    }
    return;
  case TLS_CONNECTING:
    if (flow->target_io.fd >= 0 &&
        now_ms - flow->connect_started_ms >= flow->group->connect_timeout_ms &&
        nlb_flow_connect_failed(flow))
      start_connect(flow);
    return;
  case TLS_TARGET_HANDSHAKE:
    if (now_ms - flow->connect_started_ms >= flow->group->connect_timeout_ms) {
      count_handshake(flow, NLB_TLS_TARGET_FAILED);
      end_flow(flow, NLB_END_TARGET_TLS_FAILED);
    }
    return;
  default:
    break;
  }
  if (now_ms - flow->last_active_ms >= flow->route->idle_timeout_ms) {
    end_flow(flow, NLB_END_IDLE_TIMEOUT);
    return;
  }
  uint64_t deadline = atomic_load_explicit(&flow->target->drain_deadline_ms,
                                           memory_order_relaxed);
  if (deadline && now_ms >= deadline)
    end_flow(flow, NLB_END_DEREGISTERED);
}

static void tls_abort(struct nlb_flow *flow, enum nlb_flow_end end)
{
  end_flow(flow, end);
}

const struct nlb_flow_kind nlb_flow_kind_tls = {
    .name = "tls",
    .transport = NLB_TRANSPORT_TCP,
    .start = tls_start,
    .check_timeouts = tls_check_timeouts,
    .abort = tls_abort,
};
