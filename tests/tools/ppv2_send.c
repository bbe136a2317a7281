/* ppv2_send: connects to a TCP server, writes the PROXY v2 header that
 * nlb_proxy_v2_encode() makes (exactly what nlbd would send a target), then
 * optional data, half-closes and copies the answer to stdout. A test helper:
 * it checks nlb's encoder against an independent reader (ppv2_receiver.py)
 * and lets a test speak to a PROXY-protocol target as nlbd would.
 *
 *   ppv2_send --connect HOST:PORT (--local | --src IP:PORT --dst IP:PORT)
 *             [--endpoint-id ID] [--data TEXT] [--hex]
 *
 * Addresses are IPv4 or [IPv6]. --hex prints the header in hex on stderr.
 * Exit status: 0 done, 1 connection or I/O error, 2 bad usage or a header
 * the encoder refused (its error is printed). */
#include "nlb/dataplane/proxy_v2.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int parse_addr(const char *text, struct sockaddr_storage *out)
{
  char host[INET6_ADDRSTRLEN + 2];
  const char *colon = strrchr(text, ':');
  char *end;
  unsigned long port;
  size_t len;

  if (colon == NULL)
    return -1;
  len = (size_t)(colon - text);
  if (len == 0 || len >= sizeof(host))
    return -1;
  memcpy(host, text, len);
  host[len] = '\0';
  port = strtoul(colon + 1, &end, 10);
  if (*end != '\0' || end == colon + 1 || port > 65535)
    return -1;

  memset(out, 0, sizeof(*out));
  if (host[0] == '[' && host[len - 1] == ']') {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
    host[len - 1] = '\0';
    if (inet_pton(AF_INET6, host + 1, &sin6->sin6_addr) != 1)
      return -1;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    return 0;
  }
  struct sockaddr_in *sin = (struct sockaddr_in *)out;
  if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
    return -1;
  sin->sin_family = AF_INET;
  sin->sin_port = htons((uint16_t)port);
  return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
  const char *p = buf;

  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int usage(void)
{
  fprintf(stderr, "usage: ppv2_send --connect HOST:PORT (--local | --src "
                  "IP:PORT --dst IP:PORT) [--endpoint-id ID] [--data TEXT] "
                  "[--hex]\n");
  return 2;
}

int main(int argc, char **argv)
{
  const char *connect_to = NULL, *src_text = NULL, *dst_text = NULL;
  const char *endpoint_id = NULL, *data = NULL;
  int local = 0, hex = 0, fd, n;
  struct sockaddr_storage server, src, dst;
  uint8_t header[NLB_PROXY_V2_MAX_LEN];
  char answer[4096];
  ssize_t got;

  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    const char *value = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(arg, "--local") == 0) {
      local = 1;
      continue;
    }
    if (strcmp(arg, "--hex") == 0) {
      hex = 1;
      continue;
    }
    if (value == NULL)
      return usage();
    if (strcmp(arg, "--connect") == 0)
      connect_to = value;
    else if (strcmp(arg, "--src") == 0)
      src_text = value;
    else if (strcmp(arg, "--dst") == 0)
      dst_text = value;
    else if (strcmp(arg, "--endpoint-id") == 0)
      endpoint_id = value;
    else if (strcmp(arg, "--data") == 0)
      data = value;
    else
      return usage();
    i++;
  }
  if (connect_to == NULL || parse_addr(connect_to, &server) < 0)
    return usage();
  if (local) {
    n = nlb_proxy_v2_encode_local(header, sizeof(header));
  } else {
    if (src_text == NULL || dst_text == NULL ||
        parse_addr(src_text, &src) < 0 || parse_addr(dst_text, &dst) < 0)
      return usage();
    n = nlb_proxy_v2_encode(header, sizeof(header), (struct sockaddr *)&src,
                            (struct sockaddr *)&dst, endpoint_id);
  }
  if (n < 0) {
    fprintf(stderr, "ppv2_send: encode: %s\n", strerror(-n));
    return 2;
  }
  if (hex) {
    for (int i = 0; i < n; i++)
      fprintf(stderr, "%02X", header[i]);
    fprintf(stderr, "\n");
  }

  fd = socket(server.ss_family, SOCK_STREAM, 0);
  if (fd < 0 ||
      connect(fd, (struct sockaddr *)&server,
              server.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in)) < 0) {
    perror("ppv2_send: connect");
    return 1;
  }
  if (write_all(fd, header, (size_t)n) < 0 ||
      (data != NULL && write_all(fd, data, strlen(data)) < 0)) {
    perror("ppv2_send: write");
    close(fd);
    return 1;
  }
  shutdown(fd, SHUT_WR);
  while ((got = read(fd, answer, sizeof(answer))) > 0)
    fwrite(answer, 1, (size_t)got, stdout);
  close(fd);
  if (got < 0) {
    perror("ppv2_send: read");
    return 1;
  }
  return 0;
}
