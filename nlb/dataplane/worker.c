#include "nlb/dataplane/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nlb/common/hmap.h"
#include "nlb/dataplane/listener.h"
#include "nlb/dataplane/flow_kind.h"
#include "nlb/dataplane/worker-state.h"
#include "nlb/log.h"

/* Accepts per wakeup of a listener before yielding to the flows. */
#define ACCEPT_BATCH 64
#define SWEEP_INTERVAL_MS 100
#define ACCEPT_PAUSE_MS 100
/* Events taken from the flows' epoll per wakeup. */
#define EVENT_BATCH 256
/* A full node (max_flows, or out of descriptors) says so at most this
 * often, with the count of what it refused meanwhile. */
#define LIMIT_LOG_MS 60000

enum command_kind {
  COMMAND_SNAPSHOT,
  COMMAND_ADD_LISTENER,
  COMMAND_REMOVE_LISTENER,
  COMMAND_START_ACCEPTING,
  COMMAND_STOP_ACCEPTING,
  COMMAND_CLOSE_FLOWS,
  COMMAND_ADOPT_FLOW,
  COMMAND_EXIT,
};

struct command {
  struct command *next;
  enum command_kind kind;
  uint64_t route_id;
  int fd;                           /* COMMAND_ADOPT_FLOW */
  struct nlb_listen_socket *socket; /* COMMAND_ADD_LISTENER */
  bool reset_flows;
  struct nlb_snapshot *snapshot;
  union nlb_sockaddr client; /* COMMAND_ADOPT_FLOW */
};

struct listener_slot {
  struct nlb_list link;
  struct nlb_hnode node; /* nlb_worker.slots, by route id */
  struct nlb_worker *worker;
  uint64_t route_id;
  /* Its route's kind when the socket came (NULL: accept, the TCP relay). */
  const struct nlb_flow_kind *kind;
  struct nlb_listen_socket *socket; /* one reference */
  struct nlb_io io;                 /* watches socket->fd */
  struct nlb_list flows;            /* this worker's flows from it */
};

/* Every worker watches the same listening socket with EPOLLEXCLUSIVE: a
 * new connection wakes one worker that waits, not all of them, so it goes
 * to a worker with nothing else to do while another is busy (with a
 * socket per worker, SO_REUSEPORT would pick by a hash of the addresses,
 * whatever each worker's load). */
#define LISTENER_EVENTS (EPOLLIN | EPOLLEXCLUSIVE)

static void push_command(struct nlb_worker *worker, struct command *command)
{
  pthread_mutex_lock(&worker->lock);
  if (worker->commands_tail)
    worker->commands_tail->next = command;
  else
    worker->commands_head = command;
  worker->commands_tail = command;
  pthread_mutex_unlock(&worker->lock);
  uv_async_send(&worker->wakeup);
}

static void send_command(struct nlb_worker *worker, enum command_kind kind,
                         uint64_t route_id, struct nlb_listen_socket *socket,
                         bool reset_flows, struct nlb_snapshot *snapshot)
{
  struct command *command = calloc(1, sizeof(*command));
  if (!command) {
    /* Commands are rare and small; without memory for one there is no
     * safe way to go on. */
    NLB_LOG_EVENT(NLB_LOG_ERROR, "out_of_memory",
                  "worker {worker}: out of memory",
                  NLB_LOG_UINT("worker", worker->index));
    abort();
  }
  command->kind = kind;
  command->route_id = route_id;
  command->fd = -1;
  command->socket = socket;
  command->reset_flows = reset_flows;
  command->snapshot = snapshot;
  push_command(worker, command);
}

static void abort_flow(struct nlb_flow *flow, enum nlb_flow_end end);

/* Whether the slot's flows answer through its socket (UDP): they cannot
 * outlive it. */
static bool flows_need_socket(const struct listener_slot *slot)
{
  return slot->kind && slot->kind->on_listener_ready;
}

/* Runs from commands, after the turn's events: no event names the slot.
 * Its flows run on (unless the caller reset them) without it, except
 * those that answer through its socket: they end, with end. */
static void close_listener(struct nlb_worker *worker,
                           struct listener_slot *slot, enum nlb_flow_end end)
{
  struct nlb_list *pos, *tmp;

