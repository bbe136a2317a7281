#include "build-config.h"
#include "nlb/metrics.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "nlb/common/histogram.h"
#include "nlb/dataplane/sockmap.h"
#include "nlb/log.h"
#include "nlb/control/router.h"
#include "nlb/dataplane/snapshot.h"
#include "nlb/dataplane/target.h"
#include "nlb/common/text.h"
#include "nlb/common/tls_server.h"

static struct {
  bool last_success;
  time_t last_success_time;
} config_state;

static struct {
  unsigned generation;
  bool handing_over;
} upgrade_state;

void nlb_metrics_set_upgrade(unsigned generation, bool handing_over)
{
  upgrade_state.generation = generation;
  upgrade_state.handing_over = handing_over;
}

void nlb_metrics_config_loaded(bool success)
{
  config_state.last_success = success;
  if (success)
    config_state.last_success_time = time(NULL);
}

/* ---- text ---- */

static void family(struct nlb_text *t, const char *name, const char *type,
                   const char *help)
{
  nlb_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: \, " and newline escaped (names are checked by the
 * config and the registry, but the text must parse whatever they hold). */
static void label_value(char *buf, size_t size, const char *value)
{
  size_t n = 0;
  for (const char *c = value; *c && n + 3 < size; c++) {
    if (*c == '\\' || *c == '"' || *c == '\n')
      buf[n++] = '\\';
    buf[n++] = *c == '\n' ? 'n' : *c;
  }
  buf[n] = '\0';
}

/* ---- series ---- */

/* The labels of one series, written once per listener or target. */
struct series {
  char labels[320];
  const struct nlb_flow_counters *counters;
  const struct nlb_histogram *histogram;
  const struct nlb_listener_stats *stats; /* a listener's */
  const struct nlb_tls_server *tls;       /* a TLS listener's */
};

static void listener_series(struct series *s,
                            const struct nlb_router_listener *l)
{
  char lb[128], endpoint[96];
  label_value(lb, sizeof(lb), l->lb_name);
  if (l->endpoint_id) {
    label_value(endpoint, sizeof(endpoint), l->endpoint_id);
    snprintf(s->labels, sizeof(s->labels),
             "lb=\"%s\",listener=\"%u\",endpoint=\"%s\"", lb, l->port,
             endpoint);
  } else {
    snprintf(s->labels, sizeof(s->labels), "lb=\"%s\",listener=\"%u\"", lb,
             l->port);
  }
  s->counters = &l->stats->counters;
  s->histogram = &l->stats->flow_duration;
  s->stats = l->stats;
  s->tls = l->tls;
}

static void target_series(struct series *s, const struct nlb_group *group,
                          const struct nlb_target *target)
{
  char name[128], address[96];
  label_value(name, sizeof(name), group->name);
  label_value(address, sizeof(address), target->name);
  snprintf(s->labels, sizeof(s->labels), "target_group=\"%s\",target=\"%s\"",
           name, address);
  s->counters = &target->counters;
  s->histogram = &target->connect_time;
}

static bool in_list(const char *name, const char *const *list, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp(list[i], name) == 0)
      return true;
  return false;
}

static bool in_scope(const struct nlb_router_listener *l,
                     const struct nlb_metrics_scope *scope)
{
  if (!scope)
    return true;
  if (l->endpoint_id)
    return in_list(l->endpoint_id, scope->endpoints, scope->n_endpoints);
  return in_list(l->lb_name, scope->load_balancers, scope->n_load_balancers);
}

