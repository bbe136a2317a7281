/* The TLS ClientHello reader: what a TLS passthrough listener needs from
 * the first bytes a client sends (the server name it asked for, the
 * application protocols it offers), read without decrypting anything and
 * without changing a byte.
 *
 * Input is every byte received so far from the client, from its first.
 * They must be TLS records (RFC 8446 section 5.1) of content type 22
 * (handshake), version 3.x, each 1..16384 bytes long, whose payloads joined
 * hold a ClientHello handshake message (section 4.1.2; TLS 1.0 to 1.3 share
 * its shape). The message may be split over any number of records, and the
 * records over any number of reads: the caller calls again with more bytes
 * while the answer is NLB_HELLO_NEED_MORE.
 *
 * Decision table:
 *   first byte not 22, or a record version major not 3   NOT_TLS
 *   a record header or the handshake header incomplete   NEED_MORE
 *   a record of another type, or of length 0 or > 16384  INVALID
 *   a handshake message other than ClientHello (1)       INVALID
 *   a ClientHello longer than NLB_HELLO_MAX              INVALID
 *   the ClientHello not all received yet                 NEED_MORE
 *   a length inside it running past its container        INVALID
 *   a server_name entry of length 0 or > 255, or with    INVALID
 *     a byte other than a letter, digit, '-', '.', '_', '*'
 *   an ALPN name of length 0                             INVALID
 *   otherwise                                            COMPLETE
 *
 * Pure function: no allocation, no global state, any thread. Work is
 * linear in len. */
#ifndef NLB_CLIENTHELLO_H
#define NLB_CLIENTHELLO_H

#include <stddef.h>
#include <stdint.h>

/* The longest ClientHello (handshake body) accepted: one record's worth.
 * Real ones are 200 bytes to 2 KiB. */
#define NLB_HELLO_MAX 16384

/* The longest host name a server_name entry may carry (RFC 6066 says
 * 2^16-1; DNS says 253, and 255 bytes bound what is kept). */
#define NLB_HELLO_SNI_MAX 255

/* Room for the ALPN names kept, in their wire form (a length byte then the
 * name, repeated). Names that do not fit whole are left out. */
#define NLB_HELLO_ALPN_MAX 255

enum nlb_hello_status {
  NLB_HELLO_COMPLETE,
  NLB_HELLO_NEED_MORE,
  NLB_HELLO_NOT_TLS,
  NLB_HELLO_INVALID,
};

struct nlb_client_hello {
  /* The first host_name of the server_name extension, lower-cased and
   * NUL-terminated; sni_len 0: the client sent none. */
  char sni[NLB_HELLO_SNI_MAX + 1];
  size_t sni_len;
  /* The ALPN protocol names offered, as on the wire (length-prefixed);
   * alpn_len 0: none. */
  uint8_t alpn[NLB_HELLO_ALPN_MAX];
  size_t alpn_len;
  uint16_t version; /* the ClientHello's legacy_version */
  /* Bytes of the input up to the ClientHello's last byte: what follows
   * (0-RTT data, say) is the client's too and must be forwarded. */
  size_t length;
};

/* Reads the ClientHello in data[0..len). Fills *hello when the answer is
 * NLB_HELLO_COMPLETE; leaves it in an unspecified state otherwise. The
 * caller owns both. */
enum nlb_hello_status nlb_client_hello_parse(const uint8_t *data, size_t len,
                                             struct nlb_client_hello *hello);

/* The status's name for logs: "complete", "need_more", "not_tls",
 * "invalid". */
const char *nlb_hello_status_name(enum nlb_hello_status status);

#endif
