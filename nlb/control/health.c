#include "nlb/control/health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nlb/capacity.h"
#include "nlb/control/health_tls.h"
#include "nlb/list.h"
#include "nlb/log.h"
#include "nlb/dataplane/proxy_v2.h"

/* Room for an HTTP status line; what a target sends past it is ignored. */
#define RESPONSE_MAX 512
/* State changes are collected this long and published together: a group's
 * pool (its Maglev table) is rebuilt at most once per window, however many
 * of its targets changed (a cold start turns thousands healthy within a
 * second). */
#define PUBLISH_WINDOW_MS 25
/* A check that could not run for a local reason says so at most this
 * often. */
#define LOCAL_LOG_MS 60000
/* Probes open at once, at most: the descriptors checks may hold (their
 * share of the reserve nlbd keeps out of max_flows). Checks due beyond it
 * wait their turn in order. */
#define MAX_IN_FLIGHT NLB_CAPACITY_PROBES
/* Probes started per turn of the control loop, at most, so that thousands
 * of checks falling due together never hold the API or a reload for more
 * than a few milliseconds, nor make one wave of connects whose answers all
 * wait for the next turn. */
#define BURST 128
/* The first round waits for no check longer than this, whatever the
 * groups' timeouts: a new process accepts within it. */
#define FIRST_ROUND_MAX_MS 10000
#define FIRST_ROUND_MARGIN_MS 100

struct check;

/* One probe in flight: its own handles, so a check can be removed while a
 * probe is still closing. */
struct attempt {
  struct nlb_health *health;
  struct check *check; /* NULL once the check is gone */
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  uv_timer_t timeout;
  int open_handles;
  bool done;
  uint64_t started_ms; /* the control loop's clock when the probe began */
  char request[NLB_PROXY_V2_LOCAL_LEN + 1024];
  char response[RESPONSE_MAX];
  size_t response_len;
  /* A group with tls = { ... }: the probe's TLS client, and whether its
   * handshake is done. */
  struct nlb_health_tls *tls;
  bool tls_done;
};

struct check {
  struct nlb_list link;
  struct nlb_health *health;
  struct nlb_group *group;
  struct nlb_target *target; /* one reference */
  uv_timer_t timer;
  struct attempt *attempt;
  struct nlb_list due_link; /* on nlb_health.due while waiting its turn */
  bool first_pending;       /* of the first round, without a result yet */
};

struct nlb_health {
  uv_loop_t *loop;
  struct nlb_router *router;
  struct nlb_list checks;
  uv_timer_t publish;  /* the batching window, running while one is open */
  struct nlb_list due; /* checks whose time came, waiting for a probe */
  uv_idle_t kick;      /* active while some can start */
  size_t in_flight;    /* probes open */
  uint64_t probes_started;
  uint64_t random_state;
  uint64_t synced_generation; /* the router's, when checks last matched */
  unsigned passive_seen;      /* nlb_target_passive_total() last looked at */
  uint64_t local_logged_ms;   /* last "check not run" message */
  uint64_t local_unlogged;    /* checks not run since */
  /* The first round: the checks nlb_health_start made, until each has a
   * result or the bound passes (nlb_health_await_first_round). */
  bool starting;          /* inside nlb_health_start's sync */
  size_t first_targets;   /* checks of the round */
  size_t first_pending;   /* of them without a result */
  uint64_t started_ns;    /* uv_hrtime() at nlb_health_start */
  uv_timer_t first_bound; /* the round's bound, while awaited */
  void (*first_done)(void *arg, const struct nlb_health_first_round *round);
  void *first_arg;
  bool stopped;
};

