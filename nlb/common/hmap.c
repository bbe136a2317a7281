#include "nlb/common/hmap.h"

#include <errno.h>
#include <stdlib.h>

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL
#define FIRST_BUCKETS 16

uint64_t nlb_hash_bytes(const void *data, size_t n)
{
  const unsigned char *p = data;
  uint64_t h = FNV_OFFSET;

  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * FNV_PRIME;
  return h;
}

uint64_t nlb_hash_str(const char *s)
{
  uint64_t h = FNV_OFFSET;

  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * FNV_PRIME;
  return h;
}

void nlb_hmap_init(struct nlb_hmap *map)
{
  map->buckets = NULL;
  map->n_buckets = 0;
  map->count = 0;
}

void nlb_hmap_free(struct nlb_hmap *map)
{
  free(map->buckets);
  nlb_hmap_init(map);
}

/* FNV's low bits are its weakest: mix before masking. */
static size_t bucket_of(uint64_t hash, size_t n_buckets)
{
  hash ^= hash >> 33;
  hash *= 0xff51afd7ed558ccdULL;
  hash ^= hash >> 33;
  return (size_t)hash & (n_buckets - 1);
}

static void grow(struct nlb_hmap *map)
{
  size_t n = map->n_buckets ? map->n_buckets * 2 : FIRST_BUCKETS;
  struct nlb_hnode **buckets = calloc(n, sizeof(*buckets));

  if (buckets == NULL)
    return;
  for (size_t i = 0; i < map->n_buckets; i++) {
    struct nlb_hnode *node = map->buckets[i];

    while (node != NULL) {
      struct nlb_hnode *next = node->next;
      size_t b = bucket_of(node->hash, n);

      node->next = buckets[b];
      buckets[b] = node;
      node = next;
    }
  }
  free(map->buckets);
  map->buckets = buckets;
  map->n_buckets = n;
}

int nlb_hmap_insert(struct nlb_hmap *map, struct nlb_hnode *node, uint64_t hash)
{
  size_t b;

  if (map->count >= map->n_buckets)
    grow(map);
  if (map->n_buckets == 0)
    return -ENOMEM;
  node->hash = hash;
  b = bucket_of(hash, map->n_buckets);
  node->next = map->buckets[b];
  map->buckets[b] = node;
  map->count++;
  return 0;
}

void nlb_hmap_remove(struct nlb_hmap *map, struct nlb_hnode *node)
{
  struct nlb_hnode **link;

  if (map->n_buckets == 0)
    return;
  link = &map->buckets[bucket_of(node->hash, map->n_buckets)];
  for (; *link != NULL; link = &(*link)->next)
    if (*link == node) {
      *link = node->next;
      node->next = NULL;
      map->count--;
      return;
    }
}

struct nlb_hnode *nlb_hmap_find(const struct nlb_hmap *map, uint64_t hash,
                                bool (*eq)(const struct nlb_hnode *node,
                                           const void *key),
                                const void *key)
{
  struct nlb_hnode *node;

  if (map->n_buckets == 0)
    return NULL;
  for (node = map->buckets[bucket_of(hash, map->n_buckets)]; node != NULL;
       node = node->next)
    if (node->hash == hash && eq(node, key))
      return node;
  return NULL;
}

struct nlb_hnode *nlb_hmap_next(const struct nlb_hmap *map,
                                const struct nlb_hnode *node)
{
  size_t b = 0;

  if (node != NULL) {
    if (node->next != NULL)
      return node->next;
    b = bucket_of(node->hash, map->n_buckets) + 1;
  }
  for (; b < map->n_buckets; b++)
    if (map->buckets[b] != NULL)
      return map->buckets[b];
  return NULL;
}
