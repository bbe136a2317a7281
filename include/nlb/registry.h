/* The registry: endpoint services, their permissions and their endpoints
 * (one consumer's connection to a service), targets registered at run time,
 * the nodes that share the registry and where each endpoint is open, with
 * the endpoint state machine, the permission checks of every operation,
 * address allocation inside a network's range, and an append-only event log
 * that is the one change feed. Everything it knows that is not config lives
 * in a durable store (registry-store.h): SQLite for one node, PostgreSQL
 * for many; every operation is one store transaction and returns only after
 * the commit.
 *
 * Config (principals, networks, load balancers, target groups, this node's
 * name) is given to the registry by its caller at reg_open() and replaced
 * with reg_reload(); the registry deep copies it and never parses config
 * files or tokens itself. Authentication is the caller's job: operations
 * take the acting principal (name + role) the caller has already
 * authenticated.
 *
 * The change feed: every change to endpoints, services' settings, run-time
 * targets and nodes appends events in the same transaction, numbered 1, 2,
 * 3... without gaps and visible in commit order on every node. Whoever acts
 * on changes (the data plane, event streams, DNS) reads them with
 * reg_changes_read() by sequence number, whichever node committed them:
 * there is no other channel.
 *
 * Threads: a struct reg is used from one thread only. No function here is
 * thread-safe and the registry never calls libuv; calls block on the store
 * (disk I/O, or PostgreSQL round trips), so nlbd gives the registry a
 * thread of its own (nlb/regloop.c).
 *
 * Errors: functions return 0 or a negative errno. Those that take a
 * struct reg_error *err (which may be NULL) also fill it with the same code,
 * the offending field (when one is at fault) and a message meant for the
 * user. The mapping to the API's HTTP answers:
 *
 *   -EINVAL      400 InvalidValue       a bad value (err->field names it)
 *   -EACCES      403 Forbidden          the role may not do this at all,
 *                                       or a private_dns_name outside the
 *                                       domains granted to the service's
 *                                       owner
 *   -ENOENT      404 NotFound           absent, or not visible to the actor
 *   -EEXIST      409 AlreadyExists      a service with that name, or
 *                                       that private_dns_name, exists
 *   -EBUSY       409 InvalidState       the state does not allow it (an
 *                                       illegal transition, or deleting a
 *                                       service with live endpoints)
 *   -EADDRINUSE  409 AddressInUse       the asked address is taken
 *   -EDQUOT      409 LimitExceeded      connection_limit reached
 *   -ENOSPC      409 AddressExhausted   no free address in the network
 *   -ENOTCONN    503 StoreUnavailable   the store cannot be reached (the
 *                                       PostgreSQL server is down); nothing
 *                                       was changed
 *   -ETIMEDOUT   503 StoreUnavailable   the store did not answer within
 *                                       reg_config.write_timeout_ms or
 *                                       read_timeout_ms (a lock held
 *                                       elsewhere): the transaction was
 *                                       rolled back; nothing was changed,
 *                                       and nothing will be
 *   -ENOMEM      500 Internal
 *   -EIO         500 Internal           the store failed (err->message says
 *                                       how); the transaction was rolled back
 *
 * A store's serialization failure (-EAGAIN) never reaches the caller: the
 * registry runs the whole transaction again, a few times, then answers
 * -EIO.
 *
 * A principal never learns of a service or endpoint it may not see: where a
 * resource exists but is not visible to the actor the answer is -ENOENT, never
 * -EACCES.
 *
 * Names of services and principals are unique the way DNS compares them,
 * ignoring ASCII case: "PAYMENTS" is taken while "payments" exists (a
 * service's name is a DNS name, SERVICE.ZONE). Each keeps the spelling it
 * was made with, and lookups by name other than a service's match it
 * exactly.
 *
 * Ownership: result structs are filled into memory the caller provides;
 * their list members (ports, allowed_principals, allowed_sources,
 * placements) are heap allocated and released with reg_service_release() /
 * reg_endpoint_release() or, for arrays the registry allocated,
 * reg_services_free() / reg_endpoints_free(). Strings passed in are only
 * borrowed for the call.
 */
#ifndef NLB_REGISTRY_H
#define NLB_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest name (principal, network, load balancer, service, netns, node) in
 * bytes, without the NUL. Longer config names are refused by
 * reg_open/reg_reload. */
#define REG_NAME_MAX 64
#define REG_NAME_BUF (REG_NAME_MAX + 1)
/* Longest network namespace name (reg_netns_name_check). */
#define REG_NETNS_NAME_MAX 63
/* "svc-" or "ep-" + 17 lowercase hex digits, NUL included. */
#define REG_ID_HEX 17
#define REG_ID_BUF 24
#define REG_ADDR_BUF 46    /* INET6_ADDRSTRLEN */
#define REG_CIDR_BUF 50    /* address + "/128" */
#define REG_TARGET_BUF 56  /* "[" address "]:" port */
#define REG_REASON_BUF 256 /* endpoint failure/rejection reason */
#define REG_TIME_BUF 32    /* "2024-01-02T03:04:05.678Z" + NUL */
#define REG_VERSION_BUF 32 /* an nlbd version string */
#define REG_TOKEN_BUF 64   /* a page token */
/* A DNS name as text, without the trailing dot: at most 253 bytes. */
#define REG_DNS_NAME_MAX 253
#define REG_DNS_NAME_BUF (REG_DNS_NAME_MAX + 1)

/* Largest accepted lists and values. */
#define REG_MAX_ALLOWED_SOURCES 64
#define REG_MAX_ALLOWED_PRINCIPALS 1000
#define REG_MAX_CONNECTION_LIMIT 100000
#define REG_MAX_TARGET_WEIGHT 1000

/* Lists answer at most this many items a page (and this many by default). */
#define REG_PAGE_MAX 1000