/* The listeners, then the targets, of a scrape. */
static struct series *collect_series(struct nlb_router *router,
                                     const struct nlb_metrics_scope *scope,
                                     size_t *n_listeners, size_t *n_targets)
{
  size_t n_all = nlb_router_listener_count(router), n = 0, k = 0;
  struct series *series;

  for (size_t g = 0; g < nlb_router_group_count(router); g++)
    n_all += nlb_router_group(router, g)->n_targets;
  series = calloc(n_all ? n_all : 1, sizeof(*series));
  if (!series)
    return NULL;
  for (size_t i = 0; i < nlb_router_listener_count(router); i++) {
    struct nlb_router_listener l;
    nlb_router_listener(router, i, &l);
    if (in_scope(&l, scope))
      listener_series(&series[n++], &l);
  }
  for (size_t g = 0; g < nlb_router_group_count(router) && !scope; g++) {
    const struct nlb_group *group = nlb_router_group(router, g);
    for (size_t i = 0; i < group->n_targets; i++)
      target_series(&series[n + k++], group, group->targets[i]);
  }
  *n_listeners = n;
  *n_targets = k;
  return series;
}

enum counter {
  ACTIVE_FLOWS,
  NEW_FLOWS,
  CLIENT_RESETS,
  TARGET_RESETS,
  LB_RESETS,
  CONNECT_FAILURES,
  N_COUNTERS,
};

static const struct {
  const char *name; /* the listener family; "nlb_target_" + name + 4 the
                       target family */
  const char *type;
  const char *help;
} counters[N_COUNTERS] = {
    {"nlb_active_flows", "gauge", "Flows open now"},
    {"nlb_new_flows_total", "counter",
     "Flows accepted (listener) or connected (target)"},
    {"nlb_client_resets_total", "counter", "Flows the client reset"},
    {"nlb_target_resets_total", "counter", "Flows the target reset"},
    {"nlb_lb_resets_total", "counter",
     "Flows nlb reset (timeouts, denials, failed connects, shutdown)"},
    {"nlb_connect_failures_total", "counter", "Failed connects to targets"},
};

static uint64_t counter_value(const struct nlb_flow_counters *c,
                              enum counter which)
{
  switch (which) {
  case ACTIVE_FLOWS:
    return atomic_load(&c->active_flows);
  case NEW_FLOWS:
    return atomic_load(&c->new_flows);
  case CLIENT_RESETS:
    return atomic_load(&c->client_resets);
  case TARGET_RESETS:
    return atomic_load(&c->target_resets);
  case LB_RESETS:
    return atomic_load(&c->lb_resets);
  default:
    return atomic_load(&c->connect_failures);
  }
}

static void counter_family(struct nlb_text *t, const char *name,
                           enum counter which, const char *per,
                           const struct series *series, size_t n)
{
  char help[160];
  snprintf(help, sizeof(help), "%s, per %s.", counters[which].help, per);
  family(t, name, counters[which].type, help);
  for (size_t i = 0; i < n; i++)
    nlb_text_printf(
        t, "%s{%s} %llu\n", name, series[i].labels,
        (unsigned long long)counter_value(series[i].counters, which));
}

static void bytes_family(struct nlb_text *t, const char *name, const char *per,
                         const struct series *series, size_t n)
{
  char help[160];
  snprintf(help, sizeof(help),
           "Bytes carried, per %s and direction (up: client to target).", per);
  family(t, name, "counter", help);
  for (size_t i = 0; i < n; i++)
    nlb_text_printf(
        t, "%s{%s,direction=\"up\"} %llu\n%s{%s,direction=\"down\"} %llu\n",
        name, series[i].labels,
        (unsigned long long)atomic_load(&series[i].counters->bytes_up), name,
        series[i].labels,
        (unsigned long long)atomic_load(&series[i].counters->bytes_down));
}

static void histogram_family(struct nlb_text *t, const char *name,
                             const char *help, const uint64_t *bounds_ms,
                             const struct series *series, size_t n)
{
  family(t, name, "histogram", help);
  for (size_t i = 0; i < n; i++) {
    const struct nlb_histogram *h = series[i].histogram;
    uint64_t total = 0;
    for (size_t b = 0; b <= NLB_HISTOGRAM_BOUNDS; b++) {
      total += atomic_load(&h->count[b]);
      if (b < NLB_HISTOGRAM_BOUNDS)
        nlb_text_printf(t, "%s_bucket{%s,le=\"%g\"} %llu\n", name,
                        series[i].labels, (double)bounds_ms[b] / 1000,
                        (unsigned long long)total);
      else
        nlb_text_printf(t, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name,
                        series[i].labels, (unsigned long long)total);
    }
    nlb_text_printf(t, "%s_sum{%s} %.3f\n%s_count{%s} %llu\n", name,
                    series[i].labels, (double)atomic_load(&h->sum_ms) / 1000,
                    name, series[i].labels, (unsigned long long)total);
  }
}

