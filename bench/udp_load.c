/* UDP load for bench/udp.py: an echo target, a closed-loop load generator
 * and an idle-flow opener, all on 127.0.0.1 with recvmmsg/sendmmsg.
 *
 *   udp_load echo PORT [gro]
 *       Answers every datagram with itself, until killed. With gro, the
 *       socket takes a sender's datagrams coalesced (UDP GRO) and answers
 *       them as one GSO send cut at the same size, as a server that
 *       batches its own I/O (QUIC's do) would.
 *   udp_load load PORT FLOWS SIZE WINDOW SECONDS [gso]
 *       FLOWS sockets connected to PORT (one 5-tuple each), each keeping
 *       WINDOW datagrams of SIZE bytes in flight: an answer sends the next
 *       one at once. Runs 1 s of warm-up, then SECONDS measured, and prints
 *       one JSON line: answers per second, round-trip p50/p99/max in us,
 *       datagrams sent and answered. A socket with no answer for 200 ms is
 *       sent its window again (lost datagrams; answers to the old one
 *       still count, but send no more), and its own CPU time
 *       (cpu_s, warm-up included). With gso, a flow's
 *       datagrams sent together leave as one GSO send, and its socket
 *       takes answers coalesced (UDP GRO), each datagram counted.
 *   udp_load idle PORT FLOWS
 *       FLOWS sockets connected to PORT, each sending one datagram and
 *       waiting for its answer (flows the balancer now holds); prints
 *       "ready N" once N answered, then holds them until stdin closes.
 *
 * Each datagram carries its send time (CLOCK_MONOTONIC ns) in its first 8
 * bytes, so an answer gives its round trip. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
#define MAX_SIZE 2048
/* A read: the largest datagram, or what UDP GRO coalesces. */
#define READ_MAX 65536
/* Round trips in us, one bucket each up to 2 s (a loaded host holds
 * datagrams for longer than 100 ms); the last counts more. */
#define HIST_US 2000000

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct sockaddr_in loopback(int port)
{
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  return addr;
}

static int connected_socket(int port)
{
  struct sockaddr_in addr = loopback(port);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
    perror("udp_load: socket");
    exit(1);
  }
  return fd;
}

/* The size of each datagram in a read of len bytes (UDP_GRO's, or len). */
static size_t segment_of(struct msghdr *hdr, size_t len)
{
  for (struct cmsghdr *c = CMSG_FIRSTHDR(hdr); c; c = CMSG_NXTHDR(hdr, c))
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
      int size;
      memcpy(&size, CMSG_DATA(c), sizeof(size));
      if (size > 0 && (size_t)size < len)
        return (size_t)size;
    }
  return len;
}

/* Sets the UDP_SEGMENT control message of hdr (in control). */
static void set_segment(struct msghdr *hdr, char *control, size_t size)
{
  struct cmsghdr *c;
  uint16_t segment = (uint16_t)size;

  hdr->msg_control = control;
  hdr->msg_controllen = CMSG_SPACE(sizeof(segment));
  c = CMSG_FIRSTHDR(hdr);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(segment));
  memcpy(CMSG_DATA(c), &segment, sizeof(segment));
}

static void raise_nofile(void)
{
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

static int echo(int port, int gro)
{
  static char buffers[BATCH][READ_MAX];
  static char control[BATCH][64];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_in names[BATCH];
  struct sockaddr_in addr = loopback(port);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const int size = 4 << 20;

  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
    perror("udp_load echo: bind");
    return 1;
  }
  if (gro && setsockopt(fd, SOL_UDP, UDP_GRO, &(int){1}, sizeof(int)) < 0)
    perror("udp_load echo: UDP_GRO");
  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      iov[i] = (struct iovec){buffers[i], sizeof(buffers[i])};
      msgs[i].msg_hdr = (struct msghdr){.msg_name = &names[i],
                                        .msg_namelen = sizeof(names[i]),
                                        .msg_iov = &iov[i],
                                        .msg_iovlen = 1,
                                        .msg_control = control[i],
                                        .msg_controllen = sizeof(control[i])};
    }
    int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
    if (n <= 0)
      continue;
    for (int i = 0; i < n; i++) {
      struct msghdr *hdr = &msgs[i].msg_hdr;
      size_t segment = segment_of(hdr, msgs[i].msg_len);
      iov[i].iov_len = msgs[i].msg_len;
      if (segment < msgs[i].msg_len)
        set_segment(hdr, control[i], segment);
      else
        hdr->msg_control = NULL, hdr->msg_controllen = 0;
    }
    sendmmsg(fd, msgs, (unsigned)n, 0);
  }
}

