/* The sockmap fast path's program (sockmap.h says how nlbd uses it): an
 * sk_skb stream verdict that sends what one socket of a flow receives out
 * of its peer, inside the kernel, and keeps the flow's byte count and last
 * activity for nlbd to read. Built with clang -target bpf; nlbd embeds it
 * through a libbpf skeleton, and the kernel verifies it at load. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* What nlbd keeps per socket of a flow in the sockmap, keyed by the
 * socket's cookie: which socket its bytes go to, and what the program
 * counted. Layout shared with sockmap.c (struct nlb_sockmap_side). */
struct side {
  __u64 peer;      /* the peer socket's cookie: its key in socks */
  __u64 bytes;     /* bytes received here and sent on to the peer */
  __u64 active_ns; /* bpf_ktime_get_ns() of the last of them */
  __u64 stalled;   /* bytes kept here: the peer was not in socks yet */
};

/* The sockets whose bytes the program handles: it is attached here.
 * Sized at load by nlbd from max_flows (two entries a flow). */
struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, 2);
  __type(key, __u64);
  __type(value, __u64);
} socks SEC(".maps");

/* The same sockets as redirect targets, with no program attached: a flow's
 * two sockets go in here first, so that each is already a target when
 * either starts to be redirected (no instant in which a socket's bytes have
 * nowhere to go). Same size as socks. */
struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, 2);
  __type(key, __u64);
  __type(value, __u64);
} peers SEC(".maps");

/* Not preallocated: sized for every flow the node may hold, it would pin
 * that much kernel memory (some 100 MB for a million sockets) from the
 * start; an entry is allocated as its flow goes in. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, 2);
  __type(key, __u64);
  __type(value, struct side);
} sides SEC(".maps");

SEC("sk_skb/stream_verdict")
int nlb_verdict(struct __sk_buff *skb)
{
  __u64 cookie = bpf_get_socket_cookie(skb);
  struct side *side = bpf_map_lookup_elem(&sides, &cookie);

  /* A socket in socks without a side (never, by nlbd's order of
   * insertion): its bytes stay for nlbd to read. */
  if (!side)
    return SK_PASS;
  /* The skb that brings a FIN and no bytes: the kernel's redirect would
   * take its emptiness for a broken pipe on the peer (EPIPE there, and
   * the peer's sending stops), while TCP has taken the FIN already. */
  if (skb->len == 0)
    return SK_DROP;
  /* flags 0: out of the peer (its send queue), not into its receive
   * queue. */
  if (bpf_sk_redirect_hash(skb, &peers, &side->peer, 0) != SK_PASS) {
    /* The peer is gone from peers (closed): the bytes stay in this
     * socket's queue rather than being dropped, and nlbd, which reads
     * stalled, resets the flow. */
    __sync_fetch_and_add(&side->stalled, skb->len);
    return SK_PASS;
  }
  __sync_fetch_and_add(&side->bytes, skb->len);
  side->active_ns = bpf_ktime_get_ns();
  return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
