/* An intrusive hash map: objects embed a struct nlb_hnode and are found by
 * a 64-bit hash plus the caller's own key comparison, so one object can sit
 * in several maps without extra allocations (like struct nlb_list). The
 * bucket array doubles when the map holds more nodes than buckets, so a
 * lookup costs O(1) on average at any size.
 *
 * The map owns only its bucket array; nodes belong to whoever embeds them.
 * Not thread-safe: one thread, or the caller's lock. */
#ifndef NLB_HMAP_H
#define NLB_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nlb_hnode {
  struct nlb_hnode *next;
  uint64_t hash;
};

struct nlb_hmap {
  struct nlb_hnode **buckets;
  size_t n_buckets; /* 0 or a power of two */
  size_t count;
};

/* FNV-1a of a string, and of n bytes. */
uint64_t nlb_hash_str(const char *s);
uint64_t nlb_hash_bytes(const void *data, size_t n);

/* An empty map (no allocation until the first insert). */
void nlb_hmap_init(struct nlb_hmap *map);

/* Frees the bucket array; the nodes are the caller's. */
void nlb_hmap_free(struct nlb_hmap *map);

/* Adds node under hash. Returns 0, or -ENOMEM when the first bucket array
 * cannot be allocated (a failed growth only makes chains longer). */
int nlb_hmap_insert(struct nlb_hmap *map, struct nlb_hnode *node,
                    uint64_t hash);

/* Removes a node that is in the map. */
void nlb_hmap_remove(struct nlb_hmap *map, struct nlb_hnode *node);

/* The first node with hash for which eq(node, key) is true, or NULL. */
struct nlb_hnode *nlb_hmap_find(const struct nlb_hmap *map, uint64_t hash,
                                bool (*eq)(const struct nlb_hnode *node,
                                           const void *key),
                                const void *key);

/* Iteration in no particular order: start with node = NULL, stop at NULL.
 * The current node may be removed before asking for the next one only if
 * next was fetched first. */
struct nlb_hnode *nlb_hmap_next(const struct nlb_hmap *map,
                                const struct nlb_hnode *node);

#endif
