/* Checks of names that depend on nothing: the config loader (nlb/) and
 * the registry both call reg_netns_name_check, so a name one accepts the
 * other does too, with the same message; services.c and dns.c both ask
 * whether a name is shaped like an endpoint ID. Nothing here touches the
 * store: the config fuzzer links this file alone. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "registry-int.h"

bool reg_name_like_endpoint_id(const char *s)
{
  return strncasecmp(s, "ep-", 3) == 0 && s[3] != '\0' &&
         strspn(s + 3, "0123456789abcdefABCDEF") == strlen(s + 3);
}

/* Shows a name that may hold anything in a message: at most 32 of its
 * bytes (the message must fit a reg_error), a newline as \n, a tab as \t,
 * quotes, backslashes and every other byte that is not printable ASCII as
 * \xHH (as the config loader and the event log escape), so that the
 * message stays one line of plain text wherever it is written. */
static void name_shown(const char *name, char *out, size_t len)
{
  size_t n = 0, i;

  for (i = 0; name[i] != '\0' && i < 32 && n + 5 < len; i++) {
    unsigned char c = (unsigned char)name[i];

    if (c == '\n' || c == '\t')
      n += (size_t)snprintf(out + n, len - n, "\\%c", c == '\n' ? 'n' : 't');
    else if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
      n += (size_t)snprintf(out + n, len - n, "\\x%02x", c);
    else
      out[n++] = (char)c;
  }
  if (name[i] != '\0' && n + 4 <= len)
    n += (size_t)snprintf(out + n, len - n, "...");
  out[n] = '\0';
}

int reg_netns_name_check(const char *netns, char *why, size_t len)
{
  char shown[32 * 4 + 4];
  size_t n = netns ? strlen(netns) : 0;

  /* A file name in /run/netns that no tool takes for an option. */
  if (n > 0 && n <= REG_NETNS_NAME_MAX &&
      strspn(netns, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    "0123456789-_.") == n &&
      netns[0] != '-' && strcmp(netns, ".") != 0 && strcmp(netns, "..") != 0)
    return 0;
  name_shown(netns ? netns : "", shown, sizeof(shown));
  snprintf(why, len,
           "netns \"%s\" is not a namespace name (1-%d letters, digits, "
           "'-', '_' or '.', not starting with '-', not . or ..)",
           shown, REG_NETNS_NAME_MAX);
  return -EINVAL;
}
