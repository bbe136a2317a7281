#!/usr/bin/env python3
"""End-to-end tests of issue 3: active and passive health checks, target
states, draining on deregistration, fail-open and slow start.

Three HTTP backends on loopback behind nlbd, checked every 400 ms with
thresholds 2/2, and a client opening a new connection through nlbd every
10 ms. Times are measured from the event log's timestamps (wall clock, ms)
against the moment the test changed a backend, and printed so they can be
quoted. Stdlib only; every test has a hard timeout (nlbtest.run) and stops
everything it started."""

import calendar
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nlbtest import (Nlbd, Server, TOP_SRCDIR, free_port, recv_line,  # noqa
                     run, wait_until)

# The backends are Python threads beside the test's own client: on a
# loaded machine (CI's sanitizer pass) a live one took more than 150 ms to
# answer twice in a row, and was judged by a timeout instead of its answer.
INTERVAL_MS = 400
TIMEOUT_MS = 400
HEALTHY_THRESHOLD = 2
UNHEALTHY_THRESHOLD = 2
SLACK_MS = 1000
# What issue 3 promises, plus slack for a loaded CI machine.
DETECT_BOUND_MS = INTERVAL_MS * UNHEALTHY_THRESHOLD + TIMEOUT_MS + SLACK_MS
RECOVER_BOUND_MS = INTERVAL_MS * HEALTHY_THRESHOLD + TIMEOUT_MS + SLACK_MS
# A snapshot published by the control thread reaches the workers through a
# uv_async_t: flows accepted this long after a state change must follow it.
# Changes are published in 25 ms windows; the rest is room for a timer and
# two thread wake-ups on a loaded machine (sanitizers, other builds).
PUBLISH_MARGIN_S = 0.2


# ---- logs ------------------------------------------------------------------

def log_time(text):
    """'2025-01-02T03:04:05.678Z' -> seconds since the epoch (float)."""
    main, frac = text.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) + \
        int(frac) / 1000.0


TRANSITION_RE = re.compile(
    r"^(\S+) \w+ target ([^/\s]+)/(\S+) state (\w+) -> (\w+) \((.*)\)$")


class Transition:
    def __init__(self, m):
        self.time = log_time(m.group(1))
        self.group = m.group(2)
        self.target = m.group(3)
        self.old = m.group(4)
        self.new = m.group(5)
        self.reason = m.group(6)
        self.line = m.group(0)

    def __repr__(self):
        return self.line


def transitions(nlbd):
    out = []
    for line in nlbd.events().splitlines():
        m = TRANSITION_RE.match(line)
        if m:
            out.append(Transition(m))
    return out


def wait_transition(nlbd, target, new, after=0.0, timeout=5.0):
    """The first transition of target into state new logged at or after
    wall-clock time after (log times have ms resolution)."""
    def find():
        for t in transitions(nlbd):
            if t.target == target and t.new == new and t.time >= after - 0.002:
                return t
        return None
    return wait_until(find, timeout=timeout,
                      what="%s -> %s in the event log" % (target, new))


ACCESS_RE = re.compile(
    r"^(\S+) (\S+) (\S+) (\S+) -> (\S+) connect=(\S+) duration=(\d+) "
    r"up=(\d+) down=(\d+) retries=(\d+) end=(\S+)")


class Flow:
    def __init__(self, m):
        self.end_time = log_time(m.group(1))
        self.duration_ms = int(m.group(7))
        self.start = self.end_time - self.duration_ms / 1000.0
        self.client = m.group(4)
        self.target = m.group(5)
        self.retries = int(m.group(10))
        self.end = m.group(11)
        self.line = m.group(0)

    def __repr__(self):
        return self.line


def flows(nlbd):
    out = []
    for line in nlbd.access():
        m = ACCESS_RE.match(line)
        assert m, "access-log line not in docs/logs.md's format: %r" % line
        out.append(Flow(m))
    return out


def between(records, start, end):
    return [r for r in records if start <= r.start < end]


def counts_by_target(records):
    out = {}
    for r in records:
        out[r.target] = out.get(r.target, 0) + 1
    return out


# ---- backends and clients --------------------------------------------------

class Backend:
    """A target that answers nlbd's HTTP health checks and the client's
    HTTP GETs with its name (status 200, or 503, or never: self.mode), and
    for anything else sends its name on a line and echoes. stop() closes
    its listening socket (connects are refused); restart() listens again
    on the same port."""

    def __init__(self, name, port=0):
        self.name = name
        self.mode = "ok"
        self.release = threading.Event()
        self.server = Server(self._handle, port=port)
        self.port = self.server.port
        self.address = "127.0.0.1:%d" % self.port
        self.running = True

    def _handle(self, conn):
        conn.settimeout(10)
        data = conn.recv(4096)
        if not data:
            return
        if data.startswith(b"GET "):
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            mode = self.mode
            if mode == "hang":
                self.release.wait(10)
                return
            body = (self.name + "\n").encode()
            conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n"
                         % (503 if mode == "503" else 200, len(body)) + body)
            return
        conn.sendall(self.name.encode() + b"\n" + data)
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)

    def stop(self):
        if self.running:
            self.running = False
            self.server.stop()

    def restart(self):
        assert not self.running
        self.server = Server(self._handle, port=self.port)
        self.running = True

    def close(self):
        self.release.set()
        self.stop()


