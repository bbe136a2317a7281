/* Reading a libconfig file the way nlbd does: every error of one load
 * collected as FILE:LINE: message (control characters escaped), unknown
 * keys refused, numbers checked for range and for overflow in the file's
 * own text, durations with units, paths relative to the file's directory.
 * The config's sections (config-sections.h) are written with these. One
 * thread at a time per loader; allocation failures abort (a config that
 * cannot be held cannot be run). */
#ifndef NLB_CONFIG_LOADER_H
#define NLB_CONFIG_LOADER_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Collects every error of one load, so a user fixes a file in one pass. */
struct conf_loader {
  const char *path;
  char *dir; /* the file's directory, against which relative paths resolve */
  char *errors;
  size_t errors_len;
  bool failed;
};

void conf_fail_at(struct conf_loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void conf_fail_in(struct conf_loader *ld, const char *path, int line,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int conf_line_of(const config_setting_t *setting);
void conf_check_keys(struct conf_loader *ld, const config_setting_t *group,
                     const char *what, const char *const *allowed);
const config_setting_t *conf_member_of(const config_setting_t *group,
                                       const char *name);
char *conf_dup_or_die(const char *text);
void *conf_calloc_or_die(size_t n, size_t size);
char *conf_config_dir(const char *path);
char *conf_resolve_path(const struct conf_loader *ld, const char *path);
bool conf_get_string(struct conf_loader *ld, const config_setting_t *group,
                     const char *name, const char **out);
bool conf_get_bool(struct conf_loader *ld, const config_setting_t *group,
                   const char *name, bool *out);
bool conf_get_int(struct conf_loader *ld, const config_setting_t *group,
                  const char *name, long long min, long long max,
                  long long *out);
bool conf_get_duration(struct conf_loader *ld, const config_setting_t *group,
                       const char *name, uint64_t min_ms, uint64_t max_ms,
                       uint64_t *out);
const config_setting_t *conf_get_list(struct conf_loader *ld,
                                      const config_setting_t *group,
                                      const char *name);
bool conf_is_valid_name(const char *name);
const char *conf_item_name(struct conf_loader *ld, const config_setting_t *item,
                           const char *what);
int conf_hex_value(char c);
void conf_check_integers_in(struct conf_loader *ld, const char *path,
                            int depth);

#endif