static void listener_families(struct nlb_text *t, const struct series *series,
                              size_t n)
{
  for (int c = 0; c < N_COUNTERS; c++) {
    counter_family(t, counters[c].name, (enum counter)c, "listener", series, n);
    if (c == NEW_FLOWS)
      bytes_family(t, "nlb_processed_bytes_total", "listener", series, n);
  }
  histogram_family(t, "nlb_flow_duration_seconds",
                   "Flows by duration, from accept to close, per listener.",
                   nlb_flow_duration_bounds_ms, series, n);
}

/* TLS listeners: handshakes by result, their time, and when each
 * certificate expires. */
static void tls_families(struct nlb_text *t, const struct series *series,
                         size_t n)
{
  static const char *const results[NLB_TLS_RESULTS] = {
      [NLB_TLS_OK] = "ok",           [NLB_TLS_RESUMED] = "resumed",
      [NLB_TLS_FAILED] = "failed",   [NLB_TLS_TIMEOUT] = "timeout",
      [NLB_TLS_REFUSED] = "refused", [NLB_TLS_TARGET_FAILED] = "target_failed"};
  struct series *tls = calloc(n ? n : 1, sizeof(*tls));
  size_t k = 0;

  if (!tls)
    return;
  for (size_t i = 0; i < n; i++)
    if (series[i].tls) {
      tls[k] = series[i];
      tls[k++].histogram = &series[i].stats->tls_handshake_time;
    }
  if (k == 0) {
    free(tls);
    return;
  }
  family(t, "nlb_tls_handshakes_total", "counter",
         "TLS handshakes per listener, by result: ok (full), resumed, failed, "
         "timeout, refused (over max_pending_handshakes), target_failed "
         "(the re-encrypting handshake with a target).");
  for (size_t i = 0; i < k; i++)
    for (int r = 0; r < NLB_TLS_RESULTS; r++)
      nlb_text_printf(
          t, "nlb_tls_handshakes_total{%s,result=\"%s\"} %llu\n", tls[i].labels,
          results[r],
          (unsigned long long)atomic_load(&tls[i].stats->tls_handshakes[r]));
  histogram_family(t, "nlb_tls_handshake_seconds",
                   "Client TLS handshakes by time, from accept to done, per "
                   "listener.",
                   nlb_connect_time_bounds_ms, tls, k);
  family(t, "nlb_tls_certificate_expiry_timestamp_seconds", "gauge",
         "When each certificate of a TLS listener expires (notAfter), since "
         "the Unix epoch.");
  for (size_t i = 0; i < k; i++) {
    const char *file;
    int64_t not_after;
    char label[512];
    for (size_t c = 0;
         nlb_tls_server_certificate(tls[i].tls, c, &file, &not_after); c++) {
      label_value(label, sizeof(label), file);
      nlb_text_printf(
          t,
          "nlb_tls_certificate_expiry_timestamp_seconds{%s,certificate=\"%s\"} "
          "%lld\n",
          tls[i].labels, label, (long long)not_after);
    }
  }
  free(tls);
}

static void target_families(struct nlb_text *t, const struct series *series,
                            size_t n)
{
  char name[64];
  for (int c = 0; c < N_COUNTERS; c++) {
    snprintf(name, sizeof(name), "nlb_target_%s", counters[c].name + 4);
    counter_family(t, name, (enum counter)c, "target", series, n);
    if (c == NEW_FLOWS)
      bytes_family(t, "nlb_target_processed_bytes_total", "target", series, n);
  }
  histogram_family(t, "nlb_target_connect_seconds",
                   "Connects by the time the target took to accept, per "
                   "target (established flows).",
                   nlb_connect_time_bounds_ms, series, n);
}

