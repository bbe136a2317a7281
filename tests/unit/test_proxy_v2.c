/* CUnit suite for nlb/proxy_v2.c: byte-exact vectors written out by hand,
 * then properties (no write past the header, nothing written on error, a
 * decoder's view of random headers). */
#include "nlb/dataplane/proxy_v2.h"

#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

/* clang-format off */
#define SIG 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
/* clang-format on */
#define CANARY 0xA5

static struct sockaddr_in v4(const char *ip, unsigned port)
{
  struct sockaddr_in sin;

  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)port);
  CU_ASSERT_FATAL(inet_pton(AF_INET, ip, &sin.sin_addr) == 1);
  return sin;
}

static struct sockaddr_in6 v6(const char *ip, unsigned port)
{
  struct sockaddr_in6 sin6;

  memset(&sin6, 0, sizeof(sin6));
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons((uint16_t)port);
  CU_ASSERT_FATAL(inet_pton(AF_INET6, ip, &sin6.sin6_addr) == 1);
  return sin6;
}

#define SA(x) ((const struct sockaddr *)&(x))

/* Prints both buffers on mismatch, so a failing vector shows where. */
static int same_bytes(const uint8_t *got, int got_len, const uint8_t *want,
                      size_t want_len)
{
  if (got_len == (int)want_len && memcmp(got, want, want_len) == 0)
    return 1;
  fprintf(stderr, "\n  got  (%d):", got_len);
  for (int i = 0; i < got_len; i++)
    fprintf(stderr, " %02X", got[i]);
  fprintf(stderr, "\n  want (%zu):", want_len);
  for (size_t i = 0; i < want_len; i++)
    fprintf(stderr, " %02X", want[i]);
  fprintf(stderr, "\n");
  return 0;
}

/* Checks that nothing past buf[from] was written (buf was filled with
 * CANARY). */
static int untouched_from(const uint8_t *buf, size_t from, size_t cap)
{
  for (size_t i = from; i < cap; i++)
    if (buf[i] != CANARY)
      return 0;
  return 1;
}

static void test_proxy_v2_ipv4_no_tlv(void)
{
  /* 172.31.7.113:51442 -> 172.31.10.31:80, the addresses of a header an
   * AWS NLB sent through a VPC endpoint (tests/tools/test_ppv2_receiver.py
   * replays it whole). */
  /* clang-format off */
  static const uint8_t want[] = {
      SIG,
      0x21, 0x11, 0x00, 0x0C,             /* PROXY, TCP4, len 12 */
      0xAC, 0x1F, 0x07, 0x71,             /* 172.31.7.113 */
      0xAC, 0x1F, 0x0A, 0x1F,             /* 172.31.10.31 */
      0xC8, 0xF2,                         /* 51442 */
      0x00, 0x50,                         /* 80 */
  };
  /* clang-format on */
  struct sockaddr_in src = v4("172.31.7.113", 51442);
  struct sockaddr_in dst = v4("172.31.10.31", 80);
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];
  int n;

  memset(buf, CANARY, sizeof(buf));
  n = nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(dst), NULL);
  CU_ASSERT_EQUAL(n, 28);
  CU_ASSERT(same_bytes(buf, n, want, sizeof(want)));
  CU_ASSERT(untouched_from(buf, sizeof(want), sizeof(buf)));
}

static void test_proxy_v2_ipv4_endpoint_tlv(void)
{
  /* clang-format off */
  static const uint8_t want[] = {
      SIG,
      0x21, 0x11, 0x00, 0x24,             /* len 12 + 24 = 36 */
      0xAC, 0x1F, 0x07, 0x71,
      0xAC, 0x1F, 0x0A, 0x1F,
      0xC8, 0xF2, 0x00, 0x50,
      0xEA, 0x00, 0x15, 0x01,             /* PP2_TYPE_AWS, len 21, subtype 1 */
      'e', 'p', '-', '0', '1', '2', '3', '4', '5', '6',
      '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f', '0',
  };
  /* clang-format on */
  struct sockaddr_in src = v4("172.31.7.113", 51442);
  struct sockaddr_in dst = v4("172.31.10.31", 80);
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];
  int n;

  memset(buf, CANARY, sizeof(buf));
  n = nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(dst),
                          "ep-0123456789abcdef0");
  CU_ASSERT_EQUAL(n, 52);
  CU_ASSERT(same_bytes(buf, n, want, sizeof(want)));
  CU_ASSERT(untouched_from(buf, sizeof(want), sizeof(buf)));
}