/* Default for reg_config.pending_expiry_ms: 7 days. */
#define REG_DEFAULT_PENDING_EXPIRY_MS (7LL * 24 * 3600 * 1000)
/* Defaults for reg_config.write_timeout_ms and read_timeout_ms. */
#define REG_DEFAULT_WRITE_TIMEOUT_MS 5000
#define REG_DEFAULT_READ_TIMEOUT_MS 2000

/* Nodes record a heartbeat this often; one silent for
 * REG_NODE_DOWN_HEARTBEATS of them is down. */
#define REG_HEARTBEAT_MS 1000
#define REG_NODE_DOWN_HEARTBEATS 3

/* The principal recorded on events the registry makes by itself
 * (expiry, failures reported by the data plane). */
#define REG_SYSTEM_PRINCIPAL "nlbd"

enum reg_role {
  REG_ROLE_OPERATOR = 0,
  REG_ROLE_PROVIDER = 1,
  REG_ROLE_CONSUMER = 2,
};

/* Endpoint states. Legal transitions (anything else is -EBUSY):
 *
 *   (new)             -> pendingAcceptance   create, acceptance required
 *   (new)             -> available           create, acceptance not required
 *   pendingAcceptance -> available           accept (owner/operator)
 *   pendingAcceptance -> rejected            reject (owner/operator), or
 *                                            reconcile on permission removal
 *   available         -> rejected            reject = revoke; the data plane
 *                                            closes listeners and flows
 *   pendingAcceptance -> deleted             delete (consumer/operator)
 *   available         -> deleted             delete
 *   rejected          -> deleted             delete (the consumer cleans up)
 *   failed            -> deleted             delete
 *   expired           -> deleted             delete
 *   pendingAcceptance -> expired             reg_expire_pending()
 *   available         -> failed              no up node could open it
 *                                            (reg_placements_report())
 *
 * deleted is final. rejected, expired and failed are never accepted again:
 * the consumer creates a new endpoint. Endpoints in those four states are
 * pruned after registry.endpoint_retention (reg_endpoints_prune). "Live" states
 * (holding an address and counting against connection_limit) are
 * pendingAcceptance and available. */
enum reg_endpoint_state {
  REG_EP_PENDING_ACCEPTANCE = 0,
  REG_EP_AVAILABLE = 1,
  REG_EP_REJECTED = 2,
  REG_EP_DELETED = 3,
  REG_EP_EXPIRED = 4,
  REG_EP_FAILED = 5,
};
#define REG_EP_STATE_COUNT 6

/* Events. Endpoint events (connect..modify) name the endpoint, its service
 * and the endpoint's new state; observers that act on endpoints should look
 * at the endpoint's current row (reg_changes carries it), not only at the
 * type: a connect to a service without acceptance_required is one connect
 * event whose state is already available. A modify with a service_id and
 * no endpoint_id is a service's: its settings (private_dns_name among
 * them) changed; the provider and operators see it, and reg_changes
 * carries the current rows of the service's available endpoints with it.
 * register/deregister name a run-time target (target_group, target); drain
 * names a node; the principal_*, token_* and network_* events name their
 * principal or network (subject) and token (token_id). */
enum reg_event_type {
  REG_EVENT_CONNECT = 0,    /* created: pendingAcceptance or available */
  REG_EVENT_ACCEPT = 1,     /* -> available */
  REG_EVENT_REJECT = 2,     /* -> rejected */
  REG_EVENT_DELETE = 3,     /* -> deleted */
  REG_EVENT_EXPIRE = 4,     /* -> expired */
  REG_EVENT_FAIL = 5,       /* -> failed */
  REG_EVENT_MODIFY = 6,     /* an endpoint's allowed_sources or private_dns
                             * changed (state unchanged), or a service's
                             * settings (no endpoint_id) */
  REG_EVENT_REGISTER = 7,   /* a target registered through the API */
  REG_EVENT_DEREGISTER = 8, /* such a target deregistered (it drains) */
  REG_EVENT_DRAIN = 9,      /* a node asked to drain */
  REG_EVENT_PRINCIPAL_CREATE = 10, /* subject: the principal */
  REG_EVENT_PRINCIPAL_DELETE = 11,
  REG_EVENT_TOKEN_CREATE = 12, /* subject: the principal; token_id */
  REG_EVENT_TOKEN_REVOKE = 13,
  REG_EVENT_NETWORK_CREATE = 14, /* subject: the network */
  REG_EVENT_NETWORK_DELETE = 15,
};
#define REG_EVENT_TYPE_COUNT 16

/* ---- config the registry is given ---------------------------------------
 * All pointers are borrowed for the duration of reg_open()/reg_reload(); the
 * registry copies what it keeps. */

struct reg_principal {
  const char *name;
  enum reg_role role;
  /* Providers only: the DNS domains ("payments.example") inside which the
   * principal's services may take a private_dns_name (the domain itself
   * or any name below it). */
  const char *const *dns_domains;
  size_t n_dns_domains;
};

struct reg_network {
  const char *name;
  const char *netns; /* this node's namespace for it; NULL: host addresses */
  const char *range; /* "10.0.0.0/24", "fd00::/64" */
  /* Consumers allowed to place endpoints here; n_principals == 0: any. */
  const char *const *principals;
  size_t n_principals;
  /* The address of the network's DNS responder on this node, NULL when it
   * has none: only then do its endpoints list dns_names. */
  const char *dns;
};

/* This node's namespace for a network made through the API, when it is
 * not the network's own netns (config: node.networks). */
struct reg_netns_mapping {
  const char *network;
  const char *netns; /* "" = addresses on the host */
};
#define REG_NODE_NETWORKS_MAX 16

