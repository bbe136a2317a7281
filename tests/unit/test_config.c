/* CUnit suite for nlb/config.c: a complete file loads into the expected
 * tree, and each class of mistake is reported as "FILE:LINE: message" with
 * the line the mistake is on, every mistake of a file in one pass. */
#include "nlb/config.h"
#include "nlb/lb.h"

#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

static char config_path[64];

static int suite_init(void)
{
  int fd;
  snprintf(config_path, sizeof(config_path), "/tmp/nlb-test-config-XXXXXX");
  fd = mkstemp(config_path);
  if (fd < 0)
    return -1;
  close(fd);
  return 0;
}

static int suite_clean(void)
{
  unlink(config_path);
  return 0;
}

/* Writes text to the suite's file and loads it. */
static struct nlb_config *load_text(const char *text, char **errors)
{
  FILE *f = fopen(config_path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs(text, f);
  fclose(f);
  return nlb_config_load(config_path, errors);
}

/* True when errors holds a line "PATH:LINE: ..." that contains message. */
static int has_error(const char *errors, int line, const char *message)
{
  char prefix[128];
  size_t prefix_len;

  snprintf(prefix, sizeof(prefix), "%s:%d: ", config_path, line);
  prefix_len = strlen(prefix);
  for (const char *p = errors; p && *p;) {
    const char *end = strchr(p, '\n');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len >= prefix_len && strncmp(p, prefix, prefix_len) == 0) {
      char copy[1024];
      snprintf(copy, sizeof(copy), "%.*s", (int)len, p);
      if (strstr(copy + prefix_len, message))
        return 1;
    }
    p = end ? end + 1 : NULL;
  }
  return 0;
}

/* Every line of errors has the "PATH:LINE: message" shape. */
static int all_lines_well_formed(const char *errors)
{
  size_t path_len = strlen(config_path);
  for (const char *p = errors; p && *p;) {
    const char *end = strchr(p, '\n');
    const char *q = p + path_len;
    if (!end || strncmp(p, config_path, path_len) != 0 || *q != ':')
      return 0;
    q++;
    if (*q < '1' || *q > '9') /* a real line, not 0 */
      return 0;
    while (*q >= '0' && *q <= '9')
      q++;
    if (q[0] != ':' || q[1] != ' ' || q + 2 >= end)
      return 0;
    p = end + 1;
  }
  return 1;
}

/* Loads text, which must fail with message on line. */
static void expect_error_at(const char *text, int line, const char *message)
{
  char *errors = NULL;
  struct nlb_config *cfg = load_text(text, &errors);
  CU_ASSERT_PTR_NULL(cfg);
  CU_ASSERT_PTR_NOT_NULL(errors);
  if (!has_error(errors, line, message) || !all_lines_well_formed(errors))
    fprintf(stderr, "\n  want line %d \"%s\"; got:\n%s", line, message,
            errors ? errors : "(none)\n");
  CU_ASSERT_TRUE(has_error(errors, line, message));
  CU_ASSERT_TRUE(all_lines_well_formed(errors));
  nlb_config_free(cfg);
  free(errors);
}

static void expect_ok(const char *text)
{
  char *errors = NULL;
  struct nlb_config *cfg = load_text(text, &errors);
  if (!cfg)
    fprintf(stderr, "\n  unexpected errors:\n%s", errors ? errors : "");
  CU_ASSERT_PTR_NOT_NULL(cfg);
  CU_ASSERT_PTR_NULL(errors);
  nlb_config_free(cfg);
  free(errors);
}

#define HASH_A                                                                 \
  "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define HASH_B                                                                 \
  "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"

/* A config that sets every setting, line by line (numbers in comments are
 * file lines). */
static const char full_config[] =
    "workers = 3;\n"                                           /* 1 */
    "shutdown_timeout = \"30s\";\n"                            /* 2 */
    "log = { access = \"stderr\"; access_format = \"json\";\n" /* 3 */
    "        events = \"stderr\"; level = \"warn\"; };\n"      /* 4 */
    "api = { listen = \"127.0.0.1:9180\"; };\n"                /* 5 */
    "registry = { path = \"/tmp/registry.db\"; };\n"           /* 6 */
    "principals = (\n"                                         /* 7 */
    "  { name = \"ops\"; role = \"operator\";\n"               /* 8 */
    "    token_sha256 = \"" HASH_A "\"; },\n"                  /* 9 */
    "  { name = \"shop\"; role = \"consumer\";\n"              /* 10 */
    "    token_sha256 = \"" HASH_B "\"; }\n"                   /* 11 */
    ");\n"                                                     /* 12 */
    "networks = (\n"                                           /* 13 */
    "  { name = \"host\"; range = \"127.77.0.0/16\"; },\n"     /* 14 */
    "  { name = \"shop-vpc\"; netns = \"shop\"; range = \"127.88.0.0/24\";\n"
    "    principals = [ \"shop\" ]; }\n" /* 16 */
    ");\n"                               /* 17 */
    "target_groups = (\n"                /* 18 */
    "  { name = \"payments-tg\";\n"      /* 19 */
    "    algorithm = \"least_conn\";\n"  /* 20 */
    "    proxy_protocol = \"v2\";\n"     /* 21 */
    "    deregistration_delay = \"300s\";\n"
    "    fail_open = false;\n"
    "    health_check = { protocol = \"http\"; port = 8081;\n"
    "                     interval = \"10s\"; timeout = \"250ms\";\n"
    "                     healthy_threshold = 3; unhealthy_threshold = 2;\n"
    "                     path = \"/health\"; matcher = \"200-399\"; };\n"
    "    targets = ( { address = \"127.0.0.1:9001\"; weight = 1; },\n"
    "                { address = \"[::1]:9002\"; weight = 7; } );\n"
    "  },\n"
    "  { name = \"other-tg\"; targets = ( { address = \"127.0.0.1:9003\"; } ); "
    "}\n"
    ");\n"
    "load_balancers = (\n"
    "  { name = \"payments-lb\";\n"
    "    listeners = (\n"
    "      { port = 8080; target_group = \"payments-tg\";\n"
    "        bind = \"127.0.0.1\"; idle_timeout = \"350s\"; },\n"
    "      { port = 8443; target_group = \"other-tg\"; }\n"
    "    );\n"
    "  }\n"
    ");\n";

