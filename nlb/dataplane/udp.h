/* What the UDP flow kind (udp.c) shares with its worker: the batch of
 * datagrams it moves with one recvmmsg/sendmmsg, and its counters. The
 * kind itself is nlb_flow_kind_udp (flow_kind.h).
 *
 * A worker allocates one batch, on its first UDP listener, and reuses it
 * for every datagram in both directions: moving a datagram allocates
 * nothing. Each of its buffers holds the largest UDP payload whole
 * (65,535 bytes), so no datagram is cut; only the pages a datagram
 * touches are resident. */
#ifndef NLB_UDP_H
#define NLB_UDP_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "nlb/common/addr.h"
#include "nlb/dataplane/worker.h"

/* Datagrams per recvmmsg/sendmmsg. */
#define NLB_UDP_BATCH 32
/* A buffer: the largest IPv4 or IPv6 UDP payload. */
#define NLB_UDP_DATAGRAM_MAX 65535
/* Room for an IP_PKTINFO or IPV6_PKTINFO and a UDP_SEGMENT or UDP_GRO
 * control message. */
#define NLB_UDP_CONTROL_MAX 80
/* The kernel's limit on the datagrams of one UDP GSO send, and on those
 * UDP GRO coalesces into one read. */
#define NLB_UDP_SEGMENTS_MAX 64

struct nlb_udp_batch {
  /* Client to target: read from a listener's socket, sent on. */
  struct mmsghdr recv[NLB_UDP_BATCH];
  struct mmsghdr send[NLB_UDP_BATCH];
  struct iovec iov[NLB_UDP_BATCH];
  union nlb_sockaddr names[NLB_UDP_BATCH];
  /* Each message's datagram size: its length, or, when UDP GRO coalesced
   * several datagrams of one flow into it, the size of each (the last may
   * be shorter), which the sends cut it back into. */
  uint16_t segment[NLB_UDP_BATCH];
  /* The datagrams of each message of send (several: one GSO send). */
  uint8_t send_datagrams[NLB_UDP_BATCH];
  /* The flow each datagram of the batch went to (udp.c). */
  struct nlb_flow *flows[NLB_UDP_BATCH];
  char recv_control[NLB_UDP_BATCH][NLB_UDP_CONTROL_MAX];
  char send_control[NLB_UDP_BATCH][NLB_UDP_CONTROL_MAX];
  char *buffers; /* 2 x NLB_UDP_BATCH x NLB_UDP_DATAGRAM_MAX, one block */

  /* Target to client: answers read from the flows' sockets wait here, each
   * message with its client's address and the listener socket it leaves
   * through, and leave together at the end of the worker's round of events
   * (flush): one sendmmsg per listener socket for the answers of many
   * flows. A message holds one answer, or several of one flow as one UDP
   * GSO send (UDP_SEGMENT): answer_iov holds the answers (slots), answers
   * the messages over them. */
  struct iovec answer_iov[NLB_UDP_BATCH];
  uint16_t answer_segment[NLB_UDP_BATCH]; /* as segment, per slot */
  unsigned n_answer_slots;
  struct mmsghdr answers[NLB_UDP_BATCH];
  uint8_t answer_datagrams[NLB_UDP_BATCH]; /* as send_datagrams */
  union nlb_sockaddr answer_names[NLB_UDP_BATCH];
  char answer_control[NLB_UDP_BATCH][NLB_UDP_CONTROL_MAX];
  int answer_fds[NLB_UDP_BATCH];
  unsigned n_answers;
  char *answer_buffers; /* the second half of buffers */
  struct nlb_deferred flush;
  struct nlb_worker *worker; /* the batch's, for flush */
  /* A coalesced message cut into its datagrams, when it cannot leave as
   * one GSO send: one mmsghdr each. */
  struct mmsghdr cut[NLB_UDP_SEGMENTS_MAX];
  struct iovec cut_iov[NLB_UDP_SEGMENTS_MAX];
  /* UDP GSO failed once (a device without it): datagrams go one by one,
   * and new flows' sockets do not ask for UDP GRO. */
  bool no_gso;
};

/* Why a datagram was dropped, as /metrics names it. */
enum nlb_udp_drop {
  NLB_UDP_DROP_NO_FLOW_SLOT,       /* max_flows reached: no new flow */
  NLB_UDP_DROP_NO_HEALTHY_TARGET,  /* the group has no usable target */
  NLB_UDP_DROP_TRUNCATED,          /* larger than a buffer (never, today) */
  NLB_UDP_DROP_SOURCE_DENIED,      /* an endpoint's allowed_sources */
  NLB_UDP_DROP_TARGET_UNREACHABLE, /* ICMP port unreachable: flow ended */
  NLB_UDP_DROP_SEND_FAILED,        /* a socket buffer full, or an error */
  NLB_UDP_DROP_COUNT,
};

const char *nlb_udp_drop_name(enum nlb_udp_drop drop);

/* A worker's UDP counters: written by its thread only, read by any
 * (/metrics). Index 0 of a direction pair is client to target ("up"),
 * 1 target to client ("down"). */
struct nlb_udp_counters {
  atomic_uint_fast64_t flows; /* open now */
  atomic_uint_fast64_t datagrams[2];
  atomic_uint_fast64_t bytes[2];
  atomic_uint_fast64_t drops[NLB_UDP_DROP_COUNT];
  /* Datagrams that arrived coalesced with others of their flow in one
   * read (UDP GRO), per direction. */
  atomic_uint_fast64_t coalesced[2];
};

#endif