  if (flows_need_socket(slot))
    NLB_LIST_FOREACH_SAFE(pos, tmp, &slot->flows)
    {
      abort_flow(NLB_CONTAINER_OF(pos, struct nlb_flow, route_link), end);
    }
  nlb_list_remove(&slot->link);
  nlb_hmap_remove(&worker->slots, &slot->node);
  /* Out of this epoll set while the descriptor is surely open: the other
   * workers may still hold it, and with it this registration. */
  nlb_worker_watch(worker, &slot->io, 0);
  nlb_listen_socket_release(slot->socket);
  NLB_LIST_FOREACH_SAFE(pos, tmp, &slot->flows)
  {
    nlb_list_remove(pos);
  }
  free(slot);
}

static bool slot_is(const struct nlb_hnode *node, const void *route_id)
{
  return NLB_CONTAINER_OF(node, struct listener_slot, node)->route_id ==
         *(const uint64_t *)route_id;
}

static struct listener_slot *find_slot(struct nlb_worker *worker,
                                       uint64_t route_id)
{
  struct nlb_hnode *node =
      nlb_hmap_find(&worker->slots, nlb_hash_bytes(&route_id, sizeof(route_id)),
                    slot_is, &route_id);

  return node ? NLB_CONTAINER_OF(node, struct listener_slot, node) : NULL;
}

static void close_listeners(struct nlb_worker *worker)
{
  struct nlb_list *pos, *tmp;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &worker->listeners)
  {
    close_listener(worker, NLB_CONTAINER_OF(pos, struct listener_slot, link),
                   NLB_END_SHUTDOWN);
  }
}

static void on_accept_resume(uv_timer_t *timer);
static void pause_accepting(struct nlb_worker *worker);

/* Watches every listener (accepting starts, or resumes after a pause). */
static void watch_listeners(struct nlb_worker *worker)
{
  struct nlb_list *pos, *tmp;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &worker->listeners)
  {
    struct listener_slot *slot =
        NLB_CONTAINER_OF(pos, struct listener_slot, link);
    if (nlb_worker_watch(worker, &slot->io, LISTENER_EVENTS) < 0) {
      pause_accepting(worker);
      return;
    }
  }
}

static void pause_accepting(struct nlb_worker *worker)
{
  struct nlb_list *pos, *tmp;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &worker->listeners)
  {
    nlb_worker_watch(worker,
                     &NLB_CONTAINER_OF(pos, struct listener_slot, link)->io, 0);
  }
  uv_timer_start(&worker->accept_resume, on_accept_resume, ACCEPT_PAUSE_MS, 0);
}

static void on_accept_resume(uv_timer_t *timer)
{
  struct nlb_worker *worker = timer->data;
  watch_listeners(worker);
}

/* Flows on every worker, and the node's limit. */
static uint64_t node_flows(const struct nlb_worker *worker)
{
  uint64_t total = 0;

  for (size_t i = 0; i < worker->n_peers; i++)
    total += atomic_load_explicit(&worker->peers[i]->active_flows,
                                  memory_order_relaxed);
  return total;
}

/* The last time a full node said so (any worker), and what it refused
 * since: a full node logs once a minute, not once per refusal. */
static atomic_uint_fast64_t limit_logged_ms;
static atomic_uint_fast64_t limit_unlogged;

static void log_full(struct nlb_worker *worker, const char *why)
{
  uint64_t now = uv_now(&worker->loop);
  uint64_t last = atomic_load_explicit(&limit_logged_ms, memory_order_relaxed);
  uint64_t refused = atomic_fetch_add(&limit_unlogged, 1) + 1;

  /* Each loop caches its own clock: another worker's stamp may be a
   * little ahead of ours, which is "just said", not "long ago". */
  if ((last && (now < last || now - last < LIMIT_LOG_MS)) ||
      !atomic_compare_exchange_strong(&limit_logged_ms, &last, now ? now : 1))
    return;
  atomic_fetch_sub(&limit_unlogged, refused);
  NLB_LOG_EVENT(NLB_LOG_WARN, "flows_refused",
                "node full ({reason}): refusing new flows ({refused} since "
                "the last message; said at most once a minute)",
                NLB_LOG_STR("reason", why), NLB_LOG_UINT("refused", refused),
                NLB_LOG_UINT("max_flows", atomic_load(&worker->max_flows)));
}

