/* The router's indexes and incremental snapshots, and the flow capacity
 * arithmetic: thousands of targets and endpoints found by hash, a reload
 * as a diff, a health change that rebuilds only its own group's pool, an
 * endpoint added or removed without touching any pool. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nlb/capacity.h"
#include "nlb/config.h"
#include "nlb/control/router.h"
#include "nlb/dataplane/worker.h"

#include "unit.h"

#define WORKERS 2

static char config_path[] = "/tmp/nlb-test-router-XXXXXX";
static struct nlb_snapshot *empty;
static struct nlb_worker *workers[WORKERS];

static int suite_init(void)
{
  int fd = mkstemp(config_path);

  if (fd < 0)
    return -1;
  close(fd);
  empty = nlb_snapshot_alloc(0, 0);
  for (int i = 0; i < WORKERS; i++)
    if (!(workers[i] = nlb_worker_start((unsigned)i, empty)))
      return -1;
  for (int i = 0; i < WORKERS; i++)
    nlb_worker_set_peers(workers[i], workers, WORKERS);
  return 0;
}

static int suite_clean(void)
{
  for (int i = 0; i < WORKERS; i++)
    nlb_worker_stop(workers[i]);
  nlb_snapshot_release(empty);
  unlink(config_path);
  return 0;
}

/* A config of group "a" with targets 127.1.x.y:9000 numbered first..last
 * (from 1), group "b" with one target, and a load balancer "lb" without
 * bind on port 8080 routed to "a" and 8081 to "b". */
static struct nlb_config *config_with(size_t first, size_t last)
{
  FILE *f = fopen(config_path, "w");
  char *errors = NULL;
  struct nlb_config *cfg;

  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs("target_groups = (\n  { name = \"a\"; targets = (\n", f);
  for (size_t i = first; i <= last; i++)
    fprintf(f, "    { address = \"127.1.%zu.%zu:9000\"; }%s\n", i / 256,
            i % 256, i < last ? "," : "");
  fputs("  ); },\n  { name = \"b\"; targets = ( { address = "
        "\"127.2.0.1:9000\"; } ); }\n);\n"
        "load_balancers = ( { name = \"lb\"; listeners = (\n"
        "  { port = 8080; target_group = \"a\"; },\n"
        "  { port = 8081; target_group = \"b\"; } ); } );\n",
        f);
  fclose(f);
  cfg = nlb_config_load(config_path, &errors);
  if (!cfg)
    fprintf(stderr, "%s", errors ? errors : "out of memory\n");
  free(errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  return cfg;
}

static size_t count_in_state(struct nlb_group *group,
                             enum nlb_target_state state)
{
  size_t n = 0;

  for (size_t i = 0; i < group->n_targets; i++)
    n += atomic_load(&group->targets[i]->state) == (int)state;
  return n;
}

static struct nlb_router *router_with(size_t first, size_t last)
{
  struct nlb_router *router = nlb_router_create(workers, WORKERS);
  struct nlb_config *cfg = config_with(first, last);
  char err[256] = "";