struct reg_load_balancer {
  const char *name;
  const uint16_t *ports; /* its listener ports */
  size_t n_ports;
  /* The LB's target groups speak PROXY v2; reported with endpoints so the
   * data plane can reopen them without a config lookup. */
  bool proxy_protocol;
};

struct reg_config {
  const struct reg_principal *principals;
  size_t n_principals;
  const struct reg_network *networks;
  size_t n_networks;
  const struct reg_load_balancer *load_balancers;
  size_t n_load_balancers;
  /* A pendingAcceptance endpoint older than this expires; 0: default. */
  int64_t pending_expiry_ms;
  /* Services one provider may own (operators: no limit); 0: no limit. */
  uint32_t service_quota;
  /* Target groups that targets may be registered in at run time. */
  const char *const *target_groups;
  size_t n_target_groups;
  /* Those of target_groups whose targets see the client's own address
   * (preserve_client_ip), and their configured targets ("IP:PORT"). Such
   * a target must lie in no network's range (it would answer that
   * network's clients directly): a network whose range holds one, and a
   * target registered in such a group inside a network, are refused
   * (-EBUSY). */
  const char *const *preserve_client_ip_groups;
  size_t n_preserve_client_ip_groups;
  const char *const *preserve_client_ip_targets;
  const char *const *preserve_client_ip_target_groups; /* of each target */
  size_t n_preserve_client_ip_targets;
  /* This node's name (placements, heartbeats); NULL or "": "local". */
  const char *node;
  /* This node's version, recorded with its heartbeat. */
  const char *version;
  /* At most REG_NODE_NETWORKS_MAX; recorded with its heartbeat. */
  const struct reg_netns_mapping *node_networks;
  size_t n_node_networks;
  /* The DNS zone of endpoint names ("nlb.internal"); NULL or "": none (no
   * endpoint lists dns_names). No private_dns_name may fall inside it. */
  const char *dns_zone;
  /* How long a write (read) transaction may wait for the store, from its
   * start or from reg_set_deadline's deadline: a lock held elsewhere, a
   * busy file, a slow statement. Then it is rolled back, never run again,
   * and the operation answers -ETIMEDOUT. 0: the REG_DEFAULT_* values. */
  uint32_t write_timeout_ms;
  uint32_t read_timeout_ms;
  /* Open a second registry of this process on the same store, for reads
   * only (nlbd answers reads on a thread of their own, so that a write
   * waiting for a lock never holds them up): it holds neither the SQLite
   * file nor the node's name, and its writes fail (-EIO). Read at
   * reg_open only. */
  bool reader;
};

/* ---- actors, errors, results -------------------------------------------- */

/* Who acts: the caller authenticated it. The name need not be in the config
 * (the registry trusts the caller), but consumers outside the config cannot
 * be named in permissions. */
struct reg_actor {
  const char *name;
  enum reg_role role;
};

struct reg_error {
  int code;       /* same negative errno the function returned */
  char field[64]; /* the request field at fault, "" if none */
  char message[256];
};

/* Which page of a list: at most limit items (0: REG_PAGE_MAX; more than
 * REG_PAGE_MAX: -EINVAL) after the position token names ("" or NULL: from
 * the start). A token is a position in the list's order (created_at, id),
 * not an offset: items inserted meanwhile never make a reader see an item
 * twice or miss one that existed throughout. */
struct reg_page {
  size_t limit;
  const char *token;
};

struct reg_service {
  char id[REG_ID_BUF];
  char name[REG_NAME_BUF];
  char owner[REG_NAME_BUF];
  char load_balancer[REG_NAME_BUF];
  const char *state; /* always "available" (static string) */
  uint16_t *ports;   /* from the LB's config; empty if the LB is gone */
  size_t n_ports;
  bool acceptance_required;
  bool proxy_protocol;       /* from the LB's config */
  char **allowed_principals; /* sorted; "*" = every consumer */
  size_t n_allowed_principals;
  uint32_t connection_limit; /* live endpoints per consumer; 0 = no limit */
  int64_t created_at;        /* unix ms */
  /* The provider's own host name for the service ("api.payments.example",
   * lower case), or "": it resolves to each endpoint that opted in
   * (private_dns), in that endpoint's network. Unique across services. */
  char private_dns_name[REG_DNS_NAME_BUF];
};

/* Where a node has (or could not) open an available endpoint: the node's
 * last report, kept once the endpoint is no longer available (then every
 * node has closed its listeners: see reg_placement_state_name()). */
struct reg_placement {
  char node[REG_NAME_BUF];
  bool open;                   /* "open"; false: "failed" */
  char reason[REG_REASON_BUF]; /* why it failed, or "" */
  int64_t updated_at;          /* unix ms */
};

struct reg_endpoint {
  char id[REG_ID_BUF];
  char service_id[REG_ID_BUF];
  char service[REG_NAME_BUF]; /* the service's name */
  char owner[REG_NAME_BUF];   /* the service's owner */
  char load_balancer[REG_NAME_BUF];
  char consumer[REG_NAME_BUF];
  char network[REG_NAME_BUF];
  char netns[REG_NAME_BUF]; /* from this node's config, "" = host */
  char address[REG_ADDR_BUF];
  uint16_t *ports; /* the service LB's listener ports */
  size_t n_ports;
  bool proxy_protocol;
  enum reg_endpoint_state state;
  char reason[REG_REASON_BUF]; /* why rejected/failed/expired, or "" */
  char **allowed_sources;      /* canonical CIDRs; none = any source */
  size_t n_allowed_sources;
  struct reg_placement *placements; /* by node name */
  size_t n_placements;
  int64_t created_at; /* unix ms */
  int64_t updated_at; /* unix ms, last state or field change */
  char private_dns_name[REG_DNS_NAME_BUF]; /* the service's, or "" */
  bool private_dns; /* the consumer opted into private_dns_name */
  /* The names that resolve to the endpoint in its network, lower case:
   * "EP-ID.ZONE", "SERVICE.ZONE" (when the service's name makes a valid
   * DNS name and is not shaped like an endpoint ID), and private_dns_name
   * when private_dns is on and the service's owner still holds a domain
   * for it. Empty unless the endpoint is available, a dns_zone is
   * configured and its network has a DNS responder. Filled from config
   * like ports. */
  char **dns_names;
  size_t n_dns_names;
};

