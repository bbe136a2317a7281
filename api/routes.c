/* The API's routes, each declared here once: method, path, who may call
 * it, where it runs and its handler. Adding a route is a handler (in
 * api/handlers/) and a row. The paths and roles are docs/openapi.yaml's:
 * tests/unit/test_api holds each row to the document and the rows to each
 * other (every operation has its row and every row its operation, with
 * the same roles; no two rows match the same request; each has a handler
 * and roles). */
#include "handlers/handlers.h"
#include "nlb/api-router.h"

#define OP API_ROLE_BIT(REG_ROLE_OPERATOR)
#define PROV API_ROLE_BIT(REG_ROLE_PROVIDER)
#define CONS API_ROLE_BIT(REG_ROLE_CONSUMER)
#define ANYONE API_ROLE_ANYONE

/* Where the handler runs (enum api_route_registry). */
#define LOCAL API_REGISTRY_NONE
#define REGISTRY API_REGISTRY_NEEDED
#define REGISTRY_IF_ANY API_REGISTRY_IF_ANY

/* ROUTE(METHOD, path, roles, where, handler); a route with a finish step,
 * or whose answer may be an event stream, adds it to ROUTE_FIELDS. */
#define ROUTE_FIELDS(m, p, r, w, h)                                            \
  .method = API_METHOD_##m, .pattern = p, .name = #m " " p, .roles = r,        \
  .registry = w, .handle = h
#define ROUTE(m, p, r, w, h)                                                   \
  {                                                                            \
    ROUTE_FIELDS(m, p, r, w, h)                                                \
  }

const struct api_route api_routes[] = {
    ROUTE(GET, "/healthz", ANYONE, LOCAL, api_handle_healthz),
    {ROUTE_FIELDS(GET, "/metrics", OP | PROV, REGISTRY_IF_ANY,
                  api_handle_metrics),
     .finish = api_finish_metrics},
    ROUTE(GET, "/v1/openapi.yaml", ANYONE, LOCAL, api_handle_openapi),
    /* The web console: a page with no data, for anyone (its calls carry
     * the token its user types). */
    ROUTE(GET, "/ui", ANYONE, LOCAL, api_handle_console_page),
    ROUTE(GET, "/ui/{file}", ANYONE, LOCAL, api_handle_console_file),

    ROUTE(POST, "/v1/services", OP | PROV, REGISTRY, api_handle_service_create),
    ROUTE(GET, "/v1/services", OP | PROV, REGISTRY, api_handle_service_list),
    ROUTE(GET, "/v1/services/{id}", OP | PROV, REGISTRY,
          api_handle_service_describe),
    ROUTE(PATCH, "/v1/services/{id}", OP | PROV, REGISTRY,
          api_handle_service_modify),
    ROUTE(DELETE, "/v1/services/{id}", OP | PROV, REGISTRY,
          api_handle_service_delete),
    ROUTE(GET, "/v1/services/{id}/permissions", OP | PROV, REGISTRY,
          api_handle_permissions_get),
    ROUTE(PATCH, "/v1/services/{id}/permissions", OP | PROV, REGISTRY,
          api_handle_permissions_modify),
    ROUTE(GET, "/v1/services/{id}/connections", OP | PROV, REGISTRY,
          api_handle_connections_list),
    ROUTE(POST, "/v1/services/{id}/connections/accept", OP | PROV, REGISTRY,
          api_handle_connections_accept),
    ROUTE(POST, "/v1/services/{id}/connections/reject", OP | PROV, REGISTRY,
          api_handle_connections_reject),
    ROUTE(GET, "/v1/available-services", OP | CONS, REGISTRY,
          api_handle_available_services),

    ROUTE(POST, "/v1/endpoints", CONS, REGISTRY, api_handle_endpoint_create),
    ROUTE(GET, "/v1/endpoints", OP | CONS, REGISTRY, api_handle_endpoint_list),
    ROUTE(GET, "/v1/endpoints/{id}", OP | CONS, REGISTRY,
          api_handle_endpoint_describe),
    ROUTE(PATCH, "/v1/endpoints/{id}", OP | CONS, REGISTRY,
          api_handle_endpoint_modify),
    ROUTE(DELETE, "/v1/endpoints/{id}", OP | CONS, REGISTRY,
          api_handle_endpoint_delete),

    /* Target groups are the data plane's: they need no registry. */
    ROUTE(GET, "/v1/target-groups", OP, LOCAL, api_handle_target_group_list),
    ROUTE(GET, "/v1/target-groups/{name}", OP, LOCAL,
          api_handle_target_group_describe),
    ROUTE(POST, "/v1/target-groups/{name}/targets", OP, REGISTRY,
          api_handle_target_register),
    ROUTE(DELETE, "/v1/target-groups/{name}/targets/{address}", OP, REGISTRY,
          api_handle_target_deregister),

    {ROUTE_FIELDS(GET, "/v1/events", OP | PROV | CONS, REGISTRY,
                  api_handle_events),
     .event_stream = true},

    ROUTE(GET, "/v1/nodes", OP, REGISTRY, api_handle_node_list),
    ROUTE(POST, "/v1/nodes/{name}/drain", OP, REGISTRY, api_handle_node_drain),

    /* Who the token names: the principal is the request's. */
    ROUTE(GET, "/v1/whoami", OP | PROV | CONS, LOCAL, api_handle_whoami),
    ROUTE(POST, "/v1/principals", OP, REGISTRY, api_handle_principal_create),
    ROUTE(GET, "/v1/principals", OP, REGISTRY, api_handle_principal_list),
    ROUTE(DELETE, "/v1/principals/{name}", OP, REGISTRY,
          api_handle_principal_delete),
    ROUTE(POST, "/v1/principals/{name}/tokens", OP, REGISTRY,
          api_handle_token_create),
    ROUTE(GET, "/v1/principals/{name}/tokens", OP, REGISTRY,
          api_handle_token_list),
    ROUTE(DELETE, "/v1/principals/{name}/tokens/{id}", OP, REGISTRY,
          api_handle_token_revoke),
    ROUTE(POST, "/v1/networks", OP, REGISTRY, api_handle_network_create),
    ROUTE(GET, "/v1/networks", OP, REGISTRY, api_handle_network_list),
    ROUTE(DELETE, "/v1/networks/{name}", OP, REGISTRY,
          api_handle_network_delete),
};

const size_t api_n_routes = sizeof api_routes / sizeof api_routes[0];