bool nlb_worker_admit_flow(struct nlb_worker *worker)
{
  if (node_flows(worker) >=
      atomic_load_explicit(&worker->max_flows, memory_order_relaxed)) {
    atomic_fetch_add_explicit(&worker->flows_refused, 1, memory_order_relaxed);
    log_full(worker, "max_flows");
    return false;
  }
  atomic_fetch_add_explicit(&worker->active_flows, 1, memory_order_relaxed);
  return true;
}

static void start_flow(struct nlb_worker *worker, uint64_t route_id, int fd,
                       const union nlb_sockaddr *client)
{
  struct listener_slot *slot = find_slot(worker, route_id);
  struct nlb_route *route = nlb_snapshot_find_route(worker->snapshot, route_id);
  bool full;

  if (!route || !slot || route->group >= worker->snapshot->n_groups) {
    close(fd);
    return;
  }
  full = node_flows(worker) >=
         atomic_load_explicit(&worker->max_flows, memory_order_relaxed);
  atomic_fetch_add_explicit(&worker->active_flows, 1, memory_order_relaxed);
  if (full) {
    atomic_fetch_add_explicit(&worker->flows_refused, 1, memory_order_relaxed);
    log_full(worker, "max_flows");
  }
  route->kind->start(worker, route, worker->snapshot->groups[route->group], fd,
                     client, &slot->flows, full);
}

/* The shared accept queue wakes a worker that waits, and the first one
 * when both do: under light load long-lived flows would pile up on it. A
 * worker that is clearly ahead hands a new flow to the least loaded one
 * instead (HAProxy balances its threads at accept too). Returns worker itself
 * when no hand-over is worth it. */
static struct nlb_worker *least_loaded_peer(struct nlb_worker *worker)
{
  uint64_t mine =
      atomic_load_explicit(&worker->active_flows, memory_order_relaxed);
  struct nlb_worker *least = worker;
  uint64_t least_flows = mine;

  for (size_t i = 0; i < worker->n_peers; i++) {
    uint64_t flows = atomic_load_explicit(&worker->peers[i]->active_flows,
                                          memory_order_relaxed);
    if (flows < least_flows) {
      least = worker->peers[i];
      least_flows = flows;
    }
  }
  /* Hand over only past a margin, so that near balance costs nothing. */
  if (mine <= least_flows + 1 + least_flows / 16)
    return worker;
  return least;
}

static void hand_over(struct nlb_worker *peer, uint64_t route_id, int fd,
                      const union nlb_sockaddr *client)
{
  struct command *command = calloc(1, sizeof(*command));
  if (!command) {
    close(fd);
    return;
  }
  command->kind = COMMAND_ADOPT_FLOW;
  command->route_id = route_id;
  command->fd = fd;
  command->client = *client;
  /* Counted at once, so that the next accepts see the peer's new load. */
  atomic_fetch_add_explicit(&peer->active_flows, 1, memory_order_relaxed);
  push_command(peer, command);
}

static void on_listener_ready(struct nlb_io *io, uint32_t revents)
{
  struct listener_slot *slot = NLB_CONTAINER_OF(io, struct listener_slot, io);
  struct nlb_worker *worker = slot->worker;

  (void)revents; /* accept (or the kind's read) says what an error was */
  if (flows_need_socket(slot)) {
    slot->kind->on_listener_ready(worker, slot->route_id, io->fd, &slot->flows);
    return;
  }
  for (int i = 0; i < ACCEPT_BATCH; i++) {
    union nlb_sockaddr client;
    socklen_t len = sizeof(client);
    int fd = accept4(io->fd, &client.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        /* Leave the connection in the backlog and retry shortly rather
         * than spin on a listener we cannot serve. */
        atomic_fetch_add_explicit(&worker->accept_errors, 1,
                                  memory_order_relaxed);
        log_full(worker, strerror(errno));
        pause_accepting(worker);
      }
      return;
    }
    struct nlb_worker *least = least_loaded_peer(worker);
    if (least != worker) {
      hand_over(least, slot->route_id, fd, &client);
      continue;
    }
    start_flow(worker, slot->route_id, fd, &client);
  }
}