/* PP2_TYPE_AUTHORITY (the server name of a TLS passthrough flow) after
 * the endpoint TLV: the length field grows with it; a header that does
 * not fit, or a buffer that is not a header, is refused untouched. */
static void test_proxy_v2_add_authority_tlv(void)
{
  /* clang-format off */
  static const uint8_t want[] = {
      SIG,
      0x21, 0x11, 0x00, 0x1D,             /* len 12 + 5 + 12 = 29 */
      0xAC, 0x1F, 0x07, 0x71,
      0xAC, 0x1F, 0x0A, 0x1F,
      0xC8, 0xF2, 0x00, 0x50,
      0xEA, 0x00, 0x02, 0x01,             /* PP2_TYPE_AWS, the ID "e" */
      'e',
      0x02, 0x00, 0x09,                   /* PP2_TYPE_AUTHORITY, len 9 */
      'a', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e',
  };
  /* clang-format on */
  struct sockaddr_in src = v4("172.31.7.113", 51442);
  struct sockaddr_in dst = v4("172.31.10.31", 80);
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];
  int n;

  memset(buf, CANARY, sizeof(buf));
  n = nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(dst), "e");
  CU_ASSERT_EQUAL_FATAL(n, 33);
  CU_ASSERT_EQUAL(nlb_proxy_v2_add_tlv(buf, (size_t)n, 44, PP2_TYPE_AUTHORITY,
                                       "a.example", 9),
                  -ENOSPC);
  CU_ASSERT_EQUAL(nlb_proxy_v2_add_tlv(buf, (size_t)n - 1, sizeof(buf),
                                       PP2_TYPE_AUTHORITY, "a.example", 9),
                  -EINVAL);
  CU_ASSERT(untouched_from(buf, (size_t)n, sizeof(buf)));
  n = nlb_proxy_v2_add_tlv(buf, (size_t)n, sizeof(buf), PP2_TYPE_AUTHORITY,
                           "a.example", 9);
  CU_ASSERT_EQUAL(n, 45);
  CU_ASSERT(same_bytes(buf, n, want, sizeof(want)));
  CU_ASSERT(untouched_from(buf, sizeof(want), sizeof(buf)));
}

static void test_proxy_v2_matches_aws_capture(void)
{
  /* The 100-byte header AWS NLB sent for a PrivateLink flow, with its CRC32C
   * TLV (03 00 04 E8 D6 89 2D) and NOOP padding (04 00 24 + 36 zeros) taken
   * out and len lowered by their 7 + 39 bytes: 0x54 - 46 = 0x26. */
  /* clang-format off */
  static const uint8_t want[] = {
      SIG,
      0x21, 0x11, 0x00, 0x26,
      0xAC, 0x1F, 0x07, 0x71, 0xAC, 0x1F, 0x0A, 0x1F, 0xC8, 0xF2, 0x00, 0x50,
      0xEA, 0x00, 0x17, 0x01,
      'v', 'p', 'c', 'e', '-', '0', '8', 'd', '2', 'b', 'f',
      '1', '5', 'f', 'a', 'c', '5', '0', '0', '1', 'c', '9',
  };
  /* clang-format on */
  struct sockaddr_in src = v4("172.31.7.113", 51442);
  struct sockaddr_in dst = v4("172.31.10.31", 80);
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];
  int n;

  n = nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(dst),
                          "vpce-08d2bf15fac5001c9");
  CU_ASSERT_EQUAL(n, 100 - 46);
  CU_ASSERT(same_bytes(buf, n, want, sizeof(want)));
}

static void test_proxy_v2_ipv6_no_tlv(void)
{
  /* clang-format off */
  static const uint8_t want[] = {
      SIG,
      0x21, 0x21, 0x00, 0x24,             /* PROXY, TCP6, len 36 */
      0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00,   /* 2001:db8::1 */
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
      0xFD, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   /* fd00::a:2 */
      0x00, 0x00, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x02,
      0xC8, 0xF2,                         /* 51442 */
      0x01, 0xBB,                         /* 443 */
  };
  /* clang-format on */
  struct sockaddr_in6 src = v6("2001:db8::1", 51442);
  struct sockaddr_in6 dst = v6("fd00::a:2", 443);
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];
  int n;

  memset(buf, CANARY, sizeof(buf));
  n = nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(dst), NULL);
  CU_ASSERT_EQUAL(n, 52);
  CU_ASSERT(same_bytes(buf, n, want, sizeof(want)));
  CU_ASSERT(untouched_from(buf, sizeof(want), sizeof(buf)));
}

