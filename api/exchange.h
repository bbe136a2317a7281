/* Private to api/: one request and its answer, whatever the protocol.
 *
 * HTTP/2 (h2.c) and HTTP/1.1 (h1.c) each read a request their own way,
 * fill the request half of a struct api_exchange and call
 * api_exchange_run(): routing, authentication, the handler, the status
 * count (nlb_api_requests_total) and the audit line happen here, once, so
 * both protocols answer the same bytes and log the same lines. The protocol
 * then writes resp's status, the headers of api_response_headers() and
 * resp's body in its own framing.
 *
 * Routes that need the registry run on the registry's thread: the answer
 * comes later, through the done callback, and the control loop goes on
 * meanwhile (a PostgreSQL round trip never holds it). Until then the
 * protocol keeps its struct api_exchange where it is, and cancels it if it
 * goes away first.
 *
 * Threads: the control thread only, like the rest of the server. */
#ifndef NLB_API_EXCHANGE_H
#define NLB_API_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>

#include "api-int.h"

struct exchange_job;

struct api_exchange {
  /* The request, borrowed from the protocol for the call. */
  const char *method;        /* as received; "" when there was none */
  const char *path;          /* with its query; NULL when there was none */
  const char *authorization; /* header value, or NULL */
  size_t authorization_len;
  const char *if_none_match; /* header value, or NULL (conditional GETs) */
  const char *body;
  size_t body_len;
  struct api_conn *conn; /* the request's connection (noted tokens) */

  /* The answer: resp's body is owned by the exchange until
   * api_exchange_clear(), or taken by the protocol (set it to NULL). */
  struct api_response resp;
  unsigned allow; /* API_METHOD_* bits for the Allow header of a 405 */
  /* Who asked, when a token came and was known (a copy: it outlives a
   * reload). */
  bool authenticated;
  char principal[REG_NAME_BUF];
  enum reg_role role;
  /* Set by api_exchange_head: the route (its query points into path), and
   * whether the answer is already in resp. */
  bool head_done;
  bool refused;
  struct api_route_match match;
  struct exchange_job *job; /* while the answer is under way */
  /* What the request holds of its principal's limits, from
   * api_exchange_head to api_exchange_clear (an event stream takes its
   * part: api_event_stream_start). */
  struct api_request_admission admission;
};

typedef void (*api_exchange_done_fn)(struct api_exchange *x, void *arg);

/* The request's header block is in (method, path, authorization): checks
 * the token if one came (x->authenticated tells whether it is known,
 * whatever the route: that is what admits a connection, and binds it to
 * the principal: api_admission_bind), finds the route, checks the
 * principal may call it, and takes one of its requests (and event
 * streams: api_admission_take). Returns 0 when the request goes on: its
 * body (kept only when x->authenticated), then api_exchange_run.
 * Otherwise -1 with x's answer there, counted and audited (429, 421, 404,
 * 405, 400, 401, 403): the protocol writes it without reading the body
 * into memory, then asks api_admission_request whether the connection
 * goes on. The authorization is no longer needed afterwards. */
int api_exchange_head(struct api_server *server, struct api_exchange *x);

/* Runs the handler for x's request (calling api_exchange_head first if the
 * protocol did not), fills x's answer, counts its status and writes the
 * audit line. Returns 0 when the answer is there; 1 when it is under way:
 * done(x, arg) comes later, on the control thread, with the answer in x
 * (the request fields are no longer needed by then). */
int api_exchange_run(struct api_server *server, struct api_exchange *x,
                     api_exchange_done_fn done, void *arg);

/* The protocol lets go of an exchange whose answer is under way: done will
 * not be called. No-op when none is. */
void api_exchange_cancel(struct api_exchange *x);

/* Answers x with an error found by the protocol (413, 408, 431, 400...)
 * before or instead of running a handler; counted and audited like any
 * answer. */
void api_exchange_fail(struct api_server *server, struct api_exchange *x,
                       int status, const char *code, const char *message);

/* True for HEAD: the answer has headers (with the body's length) and no
 * body. */
bool api_exchange_is_head(const struct api_exchange *x);

/* Frees what x still owns (and cancels an answer under way), and gives
 * back what it held of its principal's limits. */
void api_exchange_clear(struct api_exchange *x);

#define API_RESPONSE_HEADERS_MAX 12

/* The header fields of an answer, names in lower case, values pointing
 * into this struct or static strings. */
struct api_response_headers {
  struct {
    const char *name;
    const char *value;
  } field[API_RESPONSE_HEADERS_MAX];
  size_t n;
  char length[24];
  char allow[64];
};

/* Fills *out with x's answer headers: content-type, cache-control,
 * content-length (not for event streams nor 304), allow (405),
 * www-authenticate (401), etag, location, and a page's security headers
 * (api_response.page). The protocol adds its own (HTTP/1.1's connection,
 * framing). */
void api_response_headers(const struct api_exchange *x,
                          struct api_response_headers *out);

#endif
