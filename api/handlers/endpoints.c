/* The consumer's routes: its endpoints to the services it may connect to
 * (an operator sees and changes them all). */
#include <stdbool.h>
#include <stdlib.h>

#include <jansson.h>

#include "handlers.h"

static json_t *placements_json(const struct reg_endpoint *e)
{
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < e->n_placements; i++) {
    const struct reg_placement *p = &e->placements[i];
    json_array_append_new(
        array, json_pack("{s:s,s:s,s:s}", "node", p->node, "state",
                         reg_placement_state_name(e, p), "reason", p->reason));
  }
  return array;
}

static json_t *endpoint_json(const struct reg_endpoint *e)
{
  return json_pack(
      "{s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:s,s:o,s:o,s:o,s:o,s:b,s:o}", "id",
      e->id, "service_id", e->service_id, "service", e->service, "consumer",
      e->consumer, "network", e->network, "address", e->address, "ports",
      api_ports_json(e->ports, e->n_ports), "state", reg_state_name(e->state),
      "reason", e->reason, "allowed_sources",
      api_strings_json(e->allowed_sources, e->n_allowed_sources), "placements",
      placements_json(e), "created_at", api_json_time(e->created_at),
      "updated_at", api_json_time(e->updated_at), "private_dns", e->private_dns,
      "dns_names", api_strings_json(e->dns_names, e->n_dns_names));
}

void api_handle_endpoint_create(const struct api_request *req,
                                struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"service", API_JSON_STRING, true},
      {"network", API_JSON_STRING, true},
      {"address", API_JSON_STRING, false},
      {"allowed_sources", API_JSON_STRINGS, false},
      {"private_dns", API_JSON_BOOL, false},
  };
  struct reg_endpoint_params params = {0};
  struct reg_endpoint endpoint;
  struct reg_error err = {0};
  const char **sources = NULL;
  json_t *body;

  if (!api_no_query(req, resp) ||
      (body = api_read_body(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  params.service = json_string_value(json_object_get(body, "service"));
  params.network = json_string_value(json_object_get(body, "network"));
  params.address = json_string_value(json_object_get(body, "address"));
  params.private_dns = json_is_true(json_object_get(body, "private_dns"));
  if (api_json_strings(json_object_get(body, "allowed_sources"), &sources,
                       &params.n_allowed_sources) != 0) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    goto out;
  }
  params.allowed_sources = sources;
  int r = reg_endpoint_create(req->reg, &req->actor, &params, &endpoint, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    goto out;
  }
  api_respond_json(resp, 201, endpoint_json(&endpoint));
  reg_endpoint_release(&endpoint);
out:
  free(sources);
  json_decref(body);
}

void api_handle_endpoint_list(const struct api_request *req,
                              struct api_response *resp)
{
  struct reg_endpoint *endpoints = NULL;
  size_t n = 0;
  struct reg_error err = {0};
  struct api_list_query q;
  char next[REG_TOKEN_BUF];

  if (!api_read_list_query(req, resp, true, &q))
    return;
  int r =
      reg_endpoint_list(req->reg, &req->actor, q.has_state ? &q.state : NULL,
                        &q.page, &endpoints, &n, next, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, endpoint_json(&endpoints[i]));
  reg_endpoints_free(endpoints, n);
  api_respond_list(resp, "endpoints", array, next);
}

void api_handle_endpoint_describe(const struct api_request *req,
                                  struct api_response *resp)
{
  struct reg_endpoint endpoint;
  struct reg_error err = {0};

  if (!api_no_query(req, resp))
    return;
  int r = reg_endpoint_describe(req->reg, &req->actor, api_param(req, 0),
                                &endpoint, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    return;
  }
  api_respond_json(resp, 200, endpoint_json(&endpoint));
  reg_endpoint_release(&endpoint);
}

void api_handle_endpoint_modify(const struct api_request *req,
                                struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"allowed_sources", API_JSON_STRINGS, false},
      {"private_dns", API_JSON_BOOL, false},
  };
  struct reg_endpoint_changes changes = {0};
  struct reg_endpoint endpoint;
  struct reg_error err = {0};
  const char **sources = NULL;
  json_t *body, *v;

  if (!api_no_query(req, resp) ||
      (body = api_read_body(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  if (json_object_size(body) == 0) {
    api_respond_error(resp, 400, "InvalidValue",
                      "nothing to change: give allowed_sources or "
                      "private_dns");
    goto out;
  }
  if ((v = json_object_get(body, "allowed_sources")) != NULL) {
    changes.set_allowed_sources = true;
    if (api_json_strings(v, &sources, &changes.n_allowed_sources) != 0) {
      api_respond_error(resp, 500, "Internal", "out of memory");
      goto out;
    }
    changes.allowed_sources = sources;
  }
  if ((v = json_object_get(body, "private_dns")) != NULL) {
    changes.set_private_dns = true;
    changes.private_dns = json_is_true(v);
  }
  int r = reg_endpoint_change(req->reg, &req->actor, api_param(req, 0),
                              &changes, &endpoint, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    goto out;
  }
  api_respond_json(resp, 200, endpoint_json(&endpoint));
  reg_endpoint_release(&endpoint);
out:
  free(sources);
  json_decref(body);
}

void api_handle_endpoint_delete(const struct api_request *req,
                                struct api_response *resp)
{
  struct reg_endpoint endpoint;
  struct reg_error err = {0};

  if (!api_no_query(req, resp))
    return;
  int r = reg_endpoint_delete(req->reg, &req->actor, api_param(req, 0),
                              &endpoint, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    return;
  }
  api_respond_json(resp, 200, endpoint_json(&endpoint));
  reg_endpoint_release(&endpoint);
}
