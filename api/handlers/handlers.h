/* Private to the API's handlers (api/handlers/): one function per route,
 * by resource (services.c, endpoints.c, targets.c, nodes.c, tenancy.c,
 * events.c, status.c, console.c), the helpers they share (common.c), and what
 * the route table (api/routes.c) names.
 *
 * A handler checks the request (query, body), calls the registry or the
 * data plane, and shapes the answer as docs/openapi.yaml says. It always
 * fills resp: on any failure with an error answer (api_respond_error); a
 * NULL body left behind becomes 500 "out of memory" in api_handle. It runs
 * where its route says (api_route.registry): on the registry's thread with
 * req->reg set, or on the control thread with req->reg NULL. */
#ifndef NLB_API_HANDLERS_H
#define NLB_API_HANDLERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api-int.h"
#include "nlb/api-json.h"

#define N_FIELDS(f) (sizeof(f) / sizeof((f)[0]))

/* ---- answers (common.c) ------------------------------------------------- */

/* Takes value (a new reference, may be NULL) as the answer with status;
 * 500 when it is NULL or cannot be encoded. */
void api_respond_json(struct api_response *resp, int status, json_t *value);

/* The HTTP status and the error code (*name, a static string) of a
 * registry errno. */
int api_reg_status(int code, const char **name);

/* Answers the registry's failure code (a negative errno) with err's
 * message and field. 500 and 503 are logged and answered without the
 * cause (hosts and paths are the operator's business). */
void api_respond_reg_error(struct api_request const *req,
                           struct api_response *resp, int code,
                           const struct reg_error *err);

/* {"KEY":[...], "next_token":"..."} (the token only while more remain);
 * takes array (a new reference). */
void api_respond_list(struct api_response *resp, const char *key, json_t *array,
                      const char *next_token);

/* ---- shapes (common.c) -------------------------------------------------- */

/* New JSON arrays of ports and of strings (NULL: no memory). */
json_t *api_ports_json(const uint16_t *ports, size_t n);
json_t *api_strings_json(char *const *strings, size_t n);

/* ---- requests (common.c) ------------------------------------------------ */

/* The route's i-th path parameter, percent-decoded. */
static inline const char *api_param(const struct api_request *req, size_t i)
{
  return req->match->params[i];
}

/* The body parsed as one object and checked against fields[0..n): a new
 * reference, or NULL after answering 400. */
json_t *api_read_body(const struct api_request *req, struct api_response *resp,
                      const struct api_json_field *fields, size_t n);

/* True when every query parameter is one of names (NULL-terminated) and
 * none comes twice; false after answering 400. */
bool api_check_query(const struct api_request *req, struct api_response *resp,
                     const char *const *names);

/* True when there is no query parameter; false after answering 400. */
bool api_no_query(const struct api_request *req, struct api_response *resp);

/* The query of a list route: ?limit=N&next_token=T, and ?state=S where the
 * route filters by state. */
struct api_list_query {
  enum reg_endpoint_state state;
  bool has_state;
  struct reg_page page;
  char token[REG_TOKEN_BUF];
};

/* Reads the list query into *q (with_state: ?state= is allowed); false
 * after answering 400. */
bool api_read_list_query(const struct api_request *req,
                         struct api_response *resp, bool with_state,
                         struct api_list_query *q);

/* ---- handlers, by resource ---------------------------------------------- */

/* services.c: services, their permissions and their connections (provider
 * routes); the services a consumer may connect to. */
void api_handle_service_create(const struct api_request *req,
                               struct api_response *resp);
void api_handle_service_list(const struct api_request *req,
                             struct api_response *resp);
void api_handle_service_describe(const struct api_request *req,
                                 struct api_response *resp);
void api_handle_service_modify(const struct api_request *req,
                               struct api_response *resp);
void api_handle_service_delete(const struct api_request *req,
                               struct api_response *resp);
void api_handle_permissions_get(const struct api_request *req,
                                struct api_response *resp);
void api_handle_permissions_modify(const struct api_request *req,
                                   struct api_response *resp);
void api_handle_connections_list(const struct api_request *req,
                                 struct api_response *resp);
void api_handle_connections_accept(const struct api_request *req,
                                   struct api_response *resp);
void api_handle_connections_reject(const struct api_request *req,
                                   struct api_response *resp);
void api_handle_available_services(const struct api_request *req,
                                   struct api_response *resp);

/* endpoints.c: endpoints (consumer routes). */
void api_handle_endpoint_create(const struct api_request *req,
                                struct api_response *resp);
void api_handle_endpoint_list(const struct api_request *req,
                              struct api_response *resp);
void api_handle_endpoint_describe(const struct api_request *req,
                                  struct api_response *resp);
void api_handle_endpoint_modify(const struct api_request *req,
                                struct api_response *resp);
void api_handle_endpoint_delete(const struct api_request *req,
                                struct api_response *resp);

/* targets.c: target groups (the data plane's, on the control thread) and
 * the targets registered at run time (the registry's). */
void api_handle_target_group_list(const struct api_request *req,
                                  struct api_response *resp);
void api_handle_target_group_describe(const struct api_request *req,
                                      struct api_response *resp);
void api_handle_target_register(const struct api_request *req,
                                struct api_response *resp);
void api_handle_target_deregister(const struct api_request *req,
                                  struct api_response *resp);

/* nodes.c: the cluster's nodes. */
void api_handle_node_list(const struct api_request *req,
                          struct api_response *resp);
void api_handle_node_drain(const struct api_request *req,
                           struct api_response *resp);

/* tenancy.c: principals, their tokens, networks; the caller. */
void api_handle_principal_create(const struct api_request *req,
                                 struct api_response *resp);
void api_handle_principal_list(const struct api_request *req,
                               struct api_response *resp);
void api_handle_principal_delete(const struct api_request *req,
                                 struct api_response *resp);
void api_handle_token_create(const struct api_request *req,
                             struct api_response *resp);
void api_handle_token_list(const struct api_request *req,
                           struct api_response *resp);
void api_handle_token_revoke(const struct api_request *req,
                             struct api_response *resp);
void api_handle_network_create(const struct api_request *req,
                               struct api_response *resp);
void api_handle_network_list(const struct api_request *req,
                             struct api_response *resp);
void api_handle_network_delete(const struct api_request *req,
                               struct api_response *resp);
/* GET /v1/whoami: the caller's name and role. */
void api_handle_whoami(const struct api_request *req,
                       struct api_response *resp);

/* events.c: where an event stream starts; the stream itself is
 * api/events.c's. */
void api_handle_events(const struct api_request *req,
                       struct api_response *resp);

/* status.c: the server itself: health, metrics, the OpenAPI document. */
void api_handle_healthz(const struct api_request *req,
                        struct api_response *resp);
void api_handle_openapi(const struct api_request *req,
                        struct api_response *resp);
/* The registry's part of /metrics; api_finish_metrics adds the API's and
 * the data plane's series on the control thread. */
void api_handle_metrics(const struct api_request *req,
                        struct api_response *resp);
void api_finish_metrics(struct api_server *server, struct api_response *resp);

/* console.c: the web console's page (GET /ui redirects to /ui/) and files,
 * for anyone. */
void api_handle_console_page(const struct api_request *req,
                             struct api_response *resp);
void api_handle_console_file(const struct api_request *req,
                             struct api_response *resp);

#endif
