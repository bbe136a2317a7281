/* The streams of GET /v1/events: a cursor per stream, woken when this
 * node applies changes from the registry's feed (api_server_changes), read
 * from the store as the protocol's peer takes the lines; and the lines
 * themselves, one JSON object per event, shaped on the registry's thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "events.h"
#include "nlb/api-json.h"

/* Events read from the store per call. */
#define EVENTS_BATCH 128
/* Reads queued on the registry's thread at once, all streams together.
 * One: another request waits behind one batch at most; the thread still
 * reads back to back while streams wait (40 operator streams got 12 to
 * 27 MB/s with 1 x 128, 11 MB/s with 2 x 256). */
#define EVENTS_READS_IN_FLIGHT 1

/* ---- reading the log: on the registry's thread -------------------------- */

/* Endpoint events name the endpoint; target and node events what they are
 * about instead, and a service's modify event the service alone. */
static json_t *event_json(const struct reg_event *ev)
{
  if (ev->endpoint_id[0] == '\0' && ev->service_id[0] != '\0')
    return json_pack("{s:I,s:o,s:s,s:s,s:s}", "seq", (json_int_t)ev->seq,
                     "time", api_json_time(ev->time), "type",
                     reg_event_type_name(ev->type), "service_id",
                     ev->service_id, "principal", ev->principal);
  if (ev->target[0] != '\0')
    return json_pack("{s:I,s:o,s:s,s:s,s:s,s:s}", "seq", (json_int_t)ev->seq,
                     "time", api_json_time(ev->time), "type",
                     reg_event_type_name(ev->type), "target_group",
                     ev->target_group, "target", ev->target, "principal",
                     ev->principal);
  if (ev->node[0] != '\0')
    return json_pack("{s:I,s:o,s:s,s:s,s:s}", "seq", (json_int_t)ev->seq,
                     "time", api_json_time(ev->time), "type",
                     reg_event_type_name(ev->type), "node", ev->node,
                     "principal", ev->principal);
  if (ev->token_id[0] != '\0')
    return json_pack("{s:I,s:o,s:s,s:s,s:s,s:s}", "seq", (json_int_t)ev->seq,
                     "time", api_json_time(ev->time), "type",
                     reg_event_type_name(ev->type), "name", ev->subject,
                     "token_id", ev->token_id, "principal", ev->principal);
  if (ev->subject[0] != '\0')
    return json_pack("{s:I,s:o,s:s,s:s,s:s}", "seq", (json_int_t)ev->seq,
                     "time", api_json_time(ev->time), "type",
                     reg_event_type_name(ev->type),
                     ev->type == REG_EVENT_NETWORK_CREATE ||
                             ev->type == REG_EVENT_NETWORK_DELETE
                         ? "network"
                         : "name",
                     ev->subject, "principal", ev->principal);
  return json_pack("{s:I,s:o,s:s,s:s,s:s,s:s,s:s}", "seq", (json_int_t)ev->seq,
                   "time", api_json_time(ev->time), "type",
                   reg_event_type_name(ev->type), "service_id", ev->service_id,
                   "endpoint_id", ev->endpoint_id, "principal", ev->principal,
                   "state", reg_state_name(ev->state));
}

static int append_line(json_t *value, char **buf, size_t *len)
{
  size_t line_len;
  char *line = value != NULL ? api_json_dump(value, &line_len) : NULL;
  char *grown = line != NULL ? realloc(*buf, *len + line_len) : NULL;

  json_decref(value);
  if (grown == NULL) {
    free(line);
    return -ENOMEM;
  }
  memcpy(grown + *len, line, line_len);
  *buf = grown;
  *len += line_len;
  free(line);
  return 0;
}

int api_events_read(struct reg *reg, const struct reg_actor *actor,
                    uint64_t *cursor, size_t limit, char **buf, size_t *len)
{
  struct reg_event *events = NULL;
  size_t n = 0;
  uint64_t first, through;
  int r = reg_first_seq(reg, &first);

  /* Events after the cursor were pruned while this reader lagged: it
   * cannot be given a complete sequence any more. */
  if (r == 0 && *cursor + 1 < first)
    r = -ESTALE;
  if (r == 0)
    r = reg_events_after(reg, actor, *cursor, limit, &events, &n, &through);
  for (size_t i = 0; r == 0 && i < n; i++)
    r = append_line(event_json(&events[i]), buf, len);
  free(events);
  if (r < 0)
    return r;
  *cursor = through;
  return (int)n;
}

/* ---- streams: on the control thread ------------------------------------- */

void api_event_stream_start(struct api_event_stream *stream,
                            struct api_server *server,
                            const struct api_exchange *x,
                            void (*on_wake)(struct api_event_stream *))
{
  stream->server = server;
  stream->cursor = x->resp.events_after;
  snprintf(stream->actor_name, sizeof stream->actor_name, "%s",
           x->authenticated ? x->principal : "");
  stream->actor.name = stream->actor_name;
  stream->actor.role = x->authenticated ? x->role : REG_ROLE_CONSUMER;
  stream->ended = false;
  stream->on_wake = on_wake;
  nlb_list_append(&server->event_streams, &stream->link);
  nlb_list_init(&stream->read_link);
}

/* One read of the event log for a stream, on the registry's thread. */
struct events_job {
  struct api_server *server;
  struct api_event_stream *stream; /* NULL once the stream stopped */
  struct reg_actor actor;
  char actor_name[REG_NAME_BUF];
  uint64_t cursor;
  char *lines;
  size_t len;
  int result;
};

