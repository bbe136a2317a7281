/* CUnit suite for nlb/common/clienthello.c: ClientHellos captured from
 * `openssl s_client` (the fuzz corpus's seeds), the same re-cut into
 * records of every small size and fed a byte at a time, and hostile
 * shapes built here: truncated, lengths past their container, a zero-
 * length or oversized server name, other record and message types, an
 * oversized hello, and bytes that are not TLS at all. */
#include "nlb/common/clienthello.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#define BUF_MAX 40000

struct sample {
  uint8_t data[BUF_MAX];
  size_t len;
};

/* A seed of tests/fuzz/corpus/clienthello. */
static void load_sample(const char *name, struct sample *s)
{
  const char *top = getenv("top_srcdir");
  char path[4096];
  FILE *f;

  snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/clienthello/%s",
           top ? top : ".", name);
  f = fopen(path, "rb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  s->len = fread(s->data, 1, sizeof(s->data), f);
  fclose(f);
  CU_ASSERT_FATAL(s->len > 50);
}

static enum nlb_hello_status parse(const uint8_t *data, size_t len,
                                   struct nlb_client_hello *hello)
{
  /* An exact-size copy, so that ASan sees any overread. */
  uint8_t *copy = malloc(len ? len : 1);
  enum nlb_hello_status status;

  memcpy(copy, data, len);
  status = nlb_client_hello_parse(copy, len, hello);
  free(copy);
  return status;
}

/* The handshake message of a hello sent in one record. */
static size_t message_of(const struct sample *s, uint8_t *out)
{
  size_t len = (size_t)s->data[3] << 8 | s->data[4];
  memcpy(out, s->data + 5, len);
  return len;
}

/* Wraps a handshake message into records of at most cut bytes. */
static size_t wrap(const uint8_t *message, size_t len, size_t cut, uint8_t *out)
{
  size_t used = 0;
  for (size_t at = 0; at < len; at += cut) {
    size_t n = len - at < cut ? len - at : cut;
    out[used++] = 22;
    out[used++] = 3;
    out[used++] = 1;
    out[used++] = (uint8_t)(n >> 8);
    out[used++] = (uint8_t)n;
    memcpy(out + used, message + at, n);
    used += n;
  }
  return used;
}

static void expect_real(const char *name, const char *sni, const char *alpn,
                        size_t alpn_len)
{
  struct sample s;
  struct nlb_client_hello hello;

  load_sample(name, &s);
  CU_ASSERT_EQUAL(parse(s.data, s.len, &hello), NLB_HELLO_COMPLETE);
  CU_ASSERT_STRING_EQUAL(hello.sni, sni);
  CU_ASSERT_EQUAL(hello.sni_len, strlen(sni));
  CU_ASSERT_EQUAL(hello.alpn_len, alpn_len);
  CU_ASSERT(memcmp(hello.alpn, alpn, alpn_len) == 0);
  CU_ASSERT_EQUAL(hello.version, 0x0303);
  CU_ASSERT_EQUAL(hello.length, s.len);
  /* Every prefix asks for more, never answers wrong. */
  for (size_t n = 0; n < s.len; n++)
    CU_ASSERT_EQUAL(parse(s.data, n, &hello), NLB_HELLO_NEED_MORE);
}

static void test_clienthello_openssl(void)
{
  expect_real("openssl-tls13-sni-alpn", "www.example.com", "\x02h2\x08http/1.1",
              12);
  expect_real("openssl-tls12-sni", "api.b.example", "", 0);
  expect_real("openssl-no-sni", "", "", 0);
}

/* One message in records of every size from 1 byte to 40, then in two
 * records: the same answer, and every prefix needs more. */
