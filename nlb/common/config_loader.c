/* The loader's toolkit: errors, keys, typed values, paths (config-loader.h). */
#include "nlb/common/config-loader.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nlb/common/duration.h"

/* Copies text into out (len bytes) with control characters written as
 * \n, \t or \xHH: a value quoted from the file stays on its error's line,
 * so that each line still reads FILE:LINE: message (nlbd -t, and the event
 * log's "reload rejected", whose lines a reader must be able to trust). */
static void escape_controls(const char *text, char *out, size_t len)
{
  size_t n = 0;

  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    char code[5];
    if (*p == '\n')
      snprintf(code, sizeof(code), "\\n");
    else if (*p == '\t')
      snprintf(code, sizeof(code), "\\t");
    else if (*p < 0x20 || *p == 0x7f)
      snprintf(code, sizeof(code), "\\x%02x", *p);
    else
      snprintf(code, sizeof(code), "%c", *p);
    if (n + strlen(code) >= len)
      break;
    memcpy(out + n, code, strlen(code));
    n += strlen(code);
  }
  out[n] = '\0';
}

static void vfail_in(struct conf_loader *ld, const char *path, int line,
                     const char *fmt, va_list args)
{
  char raw[512], message[512];
  char where[32] = "";
  char *grown;
  int len;

  vsnprintf(raw, sizeof(raw), fmt, args);
  escape_controls(raw, message, sizeof(message));
  ld->failed = true;
  /* Line 0: the whole file is at fault (it cannot be read). */
  if (line > 0)
    snprintf(where, sizeof(where), "%d:", line);
  len = snprintf(NULL, 0, "%s:%s %s\n", path, where, message);
  grown = realloc(ld->errors, ld->errors_len + (size_t)len + 1);
  if (!grown)
    return;
  ld->errors = grown;
  snprintf(ld->errors + ld->errors_len, (size_t)len + 1, "%s:%s %s\n", path,
           where, message);
  ld->errors_len += (size_t)len;
}

void conf_fail_at(struct conf_loader *ld, int line, const char *fmt, ...)
{
  va_list args;

  va_start(args, fmt);
  vfail_in(ld, ld->path, line, fmt, args);
  va_end(args);
}

/* The same for a line of another file (one that the config @includes). */

void conf_fail_in(struct conf_loader *ld, const char *path, int line,
                  const char *fmt, ...)
{
  va_list args;

  va_start(args, fmt);
  vfail_in(ld, path, line, fmt, args);
  va_end(args);
}

int conf_line_of(const config_setting_t *setting)
{
  return (int)config_setting_source_line(setting);
}

/* Unknown keys are errors: a typo must not silently become a default. */
void conf_check_keys(struct conf_loader *ld, const config_setting_t *group,
                     const char *what, const char *const *allowed)
{
  int count = config_setting_length(group);

  for (int i = 0; i < count; i++) {
    const config_setting_t *member = config_setting_get_elem(group, i);
    const char *name = config_setting_name(member);
    bool known = false;
    if (!name)
      continue;
    for (const char *const *a = allowed; *a; a++)
      if (strcmp(*a, name) == 0)
        known = true;
    if (!known)
      conf_fail_at(ld, conf_line_of(member), "unknown setting '%s' in %s", name,
                   what);
  }
}

const config_setting_t *conf_member_of(const config_setting_t *group,
                                       const char *name)
{
  return config_setting_get_member(group, name);
}

char *conf_dup_or_die(const char *text)
{
  char *copy = strdup(text);
  if (!copy) {
    fprintf(stderr, "nlbd: out of memory\n");
    exit(1);
  }
  return copy;
}

void *conf_calloc_or_die(size_t n, size_t size)
{
  void *p = calloc(n ? n : 1, size);
  if (!p) {
    fprintf(stderr, "nlbd: out of memory\n");
    exit(1);
  }
  return p;
}

/* The directory of the config file (its symbolic links resolved), so that
 * the file means the same whatever directory nlbd is started from. */
char *conf_config_dir(const char *path)
{
  char *copy = conf_dup_or_die(path);
  char *slash = strrchr(copy, '/');
  char *dir;

  if (slash == copy)
    slash[1] = '\0';
  else if (slash)
    *slash = '\0';
  dir = realpath(slash ? copy : ".", NULL);
  if (!dir)
    dir = conf_dup_or_die(slash ? copy : ".");
  free(copy);
  return dir;
}

/* A path the config names: relative ones are taken from the config file's
 * directory. */
char *conf_resolve_path(const struct conf_loader *ld, const char *path)
{
  size_t size;
  char *full;

  if (path[0] == '/' || !path[0])
    return conf_dup_or_die(path);
  size = strlen(ld->dir) + strlen(path) + 2;
  full = malloc(size);
  if (!full) {
    fprintf(stderr, "nlbd: out of memory\n");
    exit(1);
  }
  snprintf(full, size, "%s/%s", ld->dir, path);
  return full;
}

/* Reads an optional string; returns false (and reports) on a wrong type. */
bool conf_get_string(struct conf_loader *ld, const config_setting_t *group,
                     const char *name, const char **out)
{
  const config_setting_t *s = conf_member_of(group, name);
  if (!s)
    return false;
  if (config_setting_type(s) != CONFIG_TYPE_STRING) {
    conf_fail_at(ld, conf_line_of(s), "'%s' must be a string", name);
    return false;
  }
  *out = config_setting_get_string(s);
  return true;
}