  CU_ASSERT_PTR_NOT_NULL_FATAL(router);
  CU_ASSERT_EQUAL_FATAL(nlb_router_apply(router, cfg, 1000, err, sizeof(err)),
                        0);
  nlb_config_free(cfg);
  return router;
}

static void test_router_reload_of_thousands_is_a_diff(void)
{
  struct nlb_router *router = router_with(1, 5000);
  struct nlb_group *a = nlb_router_find_group(router, "a");
  struct nlb_config *cfg;
  char err[256] = "";

  CU_ASSERT_PTR_NOT_NULL_FATAL(a);
  CU_ASSERT_EQUAL(a->n_targets, 5000);
  CU_ASSERT_EQUAL(count_in_state(a, NLB_TARGET_INITIAL), 5000);
  /* Half stay, 2,500 leave, 1,000 arrive. */
  cfg = config_with(2501, 6000);
  CU_ASSERT_EQUAL(nlb_router_apply(router, cfg, 2000, err, sizeof(err)), 0);
  nlb_config_free(cfg);
  CU_ASSERT_PTR_EQUAL(nlb_router_find_group(router, "a"), a);
  CU_ASSERT_EQUAL(a->n_targets, 6000);
  CU_ASSERT_EQUAL(count_in_state(a, NLB_TARGET_DRAINING), 2500);
  CU_ASSERT_EQUAL(count_in_state(a, NLB_TARGET_INITIAL), 3500);
  /* Drained targets without flows are forgotten at the next tick. */
  nlb_router_tick(router, 3000);
  CU_ASSERT_EQUAL(a->n_targets, 3500);
  nlb_router_free(router);
}

static void test_router_health_change_rebuilds_only_its_group(void)
{
  struct nlb_router *router = router_with(1, 100);
  struct nlb_group *a = nlb_router_find_group(router, "a");
  struct nlb_group *b = nlb_router_find_group(router, "b");
  struct nlb_group_route *a_route = a->route, *b_route = b->route;

  CU_ASSERT_PTR_NOT_NULL_FATAL(a_route);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b_route);
  /* Fail-open: every initial target is in a's pool. */
  CU_ASSERT_EQUAL(a_route->pool->n_targets, 100);
  /* Fifty changes, one publish, one new pool for a; b's is shared. */
  for (size_t i = 0; i < 50; i++)
    nlb_router_set_target_state(router, a, a->targets[i], NLB_TARGET_HEALTHY,
                                "test", 1100);
  CU_ASSERT_PTR_NULL(a->route); /* waiting for the window to close */
  nlb_router_flush(router, 1125);
  CU_ASSERT_PTR_NOT_NULL_FATAL(a->route);
  CU_ASSERT_EQUAL(a->route->pool->n_targets, 50);
  CU_ASSERT_PTR_EQUAL(b->route, b_route);
  /* A flush with nothing waiting publishes nothing new. */
  a_route = a->route;
  nlb_router_flush(router, 1150);
  CU_ASSERT_PTR_EQUAL(a->route, a_route);
  /* initial -> unhealthy changes no pool. */
  nlb_router_set_target_state(router, a, a->targets[60], NLB_TARGET_UNHEALTHY,
                              "test", 1200);
  nlb_router_flush(router, 1200);
  CU_ASSERT_PTR_EQUAL(a->route, a_route);
  nlb_router_free(router);
}

static int listening_socket(void)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  CU_ASSERT_FATAL(fd >= 0);
  return fd;
}

/* nlb_router_open_fn: stands in for the namespace's sockets. */
static int open_here(void *arg, const struct nlb_listen_request *requests,
                     size_t n, int *fds, char *err, size_t err_size)
{
  (void)arg;
  (void)requests;
  (void)err;
  (void)err_size;
  for (size_t i = 0; i < n; i++)
    fds[i] = listening_socket();
  return 0;
}