/* ---- target groups ---- */

static const char *shown_state(const struct nlb_group *group,
                               const struct nlb_target *target)
{
  int state = atomic_load(&target->state);
  /* As the API shows it: a group no listener routes to has no use for its
   * targets. */
  if (!group->in_use && state != NLB_TARGET_DRAINING)
    return "unused";
  return nlb_target_state_name((enum nlb_target_state)state);
}

static void health_families(struct nlb_text *t, struct nlb_router *router)
{
  static const char *const states[] = {"initial", "healthy", "unhealthy",
                                       "draining", "unused"};
  char name[128], address[96];

  for (int healthy = 1; healthy >= 0; healthy--) {
    const char *family_name =
        healthy ? "nlb_healthy_targets" : "nlb_unhealthy_targets";
    family(t, family_name, "gauge",
           healthy ? "Targets healthy now, per target group."
                   : "Targets unhealthy now, per target group.");
    for (size_t g = 0; g < nlb_router_group_count(router); g++) {
      const struct nlb_group *group = nlb_router_group(router, g);
      unsigned count = 0;
      for (size_t i = 0; i < group->n_targets; i++) {
        int state = atomic_load(&group->targets[i]->state);
        count += healthy ? state == NLB_TARGET_HEALTHY
                         : state == NLB_TARGET_UNHEALTHY;
      }
      label_value(name, sizeof(name), group->name);
      nlb_text_printf(t, "%s{target_group=\"%s\"} %u\n", family_name, name,
                      count);
    }
  }
  family(t, "nlb_target_health", "gauge",
         "1 for the state each target is in, 0 for the others.");
  for (size_t g = 0; g < nlb_router_group_count(router); g++) {
    const struct nlb_group *group = nlb_router_group(router, g);
    label_value(name, sizeof(name), group->name);
    for (size_t i = 0; i < group->n_targets; i++) {
      const char *now = shown_state(group, group->targets[i]);
      label_value(address, sizeof(address), group->targets[i]->name);
      for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++)
        nlb_text_printf(t,
                        "nlb_target_health{target_group=\"%s\",target=\"%s\","
                        "state=\"%s\"} %d\n",
                        name, address, states[s], strcmp(states[s], now) == 0);
    }
  }
}

/* ---- the process ---- */

static double cpu_seconds(void)
{
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) < 0)
    return 0;
  return (double)usage.ru_utime.tv_sec + (double)usage.ru_stime.tv_sec +
         ((double)usage.ru_utime.tv_usec + (double)usage.ru_stime.tv_usec) /
             1e6;
}

static unsigned long long resident_bytes(void)
{
  unsigned long long pages_total = 0, pages_resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f)
    return 0;
  if (fscanf(f, "%llu %llu", &pages_total, &pages_resident) != 2)
    pages_resident = 0;
  fclose(f);
  return pages_resident * (unsigned long long)sysconf(_SC_PAGESIZE);
}

static unsigned long open_fds(void)
{
  unsigned long n = 0;
  DIR *dir = opendir("/proc/self/fd");
  struct dirent *entry;
  if (!dir)
    return 0;
  while ((entry = readdir(dir)) != NULL)
    n += entry->d_name[0] != '.';
  closedir(dir);
  return n > 0 ? n - 1 : 0; /* not the descriptor of the listing itself */
}

/* As Prometheus's own clients do: the boot time plus the start time the
 * kernel gives in clock ticks since boot. */
