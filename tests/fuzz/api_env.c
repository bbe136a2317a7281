/* The API fuzz targets' server and registry; see api_env.h. */
#include "api_env.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "nlb/api-auth.h"

static struct fuzz_api_env env;
static char dir[256];
static char db[300];
static uint64_t feed_cursor;
static bool feed_started;
static uint64_t random_state;

/* ---- sanitizer settings ------------------------------------------------- */

const char *__asan_default_options(void);

/* Each input opens the store again: SQLite's caches are new memory each
 * time, and with ASan's default 256 MiB quarantine every input faults in
 * fresh pages (half the time went there). 64 MiB still holds the memory
 * freed by many inputs for use-after-free checks. */
const char *__asan_default_options(void)
{
  return "quarantine_size_mb=64";
}

/* ---- deterministic IDs -------------------------------------------------- */

/* Replaces libc's for the registry's IDs (reg_make_id): splitmix64 over a
 * counter that each input starts again. */
ssize_t getrandom(void *buf, size_t len, unsigned int flags)
{
  uint8_t *out = buf;

  (void)flags;
  for (size_t i = 0; i < len; i++) {
    uint64_t z = (random_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    out[i] = (uint8_t)(z ^ (z >> 31));
  }
  return (ssize_t)len;
}

/* ---- the registry, inline or deferred ----------------------------------- */

struct call {
  void (*run)(struct reg *, void *);
  void (*done)(void *);
  void *arg;
  struct call *next;
};

static struct call *queue_head, **queue_tail = &queue_head;

/* What nlbd's change feed does after each call: wake event streams, take
 * tokens made or revoked. */
static void follow_changes(void)
{
  struct reg_changes c;

  if (reg_changes_read(env.reg, feed_cursor, 1000, !feed_started, &c) != 0)
    return;
  feed_started = true;
  api_server_changes(env.server, &c);
  feed_cursor = c.last_seq;
  reg_changes_release(&c);
}

static int submit(void *ctx, void (*run)(struct reg *, void *),
                  void (*done)(void *), void *arg)
{
  struct call *call;

  (void)ctx;
  if (!env.deferred) {
    run(env.reg, arg);
    follow_changes();
    done(arg);
    return 0;
  }
  call = calloc(1, sizeof *call);
  if (call == NULL)
    return -ENOMEM;
  *call = (struct call){run, done, arg, NULL};
  *queue_tail = call;
  queue_tail = &call->next;
  return 0;
}

static const struct api_registry_ops registry_ops = {.submit = submit};

size_t fuzz_api_env_run_pending(void)
{
  size_t n = 0;

  while (queue_head != NULL) {
    struct call *call = queue_head;
    queue_head = call->next;
    if (queue_head == NULL)
      queue_tail = &queue_head;
    call->run(env.reg, call->arg);
    follow_changes();
    call->done(call->arg);
    free(call);
    n++;
  }
  return n;
}

/* ---- a fake data plane -------------------------------------------------- */

static void list_target_groups(void *arg,
                               void (*emit)(void *ctx, const char *group,
                                            const struct api_target *targets,
                                            size_t n),
                               void *ctx)
{
  struct api_target web[2] = {
      {"127.0.0.1:9001", 1, "healthy", ""},
      {"[::1]:9002", 2, "unhealthy", "connection refused"},
  };

  (void)arg;
  emit(ctx, "web-tg", web, 2);
  emit(ctx, "db-tg", NULL, 0);
}

static char *metrics_text(void *arg, const struct api_metrics_scope *scope)
{
  (void)arg;
  (void)scope;
  return strdup("# HELP nlb_active_flows Flows open now.\n"
                "# TYPE nlb_active_flows gauge\n"
                "nlb_active_flows{lb=\"web-lb\",listener=\"8080\"} 0\n");
}

static const struct api_dataplane_ops dataplane_ops = {list_target_groups,
                                                       metrics_text};

/* ---- setup -------------------------------------------------------------- */

/* people[1] is prov: open_registry gives it a DNS domain. */
static const struct {
  const char *name;
  enum reg_role role;
} people[] = {{"ops", REG_ROLE_OPERATOR},
              {"prov", REG_ROLE_PROVIDER},
              {"prov2", REG_ROLE_PROVIDER},
              {"shop", REG_ROLE_CONSUMER},
              {"shop2", REG_ROLE_CONSUMER}};
#define N_PEOPLE (sizeof people / sizeof people[0])

static void remove_files(void)
{
  static const char *const suffixes[] = {"", "-wal", "-shm", "-journal",
                                         ".lock"};
  char path[320];

  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    snprintf(path, sizeof path, "%s%s", db, suffixes[i]);
    unlink(path);
  }
}

static void remove_dir(void)
{
  if (env.reg != NULL)
    reg_close(env.reg);
  env.reg = NULL;
  remove_files();
  rmdir(dir);
}

