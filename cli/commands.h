/* What nlbctl's commands share: the helpers of commands_common.c and the
 * commands themselves, one function per resource and verb, which the table
 * of commands.c names. Private to cli/. */
#ifndef NLB_CLI_COMMANDS_H
#define NLB_CLI_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "cli.h"

#define N_COLUMNS(c) (sizeof(c) / sizeof((c)[0]))

/* Without --follow, the event stream is read until it stays quiet this
 * long: the API replays stored events at once, then waits for new ones. */
#define EVENTS_IDLE_MS 1000L

#define PAGE_SIZE_OPTION                                                       \
  {                                                                            \
    "page-size", 0, "N", false,                                                \
        "ask for N items a page (1..1000); every page is read"                 \
  }
#define END_OPTIONS                                                            \
  {                                                                            \
    NULL, 0, NULL, false, NULL                                                 \
  }

json_t *cli_checked(json_t *value);
void cli_set(json_t *object, const char *key, json_t *value);
json_t *cli_strings_json(char **strings, size_t n);
char **cli_positional_list(const struct cli_args *args, size_t first,
                           size_t *n);
bool cli_number_arg(const struct cli_context *context, const char *option,
                    const char *value, long long min, long long max,
                    long long *out);
int cli_page_size(const struct cli_context *context,
                  const struct cli_args *args, const char **size);
int cli_show_call(const struct cli_context *context, const char *method,
                  const char *path, const json_t *body);
char *cli_item_path(const char *prefix, const char *name, const char *suffix);
int cli_show_call_on(const struct cli_context *context, const char *method,
                     const char *prefix, const char *name, const char *suffix,
                     const json_t *body);
char *cli_acceptance_text(const json_t *object, const char *key);
char *cli_sources_text(const json_t *object, const char *key);
/* "state=S" for a list command's --state S (escaped); NULL without one.
 * The caller frees it. */
char *cli_state_query(const struct cli_args *args);

/* Commands by resource: commands_provider.c, commands_consumer.c,
 * commands_operator.c. */
int cli_available_services(struct cli_context *context,
                           const struct cli_args *args);
int cli_connections_accept(struct cli_context *context,
                           const struct cli_args *args);
int cli_connections_list(struct cli_context *context,
                         const struct cli_args *args);
int cli_connections_reject(struct cli_context *context,
                           const struct cli_args *args);
int cli_endpoints_create(struct cli_context *context,
                         const struct cli_args *args);
int cli_endpoints_delete(struct cli_context *context,
                         const struct cli_args *args);
int cli_endpoints_get(struct cli_context *context, const struct cli_args *args);
int cli_endpoints_list(struct cli_context *context,
                       const struct cli_args *args);
int cli_endpoints_update(struct cli_context *context,
                         const struct cli_args *args);
int cli_events_read(struct cli_context *context, const struct cli_args *args);
int cli_networks_create(struct cli_context *context,
                        const struct cli_args *args);
int cli_networks_delete(struct cli_context *context,
                        const struct cli_args *args);
int cli_networks_list(struct cli_context *context, const struct cli_args *args);
int cli_nodes_drain(struct cli_context *context, const struct cli_args *args);
int cli_nodes_list(struct cli_context *context, const struct cli_args *args);
int cli_permissions_add(struct cli_context *context,
                        const struct cli_args *args);
int cli_permissions_get(struct cli_context *context,
                        const struct cli_args *args);
int cli_permissions_remove(struct cli_context *context,
                           const struct cli_args *args);
int cli_principals_create(struct cli_context *context,
                          const struct cli_args *args);
int cli_principals_delete(struct cli_context *context,
                          const struct cli_args *args);
int cli_principals_list(struct cli_context *context,
                        const struct cli_args *args);
int cli_services_create(struct cli_context *context,
                        const struct cli_args *args);
int cli_services_delete(struct cli_context *context,
                        const struct cli_args *args);
int cli_services_get(struct cli_context *context, const struct cli_args *args);
int cli_services_list(struct cli_context *context, const struct cli_args *args);
int cli_services_update(struct cli_context *context,
                        const struct cli_args *args);
int cli_target_groups_get(struct cli_context *context,
                          const struct cli_args *args);
int cli_target_groups_list(struct cli_context *context,
                           const struct cli_args *args);
int cli_targets_add(struct cli_context *context, const struct cli_args *args);
int cli_targets_remove(struct cli_context *context,
                       const struct cli_args *args);
int cli_tokens_create(struct cli_context *context, const struct cli_args *args);
int cli_tokens_list(struct cli_context *context, const struct cli_args *args);
int cli_tokens_revoke(struct cli_context *context, const struct cli_args *args);

#endif