static void test_proxy_v2_ipv6_endpoint_tlv(void)
{
  /* clang-format off */
  static const uint8_t want[] = {
      SIG,
      0x21, 0x21, 0x00, 0x3C,             /* len 36 + 24 = 60 */
      0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
      0xFD, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x02,
      0xC8, 0xF2, 0x01, 0xBB,
      0xEA, 0x00, 0x15, 0x01,
      'e', 'p', '-', '0', '1', '2', '3', '4', '5', '6',
      '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f', '0',
  };
  /* clang-format on */
  struct sockaddr_in6 src = v6("2001:db8::1", 51442);
  struct sockaddr_in6 dst = v6("fd00::a:2", 443);
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];
  int n;

  memset(buf, CANARY, sizeof(buf));
  n = nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(dst),
                          "ep-0123456789abcdef0");
  CU_ASSERT_EQUAL(n, 76);
  CU_ASSERT(same_bytes(buf, n, want, sizeof(want)));
  CU_ASSERT(untouched_from(buf, sizeof(want), sizeof(buf)));
}

static void test_proxy_v2_mapped_pair_is_ipv4(void)
{
  /* A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; the target
   * must see the same bytes as from an AF_INET listener. */
  /* clang-format off */
  static const uint8_t want[] = {
      SIG,
      0x21, 0x11, 0x00, 0x0C,
      0xAC, 0x1F, 0x07, 0x71, 0xAC, 0x1F, 0x0A, 0x1F, 0xC8, 0xF2, 0x00, 0x50,
  };
  /* clang-format on */
  struct sockaddr_in6 src = v6("::ffff:172.31.7.113", 51442);
  struct sockaddr_in6 dst6 = v6("::ffff:172.31.10.31", 80);
  struct sockaddr_in dst4 = v4("172.31.10.31", 80);
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];
  int n;

  n = nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(dst6), NULL);
  CU_ASSERT(same_bytes(buf, n, want, sizeof(want)));
  n = nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(dst4), NULL);
  CU_ASSERT(same_bytes(buf, n, want, sizeof(want)));
}

static void test_proxy_v2_mixed_families_are_mapped_ipv6(void)
{
  /* clang-format off */
  static const uint8_t want[] = {
      SIG,
      0x21, 0x21, 0x00, 0x24,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   /* ::ffff:127.0.0.1 */
      0x00, 0x00, 0xFF, 0xFF, 0x7F, 0x00, 0x00, 0x01,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   /* ::1 */
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
      0x30, 0x39,                         /* 12345 */
      0x1F, 0x90,                         /* 8080 */
  };
  /* clang-format on */
  struct sockaddr_in src = v4("127.0.0.1", 12345);
  struct sockaddr_in6 dst = v6("::1", 8080);
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];
  int n;

  n = nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(dst), NULL);
  CU_ASSERT(same_bytes(buf, n, want, sizeof(want)));
}

static void test_proxy_v2_local(void)
{
  static const uint8_t want[] = {SIG, 0x20, 0x00, 0x00, 0x00};
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];
  int n;

  memset(buf, CANARY, sizeof(buf));
  n = nlb_proxy_v2_encode_local(buf, sizeof(buf));
  CU_ASSERT_EQUAL(n, NLB_PROXY_V2_LOCAL_LEN);
  CU_ASSERT(same_bytes(buf, n, want, sizeof(want)));
  CU_ASSERT(untouched_from(buf, sizeof(want), sizeof(buf)));

  memset(buf, CANARY, sizeof(buf));
  CU_ASSERT_EQUAL(nlb_proxy_v2_encode_local(buf, 15), -ENOSPC);
  CU_ASSERT(untouched_from(buf, 0, sizeof(buf)));
  CU_ASSERT_EQUAL(nlb_proxy_v2_encode_local(NULL, 0), -ENOSPC);
  CU_ASSERT_EQUAL(nlb_proxy_v2_encode_local(buf, 16), 16);
}

