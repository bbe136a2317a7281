/* The sockmap fast path's program (nlb/dataplane/bpf/sockmap.bpf.c) run by
 * the kernel on real loopback sockets: each side's bytes reach the other's
 * peer both ways and are counted with an activity stamp; bytes queued
 * before the insertion are kicked through, and bytes streaming both ways
 * while the flow goes in arrive whole and in order; a FIN does not break the
 * other way (its empty packet is dropped, not redirected); forget leaves
 * nothing to read. BPF_PROG_TEST_RUN is tried first: kernels up to this
 * one (6.18) have no test run for sk_skb programs, which the case says.
 * Needs CAP_BPF and CAP_NET_ADMIN (root in CI); without them, or in a build
 * without libbpf, each case says so and passes. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nlb/dataplane/sockmap.h"

#include "unit.h"

/* Not in the kernel's UAPI headers: "operation not supported" of its own. */
#define KERNEL_ENOTSUPP 524

static bool loaded(void)
{
  char error[256];
  int rc = nlb_sockmap_load(64, error, sizeof(error));
  if (rc < 0)
    printf("\n  (skipped: %s) ", error);
  return rc == 0;
}

/* Two loopback TCP connections: a (outside a[0], nlbd's a[1]) and b
 * (nlbd's b[0], outside b[1]), as a client connection and its target's. */
static void make_pair(int *fds)
{
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(addr);
  int listener = socket(AF_INET, SOCK_STREAM, 0);

  CU_ASSERT_FATAL(listener >= 0);
  CU_ASSERT_FATAL(bind(listener, (struct sockaddr *)&addr, len) == 0);
  CU_ASSERT_FATAL(listen(listener, 1) == 0);
  getsockname(listener, (struct sockaddr *)&addr, &len);
  fds[0] = socket(AF_INET, SOCK_STREAM, 0);
  CU_ASSERT_FATAL(connect(fds[0], (struct sockaddr *)&addr, len) == 0);
  fds[1] = accept(listener, NULL, NULL);
  CU_ASSERT_FATAL(fds[1] >= 0);
  close(listener);
}

/* Reads exactly n bytes within 5 s (the redirect runs on a kernel work
 * queue: the bytes come a moment after the send). */
static bool read_exactly(int fd, char *buf, size_t n)
{
  size_t got = 0;
  while (got < n) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1)
      return false;
    ssize_t r = recv(fd, buf + got, n - got, 0);
    if (r <= 0)
      return false;
    got += (size_t)r;
  }
  return true;
}

static uint64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void close_all(int *a, int *b)
{
  close(a[0]), close(a[1]), close(b[0]), close(b[1]);
}

static void test_sockmap_forwarding_names(void)
{
  enum nlb_forwarding f;
  CU_ASSERT_EQUAL(nlb_forwarding_parse("sockmap", &f), 0);
  CU_ASSERT_EQUAL(f, NLB_FORWARDING_SOCKMAP);
  CU_ASSERT_EQUAL(nlb_forwarding_parse("auto", &f), 0);
  CU_ASSERT_EQUAL(f, NLB_FORWARDING_AUTO);
  CU_ASSERT_EQUAL(nlb_forwarding_parse("splice", &f), 0);
  CU_ASSERT_EQUAL(f, NLB_FORWARDING_SPLICE);
  CU_ASSERT_EQUAL(nlb_forwarding_parse("copy", &f), -EINVAL);
  CU_ASSERT_STRING_EQUAL(nlb_forwarding_name(NLB_FORWARDING_AUTO), "auto");
}

static void test_sockmap_prog_test_run(void)
{
  uint32_t verdict = 0;
  int rc;

  if (!loaded())
    return;
  rc = nlb_sockmap_test_run(100, &verdict);
  if (rc == -KERNEL_ENOTSUPP || rc == -EINVAL || rc == -ENOTSUP) {
    printf("\n  (BPF_PROG_TEST_RUN: this kernel cannot test-run sk_skb "
           "programs: %d; the cases below run it on real sockets) ",
           rc);
    return;
  }
  /* A packet of no socket in the map: left where it is. */
  CU_ASSERT_EQUAL(rc, 0);
  CU_ASSERT_EQUAL(verdict, 1 /* SK_PASS */);
}

