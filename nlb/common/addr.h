/* Socket addresses and CIDR ranges: parsing, formatting, matching.
 * Pure functions, safe from any thread. */
#ifndef NLB_ADDR_H
#define NLB_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An IPv4 or IPv6 socket address, 28 bytes instead of sockaddr_storage's 128:
 * flows hold two of these. */
union nlb_sockaddr {
  struct sockaddr sa;
  struct sockaddr_in in;
  struct sockaddr_in6 in6;
};

/* An address range: family, network bytes, prefix length. */
struct nlb_cidr {
  int family; /* AF_INET or AF_INET6 */
  uint8_t bytes[16];
  unsigned prefix_len;
};

/* Longest text nlb_addr_format writes, with the terminating NUL:
 * "[" IPv6 "]:" port. */
#define NLB_ADDR_TEXT_MAX 56

/* Parses "1.2.3.4:80" or "[::1]:80" into *out. Returns 0 or -EINVAL. */
int nlb_addr_parse(const char *text, union nlb_sockaddr *out);

/* Parses a bare IP address ("1.2.3.4", "::1") with the given port. */
int nlb_addr_parse_ip(const char *text, uint16_t port, union nlb_sockaddr *out);

/* Writes "1.2.3.4:80" or "[::1]:80" into buf (at least NLB_ADDR_TEXT_MAX).
 * Returns buf. */
char *nlb_addr_format(const union nlb_sockaddr *addr, char *buf, size_t size);

/* Writes the IP alone, without port or brackets. Returns buf. */
char *nlb_addr_format_ip(const union nlb_sockaddr *addr, char *buf,
                         size_t size);

/* Length of the sockaddr for its family (for bind/connect). */
socklen_t nlb_addr_len(const union nlb_sockaddr *addr);

uint16_t nlb_addr_port(const union nlb_sockaddr *addr);
void nlb_addr_set_port(union nlb_sockaddr *addr, uint16_t port);

/* True when both hold the same family, address and port. */
bool nlb_addr_equal(const union nlb_sockaddr *a, const union nlb_sockaddr *b);

/* True for 0.0.0.0 and ::, the wildcard addresses. */
bool nlb_addr_is_any(const union nlb_sockaddr *addr);

/* True for 127.0.0.0/8 and ::1. */
bool nlb_addr_is_loopback(const union nlb_sockaddr *addr);

/* Parses "10.0.0.0/24" or "fd00::/64" (a bare address is a host route).
 * Host bits must be zero. Returns 0 or -EINVAL. */
int nlb_cidr_parse(const char *text, struct nlb_cidr *out);

/* True when addr lies inside range. An IPv4-mapped IPv6 address matches an
 * IPv4 range, since a dual-stack listener reports IPv4 clients that way. */
bool nlb_cidr_contains(const struct nlb_cidr *range,
                       const union nlb_sockaddr *addr);

#endif
