#include "nlb/dns/dns-records.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define INITIAL_BUCKETS 64
/* A wire-format name of 255 bytes holds at most 127 labels. */
#define LABELS_MAX 128

struct name {
  struct name *next_in_bucket;
  struct name *parent; /* one label up, within the main zone; else NULL */
  uint64_t hash;
  struct in_addr *a;
  struct in6_addr *aaaa;
  uint32_t n_a, cap_a;
  uint32_t n_aaaa, cap_aaaa;
  uint32_t children; /* names one label below, within the main zone */
  bool apex;
  uint8_t len;
  uint8_t wire[];
};

struct nlb_dns_records {
  struct name **buckets;
  size_t n_buckets; /* a power of two */
  size_t n_names;
  size_t n_pairs;
  uint32_t serial;
  /* Names come from providers: a per-table seed keeps anyone from
   * choosing names that share a bucket. */
  uint64_t seed;
  struct name *zone; /* the main zone's apex, never removed */
};

/* FNV-1a over the bytes from the last to the first, so that the hashes of
 * all of a name's suffixes come out of one pass (see lookup). */
static uint64_t hash_backward(uint64_t hash, const uint8_t *bytes, size_t n)
{
  while (n > 0) {
    hash ^= bytes[--n];
    hash *= UINT64_C(0x100000001b3);
  }
  return hash;
}

static uint64_t hash_name(const struct nlb_dns_records *records,
                          const uint8_t *wire, size_t len)
{
  return hash_backward(records->seed, wire, len);
}

/* Fills offsets with where each label starts; returns how many there are
 * (the root's zero not counted), or -1 when wire is not one well-formed
 * name of exactly len bytes. */
static int label_offsets(const uint8_t *wire, size_t len,
                         size_t offsets[LABELS_MAX])
{
  size_t pos = 0;
  int n = 0;

  while (pos < len) {
    uint8_t label = wire[pos];
    if (label == 0)
      return pos + 1 == len ? n : -1;
    if (label > 63 || n == LABELS_MAX)
      return -1;
    offsets[n++] = pos;
    pos += (size_t)label + 1;
  }
  return -1;
}

static struct name *find(const struct nlb_dns_records *records,
                         const uint8_t *wire, size_t len, uint64_t hash)
{
  struct name *name = records->buckets[hash & (records->n_buckets - 1)];
  for (; name; name = name->next_in_bucket)
    if (name->hash == hash && name->len == len &&
        memcmp(name->wire, wire, len) == 0)
      return name;
  return NULL;
}

static void grow_buckets(struct nlb_dns_records *records)
{
  size_t n = records->n_buckets * 2;
  struct name **buckets = calloc(n, sizeof(*buckets));

  /* Without memory the chains just get longer; lookups stay correct. */
  if (!buckets)
    return;
  for (size_t i = 0; i < records->n_buckets; i++) {
    struct name *name = records->buckets[i];
    while (name) {
      struct name *next = name->next_in_bucket;
      struct name **head = &buckets[name->hash & (n - 1)];
      name->next_in_bucket = *head;
      *head = name;
      name = next;
    }
  }
  free(records->buckets);
  records->buckets = buckets;
  records->n_buckets = n;
}

static void insert(struct nlb_dns_records *records, struct name *name)
{
  struct name **head = &records->buckets[name->hash & (records->n_buckets - 1)];
  name->next_in_bucket = *head;
  *head = name;
  if (++records->n_names > records->n_buckets)
    grow_buckets(records);
}

static void unlink_name(struct nlb_dns_records *records, struct name *name)
{
  struct name **p = &records->buckets[name->hash & (records->n_buckets - 1)];
  while (*p != name)
    p = &(*p)->next_in_bucket;
  *p = name->next_in_bucket;
  records->n_names--;
}

static void free_name(struct name *name)
{
  free(name->a);
  free(name->aaaa);
  free(name);
}

/* Removes name and the ancestors it alone kept, once nothing is left in
 * it. */
static void prune(struct nlb_dns_records *records, struct name *name)
{
  while (name && name != records->zone && name->n_a + name->n_aaaa == 0 &&
         name->children == 0) {
    struct name *parent = name->parent;
    unlink_name(records, name);
    free_name(name);
    if (parent)
      parent->children--;
    name = parent;
  }
}