static void test_proxy_v2_short_buffer_is_enospc(void)
{
  struct sockaddr_in src = v4("172.31.7.113", 51442);
  struct sockaddr_in dst = v4("172.31.10.31", 80);
  struct sockaddr_in6 src6 = v6("2001:db8::1", 1);
  struct sockaddr_in6 dst6 = v6("2001:db8::2", 2);
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];
  const char *id = "ep-0123456789abcdef0";

  /* Every capacity below the header's length fails and writes nothing;
   * exactly the length succeeds. */
  for (size_t cap = 0; cap < 52; cap++) {
    memset(buf, CANARY, sizeof(buf));
    CU_ASSERT_EQUAL(nlb_proxy_v2_encode(buf, cap, SA(src), SA(dst), id),
                    -ENOSPC);
    CU_ASSERT(untouched_from(buf, 0, sizeof(buf)));
  }
  CU_ASSERT_EQUAL(nlb_proxy_v2_encode(buf, 52, SA(src), SA(dst), id), 52);
  CU_ASSERT_EQUAL(nlb_proxy_v2_encode(buf, 27, SA(src), SA(dst), NULL),
                  -ENOSPC);
  CU_ASSERT_EQUAL(nlb_proxy_v2_encode(buf, 28, SA(src), SA(dst), NULL), 28);
  CU_ASSERT_EQUAL(nlb_proxy_v2_encode(buf, 75, SA(src6), SA(dst6), id),
                  -ENOSPC);
  CU_ASSERT_EQUAL(nlb_proxy_v2_encode(buf, 76, SA(src6), SA(dst6), id), 76);
  CU_ASSERT_EQUAL(nlb_proxy_v2_encode(NULL, 0, SA(src), SA(dst), NULL),
                  -ENOSPC);
}

static void test_proxy_v2_bad_endpoint_id_is_einval(void)
{
  static const char *const bad[] = {
      "",
      "ep_0123",
      "ep 0123",
      "ep-0123\n",
      "ep-0123.",
      "ep-\xC3\xA9",
      /* 65 characters */
      "ep-01234567890123456789012345678901234567890123456789012345678901",
  };
  struct sockaddr_in src = v4("172.31.7.113", 51442);
  struct sockaddr_in dst = v4("172.31.10.31", 80);
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];
  char longest[NLB_PROXY_V2_ENDPOINT_ID_MAX + 1];

  CU_ASSERT_EQUAL(strlen(bad[6]), 65);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    memset(buf, CANARY, sizeof(buf));
    CU_ASSERT_EQUAL(
        nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(dst), bad[i]),
        -EINVAL);
    CU_ASSERT(untouched_from(buf, 0, sizeof(buf)));
  }

  /* The limits themselves are valid: one character, and 64. */
  CU_ASSERT_EQUAL(nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(dst), "A"),
                  28 + 5);
  memset(longest, 'z', NLB_PROXY_V2_ENDPOINT_ID_MAX);
  longest[NLB_PROXY_V2_ENDPOINT_ID_MAX] = '\0';
  CU_ASSERT_EQUAL(
      nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(dst), longest),
      28 + 4 + NLB_PROXY_V2_ENDPOINT_ID_MAX);
  CU_ASSERT_EQUAL(buf[29], 0x00);
  CU_ASSERT_EQUAL(buf[30], 1 + NLB_PROXY_V2_ENDPOINT_ID_MAX);

  /* Bad ID wins over a short buffer: the caller's bug is the ID. */
  CU_ASSERT_EQUAL(nlb_proxy_v2_encode(buf, 0, SA(src), SA(dst), "a_b"),
                  -EINVAL);
  CU_ASSERT_EQUAL(nlb_proxy_v2_encode(buf, sizeof(buf), NULL, SA(dst), NULL),
                  -EINVAL);
  CU_ASSERT_EQUAL(nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), NULL, NULL),
                  -EINVAL);
}

static void test_proxy_v2_unknown_family_is_eafnosupport(void)
{
  struct sockaddr_in src = v4("127.0.0.1", 1);
  struct sockaddr_storage unix_addr;
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];

  memset(&unix_addr, 0, sizeof(unix_addr));
  unix_addr.ss_family = AF_UNIX;
  memset(buf, CANARY, sizeof(buf));
  CU_ASSERT_EQUAL(
      nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(unix_addr), NULL),
      -EAFNOSUPPORT);
  CU_ASSERT_EQUAL(
      nlb_proxy_v2_encode(buf, sizeof(buf), SA(unix_addr), SA(src), NULL),
      -EAFNOSUPPORT);
  CU_ASSERT(untouched_from(buf, 0, sizeof(buf)));
}