class Traffic:
    """A client opening a new connection through nlbd every period seconds
    (each in its own thread, so a hanging target does not slow the pace):
    it sends an HTTP GET and reads the answer to EOF. Each attempt is
    recorded as (start, end, outcome, name) with outcome "ok" (a whole
    HTTP answer), "eof" (closed without an answer), "reset", "timeout" or
    an error text."""

    def __init__(self, port, period=0.01, timeout=2.0):
        self.port = port
        self.period = period
        self.timeout = timeout
        self.results = []
        self.lock = threading.Lock()
        self.inflight = 0
        self.paused = False
        self.stopped = False
        self.threads = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _loop(self):
        next_at = time.monotonic()
        while not self.stopped:
            with self.lock:
                go = not self.paused
                if go:
                    self.inflight += 1
            if go:
                t = threading.Thread(target=self._one, daemon=True)
                t.start()
                self.threads.append(t)
            next_at += self.period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()

    def _one(self):
        start = time.time()
        name = None
        try:
            with socket.create_connection(("127.0.0.1", self.port),
                                          timeout=self.timeout) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: nlb\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            if data.startswith(b"HTTP/1.1 ") and b"\r\n\r\n" in data:
                outcome = "ok"
                name = data.split(b"\r\n\r\n", 1)[1].decode().strip()
            else:
                outcome = "eof" if not data else "partial"
        except ConnectionResetError:
            outcome = "reset"
        except socket.timeout:
            outcome = "timeout"
        except OSError as e:
            outcome = "error: %s" % e
        with self.lock:
            self.results.append((start, time.time(), outcome, name))
            self.inflight -= 1

    def pause(self, timeout=3.0):
        """Stops opening connections and waits for those in flight."""
        with self.lock:
            self.paused = True
        wait_until(lambda: self.inflight == 0, timeout=timeout,
                   what="client connections in flight to end")

    def resume(self):
        self.paused = False

    def stop(self):
        self.stopped = True
        self.thread.join(5)
        for t in self.threads:
            t.join(max(0.1, self.timeout + 1))
        return self

    def wait_ended(self, since, n, timeout=15.0):
        """Waits until n connections started at or after since have ended:
        a window of time holds enough flows however slowly this client
        runs (a loaded sanitizer run made 37 a second, not 100)."""
        wait_until(lambda: len([r for r in self.results
                                if r[0] >= since]) >= n,
                   timeout=timeout,
                   what="%d client connections after %.3f" % (n, since))

    def failures(self, start=0.0, end=float("inf")):
        return [r for r in self.results
                if start <= r[0] < end and r[2] != "ok"]


def health_check(protocol="http"):
    text = ('protocol = "%s"; interval = "%dms"; timeout = "%dms"; '
            'healthy_threshold = %d; unhealthy_threshold = %d;'
            % (protocol, INTERVAL_MS, TIMEOUT_MS, HEALTHY_THRESHOLD,
               UNHEALTHY_THRESHOLD))
    if protocol == "http":
        text += ' path = "/";'
    return text


def group(name, addresses, algorithm="round_robin", extra="",
          protocol="http"):
    targets = ", ".join('{ address = "%s"; }' % a for a in addresses)
    return ('{ name = "%s"; algorithm = "%s"; %s\n'
            '  health_check = { %s };\n'
            '  targets = ( %s ); }'
            % (name, algorithm, extra, health_check(protocol), targets))


def listener(port, group_name):
    return ('{ port = %d; target_group = "%s"; bind = "127.0.0.1"; '
            'idle_timeout = "60s"; }' % (port, group_name))


def config(port, addresses, **kwargs):
    return ('shutdown_timeout = "1s";\n'
            'target_groups = ( %s );\n'
            'load_balancers = ( { name = "lb"; listeners = ( %s ); } );\n'
            % (group("tg", addresses, **kwargs), listener(port, "tg")))


