/* Admission: budgets of unauthenticated connections in all and per
 * source, probation beyond them and in the operators' reserve, a bounded
 * life for the unauthenticated, the limits of each principal once a
 * connection is bound to it, and the counts /metrics shows. */
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

/* What one principal holds, whatever its tokens: the entry lives while it
 * holds anything. */
struct admission_principal {
  struct nlb_list link; /* api_admission.principals[bucket] */
  struct api_admission *admission;
  char name[REG_NAME_BUF];
  enum reg_role role; /* of its requests' tokens (the same for every one) */
  size_t connections, requests, event_streams;
  uint64_t warned_at; /* last warning about its connection limit */
};

static const char *const refusal_names[API_REFUSED_COUNT] = {
    [API_REFUSED_MAX_CONNECTIONS] = "max_connections",
    [API_REFUSED_SOURCE] = "source_limit",
    [API_REFUSED_UNAUTHENTICATED] = "unauthenticated_limit",
    [API_REFUSED_OPERATOR_RESERVE] = "operator_reserve",
    [API_REFUSED_PRINCIPAL] = "principal_limit",
};

/* The requests refused by api_admission_take and bind's 421, as
 * nlb_api_requests_refused_total names them. */
static const struct {
  enum api_request_verdict verdict;
  const char *name;
} request_refusals[] = {
    {API_TOO_MANY_REQUESTS, "requests_limit"},
    {API_TOO_MANY_EVENT_STREAMS, "event_streams_limit"},
    {API_OTHER_PRINCIPAL, "other_principal"},
};

static const struct api_limits default_limits = API_DEFAULT_LIMITS;

void api_admission_init(struct api_admission *a, uint64_t lifetime_ms)
{
  memset(a, 0, sizeof *a);
  nlb_list_init(&a->probation);
  for (size_t i = 0; i < API_ADMISSION_BUCKETS; i++) {
    nlb_list_init(&a->sources[i]);
    nlb_list_init(&a->principals[i]);
  }
  a->lifetime_ms = lifetime_ms;
  a->limits = default_limits;
}

void api_admission_set_limits(struct api_admission *a,
                              const struct api_limits *limits)
{
  a->limits = limits != NULL ? *limits : default_limits;
  if (a->limits.operator_reserve > API_MAX_CONNECTIONS / 2)
    a->limits.operator_reserve = API_MAX_CONNECTIONS / 2;
}

static void free_entries(struct nlb_list *buckets, size_t offset)
{
  for (size_t i = 0; i < API_ADMISSION_BUCKETS; i++) {
    struct nlb_list *pos, *tmp;
    NLB_LIST_FOREACH_SAFE(pos, tmp, &buckets[i])
    {
      nlb_list_remove(pos);
      free((char *)pos - offset);
    }
  }
}

void api_admission_free(struct api_admission *a)
{
  free_entries(a->sources, offsetof(struct admission_source, link));
  free_entries(a->principals, offsetof(struct admission_principal, link));
}

/* True (and now noted) when a warning last given at *at may be given
 * again: once in a while, not once per connection of a flood. */
