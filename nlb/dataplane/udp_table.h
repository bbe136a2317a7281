/* A worker's UDP flows by their 5-tuple: an open-addressing hash table
 * (linear probing, deletion by backward shift: no tombstones), holding
 * pointers to keys that live inside the flows (struct nlb_flow's udp.key),
 * so a lookup costs one hash and, mostly, one cache line of slots.
 *
 * The table grows by doubling while it is at most half full, up to room
 * for max_count keys; past max_count an insert is refused (-ENOSPC) and
 * nothing grows: a flood of new 5-tuples costs no memory past the bound.
 * One thread (the worker's) owns a table; it owns its slot array, never
 * the keys. Pure: no libuv, no sockets (tests/unit/test_udp_table.c). */
#ifndef NLB_UDP_TABLE_H
#define NLB_UDP_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "nlb/common/addr.h"

/* A UDP flow's identity: the listener (its route id: its address, port and
 * protocol), the client's address and port, and the address the client
 * sent to (a wildcard listener's datagrams may reach several). Compared
 * as bytes: build keys with nlb_udp_key_make, which zeroes the padding. */
struct nlb_udp_key {
  uint64_t route_id;
  uint8_t family; /* AF_INET or AF_INET6 */
  uint8_t pad;
  uint16_t client_port; /* network order */
  uint16_t local_port;  /* network order */
  uint16_t pad2;
  uint8_t client_addr[16]; /* IPv4 in the first 4 bytes */
  uint8_t local_addr[16];
};

void nlb_udp_key_make(struct nlb_udp_key *key, uint64_t route_id,
                      const union nlb_sockaddr *client,
                      const union nlb_sockaddr *local);
uint64_t nlb_udp_key_hash(const struct nlb_udp_key *key);

struct nlb_udp_slot {
  uint64_t hash; /* of key; 0 with key NULL: empty */
  struct nlb_udp_key *key;
};

struct nlb_udp_table {
  struct nlb_udp_slot *slots; /* NULL until the first insert */
  size_t mask;                /* slots - 1 (a power of two) */
  size_t count;
  size_t max_count;
};

/* An empty table that holds at most max_count keys (0: 1). */
void nlb_udp_table_init(struct nlb_udp_table *table, size_t max_count);
/* Changes the bound; a table already past it refuses inserts until keys
 * leave. */
void nlb_udp_table_set_max(struct nlb_udp_table *table, size_t max_count);
void nlb_udp_table_free(struct nlb_udp_table *table);

/* The key equal to key, or NULL. hash is nlb_udp_key_hash(key). */
struct nlb_udp_key *nlb_udp_table_find(const struct nlb_udp_table *table,
                                       const struct nlb_udp_key *key,
                                       uint64_t hash);
/* Inserts key (not already in). 0, -ENOSPC (max_count keys already) or
 * -ENOMEM (the table could not grow; it is unchanged). */
int nlb_udp_table_insert(struct nlb_udp_table *table, struct nlb_udp_key *key,
                         uint64_t hash);
/* Removes this very key (the pointer); nothing if it is not in. */
void nlb_udp_table_remove(struct nlb_udp_table *table,
                          const struct nlb_udp_key *key, uint64_t hash);

#endif
