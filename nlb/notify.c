#include "build-config.h"
#include "nlb/notify.h"

#include <stdint.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

void nlb_notify_ready(const char *status)
{
#ifdef HAVE_LIBSYSTEMD
  /* MAINPID: after an upgrade the service's main process is this one, the
   * old one's child (the unit needs NotifyAccess=all to take it). */
  sd_notifyf(0, "READY=1\nMAINPID=%ld\nSTATUS=%s", (long)getpid(), status);
#else
  (void)status;
#endif
}

void nlb_notify_reloading(void)
{
#ifdef HAVE_LIBSYSTEMD
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  sd_notifyf(0, "RELOADING=1\nSTATUS=reloading the config\nMONOTONIC_USEC=%llu",
             (unsigned long long)now.tv_sec * 1000000ull +
                 (unsigned long long)now.tv_nsec / 1000);
#endif
}

void nlb_notify_stopping(const char *status)
{
#ifdef HAVE_LIBSYSTEMD
  sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status);
#else
  (void)status;
#endif
}
