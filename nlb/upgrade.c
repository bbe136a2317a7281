#include "nlb/upgrade.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nlb/common/inherit.h"
#include "nlb/dataplane/target.h"
#include "nlb/log.h"
#include "nlb/registry-store.h"

#define ENV_FD "NLB_UPGRADE_FD"
#define ENV_STDERR "NLB_UPGRADE_STDERR"
#define ENV_GENERATION "NLB_UPGRADE_GENERATION"
#define ENV_OLD_PID "NLB_UPGRADE_OLD_PID"
#define CHILD_FD 3
#define CHILD_STDERR 4
#define MESSAGE_MAX 1024
/* A new process that stops reading (hung before it got to it) must not
 * hold the old one's control loop for long. */
#define SEND_TIMEOUT_S 5
/* The old one dies mid-way: the new one goes on with what came. */
#define RECEIVE_TIMEOUT_S 10
/* After a failed hand-over, how long the new process's exit is waited
 * for (it says more than the send's error) before it is killed. */
#define SEND_FAILED_WAIT_MS 1000
/* The new one's last words kept for the error. */
#define STDERR_TAIL 1024

static struct {
  char exe[PATH_MAX];
  char **argv;
} self;

/* The new process's side. */
static struct {
  int fd;        /* to the old one; -1 when not (any more) an upgrade's */
  int stderr_fd; /* its own stderr, until nlb_upgrade_receive */
  pid_t old_pid;
  unsigned generation;
  char *health; /* "GROUP\tTARGET\tSTATE\n" lines */
  size_t health_len;
} fresh = {.fd = -1, .stderr_fd = -1};

/* The old process's side: one upgrade at a time. */
struct upgrade {
  uv_loop_t *loop;
  uv_process_t process;
  uv_poll_t channel_poll;
  uv_poll_t stderr_poll;
  uv_timer_t timer;
  uint64_t timeout_ms;
  int channel; /* our end of the pair */
  int stderr_read;
  int open_handles;
  bool finished; /* done was called (or cancelled) */
  nlb_upgrade_done_fn done;
  void *arg;
  pid_t pid;
  char error[MESSAGE_MAX];      /* what the new process said */
  char send_error[MESSAGE_MAX]; /* the hand-over itself failed */
  char tail[STDERR_TAIL];
  size_t tail_len;
  int *gro_off; /* UDP sockets whose GRO the hand-over turned off */
  size_t n_gro_off, gro_capacity;
};

static struct upgrade *running;

void nlb_upgrade_remember(int argc, char **argv)
{
  ssize_t n = readlink("/proc/self/exe", self.exe, sizeof(self.exe) - 1);
  (void)argc;
  self.exe[n > 0 ? n : 0] = '\0';
  self.argv = argv;
}

/* ---- The new process ---------------------------------------------------- */

static int env_int(const char *name)
{
  const char *value = getenv(name);
  return value && *value ? atoi(value) : -1;
}

static int keep_health(const char *line)
{
  size_t len = strlen(line);
  char *grown = realloc(fresh.health, fresh.health_len + len + 2);
  if (!grown)
    return -ENOMEM;
  fresh.health = grown;
  memcpy(fresh.health + fresh.health_len, line, len);
  fresh.health_len += len;
  fresh.health[fresh.health_len++] = '\n';
  fresh.health[fresh.health_len] = '\0';
  return 0;
}

/* One message, with the descriptor it carries in *fd (-1: none). Returns
 * its length, 0 at the end of the stream, or a negative errno. */
static ssize_t receive_message(int sock, char *text, size_t size, int *fd)
{
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = text, .iov_len = size - 1};
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.buf,
                       .msg_controllen = sizeof(control.buf)};
  ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);

  *fd = -1;
  if (n < 0)
    return -errno;
  text[n] = '\0';
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      memcpy(fd, CMSG_DATA(c), sizeof(int));
  return n;
}