class Cleanup:
    """Stops what a test started, in reverse order, whatever happened."""

    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)
        return item

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        reports = []
        for item in reversed(self.items):
            try:
                if isinstance(item, Traffic):
                    item.stop()
                elif isinstance(item, Backend):
                    item.close()
                elif isinstance(item, Nlbd):
                    item.stop()
                    # A sanitizer build (--enable-sanitizers) reports here.
                    text = item.stderr()
                    if "Sanitizer" in text or "runtime error:" in text:
                        reports.append(text)
                elif isinstance(item, subprocess.Popen):
                    item.terminate()
                    item.wait(5)
                elif isinstance(item, str):  # a temporary directory
                    shutil.rmtree(item, ignore_errors=True)
            except Exception as e:  # keep cleaning up
                print("cleanup: %r: %s" % (item, e))
        if reports and exc_type is not None:
            print("nlbd's stderr has a sanitizer report:\n" +
                  "\n".join(reports)[:4000])
        elif reports:
            raise AssertionError("nlbd's stderr has a sanitizer report:\n" +
                                 "\n".join(reports)[:4000])


def start_healthy(c, backends, **kwargs):
    """nlbd in front of backends, every one of them healthy."""
    port = free_port()
    nlbd = c.add(Nlbd(config(port, [b.address for b in backends], **kwargs)))
    nlbd.start(wait_port=port)
    for b in backends:
        wait_until(lambda: "target tg/%s registered (initial)" % b.address
                   in nlbd.events(), what="%s registered" % b.address)
        t = wait_transition(nlbd, b.address, "healthy")
        assert t.old == "initial" and t.reason == "status 200", t
    return nlbd, port


def ms(seconds):
    return int(round(seconds * 1000))


# ---- tests -----------------------------------------------------------------

def test_killed_backend_unhealthy_then_back():
    """A killed backend is marked unhealthy within interval x threshold +
    timeout (+ slack) and no client connection fails (retry + passive
    signal); restarted, it is healthy again after the healthy threshold and
    gets flows again."""
    with Cleanup() as c:
        backends = [c.add(Backend(n)) for n in ("a", "b", "c")]
        nlbd, port = start_healthy(c, backends)
        traffic = c.add(Traffic(port).start())
        time.sleep(1.0)
        victim = backends[1]

        # No client request is in flight while the listener closes: one
        # sitting in its accept queue would be reset by the kernel, which
        # no balancer can prevent.
        traffic.pause()
        t_kill = time.time()
        victim.stop()
        traffic.resume()
        down = wait_transition(nlbd, victim.address, "unhealthy", t_kill)
        detect = ms(down.time - t_kill)
        print("unhealthy after %d ms (bound %d ms): %s"
              % (detect, DETECT_BOUND_MS, down.reason))
        assert down.old == "healthy", down
        assert down.reason in ("connect refused",
                               "connect failed on live traffic"), down
        assert detect <= DETECT_BOUND_MS, detect
        time.sleep(1.0)

        t_up = time.time()
        victim.restart()
        up = wait_transition(nlbd, victim.address, "healthy", t_up)
        recover = ms(up.time - t_up)
        print("healthy again after %d ms (bound %d ms): %s"
              % (recover, RECOVER_BOUND_MS, up.reason))
        assert up.old == "unhealthy", up
        assert up.reason == "status 200", up
        assert recover <= RECOVER_BOUND_MS, recover
        time.sleep(1.0)
        traffic.stop()

        failed = traffic.failures()
        print("%d client connections, %d failed"
              % (len(traffic.results), len(failed)))
        assert not failed, failed[:10]
        records = wait_until(
            lambda: len(flows(nlbd)) >= len(traffic.results) and flows(nlbd),
            what="one access-log record per client connection")
        retried = [r for r in between(records, t_kill, down.time)
                   if r.retries > 0]
        print("flows retried after hitting the dead target: %d" % len(retried))
        assert all(r.end == "target_fin" for r in retried), retried
        dead = between(records, down.time + PUBLISH_MARGIN_S, t_up)
        assert dead, "no flows while the target was unhealthy"
        assert all(r.target != victim.address and r.retries == 0
                   for r in dead), [r for r in dead
                                    if r.target == victim.address][:5]
        back = counts_by_target(between(records, up.time + PUBLISH_MARGIN_S,
                                        float("inf")))
        print("flows after recovery by target: %s" % back)
        total = sum(back.values())
        assert back.get(victim.address, 0) >= total / 3 - 3, back

        # Without traffic only the active checks can notice.
        t_kill = time.time()
        victim.stop()
        down = wait_transition(nlbd, victim.address, "unhealthy", t_kill)
        detect = ms(down.time - t_kill)
        print("no traffic: unhealthy after %d ms (bound %d ms): %s"
              % (detect, DETECT_BOUND_MS, down.reason))
        assert down.reason == "connect refused", down
        assert detect <= DETECT_BOUND_MS, detect


