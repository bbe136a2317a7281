/* A standalone management API over a registry in a file of its own, for the
 * end-to-end tests: the API without the data plane (or with a small fake
 * one). Prints "port N" once it listens; SIGTERM/SIGINT shut it down
 * gracefully, SIGHUP reloads the same principals (every client gets
 * GOAWAY).
 *
 *   api_server_main --db FILE [--listen ADDR:PORT]
 *     [--tls-cert PEM --tls-key PEM]
 *     [--principal NAME:ROLE:TOKEN]... [--network NAME:RANGE[:P1,P2...]]...
 *     [--lb NAME:PORT[,PORT...]]... [--fake-dataplane]
 *     [--request-timeout-ms N] [--idle-timeout-ms N]
 *     [--unauthenticated-lifetime-ms N] [--output-budget BYTES]
 *     [--dns-zone ZONE] [--dns-domains PRINCIPAL:D1[,D2...]]...
 *     [--network-dns NETWORK:ADDRESS]...
 * (--dns-domains and --network-dns after the principal or network they
 * name.)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "nlb/api-auth.h"
#include "nlb/api.h"
#include "nlb/registry.h"

#define MAX_ITEMS 32

struct fake_target {
  char address[64];
  uint32_t weight;
  const char *state;
};

struct fake_group {
  const char *name;
  struct fake_target targets[16];
  size_t n;
};

static struct fake_group groups[] = {
    {"web-tg",
     {{"127.0.0.1:9001", 1, "healthy"}, {"127.0.0.1:9002", 2, "unhealthy"}},
     2},
    {"db-tg", {{"", 0, NULL}}, 0},
};
#define N_GROUPS (sizeof groups / sizeof groups[0])

static struct api_target as_api(const struct fake_target *t)
{
  struct api_target out = {.weight = t->weight, .state = t->state};
  snprintf(out.address, sizeof out.address, "%s", t->address);
  out.reason = strcmp(t->state, "unhealthy") == 0 ? "connection refused" : "";
  return out;
}

static void fake_list(void *arg,
                      void (*emit)(void *ctx, const char *group,
                                   const struct api_target *targets, size_t n),
                      void *ctx)
{
  for (size_t g = 0; g < N_GROUPS; g++) {
    struct api_target targets[16];
    for (size_t i = 0; i < groups[g].n; i++)
      targets[i] = as_api(&groups[g].targets[i]);
    emit(ctx, groups[g].name, targets, groups[g].n);
  }
}

static struct fake_group *find_group(const char *name)
{
  for (size_t g = 0; g < N_GROUPS; g++)
    if (strcmp(groups[g].name, name) == 0)
      return &groups[g];
  return NULL;
}

/* A run-time target the registry holds (weight > 0) or dropped (0): the
 * fake data plane follows, as nlbd's router does. */
static void fake_apply_target(const char *group, const char *address,
                              uint32_t weight)
{
  struct fake_group *g = find_group(group);
  struct fake_target *t = NULL;

  if (g == NULL)
    return;
  for (size_t i = 0; i < g->n; i++)
    if (strcmp(g->targets[i].address, address) == 0)
      t = &g->targets[i];
  if (weight == 0) {
    if (t != NULL)
      t->state = "draining";
    return;
  }
  if (t == NULL && g->n < 16) {
    t = &g->targets[g->n++];
    snprintf(t->address, sizeof t->address, "%s", address);
  }
  if (t != NULL) {
    t->weight = weight;
    t->state = "initial";
  }
}

static char *fake_metrics(void *arg, const struct api_metrics_scope *scope)
{
  return strdup("# HELP nlb_active_flows Flows open now.\n"
                "# TYPE nlb_active_flows gauge\n"
                "nlb_active_flows{lb=\"web-lb\",listener=\"8080\"} 0\n");
}

static const struct api_dataplane_ops fake_ops = {fake_list, fake_metrics};

static uv_loop_t *loop;
static struct api_server *server;
static struct api_settings settings;
static struct reg *reg;
static uint64_t feed_cursor;
static bool feed_started;

/* What nlbd's registry thread and change feed do, inline: after each
 * call, read the changes it made and apply them. */
