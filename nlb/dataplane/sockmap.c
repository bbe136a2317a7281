#include "nlb/dataplane/sockmap.h"

#include <errno.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* tcp_info with its byte counts */
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "build-config.h"

#ifdef HAVE_LIBBPF
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "nlb/dataplane/bpf/sockmap.skel.h"
#endif

static atomic_uint_fast64_t fallbacks;
static atomic_uint_fast64_t inserted;

uint64_t nlb_sockmap_fallbacks(void)
{
  return atomic_load_explicit(&fallbacks, memory_order_relaxed);
}

uint64_t nlb_sockmap_flows(void)
{
  return atomic_load_explicit(&inserted, memory_order_relaxed);
}

int nlb_sockmap_socket_bytes(int fd, uint64_t *written, uint64_t *received)
{
  struct tcp_info info;
  socklen_t len = sizeof(info);

  /* One snapshot, taken under the socket's lock: what was sent once (not
   * counting retransmissions) plus what waits unsent. (SIOCOUTQ beside
   * tcpi_bytes_acked would be two moments: an ACK between them counts
   * twice.) */
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0)
    return -errno;
  if (len < offsetof(struct tcp_info, tcpi_bytes_retrans) +
                sizeof(info.tcpi_bytes_retrans))
    return -ENOTSUP;
  *written =
      info.tcpi_bytes_sent - info.tcpi_bytes_retrans + info.tcpi_notsent_bytes;
  *received = info.tcpi_bytes_received;
  return 0;
}

#ifdef HAVE_LIBBPF

/* Mirrors struct side of bpf/sockmap.bpf.c. */
struct side {
  uint64_t peer;
  uint64_t bytes;
  uint64_t active_ns;
  uint64_t stalled;
};

/* Written once by nlb_sockmap_load (control thread), before any route
 * that asks for the sockmap is published: the snapshot's publication
 * orders it before a worker's first read. Kept for the process's life. */
static struct nlb_sockmap_bpf *skel;
static int socks_fd = -1;
static int peers_fd = -1;
static int sides_fd = -1;

bool nlb_sockmap_built(void)
{
  return true;
}

bool nlb_sockmap_loaded(void)
{
  return skel != NULL;
}

/* libbpf's own messages would go to stderr unasked; the error it returns
 * is what the start event says. */
static int quiet(enum libbpf_print_level level, const char *format,
                 va_list args)
{
  (void)level, (void)format, (void)args;
  return 0;
}

int nlb_sockmap_load(uint64_t max_flows, char *error, size_t error_size)
{
  uint64_t entries = max_flows ? 2 * max_flows : 2 * 65536;
  int err;

  if (skel)
    return 0;
  if (entries > UINT32_MAX)
    entries = UINT32_MAX;
  libbpf_set_print(quiet);
  struct nlb_sockmap_bpf *s = nlb_sockmap_bpf__open();
  if (!s) {
    err = -errno;
    goto fail;
  }
  bpf_map__set_max_entries(s->maps.socks, (uint32_t)entries);
  bpf_map__set_max_entries(s->maps.peers, (uint32_t)entries);
  bpf_map__set_max_entries(s->maps.sides, (uint32_t)entries);
  err = nlb_sockmap_bpf__load(s);
  if (err)
    goto fail_destroy;
  if (bpf_prog_attach(bpf_program__fd(s->progs.nlb_verdict),
                      bpf_map__fd(s->maps.socks), BPF_SK_SKB_STREAM_VERDICT,
                      0) < 0) {
    err = -errno;
    goto fail_destroy;
  }
  socks_fd = bpf_map__fd(s->maps.socks);
  peers_fd = bpf_map__fd(s->maps.peers);
  sides_fd = bpf_map__fd(s->maps.sides);
  skel = s;
  return 0;

fail_destroy:
  nlb_sockmap_bpf__destroy(s);
fail:
  if (err > 0)
    err = -err;
  if (error)
    snprintf(error, error_size, "loading the sockmap program: %s%s",
             strerror(-err),
             err == -EPERM ? " (nlbd needs CAP_BPF and CAP_NET_ADMIN)" : "");
  return err;
}

static uint64_t cookie_of(int fd)
{
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  return getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) < 0 ? 0 : cookie;
}

/* Has the kernel hand what already waits in fd's receive queue (bytes that
 * came between nlbd's last read and the insertion) to the program: setting
 * the low-water mark runs the socket's data-ready callback, which is the
 * program's now. */
static void kick(int fd)
{
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
}

/* Puts each of fds in map under its cookie; on failure takes out what went
 * in. Returns 0 or a negative errno. */
