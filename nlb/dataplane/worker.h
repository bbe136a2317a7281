/* Workers: threads that each run their own uv loop, accept from every
 * listener's one socket (every worker's epoll set watches its one
 * descriptor), and carry flows from accept to close. The control thread drives
 * a worker only through the functions below, which queue a command and wake the
 * worker with a uv_async_t. */
#ifndef NLB_WORKER_H
#define NLB_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "nlb/dataplane/flow.h"
#include "nlb/dataplane/io.h"
#include "nlb/list.h"
#include "nlb/dataplane/listener.h"
#include "nlb/dataplane/snapshot.h"

struct nlb_worker;

/* Starts worker number index with the given snapshot (the worker takes its
 * own reference). Returns NULL on failure. Control thread. */
struct nlb_worker *nlb_worker_start(unsigned index,
                                    struct nlb_snapshot *snapshot);

/* Keeps the worker's thread on one CPU: its flows' sockets, buffers and
 * epoll set stay in that core's caches, and two workers are never queued
 * on one core while the other idles. Returns 0 or a negative errno.
 * Control thread. */
int nlb_worker_pin(struct nlb_worker *worker, int cpu);

/* Hands the worker the listening socket for the route with route_id; the
 * worker owns one reference on socket from here on. It accepts from it
 * once accepting has started (nlb_worker_start_accepting). Control
 * thread. */
void nlb_worker_add_listener(struct nlb_worker *worker, uint64_t route_id,
                             struct nlb_listen_socket *socket);

/* Stops watching the listening socket for route_id and drops the worker's
 * reference (the last one closes it). With reset_flows, every flow that
 * came in through it is reset at once (end=endpoint_closed); without,
 * flows run on. Control thread. */
void nlb_worker_remove_listener(struct nlb_worker *worker, uint64_t route_id,
                                bool reset_flows);

/* Publishes a new snapshot to the worker (it takes its own reference);
 * new flows use it, running flows keep theirs. Control thread. */
void nlb_worker_set_snapshot(struct nlb_worker *worker,
                             struct nlb_snapshot *snapshot);

/* The generation of the snapshot the worker has switched to: it reads no
 * older snapshot's routes any more. Any thread. */
uint64_t nlb_worker_generation(const struct nlb_worker *worker);

/* A new worker holds its listeners without accepting (the kernel queues
 * new connections in their backlogs) until this command: from then on it
 * accepts from every listener it has or is given. Commands run in order,
 * so a snapshot published before it is the one the first flows use.
 * Control thread. */
void nlb_worker_start_accepting(struct nlb_worker *worker);

/* Closes every listening socket: the start of a shutdown. */
void nlb_worker_stop_accepting(struct nlb_worker *worker);

/* Resets every flow still open (end=shutdown). */
void nlb_worker_close_flows(struct nlb_worker *worker);

/* Tells the worker about every worker (itself included), so that it can
 * hand new flows to a less loaded one. Call before any listener is added;
 * peers must outlive the workers. Control thread. */
void nlb_worker_set_peers(struct nlb_worker *worker,
                          struct nlb_worker *const *peers, size_t n_peers);

/* Number of flows open on the worker. Any thread. */
uint64_t nlb_worker_active_flows(const struct nlb_worker *worker);

/* The node's limit on open flows (all workers together, TCP and UDP; 0:
 * none). A new flow past it is refused at accept: reset, end=limit in the
 * access log (a UDP datagram that would start one is dropped), counted in
 * nlb_worker_flows_refused, and a warning at most once a minute. Any
 * thread. */
void nlb_worker_set_max_flows(struct nlb_worker *worker, uint64_t max_flows);
uint64_t nlb_worker_flows_refused(const struct nlb_worker *worker);
/* accept(2) failures for want of descriptors or memory (the worker pauses
 * accepting 100 ms each time). Any thread. */
uint64_t nlb_worker_accept_errors(const struct nlb_worker *worker);

/* The descriptors splice pipes may hold over every worker (capacity.h);
 * past it, bulk directions move through buffers. Any thread. */
void nlb_worker_set_pipe_budget(uint64_t fds);