/* A minimal strict reader, only to check round trips below. Returns the
 * header length or -1. */
struct decoded {
  int fam;
  uint8_t src[16], dst[16];
  unsigned sport, dport;
  char id[NLB_PROXY_V2_ENDPOINT_ID_MAX + 1];
};

static int decode(const uint8_t *p, int n, struct decoded *out)
{
  static const uint8_t sig[12] = {SIG};
  int len, alen, off;

  memset(out, 0, sizeof(*out));
  if (n < 16 || memcmp(p, sig, 12) != 0 || p[12] != 0x21)
    return -1;
  len = (p[14] << 8) | p[15];
  if (16 + len != n)
    return -1;
  out->fam = p[13];
  alen = out->fam == 0x11 ? 4 : out->fam == 0x21 ? 16 : -1;
  if (alen < 0 || len < 2 * alen + 4)
    return -1;
  memcpy(out->src, p + 16, (size_t)alen);
  memcpy(out->dst, p + 16 + alen, (size_t)alen);
  off = 16 + 2 * alen;
  out->sport = (unsigned)(p[off] << 8 | p[off + 1]);
  out->dport = (unsigned)(p[off + 2] << 8 | p[off + 3]);
  off += 4;
  while (off < n) {
    int tlen;
    if (off + 3 > n)
      return -1;
    tlen = (p[off + 1] << 8) | p[off + 2];
    if (off + 3 + tlen > n)
      return -1;
    if (p[off] == 0xEA) {
      if (tlen < 2 || p[off + 3] != 0x01 || tlen - 1 > 64)
        return -1;
      memcpy(out->id, p + off + 4, (size_t)tlen - 1);
    }
    off += 3 + tlen;
  }
  return n;
}

static void test_proxy_v2_random_round_trip(void)
{
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-";
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];
  unsigned seed = 7;

  for (int round = 0; round < 2000; round++) {
    struct sockaddr_storage s, d;
    struct decoded dec;
    char id[NLB_PROXY_V2_ENDPOINT_ID_MAX + 1];
    int with_id = rand_r(&seed) % 2, six = rand_r(&seed) % 2, n;
    unsigned sport = (unsigned)rand_r(&seed) & 0xFFFF;
    unsigned dport = (unsigned)rand_r(&seed) & 0xFFFF;

    memset(&s, 0, sizeof(s));
    memset(&d, 0, sizeof(d));
    if (six) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s;
      struct sockaddr_in6 *b = (struct sockaddr_in6 *)&d;
      a->sin6_family = b->sin6_family = AF_INET6;
      for (int i = 0; i < 16; i++) {
        a->sin6_addr.s6_addr[i] = (uint8_t)rand_r(&seed);
        b->sin6_addr.s6_addr[i] = (uint8_t)rand_r(&seed);
      }
      a->sin6_addr.s6_addr[0] = 0x20; /* never IPv4-mapped */
      a->sin6_port = htons((uint16_t)sport);
      b->sin6_port = htons((uint16_t)dport);
    } else {
      struct sockaddr_in *a = (struct sockaddr_in *)&s;
      struct sockaddr_in *b = (struct sockaddr_in *)&d;
      a->sin_family = b->sin_family = AF_INET;
      a->sin_addr.s_addr = (uint32_t)rand_r(&seed);
      b->sin_addr.s_addr = (uint32_t)rand_r(&seed);
      a->sin_port = htons((uint16_t)sport);
      b->sin_port = htons((uint16_t)dport);
    }
    if (with_id) {
      int len = 1 + rand_r(&seed) % NLB_PROXY_V2_ENDPOINT_ID_MAX;
      for (int i = 0; i < len; i++)
        id[i] = alphabet[rand_r(&seed) % (int)(sizeof(alphabet) - 1)];
      id[len] = '\0';
    }

    n = nlb_proxy_v2_encode(buf, sizeof(buf), SA(s), SA(d),
                            with_id ? id : NULL);
    CU_ASSERT_FATAL(n > 0 && n <= NLB_PROXY_V2_MAX_LEN);
    CU_ASSERT_FATAL(decode(buf, n, &dec) == n);
    CU_ASSERT_EQUAL(dec.fam, six ? 0x21 : 0x11);
    CU_ASSERT_EQUAL(dec.sport, sport);
    CU_ASSERT_EQUAL(dec.dport, dport);
    if (six) {
      CU_ASSERT(memcmp(dec.src, ((struct sockaddr_in6 *)&s)->sin6_addr.s6_addr,
                       16) == 0);
      CU_ASSERT(memcmp(dec.dst, ((struct sockaddr_in6 *)&d)->sin6_addr.s6_addr,
                       16) == 0);
    } else {
      CU_ASSERT(memcmp(dec.src, &((struct sockaddr_in *)&s)->sin_addr, 4) == 0);
      CU_ASSERT(memcmp(dec.dst, &((struct sockaddr_in *)&d)->sin_addr, 4) == 0);
    }
    CU_ASSERT_STRING_EQUAL(dec.id, with_id ? id : "");
  }
}