enum nlb_target_state
nlb_health_next_state(enum nlb_target_state state, unsigned *consecutive_ok,
                      unsigned *consecutive_fail, bool passed,
                      unsigned healthy_threshold, unsigned unhealthy_threshold)
{
  if (state == NLB_TARGET_DRAINING || state == NLB_TARGET_UNUSED)
    return state;
  if (passed) {
    (*consecutive_ok)++;
    *consecutive_fail = 0;
    /* A target never judged yet needs one pass (Envoy's rule at startup):
     * a cold start or a new target serves after one check, not after
     * healthy_threshold intervals; the threshold guards a target that
     * failed against flapping back too soon. */
    if (state == NLB_TARGET_INITIAL ||
        (state != NLB_TARGET_HEALTHY && *consecutive_ok >= healthy_threshold))
      return NLB_TARGET_HEALTHY;
  } else {
    (*consecutive_fail)++;
    *consecutive_ok = 0;
    if (state != NLB_TARGET_UNHEALTHY &&
        *consecutive_fail >= unhealthy_threshold)
      return NLB_TARGET_UNHEALTHY;
  }
  return state;
}

int nlb_health_parse_status(const char *buf, size_t len)
{
  const char *end = memchr(buf, '\n', len);
  int code = 0;

  if (len >= 5 && memcmp(buf, "HTTP/", 5) != 0)
    return -EPROTO;
  if (len < 5 && memcmp(buf, "HTTP/", len) != 0)
    return -EPROTO;
  if (!end)
    return len >= RESPONSE_MAX ? -EPROTO : 0;
  /* "HTTP/1.1 200 OK": the code follows the first space. */
  const char *space = memchr(buf, ' ', (size_t)(end - buf));
  if (!space || end - space < 4)
    return -EPROTO;
  for (int i = 1; i <= 3; i++) {
    if (space[i] < '0' || space[i] > '9')
      return -EPROTO;
    code = code * 10 + (space[i] - '0');
  }
  if (space[4] != ' ' && space[4] != '\r' && space[4] != '\n')
    return -EPROTO;
  return code >= 100 && code <= 599 ? code : -EPROTO;
}

static uint64_t next_random(struct nlb_health *health)
{
  /* xorshift64*: only for spreading checks in time. */
  uint64_t x = health->random_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  health->random_state = x;
  return x * UINT64_C(2685821657736338717);
}

/* Interval +/- 10%, so checks of many targets do not fire in lock-step. */
static uint64_t jittered(struct nlb_health *health, uint64_t interval_ms)
{
  uint64_t spread = interval_ms / 5;
  if (spread == 0)
    return interval_ms;
  return interval_ms - spread / 2 + next_random(health) % (spread + 1);
}

static void on_publish(uv_timer_t *timer)
{
  struct nlb_health *health = timer->data;

  nlb_router_flush(health->router, uv_now(health->loop));
}

/* Ends the awaited first round: publishes what it changed now rather
 * than at the end of the batching window, then tells the caller. */
static void end_first_round(struct nlb_health *health)
{
  struct nlb_health_first_round round = {0};
  void (*done)(void *, const struct nlb_health_first_round *) =
      health->first_done;
  struct nlb_list *pos, *tmp;

  if (!done || health->stopped)
    return;
  health->first_done = NULL;
  uv_timer_stop(&health->first_bound);
  nlb_router_flush(health->router, uv_now(health->loop));
  round.elapsed_ms = (uv_hrtime() - health->started_ns) / 1000000;
  round.targets = health->first_targets;
  round.answered = health->first_targets - health->first_pending;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &health->checks)
  {
    struct check *check = NLB_CONTAINER_OF(pos, struct check, link);
    if (atomic_load(&check->target->state) == NLB_TARGET_HEALTHY)
      round.healthy++;
  }
  done(health->first_arg, &round);
}

static void on_first_bound(uv_timer_t *timer)
{
  end_first_round(timer->data);
}

/* The check's first result (or its removal) is in. */
static void first_answered(struct check *check)
{
  struct nlb_health *health = check->health;

  if (!check->first_pending)
    return;
  check->first_pending = false;
  if (--health->first_pending == 0)
    end_first_round(health);
}