/* Stops the loop once its flows are gone (after nlb_worker_close_flows),
 * joins the thread and frees the worker. Control thread. */
void nlb_worker_stop(struct nlb_worker *worker);

/* Helpers for flow.c: pooled resources of the worker. Worker thread. */
uv_loop_t *nlb_worker_loop(struct nlb_worker *worker);
struct nlb_snapshot *nlb_worker_snapshot(struct nlb_worker *worker);
int nlb_worker_get_pipe(struct nlb_worker *worker, int *read_fd, int *write_fd);
void nlb_worker_put_pipe(struct nlb_worker *worker, int read_fd, int write_fd);
/* Closes a pipe that cannot go back to the pool (bytes left in it). */
void nlb_worker_drop_pipe(struct nlb_worker *worker, int read_fd, int write_fd);
char *nlb_worker_get_buffer(struct nlb_worker *worker);
void nlb_worker_put_buffer(struct nlb_worker *worker, char *buffer);
/* A pooled NLB_WORKER_NAME_SIZE-byte string (a TLS passthrough flow's
 * server name), so that a flow without one pays 8 bytes, not 256; NULL on
 * ENOMEM. Given back with nlb_worker_put_name. */
char *nlb_worker_get_name(struct nlb_worker *worker);
void nlb_worker_put_name(struct nlb_worker *worker, char *name);
struct nlb_flow *nlb_worker_alloc_flow(struct nlb_worker *worker);
/* Gives a finished flow back; its memory is reused only after the current
 * round of callbacks, so an event still queued for it finds it closing. */
void nlb_worker_free_flow(struct nlb_worker *worker, struct nlb_flow *flow);
/* Watches io->fd for events (EPOLLIN, EPOLLOUT; 0 stops watching) in the
 * worker's epoll instance, which the worker's uv loop polls as one fd:
 * flows' sockets bypass uv_poll_t, saving its memory and the three
 * syscalls libuv spends on each new handle. Returns 0 or a negative
 * errno. */
int nlb_worker_watch(struct nlb_worker *worker, struct nlb_io *io,
                     uint32_t events);
void nlb_worker_track_connecting(struct nlb_worker *worker,
                                 struct nlb_flow *flow);
void nlb_worker_track_established(struct nlb_worker *worker,
                                  struct nlb_flow *flow);
void nlb_worker_flow_closed(struct nlb_worker *worker);
unsigned nlb_worker_index(const struct nlb_worker *worker);

/* Work a flow kind puts off to the end of the worker's current round of
 * events, to do it once for many (UDP answers to many flows leave in one
 * sendmmsg). The owner initialises link (nlb_list_init) once. */
struct nlb_deferred {
  struct nlb_list link;
  void (*run)(struct nlb_deferred *deferred);
};

/* Runs deferred->run once after the current round of events, before
 * finished flows are freed and before commands (a listener closing) run;
 * deferring it again before then changes nothing. Worker thread. */
void nlb_worker_defer(struct nlb_worker *worker, struct nlb_deferred *deferred);

/* For a kind that makes its own flows (UDP): counts a new flow on the
 * worker, or, when the node is at max_flows, refuses it (counted and said
 * as at accept) and returns false. A counted flow ends with
 * nlb_worker_flow_closed. Worker thread. */
bool nlb_worker_admit_flow(struct nlb_worker *worker);

/* The worker's UDP resources (udp.h): its flow table, its datagram batch
 * (allocated on first use; NULL on ENOMEM) and counters. Worker thread,
 * but nlb_worker_udp_counters may be read from any. */
struct nlb_udp_table *nlb_worker_udp_flows(struct nlb_worker *worker);
struct nlb_udp_batch *nlb_worker_udp_batch(struct nlb_worker *worker);
struct nlb_udp_counters *nlb_worker_udp_counters(struct nlb_worker *worker);

/* Size of a pooled name: a server name (NLB_HELLO_SNI_MAX) and its NUL. */
#define NLB_WORKER_NAME_SIZE 256

/* Size of a copy-path buffer; also the high-water mark of a direction. */
#define NLB_BUFFER_SIZE 16384

#endif