static void test_router_endpoints_found_by_id(void)
{
  struct nlb_router *router = router_with(1, 10);
  struct nlb_group *a = nlb_router_find_group(router, "a");
  struct nlb_group_route *a_route = a->route;
  const uint16_t port = 8080;
  union nlb_sockaddr address;
  struct nlb_router_listener l;
  size_t before = nlb_router_listener_count(router);
  char id[32], err[256] = "";

  CU_ASSERT_EQUAL(nlb_addr_parse_ip("127.3.0.1", 0, &address), 0);
  for (int i = 0; i < 1000; i++) {
    snprintf(id, sizeof(id), "ep-%d", i);
    CU_ASSERT_EQUAL(nlb_router_add_endpoint(router, id, "lb", &address, &port,
                                            1, NULL, 0, open_here, NULL, 2000,
                                            err, sizeof(err)),
                    0);
  }
  CU_ASSERT_EQUAL(nlb_router_listener_count(router), before + 1000);
  /* Adding endpoints shares the pools. */
  CU_ASSERT_PTR_EQUAL(a->route, a_route);
  CU_ASSERT_TRUE(nlb_router_has_endpoint(router, "ep-999"));
  CU_ASSERT_TRUE(nlb_router_endpoint_has_port(router, "ep-500", 8080));
  CU_ASSERT_FALSE(nlb_router_endpoint_has_port(router, "ep-500", 8081));
  CU_ASSERT_FALSE(nlb_router_has_endpoint(router, "ep-1000"));
  /* A port the load balancer lacks, and a port taken twice. */
  {
    const uint16_t bad = 9999;
    err[0] = '\0';
    CU_ASSERT_EQUAL(nlb_router_add_endpoint(router, "ep-x", "lb", &address,
                                            &bad, 1, NULL, 0, open_here, NULL,
                                            2000, err, sizeof(err)),
                    -ENOENT);
    CU_ASSERT_EQUAL(nlb_router_add_endpoint(router, "ep-7", "lb", &address,
                                            &port, 1, NULL, 0, open_here, NULL,
                                            2000, err, sizeof(err)),
                    -EEXIST);
  }
  for (int i = 0; i < 1000; i += 2) {
    snprintf(id, sizeof(id), "ep-%d", i);
    CU_ASSERT_EQUAL(nlb_router_remove_endpoint(router, id, 3000), 0);
  }
  CU_ASSERT_EQUAL(nlb_router_remove_endpoint(router, "ep-0", 3000), -ENOENT);
  CU_ASSERT_EQUAL(nlb_router_listener_count(router), before + 500);
  CU_ASSERT_FALSE(nlb_router_has_endpoint(router, "ep-998"));
  CU_ASSERT_TRUE(nlb_router_has_endpoint(router, "ep-999"));
  /* Listeners stay in the order they were made (what snapshots rely on). */
  for (size_t i = before, n = 1; i < nlb_router_listener_count(router);
       i++, n += 2) {
    nlb_router_listener(router, i, &l);
    snprintf(id, sizeof(id), "ep-%zu", n);
    CU_ASSERT_STRING_EQUAL(l.endpoint_id, id);
  }
  CU_ASSERT_PTR_EQUAL(a->route, a_route);
  nlb_router_free(router);
}

static void test_router_runtime_targets_sync_by_mark(void)
{
  struct nlb_router *router = router_with(1, 10);
  struct nlb_group *b = nlb_router_find_group(router, "b");
  struct nlb_runtime_target *list = calloc(3000, sizeof(*list));

  CU_ASSERT_PTR_NOT_NULL_FATAL(list);
  for (size_t i = 0; i < 3000; i++) {
    char text[64];
    snprintf(text, sizeof(text), "127.4.%zu.%zu:80", i / 256, i % 256);
    CU_ASSERT_EQUAL(nlb_addr_parse(text, &list[i].address), 0);
    list[i].group = i % 2 ? "b" : "nowhere"; /* half in a group we lack */
    list[i].weight = 1;
  }
  nlb_router_sync_runtime_targets(router, list, 3000, 2000);
  CU_ASSERT_EQUAL(b->n_targets, 1 + 1500);
  /* The second thousand of b's leave; the config's target stays. */
  nlb_router_sync_runtime_targets(router, list, 1000, 3000);
  CU_ASSERT_EQUAL(count_in_state(b, NLB_TARGET_DRAINING), 1000);
  CU_ASSERT_EQUAL(count_in_state(b, NLB_TARGET_INITIAL), 501);
  /* Registered again before it is forgotten: initial again. */
  nlb_router_sync_runtime_targets(router, list, 3000, 3500);
  CU_ASSERT_EQUAL(count_in_state(b, NLB_TARGET_INITIAL), 1501);
  free(list);
  nlb_router_free(router);
}