static void record_result(struct check *check, bool passed, const char *reason)
{
  struct nlb_target *target = check->target;
  const struct nlb_config_health *hc = &check->group->settings.health;
  enum nlb_target_state state =
      (enum nlb_target_state)atomic_load(&target->state);
  enum nlb_target_state next = nlb_health_next_state(
      state, &target->consecutive_ok, &target->consecutive_fail, passed,
      hc->healthy_threshold, hc->unhealthy_threshold);

  if (!passed)
    snprintf(target->reason, sizeof(target->reason), "%s", reason);
  if (next == state)
    return;
  nlb_router_set_target_state(check->health->router, check->group, target, next,
                              reason, uv_now(check->health->loop));
  if (!uv_is_active((uv_handle_t *)&check->health->publish))
    uv_timer_start(&check->health->publish, on_publish, PUBLISH_WINDOW_MS, 0);
}

/* Errors that say this host is short of something (descriptors, buffers,
 * memory, local ports), not that the target is down. */
static bool local_failure(int status)
{
  return status == UV_EMFILE || status == UV_ENFILE || status == UV_ENOBUFS ||
         status == UV_ENOMEM || status == UV_EADDRNOTAVAIL ||
         status == UV_EAGAIN;
}

static void log_local_failure(struct nlb_health *health,
                              const struct check *check, int status)
{
  uint64_t now = uv_now(health->loop);

  health->local_unlogged++;
  if (health->local_logged_ms && now - health->local_logged_ms < LOCAL_LOG_MS)
    return;
  NLB_LOG_EVENT(NLB_LOG_WARN, "health_check_not_run",
                "health check of {target_group}/{target} not run: {error} "
                "(a local shortage, not counted against the target; "
                "{checks} such checks since the last message)",
                NLB_LOG_STR("target_group", check->group->name),
                NLB_LOG_STR("target", check->target->name),
                NLB_LOG_STR("error", uv_strerror(status)),
                NLB_LOG_UINT("checks", health->local_unlogged));
  health->local_logged_ms = now ? now : 1;
  health->local_unlogged = 0;
}

static void on_attempt_handle_closed(uv_handle_t *handle)
{
  struct attempt *attempt = handle->data;
  if (--attempt->open_handles == 0) {
    nlb_health_tls_free(attempt->tls);
    free(attempt);
  }
}

static void on_check_timer(uv_timer_t *timer);
static void on_kick(uv_idle_t *idle);

static void schedule(struct check *check, uint64_t delay_ms)
{
  uv_timer_start(&check->timer, on_check_timer, delay_ms, 0);
}

/* Closes the probe's socket with a reset (SO_LINGER 0), as HAProxy does:
 * no TIME_WAIT is left behind, so thousands of checks a second do not
 * hold thousands of local ports that a target restarting on one of them
 * would need. */
static void close_probe(struct attempt *attempt)
{
  const struct linger reset = {1, 0};
  uv_os_fd_t fd;

  if (uv_fileno((uv_handle_t *)&attempt->tcp, &fd) == 0)
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
  uv_close((uv_handle_t *)&attempt->tcp, on_attempt_handle_closed);
  uv_close((uv_handle_t *)&attempt->timeout, on_attempt_handle_closed);
}

/* Ends a probe once: records its result (unless local_status names a
 * local shortage: then the check did not run, and nothing is counted),
 * closes its handles, schedules the next one. */
static void end_attempt(struct attempt *attempt, bool passed,
                        const char *reason, int local_status)
{
  struct check *check = attempt->check;

  if (attempt->done)
    return;
  attempt->done = true;
  close_probe(attempt);
  if (attempt->health->in_flight-- == MAX_IN_FLIGHT &&
      !nlb_list_empty(&attempt->health->due) && !attempt->health->stopped)
    uv_idle_start(&attempt->health->kick, on_kick);
  if (!check)
    return;
  check->attempt = NULL;
  if (local_status)
    log_local_failure(check->health, check, local_status);
  else
    record_result(check, passed, reason);
  if (!local_status)
    first_answered(check);
  if (!check->health->stopped) {
    /* interval is the time between the starts of two probes, so a target
     * that stops answering is unhealthy within interval x threshold +
     * timeout, however long each failed probe waited. */
    uint64_t interval =
        jittered(check->health, check->group->settings.health.interval_ms);
    uint64_t elapsed = uv_now(check->health->loop) - attempt->started_ms;
    schedule(check, elapsed < interval ? interval - elapsed : 0);
  }
}