struct flow {
  int fd;
  uint64_t last_answer_ns;
  /* Which window the flow's datagrams belong to: a window sent again
   * starts a new one, and only answers of the current one send more, so
   * that datagrams that were late rather than lost do not add to the
   * window (a stalled loop would otherwise fill every queue). */
  uint32_t window_id;
};

static void send_window(struct flow *flow, int size, int count, int gso)
{
  char payload[BATCH][MAX_SIZE];
  char control[64];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  uint64_t t = now_ns();

  if (count > BATCH)
    count = BATCH;
  for (int i = 0; i < count; i++) {
    memset(payload[i], 'x', (size_t)size);
    memcpy(payload[i], &t, sizeof(t));
    memcpy(payload[i] + sizeof(t), &flow->window_id, sizeof(flow->window_id));
    iov[i] = (struct iovec){payload[i], (size_t)size};
    msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
  }
  if (gso && count > 1) {
    /* One send for the window, cut into its datagrams. */
    struct msghdr hdr = {.msg_iov = iov, .msg_iovlen = (size_t)count};
    set_segment(&hdr, control, (size_t)size);
    sendmsg(flow->fd, &hdr, 0);
    return;
  }
  sendmmsg(flow->fd, msgs, (unsigned)count, 0);
}

static int load(int port, int n_flows, int size, int window, int seconds,
                int gso)
{
  static uint64_t hist[HIST_US + 1];
  static char buffers[BATCH][READ_MAX];
  static char control[BATCH][64];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  struct flow *flows = calloc((size_t)n_flows, sizeof(*flows));
  struct epoll_event events[256];
  int ep = epoll_create1(EPOLL_CLOEXEC);
  uint64_t start = now_ns(), measure_from = start + 1000000000ull;
  uint64_t end = measure_from + (uint64_t)seconds * 1000000000ull;
  uint64_t answered = 0, sent = 0, resent = 0, last_check = start;

  if (size < 12 || size > MAX_SIZE || window < 1 || window > BATCH) {
    fprintf(stderr, "udp_load: size 12..%d, window 1..%d\n", MAX_SIZE, BATCH);
    return 2;
  }
  for (int f = 0; f < n_flows; f++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)f};
    flows[f].fd = connected_socket(port);
    flows[f].last_answer_ns = start;
    if (gso)
      setsockopt(flows[f].fd, SOL_UDP, UDP_GRO, &(int){1}, sizeof(int));
    epoll_ctl(ep, EPOLL_CTL_ADD, flows[f].fd, &ev);
    send_window(&flows[f], size, window, gso);
  }
  for (;;) {
    uint64_t t = now_ns();
    if (t >= end)
      break;
    int n = epoll_wait(ep, events, 256, 50);
    t = now_ns();
    for (int e = 0; e < n; e++) {
      struct flow *flow = &flows[events[e].data.u32];
      for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){buffers[i], READ_MAX};
        msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i],
                                          .msg_iovlen = 1,
                                          .msg_control = control[i],
                                          .msg_controllen = sizeof(control[i])};
      }
      int got = recvmmsg(flow->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
      int datagrams = 0, current = 0;
      if (got <= 0)
        continue;
      flow->last_answer_ns = t;
      /* Each datagram of a coalesced read carries its own send time. */
      for (int i = 0; i < got; i++) {
        size_t len = msgs[i].msg_len;
        size_t segment = segment_of(&msgs[i].msg_hdr, len);
        for (size_t at = 0; at < len || (len == 0 && at == 0);
             at += segment ? segment : 1) {
          uint64_t sent_ns, us;
          uint32_t window_id;
          datagrams++;
          if (len - at < 12)
            continue;
          memcpy(&window_id, buffers[i] + at + 8, sizeof(window_id));
          current += window_id == flow->window_id;
          if (t < measure_from)
            continue;
          memcpy(&sent_ns, buffers[i] + at, sizeof(sent_ns));
          us = (t - sent_ns) / 1000;
          hist[us < HIST_US ? us : HIST_US]++;
          answered++;
        }
      }
      if (t >= measure_from)
        sent += (uint64_t)current;
      if (current)
        send_window(flow, size, current, gso);
    }
    if (t - last_check > 100000000ull) {
      last_check = t;
      for (int f = 0; f < n_flows; f++)
        if (t - flows[f].last_answer_ns > 200000000ull) {
          flows[f].last_answer_ns = t;
          flows[f].window_id++;
          send_window(&flows[f], size, window, gso);
          resent++;
        }
    }
  }
  uint64_t seen = 0, p50 = 0, p99 = 0, max = 0;
  for (int us = 0; us <= HIST_US; us++) {
    if (!hist[us])
      continue;
    seen += hist[us];
    if (!p50 && seen * 2 >= answered)
      p50 = (uint64_t)us;
    if (!p99 && seen * 100 >= answered * 99)
      p99 = (uint64_t)us;
    max = (uint64_t)us;
  }
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  printf("{\"rate\": %.1f, \"p50_us\": %llu, \"p99_us\": %llu, "
         "\"max_us\": %llu, \"answered\": %llu, \"sent\": %llu, "
         "\"windows_resent\": %llu, \"cpu_s\": %.3f}\n",
         (double)answered / seconds, (unsigned long long)p50,
         (unsigned long long)p99, (unsigned long long)max,
         (unsigned long long)answered, (unsigned long long)sent,
         (unsigned long long)resent,
         (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
             (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6);
  return 0;
}

static int idle(int port, int n_flows)
{
  int *fds = calloc((size_t)n_flows, sizeof(*fds));
  char *done = calloc((size_t)n_flows, 1);
  char buf[64];
  int answered = 0;

  for (int f = 0; f < n_flows; f++)
    fds[f] = connected_socket(port);
  /* Each flow is sent its datagram again until it is answered. */
  for (int round = 0; round < 50 && answered < n_flows; round++) {
    for (int f = 0; f < n_flows; f++)
      if (!done[f] && send(fds[f], "hold", 4, 0) < 0 && errno != EAGAIN)
        perror("udp_load idle: send");
    usleep(100000);
    for (int f = 0; f < n_flows; f++)
      if (!done[f] && recv(fds[f], buf, sizeof(buf), MSG_DONTWAIT) > 0) {
        done[f] = 1;
        answered++;
      }
    if (answered >= n_flows)
      break;
  }
  printf("ready %d\n", answered);
  fflush(stdout);
  while (read(0, buf, sizeof(buf)) > 0)
    ;
  return 0;
}

int main(int argc, char **argv)
{
  raise_nofile();
  if ((argc == 3 || (argc == 4 && strcmp(argv[3], "gro") == 0)) &&
      strcmp(argv[1], "echo") == 0)
    return echo(atoi(argv[2]), argc == 4);
  if ((argc == 7 || (argc == 8 && strcmp(argv[7], "gso") == 0)) &&
      strcmp(argv[1], "load") == 0)
    return load(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]),
                atoi(argv[6]), argc == 8);
  if (argc == 4 && strcmp(argv[1], "idle") == 0)
    return idle(atoi(argv[2]), atoi(argv[3]));
  fprintf(stderr, "usage: udp_load echo PORT [gro] | load PORT FLOWS SIZE "
                  "WINDOW SECONDS [gso] | idle PORT FLOWS\n");
  return 2;
}
