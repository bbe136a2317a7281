/* nlbd's control thread: loads the config, starts the log writer, the
 * workers, health checks and the API, and runs the control loop until
 * SIGTERM/SIGINT have drained the flows. */
#ifndef NLB_DAEMON_H
#define NLB_DAEMON_H

/* Runs the daemon on the config at path, leaving its pid and reload
 * outcomes in run_dir (see rundir.h; NULL: none). Returns the process exit
 * status: 0 after a clean shutdown, 1 on a runtime failure (e.g. a
 * listener that cannot bind), 2 on a bad config. Call once, from the main
 * thread. */
int nlb_daemon_run(const char *config_path, const char *run_dir);

#endif
