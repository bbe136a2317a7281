#!/usr/bin/env python3
"""End to end: the real nlbd between real clients and real backends on
loopback. Bytes arrive intact both ways, half-close passes through, a slow
peer does not make nlbd buffer, idle flows time out, a refusing target is
retried around, reload and drain keep their promises, the access log has the
format of docs/logs.md, IPv6 works, and each algorithm spreads flows as it should."""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nlbtest import (Nlbd, Server, Skip, can_connect, echo_handler,  # noqa
                     TOP_SRCDIR, free_port, named_handler, recv_exact,
                     recv_line, run,
                     wait_until)

MIB = 1024 * 1024


class CheckedNlbd(Nlbd):
    """An Nlbd whose stderr must hold no sanitizer report (memory errors,
    undefined behaviour) once it stopped; leaks are left to the tests that
    check the exit status."""

    def __exit__(self, exc_type, *rest):
        self.stop()
        if exc_type is None:
            report = [l for l in self.stderr().splitlines()
                      if "ERROR: AddressSanitizer" in l or
                      "runtime error:" in l]
            assert not report, "nlbd: %s\n%s" % (report[0],
                                                  self.stderr()[-3000:])


def config(targets, port, algorithm="round_robin", bind="127.0.0.1",
           listener="", group="", top=""):
    """A config with one target group "tg" and one load balancer "lb"
    listening on bind:port. targets: addresses or (address, weight)."""
    items = []
    for t in targets:
        address, weight = (t, 1) if isinstance(t, str) else t
        items.append('{ address = "%s"; weight = %d; }' % (address, weight))
    return ("%s\n"
            "target_groups = ( { name = \"tg\"; algorithm = \"%s\"; %s\n"
            "  targets = ( %s ); } );\n"
            "load_balancers = ( { name = \"lb\"; listeners = (\n"
            "  { port = %d; target_group = \"tg\"; bind = \"%s\"; %s }\n"
            "); } );\n" % (top, algorithm, group, ",\n    ".join(items), port,
                           bind, listener))


def start_healthy(nlbd, port, targets):
    """Starts nlbd and waits until each of its targets (all must answer)
    is healthy: a target's first passing check makes it so, and the pool
    changes then (from every target, fail-open, to the healthy ones), which
    would move flows under a test that counts where they go."""
    nlbd.start(wait_port=port)
    wait_until(lambda: nlbd.events().count("state initial -> healthy") ==
               targets, what="%d targets healthy" % targets)
    # The pool is published 25 ms after the first change (nothing logs
    # it); a slow machine gets ten times that.
    time.sleep(0.25)


def connect(port, host="127.0.0.1", timeout=10):
    s = socket.create_connection((host, port), timeout=timeout)
    return s


def ask_name(port, host="127.0.0.1"):
    """Connects, reads the target's name line, closes."""
    with connect(port, host) as s:
        return recv_line(s).strip()