static void finish_attempt(struct attempt *attempt, bool passed,
                           const char *reason)
{
  end_attempt(attempt, passed, reason, 0);
}

/* A failure: the target's, or a local one that says nothing of it. */
static void fail_attempt(struct attempt *attempt, int status,
                         const char *reason)
{
  end_attempt(attempt, false, reason, local_failure(status) ? status : 0);
}

static void on_timeout(uv_timer_t *timer)
{
  finish_attempt(timer->data, false, "timeout");
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
  struct attempt *attempt = handle->data;
  size_t room = RESPONSE_MAX - attempt->response_len;
  buf->base = attempt->response + attempt->response_len;
  buf->len = room;
}

static void judge_response(struct attempt *attempt);

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  struct attempt *attempt = stream->data;

  if (nread == 0 || attempt->done)
    return;
  if (nread < 0) {
    fail_attempt(attempt, (int)nread,
                 nread == UV_EOF ? "closed before status line"
                                 : uv_strerror((int)nread));
    return;
  }
  attempt->response_len += (size_t)nread;
  judge_response(attempt);
}

/* Judges the response once its status line is complete (never on one short
 * read): whether the group's matcher takes the status. */
static void judge_response(struct attempt *attempt)
{
  char reason[64];
  int code;

  code = nlb_health_parse_status(attempt->response, attempt->response_len);
  if (code == 0)
    return;
  if (code < 0) {
    finish_attempt(attempt, false, "not an HTTP response");
    return;
  }
  snprintf(reason, sizeof(reason), "status %d", code);
  if (!attempt->check) {
    finish_attempt(attempt, false, reason);
    return;
  }
  finish_attempt(
      attempt,
      nlb_status_matcher_match(&attempt->check->group->settings.health.matcher,
                               (unsigned)code),
      reason);
}

static void on_written(uv_write_t *req, int status)
{
  struct attempt *attempt = req->data;
  if (attempt->done)
    return;
  if (status < 0) {
    fail_attempt(attempt, status, uv_strerror(status));
    return;
  }
  if (!attempt->check ||
      attempt->check->group->settings.health.protocol == NLB_HEALTH_TCP) {
    finish_attempt(attempt, true, "connect ok");
    return;
  }
  uv_read_start((uv_stream_t *)&attempt->tcp, on_alloc, on_read);
}

/* What the probe sends in clear first: the PROXY header when the group
 * asks for one, then (unless with_http is false: TLS carries it) the
 * HTTP request. */
static size_t build_request(struct attempt *attempt, const struct check *check,
                            bool with_http)
{
  const struct nlb_config_health *hc = &check->group->settings.health;
  size_t len = 0;
  int n;

  if (check->group->settings.proxy_protocol_v2) {
    n = nlb_proxy_v2_encode_local((uint8_t *)attempt->request,
                                  sizeof(attempt->request));
    if (n > 0)
      len = (size_t)n;
  }
  if (with_http && hc->protocol == NLB_HEALTH_HTTP) {
    n = snprintf(attempt->request + len, sizeof(attempt->request) - len,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: nlb-health-check"
                 "\r\nConnection: close\r\n\r\n",
                 hc->path, hc->host ? hc->host : check->target->name);
    if (n > 0 && (size_t)n < sizeof(attempt->request) - len)
      len += (size_t)n;
  }
  return len;
}

/* ---- probes of a group with tls = { ... } ------------------------------
 * The PROXY header (if any) in clear, then a TLS handshake verified as
 * the group's flows verify, then nothing more (tcp checks: the handshake
 * is the check) or the HTTP request through TLS (http checks: HTTPS). */

/* A write of bytes TLS made, with its own buffer: written in order after
 * any before it, freed when done (or cancelled as the probe closes). */
