/* The API's log lines, at the bottom of api/: every other file logs
 * through here, and this file calls none of them. */
#include <stdarg.h>
#include <stdio.h>

#include "conn.h"

void api_log(struct api_server *server, int level, const char *fmt, ...)
{
  char line[1024];
  va_list ap;

  if (server->log_event == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  server->log_event(server->log_arg, level, line);
}

void api_conn_log(struct api_conn *c, int level, const char *fmt, ...)
{
  char line[768];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  api_log(c->server, level, "api: %s: %s", c->peer, line);
}
