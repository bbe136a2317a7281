/* The forwarding setting: how nlbd moves an established TCP flow's bytes
 * (docs/config.md, nlb/dataplane/sockmap.h). */
#ifndef NLB_FORWARDING_H
#define NLB_FORWARDING_H

/* Through its own splice/copy relay, through the kernel's sockmap, or the
 * sockmap where it could be loaded. */
enum nlb_forwarding {
  NLB_FORWARDING_SPLICE,
  NLB_FORWARDING_SOCKMAP,
  NLB_FORWARDING_AUTO,
};

/* "splice", "sockmap", "auto"; NULL past them. Any thread. */
const char *nlb_forwarding_name(enum nlb_forwarding forwarding);
/* 0 and *out for a name above, else -EINVAL. Any thread. */
int nlb_forwarding_parse(const char *name, enum nlb_forwarding *out);

#endif
