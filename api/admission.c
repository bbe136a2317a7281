/* Admission before authentication: budgets of unauthenticated connections
 * in all and per source, probation beyond them, a bounded life for the
 * unauthenticated, and the counts /metrics shows. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "admission.h"
#include "conn.h"

#define WARN_INTERVAL_MS 10000

/* The unauthenticated connections of one source. */
struct admission_source {
  struct nlb_list link; /* api_admission.sources[bucket] */
  uint8_t key[API_SOURCE_KEY_LEN];
  size_t count;
};

static const char *const refusal_names[API_REFUSED_COUNT] = {
    [API_REFUSED_MAX_CONNECTIONS] = "max_connections",
    [API_REFUSED_SOURCE] = "source_limit",
    [API_REFUSED_UNAUTHENTICATED] = "unauthenticated_limit",
};

void api_admission_init(struct api_admission *a, uint64_t lifetime_ms)
{
  memset(a, 0, sizeof *a);
  nlb_list_init(&a->probation);
  for (size_t i = 0; i < API_ADMISSION_BUCKETS; i++)
    nlb_list_init(&a->sources[i]);
  a->lifetime_ms = lifetime_ms;
}

void api_admission_free(struct api_admission *a)
{
  for (size_t i = 0; i < API_ADMISSION_BUCKETS; i++) {
    struct nlb_list *pos, *tmp;
    NLB_LIST_FOREACH_SAFE(pos, tmp, &a->sources[i])
    {
      nlb_list_remove(pos);
      free(NLB_CONTAINER_OF(pos, struct admission_source, link));
    }
  }
}

/* ---- sources ------------------------------------------------------------ */

void api_admission_source_key(const struct sockaddr_storage *addr,
                              uint8_t key[API_SOURCE_KEY_LEN])
{
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

  memset(key, 0, API_SOURCE_KEY_LEN);
  if (addr->ss_family == AF_INET) {
    key[0] = 4;
    memcpy(key + 1, &((const struct sockaddr_in *)addr)->sin_addr, 4);
  } else if (addr->ss_family == AF_INET6) {
    const uint8_t *b = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
    if (memcmp(b, mapped, sizeof mapped) == 0) {
      key[0] = 4;
      memcpy(key + 1, b + 12, 4);
    } else {
      key[0] = 6;
      memcpy(key + 1, b, 8);
    }
  }
}

static size_t source_bucket(const uint8_t key[API_SOURCE_KEY_LEN])
{
  /* FNV-1a: sources are not secret and buckets only share a list. */
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < API_SOURCE_KEY_LEN; i++)
    h = (h ^ key[i]) * 16777619u;
  return h % API_ADMISSION_BUCKETS;
}

/* The entry of c's source, created with count 0 when absent; NULL when
 * out of memory. */
static struct admission_source *source_find(struct api_admission *a,
                                            const struct api_conn *c)
{
  uint8_t key[API_SOURCE_KEY_LEN];
  struct nlb_list *pos, *tmp;

  api_admission_source_key(&c->peer_addr, key);
  struct nlb_list *bucket = &a->sources[source_bucket(key)];
  NLB_LIST_FOREACH_SAFE(pos, tmp, bucket)
  {
    struct admission_source *s =
        NLB_CONTAINER_OF(pos, struct admission_source, link);
    if (memcmp(s->key, key, sizeof s->key) == 0)
      return s;
  }
  struct admission_source *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  memcpy(s->key, key, sizeof s->key);
  nlb_list_append(bucket, &s->link);
  return s;
}

/* c no longer counts against its source; the entry goes with its last
 * connection, so the table holds only sources with connections. */
static void source_leave(struct api_conn_admission *ca)
{
  struct admission_source *s = ca->source;

  if (s == NULL)
    return;
  ca->source = NULL;
  if (--s->count == 0) {
    nlb_list_remove(&s->link);
    free(s);
  }
}

/* ---- states ------------------------------------------------------------- */

