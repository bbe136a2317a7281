/* Private to api/: which connections and requests the API keeps, so that
 * no client, with a token or without one, can lock the others out, however
 * many connections it opens or however it trickles requests. One policy
 * for every connection, told in docs/api.md "Admission".
 *
 * A connection is unauthenticated until one of its requests presents a
 * token the API knows (api_admission_bind: any principal, whatever the
 * route); from then on it is bound to that principal for good.
 *
 * Before a known token, budgets:
 *
 *   - API_MAX_UNAUTHENTICATED in all, and API_MAX_UNAUTHENTICATED_PER_SOURCE
 *     per source (an IPv4 address; an IPv6 /64, what one host usually
 *     gets);
 *   - a connection accepted beyond either budget is on probation: it is
 *     kept only if its first request presents a known token within
 *     API_PROBATION_MS; a first request without one is answered (a probe's
 *     /healthz still works) and the connection then ends. At most
 *     API_MAX_PROBATION connections are on probation; a new one evicts the
 *     oldest, whose client had the longest time to show its token, and so
 *     does one accepted when all API_MAX_CONNECTIONS are taken;
 *   - an unauthenticated connection ends (HTTP/2 GOAWAY, HTTP/1.1 after
 *     the answer under way) once it is unauthenticated_lifetime_ms old,
 *     whatever it does meanwhile (a /healthz now and then does not keep
 *     it), and HTTP/2 gives it few streams at once (h2.c).
 *
 * Once bound, the limits of its principal's role (api_limits.role):
 * connections bound to the principal (one more: the request that would
 * bind it is answered 429 and the connection ends), requests under way on
 * all of them (HTTP/2 streams and HTTP/1.1 requests from their header
 * block to their answer: one more is answered 429) and event streams open
 * (429). A request with another principal's token on a bound connection is
 * answered 421 and the connection goes on.
 *
 * The operators' reserve: connections not bound to an operator never hold
 * more than API_MAX_CONNECTIONS - operator_reserve. One accepted beyond
 * that is on probation in the reserve: kept only if its first request
 * presents an operator's token (another principal's: 429, and the
 * connection ends). With the probation eviction above, an operator always
 * gets in, unless operators hold every connection themselves.
 *
 * So clients without a token hold at most API_MAX_UNAUTHENTICATED +
 * API_MAX_PROBATION connections, each principal its limits, all of them
 * but the operators API_MAX_CONNECTIONS - operator_reserve. Request bodies
 * are read into memory only for authenticated requests (exchange.c, h1.c,
 * h2.c); the bytes held are counted here for the metrics.
 *
 * Admission decides and counts; it never closes nor writes: each step
 * returns a verdict that the transport (conn.c) or the exchange
 * (exchange.c) acts on.
 *
 * Threads: the control thread, like the rest of the server. */
#ifndef NLB_API_ADMISSION_H
#define NLB_API_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include "nlb/api.h"
#include "nlb/list.h"

#define API_MAX_UNAUTHENTICATED 256
#define API_MAX_UNAUTHENTICATED_PER_SOURCE 32
#define API_MAX_PROBATION 128
#define API_PROBATION_MS 2000
#define API_DEFAULT_UNAUTHENTICATED_LIFETIME_MS 60000

struct api_server;
struct api_conn;
struct admission_source;
struct admission_principal;

enum api_admission_state {
  API_ADMISSION_NONE, /* not counted (refused, or released) */
  API_ADMISSION_UNAUTHENTICATED,
  API_ADMISSION_PROBATION,
  API_ADMISSION_AUTHENTICATED, /* bound to a principal */
};

/* What the transport does with a connection after an admission step. */
enum api_admission_verdict {
  API_ADMIT_KEEP,   /* nothing: it goes on */
  API_ADMIT_CLOSE,  /* close it now (it no longer counts) */
  API_ADMIT_GOAWAY, /* send it away (api_conn_goaway), cut after
                       API_GOAWAY_GRACE_MS */
};

/* Why a connection was refused, or ended before it was bound. */
enum api_admission_refusal {
  API_REFUSED_MAX_CONNECTIONS,  /* at accept: API_MAX_CONNECTIONS reached */
  API_REFUSED_SOURCE,           /* on probation over the per-source budget */
  API_REFUSED_UNAUTHENTICATED,  /* on probation over the global budget */
  API_REFUSED_OPERATOR_RESERVE, /* on probation in the operators' reserve */
  API_REFUSED_PRINCIPAL,        /* its principal's connection limit */
  API_REFUSED_COUNT,
};

/* What admission says of a request that presented a known token (the
 * exchange answers it). */
enum api_request_verdict {
  API_REQUEST_ADMITTED,
  /* 429 TooManyConnections, and the connection ends after the answer: */
  API_TOO_MANY_CONNECTIONS, /* the principal's connection limit */
  API_OPERATORS_ONLY,       /* in the operators' reserve */
  /* The request alone is refused: */
  API_OTHER_PRINCIPAL,        /* 421: the connection is another's */
  API_TOO_MANY_REQUESTS,      /* 429 */
  API_TOO_MANY_EVENT_STREAMS, /* 429 */
  API_REQUEST_VERDICT_COUNT,
};

#define API_ADMISSION_BUCKETS 256

