#include "nlb/health.h"

#include <stdlib.h>

struct nlb_health {
  uv_loop_t *loop;
  struct nlb_router *router;
};

struct nlb_health *nlb_health_start(uv_loop_t *loop, struct nlb_router *router)
{
  struct nlb_health *health = calloc(1, sizeof(*health));
  if (!health)
    return NULL;
  health->loop = loop;
  health->router = router;
  return health;
}

void nlb_health_sync(struct nlb_health *health)
{
}

void nlb_health_stop(struct nlb_health *health)
{
}

void nlb_health_free(struct nlb_health *health)
{
  free(health);
}
