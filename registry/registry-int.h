/* Private to registry/: the registry object, its copy of the config, and
 * the helpers its files share (errors, transactions, events, addresses). */
#ifndef NLB_REGISTRY_INT_H
#define NLB_REGISTRY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nlb/registry-store.h"
#include "nlb/registry.h"

typedef unsigned __int128 u128;

struct config_principal {
  char name[REG_NAME_BUF];
  enum reg_role role;
  char **dns_domains; /* lower case, no trailing dot */
  size_t n_dns_domains;
};

struct config_network {
  char name[REG_NAME_BUF];
  char netns[REG_NAME_BUF];
  char range_text[REG_CIDR_BUF];
  int family;     /* AF_INET or AF_INET6 */
  u128 first;     /* lowest address an endpoint may get */
  u128 last;      /* highest */
  u128 low, high; /* the whole range, as keys */
  char **principals;
  size_t n_principals;
  bool dns; /* has a DNS responder on this node */
};

struct config_load_balancer {
  char name[REG_NAME_BUF];
  uint16_t *ports;
  size_t n_ports;
  bool proxy_protocol;
};

struct config {
  struct config_principal *principals;
  size_t n_principals;
  struct config_network *networks;
  size_t n_networks;
  struct config_load_balancer *load_balancers;
  size_t n_load_balancers;
  char **target_groups;
  size_t n_target_groups;
  char **preserve_groups; /* reg_config.preserve_client_ip_groups */
  size_t n_preserve_groups;
  char **preserve_targets; /* reg_config.preserve_client_ip_targets */
  size_t n_preserve_targets;
  char **preserve_target_groups; /* the group of each */
  size_t n_preserve_target_groups;
  int64_t pending_expiry_ms;
  uint32_t service_quota; /* services per provider; 0: no limit */
  char node[REG_NAME_BUF];
  char version[REG_VERSION_BUF];
  struct config_netns_mapping {
    char network[REG_NAME_BUF];
    char netns[REG_NAME_BUF];
  } node_networks[REG_NODE_NETWORKS_MAX];
  size_t n_node_networks;
  char node_networks_text[REG_NODE_NETWORKS_MAX * 2 * REG_NAME_BUF];
  char dns_zone[REG_DNS_NAME_BUF]; /* "" = none */
  uint32_t write_timeout_ms;
  uint32_t read_timeout_ms;
};

struct reg {
  const struct reg_store_ops *ops;
  struct reg_store *store;
  struct config config;
  bool reader;          /* reg_config.reader: no writes */
  uint64_t deadline_ms; /* reg_set_deadline; 0: none */
};

/* ---- errors (names.c) ---- */

__attribute__((format(printf, 4, 5))) int reg_set_error(struct reg_error *err,
                                                        int code,
                                                        const char *field,
                                                        const char *fmt, ...);
void reg_clear_error(struct reg_error *err);
/* A store failure: the store's own text (-EIO), "unavailable" (-ENOTCONN),
 * "out of memory". Returns r. */
int reg_store_error(struct reg *reg, struct reg_error *err, int r);
/* -EACCES unless actor is an operator. */
int reg_check_operator(const struct reg_actor *actor, struct reg_error *err);

/* Runs a store's prune op in one write transaction (core.c;
 * reg_events_prune, reg_endpoints_prune). */
int reg_prune(struct reg *reg, reg_store_prune_fn *op, int64_t before_ms,
              size_t limit, size_t *removed);

/* ---- transactions (core.c) ---- */

/* One transaction, begun again from the start while the store cannot
 * serialize it (-EAGAIN), every attempt within the read or write timeout
 * (or reg_set_deadline's):
 *
 *   struct reg_tx tx;
 *   int r;
 *
 *   for (reg_tx_start(&tx, reg, write, err); reg_tx_next(&tx, &r);)
 *     r = body(...);
 *
 * The body runs inside the open transaction and sets r to 0 (commit) or a
 * negative errno (rollback); it must not leave the loop otherwise, and must
 * be safe to run again (free what an earlier attempt left first). After
 * the loop r is the result: the body's, the commit's, or the store's
 * failure (err filled). */