struct tls_write {
  uv_write_t req;
  struct attempt *attempt;
  char *data;
};

static void on_tls_written(uv_write_t *req, int status)
{
  struct tls_write *w = req->data;
  struct attempt *attempt = w->attempt;

  free(w->data);
  free(w);
  if (status < 0 && !attempt->done)
    fail_attempt(attempt, status, uv_strerror(status));
}

/* Sends what TLS has for the target. false when the probe ended. */
static bool send_tls_output(struct attempt *attempt)
{
  char *data = NULL;
  ssize_t n = nlb_health_tls_take_output(attempt->tls, &data);
  struct tls_write *w = n > 0 ? calloc(1, sizeof(*w)) : NULL;
  uv_buf_t buf;
  int rc;

  if (n == 0)
    return true;
  if (!w) {
    free(data);
    fail_attempt(attempt, UV_ENOMEM, "out of memory");
    return false;
  }
  w->req.data = w;
  w->attempt = attempt;
  w->data = data;
  buf = uv_buf_init(data, (unsigned)n);
  rc = uv_write(&w->req, (uv_stream_t *)&attempt->tcp, &buf, 1, on_tls_written);
  if (rc < 0) {
    free(data);
    free(w);
    fail_attempt(attempt, rc, "write failed");
    return false;
  }
  return true;
}

/* The handshake done: a tcp check passes; an http one sends its request. */
static void on_tls_handshake_done(struct attempt *attempt,
                                  const struct check *check)
{
  const struct nlb_config_health *hc = &check->group->settings.health;
  int n;

  attempt->tls_done = true;
  if (hc->protocol == NLB_HEALTH_TCP) {
    finish_attempt(attempt, true, "tls handshake ok");
    return;
  }
  n = snprintf(attempt->request, sizeof(attempt->request),
               "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: nlb-health-check"
               "\r\nConnection: close\r\n\r\n",
               hc->path, hc->host ? hc->host : check->target->name);
  if (n < 0 || (size_t)n >= sizeof(attempt->request) ||
      nlb_health_tls_write(attempt->tls, attempt->request, (size_t)n) < 0) {
    finish_attempt(attempt, false, "tls write failed");
    return;
  }
  send_tls_output(attempt);
}

/* Moves a TLS probe on with what the target sent so far. */
static void step_tls(struct attempt *attempt)
{
  struct check *check = attempt->check;
  char why[320];
  ssize_t n;

  if (!check) {
    finish_attempt(attempt, false, "check removed");
    return;
  }
  if (!attempt->tls_done) {
    int rc = nlb_health_tls_handshake(attempt->tls, why, sizeof(why));
    /* Even a failure may have an alert to send; the reset follows. */
    if (!send_tls_output(attempt))
      return;
    if (rc < 0)
      finish_attempt(attempt, false, why);
    else if (rc == 1)
      on_tls_handshake_done(attempt, check);
    return;
  }
  while (!attempt->done && attempt->response_len < RESPONSE_MAX) {
    n = nlb_health_tls_read(attempt->tls,
                            attempt->response + attempt->response_len,
                            RESPONSE_MAX - attempt->response_len);
    if (n == 0)
      return;
    if (n < 0) {
      finish_attempt(attempt, false, "closed before status line");
      return;
    }
    attempt->response_len += (size_t)n;
    judge_response(attempt);
  }
}

static void on_tls_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
  static char scratch[16384]; /* one control thread, fed at once */
  (void)handle;
  (void)suggested;
  *buf = uv_buf_init(scratch, sizeof(scratch));
}

static void on_tls_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  struct attempt *attempt = stream->data;

  if (nread == 0 || attempt->done)
    return;
  if (nread < 0) {
    fail_attempt(attempt, (int)nread,
                 nread == UV_EOF
                     ? (attempt->tls_done ? "closed before status line"
                                          : "closed during tls handshake")
                     : uv_strerror((int)nread));
    return;
  }
  if (nlb_health_tls_feed(attempt->tls, buf->base, (size_t)nread) < 0) {
    fail_attempt(attempt, UV_ENOMEM, "out of memory");
    return;
  }
  step_tls(attempt);
}

