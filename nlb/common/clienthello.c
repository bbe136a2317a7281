/* The ClientHello reader (clienthello.h). The handshake message is read
 * through a cursor that walks the records' payloads in place, so a message
 * split over records is never copied together. */
#include "nlb/common/clienthello.h"

#include <stdbool.h>
#include <string.h>

#define RECORD_HEADER 5
#define RECORD_MAX 16384
#define CONTENT_HANDSHAKE 22
#define HANDSHAKE_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define SNI_HOST_NAME 0

/* Where reading the handshake stream stands: the next byte is data[pos],
 * with left bytes of its record still to come. */
struct cursor {
  const uint8_t *data;
  size_t len;
  size_t pos;
  size_t left;
  enum nlb_hello_status status; /* COMPLETE while all is well */
};

/* Steps over the next record header when the current record is used up.
 * false (status set) when there is none yet or it is not acceptable. */
static bool next_record(struct cursor *c)
{
  const uint8_t *h;
  size_t length;

  if (c->len - c->pos < RECORD_HEADER) {
    c->status = NLB_HELLO_NEED_MORE;
    return false;
  }
  h = c->data + c->pos;
  length = (size_t)h[3] << 8 | h[4];
  if (h[0] != CONTENT_HANDSHAKE || h[1] != 3 || length == 0 ||
      length > RECORD_MAX) {
    c->status = NLB_HELLO_INVALID;
    return false;
  }
  c->pos += RECORD_HEADER;
  c->left = length;
  return true;
}

/* Copies the next n bytes of the handshake stream to out (NULL: skips
 * them). false (status set) when they are not all there. */
static bool take(struct cursor *c, uint8_t *out, size_t n)
{
  while (n > 0) {
    size_t chunk;

    if (c->status != NLB_HELLO_COMPLETE)
      return false;
    if (c->left == 0 && !next_record(c))
      return false;
    chunk = n < c->left ? n : c->left;
    if (chunk > c->len - c->pos)
      chunk = c->len - c->pos;
    if (chunk == 0) {
      c->status = NLB_HELLO_NEED_MORE;
      return false;
    }
    if (out) {
      memcpy(out, c->data + c->pos, chunk);
      out += chunk;
    }
    c->pos += chunk;
    c->left -= chunk;
    n -= chunk;
  }
  return c->status == NLB_HELLO_COMPLETE;
}

/* A big-endian number of n (1..3) bytes from the stream; 0 on failure
 * (status says). */
static size_t take_number(struct cursor *c, size_t n)
{
  uint8_t bytes[3];
  size_t value = 0;

  if (!take(c, bytes, n))
    return 0;
  for (size_t i = 0; i < n; i++)
    value = value << 8 | bytes[i];
  return value;
}

/* A length-prefixed field inside a container of *room bytes: its length
 * (prefix bytes wide), which must fit in what is left of the container
 * after the prefix. Both come off *room. false (status INVALID or
 * NEED_MORE) otherwise. */
static bool take_length(struct cursor *c, size_t prefix, size_t *room,
                        size_t *length)
{
  if (*room < prefix) {
    c->status = NLB_HELLO_INVALID;
    return false;
  }
  *length = take_number(c, prefix);
  if (c->status != NLB_HELLO_COMPLETE)
    return false;
  *room -= prefix;
  if (*length > *room) {
    c->status = NLB_HELLO_INVALID;
    return false;
  }
  *room -= *length;
  return true;
}

static bool fail(struct cursor *c, enum nlb_hello_status status)
{
  c->status = status;
  return false;
}

/* What a host name is made of (RFC 6066 section 3: a DNS name, ASCII;
 * '_' and '*' are seen in the wild). Nothing here needs quoting in a log
 * line or JSON. */
