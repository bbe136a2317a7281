/* Private to api/: the streams of GET /v1/events, whatever the protocol.
 *
 * A stream follows the registry's event log for one principal from a
 * cursor. Nothing is buffered here: the protocol asks for the next lines
 * (api_event_stream_read) when its peer can take them, so a slow reader
 * costs no memory. Reads run on the registry's thread, a batch of at most
 * EVENTS_BATCH events each, and at most EVENTS_READS_IN_FLIGHT of them
 * are queued there at once (the other streams wait their turn here, in
 * order): however many streams read a long log, any other request waits
 * behind at most that many batches in the registry thread's queue. When the
 * change feed brings an event the stream's principal may see
 * (api_server_changes), the server calls on_wake (the protocol only marks
 * itself and asks for a flush through api_conn_wake(), it writes nothing there:
 * that runs inside other callbacks).
 *
 * Ownership: the protocol owns each struct api_event_stream (inside its
 * own stream or connection object) and must call api_event_stream_stop()
 * before freeing it. Threads: the control thread only. */
#ifndef NLB_API_EVENTS_H
#define NLB_API_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exchange.h"

struct events_job;

struct api_event_stream {
  struct nlb_list link; /* api_server.event_streams while following */
  /* api_server.event_reads_waiting while its read waits for a turn */
  struct nlb_list read_link;
  struct api_server *server;
  uint64_t cursor; /* seq of the last event read */
  /* Lines read from the registry (on its thread) and not yet taken. */
  char *ready;
  size_t ready_len;
  struct events_job *job; /* a read under way */
  bool reading;           /* inside api_event_stream_read */
  struct reg_actor actor;
  char actor_name[REG_NAME_BUF];
  /* No more events will come: reload, shutdown, or the events after the
   * cursor were pruned. The protocol ends the answer cleanly. */
  bool ended;
  void (*on_wake)(struct api_event_stream *stream);
};

/* Starts following after x->resp.events_after for x's principal; on_wake
 * as above. */
void api_event_stream_start(struct api_event_stream *stream,
                            struct api_server *server,
                            const struct api_exchange *x,
                            void (*on_wake)(struct api_event_stream *));

/* Appends the next lines visible to the stream's principal to *buf (*len
 * bytes; malloc'd/realloc'd, owned by the caller). The registry is read on
 * its own thread: when no lines are ready this starts a read and answers
 * with none; on_wake follows when they are. Returns 0 (check *len: 0 means
 * nothing new yet; stream->ended may have been set) or a negative errno
 * (logged). */
int api_event_stream_read(struct api_event_stream *stream, char **buf,
                          size_t *len);

/* Marks the stream ended (reload, shutdown) and stops following. */
void api_event_stream_end(struct api_event_stream *stream);

/* Stops following (idempotent; also for a zeroed stream never started):
 * a read under way is dropped; the memory stays the caller's. */
void api_event_stream_stop(struct api_event_stream *stream);

/* The change feed brought events[0..n) through last_seq: streams that may
 * see one of them (every stream behind, after a resync) wake up. */
void api_events_wake(struct api_server *server, const struct reg_event *events,
                     size_t n, uint64_t last_seq);

/* On the registry's thread: appends one JSON line per event visible to
 * actor with seq > *cursor to *buf (malloc'd/realloc'd, *len bytes), at
 * most limit of them; advances *cursor past every event the answer covers,
 * visible or not. Returns the number of events added (0: none yet),
 * -ESTALE when events after *cursor were pruned (the reader lagged behind
 * event_retention), or another negative errno. */
int api_events_read(struct reg *reg, const struct reg_actor *actor,
                    uint64_t *cursor, size_t limit, char **buf, size_t *len);

#endif
