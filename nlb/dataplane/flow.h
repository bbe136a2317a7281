/* A flow: one client connection and the target connection made for it,
 * from accept to the access-log record. Flows live on one worker and are
 * touched only by its thread. */
#ifndef NLB_FLOW_H
#define NLB_FLOW_H

#include <stdbool.h>
#include <stdint.h>

#include "nlb/common/addr.h"
#include "nlb/common/clienthello.h"
#include "nlb/dataplane/io.h"
#include "nlb/dataplane/proxy_v2.h"
#include "nlb/dataplane/sockmap.h"
#include "nlb/dataplane/udp_table.h"
#include "nlb/lb.h"
#include "nlb/list.h"

struct nlb_worker;
struct ssl_st;
struct nlb_group_route;
struct nlb_route;

/* Why a flow ended, as the access log names it. */
enum nlb_flow_end {
  NLB_END_NONE,
  NLB_END_CLIENT_FIN,
  NLB_END_TARGET_FIN,
  NLB_END_CLIENT_RESET,
  NLB_END_TARGET_RESET,
  NLB_END_IDLE_TIMEOUT,
  NLB_END_CONNECT_FAILED,
  NLB_END_NO_TARGET,
  NLB_END_SOURCE_DENIED,
  NLB_END_LIMIT,
  NLB_END_ENDPOINT_CLOSED,
  NLB_END_SHUTDOWN,
  NLB_END_DEREGISTERED,
  NLB_END_TLS_FAILED,        /* the client's TLS handshake failed */
  NLB_END_HANDSHAKE_TIMEOUT, /* the client's TLS handshake did not end */
  NLB_END_TARGET_TLS_FAILED, /* the target's TLS handshake (or its
                                certificate) failed */
  NLB_END_NOT_TLS,           /* a TLS passthrough client did not speak TLS */
  NLB_END_BAD_HELLO,         /* ... sent a malformed or oversized ClientHello */
  NLB_END_HELLO_TIMEOUT,     /* ... did not send all of it in time */
};

/* One direction of a flow: bytes read from one side, not yet written to
 * the other. Holds a pipe (splice path) or a buffer (copy path) only while
 * bytes are in flight; an idle flow holds neither. */
struct nlb_direction {
  int pipe_read; /* -1 when no pipe is held */
  int pipe_write;
  char *buffer; /* NULL when none is held */
  uint32_t buffer_start;
  uint32_t buffer_end;
  uint32_t in_pipe; /* bytes waiting in the pipe */
  /* One bit each: the direction stays 32 bytes (two of them in every
   * flow, idle or not). */
  bool eof : 1;    /* the source sent FIN */
  bool shut : 1;   /* FIN passed on to the destination */
  bool paused : 1; /* over the high-water mark: not reading the source */
  bool bulk : 1;   /* a read filled a whole buffer: splice from now on */
  /* The last read took all it asked for: the source's queue may still
   * hold the rest of a packet, which the sockmap would send again whole
   * (it hands the program whole packets), so the flow waits for a short
   * read before it goes in. */
  bool partial : 1;
};

/* Laid out for size (an idle flow costs its struct: 312 bytes, a
 * 320-byte malloc chunk) and for the relay's hot path: what every read and
 * write touches (the lists, the sockets, the flags, activity and byte
 * counts, the directions) comes first; what only connect, the sockmap or
 * the flow's end read comes last. State that never lives at the same time
 * shares room: see the unions. */
struct nlb_flow {
  struct nlb_list link; /* on the worker's connecting or established list */
  struct nlb_list route_link; /* on its listener's list in the worker */
  struct nlb_worker *worker;
  struct nlb_route *route;       /* one reference, dropped at close */
  struct nlb_group_route *group; /* one reference, dropped at close */
  struct nlb_target *target;     /* inside group's pool; NULL until picked */