def test_503_and_hanging_backends_unhealthy():
    """A backend answering 503 and one that accepts and never answers are
    marked unhealthy with reasons "status 503" and "timeout", and get no
    new flows afterwards (access log: target column)."""
    with Cleanup() as c:
        good, err, hang = [c.add(Backend(n)) for n in ("good", "err", "hang")]
        nlbd, port = start_healthy(c, [good, err, hang])
        traffic = c.add(Traffic(port).start())
        time.sleep(0.5)

        t0 = time.time()
        err.mode = "503"
        hang.mode = "hang"
        down_err = wait_transition(nlbd, err.address, "unhealthy", t0)
        down_hang = wait_transition(nlbd, hang.address, "unhealthy", t0)
        print("503 target unhealthy after %d ms: %s"
              % (ms(down_err.time - t0), down_err.reason))
        print("hanging target unhealthy after %d ms: %s"
              % (ms(down_hang.time - t0), down_hang.reason))
        assert down_err.old == "healthy" and down_err.reason == "status 503"
        assert down_hang.old == "healthy" and down_hang.reason == "timeout"
        assert ms(down_err.time - t0) <= DETECT_BOUND_MS
        assert ms(down_hang.time - t0) <= DETECT_BOUND_MS
        traffic.wait_ended(max(down_err.time, down_hang.time) +
                           PUBLISH_MARGIN_S, 40)
        traffic.stop()
        hang.release.set()  # let flows stuck on it end and be logged

        records = wait_until(
            lambda: len(flows(nlbd)) >= len(traffic.results) and flows(nlbd),
            what="one access-log record per client connection")
        for bad, down in ((err, down_err), (hang, down_hang)):
            later = [r for r in between(records, down.time + PUBLISH_MARGIN_S,
                                        float("inf"))
                     if r.target == bad.address]
            assert not later, later[:5]
        after = between(records, max(down_err.time, down_hang.time) +
                        PUBLISH_MARGIN_S, float("inf"))
        print("flows after both were unhealthy: %s" % counts_by_target(after))
        assert len(after) > 30, len(after)
        assert all(r.target == good.address for r in after)
        late = traffic.failures(max(down_err.time, down_hang.time) +
                                PUBLISH_MARGIN_S)
        assert not late, late[:5]


def test_all_down_fail_open_then_one_up():
    """All three down: every flow tries all three targets (fail-open) and
    fails; one restarted: flows reach it through fail-open before it is
    even healthy, and only it once it is."""
    with Cleanup() as c:
        backends = [c.add(Backend(n)) for n in ("a", "b", "c")]
        nlbd, port = start_healthy(c, backends)
        traffic = c.add(Traffic(port).start())
        time.sleep(0.3)

        traffic.pause()
        t_kill = time.time()
        for b in backends:
            b.stop()
        traffic.resume()
        downs = [wait_transition(nlbd, b.address, "unhealthy", t_kill)
                 for b in backends]
        t_all = max(d.time for d in downs)
        print("all three unhealthy after %d ms: %s"
              % (ms(t_all - t_kill), sorted(set(d.reason for d in downs))))
        traffic.wait_ended(t_all + PUBLISH_MARGIN_S, 30)

        first = backends[0]
        t_up = time.time()
        first.restart()
        # Listening from here: on a loaded machine this thread can wait
        # for the GIL or a CPU longer than a fixed margin after t_up.
        t_listening = time.time()
        up = wait_transition(nlbd, first.address, "healthy", t_up)
        print("first target healthy %d ms after restart" % ms(up.time - t_up))
        traffic.wait_ended(up.time + PUBLISH_MARGIN_S, 20)
        traffic.stop()

        records = wait_until(
            lambda: len(flows(nlbd)) >= len(traffic.results) and flows(nlbd),
            what="one access-log record per client connection")
        # Flows that ended before the restart: one accepted just before it
        # can still be retrying when the target listens again (a loaded,
        # sanitized run), and rightly be served by it on its last retry.
        # Log times are truncated to the ms.
        none_up = [r for r in between(records, t_all + PUBLISH_MARGIN_S, t_up)
                   if r.end_time < t_up - 0.002]
        print("all down: %d flows, %s" % (
            len(none_up), sorted(set((r.end, r.retries) for r in none_up))))
        assert len(none_up) > 20, len(none_up)
        # Fail-open: each flow tried every target (a retry never picks a
        # target already tried; the record names the last one).
        assert all(r.end == "connect_failed" and r.retries == 2
                   for r in none_up), none_up[:5]
        assert all(f[2] in ("reset", "eof")
                   for f in traffic.failures(t_all + PUBLISH_MARGIN_S, t_up))

        # Restarted but not yet healthy: fail-open still routes to all
        # three, so flows reach it (after retries) and no client fails.
        warming = between(records, t_listening + 0.01, up.time)
        served = [r for r in warming if r.end == "target_fin"]
        print("between restart and healthy: %d flows, %d served by the "
              "restarted target (retries %s)"
              % (len(warming), len(served),
                 sorted(set(r.retries for r in served))))
        assert served and all(r.target == first.address for r in served)
        assert len(served) == len(warming), warming[:5]
        healthy = between(records, up.time + PUBLISH_MARGIN_S, float("inf"))
        assert healthy and all(r.target == first.address and r.retries == 0
                               and r.end == "target_fin" for r in healthy)
        assert not traffic.failures(t_listening + 0.01), \
            traffic.failures(t_listening)[:5]


