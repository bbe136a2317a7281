/* Listener protocols: the names a listener's `protocol` setting takes, and
 * the flow kinds (nlb/dataplane/flow_kind.h) each one runs. One row of
 * protocol.c per name: adding a protocol is a row here and a flow kind of
 * the same name there. Kept apart from the data plane so that the config
 * loader (and its fuzz build) needs only this file. Any thread. */
#ifndef NLB_PROTOCOL_H
#define NLB_PROTOCOL_H

#include <stddef.h>

enum nlb_protocol {
  NLB_PROTOCOL_TCP, /* the default */
  NLB_PROTOCOL_UDP,
  NLB_PROTOCOL_TCP_UDP,
  NLB_PROTOCOL_TLS, /* TLS terminated (nlb/common/tls_server.h) */
  NLB_PROTOCOL_TLS_PASSTHROUGH, /* TCP routed by the ClientHello's SNI */
  NLB_PROTOCOL_COUNT,
};

/* Flow kinds one listener runs at most: tcp_udp runs two on one port. */
#define NLB_PROTOCOL_KINDS_MAX 2

/* The protocol a name gives; -1 for a name no row has. */
int nlb_protocol_parse(const char *name);

/* The protocol's name ("tcp", ...); "?" out of range. */
const char *nlb_protocol_name(enum nlb_protocol protocol);

/* The names of the flow kinds the protocol runs, one listening socket (or
 * one per worker) each, NULL-terminated: {"tcp"}, {"udp"}, {"tcp", "udp"},
 * {"tls_passthrough"}. */
const char *const *nlb_protocol_kinds(enum nlb_protocol protocol);

/* Every valid name, "a, b, c", for error messages; always terminated,
 * cut at size. */
void nlb_protocol_list(char *out, size_t size);

#endif
