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

/* Runs a store's prune op in one write transaction (core.c;
 * reg_events_prune, reg_endpoints_prune). */
int reg_prune(struct reg *reg, reg_store_prune_fn *op, int64_t before_ms,
              size_t limit, size_t *removed);

/* ---- transactions (core.c) ---- */

/* The part of an operation that runs inside one transaction. It must be
 * safe to run again from the start (free what an earlier attempt left in
 * ctx first): on -EAGAIN the transaction is rolled back and body runs
 * again. */
typedef int (*reg_tx_body)(struct reg *reg, void *ctx, struct reg_error *err);

/* Runs body in a write (or read) transaction: commits when body returns 0,
 * rolls back otherwise. Returns body's result or the commit's. */
int reg_in_tx(struct reg *reg, bool write, reg_tx_body body, void *ctx,
              struct reg_error *err);

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
int reg_cmp_strings(const void *a, const void *b);
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
/* Whether the config's target group name has preserve_client_ip. */
bool reg_preserves_client_ip(const struct config *c, const char *name);

/* -EBUSY, err saying why, when net's range holds a target of a
 * preserve_client_ip group (the config's or one registered); called in
 * the transaction that makes net (cluster.c). */
int reg_check_network_for_preserved_targets(struct reg *reg,
                                            const struct reg_network_info *net,
                                            struct reg_error *err);

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
bool reg_state_live(enum reg_endpoint_state state);

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
/* True when name is domain or a name below it (both as parse writes
 * them). */
bool reg_dns_name_within(const char *name, const char *domain);
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

u128 reg_key_to_u128(const struct reg_addr_key *key);
void reg_u128_to_key(u128 v, struct reg_addr_key *key);
void reg_key_format(const struct reg_addr_key *key, int family, char *buf);
/* Parses an address of family (0: either) into a key. */
int reg_parse_address(const char *s, int family, struct reg_addr_key *key,
                      int *family_out);
/* Parses "ADDR/LEN" (or, if bare_ok, "ADDR") into [low, high]; host bits
 * must be zero. */
int reg_parse_cidr(const char *s, bool bare_ok, int *family, u128 *low,
                   u128 *high, unsigned *prefix);
/* The IP of a target "IP:PORT" or "[IPv6]:PORT" as a key value; -EINVAL
 * when it is none. */
int reg_target_address_value(const char *target, int *family, u128 *value);
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
