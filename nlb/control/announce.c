#include "nlb/control/announce.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nlb/log.h"
#include "nlb/control/netns.h"

/* One held device: its namespace ("" = nlbd's own) and descriptor. */
struct held {
  char *netns;
  int fd;
};

struct nlb_announce {
  char ifname[IFNAMSIZ];
  struct held *held;
  size_t n_held;
  bool withdrawn;
};

struct hold_job {
  const char *ifname;
  int fd;
  bool created;
};

/* A device we attach to but that is administratively down would keep the
 * routes away while nlbd believes it announces: bring it up. */
static int set_up(const char *ifname)
{
  struct ifreq ifr;
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int rc = 0;

  if (sock < 0)
    return -errno;
  memset(&ifr, 0, sizeof(ifr));
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
  if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
    rc = -errno;
  else if (!(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
      rc = -errno;
  }
  close(sock);
  return rc;
}

static bool device_exists(const char *ifname)
{
  return if_nametoindex(ifname) != 0;
}

/* Runs in the namespace (nlb_netns_run): /dev/net/tun opened there makes
 * or finds the device there. */
static int hold_here(void *arg)
{
  struct hold_job *job = arg;
  struct ifreq ifr;
  int fd, rc;

  job->created = !device_exists(job->ifname);
  fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  memset(&ifr, 0, sizeof(ifr));
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", job->ifname);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    rc = -errno;
    goto fail_close;
  }
  if ((rc = set_up(job->ifname)) < 0)
    goto fail_close;
  job->fd = fd;
  return 0;

fail_close:
  close(fd);
  return rc;
}

static const char *hold_error(int rc)
{
  switch (rc) {
  case -EBUSY:
    return "another process holds it (a second nlbd here?)";
  case -EPERM:
    return "not allowed (creating it takes CAP_NET_ADMIN; or make it "
           "persistent for nlbd's user: ip tuntap add NAME mode tun user "
           "USER)";
  case -EINVAL:
    return "a device of that name that is not a tun device exists";
  case -ENOENT:
    return "no such namespace";
  default:
    return strerror(-rc);
  }
}

static int hold(struct nlb_announce *announce, const char *netns, char *reason,
                size_t reason_size)
{
  struct hold_job job = {announce->ifname, -1, false};
  struct held *grown;
  char *name;
  int rc = nlb_netns_run(netns, hold_here, &job);

  if (rc < 0) {
    snprintf(reason, reason_size, "announce: cannot hold %s in %s%s: %s",
             announce->ifname, *netns ? "namespace " : "nlbd's namespace",
             netns, hold_error(rc));
    return rc;
  }
  grown = realloc(announce->held, (announce->n_held + 1) * sizeof(*grown));
  name = strdup(netns);
  if (grown)
    announce->held = grown;
  if (!grown || !name) {
    free(name);
    close(job.fd);
    snprintf(reason, reason_size, "announce: out of memory");
    return -ENOMEM;
  }
  announce->held[announce->n_held++] = (struct held){name, job.fd};
  NLB_LOG_EVENT(
      NLB_LOG_INFO, "announce",
      "announce: holding {interface} ({device}) in {where}{netns}",
      NLB_LOG_STR("interface", announce->ifname),
      NLB_LOG_STR("device", job.created ? "created" : "persistent"),
      NLB_LOG_STR("where", *netns ? "namespace " : "nlbd's namespace"),
      NLB_LOG_STR("netns", netns));
  return 0;
}

static void let_go(struct held *held)
{
  close(held->fd);
  free(held->netns);
}

/* The i-th namespace cfg serves endpoints in, with its network's name:
 * the config's networks, then node.networks' mappings of networks made
 * through the API. NULL past the end; "" for one on the host. */
static const char *network_netns(const struct nlb_config *cfg, size_t i,
                                 const char **network)
{
  const char *netns;

  if (i < cfg->n_networks) {
    *network = cfg->networks[i].name;
    netns = cfg->networks[i].netns;
  } else if (i - cfg->n_networks < cfg->n_node_networks) {
    *network = cfg->node_networks[i - cfg->n_networks].network;
    netns = cfg->node_networks[i - cfg->n_networks].netns;
  } else {
    return NULL;
  }
  return netns ? netns : "";
}