/* A target registered through the API (config targets are not stored). */
struct reg_target {
  char target_group[REG_NAME_BUF];
  char address[REG_TARGET_BUF]; /* canonical "127.0.0.1:9001", "[::1]:80" */
  uint32_t weight;
  int64_t created_at;
};

enum reg_node_state {
  REG_NODE_UP = 0,
  REG_NODE_DRAINING = 1,
  REG_NODE_DOWN = 2,
};

struct reg_node {
  char name[REG_NAME_BUF];
  enum reg_node_state state;
  int64_t last_seen;  /* unix ms, store clock */
  int64_t started_at; /* unix ms */
  uint64_t applied_seq;
  char version[REG_VERSION_BUF];
  /* Its node.networks: "NETWORK=NETNS" lines (NETNS empty: the host). */
  char networks[REG_NODE_NETWORKS_MAX * 2 * REG_NAME_BUF];
};

/* A principal, from the config (read-only through the API) or made through
 * the API. */
struct reg_principal_info {
  char name[REG_NAME_BUF];
  enum reg_role role;
  bool from_config;
  int64_t created_at; /* unix ms; 0 for the config's */
  /* The last seq committed before it was made (0 for the config's):
   * events up to it are an earlier principal's of the same name, never
   * shown to this one. */
  uint64_t since_seq;
};

/* An API token: only its SHA-256 is stored, never the token. */
struct reg_token {
  char id[REG_ID_BUF]; /* "tok-" + hex */
  char principal[REG_NAME_BUF];
  enum reg_role role; /* the principal's */
  uint8_t sha256[32];
  int64_t created_at;
  int64_t expires_at;   /* unix ms; 0: never */
  int64_t last_used_at; /* unix ms; 0: never (recorded about once a minute) */
};

/* A network, from the config or made through the API. */
struct reg_network_info {
  char name[REG_NAME_BUF];
  char range[REG_CIDR_BUF];
  char netns[REG_NAME_BUF]; /* "" = host addresses */
  char **principals;        /* consumers allowed; none = any */
  size_t n_principals;
  bool from_config;
  int64_t created_at;
};

/* An event, flat (no heap members). */
struct reg_event {
  uint64_t seq; /* 1, 2, 3... no gaps, never reused */
  int64_t time; /* unix ms */
  enum reg_event_type type;
  char service_id[REG_ID_BUF];
  char endpoint_id[REG_ID_BUF];
  char principal[REG_NAME_BUF];  /* who acted */
  char owner[REG_NAME_BUF];      /* the service's owner */
  char consumer[REG_NAME_BUF];   /* the endpoint's consumer */
  enum reg_endpoint_state state; /* the endpoint's new state */
  char reason[REG_REASON_BUF];
  char target_group[REG_NAME_BUF]; /* register, deregister */
  char target[REG_TARGET_BUF];     /* register, deregister */
  char node[REG_NAME_BUF];         /* drain */
  char subject[REG_NAME_BUF];      /* principal_*, token_*, network_* */
  char token_id[REG_ID_BUF];       /* token_* */
};

/* Per-item result of a batch (accept/reject). */
struct reg_item_result {
  int code; /* 0 or a negative errno as above */
  char message[128];
};

struct reg;

/* ---- lifetime ------------------------------------------------------------ */

/* Opens (creating if needed) the store at url, whose scheme names it:
 * "sqlite:PATH" (or "sqlite:///var/lib/nlb/registry.db"),
 * "postgresql:CONNINFO" (a libpq connection string) or a libpq URI
 * "postgresql://..."; migrates its schema, and takes a copy of cfg.
 * A SQLite file is locked for this process alone (the file itself, by
 * whatever path or link it is named); in PostgreSQL the node's name
 * (cfg->node) is held for this process alone, for as long as it is open.
 * On success *out owns the registry (free with reg_close). Errors: -EINVAL
 * (unknown store, bad config: unknown role, bad range, name too long,
 * duplicate name; err says which), -EBUSY (another process holds the SQLite
 * file, or the node's name: err names it), -ENOTCONN (the PostgreSQL server
 * cannot be reached: not fatal, see registry-store.h), -EIO (cannot
 * open/migrate the store, or it is newer than this code), -ENOMEM. */
int reg_open(struct reg **out, const char *url, const struct reg_config *cfg,
             struct reg_error *err);

/* Closes the store and frees everything. NULL ok. */
void reg_close(struct reg *reg);

/* The monotonic clock (CLOCK_MONOTONIC) in ms, as deadlines are given. */
uint64_t reg_monotonic_ms(void);

/* Bounds the operations that follow, until the next call: each of their
 * transactions gives up (-ETIMEDOUT) at deadline_ms (reg_monotonic_ms()'s
 * clock), so that work queued for a while is bounded from when it was
 * asked for, not from when it started. 0: each transaction gets the
 * config's timeout from its own start. */
void reg_set_deadline(struct reg *reg, uint64_t deadline_ms);

/* The store's last failure, for logs ("" if none). */
const char *reg_store_message(struct reg *reg);

/* Replaces the config set (SIGHUP). Stored services and endpoints are left
 * as they are: a service whose LB vanished reports no ports; endpoints in a
 * network that vanished keep their address until deleted. On error the old
 * config stays. Errors: as reg_open's config errors. */