bool conf_get_bool(struct conf_loader *ld, const config_setting_t *group,
                   const char *name, bool *out)
{
  const config_setting_t *s = conf_member_of(group, name);
  if (!s)
    return false;
  if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
    conf_fail_at(ld, conf_line_of(s), "'%s' must be true or false", name);
    return false;
  }
  *out = config_setting_get_bool(s);
  return true;
}

bool conf_get_int(struct conf_loader *ld, const config_setting_t *group,
                  const char *name, long long min, long long max,
                  long long *out)
{
  const config_setting_t *s = conf_member_of(group, name);
  long long value;
  if (!s)
    return false;
  if (config_setting_type(s) == CONFIG_TYPE_INT)
    value = config_setting_get_int(s);
  else if (config_setting_type(s) == CONFIG_TYPE_INT64)
    value = config_setting_get_int64(s);
  else {
    conf_fail_at(ld, conf_line_of(s), "'%s' must be an integer", name);
    return false;
  }
  if (value < min || value > max) {
    conf_fail_at(ld, conf_line_of(s),
                 "'%s' must be between %lld and %lld, not %lld", name, min, max,
                 value);
    return false;
  }
  *out = value;
  return true;
}

static void duration_out_of_range(struct conf_loader *ld,
                                  const config_setting_t *s, const char *name,
                                  uint64_t min_ms, uint64_t max_ms,
                                  const char *value)
{
  conf_fail_at(ld, conf_line_of(s),
               "'%s' must be between %llums and %llums, not %s", name,
               (unsigned long long)min_ms, (unsigned long long)max_ms, value);
}

/* Each form is range-checked before it is converted (see duration.h): a
 * huge number is an error, never a wrapped small one. */
bool conf_get_duration(struct conf_loader *ld, const config_setting_t *group,
                       const char *name, uint64_t min_ms, uint64_t max_ms,
                       uint64_t *out)
{
  const config_setting_t *s = conf_member_of(group, name);
  char value[64];
  uint64_t ms;
  int rc;

  if (!s)
    return false;
  switch (config_setting_type(s)) {
  case CONFIG_TYPE_INT:
  case CONFIG_TYPE_INT64: {
    long long seconds = config_setting_get_int64(s);
    snprintf(value, sizeof(value), "%lld seconds", seconds);
    rc = nlb_duration_from_seconds(seconds, max_ms, &ms);
    break;
  }
  case CONFIG_TYPE_FLOAT: {
    double seconds = config_setting_get_float(s);
    snprintf(value, sizeof(value), "%g seconds", seconds);
    rc = nlb_duration_from_float_seconds(seconds, max_ms, &ms);
    break;
  }
  case CONFIG_TYPE_STRING: {
    const char *text = config_setting_get_string(s);
    snprintf(value, sizeof(value), "\"%.40s%s\"", text,
             strlen(text) > 40 ? "..." : "");
    rc = nlb_duration_parse(text, &ms);
    if (rc == -EINVAL) {
      conf_fail_at(
          ld, conf_line_of(s),
          "'%s': bad duration %s (use e.g. \"250ms\", \"10s\", \"5m\")", name,
          value);
      return false;
    }
    break;
  }
  default:
    conf_fail_at(ld, conf_line_of(s), "'%s' must be a duration", name);
    return false;
  }
  if (rc == -EINVAL) {
    conf_fail_at(ld, conf_line_of(s), "'%s' must not be negative", name);
    return false;
  }
  if (rc < 0 || ms < min_ms || ms > max_ms) {
    duration_out_of_range(ld, s, name, min_ms, max_ms, value);
    return false;
  }
  *out = ms;
  return true;
}

/* Lists in the file may be written as lists "( )" or arrays "[ ]". */
static bool is_sequence(const config_setting_t *s)
{
  return config_setting_is_list(s) || config_setting_is_array(s);
}

const config_setting_t *conf_get_list(struct conf_loader *ld,
                                      const config_setting_t *group,
                                      const char *name)
{
  const config_setting_t *s = conf_member_of(group, name);
  if (s && !is_sequence(s)) {
    conf_fail_at(ld, conf_line_of(s), "'%s' must be a list", name);
    return NULL;
  }
  return s;
}

bool conf_is_valid_name(const char *name)
{
  if (!*name || strlen(name) > 63)
    return false;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
      return false;
  return true;
}

/* Reads the required "name" of a list item; NULL (reported) when absent. */
const char *conf_item_name(struct conf_loader *ld, const config_setting_t *item,
                           const char *what)
{
  const char *name = NULL;
  if (!conf_get_string(ld, item, "name", &name)) {
    if (!conf_member_of(item, "name"))
      conf_fail_at(ld, conf_line_of(item), "%s needs a 'name'", what);
    return NULL;
  }
  if (!conf_is_valid_name(name)) {
    conf_fail_at(ld, conf_line_of(conf_member_of(item, "name")),
                 "%s name \"%s\" must be 1-63 letters, digits, '-', '_' or '.'",
                 what, name);
    return NULL;
  }
  return name;
}

int conf_hex_value(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}
