/* What the API fuzz targets (fuzz_api.c, fuzz_http1.c, fuzz_h2.c) share: a
 * real API server (api_server_start on 127.0.0.1:0; its loop never
 * accepts) over a real SQLite registry, opened afresh in a temporary
 * directory for every input so that an input replays the same whatever ran
 * before it, with the principals, networks and load balancers below, and a
 * fake data plane.
 *
 * Principals and their tokens ("Bearer NAME-token"): ops (operator), prov
 * and prov2 (providers), shop and shop2 (consumers). Networks: shop-vpc
 * 127.88.0.0/24 (shop), tiny 127.89.0.0/30 (shop2: two addresses), any6
 * fd00:88::/120 (anyone). Load balancers web-lb (8080, 8443) and db-lb
 * (5432, PROXY v2); target groups web-tg and db-tg. Private DNS: the zone
 * nlb.internal, and prov may name services in payments.example.
 *
 * The registry answers inline (done before submit returns, as
 * tests/tools/api_server_main.c does) or deferred (done when
 * fuzz_api_env_run_pending() runs the queue, as nlbd's registry thread
 * answers later). Registry IDs come from a counter reset per input
 * (getrandom is replaced in these programs), so a crash replays with the
 * same IDs. Single-threaded; one environment per process. */
#ifndef NLB_FUZZ_API_ENV_H
#define NLB_FUZZ_API_ENV_H

#include <stdbool.h>
#include <stddef.h>

#include "api-int.h"

struct fuzz_api_env {
  uv_loop_t *loop;
  struct api_server *server;
  struct reg *reg;
  bool deferred;
};

/* The environment, set up on the first call (abort()s on failure). */
struct fuzz_api_env *fuzz_api_env(void);

/* A fresh registry (empty, IDs from the start of the counter) for the next
 * input, answering inline or deferred. */
void fuzz_api_env_reset(bool deferred);

/* Runs every deferred registry call queued (and those they queue); returns
 * how many ran. */
size_t fuzz_api_env_run_pending(void);

/* The Authorization value for who: "Bearer ops-token" for a principal's
 * name, NULL for "-", and who itself for anything else (a raw header). */
const char *fuzz_api_env_authorization(const char *who);

/* Checks an answer the way every client may rely on: a status 100..599, a
 * body unless it is an event stream, a JSON body (with an error object
 * {code, message} for 4xx/5xx) when the content type is JSON. abort()s
 * otherwise. */
void fuzz_api_env_check_response(const struct api_response *resp);

#endif