static double start_time_seconds(void)
{
  char buf[1024];
  unsigned long long boot = 0, ticks = 0;
  size_t n;
  char *field;
  FILE *f = fopen("/proc/stat", "r");

  if (!f)
    return 0;
  while (fgets(buf, sizeof(buf), f))
    if (sscanf(buf, "btime %llu", &boot) == 1)
      break;
  fclose(f);
  f = fopen("/proc/self/stat", "r");
  if (!f)
    return 0;
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* Field 22; the name (field 2) may hold spaces, so count after it. */
  field = strrchr(buf, ')');
  if (!field || sscanf(field + 2,
                       "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u "
                       "%*d %*d %*d %*d %*d %*d %llu",
                       &ticks) != 1)
    return 0;
  return (double)boot + (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

static uint64_t max_flows;

void nlb_metrics_set_max_flows(uint64_t value)
{
  max_flows = value;
}

static void flow_families(struct nlb_text *t, struct nlb_router *router)
{
  struct nlb_router_flows flows;

  nlb_router_flows(router, &flows);
  family(t, "nlb_flows_max", "gauge",
         "Flows the node holds at most (max_flows, or what the descriptor "
         "limit leaves room for); past it new flows are refused.");
  nlb_text_printf(t, "nlb_flows_max %llu\n", (unsigned long long)max_flows);
  family(t, "nlb_flows_active", "gauge", "Flows open on the node.");
  nlb_text_printf(t, "nlb_flows_active %llu\n",
                  (unsigned long long)flows.active);
  family(t, "nlb_flows_refused_total", "counter",
         "New flows refused because the node held max_flows (reset, "
         "end=limit).");
  nlb_text_printf(t, "nlb_flows_refused_total %llu\n",
                  (unsigned long long)flows.refused);
  family(t, "nlb_accept_errors_total", "counter",
         "accept(2) failures for want of descriptors or memory (the worker "
         "pauses accepting 100 ms each time).");
  nlb_text_printf(t, "nlb_accept_errors_total %llu\n",
                  (unsigned long long)flows.accept_errors);
  family(t, "nlb_sockmap_loaded", "gauge",
         "1 where the sockmap program is loaded (forwarding \"sockmap\", or "
         "\"auto\" where nlbd may load BPF programs), else 0: TCP flows are "
         "spliced.");
  nlb_text_printf(t, "nlb_sockmap_loaded %d\n", nlb_sockmap_loaded() ? 1 : 0);
  family(t, "nlb_sockmap_flows_total", "counter",
         "TCP flows whose bytes the kernel moved (in the sockmap).");
  nlb_text_printf(t, "nlb_sockmap_flows_total %llu\n",
                  (unsigned long long)nlb_sockmap_flows());
  family(t, "nlb_sockmap_fallbacks_total", "counter",
         "TCP flows meant for the sockmap that stayed spliced (the map "
         "refused a socket or was full).");
  nlb_text_printf(t, "nlb_sockmap_fallbacks_total %llu\n",
                  (unsigned long long)nlb_sockmap_fallbacks());
}

static void udp_families(struct nlb_text *t, struct nlb_router *router)
{
  static const char *const directions[2] = {"up", "down"};
  struct nlb_router_udp udp;

  nlb_router_udp(router, &udp);
  family(t, "nlb_udp_flows", "gauge",
         "UDP flows open on the node (they count in nlb_flows_active too).");
  nlb_text_printf(t, "nlb_udp_flows %llu\n", (unsigned long long)udp.flows);
  family(t, "nlb_udp_datagrams_total", "counter",
         "UDP datagrams forwarded, per direction (up: client to target).");
  for (int d = 0; d < 2; d++)
    nlb_text_printf(t, "nlb_udp_datagrams_total{direction=\"%s\"} %llu\n",
                    directions[d], (unsigned long long)udp.datagrams[d]);
  family(t, "nlb_udp_bytes_total", "counter",
         "UDP payload bytes forwarded, per direction (up: client to "
         "target).");
  for (int d = 0; d < 2; d++)
    nlb_text_printf(t, "nlb_udp_bytes_total{direction=\"%s\"} %llu\n",
                    directions[d], (unsigned long long)udp.bytes[d]);
  family(t, "nlb_udp_coalesced_datagrams_total", "counter",
         "UDP datagrams that arrived coalesced with others of their flow in "
         "one read (UDP GRO), per direction; they leave as the same "
         "datagrams.");
  for (int d = 0; d < 2; d++)
    nlb_text_printf(t,
                    "nlb_udp_coalesced_datagrams_total{direction=\"%s\"} "
                    "%llu\n",
                    directions[d], (unsigned long long)udp.coalesced[d]);
  family(t, "nlb_udp_drops_total", "counter",
         "UDP datagrams dropped, per reason.");
  for (int r = 0; r < NLB_UDP_DROP_COUNT; r++)
    nlb_text_printf(t, "nlb_udp_drops_total{reason=\"%s\"} %llu\n",
                    nlb_udp_drop_name((enum nlb_udp_drop)r),
                    (unsigned long long)udp.drops[r]);
}

static void process_families(struct nlb_text *t)
{
  struct rlimit limit = {0};

  getrlimit(RLIMIT_NOFILE, &limit);
  family(t, "nlb_build_info", "gauge",
         "Always 1; the version of nlbd in a label.");
  nlb_text_printf(t, "nlb_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
  family(t, "process_cpu_seconds_total", "counter",
         "User and system CPU time spent, in seconds.");
  nlb_text_printf(t, "process_cpu_seconds_total %.3f\n", cpu_seconds());
  family(t, "process_resident_memory_bytes", "gauge",
         "Resident memory size in bytes.");
  nlb_text_printf(t, "process_resident_memory_bytes %llu\n", resident_bytes());
  family(t, "process_open_fds", "gauge", "Open file descriptors.");
  nlb_text_printf(t, "process_open_fds %lu\n", open_fds());
  family(t, "process_max_fds", "gauge",
         "The limit of open file descriptors (RLIMIT_NOFILE).");
  nlb_text_printf(t, "process_max_fds %llu\n",
                  (unsigned long long)limit.rlim_cur);
  family(t, "process_start_time_seconds", "gauge",
         "Start time of the process since the Unix epoch, in seconds.");
  nlb_text_printf(t, "process_start_time_seconds %.2f\n", start_time_seconds());
  family(t, "nlb_upgrade_generation", "gauge",
         "How many upgrades (nlbd -s upgrade) led to this process: 0 for "
         "one started plainly. During an upgrade's overlap the old process "
         "says one less than the new one.");
  nlb_text_printf(t, "nlb_upgrade_generation{pid=\"%ld\"} %u\n", (long)getpid(),
                  upgrade_state.generation);
  family(t, "nlb_upgrade_handed_over", "gauge",
         "1 in a process that has handed its sockets to a new one and is "
         "draining its flows, else 0.");
  nlb_text_printf(t, "nlb_upgrade_handed_over{pid=\"%ld\"} %d\n",
                  (long)getpid(), upgrade_state.handing_over);
  family(t, "nlb_config_last_reload_success", "gauge",
         "1 when the last config load (start or SIGHUP) was applied, 0 when "
         "it was rejected.");
  nlb_text_printf(t, "nlb_config_last_reload_success %d\n",
                  config_state.last_success);
  family(t, "nlb_config_last_reload_success_timestamp_seconds", "gauge",
         "When a config was last applied, since the Unix epoch.");
  nlb_text_printf(t, "nlb_config_last_reload_success_timestamp_seconds %lld\n",
                  (long long)config_state.last_success_time);
  family(t, "nlb_log_dropped_total", "counter",
         "Log lines dropped because a log ring was full.");
  nlb_text_printf(t, "nlb_log_dropped_total %llu\n",
                  (unsigned long long)nlb_log_dropped());
}

char *nlb_metrics_text(struct nlb_router *router,
                       const struct nlb_metrics_scope *scope)
{
  struct nlb_text t = {0};
  size_t n_listeners, n_targets;
  struct series *series =
      collect_series(router, scope, &n_listeners, &n_targets);

  if (!series)
    return NULL;
  listener_families(&t, series, n_listeners);
  tls_families(&t, series, n_listeners);
  if (!scope) {
    target_families(&t, series + n_listeners, n_targets);
    health_families(&t, router);
    flow_families(&t, router);
    udp_families(&t, router);
    process_families(&t);
  }
  free(series);
  return nlb_text_take(&t);
}