int reg_reload(struct reg *reg, const struct reg_config *cfg,
               struct reg_error *err);

/* The schema version of the open store. */
int reg_schema_version(struct reg *reg);

/* The store's name: "sqlite" or "postgresql". */
const char *reg_store_name(const struct reg *reg);

/* A descriptor that becomes readable when another process committed a
 * change (PostgreSQL LISTEN/NOTIFY), or -1 when the store has none (poll
 * then). It changes after a reconnect: ask again after every call. */
int reg_wait_fd(struct reg *reg);

/* Consumes what made reg_wait_fd() readable. True when it was a change
 * notice (read the changes), false otherwise. */
bool reg_take_notices(struct reg *reg);

/* ---- services (provider routes; the operator may act on every service) --- */

struct reg_service_params {
  /* 1..REG_NAME_MAX of [A-Za-z0-9._-], first alnum; not shaped like an ID
   * ("svc-..." or "ep-" and hex digits, in any case: services are found by
   * name or ID, and SERVICE.ZONE would be an endpoint's name). */
  const char *name;
  const char *load_balancer; /* a configured load balancer */
  bool acceptance_required;
  const char *const *allowed_principals; /* consumers or "*" */
  size_t n_allowed_principals;
  int64_t connection_limit; /* 0..REG_MAX_CONNECTION_LIMIT */
  /* NULL or "": none. See reg_service_modify for the rules. */
  const char *private_dns_name;
};

/* Creates a service owned by actor. Providers and operators only (consumers:
 * -EACCES). Fills *out (release it). Errors: -EINVAL (bad name, unknown
 * load balancer, unknown principal, bad limit, bad private_dns_name),
 * -EACCES (private_dns_name outside actor's domains), -EEXIST (name, in any
 * case, or private_dns_name taken: the message names neither the service
 * that holds it nor its owner), -EIO, -ENOMEM. */
int reg_service_create(struct reg *reg, const struct reg_actor *actor,
                       const struct reg_service_params *params,
                       struct reg_service *out, struct reg_error *err);

/* Fills *out with service id (or name, in any case). The owner and
 * operators see it; another provider gets -ENOENT; consumers -EACCES (they
 * use reg_available_services). */
int reg_service_describe(struct reg *reg, const struct reg_actor *actor,
                         const char *id, struct reg_service *out,
                         struct reg_error *err);

/* Lists the actor's services (every service for an operator), by
 * (created_at, id), one page. *out is allocated (free with
 * reg_services_free), *n its length (may be 0, *out then NULL); next_token
 * (REG_TOKEN_BUF bytes) gets the position after the page, or "" when no
 * more follow. Consumers: -EACCES; a bad page: -EINVAL. */
int reg_service_list(struct reg *reg, const struct reg_actor *actor,
                     const struct reg_page *page, struct reg_service **out,
                     size_t *n, char *next_token, struct reg_error *err);

struct reg_service_changes {
  bool set_acceptance_required;
  bool acceptance_required;
  bool set_connection_limit;
  int64_t connection_limit;
  bool set_private_dns_name;
  const char *private_dns_name; /* NULL or "": none */
};

/* Changes the fields marked set_*. Lowering connection_limit leaves existing
 * endpoints alone; turning acceptance off does not accept pending ones.
 * A private_dns_name is a host name (labels of letters, digits and '-',
 * at least two, 253 bytes; stored in lower case, a trailing dot dropped),
 * neither inside nor above dns_zone (-EINVAL), equal to or below one of
 * the dns_domains of the service's owner (-EACCES; a service an operator
 * owns may take any), and no other service's (-EEXIST). When a field
 * changes value, one modify event for the service. Fills *out if not
 * NULL. Errors as reg_service_describe, plus those. */
int reg_service_modify(struct reg *reg, const struct reg_actor *actor,
                       const char *id,
                       const struct reg_service_changes *changes,
                       struct reg_service *out, struct reg_error *err);

/* Deletes a service and (cascading) its endpoints in final states.
 * -EBUSY while it has pendingAcceptance or available endpoints (reject
 * them first). No event (events are about endpoints). */
int reg_service_delete(struct reg *reg, const struct reg_actor *actor,
                       const char *id, struct reg_error *err);

/* The allowed principals of a service, sorted. *out is an allocated array of
 * allocated strings (free with reg_strings_free). Visibility as
 * reg_service_describe. */
int reg_permissions_get(struct reg *reg, const struct reg_actor *actor,
                        const char *id, char ***out, size_t *n,
                        struct reg_error *err);

/* Adds then removes principals ("*" = every consumer; adding one present or
 * removing one absent is not an error). Existing endpoints are untouched
 * unless reconcile is true: then every live endpoint of a consumer that is no
 * longer allowed is rejected (reason "permission removed"), one reject event
 * each, in the same transaction. Returns the new list like
 * reg_permissions_get (out may be NULL). Errors: -EINVAL (unknown principal
 * in add, list too long), visibility as reg_service_describe. */
int reg_permissions_modify(struct reg *reg, const struct reg_actor *actor,
                           const char *id, const char *const *add, size_t n_add,
                           const char *const *remove, size_t n_remove,
                           bool reconcile, char ***out, size_t *n,
                           struct reg_error *err);

/* The endpoints (connections) of a service, optionally only those in *state
 * (NULL = all), by (created_at, id), one page (see reg_service_list). Free
 * with reg_endpoints_free. Visibility as reg_service_describe. */
int reg_connections_list(struct reg *reg, const struct reg_actor *actor,
                         const char *service_id,
                         const enum reg_endpoint_state *state,
                         const struct reg_page *page, struct reg_endpoint **out,
                         size_t *n, char *next_token, struct reg_error *err);