  struct nlb_io client_io; /* the client's socket */
  struct nlb_io target_io; /* the target's socket; fd -1 until connecting */
  uint8_t end;
  uint8_t n_tried;
  bool established : 1;
  bool closing : 1;
  bool refusing : 1; /* no target: FIN sent, discarding what the client sends */
  bool access_json : 1; /* the snapshot's access-log format at accept */
  /* A TLS passthrough flow still reading its client's ClientHello. */
  bool awaiting_hello : 1;
  /* In the sockmap (sockmap.h): the kernel moves its bytes; nlbd watches
   * only for FIN, reset and error. */
  bool kernel : 1;
  bool kernel_tried : 1;    /* the sockmap was tried (once a flow) */
  bool kernel_fin_held : 1; /* a FIN waits for the kernel's bytes before it */
  /* A TLS termination flow (tls_flow.c): the union below holds its TLS
   * state, not a passthrough flow's sni. */
  bool tls : 1;
  union nlb_sockaddr client_addr;

  uint64_t last_active_ms;
  uint64_t queued_ms; /* when it joined its idle list's tail (worker.c) */
  uint64_t bytes_up;
  uint64_t bytes_down;
  union {
    /* The TCP relay's, and a TLS flow's (tls_flow.c). */
    struct {
      struct nlb_direction up;   /* client to target */
      struct nlb_direction down; /* target to client */
      union {
        /* tls: TLS with the client and with the target (target_ssl NULL
         * until connected); freed with the flow. */
        struct {
          struct ssl_st *client_ssl;
          struct ssl_st *target_ssl;
          uint32_t handshake_ms; /* accept to the client's handshake done */
          uint8_t tls_state;     /* tls_flow.c's */
        };
        /* Otherwise: the server name a TLS passthrough flow's ClientHello
         * asked for (lower case, as nlb_client_hello_parse gives it), a
         * pooled name of its worker (nlb_worker_get_name) given back when
         * the flow ends; NULL for none. Read it with nlb_flow_sni. */
        char *sni;
      };
    };
    /* A UDP flow's (udp.c): client_io is unused, target_io is its socket
     * connected to the target; it answers through its listener's socket
     * of this worker (listen_fd, owned by the worker's listener slot). */
    struct {
      struct nlb_udp_key key; /* in the worker's flow table */
      uint64_t key_hash;
      uint64_t datagrams_up;
      uint64_t datagrams_down;
      int listen_fd;
    } udp;
  };
  union {
    /* The targets tried, while connecting (the only time anything reads
     * them; n_tried stays for the access log) ... */
    uint32_t tried[NLB_MAX_TRIES];
    /* ... and once kernel_tried, which only an established flow can be:
     * the flow's sockets in the sockmap, and what each socket (client,
     * target) had been written when it went in, to tell when the
     * program's bytes have all reached it. */
    struct {
      struct nlb_sockmap_pair sockmap;
      uint64_t written_base[2];
    };
  };
  uint64_t flow_hash;
  uint64_t accepted_ms;
  uint64_t connect_started_ms;
  uint64_t connected_ms;
};

/* A TLS passthrough flow's server name, or NULL (none read, or not a
 * passthrough flow). */
static inline const char *nlb_flow_sni(const struct nlb_flow *flow)
{
  return flow->tls ? NULL : flow->sni;
}

/* A flow starts, times out and is aborted through its route's kind
 * (flow_kind.h): the TCP relay's contract is nlb_flow_kind_tcp's. Placing
 * a just-accepted client connection covers admission, target choice and the
 * connect; the kind takes ownership of client_fd, takes its own references
 * on route and group (the worker's snapshot's), and joins route_flows (the
 * worker's list of the listener's flows) until the flow ends. With refuse
 * (the node is full), the flow ends at once: reset, end=limit. */

const char *nlb_flow_end_name(enum nlb_flow_end end);

/* Room for the PROXY v2 header a flow sends: the longest
 * nlb_proxy_v2_encode writes and a PP2_TYPE_AUTHORITY TLV of the longest
 * server name. A kind that fills the up buffer before connecting leaves
 * this much of it free. */
#define NLB_FLOW_PROXY_ROOM (NLB_PROXY_V2_MAX_LEN + 3 + NLB_HELLO_SNI_MAX)

#endif