static void test_sockmap_redirects_both_ways_and_counts(void)
{
  struct nlb_sockmap_pair pair;
  int a[2], b[2];
  char buf[64];
  uint64_t bytes, active_ms, stalled, before = now_ms();

  if (!loaded())
    return;
  make_pair(a);
  make_pair(b);
  CU_ASSERT_FATAL(nlb_sockmap_insert(&pair, a[1], b[0]) == 0);
  CU_ASSERT_EQUAL(send(a[0], "hello", 5, 0), 5);
  CU_ASSERT(read_exactly(b[1], buf, 5) && memcmp(buf, "hello", 5) == 0);
  CU_ASSERT_EQUAL(send(b[1], "world!", 6, 0), 6);
  CU_ASSERT(read_exactly(a[0], buf, 6) && memcmp(buf, "world!", 6) == 0);
  CU_ASSERT_EQUAL(nlb_sockmap_read(&pair, 0, &bytes, &active_ms, &stalled), 0);
  CU_ASSERT_EQUAL(bytes, 5);
  CU_ASSERT_EQUAL(stalled, 0);
  CU_ASSERT(active_ms + 5 >= before && active_ms <= now_ms() + 5);
  CU_ASSERT_EQUAL(nlb_sockmap_read(&pair, 1, &bytes, &active_ms, &stalled), 0);
  CU_ASSERT_EQUAL(bytes, 6);
  nlb_sockmap_forget(&pair);
  close_all(a, b);
}

static void test_sockmap_kicks_bytes_queued_before_insertion(void)
{
  struct nlb_sockmap_pair pair;
  int a[2], b[2];
  char buf[64];
  struct pollfd p;

  if (!loaded())
    return;
  make_pair(a);
  make_pair(b);
  CU_ASSERT_EQUAL(send(a[0], "early", 5, 0), 5);
  /* In nlbd's socket's queue before it goes in. */
  p = (struct pollfd){.fd = a[1], .events = POLLIN};
  CU_ASSERT_EQUAL(poll(&p, 1, 5000), 1);
  CU_ASSERT_FATAL(nlb_sockmap_insert(&pair, a[1], b[0]) == 0);
  CU_ASSERT(read_exactly(b[1], buf, 5) && memcmp(buf, "early", 5) == 0);
  nlb_sockmap_forget(&pair);
  close_all(a, b);
}

/* One side of a stream: sends STREAM_BYTES of a counting pattern. */
#define STREAM_BYTES (256 * 1024)

struct streamer {
  int fd;
  atomic_size_t sent;
};

static unsigned char pattern_at(size_t offset)
{
  return (unsigned char)(offset % 251);
}

static void *stream_out(void *arg)
{
  struct streamer *s = arg;
  unsigned char chunk[4096];

  while (s->sent < STREAM_BYTES) {
    size_t n = STREAM_BYTES - s->sent < sizeof(chunk) ? STREAM_BYTES - s->sent
                                                      : sizeof(chunk);
    for (size_t i = 0; i < n; i++)
      chunk[i] = pattern_at(s->sent + i);
    ssize_t w = send(s->fd, chunk, n, 0);
    if (w <= 0)
      break;
    s->sent += (size_t)w;
  }
  return NULL;
}

/* Reads from both fds until each has given STREAM_BYTES, checking the
 * pattern; false on a gap, a reordering or a 5 s silence. */
static bool read_both_streams(const int fds[2])
{
  size_t got[2] = {0, 0};
  unsigned char buf[8192];

  while (got[0] < STREAM_BYTES || got[1] < STREAM_BYTES) {
    struct pollfd p[2] = {{.fd = fds[0], .events = POLLIN},
                          {.fd = fds[1], .events = POLLIN}};
    if (poll(p, 2, 5000) < 1)
      return false;
    for (int i = 0; i < 2; i++) {
      if (!(p[i].revents & POLLIN))
        continue;
      ssize_t r = recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT);
      if (r <= 0)
        return false;
      for (ssize_t j = 0; j < r; j++)
        if (buf[j] != pattern_at(got[i] + (size_t)j))
          return false;
      got[i] += (size_t)r;
    }
  }
  return true;
}

