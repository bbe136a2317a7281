/* The registry's thread: nlbd keeps its registry (registry.h) on a thread
 * of its own, so that the control loop (health checks, the API's
 * connections, the data plane's model) never waits on a disk flush or a
 * PostgreSQL round trip.
 *
 * The thread owns the struct reg. It runs jobs other threads submit, one at
 * a time in submission order, and follows the change feed: after every
 * job, when another node's commit wakes it (the store's notices), and once
 * a second in any case, it reads the events after the last seq it read and
 * hands them, with the rows they name, to the control thread. It also
 * records this node's heartbeat every REG_HEARTBEAT_MS, expires pending
 * endpoints and prunes old events. When the store is unreachable it keeps
 * trying (the store backs off), and catches up when it is back.
 *
 * Everything the control thread gets back (a job's done callback, a batch
 * of changes) arrives on the control loop through one queue, in the order
 * it happened: a job's changes before the job's done. So when an API
 * answer is written, this node has already applied the change it made.
 *
 * Reads (nlb_regloop_submit_read) run on a second thread, over a second
 * registry on the same store (reg_config.reader): a write waiting for a
 * lock held elsewhere never holds them up. Each job's waits on the store
 * are bounded from its submission (reg_set_deadline): write_timeout_ms on
 * the registry thread, read_timeout_ms on the reader's, so a job answers
 * -ETIMEDOUT in time however long the queue before it was, and a write
 * that ran out of time is rolled back, never committed later.
 *
 * Functions here are called on the control thread unless said otherwise. */
#ifndef NLB_REGLOOP_H
#define NLB_REGLOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "nlb/registry.h"

struct nlb_regloop;

/* How long history is kept: events, and endpoints in a final state
 * (rejected, deleted, expired, failed), are pruned once older. */
struct nlb_regloop_retention {
  uint64_t events_ms;
  uint64_t endpoints_ms;
};

struct nlb_regloop_settings {
  const char *url; /* the store (reg_open) */
  /* Borrowed for the call: the registry copies it. */
  const struct reg_config *config;
  struct nlb_regloop_retention retention;
  /* Called on the control thread with each read of the change feed, in
   * order; changes is borrowed for the call. */
  void (*on_changes)(const struct reg_changes *changes, void *arg);
  void *arg;
};

/* Opens the registries and starts the threads (blocking until the
 * registry is open or has failed, and the whole current state was read:
 * on_changes gets it at the next nlb_regloop_apply(), or when the control
 * loop runs). A PostgreSQL server that cannot be reached is not an error:
 * the store keeps trying, operations fail with -ENOTCONN meanwhile, and
 * the state follows once it is back. Other failures (-EBUSY: another
 * process holds the SQLite file or this node's name, err says which)
 * return a negative errno with err filled, and nothing is left running. */
int nlb_regloop_start(uv_loop_t *control, const struct nlb_regloop_settings *s,
                      struct nlb_regloop **out, struct reg_error *err);

/* Runs run(reg, arg) on the registry thread, then done(arg) on the control
 * thread. Returns 0, -ENOMEM or -ESHUTDOWN (stopping: nothing will run). */
int nlb_regloop_submit(struct nlb_regloop *rl,
                       void (*run)(struct reg *reg, void *arg),
                       void (*done)(void *arg), void *arg);

/* The same for a job that only reads: it runs on the reader's thread
 * (with the reader's registry), beside the jobs of nlb_regloop_submit,
 * and may see their commits in any order relative to its own start. */
int nlb_regloop_submit_read(struct nlb_regloop *rl,
                            void (*run)(struct reg *reg, void *arg),
                            void (*done)(void *arg), void *arg);

/* Runs run(reg, arg) on the registry thread, waits for it, then applies
 * on this thread what is queued for it (the changes the call made among
 * them). The control loop stands still meanwhile. If the thread is
 * stopping, run is not called. */
void nlb_regloop_call(struct nlb_regloop *rl,
                      void (*run)(struct reg *reg, void *arg), void *arg);

/* Runs, on this thread and now, what is queued for the control thread
 * (changes, done callbacks): at start, to apply the state read by
 * nlb_regloop_start before going on. */
void nlb_regloop_apply(struct nlb_regloop *rl);

/* Reads the whole state again (after a reload), and applies it before
 * returning. */
void nlb_regloop_resync(struct nlb_regloop *rl);

/* Takes a reloaded config (reg_reload on both threads; blocking), and its
 * timeouts for the jobs submitted from then on. Returns 0 or reg_reload's
 * error, with err filled. */
int nlb_regloop_reload(struct nlb_regloop *rl, const struct reg_config *cfg,
                       const struct nlb_regloop_retention *retention,
                       struct reg_error *err);

/* The store's name ("sqlite", "postgresql"). */
const char *nlb_regloop_store(const struct nlb_regloop *rl);

/* False from the registry thread's first failed attempt to reach the store
 * (-ENOTCONN: a heartbeat, a read of the change feed, a job's follow-up
 * read) until its next successful one; it tries at least once a second.
 * Any thread. */
bool nlb_regloop_store_available(struct nlb_regloop *rl);

/* Stops the threads once the jobs already submitted have run, closes the
 * registries, runs what is left for the control thread (done callbacks;
 * change batches are dropped) and frees everything. NULL ok. */
void nlb_regloop_stop(struct nlb_regloop *rl);

#endif