/* c stops counting as unauthenticated (or on probation). */
static void leave_unauthenticated(struct api_admission *a,
                                  struct api_conn_admission *ca)
{
  if (ca->state == API_ADMISSION_PROBATION) {
    nlb_list_remove(&ca->probation_link);
    a->n_probation--;
  }
  source_leave(ca);
  a->n_unauthenticated--;
}

void api_admission_release(struct api_conn *c)
{
  struct api_admission *a = &c->server->admission;
  struct api_conn_admission *ca = &c->admission;

  switch (ca->state) {
  case API_ADMISSION_UNAUTHENTICATED:
  case API_ADMISSION_PROBATION:
    leave_unauthenticated(a, ca);
    break;
  case API_ADMISSION_AUTHENTICATED:
    a->n_authenticated--;
    break;
  case API_ADMISSION_NONE:
    break;
  }
  ca->state = API_ADMISSION_NONE;
}

static const char *budget_name(enum api_admission_refusal over)
{
  return over == API_REFUSED_SOURCE ? "per-source" : "unauthenticated";
}

/* c, on probation, goes without the token it owed (the caller closes
 * it): counted against the budget it was over (once: it may have been told
 * to go already). */
static void refuse_probation(struct api_conn *c, const char *why)
{
  struct api_conn_admission *ca = &c->admission;

  if (!ca->told_to_go) {
    c->server->admission.refused[ca->over]++;
    api_conn_log(c, 0, "over the %s budget and %s, closed",
                 budget_name(ca->over), why);
  }
  api_admission_release(c);
}

enum api_admission_verdict api_admission_accept(struct api_server *server,
                                                struct api_conn *c,
                                                struct api_conn **evicted)
{
  struct api_admission *a = &server->admission;
  struct api_conn_admission *ca = &c->admission;

  *evicted = NULL;
  nlb_list_init(&ca->probation_link);
  if (a->n_unauthenticated + a->n_authenticated >= API_MAX_CONNECTIONS) {
    uint64_t now = uv_now(server->loop);
    a->refused[API_REFUSED_MAX_CONNECTIONS]++;
    /* Said once in a while, not once per connection of a flood. */
    if (a->warned_at == 0 || now - a->warned_at >= WARN_INTERVAL_MS) {
      a->warned_at = now;
      api_log(server, 2,
              "api: %d connections open, refusing new ones (%" PRIu64
              " refused since start)",
              API_MAX_CONNECTIONS, a->refused[API_REFUSED_MAX_CONNECTIONS]);
    }
    return API_ADMIT_CLOSE;
  }
  struct admission_source *s = source_find(a, c);
  if (s == NULL)
    return API_ADMIT_CLOSE;
  s->count++;
  ca->source = s;
  a->n_unauthenticated++;
  ca->state = API_ADMISSION_UNAUTHENTICATED;
  /* Counted first, so that a probation connection counts against its
   * source like any other (a flood's source stays over its budget). */
  if (s->count <= API_MAX_UNAUTHENTICATED_PER_SOURCE &&
      a->n_unauthenticated - a->n_probation <= API_MAX_UNAUTHENTICATED)
    return API_ADMIT_KEEP;
  ca->over = s->count > API_MAX_UNAUTHENTICATED_PER_SOURCE
                 ? API_REFUSED_SOURCE
                 : API_REFUSED_UNAUTHENTICATED;
  if (a->n_probation >= API_MAX_PROBATION) {
    struct api_conn *oldest = NLB_CONTAINER_OF(
        NLB_CONTAINER_OF(a->probation.next, struct api_conn_admission,
                         probation_link),
        struct api_conn, admission);
    refuse_probation(oldest, "evicted by a newer one");
    *evicted = oldest;
  }
  ca->state = API_ADMISSION_PROBATION;
  nlb_list_append(&a->probation, &ca->probation_link);
  a->n_probation++;
  return API_ADMIT_KEEP;
}

/* c ends after the answer under way: it still counts until it is closed,
 * at most a grace period later. */
