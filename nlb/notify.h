/* Telling the service manager how nlbd is doing: systemd's notify protocol
 * (sd_notify(3), a datagram to $NOTIFY_SOCKET). READY=1 once the listeners
 * are open; RELOADING=1 (with MONOTONIC_USEC, which systemd 253 and later
 * want) and READY=1 around a reload; STOPPING=1 when draining; STATUS=
 * lines for `systemctl status`. Without $NOTIFY_SOCKET (not started by
 * systemd with Type=notify), or when built without libsystemd, every call
 * does nothing. Control thread. */
#ifndef NLB_NOTIFY_H
#define NLB_NOTIFY_H

/* READY=1 with a status line. */
void nlb_notify_ready(const char *status);

/* RELOADING=1 and MONOTONIC_USEC=now; nlb_notify_ready must follow, even
 * when the reload is rejected. */
void nlb_notify_reloading(void);

/* STOPPING=1 with a status line. */
void nlb_notify_stopping(const char *status);

#endif