static bool warn_due(uint64_t *at, uint64_t now)
{
  if (*at != 0 && now - *at < WARN_INTERVAL_MS)
    return false;
  *at = now;
  return true;
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

/* FNV-1a: sources and names are not secret and buckets only share a
 * list. */
static size_t bucket_of(const uint8_t *key, size_t len)
{
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++)
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
  struct nlb_list *bucket = &a->sources[bucket_of(key, sizeof key)];
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

/* ---- principals --------------------------------------------------------- */

/* The entry of principal, created with nothing held when absent; NULL
 * when out of memory. */
static struct admission_principal *
principal_find(struct api_admission *a, const char *name, enum reg_role role)
{
  size_t len = strnlen(name, REG_NAME_BUF - 1);
  struct nlb_list *bucket =
      &a->principals[bucket_of((const uint8_t *)name, len)];
  struct nlb_list *pos, *tmp;

  NLB_LIST_FOREACH_SAFE(pos, tmp, bucket)
  {
    struct admission_principal *p =
        NLB_CONTAINER_OF(pos, struct admission_principal, link);
    if (strncmp(p->name, name, len) == 0 && p->name[len] == '\0')
      return p;
  }
  struct admission_principal *p = calloc(1, sizeof *p);
  if (p == NULL)
    return NULL;
  p->admission = a;
  memcpy(p->name, name, len);
  p->role = role;
  nlb_list_append(bucket, &p->link);
  return p;
}

/* The entry goes once it holds nothing, so the table holds only
 * principals with connections or requests. */
static void principal_put(struct admission_principal *p)
{
  if (p->connections == 0 && p->requests == 0 && p->event_streams == 0) {
    nlb_list_remove(&p->link);
    free(p);
  }
}

uint32_t api_admission_limit(const struct api_admission *a,
                             enum api_request_verdict verdict,
                             enum reg_role role)
{
  const struct api_principal_limits *l = &a->limits.role[role];

  switch (verdict) {
  case API_TOO_MANY_CONNECTIONS:
    return l->connections;
  case API_TOO_MANY_REQUESTS:
    return l->requests;
  case API_TOO_MANY_EVENT_STREAMS:
    return l->event_streams;
  case API_OPERATORS_ONLY:
    return a->limits.operator_reserve;
  default:
    return 0;
  }
}

/* True when count is at limit (0: no limit), one more would pass it. */
static bool at_limit(uint32_t limit, size_t count)
{
  return limit != 0 && count >= limit;
}

/* ---- states ------------------------------------------------------------- */

/* Connections that count against the operators' reserve: all but those
 * bound to an operator and those on probation in the reserve. */
static size_t outside_reserve(const struct api_admission *a)
{
  return a->n_unauthenticated - a->n_reserve + a->n_authenticated -
         a->n_bound[REG_ROLE_OPERATOR];
}

/* c stops counting as unauthenticated (or on probation). */
static void leave_unauthenticated(struct api_admission *a,
                                  struct api_conn_admission *ca)
{
  if (ca->state == API_ADMISSION_PROBATION) {
    nlb_list_remove(&ca->probation_link);
    a->n_probation--;
    if (ca->over == API_REFUSED_OPERATOR_RESERVE)
      a->n_reserve--;
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
    a->n_bound[ca->role]--;
    ca->principal->connections--;
    principal_put(ca->principal);
    ca->principal = NULL;
    break;
  case API_ADMISSION_NONE:
    break;
  }
  ca->state = API_ADMISSION_NONE;
}

static const char *budget_name(enum api_admission_refusal over)
{
  switch (over) {
  case API_REFUSED_SOURCE:
    return "per-source";
  case API_REFUSED_OPERATOR_RESERVE:
    return "operators' reserve";
  default:
    return "unauthenticated";
  }
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

/* The oldest connection on probation goes (the caller closes it). */
static struct api_conn *evict_oldest_probation(struct api_admission *a,
                                               const char *why)
{
  struct api_conn *oldest = NLB_CONTAINER_OF(
      NLB_CONTAINER_OF(a->probation.next, struct api_conn_admission,
                       probation_link),
      struct api_conn, admission);
  refuse_probation(oldest, why);
  return oldest;
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
    /* Probation lends slots for a few seconds: the newest client gets the
     * one lent longest ago (an operator in the reserve gets in so). */
    if (a->n_probation > 0) {
      *evicted = evict_oldest_probation(a, "evicted: every connection is "
                                           "taken");
    } else {
      a->refused[API_REFUSED_MAX_CONNECTIONS]++;
      if (warn_due(&a->warned_at, uv_now(server->loop)))
        api_log(server, 2,
                "api: %d connections open, refusing new ones (%" PRIu64
                " refused since start)",
                API_MAX_CONNECTIONS, a->refused[API_REFUSED_MAX_CONNECTIONS]);
      return API_ADMIT_CLOSE;
    }
  }
  struct admission_source *s = source_find(a, c);
  if (s == NULL)
    return API_ADMIT_CLOSE;
  bool reserve =
      outside_reserve(a) >= API_MAX_CONNECTIONS - a->limits.operator_reserve;
  s->count++;
  ca->source = s;
  a->n_unauthenticated++;
  ca->state = API_ADMISSION_UNAUTHENTICATED;
  /* Counted first, so that a probation connection counts against its
   * source like any other (a flood's source stays over its budget). */
  if (!reserve && s->count <= API_MAX_UNAUTHENTICATED_PER_SOURCE &&
      a->n_unauthenticated - a->n_probation <= API_MAX_UNAUTHENTICATED)
    return API_ADMIT_KEEP;
  ca->over = reserve ? API_REFUSED_OPERATOR_RESERVE
             : s->count > API_MAX_UNAUTHENTICATED_PER_SOURCE
                 ? API_REFUSED_SOURCE
                 : API_REFUSED_UNAUTHENTICATED;
  /* Not after an eviction above: that one made room on probation too. */
  if (a->n_probation >= API_MAX_PROBATION)
    *evicted = evict_oldest_probation(a, "evicted by a newer one");
  ca->state = API_ADMISSION_PROBATION;
  nlb_list_append(&a->probation, &ca->probation_link);
  a->n_probation++;
  if (reserve)
    a->n_reserve++;
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

/* Refuses to bind c (counted as reason): it ends after this answer, and
 * its later requests with a token get the same verdict. Logged when a
 * warning last given at *warned_at (NULL: never) may be given again. */
static enum api_request_verdict
refuse_bind(struct api_conn *c, enum api_admission_refusal reason,
            enum api_request_verdict verdict, uint64_t *warned_at,
            const char *principal, enum reg_role role)
{
  struct api_admission *a = &c->server->admission;

  a->refused[reason]++;
  c->admission.refused_with = verdict;
  tell_to_go(c);
  if (warned_at != NULL && warn_due(warned_at, uv_now(c->server->loop))) {
    if (verdict == API_OPERATORS_ONLY)
      api_log(c->server, 2,
              "api: the connections left are kept for operators (%" PRIu32
              "), refusing those of %s (%s) and others (%" PRIu64
              " refused since start)",
              a->limits.operator_reserve, principal, reg_role_name(role),
              a->refused[reason]);
    else
      api_log(c->server, 2,
              "api: %s (%s) holds %" PRIu32 " connections, its limit, "
              "refusing more (%" PRIu64 " refused since start, all "
              "principals)",
              principal, reg_role_name(role), a->limits.role[role].connections,
              a->refused[reason]);
  }
  return verdict;
}

enum api_request_verdict api_admission_bind(struct api_conn *c,
                                            const char *principal,
                                            enum reg_role role)
{
  struct api_admission *a = &c->server->admission;
  struct api_conn_admission *ca = &c->admission;

  if (ca->state == API_ADMISSION_NONE)
    return API_REQUEST_ADMITTED;
  if (ca->state == API_ADMISSION_AUTHENTICATED) {
    if (strcmp(ca->principal->name, principal) == 0)
      return API_REQUEST_ADMITTED;
    a->requests_refused[API_OTHER_PRINCIPAL]++;
    return API_OTHER_PRINCIPAL;
  }
  if (ca->refused_with != API_REQUEST_ADMITTED)
    return ca->refused_with;
  if (ca->state == API_ADMISSION_PROBATION &&
      ca->over == API_REFUSED_OPERATOR_RESERVE && role != REG_ROLE_OPERATOR)
    return refuse_bind(c, API_REFUSED_OPERATOR_RESERVE, API_OPERATORS_ONLY,
                       &a->reserve_warned_at, principal, role);
  struct admission_principal *p = principal_find(a, principal, role);
  if (p == NULL) /* out of memory: refused like a full one */
    return refuse_bind(c, API_REFUSED_PRINCIPAL, API_TOO_MANY_CONNECTIONS, NULL,
                       principal, role);
  if (at_limit(a->limits.role[role].connections, p->connections)) {
    /* p holds its connections: it stays. */
    return refuse_bind(c, API_REFUSED_PRINCIPAL, API_TOO_MANY_CONNECTIONS,
                       &p->warned_at, principal, role);
  }
  leave_unauthenticated(a, ca);
  ca->state = API_ADMISSION_AUTHENTICATED;
  ca->principal = p;
  ca->role = role;
  p->connections++;
  a->n_authenticated++;
  a->n_bound[role]++;
  return API_REQUEST_ADMITTED;
}

enum api_request_verdict api_admission_take(struct api_conn *c,
                                            bool event_stream,
                                            struct api_request_admission *held)
{
  struct api_conn_admission *ca = &c->admission;

  if (ca->state != API_ADMISSION_AUTHENTICATED)
    return API_REQUEST_ADMITTED;
  struct admission_principal *p = ca->principal;
  struct api_admission *a = p->admission;
  const struct api_principal_limits *l = &a->limits.role[ca->role];
  enum api_request_verdict verdict = API_REQUEST_ADMITTED;

  if (at_limit(l->requests, p->requests))
    verdict = API_TOO_MANY_REQUESTS;
  else if (event_stream && at_limit(l->event_streams, p->event_streams))
    verdict = API_TOO_MANY_EVENT_STREAMS;
  if (verdict != API_REQUEST_ADMITTED) {
    a->requests_refused[verdict]++;
    return verdict;
  }
  held->principal = p;
  held->request = true;
  p->requests++;
  a->n_requests[p->role]++;
  if (event_stream) {
    held->event_stream = true;
    p->event_streams++;
    a->n_event_streams[p->role]++;
  }
  return API_REQUEST_ADMITTED;
}

void api_admission_move_event_stream(struct api_request_admission *from,
                                     struct api_request_admission *to)
{
  if (!from->event_stream)
    return;
  from->event_stream = false;
  to->principal = from->principal;
  to->event_stream = true;
  if (!from->request)
    from->principal = NULL;
}

void api_admission_done(struct api_request_admission *held)
{
  struct admission_principal *p = held->principal;

  if (p == NULL)
    return;
  if (held->request) {
    p->requests--;
    p->admission->n_requests[p->role]--;
  }
  if (held->event_stream) {
    p->event_streams--;
    p->admission->n_event_streams[p->role]--;
  }
  memset(held, 0, sizeof *held);
  principal_put(p);
}

bool api_admission_request(struct api_conn *c, bool authenticated)
{
  struct api_admission *a = &c->server->admission;
  struct api_conn_admission *ca = &c->admission;

  if (ca->told_to_go)
    return false;
  if (ca->state != API_ADMISSION_PROBATION || authenticated)
    return true;
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

/* One gauge by role. */
static void role_gauge(FILE *f, const char *name, const char *help,
                       const size_t count[API_ROLES])
{
  fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
  for (int r = 0; r < API_ROLES; r++)
    fprintf(f, "%s{role=\"%s\"} %zu\n", name, reg_role_name((enum reg_role)r),
            count[r]);
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
          "nlb_api_connections{state=\"probation\"} %zu\n"
          "nlb_api_connections{state=\"reserve\"} %zu\n",
          a->n_authenticated, a->n_unauthenticated - a->n_probation,
          a->n_probation - a->n_reserve, a->n_reserve);
  fprintf(f, "# HELP nlb_api_connections_refused_total API connections "
             "refused, or ended before they were kept, by the limit they "
             "were over.\n"
             "# TYPE nlb_api_connections_refused_total counter\n");
  for (int i = 0; i < API_REFUSED_COUNT; i++)
    fprintf(f, "nlb_api_connections_refused_total{reason=\"%s\"} %" PRIu64 "\n",
            refusal_names[i], a->refused[i]);
  role_gauge(f, "nlb_api_principal_connections",
             "API connections bound to a principal, by its role.", a->n_bound);
  role_gauge(f, "nlb_api_principal_requests",
             "API requests under way, by the role of their principal.",
             a->n_requests);
  role_gauge(f, "nlb_api_principal_event_streams",
             "GET /v1/events answers open, by the role of their principal.",
             a->n_event_streams);
  fprintf(f, "# HELP nlb_api_requests_refused_total API requests refused by "
             "their principal's limits (429), or on another principal's "
             "connection (421).\n"
             "# TYPE nlb_api_requests_refused_total counter\n");
  for (size_t i = 0; i < sizeof request_refusals / sizeof request_refusals[0];
       i++)
    fprintf(f, "nlb_api_requests_refused_total{reason=\"%s\"} %" PRIu64 "\n",
            request_refusals[i].name,
            a->requests_refused[request_refusals[i].verdict]);
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