def test_fail_open_off_clean_close():
    """fail_open = false and no healthy target: a client is closed cleanly
    (EOF, not a reset), whether or not it sent bytes first, and the access
    log says end=no_target; a healthy target is used as soon as it is."""
    with Cleanup() as c:
        backend = c.add(Backend("a"))
        backend.stop()
        other = free_port()
        port = free_port()
        nlbd = c.add(Nlbd(config(port, [backend.address,
                                       "127.0.0.1:%d" % other],
                                 extra="fail_open = false;")))
        nlbd.start(wait_port=port)
        for address in (backend.address, "127.0.0.1:%d" % other):
            t = wait_transition(nlbd, address, "unhealthy")
            assert t.old == "initial" and t.reason == "connect refused", t

        # A client that sends at once (as HTTP clients do) races nlbd's
        # close: 20 tries make a reset show if closing can cause one.
        outcomes = []
        for send_first in [False] * 3 + [True] * 20:
            with socket.create_connection(("127.0.0.1", port), 2) as s:
                if send_first:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: nlb\r\n\r\n")
                try:
                    outcomes.append(("eof" if s.recv(100) == b"" else "data"))
                except ConnectionResetError:
                    outcomes.append("reset")
                except socket.timeout:
                    outcomes.append("timeout")
        records = nlbd.wait_access(len(outcomes))
        print("no target: silent clients %s, clients sending first: "
              "%d eof, %d reset" % (outcomes[:3], outcomes[3:].count("eof"),
                                    outcomes[3:].count("reset")))
        assert all(f.end == "no_target" and f.target == "-"
                   for f in flows(nlbd)), records
        assert outcomes == ["eof"] * len(outcomes), outcomes

        t_up = time.time()
        backend.restart()
        up = wait_transition(nlbd, backend.address, "healthy", t_up)

        # The workers follow the state once the snapshot reaches them
        # (within PUBLISH_MARGIN_S on an idle machine, later under load:
        # a sanitized run at load 7 was not served 200 ms after the
        # transition); until then a client is still closed cleanly.
        def served():
            with socket.create_connection(("127.0.0.1", port), 2) as s:
                s.sendall(b"hello\n")
                first = recv_line(s)
                if first == "":
                    return None
                assert first == "a\n", first
                assert recv_line(s) == "hello\n"
                return time.time()
        t_served = wait_until(served, timeout=5,
                              what="a client served by the healthy target")
        print("target healthy %d ms after start; served %d ms after that"
              % (ms(up.time - t_up), ms(t_served - up.time)))


def test_deregistered_target_drains():
    """A target removed by reload while a long flow runs through it: new
    flows avoid it at once, the long flow keeps echoing, and is closed
    (end=deregistered) when deregistration_delay expires; the event log
    shows draining, then unused."""
    delay_s = 2.0
    with Cleanup() as c:
        backends = [c.add(Backend(n)) for n in ("a", "b", "c")]
        by_name = dict((b.name, b) for b in backends)
        extra = 'deregistration_delay = "%dms";' % (delay_s * 1000)
        nlbd, port = start_healthy(c, backends, extra=extra)

        long_flow = socket.create_connection(("127.0.0.1", port), 2)
        long_client = "127.0.0.1:%d" % long_flow.getsockname()[1]
        long_flow.sendall(b"hello\n")
        victim = by_name[recv_line(long_flow).strip()]
        assert recv_line(long_flow) == "hello\n"

        kept = [b.address for b in backends if b is not victim]
        t_reload = time.time()
        nlbd.reload(config(port, kept, extra=extra))
        drain = wait_transition(nlbd, victim.address, "draining", t_reload)
        print("draining %d ms after SIGHUP: %s"
              % (ms(drain.time - t_reload), drain.reason))
        assert drain.old == "healthy", drain
        assert drain.reason == "removed from config; delay %dms" % (
            delay_s * 1000), drain

        names = []
        for _ in range(12):
            with socket.create_connection(("127.0.0.1", port), 2) as s:
                s.sendall(b"x\n")
                names.append(recv_line(s).strip())
        print("new flows after the reload went to %s" % sorted(set(names)))
        assert victim.name not in names, names

        # The long flow keeps working until the delay runs out (the last
        # echo, even a slow one on a loaded machine, back before it)...
        echoed = 0
        long_flow.settimeout(0.7)
        while time.time() < t_reload + delay_s - 0.8:
            long_flow.sendall(b"ping %d\n" % echoed)
            assert recv_line(long_flow) == "ping %d\n" % echoed
            echoed += 1
            time.sleep(0.1)
        print("long flow echoed %d lines while draining" % echoed)
        # ... and is then closed by nlbd.
        long_flow.settimeout(5)
        try:
            closed_by = "eof" if long_flow.recv(100) == b"" else "data"
        except ConnectionResetError:
            closed_by = "reset"
        t_closed = time.time()
        long_flow.close()
        closed = t_closed - t_reload
        print("long flow closed (%s) %d ms after SIGHUP (delay %d ms)"
              % (closed_by, ms(closed), delay_s * 1000))
        assert closed_by in ("eof", "reset"), closed_by
        # Workers look at a draining target's flows once a second: up to
        # a second past the delay, and room for a loaded machine.
        assert delay_s - 0.1 <= closed <= delay_s + 2.5, closed
        ended = wait_until(lambda: [f for f in flows(nlbd)
                                    if f.client == long_client],
                           what="the long flow's access-log record")
        assert ended[0].target == victim.address, ended
        assert [f.end for f in ended] == ["deregistered"], ended
        unused = wait_transition(nlbd, victim.address, "unused", t_reload)
        print("unused %d ms after SIGHUP: %s"
              % (ms(unused.time - t_reload), unused.reason))
        assert unused.old == "draining", unused
        assert unused.reason == "deregistration delay expired; removed", unused
        assert unused.time >= drain.time + delay_s - 0.1, unused


