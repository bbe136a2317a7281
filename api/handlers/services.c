/* The provider's routes: services, who may connect to them (permissions),
 * the endpoints connected to them (connections, accepted or rejected); and
 * the services a consumer may connect to. */
#include <stdbool.h>
#include <stdlib.h>

#include <jansson.h>

#include "handlers.h"

static json_t *service_json(const struct reg_service *s)
{
  return json_pack(
      "{s:s,s:s,s:s,s:s,s:o,s:s,s:b,s:o,s:I,s:o,s:s}", "id", s->id, "name",
      s->name, "owner", s->owner, "load_balancer", s->load_balancer, "ports",
      api_ports_json(s->ports, s->n_ports), "state", s->state,
      "acceptance_required", s->acceptance_required, "allowed_principals",
      api_strings_json(s->allowed_principals, s->n_allowed_principals),
      "connection_limit", (json_int_t)s->connection_limit, "created_at",
      api_json_time(s->created_at), "private_dns_name", s->private_dns_name);
}

/* A consumer sees the private DNS name it may opt into. */
static json_t *available_service_json(const struct reg_service *s)
{
  return json_pack("{s:s,s:s,s:s,s:o,s:b,s:s}", "id", s->id, "name", s->name,
                   "owner", s->owner, "ports",
                   api_ports_json(s->ports, s->n_ports), "acceptance_required",
                   s->acceptance_required, "private_dns_name",
                   s->private_dns_name);
}

static json_t *connection_json(const struct reg_endpoint *e)
{
  return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o}", "endpoint_id", e->id,
                   "consumer", e->consumer, "state", reg_state_name(e->state),
                   "network", e->network, "address", e->address, "created_at",
                   api_json_time(e->created_at), "updated_at",
                   api_json_time(e->updated_at));
}

/* ---- provider routes ---------------------------------------------------- */