static void add_listener(struct nlb_worker *worker, uint64_t route_id,
                         struct nlb_listen_socket *socket)
{
  struct listener_slot *slot = calloc(1, sizeof(*slot));
  /* The snapshot naming the route came first (router.c). */
  struct nlb_route *route = nlb_snapshot_find_route(worker->snapshot, route_id);
  int rc = -ENOMEM;

  if (!slot)
    goto fail_release;
  slot->worker = worker;
  slot->route_id = route_id;
  slot->kind = route ? route->kind : NULL;
  slot->socket = socket;
  slot->io.fd = socket->fd;
  slot->io.on_ready = on_listener_ready;
  nlb_list_init(&slot->flows);
  if (nlb_hmap_insert(&worker->slots, &slot->node,
                      nlb_hash_bytes(&route_id, sizeof(route_id))) < 0)
    goto fail_free;
  /* Before accepting starts, the kernel queues connections in the
   * backlog; the worker watches the socket from then on. */
  rc = worker->accepting ? nlb_worker_watch(worker, &slot->io, LISTENER_EVENTS)
                         : 0;
  if (rc < 0) {
    nlb_hmap_remove(&worker->slots, &slot->node);
    goto fail_free;
  }
  nlb_list_append(&worker->listeners, &slot->link);
  return;

fail_free:
  free(slot);
fail_release:
  NLB_LOG_EVENT(NLB_LOG_ERROR, "listener_failed",
                "worker {worker}: listener: {error}",
                NLB_LOG_UINT("worker", worker->index),
                NLB_LOG_STR("error", strerror(-rc)));
  nlb_listen_socket_release(socket);
}

/* Applies fn to every flow; fn may end the flow (and unlink it). */
static void for_each_flow(struct nlb_worker *worker,
                          void (*fn)(struct nlb_flow *, void *), void *arg)
{
  struct nlb_list *lists[2 + MAX_IDLE_LISTS] = {&worker->connecting,
                                                &worker->established};
  size_t n = 2;

  for (size_t i = 0; i < worker->n_idle; i++)
    lists[n++] = &worker->idle[i]->flows;
  for (size_t i = 0; i < n; i++) {
    struct nlb_list *pos, *tmp;
    NLB_LIST_FOREACH_SAFE(pos, tmp, lists[i])
    {
      fn(NLB_CONTAINER_OF(pos, struct nlb_flow, link), arg);
    }
  }
}

static void abort_flow(struct nlb_flow *flow, enum nlb_flow_end end)
{
  flow->route->kind->abort(flow, end);
}

static void reset_for_shutdown(struct nlb_flow *flow, void *arg)
{
  abort_flow(flow, NLB_END_SHUTDOWN);
}

static void remove_listener(struct nlb_worker *worker, uint64_t route_id,
                            bool reset_flows)
{
  struct listener_slot *slot = find_slot(worker, route_id);
  struct nlb_list *pos, *tmp;

  if (!slot)
    return;
  if (reset_flows)
    NLB_LIST_FOREACH_SAFE(pos, tmp, &slot->flows)
    {
      abort_flow(NLB_CONTAINER_OF(pos, struct nlb_flow, route_link),
                 NLB_END_ENDPOINT_CLOSED);
    }
  close_listener(worker, slot, NLB_END_ENDPOINT_CLOSED);
}

static void begin_exit(struct nlb_worker *worker)
{
  worker->exiting = true;
  close_listeners(worker);
  for_each_flow(worker, reset_for_shutdown, NULL);
  uv_close((uv_handle_t *)&worker->sweep, NULL);
  uv_close((uv_handle_t *)&worker->accept_resume, NULL);
  uv_close((uv_handle_t *)&worker->wakeup, NULL);
}