static void events_job_run(struct reg *reg, void *arg)
{
  struct events_job *job = arg;

  job->result = api_events_read(reg, &job->actor, &job->cursor, EVENTS_BATCH,
                                &job->lines, &job->len);
}

static void next_reads(struct api_server *server);

/* On the control thread: the lines wait in the stream until the protocol
 * takes them. */
static void events_job_done(void *arg)
{
  struct events_job *job = arg;
  struct api_event_stream *stream = job->stream;
  struct api_server *server = job->server;

  server->event_reads_in_flight--;
  if (stream == NULL)
    goto out;
  stream->job = NULL;
  if (job->result == -ESTALE) {
    /* The reader fell behind event_retention: end the stream; asking again
     * with its last seq gets a 410 that says why. */
    api_event_stream_end(stream);
  } else if (job->result < 0) {
    api_log(stream->server, 3, "api: cannot read events: %s",
            strerror(-job->result));
    goto out;
  } else {
    stream->cursor = job->cursor;
    free(stream->ready);
    stream->ready = job->lines;
    stream->ready_len = job->len;
    job->lines = NULL;
    /* A read that found nothing visible may have moved the cursor: if
     * more came meanwhile, api_events_wake wakes the stream again. */
    if (stream->ready_len == 0)
      goto out;
  }
  if (!stream->reading)
    stream->on_wake(stream);
out:
  free(job->lines);
  free(job);
  next_reads(server);
}

/* Queues a read of stream's next batch on the registry's thread. */
static int submit_read(struct api_event_stream *stream)
{
  struct events_job *job = calloc(1, sizeof *job);
  struct api_server *server = stream->server;

  if (job == NULL)
    return -ENOMEM;
  job->server = server;
  job->stream = stream;
  snprintf(job->actor_name, sizeof job->actor_name, "%s", stream->actor_name);
  job->actor.name = job->actor_name;
  job->actor.role = stream->actor.role;
  job->cursor = stream->cursor;
  stream->job = job;
  /* Counted first: an inline registry calls events_job_done at once. */
  server->event_reads_in_flight++;
  if (server->registry->submit(server->registry_ctx, events_job_run,
                               events_job_done, job) != 0) {
    server->event_reads_in_flight--;
    stream->job = NULL;
    free(job);
    return -ESHUTDOWN;
  }
  return 0;
}

/* Gives the streams waiting for a turn theirs, oldest first. */
static void next_reads(struct api_server *server)
{
  while (server->event_reads_in_flight < EVENTS_READS_IN_FLIGHT &&
         !nlb_list_empty(&server->event_reads_waiting)) {
    struct api_event_stream *stream = NLB_CONTAINER_OF(
        server->event_reads_waiting.next, struct api_event_stream, read_link);
    nlb_list_remove(&stream->read_link);
    int r = submit_read(stream);
    if (r < 0) {
      api_log(server, 3, "api: cannot read events: %s", strerror(-r));
      api_event_stream_end(stream);
      stream->on_wake(stream); /* the protocol ends its answer */
    }
  }
}

/* Starts a read, or puts the stream in line for one. */
static int start_read(struct api_event_stream *stream)
{
  struct api_server *server = stream->server;

  if (server->registry == NULL)
    return -ESHUTDOWN;
  if (server->event_reads_in_flight < EVENTS_READS_IN_FLIGHT)
    return submit_read(stream);
  if (nlb_list_empty(&stream->read_link))
    nlb_list_append(&server->event_reads_waiting, &stream->read_link);
  return 0;
}

int api_event_stream_read(struct api_event_stream *stream, char **buf,
                          size_t *len)
{
  int r = 0;

  if (stream->ready_len == 0 && !stream->ended && stream->job == NULL &&
      nlb_list_empty(&stream->read_link)) {
    stream->reading = true;
    r = start_read(stream); /* an inline registry fills ready at once */
    stream->reading = false;
  }
  if (r < 0) {
    api_log(stream->server, 3, "api: cannot read events: %s", strerror(-r));
    return r;
  }
  if (stream->ready_len > 0) {
    char *grown = realloc(*buf, *len + stream->ready_len);
    if (grown == NULL)
      return -ENOMEM;
    memcpy(grown + *len, stream->ready, stream->ready_len);
    *buf = grown;
    *len += stream->ready_len;
    free(stream->ready);
    stream->ready = NULL;
    stream->ready_len = 0;
  }
  return 0;
}

void api_event_stream_end(struct api_event_stream *stream)
{
  stream->ended = true;
  api_event_stream_stop(stream);
}

void api_event_stream_stop(struct api_event_stream *stream)
{
  if (stream->link.next != NULL)
    nlb_list_remove(&stream->link);
  if (stream->read_link.next != NULL)
    nlb_list_remove(&stream->read_link);
  if (stream->job != NULL)
    stream->job->stream = NULL;
  stream->job = NULL;
  free(stream->ready);
  stream->ready = NULL;
  stream->ready_len = 0;
}

void api_events_wake(struct api_server *server, const struct reg_event *events,
                     size_t n, uint64_t last_seq)
{
  struct nlb_list *pos, *tmp;

  NLB_LIST_FOREACH_SAFE(pos, tmp, &server->event_streams)
  {
    struct api_event_stream *stream =
        NLB_CONTAINER_OF(pos, struct api_event_stream, link);
    bool visible = false;

    if (last_seq <= stream->cursor)
      continue;
    for (size_t i = 0; i < n && !visible; i++)
      visible = events[i].seq > stream->cursor &&
                reg_event_visible(&events[i], &stream->actor);
    /* A resync carries no events: every stream behind looks. */
    if (visible || n == 0)
      stream->on_wake(stream);
  }
}
