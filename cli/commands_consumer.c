/* nlbctl's consumer commands: available services and endpoints. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"

/* ---- available services -------------------------------------------------- */

int cli_available_services(struct cli_context *context,
                           const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"ID", "id", NULL},
      {"NAME", "name", NULL},
      {"OWNER", "owner", NULL},
      {"PORTS", "ports", NULL},
      {"ACCEPTANCE", "acceptance_required", cli_acceptance_text},
  };
  const char *size;
  if (cli_page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  return cli_show_list(context, "/v1/available-services", NULL, "services",
                       size, columns, N_COLUMNS(columns), "available services");
}

/* ---- endpoints ----------------------------------------------------------- */

int cli_endpoints_list(struct cli_context *context, const struct cli_args *args)
{
  static const struct cli_column columns[] = {
      {"ID", "id", NULL},
      {"SERVICE", "service", NULL},
      {"CONSUMER", "consumer", NULL},
      {"NETWORK", "network", NULL},
      {"ADDRESS", "address", NULL},
      {"STATE", "state", NULL},
      {"SOURCES", "allowed_sources", cli_sources_text},
      {"REASON", "reason", NULL},
  };
  const char *size;
  if (cli_page_size(context, args, &size) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  char *query = cli_state_query(args);
  int r = cli_show_list(context, "/v1/endpoints", query, "endpoints", size,
                        columns, N_COLUMNS(columns), "endpoints");
  free(query);
  return r;
}

/* METHOD on the endpoint args->positional[0] names. */
static int endpoint_call(struct cli_context *context,
                         const struct cli_args *args, const char *method,
                         const json_t *body)
{
  char *id;
  int r = cli_endpoint_id(context, args->positional[0], &id);
  if (r != CLI_EXIT_OK)
    return r;
  char *segment = cli_segment(id);
  char *path = cli_path("/v1/endpoints/%s", segment);
  r = cli_show_call(context, method, path, body);
  free(path);
  free(segment);
  free(id);
  return r;
}

int cli_endpoints_get(struct cli_context *context, const struct cli_args *args)
{
  return endpoint_call(context, args, "GET", NULL);
}

int cli_endpoints_create(struct cli_context *context,
                         const struct cli_args *args)
{
  const char *service = cli_arg(args, "service");
  const char *network = cli_arg(args, "network");
  const char *address = cli_arg(args, "address");
  size_t n;

  if (args->n_positional > 0) {
    if (service != NULL && strcmp(service, args->positional[0]) != 0)
      return cli_usage_error(context->command,
                             "two services given: %s and --service %s",
                             args->positional[0], service);
    service = args->positional[0];
  }
  if (service == NULL)
    return cli_usage_error(context->command, "--service is required");
  if (network == NULL)
    return cli_usage_error(context->command, "--network is required");
  json_t *body = cli_checked(json_object());
  cli_set(body, "service", json_string(service));
  cli_set(body, "network", json_string(network));
  if (address != NULL)
    cli_set(body, "address", json_string(address));
  char **sources = cli_arg_list(args, "allow-source", &n);
  if (sources != NULL)
    cli_set(body, "allowed_sources", cli_strings_json(sources, n));
  cli_strings_free(sources, n);
  if (cli_arg(args, "private-dns") != NULL)
    cli_set(body, "private_dns", json_true());
  int r = cli_show_call(context, "POST", "/v1/endpoints", body);
  json_decref(body);
  return r;
}

int cli_endpoints_update(struct cli_context *context,
                         const struct cli_args *args)
{
  bool any = cli_arg(args, "any-source") != NULL;
  bool dns_on = cli_arg(args, "private-dns") != NULL;
  bool dns_off = cli_arg(args, "no-private-dns") != NULL;
  size_t n;
  char **sources = cli_arg_list(args, "allow-source", &n);
  int r;

  if ((any && sources != NULL) || (dns_on && dns_off) ||
      (!any && sources == NULL && !dns_on && !dns_off)) {
    cli_strings_free(sources, n);
    return cli_usage_error(
        context->command,
        any && sources != NULL
            ? "--any-source and --allow-source contradict each other"
        : dns_on && dns_off
            ? "--private-dns and --no-private-dns contradict each other"
            : "give --allow-source CIDR, --any-source, --private-dns or "
              "--no-private-dns");
  }
  json_t *body = cli_checked(json_object());
  if (any || sources != NULL)
    cli_set(body, "allowed_sources", cli_strings_json(sources, n));
  if (dns_on || dns_off)
    cli_set(body, "private_dns", json_boolean(dns_on));
  cli_strings_free(sources, n);
  r = endpoint_call(context, args, "PATCH", body);
  json_decref(body);
  return r;
}

int cli_endpoints_delete(struct cli_context *context,
                         const struct cli_args *args)
{
  return endpoint_call(context, args, "DELETE", NULL);
}