static struct name *new_name(const struct nlb_dns_records *records,
                             const uint8_t *wire, size_t len)
{
  struct name *name = calloc(1, sizeof(*name) + len);
  if (!name)
    return NULL;
  name->hash = hash_name(records, wire, len);
  name->len = (uint8_t)len;
  memcpy(name->wire, wire, len);
  return name;
}

/* True when wire (len bytes, well-formed) lies strictly below the main
 * zone's apex. */
static bool below_zone(const struct nlb_dns_records *records,
                       const uint8_t *wire, size_t len)
{
  const struct name *zone = records->zone;
  size_t offsets[LABELS_MAX];
  int n = label_offsets(wire, len, offsets);

  for (int i = 1; i < n; i++)
    if (len - offsets[i] == zone->len &&
        memcmp(wire + offsets[i], zone->wire, zone->len) == 0)
      return true;
  return false;
}

/* The name, created with the ancestors it needs when absent; NULL when
 * memory runs out (nothing left behind). */
static struct name *obtain(struct nlb_dns_records *records, const uint8_t *wire,
                           size_t len)
{
  struct name *name = find(records, wire, len, hash_name(records, wire, len));
  struct name *parent = NULL;

  if (name)
    return name;
  if (below_zone(records, wire, len)) {
    size_t skip = (size_t)wire[0] + 1;
    parent = obtain(records, wire + skip, len - skip);
    if (!parent)
      return NULL;
  }
  name = new_name(records, wire, len);
  if (!name) {
    prune(records, parent);
    return NULL;
  }
  name->parent = parent;
  name->apex = parent == NULL; /* outside the main zone: a zone of its own */
  if (parent)
    parent->children++;
  insert(records, name);
  return name;
}

struct nlb_dns_records *nlb_dns_records_new(const char *zone)
{
  uint8_t wire[NLB_DNS_WIRE_MAX];
  int len = nlb_dns_name_to_wire(zone, wire);
  struct nlb_dns_records *records;

  if (len < 0)
    return NULL;
  records = calloc(1, sizeof(*records));
  if (!records)
    return NULL;
  records->n_buckets = INITIAL_BUCKETS;
  records->buckets = calloc(records->n_buckets, sizeof(*records->buckets));
  if (!records->buckets)
    goto fail_free_records;
  if (getrandom(&records->seed, sizeof(records->seed), GRND_NONBLOCK) !=
      (ssize_t)sizeof(records->seed))
    records->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)records;
  records->seed ^= UINT64_C(0xcbf29ce484222325);
  /* Serials that start from the clock rarely go back across restarts. */
  records->serial = (uint32_t)time(NULL);
  records->zone = new_name(records, wire, (size_t)len);
  if (!records->zone)
    goto fail_free_buckets;
  records->zone->apex = true;
  insert(records, records->zone);
  return records;

fail_free_buckets:
  free(records->buckets);
fail_free_records:
  free(records);
  return NULL;
}

void nlb_dns_records_free(struct nlb_dns_records *records)
{
  if (!records)
    return;
  for (size_t i = 0; i < records->n_buckets; i++) {
    struct name *name = records->buckets[i];
    while (name) {
      struct name *next = name->next_in_bucket;
      free_name(name);
      name = next;
    }
  }
  free(records->buckets);
  free(records);
}

/* Grows *array (of *cap elements of size) to hold one more. */
static int reserve(void **array, uint32_t *cap, uint32_t n, size_t size)
{
  uint32_t grown = *cap ? *cap * 2 : 1;
  void *p;

  if (n < *cap)
    return 0;
  p = realloc(*array, grown * size);
  if (!p)
    return -ENOMEM;
  *array = p;
  *cap = grown;
  return 0;
}

/* Where ip (4 or 16 bytes) sits in the name's list of its family, or -1. */
static long position(const struct name *name, int family, const void *ip)
{
  if (family == AF_INET) {
    for (uint32_t i = 0; i < name->n_a; i++)
      if (memcmp(&name->a[i], ip, 4) == 0)
        return (long)i;
  } else {
    for (uint32_t i = 0; i < name->n_aaaa; i++)
      if (memcmp(&name->aaaa[i], ip, 16) == 0)
        return (long)i;
  }
  return -1;
}

static const void *ip_of(const union nlb_sockaddr *addr)
{
  if (addr->sa.sa_family == AF_INET)
    return &addr->in.sin_addr;
  if (addr->sa.sa_family == AF_INET6)
    return &addr->in6.sin6_addr;
  return NULL;
}

