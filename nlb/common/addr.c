#include "nlb/common/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_port(const char *text, uint16_t *port)
{
  char *end;
  long value;

  if (*text < '0' || *text > '9')
    return -EINVAL;
  errno = 0;
  value = strtol(text, &end, 10);
  if (errno || *end || value < 0 || value > 65535)
    return -EINVAL;
  *port = (uint16_t)value;
  return 0;
}

int nlb_addr_parse_ip(const char *text, uint16_t port, union nlb_sockaddr *out)
{
  memset(out, 0, sizeof(*out));
  if (inet_pton(AF_INET, text, &out->in.sin_addr) == 1) {
    out->in.sin_family = AF_INET;
    out->in.sin_port = htons(port);
    return 0;
  }
  if (inet_pton(AF_INET6, text, &out->in6.sin6_addr) == 1) {
    out->in6.sin6_family = AF_INET6;
    out->in6.sin6_port = htons(port);
    return 0;
  }
  return -EINVAL;
}

int nlb_addr_parse(const char *text, union nlb_sockaddr *out)
{
  char host[INET6_ADDRSTRLEN + 1];
  const char *colon;
  const char *port_text;
  size_t host_len;
  uint16_t port;

  if (text[0] == '[') {
    const char *close = strchr(text, ']');
    if (!close || close[1] != ':')
      return -EINVAL;
    host_len = (size_t)(close - text - 1);
    if (host_len == 0 || host_len >= sizeof(host))
      return -EINVAL;
    memcpy(host, text + 1, host_len);
    host[host_len] = '\0';
    port_text = close + 2;
    if (inet_pton(AF_INET6, host, &out->in6.sin6_addr) != 1)
      return -EINVAL;
  } else {
    colon = strrchr(text, ':');
    if (!colon || strchr(text, ':') != colon)
      return -EINVAL;
    host_len = (size_t)(colon - text);
    if (host_len == 0 || host_len >= sizeof(host))
      return -EINVAL;
    memcpy(host, text, host_len);
    host[host_len] = '\0';
    port_text = colon + 1;
    struct in_addr probe;
    if (inet_pton(AF_INET, host, &probe) != 1)
      return -EINVAL;
  }
  if (parse_port(port_text, &port) < 0)
    return -EINVAL;
  return nlb_addr_parse_ip(host, port, out);
}

char *nlb_addr_format_ip(const union nlb_sockaddr *addr, char *buf, size_t size)
{
  const void *raw = addr->sa.sa_family == AF_INET6
                        ? (const void *)&addr->in6.sin6_addr
                        : (const void *)&addr->in.sin_addr;
  if (addr->sa.sa_family != AF_INET && addr->sa.sa_family != AF_INET6) {
    snprintf(buf, size, "-");
    return buf;
  }
  if (!inet_ntop(addr->sa.sa_family, raw, buf, (socklen_t)size))
    snprintf(buf, size, "?");
  return buf;
}

char *nlb_addr_format(const union nlb_sockaddr *addr, char *buf, size_t size)
{
  char ip[INET6_ADDRSTRLEN];

  if (addr->sa.sa_family == AF_INET6)
    snprintf(buf, size, "[%s]:%u", nlb_addr_format_ip(addr, ip, sizeof(ip)),
             nlb_addr_port(addr));
  else if (addr->sa.sa_family == AF_INET)
    snprintf(buf, size, "%s:%u", nlb_addr_format_ip(addr, ip, sizeof(ip)),
             nlb_addr_port(addr));
  else
    snprintf(buf, size, "-");
  return buf;
}

socklen_t nlb_addr_len(const union nlb_sockaddr *addr)
{
  return addr->sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                        : sizeof(struct sockaddr_in);
}

uint16_t nlb_addr_port(const union nlb_sockaddr *addr)
{
  return ntohs(addr->sa.sa_family == AF_INET6 ? addr->in6.sin6_port
                                              : addr->in.sin_port);
}

