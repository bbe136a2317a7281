/* nlbd: the command line. Everything else is in daemon.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "nlb/config.h"
#include "nlb/daemon.h"

static void usage(FILE *out)
{
  fprintf(out,
          "Usage: nlbd -c FILE      run with the config FILE\n"
          "       nlbd -t -c FILE   check FILE and exit\n"
          "       nlbd --version | --help\n"
          "\n"
          "Signals: SIGHUP reloads the config, SIGUSR1 reopens log files,\n"
          "SIGTERM/SIGINT stop accepting and drain flows for\n"
          "shutdown_timeout, then exit.\n"
          "Exit status: 0 done, 1 runtime failure, 2 bad usage or config.\n");
}

int main(int argc, char **argv)
{
  static const struct option options[] = {
      {"config", required_argument, NULL, 'c'},
      {"test", no_argument, NULL, 't'},
      {"version", no_argument, NULL, 'V'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *config_path = NULL;
  int check_only = 0;
  int opt;

  while ((opt = getopt_long(argc, argv, "c:tVh", options, NULL)) != -1) {
    switch (opt) {
    case 'c':
      config_path = optarg;
      break;
    case 't':
      check_only = 1;
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
  if (!config_path || optind != argc) {
    fprintf(stderr, "nlbd: %s\n",
            optind != argc ? "unexpected argument" : "-c FILE is required");
    usage(stderr);
    return 2;
  }
  if (check_only) {
    char *errors;
    struct nlb_config *cfg = nlb_config_load(config_path, &errors);
    if (!cfg) {
      fputs(errors ? errors : "nlbd: out of memory\n", stderr);
      free(errors);
      return 2;
    }
    nlb_config_free(cfg);
    printf("%s: ok\n", config_path);
    return 0;
  }
  return nlb_daemon_run(config_path);
}
