/* Health: the threshold state machine, status-line parsing, matchers and
 * slow-start weights; and the probe queue on a real loop against real
 * loopback listeners: at most NLB_CAPACITY_PROBES open and 128 started per
 * turn, every due check run in its turn, state changes published once per
 * window. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nlb/capacity.h"
#include "nlb/config.h"
#include "nlb/control/health.h"
#include "nlb/control/router.h"
#include "nlb/control/status_matcher.h"
#include "nlb/dataplane/worker.h"

#include "unit.h"

struct step {
  bool passed;
  enum nlb_target_state expect;
};

static void run_steps(enum nlb_target_state state, const struct step *steps,
                      size_t n, unsigned healthy, unsigned unhealthy)
{
  unsigned ok = 0, fail = 0;
  for (size_t i = 0; i < n; i++) {
    state = nlb_health_next_state(state, &ok, &fail, steps[i].passed, healthy,
                                  unhealthy);
    CU_ASSERT_EQUAL(state, steps[i].expect);
  }
}

static void test_health_initial_becomes_healthy_on_first_pass(void)
{
  /* healthy_threshold 3 does not apply to a target never judged, even
   * after a failure short of unhealthy_threshold. */
  const struct step steps[] = {{true, NLB_TARGET_HEALTHY},
                               {true, NLB_TARGET_HEALTHY}};
  run_steps(NLB_TARGET_INITIAL, steps, 2, 3, 2);
  const struct step after_a_failure[] = {{false, NLB_TARGET_INITIAL},
                                         {true, NLB_TARGET_HEALTHY}};
  run_steps(NLB_TARGET_INITIAL, after_a_failure, 2, 3, 2);
}

static void test_health_unhealthy_becomes_healthy_after_threshold(void)
{
  const struct step steps[] = {{true, NLB_TARGET_UNHEALTHY},
                               {true, NLB_TARGET_UNHEALTHY},
                               {true, NLB_TARGET_HEALTHY},
                               {true, NLB_TARGET_HEALTHY}};
  run_steps(NLB_TARGET_UNHEALTHY, steps, 4, 3, 2);
}

static void test_health_initial_becomes_unhealthy_after_threshold(void)
{
  const struct step steps[] = {{false, NLB_TARGET_INITIAL},
                               {false, NLB_TARGET_UNHEALTHY}};
  run_steps(NLB_TARGET_INITIAL, steps, 2, 3, 2);
}

static void test_health_interrupted_runs_do_not_count(void)
{
  /* healthy 2 / unhealthy 2: alternating results never change state. */
  const struct step steps[] = {
      {false, NLB_TARGET_HEALTHY},  {true, NLB_TARGET_HEALTHY},
      {false, NLB_TARGET_HEALTHY},  {true, NLB_TARGET_HEALTHY},
      {false, NLB_TARGET_HEALTHY},  {false, NLB_TARGET_UNHEALTHY},
      {true, NLB_TARGET_UNHEALTHY}, {false, NLB_TARGET_UNHEALTHY},
      {true, NLB_TARGET_UNHEALTHY}, {true, NLB_TARGET_HEALTHY}};
  run_steps(NLB_TARGET_HEALTHY, steps, 10, 2, 2);
}

static void test_health_threshold_one_flips_at_once(void)
{
  const struct step steps[] = {{false, NLB_TARGET_UNHEALTHY},
                               {true, NLB_TARGET_HEALTHY},
                               {false, NLB_TARGET_UNHEALTHY}};
  run_steps(NLB_TARGET_HEALTHY, steps, 3, 1, 1);
}

static void test_health_draining_and_unused_stay(void)
{
  const struct step draining[] = {{true, NLB_TARGET_DRAINING},
                                  {false, NLB_TARGET_DRAINING},
                                  {false, NLB_TARGET_DRAINING}};
  const struct step unused[] = {{true, NLB_TARGET_UNUSED},
                                {true, NLB_TARGET_UNUSED}};
  run_steps(NLB_TARGET_DRAINING, draining, 3, 1, 1);
  run_steps(NLB_TARGET_UNUSED, unused, 2, 1, 1);
}

static void test_health_status_line_parsing(void)
{
  const char *ok = "HTTP/1.1 200 OK\r\n";
  CU_ASSERT_EQUAL(nlb_health_parse_status(ok, strlen(ok)), 200);
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTTP/1.0 503\r\n", 14), 503);
  /* Incomplete lines are never judged. */
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTT", 3), 0);
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTTP/1.1 20", 11), 0);
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTTP/1.1 200 OK", 15), 0);
  CU_ASSERT_EQUAL(nlb_health_parse_status("SSH-2.0-x\r\n", 11), -EPROTO);
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTTP/1.1 2x0 OK\r\n", 17), -EPROTO);
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTTP/1.1 999 OK\r\n", 17), -EPROTO);
  CU_ASSERT_EQUAL(nlb_health_parse_status("HTTP/1.1 2000 OK\r\n", 18), -EPROTO);
}

