/* nlbd's control thread: loads the config, starts the log writer, the
 * workers, health checks and the API, and runs the control loop until
 * SIGTERM/SIGINT have drained the flows. */
#ifndef NLB_DAEMON_H
#define NLB_DAEMON_H

#include <stddef.h>

struct nlb_config;

/* Runs the daemon on the config at path, leaving its pid and reload
 * outcomes in run_dir (see rundir.h; NULL: none). Returns the process exit
 * status: 0 after a clean shutdown, 1 on a runtime failure (e.g. a
 * listener that cannot bind), 2 on a bad config. Call once, from the main
 * thread. */
int nlb_daemon_run(const char *config_path, const char *run_dir);

/* For nlbd -t: whether this nlbd can forward as cfg asks, without loading
 * anything (forwarding = "sockmap" needs a build with libbpf; whether the
 * kernel and the process's capabilities allow it shows at start). Returns
 * 0, or -ENOTSUP with the reason in why. */
int nlb_daemon_check_forwarding(const struct nlb_config *cfg, char *why,
                                size_t why_size);

#endif