static int append(struct name *name, int family, const void *ip)
{
  if (family == AF_INET) {
    if (reserve((void **)&name->a, &name->cap_a, name->n_a, 4) < 0)
      return -ENOMEM;
    memcpy(&name->a[name->n_a++], ip, 4);
  } else {
    if (reserve((void **)&name->aaaa, &name->cap_aaaa, name->n_aaaa, 16) < 0)
      return -ENOMEM;
    memcpy(&name->aaaa[name->n_aaaa++], ip, 16);
  }
  return 0;
}

int nlb_dns_records_add(struct nlb_dns_records *records, const char *name,
                        const union nlb_sockaddr *addr)
{
  uint8_t wire[NLB_DNS_WIRE_MAX];
  int len = nlb_dns_name_to_wire(name, wire);
  const void *ip = ip_of(addr);
  struct name *entry;

  if (len < 0 || !ip)
    return -EINVAL;
  entry = obtain(records, wire, (size_t)len);
  if (!entry)
    return -ENOMEM;
  if (position(entry, addr->sa.sa_family, ip) >= 0)
    return 0;
  if (append(entry, addr->sa.sa_family, ip) < 0) {
    prune(records, entry);
    return -ENOMEM;
  }
  records->n_pairs++;
  records->serial++;
  return 0;
}

int nlb_dns_records_remove(struct nlb_dns_records *records, const char *name,
                           const union nlb_sockaddr *addr)
{
  uint8_t wire[NLB_DNS_WIRE_MAX];
  int len = nlb_dns_name_to_wire(name, wire);
  const void *ip = ip_of(addr);
  struct name *entry;
  long at;

  if (len < 0 || !ip)
    return -EINVAL;
  entry =
      find(records, wire, (size_t)len, hash_name(records, wire, (size_t)len));
  if (!entry)
    return -ENOENT;
  at = position(entry, addr->sa.sa_family, ip);
  if (at < 0)
    return -ENOENT;
  /* Keep the order the addresses came in: answers list them so. */
  if (addr->sa.sa_family == AF_INET)
    memmove(&entry->a[at], &entry->a[at + 1],
            (entry->n_a-- - (uint32_t)at - 1) * sizeof(*entry->a));
  else
    memmove(&entry->aaaa[at], &entry->aaaa[at + 1],
            (entry->n_aaaa-- - (uint32_t)at - 1) * sizeof(*entry->aaaa));
  records->n_pairs--;
  records->serial++;
  prune(records, entry);
  return 0;
}

size_t nlb_dns_records_count(const struct nlb_dns_records *records)
{
  return records->n_pairs;
}

uint32_t nlb_dns_records_serial(const struct nlb_dns_records *records)
{
  return records->serial;
}

const uint8_t *nlb_dns_records_zone(const struct nlb_dns_records *records,
                                    size_t *len)
{
  *len = records->zone->len;
  return records->zone->wire;
}

void nlb_dns_records_lookup(void *ctx, const uint8_t *wire, size_t len,
                            struct nlb_dns_found *found)
{
  const struct nlb_dns_records *records = ctx;
  size_t offsets[LABELS_MAX];
  uint64_t hashes[LABELS_MAX];
  int n = label_offsets(wire, len, offsets);
  const struct name *self = NULL;
  uint64_t hash = records->seed;
  size_t end = len;

  *found = (struct nlb_dns_found){.apex_offset = -1};
  if (n <= 0)
    return;
  for (int i = n - 1; i >= 0; i--) {
    hash = hash_backward(hash, wire + offsets[i], end - offsets[i]);
    hashes[i] = hash;
    end = offsets[i];
  }
  /* The closest enclosing apex: the longest suffix that is one. */
  for (int i = 0; i < n; i++) {
    const struct name *suffix =
        find(records, wire + offsets[i], len - offsets[i], hashes[i]);
    if (i == 0)
      self = suffix;
    if (suffix && suffix->apex) {
      found->apex_offset = (int)offsets[i];
      break;
    }
  }
  if (found->apex_offset < 0 || !self)
    return;
  found->exists = true;
  found->a = self->a;
  found->n_a = self->n_a;
  found->aaaa = self->aaaa;
  found->n_aaaa = self->n_aaaa;
}
