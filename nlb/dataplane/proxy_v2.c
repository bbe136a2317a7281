/* PROXY protocol v2 encoder; see include/nlb/proxy_v2.h. */
#include "nlb/dataplane/proxy_v2.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

static const uint8_t signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum {
  VER_CMD_LOCAL = 0x20,
  VER_CMD_PROXY = 0x21,
  FAM_UNSPEC = 0x00,
  FAM_TCP4 = 0x11,
  FAM_TCP6 = 0x21,
  FIXED_LEN = 16,
  ADDR4_LEN = 4 + 4 + 2 + 2,
  ADDR6_LEN = 16 + 16 + 2 + 2,
  TLV_HEAD_LEN = 3,
};

/* One side of the stream, reduced to what goes on the wire. */
struct endpoint_addr {
  int is_v4; /* an IPv4 address, native or IPv4-mapped */
  uint8_t v4[4];
  uint8_t v6[16];  /* valid whatever is_v4 says: mapped form for IPv4 */
  uint8_t port[2]; /* network byte order */
};

static int read_addr(const struct sockaddr *sa, struct endpoint_addr *out)
{
  static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0,    0,
                                            0, 0, 0, 0, 0xFF, 0xFF};

  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
    out->is_v4 = 1;
    memcpy(out->v4, &sin->sin_addr.s_addr, 4);
    memcpy(out->v6, mapped_prefix, 12);
    memcpy(out->v6 + 12, out->v4, 4);
    memcpy(out->port, &sin->sin_port, 2);
    return 0;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
    memcpy(out->v6, sin6->sin6_addr.s6_addr, 16);
    out->is_v4 = memcmp(out->v6, mapped_prefix, 12) == 0;
    memcpy(out->v4, out->v6 + 12, 4);
    memcpy(out->port, &sin6->sin6_port, 2);
    return 0;
  }
  return -EAFNOSUPPORT;
}

/* Returns strlen(id) if id is a valid endpoint ID, else -EINVAL. Bounded:
 * never reads past NLB_PROXY_V2_ENDPOINT_ID_MAX + 1 bytes. */
static int endpoint_id_len(const char *id)
{
  size_t n;

  for (n = 0; id[n] != '\0'; n++) {
    char c = id[n];
    int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
             (c >= '0' && c <= '9') || c == '-';
    if (!ok || n == NLB_PROXY_V2_ENDPOINT_ID_MAX)
      return -EINVAL;
  }
  return n == 0 ? -EINVAL : (int)n;
}

static uint8_t *put_be16(uint8_t *p, unsigned v)
{
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
  return p + 2;
}

static uint8_t *put_fixed(uint8_t *p, uint8_t ver_cmd, uint8_t fam,
                          unsigned len)
{
  memcpy(p, signature, sizeof(signature));
  p += sizeof(signature);
  *p++ = ver_cmd;
  *p++ = fam;
  return put_be16(p, len);
}

int nlb_proxy_v2_encode(uint8_t *buf, size_t cap, const struct sockaddr *src,
                        const struct sockaddr *dst, const char *endpoint_id)
{
  struct endpoint_addr s, d;
  int id_len = 0;
  int v4, rc;
  size_t body_len;
  uint8_t *p;

  if (src == NULL || dst == NULL)
    return -EINVAL;
  rc = read_addr(src, &s);
  if (rc < 0)
    return rc;
  rc = read_addr(dst, &d);
  if (rc < 0)
    return rc;
  if (endpoint_id != NULL) {
    id_len = endpoint_id_len(endpoint_id);
    if (id_len < 0)
      return id_len;
  }

  v4 = s.is_v4 && d.is_v4;
  body_len = v4 ? ADDR4_LEN : ADDR6_LEN;
  if (endpoint_id != NULL)
    body_len += TLV_HEAD_LEN + 1 + (size_t)id_len;
  if (buf == NULL || cap < FIXED_LEN + body_len)
    return -ENOSPC;

  p = put_fixed(buf, VER_CMD_PROXY, v4 ? FAM_TCP4 : FAM_TCP6,
                (unsigned)body_len);
  if (v4) {
    memcpy(p, s.v4, 4);
    memcpy(p + 4, d.v4, 4);
    p += 8;
  } else {
    memcpy(p, s.v6, 16);
    memcpy(p + 16, d.v6, 16);
    p += 32;
  }
  memcpy(p, s.port, 2);
  memcpy(p + 2, d.port, 2);
  p += 4;

  if (endpoint_id != NULL) {
    *p++ = NLB_PROXY_V2_TLV_AWS;
    p = put_be16(p, 1 + (unsigned)id_len);
    *p++ = NLB_PROXY_V2_AWS_SUBTYPE_ENDPOINT_ID;
    memcpy(p, endpoint_id, (size_t)id_len);
    p += id_len;
  }
  return (int)(p - buf);
}

