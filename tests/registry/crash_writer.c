/* Durability test helper: performs registry operations in a loop on the
 * store at argv[1] and, after each one committed, writes
 * "committed <op> <id> <state>" to stdout and flushes it. The driver
 * (tests/e2e/test_registry_durability.py) kills it with SIGKILL at random
 * moments and checks that everything reported survived.
 *
 * usage: crash_writer DB [SEED] */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nlb/registry.h"

#define MAX_TRACKED 4096

static const struct reg_actor OPS = {"ops", REG_ROLE_OPERATOR};
static const struct reg_actor PAY = {"pay", REG_ROLE_PROVIDER};
static const struct reg_actor SHOP = {"shop", REG_ROLE_CONSUMER};

struct tracked {
  char id[REG_ID_BUF];
  char service_id[REG_ID_BUF];
  enum reg_endpoint_state state;
};

static struct tracked endpoints[MAX_TRACKED];
static size_t n_endpoints;

static void report(const char *op, const char *id, const char *state)
{
  printf("committed %s %s %s\n", op, id, state);
  if (fflush(stdout) != 0)
    exit(3);
}

/* Finds the service named name, creating it if it is not there. */
static int ensure_service(struct reg *reg, const char *name, bool acceptance,
                          char *id)
{
  static const char *const all[] = {"*"};
  struct reg_service_params p = {name, "lb", acceptance, all, 1, 0, NULL};
  struct reg_service *v;
  struct reg_service s;
  struct reg_error err;
  char next[REG_TOKEN_BUF];
  size_t n;
  int r;

  if ((r = reg_service_list(reg, &PAY, NULL, &v, &n, next, &err)) < 0)
    return r;
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i].name, name) == 0) {
      strcpy(id, v[i].id);
      reg_services_free(v, n);
      return 0;
    }
  reg_services_free(v, n);
  if ((r = reg_service_create(reg, &PAY, &p, &s, &err)) < 0) {
    fprintf(stderr, "crash_writer: create service: %s\n", err.message);
    return r;
  }
  strcpy(id, s.id);
  reg_service_release(&s);
  report("service", id, "available");
  return 0;
}

static void track(const struct reg_endpoint *e)
{
  struct tracked *t;

  if (e->state == REG_EP_DELETED)
    return;
  if (n_endpoints == MAX_TRACKED)
    return;
  t = &endpoints[n_endpoints++];
  strcpy(t->id, e->id);
  strcpy(t->service_id, e->service_id);
  t->state = e->state;
}

static void untrack(size_t i)
{
  endpoints[i] = endpoints[--n_endpoints];
}