def test_reregistered_while_draining():
    """A target put back in the config while it drains: draining ->
    initial (re-registered), its running flow is not closed when the
    first delay would have expired, and it is checked and used again."""
    # Long enough for both reloads to land before it expires on a loaded
    # machine (1 s left the test under a second for both).
    delay_ms = 3000
    with Cleanup() as c:
        backends = [c.add(Backend(n)) for n in ("a", "b")]
        extra = 'deregistration_delay = "%dms";' % delay_ms
        nlbd, port = start_healthy(c, backends, extra=extra)
        long_flow = socket.create_connection(("127.0.0.1", port), 2)
        long_flow.sendall(b"hello\n")
        name = recv_line(long_flow).strip()
        victim = [b for b in backends if b.name == name][0]
        assert recv_line(long_flow) == "hello\n"
        addresses = [b.address for b in backends]

        t0 = time.time()
        nlbd.reload(config(port, [a for a in addresses
                                  if a != victim.address], extra=extra))
        wait_transition(nlbd, victim.address, "draining", t0)
        t1 = time.time()
        nlbd.reload(config(port, addresses, extra=extra))
        back = wait_transition(nlbd, victim.address, "initial", t1)
        assert back.old == "draining" and back.reason == "re-registered", back
        up = wait_transition(nlbd, victim.address, "healthy", t1)
        print("re-registered while draining: healthy %d ms after the "
              "second reload" % ms(up.time - t1))
        # Past the first deadline (and a worker sweep), the flow still works.
        time.sleep(max(0.0, t0 + delay_ms / 1000.0 + 1.2 - time.time()))
        long_flow.settimeout(1)
        long_flow.sendall(b"still\n")
        assert recv_line(long_flow) == "still\n"
        long_flow.close()
        names = set()
        for _ in range(6):
            with socket.create_connection(("127.0.0.1", port), 2) as s:
                s.sendall(b"x\n")
                names.add(recv_line(s).strip())
        assert victim.name in names, names
        assert not [t for t in transitions(nlbd)
                    if t.target == victim.address and t.new == "unused"]


def test_slow_start_share_grows():
    """slow_start = "6s": a target that becomes healthy again takes a
    small share in its first third, a larger one in its last, and its
    full share (1/3 with round robin) once slow start is over. (Windows of
    2 s: a loaded machine's client may open only some 40 flows a second.)"""
    with Cleanup() as c:
        backends = [c.add(Backend(n)) for n in ("a", "b", "c")]
        late = backends[2]
        nlbd, port = start_healthy(c, backends, extra='slow_start = "6s";')
        # Let the first slow start of every target run out, then take the
        # late one down: the others route at full weight.
        time.sleep(6.3)
        t_kill = time.time()
        late.stop()
        wait_transition(nlbd, late.address, "unhealthy", t_kill)
        traffic = c.add(Traffic(port).start())
        time.sleep(0.3)
        late.restart()
        up = wait_transition(nlbd, late.address, "healthy", t_kill)
        h = up.time
        time.sleep(max(0.0, h + 9.0 - time.time()))
        traffic.stop()
        records = wait_until(
            lambda: len(flows(nlbd)) >= len(traffic.results) and flows(nlbd),
            what="one access-log record per client connection")

        def share(start, end):
            window = between(records, h + start, h + end)
            mine = sum(1 for r in window if r.target == late.address)
            return mine, len(window)

        first = share(0.0, 2.0)
        third = share(4.0, 6.0)
        after = share(6.8, 8.8)
        for label, (mine, total) in (("first third", first),
                                     ("last third", third),
                                     ("after slow start", after)):
            print("slow start, %s: %d of %d flows (%.0f%%)"
                  % (label, mine, total, 100.0 * mine / max(total, 1)))
        assert min(first[1], third[1], after[1]) > 40, (first, third, after)
        f, t, a = (m / float(n) for m, n in (first, third, after))
        assert f < 0.10, first
        assert t > f + 0.10 and t < 0.32, third
        assert abs(a - 1 / 3.0) < 0.04, after
        assert not traffic.failures(), traffic.failures()[:5]


