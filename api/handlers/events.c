/* GET /v1/events: checks where the stream starts (?after=, or now); the
 * stream itself is api/events.c's. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "handlers.h"

/* ---- events ------------------------------------------------------------- */

void api_handle_events(const struct api_request *req, struct api_response *resp)
{
  static const char *const names[] = {"after", NULL};
  char value[32], *end;
  uint64_t after;

  if (!api_check_query(req, resp, names))
    return;
  int r = api_query_get(req->match->query, "after", value, sizeof value);
  if (r == -ENOENT) {
    /* No cursor: only what happens from now on. */
    if (reg_last_seq(req->reg, &after) != 0) {
      api_respond_error(resp, 500, "Internal", "cannot read the event log");
      return;
    }
  } else {
    errno = 0;
    after = r == 0 && value[0] >= '0' && value[0] <= '9'
                ? strtoull(value, &end, 10)
                : 0;
    if (r != 0 || value[0] < '0' || value[0] > '9' || *end != '\0' ||
        errno != 0) {
      api_respond_error(resp, 400, "InvalidValue",
                        "after: must be an event sequence number");
      return;
    }
    uint64_t first;
    if (reg_first_seq(req->reg, &first) != 0) {
      api_respond_error(resp, 500, "Internal", "cannot read the event log");
      return;
    }
    if (after + 1 < first) {
      /* Like a Kubernetes watch on a compacted revision: the client must
       * read the current state again, then follow from there. */
      api_respond_error(resp, 410, "EventsPruned",
                        "events after %llu are no longer kept "
                        "(registry.event_retention); the oldest kept is %llu: "
                        "read the current state, then follow with after=%llu",
                        (unsigned long long)after, (unsigned long long)first,
                        (unsigned long long)(first - 1));
      return;
    }
  }
  resp->status = 200;
  resp->content_type = "application/x-ndjson";
  resp->events = true;
  resp->events_after = after;
}
