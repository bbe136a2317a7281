/* The config file (libconfig syntax, see docs/config.md): loading,
 * validation with FILE:LINE errors, and the parsed tree.
 *
 * A struct nlb_config is immutable once loaded and owned by whoever called
 * nlb_config_load; nlb_config_free releases it and everything under it.
 * Loading is done by the control thread only. */
#ifndef NLB_CONFIG_H
#define NLB_CONFIG_H

#define NLB_NODE_NETWORKS_MAX 16

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nlb/api-limits.h"
#include "nlb/common/addr.h"
#include "nlb/common/protocol.h"
#include "nlb/common/tls_client.h"
#include "nlb/common/tls_server.h"
#include "nlb/control/status_matcher.h"
#include "nlb/common/forwarding.h"

enum nlb_algorithm {
  NLB_ALGORITHM_MAGLEV,
  NLB_ALGORITHM_ROUND_ROBIN,
  NLB_ALGORITHM_LEAST_CONN,
  NLB_ALGORITHM_COUNT,
};

enum nlb_health_protocol {
  NLB_HEALTH_TCP,
  NLB_HEALTH_HTTP,
};

enum nlb_log_format {
  NLB_LOG_TEXT,
  NLB_LOG_JSON,
};

enum nlb_role {
  NLB_ROLE_OPERATOR,
  NLB_ROLE_PROVIDER,
  NLB_ROLE_CONSUMER,
};

struct nlb_config_health {
  enum nlb_health_protocol protocol;
  uint16_t port; /* 0 = the target's port */
  uint64_t interval_ms;
  uint64_t timeout_ms;
  unsigned healthy_threshold;
  unsigned unhealthy_threshold;
  char *path;
  char *host; /* Host header; NULL = the target's address */
  struct nlb_status_matcher matcher;
};

struct nlb_config_target {
  union nlb_sockaddr address;
  uint32_t weight;
  int line;
};

struct nlb_config_target_group {
  char *name;
  enum nlb_algorithm algorithm;
  bool proxy_protocol_v2;
  /* Targets see the client's own address (IP_TRANSPARENT), not nlb's. */
  bool preserve_client_ip;
  int preserve_client_ip_line;
  bool fail_open;
  uint64_t deregistration_delay_ms;
  uint64_t slow_start_ms; /* 0 = off */
  uint64_t connect_timeout_ms;
  unsigned connect_retries; /* further targets tried after a failure */
  struct nlb_config_health health;
  /* tls = { ... }: flows (and health checks) speak TLS to the targets. */
  struct nlb_tls_client_settings tls;
  struct nlb_config_target *targets;
  size_t n_targets;
  int line;
};

/* One name of a tls_passthrough listener's sni_routes: flows whose
 * ClientHello asks for it go to target_group. */
struct nlb_config_sni_route {
  char *name;          /* lower case; "*.b.example" for a wildcard */
  size_t target_group; /* index into nlb_config.target_groups */
  int line;
};

struct nlb_config_listener {
  uint16_t port;
  enum nlb_protocol protocol; /* "tcp" unless the file says */
  size_t target_group;        /* index into nlb_config.target_groups */
  bool has_bind;              /* false: reachable only through endpoints */
  union nlb_sockaddr bind;
  /* Its flows' idle timeout: idle_timeout when the file gives it, else
   * 350 s for TCP flows and 120 s for UDP flows. */
  uint64_t idle_timeout_ms;
  uint64_t udp_idle_timeout_ms;
  /* protocol "tls": tls = { certificates; ... } (enabled). */
  struct nlb_tls_server_settings tls;
  /* protocol "tls_passthrough": the target group by server name (any
   * other name, or none: target_group), and how long a client may take
   * to send its whole ClientHello. */
  struct nlb_config_sni_route *sni_routes;
  size_t n_sni_routes;
  uint64_t client_hello_timeout_ms;
  /* Its TCP flows' forwarding: its own forwarding, else the top level's. */
  enum nlb_forwarding forwarding;
  int line;
};

struct nlb_config_load_balancer {
  char *name;
  struct nlb_config_listener *listeners;
  size_t n_listeners;
  int line;
};

struct nlb_config_principal {
  char *name;
  enum nlb_role role;
  uint8_t token_sha256[32];
  /* Providers: the DNS domains their services' private_dns_name may be in
   * (lower case, no trailing dot). */
  char **dns_domains;
  size_t n_dns_domains;
  int line;
};