static bool wanted(const struct nlb_config *cfg, const char *netns)
{
  const char *network, *candidate;

  if (!*netns)
    return true;
  for (size_t i = 0; (candidate = network_netns(cfg, i, &network)); i++)
    if (strcmp(candidate, netns) == 0)
      return true;
  return false;
}

static bool holding(const struct nlb_announce *announce, const char *netns)
{
  for (size_t i = 0; i < announce->n_held; i++)
    if (strcmp(announce->held[i].netns, netns) == 0)
      return true;
  return false;
}

/* The networks' namespaces: a failure there is logged, not fatal (the
 * endpoints of that network cannot open either, and say why). */
static void hold_networks(struct nlb_announce *announce,
                          const struct nlb_config *cfg)
{
  const char *netns, *network;
  char reason[256];

  for (size_t i = 0; (netns = network_netns(cfg, i, &network)); i++) {
    if (!*netns || holding(announce, netns))
      continue;
    if (hold(announce, netns, reason, sizeof(reason)) < 0)
      NLB_LOG_EVENT(NLB_LOG_WARN, "announce_failed",
                    "{error}; network {network} is not announced here",
                    NLB_LOG_STR("error", reason),
                    NLB_LOG_STR("network", network));
  }
}

int nlb_announce_start(const struct nlb_config *cfg, struct nlb_announce **out,
                       char *reason, size_t reason_size)
{
  struct nlb_announce *announce;
  int rc;

  *out = NULL;
  if (!cfg->announce_interface)
    return 0;
  announce = calloc(1, sizeof(*announce));
  if (!announce) {
    snprintf(reason, reason_size, "announce: out of memory");
    return -ENOMEM;
  }
  snprintf(announce->ifname, sizeof(announce->ifname), "%s",
           cfg->announce_interface);
  rc = hold(announce, "", reason, reason_size);
  if (rc < 0) {
    free(announce);
    return rc;
  }
  hold_networks(announce, cfg);
  *out = announce;
  return 0;
}

void nlb_announce_reload(struct nlb_announce *announce,
                         const struct nlb_config *cfg)
{
  char reason[256];
  size_t kept = 0;

  if (!announce || announce->withdrawn || !cfg->announce_interface)
    return;
  if (strcmp(announce->ifname, cfg->announce_interface) != 0) {
    NLB_LOG_EVENT(NLB_LOG_INFO, "announce_renamed",
                  "announce: interface renamed {from} -> {to}",
                  NLB_LOG_STR("from", announce->ifname),
                  NLB_LOG_STR("to", cfg->announce_interface));
    for (size_t i = 0; i < announce->n_held; i++)
      let_go(&announce->held[i]);
    announce->n_held = 0;
    snprintf(announce->ifname, sizeof(announce->ifname), "%s",
             cfg->announce_interface);
    if (hold(announce, "", reason, sizeof(reason)) < 0)
      NLB_LOG_EVENT(NLB_LOG_ERROR, "announce_failed",
                    "{error}: this node is not announced",
                    NLB_LOG_STR("error", reason));
  }
  for (size_t i = 0; i < announce->n_held; i++) {
    if (wanted(cfg, announce->held[i].netns)) {
      announce->held[kept++] = announce->held[i];
      continue;
    }
    NLB_LOG_EVENT(NLB_LOG_INFO, "announce_dropped",
                  "announce: letting go of {interface} in namespace {netns}",
                  NLB_LOG_STR("interface", announce->ifname),
                  NLB_LOG_STR("netns", announce->held[i].netns));
    let_go(&announce->held[i]);
  }
  announce->n_held = kept;
  hold_networks(announce, cfg);
}

size_t nlb_announce_withdraw(struct nlb_announce *announce)
{
  size_t n;

  if (!announce)
    return 0;
  n = announce->n_held;
  for (size_t i = 0; i < n; i++)
    let_go(&announce->held[i]);
  announce->n_held = 0;
  announce->withdrawn = true;
  return n;
}

void nlb_announce_free(struct nlb_announce *announce)
{
  if (!announce)
    return;
  nlb_announce_withdraw(announce);
  free(announce->held);
  free(announce);
}