def block(seed, size=MIB):
    """A deterministic, incompressible-looking block of bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest() * 64
        counter += 1
    return bytes(out[:size])


def send_blocks(sock, data, count):
    digest = hashlib.sha256()
    for _ in range(count):
        sock.sendall(data)
        digest.update(data)
    return digest.hexdigest()


def recv_all(sock, chunk=256 * 1024, pause=0.0, pause_every=0):
    """Reads to EOF; returns (bytes, sha256). pause seconds every
    pause_every bytes make a slow reader."""
    digest = hashlib.sha256()
    total = since_pause = 0
    while True:
        data = sock.recv(chunk)
        if not data:
            return total, digest.hexdigest()
        digest.update(data)
        total += len(data)
        since_pause += len(data)
        if pause and since_pause >= pause_every:
            time.sleep(pause)
            since_pause = 0


def access_fields(line):
    m = ACCESS_RE.match(line)
    assert m, "access line does not match docs/logs.md's format: %r" % line
    return m.groupdict()


TIME_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"
ACCESS_RE = re.compile(
    r"^(?P<time>" + TIME_RE + r") (?P<lb>\S+):(?P<port>\d+) "
    r"(?P<endpoint>\S+) (?P<client>\S+) -> (?P<target>\S+) "
    r"connect=(?P<connect>\d+|-) duration=(?P<duration>\d+) "
    r"up=(?P<up>\d+) down=(?P<down>\d+) retries=(?P<retries>\d+) "
    r"end=(?P<end>[a-z_]+) worker=(?P<worker>\d+)$")


# --- bytes ---------------------------------------------------------------

def test_64mib_each_way_intact():
    """64 MiB up and 64 MiB down at the same time, checked by sha256."""
    count = 64
    down_block = block(2)
    results = {}

    def target(conn):
        if not conn.recv(1, socket.MSG_PEEK):
            return  # a health check
        def reader():
            results["target_got"] = recv_all(conn)
        t = threading.Thread(target=reader)
        t.start()
        results["target_sent"] = send_blocks(conn, down_block, count)
        conn.shutdown(socket.SHUT_WR)
        t.join(60)

    server = Server(target)
    port = free_port()
    with CheckedNlbd(config([server.address], port)) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        up_block = block(1)
        with connect(port, timeout=60) as s:
            got = {}
            reader = threading.Thread(
                target=lambda: got.update(client_got=recv_all(s)))
            reader.start()
            sent = send_blocks(s, up_block, count)
            s.shutdown(socket.SHUT_WR)
            reader.join(60)
        assert not reader.is_alive(), "client reader did not finish"
        wait_until(lambda: "target_got" in results, timeout=30,
                   what="target to read to EOF")
        assert results["target_got"] == (count * MIB, sent), \
            "upstream bytes differ: %r" % (results["target_got"],)
        assert got["client_got"] == (count * MIB, results["target_sent"]), \
            "downstream bytes differ: %r" % (got["client_got"],)
        line = nlbd.wait_access_since(mark, 1)[-1]
        f = access_fields(line)
        assert int(f["up"]) == count * MIB and int(f["down"]) == count * MIB, \
            line
        assert f["end"] in ("client_fin", "target_fin"), line
    server.stop()


def test_half_close_reply_after_client_fin():
    """The client shuts down writing; the target sees EOF, then replies,
    and the reply still reaches the client."""
    def target(conn):
        total, _ = recv_all(conn)
        conn.sendall(b"got %d bytes\n" % total)

    server = Server(target)
    port = free_port()
    with CheckedNlbd(config([server.address], port)) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        with connect(port) as s:
            s.sendall(b"x" * 100000)
            s.shutdown(socket.SHUT_WR)
            assert recv_line(s) == "got 100000 bytes\n"
            assert s.recv(10) == b"", "expected EOF after the reply"
        f = access_fields(nlbd.wait_access_since(mark, 1)[-1])
        assert f["end"] == "client_fin", f
        assert int(f["up"]) == 100000 and int(f["down"]) == 17, f
    server.stop()


def rss_watch(nlbd, stop, samples):
    while not stop.is_set():
        try:
            samples.append(nlbd.rss_kib())
        except OSError:
            return
        time.sleep(0.05)


def warm_up(port):
    with connect(port) as s:
        s.sendall(b"warm")
        s.shutdown(socket.SHUT_WR)
        recv_all(s)


def test_slow_target_reader_bounds_rss():
    """200 MiB from a fast client to a target that reads slowly: nlbd
    stops reading the client instead of buffering (RSS stays flat)."""
    total = 200 * MIB
    results = {}

    def target(conn):
        first = conn.recv(4, socket.MSG_PEEK)
        if first in (b"", b"warm"):  # a health check, or the warm-up
            echo_handler(conn)
            return
        time.sleep(1.0)  # let every buffer on the way fill up
        results["got"] = recv_all(conn, chunk=1 * MIB, pause=0.01,
                                  pause_every=1 * MIB)
        conn.sendall(b"done")

    server = Server(target)
    port = free_port()
    with CheckedNlbd(config([server.address], port), workers=1) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        warm_up(port)
        time.sleep(0.3)
        start_rss = nlbd.rss_kib()
        stop, samples = threading.Event(), []
        watcher = threading.Thread(target=rss_watch,
                                   args=(nlbd, stop, samples))
        watcher.start()
        chunk = block(3)
        with connect(port, timeout=60) as s:
            sent = send_blocks(s, chunk, total // MIB)
            s.shutdown(socket.SHUT_WR)
            assert recv_exact(s, 4) == b"done"
        stop.set()
        watcher.join()
        assert results["got"] == (total, sent), "bytes lost or changed"
        peak = max(samples)
        assert peak - start_rss < 4 * 1024, \
            "RSS grew from %d KiB to %d KiB" % (start_rss, peak)
    server.stop()


def test_slow_client_reader_bounds_rss():
    """A target sends 200 MiB to a client that reads slowly."""
    total = 200 * MIB
    chunk = block(4)
    sent = {}

    def target(conn):
        first = conn.recv(4, socket.MSG_PEEK)
        if first in (b"", b"warm"):  # a health check, or the warm-up
            echo_handler(conn)
            return
        assert recv_exact(conn, 2) == b"go"
        sent["digest"] = send_blocks(conn, chunk, total // MIB)
        conn.shutdown(socket.SHUT_WR)

    server = Server(target)
    port = free_port()
    with CheckedNlbd(config([server.address], port), workers=1) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        warm_up(port)
        time.sleep(0.3)
        start_rss = nlbd.rss_kib()
        stop, samples = threading.Event(), []
        watcher = threading.Thread(target=rss_watch,
                                   args=(nlbd, stop, samples))
        watcher.start()
        with connect(port, timeout=60) as s:
            s.sendall(b"go")
            time.sleep(1.0)
            got = recv_all(s, chunk=1 * MIB, pause=0.01, pause_every=1 * MIB)
        stop.set()
        watcher.join()
        assert got == (total, sent["digest"]), "bytes lost or changed"
        peak = max(samples)
        assert peak - start_rss < 4 * 1024, \
            "RSS grew from %d KiB to %d KiB" % (start_rss, peak)
    server.stop()


# --- timeouts and failures ---------------------------------------------

def test_idle_timeout_closes_flow():
    server = Server(echo_handler)
    port = free_port()
    with CheckedNlbd(config([server.address], port,
                     listener='idle_timeout = "1s";')) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        with connect(port) as s:
            # Timed from before the last bytes: the flow cannot be idle
            # earlier, however late this thread reads the echo.
            last = time.monotonic()
            s.sendall(b"ping")
            assert recv_exact(s, 4) == b"ping"
            s.settimeout(5)
            try:
                data = s.recv(10)
            except ConnectionResetError:
                data = b""
            waited = time.monotonic() - last
        assert data == b"", "flow sent %r instead of closing" % data
        assert 0.9 <= waited <= 2.5, "closed after %.2fs" % waited
        f = access_fields(nlbd.wait_access_since(mark, 1)[-1])
        assert f["end"] == "idle_timeout", f
    server.stop()


def test_busy_flow_outlives_idle_timeout():
    """Idle means no bytes: a flow that keeps talking stays open past it."""
    server = Server(echo_handler)
    port = free_port()
    with CheckedNlbd(config([server.address], port,
                     listener='idle_timeout = "1s";')) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        with connect(port) as s:
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                s.sendall(b"tick")
                assert recv_exact(s, 4) == b"tick"
                time.sleep(0.3)
        f = access_fields(nlbd.wait_access_since(mark, 1)[-1])
        assert f["end"] == "client_fin", f
    server.stop()


def test_refusing_target_every_connection_succeeds():
    """1 of 3 targets refuses connections: 1,000 consecutive connections
    all succeed (retries go to the others)."""
    servers = [Server(echo_handler) for _ in range(2)]
    dead = "127.0.0.1:%d" % free_port()
    port = free_port()
    targets = [servers[0].address, dead, servers[1].address]
    # Checks on a port that answers: the refusing target is healthy, as one
    # is between its crash and the checks that notice it.
    check = "health_check = { port = %d; };" % servers[0].port
    with CheckedNlbd(config(targets, port, group=check)) as nlbd:
        start_healthy(nlbd, port, 3)
        mark = nlbd.access_mark()
        failures = []
        for i in range(1000):
            try:
                with connect(port, timeout=5) as s:
                    s.sendall(b"%d\n" % i)
                    got = recv_line(s)
                    if got != "%d\n" % i:
                        failures.append((i, got))
            except OSError as e:
                failures.append((i, repr(e)))
        assert not failures, "%d failed, first %r" % (len(failures),
                                                      failures[:3])
        lines = nlbd.wait_access_since(mark, 1000)
        assert all(access_fields(l)["target"] != dead for l in lines
                   if access_fields(l)["end"] == "client_fin")
        retried = [l for l in lines if access_fields(l)["retries"] != "0"]
        assert retried, "the refusing target was never tried"
    for s in servers:
        s.stop()


def test_refused_connect_resends_header_and_first_bytes():
    """With a PROXY v2 group, a flow always holds bytes for the target
    before it connects (the header, then what the client sent), and nlbd
    sends them right after connect(). When that send finds the target
    refusing, the retry to the next target carries the same header and
    bytes: 200 flows over a refusing target and a strict PROXY v2 receiver
    all echo intact, each with its own client address in the header."""
    receiver_log = os.path.join(tempfile.mkdtemp(prefix="nlbtest-pp-"),
                                "receiver.jsonl")
    receiver = subprocess.Popen(
        [sys.executable, os.path.join(TOP_SRCDIR, "tests", "tools",
                                      "ppv2_receiver.py"),
         "--listen", "127.0.0.1:0", "--log", receiver_log],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        line = receiver.stdout.readline()
        assert line.startswith("ready "), line
        good = "127.0.0.1:%d" % int(line.split()[1])
        dead = "127.0.0.1:%d" % free_port()
        port = free_port()
        # Both checked on the receiver's port: the refusing target is
        # healthy, as one is between its crash and the checks that notice.
        body = config([dead, good], port,
                      group='proxy_protocol = "v2"; health_check = '
                      '{ port = %s; };' % good.split(":")[1])
        with CheckedNlbd(body) as nlbd:
            start_healthy(nlbd, port, 2)
            mark = nlbd.access_mark()
            sources = set()
            for i in range(200):
                with connect(port, timeout=5) as s:
                    s.sendall(b"flow %d\n" % i)
                    assert recv_line(s) == "flow %d\n" % i
                    sources.add("127.0.0.1:%d" % s.getsockname()[1])
            lines = nlbd.wait_access_since(mark, 200)
            retried = [l for l in lines if access_fields(l)["retries"] != "0"]
            assert retried, "the refusing target was never tried"
            assert all(access_fields(l)["target"] == good for l in lines)
        records = [json.loads(l) for l in open(receiver_log) if l.strip()]
        flows = [r for r in records if r["command"] == "PROXY"]
        assert all(r["error"] is None for r in records), records[:3]
        assert sources <= {r["src"] for r in flows}, (len(sources),
                                                      len(flows))
    finally:
        receiver.terminate()
        receiver.wait(5)
        receiver.stdout.close()


def reset_handler(conn, delay=0.0):
    """Accepts, then resets (after delay seconds) before saying anything."""
    time.sleep(delay)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    b"\x01\x00\x00\x00\x00\x00\x00\x00")


def all_threads_stopped(pid):
    states = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            states.append(f.read().rsplit(")", 1)[1].split()[0])
    return all(state in ("T", "t") for state in states)


def test_client_that_speaks_late():
    """A client that has sent nothing when accepted: nlbd waits for its
    bytes, a target that speaks first, or a refusal, rather than for a
    poll round saying the handshake is done. A client silent for 0.3 s is
    echoed, and its access line still tells the real connect time; one
    silent for longer than connect_timeout is no connect failure; a target
    that resets before it was sent anything is retried like a refused
    connect, also when the reset and the client's bytes come in one batch
    of events."""
    server = Server(echo_handler)
    # Health checks go here, so that the targets see the flows only.
    health = Server(echo_handler)
    checked = "health_check = { port = %d; };" % health.port
    resets = []

    def reset_and_count(conn):
        reset_handler(conn)
        conn.close()  # the reset reaches nlbd's socket before this returns
        resets.append(conn)
    resetter = Server(reset_and_count)
    port = free_port()
    body = config([server.address], port, group='connect_timeout = "300ms";')
    with CheckedNlbd(body) as nlbd:
        nlbd.start(wait_port=port)
        for pause in (0.3, 0.8):
            mark = nlbd.access_mark()
            with connect(port) as s:
                time.sleep(pause)
                s.sendall(b"late %.1f\n" % pause)
                assert recv_line(s) == "late %.1f\n" % pause
            f = access_fields(nlbd.wait_access_since(mark, 1)[-1])
            assert f["end"] == "client_fin" and f["retries"] == "0", f
            assert int(f["connect"]) < 150, f
    port = free_port()
    body = config([resetter.address, server.address], port, group=checked)
    with CheckedNlbd(body) as nlbd:
        # Both in the pool: while only the first healthy one is, a reset
        # leaves the flow no other target.
        start_healthy(nlbd, port, 2)
        mark = nlbd.access_mark()
        for i in range(20):
            before = (len(resets), server.connections)
            with connect(port) as s:
                # Sent once the flow's target took it or reset it.
                wait_until(lambda: len(resets) > before[0] or
                           server.connections > before[1],
                           what="flow %d placed" % i)
                s.sendall(b"%d\n" % i)
                assert recv_line(s) == "%d\n" % i
        lines = nlbd.wait_access_since(mark, 20)
        assert all(access_fields(l)["target"] == server.address
                   for l in lines), lines[:3]
        assert any(access_fields(l)["retries"] == "1" for l in lines)
    # The client's bytes, then the target's reset, both in one batch of
    # events (nlbd stopped meanwhile): the send finds the target reset,
    # the flow goes to the next target with the same bytes, and the reset
    # event fetched with the batch does not touch the new socket.
    go, reset = threading.Event(), threading.Event()

    def reset_on_cue(conn):
        go.wait(10)
        reset_handler(conn)
        conn.close()  # the reset reaches nlbd's socket before this returns
        reset.set()
    held = Server(reset_on_cue)
    port = free_port()
    body = config([server.address, held.address], port, group=checked)
    with CheckedNlbd(body) as nlbd:
        start_healthy(nlbd, port, 2)
        mark = nlbd.access_mark()
        # Round robin: of two flows in a row, one goes to held.
        flows = 0
        for _ in range(2):
            before = server.connections
            s = connect(port)
            flows += 1
            wait_until(lambda: held.connections == 1 or
                       server.connections > before, what="target picked")
            if held.connections == 1:
                break
            s.close()
        assert held.connections == 1
        with s:
            time.sleep(0.05)
            nlbd.proc.send_signal(signal.SIGSTOP)
            try:
                # kill() returns before every thread has stopped.
                wait_until(lambda: all_threads_stopped(nlbd.proc.pid),
                           what="nlbd stopped")
                s.sendall(b"both at once\n")
                go.set()
                assert reset.wait(10)
            finally:
                nlbd.proc.send_signal(signal.SIGCONT)
            assert recv_line(s) == "both at once\n"
        lines = [access_fields(l) for l in nlbd.wait_access_since(mark, flows)]
        assert any(f["retries"] == "1" and f["target"] == server.address
                   for f in lines), lines
    server.stop()
    resetter.stop()
    held.stop()
    health.stop()


# --- signals -------------------------------------------------------------

def test_sighup_adds_target_without_losing_flows():
    servers = [Server(named_handler("t%d" % i)) for i in range(3)]
    port = free_port()
    body = config([s.address for s in servers[:2]], port)
    with CheckedNlbd(body) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        stop = threading.Event()
        failures, names_after = [], []
        reloaded = threading.Event()
        counts = [0]

        def client():
            while not stop.is_set():
                try:
                    with connect(port, timeout=5) as s:
                        name = recv_line(s).strip()
                        s.sendall(b"hello\n")
                        if recv_line(s) != "hello\n" or not name:
                            failures.append("bad echo via %r" % name)
                        if reloaded.is_set():
                            names_after.append(name)
                        counts[0] += 1
                except OSError as e:
                    failures.append(repr(e))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(2.5)  # flows before the reload
        nlbd.reload(config([s.address for s in servers], port))
        reloaded.set()
        # The new target takes flows once its first check passed (within
        # a second of the reload, then published): wait for that, not for
        # a fixed time a loaded machine may overrun.
        started = time.monotonic()
        try:
            wait_until(lambda: "t2" in names_after, timeout=15,
                       what="the new target to get flows after the reload")
            # As much traffic after the reload as before it.
            time.sleep(max(0.0, started + 2.5 - time.monotonic()))
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert not failures, "%d flows failed: %r" % (len(failures),
                                                      failures[:3])
        assert counts[0] > 100, "only %d flows in %.1fs" % (
            counts[0], 2.5 + time.monotonic() - started)
    for s in servers:
        s.stop()


def test_sighup_changes_groups_and_listeners():
    """A reload that keeps one group and listener, removes another pair and
    adds a third: the kept listener keeps serving (its open flow too), the
    removed one stops accepting while its open flow goes on, the added one
    serves; nlbd survives every step."""
    a, b, c = (Server(named_handler(n)) for n in ("a", "b", "c"))
    pa, pb, pc = free_port(), free_port(), free_port()

    def body(pairs):
        groups = ",\n".join(
            '{ name = "%s"; algorithm = "round_robin"; targets = ( '
            '{ address = "%s"; } ); }' % (name, server.address)
            for name, server, _ in pairs)
        listeners = ",\n".join(
            '{ port = %d; target_group = "%s"; bind = "127.0.0.1"; }'
            % (port, name) for name, _, port in pairs)
        return ("target_groups = ( %s );\nload_balancers = ( { name = "
                "\"lb\"; listeners = ( %s ); } );\n" % (groups, listeners))

    with CheckedNlbd(body([("ga", a, pa), ("gb", b, pb)])) as nlbd:
        nlbd.start(wait_port=pa)
        assert ask_name(pa) == "a" and ask_name(pb) == "b"
        kept, dropped = connect(pa), connect(pb)
        assert recv_line(kept) == "a\n" and recv_line(dropped) == "b\n"
        nlbd.reload(body([("ga", a, pa), ("gc", c, pc)]))
        wait_until(lambda: can_connect("127.0.0.1", pc), what="new listener")
        assert ask_name(pc) == "c"
        assert ask_name(pa) == "a"
        wait_until(lambda: not can_connect("127.0.0.1", pb),
                   what="removed listener to stop accepting")
        for sock, word in ((kept, b"kept\n"), (dropped, b"dropped\n")):
            sock.sendall(word)
            assert recv_line(sock) == word.decode(), "flow cut by the reload"
            sock.close()
        # The removed group's target drained and, its flow gone, is unused.
        target_b = "gb/%s" % b.address
        wait_until(lambda: any(
            "target %s state %s -> draining (group removed" % (target_b, old)
            in nlbd.events() for old in ("initial", "healthy")),
            what="the removed group's target draining")
        wait_until(lambda: "target %s state draining -> unused" % target_b
                   in nlbd.events(), what="the removed group's target unused")
        # Back again: the removed group and listener return.
        nlbd.reload(body([("ga", a, pa), ("gb", b, pb), ("gc", c, pc)]))
        wait_until(lambda: can_connect("127.0.0.1", pb), what="listener back")
        assert ask_name(pb) == "b" and ask_name(pc) == "c"
        assert nlbd.proc.poll() is None, "nlbd died during reloads"
    for s in (a, b, c):
        s.stop()


def listening_sockets(port):
    """How many TCP sockets listen on port (IPv4), from /proc/net/tcp."""
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if (int(fields[1].split(":")[1], 16) == port and
                    fields[3] == "0A"):
                count += 1
    return count


def test_workers_share_long_lived_flows():
    """40 long-lived flows over 2 workers: the shared accept queue wakes
    whichever worker waits (the first one, when both do); hand-over at
    accept keeps them within a flow or two of each other. The workers share
    one listening socket (one accept queue), not one each."""
    server = Server(echo_handler)
    port = free_port()
    with CheckedNlbd(config([server.address], port)) as nlbd:
        nlbd.start(wait_port=port)
        assert listening_sockets(port) == 1, listening_sockets(port)
        mark = nlbd.access_mark()
        flows = [connect(port) for _ in range(40)]
        for i, s in enumerate(flows):
            s.sendall(b"%d\n" % i)
            assert recv_line(s) == "%d\n" % i
        for s in flows:
            s.close()
        lines = nlbd.wait_access_since(mark, 40)
        workers = [access_fields(l)["worker"] for l in lines]
        counts = sorted(workers.count(w) for w in ("0", "1"))
        assert counts[0] >= 18, "flows per worker: %s" % counts
    server.stop()


def thread_cpus(pid):
    """The CPUs each thread of pid may run on, as sets."""
    cpus = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    allowed = set()
                    for part in line.split()[1].split(","):
                        lo, _, hi = part.partition("-")
                        allowed.update(range(int(lo), int(hi or lo) + 1))
                    cpus.append(allowed)
    return cpus


def test_workers_pinned_one_per_cpu():
    """By default (worker_cpu_affinity "auto") worker i runs on the i-th
    CPU the process may use, and the start event says so; "off" leaves
    every thread free. Flows go through either way."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise Skip("needs 2 CPUs to pin 2 workers")
    server = Server(named_handler("p"))
    port = free_port()
    body = config([server.address], port)
    with CheckedNlbd(body) as nlbd:
        nlbd.start(wait_port=port)
        assert "2 workers pinned to CPUs %d,%d" % tuple(allowed[:2]) in \
            nlbd.events(), nlbd.events()
        pinned = [c for c in thread_cpus(nlbd.proc.pid) if len(c) == 1]
        assert sorted(pinned, key=min) == [{allowed[0]}, {allowed[1]}], \
            thread_cpus(nlbd.proc.pid)
        assert ask_name(port) == "p"
    with CheckedNlbd('worker_cpu_affinity = "off";\n' + body) as nlbd:
        nlbd.start(wait_port=port)
        assert "2 workers not pinned (worker_cpu_affinity \"off\")" in \
            nlbd.events(), nlbd.events()
        assert all(len(c) == len(allowed)
                   for c in thread_cpus(nlbd.proc.pid)), \
            thread_cpus(nlbd.proc.pid)
        assert ask_name(port) == "p"
    server.stop()


