/* nlbd -s upgrade: a new binary takes over without refusing a connection.
 *
 * The running nlbd (the old process) starts the binary at the path it was
 * itself started from, with its own arguments, and hands it over a
 * SOCK_SEQPACKET socket pair (its end is descriptor 3 of the new process,
 * named by NLB_UPGRADE_FD=3 in its environment, with NLB_UPGRADE_OLD_PID
 * and NLB_UPGRADE_GENERATION):
 *
 *   old -> new   "socket KIND ADDRESS" with the descriptor (SCM_RIGHTS), for
 *                every listening socket the old one holds (nlb/common/
 *                inherit.h says how the new one finds them again);
 *                "health GROUP TARGET STATE" for every target past initial;
 *                "end".
 *   new -> old   "ready PID" once it accepts (its first round of health
 *                checks is over, which the states it received shorten to
 *                nothing when every target had one), or "error TEXT" when
 *                it cannot start.
 *
 * Until nlb_upgrade_receive the new process's stderr is a pipe the old one
 * reads (and copies to its own stderr), so that a binary that dies before
 * it could say why (a config that does not parse, a library missing, not
 * an nlbd at all) still leaves its last words; its own stderr comes as
 * descriptor 4 (NLB_UPGRADE_STDERR=4) and takes over there.
 *
 * Old side: nlb_upgrade_start, then done() once: with the new pid (it is
 * ready: the old one stops accepting and drains) or with an error (the
 * new one exited, said why, or was not ready in time and was killed: the
 * old one goes on as before). New side: nlb_upgrade_receive at the start,
 * nlb_upgrade_apply_health once the targets are known, nlb_upgrade_ready
 * or nlb_upgrade_failed.
 *
 * Everything here runs on the control thread. */
#ifndef NLB_UPGRADE_H
#define NLB_UPGRADE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "nlb/control/router.h"

/* Remembers how this process was started: the binary's path (resolved now,
 * while /proc/self/exe still names the file a package may replace) and
 * argv (borrowed: main's). Call first thing in main. */
void nlb_upgrade_remember(int argc, char **argv);

/* ---- The new process ---------------------------------------------------- */

/* When NLB_UPGRADE_FD says this process is an upgrade's new one: reads
 * what the old one hands over (sockets into nlb/common/inherit.h, health
 * states kept for nlb_upgrade_apply_health; its own stderr back on fd 2)
 * until it says "end" or goes away (killed mid-way: what came is used, the rest
 * is opened anew). Returns 1 (an upgrade), 0 (a plain start) or a negative
 * errno with the reason in err. */
int nlb_upgrade_receive(char *err, size_t err_size);

/* Whether this process is an upgrade's new one not yet ready. */
bool nlb_upgrade_is_new(void);

/* The pid of the process this one took over from (0: none). */
pid_t nlb_upgrade_old_pid(void);

/* How many upgrades led to this process (0: started plainly). */
unsigned nlb_upgrade_generation(void);

/* Gives every target of router that the old process had past initial that
 * state (logged as carried over), so that no target goes back to initial.
 * Call after the targets are known (config and registry), before the first
 * round of checks is awaited. Returns how many targets took a state. */
size_t nlb_upgrade_apply_health(struct nlb_router *router, uint64_t now_ms);

/* This process accepts: tells the old one and closes the handed-over
 * sockets nobody took (the config no longer has them). Nothing when not an
 * upgrade's new process. */
void nlb_upgrade_ready(void);

/* This process cannot start: tells the old one why. */
void nlb_upgrade_failed(const char *reason);

/* ---- The old process ---------------------------------------------------- */

/* Called once: new_pid > 0 when the new process is ready, else error says
 * why it failed (borrowed for the call). */
typedef void (*nlb_upgrade_done_fn)(void *arg, pid_t new_pid,
                                    const char *error);

/* Starts the new process and hands it every listening socket and the
 * health states of router's targets; done runs later (never before this
 * returns), on loop. The new one has timeout_ms to become ready; then it is
 * killed. Returns 0, or a negative errno with the reason in err (nothing
 * started, done will not run): -EBUSY when an upgrade runs already. */
int nlb_upgrade_start(uv_loop_t *loop, struct nlb_router *router,
                      uint64_t timeout_ms, nlb_upgrade_done_fn done, void *arg,
                      char *err, size_t err_size);

/* Whether an upgrade started by this process is under way. */
bool nlb_upgrade_running(void);

/* Gives up a running upgrade (this process stops): the new process is
 * killed, done is not called. */
void nlb_upgrade_cancel(void);

#endif
