/* Private to api/: which connections the API keeps before their clients
 * have shown a token, so that no client without one can lock the others
 * out, however many connections it opens or however it trickles requests.
 *
 * A connection is unauthenticated until one of its requests presents a
 * token the API knows (api_authenticate: any principal, whatever the
 * route); from then on it is authenticated for good and counts only
 * against API_MAX_CONNECTIONS. Unauthenticated connections have budgets:
 *
 *   - API_MAX_UNAUTHENTICATED in all, and API_MAX_UNAUTHENTICATED_PER_SOURCE
 *     per source (an IPv4 address; an IPv6 /64, what one host usually
 *     gets);
 *   - a connection accepted beyond either budget is on probation: it is
 *     kept only if its first request presents a known token within
 *     API_PROBATION_MS; a first request without one is answered (a probe's
 *     /healthz still works) and the connection then ends. At most
 *     API_MAX_PROBATION connections are on probation; a new one evicts the
 *     oldest, whose client had the longest time to show its token;
 *   - an unauthenticated connection ends (HTTP/2 GOAWAY, HTTP/1.1 after
 *     the answer under way) once it is unauthenticated_lifetime_ms old,
 *     whatever it does meanwhile (a /healthz now and then does not keep
 *     it), and HTTP/2 gives it few streams at once (h2.c).
 *
 * So clients without a token hold at most API_MAX_UNAUTHENTICATED +
 * API_MAX_PROBATION connections; the rest of API_MAX_CONNECTIONS is kept
 * for clients with one, who get in even from the address of a flood (on
 * probation, with their first request). Request bodies are read into
 * memory only for authenticated requests (exchange.c, h1.c, h2.c); the
 * bytes held are counted here for the metrics.
 *
 * Admission decides and counts; it never closes nor writes: each step
 * returns a verdict that the transport (conn.c) acts on.
 *
 * Threads: the control thread, like the rest of the server. */
#ifndef NLB_API_ADMISSION_H
#define NLB_API_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include "nlb/list.h"

#define API_MAX_UNAUTHENTICATED 256
#define API_MAX_UNAUTHENTICATED_PER_SOURCE 32
#define API_MAX_PROBATION 128
#define API_PROBATION_MS 2000
#define API_DEFAULT_UNAUTHENTICATED_LIFETIME_MS 60000

struct api_server;
struct api_conn;
struct admission_source;

enum api_admission_state {
  API_ADMISSION_NONE, /* not counted (refused, or released) */
  API_ADMISSION_UNAUTHENTICATED,
  API_ADMISSION_PROBATION,
  API_ADMISSION_AUTHENTICATED,
};

/* What the transport does with a connection after an admission step. */
enum api_admission_verdict {
  API_ADMIT_KEEP,   /* nothing: it goes on */
  API_ADMIT_CLOSE,  /* close it now (it no longer counts) */
  API_ADMIT_GOAWAY, /* send it away (api_conn_goaway), cut after
                       API_GOAWAY_GRACE_MS */
};

/* Why a connection was refused or ended before it authenticated. */
enum api_admission_refusal {
  API_REFUSED_MAX_CONNECTIONS, /* at accept: API_MAX_CONNECTIONS reached */
  API_REFUSED_SOURCE,          /* on probation over the per-source budget */
  API_REFUSED_UNAUTHENTICATED, /* on probation over the global budget */
  API_REFUSED_COUNT,
};

#define API_ADMISSION_BUCKETS 256

/* The server's part (struct api_server.admission). */
struct api_admission {
  size_t n_unauthenticated; /* probation included */
  size_t n_probation;
  size_t n_authenticated;
  struct nlb_list probation; /* struct api_conn_admission.probation_link,
                                oldest first */
  struct nlb_list sources[API_ADMISSION_BUCKETS];
  uint64_t lifetime_ms;
  uint64_t refused[API_REFUSED_COUNT];
  uint64_t expired; /* unauthenticated connections ended by lifetime */
  size_t bytes_held;
  uint64_t warned_at; /* last warning about API_MAX_CONNECTIONS */
};

/* A connection's part (struct api_conn.admission). */
struct api_conn_admission {
  enum api_admission_state state;
  enum api_admission_refusal over; /* on probation: the budget exceeded */
  struct admission_source *source; /* while unauthenticated */
  struct nlb_list probation_link;
  bool told_to_go; /* ends after the answer under way */
};

void api_admission_init(struct api_admission *a, uint64_t lifetime_ms);

/* Frees the per-source entries (every connection is gone). */
void api_admission_free(struct api_admission *a);

/* A connection was accepted (its peer known): API_ADMIT_KEEP when it is
 * kept (unauthenticated or on probation), API_ADMIT_CLOSE when it must be
 * closed now (counted; also when out of memory). *evicted is the oldest
 * connection on probation when it had to make room (no longer counted,
 * logged: the caller closes it), else NULL. */
enum api_admission_verdict api_admission_accept(struct api_server *server,
                                                struct api_conn *c,
                                                struct api_conn **evicted);

/* A request's header block was read on c; authenticated when it
 * presented a known token. Returns false when c must take no request
 * after this one (on probation without a token, or already told to go):
 * the protocol ends the connection after this answer. Never writes nor
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
