#include "build-config.h"
#include "nlb/daemon.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "nlb/control/announce.h"
#include "nlb/api.h"
#include "nlb/capacity.h"
#include "nlb/config.h"
#include "nlb/cpus.h"
#include "nlb/control/health.h"
#include "nlb/dns/dns.h"
#include "nlb/log.h"
#include "nlb/metrics.h"
#include "nlb/notify.h"
#include "nlb/control/router.h"
#include "nlb/rundir.h"
#include "nlb/control/services.h"
#include "nlb/dataplane/sockmap.h"
#include "nlb/dataplane/worker.h"
#include "nlb/upgrade.h"

#define TICK_MS 100
/* After shutdown_timeout, flows are reset; this long is left for workers
 * to do it before they are stopped regardless. */
#define RESET_GRACE_MS 2000
/* How long an upgrade's new process has to become ready: its start, and
 * its first round of health checks for targets the old one had no state
 * for (at most 10 s). */
#define UPGRADE_READY_MS 30000
#define N_SIGNALS 5

enum phase {
  PHASE_RUNNING,
  PHASE_WITHDRAWN, /* routes withdrawn, still accepting while routers
                      converge (node.withdraw_delay) */
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
  struct nlb_announce *announce;
  uv_signal_t signals[N_SIGNALS];
  uv_timer_t tick;
  enum phase phase;
  uint64_t phase_deadline_ms;
  const char *shutdown_why;
  uint64_t max_flows; /* in force on the workers */
  bool accepting;     /* the first round of checks is over */
  bool handed_over;   /* an upgrade's new process took the sockets */
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
  for (int i = 0; i < N_SIGNALS; i++)
    uv_close((uv_handle_t *)&d->signals[i], NULL);
  uv_close((uv_handle_t *)&d->tick, NULL);
  nlb_health_stop(d->health);
  nlb_services_shutdown(d->services);
}

static void begin_shutdown(struct daemon *d, const char *why);
static void stop_accepting(struct daemon *d, uint64_t now);

/* Flows the node can hold now: the descriptor limit less a reserve that
 * follows the listeners, targets and DNS responders (endpoints and reloads
 * change them). max_flows in the config, when set, is the limit instead.
 * The DNS responders' TCP connections are held to their part of the
 * reserve. The first time and after a reload it says so in the log. */
static void apply_capacity(struct daemon *d, bool log)
{
  struct rlimit limit = {0};
  struct nlb_capacity_input in = {0};
  struct nlb_capacity cap;
  uint64_t max;

  getrlimit(RLIMIT_NOFILE, &limit);
  in.fd_limit = limit.rlim_cur;
  in.workers = (unsigned)d->n_workers;
  in.listeners = nlb_router_listening_sockets(d->router);
  for (size_t g = 0; g < nlb_router_group_count(d->router); g++)
    in.targets += nlb_router_group(d->router, g)->n_targets;
  in.api_connections = d->cfg->has_api ? API_MAX_CONNECTIONS : 0;
  for (size_t i = 0; d->cfg->has_dns && i < d->cfg->n_networks; i++)
    in.dns_networks += d->cfg->networks[i].has_dns;
  in.dns_connections = in.dns_networks * NLB_DNS_TCP_CONNECTIONS_MAX;
  nlb_capacity_compute(&in, &cap);
  max = d->cfg->max_flows ? d->cfg->max_flows : cap.max_flows;
  nlb_worker_set_pipe_budget(cap.pipe_fds);
  nlb_dns_set_tcp_budget(cap.dns_connections);
  if (max != d->max_flows) {
    for (size_t i = 0; i < d->n_workers; i++)
      nlb_worker_set_max_flows(d->workers[i], max ? max : 1);
    d->max_flows = max;
    nlb_metrics_set_max_flows(max);
  }
  if (!log)
    return;
  NLB_LOG_EVENT(NLB_LOG_INFO, "flow_capacity",
                "flow capacity: {max_flows} flows{set_by} (descriptor limit "
                "{fd_limit}: {reserve} kept for listeners, health checks, the "
                "API, DNS ({dns_tcp} TCP connections) and logs, {pipe_fds} "
                "for splice pipes, 2 per flow)",
                NLB_LOG_UINT("max_flows", max),
                NLB_LOG_STR("set_by", d->cfg->max_flows
                                          ? " (max_flows in the config)"
                                          : ""),
                NLB_LOG_UINT("fd_limit", in.fd_limit),
                NLB_LOG_UINT("reserve", cap.reserve),
                NLB_LOG_UINT("dns_tcp", cap.dns_connections),
                NLB_LOG_UINT("pipe_fds", cap.pipe_fds),
                NLB_LOG_UINT("capacity", cap.max_flows));
  if (d->cfg->max_flows > cap.max_flows)
    NLB_LOG_EVENT(NLB_LOG_WARN, "flow_capacity_exceeded",
                  "max_flows {max_flows} is more than the descriptor limit "
                  "{fd_limit} leaves room for ({capacity}): before the limit "
                  "refuses flows, accept, health checks or the API may fail "
                  "for want of descriptors",
                  NLB_LOG_UINT("max_flows", d->cfg->max_flows),
                  NLB_LOG_UINT("fd_limit", in.fd_limit),
                  NLB_LOG_UINT("capacity", cap.max_flows));
}