static void tell_to_go(struct api_conn *c)
{
  uint64_t deadline = uv_now(c->server->loop) + API_GOAWAY_GRACE_MS;

  c->admission.told_to_go = true;
  if (c->close_deadline == 0 || deadline < c->close_deadline)
    c->close_deadline = deadline;
}

bool api_admission_request(struct api_conn *c, bool authenticated)
{
  struct api_admission *a = &c->server->admission;
  struct api_conn_admission *ca = &c->admission;

  if (ca->state == API_ADMISSION_AUTHENTICATED ||
      ca->state == API_ADMISSION_NONE)
    return true;
  if (authenticated) {
    leave_unauthenticated(a, ca);
    ca->state = API_ADMISSION_AUTHENTICATED;
    a->n_authenticated++;
    return true;
  }
  if (ca->state != API_ADMISSION_PROBATION || ca->told_to_go)
    return !ca->told_to_go;
  /* Answered, then gone: the slot was lent for a token. */
  a->refused[ca->over]++;
  api_conn_log(c, 0, "over the %s budget and no known token, closing",
               budget_name(ca->over));
  tell_to_go(c);
  return false;
}

enum api_admission_verdict api_admission_sweep(struct api_conn *c, uint64_t now)
{
  struct api_admission *a = &c->server->admission;
  struct api_conn_admission *ca = &c->admission;
  uint64_t age = now - c->accepted_at;

  if (ca->state == API_ADMISSION_PROBATION && age >= API_PROBATION_MS) {
    refuse_probation(c, "no known token in time");
    return API_ADMIT_CLOSE;
  }
  if (ca->state == API_ADMISSION_UNAUTHENTICATED && !ca->told_to_go &&
      age >= a->lifetime_ms) {
    a->expired++;
    ca->told_to_go = true;
    api_conn_log(c, 0, "unauthenticated for %" PRIu64 " ms, closing",
                 a->lifetime_ms);
    return API_ADMIT_GOAWAY;
  }
  return API_ADMIT_KEEP;
}

void api_admission_hold(struct api_server *server, ptrdiff_t delta)
{
  server->admission.bytes_held += (size_t)delta;
}

char *api_admission_metrics(const struct api_server *server)
{
  const struct api_admission *a = &server->admission;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);

  if (f == NULL)
    return NULL;
  fprintf(f,
          "# HELP nlb_api_connections API connections open now, by whether "
          "they presented a known token.\n"
          "# TYPE nlb_api_connections gauge\n"
          "nlb_api_connections{state=\"authenticated\"} %zu\n"
          "nlb_api_connections{state=\"unauthenticated\"} %zu\n"
          "nlb_api_connections{state=\"probation\"} %zu\n",
          a->n_authenticated, a->n_unauthenticated - a->n_probation,
          a->n_probation);
  fprintf(f, "# HELP nlb_api_connections_refused_total API connections "
             "refused, or ended before they presented a known token, by the "
             "limit they were over.\n"
             "# TYPE nlb_api_connections_refused_total counter\n");
  for (int i = 0; i < API_REFUSED_COUNT; i++)
    fprintf(f, "nlb_api_connections_refused_total{reason=\"%s\"} %" PRIu64 "\n",
            refusal_names[i], a->refused[i]);
  fprintf(f,
          "# HELP nlb_api_unauthenticated_expired_total Unauthenticated API "
          "connections ended at the end of their lifetime.\n"
          "# TYPE nlb_api_unauthenticated_expired_total counter\n"
          "nlb_api_unauthenticated_expired_total %" PRIu64 "\n",
          a->expired);
  fprintf(f,
          "# HELP nlb_api_request_bytes_held Bytes of requests held in "
          "memory: bodies of authenticated requests, HTTP/1.1 bytes read "
          "ahead.\n"
          "# TYPE nlb_api_request_bytes_held gauge\n"
          "nlb_api_request_bytes_held %zu\n",
          a->bytes_held);
  if (fclose(f) != 0) {
    free(text);
    return NULL;
  }
  return text;
}
