#include "nlb/dataplane/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nlb/common/inherit.h"

/* A wildcard UDP socket learns where each datagram was sent (and answers
 * from there: udp.c). */
static int ask_destination(int fd, const union nlb_sockaddr *addr)
{
  const int one = 1;

  if (!nlb_addr_is_any(addr))
    return 0;
  if (addr->sa.sa_family == AF_INET6)
    return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
  return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
}

int nlb_listener_open(const union nlb_sockaddr *addr,
                      enum nlb_transport transport)
{
  const int one = 1;
  bool udp = transport == NLB_TRANSPORT_UDP;
  int fd = nlb_inherit_take(addr, udp ? SOCK_DGRAM : SOCK_STREAM);
  int rc;

  if (fd >= 0) {
    /* An upgrade's: its options came with it, but UDP GRO, which the
     * hand-over turns off for a binary that may not know it (upgrade.c). */
    if (udp)
      setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
    return fd;
  }
  fd = socket(addr->sa.sa_family,
              (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
              0);
  if (fd < 0)
    return -errno;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
    goto fail_close_socket;
  /* Accepted sockets inherit TCP_NODELAY: one setsockopt per listener
   * instead of one per flow. */
  if (!udp && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
    goto fail_close_socket;
  if (addr->sa.sa_family == AF_INET6 &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
    goto fail_close_socket;
  if (udp && ask_destination(fd, addr) < 0)
    goto fail_close_socket;
  /* A flow's datagrams that arrive together come in one read, cut back
   * into the same datagrams towards the target (udp.c); a kernel without
   * UDP GRO refuses it, and datagrams then come one by one. */
  if (udp)
    setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
  /* A burst of datagrams waits in the socket while its worker is busy or
   * descheduled: room for thousands rather than the default's few hundred
   * (the kernel caps it at net.core.rmem_max). */
  if (udp)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &(int){NLB_UDP_LISTEN_RCVBUF},
               sizeof(int));
  if (bind(fd, &addr->sa, nlb_addr_len(addr)) < 0 ||
      (!udp && listen(fd, NLB_LISTEN_BACKLOG) < 0))
    goto fail_close_socket;
  return fd;

fail_close_socket:
  rc = -errno;
  close(fd);
  return rc;
}

int nlb_bind_client_address(int fd, const union nlb_sockaddr *client)
{
  const int one = 1;
  union nlb_sockaddr source = *client;
  struct sockaddr_storage mine;
  socklen_t len = sizeof(mine);
  bool v6 = client->sa.sa_family == AF_INET6;

  if (getsockname(fd, (struct sockaddr *)&mine, &len) < 0)
    return -errno;
  if (mine.ss_family != client->sa.sa_family)
    return -EAFNOSUPPORT;
  nlb_addr_set_port(&source, 0);
  if (setsockopt(fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP,
                 v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, &one,
                 sizeof(one)) < 0 ||
      bind(fd, &source.sa, nlb_addr_len(&source)) < 0)
    return -errno;
  return 0;
}

int nlb_transparent_allowed(void)
{
  const int one = 1;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int rc = 0;

  if (fd < 0)
    return -errno;
  if (setsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &one, sizeof(one)) < 0)
    rc = -errno;
  close(fd);
  return rc;
}

struct nlb_listen_socket *nlb_listen_socket_create(int fd, int refs)
{
  struct nlb_listen_socket *socket = malloc(sizeof(*socket));

  if (!socket) {
    close(fd);
    return NULL;
  }
  atomic_init(&socket->refs, refs);
  socket->fd = fd;
  return socket;
}

void nlb_listen_socket_release(struct nlb_listen_socket *socket)
{
  if (socket &&
      atomic_fetch_sub_explicit(&socket->refs, 1, memory_order_acq_rel) == 1) {
    close(socket->fd);
    free(socket);
  }
}
