/* The resources a worker lends its flows: pooled splice pipes, buffers and
 * flow structures, its epoll set, and the lists that time flows out. Worker
 * thread unless a function says otherwise; flow kinds call these, and this
 * file calls nothing above it. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "nlb/dataplane/flow.h"
#include "nlb/dataplane/snapshot.h"
#include "nlb/dataplane/worker-state.h"

int nlb_worker_watch(struct nlb_worker *worker, struct nlb_io *io,
                     uint32_t events)
{
  /* data.ptr NULL stands for the uv loop's own fd: an io never is. */
  struct epoll_event event = {.events = events, .data.ptr = io};
  int op;

  if (events == io->events || io->fd < 0)
    return 0;
  /* Unwatched rather than watched for nothing: epoll reports errors and
   * hang-ups even then, and level-triggered, that would spin. */
  op = io->events == 0 ? EPOLL_CTL_ADD
       : events == 0   ? EPOLL_CTL_DEL
                       : EPOLL_CTL_MOD;
  if (epoll_ctl(worker->epoll_fd, op, io->fd, &event) < 0)
    return -errno;
  io->events = events;
  return 0;
}

uv_loop_t *nlb_worker_loop(struct nlb_worker *worker)
{
  return &worker->loop;
}

struct nlb_snapshot *nlb_worker_snapshot(struct nlb_worker *worker)
{
  return worker->snapshot;
}

unsigned nlb_worker_index(const struct nlb_worker *worker)
{
  return worker->index;
}

/* Descriptors held by splice pipes (in use and pooled) over every worker,
 * and their share of the descriptor limit (capacity.h). */
static atomic_uint_fast64_t pipe_fds;
static atomic_uint_fast64_t pipe_budget = UINT64_MAX;

void nlb_worker_set_pipe_budget(uint64_t fds)
{
  atomic_store_explicit(&pipe_budget, fds, memory_order_relaxed);
}

int nlb_worker_get_pipe(struct nlb_worker *worker, int *read_fd, int *write_fd)
{
  int fds[2];
  if (worker->n_pipes > 0) {
    worker->n_pipes--;
    *read_fd = worker->pipes[worker->n_pipes].read_fd;
    *write_fd = worker->pipes[worker->n_pipes].write_fd;
    return 0;
  }
  /* Past its share, a bulk direction goes through a buffer instead. */
  if (atomic_fetch_add_explicit(&pipe_fds, 2, memory_order_relaxed) + 2 >
      atomic_load_explicit(&pipe_budget, memory_order_relaxed)) {
    atomic_fetch_sub_explicit(&pipe_fds, 2, memory_order_relaxed);
    return -EMFILE;
  }
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
    atomic_fetch_sub_explicit(&pipe_fds, 2, memory_order_relaxed);
    return -errno;
  }
  *read_fd = fds[0];
  *write_fd = fds[1];
  return 0;
}

void nlb_worker_drop_pipe(struct nlb_worker *worker, int read_fd, int write_fd)
{
  close(read_fd);
  close(write_fd);
  atomic_fetch_sub_explicit(&pipe_fds, 2, memory_order_relaxed);
}

void nlb_worker_put_pipe(struct nlb_worker *worker, int read_fd, int write_fd)
{
  if (worker->n_pipes < PIPE_POOL_MAX) {
    worker->pipes[worker->n_pipes].read_fd = read_fd;
    worker->pipes[worker->n_pipes].write_fd = write_fd;
    worker->n_pipes++;
    return;
  }
  nlb_worker_drop_pipe(worker, read_fd, write_fd);
}

char *nlb_worker_get_buffer(struct nlb_worker *worker)
{
  if (worker->n_buffers > 0)
    return worker->buffers[--worker->n_buffers];
  return malloc(NLB_BUFFER_SIZE);
}

