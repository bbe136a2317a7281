#include "nlb/dataplane/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int nlb_listener_open(const union nlb_sockaddr *addr)
{
  const int one = 1;
  int fd =
      socket(addr->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int rc;

  if (fd < 0)
    return -errno;
  /* Accepted sockets inherit TCP_NODELAY: one setsockopt per listener
   * instead of one per flow. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
    goto fail_close_socket;
  if (addr->sa.sa_family == AF_INET6 &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
    goto fail_close_socket;
  if (bind(fd, &addr->sa, nlb_addr_len(addr)) < 0 ||
      listen(fd, NLB_LISTEN_BACKLOG) < 0)
    goto fail_close_socket;
  return fd;

fail_close_socket:
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
