/* The sockmap fast path: an established TCP flow's two sockets go into a
 * BPF sockmap whose stream-verdict program (bpf/sockmap.bpf.c) sends what
 * each receives out of the other inside the kernel, so nlbd is woken only
 * for the flow's end (FIN, reset, error) and its timers. The program counts
 * each side's bytes and stamps its last activity in a second map keyed by
 * socket cookie; flow.c reads them for the idle timeout, the access log
 * and the metrics. One program and one pair of maps serve the whole
 * process, sized at load for every flow the node may hold.
 *
 * Built only with libbpf (configure says); without it nlb_sockmap_load
 * says -ENOTSUP and every flow is spliced. */
#ifndef NLB_SOCKMAP_H
#define NLB_SOCKMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nlb/common/forwarding.h"

/* Loads and verifies the program and creates its maps with room for
 * max_flows flows, then attaches it. Idempotent once loaded. Returns 0,
 * -ENOTSUP when built without libbpf, or the kernel's negative errno
 * (-EPERM without CAP_BPF and CAP_NET_ADMIN); error (may be NULL) gets a
 * sentence for the start event. Control thread, before the routes that use
 * it are published (at start or a reload). */
int nlb_sockmap_load(uint64_t max_flows, char *error, size_t error_size);

/* Whether nlb_sockmap_load succeeded. Any thread. */
bool nlb_sockmap_loaded(void);

/* Whether this build has the fast path at all. Any thread. */
bool nlb_sockmap_built(void);

/* Flows that were meant for the sockmap but stayed spliced (the map
 * refused a socket or was full), over the process. Any thread. */
uint64_t nlb_sockmap_fallbacks(void);
/* Flows that entered the map, over the process. Any thread. */
uint64_t nlb_sockmap_flows(void);

/* One flow's two sockets in the map. */
struct nlb_sockmap_pair {
  uint64_t cookie[2]; /* [0] the client's, [1] the target's; 0: not in */
};

/* Puts client_fd and target_fd in the map, each redirected to the other,
 * then has the kernel pass anything already queued on them through the
 * program. Both become redirect targets before either is handed to the
 * program, so bytes either side receives meanwhile wait in its queue for
 * the kick, in order, whoever speaks. On failure nothing of the flow stays
 * in the map and the failure is counted as a fallback. Returns 0 or a
 * negative errno. Worker thread (the bpf syscalls are the kernel's, no
 * lock of nlbd's). */
int nlb_sockmap_insert(struct nlb_sockmap_pair *pair, int client_fd,
                       int target_fd);

/* What the program counted for side (0 client, 1 target) of pair: the
 * bytes that side received and sent on, the CLOCK_MONOTONIC millisecond of
 * the last of them (0: none yet), and (stalled may be NULL) the bytes it
 * kept because the peer had left the map (closed): they can no longer go
 * in order, and the flow is reset. Returns 0 or a negative errno. Worker
 * thread. */
int nlb_sockmap_read(const struct nlb_sockmap_pair *pair, int side,
                     uint64_t *bytes, uint64_t *active_ms, uint64_t *stalled);

/* Forgets the pair's counters (the sockets leave the map when closed).
 * Worker thread. */
void nlb_sockmap_forget(struct nlb_sockmap_pair *pair);

/* For the unit tests: runs the loaded program once on a packet of len
 * bytes through the kernel's BPF_PROG_TEST_RUN; *verdict gets what it
 * returned. Returns 0, or the kernel's negative errno (-ENOTSUPP, 524, where
 * the kernel cannot test-run sk_skb programs). */
int nlb_sockmap_test_run(size_t len, uint32_t *verdict);

/* How many bytes were written into fd so far (sent once, or queued), and
 * how many in-order bytes it has received (its FIN counts one): for telling
 * whether what the program redirected has left the kernel's queues before
 * a FIN is passed on. Returns 0 or a negative errno. Worker thread. */
int nlb_sockmap_socket_bytes(int fd, uint64_t *written, uint64_t *received);

#endif