static void start_tls(struct attempt *attempt, const struct check *check)
{
  size_t len = build_request(attempt, check, false);
  int rc;

  attempt->tls = nlb_health_tls_new(check->group->tls_ctx,
                                    check->group->settings.tls.server_name);
  if (!attempt->tls) {
    fail_attempt(attempt, UV_ENOMEM, "out of memory");
    return;
  }
  if (len > 0) {
    uv_buf_t buf = uv_buf_init(attempt->request, (unsigned)len);
    /* The PROXY header goes first, in clear; uv_write keeps the order. */
    rc = uv_try_write((uv_stream_t *)&attempt->tcp, &buf, 1);
    if (rc != (int)len) {
      fail_attempt(attempt, rc < 0 ? rc : UV_EAGAIN, "write failed");
      return;
    }
  }
  rc = uv_read_start((uv_stream_t *)&attempt->tcp, on_tls_alloc, on_tls_read);
  if (rc < 0) {
    fail_attempt(attempt, rc, uv_strerror(rc));
    return;
  }
  step_tls(attempt);
}

static void on_connected(uv_connect_t *req, int status)
{
  struct attempt *attempt = req->data;
  struct check *check = attempt->check;
  char reason[64];

  if (attempt->done)
    return;
  if (status < 0) {
    snprintf(reason, sizeof(reason), "connect %s",
             status == UV_ECONNREFUSED ? "refused" : uv_strerror(status));
    fail_attempt(attempt, status, reason);
    return;
  }
  if (!check) {
    finish_attempt(attempt, false, "check removed");
    return;
  }
  if (check->group->tls_ctx) {
    start_tls(attempt, check);
    return;
  }
  size_t len = build_request(attempt, check, true);
  if (len == 0) {
    finish_attempt(attempt, true, "connect ok");
    return;
  }
  uv_buf_t buf = uv_buf_init(attempt->request, (unsigned)len);
  attempt->write.data = attempt;
  int rc = uv_write(&attempt->write, (uv_stream_t *)&attempt->tcp, &buf, 1,
                    on_written);
  if (rc < 0)
    fail_attempt(attempt, rc, "write failed");
}

static void start_attempt(struct check *check)
{
  const struct nlb_config_health *hc = &check->group->settings.health;
  struct attempt *attempt = calloc(1, sizeof(*attempt));
  union nlb_sockaddr address = check->target->address;
  int rc;

  if (!attempt) {
    schedule(check, hc->interval_ms);
    return;
  }
  attempt->check = check;
  attempt->health = check->health;
  check->health->in_flight++;
  check->health->probes_started++;
  uv_tcp_init(check->health->loop, &attempt->tcp);
  uv_timer_init(check->health->loop, &attempt->timeout);
  attempt->tcp.data = attempt;
  attempt->timeout.data = attempt;
  attempt->connect.data = attempt;
  attempt->open_handles = 2;
  attempt->started_ms = uv_now(check->health->loop);
  check->attempt = attempt;
  if (hc->port)
    nlb_addr_set_port(&address, hc->port);
  uv_timer_start(&attempt->timeout, on_timeout, hc->timeout_ms, 0);
  rc = uv_tcp_connect(&attempt->connect, &attempt->tcp, &address.sa,
                      on_connected);
  if (rc < 0)
    fail_attempt(attempt, rc, uv_strerror(rc));
}

/* Starts due checks: at most BURST per turn of the loop, and while fewer
 * than MAX_IN_FLIGHT probes are open (the last probe to close below it
 * starts the kick again). */
static void on_kick(uv_idle_t *idle)
{
  struct nlb_health *health = idle->data;

  for (int n = 0; n < BURST && health->in_flight < MAX_IN_FLIGHT; n++) {
    struct check *check;
    if (nlb_list_empty(&health->due))
      break;
    check = NLB_CONTAINER_OF(health->due.next, struct check, due_link);
    nlb_list_remove(&check->due_link);
    start_attempt(check);
  }
  if (nlb_list_empty(&health->due) || health->in_flight >= MAX_IN_FLIGHT)
    uv_idle_stop(idle);
}