/* The server's part (struct api_server.admission). */
struct api_admission {
  size_t n_unauthenticated; /* probation included */
  size_t n_probation;       /* the reserve's included */
  size_t n_reserve;         /* on probation in the operators' reserve */
  size_t n_authenticated;   /* bound, whatever the role */
  size_t n_bound[API_ROLES];
  size_t n_requests[API_ROLES];
  size_t n_event_streams[API_ROLES];
  struct nlb_list probation; /* struct api_conn_admission.probation_link,
                                oldest first */
  struct nlb_list sources[API_ADMISSION_BUCKETS];
  struct nlb_list principals[API_ADMISSION_BUCKETS];
  struct api_limits limits;
  uint64_t lifetime_ms;
  uint64_t refused[API_REFUSED_COUNT];
  uint64_t requests_refused[API_REQUEST_VERDICT_COUNT]; /* 421s and 429s */
  uint64_t expired; /* unauthenticated connections ended by lifetime */
  size_t bytes_held;
  uint64_t warned_at;         /* last warning about API_MAX_CONNECTIONS */
  uint64_t reserve_warned_at; /* last warning about the reserve */
};

/* A connection's part (struct api_conn.admission). */
struct api_conn_admission {
  enum api_admission_state state;
  enum api_admission_refusal over; /* on probation: the budget exceeded */
  struct admission_source *source; /* while unauthenticated */
  struct nlb_list probation_link;
  bool told_to_go; /* ends after the answer under way */
  /* Refused by api_admission_bind: what its later requests get too. */
  enum api_request_verdict refused_with;
  struct admission_principal *principal; /* while authenticated */
  enum reg_role role;
};

/* What one request holds of its principal's limits (struct api_exchange
 * .admission, then the event stream's). Zeroed: nothing. */
struct api_request_admission {
  struct admission_principal *principal; /* NULL: nothing */
  bool request;
  bool event_stream;
};

/* Sets the counts to zero and the limits to the defaults. */
void api_admission_init(struct api_admission *a, uint64_t lifetime_ms);

/* Frees the per-source and per-principal entries (every connection is
 * gone). */
void api_admission_free(struct api_admission *a);

/* Takes new limits (a reload; NULL: the defaults). The connections and
 * requests already counted stay, even over the new ones. */
void api_admission_set_limits(struct api_admission *a,
                              const struct api_limits *limits);

/* A connection was accepted (its peer known): API_ADMIT_KEEP when it is
 * kept (unauthenticated or on probation), API_ADMIT_CLOSE when it must be
 * closed now (counted; also when out of memory). *evicted is the oldest
 * connection on probation when it had to make room (no longer counted,
 * logged: the caller closes it), else NULL. */
enum api_admission_verdict api_admission_accept(struct api_server *server,
                                                struct api_conn *c,
                                                struct api_conn **evicted);

/* A request on c presented the known token of principal (its name, copied
 * when kept) with role: c is bound to it with its first such request,
 * within the principal's connection limit and, in the operators' reserve,
 * only to an operator. API_REQUEST_ADMITTED; API_TOO_MANY_CONNECTIONS or
 * API_OPERATORS_ONLY (counted, logged at most every 10 s; c ends after
 * this answer: api_admission_request says false); API_OTHER_PRINCIPAL
 * when c is bound to another. A connection not counted (NONE) is admitted
 * and not bound. Never writes nor closes. */
enum api_request_verdict api_admission_bind(struct api_conn *c,
                                            const char *principal,
                                            enum reg_role role);

/* A request on c was routed (an event stream when event_stream): takes
 * one of the requests (and event streams) of c's principal into *held,
 * which must be zeroed. API_REQUEST_ADMITTED (nothing is held when c is not
 * bound), or API_TOO_MANY_REQUESTS, API_TOO_MANY_EVENT_STREAMS (counted;
 * nothing held). */
enum api_request_verdict api_admission_take(struct api_conn *c,
                                            bool event_stream,
                                            struct api_request_admission *held);

/* Moves the event stream *from holds into *to (zeroed): the answer became
 * an event stream, which outlives its request. */
void api_admission_move_event_stream(struct api_request_admission *from,
                                     struct api_request_admission *to);

/* Gives back what *held holds; idempotent. Safe after c is gone. */
void api_admission_done(struct api_request_admission *held);

/* The verdict's limit for role (for messages). */
uint32_t api_admission_limit(const struct api_admission *a,
                             enum api_request_verdict verdict,
                             enum reg_role role);

/* A request's header block was read on c; authenticated when it
 * presented a known token (api_admission_bind came first). Returns false
 * when c must take no request after this one (on probation without a
 * token, refused by api_admission_bind, or already told to go): the
 * protocol ends the connection after this answer. Never writes nor
 * closes. */
bool api_admission_request(struct api_conn *c, bool authenticated);

/* The timeouts of c: API_ADMIT_CLOSE at the end of its probation,
 * API_ADMIT_GOAWAY (once) at the end of its unauthenticated lifetime,
 * otherwise API_ADMIT_KEEP. */
enum api_admission_verdict api_admission_sweep(struct api_conn *c,
                                               uint64_t now);

/* c is closing: it no longer counts. Idempotent. */
void api_admission_release(struct api_conn *c);

#define API_SOURCE_KEY_LEN 9

/* The source an address counts against: its family (4 or 6), then an
 * IPv4 address (also one mapped into IPv6: ::ffff:a.b.c.d) or the first 8
 * bytes (the /64) of an IPv6 one; zeros after. Pure. */
void api_admission_source_key(const struct sockaddr_storage *addr,
                              uint8_t key[API_SOURCE_KEY_LEN]);

/* Request bytes held in memory (delta may be negative). */
void api_admission_hold(struct api_server *server, ptrdiff_t delta);

/* The admission series of /metrics (Prometheus text with HELP and TYPE
 * lines), malloc'd; NULL when out of memory. */
char *api_admission_metrics(const struct api_server *server);

#endif
