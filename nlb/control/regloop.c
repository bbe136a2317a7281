#include "nlb/control/regloop.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "nlb/log.h"

/* The change feed is read in batches of this many events; a node that
 * lags reads at most FEED_ROUNDS batches between two jobs. */
#define FEED_BATCH 512
#define FEED_ROUNDS 4
/* Safety net for a lost notice (and the only wake-up with SQLite, where
 * this process is the only writer anyway). */
#define POLL_MS 1000
#define EXPIRY_CHECK_MS 10000
/* Old events go at most this many per transaction; a full batch is
 * followed by the next one at the next turn. */
#define PRUNE_BATCH 10000
#define PRUNE_CHECK_MAX_MS 60000

struct sync_call;

struct job {
  struct job *next;
  void (*run)(struct reg *reg, void *arg);
  void (*done)(void *arg);
  void *arg;
  struct sync_call *sync; /* nlb_regloop_call: signal, nothing to post */
  uint64_t submitted_ms;  /* reg_monotonic_ms() */
  uint64_t after_writes;  /* a read: the writes queued before it */
};

/* Reads on a thread of their own, over a registry of their own (a second
 * connection to the store): a write waiting for a lock another node holds
 * never holds them up. */
struct reader {
  struct reg *reg;
  pthread_t thread;
  bool started;
  pthread_cond_t wake; /* with nlb_regloop.lock: jobs, stop */
  struct job *jobs, **jobs_tail;
};

struct sync_call {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool finished;
};

/* Something for the control thread: a job's done, or changes. */
struct outcome {
  struct outcome *next;
  void (*done)(void *arg);
  void *arg;
  bool is_changes;
  struct reg_changes changes;
};

struct nlb_regloop {
  struct reg *reg;
  char store[16];
  pthread_t thread;
  int wake_fd; /* eventfd: jobs, stop */
  pthread_mutex_t lock;
  struct job *jobs, **jobs_tail;
  struct outcome *outcomes, **outcomes_tail;
  bool stopping;
  /* Writes queued and finished, in order (under lock): a read waits for
   * the writes queued before it (writes_done, signalled on writes_cond),
   * at most half its read_timeout, so that what a request made happen
   * (an accepted endpoint's failure to open, written just after) is seen
   * by the next read, while a write stuck on a lock held elsewhere still
   * holds no read up for long. */
  uint64_t writes_queued, writes_done;
  pthread_cond_t writes_cond;

  uv_async_t control_async;
  void (*on_changes)(const struct reg_changes *, void *);
  void *arg;

  /* Written by the registry thread, read by any (/healthz): the store
   * could not be reached at the last try; logged once per outage. */
  atomic_bool unavailable;
  bool slow; /* a write ran out of time; logged once until one does not */

  /* Registry thread only. */
  uint64_t cursor;  /* the change feed has been read through this */
  bool need_resync; /* read the whole state next */
  bool beat_started;
  uint64_t next_beat_ms, next_poll_ms, next_expiry_ms, next_prune_ms;
  struct nlb_regloop_retention retention;
  _Atomic uint64_t applied_seq;

  /* How long a job may wait for the store, counted from its submission
   * (reg_set_deadline), so that it answers in time however long the queue
   * before it was. Set on the control thread at start and reload. */
  _Atomic uint32_t write_timeout_ms, read_timeout_ms;
  struct reader reader;
};

static uint64_t mono_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake(struct nlb_regloop *rl)
{
  uint64_t one = 1;

  if (write(rl->wake_fd, &one, sizeof(one)) < 0) {
    /* The counter is already non-zero: the thread wakes anyway. */
  }
}

/* ---- to the control thread ---------------------------------------------- */

static void post(struct nlb_regloop *rl, struct outcome *o)
{
  pthread_mutex_lock(&rl->lock);
  *rl->outcomes_tail = o;
  rl->outcomes_tail = &o->next;
  pthread_mutex_unlock(&rl->lock);
  uv_async_send(&rl->control_async);
}

static struct outcome *take_outcomes(struct nlb_regloop *rl)
{
  struct outcome *list;

  pthread_mutex_lock(&rl->lock);
  list = rl->outcomes;
  rl->outcomes = NULL;
  rl->outcomes_tail = &rl->outcomes;
  pthread_mutex_unlock(&rl->lock);
  return list;
}

