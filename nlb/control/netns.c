#include "nlb/control/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nlb/common/inherit.h"
#include "nlb/dataplane/listener.h"

/* How long an address in use is retried: 10 x 5 ms. */
#define ADDRESS_RETRIES 10
#define ADDRESS_RETRY_NS 5000000L

struct open_job {
  const struct nlb_listen_request *requests;
  size_t n;
  int *fds;
  int failed_index;
};

static void close_opened(int *fds, size_t count)
{
  for (size_t i = 0; i < count; i++)
    close(fds[i]);
}

/* SO_REUSEPORT lets any socket of the same user join a listening address,
 * nlbd's own listeners and other endpoints included, and the kernel would
 * then spread an endpoint's flows over sockets that are not the endpoint's
 * (no endpoint ID, no allow-list, no reset on reject). So first bind once
 * without SO_REUSEPORT: that fails with EADDRINUSE while anything listens
 * on the address. SO_REUSEADDR keeps TIME_WAIT flows from counting. */
static int check_address_free(const union nlb_sockaddr *addr,
                              enum nlb_transport transport)
{
  const int one = 1;
  int fd = socket(addr->sa.sa_family,
                  (transport == NLB_TRANSPORT_UDP ? SOCK_DGRAM : SOCK_STREAM) |
                      SOCK_CLOEXEC,
                  0);
  int rc = 0;

  if (fd < 0)
    return -errno;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      (addr->sa.sa_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
      bind(fd, &addr->sa, nlb_addr_len(addr)) < 0)
    rc = -errno;
  close(fd);
  return rc;
}

/* A listener nlbd has just removed (an endpoint rejected or deleted a
 * moment ago, at the same address) closes on its workers asynchronously;
 * give them a few milliseconds before calling the address taken. */
static int wait_address_free(const union nlb_sockaddr *addr,
                             enum nlb_transport transport)
{
  int rc = check_address_free(addr, transport);
  for (int tries = 0; rc == -EADDRINUSE && tries < ADDRESS_RETRIES; tries++) {
    nanosleep(&(struct timespec){0, ADDRESS_RETRY_NS}, NULL);
    rc = check_address_free(addr, transport);
  }
  return rc;
}

/* Runs where the sockets belong (nlb_netns_run). */
static int open_all(void *arg)
{
  struct open_job *job = arg;
  size_t opened = 0;
  for (size_t a = 0; a < job->n; a++) {
    const struct nlb_listen_request *request = &job->requests[a];
    /* A socket joining the previous one's address finds it taken, by
     * that one. */
    int type =
        request->transport == NLB_TRANSPORT_UDP ? SOCK_DGRAM : SOCK_STREAM;
    /* A socket a previous nlbd handed over holds the address: it is the
     * endpoint's own (nlbd -s upgrade). */
    int rc = nlb_inherit_take(&request->addr, type);
    if (rc >= 0) {
      job->fds[opened++] = rc;
      continue;
    }
    rc = request->join ? 0
                       : wait_address_free(&request->addr, request->transport);
    if (rc < 0) {
      close_opened(job->fds, opened);
      job->failed_index = (int)a;
      return rc;
    }
    rc = nlb_listener_open(&request->addr, request->transport);
    if (rc < 0) {
      close_opened(job->fds, opened);
      job->failed_index = (int)a;
      return rc;
    }
    job->fds[opened++] = rc;
  }
  return 0;
}

struct run_job {
  const char *netns;
  int (*fn)(void *arg);
  void *arg;
  int result;
};

static void *run_in_namespace(void *arg)
{
  struct run_job *job = arg;
  char path[PATH_MAX];
  int ns_fd;

  snprintf(path, sizeof(path), "/run/netns/%s", job->netns);
  ns_fd = open(path, O_RDONLY | O_CLOEXEC);
  if (ns_fd < 0) {
    job->result = -errno;
    return NULL;
  }
  /* Only this helper thread moves; it ends right after. */
  if (setns(ns_fd, CLONE_NEWNET) < 0) {
    job->result = -errno;
    close(ns_fd);
    return NULL;
  }
  close(ns_fd);
  job->result = job->fn(job->arg);
  return NULL;
}

int nlb_netns_run(const char *netns, int (*fn)(void *arg), void *arg)
{
  struct run_job job = {netns, fn, arg, 0};
  pthread_t thread;
  int rc;

  if (!netns || !*netns)
    return fn(arg);
  rc = pthread_create(&thread, NULL, run_in_namespace, &job);
  if (rc != 0)
    return -rc;
  pthread_join(thread, NULL);
  return job.result;
}

int nlb_netns_open_listeners(const char *netns,
                             const struct nlb_listen_request *requests,
                             size_t n, int *fds, int *failed_index)
{
  struct open_job job = {requests, n, fds, -1};
  int rc = nlb_netns_run(netns, open_all, &job);

  *failed_index = job.failed_index;
  return rc;
}