int nlb_upgrade_receive(char *err, size_t err_size)
{
  struct timeval timeout = {.tv_sec = RECEIVE_TIMEOUT_S};
  int sock = env_int(ENV_FD);
  char text[MESSAGE_MAX];

  if (sock < 0)
    return 0;
  fresh.fd = sock;
  fresh.stderr_fd = env_int(ENV_STDERR);
  fresh.generation = (unsigned)env_int(ENV_GENERATION);
  /* Not getppid(): a new process slow to start may find the old one gone
   * (killed) and itself adopted by init. */
  fresh.old_pid = (pid_t)env_int(ENV_OLD_PID);
  reg_pg_take_over_from(fresh.old_pid);
  /* Not for whatever this process starts (a health check never does, but
   * nothing else should take these for its own). */
  unsetenv(ENV_FD);
  unsetenv(ENV_STDERR);
  fcntl(sock, F_SETFD, FD_CLOEXEC);
  /* Its own stderr back: from here on, what goes wrong is sent as an
   * error; and the log must see the journal's stream on fd 2, not a pipe,
   * to keep the priority prefixes. */
  if (fresh.stderr_fd >= 0) {
    dup2(fresh.stderr_fd, STDERR_FILENO);
    close(fresh.stderr_fd);
    fresh.stderr_fd = -1;
  }
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  for (;;) {
    int fd;
    ssize_t n = receive_message(sock, text, sizeof(text), &fd);
    if (n < 0 && n != -EINTR) {
      /* The old one died mid-way or hangs: serve with what came. */
      break;
    }
    if (n == 0 || strcmp(text, "end") == 0)
      break;
    if (fd >= 0 && strcmp(text, "guard sqlite") == 0) {
      reg_sqlite_adopt_writer_guard(fd);
    } else if (fd >= 0 && strncmp(text, "socket ", 7) == 0) {
      nlb_inherit_add(fd); /* one it cannot use is closed */
    } else if (fd >= 0) {
      close(fd);
    } else if (strncmp(text, "health\t", 7) == 0 && keep_health(text + 7) < 0) {
      snprintf(err, err_size, "upgrade: out of memory");
      return -ENOMEM;
    }
  }
  return 1;
}

bool nlb_upgrade_is_new(void)
{
  return fresh.fd >= 0;
}

pid_t nlb_upgrade_old_pid(void)
{
  return fresh.old_pid;
}

unsigned nlb_upgrade_generation(void)
{
  return fresh.generation;
}

static struct nlb_target *find_target(struct nlb_group *group, const char *name)
{
  for (size_t i = 0; i < group->n_targets; i++)
    if (strcmp(group->targets[i]->name, name) == 0)
      return group->targets[i];
  return NULL;
}

size_t nlb_upgrade_apply_health(struct nlb_router *router, uint64_t now_ms)
{
  char *line = fresh.health;
  size_t applied = 0;

  while (line && *line) {
    char *end = strchr(line, '\n');
    char *group_name = line, *target_name, *state;
    struct nlb_group *group;
    struct nlb_target *target;

    *end = '\0';
    target_name = strchr(line, '\t');
    state = target_name ? strchr(target_name + 1, '\t') : NULL;
    line = end + 1;
    if (!state)
      continue;
    *target_name++ = '\0';
    *state++ = '\0';
    group = nlb_router_find_group(router, group_name);
    target = group ? find_target(group, target_name) : NULL;
    if (!target || atomic_load(&target->state) != NLB_TARGET_INITIAL)
      continue;
    if (strcmp(state, "healthy") == 0)
      nlb_router_set_target_state(router, group, target, NLB_TARGET_HEALTHY,
                                  "carried over by the upgrade", now_ms);
    else if (strcmp(state, "unhealthy") == 0)
      nlb_router_set_target_state(router, group, target, NLB_TARGET_UNHEALTHY,
                                  "carried over by the upgrade", now_ms);
    else
      continue;
    applied++;
  }
  free(fresh.health);
  fresh.health = NULL;
  fresh.health_len = 0;
  return applied;
}

static void say(int sock, const char *text)
{
  /* A message the old one never reads (it died) is not worth a signal. */
  send(sock, text, strlen(text), MSG_NOSIGNAL);
}

