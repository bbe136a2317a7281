#include "config.h"
#include "nlb/daemon.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "nlb/config.h"
#include "nlb/cpus.h"
#include "nlb/health.h"
#include "nlb/log.h"
#include "nlb/router.h"
#include "nlb/services.h"
#include "nlb/worker.h"

#define TICK_MS 100
/* After shutdown_timeout, flows are reset; this long is left for workers
 * to do it before they are stopped regardless. */
#define RESET_GRACE_MS 2000

enum phase {
  PHASE_RUNNING,
  PHASE_DRAINING,  /* not accepting; waiting for flows to end */
  PHASE_RESETTING, /* shutdown_timeout passed; flows being reset */
};

struct daemon {
  uv_loop_t loop;
  struct nlb_config *cfg;
  struct nlb_worker **workers;
  size_t n_workers;
  struct nlb_snapshot *empty_snapshot;
  char placement[160]; /* where the workers run, for the start event */
  struct nlb_router *router;
  struct nlb_health *health;
  struct nlb_services *services;
  uv_signal_t signals[4];
  uv_timer_t tick;
  enum phase phase;
  uint64_t phase_deadline_ms;
};

static uint64_t total_active_flows(const struct daemon *d)
{
  uint64_t total = 0;
  for (size_t i = 0; i < d->n_workers; i++)
    total += nlb_worker_active_flows(d->workers[i]);
  return total;
}

static void close_control_handles(struct daemon *d)
{
  for (int i = 0; i < 4; i++)
    uv_close((uv_handle_t *)&d->signals[i], NULL);
  uv_close((uv_handle_t *)&d->tick, NULL);
  nlb_health_stop(d->health);
  nlb_services_shutdown(d->services);
}

static void begin_shutdown(struct daemon *d, const char *why);

static void on_tick(uv_timer_t *timer)
{
  struct daemon *d = timer->data;
  uint64_t now = uv_now(&d->loop);

  switch (d->phase) {
  case PHASE_RUNNING:
    nlb_health_tick(d->health, now);
    nlb_router_tick(d->router, now);
    nlb_services_tick(d->services, now);
    if (nlb_services_drain_requested(d->services))
      begin_shutdown(d, "drain requested through the API");
    break;
  case PHASE_DRAINING:
    if (total_active_flows(d) == 0) {
      nlb_log_event(NLB_LOG_INFO, "shutdown: all flows ended");
      close_control_handles(d);
    } else if (now >= d->phase_deadline_ms) {
      nlb_log_event(NLB_LOG_INFO,
                    "shutdown: timeout, resetting %llu remaining flows",
                    (unsigned long long)total_active_flows(d));
      for (size_t i = 0; i < d->n_workers; i++)
        nlb_worker_close_flows(d->workers[i]);
      d->phase = PHASE_RESETTING;
      d->phase_deadline_ms = now + RESET_GRACE_MS;
    }
    break;
  case PHASE_RESETTING:
    if (total_active_flows(d) == 0 || now >= d->phase_deadline_ms)
      close_control_handles(d);
    break;
  }
}

static void begin_shutdown(struct daemon *d, const char *why)
{
  uint64_t now = uv_now(&d->loop);
  if (d->phase != PHASE_RUNNING) {
    /* A second signal: stop waiting. */
    d->phase_deadline_ms = now;
    return;
  }
  nlb_log_event(NLB_LOG_INFO,
                "shutdown (%s): stopped accepting, draining %llu flows for up "
                "to %llums",
                why, (unsigned long long)total_active_flows(d),
                (unsigned long long)d->cfg->shutdown_timeout_ms);
  nlb_router_stop_accepting(d->router);
  nlb_services_draining(d->services, d->cfg->node_name);
  nlb_services_shutdown(d->services);
  d->phase = PHASE_DRAINING;
  d->phase_deadline_ms = now + d->cfg->shutdown_timeout_ms;
}

static void log_config_errors(const char *errors)
{
  const char *line = errors;
  while (line && *line) {
    const char *end = strchr(line, '\n');
    int len = end ? (int)(end - line) : (int)strlen(line);
    nlb_log_event(NLB_LOG_ERROR, "reload rejected: %.*s", len, line);
    line = end ? end + 1 : NULL;
  }
}