void nlb_addr_set_port(union nlb_sockaddr *addr, uint16_t port)
{
  if (addr->sa.sa_family == AF_INET6)
    addr->in6.sin6_port = htons(port);
  else
    addr->in.sin_port = htons(port);
}

bool nlb_addr_equal(const union nlb_sockaddr *a, const union nlb_sockaddr *b)
{
  if (a->sa.sa_family != b->sa.sa_family)
    return false;
  if (a->sa.sa_family == AF_INET)
    return a->in.sin_port == b->in.sin_port &&
           a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
  if (a->sa.sa_family == AF_INET6)
    return a->in6.sin6_port == b->in6.sin6_port &&
           memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0;
  return false;
}

bool nlb_addr_is_any(const union nlb_sockaddr *addr)
{
  if (addr->sa.sa_family == AF_INET)
    return addr->in.sin_addr.s_addr == htonl(INADDR_ANY);
  if (addr->sa.sa_family == AF_INET6)
    return IN6_IS_ADDR_UNSPECIFIED(&addr->in6.sin6_addr);
  return false;
}

bool nlb_addr_is_loopback(const union nlb_sockaddr *addr)
{
  if (addr->sa.sa_family == AF_INET)
    return (ntohl(addr->in.sin_addr.s_addr) >> 24) == 127;
  if (addr->sa.sa_family == AF_INET6)
    return IN6_IS_ADDR_LOOPBACK(&addr->in6.sin6_addr);
  return false;
}

int nlb_cidr_parse(const char *text, struct nlb_cidr *out)
{
  char host[INET6_ADDRSTRLEN + 1];
  const char *slash = strchr(text, '/');
  size_t host_len = slash ? (size_t)(slash - text) : strlen(text);
  unsigned max_prefix;

  memset(out, 0, sizeof(*out));
  if (host_len == 0 || host_len >= sizeof(host))
    return -EINVAL;
  memcpy(host, text, host_len);
  host[host_len] = '\0';
  if (inet_pton(AF_INET, host, out->bytes) == 1) {
    out->family = AF_INET;
    max_prefix = 32;
  } else if (inet_pton(AF_INET6, host, out->bytes) == 1) {
    out->family = AF_INET6;
    max_prefix = 128;
  } else {
    return -EINVAL;
  }
  out->prefix_len = max_prefix;
  if (slash) {
    char *end;
    long prefix;
    if (slash[1] < '0' || slash[1] > '9')
      return -EINVAL;
    prefix = strtol(slash + 1, &end, 10);
    if (*end || prefix < 0 || prefix > (long)max_prefix)
      return -EINVAL;
    out->prefix_len = (unsigned)prefix;
  }
  for (unsigned bit = out->prefix_len; bit < max_prefix; bit++)
    if (out->bytes[bit / 8] & (0x80u >> (bit % 8)))
      return -EINVAL;
  return 0;
}

static bool prefix_match(const uint8_t *net, const uint8_t *addr,
                         unsigned prefix_len)
{
  unsigned full = prefix_len / 8;
  unsigned rest = prefix_len % 8;

  if (memcmp(net, addr, full) != 0)
    return false;
  if (rest == 0)
    return true;
  uint8_t mask = (uint8_t)(0xffu << (8 - rest));
  return (net[full] & mask) == (addr[full] & mask);
}

bool nlb_cidr_contains(const struct nlb_cidr *range,
                       const union nlb_sockaddr *addr)
{
  if (range->family == AF_INET && addr->sa.sa_family == AF_INET)
    return prefix_match(range->bytes, (const uint8_t *)&addr->in.sin_addr,
                        range->prefix_len);
  if (range->family == AF_INET6 && addr->sa.sa_family == AF_INET6)
    return prefix_match(range->bytes, addr->in6.sin6_addr.s6_addr,
                        range->prefix_len);
  if (range->family == AF_INET && addr->sa.sa_family == AF_INET6 &&
      IN6_IS_ADDR_V4MAPPED(&addr->in6.sin6_addr))
    return prefix_match(range->bytes, addr->in6.sin6_addr.s6_addr + 12,
                        range->prefix_len);
  return false;
}
