#include "nlb/dataplane/udp_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/common/hmap.h"

#define MIN_SLOTS 64

void nlb_udp_key_make(struct nlb_udp_key *key, uint64_t route_id,
                      const union nlb_sockaddr *client,
                      const union nlb_sockaddr *local)
{
  memset(key, 0, sizeof(*key));
  key->route_id = route_id;
  key->family = (uint8_t)client->sa.sa_family;
  if (client->sa.sa_family == AF_INET6) {
    key->client_port = client->in6.sin6_port;
    memcpy(key->client_addr, &client->in6.sin6_addr, 16);
    if (local->sa.sa_family == AF_INET6) {
      key->local_port = local->in6.sin6_port;
      memcpy(key->local_addr, &local->in6.sin6_addr, 16);
    }
  } else {
    key->client_port = client->in.sin_port;
    memcpy(key->client_addr, &client->in.sin_addr, 4);
    if (local->sa.sa_family == AF_INET) {
      key->local_port = local->in.sin_port;
      memcpy(key->local_addr, &local->in.sin_addr, 4);
    }
  }
}

uint64_t nlb_udp_key_hash(const struct nlb_udp_key *key)
{
  uint64_t hash = nlb_hash_bytes(key, sizeof(*key));
  return hash ? hash : 1; /* 0 marks an empty slot */
}

void nlb_udp_table_init(struct nlb_udp_table *table, size_t max_count)
{
  memset(table, 0, sizeof(*table));
  table->max_count = max_count ? max_count : 1;
}

void nlb_udp_table_set_max(struct nlb_udp_table *table, size_t max_count)
{
  table->max_count = max_count ? max_count : 1;
}

void nlb_udp_table_free(struct nlb_udp_table *table)
{
  free(table->slots);
  table->slots = NULL;
  table->mask = 0;
  table->count = 0;
}

struct nlb_udp_key *nlb_udp_table_find(const struct nlb_udp_table *table,
                                       const struct nlb_udp_key *key,
                                       uint64_t hash)
{
  if (!table->slots)
    return NULL;
  for (size_t i = hash & table->mask;; i = (i + 1) & table->mask) {
    const struct nlb_udp_slot *slot = &table->slots[i];
    if (!slot->key)
      return NULL;
    if (slot->hash == hash && memcmp(slot->key, key, sizeof(*key)) == 0)
      return slot->key;
  }
}

static void place(struct nlb_udp_slot *slots, size_t mask, uint64_t hash,
                  struct nlb_udp_key *key)
{
  size_t i = hash & mask;

  while (slots[i].key)
    i = (i + 1) & mask;
  slots[i].hash = hash;
  slots[i].key = key;
}

/* Doubles the slots (or makes the first ones): at most half full after. */
static int grow(struct nlb_udp_table *table)
{
  size_t n = table->slots ? (table->mask + 1) * 2 : MIN_SLOTS;
  struct nlb_udp_slot *slots = calloc(n, sizeof(*slots));

  if (!slots)
    return -ENOMEM;
  if (table->slots)
    for (size_t i = 0; i <= table->mask; i++)
      if (table->slots[i].key)
        place(slots, n - 1, table->slots[i].hash, table->slots[i].key);
  free(table->slots);
  table->slots = slots;
  table->mask = n - 1;
  return 0;
}

int nlb_udp_table_insert(struct nlb_udp_table *table, struct nlb_udp_key *key,
                         uint64_t hash)
{
  int rc;

  if (table->count >= table->max_count)
    return -ENOSPC;
  if ((!table->slots || (table->count + 1) * 2 > table->mask + 1) &&
      (rc = grow(table)) < 0)
    return rc;
  place(table->slots, table->mask, hash, key);
  table->count++;
  return 0;
}

void nlb_udp_table_remove(struct nlb_udp_table *table,
                          const struct nlb_udp_key *key, uint64_t hash)
{
  size_t i, j;

  if (!table->slots)
    return;
  for (i = hash & table->mask; table->slots[i].key != key;
       i = (i + 1) & table->mask)
    if (!table->slots[i].key)
      return;
  /* Backward shift: a key further along the run moves into the hole
   * unless its home slot lies cyclically after the hole, so every key
   * stays reachable from its home without tombstones. */
  for (j = (i + 1) & table->mask; table->slots[j].key;
       j = (j + 1) & table->mask) {
    size_t home = table->slots[j].hash & table->mask;
    if (((j - home) & table->mask) >= ((j - i) & table->mask)) {
      table->slots[i] = table->slots[j];
      i = j;
    }
  }
  table->slots[i].hash = 0;
  table->slots[i].key = NULL;
  table->count--;
}
