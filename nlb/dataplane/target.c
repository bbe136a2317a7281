#include "nlb/dataplane/target.h"

#include <stdlib.h>

struct nlb_target *nlb_target_create(const union nlb_sockaddr *address,
                                     uint32_t weight)
{
  struct nlb_target *target = calloc(1, sizeof(*target));
  if (!target)
    return NULL;
  atomic_init(&target->refs, 1);
  target->address = *address;
  target->weight = weight;
  nlb_addr_format(address, target->name, sizeof(target->name));
  atomic_init(&target->state, NLB_TARGET_INITIAL);
  return target;
}

void nlb_target_acquire(struct nlb_target *target)
{
  atomic_fetch_add_explicit(&target->refs, 1, memory_order_relaxed);
}

void nlb_target_release(struct nlb_target *target)
{
  if (atomic_fetch_sub_explicit(&target->refs, 1, memory_order_acq_rel) == 1)
    free(target);
}

const char *nlb_target_state_name(enum nlb_target_state state)
{
  static const char *const names[] = {"initial", "healthy", "unhealthy",
                                      "draining", "unused"};
  return (unsigned)state < 5 ? names[state] : "unknown";
}

static atomic_uint passive_total;

void nlb_target_passive_failure(struct nlb_target *target)
{
  atomic_fetch_add(&target->passive_failures, 1);
  atomic_fetch_add(&passive_total, 1);
}

unsigned nlb_target_passive_total(void)
{
  return atomic_load(&passive_total);
}

static atomic_uint draining_total;

void nlb_target_set_draining(bool draining)
{
  if (draining)
    atomic_fetch_add(&draining_total, 1);
  else
    atomic_fetch_sub(&draining_total, 1);
}

unsigned nlb_target_draining_count(void)
{
  return atomic_load_explicit(&draining_total, memory_order_relaxed);
}