static void test_clienthello_split_records(void)
{
  static struct sample s;
  static uint8_t message[BUF_MAX], wrapped[BUF_MAX];
  struct nlb_client_hello hello;
  size_t len;

  load_sample("openssl-tls13-sni-alpn", &s);
  len = message_of(&s, message);
  for (size_t cut = 1; cut <= 40; cut++) {
    size_t n = wrap(message, len, cut == 40 ? len / 2 + 1 : cut, wrapped);
    CU_ASSERT_EQUAL_FATAL(parse(wrapped, n, &hello), NLB_HELLO_COMPLETE);
    CU_ASSERT_STRING_EQUAL(hello.sni, "www.example.com");
    CU_ASSERT_EQUAL(hello.alpn_len, 12);
    CU_ASSERT_EQUAL(hello.length, n);
    for (size_t prefix = 0; prefix < n; prefix += 1 + prefix / 64)
      CU_ASSERT_EQUAL(parse(wrapped, prefix, &hello), NLB_HELLO_NEED_MORE);
  }
}

/* Bytes after the hello (0-RTT data, or the next record) belong to the
 * client and are not the hello's. */
static void test_clienthello_trailing_bytes(void)
{
  static struct sample s;
  struct nlb_client_hello hello;
  size_t len;

  load_sample("openssl-tls12-sni", &s);
  len = s.len;
  memcpy(s.data + len, "\x17\x03\x03\x00\x02hi", 7);
  CU_ASSERT_EQUAL(parse(s.data, len + 7, &hello), NLB_HELLO_COMPLETE);
  CU_ASSERT_EQUAL(hello.length, len);
  CU_ASSERT_STRING_EQUAL(hello.sni, "api.b.example");
}

static void test_clienthello_not_tls(void)
{
  static const char *const inputs[] = {
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "SSH-2.0-OpenSSH_9.2\r\n",
      "\x80\x2e\x01\x03\x01", /* SSLv2-style hello */
      "\x16\x01\x00",         /* not version 3.x */
      "\x00"};
  struct nlb_client_hello hello;

  for (size_t i = 0; i < NLB_UNIT_COUNT(inputs); i++) {
    size_t len = strlen(inputs[i]);
    CU_ASSERT_EQUAL(parse((const uint8_t *)inputs[i], len ? len : 1, &hello),
                    NLB_HELLO_NOT_TLS);
  }
  /* One byte of 22 could still be TLS. */
  CU_ASSERT_EQUAL(parse((const uint8_t *)"\x16", 1, &hello),
                  NLB_HELLO_NEED_MORE);
  CU_ASSERT_EQUAL(parse((const uint8_t *)"", 0, &hello), NLB_HELLO_NEED_MORE);
}

/* A ClientHello built field by field, so that one field can lie. */
struct shape {
  int sni_len_delta;    /* added to the server name's own length */
  int list_len_delta;   /* added to server_name_list's length */
  int ext_len_delta;    /* added to the extensions block's length */
  int body_len_delta;   /* added to the handshake message's length */
  uint8_t message_type; /* 1: ClientHello */
  uint8_t record_type;  /* 22: handshake */
  uint8_t session_id_len;
  const char *sni;
};

static size_t put16(uint8_t *p, size_t v)
{
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
  return 2;
}

static size_t build(const struct shape *sh, uint8_t *out)
{
  uint8_t body[BUF_MAX];
  size_t n = 0, name = strlen(sh->sni), ext_at, len;

  n += put16(body + n, 0x0303);
  memset(body + n, 0xAB, 32);
  n += 32;
  body[n++] = sh->session_id_len;
  memset(body + n, 0, sh->session_id_len);
  n += sh->session_id_len;
  n += put16(body + n, 2);
  n += put16(body + n, 0x1301);
  body[n++] = 1;
  body[n++] = 0;
  ext_at = n;
  n += 2;
  n += put16(body + n, 0); /* server_name */
  n += put16(body + n, 2 + 1 + 2 + name);
  n += put16(body + n, (size_t)((int)(1 + 2 + name) + sh->list_len_delta));
  body[n++] = 0;
  n += put16(body + n, (size_t)((int)name + sh->sni_len_delta));
  memcpy(body + n, sh->sni, name);
  n += name;
  put16(body + ext_at, (size_t)((int)(n - ext_at - 2) + sh->ext_len_delta));
  len = (size_t)((int)n + sh->body_len_delta);
  out[0] = sh->record_type;
  out[1] = 3;
  out[2] = 1;
  put16(out + 3, 4 + n);
  out[5] = sh->message_type;
  out[6] = (uint8_t)(len >> 16);
  out[7] = (uint8_t)(len >> 8);
  out[8] = (uint8_t)len;
  memcpy(out + 9, body, n);
  return 9 + n;
}