static void test_proxy_v2_tls_tlvs(void)
{
  /* clang-format off */
  static const uint8_t want[] = {
      SIG,
      0x21, 0x11, 0x00, 0x37,             /* PROXY, TCP4, len 12 + 43 */
      0x7F, 0x00, 0x00, 0x01,             /* 127.0.0.1 */
      0x7F, 0x00, 0x00, 0x02,             /* 127.0.0.2 */
      0x9C, 0x40, 0x01, 0xBB,             /* 40000 -> 443 */
      0x01, 0x00, 0x02, 'h', '2',         /* PP2_TYPE_ALPN */
      0x02, 0x00, 0x05, 'a', '.', 'e', 'x', 't', /* PP2_TYPE_AUTHORITY */
      0x20, 0x00, 0x1B,                   /* PP2_TYPE_SSL, 27 bytes */
      0x01, 0x00, 0x00, 0x00, 0x00,       /* client SSL, verify 0 */
      0x21, 0x00, 0x07, 'T', 'L', 'S', 'v', '1', '.', '3',
      0x23, 0x00, 0x09, 'A', 'E', 'S', '1', '2', '8', '-', 'G', 'M',
  };
  /* clang-format on */
  struct sockaddr_in src = v4("127.0.0.1", 40000);
  struct sockaddr_in dst = v4("127.0.0.2", 443);
  struct nlb_proxy_v2_tls tls = {.sni = "a.ext",
                                 .alpn = (const unsigned char *)"h2",
                                 .alpn_len = 2,
                                 .version = "TLSv1.3",
                                 .cipher = "AES128-GM"};
  uint8_t buf[NLB_PROXY_V2_MAX_LEN];
  int n;

  memset(buf, CANARY, sizeof(buf));
  n = nlb_proxy_v2_encode(buf, sizeof(buf), SA(src), SA(dst), NULL);
  CU_ASSERT_EQUAL_FATAL(n, 28);
  /* No room: -ENOSPC, and nothing written past the header. */
  CU_ASSERT_EQUAL(nlb_proxy_v2_append_tls(buf, (size_t)n, 40, &tls), -ENOSPC);
  CU_ASSERT(untouched_from(buf, 28, sizeof(buf)));
  n = nlb_proxy_v2_append_tls(buf, (size_t)n, sizeof(buf), &tls);
  CU_ASSERT_EQUAL(n, (int)sizeof(want));
  CU_ASSERT(same_bytes(buf, n, want, sizeof(want)));
  CU_ASSERT(untouched_from(buf, sizeof(want), sizeof(buf)));
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_proxy_v2_ipv4_no_tlv),
      NLB_UNIT_CASE(test_proxy_v2_ipv4_endpoint_tlv),
      NLB_UNIT_CASE(test_proxy_v2_matches_aws_capture),
      NLB_UNIT_CASE(test_proxy_v2_add_authority_tlv),
      NLB_UNIT_CASE(test_proxy_v2_ipv6_no_tlv),
      NLB_UNIT_CASE(test_proxy_v2_ipv6_endpoint_tlv),
      NLB_UNIT_CASE(test_proxy_v2_mapped_pair_is_ipv4),
      NLB_UNIT_CASE(test_proxy_v2_mixed_families_are_mapped_ipv6),
      NLB_UNIT_CASE(test_proxy_v2_local),
      NLB_UNIT_CASE(test_proxy_v2_short_buffer_is_enospc),
      NLB_UNIT_CASE(test_proxy_v2_bad_endpoint_id_is_einval),
      NLB_UNIT_CASE(test_proxy_v2_unknown_family_is_eafnosupport),
      NLB_UNIT_CASE(test_proxy_v2_random_round_trip),
      NLB_UNIT_CASE(test_proxy_v2_tls_tlvs),
  };
  return nlb_unit_run("proxy_v2", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