def test_sigusr1_reopens_log_files():
    """logrotate moves the files, SIGUSR1 makes nlbd write new ones; lines
    written before stay in the moved files."""
    server = Server(echo_handler)
    port = free_port()
    with CheckedNlbd(config([server.address], port)) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        with connect(port) as s:
            s.sendall(b"before\n")
            assert recv_line(s) == "before\n"
        nlbd.wait_access_since(mark, 1)
        os.rename(nlbd.access_path, nlbd.access_path + ".1")
        os.rename(nlbd.events_path, nlbd.events_path + ".1")
        nlbd.signal(signal.SIGUSR1)
        wait_until(lambda: "log files reopened" in nlbd.events(),
                   what="the reopen event in a new events file")
        with connect(port) as s:
            s.sendall(b"after\n")
            assert recv_line(s) == "after\n"
        lines = nlbd.wait_access_since(0, 1)
        assert len(lines) == 1 and " up=6 " in lines[0], lines
        with open(nlbd.access_path + ".1") as f:
            old = f.read()
        assert " up=7 " in old and " up=6 " not in old, old
    server.stop()


def test_hostile_peers_leak_no_flow():
    """Clients and targets that reset, vanish mid-transfer, half-close or
    send nothing: every flow is logged once and none is left open."""
    import random
    import struct
    rng = random.Random(7)

    def reset(sock):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
        sock.close()

    def target(conn):
        kind = conn.recv(1)
        if kind == b"r":      # target resets at once
            reset(conn)
        elif kind == b"h":    # target half-closes and keeps reading
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):
                pass
        elif kind == b"b":    # target streams until the client goes away
            try:
                while True:
                    conn.sendall(b"x" * 65536)
            except OSError:
                pass
        else:
            echo_handler(conn)

    server = Server(target)
    port = free_port()
    n = 200
    with CheckedNlbd(config([server.address], port,
                            top='shutdown_timeout = "5s";')) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        for i in range(n):
            s = connect(port)
            kind = rng.choice("rhbeRN")
            try:
                if kind == "R":       # client resets before sending
                    reset(s)
                    continue
                if kind == "N":       # client closes having sent nothing
                    s.close()
                    continue
                s.sendall(kind.encode())
                if kind == "b":       # read a little, then reset mid-stream
                    s.recv(1000)
                    reset(s)
                elif kind == "e":
                    s.sendall(b"hello")
                    recv_exact(s, 5)
                    s.close()
                else:
                    s.settimeout(5)
                    try:
                        while s.recv(65536):
                            pass
                    except OSError:
                        pass
                    s.close()
            except OSError:
                s.close()
        nlbd.wait_access_since(mark, n, timeout=20)
        before = nlbd.events().count("draining 0 flows")
        nlbd.signal(signal.SIGTERM)
        assert nlbd.proc.wait(10) == 0
        events = nlbd.events()
        assert "draining 0 flows" in events[-2000:] and \
            events.count("draining 0 flows") == before + 1, events[-2000:]
        assert len(nlbd.access()) == mark + n, \
            "%d flows logged for %d" % (len(nlbd.access()) - mark, n)
    server.stop()