static void run_outcomes(struct nlb_regloop *rl, bool apply_changes)
{
  struct outcome *o = take_outcomes(rl);

  while (o != NULL) {
    struct outcome *next = o->next;

    if (o->is_changes) {
      if (apply_changes && rl->on_changes) {
        rl->on_changes(&o->changes, rl->arg);
        atomic_store(&rl->applied_seq, o->changes.last_seq);
      }
      reg_changes_release(&o->changes);
    } else if (o->done) {
      o->done(o->arg);
    }
    free(o);
    o = next;
  }
}

static void on_control_async(uv_async_t *handle)
{
  run_outcomes(handle->data, true);
}

/* ---- the change feed (registry thread) ---------------------------------- */

static void store_trouble(struct nlb_regloop *rl, const char *what, int r)
{
  /* A lock held elsewhere: the store is there, only stuck for now. */
  if (r == -ETIMEDOUT) {
    if (!rl->slow)
      NLB_LOG_EVENT(NLB_LOG_WARN, "store_slow",
                    "registry: the store did not answer in time ({what}: "
                    "{error}); writes answer 503 until it does",
                    NLB_LOG_STR("what", what),
                    NLB_LOG_STR("error", reg_store_message(rl->reg)));
    rl->slow = true;
    return;
  }
  if (r != -ENOTCONN) {
    NLB_LOG_EVENT(NLB_LOG_ERROR, "registry_error", "registry: {what}: {error}",
                  NLB_LOG_STR("what", what),
                  NLB_LOG_STR("error", strerror(-r)));
    return;
  }
  if (!atomic_exchange(&rl->unavailable, true))
    NLB_LOG_EVENT(NLB_LOG_WARN, "store_unavailable",
                  "registry: the store is unavailable ({what}: {error}); "
                  "serving the last state, writes answer 503 until it is "
                  "back",
                  NLB_LOG_STR("what", what),
                  NLB_LOG_STR("error", reg_store_message(rl->reg)));
}

static void store_back(struct nlb_regloop *rl)
{
  if (atomic_exchange(&rl->unavailable, false))
    NLB_LOG_EVENT(NLB_LOG_INFO, "store_available",
                  "registry: the store is back; catching up");
}

/* Reads one batch; false when there is nothing more to read now. */
static bool follow_once(struct nlb_regloop *rl)
{
  struct outcome *o = calloc(1, sizeof(*o));
  bool more;
  int r;

  if (o == NULL)
    return false;
  r = reg_changes_read(rl->reg, rl->cursor, FEED_BATCH, rl->need_resync,
                       &o->changes);
  if (r < 0) {
    store_trouble(rl, "reading changes", r);
    free(o);
    return false;
  }
  store_back(rl);
  if (!o->changes.resync && o->changes.n_events == 0) {
    free(o);
    return false;
  }
  rl->need_resync = false;
  rl->cursor = o->changes.last_seq;
  more = o->changes.n_events == FEED_BATCH;
  o->is_changes = true;
  post(rl, o);
  return more;
}

static void follow(struct nlb_regloop *rl)
{
  for (int round = 0; round < FEED_ROUNDS; round++)
    if (!follow_once(rl))
      return;
  wake(rl); /* more to read: after the jobs waiting now */
}

/* ---- periodic work (registry thread) ------------------------------------ */

static void heartbeat(struct nlb_regloop *rl)
{
  int r = reg_node_heartbeat(rl->reg, !rl->beat_started,
                             atomic_load(&rl->applied_seq));

  if (r < 0) {
    store_trouble(rl, "heartbeat", r);
    return;
  }
  rl->beat_started = true;
}

static void expire(struct nlb_regloop *rl)
{
  size_t expired = 0;
  int r = reg_expire_pending(rl->reg, wall_ms(), &expired);

  if (r < 0) {
    store_trouble(rl, "expiring pending endpoints", r);
    return;
  }
  rl->slow = false; /* a write went through */
  if (expired > 0)
    NLB_LOG_EVENT(NLB_LOG_INFO, "endpoints_expired",
                  "{endpoints} pending endpoints expired",
                  NLB_LOG_UINT("endpoints", expired));
}

/* Prunes old events and old finished endpoints, a batch of each at a
 * time: a full batch means more is due, at once. */