static int put_both(int map_fd, const int fds[2], const uint64_t cookie[2])
{
  for (int i = 0; i < 2; i++) {
    uint64_t fd = (uint64_t)fds[i];
    if (bpf_map_update_elem(map_fd, &cookie[i], &fd, BPF_NOEXIST)) {
      int err = -errno;
      if (i == 1)
        bpf_map_delete_elem(map_fd, &cookie[0]);
      return err;
    }
  }
  return 0;
}

static void take_both(int map_fd, const uint64_t cookie[2])
{
  for (int i = 0; i < 2; i++)
    bpf_map_delete_elem(map_fd, &cookie[i]);
}

int nlb_sockmap_insert(struct nlb_sockmap_pair *pair, int client_fd,
                       int target_fd)
{
  const int fds[2] = {client_fd, target_fd};
  uint64_t cookie[2];
  int err = -ENOTSUP, n_sides = 0;

  pair->cookie[0] = pair->cookie[1] = 0;
  if (!skel)
    goto fail;
  for (int i = 0; i < 2; i++)
    if (!(cookie[i] = cookie_of(fds[i]))) {
      err = -errno;
      goto fail;
    }
  for (; n_sides < 2; n_sides++) {
    struct side side = {.peer = cookie[1 - n_sides]};
    if (bpf_map_update_elem(sides_fd, &cookie[n_sides], &side, BPF_NOEXIST)) {
      err = -errno;
      goto fail;
    }
  }
  /* Targets first, then the program on each (sockmap.bpf.c, peers). */
  if ((err = put_both(peers_fd, fds, cookie)) < 0)
    goto fail;
  if ((err = put_both(socks_fd, fds, cookie)) < 0) {
    take_both(peers_fd, cookie);
    goto fail;
  }
  kick(target_fd);
  kick(client_fd);
  pair->cookie[0] = cookie[0];
  pair->cookie[1] = cookie[1];
  atomic_fetch_add_explicit(&inserted, 1, memory_order_relaxed);
  return 0;

fail:
  while (n_sides-- > 0)
    bpf_map_delete_elem(sides_fd, &cookie[n_sides]);
  atomic_fetch_add_explicit(&fallbacks, 1, memory_order_relaxed);
  return err < 0 ? err : -EIO;
}

int nlb_sockmap_read(const struct nlb_sockmap_pair *pair, int side,
                     uint64_t *bytes, uint64_t *active_ms, uint64_t *stalled)
{
  struct side value;

  if (bpf_map_lookup_elem(sides_fd, &pair->cookie[side], &value) < 0)
    return -errno;
  *bytes = value.bytes;
  *active_ms = value.active_ns / 1000000;
  if (stalled)
    *stalled = value.stalled;
  return 0;
}

int nlb_sockmap_test_run(size_t len, uint32_t *verdict)
{
  static char packet[1500];
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = packet,
              .data_size_in =
                  (uint32_t)(len < sizeof(packet) ? len : sizeof(packet)),
              .repeat = 1);

  if (!skel)
    return -ENOTSUP;
  if (bpf_prog_test_run_opts(bpf_program__fd(skel->progs.nlb_verdict), &opts))
    return -errno;
  *verdict = opts.retval;
  return 0;
}

void nlb_sockmap_forget(struct nlb_sockmap_pair *pair)
{
  for (int i = 0; i < 2; i++)
    if (pair->cookie[i]) {
      bpf_map_delete_elem(sides_fd, &pair->cookie[i]);
      pair->cookie[i] = 0;
    }
}

#else /* !HAVE_LIBBPF */

bool nlb_sockmap_built(void)
{
  return false;
}

bool nlb_sockmap_loaded(void)
{
  return false;
}

int nlb_sockmap_load(uint64_t max_flows, char *error, size_t error_size)
{
  (void)max_flows;
  if (error)
    snprintf(error, error_size,
             "this nlbd was built without libbpf: forwarding = \"sockmap\" "
             "needs it (install libbpf-dev, bpftool and clang and rebuild)");
  return -ENOTSUP;
}

int nlb_sockmap_insert(struct nlb_sockmap_pair *pair, int client_fd,
                       int target_fd)
{
  (void)client_fd, (void)target_fd;
  pair->cookie[0] = pair->cookie[1] = 0;
  atomic_fetch_add_explicit(&fallbacks, 1, memory_order_relaxed);
  return -ENOTSUP;
}

int nlb_sockmap_read(const struct nlb_sockmap_pair *pair, int side,
                     uint64_t *bytes, uint64_t *active_ms, uint64_t *stalled)
{
  (void)pair, (void)side, (void)bytes, (void)active_ms, (void)stalled;
  return -ENOTSUP;
}

void nlb_sockmap_forget(struct nlb_sockmap_pair *pair)
{
  pair->cookie[0] = pair->cookie[1] = 0;
}

int nlb_sockmap_test_run(size_t len, uint32_t *verdict)
{
  (void)len, (void)verdict;
  return -ENOTSUP;
}

#endif
