/* Addresses: parsing, canonical forms, and the allocation of endpoint
 * addresses inside a network's range. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry-int.h"

static u128 key_to_u128(const struct reg_addr_key *key)
{
  u128 v = 0;

  for (int i = 0; i < 16; i++)
    v = (v << 8) | key->bytes[i];
  return v;
}

static void u128_to_key(u128 v, struct reg_addr_key *key)
{
  for (int i = 15; i >= 0; i--) {
    key->bytes[i] = (uint8_t)v;
    v >>= 8;
  }
}

static void key_format(const struct reg_addr_key *key, int family, char *buf)
{
  if (family == AF_INET)
    inet_ntop(AF_INET, key->bytes + 12, buf, REG_ADDR_BUF);
  else
    inet_ntop(AF_INET6, key->bytes, buf, REG_ADDR_BUF);
}

/* Parses an address of family (0: either) into a key. */
static int parse_address(const char *s, int family, struct reg_addr_key *key,
                         int *family_out)
{
  memset(key, 0, sizeof(*key));
  if (family != AF_INET6 && inet_pton(AF_INET, s, key->bytes + 12) == 1) {
    key->bytes[10] = 0xff;
    key->bytes[11] = 0xff;
    *family_out = AF_INET;
    return 0;
  }
  if (family != AF_INET && strchr(s, ':') != NULL &&
      inet_pton(AF_INET6, s, key->bytes) == 1) {
    *family_out = AF_INET6;
    return 0;
  }
  return -EINVAL;
}

static int parse_prefix(const char *s, unsigned max, unsigned *bits)
{
  char *end;
  unsigned long v;

  if (s[0] < '0' || s[0] > '9')
    return -EINVAL;
  errno = 0;
  v = strtoul(s, &end, 10);
  if (errno || *end || v > max)
    return -EINVAL;
  *bits = (unsigned)v;
  return 0;
}

int reg_parse_cidr(const char *s, bool bare_ok, int *family, u128 *low,
                   u128 *high, unsigned *prefix)
{
  char addr[REG_ADDR_BUF];
  const char *slash = strchr(s, '/');
  size_t len = slash ? (size_t)(slash - s) : strlen(s);
  struct reg_addr_key key;
  unsigned bits;
  unsigned max;
  u128 host_mask;

  if (len == 0 || len >= sizeof(addr) || (!slash && !bare_ok))
    return -EINVAL;
  memcpy(addr, s, len);
  addr[len] = '\0';
  if (parse_address(addr, 0, &key, family) < 0)
    return -EINVAL;
  max = *family == AF_INET ? 32 : 128;
  bits = max;
  if (slash && parse_prefix(slash + 1, max, &bits) < 0)
    return -EINVAL;
  *prefix = bits;
  bits += 128 - max; /* as a prefix of the 128-bit key */
  host_mask = bits == 0 ? ~(u128)0 : (((u128)1 << (128 - bits)) - 1);
  *low = key_to_u128(&key);
  if (*low & host_mask)
    return -EINVAL;
  *high = *low | host_mask;
  return 0;
}

static int canonical_cidr(const char *in, char **out)
{
  char addr[REG_ADDR_BUF];
  char cidr[REG_CIDR_BUF];
  struct reg_addr_key key;
  u128 low, high;
  unsigned prefix;
  int family;

  if (in == NULL || reg_parse_cidr(in, true, &family, &low, &high, &prefix) < 0)
    return -EINVAL;
  u128_to_key(low, &key);
  key_format(&key, family, addr);
  snprintf(cidr, sizeof(cidr), "%s/%u", addr, prefix);
  return (*out = strdup(cidr)) ? 0 : -ENOMEM;
}

int reg_sources_normalize(const char *const *src, size_t n, char ***out,
                          struct reg_error *err)
{
  char **v;

  *out = NULL;
  if (n == 0)
    return 0;
  if (n > REG_MAX_ALLOWED_SOURCES)
    return reg_set_error(err, -EINVAL, "allowed_sources",
                         "more than %d sources", REG_MAX_ALLOWED_SOURCES);
  if (src == NULL)
    return reg_set_error(err, -EINVAL, "allowed_sources", "no list");
  v = calloc(n, sizeof(*v));
  if (v == NULL)
    return reg_set_error(err, -ENOMEM, NULL, "out of memory");
  for (size_t i = 0; i < n; i++) {
    int r = canonical_cidr(src[i], &v[i]);

    if (r < 0) {
      reg_strings_free(v, n);
      if (r == -ENOMEM)
        return reg_set_error(err, r, NULL, "out of memory");
      return reg_set_error(err, r, "allowed_sources",
                           "%s is not a CIDR (ADDR/LEN with zero host bits)",
                           src[i] ? src[i] : "(null)");
    }
  }
  *out = v;
  return 0;
}

/* The address to start looking from: the network's hint, within range.
 * *full is set when the hint says every address is taken. */
static int search_start(struct reg *reg, const struct config_network *net,
                        u128 *start, bool *full)
{
  struct reg_addr_key key;
  int r = reg->ops->network_hint_get(reg->store, net->name, &key);
  u128 hint;

  *full = false;
  *start = net->first;
  if (r == -ENOENT)
    return 0;
  if (r < 0)
    return r;
  hint = key_to_u128(&key);
  if (hint == net->last + 1)
    *full = true;
  else if (hint > net->first && hint <= net->last)
    *start = hint;
  /* Below the range, or past it (the range shrank): from the start. */
  return 0;
}