def test_sigterm_drains_open_flow():
    """After SIGTERM: new connections are refused, the open flow keeps
    working until it ends, then nlbd exits 0."""
    server = Server(echo_handler)
    port = free_port()
    with CheckedNlbd(config([server.address], port,
                     top='shutdown_timeout = "20s";')) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        s = connect(port)
        s.sendall(b"before")
        assert recv_exact(s, 6) == b"before"
        nlbd.signal(signal.SIGTERM)
        wait_until(lambda: not can_connect("127.0.0.1", port), timeout=3,
                   what="the listener to close")
        for i in range(5):
            s.sendall(b"during%d" % i)
            assert recv_exact(s, 7) == b"during%d" % i
            time.sleep(0.2)
        assert nlbd.proc.poll() is None, "nlbd exited with a flow open"
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s)[0] == 0
        s.close()
        rc = nlbd.wait_exit(5)
        assert rc == 0, "nlbd exited %d: %s" % (rc, nlbd.stderr()[-3000:])
        f = access_fields(nlbd.access()[mark:][-1])
        assert f["end"] == "client_fin", f
        assert int(f["up"]) == 6 + 5 * 7, f
    server.stop()


def test_sigterm_resets_flow_at_shutdown_timeout():
    server = Server(echo_handler)
    port = free_port()
    with CheckedNlbd(config([server.address], port,
                     top='shutdown_timeout = "1s";')) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        s = connect(port)
        s.sendall(b"hi")
        assert recv_exact(s, 2) == b"hi"
        started = time.monotonic()
        nlbd.signal(signal.SIGTERM)
        s.settimeout(5)
        try:
            data = s.recv(10)
        except ConnectionResetError:
            data = b""
        closed_after = time.monotonic() - started
        s.close()
        assert data == b"", "got %r instead of a reset" % data
        assert 0.8 <= closed_after <= 2.5, "closed after %.2fs" % closed_after
        rc = nlbd.wait_exit(4)
        assert rc == 0, "nlbd exited %d: %s" % (rc, nlbd.stderr()[-3000:])
        exited_after = time.monotonic() - started
        assert exited_after <= 4, "exit after %.2fs" % exited_after
        f = access_fields(nlbd.access()[mark:][-1])
        assert f["end"] == "shutdown", f
    server.stop()


