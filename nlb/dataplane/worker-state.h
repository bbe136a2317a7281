/* What worker.c (the thread, its commands and listeners) and worker_pool.c
 * (the pooled resources flows borrow) share: the worker itself. Private to
 * nlb/dataplane/; worker thread unless a field says otherwise. */
#ifndef NLB_WORKER_STATE_H
#define NLB_WORKER_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "nlb/common/hmap.h"
#include "nlb/dataplane/udp.h"
#include "nlb/dataplane/udp_table.h"
#include "nlb/dataplane/worker.h"
#include "nlb/list.h"

/* Pooled resources kept warm per worker; beyond this they are released. */
#define PIPE_POOL_MAX 64
#define BUFFER_POOL_MAX 64
/* Server names (TLS passthrough flows' SNI) kept for reuse. */
#define NAME_POOL_MAX 256
#define FLOW_POOL_MAX 1024

struct pipe_pair {
  int read_fd;
  int write_fd;
};

/* Established flows of one idle timeout, in the order they were last
 * queued (flow->queued_ms): a flow queued at q cannot be idle before
 * q + timeout_ms, so a sweep looks only at the head until that is in the
 * future, and a flow found still active goes back to the tail. Each flow
 * is looked at about once per idle timeout, not once per sweep: a million
 * idle flows cost nothing while none expires. */
struct idle_list {
  uint64_t timeout_ms;
  struct nlb_list flows;
};
#define MAX_IDLE_LISTS 16

struct nlb_worker {
  unsigned index;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t wakeup;
  uv_timer_t sweep;
  uv_timer_t accept_resume;
  /* The worker waits in its own epoll instance, which holds the flows'
   * sockets and the uv loop's backend fd (timers, commands, listeners):
   * one epoll_wait per turn, the uv loop run only when it has work. */
  int epoll_fd;
  struct nlb_list finished; /* flows to free once the turn is over */
  struct nlb_list deferred; /* nlb_deferred to run once the turn is over */
  uint64_t last_idle_sweep_ms;

  pthread_mutex_t lock; /* guards the command queue */
  struct command *commands_head;
  struct command *commands_tail;

  struct nlb_snapshot *snapshot;   /* one reference */
  atomic_uint_fast64_t generation; /* of snapshot: routes older are free */
  struct nlb_list listeners;
  struct nlb_hmap slots; /* the listeners' slots by route id */
  struct nlb_list connecting;
  struct idle_list *idle[MAX_IDLE_LISTS]; /* one per idle timeout in use */
  size_t n_idle;
  /* Established flows of further idle timeouts: swept whole. */
  struct nlb_list established;
  atomic_uint_fast64_t active_flows;
  atomic_uint_fast64_t max_flows;     /* over every worker; set by control */
  atomic_uint_fast64_t flows_refused; /* at max_flows */
  atomic_uint_fast64_t accept_errors; /* EMFILE and the like */
  bool exiting;
  bool accepting; /* nlb_worker_start_accepting came: listeners watched */
  /* Every worker, this one included (set before any listener exists). */
  struct nlb_worker *const *peers;
  size_t n_peers;

  struct pipe_pair pipes[PIPE_POOL_MAX];
  size_t n_pipes;
  char *buffers[BUFFER_POOL_MAX];
  size_t n_buffers;
  char *names[NAME_POOL_MAX];
  size_t n_names;
  struct nlb_flow *free_flows[FLOW_POOL_MAX];
  size_t n_free_flows;

  /* UDP flows by 5-tuple, bounded by max_flows; the datagram batch (made
   * with the first UDP listener); counters /metrics reads. */
  struct nlb_udp_table udp_flows;
  struct nlb_udp_batch *udp_batch;
  struct nlb_udp_counters udp;
};

#endif