static void test_health_matcher_parsing(void)
{
  struct nlb_status_matcher m;
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("200-399", &m), 0);
  CU_ASSERT_TRUE(nlb_status_matcher_match(&m, 200));
  CU_ASSERT_TRUE(nlb_status_matcher_match(&m, 302));
  CU_ASSERT_TRUE(nlb_status_matcher_match(&m, 399));
  CU_ASSERT_FALSE(nlb_status_matcher_match(&m, 400));
  CU_ASSERT_FALSE(nlb_status_matcher_match(&m, 199));
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("200,204", &m), 0);
  CU_ASSERT_TRUE(nlb_status_matcher_match(&m, 204));
  CU_ASSERT_FALSE(nlb_status_matcher_match(&m, 201));
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("200, 300-302", &m), 0);
  CU_ASSERT_TRUE(nlb_status_matcher_match(&m, 301));
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("", &m), -EINVAL);
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("399-200", &m), -EINVAL);
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("99", &m), -EINVAL);
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("600", &m), -EINVAL);
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("200,", &m), -EINVAL);
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("2000", &m), -EINVAL);
  CU_ASSERT_EQUAL(nlb_status_matcher_parse("abc", &m), -EINVAL);
}

static void test_health_slow_start_weight_grows_linearly(void)
{
  const uint32_t full = 4 * NLB_WEIGHT_SCALE;
  /* Off: full weight at once. */
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 0, 1000, 1000), full);
  /* 30 s window starting at t=1000 ms. */
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 30000, 1000, 1000), 1);
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 30000, 1000, 1000 + 7500), full / 4);
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 30000, 1000, 1000 + 15000),
                  full / 2);
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 30000, 1000, 1000 + 29999),
                  (uint32_t)((uint64_t)full * 29999 / 30000));
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 30000, 1000, 1000 + 30000), full);
  CU_ASSERT_EQUAL(nlb_slow_start_weight(4, 30000, 1000, 1000 + 90000), full);
  /* Monotonic over the window. */
  uint32_t last = 0;
  for (uint64_t t = 1000; t <= 31000; t += 250) {
    uint32_t w = nlb_slow_start_weight(4, 30000, 1000, t);
    CU_ASSERT_TRUE(w >= last);
    last = w;
  }
  /* A weight of 0 stays 0: the operator took the target out. */
  CU_ASSERT_EQUAL(nlb_slow_start_weight(0, 30000, 1000, 5000), 0);
}

/* --- the probe queue, on a real loop ---------------------------------- */

#define WORKERS 2
#define BURST 128 /* nlb/health.c's probes started per turn */

/* A router of one group "a" of n targets 127.B.x.y:port (numbered from 1)
 * with the given health_check settings, behind a load balancer. */
struct rig {
  char path[64];
  struct nlb_snapshot *empty;
  struct nlb_worker *workers[WORKERS];
  struct nlb_router *router;
  struct nlb_group *group;
  uv_loop_t loop;
  struct nlb_health *health;
  uv_check_t sampler; /* runs after every turn's I/O */
  uv_timer_t deadline;
  /* what the sampler saw */
  uint64_t last_started;
  uint64_t max_started_per_turn;
  size_t max_in_flight;
  uint64_t first_pool_builds;
  unsigned block_first_turn_ms; /* the loop stalls this long once */
  size_t want_state_count;
  enum nlb_target_state want_state;
  bool done;
};

static size_t targets_in_state(const struct nlb_group *group,
                               enum nlb_target_state state)
{
  size_t n = 0;
  for (size_t i = 0; i < group->n_targets; i++)
    n += atomic_load(&group->targets[i]->state) == (int)state;
  return n;
}

static void on_sample(uv_check_t *handle)
{
  struct rig *rig = handle->data;
  struct nlb_health_stats stats;

  /* A stalled loop (a long reload, a slow disk): every check falls due
   * at once, and the queue must still start them 128 per turn. */
  if (rig->block_first_turn_ms) {
    usleep(rig->block_first_turn_ms * 1000);
    rig->block_first_turn_ms = 0;
  }
  nlb_health_get_stats(rig->health, &stats);
  if (stats.probes_started - rig->last_started > rig->max_started_per_turn)
    rig->max_started_per_turn = stats.probes_started - rig->last_started;
  rig->last_started = stats.probes_started;
  if (stats.in_flight > rig->max_in_flight)
    rig->max_in_flight = stats.in_flight;
  if (targets_in_state(rig->group, rig->want_state) >= rig->want_state_count)
    uv_stop(&rig->loop);
}

static void on_deadline(uv_timer_t *timer)
{
  uv_stop(timer->loop);
}