struct nlb_config_network {
  char *name;
  char *netns; /* NULL: host addresses */
  struct nlb_cidr range;
  char *range_text;  /* as written, e.g. "10.0.0.0/24" */
  char **principals; /* NULL with n_principals 0: any consumer */
  size_t n_principals;
  /* The DNS responder's address in the network (port 53), when has_dns;
   * dns_text as written. */
  bool has_dns;
  union nlb_sockaddr dns;
  char *dns_text;
  int line;
};

/* Paths in the file (log files, registry's SQLite file, api.tls) are made
 * absolute here: a relative one is taken from the config file's directory. */
struct nlb_config {
  char *path;       /* as given to nlb_config_load */
  unsigned workers; /* resolved: 0 in the file becomes the CPU count */
  bool pin_workers; /* worker_cpu_affinity "auto": worker i on CPU i */
  uint64_t shutdown_timeout_ms;
  uint64_t max_flows; /* 0: from the descriptor limit (capacity.h) */
  /* forwarding: how established TCP flows move ("splice" by default);
   * listeners inherit it unless they say. */
  enum nlb_forwarding forwarding;

  char *log_access; /* "stderr", "off" or a path */
  enum nlb_log_format log_access_format;
  char *log_events;
  enum nlb_log_format log_events_format;
  int log_level; /* 0 debug, 1 info, 2 warn, 3 error */
  /* "<N>" before event lines on stderr: 1, 0, or -1 (absent: when stderr
   * is the journal). */
  int log_priority_prefix;

  bool has_api;
  union nlb_sockaddr api_listen;
  char *api_tls_cert; /* NULL: h2c */
  char *api_tls_key;
  bool api_insecure;
  /* api.limits: per role (enum nlb_role), then the operators' reserve;
   * API_DEFAULT_LIMITS where the file says nothing. */
  struct api_limits api_limits;

  char *node_name; /* node.name, or the short host name */
  /* node.networks: this node's namespace for networks made through the
   * API, where it is not the network's own (at most
   * NLB_NODE_NETWORKS_MAX). */
  struct nlb_config_netns_mapping {
    char *network;
    char *netns; /* NULL: addresses on the host */
  } * node_networks;
  size_t n_node_networks;
  /* node.announce_interface: the tun device held while serving (announce.h),
   * or NULL; node.withdraw_delay: on shutdown, how long listeners keep
   * accepting after it was dropped, while routers converge. */
  char *announce_interface;
  uint64_t withdraw_delay_ms;

  bool has_registry;
  /* The store: "sqlite://FILE" (an absolute FILE, or one taken from the
   * config's directory) or "postgresql:CONNINFO", from registry.url, or
   * from registry.path or registry.postgresql. */
  char *registry_url;
  uint64_t registry_pending_expiry_ms;
  uint64_t registry_event_retention_ms; /* events older than this go */
  /* Finished endpoints (rejected, deleted, expired, failed) older than
   * this go. */
  uint64_t registry_endpoint_retention_ms;
  uint32_t registry_service_quota; /* services per provider; 0: no limit */
  /* How long an API write (read) may wait for the store before it answers
   * 503 StoreUnavailable, and is not applied. */
  uint64_t registry_write_timeout_ms;
  uint64_t registry_read_timeout_ms;

  /* dns = { zone; ttl; negative_ttl; tcp_connections_per_client; }: names
   * for endpoints (has_dns). */
  bool has_dns;
  char *dns_zone;              /* lower case, no trailing dot */
  uint32_t dns_ttl;            /* seconds */
  uint32_t dns_negative_ttl;   /* seconds */
  unsigned dns_tcp_per_client; /* a client address's TCP connections */

  struct nlb_config_principal *principals;
  size_t n_principals;
  struct nlb_config_network *networks;
  size_t n_networks;
  struct nlb_config_target_group *target_groups;
  size_t n_target_groups;
  struct nlb_config_load_balancer *load_balancers;
  size_t n_load_balancers;
};

/* Reads and validates the file at path. On success returns the config and
 * sets *errors to NULL. On failure returns NULL and sets *errors to a
 * malloc'd text, one "FILE:LINE: message" per line, that the caller frees.
 * Returns NULL with *errors NULL only when out of memory. */
struct nlb_config *nlb_config_load(const char *path, char **errors);

/* Releases cfg and everything it holds. NULL is ignored. */
void nlb_config_free(struct nlb_config *cfg);

/* Looks up a target group by name; NULL if absent. */
const struct nlb_config_target_group *
nlb_config_find_target_group(const struct nlb_config *cfg, const char *name);

#endif