static void on_check_timer(uv_timer_t *timer)
{
  struct check *check = timer->data;
  struct nlb_health *health = check->health;

  if (check->attempt || health->stopped)
    return;
  nlb_list_remove(&check->due_link);
  nlb_list_append(&health->due, &check->due_link);
  if (health->in_flight < MAX_IN_FLIGHT)
    uv_idle_start(&health->kick, on_kick);
}

void nlb_health_get_stats(const struct nlb_health *health,
                          struct nlb_health_stats *stats)
{
  stats->probes_started = health->probes_started;
  stats->in_flight = health->in_flight;
}

static void on_check_closed(uv_handle_t *handle)
{
  struct check *check = handle->data;
  nlb_target_release(check->target);
  free(check);
}

static void remove_check(struct check *check)
{
  if (check->attempt) {
    check->attempt->check = NULL;
    finish_attempt(check->attempt, false, "check removed");
  }
  if (check->target->health_check == check)
    check->target->health_check = NULL;
  nlb_list_remove(&check->due_link);
  first_answered(check);
  nlb_list_remove(&check->link);
  uv_close((uv_handle_t *)&check->timer, on_check_closed);
}

static bool checked(int state)
{
  return state != NLB_TARGET_DRAINING && state != NLB_TARGET_UNUSED;
}

static void add_check(struct nlb_health *health, struct nlb_group *group,
                      struct nlb_target *target)
{
  struct check *check = calloc(1, sizeof(*check));
  uint64_t first;

  if (!check) {
    NLB_LOG_EVENT(NLB_LOG_ERROR, "out_of_memory",
                  "health check for {target}: out of memory",
                  NLB_LOG_STR("target", target->name));
    return;
  }
  check->health = health;
  check->group = group;
  check->target = target;
  nlb_target_acquire(target);
  target->health_check = check;
  nlb_list_init(&check->due_link);
  uv_timer_init(health->loop, &check->timer);
  check->timer.data = check;
  nlb_list_append(&health->checks, &check->link);
  /* The first round's probes go out at once: the process accepts only
   * when they answered. A target added later gets its first probe soon,
   * at a random point of a short window, so it can become healthy
   * quickly. */
  if (health->starting) {
    /* A target with a state already (an upgrade carried it over) is
     * answered: flows need not wait for its probe. */
    check->first_pending = atomic_load(&target->state) == NLB_TARGET_INITIAL;
    health->first_targets++;
    health->first_pending += check->first_pending;
    schedule(check, 0);
    return;
  }
  first = group->settings.health.interval_ms;
  if (first > 1000)
    first = 1000;
  schedule(check, next_random(health) % (first + 1));
}

/* Each target points at its check (target->health_check), so matching
 * checks to targets is one pass over each, whatever their number; and it
 * runs only when targets came or went (the router's generation). A
 * target leaves a group only after draining, so a draining or unused
 * target is the only kind whose check goes. */
void nlb_health_sync(struct nlb_health *health)
{
  struct nlb_list *pos, *tmp;

  if (health->stopped ||
      health->synced_generation == nlb_router_generation(health->router))
    return; /* no target came or went */
  health->synced_generation = nlb_router_generation(health->router);
  NLB_LIST_FOREACH_SAFE(pos, tmp, &health->checks)
  {
    struct check *check = NLB_CONTAINER_OF(pos, struct check, link);
    if (!checked(atomic_load(&check->target->state)))
      remove_check(check);
  }
  for (size_t g = 0; g < nlb_router_group_count(health->router); g++) {
    struct nlb_group *group = nlb_router_group(health->router, g);
    for (size_t i = 0; i < group->n_targets; i++) {
      struct nlb_target *target = group->targets[i];
      if (!target->health_check && checked(atomic_load(&target->state)))
        add_check(health, group, target);
    }
  }
}

