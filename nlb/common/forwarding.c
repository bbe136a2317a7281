#include "nlb/common/forwarding.h"

#include <errno.h>
#include <string.h>

const char *nlb_forwarding_name(enum nlb_forwarding forwarding)
{
  static const char *const names[] = {"splice", "sockmap", "auto"};
  return (unsigned)forwarding < 3 ? names[forwarding] : NULL;
}

int nlb_forwarding_parse(const char *name, enum nlb_forwarding *out)
{
  for (int i = 0; nlb_forwarding_name((enum nlb_forwarding)i); i++)
    if (strcmp(name, nlb_forwarding_name((enum nlb_forwarding)i)) == 0) {
      *out = (enum nlb_forwarding)i;
      return 0;
    }
  return -EINVAL;
}