struct reg_tx {
  struct reg *reg;
  struct reg_error *err;
  bool write;
  bool open; /* the body is running in it */
  int attempt;
  uint64_t deadline; /* monotonic ms */
};
void reg_tx_start(struct reg_tx *tx, struct reg *reg, bool write,
                  struct reg_error *err);
/* Ends the attempt the body made (r its result) and begins the next one
 * if one is due: true when the body must run (again). */
bool reg_tx_next(struct reg_tx *tx, int *r);

/* ---- small helpers (names.c) ---- */

int64_t reg_now_ms(void);
/* prefix + REG_ID_HEX random lowercase hex digits. */
int reg_make_id(char *buf, const char *prefix);
bool reg_name_ok(const char *s);
/* Names in URLs, logs and permissions: 1-63 of [A-Za-z0-9._-]; tame ones
 * (what the API makes) also start with a letter or digit. */
bool reg_name_chars_ok(const char *s);
bool reg_name_tame(const char *s);
/* "ep-" and hex digits only, in any case (names.c): no service may take
 * such a name, and one that holds it from before that rule has no
 * SERVICE.ZONE, which would be an endpoint's EP-ID.ZONE. */
bool reg_name_like_endpoint_id(const char *s);
/* A malloc'd copy of n strings into *out (NULL when n is 0; to free with
 * reg_strings_free); -ENOMEM, with nothing left to free. */
int reg_strings_copy(const char *const *src, size_t n, char ***out);
/* Sorts v and drops duplicates (freeing them); *n is updated. */
void reg_strings_sort_unique(char **v, size_t *n);

/* The config's principal, network, load balancer of that name; NULL (or
 * false) when it has none. */
const struct config_principal *reg_find_principal(const struct config *c,
                                                  const char *name);
const struct config_network *reg_find_network(const struct config *c,
                                              const char *name);
const struct config_load_balancer *
reg_find_load_balancer(const struct config *c, const char *name);
bool reg_has_target_group(const struct config *c, const char *name);
/* Whether s's allowed_principals hold consumer or "*". */
bool reg_service_allows(const struct reg_service *s, const char *consumer);

/* Whether the config's target group name has preserve_client_ip. */
bool reg_preserves_client_ip(const struct config *c, const char *name);

/* Whether target (HOST:PORT) is of family and within [low, high]
 * (address.c). */
bool reg_range_holds_target(int family, u128 low, u128 high,
                            const char *target);
/* -EBUSY, err saying that target of group cannot keep the client's
 * address inside network (range); field names the offending input. */
int reg_refuse_preserved_inside(const char *field, const char *group,
                                const char *target, const char *network,
                                const char *range, struct reg_error *err);

/* ---- config (core.c) ---- */
/* Checks and copies a network's spec (config or API) into *dst; on failure
 * *dst's principals are still the caller's to free. */
int reg_network_from_spec(struct config_network *dst,
                          const struct reg_network *src, struct reg_error *err);
/* The network name: the config's, or one made through the API (read in
 * the open transaction into *store_net, whose principals the caller frees
 * with reg_strings_free). -EINVAL when none. */
int reg_load_network(struct reg *reg, const char *name,
                     struct config_network *store_net,
                     const struct config_network **out, struct reg_error *err);

/* Completes stored rows with what config knows (ports, netns, proxy). */
int reg_service_complete(struct reg *reg, struct reg_service *s);
int reg_endpoint_complete(struct reg *reg, struct reg_endpoint *e);
int reg_complete_services(struct reg *reg, struct reg_service *v, size_t n);
int reg_complete_endpoints(struct reg *reg, struct reg_endpoint *v, size_t n);