void nlb_worker_put_buffer(struct nlb_worker *worker, char *buffer)
{
  if (worker->n_buffers < BUFFER_POOL_MAX)
    worker->buffers[worker->n_buffers++] = buffer;
  else
    free(buffer);
}

char *nlb_worker_get_name(struct nlb_worker *worker)
{
  if (worker->n_names > 0)
    return worker->names[--worker->n_names];
  return malloc(NLB_WORKER_NAME_SIZE);
}

void nlb_worker_put_name(struct nlb_worker *worker, char *name)
{
  if (worker->n_names < NAME_POOL_MAX)
    worker->names[worker->n_names++] = name;
  else
    free(name);
}

struct nlb_flow *nlb_worker_alloc_flow(struct nlb_worker *worker)
{
  struct nlb_flow *flow;
  if (worker->n_free_flows > 0) {
    flow = worker->free_flows[--worker->n_free_flows];
    memset(flow, 0, sizeof(*flow));
    return flow;
  }
  return calloc(1, sizeof(*flow));
}

void nlb_worker_free_flow(struct nlb_worker *worker, struct nlb_flow *flow)
{
  nlb_list_remove(&flow->link);
  nlb_list_append(&worker->finished, &flow->link);
}

void nlb_worker_track_connecting(struct nlb_worker *worker,
                                 struct nlb_flow *flow)
{
  nlb_list_remove(&flow->link);
  nlb_list_append(&worker->connecting, &flow->link);
}

static struct idle_list *idle_list_for(struct nlb_worker *worker,
                                       uint64_t timeout_ms)
{
  struct idle_list *list;

  for (size_t i = 0; i < worker->n_idle; i++)
    if (worker->idle[i]->timeout_ms == timeout_ms)
      return worker->idle[i];
  if (worker->n_idle == MAX_IDLE_LISTS || !(list = malloc(sizeof(*list))))
    return NULL;
  list->timeout_ms = timeout_ms;
  nlb_list_init(&list->flows);
  worker->idle[worker->n_idle++] = list;
  return list;
}

void nlb_worker_track_established(struct nlb_worker *worker,
                                  struct nlb_flow *flow)
{
  struct idle_list *list = idle_list_for(worker, flow->route->idle_timeout_ms);

  nlb_list_remove(&flow->link);
  nlb_list_append(list ? &list->flows : &worker->established, &flow->link);
  flow->queued_ms = uv_now(&worker->loop);
}

void nlb_worker_defer(struct nlb_worker *worker, struct nlb_deferred *deferred)
{
  if (nlb_list_empty(&deferred->link))
    nlb_list_append(&worker->deferred, &deferred->link);
}

struct nlb_udp_table *nlb_worker_udp_flows(struct nlb_worker *worker)
{
  return &worker->udp_flows;
}

struct nlb_udp_counters *nlb_worker_udp_counters(struct nlb_worker *worker)
{
  return &worker->udp;
}

struct nlb_udp_batch *nlb_worker_udp_batch(struct nlb_worker *worker)
{
  struct nlb_udp_batch *batch = worker->udp_batch;

  if (batch)
    return batch;
  batch = calloc(1, sizeof(*batch));
  if (!batch)
    return NULL;
  /* Untouched pages cost nothing: a 64-byte datagram makes one page of
   * its buffer resident, not sixteen. */
  batch->buffers = malloc((size_t)NLB_UDP_BATCH * NLB_UDP_DATAGRAM_MAX * 2);
  if (!batch->buffers) {
    free(batch);
    return NULL;
  }
  batch->answer_buffers =
      batch->buffers + (size_t)NLB_UDP_BATCH * NLB_UDP_DATAGRAM_MAX;
  nlb_list_init(&batch->flush.link);
  worker->udp_batch = batch;
  return batch;
}

void nlb_worker_flow_closed(struct nlb_worker *worker)
{
  atomic_fetch_sub_explicit(&worker->active_flows, 1, memory_order_relaxed);
}
