#include "nlb/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <unistd.h>

#include "nlb/listener.h"

struct open_job {
  const char *netns;
  const union nlb_sockaddr *addrs;
  size_t n;
  size_t copies;
  int *fds;
  int failed_index;
  int result;
};

static void close_opened(int *fds, size_t count)
{
  for (size_t i = 0; i < count; i++)
    close(fds[i]);
}

static void open_all(struct open_job *job)
{
  size_t opened = 0;
  for (size_t a = 0; a < job->n; a++)
    for (size_t c = 0; c < job->copies; c++) {
      int fd = nlb_listener_open(&job->addrs[a]);
      if (fd < 0) {
        close_opened(job->fds, opened);
        job->failed_index = (int)a;
        job->result = fd;
        return;
      }
      job->fds[opened++] = fd;
    }
  job->result = 0;
}

static void *open_in_namespace(void *arg)
{
  struct open_job *job = arg;
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
  open_all(job);
  return NULL;
}

int nlb_netns_open_listeners(const char *netns,
                             const union nlb_sockaddr *addrs, size_t n,
                             size_t copies, int *fds, int *failed_index)
{
  struct open_job job = {netns, addrs, n, copies, fds, -1, 0};
  pthread_t thread;
  int rc;

  if (!netns || !*netns) {
    open_all(&job);
  } else {
    rc = pthread_create(&thread, NULL, open_in_namespace, &job);
    if (rc != 0)
      return -rc;
    pthread_join(thread, NULL);
  }
  *failed_index = job.failed_index;
  return job.result;
}