static void on_tick(uv_timer_t *timer)
{
  struct daemon *d = timer->data;
  uint64_t now = uv_now(&d->loop);

  switch (d->phase) {
  case PHASE_RUNNING:
    nlb_health_tick(d->health, now);
    nlb_router_tick(d->router, now);
    nlb_services_tick(d->services, now);
    apply_capacity(d, false);
    if (nlb_services_drain_requested(d->services))
      begin_shutdown(d, "drain requested through the API");
    break;
  case PHASE_WITHDRAWN:
    if (now >= d->phase_deadline_ms)
      stop_accepting(d, now);
    break;
  case PHASE_DRAINING:
    if (total_active_flows(d) == 0) {
      NLB_LOG_EVENT(NLB_LOG_INFO, "shutdown_drained",
                    "shutdown: all flows ended");
      close_control_handles(d);
    } else if (now >= d->phase_deadline_ms) {
      NLB_LOG_EVENT(NLB_LOG_INFO, "shutdown_timeout",
                    "shutdown: timeout, resetting {flows} remaining flows",
                    NLB_LOG_UINT("flows", total_active_flows(d)));
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

static void stop_accepting(struct daemon *d, uint64_t now)
{
  char status[64];

  NLB_LOG_EVENT(NLB_LOG_INFO, "shutdown",
                "shutdown ({signal}): stopped accepting, draining {flows} "
                "flows for up to {timeout_ms}ms",
                NLB_LOG_STR("signal", d->shutdown_why),
                NLB_LOG_UINT("flows", total_active_flows(d)),
                NLB_LOG_UINT("timeout_ms", d->cfg->shutdown_timeout_ms));
  snprintf(status, sizeof(status), "draining %llu flows",
           (unsigned long long)total_active_flows(d));
  nlb_notify_stopping(status);
  nlb_router_stop_accepting(d->router);
  d->phase = PHASE_DRAINING;
  d->phase_deadline_ms = now + d->cfg->shutdown_timeout_ms;
}

/* When announcing: withdraw first, so that routers send new flows
 * elsewhere; keep accepting what still comes while they converge; then
 * stop accepting and let the flows finish. */
static void begin_shutdown(struct daemon *d, const char *why)
{
  uint64_t now = uv_now(&d->loop);
  size_t withdrawn;

  if (nlb_upgrade_running()) {
    nlb_upgrade_cancel();
    NLB_LOG_EVENT(NLB_LOG_WARN, "upgrade_failed",
                  "upgrade: given up, nlbd is stopping ({signal}); the new "
                  "process was killed",
                  NLB_LOG_STR("signal", why), NLB_LOG_INT("old_pid", getpid()));
    nlb_rundir_upgrade_state("failed", "nlbd is stopping");
  }
  if (d->phase != PHASE_RUNNING) {
    /* A second signal: stop waiting. */
    if (d->phase == PHASE_WITHDRAWN)
      stop_accepting(d, now);
    d->phase_deadline_ms = now;
    return;
  }
  d->shutdown_why = why;
  if (!d->announce) {
    stop_accepting(d, now);
  } else {
    withdrawn = nlb_announce_withdraw(d->announce);
    NLB_LOG_EVENT(NLB_LOG_INFO, "shutdown_withdrawn",
                  "shutdown ({signal}): withdrew {announcements} "
                  "announcements, accepting for {delay_ms}ms more while "
                  "routers converge",
                  NLB_LOG_STR("signal", why),
                  NLB_LOG_UINT("announcements", withdrawn),
                  NLB_LOG_UINT("delay_ms", d->cfg->withdraw_delay_ms));
    nlb_notify_stopping("routes withdrawn, still accepting");
    d->phase = PHASE_WITHDRAWN;
    d->phase_deadline_ms = now + d->cfg->withdraw_delay_ms;
  }
  nlb_services_draining(d->services, d->cfg->node_name);
  nlb_services_shutdown(d->services);
}

static struct nlb_log_settings log_settings(const struct nlb_config *cfg)
{
  return (struct nlb_log_settings){
      .access = cfg->log_access,
      .events = cfg->log_events,
      .level = (enum nlb_log_level)cfg->log_level,
      .events_json = cfg->log_events_format == NLB_LOG_JSON,
      .stderr_priority = cfg->log_priority_prefix,
  };
}

static void log_config_errors(const char *errors)
{
  const char *line = errors;
  while (line && *line) {
    const char *end = strchr(line, '\n');
    int len = end ? (int)(end - line) : (int)strlen(line);
    char error[512];
    snprintf(error, sizeof(error), "%.*s", len, line);
    NLB_LOG_EVENT(NLB_LOG_ERROR, "reload", "reload rejected: {error}",
                  NLB_LOG_BOOL("success", false), NLB_LOG_STR("error", error));
    line = end ? end + 1 : NULL;
  }
}

/* What forwarding cfg asks for anywhere: sockmap (needs the program),
 * auto (wants it), or splice only. */
static enum nlb_forwarding forwarding_wanted(const struct nlb_config *cfg)
{
  enum nlb_forwarding wanted = cfg->forwarding;

  for (size_t i = 0; i < cfg->n_load_balancers; i++)
    for (size_t j = 0; j < cfg->load_balancers[i].n_listeners; j++) {
      enum nlb_forwarding f = cfg->load_balancers[i].listeners[j].forwarding;
      if (f == NLB_FORWARDING_SOCKMAP ||
          (f == NLB_FORWARDING_AUTO && wanted == NLB_FORWARDING_SPLICE))
        wanted = f;
    }
  return wanted;
}

int nlb_daemon_check_forwarding(const struct nlb_config *cfg, char *why,
                                size_t why_size)
{
  if (forwarding_wanted(cfg) != NLB_FORWARDING_SOCKMAP || nlb_sockmap_built())
    return 0;
  /* The same words as a start would say (nlb_sockmap_load). */
  char error[256];
  nlb_sockmap_load(0, error, sizeof(error));
  snprintf(why, why_size, "forwarding = \"sockmap\": %s", error);
  return -ENOTSUP;
}

/* What the start event says of forwarding: the top level's, resolved
 * ("auto" says which it became). */
static const char *forwarding_in_use(const struct nlb_config *cfg)
{
  if (cfg->forwarding == NLB_FORWARDING_AUTO)
    return nlb_sockmap_loaded() ? "sockmap (auto)" : "splice (auto)";
  return nlb_forwarding_name(cfg->forwarding);
}

/* Loads the sockmap program where cfg's forwarding asks for it, before
 * the router applies cfg (its listeners' "auto" follows the outcome). Its
 * maps are sized for max_flows, else for what the descriptor limit allows.
 * Returns 0, or a negative errno with the reason in why where "sockmap"
 * is asked and cannot be had; "auto" then says once that flows are
 * spliced. */
static int load_forwarding(const struct nlb_config *cfg, char *why,
                           size_t why_size)
{
  static bool said;
  enum nlb_forwarding wanted = forwarding_wanted(cfg);
  struct rlimit limit = {0};
  char error[256];
  uint64_t flows = cfg->max_flows;
  int rc;

  if (wanted == NLB_FORWARDING_SPLICE || nlb_sockmap_loaded())
    return 0;
  if (!flows) {
    getrlimit(RLIMIT_NOFILE, &limit);
    flows = limit.rlim_cur / 2;
  }
  rc = nlb_sockmap_load(flows, error, sizeof(error));
  if (rc == 0)
    return 0;
  if (wanted == NLB_FORWARDING_SOCKMAP) {
    snprintf(why, why_size, "forwarding = \"sockmap\": %s", error);
    return rc;
  }
  if (!said)
    NLB_LOG_EVENT(NLB_LOG_WARN, "sockmap_unavailable",
                  "forwarding = \"auto\": {error}; TCP flows are spliced",
                  NLB_LOG_STR("error", error));
  said = true;
  return 0;
}

/* Loads the config again and applies it. Returns 0, or -1 with the first
 * reason in why (every reason is logged). */
static int reload(struct daemon *d, char *why, size_t why_size)
{
  char *errors = NULL;
  char reason[512] = "";
  struct nlb_config *cfg = nlb_config_load(d->cfg->path, &errors);
  struct nlb_log_settings log;
  int rc;

  if (!cfg) {
    const char *text = errors ? errors : "out of memory\n";
    snprintf(why, why_size, "%.*s", (int)strcspn(text, "\n"), text);
    log_config_errors(text);
    free(errors);
    return -1;
  }
  if (cfg->workers != d->cfg->workers)
    NLB_LOG_EVENT(NLB_LOG_WARN, "reload_needs_restart",
                  "reload: 'workers' changed from {running} to {wanted}; "
                  "this takes a restart, keeping {running}",
                  NLB_LOG_STR("setting", "workers"),
                  NLB_LOG_UINT("running", d->cfg->workers),
                  NLB_LOG_UINT("wanted", cfg->workers));
  if (cfg->pin_workers != d->cfg->pin_workers)
    NLB_LOG_EVENT(NLB_LOG_WARN, "reload_needs_restart",
                  "reload: '{setting}' changed; this takes a restart, "
                  "keeping the workers where they are",
                  NLB_LOG_STR("setting", "worker_cpu_affinity"));
  /* The running values stay in force, so the next reload compares with
   * what runs, not with what the last file asked for. */
  cfg->workers = d->cfg->workers;
  cfg->pin_workers = d->cfg->pin_workers;
  rc = load_forwarding(cfg, reason, sizeof(reason));
  if (rc == 0)
    rc = nlb_router_apply(d->router, cfg, uv_now(&d->loop), reason,
                          sizeof(reason));
  if (rc < 0) {
    snprintf(why, why_size, "%s", reason[0] ? reason : uv_strerror(rc));
    NLB_LOG_EVENT(NLB_LOG_ERROR, "reload", "reload rejected: {error}",
                  NLB_LOG_BOOL("success", false), NLB_LOG_STR("error", why));
    nlb_config_free(cfg);
    return -1;
  }
  log = log_settings(cfg);
  rc = nlb_log_configure(&log);
  if (rc < 0)
    NLB_LOG_EVENT(NLB_LOG_ERROR, "log_open_failed",
                  "reload: log files: {error}; keeping the old ones",
                  NLB_LOG_STR("error", uv_strerror(rc)));
  nlb_health_sync(d->health);
  nlb_services_reload(d->services, cfg);
  nlb_announce_reload(d->announce, cfg);
  nlb_config_free(d->cfg);
  d->cfg = cfg;
  apply_capacity(d, true);
  snprintf(why, why_size, "config reloaded from %s", cfg->path);
  NLB_LOG_EVENT(NLB_LOG_INFO, "reload", "config reloaded from {config}",
                NLB_LOG_BOOL("success", true),
                NLB_LOG_STR("config", cfg->path));
  return 0;
}

/* A SIGHUP: the reload, and its outcome told to systemd, the metrics and
 * the run directory (where nlbd -s reload waits for it). */
static void on_reload_signal(struct daemon *d)
{
  char why[512] = "", status[600];
  bool applied;

  /* Before accepting starts, systemd has not had READY=1 yet: it comes
   * when accepting starts, whatever reloads came before. */
  if (d->accepting)
    nlb_notify_reloading();
  applied = reload(d, why, sizeof(why)) == 0;
  nlb_metrics_config_loaded(applied);
  nlb_rundir_loaded(applied, why);
  snprintf(status, sizeof(status), "%s%s",
           applied ? "running; "
                   : "running "
                     "the previous config; reload rejected: ",
           why);
  if (d->accepting)
    nlb_notify_ready(status);
}

/* The new process is ready (new_pid) or failed (error). Ready: it
 * accepts from the same sockets; this one closes its copies (close, not
 * shutdown, which would stop the new one's listening too), ends the API's
 * connections and event streams (GOAWAY: clients reconnect, to the new
 * one) and lets its flows finish for up to shutdown_timeout. Its registry
 * record and announcements are the new one's now: untouched. */
static void on_upgrade_done(void *arg, pid_t new_pid, const char *error)
{
  struct daemon *d = arg;
  char text[1200];
  uint64_t now = uv_now(&d->loop);

  if (!new_pid) {
    NLB_LOG_EVENT(NLB_LOG_ERROR, "upgrade_failed",
                  "upgrade: the new nlbd failed, this one goes on serving: "
                  "{error}",
                  NLB_LOG_STR("error", error),
                  NLB_LOG_INT("old_pid", getpid()));
    nlb_rundir_upgrade_state("failed", error);
    return;
  }
  snprintf(text, sizeof(text),
           "new nlbd pid %ld serving; pid %ld drains %llu "
           "flows",
           (long)new_pid, (long)getpid(),
           (unsigned long long)total_active_flows(d));
  NLB_LOG_EVENT(NLB_LOG_INFO, "upgrade_handed_over",
                "upgrade: pid {new_pid} serves; stopped accepting, draining "
                "{flows} flows for up to {timeout_ms}ms",
                NLB_LOG_INT("old_pid", getpid()),
                NLB_LOG_INT("new_pid", new_pid),
                NLB_LOG_UINT("flows", total_active_flows(d)),
                NLB_LOG_UINT("timeout_ms", d->cfg->shutdown_timeout_ms));
  nlb_rundir_upgrade_state("handed_over", text);
  /* nlbd.pid and the state files are the new one's now. */
  nlb_rundir_forget();
  nlb_metrics_set_upgrade(nlb_upgrade_generation(), true);
  d->handed_over = true;
  d->shutdown_why = "upgrade";
  nlb_router_stop_accepting(d->router);
  nlb_services_hand_over(d->services);
  d->phase = PHASE_DRAINING;
  d->phase_deadline_ms = now + d->cfg->shutdown_timeout_ms;
}

/* A SIGUSR2 (nlbd -s upgrade): start the binary at our path and hand it
 * our sockets; the outcome goes to the run directory. */
static void on_upgrade_signal(struct daemon *d)
{
  char err[512];
  int rc;

  if (d->phase != PHASE_RUNNING || !d->accepting || nlb_upgrade_running()) {
    const char *why = nlb_upgrade_running() ? "an upgrade is already under way"
                      : d->phase != PHASE_RUNNING
                          ? "nlbd is stopping"
                          : "nlbd does not accept yet (first health checks)";
    NLB_LOG_EVENT(NLB_LOG_WARN, "upgrade_refused", "upgrade refused: {error}",
                  NLB_LOG_STR("error", why), NLB_LOG_INT("old_pid", getpid()));
    nlb_rundir_upgrade_state("refused", why);
    return;
  }
  rc = nlb_upgrade_start(&d->loop, d->router, UPGRADE_READY_MS, on_upgrade_done,
                         d, err, sizeof(err));
  if (rc < 0) {
    on_upgrade_done(d, 0, err);
    return;
  }
  nlb_rundir_upgrade_state("started", "the new nlbd is starting");
}

static void on_signal(uv_signal_t *handle, int signum)
{
  struct daemon *d = handle->data;
  switch (signum) {
  case SIGHUP:
    if (d->phase == PHASE_RUNNING)
      on_reload_signal(d);
    break;
  case SIGUSR1:
    nlb_log_reopen();
    NLB_LOG_EVENT(NLB_LOG_INFO, "log_reopen", "log files reopened");
    break;
  case SIGUSR2:
    on_upgrade_signal(d);
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
      NLB_LOG_EVENT(NLB_LOG_WARN, "worker_pin_failed",
                    "worker {worker}: cannot pin to CPU {cpu}: {error}",
                    NLB_LOG_UINT("worker", i), NLB_LOG_INT("cpu", cpus[i]),
                    NLB_LOG_STR("error", strerror(-rc)));
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

/* The pool a new process serves from reflects every target's first
 * answer: until then, connections wait in the listeners' backlogs (none
 * is refused), rather than all going to the first target to pass or
 * spreading over targets found dead a moment later. */
static void on_first_round(void *arg, const struct nlb_health_first_round *r)
{
  struct daemon *d = arg;
  char status[128];

  if (d->phase != PHASE_RUNNING)
    return; /* shutting down already: never accepted, nothing to start */
  d->accepting = true;
  for (size_t i = 0; i < d->n_workers; i++)
    nlb_worker_start_accepting(d->workers[i]);
  snprintf(status, sizeof(status), "running: %zu workers, %zu listeners",
           d->n_workers, nlb_router_listener_count(d->router));
  /* The old process stops accepting when told: the kernel's queues are
   * shared, so what it leaves there, this one takes. */
  nlb_upgrade_ready();
  nlb_notify_ready(status);
  NLB_LOG_EVENT(NLB_LOG_INFO, "accepting",
                "accepting after the first round of health checks "
                "({elapsed_ms} ms): {healthy} of {targets} targets healthy, "
                "{unanswered} without an answer",
                NLB_LOG_UINT("elapsed_ms", r->elapsed_ms),
                NLB_LOG_UINT("healthy", r->healthy),
                NLB_LOG_UINT("targets", r->targets),
                NLB_LOG_UINT("unanswered", r->targets - r->answered));
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

int nlb_daemon_run(const char *config_path, const char *run_dir)
{
  static const int signums[N_SIGNALS] = {SIGHUP, SIGUSR1, SIGUSR2, SIGTERM,
                                         SIGINT};
  struct daemon d = {0};
  char *errors = NULL;
  char reason[512] = "";
  int exit_code = 1;
  struct nlb_log_settings log;
  int rc;

  d.cfg = nlb_config_load(config_path, &errors);
  if (!d.cfg) {
    fputs(errors ? errors : "nlbd: out of memory\n", stderr);
    free(errors);
    return 2;
  }
  /* An upgrade's new process: the old one's sockets and health states,
   * before anything would open its own. */
  rc = nlb_upgrade_receive(reason, sizeof(reason));
  if (rc < 0) {
    fprintf(stderr, "nlbd: %s\n", reason);
    nlb_upgrade_failed(reason);
    nlb_config_free(d.cfg);
    return 1;
  }
  nlb_metrics_set_upgrade(nlb_upgrade_generation(), false);
  signal(SIGPIPE, SIG_IGN); /* splice(2) to a closed socket raises it */
  raise_fd_limit();
  /* An API page of 1,000 endpoints makes arrays of hundreds of KiB that
   * glibc would get from mmap and give back at once, or trim off the heap
   * each time: half of the page's CPU went to page faults (41 ms, 16 ms
   * without). Keep up to 64 MiB of freed heap and serve allocations up to
   * 32 MiB from it. The API hands freed memory back (malloc_trim) once the
   * clients that made it hold some have left (api/server.c), so that a
   * burst of them does not stay nlbd's size. */
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
  log = log_settings(d.cfg);
  rc = nlb_log_start(&log);
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
    NLB_LOG_EVENT(NLB_LOG_ERROR, "start_failed", "{error}",
                  NLB_LOG_STR("error", reason));
    goto out_stop_workers;
  }
  if (start_workers(&d) < 0) {
    NLB_LOG_EVENT(NLB_LOG_ERROR, "start_failed", "cannot start workers");
    goto out_stop_workers;
  }
  d.router = nlb_router_create(d.workers, d.n_workers);
  if (!d.router)
    goto out_stop_workers;
  rc = load_forwarding(d.cfg, reason, sizeof(reason));
  if (rc == 0)
    rc = nlb_router_apply(d.router, d.cfg, uv_now(&d.loop), reason,
                          sizeof(reason));
  if (rc < 0) {
    if (!reason[0])
      snprintf(reason, sizeof(reason), "%s", uv_strerror(rc));
    NLB_LOG_EVENT(NLB_LOG_ERROR, "start_failed", "{error}",
                  NLB_LOG_STR("error", reason));
    goto out_free_router;
  }
  d.health = nlb_health_start(&d.loop, d.router);
  if (!d.health)
    goto out_free_router;
  rc = nlb_services_start(d.services, d.cfg, d.router, d.health, reason,
                          sizeof(reason));
  if (rc < 0) {
    NLB_LOG_EVENT(NLB_LOG_ERROR, "start_failed", "{error}",
                  NLB_LOG_STR("error", reason));
    nlb_health_stop(d.health);
    goto out_free_health;
  }
  for (int i = 0; i < N_SIGNALS; i++) {
    uv_signal_init(&d.loop, &d.signals[i]);
    d.signals[i].data = &d;
    uv_signal_start(&d.signals[i], on_signal, signums[i]);
  }
  uv_timer_init(&d.loop, &d.tick);
  d.tick.data = &d;
  uv_timer_start(&d.tick, on_tick, TICK_MS, TICK_MS);
  nlb_metrics_config_loaded(true);
  /* Now that SIGHUP reloads: before, nlbd -s reload would kill nlbd. */
  rc = run_dir ? nlb_rundir_start(run_dir, nlb_upgrade_old_pid()) : 0;
  if (rc < 0)
    snprintf(reason, sizeof(reason), "run directory %s: %s", run_dir,
             rc == -EBUSY ? "another nlbd runs with it (its nlbd.pid)"
                          : strerror(-rc));
  /* Announced last: routers send flows here once everything is open. */
  if (rc == 0)
    rc = nlb_announce_start(d.cfg, &d.announce, reason, sizeof(reason));
  if (rc < 0) {
    NLB_LOG_EVENT(NLB_LOG_ERROR, "start_failed", "{error}",
                  NLB_LOG_STR("error", reason));
    close_control_handles(&d);
  } else {
    apply_capacity(&d, true);
    nlb_rundir_loaded(true, "started");
    NLB_LOG_EVENT(NLB_LOG_INFO, "start",
                  "nlbd {version} started: {workers} workers {placement}, "
                  "forwarding {forwarding}, config {config}",
                  NLB_LOG_STR("version", PACKAGE_VERSION),
                  NLB_LOG_UINT("workers", d.n_workers),
                  NLB_LOG_STR("placement", d.placement),
                  NLB_LOG_STR("forwarding", forwarding_in_use(d.cfg)),
                  NLB_LOG_STR("config", config_path));
    /* Targets the old process had checked start where it left them: no
     * flow waits for a first round they already had. */
    nlb_upgrade_apply_health(d.router, uv_now(&d.loop));
    nlb_health_await_first_round(d.health, on_first_round, &d);
  }
  uv_run(&d.loop, UV_RUN_DEFAULT);
  if (rc == 0) {
    exit_code = 0;
    reason[0] = '\0';
  }
  nlb_announce_free(d.announce);
  NLB_LOG_EVENT(
      NLB_LOG_INFO, "stop", "nlbd stopped{after}",
      NLB_LOG_STR("after", d.handed_over ? " (upgraded: handed over)" : ""));
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
  nlb_rundir_stop();
  nlb_log_stop();
  /* Said once more where whoever started nlbd looks, now that the log
   * writer has stopped and nothing else writes to stderr. */
  if (reason[0] && strcmp(d.cfg->log_events, "stderr") != 0)
    fprintf(stderr, "nlbd: %s\n", reason);
  if (reason[0])
    nlb_upgrade_failed(reason); /* when an upgrade's, the old one says it */
  nlb_config_free(d.cfg);
  return exit_code;
}
