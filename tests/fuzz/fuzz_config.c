/* libFuzzer target for the config loader: the input is written to a file
 * and read by nlb_config_load, which must either refuse it with lines
 * "PATH:LINE: message" (LINE >= 1, or no line when the whole file is at
 * fault) or return a config whose every value is within the range the
 * loader promises: what nlbd -t says ok is what the daemon can use.
 *
 * The same bytes also go through the duration parsers (duration.h): as a
 * string, and as the integer and double libconfig would hand over, whose
 * results must stay within the limit they were given and round correctly.
 *
 * Inputs that hold "@include" are skipped: libconfig would open whatever
 * file they name (/dev/stdin, /dev/zero...), and the fuzzer would test the
 * machine rather than the loader. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nlb/config.h"
#include "nlb/common/duration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* libconfig 1.5's parser drops the tokens it holds when a syntax error
 * stops it (a string, a concatenation of strings: a few bytes per such
 * file). Only allocations made inside libconfig are ignored: nothing of
 * nlb's is allocated with libconfig on the stack. */
const char *__lsan_default_suppressions(void)
{
  return "leak:libconfig.so\n";
}

static char path[256];

static void remove_file(void)
{
  unlink(path);
}

static const char *config_path(void)
{
  struct stat st;
  const char *dir;
  int fd;

  if (path[0] != '\0')
    return path;
  dir = stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0 ? "/dev/shm"
        : getenv("TMPDIR") ? getenv("TMPDIR")
                           : "/tmp";
  snprintf(path, sizeof path, "%s/nlb-fuzz-config-XXXXXX", dir);
  fd = mkstemp(path);
  if (fd < 0)
    abort();
  close(fd);
  atexit(remove_file);
  return path;
}

/* Every error line is "PATH:LINE: message" or "PATH: message". */
static void check_errors(const char *errors)
{
  size_t path_len = strlen(path);

  if (errors == NULL || *errors == '\0')
    abort();
  for (const char *p = errors; *p;) {
    const char *end = strchr(p, '\n');
    const char *q = p + path_len;
    if (end == NULL || strncmp(p, path, path_len) != 0 || *q != ':')
      abort();
    q++;
    if (*q >= '1' && *q <= '9') {
      while (*q >= '0' && *q <= '9')
        q++;
      if (*q != ':')
        abort();
      q++;
    }
    if (q[0] != ' ' || q + 1 >= end)
      abort();
    p = end + 1;
  }
}

static void check_range(uint64_t value, uint64_t min, uint64_t max)
{
  if (value < min || value > max)
    abort();
}

static void check_config(const struct nlb_config *cfg)
{
  check_range(cfg->workers, 1, 256);
  check_range(cfg->shutdown_timeout_ms, 0, 3600000);
  check_range((uint64_t)cfg->log_level, 0, 3);
  if (cfg->has_registry) {
    check_range(cfg->registry_pending_expiry_ms, 1000,
                UINT64_C(10) * 365 * 86400000);
    check_range(cfg->registry_event_retention_ms, 1000,
                UINT64_C(10) * 365 * 86400000);
    check_range(cfg->registry_endpoint_retention_ms, 1000,
                UINT64_C(10) * 365 * 86400000);
    check_range(cfg->registry_service_quota, 0, 1000000);
    if (cfg->registry_url == NULL)
      abort();
  }
  if (cfg->has_api && !cfg->has_registry)
    abort();
  for (size_t i = 0; i < cfg->n_target_groups; i++) {
    const struct nlb_config_target_group *tg = &cfg->target_groups[i];
    check_range(tg->deregistration_delay_ms, 0, 3600000);
    check_range(tg->slow_start_ms, 0, 900000);
    check_range(tg->connect_timeout_ms, 10, 600000);
    check_range(tg->connect_retries, 0, 16);
    check_range(tg->health.interval_ms, 100, 3600000);
    check_range(tg->health.timeout_ms, 10, tg->health.interval_ms);
    check_range(tg->health.healthy_threshold, 1, 100);
    check_range(tg->health.unhealthy_threshold, 1, 100);
    if (tg->name == NULL || tg->health.path == NULL ||
        tg->health.path[0] != '/')
      abort();
    for (size_t t = 0; t < tg->n_targets; t++)
      check_range(tg->targets[t].weight, 0, 1000);
    if (nlb_config_find_target_group(cfg, tg->name) == NULL)
      abort();
  }
  for (size_t i = 0; i < cfg->n_load_balancers; i++) {
    const struct nlb_config_load_balancer *lb = &cfg->load_balancers[i];
    for (size_t l = 0; l < lb->n_listeners; l++) {
      const struct nlb_config_listener *listener = &lb->listeners[l];
      check_range(listener->port, 1, 65535);
      check_range(listener->idle_timeout_ms, 1000, 7 * UINT64_C(86400000));
      if (listener->target_group >= cfg->n_target_groups)
        abort();
    }
  }
  for (size_t i = 0; i < cfg->n_networks; i++)
    for (size_t p = 0; p < cfg->networks[i].n_principals; p++)
      if (cfg->networks[i].principals[p] == NULL)
        abort();
}

static void check_durations(const uint8_t *data, size_t size)
{
  char text[64];
  uint64_t ms = 7, max;
  long long seconds;
  double decimal;

  if (size < sizeof text) {
    memcpy(text, data, size);
    text[size] = '\0';
    if (nlb_duration_parse(text, &ms) == 0 &&
        ms > UINT64_C(9200000000000000000))
      abort();
  }
  if (size < 16)
    return;
  memcpy(&seconds, data, 8);
  memcpy(&max, data + 8, 8);
  ms = 7;
  int r = nlb_duration_from_seconds(seconds, max, &ms);
  if (r == 0 ? (seconds < 0 || ms > max || ms != (uint64_t)seconds * 1000)
             : (ms != 7 || (r != -EINVAL && r != -ERANGE)))
    abort();
  memcpy(&decimal, data, 8);
  max &= (UINT64_C(1) << 53) - 1; /* the documented limit */
  ms = 7;
  r = nlb_duration_from_float_seconds(decimal, max, &ms);
  if (r == 0 ? (ms > max || fabs((double)ms - decimal * 1000) > 0.5 + 1e-6 * ms)
             : (ms != 7 || (r != -EINVAL && r != -ERANGE)))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const char *file = config_path();
  char *errors = NULL;
  struct nlb_config *cfg;
  FILE *f;

  check_durations(data, size);
  if (memmem(data, size, "@include", 8) != NULL)
    return 0;
  f = fopen(file, "wb");
  if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
    abort();
  cfg = nlb_config_load(file, &errors);
  if (cfg != NULL) {
    if (errors != NULL)
      abort();
    check_config(cfg);
  } else {
    check_errors(errors);
  }
  nlb_config_free(cfg);
  free(errors);
  return 0;
}
