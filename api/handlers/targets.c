/* Target groups and their targets: the groups as the data plane holds
 * them (on the control thread, no registry needed), and the targets
 * registered and deregistered at run time (the registry's). Operators
 * only. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "handlers.h"

static json_t *target_json(const struct api_target *t)
{
  return json_pack("{s:s,s:I,s:s,s:s}", "address", t->address, "weight",
                   (json_int_t)t->weight, "state",
                   t->state != NULL ? t->state : "unused", "reason",
                   t->reason != NULL ? t->reason : "");
}

/* ---- operator routes ---------------------------------------------------- */

struct group_list {
  json_t *groups;
  const char *only;  /* NULL: every group */
  const char *after; /* a page starts after this group; "" at the start */
  size_t limit;
  bool skipping;
  char next[REG_NAME_BUF]; /* the last group of a full page */
};

static void on_target_group(void *ctx, const char *group,
                            const struct api_target *targets, size_t n)
{
  struct group_list *list = ctx;
  if (list->only != NULL && strcmp(list->only, group) != 0)
    return;
  if (list->skipping) {
    list->skipping = strcmp(list->after, group) != 0;
    return;
  }
  if (json_array_size(list->groups) == list->limit) {
    /* More remain after a full page. */
    if (list->next[0] == '\0')
      snprintf(list->next, sizeof list->next, "%s",
               json_string_value(json_object_get(
                   json_array_get(list->groups, list->limit - 1), "name")));
    return;
  }
  json_t *array = json_array();
  for (size_t i = 0; array != NULL && i < n; i++)
    json_array_append_new(array, target_json(&targets[i]));
  json_array_append_new(
      list->groups, json_pack("{s:s,s:o*}", "name", group, "targets", array));
}

static bool dataplane_ready(const struct api_request *req,
                            struct api_response *resp)
{
  if (req->server->dataplane != NULL &&
      req->server->dataplane->list_target_groups != NULL)
    return true;
  api_respond_error(resp, 503, "ServiceUnavailable",
                    "no data plane is attached to this API");
  return false;
}

/* GET /v1/target-groups pages by group name, in the config's order: a
 * token names the last group of the page before. */
static void target_groups(const struct api_request *req,
                          struct api_response *resp, const char *only)
{
  struct api_server *server = req->server;
  struct group_list list = {.groups = json_array(), .only = only};
  struct api_list_query q;

  if (!(only ? api_no_query(req, resp)
             : api_read_list_query(req, resp, false, &q)) ||
      !dataplane_ready(req, resp)) {
    json_decref(list.groups);
    return;
  }
  if (list.groups == NULL) {
    api_respond_error(resp, 500, "Internal", "out of memory");
    return;
  }
  list.after = only ? "" : q.token;
  list.skipping = list.after[0] != '\0';
  list.limit = only || q.page.limit == 0 ? REG_PAGE_MAX : q.page.limit;
  server->dataplane->list_target_groups(server->dataplane_arg, on_target_group,
                                        &list);
  if (only == NULL) {
    api_respond_list(resp, "target_groups", list.groups, list.next);
  } else if (json_array_size(list.groups) == 0) {
    json_decref(list.groups);
    api_respond_error(resp, 404, "NotFound", "no target group named %s", only);
  } else {
    json_t *group = json_incref(json_array_get(list.groups, 0));
    json_decref(list.groups);
    api_respond_json(resp, 200, group);
  }
}

void api_handle_target_group_list(const struct api_request *req,
                                  struct api_response *resp)
{
  target_groups(req, resp, NULL);
}

void api_handle_target_group_describe(const struct api_request *req,
                                      struct api_response *resp)
{
  target_groups(req, resp, api_param(req, 0));
}

/* A run-time target as the registry holds it: it starts initial on every
 * node, and drains when deregistered. */
static json_t *registered_target_json(const struct reg_target *t,
                                      const char *state)
{
  return json_pack("{s:s,s:I,s:s,s:s}", "address", t->address, "weight",
                   (json_int_t)t->weight, "state", state, "reason", "");
}

void api_handle_target_register(const struct api_request *req,
                                struct api_response *resp)
{
  static const struct api_json_field fields[] = {
      {"address", API_JSON_STRING, true},
      {"weight", API_JSON_INTEGER, false},
  };
  struct reg_target target;
  struct reg_error err = {0};
  json_t *body, *v;

  if (!api_no_query(req, resp) ||
      (body = api_read_body(req, resp, fields, N_FIELDS(fields))) == NULL)
    return;
  const char *address = json_string_value(json_object_get(body, "address"));
  json_int_t weight = 1;
  if ((v = json_object_get(body, "weight")) != NULL)
    weight = json_integer_value(v);
  if (weight < 1 || weight > REG_MAX_TARGET_WEIGHT) {
    api_respond_error(resp, 400, "InvalidValue", "weight: must be 1..%d",
                      REG_MAX_TARGET_WEIGHT);
  } else {
    int r = reg_target_register(req->reg, &req->actor, api_param(req, 0),
                                address, (uint32_t)weight, &target, &err);
    if (r != 0)
      api_respond_reg_error(req, resp, r, &err);
    else
      api_respond_json(resp, 201, registered_target_json(&target, "initial"));
  }
  json_decref(body);
}

void api_handle_target_deregister(const struct api_request *req,
                                  struct api_response *resp)
{
  struct reg_target target;
  struct reg_error err = {0};

  if (!api_no_query(req, resp))
    return;
  int r = reg_target_deregister(req->reg, &req->actor, api_param(req, 0),
                                api_param(req, 1), &target, &err);
  if (r != 0)
    api_respond_reg_error(req, resp, r, &err);
  else
    api_respond_json(resp, 200, registered_target_json(&target, "draining"));
}
