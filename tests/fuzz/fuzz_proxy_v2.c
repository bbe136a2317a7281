/* libFuzzer target for the PROXY v2 codec (nlb/proxy_v2.c). nlb only
 * writes PROXY headers, so the other direction is a reader written here
 * from the specification (haproxy's proxy-protocol.txt, section 2.2): every
 * header nlb_proxy_v2_encode writes must read back as the addresses, ports
 * and endpoint ID it was given, in the family the header's contract names,
 * and every refusal must be the documented one with the buffer untouched.
 *
 * Input: a flags byte (bit 0, 1: source, destination IPv6; bit 2: an
 * IPv4-mapped source; bit 3: an endpoint ID; bit 4: an unsupported
 * family; bit 5: a NULL address), the buffer's size, 16-byte source and
 * destination addresses, two ports, then the endpoint ID's bytes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nlb/dataplane/proxy_v2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INPUT_FIXED (2 + 16 + 16 + 2 + 2)
#define FILL 0xA5

static const uint8_t signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0,    0,
                                          0, 0, 0, 0, 0xFF, 0xFF};

/* One side, as the input gives it. */
static void make_addr(struct sockaddr_storage *ss, bool v6, bool mapped,
                      const uint8_t *bytes, const uint8_t *port)
{
  memset(ss, 0, sizeof *ss);
  if (!v6) {
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, bytes, 4);
    memcpy(&sin->sin_port, port, 2);
  } else {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, bytes, 16);
    if (mapped)
      memcpy(&sin6->sin6_addr, mapped_prefix, 12);
    memcpy(&sin6->sin6_port, port, 2);
  }
}

/* What the header must carry for ss: its IPv4 form when it has one. */
static bool is_v4(const struct sockaddr_storage *ss, uint8_t v4[4],
                  uint8_t v6[16])
{
  if (ss->ss_family == AF_INET) {
    memcpy(v4, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    memcpy(v6, mapped_prefix, 12);
    memcpy(v6 + 12, v4, 4);
    return true;
  }
  memcpy(v6, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
  memcpy(v4, v6 + 12, 4);
  return memcmp(v6, mapped_prefix, 12) == 0;
}

static const uint8_t *port_of(const struct sockaddr_storage *ss)
{
  return ss->ss_family == AF_INET
             ? (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_port
             : (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_port;
}

static bool id_valid(const char *id)
{
  size_t n = strlen(id);
  if (n == 0 || n > NLB_PROXY_V2_ENDPOINT_ID_MAX)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
          (c >= '0' && c <= '9') || c == '-'))
      return false;
  }
  return true;
}

/* Reads the header back and compares it with what was asked. */
static void read_back(const uint8_t *h, size_t len,
                      const struct sockaddr_storage *src,
                      const struct sockaddr_storage *dst, const char *id)
{
  uint8_t s4[4], s6[16], d4[4], d6[16];
  bool v4 = is_v4(src, s4, s6) & is_v4(dst, d4, d6);
  size_t addr_len = v4 ? 12 : 36;

  if (len < 16 || memcmp(h, signature, 12) != 0 || h[12] != 0x21 ||
      h[13] != (v4 ? 0x11 : 0x21) || (size_t)(h[14] << 8 | h[15]) != len - 16 ||
      len - 16 < addr_len)
    abort();
  const uint8_t *a = h + 16;
  if (v4 ? memcmp(a, s4, 4) != 0 || memcmp(a + 4, d4, 4) != 0
         : memcmp(a, s6, 16) != 0 || memcmp(a + 16, d6, 16) != 0)
    abort();
  a += v4 ? 8 : 32;
  if (memcmp(a, port_of(src), 2) != 0 || memcmp(a + 2, port_of(dst), 2) != 0)
    abort();
  a += 4;
  /* TLVs: only the endpoint's, exactly when an ID was given. */
  size_t left = len - 16 - addr_len;
  if (id == NULL) {
    if (left != 0)
      abort();
    return;
  }
  size_t id_len = strlen(id);
  if (left != 3 + 1 + id_len || a[0] != NLB_PROXY_V2_TLV_AWS ||
      (size_t)(a[1] << 8 | a[2]) != 1 + id_len ||
      a[3] != NLB_PROXY_V2_AWS_SUBTYPE_ENDPOINT_ID ||
      memcmp(a + 4, id, id_len) != 0)
    abort();
}

static void check_local(size_t cap)
{
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];

  memset(buf, FILL, sizeof buf);
  int n = nlb_proxy_v2_encode_local(buf, cap);
  if (cap < NLB_PROXY_V2_LOCAL_LEN) {
    if (n != -ENOSPC || buf[0] != FILL)
      abort();
    return;
  }
  if (n != NLB_PROXY_V2_LOCAL_LEN || memcmp(buf, signature, 12) != 0 ||
      buf[12] != 0x20 || buf[13] != 0 || buf[14] != 0 || buf[15] != 0 ||
      buf[16] != FILL)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct sockaddr_storage src, dst;
  uint8_t buf[NLB_PROXY_V2_MAX_LEN + 16];
  char id[NLB_PROXY_V2_ENDPOINT_ID_MAX + 16];
  uint8_t flags;
  size_t cap;

  if (size < INPUT_FIXED)
    return 0;
  flags = data[0];
  cap = data[1] == 0xFF ? NLB_PROXY_V2_MAX_LEN : data[1];
  make_addr(&src, flags & 1, flags & 4, data + 2, data + 34);
  make_addr(&dst, flags & 2, false, data + 18, data + 36);
  if (flags & 16)
    dst.ss_family = AF_UNIX;
  size_t id_len = size - INPUT_FIXED;
  if (id_len >= sizeof id)
    id_len = sizeof id - 1;
  memcpy(id, data + INPUT_FIXED, id_len);
  id[id_len] = '\0';
  const char *endpoint_id = flags & 8 ? id : NULL;
  const struct sockaddr *s = flags & 32 ? NULL : (struct sockaddr *)&src;

  memset(buf, FILL, sizeof buf);
  int n =
      nlb_proxy_v2_encode(buf, cap, s, (struct sockaddr *)&dst, endpoint_id);
  uint8_t s4[4], s6[16], d4[4], d6[16];
  bool v4 =
      is_v4(&src, s4, s6) & (dst.ss_family == AF_UNIX || is_v4(&dst, d4, d6));
  size_t want =
      16 + (v4 ? 12 : 36) + (endpoint_id != NULL ? 4 + strlen(endpoint_id) : 0);
  int expected = s == NULL                              ? -EINVAL
                 : dst.ss_family == AF_UNIX             ? -EAFNOSUPPORT
                 : endpoint_id != NULL && !id_valid(id) ? -EINVAL
                 : cap < want                           ? -ENOSPC
                                                        : (int)want;
  if (n != expected)
    abort();
  if (n < 0) {
    for (size_t i = 0; i < sizeof buf; i++)
      if (buf[i] != FILL)
        abort(); /* untouched on error */
  } else {
    read_back(buf, (size_t)n, &src, &dst, endpoint_id);
    for (size_t i = (size_t)n; i < sizeof buf; i++)
      if (buf[i] != FILL)
        abort(); /* nothing written past the header */
  }
  check_local(cap);
  return 0;
}