/* Accepts (pendingAcceptance -> available) each endpoint of ids in one
 * transaction. results[i] (caller's array of n) gets 0, -ENOENT (no such
 * endpoint on this service) or -EBUSY (not pendingAcceptance). The function
 * returns 0 when the batch ran (even if items failed), or a whole-request
 * error: -EACCES (consumer), -ENOENT (service not visible), -EINVAL, -EIO. */
int reg_connections_accept(struct reg *reg, const struct reg_actor *actor,
                           const char *service_id, const char *const *ids,
                           size_t n, struct reg_item_result *results,
                           struct reg_error *err);

/* Rejects: pendingAcceptance or available -> rejected. As accept. */
int reg_connections_reject(struct reg *reg, const struct reg_actor *actor,
                           const char *service_id, const char *const *ids,
                           size_t n, struct reg_item_result *results,
                           struct reg_error *err);

/* ---- consumer routes ------------------------------------------------------
 */

/* Services the consumer may connect to (allowed_principals holds it or "*"),
 * by (created_at, id), one page. Operators see every service. Providers:
 * -EACCES. Free with reg_services_free. */
int reg_available_services(struct reg *reg, const struct reg_actor *actor,
                           const struct reg_page *page,
                           struct reg_service **out, size_t *n,
                           char *next_token, struct reg_error *err);

struct reg_endpoint_params {
  const char *service; /* the service's name (or its id) */
  const char *network;
  const char *address;                /* NULL or "": the lowest free one */
  const char *const *allowed_sources; /* CIDRs (a bare address = /32, /128) */
  size_t n_allowed_sources;
  bool private_dns; /* opt into the service's private_dns_name */
};

/* A consumer asks for a connection. The service must allow it (else
 * -ENOENT, the service stays invisible); the network must exist (-EINVAL)
 * and allow it (-EACCES). Over the service's connection_limit: -EDQUOT. The
 * address: the one asked (outside the range, or the network/broadcast
 * address: -EINVAL; taken by a live endpoint of that network: -EADDRINUSE)
 * or the lowest free (-ENOSPC when none). State pendingAcceptance, or
 * available when the service does not require acceptance; one connect
 * event. Only consumers create endpoints (others: -EACCES). */
int reg_endpoint_create(struct reg *reg, const struct reg_actor *actor,
                        const struct reg_endpoint_params *params,
                        struct reg_endpoint *out, struct reg_error *err);

/* The consumer sees its own endpoints, operators every one; anyone else
 * -ENOENT (providers: -EACCES, they use reg_connections_list). */
int reg_endpoint_describe(struct reg *reg, const struct reg_actor *actor,
                          const char *id, struct reg_endpoint *out,
                          struct reg_error *err);

/* The actor's endpoints (all for operators), every state, by
 * (created_at, id), optionally only *state, one page. Providers: -EACCES. */
int reg_endpoint_list(struct reg *reg, const struct reg_actor *actor,
                      const enum reg_endpoint_state *state,
                      const struct reg_page *page, struct reg_endpoint **out,
                      size_t *n, char *next_token, struct reg_error *err);

struct reg_endpoint_changes {
  bool set_allowed_sources;
  const char *const *allowed_sources; /* validated as in create; none = any */
  size_t n_allowed_sources;
  bool set_private_dns;
  bool private_dns;
};

/* Changes the fields marked set_*. Allowed in every state but deleted
 * (-EBUSY). One modify event. Visibility as describe. */
int reg_endpoint_change(struct reg *reg, const struct reg_actor *actor,
                        const char *id,
                        const struct reg_endpoint_changes *changes,
                        struct reg_endpoint *out, struct reg_error *err);

/* reg_endpoint_change of allowed_sources alone. */
int reg_endpoint_modify(struct reg *reg, const struct reg_actor *actor,
                        const char *id, const char *const *allowed_sources,
                        size_t n_allowed_sources, struct reg_endpoint *out,
                        struct reg_error *err);

/* Deletes (-> deleted, one delete event; the row stays, so describe still
 * answers). Consumer owner or operator. Already deleted: -EBUSY. Fills *out
 * if not NULL. */
int reg_endpoint_delete(struct reg *reg, const struct reg_actor *actor,
                        const char *id, struct reg_endpoint *out,
                        struct reg_error *err);

/* ---- targets registered at run time (operator) --------------------------- */

/* Registers address ("IP:PORT", "[IPv6]:PORT") with weight
 * (1..REG_MAX_TARGET_WEIGHT) in target_group; one register event. Fills
 * *out if not NULL. Errors: -EACCES (not an operator), -ENOENT (no such
 * target group in the config), -EINVAL (bad address or weight), -EEXIST
 * (already registered through the API). */
int reg_target_register(struct reg *reg, const struct reg_actor *actor,
                        const char *target_group, const char *address,
                        uint32_t weight, struct reg_target *out,
                        struct reg_error *err);

/* Deregisters a target registered through the API (it drains on every
 * node); one deregister event. -ENOENT when no such run-time target. */
int reg_target_deregister(struct reg *reg, const struct reg_actor *actor,
                          const char *target_group, const char *address,
                          struct reg_target *out, struct reg_error *err);

/* Every target registered through the API. *out is allocated (plain
 * free()). */
int reg_targets_list(struct reg *reg, struct reg_target **out, size_t *n);

/* ---- nodes --------------------------------------------------------------- */

/* Records this node's heartbeat: it is up (not draining when starting is
 * true), has applied the change feed through applied_seq. Store clock. */
int reg_node_heartbeat(struct reg *reg, bool starting, uint64_t applied_seq);

/* Every node that ever recorded itself, by name, with its state (down when
 * silent for REG_NODE_DOWN_HEARTBEATS heartbeats). Operators only
 * (-EACCES). *out is allocated (plain free()). */
