/* The UDP flow kind: a flow is a client's 5-tuple (the listener, the
 * client's address and port, the address it sent to); its datagrams go to
 * one target, through a socket of the flow's own connected to it, and the
 * target's answers go back to the client from the listener's socket, from
 * the address the client sent to. A flow ends after its listener's idle
 * timeout without a datagram either way, with an access-log record.
 *
 * Each worker reads its own socket of the listener (SO_REUSEPORT: the
 * kernel keeps a 5-tuple on one socket, so on one worker) and keeps its
 * flows in its own table (udp_table.h), without a lock. Datagrams move in
 * batches of NLB_UDP_BATCH through the worker's one preallocated batch
 * (udp.h): moving a datagram allocates nothing, and a new flow takes a
 * flow structure from the worker's pool and one socket. The listener's
 * and the flows' sockets take UDP GRO: a flow's datagrams that arrive
 * together come as one message with the size they were cut at, and leave
 * as one GSO send cut at that size, so the receiver gets the datagrams
 * the sender sent.
 *
 * An ICMP error from the target (port unreachable: the connected socket
 * says ECONNREFUSED) ends the flow, as NGINX's stream proxy ends its UDP
 * session on an upstream read error, and counts as a passive health
 * failure; the client's next datagram makes a new flow, and picks again. */
#include "nlb/dataplane/udp.h"

#include <errno.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "nlb/dataplane/flow_kind.h"
#include "nlb/dataplane/snapshot.h"
#include "nlb/dataplane/worker.h"
#include "nlb/log.h"

/* recvmmsg rounds per wakeup of one socket, so a busy listener or flow
 * cannot starve the others on its worker. */
#define MAX_ROUNDS 8

enum { UP, DOWN };

const char *nlb_udp_drop_name(enum nlb_udp_drop drop)
{
  static const char *const names[NLB_UDP_DROP_COUNT] = {
      [NLB_UDP_DROP_NO_FLOW_SLOT] = "no_flow_slot",
      [NLB_UDP_DROP_NO_HEALTHY_TARGET] = "no_healthy_target",
      [NLB_UDP_DROP_TRUNCATED] = "truncated",
      [NLB_UDP_DROP_SOURCE_DENIED] = "source_denied",
      [NLB_UDP_DROP_TARGET_UNREACHABLE] = "target_unreachable",
      [NLB_UDP_DROP_SEND_FAILED] = "send_failed",
  };
  return (unsigned)drop < NLB_UDP_DROP_COUNT ? names[drop] : "?";
}