void nlb_health_tick(struct nlb_health *health, uint64_t now_ms)
{
  struct nlb_list *pos, *tmp;
  unsigned passive = nlb_target_passive_total();

  /* Targets added or drained (reload, API) since the last look. */
  if (nlb_router_generation(health->router) != health->synced_generation)
    nlb_health_sync(health);
  /* Only when some worker saw a failed connect since the last tick. */
  if (passive == health->passive_seen)
    return;
  health->passive_seen = passive;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &health->checks)
  {
    struct check *check = NLB_CONTAINER_OF(pos, struct check, link);
    unsigned failures = atomic_exchange(&check->target->passive_failures, 0);
    for (unsigned i = 0; i < failures; i++)
      record_result(check, false, "connect failed on live traffic");
  }
}

struct nlb_health *nlb_health_start(uv_loop_t *loop, struct nlb_router *router)
{
  struct nlb_health *health = calloc(1, sizeof(*health));
  if (!health)
    return NULL;
  health->loop = loop;
  health->router = router;
  health->random_state = uv_hrtime() | 1;
  nlb_list_init(&health->checks);
  uv_timer_init(loop, &health->publish);
  health->publish.data = health;
  nlb_list_init(&health->due);
  uv_idle_init(loop, &health->kick);
  health->kick.data = health;
  uv_timer_init(loop, &health->first_bound);
  health->first_bound.data = health;
  health->passive_seen = nlb_target_passive_total();
  health->started_ns = uv_hrtime();
  health->starting = true;
  nlb_health_sync(health);
  health->starting = false;
  return health;
}

void nlb_health_await_first_round(
    struct nlb_health *health,
    void (*done)(void *arg, const struct nlb_health_first_round *round),
    void *arg)
{
  struct nlb_list *pos, *tmp;
  uint64_t bound_ms = 0;

  health->first_done = done;
  health->first_arg = arg;
  /* States set since nlb_health_start (an upgrade's, carried over) count
   * as the first answer. */
  NLB_LIST_FOREACH_SAFE(pos, tmp, &health->checks)
  {
    struct check *check = NLB_CONTAINER_OF(pos, struct check, link);
    if (check->first_pending &&
        atomic_load(&check->target->state) != NLB_TARGET_INITIAL) {
      check->first_pending = false;
      health->first_pending--;
    }
  }
  /* Targets the registry brought since nlb_health_start are part of the
   * round too: they were there before the first flow. */
  health->starting = true;
  nlb_health_sync(health);
  health->starting = false;
  if (health->first_pending == 0) {
    end_first_round(health);
    return;
  }
  for (size_t g = 0; g < nlb_router_group_count(health->router); g++) {
    uint64_t timeout_ms =
        nlb_router_group(health->router, g)->settings.health.timeout_ms;
    if (timeout_ms > bound_ms)
      bound_ms = timeout_ms;
  }
  if (bound_ms > FIRST_ROUND_MAX_MS)
    bound_ms = FIRST_ROUND_MAX_MS;
  /* The probes start a turn of the loop after this: a check that times
   * out is a failure, an answer, not a target left unanswered. */
  bound_ms += FIRST_ROUND_MARGIN_MS;
  uv_update_time(health->loop); /* the start took a while since */
  uv_timer_start(&health->first_bound, on_first_bound, bound_ms, 0);
}

void nlb_health_stop(struct nlb_health *health)
{
  struct nlb_list *pos, *tmp;
  if (!health || health->stopped)
    return;
  health->stopped = true;
  uv_close((uv_handle_t *)&health->publish, NULL);
  uv_close((uv_handle_t *)&health->kick, NULL);
  uv_close((uv_handle_t *)&health->first_bound, NULL);
  NLB_LIST_FOREACH_SAFE(pos, tmp, &health->checks)
  {
    remove_check(NLB_CONTAINER_OF(pos, struct check, link));
  }
}

void nlb_health_free(struct nlb_health *health)
{
  free(health);
}
