#include "nlb/common/inherit.h"

#include "nlb/common/hmap.h"

#include <errno.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

struct kept {
  struct nlb_hnode node; /* in table.index */
  int fd;                /* -1 once taken */
  int type;
  ino_t netns;
  union nlb_sockaddr addr;
};

/* What a listener is found by: the same fields as struct kept. */
struct kept_key {
  int type;
  ino_t netns;
  const union nlb_sockaddr *addr;
};

/* The sockets are kept in an array that grows while the hand-over is read,
 * and indexed by a hash map built at the first take (the array's growth
 * would move the nodes under it): an upgrade of 10,000 endpoints takes
 * 10,000 listeners, which a scan per take would make quadratic. */
static struct {
  pthread_mutex_t lock;
  struct kept *sockets;
  size_t n, capacity, taken;
  struct nlb_hmap index;
  bool indexed; /* index holds every untaken socket of the array */
} table = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t key_hash(int type, ino_t netns, const union nlb_sockaddr *addr)
{
  uint64_t h = nlb_hash_bytes(&type, sizeof(type)) ^
               nlb_hash_bytes(&netns, sizeof(netns)) * 31;
  if (addr->sa.sa_family == AF_INET)
    return h ^ nlb_hash_bytes(&addr->in.sin_addr, 4) * 17 ^ addr->in.sin_port;
  if (addr->sa.sa_family == AF_INET6)
    return h ^ nlb_hash_bytes(&addr->in6.sin6_addr, 16) * 17 ^
           addr->in6.sin6_port;
  return h;
}

static bool kept_is(const struct nlb_hnode *node, const void *key)
{
  const struct kept *k = (const struct kept *)node;
  const struct kept_key *want = key;
  return k->fd >= 0 && k->type == want->type && k->netns == want->netns &&
         nlb_addr_equal(&k->addr, want->addr);
}

/* Builds table.index over the untaken sockets; under table.lock. Without
 * memory for the buckets the chains are only longer (hmap.h). */
static void build_index(void)
{
  nlb_hmap_free(&table.index);
  nlb_hmap_init(&table.index);
  for (size_t i = 0; i < table.n; i++) {
    struct kept *k = &table.sockets[i];
    if (k->fd >= 0)
      nlb_hmap_insert(&table.index, &k->node,
                      key_hash(k->type, k->netns, &k->addr));
  }
  table.indexed = true;
}

/* The namespace the calling thread is in (a helper thread may have entered
 * a consumer's), or 0 when it cannot be told. */
static ino_t thread_netns(void)
{
  struct stat st;
  if (stat("/proc/thread-self/ns/net", &st) < 0)
    return 0;
  return st.st_ino;
}

/* The namespace a socket belongs to. SIOCGSKNS needs CAP_NET_ADMIN;
 * without it this process cannot enter other namespaces either, so every
 * socket it holds is in its own. */
static ino_t socket_netns(int fd)
{
  struct stat st;
  int ns = ioctl(fd, SIOCGSKNS);
  if (ns < 0)
    return thread_netns();
  if (fstat(ns, &st) < 0)
    st.st_ino = 0;
  close(ns);
  return st.st_ino;
}

static int socket_int(int fd, int option)
{
  int value = 0;
  socklen_t len = sizeof(value);
  if (getsockopt(fd, SOL_SOCKET, option, &value, &len) < 0)
    return -errno;
  return value;
}

static int local_address(int fd, union nlb_sockaddr *addr)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return -errno;
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
    return -EAFNOSUPPORT;
  memset(addr, 0, sizeof(*addr));
  memcpy(addr, &ss,
         ss.ss_family == AF_INET ? sizeof(addr->in) : sizeof(addr->in6));
  return 0;
}

bool nlb_inherit_wanted(int fd)
{
  union nlb_sockaddr addr, peer;
  socklen_t len = sizeof(peer);
  int type = socket_int(fd, SO_TYPE);

  if (local_address(fd, &addr) < 0 || nlb_addr_port(&addr) == 0)
    return false;
  if (type == SOCK_STREAM)
    return socket_int(fd, SO_ACCEPTCONN) == 1;
  return type == SOCK_DGRAM && getpeername(fd, &peer.sa, &len) < 0 &&
         errno == ENOTCONN;
}

int nlb_inherit_add(int fd)
{
  struct kept kept = {.fd = fd};
  int rc = local_address(fd, &kept.addr);

  /* The sender picked it from its descriptor table while its workers
   * accepted: a number reused in between (a flow's socket) is no
   * listener. */
  if (rc == 0 && !nlb_inherit_wanted(fd))
    rc = -ENOTSOCK;
  if (rc == 0)
    kept.type = socket_int(fd, SO_TYPE);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  kept.netns = socket_netns(fd);
  pthread_mutex_lock(&table.lock);
  if (table.n == table.capacity) {
    size_t capacity = table.capacity ? table.capacity * 2 : 16;
    struct kept *grown =
        realloc(table.sockets, capacity * sizeof(*table.sockets));
    if (!grown) {
      pthread_mutex_unlock(&table.lock);
      close(fd);
      return -ENOMEM;
    }
    table.sockets = grown;
    table.capacity = capacity;
  }
  table.sockets[table.n++] = kept;
  table.indexed = false; /* the array may have moved */
  pthread_mutex_unlock(&table.lock);
  return 0;
}

int nlb_inherit_take(const union nlb_sockaddr *addr, int type)
{
  struct kept_key key = {.type = type, .addr = addr};
  int fd = -ENOENT;

  pthread_mutex_lock(&table.lock);
  if (table.n == table.taken) {
    pthread_mutex_unlock(&table.lock);
    return -ENOENT; /* the usual case, without a stat */
  }
  key.netns = thread_netns();
  if (!table.indexed)
    build_index();
  struct nlb_hnode *node = nlb_hmap_find(
      &table.index, key_hash(type, key.netns, addr), kept_is, &key);
  if (node) {
    struct kept *k = (struct kept *)node;
    nlb_hmap_remove(&table.index, node);
    fd = k->fd;
    k->fd = -1;
    table.taken++;
  }
  pthread_mutex_unlock(&table.lock);
  return fd;
}

void nlb_inherit_counts(size_t *kept, size_t *taken)
{
  pthread_mutex_lock(&table.lock);
  *kept = table.n;
  *taken = table.taken;
  pthread_mutex_unlock(&table.lock);
}

size_t nlb_inherit_close_rest(void)
{
  size_t closed = 0;

  pthread_mutex_lock(&table.lock);
  for (size_t i = 0; i < table.n; i++) {
    if (table.sockets[i].fd >= 0) {
      close(table.sockets[i].fd);
      table.sockets[i].fd = -1;
      closed++;
    }
  }
  free(table.sockets);
  table.sockets = NULL;
  table.n = table.capacity = table.taken = 0;
  nlb_hmap_free(&table.index);
  nlb_hmap_init(&table.index);
  table.indexed = false;
  pthread_mutex_unlock(&table.lock);
  return closed;
}