/* Page tokens: "CREATED_AT.ID". parse fills *cursor (the start for NULL or
 * ""); -EINVAL on a bad token or limit, and *limit gets the effective one. */
int reg_page_parse(const struct reg_page *page, struct reg_store_cursor *cursor,
                   size_t *limit, struct reg_error *err);
/* Rows to read for a page of limit items: one more, to know whether more
 * remain. */
size_t reg_page_rows(size_t limit);
/* next_token after a page whose last item is (created_at, id): "" unless
 * more remain. */
void reg_page_next(char *next_token, bool more, int64_t created_at,
                   const char *id);

/* Hands out a page of endpoints read in a transaction that returned r (0,
 * or a negative errno: v is freed), n rows of reg_page_rows(limit):
 * completed, the row past the page dropped, next_token set
 * (endpoints.c). */
int reg_endpoints_page(struct reg *reg, int r, struct reg_endpoint *v, size_t n,
                       size_t limit, struct reg_endpoint **out, size_t *n_out,
                       char *next_token, struct reg_error *err);

/* ---- events (core.c) ---- */

/* Appends the event for e's (new) state inside the open transaction. */
int reg_record_event(struct reg *reg, enum reg_event_type type,
                     const struct reg_endpoint *e, const char *principal);
/* Moves e to state `to` (the caller checked it is legal), stores it,
 * releases its address when it leaves the live states, and records the
 * event. */
int reg_transition(struct reg *reg, struct reg_endpoint *e,
                   enum reg_endpoint_state to, const char *reason,
                   const char *principal, int64_t now);
bool reg_transition_legal(enum reg_endpoint_state from,
                          enum reg_endpoint_state to);

/* Appends the modify event of service s (no endpoint) inside the open
 * transaction. */
int reg_record_service_event(struct reg *reg, const struct reg_service *s,
                             const char *principal, int64_t now);

/* ---- DNS names (dns.c) ---- */

/* Checks a host name ("Api.Payments.example.", labels of 1-63 letters,
 * digits and '-' not at either end, at least min_labels of them, 253 bytes
 * in all) and writes it in lower case without the trailing dot. -EINVAL. */
int reg_dns_name_parse(const char *name, size_t min_labels,
                       char out[REG_DNS_NAME_BUF]);
/* Validates private_dns_name for a service owned by owner into out ("" for
 * NULL or ""): -EINVAL (not a host name, or inside or above the zone) or
 * -EACCES (outside owner's domains), with err filled. */
int reg_private_dns_name_check(struct reg *reg, const char *owner,
                               const char *private_dns_name,
                               char out[REG_DNS_NAME_BUF],
                               struct reg_error *err);
/* Fills e->dns_names from its row and config (see registry.h). */
int reg_endpoint_dns_names(struct reg *reg, struct reg_endpoint *e);

/* ---- addresses (address.c) ---- */

/* Parses "ADDR/LEN" (or, if bare_ok, "ADDR") into [low, high]; host bits
 * must be zero. */
int reg_parse_cidr(const char *s, bool bare_ok, int *family, u128 *low,
                   u128 *high, unsigned *prefix);
/* Validates allowed_sources into canonical "ADDR/LEN" strings. */
int reg_sources_normalize(const char *const *src, size_t n, char ***out,
                          struct reg_error *err);
/* Picks an endpoint's address inside net (the asked one, or the lowest
 * free) inside the open write transaction. */
int reg_allocate_address(struct reg *reg, const struct config_network *net,
                         const char *asked, struct reg_addr_key *key,
                         char *text, struct reg_error *err);
/* An endpoint of network left the live states: its address is free
 * again. */
int reg_release_address(struct reg *reg, const char *network,
                        const char *address);
/* "IP:PORT" / "[IP6]:PORT" into canonical text; -EINVAL. */
int reg_target_address_normalize(const char *in, char *out, size_t len);

#endif
