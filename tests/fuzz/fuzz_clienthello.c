/* libFuzzer target for the ClientHello reader (nlb/common/clienthello.c).
 * The input is what a client sent first. Whatever it is, the reader must
 * stay inside it, and when it says COMPLETE: the server name is made of
 * lower-case DNS characters and as long as it says, the ALPN list is well
 * formed, the hello's length is inside the input, reading just those bytes says
 * the same, and any shorter prefix asks for more. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/common/clienthello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
  if (!ok)
    abort();
}

static void check_complete(const uint8_t *data,
                           const struct nlb_client_hello *hello)
{
  struct nlb_client_hello again;

  check(hello->sni_len <= NLB_HELLO_SNI_MAX);
  check(strlen(hello->sni) == hello->sni_len);
  for (size_t i = 0; i < hello->sni_len; i++)
    check(strchr("abcdefghijklmnopqrstuvwxyz0123456789-._*", hello->sni[i]));
  check(hello->alpn_len <= NLB_HELLO_ALPN_MAX);
  for (size_t at = 0; at < hello->alpn_len; at += 1 + hello->alpn[at])
    check(hello->alpn[at] > 0 && at + 1 + hello->alpn[at] <= hello->alpn_len);
  check(nlb_client_hello_parse(data, hello->length, &again) ==
        NLB_HELLO_COMPLETE);
  check(again.length == hello->length && again.sni_len == hello->sni_len &&
        memcmp(again.sni, hello->sni, hello->sni_len) == 0 &&
        again.alpn_len == hello->alpn_len &&
        memcmp(again.alpn, hello->alpn, hello->alpn_len) == 0);
  check(nlb_client_hello_parse(data, hello->length - 1, &again) ==
        NLB_HELLO_NEED_MORE);
  check(nlb_client_hello_parse(data, hello->length / 2, &again) ==
        NLB_HELLO_NEED_MORE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct nlb_client_hello hello;
  enum nlb_hello_status status = nlb_client_hello_parse(data, size, &hello);

  check(nlb_hello_status_name(status)[0] != '?');
  if (status == NLB_HELLO_COMPLETE) {
    check(hello.length > 0 && hello.length <= size);
    check_complete(data, &hello);
  }
  return 0;
}