int nlb_proxy_v2_encode_local(uint8_t *buf, size_t cap)
{
  if (buf == NULL || cap < NLB_PROXY_V2_LOCAL_LEN)
    return -ENOSPC;
  put_fixed(buf, VER_CMD_LOCAL, FAM_UNSPEC, 0);
  return NLB_PROXY_V2_LOCAL_LEN;
}

static uint8_t *put_tlv(uint8_t *p, uint8_t type, const void *value, size_t len)
{
  *p++ = type;
  p = put_be16(p, (unsigned)len);
  memcpy(p, value, len);
  return p + len;
}

int nlb_proxy_v2_append_tls(uint8_t *buf, size_t len, size_t cap,
                            const struct nlb_proxy_v2_tls *tls)
{
  size_t sni_len = tls->sni ? strlen(tls->sni) : 0;
  size_t version_len = strlen(tls->version), cipher_len = strlen(tls->cipher);
  size_t ssl_len =
      1 + 4 + TLV_HEAD_LEN + version_len + TLV_HEAD_LEN + cipher_len;
  size_t need = TLV_HEAD_LEN + ssl_len;
  uint8_t *p;
  unsigned header_len;

  if (len < FIXED_LEN || sni_len > 255 || tls->alpn_len > 255 ||
      version_len > 64 || cipher_len > 128)
    return -EINVAL;
  if (sni_len)
    need += TLV_HEAD_LEN + sni_len;
  if (tls->alpn_len)
    need += TLV_HEAD_LEN + tls->alpn_len;
  header_len = ((unsigned)buf[14] << 8 | buf[15]) + (unsigned)need;
  if (len + need > cap || header_len > 0xFFFF)
    return -ENOSPC;
  p = buf + len;
  if (tls->alpn_len)
    p = put_tlv(p, PP2_TYPE_ALPN, tls->alpn, tls->alpn_len);
  if (sni_len)
    p = put_tlv(p, PP2_TYPE_AUTHORITY, tls->sni, sni_len);
  *p++ = PP2_TYPE_SSL;
  p = put_be16(p, (unsigned)ssl_len);
  *p++ = PP2_CLIENT_SSL; /* no client certificate asked */
  memset(p, 0, 4);       /* verify: 0, nothing failed */
  p += 4;
  p = put_tlv(p, PP2_SUBTYPE_SSL_VERSION, tls->version, version_len);
  p = put_tlv(p, PP2_SUBTYPE_SSL_CIPHER, tls->cipher, cipher_len);
  put_be16(buf + 14, header_len);
  return (int)(p - buf);
}

int nlb_proxy_v2_add_tlv(uint8_t *buf, size_t len, size_t cap, uint8_t type,
                         const void *value, size_t value_len)
{
  size_t body;

  if (buf == NULL || len < FIXED_LEN || value_len > 0xFFFF ||
      (value_len > 0 && value == NULL))
    return -EINVAL;
  body = (size_t)buf[FIXED_LEN - 2] << 8 | buf[FIXED_LEN - 1];
  if (body != len - FIXED_LEN || body + TLV_HEAD_LEN + value_len > 0xFFFF)
    return -EINVAL;
  if (cap < len + TLV_HEAD_LEN + value_len)
    return -ENOSPC;
  buf[len] = type;
  put_be16(buf + len + 1, (unsigned)value_len);
  if (value_len)
    memcpy(buf + len + TLV_HEAD_LEN, value, value_len);
  put_be16(buf + FIXED_LEN - 2, (unsigned)(body + TLV_HEAD_LEN + value_len));
  return (int)(len + TLV_HEAD_LEN + value_len);
}