/* Both sides send without pause while the flow goes in: whichever socket
 * goes in first, its bytes have somewhere to go (none stalled), and each
 * stream arrives whole and in order. Repeated, as the instant between the
 * insertions is short. */
static void test_sockmap_insert_while_both_sides_stream(void)
{
  if (!loaded())
    return;
  for (int round = 0; round < 40; round++) {
    struct nlb_sockmap_pair pair;
    struct streamer up = {0}, down = {0};
    pthread_t threads[2];
    uint64_t bytes, active_ms, stalled[2] = {1, 1};
    int a[2], b[2];

    make_pair(a);
    make_pair(b);
    up.fd = a[0];
    down.fd = b[1];
    pthread_create(&threads[0], NULL, stream_out, &up);
    pthread_create(&threads[1], NULL, stream_out, &down);
    while (up.sent == 0 || down.sent == 0)
      sched_yield();
    CU_ASSERT_FATAL(nlb_sockmap_insert(&pair, a[1], b[0]) == 0);
    const int readers[2] = {b[1], a[0]};
    CU_ASSERT(read_both_streams(readers));
    pthread_join(threads[0], NULL);
    pthread_join(threads[1], NULL);
    for (int side = 0; side < 2; side++)
      nlb_sockmap_read(&pair, side, &bytes, &active_ms, &stalled[side]);
    CU_ASSERT_EQUAL(stalled[0], 0);
    CU_ASSERT_EQUAL(stalled[1], 0);
    nlb_sockmap_forget(&pair);
    close_all(a, b);
  }
}

static void test_sockmap_fin_leaves_the_other_way_open(void)
{
  struct nlb_sockmap_pair pair;
  int a[2], b[2], error = -1;
  socklen_t len = sizeof(error);
  char buf[64];

  if (!loaded())
    return;
  make_pair(a);
  make_pair(b);
  CU_ASSERT_FATAL(nlb_sockmap_insert(&pair, a[1], b[0]) == 0);
  CU_ASSERT_EQUAL(send(a[0], "last", 4, 0), 4);
  CU_ASSERT(read_exactly(b[1], buf, 4));
  shutdown(a[0], SHUT_WR);
  usleep(50 * 1000);
  /* The FIN's empty packet, redirected, would have set EPIPE on b's
   * side and stopped its sending. */
  CU_ASSERT_EQUAL(getsockopt(b[0], SOL_SOCKET, SO_ERROR, &error, &len), 0);
  CU_ASSERT_EQUAL(error, 0);
  CU_ASSERT_EQUAL(send(b[1], "reply", 5, 0), 5);
  CU_ASSERT(read_exactly(a[0], buf, 5) && memcmp(buf, "reply", 5) == 0);
  nlb_sockmap_forget(&pair);
  close_all(a, b);
}

static void test_sockmap_forget_leaves_nothing(void)
{
  struct nlb_sockmap_pair pair, copy;
  int a[2], b[2];
  uint64_t bytes, active_ms;

  if (!loaded())
    return;
  make_pair(a);
  make_pair(b);
  CU_ASSERT_FATAL(nlb_sockmap_insert(&pair, a[1], b[0]) == 0);
  copy = pair;
  nlb_sockmap_forget(&pair);
  CU_ASSERT_EQUAL(pair.cookie[0], 0);
  CU_ASSERT_EQUAL(nlb_sockmap_read(&copy, 0, &bytes, &active_ms, NULL),
                  -ENOENT);
  close_all(a, b);
}

int main(void)
{
  static const struct nlb_unit_case cases[] = {
      NLB_UNIT_CASE(test_sockmap_forwarding_names),
      NLB_UNIT_CASE(test_sockmap_prog_test_run),
      NLB_UNIT_CASE(test_sockmap_redirects_both_ways_and_counts),
      NLB_UNIT_CASE(test_sockmap_kicks_bytes_queued_before_insertion),
      NLB_UNIT_CASE(test_sockmap_insert_while_both_sides_stream),
      NLB_UNIT_CASE(test_sockmap_fin_leaves_the_other_way_open),
      NLB_UNIT_CASE(test_sockmap_forget_leaves_nothing),
  };
  return nlb_unit_run("sockmap", NULL, NULL, cases, NLB_UNIT_COUNT(cases));
}