void api_handle_service_create(const struct api_request *req,
                               struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"name", API_JSON_STRING, true},
      {"load_balancer", API_JSON_STRING, true},
      {"acceptance_required", API_JSON_BOOL, false},
      {"allowed_principals", API_JSON_STRINGS, false},
      {"connection_limit", API_JSON_INTEGER, false},
      {"private_dns_name", API_JSON_STRING, false},
  };
  struct reg_service_params params = {0};
  struct reg_service service;
  struct reg_error err = {0};
  const char **principals = NULL;
  json_t *body, *v;

  if (!api_no_query(req, resp) ||
      (body = api_read_body(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  params.name = json_string_value(json_object_get(body, "name"));
  params.load_balancer =
      json_string_value(json_object_get(body, "load_balancer"));
  v = json_object_get(body, "acceptance_required");
  params.acceptance_required = v == NULL || json_is_true(v);
  v = json_object_get(body, "connection_limit");
  params.connection_limit = v != NULL ? json_integer_value(v) : 0;
  params.private_dns_name =
      json_string_value(json_object_get(body, "private_dns_name"));
  if (api_json_strings(json_object_get(body, "allowed_principals"), &principals,
                       &params.n_allowed_principals) != 0) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    goto out;
  }
  params.allowed_principals = principals;
  int r = reg_service_create(req->reg, &req->actor, &params, &service, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    goto out;
  }
  api_respond_json(resp, 201, service_json(&service));
  reg_service_release(&service);
out:
  free(principals);
  json_decref(body);
}

void api_handle_service_list(const struct api_request *req,
                             struct api_response *resp)
{
  struct reg_service *services = NULL;
  size_t n = 0;
  struct reg_error err = {0};
  struct api_list_query q;
  char next[REG_TOKEN_BUF];

  if (!api_read_list_query(req, resp, false, &q))
    return;
  int r = reg_service_list(req->reg, &req->actor, &q.page, &services, &n, next,
                           &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, service_json(&services[i]));
  reg_services_free(services, n);
  api_respond_list(resp, "services", array, next);
}

void api_handle_service_describe(const struct api_request *req,
                                 struct api_response *resp)
{
  struct reg_service service;
  struct reg_error err = {0};

  if (!api_no_query(req, resp))
    return;
  int r = reg_service_describe(req->reg, &req->actor, api_param(req, 0),
                               &service, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    return;
  }
  api_respond_json(resp, 200, service_json(&service));
  reg_service_release(&service);
}

void api_handle_service_modify(const struct api_request *req,
                               struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"acceptance_required", API_JSON_BOOL, false},
      {"connection_limit", API_JSON_INTEGER, false},
      {"private_dns_name", API_JSON_STRING, false},
  };
  struct reg_service_changes changes = {0};
  struct reg_service service;
  struct reg_error err = {0};
  json_t *body, *v;

  if (!api_no_query(req, resp) ||
      (body = api_read_body(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  if ((v = json_object_get(body, "private_dns_name")) != NULL) {
    changes.set_private_dns_name = true;
    changes.private_dns_name = json_string_value(v);
  }
  if ((v = json_object_get(body, "acceptance_required")) != NULL) {
    changes.set_acceptance_required = true;
    changes.acceptance_required = json_is_true(v);
  }
  if ((v = json_object_get(body, "connection_limit")) != NULL) {
    changes.set_connection_limit = true;
    changes.connection_limit = json_integer_value(v);
  }
  int r = reg_service_modify(req->reg, &req->actor, api_param(req, 0), &changes,
                             &service, &err);
  json_decref(body); /* after: changes borrow its strings */
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    return;
  }
  api_respond_json(resp, 200, service_json(&service));
  reg_service_release(&service);
}

/* Answers the service as it was before the delete. */
void api_handle_service_delete(const struct api_request *req,
                               struct api_response *resp)
{
  struct reg_service service;
  struct reg_error err = {0};

  if (!api_no_query(req, resp))
    return;
  int r = reg_service_describe(req->reg, &req->actor, api_param(req, 0),
                               &service, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    return;
  }
  r = reg_service_delete(req->reg, &req->actor, api_param(req, 0), &err);
  if (r != 0) {
    reg_service_release(&service);
    api_respond_reg_error(req, resp, r, &err);
    return;
  }
  service.state = "deleted";
  api_respond_json(resp, 200, service_json(&service));
  reg_service_release(&service);
}

static void respond_principals(struct api_response *resp, char **principals,
                               size_t n)
{
  api_respond_json(resp, 200,
                   json_pack("{s:o*}", "allowed_principals",
                             api_strings_json(principals, n)));
  reg_strings_free(principals, n);
}

void api_handle_permissions_get(const struct api_request *req,
                                struct api_response *resp)
{
  char **principals = NULL;
  size_t n = 0;
  struct reg_error err = {0};

  if (!api_no_query(req, resp))
    return;
  int r = reg_permissions_get(req->reg, &req->actor, api_param(req, 0),
                              &principals, &n, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    return;
  }
  respond_principals(resp, principals, n);
}

void api_handle_permissions_modify(const struct api_request *req,
                                   struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"add", API_JSON_STRINGS, false},
      {"remove", API_JSON_STRINGS, false},
      /* Extension: also reject the live endpoints of removed consumers. */
      {"reject_endpoints", API_JSON_BOOL, false},
  };
  const char **add = NULL, **remove = NULL;
  size_t n_add = 0, n_remove = 0, n = 0;
  char **principals = NULL;
  struct reg_error err = {0};
  json_t *body;

  if (!api_no_query(req, resp) ||
      (body = api_read_body(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  if (api_json_strings(json_object_get(body, "add"), &add, &n_add) != 0 ||
      api_json_strings(json_object_get(body, "remove"), &remove, &n_remove) !=
          0) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    goto out;
  }
  bool reconcile = json_is_true(json_object_get(body, "reject_endpoints"));
  int r = reg_permissions_modify(req->reg, &req->actor, api_param(req, 0), add,
                                 n_add, remove, n_remove, reconcile,
                                 &principals, &n, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    goto out;
  }
  respond_principals(resp, principals, n);
out:
  free(add);
  free(remove);
  json_decref(body);
}

void api_handle_connections_list(const struct api_request *req,
                                 struct api_response *resp)
{
  struct reg_endpoint *endpoints = NULL;
  size_t n = 0;
  struct reg_error err = {0};
  struct api_list_query q;
  char next[REG_TOKEN_BUF];

  if (!api_read_list_query(req, resp, true, &q))
    return;
  int r = reg_connections_list(req->reg, &req->actor, api_param(req, 0),
                               q.has_state ? &q.state : NULL, &q.page,
                               &endpoints, &n, next, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, connection_json(&endpoints[i]));
  reg_endpoints_free(endpoints, n);
  api_respond_list(resp, "connections", array, next);
}

static void connections_decide(const struct api_request *req,
                               struct api_response *resp, bool accept)
{
  static const struct api_json_field fields[] = {
      {"endpoint_ids", API_JSON_STRINGS, true},
  };
  const char **ids = NULL;
  size_t n = 0;
  struct reg_item_result *results = NULL;
  struct reg_error err = {0};
  json_t *body;

  if (!api_no_query(req, resp) ||
      (body = api_read_body(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  if (api_json_strings(json_object_get(body, "endpoint_ids"), &ids, &n) != 0 ||
      (results = calloc(n > 0 ? n : 1, sizeof *results)) == NULL) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    goto out;
  }
  int r = (accept ? reg_connections_accept : reg_connections_reject)(
      req->reg, &req->actor, api_param(req, 0), ids, n, results, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    goto out;
  }
  json_t *unsuccessful = json_array();
  for (size_t i = 0; unsuccessful != NULL && i < n; i++) {
    if (results[i].code == 0)
      continue;
    const char *code;
    api_reg_status(results[i].code, &code);
    json_array_append_new(
        unsuccessful,
        json_pack("{s:s,s:{s:s,s:s}}", "endpoint_id", ids[i], "error", "code",
                  code, "message",
                  results[i].message[0] != '\0' ? results[i].message : code));
  }
  api_respond_json(resp, 200,
                   json_pack("{s:o*}", "unsuccessful", unsuccessful));
out:
  free(results);
  free(ids);
  json_decref(body);
}

void api_handle_connections_accept(const struct api_request *req,
                                   struct api_response *resp)
{
  connections_decide(req, resp, true);
}

void api_handle_connections_reject(const struct api_request *req,
                                   struct api_response *resp)
{
  connections_decide(req, resp, false);
}

/* ---- consumer routes ---------------------------------------------------- */

void api_handle_available_services(const struct api_request *req,
                                   struct api_response *resp)
{
  struct reg_service *services = NULL;
  size_t n = 0;
  struct reg_error err = {0};
  struct api_list_query q;
  char next[REG_TOKEN_BUF];

  if (!api_read_list_query(req, resp, false, &q))
    return;
  int r = reg_available_services(req->reg, &req->actor, &q.page, &services, &n,
                                 next, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, available_service_json(&services[i]));
  reg_services_free(services, n);
  api_respond_list(resp, "services", array, next);
}