/* The lowest free address at or above the hint. Every address below the
 * hint is taken, so filling a network probes each address about once in
 * all, not once per endpoint. */
static int lowest_free(struct reg *reg, const struct config_network *net,
                       struct reg_addr_key *key, struct reg_error *err)
{
  u128 candidate;
  bool full, taken = true;
  int r;

  if ((r = search_start(reg, net, &candidate, &full)) < 0)
    return reg_store_error(reg, err, r);
  for (; !full && candidate >= net->first && candidate <= net->last;
       candidate++) {
    u128_to_key(candidate, key);
    if ((r = reg->ops->address_taken(reg->store, net->name, key, &taken)) < 0)
      return reg_store_error(reg, err, r);
    if (!taken)
      break;
  }
  if (full || taken)
    return reg_set_error(err, -ENOSPC, "network",
                         "no free address left in network %s", net->name);
  {
    struct reg_addr_key next;

    u128_to_key(candidate + 1, &next);
    if ((r = reg->ops->network_hint_set(reg->store, net->name, &next)) < 0)
      return reg_store_error(reg, err, r);
  }
  return 0;
}

int reg_allocate_address(struct reg *reg, const struct config_network *net,
                         const char *asked, struct reg_addr_key *key,
                         char *text, struct reg_error *err)
{
  int r;

  if (asked != NULL && *asked != '\0') {
    int family;
    u128 candidate;

    if (parse_address(asked, net->family, key, &family) < 0)
      return reg_set_error(err, -EINVAL, "address",
                           "%s is not an IPv%d address", asked,
                           net->family == AF_INET ? 4 : 6);
    candidate = key_to_u128(key);
    if (candidate < net->first || candidate > net->last)
      return reg_set_error(err, -EINVAL, "address",
                           "%s is not a usable address of network %s", asked,
                           net->name);
    key_format(key, net->family, text);
    /* The store's unique index answers -EADDRINUSE if it is taken. */
    return 0;
  }
  if ((r = lowest_free(reg, net, key, err)) < 0)
    return r;
  key_format(key, net->family, text);
  return 0;
}

int reg_release_address(struct reg *reg, const char *network,
                        const char *address)
{
  struct reg_addr_key key, hint;
  int family;
  int r;

  if (parse_address(address, 0, &key, &family) < 0)
    return 0; /* nothing to give back */
  r = reg->ops->network_hint_get(reg->store, network, &hint);
  if (r == -ENOENT)
    return 0; /* no hint: searches start at the range's start anyway */
  if (r < 0)
    return r;
  if (key_to_u128(&key) < key_to_u128(&hint))
    return reg->ops->network_hint_set(reg->store, network, &key);
  return 0;
}

int reg_target_address_normalize(const char *in, char *out, size_t len)
{
  char host[REG_ADDR_BUF];
  const char *colon;
  const char *h = in;
  size_t hlen;
  struct reg_addr_key key;
  unsigned port;
  int family;

  if (in == NULL)
    return -EINVAL;
  if (in[0] == '[') {
    const char *close = strchr(in, ']');
    if (close == NULL || close[1] != ':')
      return -EINVAL;
    h = in + 1;
    hlen = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(in, ':');
    if (colon == NULL)
      return -EINVAL;
    hlen = (size_t)(colon - in);
  }
  if (hlen == 0 || hlen >= sizeof(host) ||
      parse_prefix(colon + 1, 65535, &port) < 0 || port == 0)
    return -EINVAL;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  if (parse_address(host, in[0] == '[' ? AF_INET6 : AF_INET, &key, &family) < 0)
    return -EINVAL;
  key_format(&key, family, host);
  snprintf(out, len, family == AF_INET ? "%s:%u" : "[%s]:%u", host, port);
  return 0;
}

/* The IP of a target "IP:PORT" or "[IPv6]:PORT" as a key value; -EINVAL
 * when it is none. */
static int target_address_value(const char *target, int *family, u128 *value)
{
  char host[REG_ADDR_BUF];
  const char *h = target, *end;
  struct reg_addr_key key;
  size_t hlen;

  if (target == NULL)
    return -EINVAL;
  if (target[0] == '[') {
    h = target + 1;
    end = strchr(h, ']');
  } else {
    end = strrchr(target, ':');
  }
  if (end == NULL || (hlen = (size_t)(end - h)) == 0 || hlen >= sizeof(host))
    return -EINVAL;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  if (parse_address(host, target[0] == '[' ? AF_INET6 : AF_INET, &key, family) <
      0)
    return -EINVAL;
  *value = key_to_u128(&key);
  return 0;
}

bool reg_range_holds_target(int family, u128 low, u128 high, const char *target)
{
  int target_family;
  u128 value;

  return family != 0 &&
         target_address_value(target, &target_family, &value) == 0 &&
         target_family == family && value >= low && value <= high;
}

int reg_refuse_preserved_inside(const char *field, const char *group,
                                const char *target, const char *network,
                                const char *range, struct reg_error *err)
{
  return reg_set_error(
      err, -EBUSY, field,
      "preserve_client_ip cannot work for target %s of target group %s: it "
      "is inside network %s (%s), so it would answer that network's clients "
      "directly, not through nlb",
      target, group, network, range);
}
