#include "nlb/health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/list.h"
#include "nlb/log.h"
#include "nlb/proxy_v2.h"

/* Room for an HTTP status line; what a target sends past it is ignored. */
#define RESPONSE_MAX 512

struct check;

/* One probe in flight: its own handles, so a check can be removed while a
 * probe is still closing. */
struct attempt {
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
};

struct check {
  struct nlb_list link;
  struct nlb_health *health;
  struct nlb_group *group;
  struct nlb_target *target; /* one reference */
  uv_timer_t timer;
  struct attempt *attempt;
  bool seen;
};

struct nlb_health {
  uv_loop_t *loop;
  struct nlb_router *router;
  struct nlb_list checks;
  uint64_t random_state;
  uint64_t synced_generation; /* the router's, when checks last matched */
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
    if (state != NLB_TARGET_HEALTHY && *consecutive_ok >= healthy_threshold)
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
  if (next != state)
    nlb_router_set_target_state(check->health->router, check->group, target,
                                next, reason, uv_now(check->health->loop));
}

static void on_attempt_handle_closed(uv_handle_t *handle)
{
  struct attempt *attempt = handle->data;
  if (--attempt->open_handles == 0)
    free(attempt);
}

static void on_check_timer(uv_timer_t *timer);

static void schedule(struct check *check, uint64_t delay_ms)
{
  uv_timer_start(&check->timer, on_check_timer, delay_ms, 0);
}

/* Ends a probe once: records its result, closes its handles, schedules the
 * next one. */
static void finish_attempt(struct attempt *attempt, bool passed,
                           const char *reason)
{
  struct check *check = attempt->check;

  if (attempt->done)
    return;
  attempt->done = true;
  uv_close((uv_handle_t *)&attempt->tcp, on_attempt_handle_closed);
  uv_close((uv_handle_t *)&attempt->timeout, on_attempt_handle_closed);
  if (!check)
    return;
  check->attempt = NULL;
  record_result(check, passed, reason);
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

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  struct attempt *attempt = stream->data;
  char reason[64];
  int code;

  if (nread == 0 || attempt->done)
    return;
  if (nread < 0) {
    finish_attempt(attempt, false,
                   nread == UV_EOF ? "closed before status line"
                                   : uv_strerror((int)nread));
    return;
  }
  attempt->response_len += (size_t)nread;
  /* Judge only a complete status line, never one short read. */
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
    finish_attempt(attempt, false, uv_strerror(status));
    return;
  }
  if (!attempt->check ||
      attempt->check->group->settings.health.protocol == NLB_HEALTH_TCP) {
    finish_attempt(attempt, true, "connect ok");
    return;
  }
  uv_read_start((uv_stream_t *)&attempt->tcp, on_alloc, on_read);
}

static size_t build_request(struct attempt *attempt, const struct check *check)
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
  if (hc->protocol == NLB_HEALTH_HTTP) {
    n = snprintf(attempt->request + len, sizeof(attempt->request) - len,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: nlb-health-check"
                 "\r\nConnection: close\r\n\r\n",
                 hc->path, hc->host ? hc->host : check->target->name);
    if (n > 0 && (size_t)n < sizeof(attempt->request) - len)
      len += (size_t)n;
  }
  return len;
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
    finish_attempt(attempt, false, reason);
    return;
  }
  if (!check) {
    finish_attempt(attempt, false, "check removed");
    return;
  }
  size_t len = build_request(attempt, check);
  if (len == 0) {
    finish_attempt(attempt, true, "connect ok");
    return;
  }
  uv_buf_t buf = uv_buf_init(attempt->request, (unsigned)len);
  attempt->write.data = attempt;
  if (uv_write(&attempt->write, (uv_stream_t *)&attempt->tcp, &buf, 1,
               on_written) < 0)
    finish_attempt(attempt, false, "write failed");
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
    finish_attempt(attempt, false, uv_strerror(rc));
}

static void on_check_timer(uv_timer_t *timer)
{
  struct check *check = timer->data;
  if (!check->attempt && !check->health->stopped)
    start_attempt(check);
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
  nlb_list_remove(&check->link);
  uv_close((uv_handle_t *)&check->timer, on_check_closed);
}

static bool group_holds(struct nlb_router *router, struct nlb_group *group,
                        struct nlb_target *target)
{
  for (size_t g = 0; g < nlb_router_group_count(router); g++) {
    if (nlb_router_group(router, g) != group)
      continue;
    for (size_t i = 0; i < group->n_targets; i++)
      if (group->targets[i] == target)
        return true;
  }
  return false;
}

void nlb_health_sync(struct nlb_health *health)
{
  struct nlb_list *pos, *tmp;

  if (health->stopped)
    return;
  health->synced_generation = nlb_router_generation(health->router);
  NLB_LIST_FOREACH_SAFE(pos, tmp, &health->checks)
  {
    struct check *check = NLB_CONTAINER_OF(pos, struct check, link);
    int state = atomic_load(&check->target->state);
    check->seen = false;
    if (state == NLB_TARGET_DRAINING || state == NLB_TARGET_UNUSED ||
        !group_holds(health->router, check->group, check->target))
      remove_check(check);
  }
  for (size_t g = 0; g < nlb_router_group_count(health->router); g++) {
    struct nlb_group *group = nlb_router_group(health->router, g);
    for (size_t i = 0; i < group->n_targets; i++) {
      struct nlb_target *target = group->targets[i];
      int state = atomic_load(&target->state);
      bool found = false;
      if (state == NLB_TARGET_DRAINING || state == NLB_TARGET_UNUSED)
        continue;
      NLB_LIST_FOREACH_SAFE(pos, tmp, &health->checks)
      {
        struct check *check = NLB_CONTAINER_OF(pos, struct check, link);
        if (check->group == group && check->target == target)
          found = true;
      }
      if (found)
        continue;
      struct check *check = calloc(1, sizeof(*check));
      if (!check) {
        NLB_LOG_EVENT(NLB_LOG_ERROR, "out_of_memory",
                      "health check for {target}: out of memory",
                      NLB_LOG_STR("target", target->name));
        continue;
      }
      check->health = health;
      check->group = group;
      check->target = target;
      nlb_target_acquire(target);
      uv_timer_init(health->loop, &check->timer);
      check->timer.data = check;
      nlb_list_append(&health->checks, &check->link);
      /* The first probe goes out soon, at a random point of a short
       * window, so a new target can become healthy quickly. */
      uint64_t first = group->settings.health.interval_ms;
      if (first > 1000)
        first = 1000;
      schedule(check, next_random(health) % (first + 1));
    }
  }
}

void nlb_health_tick(struct nlb_health *health, uint64_t now_ms)
{
  struct nlb_list *pos, *tmp;

  /* Targets added or drained (reload, API) since the last look. */
  if (nlb_router_generation(health->router) != health->synced_generation)
    nlb_health_sync(health);
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
  nlb_health_sync(health);
  return health;
}

void nlb_health_stop(struct nlb_health *health)
{
  struct nlb_list *pos, *tmp;
  if (!health || health->stopped)
    return;
  health->stopped = true;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &health->checks)
  {
    remove_check(NLB_CONTAINER_OF(pos, struct check, link));
  }
}

void nlb_health_free(struct nlb_health *health)
{
  free(health);
}