static void open_registry(void)
{
  static const char *const shop_only[] = {"shop"};
  static const char *const shop2_only[] = {"shop2"};
  static const uint16_t web_ports[] = {8080, 8443};
  static const uint16_t db_ports[] = {5432};
  static const char *const target_groups[] = {"web-tg", "db-tg"};
  struct reg_principal principals[N_PEOPLE];
  const struct reg_network networks[] = {
      {.name = "shop-vpc",
       .range = "127.88.0.0/24",
       .principals = shop_only,
       .n_principals = 1},
      {.name = "tiny",
       .range = "127.89.0.0/30",
       .principals = shop2_only,
       .n_principals = 1},
      {.name = "any6", .range = "fd00:88::/120"},
  };
  const struct reg_load_balancer lbs[] = {
      {.name = "web-lb", .ports = web_ports, .n_ports = 2},
      {.name = "db-lb",
       .ports = db_ports,
       .n_ports = 1,
       .proxy_protocol = true},
  };
  struct reg_error err = {0};

  static const char *const prov_domains[] = {"payments.example"};

  for (size_t i = 0; i < N_PEOPLE; i++)
    principals[i] =
        (struct reg_principal){.name = people[i].name, .role = people[i].role};
  /* prov may name its services in a domain of its own (private DNS). */
  principals[1].dns_domains = prov_domains;
  principals[1].n_dns_domains = 1;
  struct reg_config cfg = {.principals = principals,
                           .n_principals = N_PEOPLE,
                           .networks = networks,
                           .n_networks = 3,
                           .load_balancers = lbs,
                           .n_load_balancers = 2,
                           .target_groups = target_groups,
                           .n_target_groups = 2,
                           .node = "fuzz",
                           .version = "0.0.0",
                           .dns_zone = "nlb.internal"};
  char url[310];

  snprintf(url, sizeof url, "sqlite:%s", db);
  if (reg_open(&env.reg, url, &cfg, &err) != 0) {
    fprintf(stderr, "fuzz: registry: %s\n", err.message);
    abort();
  }
  /* This node, up: GET /v1/nodes and its drain have one to show. */
  if (reg_node_heartbeat(env.reg, true, 0) != 0)
    abort();
}

static void log_line(void *arg, int level, const char *line)
{
  (void)arg;
  (void)level;
  (void)line;
}

struct fuzz_api_env *fuzz_api_env(void)
{
  static struct api_principal principals[N_PEOPLE];
  const char *tmp = getenv("TMPDIR");
  struct api_settings settings = {0};
  struct stat st;

  if (env.server != NULL)
    return &env;
  /* tmpfs when there is one: the store syncs every commit. */
  if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
      access("/dev/shm", W_OK) == 0)
    tmp = "/dev/shm";
  snprintf(dir, sizeof dir, "%s/nlb-fuzz-api-XXXXXX", tmp ? tmp : "/tmp");
  if (mkdtemp(dir) == NULL) {
    perror(dir);
    abort();
  }
  snprintf(db, sizeof db, "%s/registry.db", dir);
  atexit(remove_dir);
  for (size_t i = 0; i < N_PEOPLE; i++) {
    char token[64];
    snprintf(token, sizeof token, "%s-token", people[i].name);
    principals[i].name = people[i].name;
    principals[i].role = people[i].role;
    api_token_sha256(token, strlen(token), principals[i].token_sha256);
  }
  env.loop = uv_default_loop();
  open_registry();
  settings.listen = "127.0.0.1:0";
  settings.principals = principals;
  settings.n_principals = N_PEOPLE;
  settings.registry = &registry_ops;
  settings.dataplane = &dataplane_ops;
  settings.log_event = log_line;
  if (api_server_start(env.loop, &settings, &env.server) != 0) {
    fprintf(stderr, "fuzz: cannot start the API server\n");
    abort();
  }
  return &env;
}

/* The store as open_registry() first leaves it (schema, this node), kept
 * to be written back for each input: migrating a new file costs more than
 * the input. */
static char *pristine;
static size_t pristine_len;

static void keep_pristine(void)
{
  FILE *f;
  long len;

  reg_close(env.reg);
  env.reg = NULL;
  f = fopen(db, "rb");
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) <= 0 ||
      fseek(f, 0, SEEK_SET) != 0)
    abort();
  pristine = malloc((size_t)len);
  if (pristine == NULL || fread(pristine, 1, (size_t)len, f) != (size_t)len)
    abort();
  pristine_len = (size_t)len;
  fclose(f);
}

void fuzz_api_env_reset(bool deferred)
{
  FILE *f;

  fuzz_api_env();
  fuzz_api_env_run_pending();
  if (pristine == NULL)
    keep_pristine();
  if (env.reg != NULL)
    reg_close(env.reg);
  env.reg = NULL;
  remove_files();
  f = fopen(db, "wb");
  if (f == NULL || fwrite(pristine, 1, pristine_len, f) != pristine_len ||
      fclose(f) != 0)
    abort();
  random_state = 0;
  feed_cursor = 0;
  feed_started = false;
  open_registry();
  follow_changes();
  env.deferred = deferred;
}

const char *fuzz_api_env_authorization(const char *who)
{
  static char value[64];

  if (strcmp(who, "-") == 0)
    return NULL;
  for (size_t i = 0; i < N_PEOPLE; i++)
    if (strcmp(who, people[i].name) == 0) {
      snprintf(value, sizeof value, "Bearer %s-token", people[i].name);
      return value;
    }
  return who;
}

void fuzz_api_env_check_response(const struct api_response *resp)
{
  json_t *body, *error;

  if (resp->status < 100 || resp->status > 599)
    abort();
  if (resp->events && resp->status == 200)
    return;
  /* A static answer (the OpenAPI document) has no body of its own. */
  const char *text = resp->body != NULL ? resp->body : resp->static_body;
  if (text == NULL || (resp->body != NULL && resp->static_body != NULL) ||
      memchr(text, '\0', resp->len) != NULL)
    abort(); /* answers are text (not NUL-terminated: len says) */
  if (resp->content_type != NULL)
    return;
  body = json_loadb(text, resp->len, 0, NULL);
  if (body == NULL)
    abort();
  if (resp->status >= 400) {
    error = json_object_get(body, "error");
    if (!json_is_object(error) ||
        !json_is_string(json_object_get(error, "code")) ||
        !json_is_string(json_object_get(error, "message")))
      abort();
  }
  json_decref(body);
}
