/* The TCP relay's sockmap path (flow-int.h, sockmap.h). A flow goes in
 * once established with nothing held in either direction (its PROXY header
 * and first bytes are out), its last reads short and no FIN seen; from
 * then the kernel moves and counts its bytes, and nlbd watches each socket
 * only for FIN (EPOLLRDHUP), reset and error, which epoll reports whatever
 * else is asked. */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "nlb/dataplane/flow-int.h"
#include "nlb/dataplane/sockmap.h"
#include "nlb/dataplane/worker.h"

/* Whether everything dir's source sent before its FIN has left the
 * program and reached the destination's send queue: the source received
 * no more than nlbd read plus the program counted, and the destination
 * has been written, since it went in, all the program counted. The program's
 * redirect goes through a kernel work queue, so a FIN can be seen before its
 * last bytes are out; passing it on then would cut them off. */
static bool kernel_drained(struct nlb_flow *flow, bool upstream)
{
  int side = upstream ? 0 : 1;
  int src = upstream ? flow->client_io.fd : flow->target_io.fd;
  int dst = upstream ? flow->target_io.fd : flow->client_io.fd;
  uint64_t read_by_nlbd = upstream ? flow->bytes_up : flow->bytes_down;
  uint64_t bytes, active_ms, src_written, src_received, dst_written,
      dst_received;

  /* A socket that cannot say holds the FIN back no longer. */
  if (nlb_sockmap_read(&flow->sockmap, side, &bytes, &active_ms, NULL) < 0 ||
      nlb_sockmap_socket_bytes(src, &src_written, &src_received) < 0 ||
      nlb_sockmap_socket_bytes(dst, &dst_written, &dst_received) < 0)
    return true;
  /* The source's count takes in its FIN, one sequence number. */
  return src_received <= read_by_nlbd + bytes + 1 &&
         dst_written >= flow->written_base[1 - side] + bytes;
}

/* Passes on each FIN whose bytes are through (kernel_drained); one that
 * waits is tried again at each sweep of the worker's connecting list
 * (every 100 ms). Returns the flow's end once both ways are closed. */
static enum nlb_flow_end kernel_pass_fins(struct nlb_flow *flow)
{
  bool held = false;

  for (int i = 0; i < 2; i++) {
    bool upstream = i == 0;
    struct nlb_direction *dir = upstream ? &flow->up : &flow->down;
    struct nlb_direction *other = upstream ? &flow->down : &flow->up;
    int dst = upstream ? flow->target_io.fd : flow->client_io.fd;

    if (!dir->eof || dir->shut)
      continue;
    if (!kernel_drained(flow, upstream)) {
      held = true;
      continue;
    }
    /* When the other way is done too, the close sends the FIN. */
    if (!other->shut)
      shutdown(dst, SHUT_WR);
    dir->shut = true;
  }
  if (flow->up.shut && flow->down.shut)
    return (enum nlb_flow_end)flow->end;
  if (held != flow->kernel_fin_held) {
    flow->kernel_fin_held = held;
    if (held)
      nlb_worker_track_connecting(flow->worker, flow);
    else
      nlb_worker_track_established(flow->worker, flow);
  }
  return NLB_END_NONE;
}

/* What an end event on a socket in the sockmap was: a reset (an error
 * pending, or the connection closed while nlbd had not closed its side: a
 * reset whose error the kernel's own send through it already took), a
 * FIN, or nothing (an event fetched in the batch in which a refused
 * connect was retried names the new socket: see target_failed). */
enum kernel_event { KERNEL_NOTHING, KERNEL_FIN, KERNEL_RESET };

static enum kernel_event kernel_event(int fd, bool shut_by_nlbd)
{
  struct tcp_info info;
  socklen_t len = sizeof(info);
  int error = 0;
  socklen_t error_len = sizeof(error);

  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_len) == 0 && error)
    return KERNEL_RESET;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0)
    return KERNEL_RESET;
  switch (info.tcpi_state) {
  case TCP_ESTABLISHED:
  case TCP_FIN_WAIT1:
  case TCP_FIN_WAIT2:
    return KERNEL_NOTHING; /* no FIN has come */
  case TCP_CLOSE:
    return shut_by_nlbd ? KERNEL_FIN : KERNEL_RESET;
  default:
    return KERNEL_FIN;
  }
}