def start_receiver(c, tmpdir, name, reply=None):
    log = os.path.join(tmpdir, name + ".jsonl")
    argv = [sys.executable,
            os.path.join(TOP_SRCDIR, "tests", "tools", "ppv2_receiver.py"),
            "--listen", "127.0.0.1:0", "--log", log]
    if reply is not None:
        argv += ["--reply", reply]
    proc = c.add(subprocess.Popen(argv, stdout=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL))
    line = proc.stdout.readline().decode()
    assert line.startswith("ready "), line
    return "127.0.0.1:%d" % int(line.split()[1]), log


def read_jsonl(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def test_proxy_v2_health_checks_send_local():
    """With proxy_protocol = "v2", TCP and HTTP health checks open with a
    PROXY v2 LOCAL header (checked strictly by tests/tools/ppv2_receiver.py)
    while client flows carry a PROXY header with the client's address."""
    with Cleanup() as c:
        tmpdir = c.add(tempfile.mkdtemp(prefix="nlbhealth-"))
        tcp_target, tcp_log = start_receiver(c, tmpdir, "tcp")
        http_target, http_log = start_receiver(
            c, tmpdir, "http", reply="HTTP/1.1 200 OK\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n")
        port, port2 = free_port(), free_port()
        text = ('shutdown_timeout = "1s";\n'
                'target_groups = ( %s, %s );\n'
                'load_balancers = ( { name = "lb"; listeners = ( %s, %s ); '
                '} );\n'
                % (group("tcp-tg", [tcp_target], protocol="tcp",
                         extra='proxy_protocol = "v2";'),
                   group("http-tg", [http_target], protocol="http",
                         extra='proxy_protocol = "v2";'),
                   listener(port, "tcp-tg"), listener(port2, "http-tg")))
        nlbd = c.add(Nlbd(text))
        # No wait_port: its probe would be a flow with a PROXY header. The
        # listening sockets exist once nlbd says "started".
        nlbd.start()
        up_tcp = wait_transition(nlbd, tcp_target, "healthy")
        up_http = wait_transition(nlbd, http_target, "healthy")
        print("PROXY v2 groups healthy: tcp (%s), http (%s)"
              % (up_tcp.reason, up_http.reason))
        assert up_tcp.reason == "connect ok", up_tcp
        assert up_http.reason == "status 200", up_http
        for path in (tcp_log, http_log):
            wait_until(lambda: len(read_jsonl(path)) >= 3,
                       what="three checks in %s" % path)

        with socket.create_connection(("127.0.0.1", port), 2) as s:
            s.sendall(b"hello\n")
            assert recv_line(s) == "hello\n"
            client = "%s:%d" % s.getsockname()
        time.sleep(0.3)
        for label, path in (("tcp", tcp_log), ("http", http_log)):
            entries = read_jsonl(path)
            checks = [e for e in entries if e.get("src") != client]
            print("%s checks seen by the receiver: %d, commands %s"
                  % (label, len(checks),
                     sorted(set(str(e["command"]) for e in checks))))
            assert all(e["command"] == "LOCAL" and e["error"] is None
                       for e in checks), checks[:3]
        flows_seen = [e for e in read_jsonl(tcp_log) if e.get("src") == client]
        assert len(flows_seen) == 1 and flows_seen[0]["command"] == "PROXY" \
            and flows_seen[0]["error"] is None, flows_seen


ACCEPTING_RE = re.compile(
    r"^(\S+) \w+ accepting after the first round of health checks "
    r"\((\d+) ms\): (\d+) of (\d+) targets healthy, (\d+) without an "
    r"answer$", re.M)


def wait_accepting(nlbd, timeout=15.0):
    """(log time, elapsed ms, healthy, targets, unanswered) of the
    accepting event."""
    m = wait_until(lambda: ACCEPTING_RE.search(nlbd.events()),
                   timeout=timeout, what="the accepting event")
    return (log_time(m.group(1)),) + tuple(int(m.group(i))
                                           for i in range(2, 6))


def connect_when_listening(port, timeout=10.0):
    """Connects in a tight loop until the listener takes the connection
    (bound and listening), as a client that comes the moment nlbd starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), 2)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise AssertionError("listener %d never answered" % port)


def test_cold_start_spreads_first_flows():
    """A fresh nlbd in front of three live targets (round robin): the 30
    flows opened the moment its listener answers spread over all three
    (each within 5 of 10), in 20 of 20 starts. Before, the first target to
    pass its first check took every flow until the others passed theirs.
    The checks may take 2 s: a first check that times out leaves its target
    out of the first flows (rightly), and on a loaded machine (a sanitized
    nlbd, the test's own client and backends on two busy cores) a live
    backend can take longer than the usual 150 ms to answer."""
    with Cleanup() as c:
        backends = [c.add(Backend(n)) for n in ("a", "b", "c")]
        for start in range(20):
            port = free_port()
            body = config(port, [b.address for b in backends]).replace(
                'interval = "%dms"; timeout = "%dms"' % (INTERVAL_MS,
                                                       TIMEOUT_MS),
                'interval = "2000ms"; timeout = "2000ms"')
            nlbd = c.add(Nlbd(body))
            nlbd.start()
            first = connect_when_listening(port)
            first.close()
            socks = [socket.create_connection(("127.0.0.1", port), 5)
                     for _ in range(30)]
            shares = {}
            for s in socks:
                s.sendall(b"x\n")
                name = recv_line(s).strip()
                shares[name] = shares.get(name, 0) + 1
                s.close()
            print("start %d: %s" % (start, sorted(shares.items())))
            assert sorted(shares) == ["a", "b", "c"] and \
                all(abs(n - 10) <= 5 for n in shares.values()), \
                (start, shares)
            nlbd.stop()


def test_cold_start_bounded_by_dead_targets():
    """A target that never answers its check holds the start no longer
    than its check timeout, one that refuses not at all; connections made
    while the first round runs wait in the backlog (none refused) and are
    served, by the live target, once accepting starts."""
    timeout_ms = 1500
    with Cleanup() as c:
        live = c.add(Backend("live"))
        hung = c.add(Backend("hung"))
        hung.mode = "hang"
        refused = "127.0.0.1:%d" % free_port()
        port = free_port()
        body = config(port, [live.address, hung.address, refused]).replace(
            'interval = "%dms"; timeout = "%dms"' % (INTERVAL_MS, TIMEOUT_MS),
            'interval = "%dms"; timeout = "%dms"' % (2 * timeout_ms,
                                                   timeout_ms))
        nlbd = c.add(Nlbd(body))
        nlbd.start()
        early = [connect_when_listening(port)]
        early += [socket.create_connection(("127.0.0.1", port), 5)
                  for _ in range(9)]
        t_connected = time.time()
        for s in early:
            s.sendall(b"x\n")
        names = []
        for s in early:
            s.settimeout(timeout_ms / 1000.0 + 5)
            names.append(recv_line(s).strip())
            s.close()
        t_accepting, elapsed, healthy, targets, unanswered = \
            wait_accepting(nlbd)
        print("accepting after %d ms: %d of %d healthy, %d unanswered; "
              "10 connections made %d ms before it, served by %s"
              % (elapsed, healthy, targets, unanswered,
                 ms(t_accepting - t_connected), sorted(set(names))))
        assert (healthy, targets) == (1, 3), (healthy, targets)
        assert elapsed <= timeout_ms + SLACK_MS, elapsed
        # Made during the first round, held, then served: none refused.
        assert t_connected < t_accepting, (t_connected, t_accepting)
        assert names == ["live"] * 10, names


def test_cold_start_without_targets_accepts_at_once():
    """A group with no target: nothing to wait for, accepting starts at
    once (and a flow is closed, there being no target)."""
    with Cleanup() as c:
        port = free_port()
        nlbd = c.add(Nlbd(config(port, [])))
        nlbd.start()
        connect_when_listening(port).close()
        _, elapsed, healthy, targets, unanswered = wait_accepting(nlbd)
        print("accepting after %d ms with %d targets" % (elapsed, targets))
        assert (healthy, targets, unanswered) == (0, 0, 0)
        assert elapsed < SLACK_MS, elapsed


if __name__ == "__main__":
    run([test_killed_backend_unhealthy_then_back,
         test_503_and_hanging_backends_unhealthy,
         test_all_down_fail_open_then_one_up,
         test_fail_open_off_clean_close,
         test_deregistered_target_drains,
         test_reregistered_while_draining,
         test_slow_start_share_grows,
         test_proxy_v2_health_checks_send_local,
         test_cold_start_spreads_first_flows,
         test_cold_start_bounded_by_dead_targets,
         test_cold_start_without_targets_accepts_at_once], timeout=60)