static void reload(struct daemon *d)
{
  char *errors = NULL;
  char reason[512] = "";
  struct nlb_config *cfg = nlb_config_load(d->cfg->path, &errors);
  int rc;

  if (!cfg) {
    log_config_errors(errors ? errors : "out of memory\n");
    free(errors);
    return;
  }
  if (cfg->workers != d->cfg->workers)
    nlb_log_event(NLB_LOG_WARN,
                  "reload: 'workers' changed from %u to %u; this takes a "
                  "restart, keeping %u",
                  d->cfg->workers, cfg->workers, d->cfg->workers);
  if (cfg->pin_workers != d->cfg->pin_workers)
    nlb_log_event(NLB_LOG_WARN,
                  "reload: 'worker_cpu_affinity' changed; this takes a "
                  "restart, keeping the workers where they are");
  /* The running values stay in force, so the next reload compares with
   * what runs, not with what the last file asked for. */
  cfg->workers = d->cfg->workers;
  cfg->pin_workers = d->cfg->pin_workers;
  rc = nlb_router_apply(d->router, cfg, uv_now(&d->loop), reason,
                        sizeof(reason));
  if (rc < 0) {
    nlb_log_event(NLB_LOG_ERROR, "reload rejected: %s",
                  reason[0] ? reason : uv_strerror(rc));
    nlb_config_free(cfg);
    return;
  }
  rc = nlb_log_configure(cfg->log_access, cfg->log_events,
                         (enum nlb_log_level)cfg->log_level);
  if (rc < 0)
    nlb_log_event(NLB_LOG_ERROR, "reload: log files: %s; keeping the old ones",
                  uv_strerror(rc));
  nlb_health_sync(d->health);
  nlb_services_reload(d->services, cfg);
  nlb_config_free(d->cfg);
  d->cfg = cfg;
  nlb_log_event(NLB_LOG_INFO, "config reloaded from %s", cfg->path);
}

static void on_signal(uv_signal_t *handle, int signum)
{
  struct daemon *d = handle->data;
  switch (signum) {
  case SIGHUP:
    if (d->phase == PHASE_RUNNING)
      reload(d);
    break;
  case SIGUSR1:
    nlb_log_reopen();
    nlb_log_event(NLB_LOG_INFO, "log files reopened");
    break;
  default:
    begin_shutdown(d, signum == SIGINT ? "SIGINT" : "SIGTERM");
    break;
  }
}

/* Many idle flows need two descriptors each: take what the hard limit
 * allows. */