static void on_wakeup(uv_async_t *async)
{
  struct nlb_worker *worker = async->data;
  struct command *command;

  pthread_mutex_lock(&worker->lock);
  command = worker->commands_head;
  worker->commands_head = worker->commands_tail = NULL;
  pthread_mutex_unlock(&worker->lock);
  while (command) {
    struct command *next = command->next;
    switch (command->kind) {
    case COMMAND_SNAPSHOT:
      nlb_snapshot_release(worker->snapshot);
      worker->snapshot = command->snapshot;
      /* From here on this worker reads no older snapshot's routes. */
      atomic_store_explicit(&worker->generation, worker->snapshot->generation,
                            memory_order_release);
      break;
    case COMMAND_ADD_LISTENER:
      if (worker->exiting)
        nlb_listen_socket_release(command->socket);
      else
        add_listener(worker, command->route_id, command->socket);
      command->socket = NULL;
      break;
    case COMMAND_REMOVE_LISTENER:
      remove_listener(worker, command->route_id, command->reset_flows);
      break;
    case COMMAND_START_ACCEPTING:
      if (!worker->accepting && !worker->exiting) {
        worker->accepting = true;
        watch_listeners(worker);
      }
      break;
    case COMMAND_STOP_ACCEPTING:
      close_listeners(worker);
      break;
    case COMMAND_ADOPT_FLOW:
      /* hand_over counted it already. */
      atomic_fetch_sub_explicit(&worker->active_flows, 1, memory_order_relaxed);
      if (worker->exiting)
        close(command->fd);
      else
        start_flow(worker, command->route_id, command->fd, &command->client);
      command->fd = -1;
      break;
    case COMMAND_CLOSE_FLOWS:
      for_each_flow(worker, reset_for_shutdown, NULL);
      break;
    case COMMAND_EXIT:
      if (!worker->exiting)
        begin_exit(worker);
      break;
    }
    free(command);
    command = next;
  }
}

static void check_flow_timeouts(struct nlb_flow *flow, uint64_t now)
{
  flow->route->kind->check_timeouts(flow, now);
}

static void check_timeouts(struct nlb_flow *flow, void *arg)
{
  check_flow_timeouts(flow, *(uint64_t *)arg);
}

/* Ends the flows of list that have been idle for timeout_ms; looks only
 * at those queued at least that long ago. */
static void sweep_idle(struct idle_list *list, uint64_t now)
{
  while (!nlb_list_empty(&list->flows)) {
    struct nlb_flow *flow =
        NLB_CONTAINER_OF(list->flows.next, struct nlb_flow, link);
    if (flow->queued_ms + list->timeout_ms > now)
      return;
    check_flow_timeouts(flow, now);
    if (flow->closing)
      continue; /* it left the list */
    nlb_list_remove(&flow->link);
    nlb_list_append(&list->flows, &flow->link);
    flow->queued_ms = now;
  }
}

static void on_sweep(uv_timer_t *timer)
{
  struct nlb_worker *worker = timer->data;
  uint64_t now = uv_now(&worker->loop);
  struct nlb_list *pos, *tmp;

  NLB_LIST_FOREACH_SAFE(pos, tmp, &worker->connecting)
  {
    check_flow_timeouts(NLB_CONTAINER_OF(pos, struct nlb_flow, link), now);
  }
  for (size_t i = 0; i < worker->n_idle; i++)
    sweep_idle(worker->idle[i], now);
  /* Every established flow, once a second, only while some target drains
   * (its flows close at its deadline) and for the rare flows without an
   * idle list of their own. */
  if (now - worker->last_idle_sweep_ms < 1000)
    return;
  worker->last_idle_sweep_ms = now;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &worker->established)
  {
    check_timeouts(NLB_CONTAINER_OF(pos, struct nlb_flow, link), &now);
  }
  if (nlb_target_draining_count() == 0)
    return;
  for (size_t i = 0; i < worker->n_idle; i++)
    NLB_LIST_FOREACH_SAFE(pos, tmp, &worker->idle[i]->flows)
    {
      check_timeouts(NLB_CONTAINER_OF(pos, struct nlb_flow, link), &now);
    }
}