static void test_config_full_example_loads(void)
{
  char *errors = NULL;
  struct nlb_config *cfg = load_text(full_config, &errors);
  char text[NLB_ADDR_TEXT_MAX];

  if (!cfg)
    fprintf(stderr, "\n%s", errors ? errors : "");
  CU_ASSERT_PTR_NULL(errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_STRING_EQUAL(cfg->path, config_path);
  CU_ASSERT_EQUAL(cfg->workers, 3);
  CU_ASSERT_EQUAL(cfg->shutdown_timeout_ms, 30000);
  CU_ASSERT_EQUAL(cfg->log_access_format, NLB_LOG_JSON);
  CU_ASSERT_EQUAL(cfg->log_level, 2);
  CU_ASSERT_TRUE(cfg->has_api);
  CU_ASSERT_STRING_EQUAL(nlb_addr_format(&cfg->api_listen, text, sizeof(text)),
                         "127.0.0.1:9180");
  CU_ASSERT_TRUE(cfg->has_registry);
  CU_ASSERT_STRING_EQUAL(cfg->registry_url, "sqlite:///tmp/registry.db");

  CU_ASSERT_EQUAL_FATAL(cfg->n_principals, 2);
  CU_ASSERT_STRING_EQUAL(cfg->principals[0].name, "ops");
  CU_ASSERT_EQUAL(cfg->principals[0].role, NLB_ROLE_OPERATOR);
  CU_ASSERT_EQUAL(cfg->principals[0].token_sha256[0], 0x9f);
  CU_ASSERT_EQUAL(cfg->principals[0].token_sha256[31], 0x08);
  CU_ASSERT_EQUAL(cfg->principals[1].role, NLB_ROLE_CONSUMER);
  CU_ASSERT_EQUAL(cfg->principals[0].line, 8);

  CU_ASSERT_EQUAL_FATAL(cfg->n_networks, 2);
  CU_ASSERT_PTR_NULL(cfg->networks[0].netns);
  CU_ASSERT_EQUAL(cfg->networks[0].range.prefix_len, 16);
  CU_ASSERT_STRING_EQUAL(cfg->networks[1].netns, "shop");
  CU_ASSERT_EQUAL_FATAL(cfg->networks[1].n_principals, 1);
  CU_ASSERT_STRING_EQUAL(cfg->networks[1].principals[0], "shop");

  CU_ASSERT_EQUAL_FATAL(cfg->n_target_groups, 2);
  const struct nlb_config_target_group *tg = &cfg->target_groups[0];
  CU_ASSERT_STRING_EQUAL(tg->name, "payments-tg");
  CU_ASSERT_EQUAL(tg->line, 19);
  CU_ASSERT_EQUAL(tg->algorithm, NLB_ALGORITHM_LEAST_CONN);
  CU_ASSERT_TRUE(tg->proxy_protocol_v2);
  CU_ASSERT_FALSE(tg->fail_open);
  CU_ASSERT_EQUAL(tg->deregistration_delay_ms, 300000);
  CU_ASSERT_EQUAL(tg->health.protocol, NLB_HEALTH_HTTP);
  CU_ASSERT_EQUAL(tg->health.port, 8081);
  CU_ASSERT_EQUAL(tg->health.interval_ms, 10000);
  CU_ASSERT_EQUAL(tg->health.timeout_ms, 250);
  CU_ASSERT_STRING_EQUAL(tg->health.path, "/health");
  CU_ASSERT_EQUAL_FATAL(tg->n_targets, 2);
  CU_ASSERT_STRING_EQUAL(
      nlb_addr_format(&tg->targets[0].address, text, sizeof(text)),
      "127.0.0.1:9001");
  CU_ASSERT_STRING_EQUAL(
      nlb_addr_format(&tg->targets[1].address, text, sizeof(text)),
      "[::1]:9002");
  CU_ASSERT_EQUAL(tg->targets[1].weight, 7);
  CU_ASSERT_EQUAL(tg->targets[1].line, 29);
  CU_ASSERT_PTR_EQUAL(nlb_config_find_target_group(cfg, "other-tg"),
                      &cfg->target_groups[1]);
  CU_ASSERT_PTR_NULL(nlb_config_find_target_group(cfg, "nope"));

  /* Defaults of a group that sets nothing. */
  tg = &cfg->target_groups[1];
  CU_ASSERT_EQUAL(tg->algorithm, NLB_ALGORITHM_MAGLEV);
  CU_ASSERT_FALSE(tg->proxy_protocol_v2);
  CU_ASSERT_TRUE(tg->fail_open);
  CU_ASSERT_EQUAL(tg->deregistration_delay_ms, 300000);
  CU_ASSERT_EQUAL(tg->health.protocol, NLB_HEALTH_TCP);
  CU_ASSERT_EQUAL(tg->health.port, 0);
  CU_ASSERT_EQUAL(tg->targets[0].weight, 1);

  CU_ASSERT_EQUAL_FATAL(cfg->n_load_balancers, 1);
  const struct nlb_config_load_balancer *lb = &cfg->load_balancers[0];
  CU_ASSERT_STRING_EQUAL(lb->name, "payments-lb");
  CU_ASSERT_EQUAL_FATAL(lb->n_listeners, 2);
  CU_ASSERT_EQUAL(lb->listeners[0].port, 8080);
  CU_ASSERT_EQUAL(lb->listeners[0].target_group, 0);
  CU_ASSERT_TRUE(lb->listeners[0].has_bind);
  CU_ASSERT_STRING_EQUAL(
      nlb_addr_format(&lb->listeners[0].bind, text, sizeof(text)),
      "127.0.0.1:8080");
  CU_ASSERT_EQUAL(lb->listeners[0].idle_timeout_ms, 350000);
  CU_ASSERT_EQUAL(lb->listeners[1].target_group, 1);
  CU_ASSERT_FALSE(lb->listeners[1].has_bind);
  CU_ASSERT_EQUAL(lb->listeners[1].idle_timeout_ms, 350000);
  nlb_config_free(cfg);
}

static void test_config_minimal_defaults(void)
{
  char *errors = NULL;
  struct nlb_config *cfg = load_text("workers = 0;\n", &errors);
  cpu_set_t allowed;

  /* One worker per CPU the process may run on (taskset, cpusets), pinned. */
  CU_ASSERT_EQUAL_FATAL(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_EQUAL(cfg->workers, (unsigned)CPU_COUNT(&allowed));
  CU_ASSERT_TRUE(cfg->pin_workers);
  CU_ASSERT_EQUAL(cfg->shutdown_timeout_ms, 30000);
  CU_ASSERT_STRING_EQUAL(cfg->log_access, "stderr");
  CU_ASSERT_STRING_EQUAL(cfg->log_events, "stderr");
  CU_ASSERT_EQUAL(cfg->log_access_format, NLB_LOG_TEXT);
  CU_ASSERT_EQUAL(cfg->log_level, 1);
  CU_ASSERT_FALSE(cfg->has_api);
  CU_ASSERT_FALSE(cfg->has_registry);
  CU_ASSERT_EQUAL(cfg->n_target_groups, 0);
  CU_ASSERT_EQUAL(cfg->n_load_balancers, 0);
  nlb_config_free(cfg);
  free(errors);
  expect_ok("");

  cfg = load_text("worker_cpu_affinity = \"off\";\n", &errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_FALSE(cfg->pin_workers);
  nlb_config_free(cfg);
  free(errors);
}

static void test_config_durations_in_every_form(void)
{
  static const struct {
    const char *value;
    uint64_t ms;
  } cases[] = {{"5", 5000},        {"0.25", 250},      {"\"250ms\"", 250},
               {"\"10s\"", 10000}, {"\"5m\"", 300000}, {"\"12\"", 12000},
               {"0", 0},           {"5L", 5000}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char text[128];
    char *errors = NULL;
    snprintf(text, sizeof(text), "shutdown_timeout = %s;\n", cases[i].value);
    struct nlb_config *cfg = load_text(text, &errors);
    CU_ASSERT_PTR_NOT_NULL(cfg);
    if (cfg) {
      if (cfg->shutdown_timeout_ms != cases[i].ms)
        fprintf(stderr, "\n  %s -> %llu ms", cases[i].value,
                (unsigned long long)cfg->shutdown_timeout_ms);
      CU_ASSERT_EQUAL(cfg->shutdown_timeout_ms, cases[i].ms);
    }
    nlb_config_free(cfg);
    free(errors);
  }
}

static void test_config_syntax_error_has_line(void)
{
  expect_error_at("workers = 1;\n"
                  "shutdown_timeout = \"1s\";\n"
                  "log = { level = = \"info\"; };\n",
                  3, "syntax error");
  expect_error_at("workers = 1;\n"
                  "\n"
                  "target_groups = ( { name = \"a\"; } ;\n",
                  3, "syntax error");
  expect_error_at("workers = 1;\nworkers = 2;\n", 2, "");
}

static void test_config_missing_file_names_it(void)
{
  char *errors = NULL;
  struct nlb_config *cfg =
      nlb_config_load("/nonexistent/nlb-test.cfg", &errors);
  CU_ASSERT_PTR_NULL(cfg);
  CU_ASSERT_PTR_NOT_NULL_FATAL(errors);
  CU_ASSERT_PTR_NOT_NULL(strstr(errors, "/nonexistent/nlb-test.cfg:"));
  CU_ASSERT_PTR_NOT_NULL(strstr(errors, "No such file"));
  free(errors);
}

#define TG(body)                                                               \
  "target_groups = (\n"                                                        \
  "  { name = \"tg\";\n" body "  }\n"                                          \
  ");\n"

/* forwarding: splice by default, the top level's for every listener
 * unless it says its own, and an unknown name refused at its line. */
static void test_config_forwarding(void)
{
  char *errors = NULL;
  struct nlb_config *cfg = load_text(
      "forwarding = \"auto\";\n"
      "target_groups = ( { name = \"tg\"; targets = ( { address = "
      "\"127.0.0.1:1\"; } ); } );\n"
      "load_balancers = ( { name = \"lb\"; listeners = (\n"
      "  { port = 80; target_group = \"tg\"; },\n"
      "  { port = 81; target_group = \"tg\"; forwarding = \"sockmap\"; }\n"
      "); } );\n",
      &errors);

  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_EQUAL(cfg->forwarding, NLB_FORWARDING_AUTO);
  CU_ASSERT_EQUAL(cfg->load_balancers[0].listeners[0].forwarding,
                  NLB_FORWARDING_AUTO);
  CU_ASSERT_EQUAL(cfg->load_balancers[0].listeners[1].forwarding,
                  NLB_FORWARDING_SOCKMAP);
  nlb_config_free(cfg);
  cfg = load_text("workers = 0;\n", &errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_EQUAL(cfg->forwarding, NLB_FORWARDING_SPLICE);
  nlb_config_free(cfg);
  expect_error_at("workers = 0;\nforwarding = \"copy\";\n", 2,
                  "unknown forwarding \"copy\" (valid: splice, sockmap, "
                  "auto)");
}

static void test_config_unknown_target_group(void)
{
  expect_error_at(
      TG("    targets = ( { address = \"127.0.0.1:1\"; } );\n") "load_"
                                                                "balancers = "
                                                                "(\n"
                                                                "  { name = "
                                                                "\"lb\"; "
                                                                "listeners = "
                                                                "(\n"
                                                                "    { port = "
                                                                "80;\n"
                                                                "      "
                                                                "target_group "
                                                                "= "
                                                                "\"missing-"
                                                                "tg\"; }\n"
                                                                "  ); }\n"
                                                                ");\n",
      9, "unknown target group \"missing-tg\"");
}

static void test_config_duplicate_names(void)
{
  expect_error_at("target_groups = (\n"
                  "  { name = \"tg\"; },\n"
                  "  { name = \"tg\"; }\n"
                  ");\n",
                  3, "duplicate target group name \"tg\"");
  expect_error_at("target_groups = ( { name = \"tg\"; } );\n"
                  "load_balancers = (\n"
                  "  { name = \"lb\"; listeners = (); },\n"
                  "  { name = \"lb\"; listeners = (); }\n"
                  ");\n",
                  4, "duplicate load balancer name \"lb\"");
  expect_error_at(
      "principals = (\n"
      "  { name = \"p\"; role = \"operator\"; token_sha256 = \"" HASH_A
      "\"; },\n"
      "  { name = \"p\"; role = \"consumer\"; token_sha256 = \"" HASH_B
      "\"; }\n"
      ");\n",
      3, "duplicate principal name \"p\"");
  expect_error_at("networks = (\n"
                  "  { name = \"n\"; range = \"127.1.0.0/16\"; },\n"
                  "\n"
                  "  { name = \"n\"; range = \"127.2.0.0/16\"; }\n"
                  ");\n",
                  4, "duplicate network name \"n\"");
  expect_error_at(TG("    targets = (\n"
                     "      { address = \"127.0.0.1:9001\"; },\n"
                     "      { address = \"127.0.0.1:9001\"; }\n"
                     "    );\n"),
                  5, "duplicate target 127.0.0.1:9001");
  expect_error_at("target_groups = ( { name = \"tg\"; } );\n"
                  "load_balancers = ( { name = \"lb\"; listeners = (\n"
                  "  { port = 80; target_group = \"tg\"; },\n"
                  "  { port = 80; target_group = \"tg\"; }\n"
                  "); } );\n",
                  4, "duplicate listener port 80");
  expect_error_at(
      "target_groups = ( { name = \"tg\"; } );\n"
      "load_balancers = (\n"
      "  { name = \"a\"; listeners = (\n"
      "    { port = 80; target_group = \"tg\"; bind = \"127.0.0.1\"; "
      "} ); },\n"
      "  { name = \"b\"; listeners = (\n"
      "    { port = 80; target_group = \"tg\"; bind = \"127.0.0.1\"; "
      "} ); }\n"
      ");\n",
      6, "already used by \"a\"");
}

static void test_config_bad_addresses(void)
{
  static const char *const bad[] = {"127.0.0.1",      "127.0.0.1:",
                                    "127.0.0.1:0",    "127.0.0.1:65536",
                                    "::1:80",         "[::1]",
                                    "[::1]80",        "localhost:80",
                                    "1.2.3:80",       "127.0.0.1:8x",
                                    "[127.0.0.1]:80", "",
                                    "127.0.0.1:-1",   NULL};
  for (const char *const *a = bad; *a; a++) {
    char text[512];
    snprintf(text, sizeof(text),
             TG("    targets = (\n"
                "      { address = \"%s\"; }\n"
                "    );\n"),
             *a);
    expect_error_at(text, 4, "is not IP:PORT");
  }
  expect_error_at("target_groups = ( { name = \"tg\"; } );\n"
                  "load_balancers = ( { name = \"lb\"; listeners = (\n"
                  "  { port = 80; target_group = \"tg\";\n"
                  "    bind = \"127.0.0.256\"; }\n"
                  "); } );\n",
                  4, "bind \"127.0.0.256\" is not an IP address");
  expect_error_at("registry = { path = \"/tmp/r.db\"; };\n"
                  "api = {\n"
                  "  listen = \"127.0.0.1\"; };\n",
                  3, "api.listen \"127.0.0.1\" is not ADDRESS:PORT");
  expect_error_at("networks = (\n"
                  "  { name = \"n\";\n"
                  "    range = \"127.1.0.1/16\"; }\n"
                  ");\n",
                  3, "is not a CIDR");
  expect_error_at("registry = { path = \"/tmp/r.db\"; };\n"
                  "api = { listen = \"192.0.2.1:9180\"; };\n",
                  2, "not a loopback address");
  expect_ok("registry = { path = \"/tmp/r.db\"; };\n"
            "api = { listen = \"192.0.2.1:9180\"; insecure = true; };\n");
}

static void test_config_out_of_range_values(void)
{
  expect_error_at("\nworkers = 257;\n", 2, "'workers' must be between 0 and");
  expect_error_at("workers = -1;\n", 1, "'workers' must be between");
  expect_error_at(TG("    targets = (\n"
                     "      { address = \"127.0.0.1:1\"; weight = 1001; }\n"
                     "    );\n"),
                  4, "'weight' must be between 0 and 1000");
  expect_error_at(TG("    targets = (\n"
                     "      { address = \"127.0.0.1:1\"; weight = -5; }\n"
                     "    );\n"),
                  4, "'weight' must be between");
  expect_error_at(TG("    connect_retries = 17;\n"), 3,
                  "'connect_retries' must be between 0 and 16");
  expect_error_at(TG("    health_check = {\n"
                     "      healthy_threshold = 0; };\n"),
                  4, "'healthy_threshold' must be between 1 and 100");
  expect_error_at(TG("    health_check = { port = 65536; };\n"), 3,
                  "'port' must be between 0 and 65535");
  expect_error_at(TG("    health_check = { interval = \"50ms\"; };\n"), 3,
                  "'interval' must be between");
  expect_error_at(TG("    health_check = { interval = \"1s\";\n"
                     "                     timeout = \"2s\"; };\n"),
                  3, "timeout must not exceed interval");
  expect_error_at("target_groups = ( { name = \"tg\"; } );\n"
                  "load_balancers = ( { name = \"lb\"; listeners = (\n"
                  "  { port = 65536; target_group = \"tg\"; }\n"
                  "); } );\n",
                  3, "'port' must be between 1 and 65535");
  expect_error_at("target_groups = ( { name = \"tg\"; } );\n"
                  "load_balancers = ( { name = \"lb\"; listeners = (\n"
                  "  { port = 0; target_group = \"tg\"; }\n"
                  "); } );\n",
                  3, "'port' must be between 1 and 65535");
  expect_error_at("target_groups = ( { name = \"tg\"; } );\n"
                  "load_balancers = ( { name = \"lb\"; listeners = (\n"
                  "  { port = 80; target_group = \"tg\";\n"
                  "    idle_timeout = \"500ms\"; }\n"
                  "); } );\n",
                  4, "'idle_timeout' must be between");
  expect_error_at("shutdown_timeout = \"2h\";\n", 1,
                  "'shutdown_timeout' must be between");
  expect_error_at("shutdown_timeout = -3;\n", 1, "must not be negative");
  expect_error_at("shutdown_timeout = -0.5;\n", 1, "must not be negative");
}

/* Numbers too big for what libconfig or nlb would keep them in: each is an
 * error at its line, never a wrapped or truncated small value (1e19 s was
 * read as 0 ms, 18446744073709552L s as 384 ms, 4294967376 as port 80). */
static void test_config_overflowing_numbers(void)
{
  expect_error_at(TG("    deregistration_delay = 1e19;\n"), 3,
                  "'deregistration_delay' must be between 0ms and 3600000ms");
  expect_error_at(TG("    health_check = {\n"
                     "      interval = 18446744073709552L; };\n"),
                  4, "'interval' must be between 100ms and 3600000ms");
  expect_error_at("shutdown_timeout = 1e999;\n", 1,
                  "'shutdown_timeout' must be between");
  expect_error_at("shutdown_timeout = -1e999;\n", 1, "must not be negative");
  expect_error_at("shutdown_timeout = 9223372036854775807L;\n", 1,
                  "'shutdown_timeout' must be between");
  expect_error_at("shutdown_timeout = -9223372036854775808L;\n", 1,
                  "must not be negative");
  expect_error_at("shutdown_timeout = \"99999999999999999999d\";\n", 1,
                  "'shutdown_timeout' must be between 0ms and 3600000ms, not "
                  "\"99999999999999999999d\"");
  expect_error_at("shutdown_timeout = \"1e19\";\n", 1, "bad duration");
  expect_error_at("registry = { path = \"/tmp/x.db\";\n"
                  "  pending_expiry = 315360001; };\n",
                  2, "'pending_expiry' must be between");
  /* libconfig wraps an integer without L into 32 bits and saturates one
   * with L: both are caught in the text, at their line. */
  expect_error_at("\nworkers = 4294967297;\n", 2,
                  "integer 4294967297 is out of range");
  expect_error_at("workers = -4294967295;\n", 1,
                  "integer -4294967295 is out of range");
  expect_error_at("workers = 2147483648;\n", 1, "out of range");
  expect_error_at("workers = 0x100000001;\n", 1,
                  "integer 0x100000001 is out of range");
  expect_error_at("workers = 0xFFFFFFFF;\n", 1, "out of range");
  expect_error_at("workers = 0x1FFFFFFFFFFFFFFFFL;\n", 1, "out of range");
  expect_error_at("workers = 99999999999999999999L;\n", 1,
                  "integer 99999999999999999999L is out of range");
  expect_error_at(TG("    health_check = { port = 4294967376; };\n"), 3,
                  "integer 4294967376 is out of range");
  expect_error_at(TG("    targets = (\n"
                     "      { address = \"127.0.0.1:1\";\n"
                     "        weight = 4294967297; }\n"
                     "    );\n"),
                  5, "out of range");
  /* Line numbers count comments and strings over several lines. */
  expect_error_at("# 1e99 99999999999\n/* 4294967297\n */ log = {\n"
                  "  access = \"a\\\n b 4294967297\"; };\n"
                  "workers = 4294967297;\n",
                  6, "integer 4294967297 is out of range");
  /* What fits stays accepted, and numbers in comments and strings. */
  expect_ok("workers = 0x7F;\n");
  expect_ok("shutdown_timeout = 3600;\n");
  expect_ok("shutdown_timeout = 3600L;\n");
  expect_ok("shutdown_timeout = 3600.0;\n");
  expect_ok("shutdown_timeout = 36e2;\n");
  expect_ok("shutdown_timeout = \"3600000ms\";\n");
  expect_ok("# workers = 4294967297;\n/* 0xFFFFFFFFFFFFFFFFFF */\n"
            "log = { access = \"/tmp/4294967297\"; };\n");
}

/* An @included file's integers are checked too, and its errors name it. */
static void test_config_included_integers_are_checked(void)
{
  char included[96], text[256], want[160];
  char *errors = NULL;
  struct nlb_config *cfg;
  FILE *f;

  snprintf(included, sizeof(included), "%s-included", config_path);
  f = fopen(included, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs("# more settings\nworkers = 4294967297;\n", f);
  fclose(f);
  snprintf(text, sizeof(text),
           "log = { level = \"info\"; };\n@include \"%s\"\n", included);
  cfg = load_text(text, &errors);
  unlink(included);
  CU_ASSERT_PTR_NULL(cfg);
  CU_ASSERT_PTR_NOT_NULL_FATAL(errors);
  snprintf(want, sizeof(want), "%s:2: integer 4294967297 is out of range\n",
           included);
  if (!strstr(errors, want))
    fprintf(stderr, "\n  want \"%s\"; got:\n%s", want, errors);
  CU_ASSERT_PTR_NOT_NULL(strstr(errors, want));
  nlb_config_free(cfg);
  free(errors);
}

/* A value quoted in an error keeps its control characters escaped: the
 * error stays one line "FILE:LINE: message" (found by fuzz_config: a
 * newline in api.listen split the error over several lines). */
static void test_config_quoted_values_stay_on_one_line(void)
{
  char *errors = NULL;
  struct nlb_config *cfg =
      load_text("api = { listen = \"0.0.0.0:1\\nnlbd: fake\\t\\x01\"; };\n"
                "registry = { path = \"r.db\"; };\n",
                &errors);

  CU_ASSERT_PTR_NULL(cfg);
  CU_ASSERT_PTR_NOT_NULL_FATAL(errors);
  CU_ASSERT_TRUE(all_lines_well_formed(errors));
  CU_ASSERT_TRUE(has_error(errors, 1, "\"0.0.0.0:1\\nnlbd: fake\\t\\x01\""));
  /* One error, one line. */
  CU_ASSERT_PTR_EQUAL(strchr(errors, '\n'), errors + strlen(errors) - 1);
  nlb_config_free(cfg);
  free(errors);
}

static void test_config_bad_values(void)
{
  expect_error_at("\nshutdown_timeout = \"10 seconds\";\n", 2,
                  "bad duration \"10 seconds\"");
  expect_error_at("registry = { path = \"/tmp/r.db\";\n"
                  "  event_retention = \"forever\"; };\n",
                  2, "bad duration \"forever\"");
  expect_error_at(TG("    algorithm = \"random\";\n"), 3,
                  "algorithm must be maglev, round_robin or least_conn");
  expect_error_at(TG("    proxy_protocol = \"v1\";\n"), 3,
                  "proxy_protocol must be \"off\" or \"v2\"");
  expect_error_at(TG("    fail_open = 1;\n"), 3, "must be true or false");
  expect_error_at(TG("    health_check = { protocol = \"udp\"; };\n"), 3,
                  "protocol must be \"tcp\" or \"http\"");
  expect_error_at(TG("    health_check = { matcher = \"abc\"; };\n"), 3,
                  "matcher \"abc\"");
  expect_error_at(TG("    health_check = { path = \"health\"; };\n"), 3,
                  "path must start with '/'");
  expect_error_at("log = {\n  access_format = \"xml\"; };\n", 2,
                  "access_format must be \"text\" or \"json\"");
  expect_error_at("log = { level = \"loud\"; };\n", 1,
                  "level must be debug, info, warn or error");
  expect_error_at("workers = \"two\";\n", 1, "'workers' must be an integer");
  expect_error_at("workers = 2;\nworker_cpu_affinity = \"0-1\";\n", 2,
                  "worker_cpu_affinity \"0-1\": expected \"auto\" or "
                  "\"off\"");
  expect_error_at("target_groups = ( { name = \"bad name\"; } );\n", 1,
                  "must be 1-63 letters");
  expect_error_at("target_groups = ( { algorithm = \"maglev\"; } );\n", 1,
                  "target group needs a 'name'");
  expect_error_at("target_groups = { name = \"tg\"; };\n", 1,
                  "'target_groups' must be a list");
  expect_error_at("principals = ( { name = \"p\"; role = \"admin\";\n"
                  "  token_sha256 = \"abc\"; } );\n",
                  1, "role must be operator, provider or consumer");
  expect_error_at("principals = ( { name = \"p\"; role = \"operator\";\n"
                  "  token_sha256 = \"abc\"; } );\n",
                  2, "token_sha256 must be 64 hex digits");
  expect_error_at("principals = ( { name = \"ops\"; role = \"operator\";\n"
                  "  token_sha256 = \"" HASH_A "\"; } );\n"
                  "networks = ( { name = \"n\"; range = \"127.1.0.0/16\";\n"
                  "  principals = [ \"ops\" ]; } );\n",
                  4, "principal \"ops\" is not a consumer");
  expect_error_at("networks = ( { name = \"n\"; range = \"127.1.0.0/16\";\n"
                  "  principals = [ \"ghost\" ]; } );\n",
                  2, "unknown principal \"ghost\"");
  expect_error_at("api = { listen = \"127.0.0.1:9180\"; };\n", 1,
                  "'api' needs a 'registry'");
  expect_error_at("target_groups = ( { name = \"tg\"; } );\n"
                  "load_balancers = ( { name = \"lb\";\n"
                  "  listeners = ( { target_group = \"tg\"; } ); } );\n",
                  3, "listener needs a 'port'");
  expect_error_at("target_groups = ( { name = \"tg\"; } );\n"
                  "load_balancers = ( { name = \"lb\"; } );\n",
                  2, "needs 'listeners'");
}

/* dns = { zone; ttl; }, a network's responder address, a provider's
 * dns_domains: what loads, and each mistake at its line. */
static void test_config_dns(void)
{
  static const char good[] =
      "registry = { path = \"/tmp/r.db\"; };\n"                         /* 1 */
      "dns = { zone = \"NLB.Internal.\"; ttl = \"1m\"; };\n"            /* 2 */
      "principals = ( { name = \"pay\"; role = \"provider\";\n"         /* 3 */
      "  token_sha256 = \"" HASH_A "\";\n"                              /* 4 */
      "  dns_domains = [ \"Payments.Example\", \"pay.test.\" ]; } );\n" /* 5 */
      "networks = (\n"                                                  /* 6 */
      "  { name = \"a\"; range = \"127.1.0.0/24\"; dns = \"127.1.0.2\"; },\n"
      "  { name = \"b\"; range = \"fd00::/64\"; dns = \"fd00::2\"; },\n"
      "  { name = \"c\"; range = \"127.2.0.0/24\"; } );\n";
  char *errors = NULL;
  struct nlb_config *cfg = load_text(good, &errors);
  char text[64];

  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT(cfg->has_dns && strcmp(cfg->dns_zone, "nlb.internal") == 0);
  CU_ASSERT(cfg->dns_ttl == 60 && cfg->dns_negative_ttl == 60);
  CU_ASSERT_EQUAL_FATAL(cfg->principals[0].n_dns_domains, 2);
  CU_ASSERT_STRING_EQUAL(cfg->principals[0].dns_domains[0], "payments.example");
  CU_ASSERT_STRING_EQUAL(cfg->principals[0].dns_domains[1], "pay.test");
  CU_ASSERT(cfg->networks[0].has_dns && cfg->networks[1].has_dns &&
            !cfg->networks[2].has_dns);
  nlb_addr_format(&cfg->networks[1].dns, text, sizeof(text));
  CU_ASSERT_STRING_EQUAL(text, "[fd00::2]:53");
  CU_ASSERT_STRING_EQUAL(cfg->networks[0].dns_text, "127.1.0.2");
  nlb_config_free(cfg);
  /* Without dns: no names, and the defaults. */
  cfg = load_text("registry = { path = \"/tmp/r.db\"; };\n"
                  "dns = { zone = \"z\"; negative_ttl = 5; };\n",
                  &errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT(cfg->dns_ttl == 30 && cfg->dns_negative_ttl == 5);
  CU_ASSERT_EQUAL(cfg->dns_tcp_per_client, 16);
  nlb_config_free(cfg);
  cfg = load_text("registry = { path = \"/tmp/r.db\"; };\n"
                  "dns = { zone = \"z\"; tcp_connections_per_client = 4; };\n",
                  &errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_EQUAL(cfg->dns_tcp_per_client, 4);
  nlb_config_free(cfg);

#define REG "registry = { path = \"/tmp/r.db\"; };\n"
  expect_error_at(REG "dns = {\n  zone = \"bad_zone\"; };\n", 3,
                  "dns zone \"bad_zone\" is not a DNS name");
  expect_error_at(REG "dns = { zone = \"a..b\"; };\n", 2, "is not a DNS name");
  expect_error_at(REG "\ndns = { ttl = \"30s\"; };\n", 3, "needs a 'zone'");
  expect_error_at(REG "dns = { zone = \"z\";\n  ttl = \"soon\"; };\n", 3,
                  "bad duration \"soon\"");
  expect_error_at(REG "dns = { zone = \"z\";\n  ttl = \"2d\"; };\n", 3,
                  "'ttl' must be between");
  expect_error_at(REG "dns = { zone = \"z\";\n  port = 53; };\n", 3,
                  "unknown setting 'port' in dns");
  expect_error_at(REG "dns = { zone = \"z\";\n"
                      "  tcp_connections_per_client = 129; };\n",
                  3, "'tcp_connections_per_client' must be between 1 and 128");
  expect_error_at(REG "dns = \"nlb.internal\";\n", 2, "'dns' must be a group");
  expect_error_at("dns = { zone = \"z\"; };\n", 1, "'dns' needs a 'registry'");
  expect_error_at(REG "networks = ( { name = \"n\"; range = \"127.1.0.0/24\";\n"
                      "  dns = \"127.1.0.2\"; } );\n",
                  3, "needs a top-level dns");
  expect_error_at(REG "dns = { zone = \"z\"; };\n"
                      "networks = ( { name = \"n\"; range = \"127.1.0.0/24\";\n"
                      "  dns = \"127.1.0.2:53\"; } );\n",
                  4, "dns \"127.1.0.2:53\" is not an IPv4 or IPv6 address");
  expect_error_at(REG "dns = { zone = \"z\"; };\n"
                      "networks = ( { name = \"n\"; range = \"127.1.0.0/24\";\n"
                      "  dns = \"0.0.0.0\"; } );\n",
                  4, "is not an IPv4 or IPv6 address");
  expect_error_at(REG "principals = ( { name = \"c\"; role = \"consumer\";\n"
                      "  token_sha256 = \"" HASH_A "\";\n"
                      "  dns_domains = [ \"c.example\" ]; } );\n",
                  4, "only a provider has 'dns_domains'");
  expect_error_at(REG "principals = ( { name = \"p\"; role = \"provider\";\n"
                      "  token_sha256 = \"" HASH_A "\";\n"
                      "  dns_domains = [ \"ok.example\", \"-bad.example\" ];"
                      " } );\n",
                  4, "dns_domains: \"-bad.example\" is not a DNS domain");
  expect_error_at(REG "principals = ( { name = \"p\"; role = \"provider\";\n"
                      "  token_sha256 = \"" HASH_A "\";\n"
                      "  dns_domains = \"p.example\"; } );\n",
                  4, "'dns_domains' must be a list");
#undef REG
}

/* node: the name, the announce interface and the withdraw delay. */
static void test_config_node_announce(void)
{
  char *errors = NULL;
  struct nlb_config *cfg = load_text("workers = 1;\n", &errors);

  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_PTR_NULL(cfg->announce_interface); /* off by default */
  CU_ASSERT_EQUAL(cfg->withdraw_delay_ms, 2000);
  CU_ASSERT_PTR_NOT_NULL(cfg->node_name); /* the host name */
  nlb_config_free(cfg);

  cfg = load_text("node = { name = \"n2\"; announce_interface = \"nlb-up\";\n"
                  "  withdraw_delay = \"500ms\"; };\n",
                  &errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_STRING_EQUAL(cfg->node_name, "n2");
  CU_ASSERT_STRING_EQUAL(cfg->announce_interface, "nlb-up");
  CU_ASSERT_EQUAL(cfg->withdraw_delay_ms, 500);
  nlb_config_free(cfg);

  /* The name may be left to the host name. */
  expect_ok("node = { announce_interface = \"nlb0\"; };\n");
  expect_error_at(
      "node = {\n  announce_interface = \"a-name-too-long-x\"; };\n", 2,
      "an interface name is 1-15 characters");
  expect_error_at("node = { announce_interface = \"a/b\"; };\n", 1,
                  "announce_interface \"a/b\"");
  expect_error_at("node = { announce_interface = \"\"; };\n", 1,
                  "an interface name is 1-15 characters");
  expect_error_at("node = { withdraw_delay = \"11m\"; };\n", 1,
                  "'withdraw_delay' must be between");
  expect_error_at("node = { name = \"n1\"; announce = \"x\"; };\n", 1,
                  "unknown setting 'announce' in node");
}

/* api.limits: what the file says over the defaults, each number checked
 * against its range, unknown roles and keys refused. */
static void test_config_api_limits(void)
{
#define API(limits)                                                            \
  "registry = { path = \"/tmp/r.db\"; };\n"                                    \
  "api = { listen = \"127.0.0.1:1\";\n" limits " };\n"
  struct api_limits defaults = API_DEFAULT_LIMITS;
  char *errors = NULL;
  struct nlb_config *cfg = load_text(API(""), &errors);

  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_EQUAL(memcmp(&cfg->api_limits, &defaults, sizeof(defaults)), 0);
  /* The operator may always hold more than the others, by default. */
  for (int r = NLB_ROLE_PROVIDER; r <= NLB_ROLE_CONSUMER; r++) {
    CU_ASSERT_TRUE(defaults.role[NLB_ROLE_OPERATOR].connections >
                   defaults.role[r].connections);
    CU_ASSERT_TRUE(defaults.role[r].connections > 0);
  }
  CU_ASSERT_TRUE(defaults.operator_reserve > 0);
  nlb_config_free(cfg);

  cfg = load_text(API("  limits = { consumer = { connections = 4;\n"
                      "    requests = 0; };\n"
                      "    operator_reserve = 512; };"),
                  &errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_EQUAL(cfg->api_limits.role[NLB_ROLE_CONSUMER].connections, 4);
  CU_ASSERT_EQUAL(cfg->api_limits.role[NLB_ROLE_CONSUMER].requests, 0);
  CU_ASSERT_EQUAL(cfg->api_limits.role[NLB_ROLE_CONSUMER].event_streams,
                  defaults.role[NLB_ROLE_CONSUMER].event_streams);
  CU_ASSERT_EQUAL(memcmp(&cfg->api_limits.role[NLB_ROLE_PROVIDER],
                         &defaults.role[NLB_ROLE_PROVIDER],
                         sizeof(defaults.role[0])),
                  0);
  CU_ASSERT_EQUAL(cfg->api_limits.operator_reserve, 512);
  nlb_config_free(cfg);

  expect_error_at(API("  limits = {\n    operator_reserve = 513; };"), 4,
                  "'operator_reserve' must be between 0 and 512, not 513");
  expect_error_at(API("  limits = {\n"
                      "    provider = { connections = 1025; }; };"),
                  4, "'connections' must be between 0 and 1024, not 1025");
  expect_error_at(API("  limits = { operator = {\n"
                      "    event_streams = -1; }; };"),
                  4, "'event_streams' must be between 0 and 1000000");
  expect_error_at(API("  limits = {\n    admin = { connections = 1; }; };"), 4,
                  "unknown setting 'admin' in api.limits");
  expect_error_at(API("  limits = { consumer = {\n    streams = 1; }; };"), 4,
                  "unknown setting 'streams' in api.limits.consumer");
  expect_error_at(API("  limits = { consumer = 4; };"), 3,
                  "'api.limits.consumer' must be a group");
  expect_error_at(API("  limits = 4;"), 3, "'api.limits' must be a group");
#undef API
}

static void test_config_unknown_keys(void)
{
  expect_error_at("workers = 1;\n\nworker = 2;\n", 3,
                  "unknown setting 'worker' in the top level");
  expect_error_at("log = { access = \"off\";\n  acces_format = \"json\"; };\n",
                  2, "unknown setting 'acces_format' in log");
  expect_error_at(TG("    algoritm = \"maglev\";\n"), 3,
                  "unknown setting 'algoritm' in target group");
  expect_error_at(TG("    health_check = {\n      intervall = 5; };\n"), 4,
                  "unknown setting 'intervall' in health_check");
  expect_error_at(TG("    targets = (\n"
                     "      { address = \"127.0.0.1:1\";\n"
                     "        wieght = 2; }\n"
                     "    );\n"),
                  5, "unknown setting 'wieght' in target");
  expect_error_at("target_groups = ( { name = \"tg\"; } );\n"
                  "load_balancers = ( { name = \"lb\"; listeners = (\n"
                  "  { port = 80; target_group = \"tg\";\n"
                  "    idle = \"5s\"; }\n"
                  "); } );\n",
                  4, "unknown setting 'idle' in listener");
  expect_error_at("target_groups = ( { name = \"tg\"; } );\n"
                  "load_balancers = ( { name = \"lb\"; listeners = ();\n"
                  "  listner = (); } );\n",
                  3, "unknown setting 'listner' in load balancer");
  expect_error_at("registry = { path = \"/tmp/r.db\"; };\n"
                  "api = { listen = \"127.0.0.1:1\";\n"
                  "  tls = { cert = \"c\"; key = \"k\"; ca = \"x\"; }; };\n",
                  3, "unknown setting 'ca' in api.tls");
}

/* A user fixes a file in one pass: every mistake is reported, each at its
 * own line, in file order. */
static void test_config_reports_every_error(void)
{
  char *errors = NULL;
  struct nlb_config *cfg =
      load_text("workers = 1000;\n"                                 /* 1 */
                "colour = \"blue\";\n"                              /* 2 */
                "target_groups = (\n"                               /* 3 */
                "  { name = \"tg\"; algorithm = \"fastest\";\n"     /* 4 */
                "    targets = ( { address = \"nowhere\"; } ); }\n" /* 5 */
                ");\n"                                              /* 6 */
                "load_balancers = ( { name = \"lb\"; listeners = (\n"
                "  { port = 80; target_group = \"nope\"; }\n" /* 8 */
                "); } );\n",
                &errors);
  CU_ASSERT_PTR_NULL(cfg);
  CU_ASSERT_PTR_NOT_NULL_FATAL(errors);
  CU_ASSERT_TRUE(has_error(errors, 1, "'workers'"));
  CU_ASSERT_TRUE(has_error(errors, 2, "unknown setting 'colour'"));
  CU_ASSERT_TRUE(has_error(errors, 4, "algorithm must be"));
  CU_ASSERT_TRUE(has_error(errors, 5, "\"nowhere\""));
  CU_ASSERT_TRUE(has_error(errors, 8, "unknown target group \"nope\""));
  CU_ASSERT_TRUE(all_lines_well_formed(errors));
  free(errors);
  nlb_config_free(cfg);
}

/* Paths are taken from the config file's directory (here /tmp, where the
 * suite's file is); keywords and absolute paths stay as written. */
static void test_config_relative_paths(void)
{
  char *errors = NULL;
  struct nlb_config *cfg = load_text(
      "log = { access = \"logs/access.log\"; events = \"stderr\";\n"
      "        events_format = \"json\"; priority_prefix = true; };\n"
      "api = { tls = { cert = \"tls/cert.pem\"; key = \"/etc/key.pem\"; "
      "}; };\n"
      "registry = { path = \"./registry.db\"; };\n",
      &errors);

  if (!cfg)
    fprintf(stderr, "\n%s", errors ? errors : "");
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_STRING_EQUAL(cfg->log_access, "/tmp/logs/access.log");
  CU_ASSERT_STRING_EQUAL(cfg->log_events, "stderr");
  CU_ASSERT_EQUAL(cfg->log_events_format, NLB_LOG_JSON);
  CU_ASSERT_EQUAL(cfg->log_priority_prefix, 1);
  CU_ASSERT_STRING_EQUAL(cfg->api_tls_cert, "/tmp/tls/cert.pem");
  CU_ASSERT_STRING_EQUAL(cfg->api_tls_key, "/etc/key.pem");
  CU_ASSERT_STRING_EQUAL(cfg->registry_url, "sqlite:///tmp/./registry.db");
  nlb_config_free(cfg);

  cfg = load_text("log = { access = \"off\"; };\n", &errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_STRING_EQUAL(cfg->log_access, "off");
  CU_ASSERT_EQUAL(cfg->log_events_format, NLB_LOG_TEXT);
  CU_ASSERT_EQUAL(cfg->log_priority_prefix, -1);
  nlb_config_free(cfg);

  expect_error_at("log = { events_format = \"xml\"; };\n", 1,
                  "events_format must be \"text\" or \"json\"");
}

/* registry.url names the store by its scheme; path and postgresql, the
 * older keys, say the same; one of them, once. */
static void test_config_registry_url(void)
{
  static const char *const forms[][2] = {
      {"url = \"sqlite:///var/lib/nlb/r.db\";", "sqlite:///var/lib/nlb/r.db"},
      {"url = \"sqlite:r.db\";", "sqlite:///tmp/r.db"},
      {"path = \"r.db\";", "sqlite:///tmp/r.db"},
      {"url = \"postgresql:host=/run/postgresql dbname=nlb\";",
       "postgresql:host=/run/postgresql dbname=nlb"},
      {"url = \"postgresql://nlb@db/nlb\";", "postgresql://nlb@db/nlb"},
      {"postgresql = \"dbname=nlb\";", "postgresql:dbname=nlb"},
  };
  char text[256];

  for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
    char *errors = NULL;
    struct nlb_config *cfg;

    snprintf(text, sizeof(text), "registry = { %s };\n", forms[i][0]);
    cfg = load_text(text, &errors);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_STRING_EQUAL(cfg->registry_url, forms[i][1]);
    nlb_config_free(cfg);
  }
  expect_error_at("registry = { url = \"mysql://db\"; };\n", 1,
                  "registry.url must start with sqlite: or postgresql:");
  expect_error_at("registry = { url = \"sqlite:r.db\"; path = \"r.db\"; };\n",
                  1, "registry needs one of 'url'");
  expect_error_at("registry = { event_retention = \"1d\"; };\n", 1,
                  "registry needs one of 'url'");
}

static void test_config_algorithm_names(void)
{
  CU_ASSERT_STRING_EQUAL(nlb_algorithm_name(NLB_ALGORITHM_MAGLEV), "maglev");
  CU_ASSERT_STRING_EQUAL(nlb_algorithm_name(NLB_ALGORITHM_ROUND_ROBIN),
                         "round_robin");
  CU_ASSERT_STRING_EQUAL(nlb_algorithm_name(NLB_ALGORITHM_LEAST_CONN),
                         "least_conn");
}

/* A listener's protocol: named once (nlb/common/protocol.c), tcp by
 * default, the UDP idle timeout 120 s unless idle_timeout says; a group's
 * preserve_client_ip. */
static void test_config_listener_protocols(void)
{
  char *errors = NULL;
  struct nlb_config *cfg = load_text(
      "target_groups = ( { name = \"tg\"; preserve_client_ip = true; } );\n"
      "load_balancers = ( { name = \"lb\"; listeners = (\n"
      "  { port = 80; target_group = \"tg\"; },\n"
      "  { port = 53; target_group = \"tg\"; protocol = \"udp\"; },\n"
      "  { port = 54; target_group = \"tg\"; protocol = \"tcp_udp\";\n"
      "    idle_timeout = 30; } ); } );\n",
      &errors);
  char names[64];

  CU_ASSERT_PTR_NULL(errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_TRUE(cfg->target_groups[0].preserve_client_ip);
  const struct nlb_config_listener *l = cfg->load_balancers[0].listeners;
  CU_ASSERT_EQUAL(l[0].protocol, NLB_PROTOCOL_TCP);
  CU_ASSERT_EQUAL(l[0].idle_timeout_ms, 350000);
  CU_ASSERT_EQUAL(l[1].protocol, NLB_PROTOCOL_UDP);
  CU_ASSERT_EQUAL(l[1].udp_idle_timeout_ms, 120000);
  CU_ASSERT_EQUAL(l[2].protocol, NLB_PROTOCOL_TCP_UDP);
  CU_ASSERT_EQUAL(l[2].idle_timeout_ms, 30000);
  CU_ASSERT_EQUAL(l[2].udp_idle_timeout_ms, 30000);
  nlb_config_free(cfg);
  CU_ASSERT_STRING_EQUAL(nlb_protocol_kinds(NLB_PROTOCOL_TCP_UDP)[1], "udp");
  CU_ASSERT_PTR_NULL(nlb_protocol_kinds(NLB_PROTOCOL_TCP_UDP)[2]);
  CU_ASSERT_EQUAL(nlb_protocol_parse("quic"), -1);
  nlb_protocol_list(names, sizeof(names));
  CU_ASSERT_STRING_EQUAL(names, "tcp, udp, tcp_udp, tls, tls_passthrough");
  expect_error_at(
      "target_groups = ( { name = \"tg\"; } );\n"
      "load_balancers = ( { name = \"lb\"; listeners = (\n"
      "  { port = 53; target_group = \"tg\";\n"
      "    protocol = \"dtls\"; } ); } );\n",
      4,
      "unknown protocol \"dtls\" (valid: tcp, udp, tcp_udp, tls, tls_passthrough)");
}

/* A tls_passthrough listener's sni_routes: one route per name, lower
 * case, a trailing dot dropped, wildcards kept; client_hello_timeout's
 * default and setting. */
static void test_config_sni_routes(void)
{
  char *errors = NULL;
  struct nlb_config *cfg = load_text(
      "target_groups = ( { name = \"tg\"; }, { name = \"a\"; },\n"
      "  { name = \"b\"; } );\n"
      "load_balancers = ( { name = \"lb\"; listeners = (\n"
      "  { port = 443; target_group = \"tg\"; protocol = "
      "\"tls_passthrough\";\n"
      "    client_hello_timeout = \"2s\";\n"
      "    sni_routes = ( { names = [ \"A.Example.\", \"*.b.example\" ];\n"
      "                     target_group = \"a\"; },\n"
      "                   { names = [ \"c.example\" ]; target_group = \"b\"; "
      "} ); },\n"
      "  { port = 444; target_group = \"tg\"; protocol = "
      "\"tls_passthrough\"; } ); } );\n",
      &errors);

  CU_ASSERT_PTR_NULL(errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  const struct nlb_config_listener *l = cfg->load_balancers[0].listeners;
  CU_ASSERT_EQUAL(l[0].protocol, NLB_PROTOCOL_TLS_PASSTHROUGH);
  CU_ASSERT_EQUAL(l[0].client_hello_timeout_ms, 2000);
  CU_ASSERT_EQUAL_FATAL(l[0].n_sni_routes, 3);
  CU_ASSERT_STRING_EQUAL(l[0].sni_routes[0].name, "a.example");
  CU_ASSERT_EQUAL(l[0].sni_routes[0].target_group, 1);
  CU_ASSERT_STRING_EQUAL(l[0].sni_routes[1].name, "*.b.example");
  CU_ASSERT_EQUAL(l[0].sni_routes[1].target_group, 1);
  CU_ASSERT_STRING_EQUAL(l[0].sni_routes[2].name, "c.example");
  CU_ASSERT_EQUAL(l[0].sni_routes[2].target_group, 2);
  CU_ASSERT_EQUAL(l[1].n_sni_routes, 0);
  CU_ASSERT_EQUAL(l[1].client_hello_timeout_ms, 10000);
  nlb_config_free(cfg);
}

/* node.networks: this node's namespaces for networks made through the
 * API; registry settings of tenancy. */
static void test_config_node_networks(void)
{
  char *errors = NULL;
  struct nlb_config *cfg =
      load_text("node = { name = \"n2\";\n"
                "  networks = ( { name = \"vpc9\"; netns = \"vpc9-n2\"; },\n"
                "               { name = \"vpc10\"; } ); };\n"
                "registry = { path = \"/tmp/r.db\"; service_quota = 5;\n"
                "  endpoint_retention = \"1h\"; };\n",
                &errors);

  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_STRING_EQUAL(cfg->node_name, "n2");
  CU_ASSERT_EQUAL_FATAL(cfg->n_node_networks, 2);
  CU_ASSERT_STRING_EQUAL(cfg->node_networks[0].network, "vpc9");
  CU_ASSERT_STRING_EQUAL(cfg->node_networks[0].netns, "vpc9-n2");
  CU_ASSERT_PTR_NULL(cfg->node_networks[1].netns); /* the host */
  CU_ASSERT_EQUAL(cfg->registry_service_quota, 5);
  CU_ASSERT_EQUAL(cfg->registry_endpoint_retention_ms, 3600000);
  nlb_config_free(cfg);
  free(errors);

  expect_error_at("node = { name = \"n\";\n"
                  "  networks = ( { name = \"a\"; netns = \"../x\"; } ); };\n",
                  2, "is not a namespace name");
  expect_error_at("node = { name = \"n\"; networks = (\n"
                  "  { name = \"a\"; }, { name = \"a\"; } ); };\n",
                  2, "names \"a\" twice");
  expect_error_at("node = { name = \"n\";\n"
                  "  networks = ( { name = \"a\"; ns = \"b\"; } ); };\n",
                  2, "ns");
  expect_error_at("node = { name = \"n\";\n"
                  "  networks = ( { name = \"host\"; } ); };\n"
                  "networks = (\n"
                  "  { name = \"host\"; range = \"127.77.0.0/16\"; } );\n",
                  4, "give its netns there");
  expect_error_at("registry = { path = \"/tmp/r.db\";\n"
                  "  service_quota = -1; };\n",
                  2, "'service_quota' must be between 0 and 1000000");
}

/* A netns name is checked as the registry checks an API network's (one
 * function, one message, one line whatever the name holds). */
static void test_config_netns_names(void)
{
  static const char *const bad[] = {"..", ".", "-x", "a b", "a\\nb"};
  char text[256];

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(text, sizeof(text),
             "networks = ( { name = \"n\";\n"
             "  range = \"127.1.0.0/24\"; netns = \"%s\"; } );\n",
             bad[i]);
    expect_error_at(text, 2, "is not a namespace name");
    snprintf(text, sizeof(text),
             "node = { name = \"n\";\n"
             "  networks = ( { name = \"a\"; netns = \"%s\"; } ); };\n",
             bad[i]);
    expect_error_at(text, 2, "is not a namespace name");
  }
  expect_error_at("networks = ( { name = \"n\";\n"
                  "  range = \"127.1.0.0/24\"; netns = \"a\\nb\"; } );\n",
                  2, "netns \"a\\nb\" is not a namespace name");
  expect_ok("networks = ( { name = \"n\";\n"
            "  range = \"127.1.0.0/24\"; netns = \"ns-1.a_b\"; } );\n");
}

/* Principals whose names differ only in case are one name, as the
 * registry (and DNS) compares them. */
static void test_config_principal_case(void)
{
  expect_error_at(
      "principals = (\n"
      "  { name = \"OPS\"; role = \"operator\"; token_sha256 = \"" HASH_A
      "\"; },\n"
      "  { name = \"ops\"; role = \"consumer\"; token_sha256 = \"" HASH_B
      "\"; }\n"
      ");\n",
      3, "duplicate principal name \"ops\"");
}

/* registry.write_timeout and read_timeout: defaults, values, and a bound
 * past the API's own request timeout refused. */
static void test_config_registry_timeouts(void)
{
  char *errors = NULL;
  struct nlb_config *cfg =
      load_text("registry = { path = \"/tmp/r.db\"; };\n", &errors);

  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_EQUAL(cfg->registry_write_timeout_ms, 5000);
  CU_ASSERT_EQUAL(cfg->registry_read_timeout_ms, 2000);
  nlb_config_free(cfg);
  cfg = load_text("registry = { path = \"/tmp/r.db\";\n"
                  "  write_timeout = \"3s\"; read_timeout = \"500ms\"; };\n",
                  &errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  CU_ASSERT_EQUAL(cfg->registry_write_timeout_ms, 3000);
  CU_ASSERT_EQUAL(cfg->registry_read_timeout_ms, 500);
  nlb_config_free(cfg);
  free(errors);
  expect_error_at("registry = { path = \"/tmp/r.db\";\n"
                  "  write_timeout = \"30s\"; };\n",
                  2, "write_timeout");
}

/* TLS blocks: a listener's (termination) and a target group's
 * (re-encryption), parsed into paths and words; the files are read only
 * when the config is applied. */
static void test_config_tls(void)
{
  char *errors = NULL;
  struct nlb_config *cfg = load_text(
      "target_groups = ( { name = \"tg\";\n"
      "  tls = { ca = \"ca.pem\"; server_name = \"api.example.com\"; }; } );\n"
      "load_balancers = ( { name = \"lb\"; listeners = ( {\n"
      "  port = 443; target_group = \"tg\"; protocol = \"tls\";\n"
      "  tls = { certificates = ( { cert = \"a.pem\"; key = \"a.key\"; },\n"
      "                           { cert = \"/b.pem\"; key = \"/b.key\"; } );\n"
      "          alpn = [ \"h2\", \"http/1.1\" ]; min_version = \"1.3\";\n"
      "          handshake_timeout = \"2s\"; unknown_sni = \"refuse\"; };\n"
      "  } ); } );\n",
      &errors);
  static const unsigned char alpn[] = "\x02h2\x08http/1.1";

  CU_ASSERT_PTR_NULL(errors);
  CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
  const struct nlb_tls_client_settings *client = &cfg->target_groups[0].tls;
  CU_ASSERT_TRUE(client->enabled);
  CU_ASSERT_TRUE(client->verify);
  CU_ASSERT_EQUAL(client->ca[0], '/'); /* from the config's directory */
  CU_ASSERT_STRING_EQUAL(client->server_name, "api.example.com");
  CU_ASSERT_PTR_NULL(client->cert);
  const struct nlb_tls_server_settings *server =
      &cfg->load_balancers[0].listeners[0].tls;
  CU_ASSERT_EQUAL(cfg->load_balancers[0].listeners[0].protocol,
                  NLB_PROTOCOL_TLS);
  CU_ASSERT_EQUAL_FATAL(server->n_certificates, 2);
  CU_ASSERT_EQUAL(server->certificates[0].cert[0], '/');
  CU_ASSERT_STRING_EQUAL(server->certificates[1].key, "/b.key");
  CU_ASSERT_EQUAL_FATAL(server->alpn_len, sizeof(alpn) - 1);
  CU_ASSERT(memcmp(server->alpn, alpn, server->alpn_len) == 0);
  CU_ASSERT_EQUAL(server->min_version, 0x0304);
  CU_ASSERT_EQUAL(server->handshake_timeout_ms, 2000);
  CU_ASSERT_EQUAL(server->max_pending_handshakes, 10000);
  CU_ASSERT_TRUE(server->refuse_unknown_sni);
  nlb_config_free(cfg);

  expect_error_at("target_groups = ( { name = \"tg\"; } );\n"
                  "load_balancers = ( { name = \"lb\"; listeners = (\n"
                  "  { port = 443; target_group = \"tg\";\n"
                  "    protocol = \"tls\"; } ); } );\n",
                  3, "protocol \"tls\" needs a tls = {");
  expect_error_at("target_groups = ( { name = \"tg\"; } );\n"
                  "load_balancers = ( { name = \"lb\"; listeners = (\n"
                  "  { port = 443; target_group = \"tg\";\n"
                  "    tls = { certificates = ( { cert = \"a\"; key = \"b\"; "
                  "} ); }; } ); } );\n",
                  3, "a tls block needs protocol = \"tls\"");
  expect_error_at("target_groups = ( { name = \"tg\"; } );\n"
                  "load_balancers = ( { name = \"lb\"; listeners = (\n"
                  "  { port = 443; target_group = \"tg\"; protocol = \"tls\";\n"
                  "    tls = { certificates = ( { cert = \"a\"; key = \"b\"; "
                  "} );\n"
                  "            min_version = \"1.1\"; }; } ); } );\n",
                  5, "min_version must be \"1.2\" or \"1.3\"");
  expect_error_at("target_groups = ( { name = \"tg\";\n"
                  "  tls = { cert = \"c.pem\"; }; } );\n",
                  2, "needs both 'cert' and 'key'");
  expect_error_at("target_groups = ( { name = \"tg\"; tls = { }; } );\n"
                  "load_balancers = ( { name = \"lb\"; listeners = (\n"
                  "  { port = 80; target_group = \"tg\"; } ); } );\n",
                  3, "target group \"tg\" has tls (its targets speak TLS)");
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_config_full_example_loads),
      NLB_UNIT_CASE(test_config_minimal_defaults),
      NLB_UNIT_CASE(test_config_registry_timeouts),
      NLB_UNIT_CASE(test_config_durations_in_every_form),
      NLB_UNIT_CASE(test_config_syntax_error_has_line),
      NLB_UNIT_CASE(test_config_missing_file_names_it),
      NLB_UNIT_CASE(test_config_unknown_target_group),
      NLB_UNIT_CASE(test_config_forwarding),
      NLB_UNIT_CASE(test_config_duplicate_names),
      NLB_UNIT_CASE(test_config_bad_addresses),
      NLB_UNIT_CASE(test_config_out_of_range_values),
      NLB_UNIT_CASE(test_config_overflowing_numbers),
      NLB_UNIT_CASE(test_config_included_integers_are_checked),
      NLB_UNIT_CASE(test_config_quoted_values_stay_on_one_line),
      NLB_UNIT_CASE(test_config_bad_values),
      NLB_UNIT_CASE(test_config_node_announce),
      NLB_UNIT_CASE(test_config_unknown_keys),
      NLB_UNIT_CASE(test_config_api_limits),
      NLB_UNIT_CASE(test_config_reports_every_error),
      NLB_UNIT_CASE(test_config_relative_paths),
      NLB_UNIT_CASE(test_config_registry_url),
      NLB_UNIT_CASE(test_config_algorithm_names),
      NLB_UNIT_CASE(test_config_listener_protocols),
      NLB_UNIT_CASE(test_config_tls),
      NLB_UNIT_CASE(test_config_sni_routes),
      NLB_UNIT_CASE(test_config_node_networks),
      NLB_UNIT_CASE(test_config_netns_names),
      NLB_UNIT_CASE(test_config_principal_case),
      NLB_UNIT_CASE(test_config_dns),
  };
  return nlb_unit_run("config", suite_init, suite_clean, cases,
                      NLB_UNIT_COUNT(cases));
}