/* The worker's thread is the only writer: a plain store, no locked add. */
static void add(atomic_uint_fast64_t *counter, uint64_t n)
{
  atomic_store_explicit(counter,
                        atomic_load_explicit(counter, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

static void count_drops(struct nlb_worker *worker, enum nlb_udp_drop why,
                        uint64_t n)
{
  add(&nlb_worker_udp_counters(worker)->drops[why], n);
}

static uint64_t loop_now(struct nlb_worker *worker)
{
  return uv_now(nlb_worker_loop(worker));
}

/* ---- the end of a flow --------------------------------------------------- */

static void write_access_log(struct nlb_flow *flow, uint64_t now)
{
  const struct nlb_route *route = flow->route;
  char line[NLB_LOG_LINE_MAX];
  char when[32], client[NLB_ADDR_TEXT_MAX];
  const char *target = flow->target ? flow->target->name : "-";
  int len;

  nlb_log_time(when, sizeof(when));
  nlb_addr_format(&flow->client_addr, client, sizeof(client));
  if (flow->access_json)
    len = snprintf(
        line, sizeof(line),
        "{\"time\":\"%s\",\"lb\":\"%s\",\"port\":%u,\"endpoint\":%s%s%s,"
        "\"client\":\"%s\",\"target\":\"%s\",\"connect\":null,"
        "\"duration\":%llu,\"up\":%llu,\"down\":%llu,\"retries\":0,"
        "\"end\":\"%s\",\"worker\":%u,\"proto\":\"udp\","
        "\"datagrams_up\":%llu,\"datagrams_down\":%llu}",
        when, route->lb_name, route->port, route->endpoint_id ? "\"" : "",
        route->endpoint_id ? route->endpoint_id : "null",
        route->endpoint_id ? "\"" : "", client, target,
        (unsigned long long)(now - flow->accepted_ms),
        (unsigned long long)flow->bytes_up,
        (unsigned long long)flow->bytes_down, nlb_flow_end_name(flow->end),
        nlb_worker_index(flow->worker),
        (unsigned long long)flow->udp.datagrams_up,
        (unsigned long long)flow->udp.datagrams_down);
  else
    len = snprintf(line, sizeof(line),
                   "%s %s:%u %s %s -> %s connect=- duration=%llu up=%llu "
                   "down=%llu retries=0 end=%s worker=%u proto=udp "
                   "datagrams_up=%llu datagrams_down=%llu",
                   when, route->lb_name, route->port,
                   route->endpoint_id ? route->endpoint_id : "-", client,
                   target, (unsigned long long)(now - flow->accepted_ms),
                   (unsigned long long)flow->bytes_up,
                   (unsigned long long)flow->bytes_down,
                   nlb_flow_end_name(flow->end), nlb_worker_index(flow->worker),
                   (unsigned long long)flow->udp.datagrams_up,
                   (unsigned long long)flow->udp.datagrams_down);
  if (len > 0)
    nlb_log_access(line,
                   (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1);
}

static void count_end(struct nlb_flow *flow, uint64_t now)
{
  struct nlb_flow_counters *counters[2] = {&flow->route->stats->counters,
                                           &flow->target->counters};

  nlb_histogram_observe(&flow->route->stats->flow_duration,
                        nlb_flow_duration_bounds_ms, now - flow->accepted_ms);
  for (int i = 0; i < 2; i++) {
    atomic_fetch_sub_explicit(&counters[i]->active_flows, 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&counters[i]->bytes_up, flow->bytes_up,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&counters[i]->bytes_down, flow->bytes_down,
                              memory_order_relaxed);
  }
}

/* Ends the flow: its socket closed (which takes it out of epoll), out of
 * the table and the lists, one access-log record; its memory goes back to
 * the worker's pool after the current round of events (a batch may still
 * name it: it finds it closing). */
static void finish(struct nlb_flow *flow, enum nlb_flow_end end)
{
  struct nlb_worker *worker = flow->worker;
  uint64_t now = loop_now(worker);

  if (flow->closing)
    return;
  flow->closing = true;
  flow->end = (uint8_t)end;
  close(flow->target_io.fd);
  flow->target_io.fd = -1;
  flow->target_io.events = 0;
  nlb_udp_table_remove(nlb_worker_udp_flows(worker), &flow->udp.key,
                       flow->udp.key_hash);
  nlb_list_remove(&flow->link);
  nlb_list_remove(&flow->route_link);
  count_end(flow, now);
  if (nlb_log_access_enabled())
    write_access_log(flow, now);
  add(&nlb_worker_udp_counters(worker)->flows, (uint64_t)-1);
  nlb_worker_flow_closed(worker);
  nlb_group_route_release(flow->group);
  nlb_route_release(flow->route);
  flow->group = NULL;
  flow->route = NULL;
  flow->target = NULL;
  nlb_worker_free_flow(worker, flow);
}

/* The target said its port is closed (ICMP), or the network that it is
 * unreachable: the datagrams lost are counted, the target is told to
 * health (passive), and the flow ends. */
static void target_unreachable(struct nlb_flow *flow, uint64_t lost)
{
  count_drops(flow->worker, NLB_UDP_DROP_TARGET_UNREACHABLE, lost);
  nlb_target_passive_failure(flow->target);
  finish(flow, NLB_END_TARGET_RESET);
}

static bool unreachable_error(int error)
{
  return error == ECONNREFUSED || error == EHOSTUNREACH || error == ENETUNREACH;
}

/* ---- target to client ---------------------------------------------------- */

/* The source address of an answer: the one the client sent to, which a
 * wildcard socket would not otherwise choose. */
static socklen_t answer_control(const struct nlb_flow *flow, char *control)
{
  const struct nlb_udp_key *key = &flow->udp.key;
  struct msghdr msg = {.msg_control = control,
                       .msg_controllen = NLB_UDP_CONTROL_MAX};
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

  if (!nlb_addr_is_any(&flow->route->local))
    return 0;
  memset(control, 0, NLB_UDP_CONTROL_MAX);
  if (key->family == AF_INET6) {
    struct in6_pktinfo info = {0};
    memcpy(&info.ipi6_addr, key->local_addr, 16);
    cmsg->cmsg_level = IPPROTO_IPV6;
    cmsg->cmsg_type = IPV6_PKTINFO;
    cmsg->cmsg_len = CMSG_LEN(sizeof(info));
    memcpy(CMSG_DATA(cmsg), &info, sizeof(info));
    return CMSG_SPACE(sizeof(info));
  }
  struct in_pktinfo info = {0};
  memcpy(&info.ipi_spec_dst, key->local_addr, 4);
  cmsg->cmsg_level = IPPROTO_IP;
  cmsg->cmsg_type = IP_PKTINFO;
  cmsg->cmsg_len = CMSG_LEN(sizeof(info));
  memcpy(CMSG_DATA(cmsg), &info, sizeof(info));
  return CMSG_SPACE(sizeof(info));
}

/* Payload one GSO send may carry (an IPv6 datagram's, with room). */
#define GSO_MAX_BYTES 65000

/* The size of each datagram in the message hdr of len bytes: what UDP_GRO
 * says when the kernel coalesced several datagrams of one flow into it,
 * else len (one datagram). */
static uint16_t segment_size(struct msghdr *hdr, size_t len)
{
  for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(hdr); cmsg;
       cmsg = CMSG_NXTHDR(hdr, cmsg))
    if (cmsg->cmsg_level == SOL_UDP && cmsg->cmsg_type == UDP_GRO) {
      int size;
      memcpy(&size, CMSG_DATA(cmsg), sizeof(size));
      if (size > 0 && (size_t)size < len)
        return (uint16_t)size;
    }
  return (uint16_t)len;
}

/* The datagrams of a message of len bytes cut every segment bytes (an
 * empty message is one empty datagram). */
static unsigned datagrams_in(size_t len, size_t segment)
{
  return len && segment ? (unsigned)((len + segment - 1) / segment) : 1;
}

/* How many of the n messages of iov (one flow's, to one address; segment
 * gives the size of each one's datagrams) leave as one send, at least the
 * first: as many as one UDP GSO send takes, their datagrams all of the
 * first one's size but the last (no larger), none empty. The kernel then
 * makes one packet for them and cuts it where it must (the device, or the
 * receiver's socket), instead of a route lookup and a packet per datagram;
 * a message UDP GRO coalesced leaves cut where it was. *datagrams says how
 * many datagrams they are: more than one makes a GSO send. */
static int gso_group(const struct iovec *iov, const uint16_t *segment, int n,
                     unsigned *datagrams)
{
  size_t size = segment[0], total = iov[0].iov_len;
  unsigned count = datagrams_in(iov[0].iov_len, size);
  int k;

  for (k = 1; size && k < n; k++) {
    size_t len = iov[k].iov_len;
    unsigned more = datagrams_in(len, segment[k]);
    /* The previous message ends on a datagram of the full size; this one
     * is cut the same way, or is a single shorter datagram (the last). */
    if (len == 0 || iov[k - 1].iov_len % size != 0 ||
        (segment[k] != size && !(segment[k] == len && len < size)) ||
        count + more > NLB_UDP_SEGMENTS_MAX || total + len > GSO_MAX_BYTES)
      break;
    count += more;
    total += len;
  }
  *datagrams = count;
  return k;
}

/* Appends UDP_SEGMENT (size) to the control messages of control, which
 * hold used bytes; returns the new length. */
static socklen_t add_segment_size(char *control, socklen_t used, size_t size)
{
  struct cmsghdr *cmsg = (struct cmsghdr *)(control + used);
  uint16_t segment = (uint16_t)size;

  memset(cmsg, 0, CMSG_SPACE(sizeof(segment)));
  cmsg->cmsg_level = SOL_UDP;
  cmsg->cmsg_type = UDP_SEGMENT;
  cmsg->cmsg_len = CMSG_LEN(sizeof(segment));
  memcpy(CMSG_DATA(cmsg), &segment, sizeof(segment));
  return used + (socklen_t)CMSG_SPACE(sizeof(segment));
}

/* A GSO send failed as a device without UDP GSO fails it: say so once,
 * and send one by one from now on. */
static bool gso_refused(struct nlb_udp_batch *batch, int error)
{
  if (error != EIO && error != EINVAL && error != ENOPROTOOPT &&
      error != EOPNOTSUPP)
    return false;
  if (!batch->no_gso)
    NLB_LOG_EVENT(NLB_LOG_WARN, "udp_gso_off",
                  "worker {worker}: UDP GSO refused ({error}); datagrams go "
                  "one by one",
                  NLB_LOG_UINT("worker", nlb_worker_index(batch->worker)),
                  NLB_LOG_STR("error", strerror(error)));
  batch->no_gso = true;
  return true;
}

/* Sends the n messages of iov (segment: the size of each one's datagrams)
 * one datagram per mmsghdr, each with like's address and control
 * messages: where a GSO send cannot go. Returns the datagrams sent and adds
 * their payload to *bytes; *error is the errno that stopped it (0: none). */
static unsigned send_cut(struct nlb_udp_batch *batch, int fd,
                         const struct msghdr *like, const struct iovec *iov,
                         const uint16_t *segment, int n, uint64_t *bytes,
                         int *error)
{
  unsigned sent = 0, ready = 0;
  int i = 0;
  size_t at = 0;

  *error = 0;
  while (i < n || ready > 0) {
    /* The next datagrams, as many as fit. */
    while (i < n && ready < NLB_UDP_SEGMENTS_MAX) {
      size_t len = iov[i].iov_len - at;
      if (segment[i] && len > segment[i])
        len = segment[i];
      batch->cut_iov[ready] = (struct iovec){
          .iov_base = (char *)iov[i].iov_base + at, .iov_len = len};
      batch->cut[ready].msg_hdr = *like;
      batch->cut[ready].msg_hdr.msg_iov = &batch->cut_iov[ready];
      batch->cut[ready].msg_hdr.msg_iovlen = 1;
      ready++;
      at += len;
      if (at >= iov[i].iov_len) {
        i++;
        at = 0;
      }
    }
    for (unsigned done = 0; done < ready;) {
      int r = sendmmsg(fd, &batch->cut[done], ready - done, MSG_DONTWAIT);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0) {
        *error = r < 0 ? errno : EAGAIN;
        return sent;
      }
      for (unsigned k = done; k < done + (unsigned)r; k++)
        *bytes += batch->cut_iov[k].iov_len;
      done += (unsigned)r;
      sent += (unsigned)r;
    }
    ready = 0;
  }
  return sent;
}

static void prepare_recv(struct nlb_udp_batch *batch)
{
  for (int i = 0; i < NLB_UDP_BATCH; i++) {
    struct msghdr *hdr = &batch->recv[i].msg_hdr;
    batch->iov[i].iov_base = batch->buffers + (size_t)i * NLB_UDP_DATAGRAM_MAX;
    batch->iov[i].iov_len = NLB_UDP_DATAGRAM_MAX;
    hdr->msg_iov = &batch->iov[i];
    hdr->msg_iovlen = 1;
    hdr->msg_name = &batch->names[i];
    hdr->msg_namelen = sizeof(batch->names[i]);
    hdr->msg_control = batch->recv_control[i];
    hdr->msg_controllen = NLB_UDP_CONTROL_MAX;
    hdr->msg_flags = 0;
  }
}

/* Sends the answers waiting in the batch, one sendmmsg per run of
 * messages through the same listener socket (nlb_deferred: the end of the
 * worker's round of events, or full answer slots). */
static void flush_answers(struct nlb_deferred *deferred)
{
  struct nlb_udp_batch *batch =
      NLB_CONTAINER_OF(deferred, struct nlb_udp_batch, flush);
  unsigned n = batch->n_answers;

  for (unsigned i = 0; i < n;) {
    int fd = batch->answer_fds[i];
    unsigned j = i + 1, at = i;
    int error;
    while (j < n && batch->answer_fds[j] == fd)
      j++;
    while (at < j) {
      struct msghdr *hdr = &batch->answers[at].msg_hdr;
      unsigned datagrams = batch->answer_datagrams[at];
      int r = sendmmsg(fd, &batch->answers[at], j - at, MSG_DONTWAIT);
      if (r < 0 && errno == EINTR)
        continue;
      if (r > 0) {
        at += (unsigned)r;
        continue;
      }
      error = r < 0 ? errno : EAGAIN;
      if (datagrams > 1 && (error == EMSGSIZE || gso_refused(batch, error))) {
        /* Its datagrams go one by one (larger than the path's MTU: each
         * fragmented by the kernel, as without GSO), without the
         * UDP_SEGMENT message (the last one of its control). */
        struct msghdr like = *hdr;
        size_t slot = (size_t)(hdr->msg_iov - batch->answer_iov);
        uint64_t bytes = 0;
        int cut_error;
        like.msg_controllen -= CMSG_SPACE(sizeof(uint16_t));
        if (!like.msg_controllen)
          like.msg_control = NULL;
        datagrams -= send_cut(batch, fd, &like, hdr->msg_iov,
                              &batch->answer_segment[slot],
                              (int)hdr->msg_iovlen, &bytes, &cut_error);
      }
      /* This message failed: lost (but for what of it went one by one);
       * the next ones are tried unless the socket is full. */
      count_drops(batch->worker, NLB_UDP_DROP_SEND_FAILED, datagrams);
      if (error == EAGAIN) {
        for (unsigned k = at + 1; k < j; k++)
          count_drops(batch->worker, NLB_UDP_DROP_SEND_FAILED,
                      batch->answer_datagrams[k]);
        break;
      }
      at++;
    }
    i = j;
  }
  batch->n_answers = 0;
  batch->n_answer_slots = 0;
}

/* Reads the target's answers into the batch's free answer slots, as
 * messages to the flow's client (GSO messages when they fit), to leave at
 * the end of the round. Returns how many messages it read, or a negative
 * errno. */
static int take_answers(struct nlb_flow *flow, struct nlb_udp_batch *batch)
{
  struct nlb_udp_counters *counters = nlb_worker_udp_counters(flow->worker);
  unsigned first = batch->n_answer_slots, room = NLB_UDP_BATCH - first;
  struct iovec *iov = &batch->answer_iov[first];
  uint16_t *segment = &batch->answer_segment[first];
  uint64_t bytes = 0, datagrams = 0, coalesced = 0;
  int n, kept = 0;

  for (unsigned k = 0; k < room; k++) {
    iov[k].iov_base =
        batch->answer_buffers + (size_t)(first + k) * NLB_UDP_DATAGRAM_MAX;
    iov[k].iov_len = NLB_UDP_DATAGRAM_MAX;
    batch->recv[k].msg_hdr =
        (struct msghdr){.msg_iov = &iov[k],
                        .msg_iovlen = 1,
                        .msg_control = batch->recv_control[k],
                        .msg_controllen = NLB_UDP_CONTROL_MAX};
  }
  do
    n = recvmmsg(flow->target_io.fd, batch->recv, room, MSG_DONTWAIT, NULL);
  while (n < 0 && errno == EINTR);
  if (n <= 0)
    return n < 0 ? -errno : 0;
  /* Truncation cannot be: a buffer holds the largest datagram (and the
   * most UDP GRO coalesces). */
  for (int k = 0; k < n; k++) {
    struct msghdr *hdr = &batch->recv[k].msg_hdr;
    size_t len = batch->recv[k].msg_len;
    unsigned count;
    if (hdr->msg_flags & MSG_TRUNC) {
      count_drops(flow->worker, NLB_UDP_DROP_TRUNCATED, 1);
      continue;
    }
    segment[kept] = segment_size(hdr, len);
    iov[kept].iov_base = iov[k].iov_base;
    iov[kept].iov_len = len;
    count = datagrams_in(len, segment[kept]);
    datagrams += count;
    if (count > 1)
      coalesced += count;
    bytes += len;
    kept++;
  }
  /* The slots of truncated ones stay unused until the flush. */
  batch->n_answer_slots += (unsigned)n;
  for (int k = 0; k < kept;) {
    unsigned count = datagrams_in(iov[k].iov_len, segment[k]), m;
    int messages = 1;
    struct msghdr *hdr;
    socklen_t control_len;
    if (!batch->no_gso)
      messages = gso_group(&iov[k], &segment[k], kept - k, &count);
    else if (count > 1) {
      /* Coalesced, and GSO refused: its datagrams go one by one now. */
      char control[NLB_UDP_CONTROL_MAX];
      struct msghdr like = {.msg_name = &flow->client_addr,
                            .msg_namelen = nlb_addr_len(&flow->client_addr),
                            .msg_control = control,
                            .msg_controllen = answer_control(flow, control)};
      uint64_t sent_bytes = 0;
      int error;
      if (!like.msg_controllen)
        like.msg_control = NULL;
      count -= send_cut(batch, flow->udp.listen_fd, &like, &iov[k], &segment[k],
                        1, &sent_bytes, &error);
      count_drops(flow->worker, NLB_UDP_DROP_SEND_FAILED, count);
      k++;
      continue;
    }
    m = batch->n_answers++;
    hdr = &batch->answers[m].msg_hdr;
    control_len = answer_control(flow, batch->answer_control[m]);
    if (count > 1)
      control_len =
          add_segment_size(batch->answer_control[m], control_len, segment[k]);
    batch->answer_names[m] = flow->client_addr;
    batch->answer_fds[m] = flow->udp.listen_fd;
    batch->answer_datagrams[m] = (uint8_t)count;
    *hdr = (struct msghdr){.msg_name = &batch->answer_names[m],
                           .msg_namelen = nlb_addr_len(&flow->client_addr),
                           .msg_iov = &iov[k],
                           .msg_iovlen = (size_t)messages,
                           .msg_control =
                               control_len ? batch->answer_control[m] : NULL,
                           .msg_controllen = control_len};
    k += messages;
  }
  nlb_worker_defer(flow->worker, &batch->flush);
  flow->udp.datagrams_down += datagrams;
  flow->bytes_down += bytes;
  add(&counters->datagrams[DOWN], datagrams);
  add(&counters->bytes[DOWN], bytes);
  if (coalesced)
    add(&counters->coalesced[DOWN], coalesced);
  return n;
}

/* The worker's batch, ready for flush_answers. NULL on ENOMEM. */
static struct nlb_udp_batch *batch_of(struct nlb_worker *worker)
{
  struct nlb_udp_batch *batch = nlb_worker_udp_batch(worker);

  if (batch && !batch->worker) {
    batch->worker = worker;
    batch->flush.run = flush_answers;
  }
  return batch;
}

static void on_target_ready(struct nlb_io *io, uint32_t revents)
{
  struct nlb_flow *flow = NLB_CONTAINER_OF(io, struct nlb_flow, target_io);
  struct nlb_udp_batch *batch = batch_of(flow->worker);

  (void)revents; /* recvmmsg says what an error was */
  if (flow->closing || !batch)
    return;
  for (int round = 0; round < MAX_ROUNDS; round++) {
    int n;
    if (batch->n_answer_slots == NLB_UDP_BATCH)
      flush_answers(&batch->flush);
    n = take_answers(flow, batch);
    if (n < 0) {
      if (unreachable_error(-n))
        target_unreachable(flow, 1);
      else if (n != -EAGAIN)
        finish(flow, NLB_END_TARGET_RESET);
      return;
    }
    if (n == 0)
      return;
    flow->last_active_ms = loop_now(flow->worker);
    if (batch->n_answer_slots < NLB_UDP_BATCH)
      return; /* the socket is drained */
  }
}

/* ---- client to target ---------------------------------------------------- */

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

/* Where the datagram was sent: the route's address, or, for a wildcard
 * listener, what IP_PKTINFO says. */
static void datagram_local(const struct nlb_route *route, struct msghdr *msg,
                           union nlb_sockaddr *local)
{
  *local = route->local;
  if (!nlb_addr_is_any(local))
    return;
  for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(msg); cmsg;
       cmsg = CMSG_NXTHDR(msg, cmsg)) {
    if (cmsg->cmsg_level == IPPROTO_IP && cmsg->cmsg_type == IP_PKTINFO) {
      struct in_pktinfo info;
      memcpy(&info, CMSG_DATA(cmsg), sizeof(info));
      local->in.sin_addr = info.ipi_addr;
    } else if (cmsg->cmsg_level == IPPROTO_IPV6 &&
               cmsg->cmsg_type == IPV6_PKTINFO) {
      struct in6_pktinfo info;
      memcpy(&info, CMSG_DATA(cmsg), sizeof(info));
      local->in6.sin6_addr = info.ipi6_addr;
    }
  }
}

/* A socket connected to target, from the client's own address when the
 * group preserves it, taking the target's datagrams coalesced (UDP GRO)
 * when gro: they go on to the client as GSO sends, cut where they were.
 * Returns the fd or a negative errno. */
static int target_socket(const struct nlb_group_route *group,
                         const struct nlb_target *target,
                         const union nlb_sockaddr *client, bool gro)
{
  int fd = socket(target->address.sa.sa_family,
                  SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int rc;

  if (fd < 0)
    return -errno;
  /* A kernel without UDP GRO refuses it: datagrams then come one by one. */
  if (gro)
    setsockopt(fd, SOL_UDP, UDP_GRO, &(int){1}, sizeof(int));
  if (group->preserve_client_ip &&
      (rc = nlb_bind_client_address(fd, client)) < 0)
    goto fail_close_socket;
  if (connect(fd, &target->address.sa, nlb_addr_len(&target->address)) < 0) {
    rc = -errno;
    goto fail_close_socket;
  }
  return fd;

fail_close_socket:
  close(fd);
  return rc;
}

/* A new flow for the datagram's 5-tuple, or NULL (the datagram is dropped
 * and counted). */
static struct nlb_flow *open_flow(struct nlb_worker *worker,
                                  struct nlb_route *route,
                                  struct nlb_list *route_flows, int listen_fd,
                                  const union nlb_sockaddr *client,
                                  const union nlb_sockaddr *local,
                                  const struct nlb_udp_key *key, uint64_t hash)
{
  struct nlb_group_route *group =
      nlb_worker_snapshot(worker)->groups[route->group];
  struct nlb_flow *flow;
  struct nlb_target *target;
  int index, fd;

  if (!source_allowed(route, client)) {
    count_drops(worker, NLB_UDP_DROP_SOURCE_DENIED, 1);
    return NULL;
  }
  index = nlb_pool_pick(group->pool, nlb_flow_hash(client, local), NULL, 0);
  if (index < 0) {
    count_drops(worker, NLB_UDP_DROP_NO_HEALTHY_TARGET, 1);
    return NULL;
  }
  if (!nlb_worker_admit_flow(worker)) {
    count_drops(worker, NLB_UDP_DROP_NO_FLOW_SLOT, 1);
    return NULL;
  }
  target = group->pool->targets[index];
  flow = nlb_worker_alloc_flow(worker);
  fd = flow ? target_socket(group, target, client,
                            !nlb_worker_udp_batch(worker)->no_gso)
            : -ENOMEM;
  if (fd < 0)
    goto fail_refuse;
  flow->udp.key = *key;
  flow->udp.key_hash = hash;
  if (nlb_udp_table_insert(nlb_worker_udp_flows(worker), &flow->udp.key, hash) <
      0)
    goto fail_close_socket;
  flow->worker = worker;
  flow->target_io.fd = fd;
  flow->target_io.on_ready = on_target_ready;
  flow->client_io.fd = -1;
  if (nlb_worker_watch(worker, &flow->target_io, EPOLLIN) < 0) {
    nlb_udp_table_remove(nlb_worker_udp_flows(worker), &flow->udp.key, hash);
    goto fail_close_socket;
  }
  nlb_route_acquire(route);
  nlb_group_route_acquire(group);
  flow->route = route;
  flow->group = group;
  flow->target = target;
  flow->established = true;
  flow->access_json = nlb_worker_snapshot(worker)->access_json;
  flow->udp.listen_fd = listen_fd;
  flow->client_addr = *client;
  flow->accepted_ms = flow->connected_ms = flow->last_active_ms =
      loop_now(worker);
  nlb_list_init(&flow->link);
  nlb_worker_track_established(worker, flow);
  nlb_list_append(route_flows, &flow->route_link);
  add(&nlb_worker_udp_counters(worker)->flows, 1);
  atomic_fetch_add_explicit(&route->stats->counters.new_flows, 1,
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&route->stats->counters.active_flows, 1,
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&target->counters.new_flows, 1,
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&target->counters.active_flows, 1,
                            memory_order_relaxed);
  return flow;

fail_close_socket:
  close(fd);
fail_refuse:
  if (flow) {
    nlb_list_init(&flow->link);
    nlb_worker_free_flow(worker, flow);
  }
  nlb_worker_flow_closed(worker);
  count_drops(worker, NLB_UDP_DROP_NO_FLOW_SLOT, 1);
  return NULL;
}

/* The flow of datagram i of the batch (made if new), or NULL: dropped. */
static struct nlb_flow *flow_of(struct nlb_worker *worker,
                                struct nlb_route *route,
                                struct nlb_list *route_flows, int listen_fd,
                                struct nlb_udp_batch *batch, int i)
{
  struct msghdr *hdr = &batch->recv[i].msg_hdr;
  union nlb_sockaddr local;
  struct nlb_udp_key key;
  struct nlb_udp_key *found;
  uint64_t hash;

  if (hdr->msg_flags & MSG_TRUNC) {
    count_drops(worker, NLB_UDP_DROP_TRUNCATED, 1);
    return NULL;
  }
  datagram_local(route, hdr, &local);
  nlb_udp_key_make(&key, route->id, &batch->names[i], &local);
  hash = nlb_udp_key_hash(&key);
  found = nlb_udp_table_find(nlb_worker_udp_flows(worker), &key, hash);
  if (found)
    return NLB_CONTAINER_OF(found, struct nlb_flow, udp.key);
  return open_flow(worker, route, route_flows, listen_fd, &batch->names[i],
                   &local, &key, hash);
}

/* Sends messages [first, last) of the batch, all of one flow, to its
 * target: as GSO sends where they fit (gso_group), in one sendmmsg. */
static void forward(struct nlb_flow *flow, struct nlb_udp_batch *batch,
                    int first, int last, uint64_t now)
{
  struct nlb_udp_counters *counters = nlb_worker_udp_counters(flow->worker);
  /* Connected: no address (one would redirect the datagram). */
  const struct msghdr plain = {0};
  uint64_t bytes = 0, total = 0, sent = 0, coalesced = 0;
  int fd = flow->target_io.fd, sends = 0, error = 0, rest = first;

  for (int i = first; i < last; i++) {
    unsigned count;
    batch->iov[i].iov_len = batch->recv[i].msg_len;
    count = datagrams_in(batch->iov[i].iov_len, batch->segment[i]);
    total += count;
    if (count > 1)
      coalesced += count;
  }
  for (int i = first; !batch->no_gso && i < last; sends++) {
    struct msghdr *hdr = &batch->send[sends].msg_hdr;
    unsigned count;
    int messages =
        gso_group(&batch->iov[i], &batch->segment[i], last - i, &count);
    *hdr = (struct msghdr){.msg_iov = &batch->iov[i],
                           .msg_iovlen = (size_t)messages};
    if (count > 1) {
      hdr->msg_control = batch->send_control[sends];
      hdr->msg_controllen =
          add_segment_size(batch->send_control[sends], 0, batch->segment[i]);
    }
    batch->send_datagrams[sends] = (uint8_t)count;
    i += messages;
  }
  for (int at = 0; at < sends;) {
    struct msghdr *hdr = &batch->send[at].msg_hdr;
    int r =
        sendmmsg(fd, &batch->send[at], (unsigned)(sends - at), MSG_DONTWAIT);
    if (r < 0 && errno == EINTR)
      continue;
    for (int k = at; k < at + r; k++) {
      sent += batch->send_datagrams[k];
      for (size_t m = 0; m < batch->send[k].msg_hdr.msg_iovlen; m++)
        bytes += batch->send[k].msg_hdr.msg_iov[m].iov_len;
    }
    if (r > 0) {
      at += r;
      continue;
    }
    error = r < 0 ? errno : EAGAIN;
    if (batch->send_datagrams[at] > 1 && error == EMSGSIZE) {
      /* Datagrams larger than the path's MTU: one by one, each of them
       * fragmented by the kernel, as without GSO. */
      int i = (int)(hdr->msg_iov - batch->iov);
      sent += send_cut(batch, fd, &plain, hdr->msg_iov, &batch->segment[i],
                       (int)hdr->msg_iovlen, &bytes, &error);
      if (error)
        break;
      at++;
      continue;
    }
    if (batch->send_datagrams[at] > 1 && gso_refused(batch, error))
      rest = (int)(hdr->msg_iov - batch->iov); /* the rest one by one */
    break;
  }
  if (batch->no_gso)
    sent += send_cut(batch, fd, &plain, &batch->iov[rest],
                     &batch->segment[rest], last - rest, &bytes, &error);
  flow->udp.datagrams_up += sent;
  flow->bytes_up += bytes;
  flow->last_active_ms = now;
  add(&counters->datagrams[UP], sent);
  add(&counters->bytes[UP], bytes);
  if (coalesced)
    add(&counters->coalesced[UP], coalesced);
  if (sent == total)
    return;
  if (unreachable_error(error))
    target_unreachable(flow, total - sent); /* an earlier datagram's ICMP */
  else
    count_drops(flow->worker, NLB_UDP_DROP_SEND_FAILED, total - sent);
}

static void udp_on_listener_ready(struct nlb_worker *worker, uint64_t route_id,
                                  int fd, struct nlb_list *route_flows)
{
  struct nlb_snapshot *snapshot = nlb_worker_snapshot(worker);
  struct nlb_route *route = nlb_snapshot_find_route(snapshot, route_id);
  struct nlb_udp_batch *batch = batch_of(worker);

  if (!route || route->group >= snapshot->n_groups || !batch) {
    /* Nowhere to send it (or no memory for a batch): drop one, so that a
     * readable socket does not spin. */
    if (recv(fd, NULL, 0, MSG_DONTWAIT | MSG_TRUNC) >= 0)
      count_drops(
          worker,
          batch ? NLB_UDP_DROP_NO_HEALTHY_TARGET : NLB_UDP_DROP_SEND_FAILED, 1);
    return;
  }
  for (int round = 0; round < MAX_ROUNDS; round++) {
    int n;
    uint64_t now;

    prepare_recv(batch);
    do
      n = recvmmsg(fd, batch->recv, NLB_UDP_BATCH, MSG_DONTWAIT, NULL);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
      return;
    now = loop_now(worker);
    for (int i = 0; i < n; i++) {
      batch->segment[i] =
          segment_size(&batch->recv[i].msg_hdr, batch->recv[i].msg_len);
      batch->flows[i] = flow_of(worker, route, route_flows, fd, batch, i);
    }
    /* A flow's consecutive datagrams go in one sendmmsg. */
    for (int i = 0; i < n;) {
      struct nlb_flow *flow = batch->flows[i];
      int j = i + 1;
      while (j < n && batch->flows[j] == flow)
        j++;
      if (flow && !flow->closing)
        forward(flow, batch, i, j, now);
      else if (flow)
        for (int k = i; k < j; k++)
          count_drops(worker, NLB_UDP_DROP_TARGET_UNREACHABLE,
                      datagrams_in(batch->recv[k].msg_len, batch->segment[k]));
      i = j;
    }
    if (n < NLB_UDP_BATCH)
      return;
  }
}

static void udp_check_timeouts(struct nlb_flow *flow, uint64_t now_ms)
{
  uint64_t deadline;

  if (now_ms - flow->last_active_ms >= flow->route->idle_timeout_ms) {
    finish(flow, NLB_END_IDLE_TIMEOUT);
    return;
  }
  deadline = atomic_load_explicit(&flow->target->drain_deadline_ms,
                                  memory_order_relaxed);
  if (deadline && now_ms >= deadline)
    finish(flow, NLB_END_DEREGISTERED);
}

static void udp_abort(struct nlb_flow *flow, enum nlb_flow_end end)
{
  finish(flow, end);
}

const struct nlb_flow_kind nlb_flow_kind_udp = {
    .name = "udp",
    .transport = NLB_TRANSPORT_UDP,
    .socket_per_worker = true,
    .on_listener_ready = udp_on_listener_ready,
    .check_timeouts = udp_check_timeouts,
    .abort = udp_abort,
};