static void run_deferred(struct nlb_worker *worker)
{
  while (!nlb_list_empty(&worker->deferred)) {
    struct nlb_list *node = worker->deferred.next;
    nlb_list_remove(node);
    NLB_CONTAINER_OF(node, struct nlb_deferred, link)
        ->run(NLB_CONTAINER_OF(node, struct nlb_deferred, link));
  }
}

static void free_finished(struct nlb_worker *worker)
{
  while (!nlb_list_empty(&worker->finished)) {
    struct nlb_list *node = worker->finished.next;
    struct nlb_flow *flow = NLB_CONTAINER_OF(node, struct nlb_flow, link);
    nlb_list_remove(node);
    if (worker->n_free_flows < FLOW_POOL_MAX)
      worker->free_flows[worker->n_free_flows++] = flow;
    else
      free(flow);
  }
}

static void worker_main(void *arg)
{
  struct nlb_worker *worker = arg;
  struct epoll_event ready[EVENT_BATCH];
  sigset_t all;

  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  for (;;) {
    int n = epoll_wait(worker->epoll_fd, ready, EVENT_BATCH,
                       uv_backend_timeout(&worker->loop));
    bool uv_due = n <= 0; /* a timer is due, or an interrupted wait */

    uv_update_time(&worker->loop);
    for (int i = 0; i < n; i++) {
      struct nlb_io *io = ready[i].data.ptr;
      if (io)
        io->on_ready(io, ready[i].events);
      else
        uv_due = true;
    }
    run_deferred(worker);
    /* Events are handled: no pointer to a finished flow is left. */
    free_finished(worker);
    if (uv_due || uv_backend_timeout(&worker->loop) == 0) {
      int alive = uv_run(&worker->loop, UV_RUN_NOWAIT);
      free_finished(worker);
      if (!alive && worker->exiting)
        return;
    }
  }
}

int nlb_worker_pin(struct nlb_worker *worker, int cpu)
{
  cpu_set_t set;

  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return -pthread_setaffinity_np(worker->thread, sizeof(set), &set);
}

struct nlb_worker *nlb_worker_start(unsigned index,
                                    struct nlb_snapshot *snapshot)
{
  struct nlb_worker *worker = calloc(1, sizeof(*worker));
  if (!worker)
    return NULL;
  worker->index = index;
  pthread_mutex_init(&worker->lock, NULL);
  nlb_list_init(&worker->listeners);
  nlb_hmap_init(&worker->slots);
  atomic_init(&worker->max_flows, UINT64_MAX);
  nlb_udp_table_init(&worker->udp_flows, SIZE_MAX);
  nlb_list_init(&worker->connecting);
  nlb_list_init(&worker->established);
  nlb_list_init(&worker->finished);
  nlb_list_init(&worker->deferred);
  worker->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (worker->epoll_fd < 0)
    goto fail_free;
  if (uv_loop_init(&worker->loop) < 0)
    goto fail_close_epoll;
  struct epoll_event backend = {.events = EPOLLIN, .data.ptr = NULL};
  if (epoll_ctl(worker->epoll_fd, EPOLL_CTL_ADD, uv_backend_fd(&worker->loop),
                &backend) < 0) {
    uv_loop_close(&worker->loop);
    goto fail_close_epoll;
  }
  uv_async_init(&worker->loop, &worker->wakeup, on_wakeup);
  worker->wakeup.data = worker;
  uv_timer_init(&worker->loop, &worker->sweep);
  worker->sweep.data = worker;
  uv_timer_start(&worker->sweep, on_sweep, SWEEP_INTERVAL_MS,
                 SWEEP_INTERVAL_MS);
  uv_timer_init(&worker->loop, &worker->accept_resume);
  worker->accept_resume.data = worker;
  nlb_snapshot_acquire(snapshot);
  worker->snapshot = snapshot;
  if (uv_thread_create(&worker->thread, worker_main, worker) < 0)
    goto fail_close_loop;
  return worker;

fail_close_loop:
  nlb_snapshot_release(snapshot);
  uv_close((uv_handle_t *)&worker->wakeup, NULL);
  uv_close((uv_handle_t *)&worker->sweep, NULL);
  uv_close((uv_handle_t *)&worker->accept_resume, NULL);
  uv_run(&worker->loop, UV_RUN_DEFAULT);
  uv_loop_close(&worker->loop);
fail_close_epoll:
  close(worker->epoll_fd);
fail_free:
  free(worker);
  return NULL;
}