static enum nlb_hello_status parse_shape(const struct shape *sh,
                                         struct nlb_client_hello *hello)
{
  static uint8_t buf[BUF_MAX];
  return parse(buf, build(sh, buf), hello);
}

static const struct shape good = {
    .message_type = 1, .record_type = 22, .sni = "Svc.B.Example"};

static void test_clienthello_built(void)
{
  struct nlb_client_hello hello;
  struct shape sh = good;

  /* The builder's own hello reads back, the name lower-cased. */
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_COMPLETE);
  CU_ASSERT_STRING_EQUAL(hello.sni, "svc.b.example");
  sh.session_id_len = 32;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_COMPLETE);
}

static void test_clienthello_hostile(void)
{
  struct nlb_client_hello hello;
  static char long_name[300];
  struct shape sh;

  /* Lengths past the end of their container. */
  sh = good, sh.sni_len_delta = 1;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
  sh = good, sh.sni_len_delta = 40000;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
  sh = good, sh.list_len_delta = 1;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
  sh = good, sh.list_len_delta = -1;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
  sh = good, sh.ext_len_delta = 3;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
  sh = good, sh.ext_len_delta = -3;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
  /* A message that says it is shorter than what it holds. */
  sh = good, sh.body_len_delta = -5;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
  /* ... or longer: it waits for the rest. */
  sh = good, sh.body_len_delta = 5;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_NEED_MORE);
  /* Oversized: refused at once, without waiting for 20000 bytes. */
  sh = good, sh.body_len_delta = 20000;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
  /* A zero-length or too long server name, or one with a space or a
   * quote. */
  sh = good, sh.sni = "";
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
  memset(long_name, 'a', 256);
  sh = good, sh.sni = long_name;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
  long_name[255] = '\0';
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_COMPLETE);
  CU_ASSERT_EQUAL(hello.sni_len, 255);
  sh = good, sh.sni = "a b";
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
  sh = good, sh.sni = "a\"b";
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
  /* Another message or record type, an oversized session ID. */
  sh = good, sh.message_type = 2;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
  sh = good, sh.record_type = 23;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_NOT_TLS);
  sh = good, sh.session_id_len = 33;
  CU_ASSERT_EQUAL(parse_shape(&sh, &hello), NLB_HELLO_INVALID);
}

/* Records that lie: empty, oversized, or of another type after the first. */
static void test_clienthello_bad_records(void)
{
  static struct sample s;
  static uint8_t message[BUF_MAX], wrapped[BUF_MAX];
  struct nlb_client_hello hello;
  size_t len, n;

  load_sample("openssl-tls13-sni-alpn", &s);
  len = message_of(&s, message);
  n = wrap(message, len, 100, wrapped);
  wrapped[105] = 21; /* the second record: an alert */
  CU_ASSERT_EQUAL(parse(wrapped, n, &hello), NLB_HELLO_INVALID);
  n = wrap(message, len, 100, wrapped);
  wrapped[108] = 0, wrapped[109] = 0; /* the second record: empty */
  CU_ASSERT_EQUAL(parse(wrapped, n, &hello), NLB_HELLO_INVALID);
  memcpy(wrapped, s.data, s.len);
  wrapped[3] = 0x40, wrapped[4] = 0x01; /* 16385 bytes */
  CU_ASSERT_EQUAL(parse(wrapped, s.len, &hello), NLB_HELLO_INVALID);
  /* Cut short: the rest may still come. */
  CU_ASSERT_EQUAL(parse(s.data, s.len - 1, &hello), NLB_HELLO_NEED_MORE);
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_clienthello_openssl),
      NLB_UNIT_CASE(test_clienthello_split_records),
      NLB_UNIT_CASE(test_clienthello_trailing_bytes),
      NLB_UNIT_CASE(test_clienthello_not_tls),
      NLB_UNIT_CASE(test_clienthello_built),
      NLB_UNIT_CASE(test_clienthello_hostile),
      NLB_UNIT_CASE(test_clienthello_bad_records),
  };
  return nlb_unit_run("clienthello", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