static int step(struct reg *reg, const char *svc_manual, const char *svc_auto)
{
  struct reg_item_result res;
  struct reg_endpoint e;
  struct reg_error err;
  const char *ids[1];
  int dice = rand() % 100;
  size_t i;
  int r;

  /* Create when there is little to act on, or one time in three. */
  if (n_endpoints < 8 || (dice < 33 && n_endpoints < 400)) {
    struct reg_endpoint_params p = {dice % 4 ? svc_manual : svc_auto, "host",
                                    NULL, NULL, 0, false};

    if ((r = reg_endpoint_create(reg, &SHOP, &p, &e, &err)) < 0) {
      fprintf(stderr, "crash_writer: create: %s\n", err.message);
      return r;
    }
    report("create", e.id, reg_state_name(e.state));
    track(&e);
    reg_endpoint_release(&e);
    return 0;
  }
  i = (size_t)rand() % n_endpoints;
  ids[0] = endpoints[i].id;
  switch (endpoints[i].state) {
  case REG_EP_PENDING_ACCEPTANCE:
    if (dice < 60) {
      r = reg_connections_accept(reg, &PAY, endpoints[i].service_id, ids, 1,
                                 &res, &err);
      if (r == 0 && res.code == 0) {
        endpoints[i].state = REG_EP_AVAILABLE;
        report("accept", ids[0], "available");
      }
      break;
    }
    if (dice < 80) {
      r = reg_connections_reject(reg, &PAY, endpoints[i].service_id, ids, 1,
                                 &res, &err);
      if (r == 0 && res.code == 0) {
        endpoints[i].state = REG_EP_REJECTED;
        report("reject", ids[0], "rejected");
      }
      break;
    }
    /* otherwise delete it */
    __attribute__((fallthrough));
  case REG_EP_REJECTED:
  case REG_EP_FAILED:
  case REG_EP_EXPIRED:
    r = reg_endpoint_delete(reg, &SHOP, ids[0], NULL, &err);
    if (r == 0) {
      report("delete", ids[0], "deleted");
      untrack(i);
    }
    break;
  case REG_EP_AVAILABLE:
    if (dice < 55) {
      r = reg_connections_reject(reg, &PAY, endpoints[i].service_id, ids, 1,
                                 &res, &err);
      if (r == 0 && res.code == 0) {
        endpoints[i].state = REG_EP_REJECTED;
        report("reject", ids[0], "rejected");
      }
    } else if (dice < 65) {
      /* The only node could not open it: it fails. */
      struct reg_placement_report rep = {ids[0], false, "listener failed"};

      r = reg_placements_report(reg, &rep, 1);
      if (r == 0) {
        endpoints[i].state = REG_EP_FAILED;
        report("fail", ids[0], "failed");
      }
    } else {
      r = reg_endpoint_delete(reg, &SHOP, ids[0], NULL, &err);
      if (r == 0) {
        report("delete", ids[0], "deleted");
        untrack(i);
      }
    }
    break;
  default:
    untrack(i);
    return 0;
  }
  if (r < 0)
    fprintf(stderr, "crash_writer: %s\n", err.message);
  return r;
}

int main(int argc, char **argv)
{
  static const struct reg_principal principals[] = {
      {"ops", REG_ROLE_OPERATOR, NULL, 0},
      {"pay", REG_ROLE_PROVIDER, NULL, 0},
      {"shop", REG_ROLE_CONSUMER, NULL, 0},
  };
  static const struct reg_network networks[] = {
      {"host", NULL, "127.77.0.0/16", NULL, 0, NULL},
  };
  static const uint16_t ports[] = {8080};
  static const struct reg_load_balancer lbs[] = {{"lb", ports, 1, false}};
  static const struct reg_config config = {.principals = principals,
                                           .n_principals = 3,
                                           .networks = networks,
                                           .n_networks = 1,
                                           .load_balancers = lbs,
                                           .n_load_balancers = 1};
  char svc_manual[REG_ID_BUF], svc_auto[REG_ID_BUF];
  char next[REG_TOKEN_BUF] = "";
  char url[4096];
  struct reg_endpoint *v;
  struct reg_error err;
  struct reg *reg;
  size_t n;
  long limit = -1;

  if (argc < 2) {
    fprintf(stderr, "usage: crash_writer DB [SEED [OPS]]\n");
    return 2;
  }
  srand(argc > 2 ? (unsigned)atol(argv[2]) : (unsigned)getpid());
  if (argc > 3)
    limit = atol(argv[3]);
  snprintf(url, sizeof(url), "sqlite:%s", argv[1]);
  if (reg_open(&reg, url, &config, &err) < 0) {
    fprintf(stderr, "crash_writer: open: %s\n", err.message);
    return 1;
  }
  if (ensure_service(reg, "crash", true, svc_manual) < 0 ||
      ensure_service(reg, "crash-auto", false, svc_auto) < 0)
    return 1;
  do {
    struct reg_page page = {0, next};

    if (reg_endpoint_list(reg, &OPS, NULL, &page, &v, &n, next, &err) < 0) {
      fprintf(stderr, "crash_writer: list: %s\n", err.message);
      return 1;
    }
    for (size_t i = 0; i < n; i++)
      track(&v[i]);
    reg_endpoints_free(v, n);
  } while (next[0] != '\0');
  printf("ready\n");
  fflush(stdout);
  for (long i = 0; limit < 0 || i < limit; i++)
    if (step(reg, svc_manual, svc_auto) < 0)
      return 1;
  reg_close(reg);
  return 0;
}
