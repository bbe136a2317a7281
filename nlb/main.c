/* nlbd: the command line. Everything else is in daemon.c. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "nlb/config.h"
#include "nlb/control/router.h"
#include "nlb/daemon.h"
#include "nlb/rundir.h"
#include "nlb/upgrade.h"

/* Where the package installs the config (configure's sysconfdir); the
 * Makefile passes it. */
#ifndef NLB_DEFAULT_CONFIG
#define NLB_DEFAULT_CONFIG "/etc/nlb/nlb.cfg"
#endif

/* How long nlbd -s reload waits for the answer: a reload opens sockets and
 * may enter network namespaces, which takes milliseconds, but a loaded
 * machine may be slow to run the control thread. */
#define RELOAD_WAIT_MS 60000
/* An upgrade's new process has 30 s to be ready (daemon.c); the old one
 * says how it went right after. */
#define UPGRADE_WAIT_MS 60000

static void usage(FILE *out)
{
  fprintf(out,
          "Usage: nlbd [-c FILE] [--run-dir DIR]   run\n"
          "       nlbd -t [-c FILE]                 check the config and exit\n"
          "       nlbd -s reload [--run-dir DIR]    reload a running nlbd and\n"
          "                                         wait for the outcome\n"
          "       nlbd -s upgrade [--run-dir DIR]   have a running nlbd start\n"
          "                                         its binary anew and hand\n"
          "                                         it its sockets; wait for\n"
          "                                         the outcome\n"
          "       nlbd --version | --help\n"
          "\n"
          "FILE defaults to " NLB_DEFAULT_CONFIG ". DIR (where nlbd.pid\n"
          "and the reload outcome live) defaults to $RUNTIME_DIRECTORY,\n"
          "which systemd sets; without either nlbd writes none.\n"
          "\n"
          "Signals: SIGHUP reloads the config, SIGUSR1 reopens log files,\n"
          "SIGUSR2 upgrades (what -s upgrade sends),\n"
          "SIGTERM/SIGINT stop accepting and drain flows for\n"
          "shutdown_timeout, then exit.\n"
          "Exit status: 0 done, 1 runtime failure (or a rejected reload or\n"
          "upgrade),\n"
          "2 bad usage or config.\n");
}

static int check_config(const char *path)
{
  char reason[512];
  char *errors;
  struct nlb_config *cfg = nlb_config_load(path, &errors);
  if (!cfg) {
    fputs(errors ? errors : "nlbd: out of memory\n", stderr);
    free(errors);
    return 2;
  }
  if (nlb_router_check_tls(cfg, reason, sizeof(reason)) < 0 ||
      nlb_daemon_check_forwarding(cfg, reason, sizeof(reason)) < 0) {
    fprintf(stderr, "%s\n", reason);
    nlb_config_free(cfg);
    return 2;
  }
  nlb_config_free(cfg);
  printf("%s: ok\n", path);
  return 0;
}

/* What -s reload and -s upgrade ask of the running nlbd, and how its
 * answer is told. */
struct command {
  const char *name;   /* "reload" */
  const char *done;   /* the answer's prefix on success */
  const char *failed; /* ... when the running nlbd refused it */
  const char *gone;   /* after "the nlbd of DIR/nlbd.pid " */
  int (*send)(const char *dir, uint64_t timeout_ms, char *message, size_t size);
  uint64_t timeout_ms;
};

static const struct command reload_command = {
    "reload",          "reload applied",
    "reload rejected", "is not running (any more)",
    nlb_rundir_reload, RELOAD_WAIT_MS};
static const struct command upgrade_command = {
    "upgrade",          "upgraded",
    "upgrade failed",   "went away during the upgrade",
    nlb_rundir_upgrade, UPGRADE_WAIT_MS};

static int send_command(const char *run_dir, const struct command *command)
{
  char message[1024];
  const char *dir = nlb_rundir_pick(run_dir);
  int rc;

  if (!dir) {
    fprintf(stderr,
            "nlbd: -s %s needs --run-dir DIR (or $RUNTIME_DIRECTORY): where "
            "the running nlbd keeps nlbd.pid\n",
            command->name);
    return 2;
  }
  rc = command->send(dir, command->timeout_ms, message, sizeof(message));
  switch (rc) {
  case 0:
    printf("nlbd: %s: %s\n", command->done, message);
    return 0;
  case 1:
    fprintf(stderr, "nlbd: %s: %s\n", command->failed, message);
    return 1;
  case -EBUSY:
    fprintf(stderr, "nlbd: %s refused: another nlbd -s %s is running for %s\n",
            command->name, command->name, dir);
    return 1;
  case -ENOENT:
    fprintf(stderr,
            "nlbd: no %s/nlbd.pid: is nlbd running with that run "
            "directory?\n",
            dir);
    return 1;
  case -ESRCH:
    fprintf(stderr, "nlbd: the nlbd of %s/nlbd.pid %s\n", dir, command->gone);
    return 1;
  case -ETIMEDOUT:
    fprintf(stderr, "nlbd: no answer to the %s within %ds\n", command->name,
            (int)(command->timeout_ms / 1000));
    return 1;
  default:
    fprintf(stderr, "nlbd: %s: %s\n", command->name, strerror(-rc));
    return 1;
  }
}

int main(int argc, char **argv)
{
  enum { OPT_RUN_DIR = 256 };
  static const struct option options[] = {
      {"config", required_argument, NULL, 'c'},
      {"test", no_argument, NULL, 't'},
      {"signal", required_argument, NULL, 's'},
      {"run-dir", required_argument, NULL, OPT_RUN_DIR},
      {"version", no_argument, NULL, 'V'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *config_path = NLB_DEFAULT_CONFIG;
  const char *run_dir = NULL;
  const char *signal_name = NULL;
  int check_only = 0;
  int opt;

  while ((opt = getopt_long(argc, argv, "c:ts:Vh", options, NULL)) != -1) {
    switch (opt) {
    case 'c':
      config_path = optarg;
      break;
    case 't':
      check_only = 1;
      break;
    case 's':
      signal_name = optarg;
      break;
    case OPT_RUN_DIR:
      run_dir = optarg;
      break;
    case 'V':
      printf("nlbd %s\n", PACKAGE_VERSION);
      return 0;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind != argc ||
      (signal_name && (check_only || (strcmp(signal_name, "reload") != 0 &&
                                      strcmp(signal_name, "upgrade") != 0)))) {
    fprintf(stderr, "nlbd: %s\n",
            optind != argc ? "unexpected argument"
                           : "-s takes \"reload\" or \"upgrade\", and not "
                             "with -t");
    usage(stderr);
    return 2;
  }
  if (check_only)
    return check_config(config_path);
  if (signal_name && strcmp(signal_name, "upgrade") == 0)
    return send_command(run_dir, &upgrade_command);
  if (signal_name)
    return send_command(run_dir, &reload_command);
  nlb_upgrade_remember(argc, argv);
  return nlb_daemon_run(config_path, nlb_rundir_pick(run_dir));
}
