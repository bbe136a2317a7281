/* PROXY protocol version 2 headers, as nlb writes them at the start of a flow
 * to a target (and of a health check). Encoding only: nlb never reads PROXY
 * headers. Pure functions: no allocation, no global state, callable from any
 * thread at the same time.
 *
 * Wire format (haproxy.org/download/2.6/doc/proxy-protocol.txt, section 2.2):
 *   12-byte signature 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A,
 *   ver_cmd (0x21 PROXY, 0x20 LOCAL), fam (0x11 TCP/IPv4, 0x21 TCP/IPv6,
 *   0x00 UNSPEC), len (BE16, bytes that follow), then the address block
 *   (src addr, dst addr, src port, dst port) and TLVs.
 *
 * The endpoint TLV is AWS PrivateLink's PP2_TYPE_AWS: type 0xEA, length (BE16)
 * = 1 + strlen(id), subtype 0x01 (PP2_SUBTYPE_AWS_VPCE_ID), the ID in ASCII.
 * nlb sends neither CRC32C nor NOOP padding TLVs. */
#ifndef NLB_PROXY_V2_H
#define NLB_PROXY_V2_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Enough for any header nlb_proxy_v2_encode() writes: 16 + 36 (IPv6 address
 * block) + 4 + 64 (the 0xEA TLV with the longest ID) = 120. */
#define NLB_PROXY_V2_MAX_LEN 256

/* Size of a LOCAL header, which carries no address block. */
#define NLB_PROXY_V2_LOCAL_LEN 16

/* Longest endpoint ID accepted in the 0xEA TLV. */
#define NLB_PROXY_V2_ENDPOINT_ID_MAX 64

#define NLB_PROXY_V2_TLV_AWS 0xEA
#define NLB_PROXY_V2_AWS_SUBTYPE_ENDPOINT_ID 0x01

/* Writes into buf a PROXY command header for a TCP stream whose source is src
 * (the client) and destination dst (the address the client connected to).
 *
 * Families:
 * - both AF_INET, or each AF_INET or an IPv4-mapped AF_INET6 (::ffff:a.b.c.d,
 *   what a dual-stack socket reports for an IPv4 peer): fam 0x11, IPv4
 *   addresses. A target thus sees an IPv4 client as IPv4 whatever the
 *   listener's socket family.
 * - otherwise, both AF_INET6: fam 0x21. An AF_INET address paired with a
 *   (non-mapped) IPv6 one is written as its IPv4-mapped IPv6 form.
 * Ports are copied as found (network byte order); scope IDs and flow labels
 * are not carried.
 *
 * If endpoint_id is non-NULL the 0xEA TLV carrying it is appended; the ID must
 * be 1..NLB_PROXY_V2_ENDPOINT_ID_MAX characters of [A-Za-z0-9-].
 *
 * Returns the header length (> 0), or
 *   -EINVAL        src or dst NULL, or a bad endpoint ID;
 *   -EAFNOSUPPORT  src or dst neither AF_INET nor AF_INET6;
 *   -ENOSPC        cap is smaller than the header.
 * On error buf is left untouched. buf may be NULL only if cap is 0. The
 * caller owns buf and the addresses; nothing is kept after the call. */
int nlb_proxy_v2_encode(uint8_t *buf, size_t cap, const struct sockaddr *src,
                        const struct sockaddr *dst, const char *endpoint_id);

/* Writes a LOCAL command header (ver_cmd 0x20, fam 0x00 UNSPEC, len 0), the
 * header a health check sends: the target must treat the connection as its
 * own and use no address from it. Returns NLB_PROXY_V2_LOCAL_LEN, or -ENOSPC
 * if cap is smaller (buf untouched). */
int nlb_proxy_v2_encode_local(uint8_t *buf, size_t cap);

/* TLVs of a TLS listener's flows (section 2.2.1, 2.2.5). */
#define PP2_TYPE_ALPN 0x01
#define PP2_TYPE_AUTHORITY 0x02
#define PP2_TYPE_SSL 0x20
#define PP2_SUBTYPE_SSL_VERSION 0x21
#define PP2_SUBTYPE_SSL_CIPHER 0x23
#define PP2_CLIENT_SSL 0x01

/* What a TLS listener tells its targets of the client's TLS. */
struct nlb_proxy_v2_tls {
  const char *sni;           /* the client's SNI; NULL: none */
  const unsigned char *alpn; /* the protocol chosen; alpn_len 0: none */
  size_t alpn_len;
  const char *version; /* "TLSv1.3" */
  const char *cipher;  /* "TLS_AES_128_GCM_SHA256" */
};

/* Appends to the PROXY header buf[0..len) (nlb_proxy_v2_encode's) the
 * TLVs PP2_TYPE_ALPN and PP2_TYPE_AUTHORITY (when there is one) and
 * PP2_TYPE_SSL (client bit PP2_CLIENT_SSL, verify 0, the version and
 * cipher sub-TLVs), and fixes the header's length. Returns the new length,
 * or -EINVAL (len shorter than a header, a name too long), -ENOSPC (cap too
 * small); buf is untouched on error. */
int nlb_proxy_v2_append_tls(uint8_t *buf, size_t len, size_t cap,
                            const struct nlb_proxy_v2_tls *tls);

/* Appends a TLV (type, BE16 length, value) to the header of len bytes
 * nlb_proxy_v2_encode wrote in buf, and adds it to the header's length
 * field. Returns the new header length, or
 *   -EINVAL  buf is not such a header (its length field disagrees with
 *            len), value NULL with value_len > 0, or the header would
 *            pass 65535 bytes;
 *   -ENOSPC  cap is smaller than the new header.
 * On error buf is left untouched. */
int nlb_proxy_v2_add_tlv(uint8_t *buf, size_t len, size_t cap, uint8_t type,
                         const void *value, size_t value_len);

#endif /* NLB_PROXY_V2_H */