# --- access log ------------------------------------------------------------

def test_access_log_text_format():
    server = Server(echo_handler)
    port = free_port()
    with CheckedNlbd(config([server.address], port)) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        with connect(port) as s:
            client = "127.0.0.1:%d" % s.getsockname()[1]
            s.sendall(b"0123456789")
            assert recv_exact(s, 10) == b"0123456789"
            time.sleep(0.2)
        f = access_fields(nlbd.wait_access_since(mark, 1)[-1])
        assert f["lb"] == "lb" and f["port"] == str(port), f
        assert f["endpoint"] == "-", f
        assert f["client"] == client, f
        assert f["target"] == server.address, f
        assert f["connect"] != "-" and int(f["connect"]) < 1000, f
        assert 150 <= int(f["duration"]) < 5000, f
        assert f["up"] == "10" and f["down"] == "10", f
        assert f["retries"] == "0" and f["end"] == "client_fin", f
        # A flow that found no target at all.
        dead = "127.0.0.1:%d" % free_port()
    server.stop()
    port = free_port()
    with CheckedNlbd(config([dead], port)) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        try:
            # The reset may come before connect() looks at the socket.
            with connect(port) as s:
                assert s.recv(10) == b""
        except ConnectionResetError:
            pass
        f = access_fields(nlbd.wait_access_since(mark, 1)[-1])
        assert f["end"] == "connect_failed" and f["connect"] == "-", f
        assert f["target"] == dead, f