int reg_nodes_list(struct reg *reg, const struct reg_actor *actor,
                   struct reg_node **out, size_t *n, struct reg_error *err);

/* Asks node name to drain: marks it draining, one drain event (the node
 * acts on it when it reads the event). Operators only. -ENOENT for an
 * unknown node, -EBUSY when it is down. */
int reg_node_drain(struct reg *reg, const struct reg_actor *actor,
                   const char *name, struct reg_node *out,
                   struct reg_error *err);

/* ---- tenancy (operator) --------------------------------------------------
 * Principals, their tokens and networks can be made at run time, besides
 * the config's (which stay read-only here: -EBUSY). A name is either the
 * config's or the API's, never both (-EEXIST). Every change is one event
 * (operators only see them). */

/* Makes principal name with role and its first token, whose SHA-256 the
 * caller computed (the registry never sees a token). It sees no event
 * committed before it (since_seq). Fills *principal and *token (both may
 * be NULL). Errors: -EACCES (not an operator), -EINVAL (bad name or
 * role), -EEXIST (the name is taken in any case, by the config or the
 * API). */
int reg_principal_create(struct reg *reg, const struct reg_actor *actor,
                         const char *name, enum reg_role role,
                         const uint8_t token_sha256[32], const char *token_id,
                         struct reg_principal_info *principal,
                         struct reg_token *token, struct reg_error *err);

/* Every principal (the config's first, by name, then the API's, by name).
 * *out is allocated (plain free()). Operators only. */
int reg_principals_list(struct reg *reg, const struct reg_actor *actor,
                        struct reg_principal_info **out, size_t *n,
                        struct reg_error *err);

/* Deletes a principal made through the API and its tokens (one
 * token_revoke event each, then principal_delete), with what it left: its
 * endpoints (all in final states, or the delete is refused) and every
 * service permission naming it. Its events stay (operators see them); a
 * principal made later under the same name sees none of them, and starts
 * with no endpoint and no permission. -ENOENT, -EBUSY (the config's; or
 * it owns services or has live endpoints). */
int reg_principal_delete(struct reg *reg, const struct reg_actor *actor,
                         const char *name, struct reg_error *err);

/* A new token for an API principal (so it can hold two while it rotates):
 * token_id is the caller's ("tok-" + hex), expires_at 0 for never.
 * -ENOENT, -EBUSY (the config's principal), -EINVAL (expiry in the
 * past). */
int reg_token_create(struct reg *reg, const struct reg_actor *actor,
                     const char *principal, const uint8_t token_sha256[32],
                     const char *token_id, int64_t expires_at,
                     struct reg_token *out, struct reg_error *err);

/* The tokens of a principal (ids, times; the hashes are zeroed), by
 * created_at. *out is allocated (plain free()). -ENOENT. */
int reg_tokens_list(struct reg *reg, const struct reg_actor *actor,
                    const char *principal, struct reg_token **out, size_t *n,
                    struct reg_error *err);

/* Revokes one token: one token_revoke event. -ENOENT. */
int reg_token_revoke(struct reg *reg, const struct reg_actor *actor,
                     const char *principal, const char *id,
                     struct reg_error *err);

/* Records when tokens were last used (n of them; one transaction, no
 * event). */
int reg_tokens_used(struct reg *reg, char *const *ids, const int64_t *used_at,
                    size_t n);

struct reg_network_params {
  const char *name;
  const char *range;
  const char *netns; /* NULL or "": host addresses */
  const char *const *principals;
  size_t n_principals;
};

/* Makes a network. Every node maps it to the namespace netns of its own
 * host (the same name everywhere). Errors: -EACCES, -EINVAL, -EEXIST. */
int reg_network_create(struct reg *reg, const struct reg_actor *actor,
                       const struct reg_network_params *params,
                       struct reg_network_info *out, struct reg_error *err);

/* Every network: the config's (by name), then the API's (by name). *out is
 * allocated (free with reg_networks_free). Operators only. */
int reg_networks_list(struct reg *reg, const struct reg_actor *actor,
                      struct reg_network_info **out, size_t *n,
                      struct reg_error *err);
void reg_networks_free(struct reg_network_info *networks, size_t n);

/* Deletes a network made through the API. -ENOENT, -EBUSY (the config's;
 * or live endpoints are in it). */
int reg_network_delete(struct reg *reg, const struct reg_actor *actor,
                       const char *name, struct reg_error *err);

/* ---- control loop and data plane ----------------------------------------- */

/* Expires every pendingAcceptance endpoint created at or before
 * now_ms - pending_expiry_ms (one expire event each, principal
 * REG_SYSTEM_PRINCIPAL, one transaction). *n_expired (may be NULL) gets
 * the count. The control loop calls this periodically, on every node: a
 * second node finds nothing left to expire. */
int reg_expire_pending(struct reg *reg, int64_t now_ms, size_t *n_expired);

/* Deletes endpoints that have been in a final state (rejected, deleted,
 * expired, failed) since before before_ms, at most limit in one
 * transaction (their addresses were free already). *removed (may be NULL)
 * gets the count. Any node may call it. */
int reg_endpoints_prune(struct reg *reg, int64_t before_ms, size_t limit,
                        size_t *removed);

/* What this node's data plane made of available endpoints. */
struct reg_placement_report {
  const char *endpoint_id;
  bool open;
  const char *reason; /* when not open */
};

/* Records this node's placements (one transaction). An endpoint that every
 * up node has reported failed becomes failed (one fail event, the reason of
 * this node's report); reports of endpoints that are no longer available
 * are ignored. */
int reg_placements_report(struct reg *reg,
                          const struct reg_placement_report *reports, size_t n);

/* Reads any endpoint, no visibility check (for the data plane). -ENOENT. */
int reg_endpoint_get(struct reg *reg, const char *id, struct reg_endpoint *out);

