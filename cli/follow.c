/* --wait and --watch: the event stream tells when to look again.
 *
 * Both read GET /v1/events on a connection of their own while they make
 * their other requests on fresh ones (http.c), so a look never waits
 * behind the stream. Events say that something changed, not everything
 * that did (a service made or deleted, a target's health, a node's last
 * heartbeat make none), so both also look at intervals; and both look
 * first once the stream has begun, so that no change falls between the
 * look and the stream. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* --wait looks at these intervals, doubling, when no event calls it. */
#define WAIT_FIRST_MS 500L
#define WAIT_MAX_MS 5000L
/* --watch reads its list this often when no event calls it, and at most
 * this often when events do. */
#define WATCH_POLL_MS 2000L
#define WATCH_GAP_MS 200L

static long now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(long ms)
{
  if (ms <= 0)
    return;
  struct timespec pause = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&pause, NULL); /* a signal cuts it short: that is fine */
}

/* The stream's path: from now, or after the last event seen when it is
 * read again after nlbd ended it. */
static char *events_path(const char *last_seq)
{
  return last_seq[0] != '\0' ? cli_path("/v1/events?after=%s", last_seq)
                             : cli_path("/v1/events");
}

/* Parses an event line and keeps its seq in last_seq; NULL when it is not
 * an event. */
static json_t *event_of(const char *line, char *last_seq, size_t size)
{
  json_t *event = json_loads(line, 0, NULL);
  json_t *seq = json_object_get(event, "seq");
  if (json_is_integer(seq))
    snprintf(last_seq, size, "%" JSON_INTEGER_FORMAT, json_integer_value(seq));
  return event;
}

/* ---- --wait ---------------------------------------------------------------
 */

struct wait {
  const struct cli_context *context;
  cli_wait_check check;
  void *arg;
  const json_t *ids;
  long deadline;
  long next_look;
  long interval;
  bool look_now; /* an event named one of ids */
  enum cli_wait_state state;
  char where[256];
  char last_seq[32];
};

static bool names_one_of(const json_t *event, const json_t *ids)
{
  static const char *const keys[] = {"endpoint_id", "service_id"};
  json_t *id;
  size_t i;

  for (size_t k = 0; k < 2; k++) {
    const char *value = json_string_value(json_object_get(event, keys[k]));
    json_array_foreach(ids, i, id)
    {
      if (value != NULL && json_is_string(id) &&
          strcmp(value, json_string_value(id)) == 0)
        return true;
    }
  }
  return false;
}

static int wait_on_line(const char *line, void *arg)
{
  struct wait *w = arg;
  json_t *event = event_of(line, w->last_seq, sizeof w->last_seq);
  if (event != NULL && names_one_of(event, w->ids))
    w->look_now = true;
  json_decref(event);
  return 0;
}

/* Looks when it is time; true once the wait is over: done, failed, or
 * out of time. */
static bool wait_look(struct wait *w)
{
  if (w->look_now || now_ms() >= w->next_look) {
    w->look_now = false;
    w->state = w->check(w->context, w->arg, w->where, sizeof w->where);
    w->next_look = now_ms() + w->interval;
    w->interval = w->interval * 2 < WAIT_MAX_MS ? w->interval * 2 : WAIT_MAX_MS;
    if (w->state != CLI_WAIT_PENDING)
      return true;
  }
  return now_ms() >= w->deadline;
}

static int wait_on_tick(bool started, void *arg)
{
  struct wait *w = arg;
  if (!started)
    return now_ms() >= w->deadline;
  return wait_look(w);
}

/* "5m", "90s", "1500ms": how --wait's timeout was given, near enough. */
static void duration_text(long ms, char *text, size_t size)
{
  if (ms % 3600000 == 0)
    snprintf(text, size, "%ldh", ms / 3600000);
  else if (ms % 60000 == 0)
    snprintf(text, size, "%ldm", ms / 60000);
  else if (ms % 1000 == 0)
    snprintf(text, size, "%lds", ms / 1000);
  else
    snprintf(text, size, "%ldms", ms);
}

/* Reads the stream until the wait is over, or the stream ends or cannot
 * be read (*readable false: the API refused it; look by polling). */
static int wait_stream(struct wait *w, bool *readable)
{
  struct cli_response response;
  char *path = events_path(w->last_seq);
  long started = now_ms();
  int r = cli_http_stream(&w->context->settings, path, 0, wait_on_line,
                          wait_on_tick, w, &response);
  free(path);
  if (r != CLI_EXIT_OK)
    return r;
  if (response.status != 0 && (response.status < 200 || response.status >= 300))
    *readable = false;
  cli_response_free(&response);
  /* nlbd ended the stream (a reload): read it again, not in a spin. */
  if (*readable && now_ms() - started < 1000)
    pause_ms(1000);
  w->look_now = true;
  return CLI_EXIT_OK;
}

int cli_wait(const struct cli_context *context, long timeout_ms,
             const char *what, cli_wait_check check, void *arg,
             const json_t *ids)
{
  struct wait w = {.context = context, .check = check, .arg = arg, .ids = ids};
  bool readable = true;
  char limit[32];

  w.deadline = now_ms() + timeout_ms;
  w.interval = WAIT_FIRST_MS;
  /* Most waits are over at the first look: no stream for those. */
  w.state = check(context, arg, w.where, sizeof w.where);
  w.next_look = 0;
  while (w.state == CLI_WAIT_PENDING && now_ms() < w.deadline) {
    if (readable) {
      int r = wait_stream(&w, &readable);
      if (r != CLI_EXIT_OK)
        return r;
    } else if (!wait_look(&w)) {
      long next = w.next_look < w.deadline ? w.next_look : w.deadline;
      pause_ms(next - now_ms());
    }
  }
  if (w.state == CLI_WAIT_DONE)
    return CLI_EXIT_OK;
  if (w.state == CLI_WAIT_PENDING) {
    duration_text(timeout_ms, limit, sizeof limit);
    fprintf(stderr, "nlbctl: timed out after %s waiting for %s%s%s%s\n", limit,
            what, w.where[0] != '\0' ? " (" : "", w.where,
            w.where[0] != '\0' ? ")" : "");
  }
  return CLI_EXIT_ERROR;
}