static void test_capacity_keeps_a_reserve(void)
{
  struct nlb_capacity_input in = {.fd_limit = 20000,
                                  .workers = 2,
                                  .listeners = 1,
                                  .targets = 10,
                                  .api_connections = 1024};
  struct nlb_capacity cap;

  nlb_capacity_compute(&in, &cap);
  CU_ASSERT_EQUAL(cap.reserve, NLB_CAPACITY_BASE + 2 * NLB_CAPACITY_PER_WORKER +
                                   1 + 10 + 1024);
  CU_ASSERT_EQUAL(cap.pipe_fds,
                  (20000 - cap.reserve) / NLB_CAPACITY_PIPE_SHARE);
  CU_ASSERT_EQUAL(cap.max_flows, (20000 - cap.reserve - cap.pipe_fds) / 2);
  /* Everything adds up to no more than the limit. */
  CU_ASSERT_TRUE(cap.reserve + cap.pipe_fds + 2 * cap.max_flows <= 20000);
  /* Probes are capped: 10,000 targets reserve as many as 1,024. */
  in.targets = 10000;
  nlb_capacity_compute(&in, &cap);
  CU_ASSERT_EQUAL(cap.reserve, NLB_CAPACITY_BASE + 2 * NLB_CAPACITY_PER_WORKER +
                                   1 + NLB_CAPACITY_PROBES + 1024);
}

static void test_capacity_small_and_tiny_limits(void)
{
  struct nlb_capacity_input in = {.fd_limit = 1024,
                                  .workers = 2,
                                  .listeners = 3,
                                  .targets = 5000,
                                  .api_connections = 1024};
  struct nlb_capacity cap;

  /* Under a small limit the API and probes get a sixteenth each. */
  nlb_capacity_compute(&in, &cap);
  CU_ASSERT_EQUAL(cap.reserve, NLB_CAPACITY_BASE + 2 * NLB_CAPACITY_PER_WORKER +
                                   3 + 64 + 64);
  CU_ASSERT_TRUE(cap.max_flows > 300);
  /* Two DNS responders: their sockets, and their TCP connections' share
   * (two caps of 128, a sixteenth of the limit at most), come out of the
   * flows' part, never out of what flows count on. */
  in.dns_networks = 2;
  in.dns_connections = 2 * 128;
  nlb_capacity_compute(&in, &cap);
  CU_ASSERT_EQUAL(cap.dns_connections, 64);
  CU_ASSERT_EQUAL(cap.reserve, NLB_CAPACITY_BASE + 2 * NLB_CAPACITY_PER_WORKER +
                                   3 + 64 + 64 + 2 * 2 + 64);
  CU_ASSERT_TRUE(cap.reserve + cap.pipe_fds + 2 * cap.max_flows <= 1024);
  /* Under a large limit each responder keeps its whole cap. */
  in.fd_limit = 20000;
  nlb_capacity_compute(&in, &cap);
  CU_ASSERT_EQUAL(cap.dns_connections, 256);
  /* A limit that does not even cover the reserve leaves no flow. */
  in.fd_limit = 50;
  nlb_capacity_compute(&in, &cap);
  CU_ASSERT_EQUAL(cap.max_flows, 0);
  CU_ASSERT_EQUAL(cap.pipe_fds, 0);
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_router_reload_of_thousands_is_a_diff),
      NLB_UNIT_CASE(test_router_health_change_rebuilds_only_its_group),
      NLB_UNIT_CASE(test_router_endpoints_found_by_id),
      NLB_UNIT_CASE(test_router_runtime_targets_sync_by_mark),
      NLB_UNIT_CASE(test_capacity_keeps_a_reserve),
      NLB_UNIT_CASE(test_capacity_small_and_tiny_limits),
  };
  return nlb_unit_run("router", suite_init, suite_clean, cases,
                      NLB_UNIT_COUNT(cases));
}