void nlb_upgrade_ready(void)
{
  char text[64];
  size_t kept, taken, closed;

  if (fresh.fd < 0)
    return;
  nlb_inherit_counts(&kept, &taken);
  closed = nlb_inherit_close_rest();
  snprintf(text, sizeof(text), "ready %ld", (long)getpid());
  say(fresh.fd, text);
  close(fresh.fd);
  fresh.fd = -1;
  NLB_LOG_EVENT(NLB_LOG_INFO, "upgrade_ready",
                "upgrade: ready, took over from pid {old_pid}: {taken} of "
                "{sockets} listening sockets adopted, {closed} no longer "
                "configured closed",
                NLB_LOG_INT("old_pid", fresh.old_pid),
                NLB_LOG_INT("new_pid", getpid()), NLB_LOG_UINT("sockets", kept),
                NLB_LOG_UINT("taken", taken), NLB_LOG_UINT("closed", closed),
                NLB_LOG_UINT("generation", fresh.generation));
}

void nlb_upgrade_failed(const char *reason)
{
  char text[MESSAGE_MAX];

  if (fresh.fd < 0)
    return;
  snprintf(text, sizeof(text), "error %s", reason);
  say(fresh.fd, text);
  close(fresh.fd);
  fresh.fd = -1;
  nlb_inherit_close_rest();
  free(fresh.health);
  fresh.health = NULL;
}

/* ---- The old process ---------------------------------------------------- */