static void rig_start(struct rig *rig, size_t n, unsigned second_octet,
                      unsigned port, const char *health_check)
{
  FILE *f;
  int fd;
  char *errors = NULL;
  char err[256] = "";
  struct nlb_config *cfg;

  memset(rig, 0, sizeof(*rig));
  snprintf(rig->path, sizeof(rig->path), "/tmp/nlb-test-health-XXXXXX");
  fd = mkstemp(rig->path);
  CU_ASSERT_FATAL(fd >= 0);
  f = fdopen(fd, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fprintf(f,
          "target_groups = ( { name = \"a\"; health_check = { %s };\n"
          "  targets = (\n",
          health_check);
  for (size_t i = 1; i <= n; i++)
    fprintf(f, "    { address = \"127.%u.%zu.%zu:%u\"; }%s\n", second_octet,
            i / 256, i % 256, port, i < n ? "," : "");
  fputs("  ); } );\nload_balancers = ( { name = \"lb\"; listeners = (\n"
        "  { port = 8080; target_group = \"a\"; } ); } );\n",
        f);
  fclose(f);
  cfg = nlb_config_load(rig->path, &errors);
  if (!cfg)
    fprintf(stderr, "%s", errors ? errors : "out of memory\n");
  free(errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);

  rig->empty = nlb_snapshot_alloc(0, 0);
  for (int i = 0; i < WORKERS; i++)
    CU_ASSERT_PTR_NOT_NULL_FATAL(rig->workers[i] =
                                     nlb_worker_start((unsigned)i, rig->empty));
  for (int i = 0; i < WORKERS; i++)
    nlb_worker_set_peers(rig->workers[i], rig->workers, WORKERS);
  rig->router = nlb_router_create(rig->workers, WORKERS);
  CU_ASSERT_PTR_NOT_NULL_FATAL(rig->router);
  CU_ASSERT_EQUAL_FATAL(nlb_router_apply(rig->router, cfg, 0, err, sizeof(err)),
                        0);
  nlb_config_free(cfg);
  rig->group = nlb_router_find_group(rig->router, "a");
  CU_ASSERT_PTR_NOT_NULL_FATAL(rig->group);
  CU_ASSERT_EQUAL_FATAL(rig->group->n_targets, n);
  rig->first_pool_builds = rig->group->pool_builds;

  CU_ASSERT_EQUAL_FATAL(uv_loop_init(&rig->loop), 0);
  rig->health = nlb_health_start(&rig->loop, rig->router);
  CU_ASSERT_PTR_NOT_NULL_FATAL(rig->health);
  uv_check_init(&rig->loop, &rig->sampler);
  rig->sampler.data = rig;
  uv_check_start(&rig->sampler, on_sample);
  uv_timer_init(&rig->loop, &rig->deadline);
}

/* Runs the loop until want targets are in state, or limit_ms passed.
 * Returns the time it took. */
static uint64_t rig_run_until(struct rig *rig, enum nlb_target_state state,
                              size_t want, uint64_t limit_ms)
{
  uint64_t start = uv_hrtime();

  rig->block_first_turn_ms = 1100; /* past every first check (<= 1 s) */
  rig->want_state = state;
  rig->want_state_count = want;
  uv_timer_start(&rig->deadline, on_deadline, limit_ms, 0);
  uv_run(&rig->loop, UV_RUN_DEFAULT);
  uv_timer_stop(&rig->deadline);
  return (uv_hrtime() - start) / 1000000;
}

static void rig_stop(struct rig *rig)
{
  nlb_health_stop(rig->health);
  uv_close((uv_handle_t *)&rig->sampler, NULL);
  uv_close((uv_handle_t *)&rig->deadline, NULL);
  while (uv_run(&rig->loop, UV_RUN_DEFAULT) != 0) {
  }
  CU_ASSERT_EQUAL(uv_loop_close(&rig->loop), 0);
  nlb_health_free(rig->health);
  nlb_router_free(rig->router);
  for (int i = 0; i < WORKERS; i++)
    nlb_worker_stop(rig->workers[i]);
  nlb_snapshot_release(rig->empty);
  unlink(rig->path);
}

/* A listening socket on 0.0.0.0 (so every 127.x.y.z reaches it) on a
 * free port; returns the descriptor and sets *port. */
static int wildcard_listener(int backlog, unsigned *port)
{
  struct sockaddr_in sin = {.sin_family = AF_INET};
  socklen_t len = sizeof(sin);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

  CU_ASSERT_FATAL(fd >= 0);
  CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
  CU_ASSERT_FATAL(listen(fd, backlog) == 0);
  CU_ASSERT_FATAL(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
  *port = ntohs(sin.sin_port);
  return fd;
}

/* Raises the descriptor limit to the hard one, as nlbd does; returns the
 * limit. */
static rlim_t raise_fd_limit(void)
{
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0)
    return 0;
  lim.rlim_cur = lim.rlim_max;
  setrlimit(RLIMIT_NOFILE, &lim);
  getrlimit(RLIMIT_NOFILE, &lim);
  return lim.rlim_cur;
}

/* 1,500 targets whose handshakes never complete (a listener with a full
 * accept queue drops their SYNs), all due at once after a stall: probes
 * start 128 per turn, pile up to the cap of open probes and no further,
 * and the checks past the cap wait their turn, so every target still gets
 * its result. */
static void test_health_queue_caps_open_probes(void)
{
  enum { N = 1500 };
  unsigned port;
  int fd = wildcard_listener(0, &port);
  rlim_t limit = raise_fd_limit();
  struct rig rig;
  uint64_t took;

  rig_start(&rig, N, 3, port,
            "interval = \"2s\"; timeout = \"1s\"; unhealthy_threshold = 1;");
  /* The first connect fills the accept queue of one; the other N - 1 time
   * out. */
  took = rig_run_until(&rig, NLB_TARGET_UNHEALTHY, N - 1, 8000);
  CU_ASSERT(targets_in_state(rig.group, NLB_TARGET_UNHEALTHY) >= N - 1);
  CU_ASSERT(took < 8000);
  CU_ASSERT_EQUAL(rig.max_started_per_turn, BURST);
  CU_ASSERT(rig.max_in_flight <= NLB_CAPACITY_PROBES);
  if (limit > NLB_CAPACITY_PROBES + 100)
    CU_ASSERT_EQUAL(rig.max_in_flight, NLB_CAPACITY_PROBES);
  printf("\n    %d targets unhealthy in %llu ms, at most %zu probes open, "
         "%llu started in one turn ",
         N, (unsigned long long)took, rig.max_in_flight,
         (unsigned long long)rig.max_started_per_turn);
  rig_stop(&rig);
  close(fd);
}

/* The listener of the next test: accepts and closes whatever arrives. */
static void on_acceptable(uv_poll_t *poll, int status, int events)
{
  int fd = *(int *)poll->data, conn;
  (void)status;
  (void)events;
  while ((conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
    close(conn);
}

/* 2,000 targets that answer, all due at once after a stall: all healthy
 * after one check each (a target never judged needs one pass), while the
 * group's pool (its Maglev table) is built at most once per 25 ms window, not
 * once per target. */
static void test_health_cold_start_publishes_per_window(void)
{
  enum { N = 2000 };
  unsigned port;
  int fd = wildcard_listener(4096, &port);
  struct rig rig;
  uv_poll_t poll;
  uint64_t took;

  raise_fd_limit();
  rig_start(&rig, N, 4, port,
            "interval = \"500ms\"; timeout = \"500ms\"; "
            "healthy_threshold = 2;");
  uv_poll_init(&rig.loop, &poll, fd);
  poll.data = &fd;
  uv_poll_start(&poll, UV_READABLE, on_acceptable);
  took = rig_run_until(&rig, NLB_TARGET_HEALTHY, N, 5000);
  CU_ASSERT_EQUAL(targets_in_state(rig.group, NLB_TARGET_HEALTHY), N);
  /* One check each, all due when the 1.1 s stall ends (healthy_threshold
   * 2 is for targets that failed), and room for a loaded machine. */
  CU_ASSERT(took < 3000);
  CU_ASSERT_EQUAL(rig.max_started_per_turn, BURST);
  /* 2,000 changes, one pool per 25 ms window at most. */
  uint64_t builds = rig.group->pool_builds - rig.first_pool_builds;
  CU_ASSERT(builds >= 1);
  CU_ASSERT(builds <= took / 25 + 2);
  printf("\n    %d targets healthy in %llu ms, %llu pools built for their "
         "group ",
         N, (unsigned long long)took, (unsigned long long)builds);
  uv_close((uv_handle_t *)&poll, NULL);
  rig_stop(&rig);
  close(fd);
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_health_initial_becomes_healthy_on_first_pass),
      NLB_UNIT_CASE(test_health_unhealthy_becomes_healthy_after_threshold),
      NLB_UNIT_CASE(test_health_initial_becomes_unhealthy_after_threshold),
      NLB_UNIT_CASE(test_health_interrupted_runs_do_not_count),
      NLB_UNIT_CASE(test_health_threshold_one_flips_at_once),
      NLB_UNIT_CASE(test_health_draining_and_unused_stay),
      NLB_UNIT_CASE(test_health_status_line_parsing),
      NLB_UNIT_CASE(test_health_matcher_parsing),
      NLB_UNIT_CASE(test_health_slow_start_weight_grows_linearly),
      NLB_UNIT_CASE(test_health_queue_caps_open_probes),
      NLB_UNIT_CASE(test_health_cold_start_publishes_per_window),
  };
  return nlb_unit_run("health", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