static void follow_changes(void)
{
  struct reg_changes c;

  if (reg_changes_read(reg, feed_cursor, 1000, !feed_started, &c) != 0)
    return;
  feed_started = true;
  for (size_t i = 0; i < c.n_events; i++) {
    const struct reg_event *ev = &c.events[i];
    uint32_t weight = 0;

    if (ev->target[0] == '\0')
      continue;
    for (size_t k = 0; k < c.n_targets; k++)
      if (strcmp(c.targets[k].address, ev->target) == 0 &&
          strcmp(c.targets[k].target_group, ev->target_group) == 0)
        weight = c.targets[k].weight;
    fake_apply_target(ev->target_group, ev->target, weight);
  }
  if (server != NULL)
    api_server_changes(server, &c);
  feed_cursor = c.last_seq;
  reg_changes_release(&c);
}

/* Runs at once, on this thread: answers come before submit returns. */
static int inline_submit(void *ctx, void (*run)(struct reg *, void *),
                         void (*done)(void *), void *arg)
{
  run(reg, arg);
  follow_changes();
  done(arg);
  return 0;
}

static const struct api_registry_ops inline_registry = {.submit = inline_submit};
static uv_signal_t sig_term, sig_int, sig_hup;

static void log_line(void *arg, int level, const char *line)
{
  static const char *const names[] = {"debug", "info", "warn", "error"};
  fprintf(stderr, "api_server_main: [%s] %s\n",
          names[level >= 0 && level <= 3 ? level : 3], line);
}

static void on_signal(uv_signal_t *handle, int signum)
{
  if (signum == SIGHUP) {
    api_server_reload(server, &settings);
    return;
  }
  api_server_shutdown(server);
  uv_close((uv_handle_t *)&sig_term, NULL);
  uv_close((uv_handle_t *)&sig_int, NULL);
  uv_close((uv_handle_t *)&sig_hup, NULL);
}

static char *split(char *s, char sep)
{
  char *p = s != NULL ? strchr(s, sep) : NULL;
  if (p == NULL)
    return NULL;
  *p = '\0';
  return p + 1;
}

static void usage(void)
{
  fprintf(stderr, "usage: api_server_main --db FILE [--listen ADDR:PORT] "
                  "[--tls-cert F --tls-key F] [--principal NAME:ROLE:TOKEN] "
                  "[--network NAME:RANGE[:P,...]] [--lb NAME:PORT[,PORT]] "
                  "[--fake-dataplane] [--request-timeout-ms N] "
                  "[--idle-timeout-ms N] [--unauthenticated-lifetime-ms N] "
                  "[--output-budget BYTES] "
                  "[--dns-zone ZONE] [--dns-domains PRINCIPAL:D,...] "
                  "[--network-dns NETWORK:ADDRESS]\n");
  exit(2);
}