static void prune(struct nlb_regloop *rl, uint64_t now)
{
  struct nlb_regloop_retention keep = rl->retention;
  uint64_t shortest =
      keep.events_ms < keep.endpoints_ms ? keep.events_ms : keep.endpoints_ms;
  uint64_t interval = shortest / 2;
  size_t events = 0, endpoints = 0;
  int r;

  if (interval > PRUNE_CHECK_MAX_MS)
    interval = PRUNE_CHECK_MAX_MS;
  if (interval < 1000)
    interval = 1000;
  r = reg_events_prune(rl->reg, wall_ms() - (int64_t)keep.events_ms,
                       PRUNE_BATCH, &events);
  if (r < 0)
    store_trouble(rl, "pruning old events", r);
  else if (events > 0)
    NLB_LOG_EVENT(NLB_LOG_INFO, "registry_pruned",
                  "registry: pruned {events} events older than "
                  "event_retention",
                  NLB_LOG_UINT("events", events));
  r = reg_endpoints_prune(rl->reg, wall_ms() - (int64_t)keep.endpoints_ms,
                          PRUNE_BATCH, &endpoints);
  if (r < 0)
    store_trouble(rl, "pruning finished endpoints", r);
  else if (endpoints > 0)
    NLB_LOG_EVENT(NLB_LOG_INFO, "registry_pruned",
                  "registry: pruned {endpoints} finished endpoints older "
                  "than endpoint_retention",
                  NLB_LOG_UINT("endpoints", endpoints));
  rl->next_prune_ms =
      events == PRUNE_BATCH || endpoints == PRUNE_BATCH ? now : now + interval;
}

/* Runs what is due; returns the ms until the next thing is. */
static int periodic(struct nlb_regloop *rl)
{
  uint64_t now = mono_ms();
  uint64_t next;

  if (now >= rl->next_beat_ms) {
    heartbeat(rl);
    rl->next_beat_ms = now + REG_HEARTBEAT_MS;
  }
  if (now >= rl->next_poll_ms) {
    follow(rl);
    rl->next_poll_ms = now + POLL_MS;
  }
  if (now >= rl->next_expiry_ms) {
    expire(rl);
    rl->next_expiry_ms = now + EXPIRY_CHECK_MS;
  }
  if (now >= rl->next_prune_ms)
    prune(rl, now);
  next = rl->next_beat_ms;
  if (rl->next_poll_ms < next)
    next = rl->next_poll_ms;
  if (rl->next_expiry_ms < next)
    next = rl->next_expiry_ms;
  if (rl->next_prune_ms < next)
    next = rl->next_prune_ms;
  now = mono_ms();
  return next > now ? (int)(next - now) : 0;
}

/* ---- the thread --------------------------------------------------------- */

static struct job *take_job(struct nlb_regloop *rl, bool *stopping)
{
  struct job *job;

  pthread_mutex_lock(&rl->lock);
  job = rl->jobs;
  if (job != NULL) {
    rl->jobs = job->next;
    if (rl->jobs == NULL)
      rl->jobs_tail = &rl->jobs;
  }
  *stopping = rl->stopping;
  pthread_mutex_unlock(&rl->lock);
  return job;
}

/* Runs job on reg, its store waits bounded from its submission (a sync
 * call is the caller's own wait: its transactions get their own bound). */
static void run_job(struct reg *reg, struct job *job, uint32_t timeout_ms)
{
  if (job->sync == NULL)
    reg_set_deadline(reg, job->submitted_ms + timeout_ms);
  job->run(reg, job->arg);
  reg_set_deadline(reg, 0);
}

/* Tells whoever waits for job that it ran, and frees it. */
static void finish_job(struct nlb_regloop *rl, struct job *job)
{
  struct outcome *o;

  if (job->sync != NULL) {
    pthread_mutex_lock(&job->sync->lock);
    job->sync->finished = true;
    pthread_cond_signal(&job->sync->cond);
    pthread_mutex_unlock(&job->sync->lock);
  } else if ((o = calloc(1, sizeof(*o))) != NULL) {
    o->done = job->done;
    o->arg = job->arg;
    post(rl, o);
  }
  free(job);
}

/* Runs the queued jobs, each followed by a read of the change feed, so
 * that the changes a job made reach the control thread before its done. */