static int send_message(int sock, const char *text, int fd)
{
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

  if (fd >= 0) {
    struct cmsghdr *c;
    memset(&control, 0, sizeof(control));
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  return sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* A UDP socket is handed over with UDP GRO off: a binary that does not
 * know GRO (a downgrade) would read a coalesced run of datagrams as one.
 * One that knows turns it back on as it adopts the socket (listener.c),
 * and a failed hand-over gives it back here (restore_gro). Meanwhile this
 * process reads the socket as before: without GRO each datagram comes
 * alone. */
static void hand_over_gro(struct upgrade *u, int fd)
{
  int on = 0;
  socklen_t len = sizeof(on);

  if (getsockopt(fd, SOL_UDP, UDP_GRO, &on, &len) < 0 || !on)
    return;
  if (u->n_gro_off == u->gro_capacity) {
    size_t capacity = u->gro_capacity ? 2 * u->gro_capacity : 16;
    int *grown = realloc(u->gro_off, capacity * sizeof(*grown));
    if (!grown)
      return; /* kept on: only a downgrade would mind */
    u->gro_off = grown;
    u->gro_capacity = capacity;
  }
  if (setsockopt(fd, SOL_UDP, UDP_GRO, &(int){0}, sizeof(int)) == 0)
    u->gro_off[u->n_gro_off++] = fd;
}

static void restore_gro(struct upgrade *u)
{
  for (size_t i = 0; i < u->n_gro_off; i++)
    setsockopt(u->gro_off[i], SOL_UDP, UDP_GRO, &(int){1}, sizeof(int));
  u->n_gro_off = 0;
}

/* Every listening socket this process holds, found where the kernel keeps
 * them (its descriptor table) rather than asked of each module: what a
 * module opened in a namespace, on a reload or for an endpoint is there
 * all the same. */
static int send_sockets(struct upgrade *u, size_t *sent)
{
  DIR *dir = opendir("/proc/self/fd");
  struct dirent *entry;
  int rc = 0;

  *sent = 0;
  if (!dir)
    return -errno;
  while (rc == 0 && (entry = readdir(dir)) != NULL) {
    int fd = atoi(entry->d_name);
    union nlb_sockaddr addr;
    socklen_t len = sizeof(addr);
    char text[32 + NLB_ADDR_TEXT_MAX], where[NLB_ADDR_TEXT_MAX];
    int type = 0;
    socklen_t type_len = sizeof(type);

    if (entry->d_name[0] == '.' || fd == u->channel || fd == u->stderr_read ||
        fd == dirfd(dir) || !nlb_inherit_wanted(fd))
      continue;
    if (getsockname(fd, &addr.sa, &len) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) < 0)
      continue;
    snprintf(text, sizeof(text), "socket %s %s",
             type == SOCK_STREAM ? "tcp" : "udp",
             nlb_addr_format(&addr, where, sizeof(where)));
    if (type == SOCK_DGRAM)
      hand_over_gro(u, fd);
    rc = send_message(u->channel, text, fd);
    if (rc == 0)
      (*sent)++;
  }
  closedir(dir);
  return rc;
}

static int send_health(struct upgrade *u, struct nlb_router *router)
{
  for (size_t g = 0; g < nlb_router_group_count(router); g++) {
    struct nlb_group *group = nlb_router_group(router, g);
    for (size_t i = 0; i < group->n_targets; i++) {
      struct nlb_target *target = group->targets[i];
      int state = atomic_load(&target->state);
      char text[MESSAGE_MAX];
      int rc;

      if (state != NLB_TARGET_HEALTHY && state != NLB_TARGET_UNHEALTHY)
        continue;
      snprintf(text, sizeof(text), "health\t%s\t%s\t%s", group->name,
               target->name, nlb_target_state_name(state));
      rc = send_message(u->channel, text, -1);
      if (rc < 0)
        return rc;
    }
  }
  return 0;
}

static void on_handle_closed(uv_handle_t *handle)
{
  struct upgrade *u = handle->data;
  if (--u->open_handles == 0) {
    if (u->channel >= 0)
      close(u->channel);
    if (u->stderr_read >= 0)
      close(u->stderr_read);
    free(u->gro_off);
    free(u);
  }
}

/* Ends the upgrade: done once (unless cancelled), handles closed. */
static void finish(struct upgrade *u, pid_t new_pid, const char *error)
{
  if (u->finished)
    return;
  u->finished = true;
  running = NULL;
  /* Not ready in time, or said it failed: it goes, and is reaped here,
   * as libuv stops watching it once its handle closes. SIGKILL takes a
   * moment at most. */
  if (!new_pid && u->pid > 0 && kill(u->pid, SIGKILL) == 0)
    waitpid(u->pid, NULL, 0);
  if (!new_pid)
    restore_gro(u);
  uv_close((uv_handle_t *)&u->channel_poll, on_handle_closed);
  uv_close((uv_handle_t *)&u->stderr_poll, on_handle_closed);
  uv_close((uv_handle_t *)&u->timer, on_handle_closed);
  /* After a success the new process lives on: only our handle of it goes
   * (libuv stops watching for its exit). */
  uv_close((uv_handle_t *)&u->process, on_handle_closed);
  if (u->done)
    u->done(u->arg, new_pid, error);
}

/* The new process's stderr: copied to ours and its end kept. */
static void drain_stderr(struct upgrade *u)
{
  char buf[4096];
  ssize_t n;

  while ((n = read(u->stderr_read, buf, sizeof(buf))) > 0) {
    size_t keep =
        (size_t)n < sizeof(u->tail) - 1 ? (size_t)n : sizeof(u->tail) - 1;
    ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
    (void)w;
    if (u->tail_len + keep >= sizeof(u->tail)) {
      size_t drop = u->tail_len + keep - (sizeof(u->tail) - 1);
      memmove(u->tail, u->tail + drop, u->tail_len - drop);
      u->tail_len -= drop;
    }
    memcpy(u->tail + u->tail_len, buf + n - keep, keep);
    u->tail_len += keep;
    u->tail[u->tail_len] = '\0';
  }
}

static void on_stderr(uv_poll_t *poll, int status, int events)
{
  struct upgrade *u = poll->data;
  (void)status;
  (void)events;
  drain_stderr(u);
  if (status < 0 || (events & UV_DISCONNECT))
    uv_poll_stop(poll);
}

/* The error for a new process that went before it was ready. */
static void failure_text(struct upgrade *u, const char *what, char *out,
                         size_t size)
{
  size_t len;
  if (u->error[0]) {
    snprintf(out, size, "%s", u->error);
    return;
  }
  /* Its last line of stderr, without the newline. */
  len = u->tail_len;
  while (len && (u->tail[len - 1] == '\n' || u->tail[len - 1] == '\r'))
    len--;
  u->tail[len] = '\0';
  if (len) {
    const char *last = strrchr(u->tail, '\n');
    snprintf(out, size, "%s: %s", what, last ? last + 1 : u->tail);
  } else if (u->send_error[0]) {
    snprintf(out, size, "%s: %s", what, u->send_error);
  } else {
    snprintf(out, size, "%s", what);
  }
}

/* Reads what the new process said so far: 1 when it said it is ready, -1
 * at the end of the stream (it closed its end: it exits, or exec failed),
 * else 0. An error it gives is kept. */
static int read_channel(struct upgrade *u)
{
  char text[MESSAGE_MAX];

  for (;;) {
    int fd;
    ssize_t n = receive_message(u->channel, text, sizeof(text), &fd);
    if (n == -EINTR)
      continue;
    if (n == -EAGAIN)
      return 0;
    if (n <= 0)
      return -1;
    if (fd >= 0)
      close(fd);
    if (strncmp(text, "ready ", 6) == 0)
      return 1;
    if (strncmp(text, "error ", 6) == 0)
      snprintf(u->error, sizeof(u->error), "%s", text + 6);
  }
}

static void on_channel(uv_poll_t *poll, int status, int events)
{
  struct upgrade *u = poll->data;
  int said = status < 0 ? -1 : read_channel(u);
  (void)events;

  if (said > 0)
    finish(u, u->pid, NULL);
  else if (said < 0)
    uv_poll_stop(poll); /* its exit says the rest */
}

static void on_process_exit(uv_process_t *process, int64_t exit_status,
                            int signal)
{
  struct upgrade *u = process->data;
  char what[64], why[2 * MESSAGE_MAX];

  if (u->finished)
    return;
  drain_stderr(u);
  read_channel(u); /* the error it gave, if that came last */
  if (signal)
    snprintf(what, sizeof(what), "the new nlbd was killed by signal %d",
             signal);
  else
    snprintf(what, sizeof(what), "the new nlbd exited with status %lld",
             (long long)exit_status);
  u->pid = 0; /* gone: nothing to kill */
  failure_text(u, what, why, sizeof(why));
  finish(u, 0, why);
}

static void on_timeout(uv_timer_t *timer)
{
  struct upgrade *u = timer->data;
  char why[2 * MESSAGE_MAX], what[96];

  if (u->send_error[0])
    snprintf(what, sizeof(what), "the new nlbd did not take the sockets");
  else
    snprintf(what, sizeof(what), "the new nlbd was not ready within %llu ms",
             (unsigned long long)u->timeout_ms);
  drain_stderr(u);
  failure_text(u, what, why, sizeof(why));
  finish(u, 0, why);
}

/* The environment less any upgrade variables, plus ours. */
static char **child_environment(char *fd_var, char *stderr_var,
                                char *generation_var, char *old_pid_var)
{
  extern char **environ;
  size_t n = 0, out = 0;
  char **env;

  while (environ[n])
    n++;
  env = calloc(n + 5, sizeof(*env));
  if (!env)
    return NULL;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "NLB_UPGRADE_", 12) != 0)
      env[out++] = environ[i];
  env[out++] = fd_var;
  env[out++] = stderr_var;
  env[out++] = generation_var;
  env[out++] = old_pid_var;
  return env;
}