/* ---- --watch --------------------------------------------------------------
 */

static volatile sig_atomic_t interrupted;

static void on_interrupt(int signo)
{
  (void)signo;
  interrupted = 1;
}

struct watch {
  const struct cli_context *context;
  const struct cli_list *list;
  struct cli_table table;
  struct cli_column *shown;
  size_t n_shown;
  char **seen; /* the rows of the last read, as text */
  size_t n_seen;
  bool first_done;
  bool changed; /* an event with the list's key came */
  long last_read;
  int result;
  char last_seq[32];
};

static bool was_seen(const struct watch *w, const char *text)
{
  for (size_t i = 0; i < w->n_seen; i++)
    if (strcmp(w->seen[i], text) == 0)
      return true;
  return false;
}

/* A row as its text: its cells (table), or the item's JSON. */
static char *row_text(const struct watch *w, const json_t *row)
{
  if (!cli_format_document(w->context))
    return cli_row_text(row, w->shown, w->n_shown);
  char *text = json_dumps(row, JSON_COMPACT | JSON_SORT_KEYS);
  if (text == NULL)
    cli_out_of_memory();
  return text;
}

static void print_items(const struct watch *w, const json_t *rows)
{
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row)
  {
    if (w->context->format == CLI_FORMAT_YAML)
      fputs("---\n", stdout);
    cli_print_value(w->context, row);
  }
}

/* Reads the list and prints the rows that were not there last time. */
static int watch_read(struct watch *w)
{
  json_t *merged;
  const struct cli_list *list = w->list;
  int r = cli_list(w->context, list->path, list->query, list->key,
                   list->page_size, &merged, NULL);
  if (r != CLI_EXIT_OK)
    return r;
  json_t *rows = cli_format_document(w->context)
                     ? json_incref(json_object_get(merged, list->key))
                     : cli_list_rows(list, merged);
  json_t *fresh = json_array(), *row;
  char **texts = calloc(json_array_size(rows) + 1, sizeof *texts);
  size_t i;
  if (fresh == NULL || texts == NULL)
    cli_out_of_memory();
  json_array_foreach(rows, i, row)
  {
    texts[i] = row_text(w, row);
    if (!was_seen(w, texts[i]))
      json_array_append(fresh, row);
  }
  if (cli_format_document(w->context))
    print_items(w, fresh);
  else if (!w->first_done && json_array_size(rows) == 0)
    fprintf(stderr, "No %s found.\n", list->what);
  else
    cli_table_print(&w->table, fresh);
  fflush(stdout);
  cli_strings_free(w->seen, w->n_seen);
  w->seen = texts;
  w->n_seen = json_array_size(rows);
  w->first_done = true;
  w->changed = false;
  w->last_read = now_ms();
  json_decref(fresh);
  json_decref(rows);
  json_decref(merged);
  return CLI_EXIT_OK;
}

static int watch_on_line(const char *line, void *arg)
{
  struct watch *w = arg;
  json_t *event = event_of(line, w->last_seq, sizeof w->last_seq);
  if (json_object_get(event, w->list->event_key) != NULL)
    w->changed = true;
  json_decref(event);
  return 0;
}

/* Reads the list when it is time; true when the watch is over. */
static bool watch_look(struct watch *w)
{
  long since = now_ms() - w->last_read;
  if (interrupted)
    return true;
  if (!w->first_done || (w->changed && since >= WATCH_GAP_MS) ||
      since >= WATCH_POLL_MS)
    w->result = watch_read(w);
  return w->result != CLI_EXIT_OK || interrupted;
}

static int watch_on_tick(bool started, void *arg)
{
  struct watch *w = arg;
  if (!started)
    return interrupted;
  return watch_look(w);
}

static void catch_interrupt(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

int cli_watch_list(const struct cli_context *context,
                   const struct cli_list *list)
{
  struct watch w = {.context = context, .list = list};
  bool readable = true;

  catch_interrupt();
  w.n_shown =
      cli_columns_shown(context, list->columns, list->n_columns, &w.shown);
  cli_table_init(&w.table, w.shown, w.n_shown);
  while (w.result == CLI_EXIT_OK && !interrupted) {
    if (!readable) {
      if (!watch_look(&w))
        pause_ms(WATCH_GAP_MS);
      continue;
    }
    struct cli_response response;
    char *path = events_path(w.last_seq);
    long started = now_ms();
    int r = cli_http_stream(&context->settings, path, 0, watch_on_line,
                            watch_on_tick, &w, &response);
    free(path);
    if (r != CLI_EXIT_OK) {
      w.result = r;
      break;
    }
    if (response.status != 0 &&
        (response.status < 200 || response.status >= 300))
      readable = false;
    cli_response_free(&response);
    if (readable && w.result == CLI_EXIT_OK && !interrupted &&
        now_ms() - started < 1000)
      pause_ms(1000);
    w.changed = true; /* nlbd ended the stream: what did it miss? */
  }
  cli_table_free(&w.table);
  cli_strings_free(w.seen, w.n_seen);
  free(w.shown);
  return w.result;
}