/* Every available endpoint, with its service's LB name, network, netns,
 * address, ports and proxy_protocol. Free with reg_endpoints_free. */
int reg_available_endpoints(struct reg *reg, struct reg_endpoint **out,
                            size_t *n);

/* Endpoint counts by service name and state, for metrics. *out is
 * allocated (plain free()). */
struct reg_endpoint_count {
  char service[REG_NAME_BUF];
  enum reg_endpoint_state state;
  uint64_t count;
};
int reg_endpoint_counts(struct reg *reg, struct reg_endpoint_count **out,
                        size_t *n);

/* ---- events and the change feed ------------------------------------------
 */

/* Up to limit events with seq > after visible to actor (NULL: all), in seq
 * order. *out is allocated (plain free()), *n its length. *through (may be
 * NULL) gets the seq up to which the answer is complete: the last event
 * returned when there were limit of them, else the last seq committed. */
int reg_events_after(struct reg *reg, const struct reg_actor *actor,
                     uint64_t after, size_t limit, struct reg_event **out,
                     size_t *n, uint64_t *through);

/* The highest seq committed so far (0 if none); pruning does not lower
 * it. */
int reg_last_seq(struct reg *reg, uint64_t *seq);

/* The lowest seq still kept (last seq + 1 when none is): a reader whose
 * cursor is below this minus one has missed pruned events. */
int reg_first_seq(struct reg *reg, uint64_t *seq);

/* Deletes events recorded before before_ms (wall clock), oldest first and
 * only as a prefix (an older event is never kept while a newer one goes,
 * even if the clock stepped back), at most limit in one transaction.
 * *removed (may be NULL) gets the count. Any node may call it: the second
 * finds nothing left. */
int reg_events_prune(struct reg *reg, int64_t before_ms, size_t limit,
                     size_t *removed);

/* True when actor may see event: operators all, providers their services',
 * consumers their endpoints'. */
bool reg_event_visible(const struct reg_event *event,
                       const struct reg_actor *actor);

/* One read of the change feed: what a node must apply after seq `after`.
 * When events after `after` are still kept: up to limit of them, with the
 * current rows of the endpoints and run-time targets they name (read in the
 * same transaction; an event whose endpoint or target has no row here
 * names one that is gone; a service's modify event brings the rows of the
 * service's available endpoints). When they were pruned (the reader lagged
 * behind event_retention) or resync is asked: resync is true, events is
 * empty, and the rows are the whole current state (every available
 * endpoint, every run-time target); the reader replaces what it has with
 * them. last_seq is the seq the reader has applied once it applied this. */
struct reg_changes {
  bool resync;
  uint64_t last_seq;
  struct reg_event *events;
  size_t n_events;
  struct reg_endpoint *endpoints;
  size_t n_endpoints;
  struct reg_target *targets;
  size_t n_targets;
  /* API tokens named by token events (after a resync: every one); a token
   * event whose token has no row here names one that is gone. */
  struct reg_token *tokens;
  size_t n_tokens;
  bool node_draining; /* this node's record says draining */
};

/* Fills *out (release with reg_changes_release). resync asks for the whole
 * current state whatever after is (a reader that has none yet). */
int reg_changes_read(struct reg *reg, uint64_t after, size_t limit, bool resync,
                     struct reg_changes *out);
void reg_changes_release(struct reg_changes *changes);

/* ---- helpers --------------------------------------------------------------
 */

/* "operator", "provider", "consumer"; parse returns -EINVAL if unknown. */
const char *reg_role_name(enum reg_role role);
int reg_role_parse(const char *s, enum reg_role *out);

/* "pendingAcceptance", "available", ...; parse returns -EINVAL. */
const char *reg_state_name(enum reg_endpoint_state state);
int reg_state_parse(const char *s, enum reg_endpoint_state *out);

/* "connect", "accept", "reject", "delete", "expire", "fail", "modify",
 * "register", "deregister", "drain", "principal_create",
 * "principal_delete", "token_create", "token_revoke", "network_create",
 * "network_delete"; parse returns -EINVAL. */
const char *reg_event_type_name(enum reg_event_type type);
int reg_event_type_parse(const char *s, enum reg_event_type *out);

/* "up", "draining", "down". */
const char *reg_node_state_name(enum reg_node_state state);

/* What placement p of endpoint e says now: "open" or "failed" as its node
 * reported while e is available; once e is not, an open one is "closed"
 * (every node closes an endpoint's listeners when it leaves available),
 * and a failed one stays "failed" with its reason. */
const char *reg_placement_state_name(const struct reg_endpoint *e,
                                     const struct reg_placement *p);

/* Checks a network namespace name (a network's netns, from the config or
 * the API, and node.networks): 1-REG_NETNS_NAME_MAX of [A-Za-z0-9._-], not
 * "." or "..", not starting with '-' (it names a file in /run/netns and
 * may be handed to tools as an argument). Returns 0, or -EINVAL with why
 * (len bytes) saying so in one line of text (the name's control bytes
 * escaped), the one message the config and the API give. Any thread. */
int reg_netns_name_check(const char *netns, char *why, size_t len);

/* Formats unix ms as RFC 3339 UTC ("2024-01-02T03:04:05.678Z") into buf of
 * REG_TIME_BUF bytes; returns buf. */
char *reg_format_time(int64_t unix_ms, char *buf);

/* Frees the heap members of one result struct (not the struct). NULL ok. */
void reg_service_release(struct reg_service *service);
void reg_endpoint_release(struct reg_endpoint *endpoint);

/* Frees an array the registry allocated, with its members. NULL ok. */
void reg_services_free(struct reg_service *services, size_t n);
void reg_endpoints_free(struct reg_endpoint *endpoints, size_t n);
void reg_strings_free(char **strings, size_t n);

#endif