int main(int argc, char **argv)
{
  struct api_principal principals[MAX_ITEMS];
  struct reg_principal reg_principals[MAX_ITEMS];
  struct reg_network networks[MAX_ITEMS];
  struct reg_load_balancer lbs[MAX_ITEMS];
  uint16_t ports[MAX_ITEMS][8];
  const char *network_principals[MAX_ITEMS][8];
  const char *domains[MAX_ITEMS][8];
  size_t n_principals = 0, n_networks = 0, n_lbs = 0;
  const char *db = NULL, *dns_zone = NULL;

  memset(reg_principals, 0, sizeof reg_principals);

  /* As nlbd does: a write to a connection the client already closed must
   * fail with EPIPE, not kill the process (see api.h). */
  signal(SIGPIPE, SIG_IGN);
  settings.listen = "127.0.0.1:0";
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    char *value = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(opt, "--fake-dataplane") == 0) {
      settings.dataplane = &fake_ops;
      continue;
    }
    if (value == NULL)
      usage();
    i++;
    if (strcmp(opt, "--db") == 0) {
      db = value;
    } else if (strcmp(opt, "--listen") == 0) {
      settings.listen = value;
    } else if (strcmp(opt, "--tls-cert") == 0) {
      settings.tls_cert = value;
    } else if (strcmp(opt, "--tls-key") == 0) {
      settings.tls_key = value;
    } else if (strcmp(opt, "--request-timeout-ms") == 0) {
      settings.request_timeout_ms = strtoull(value, NULL, 10);
    } else if (strcmp(opt, "--idle-timeout-ms") == 0) {
      settings.idle_timeout_ms = strtoull(value, NULL, 10);
    } else if (strcmp(opt, "--unauthenticated-lifetime-ms") == 0) {
      settings.unauthenticated_lifetime_ms = strtoull(value, NULL, 10);
    } else if (strcmp(opt, "--output-budget") == 0) {
      settings.output_budget = strtoull(value, NULL, 10);
    } else if (strcmp(opt, "--principal") == 0 && n_principals < MAX_ITEMS) {
      char *role = split(value, ':'), *token = split(role, ':');
      struct api_principal *p = &principals[n_principals];
      if (token == NULL || reg_role_parse(role, &p->role) != 0)
        usage();
      p->name = value;
      api_token_sha256(token, strlen(token), p->token_sha256);
      reg_principals[n_principals].name = value;
      reg_principals[n_principals].role = p->role;
      n_principals++;
    } else if (strcmp(opt, "--network") == 0 && n_networks < MAX_ITEMS) {
      char *range = split(value, ':'), *who = split(range, ':');
      struct reg_network *n = &networks[n_networks];
      if (range == NULL)
        usage();
      memset(n, 0, sizeof *n);
      n->name = value;
      n->range = range;
      for (char *p = who; p != NULL && n->n_principals < 8;) {
        char *next = split(p, ',');
        network_principals[n_networks][n->n_principals++] = p;
        p = next;
      }
      n->principals = network_principals[n_networks];
      n_networks++;
    } else if (strcmp(opt, "--dns-zone") == 0) {
      dns_zone = value;
    } else if (strcmp(opt, "--dns-domains") == 0) {
      char *list = split(value, ':');
      size_t k = 0;
      while (k < n_principals && strcmp(reg_principals[k].name, value) != 0)
        k++;
      if (list == NULL || k == n_principals)
        usage();
      reg_principals[k].dns_domains = domains[k];
      for (char *p = list; p != NULL && reg_principals[k].n_dns_domains < 8;) {
        char *next = split(p, ',');
        domains[k][reg_principals[k].n_dns_domains++] = p;
        p = next;
      }
    } else if (strcmp(opt, "--network-dns") == 0) {
      char *address = split(value, ':');
      size_t k = 0;
      while (k < n_networks && strcmp(networks[k].name, value) != 0)
        k++;
      if (address == NULL || k == n_networks)
        usage();
      networks[k].dns = address;
    } else if (strcmp(opt, "--lb") == 0 && n_lbs < MAX_ITEMS) {
      char *list = split(value, ':');
      struct reg_load_balancer *lb = &lbs[n_lbs];
      if (list == NULL)
        usage();
      memset(lb, 0, sizeof *lb);
      lb->name = value;
      for (char *p = list; p != NULL && lb->n_ports < 8;) {
        char *next = split(p, ',');
        ports[n_lbs][lb->n_ports++] = (uint16_t)atoi(p);
        p = next;
      }
      lb->ports = ports[n_lbs];
      n_lbs++;
    } else {
      usage();
    }
  }
  if (db == NULL)
    usage();

  static const char *const target_groups[] = {"web-tg", "db-tg"};
  struct reg_config cfg = {.principals = reg_principals,
                           .n_principals = n_principals,
                           .networks = networks,
                           .n_networks = n_networks,
                           .load_balancers = lbs,
                           .n_load_balancers = n_lbs,
                           .target_groups = target_groups,
                           .n_target_groups = 2,
                           .dns_zone = dns_zone};
  struct reg_error err = {0};
  char url[4096];
  int r;

  snprintf(url, sizeof(url), "sqlite:%s", db);
  r = reg_open(&reg, url, &cfg, &err);
  if (r != 0) {
    fprintf(stderr, "api_server_main: registry: %s (%s)\n", err.message,
            strerror(-r));
    return 1;
  }
  loop = uv_default_loop();
  settings.principals = principals;
  settings.n_principals = n_principals;
  settings.registry = &inline_registry;
  follow_changes();
  settings.log_event = log_line;
  r = api_server_start(loop, &settings, &server);
  if (r != 0) {
    fprintf(stderr, "api_server_main: cannot start: %s\n", uv_strerror(r));
    uv_run(loop, UV_RUN_NOWAIT); /* let a failed listener close */
    reg_close(reg);
    return 1;
  }
  uv_signal_init(loop, &sig_term);
  uv_signal_init(loop, &sig_int);
  uv_signal_init(loop, &sig_hup);
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  uv_signal_start(&sig_int, on_signal, SIGINT);
  uv_signal_start(&sig_hup, on_signal, SIGHUP);
  printf("port %d\n", api_server_port(server));
  fflush(stdout);

  uv_run(loop, UV_RUN_DEFAULT);
  if (!api_server_closed(server)) {
    fprintf(stderr, "api_server_main: loop ended before the server closed\n");
    return 1;
  }
  api_server_free(server);
  reg_close(reg);
  uv_loop_close(loop);
  return 0;
}