void nlb_worker_add_listener(struct nlb_worker *worker, uint64_t route_id,
                             struct nlb_listen_socket *socket)
{
  send_command(worker, COMMAND_ADD_LISTENER, route_id, socket, false, NULL);
}

void nlb_worker_remove_listener(struct nlb_worker *worker, uint64_t route_id,
                                bool reset_flows)
{
  send_command(worker, COMMAND_REMOVE_LISTENER, route_id, NULL, reset_flows,
               NULL);
}

void nlb_worker_set_snapshot(struct nlb_worker *worker,
                             struct nlb_snapshot *snapshot)
{
  nlb_snapshot_acquire(snapshot);
  send_command(worker, COMMAND_SNAPSHOT, 0, NULL, false, snapshot);
}

void nlb_worker_start_accepting(struct nlb_worker *worker)
{
  send_command(worker, COMMAND_START_ACCEPTING, 0, NULL, false, NULL);
}

void nlb_worker_stop_accepting(struct nlb_worker *worker)
{
  send_command(worker, COMMAND_STOP_ACCEPTING, 0, NULL, false, NULL);
}

void nlb_worker_close_flows(struct nlb_worker *worker)
{
  send_command(worker, COMMAND_CLOSE_FLOWS, 0, NULL, false, NULL);
}

void nlb_worker_set_peers(struct nlb_worker *worker,
                          struct nlb_worker *const *peers, size_t n_peers)
{
  worker->peers = peers;
  worker->n_peers = n_peers;
}

uint64_t nlb_worker_generation(const struct nlb_worker *worker)
{
  return atomic_load_explicit(&worker->generation, memory_order_acquire);
}

uint64_t nlb_worker_active_flows(const struct nlb_worker *worker)
{
  return atomic_load_explicit(&worker->active_flows, memory_order_relaxed);
}

void nlb_worker_set_max_flows(struct nlb_worker *worker, uint64_t max_flows)
{
  atomic_store_explicit(&worker->max_flows, max_flows ? max_flows : UINT64_MAX,
                        memory_order_relaxed);
}

uint64_t nlb_worker_flows_refused(const struct nlb_worker *worker)
{
  return atomic_load_explicit(&worker->flows_refused, memory_order_relaxed);
}

uint64_t nlb_worker_accept_errors(const struct nlb_worker *worker)
{
  return atomic_load_explicit(&worker->accept_errors, memory_order_relaxed);
}

void nlb_worker_stop(struct nlb_worker *worker)
{
  struct command *command;

  send_command(worker, COMMAND_EXIT, 0, NULL, false, NULL);
  uv_thread_join(&worker->thread);
  uv_loop_close(&worker->loop);
  free_finished(worker);
  close(worker->epoll_fd);
  /* Commands queued after EXIT (none in practice) still own resources. */
  for (command = worker->commands_head; command;) {
    struct command *next = command->next;
    if (command->fd >= 0)
      close(command->fd);
    nlb_listen_socket_release(command->socket);
    nlb_snapshot_release(command->snapshot);
    free(command);
    command = next;
  }
  for (size_t i = 0; i < worker->n_pipes; i++)
    nlb_worker_drop_pipe(worker, worker->pipes[i].read_fd,
                         worker->pipes[i].write_fd);
  for (size_t i = 0; i < worker->n_buffers; i++)
    free(worker->buffers[i]);
  for (size_t i = 0; i < worker->n_names; i++)
    free(worker->names[i]);
  for (size_t i = 0; i < worker->n_free_flows; i++)
    free(worker->free_flows[i]);
  for (size_t i = 0; i < worker->n_idle; i++)
    free(worker->idle[i]);
  nlb_udp_table_free(&worker->udp_flows);
  if (worker->udp_batch)
    free(worker->udp_batch->buffers);
  free(worker->udp_batch);
  nlb_snapshot_release(worker->snapshot);
  nlb_hmap_free(&worker->slots);
  pthread_mutex_destroy(&worker->lock);
  free(worker);
}
