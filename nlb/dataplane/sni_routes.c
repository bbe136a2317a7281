/* SNI routes (sni_routes.h). A listener has a handful of names: a linear
 * scan over them costs less than the ClientHello's own parse. */
#include "nlb/dataplane/sni_routes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct nlb_sni_routes *nlb_sni_routes_create(size_t n_routes,
                                             uint64_t client_hello_timeout_ms)
{
  struct nlb_sni_routes *table =
      calloc(1, sizeof(*table) + n_routes * sizeof(table->routes[0]));

  if (!table)
    return NULL;
  atomic_init(&table->refs, 1);
  table->client_hello_timeout_ms = client_hello_timeout_ms;
  table->n_routes = n_routes;
  return table;
}

int nlb_sni_routes_set(struct nlb_sni_routes *table, size_t i, const char *name,
                       size_t group)
{
  char *copy = strdup(name);

  if (!copy)
    return -ENOMEM;
  free(table->routes[i].name);
  table->routes[i].name = copy;
  table->routes[i].group = group;
  return 0;
}

void nlb_sni_routes_acquire(struct nlb_sni_routes *table)
{
  if (table)
    atomic_fetch_add_explicit(&table->refs, 1, memory_order_relaxed);
}

void nlb_sni_routes_release(struct nlb_sni_routes *table)
{
  if (!table ||
      atomic_fetch_sub_explicit(&table->refs, 1, memory_order_acq_rel) != 1)
    return;
  for (size_t i = 0; i < table->n_routes; i++)
    free(table->routes[i].name);
  free(table);
}

long nlb_sni_routes_match(const struct nlb_sni_routes *table, const char *sni)
{
  const char *parent;

  if (!table || !sni || !*sni)
    return -1;
  for (size_t i = 0; i < table->n_routes; i++)
    if (table->routes[i].name && strcmp(table->routes[i].name, sni) == 0)
      return (long)table->routes[i].group;
  /* "*.b.example" is "*" then ".b.example": sni's first label, then the
   * same rest. */
  parent = strchr(sni, '.');
  if (!parent || parent == sni)
    return -1;
  for (size_t i = 0; i < table->n_routes; i++) {
    const char *name = table->routes[i].name;
    if (name && name[0] == '*' && strcmp(name + 1, parent) == 0)
      return (long)table->routes[i].group;
  }
  return -1;
}
