/* How a TCP flow's end is told (flow.c's, tls_flow.c's and
 * passthrough.c's flows): its name, its access-log record and its
 * counters. Called by the relay's finish; calls nothing of the relay back.
 * Worker thread. */
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "nlb/dataplane/flow-int.h"
#include "nlb/dataplane/snapshot.h"
#include "nlb/dataplane/worker.h"
#include "nlb/log.h"

const char *nlb_flow_end_name(enum nlb_flow_end end)
{
  static const char *const names[] = {
      "none",          "client_fin",   "target_fin",        "client_reset",
      "target_reset",  "idle_timeout", "connect_failed",    "no_target",
      "source_denied", "limit",        "endpoint_closed",   "shutdown",
      "deregistered",  "tls_failed",   "handshake_timeout", "target_tls_failed",
      "not_tls",       "bad_hello",    "hello_timeout"};
  return (unsigned)end < sizeof(names) / sizeof(names[0]) ? names[end] : "?";
}

/* A name the client chose (SNI, ALPN), fit for a log line: what is not a
 * host name's character becomes '?'. "-" when absent. */
static const char *log_safe(const char *text, size_t len, char *out,
                            size_t size)
{
  size_t i;

  if (!text || len == 0)
    return "-";
  for (i = 0; i < len && i + 1 < size; i++) {
    char c = text[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' ||
              c == '*' || c == '/';
    out[i] = ok ? c : '?';
  }
  out[i] = '\0';
  return out;
}

/* A TLS flow's part of the access-log record: version, cipher, SNI, ALPN
 * and handshake time; for a TLS passthrough flow the SNI its ClientHello
 * asked for (the reader let only a host name's characters through);
 * empty for a plain flow. */
static void tls_log_fields(const struct nlb_flow *flow, char *out, size_t size)
{
  const SSL *ssl = flow->tls ? flow->client_ssl : NULL;
  const unsigned char *alpn = NULL;
  unsigned alpn_len = 0;
  const char *sni;
  char sni_text[256], alpn_text[64], handshake[24];
  bool done;

  out[0] = '\0';
  if (!ssl && flow->route->sni)
    snprintf(out, size, flow->access_json ? ",\"sni\":\"%s\"" : " sni=%s",
             nlb_flow_sni(flow) ? flow->sni : "-");
  if (!ssl)
    return;
  done = SSL_is_init_finished(ssl);
  sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  sni = log_safe(sni, sni ? strlen(sni) : 0, sni_text, sizeof(sni_text));
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  snprintf(handshake, sizeof(handshake), "%u", flow->handshake_ms);
  snprintf(
      out, size,
      flow->access_json ? ",\"tls\":\"%s\",\"cipher\":\"%s\",\"sni\":\"%s\","
                          "\"alpn\":\"%s\",\"handshake\":%s"
                        : " tls=%s cipher=%s sni=%s alpn=%s handshake=%s",
      done ? SSL_get_version(ssl) : "-", done ? SSL_get_cipher_name(ssl) : "-",
      sni, log_safe((const char *)alpn, alpn_len, alpn_text, sizeof(alpn_text)),
      done                ? handshake
      : flow->access_json ? "null"
                          : "-");
}

void nlb_flow_log_access(const struct nlb_flow *flow, uint64_t now)
{
  char tls[512];
  const struct nlb_route *route = flow->route;
  char line[NLB_LOG_LINE_MAX];
  char when[32], client[NLB_ADDR_TEXT_MAX], connect[24];
  const char *target = flow->target && flow->established ? flow->target->name
                       : flow->target                    ? flow->target->name
                                                         : "-";
  unsigned retries = flow->n_tried > 0 ? flow->n_tried - 1u : 0u;
  int len;

  nlb_log_time(when, sizeof(when));
  tls_log_fields(flow, tls, sizeof(tls));
  nlb_addr_format(&flow->client_addr, client, sizeof(client));
  if (flow->established)
    snprintf(connect, sizeof(connect), "%llu",
             (unsigned long long)(flow->connected_ms - flow->accepted_ms));
  else
    snprintf(connect, sizeof(connect), "-");
  if (flow->access_json)
    len = snprintf(
        line, sizeof(line),
        "{\"time\":\"%s\",\"lb\":\"%s\",\"port\":%u,\"endpoint\":%s%s%s,"
        "\"client\":\"%s\",\"target\":\"%s\",\"connect\":%s,\"duration\":%llu,"
        "\"up\":%llu,\"down\":%llu,\"retries\":%u,\"end\":\"%s\"%s,"
        "\"worker\":%u}",
        when, route->lb_name, route->port, route->endpoint_id ? "\"" : "",
        route->endpoint_id ? route->endpoint_id : "null",
        route->endpoint_id ? "\"" : "", client, target,
        flow->established ? connect : "null",
        (unsigned long long)(now - flow->accepted_ms),
        (unsigned long long)flow->bytes_up,
        (unsigned long long)flow->bytes_down, retries,
        nlb_flow_end_name(flow->end), tls, nlb_worker_index(flow->worker));
  else
    len = snprintf(
        line, sizeof(line),
        "%s %s:%u %s %s -> %s connect=%s duration=%llu up=%llu "
        "down=%llu retries=%u end=%s%s worker=%u",
        when, route->lb_name, route->port,
        route->endpoint_id ? route->endpoint_id : "-", client, target, connect,
        (unsigned long long)(now - flow->accepted_ms),
        (unsigned long long)flow->bytes_up,
        (unsigned long long)flow->bytes_down, retries,
        nlb_flow_end_name(flow->end), tls, nlb_worker_index(flow->worker));
  if (len > 0)
    nlb_log_access(line,
                   (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1);
}

void nlb_flow_count_end(const struct nlb_flow *flow, uint64_t now)
{
  struct nlb_flow_counters *counters[2] = {
      &flow->route->stats->counters,
      flow->target && flow->established ? &flow->target->counters : NULL};

  nlb_histogram_observe(&flow->route->stats->flow_duration,
                        nlb_flow_duration_bounds_ms, now - flow->accepted_ms);
  for (int i = 0; i < 2; i++) {
    struct nlb_flow_counters *c = counters[i];
    if (!c)
      continue;
    atomic_fetch_sub_explicit(&c->active_flows, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->bytes_up, flow->bytes_up,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&c->bytes_down, flow->bytes_down,
                              memory_order_relaxed);
    switch (flow->end) {
    case NLB_END_CLIENT_RESET:
      atomic_fetch_add_explicit(&c->client_resets, 1, memory_order_relaxed);
      break;
    case NLB_END_TARGET_RESET:
      atomic_fetch_add_explicit(&c->target_resets, 1, memory_order_relaxed);
      break;
    case NLB_END_IDLE_TIMEOUT:
    case NLB_END_ENDPOINT_CLOSED:
    case NLB_END_SHUTDOWN:
    case NLB_END_DEREGISTERED:
    case NLB_END_SOURCE_DENIED:
    case NLB_END_CONNECT_FAILED:
    case NLB_END_LIMIT:
    case NLB_END_TLS_FAILED:
    case NLB_END_HANDSHAKE_TIMEOUT:
    case NLB_END_TARGET_TLS_FAILED:
    case NLB_END_NOT_TLS:
    case NLB_END_BAD_HELLO:
    case NLB_END_HELLO_TIMEOUT:
      atomic_fetch_add_explicit(&c->lb_resets, 1, memory_order_relaxed);
      break;
    default:
      break;
    }
  }
}