static bool host_name_byte(uint8_t ch)
{
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
         (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
         ch == '*';
}

/* server_name (RFC 6066 section 3): a list of (type, name); the first
 * host_name is kept. */
static bool read_server_name(struct cursor *c, size_t room,
                             struct nlb_client_hello *hello)
{
  size_t list;

  if (!take_length(c, 2, &room, &list))
    return false;
  if (room != 0)
    return fail(c, NLB_HELLO_INVALID);
  while (list > 0) {
    size_t type = 0, name;
    uint8_t host[NLB_HELLO_SNI_MAX];

    type = take_number(c, 1);
    list -= 1;
    if (!take_length(c, 2, &list, &name))
      return false;
    if (type != SNI_HOST_NAME || hello->sni_len > 0) {
      if (!take(c, NULL, name))
        return false;
      continue;
    }
    if (name == 0 || name > NLB_HELLO_SNI_MAX)
      return fail(c, NLB_HELLO_INVALID);
    if (!take(c, host, name))
      return false;
    for (size_t i = 0; i < name; i++) {
      uint8_t ch = host[i];
      if (!host_name_byte(ch))
        return fail(c, NLB_HELLO_INVALID);
      hello->sni[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch);
    }
    hello->sni[name] = '\0';
    hello->sni_len = name;
  }
  return true;
}

/* application_layer_protocol_negotiation (RFC 7301 section 3.1). */
static bool read_alpn(struct cursor *c, size_t room,
                      struct nlb_client_hello *hello)
{
  size_t list;

  if (!take_length(c, 2, &room, &list))
    return false;
  if (room != 0)
    return fail(c, NLB_HELLO_INVALID);
  while (list > 0) {
    size_t name;
    uint8_t *out = hello->alpn + hello->alpn_len;

    if (!take_length(c, 1, &list, &name))
      return false;
    if (name == 0)
      return fail(c, NLB_HELLO_INVALID);
    if (hello->alpn_len + 1 + name > NLB_HELLO_ALPN_MAX) {
      if (!take(c, NULL, name))
        return false;
      continue;
    }
    if (!take(c, out + 1, name))
      return false;
    out[0] = (uint8_t)name;
    hello->alpn_len += 1 + name;
  }
  return true;
}

static bool read_extensions(struct cursor *c, size_t room,
                            struct nlb_client_hello *hello)
{
  size_t block;

  if (room == 0)
    return true; /* extensions are optional before TLS 1.3 */
  if (!take_length(c, 2, &room, &block))
    return false;
  if (room != 0)
    return fail(c, NLB_HELLO_INVALID);
  while (block > 0) {
    size_t type, length;

    if (block < 2)
      return fail(c, NLB_HELLO_INVALID);
    type = take_number(c, 2);
    block -= 2;
    if (!take_length(c, 2, &block, &length))
      return false;
    if (type == EXT_SERVER_NAME && hello->sni_len == 0) {
      if (!read_server_name(c, length, hello))
        return false;
    } else if (type == EXT_ALPN && hello->alpn_len == 0) {
      if (!read_alpn(c, length, hello))
        return false;
    } else if (!take(c, NULL, length)) {
      return false;
    }
  }
  return true;
}

/* The ClientHello's body, room bytes long. */
static bool read_body(struct cursor *c, size_t room,
                      struct nlb_client_hello *hello)
{
  size_t skip;

  if (room < 2 + 32)
    return fail(c, NLB_HELLO_INVALID);
  hello->version = (uint16_t)take_number(c, 2);
  if (!take(c, NULL, 32)) /* random */
    return false;
  room -= 2 + 32;
  if (!take_length(c, 1, &room, &skip) || !take(c, NULL, skip))
    return false; /* legacy_session_id */
  if (skip > 32)
    return fail(c, NLB_HELLO_INVALID);
  if (!take_length(c, 2, &room, &skip) || !take(c, NULL, skip))
    return false; /* cipher_suites */
  if (skip < 2 || skip % 2 != 0)
    return fail(c, NLB_HELLO_INVALID);
  if (!take_length(c, 1, &room, &skip) || !take(c, NULL, skip))
    return false; /* legacy_compression_methods */
  if (skip < 1)
    return fail(c, NLB_HELLO_INVALID);
  return read_extensions(c, room, hello);
}

/* Whether the whole message (4 + body bytes of the handshake stream) is
 * in data, by record headers alone: a client that sends its hello a byte
 * at a time costs a walk over headers per read, not a parse. */
static enum nlb_hello_status whole_message_in(const uint8_t *data, size_t len,
                                              size_t message)
{
  size_t pos = 0;

  while (message > 0) {
    size_t length;
    if (len - pos < RECORD_HEADER)
      return NLB_HELLO_NEED_MORE;
    length = (size_t)data[pos + 3] << 8 | data[pos + 4];
    if (data[pos] != CONTENT_HANDSHAKE || data[pos + 1] != 3 || length == 0 ||
        length > RECORD_MAX)
      return NLB_HELLO_INVALID;
    pos += RECORD_HEADER;
    if (len - pos < (message < length ? message : length))
      return NLB_HELLO_NEED_MORE;
    if (message <= length)
      return NLB_HELLO_COMPLETE;
    message -= length;
    pos += length;
  }
  return NLB_HELLO_COMPLETE;
}

enum nlb_hello_status nlb_client_hello_parse(const uint8_t *data, size_t len,
                                             struct nlb_client_hello *hello)
{
  struct cursor c = {.data = data, .len = len, .status = NLB_HELLO_COMPLETE};
  enum nlb_hello_status whole;
  size_t type, body;

  if (len == 0)
    return NLB_HELLO_NEED_MORE;
  if (data[0] != CONTENT_HANDSHAKE || (len > 1 && data[1] != 3))
    return NLB_HELLO_NOT_TLS;
  type = take_number(&c, 1);
  body = take_number(&c, 3);
  if (c.status != NLB_HELLO_COMPLETE)
    return c.status;
  if (type != HANDSHAKE_CLIENT_HELLO || body > NLB_HELLO_MAX)
    return NLB_HELLO_INVALID;
  whole = whole_message_in(data, len, 4 + body);
  if (whole != NLB_HELLO_COMPLETE)
    return whole;
  memset(hello, 0, sizeof(*hello));
  if (!read_body(&c, body, hello))
    /* Every byte is there: whatever stopped the reading is the hello's
     * fault. */
    return c.status == NLB_HELLO_NEED_MORE ? NLB_HELLO_INVALID : c.status;
  hello->length = c.pos;
  return NLB_HELLO_COMPLETE;
}

const char *nlb_hello_status_name(enum nlb_hello_status status)
{
  static const char *const names[] = {"complete", "need_more", "not_tls",
                                      "invalid"};
  return (unsigned)status < sizeof(names) / sizeof(names[0]) ? names[status]
                                                             : "?";
}