def test_access_log_json_format():
    server = Server(echo_handler)
    port = free_port()
    with CheckedNlbd(config([server.address], port), access_format="json") as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        with connect(port) as s:
            client = "127.0.0.1:%d" % s.getsockname()[1]
            s.sendall(b"abc")
            assert recv_exact(s, 3) == b"abc"
        record = json.loads(nlbd.wait_access_since(mark, 1)[-1])
        want = {"time", "lb", "port", "endpoint", "client", "target",
                "connect", "duration", "up", "down", "retries", "end"}
        assert want <= set(record), "missing %s" % (want - set(record))
        assert re.match("^" + TIME_RE + "$", record["time"]), record
        assert record["lb"] == "lb" and record["port"] == port, record
        assert record["endpoint"] is None, record
        assert record["client"] == client, record
        assert record["target"] == server.address, record
        assert isinstance(record["connect"], int), record
        assert isinstance(record["duration"], int), record
        assert record["up"] == 3 and record["down"] == 3, record
        assert record["retries"] == 0 and record["end"] == "client_fin", record
    server.stop()


# --- addresses and algorithms --------------------------------------------

def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_ipv6_listener_and_target():
    if not have_ipv6_loopback():
        raise Skip("no IPv6 loopback (::1) on this host")
    server = Server(named_handler("v6"), host="::1")
    port = free_port("::1")
    with CheckedNlbd(config([server.address], port, bind="::1")) as nlbd:
        nlbd.start(wait_port=port, wait_host="::1")
        mark = nlbd.access_mark()
        with connect(port, host="::1") as s:
            assert recv_line(s) == "v6\n"
            s.sendall(b"six\n")
            assert recv_line(s) == "six\n"
            client = "[::1]:%d" % s.getsockname()[1]
        f = access_fields(nlbd.wait_access_since(mark, 1)[-1])
        assert f["client"] == client and f["target"] == server.address, f
    server.stop()