static void raise_fd_limit(void)
{
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 &&
      limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

/* With worker_cpu_affinity "auto", worker i runs on the i-th CPU the
 * process may use (like NGINX's worker_cpu_affinity auto); with more
 * workers than CPUs the scheduler places them. A failed pin is only a
 * warning: the worker runs unpinned. */
static void place_workers(struct daemon *d)
{
  int cpus[256]; /* config caps workers at 256: enough for each a CPU */
  size_t n_cpus = nlb_cpus_allowed(cpus, 256);
  size_t used = 0;

  if (!d->cfg->pin_workers) {
    snprintf(d->placement, sizeof(d->placement),
             "not pinned (worker_cpu_affinity \"off\")");
    return;
  }
  if (d->n_workers > n_cpus) {
    snprintf(d->placement, sizeof(d->placement),
             "not pinned (%zu workers, %zu CPUs)", d->n_workers, n_cpus);
    return;
  }
  used = (size_t)snprintf(d->placement, sizeof(d->placement), "pinned to CPUs");
  for (size_t i = 0; i < d->n_workers; i++) {
    int rc = nlb_worker_pin(d->workers[i], cpus[i]);
    if (rc < 0) {
      nlb_log_event(NLB_LOG_WARN, "worker %zu: cannot pin to CPU %d: %s", i,
                    cpus[i], strerror(-rc));
      continue;
    }
    if (used < sizeof(d->placement))
      used += (size_t)snprintf(d->placement + used, sizeof(d->placement) - used,
                               "%s%d", i ? "," : " ", cpus[i]);
  }
}

static int start_workers(struct daemon *d)
{
  d->empty_snapshot = nlb_snapshot_alloc(0, 0);
  d->workers = calloc(d->cfg->workers, sizeof(*d->workers));
  if (!d->empty_snapshot || !d->workers)
    return -1;
  nlb_snapshot_seal(d->empty_snapshot);
  for (unsigned i = 0; i < d->cfg->workers; i++) {
    d->workers[i] = nlb_worker_start(i, d->empty_snapshot);
    if (!d->workers[i])
      return -1;
    d->n_workers++;
  }
  for (size_t i = 0; i < d->n_workers; i++)
    nlb_worker_set_peers(d->workers[i], d->workers, d->n_workers);
  place_workers(d);
  return 0;
}

static void stop_workers(struct daemon *d)
{
  for (size_t i = 0; i < d->n_workers; i++)
    nlb_worker_stop(d->workers[i]);
  free(d->workers);
  d->workers = NULL;
  d->n_workers = 0;
  nlb_snapshot_release(d->empty_snapshot);
}

int nlb_daemon_run(const char *config_path)
{
  static const int signums[4] = {SIGHUP, SIGUSR1, SIGTERM, SIGINT};
  struct daemon d = {0};
  char *errors = NULL;
  char reason[512] = "";
  int exit_code = 1;
  int rc;

  d.cfg = nlb_config_load(config_path, &errors);
  if (!d.cfg) {
    fputs(errors ? errors : "nlbd: out of memory\n", stderr);
    free(errors);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN); /* splice(2) to a closed socket raises it */
  raise_fd_limit();
  rc = nlb_log_start(d.cfg->log_access, d.cfg->log_events,
                     (enum nlb_log_level)d.cfg->log_level);
  if (rc < 0) {
    fprintf(stderr, "nlbd: cannot open log: %s\n", uv_strerror(rc));
    nlb_config_free(d.cfg);
    return 1;
  }
  uv_loop_init(&d.loop);
  /* The registry first: a SQLite file another nlbd holds must stop this
   * one before it binds any port the other serves. */
  rc = nlb_services_open(&d.loop, d.cfg, &d.services, reason, sizeof(reason));
  if (rc < 0) {
    nlb_log_event(NLB_LOG_ERROR, "%s", reason);
    fprintf(stderr, "nlbd: %s\n", reason);
    goto out_stop_workers;
  }
  if (start_workers(&d) < 0) {
    nlb_log_event(NLB_LOG_ERROR, "cannot start workers");
    goto out_stop_workers;
  }
  d.router = nlb_router_create(d.workers, d.n_workers);
  if (!d.router)
    goto out_stop_workers;
  rc = nlb_router_apply(d.router, d.cfg, uv_now(&d.loop), reason,
                        sizeof(reason));
  if (rc < 0) {
    nlb_log_event(NLB_LOG_ERROR, "%s", reason[0] ? reason : uv_strerror(rc));
    goto out_free_router;
  }
  d.health = nlb_health_start(&d.loop, d.router);
  if (!d.health)
    goto out_free_router;
  rc = nlb_services_start(d.services, d.cfg, d.router, d.health, reason,
                          sizeof(reason));
  if (rc < 0) {
    nlb_log_event(NLB_LOG_ERROR, "%s", reason);
    fprintf(stderr, "nlbd: %s\n", reason);
    nlb_health_stop(d.health);
    goto out_free_health;
  }
  for (int i = 0; i < 4; i++) {
    uv_signal_init(&d.loop, &d.signals[i]);
    d.signals[i].data = &d;
    uv_signal_start(&d.signals[i], on_signal, signums[i]);
  }
  uv_timer_init(&d.loop, &d.tick);
  d.tick.data = &d;
  uv_timer_start(&d.tick, on_tick, TICK_MS, TICK_MS);
  nlb_log_event(NLB_LOG_INFO, "nlbd %s started: %zu workers %s, config %s",
                PACKAGE_VERSION, d.n_workers, d.placement, config_path);

  uv_run(&d.loop, UV_RUN_DEFAULT);
  exit_code = 0;
  nlb_log_event(NLB_LOG_INFO, "nlbd stopped");
out_free_health:
  nlb_services_free(d.services);
  d.services = NULL;
  uv_run(&d.loop, UV_RUN_DEFAULT);
  nlb_health_free(d.health);
out_free_router:
  stop_workers(&d);
  nlb_router_free(d.router);
  d.router = NULL;
out_stop_workers:
  if (d.workers)
    stop_workers(&d);
  nlb_services_free(d.services);
  uv_run(&d.loop, UV_RUN_DEFAULT);
  uv_loop_close(&d.loop);
  nlb_log_stop();
  nlb_config_free(d.cfg);
  return exit_code;
}
