/* The streams of GET /v1/events: a cursor per stream, woken when this
 * node applies changes from the registry's feed (api_server_events), read
 * from the store as the protocol's peer takes the lines. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"

/* Events read from the store per call. */
#define EVENTS_BATCH 256

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
}

int api_event_stream_read(struct api_event_stream *stream, char **buf,
                          size_t *len)
{
  if (stream->ended)
    return 0;
  for (;;) {
    int r = api_events_read(stream->server, &stream->actor, &stream->cursor,
                            EVENTS_BATCH, buf, len);
    if (r == -ESTALE) {
      /* The reader fell behind event_retention: end the stream; asking
       * again with its last seq gets a 410 that says why. */
      api_event_stream_end(stream);
      return 0;
    }
    if (r < 0) {
      api_log(stream->server, 3, "api: cannot read events: %s", strerror(-r));
      return r;
    }
    if (r == 0 || *len > 0)
      return 0;
  }
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
}

void api_server_events(struct api_server *server,
                       const struct reg_event *events, size_t n,
                       uint64_t last_seq)
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
