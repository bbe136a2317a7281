/* The one table of listener protocols (protocol.h). */
#include "nlb/common/protocol.h"

#include <stdio.h>
#include <string.h>

struct protocol_row {
  const char *name;
  const char *kinds[NLB_PROTOCOL_KINDS_MAX + 1];
};

static const struct protocol_row protocols[NLB_PROTOCOL_COUNT] = {
    [NLB_PROTOCOL_TCP] = {"tcp", {"tcp", NULL}},
    [NLB_PROTOCOL_UDP] = {"udp", {"udp", NULL}},
    [NLB_PROTOCOL_TCP_UDP] = {"tcp_udp", {"tcp", "udp", NULL}},
    [NLB_PROTOCOL_TLS] = {"tls", {"tls", NULL}},
    [NLB_PROTOCOL_TLS_PASSTHROUGH] = {"tls_passthrough",
                                      {"tls_passthrough", NULL}},
};

int nlb_protocol_parse(const char *name)
{
  for (int i = 0; i < NLB_PROTOCOL_COUNT; i++)
    if (strcmp(protocols[i].name, name) == 0)
      return i;
  return -1;
}

const char *nlb_protocol_name(enum nlb_protocol protocol)
{
  return (unsigned)protocol < NLB_PROTOCOL_COUNT ? protocols[protocol].name
                                                 : "?";
}

const char *const *nlb_protocol_kinds(enum nlb_protocol protocol)
{
  static const char *const none[] = {NULL};
  return (unsigned)protocol < NLB_PROTOCOL_COUNT ? protocols[protocol].kinds
                                                 : none;
}

void nlb_protocol_list(char *out, size_t size)
{
  size_t used = 0;

  if (size == 0)
    return;
  out[0] = '\0';
  for (int i = 0; i < NLB_PROTOCOL_COUNT && used < size; i++) {
    int n = snprintf(out + used, size - used, "%s%s", i ? ", " : "",
                     protocols[i].name);
    if (n < 0)
      break;
    used += (size_t)n;
  }
}
