/* The DNS responder (nlb/dns.c) alone, with a record table given on the
 * command line, for the end-to-end test until nlbd wires it to the
 * registry:
 *
 *   dns_responder [--zone Z] [--ttl S] [--negative-ttl S] [--idle-ms MS]
 *                 [--log-per-second N] [--json] [--tcp-per-client N]
 *                 [--tcp-budget N]
 *                 --network NAME,NETNS,ADDRESS[:PORT] ...
 *                 --record NETWORK,NAME,ADDRESS ...
 *
 * NETNS "-" is the host. Prints "ready" on stdout once every network
 * answers, then reads commands on stdin, one a line, and answers each with
 * "ok" or "error: ...":
 *   add NETWORK NAME ADDRESS     remove NETWORK NAME ADDRESS
 *   metrics                      (the Prometheus text, then a line ".")
 * Stops cleanly at the end of stdin or on SIGTERM. Access and event log
 * lines go to stderr. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "nlb/dns/dns.h"
#include "nlb/log.h"

#define MAX_NETWORKS 16
#define LINE_MAX_LEN 1024

static struct {
  uv_loop_t loop;
  struct nlb_dns *dns;
  char *networks[MAX_NETWORKS];
  size_t n_networks;
  uv_pipe_t input;
  uv_timer_t ready_check;
  uv_signal_t sigterm;
  char line[LINE_MAX_LEN];
  size_t line_len;
  bool stopping;
} tool;

static void usage(void)
{
  fprintf(stderr,
          "usage: dns_responder [--zone Z] [--ttl S] [--negative-ttl S] "
          "[--idle-ms MS] [--log-per-second N] [--json] "
          "[--tcp-per-client N] [--tcp-budget N] "
          "--network NAME,NETNS,ADDRESS ... --record NETWORK,NAME,ADDRESS "
          "...\n");
  exit(2);
}

static int parse_address(const char *text, union nlb_sockaddr *addr)
{
  if (nlb_addr_parse(text, addr) == 0)
    return 0;
  return nlb_addr_parse_ip(text, 0, addr);
}

/* Splits "a,b,c" in place into three fields. */
static void split3(char *text, char **fields)
{
  for (int i = 0; i < 3; i++) {
    fields[i] = text;
    if (i < 2) {
      text = strchr(text, ',');
      if (!text)
        usage();
      *text++ = '\0';
    }
  }
}

static void stop(void)
{
  if (tool.stopping)
    return;
  tool.stopping = true;
  nlb_dns_shutdown(tool.dns);
  uv_close((uv_handle_t *)&tool.input, NULL);
  uv_close((uv_handle_t *)&tool.ready_check, NULL);
  uv_close((uv_handle_t *)&tool.sigterm, NULL);
}

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void reply(const char *fmt, ...)
{
  va_list args;
  va_start(args, fmt);
  vprintf(fmt, args);
  va_end(args);
  fflush(stdout);
}

static void run_command(char *line)
{
  char *verb = strtok(line, " ");
  char *network = strtok(NULL, " ");
  char *name = strtok(NULL, " ");
  char *address = strtok(NULL, " ");
  union nlb_sockaddr addr;
  int rc;

  if (!verb)
    return;
  if (strcmp(verb, "metrics") == 0) {
    char *text = nlb_dns_metrics(tool.dns);
    reply("%s.\n", text ? text : "");
    free(text);
    return;
  }
  if ((strcmp(verb, "add") != 0 && strcmp(verb, "remove") != 0) || !address ||
      parse_address(address, &addr) < 0) {
    reply("error: bad command\n");
    return;
  }
  rc = verb[0] == 'a' ? nlb_dns_add_record(tool.dns, network, name, &addr)
                      : nlb_dns_remove_record(tool.dns, network, name, &addr);
  if (rc < 0)
    reply("error: %s\n", strerror(-rc));
  else
    reply("ok\n");
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
  static char chunk[4096];
  *buf = uv_buf_init(chunk, sizeof(chunk));
}

static void on_input(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  if (nread < 0) {
    stop();
    return;
  }
  for (ssize_t i = 0; i < nread; i++) {
    char c = buf->base[i];
    if (c != '\n') {
      if (tool.line_len + 1 < sizeof(tool.line))
        tool.line[tool.line_len++] = c;
      continue;
    }
    tool.line[tool.line_len] = '\0';
    tool.line_len = 0;
    run_command(tool.line);
  }
}