def test_maglev_spreads_and_is_sticky():
    servers = [Server(named_handler("t%d" % i)) for i in range(3)]
    port = free_port()
    with CheckedNlbd(config([s.address for s in servers], port,
                     algorithm="maglev")) as nlbd:
        start_healthy(nlbd, port, 3)
        mark = nlbd.access_mark()
        counts = {}
        for _ in range(300):
            name = ask_name(port)
            counts[name] = counts.get(name, 0) + 1
        assert set(counts) == {"t0", "t1", "t2"}, counts
        assert min(counts.values()) >= 50, "poor spread: %r" % counts
        # The same client address and port always lands on the same target
        # (closed with a reset so the port can be reused at once).
        for _ in range(5):
            source = free_port()
            names = set()
            for _ in range(4):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", source))
                s.settimeout(5)
                s.connect(("127.0.0.1", port))
                names.add(recv_line(s).strip())
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
                time.sleep(0.05)
            assert len(names) == 1, "source port %d went to %r" % (source,
                                                                   names)
    for s in servers:
        s.stop()


def test_least_conn_prefers_fewer_open_flows():
    servers = [Server(named_handler(n)) for n in ("a", "b")]
    port = free_port()
    with CheckedNlbd(config([s.address for s in servers], port,
                     algorithm="least_conn")) as nlbd:
        start_healthy(nlbd, port, 2)
        mark = nlbd.access_mark()
        flows = []
        for _ in range(6):
            s = connect(port)
            flows.append((recv_line(s).strip(), s))
        names = [n for n, _ in flows]
        assert names.count("a") == 3 and names.count("b") == 3, names
        # Close b's flows: a keeps 3, b has none; the next 3 go to b.
        for name, s in flows:
            if name == "b":
                s.close()
        nlbd.wait_access_since(mark, 3)
        kept = [(n, s) for n, s in flows if n == "a"]
        fresh = []
        for _ in range(3):
            s = connect(port)
            fresh.append((recv_line(s).strip(), s))
        assert [n for n, _ in fresh] == ["b", "b", "b"], fresh
        for _, s in kept + fresh:
            s.close()
    for s in servers:
        s.stop()