int nlb_upgrade_start(uv_loop_t *loop, struct nlb_router *router,
                      uint64_t timeout_ms, nlb_upgrade_done_fn done, void *arg,
                      char *err, size_t err_size)
{
  struct timeval send_timeout = {.tv_sec = SEND_TIMEOUT_S};
  char fd_var[32], stderr_var[32], generation_var[48], old_pid_var[48];
  uv_stdio_container_t stdio[5];
  uv_process_options_t options = {0};
  int pair[2], pipe_fds[2], rc;
  struct upgrade *u;
  size_t sent = 0;
  char **env;

  if (running) {
    snprintf(err, err_size, "an upgrade is already under way (new pid %ld)",
             (long)running->pid);
    return -EBUSY;
  }
  if (!self.exe[0] || !self.argv) {
    snprintf(err, err_size, "cannot tell which binary this nlbd runs");
    return -ENOENT;
  }
  u = calloc(1, sizeof(*u));
  if (!u)
    return -ENOMEM;
  u->loop = loop;
  u->done = done;
  u->arg = arg;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
    rc = -errno;
    goto fail_free;
  }
  if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
    rc = -errno;
    goto fail_close_pair;
  }
  snprintf(fd_var, sizeof(fd_var), ENV_FD "=%d", CHILD_FD);
  snprintf(stderr_var, sizeof(stderr_var), ENV_STDERR "=%d", CHILD_STDERR);
  snprintf(generation_var, sizeof(generation_var), ENV_GENERATION "=%u",
           fresh.generation + 1);
  snprintf(old_pid_var, sizeof(old_pid_var), ENV_OLD_PID "=%ld",
           (long)getpid());
  env = child_environment(fd_var, stderr_var, generation_var, old_pid_var);
  if (!env) {
    rc = -ENOMEM;
    goto fail_close_pipe;
  }
  stdio[0] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = 0};
  stdio[1] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = 1};
  stdio[2] =
      (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = pipe_fds[1]};
  stdio[3] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = pair[1]};
  stdio[4] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = 2};
  options.file = self.exe;
  options.args = self.argv;
  options.env = env;
  options.stdio = stdio;
  options.stdio_count = 5;
  options.exit_cb = on_process_exit;
  u->process.data = u;
  rc = uv_spawn(loop, &u->process, &options);
  free(env);
  close(pipe_fds[1]);
  close(pair[1]);
  u->channel = pair[0];
  u->stderr_read = pipe_fds[0];
  if (rc < 0) {
    /* uv_spawn's handle must be closed all the same. */
    snprintf(err, err_size, "cannot start %s: %s", self.exe, uv_strerror(rc));
    u->finished = true;
    u->open_handles = 1;
    uv_close((uv_handle_t *)&u->process, on_handle_closed);
    return rc;
  }
  u->pid = u->process.pid;
  fcntl(u->stderr_read, F_SETFL, O_NONBLOCK);
  setsockopt(u->channel, SOL_SOCKET, SO_SNDTIMEO, &send_timeout,
             sizeof(send_timeout));
  running = u;
  rc = send_sockets(u, &sent);
  /* The registry file's writer guard: the new process's store opens on it
   * while this one still runs. */
  if (rc == 0 && reg_sqlite_writer_guard() >= 0)
    rc = send_message(u->channel, "guard sqlite", reg_sqlite_writer_guard());
  if (rc == 0)
    rc = send_health(u, router);
  if (rc == 0)
    rc = send_message(u->channel, "end", -1);
  fcntl(u->channel, F_SETFL, O_NONBLOCK);
  uv_poll_init(loop, &u->channel_poll, u->channel);
  uv_poll_init(loop, &u->stderr_poll, u->stderr_read);
  uv_timer_init(loop, &u->timer);
  u->channel_poll.data = u->stderr_poll.data = u->timer.data = u;
  u->open_handles = 4;
  uv_poll_start(&u->channel_poll, UV_READABLE | UV_DISCONNECT, on_channel);
  uv_poll_start(&u->stderr_poll, UV_READABLE | UV_DISCONNECT, on_stderr);
  u->timeout_ms = timeout_ms;
  /* A hand-over that failed half-way (the new process died, or does not
   * read) ends soon: by its exit, which says more, or by the timer. */
  if (rc < 0)
    snprintf(u->send_error, sizeof(u->send_error),
             "handing the sockets over: %s", strerror(-rc));
  uv_timer_start(&u->timer, on_timeout,
                 rc == 0 ? timeout_ms : SEND_FAILED_WAIT_MS, 0);
  NLB_LOG_EVENT(NLB_LOG_INFO, "upgrade_started",
                "upgrade: started {binary} as pid {new_pid}, handed it "
                "{sockets} listening sockets",
                NLB_LOG_STR("binary", self.exe),
                NLB_LOG_INT("old_pid", getpid()),
                NLB_LOG_INT("new_pid", u->pid), NLB_LOG_UINT("sockets", sent));
  return 0;

fail_close_pipe:
  close(pipe_fds[0]);
  close(pipe_fds[1]);
fail_close_pair:
  close(pair[0]);
  close(pair[1]);
fail_free:
  free(u);
  snprintf(err, err_size, "upgrade: %s", strerror(-rc));
  return rc;
}

bool nlb_upgrade_running(void)
{
  return running != NULL;
}

void nlb_upgrade_cancel(void)
{
  if (!running)
    return;
  running->done = NULL;
  finish(running, 0, "cancelled");
}