static bool run_jobs(struct nlb_regloop *rl)
{
  bool stopping = false;
  struct job *job;

  while ((job = take_job(rl, &stopping)) != NULL) {
    run_job(rl->reg, job, atomic_load(&rl->write_timeout_ms));
    follow(rl);
    finish_job(rl, job);
    pthread_mutex_lock(&rl->lock);
    rl->writes_done++;
    pthread_cond_broadcast(&rl->writes_cond);
    pthread_mutex_unlock(&rl->lock);
  }
  return stopping;
}

static void wait_for_work(struct nlb_regloop *rl, int timeout_ms)
{
  struct pollfd fds[2] = {{rl->wake_fd, POLLIN, 0}, {-1, POLLIN, 0}};
  uint64_t count;

  fds[1].fd = reg_wait_fd(rl->reg);
  if (poll(fds, fds[1].fd >= 0 ? 2 : 1, timeout_ms) <= 0)
    return;
  if (fds[0].revents & POLLIN && read(rl->wake_fd, &count, sizeof(count)) < 0)
    return;
  if (fds[1].fd >= 0 && fds[1].revents && reg_take_notices(rl->reg))
    follow(rl);
}

static void *thread_main(void *arg)
{
  struct nlb_regloop *rl = arg;

  for (;;) {
    int timeout;

    if (run_jobs(rl))
      break;
    timeout = periodic(rl);
    /* A notice that came while a query ran was read with that query's
     * answer: the socket will not wake the poll for it. */
    if (reg_take_notices(rl->reg)) {
      follow(rl);
      continue;
    }
    wait_for_work(rl, timeout);
  }
  return NULL;
}

/* ---- the reader's thread ------------------------------------------------ */

static struct job *take_read(struct nlb_regloop *rl)
{
  struct job *job;

  pthread_mutex_lock(&rl->lock);
  while (rl->reader.jobs == NULL && !rl->stopping)
    pthread_cond_wait(&rl->reader.wake, &rl->lock);
  job = rl->reader.jobs;
  if (job != NULL) {
    rl->reader.jobs = job->next;
    if (rl->reader.jobs == NULL)
      rl->reader.jobs_tail = &rl->reader.jobs;
  }
  pthread_mutex_unlock(&rl->lock);
  return job;
}

/* Waits until the writes queued before the read job have run, or half
 * its read_timeout has passed since it was submitted (reads queued behind
 * it do not wait again: their half has passed too). */
static void wait_for_writes(struct nlb_regloop *rl, const struct job *job)
{
  uint64_t until_ms = job->submitted_ms + atomic_load(&rl->read_timeout_ms) / 2;
  struct timespec until = {.tv_sec = (time_t)(until_ms / 1000),
                           .tv_nsec = (long)(until_ms % 1000) * 1000000};

  pthread_mutex_lock(&rl->lock);
  while (rl->writes_done < job->after_writes && !rl->stopping)
    if (pthread_cond_timedwait(&rl->writes_cond, &rl->lock, &until) != 0)
      break;
  pthread_mutex_unlock(&rl->lock);
}

/* Reads change nothing: no change feed to follow after them. */
static void *reader_main(void *arg)
{
  struct nlb_regloop *rl = arg;
  struct job *job;

  while ((job = take_read(rl)) != NULL) {
    wait_for_writes(rl, job);
    run_job(rl->reader.reg, job, atomic_load(&rl->read_timeout_ms));
    finish_job(rl, job);
  }
  return NULL;
}

/* ---- control thread ----------------------------------------------------- */

/* Queues job for the reader (reads) or the registry thread. */
static int queue_job(struct nlb_regloop *rl, struct job *job, bool read)
{
  bool stopping;

  job->submitted_ms = reg_monotonic_ms();
  pthread_mutex_lock(&rl->lock);
  stopping = rl->stopping;
  if (!stopping && read) {
    job->after_writes = rl->writes_queued;
    *rl->reader.jobs_tail = job;
    rl->reader.jobs_tail = &job->next;
    pthread_cond_signal(&rl->reader.wake);
  } else if (!stopping) {
    rl->writes_queued++;
    *rl->jobs_tail = job;
    rl->jobs_tail = &job->next;
  }
  pthread_mutex_unlock(&rl->lock);
  if (stopping)
    return -ESHUTDOWN;
  if (!read)
    wake(rl);
  return 0;
}