def test_round_robin_respects_weights():
    servers = [Server(named_handler(n)) for n in ("a", "b")]
    port = free_port()
    with CheckedNlbd(config([(servers[0].address, 1), (servers[1].address, 3)],
                     port), workers=1) as nlbd:
        start_healthy(nlbd, port, 2)
        mark = nlbd.access_mark()
        names = [ask_name(port) for _ in range(40)]
        assert names.count("a") == 10 and names.count("b") == 30, names
    for s in servers:
        s.stop()


if __name__ == "__main__":
    run([
        test_64mib_each_way_intact,
        test_half_close_reply_after_client_fin,
        test_slow_target_reader_bounds_rss,
        test_slow_client_reader_bounds_rss,
        test_idle_timeout_closes_flow,
        test_busy_flow_outlives_idle_timeout,
        test_refusing_target_every_connection_succeeds,
        test_refused_connect_resends_header_and_first_bytes,
        test_client_that_speaks_late,
        test_sighup_adds_target_without_losing_flows,
        test_sighup_changes_groups_and_listeners,
        test_sigterm_drains_open_flow,
        test_sigterm_resets_flow_at_shutdown_timeout,
        test_access_log_text_format,
        test_access_log_json_format,
        test_ipv6_listener_and_target,
        test_maglev_spreads_and_is_sticky,
        test_least_conn_prefers_fewer_open_flows,
        test_round_robin_respects_weights,
        test_workers_share_long_lived_flows,
        test_workers_pinned_one_per_cpu,
        test_sigusr1_reopens_log_files,
        test_hostile_peers_leak_no_flow,
    ], timeout=60)
