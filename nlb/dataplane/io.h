/* A socket watched by a worker's epoll instance (see nlb_worker_watch).
 * Flows embed two, so watching a socket never allocates. */
#ifndef NLB_IO_H
#define NLB_IO_H

#include <stdint.h>

struct nlb_io {
  int fd;          /* -1 when closed */
  uint32_t events; /* EPOLLIN/EPOLLOUT registered now; 0: not registered */
  /* Called on the worker thread with what epoll reported (EPOLLIN,
   * EPOLLOUT, EPOLLERR, EPOLLHUP). */
  void (*on_ready)(struct nlb_io *io, uint32_t revents);
};

#endif
