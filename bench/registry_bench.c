/* Registry benchmark: endpoint transitions per second with the SQLite store
 * as shipped (WAL, synchronous=FULL: every commit waits for fsync).
 *
 * Each cycle is three transitions, each its own transaction:
 * create (-> pendingAcceptance), accept (-> available), delete (-> deleted).
 *
 * usage: registry_bench [CYCLES [DIR]]   (defaults: 2000, a new dir in
 * $TMPDIR or /tmp; the store's disk is what is being measured) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nlb/registry.h"

static double now_s(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a;
  double y = *(const double *)b;

  return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
  static const struct reg_actor pay = {"pay", REG_ROLE_PROVIDER};
  static const struct reg_actor shop = {"shop", REG_ROLE_CONSUMER};
  static const struct reg_principal principals[] = {
      {"pay", REG_ROLE_PROVIDER, NULL, 0},
      {"shop", REG_ROLE_CONSUMER, NULL, 0},
  };
  static const struct reg_network networks[] = {
      {"host", NULL, "127.77.0.0/16", NULL, 0, NULL},
  };
  static const uint16_t ports[] = {8080};
  static const struct reg_load_balancer lbs[] = {{"lb", ports, 1, false}};
  static const struct reg_config config = {.principals = principals,
                                           .n_principals = 2,
                                           .networks = networks,
                                           .n_networks = 1,
                                           .load_balancers = lbs,
                                           .n_load_balancers = 1};
  static const char *const all[] = {"*"};
  struct reg_service_params sp = {"bench", "lb", true, all, 1, 0, NULL};
  struct reg_endpoint_params ep = {"bench", "host", NULL, NULL, 0, false};
  long cycles = argc > 1 ? atol(argv[1]) : 2000;
  const char *tmp = getenv("TMPDIR");
  char dir[256];
  char path[300], url[310];
  struct reg_service s;
  struct reg_endpoint e;
  struct reg_item_result res;
  struct reg_error err;
  struct reg *reg;
  double *lat;
  double t0, t1;

  if (cycles <= 0)
    cycles = 1;
  if (argc > 2)
    snprintf(dir, sizeof(dir), "%s", argv[2]);
  else {
    snprintf(dir, sizeof(dir), "%s/nlb-registry-bench-XXXXXX",
             tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
      perror("mkdtemp");
      return 1;
    }
  }
  snprintf(path, sizeof(path), "%s/registry.db", dir);
  lat = calloc((size_t)cycles * 3, sizeof(*lat));
  snprintf(url, sizeof(url), "sqlite:%s", path);
  if (lat == NULL || reg_open(&reg, url, &config, &err) < 0) {
    fprintf(stderr, "registry_bench: open %s failed\n", path);
    return 1;
  }
  if (reg_service_create(reg, &pay, &sp, &s, &err) < 0) {
    fprintf(stderr, "registry_bench: %s\n", err.message);
    return 1;
  }
  t0 = now_s();
  for (long i = 0; i < cycles; i++) {
    const char *ids[1];
    double a = now_s(), b, c, d;

    if (reg_endpoint_create(reg, &shop, &ep, &e, &err) < 0)
      goto fail;
    b = now_s();
    ids[0] = e.id;
    if (reg_connections_accept(reg, &pay, s.id, ids, 1, &res, &err) < 0 ||
        res.code != 0)
      goto fail;
    c = now_s();
    if (reg_endpoint_delete(reg, &shop, e.id, NULL, &err) < 0)
      goto fail;
    d = now_s();
    reg_endpoint_release(&e);
    lat[i * 3] = b - a;
    lat[i * 3 + 1] = c - b;
    lat[i * 3 + 2] = d - c;
  }
  t1 = now_s();
  qsort(lat, (size_t)cycles * 3, sizeof(*lat), cmp_double);
  printf("registry_bench: %ld cycles (create+accept+delete), %ld "
         "transitions in %.3f s\n",
         cycles, cycles * 3, t1 - t0);
  printf("  %.0f transitions/s, %.0f cycles/s (synchronous=FULL, WAL)\n",
         (double)cycles * 3 / (t1 - t0), (double)cycles / (t1 - t0));
  printf("  latency per transition: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
         lat[(size_t)cycles * 3 / 2] * 1e3,
         lat[(size_t)cycles * 3 * 99 / 100] * 1e3,
         lat[(size_t)cycles * 3 - 1] * 1e3);
  printf("  store: %s\n", path);
  reg_service_release(&s);
  reg_close(reg);
  free(lat);
  if (argc <= 2) {
    char f[400];

    snprintf(f, sizeof(f), "%s-wal", path);
    unlink(f);
    snprintf(f, sizeof(f), "%s-shm", path);
    unlink(f);
    snprintf(f, sizeof(f), "%s.lock", path);
    unlink(f);
    unlink(path);
    rmdir(dir);
  }
  return 0;

fail:
  fprintf(stderr, "registry_bench: %s\n", err.message);
  return 1;
}
