/* The run directory: where a running nlbd leaves its pid (nlbd.pid) and
 * the outcome of its last config load (reload), so that `nlbd -s reload`
 * (systemd's ExecReload, a person, a script) can signal that nlbd and learn
 * whether the new config was applied, not only whether the signal was
 * sent. Each file is written whole (a temporary file renamed over it).
 *
 * upgrade (nlbd -s upgrade) says the same of the last upgrade.
 *
 * reload holds "SEQ applied" or "SEQ rejected", then a line saying why; SEQ
 * changes at every load (start included).
 *
 * Daemon side: control thread. Client side: nlbd -s reload's process. */
#ifndef NLB_RUNDIR_H
#define NLB_RUNDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The directory to use: option when not NULL, else systemd's
 * $RUNTIME_DIRECTORY (set by RuntimeDirectory=), else NULL (none). */
const char *nlb_rundir_pick(const char *option);

/* Writes dir/nlbd.pid and remembers dir (copied). Returns 0 or a negative
 * errno: -EBUSY when dir/nlbd.pid names another nlbd that runs, other than
 * previous (the pid this one took over from in an upgrade; 0: none). */
int nlb_rundir_start(const char *dir, long previous);

/* Records a config load in dir/reload. Nothing without a run directory. */
void nlb_rundir_loaded(bool applied, const char *message);

/* Records the state of an upgrade this nlbd runs in dir/upgrade: "SEQ
 * STATE" then message, STATE one of started, handed_over, failed, refused.
 * Nothing without a run directory. */
void nlb_rundir_upgrade_state(const char *state, const char *message);

/* Forgets the directory and leaves its files: the nlbd this one handed
 * over to owns them now. */
void nlb_rundir_forget(void);

/* Removes both files and forgets the directory. */
void nlb_rundir_stop(void);

/* Sends SIGHUP to the nlbd whose pid dir/nlbd.pid holds and waits up to
 * timeout_ms for dir/reload to change; message gets its second line.
 * Returns 0 (applied), 1 (rejected), -ENOENT (no pid file: not running),
 * -ESRCH (the process is gone, or went while reloading), -ETIMEDOUT, or a
 * negative errno from reading or kill(2). */
int nlb_rundir_reload(const char *dir, uint64_t timeout_ms, char *message,
                      size_t size);

/* nlbd -s upgrade: takes dir/upgrade.lock (one upgrade at a time), sends
 * SIGUSR2 to the nlbd of dir/nlbd.pid and waits up to timeout_ms for
 * dir/upgrade to say how it ended; message gets its second line. Returns 0
 * (handed over), 1 (failed or refused), -EBUSY (another nlbd -s upgrade
 * runs), -ENOENT, -ESRCH, -ETIMEDOUT or a negative errno as
 * nlb_rundir_reload. */
int nlb_rundir_upgrade(const char *dir, uint64_t timeout_ms, char *message,
                       size_t size);

#endif