static void on_ready_check(uv_timer_t *timer)
{
  for (size_t i = 0; i < tool.n_networks; i++) {
    int rc = nlb_dns_network_error(tool.dns, tool.networks[i]);
    if (rc < 0)
      return;
  }
  reply("ready\n");
  uv_timer_stop(timer);
}

static void on_sigterm(uv_signal_t *signal, int signum)
{
  stop();
}

int main(int argc, char **argv)
{
  struct nlb_dns_settings settings = {.zone = "nlb.internal", .ttl = 30};
  int rc;

  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&tool.loop);
  nlb_log_start(&(struct nlb_log_settings){.access = "stderr",
                                           .events = "stderr",
                                           .level = NLB_LOG_INFO,
                                           .stderr_priority = 0});
  /* Settings first: the responder is created with them. */
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--json") == 0)
      settings.access_json = true;
    else if (i + 1 >= argc)
      usage();
    else if (strcmp(arg, "--zone") == 0)
      settings.zone = argv[++i];
    else if (strcmp(arg, "--ttl") == 0)
      settings.ttl = (uint32_t)atoi(argv[++i]);
    else if (strcmp(arg, "--negative-ttl") == 0)
      settings.negative_ttl = (uint32_t)atoi(argv[++i]);
    else if (strcmp(arg, "--idle-ms") == 0)
      settings.tcp_idle_timeout_ms = (uint64_t)atoll(argv[++i]);
    else if (strcmp(arg, "--log-per-second") == 0)
      settings.log_per_second = (unsigned)atoi(argv[++i]);
    else if (strcmp(arg, "--tcp-per-client") == 0)
      settings.tcp_per_client = (unsigned)atoi(argv[++i]);
    else if (strcmp(arg, "--tcp-budget") == 0)
      nlb_dns_set_tcp_budget((uint64_t)atoll(argv[++i]));
    else if (strcmp(arg, "--network") == 0 || strcmp(arg, "--record") == 0)
      i++;
    else
      usage();
  }
  rc = nlb_dns_new(&tool.loop, &settings, &tool.dns);
  if (rc < 0) {
    fprintf(stderr, "dns_responder: %s\n", strerror(-rc));
    return 1;
  }
  for (int i = 1; i + 1 < argc; i++) {
    char *fields[3];
    union nlb_sockaddr addr;
    if (strcmp(argv[i], "--network") != 0)
      continue;
    split3(argv[++i], fields);
    if (parse_address(fields[2], &addr) < 0 || tool.n_networks == MAX_NETWORKS)
      usage();
    rc = nlb_dns_add_network(tool.dns, fields[0],
                             strcmp(fields[1], "-") == 0 ? NULL : fields[1],
                             &addr);
    if (rc < 0) {
      fprintf(stderr, "dns_responder: network %s: %s\n", fields[0],
              strerror(-rc));
      return 1;
    }
    tool.networks[tool.n_networks++] = fields[0];
  }
  for (int i = 1; i + 1 < argc; i++) {
    char *fields[3];
    union nlb_sockaddr addr;
    if (strcmp(argv[i], "--record") != 0)
      continue;
    split3(argv[++i], fields);
    if (parse_address(fields[2], &addr) < 0)
      usage();
    rc = nlb_dns_add_record(tool.dns, fields[0], fields[1], &addr);
    if (rc < 0) {
      fprintf(stderr, "dns_responder: record %s %s: %s\n", fields[0], fields[1],
              strerror(-rc));
      return 1;
    }
  }
  uv_pipe_init(&tool.loop, &tool.input, 0);
  if (uv_pipe_open(&tool.input, 0) == 0)
    uv_read_start((uv_stream_t *)&tool.input, on_alloc, on_input);
  uv_timer_init(&tool.loop, &tool.ready_check);
  uv_timer_start(&tool.ready_check, on_ready_check, 0, 50);
  uv_signal_init(&tool.loop, &tool.sigterm);
  uv_signal_start(&tool.sigterm, on_sigterm, SIGTERM);
  /* Until stop() has closed every handle, the responder's included. */
  uv_run(&tool.loop, UV_RUN_DEFAULT);
  if (!nlb_dns_closed(tool.dns)) {
    fprintf(stderr, "dns_responder: handles left open\n");
    return 1;
  }
  nlb_dns_free(tool.dns);
  uv_loop_close(&tool.loop);
  nlb_log_stop();
  return 0;
}
