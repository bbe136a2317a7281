/* The one table of flow kinds, by the name a listener's protocol gives. */
#include <string.h>

#include "nlb/dataplane/flow_kind.h"

static const struct nlb_flow_kind *const flow_kinds[] = {
    &nlb_flow_kind_tcp,
    &nlb_flow_kind_udp,
    &nlb_flow_kind_tls,
    &nlb_flow_kind_tls_passthrough,
};

const struct nlb_flow_kind *nlb_flow_kind_at(size_t i)
{
  return i < sizeof(flow_kinds) / sizeof(flow_kinds[0]) ? flow_kinds[i] : NULL;
}

const struct nlb_flow_kind *nlb_flow_kind_find(const char *name)
{
  for (size_t i = 0; i < sizeof(flow_kinds) / sizeof(flow_kinds[0]); i++)
    if (strcmp(flow_kinds[i]->name, name) == 0)
      return flow_kinds[i];
  return NULL;
}