enum nlb_flow_end nlb_flow_kernel_ready(struct nlb_flow *flow, bool client)
{
  struct nlb_io *io = client ? &flow->client_io : &flow->target_io;
  struct nlb_direction *dir = client ? &flow->up : &flow->down;
  /* This socket's FIN out was passed on by the other way. */
  bool shut = client ? flow->down.shut : flow->up.shut;

  switch (kernel_event(io->fd, shut)) {
  case KERNEL_NOTHING:
    return NLB_END_NONE;
  case KERNEL_RESET:
    return client ? NLB_END_CLIENT_RESET : NLB_END_TARGET_RESET;
  case KERNEL_FIN:
    break;
  }
  if (!dir->eof) {
    dir->eof = true;
    if (flow->end == NLB_END_NONE)
      flow->end = client ? NLB_END_CLIENT_FIN : NLB_END_TARGET_FIN;
    /* Level-triggered, the FIN would be reported for ever. */
    nlb_worker_watch(flow->worker, io, 0);
  }
  return kernel_pass_fins(flow);
}

/* The newest of nlbd's own stamp and the program's, in the loop's clock
 * (both are CLOCK_MONOTONIC; the loop's may lag by its coarse tick). */
static void kernel_refresh_activity(struct nlb_flow *flow, uint64_t now_ms)
{
  for (int side = 0; side < 2; side++) {
    uint64_t bytes, active_ms;
    if (nlb_sockmap_read(&flow->sockmap, side, &bytes, &active_ms, NULL) < 0)
      continue;
    if (active_ms > now_ms)
      active_ms = now_ms;
    if (active_ms > flow->last_active_ms)
      flow->last_active_ms = active_ms;
  }
}

enum nlb_flow_end nlb_flow_kernel_enter(struct nlb_flow *flow)
{
  uint64_t received, bytes, active_ms, stalled[2] = {0, 0};

  flow->kernel_tried = true;
  /* Everything nlbd wrote is in the sockets now: the program's bytes
   * come on top of it (kernel_drained). */
  if (nlb_sockmap_socket_bytes(flow->client_io.fd, &flow->written_base[0],
                               &received) < 0 ||
      nlb_sockmap_socket_bytes(flow->target_io.fd, &flow->written_base[1],
                               &received) < 0 ||
      nlb_sockmap_insert(&flow->sockmap, flow->client_io.fd,
                         flow->target_io.fd) < 0)
    return NLB_END_NONE;
  flow->kernel = true;
  for (int side = 0; side < 2; side++)
    nlb_sockmap_read(&flow->sockmap, side, &bytes, &active_ms, &stalled[side]);
  /* Bytes kept because their peer socket is already gone could only go
   * out of order: the flow cannot go on. */
  if (stalled[0] || stalled[1])
    return NLB_END_LIMIT;
  if (nlb_worker_watch(flow->worker, &flow->client_io, EPOLLRDHUP) < 0 ||
      nlb_worker_watch(flow->worker, &flow->target_io, EPOLLRDHUP) < 0)
    return NLB_END_LIMIT;
  return NLB_END_NONE;
}

void nlb_flow_kernel_count_bytes(struct nlb_flow *flow)
{
  uint64_t bytes, active_ms;

  if (nlb_sockmap_read(&flow->sockmap, 0, &bytes, &active_ms, NULL) == 0)
    flow->bytes_up += bytes;
  if (nlb_sockmap_read(&flow->sockmap, 1, &bytes, &active_ms, NULL) == 0)
    flow->bytes_down += bytes;
  nlb_sockmap_forget(&flow->sockmap);
}

enum nlb_flow_end nlb_flow_kernel_check(struct nlb_flow *flow, uint64_t now_ms)
{
  if (flow->kernel_fin_held) {
    enum nlb_flow_end end = kernel_pass_fins(flow);
    if (end != NLB_END_NONE)
      return end;
  }
  kernel_refresh_activity(flow, now_ms);
  return NLB_END_NONE;
}
