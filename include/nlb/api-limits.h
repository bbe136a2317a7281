/* How many connections the API keeps, and what each principal may hold of
 * them, by role: the contract between the config (api.limits, nlb/config.c)
 * and the API (api/admission.h, docs/api.md "Admission"). Plain data, no
 * dependencies, so that the config can hold a struct api_limits. */
#ifndef NLB_API_LIMITS_H
#define NLB_API_LIMITS_H

#include <stdint.h>

/* Connections beyond this many are closed as soon as they are accepted.
 * Clients without a known token get only a part of them, each principal
 * its role's limits, and the last operator_reserve are kept for
 * operators. */
#define API_MAX_CONNECTIONS 1024

/* The roles (enum reg_role, enum nlb_role: operator, provider, consumer),
 * for arrays indexed by role. */
#define API_ROLES 3

/* What one principal may hold at once, whatever its tokens; 0 is no
 * limit. */
struct api_principal_limits {
  uint32_t connections;   /* connections its requests authenticated */
  uint32_t requests;      /* requests under way: HTTP/2 streams, HTTP/1.1 */
  uint32_t event_streams; /* GET /v1/events answers open */
};

struct api_limits {
  struct api_principal_limits role[API_ROLES];
  /* The last this many of API_MAX_CONNECTIONS are kept only by operators:
   * at most API_MAX_CONNECTIONS / 2. */
  uint32_t operator_reserve;
};

/* The defaults (an initializer of struct api_limits): an operator may hold
 * more than anyone, and has the reserve, so that it can always get in to
 * see what is wrong. */
#define API_DEFAULT_LIMITS                                                     \
  {                                                                            \
    .role = {{256, 512, 32}, {64, 128, 8}, {64, 128, 8}},                      \
    .operator_reserve = 64,                                                    \
  }

#endif