static int submit(struct nlb_regloop *rl, bool read,
                  void (*run)(struct reg *reg, void *arg),
                  void (*done)(void *arg), void *arg)
{
  struct job *job = calloc(1, sizeof(*job));
  int r;

  if (job == NULL)
    return -ENOMEM;
  job->run = run;
  job->done = done;
  job->arg = arg;
  if ((r = queue_job(rl, job, read)) < 0)
    free(job);
  return r;
}

int nlb_regloop_submit(struct nlb_regloop *rl,
                       void (*run)(struct reg *reg, void *arg),
                       void (*done)(void *arg), void *arg)
{
  return submit(rl, false, run, done, arg);
}

int nlb_regloop_submit_read(struct nlb_regloop *rl,
                            void (*run)(struct reg *reg, void *arg),
                            void (*done)(void *arg), void *arg)
{
  return submit(rl, true, run, done, arg);
}

static void call(struct nlb_regloop *rl, bool read,
                 void (*run)(struct reg *reg, void *arg), void *arg)
{
  /* On the stack: the thread signals it and forgets it. */
  struct sync_call sync = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                           false};
  struct job *job = calloc(1, sizeof(*job));

  if (job == NULL)
    return;
  job->run = run;
  job->arg = arg;
  job->sync = &sync;
  if (queue_job(rl, job, read) < 0) {
    free(job);
    return;
  }
  pthread_mutex_lock(&sync.lock);
  while (!sync.finished)
    pthread_cond_wait(&sync.cond, &sync.lock);
  pthread_mutex_unlock(&sync.lock);
}

void nlb_regloop_call(struct nlb_regloop *rl,
                      void (*run)(struct reg *reg, void *arg), void *arg)
{
  call(rl, false, run, arg);
  /* What the call changed is applied here before the caller goes on. */
  run_outcomes(rl, true);
}

static void set_resync(struct reg *reg, void *arg)
{
  struct nlb_regloop *rl = arg;

  rl->need_resync = true;
}

void nlb_regloop_apply(struct nlb_regloop *rl)
{
  run_outcomes(rl, true);
}

void nlb_regloop_resync(struct nlb_regloop *rl)
{
  nlb_regloop_call(rl, set_resync, rl);
}

const char *nlb_regloop_store(const struct nlb_regloop *rl)
{
  return rl->store;
}

bool nlb_regloop_store_available(struct nlb_regloop *rl)
{
  return !atomic_load(&rl->unavailable);
}

struct reload {
  const struct reg_config *cfg;
  struct reg_error *err;
  int result;
};

static void reload_run(struct reg *reg, void *arg)
{
  struct reload *r = arg;

  r->result = reg ? reg_reload(reg, r->cfg, r->err) : -ESHUTDOWN;
}

static void set_timeouts(struct nlb_regloop *rl, const struct reg_config *cfg)
{
  atomic_store(&rl->write_timeout_ms, cfg->write_timeout_ms
                                          ? cfg->write_timeout_ms
                                          : REG_DEFAULT_WRITE_TIMEOUT_MS);
  atomic_store(&rl->read_timeout_ms, cfg->read_timeout_ms
                                         ? cfg->read_timeout_ms
                                         : REG_DEFAULT_READ_TIMEOUT_MS);
}

int nlb_regloop_reload(struct nlb_regloop *rl, const struct reg_config *cfg,
                       const struct nlb_regloop_retention *retention,
                       struct reg_error *err)
{
  struct reload r = {cfg, err, 0};
  struct reg_error reader_err;
  struct reload on_reader = {cfg, &reader_err, 0};

  nlb_regloop_call(rl, reload_run, &r);
  if (r.result == 0) {
    /* The reader checks nothing the writer has not: it only follows. */
    call(rl, true, reload_run, &on_reader);
    /* Read by the thread at its next prune; a torn read is harmless. */
    rl->retention = *retention;
    rl->next_prune_ms = 0;
    set_timeouts(rl, cfg);
  }
  return r.result;
}

static void free_regloop(struct nlb_regloop *rl)
{
  if (rl->wake_fd >= 0)
    close(rl->wake_fd);
  pthread_cond_destroy(&rl->reader.wake);
  pthread_cond_destroy(&rl->writes_cond);
  pthread_mutex_destroy(&rl->lock);
  free(rl);
}

