/* The nodes of the cluster as the registry knows them, and draining one.
 * Operators only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "handlers.h"

/* [{"network","netns"|null}] of a node's "NETWORK=NETNS" lines. */
static json_t *node_networks_json(const char *text)
{
  json_t *list = json_array();

  while (list != NULL && *text != '\0') {
    const char *end = strchr(text, '\n'), *eq = strchr(text, '=');
    size_t len = end ? (size_t)(end - text) : strlen(text);
    char network[REG_NAME_BUF];

    if (eq != NULL && eq < text + len &&
        (size_t)(eq - text) < sizeof(network)) {
      memcpy(network, text, (size_t)(eq - text));
      network[eq - text] = '\0';
      json_array_append_new(
          list,
          json_pack("{s:s,s:o}", "network", network, "netns",
                    eq + 1 == text + len
                        ? json_null()
                        : json_stringn(eq + 1, (size_t)(text + len - eq - 1))));
    }
    text += len + (end != NULL);
  }
  return list;
}

static json_t *node_json(const struct reg_node *node)
{
  return json_pack("{s:s,s:s,s:o,s:I,s:s,s:o}", "name", node->name, "state",
                   reg_node_state_name(node->state), "last_seen",
                   api_json_time(node->last_seen), "applied_seq",
                   (json_int_t)node->applied_seq, "version", node->version,
                   "networks", node_networks_json(node->networks));
}

/* ---- nodes -------------------------------------------------------------- */

void api_handle_node_list(const struct api_request *req,
                          struct api_response *resp)
{
  struct reg_node *nodes = NULL;
  struct reg_error err = {0};
  struct api_list_query q;
  size_t n = 0, first = 0, shown = 0;
  char next[REG_NAME_BUF] = "";

  if (!api_read_list_query(req, resp, false, &q))
    return;
  int r = reg_nodes_list(req->reg, &req->actor, &nodes, &n, &err);
  if (r != 0) {
    api_respond_reg_error(req, resp, r, &err);
    return;
  }
  /* By name: a token is the last name of the page before. */
  while (q.token[0] != '\0' && first < n &&
         strcmp(nodes[first].name, q.token) <= 0)
    first++;
  json_t *array = json_array();
  for (size_t i = first; array != NULL && i < n; i++) {
    if (q.page.limit != 0 && shown == q.page.limit) {
      snprintf(next, sizeof next, "%s", nodes[i - 1].name);
      break;
    }
    json_array_append_new(array, node_json(&nodes[i]));
    shown++;
  }
  free(nodes);
  api_respond_list(resp, "nodes", array, next);
}

void api_handle_node_drain(const struct api_request *req,
                           struct api_response *resp)
{
  struct reg_node node;
  struct reg_error err = {0};

  if (!api_no_query(req, resp))
    return;
  int r = reg_node_drain(req->reg, &req->actor, api_param(req, 0), &node, &err);
  if (r != 0)
    api_respond_reg_error(req, resp, r, &err);
  else
    api_respond_json(resp, 200, node_json(&node));
}