/* The reader's registry and thread, once the writer's registry is open
 * (it holds the SQLite file and migrates it). */
static int start_reader(struct nlb_regloop *rl,
                        const struct nlb_regloop_settings *s,
                        struct reg_error *err)
{
  struct reg_config cfg = *s->config;
  int r;

  cfg.reader = true;
  if ((r = reg_open(&rl->reader.reg, s->url, &cfg, err)) < 0)
    return r;
  if ((r = pthread_create(&rl->reader.thread, NULL, reader_main, rl)) != 0) {
    reg_close(rl->reader.reg);
    rl->reader.reg = NULL;
    err->code = -r;
    snprintf(err->message, sizeof(err->message),
             "cannot start the registry's reader thread: %s", strerror(r));
    return -r;
  }
  rl->reader.started = true;
  return 0;
}

static void stop_reader(struct nlb_regloop *rl)
{
  if (rl->reader.started)
    pthread_join(rl->reader.thread, NULL);
  rl->reader.started = false;
  reg_close(rl->reader.reg);
  rl->reader.reg = NULL;
}

static void on_async_closed(uv_handle_t *handle)
{
  free_regloop(handle->data);
}

/* Both threads run what was submitted before, then end. */
static void stop_threads(struct nlb_regloop *rl, bool writer)
{
  pthread_mutex_lock(&rl->lock);
  rl->stopping = true;
  pthread_cond_signal(&rl->reader.wake);
  pthread_cond_broadcast(&rl->writes_cond);
  pthread_mutex_unlock(&rl->lock);
  wake(rl);
  if (writer)
    pthread_join(rl->thread, NULL);
  stop_reader(rl);
}

int nlb_regloop_start(uv_loop_t *control, const struct nlb_regloop_settings *s,
                      struct nlb_regloop **out, struct reg_error *err)
{
  struct nlb_regloop *rl = calloc(1, sizeof(*rl));
  int r;

  if (rl == NULL)
    return -ENOMEM;
  rl->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  pthread_mutex_init(&rl->lock, NULL);
  pthread_cond_init(&rl->reader.wake, NULL);
  {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&rl->writes_cond, &attr);
    pthread_condattr_destroy(&attr);
  }
  rl->reader.jobs_tail = &rl->reader.jobs;
  set_timeouts(rl, s->config);
  rl->jobs_tail = &rl->jobs;
  rl->outcomes_tail = &rl->outcomes;
  rl->on_changes = s->on_changes;
  rl->arg = s->arg;
  rl->retention = s->retention;
  rl->need_resync = true;
  if (rl->wake_fd < 0) {
    free_regloop(rl);
    return -errno;
  }
  if ((r = reg_open(&rl->reg, s->url, s->config, err)) < 0) {
    free_regloop(rl);
    return r;
  }
  snprintf(rl->store, sizeof(rl->store), "%s", reg_store_name(rl->reg));
  if ((r = start_reader(rl, s, err)) < 0) {
    reg_close(rl->reg);
    free_regloop(rl);
    return r;
  }
  uv_async_init(control, &rl->control_async, on_control_async);
  rl->control_async.data = rl;
  /* The control loop ends when its own work has; this never keeps it. */
  uv_unref((uv_handle_t *)&rl->control_async);
  /* The whole state first, applied before start returns (what it reports
   * back is queued for the thread). */
  heartbeat(rl);
  follow(rl);
  rl->next_beat_ms = mono_ms() + REG_HEARTBEAT_MS;
  rl->next_poll_ms = mono_ms() + POLL_MS;
  *out = rl;
  if ((r = pthread_create(&rl->thread, NULL, thread_main, rl)) != 0) {
    *out = NULL;
    stop_threads(rl, false);
    reg_close(rl->reg);
    run_outcomes(rl, false);
    uv_close((uv_handle_t *)&rl->control_async, on_async_closed);
    return -r;
  }
  return 0;
}

void nlb_regloop_stop(struct nlb_regloop *rl)
{
  if (rl == NULL)
    return;
  stop_threads(rl, true);
  reg_close(rl->reg);
  rl->reg = NULL;
  run_outcomes(rl, false);
  uv_close((uv_handle_t *)&rl->control_async, on_async_closed);
}
