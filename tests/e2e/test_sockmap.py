#!/usr/bin/env python3
"""End to end, forwarding = "sockmap": established flows are moved by the
kernel (nlbd's workers are not woken for their bytes), and every promise of
the relay still holds: half-close both ways with bytes still in flight,
resets carried across, the idle timeout read from the program's activity
stamp, exact byte counts in the access log and the metrics, the PROXY v2
header before the client's first bytes, drain at SIGTERM, a reload between
splice and sockmap, a listener's own forwarding over the top level's, a
flow that finds the map full staying spliced, and "auto" falling back to splice (with a warning) where nlbd may not load BPF
programs, while "sockmap" then refuses to start. The rest of the relay's
tests run with sockmap too: make check-sockmap (NLB_TEST_FORWARDING)."""

import hashlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import sys
import threading
import time
import json

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nlbtest  # noqa: E402
from nlbtest import (NLBD, Nlbd, Server, Skip, echo_handler,  # noqa: E402
                     free_port, recv_exact, recv_line, run, wait_until)
from test_balancer import (MIB, CheckedNlbd, access_fields,  # noqa: E402
                           block, config, connect, recv_all, send_blocks)

# These tests say what they forward; the matrix variable is not theirs.
nlbtest.FORWARDING = ""


def sockmap_config(targets, port, **kw):
    kw["top"] = 'forwarding = "sockmap";\n' + kw.get("top", "")
    return config(targets, port, **kw)


def need_sockmap():
    """Skips where this nlbd or this process cannot have the sockmap: a
    build without libbpf, or no CAP_BPF / CAP_NET_ADMIN."""
    if not os.path.exists(NLBD):
        raise Skip("nlbd is not built")
    server = Server(echo_handler)
    port = free_port()
    nlbd = Nlbd(sockmap_config([server.address], port))
    try:
        nlbd.start()
    except AssertionError as e:
        text = str(e)
        if "without libbpf" in text or "Operation not permitted" in text:
            raise Skip("no sockmap here: %s" % text.strip()[-200:])
        raise
    finally:
        nlbd.stop()
        server.stop()


def worker_switches(pid):
    """Context switches of nlbd's threads so far: each wake-up of a worker
    is one (voluntary: it slept in epoll_wait)."""
    total = 0
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/status" % (pid, task)) as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def cpu_ticks(pid):
    """CPU time nlbd's threads spent so far, user and system, in clock
    ticks: splice's system calls count there, the kernel's own forwarding
    (softirq, its work queue) does not."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def sockmap_entries(pid):
    """Sockets nlbd has in its sockmap now: the entries of its "sides" map
    (one per socket of a flow in the map), found through the map's
    descriptor in nlbd's /proc fdinfo and read with bpftool."""
    for fd in os.listdir("/proc/%d/fdinfo" % pid):
        try:
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                info = dict(l.split(":", 1) for l in f.read().splitlines()
                            if ":" in l)
        except OSError:
            continue
        if info.get("map_type", "").strip() != "1":  # BPF_MAP_TYPE_HASH
            continue
        out = subprocess.run(["bpftool", "-j", "map", "dump", "id",
                              info["map_id"].strip()],
                             capture_output=True, text=True, timeout=30)
        return len(json.loads(out.stdout or "[]"))
    return 0


def metrics(api_port):
    status, text = nlbtest.api_request(api_port, "GET", "/metrics",
                                       "ops-token")
    assert status == 200, (status, text)
    return text


def last_flow(nlbd, mark):
    return access_fields(nlbd.wait_access_since(mark, 1)[-1])


def test_bytes_move_without_waking_nlbd():
    """32 MiB each way through a sockmap flow: intact, counted exactly in
    the access log, and nlbd was woken only a handful of times (splice
    wakes a worker for every few pipefuls). The start event says so."""
    need_sockmap()
    data = block(7)
    count = 32
    server = Server(echo_handler)
    port = free_port()
    with CheckedNlbd(sockmap_config([server.address], port)) as nlbd:
        nlbd.start(wait_port=port)
        assert "forwarding sockmap" in nlbd.events(), nlbd.events()[-500:]
        mark = nlbd.access_mark()
        with connect(port) as s:
            # A first exchange: the flow is up and in the map.
            s.sendall(b"ping")
            assert recv_exact(s, 4) == b"ping"
            assert sockmap_entries(nlbd.proc.pid) == 2
            before = worker_switches(nlbd.proc.pid)
            ticks = cpu_ticks(nlbd.proc.pid)
            started = time.monotonic()
            got = {}
            reader = threading.Thread(
                target=lambda: got.update(r=recv_all(s)), daemon=True)
            reader.start()
            sent = send_blocks(s, data, count)
            s.shutdown(socket.SHUT_WR)
            reader.join(60)
            assert got["r"] == (count * MIB, sent), "bytes lost or changed"
        f = last_flow(nlbd, mark)
        switches = worker_switches(nlbd.proc.pid) - before
        elapsed = time.monotonic() - started
        ticks = cpu_ticks(nlbd.proc.pid) - ticks
        print("sockmap: %d wake-ups, %d CPU ticks" % (switches, ticks))
        assert f["end"] == "client_fin", f
        assert int(f["up"]) == count * MIB + 4, f
        assert int(f["down"]) == count * MIB + 4, f
        # nlbd's threads together: the FINs, the access log, the workers'
        # sweep timers (10 a second each), health checks; splice takes a
        # wake-up per few pipefuls (measured on an idle machine: 117 to 164
        # in 0.7 s, against 13 to 18 with sockmap).
        assert switches < 20 + 25 * elapsed, \
            "nlbd woke %d times in %.1fs" % (switches, elapsed)
    server.stop()


def test_half_close_each_way_with_bytes_in_flight():
    """The client sends 8 MiB and its FIN at once: the target reads all 8
    MiB before its EOF (the FIN waits for the kernel's bytes), then
    replies and closes; the reply and then EOF reach the client. And the
    other way: a target that sends 8 MiB then FIN, while the client keeps
    sending afterwards."""
    need_sockmap()
    size = 8 * MIB

    def count_then_reply(conn):
        total, _ = recv_all(conn)
        conn.sendall(b"got %d bytes\n" % total)

    def send_then_read(conn):
        conn.sendall(b"x" * size)
        conn.shutdown(socket.SHUT_WR)
        total, _ = recv_all(conn)
        got.append(total)

    got = []
    for handler in (count_then_reply, send_then_read):
        server = Server(handler)
        port = free_port()
        with CheckedNlbd(sockmap_config([server.address], port)) as nlbd:
            nlbd.start(wait_port=port)
            mark = nlbd.access_mark()
            with connect(port) as s:
                if handler is count_then_reply:
                    s.sendall(b"hello")  # the flow goes into the map
                    wait_until(lambda: sockmap_entries(nlbd.proc.pid) == 2,
                               what="the flow in the sockmap")
                    s.sendall(b"y" * size)
                    s.shutdown(socket.SHUT_WR)
                    assert recv_line(s) == "got %d bytes\n" % (size + 5)
                    assert s.recv(10) == b"", "expected EOF after the reply"
                else:
                    total = 0
                    while total < size:
                        chunk = s.recv(1 << 20)
                        assert chunk, "EOF after %d bytes" % total
                        total += len(chunk)
                    assert s.recv(10) == b"", "expected the target's FIN"
                    s.sendall(b"z" * 100000)
                    s.shutdown(socket.SHUT_WR)
                    assert s.recv(10) == b""
            f = last_flow(nlbd, mark)
            if handler is count_then_reply:
                assert f["end"] == "client_fin", f
                assert int(f["up"]) == size + 5, f
            else:
                wait_until(lambda: got == [100000], what="the target's count")
                assert f["end"] == "target_fin", f
                assert int(f["down"]) == size and int(f["up"]) == 100000, f
        server.stop()


def linger_reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


def test_resets_carried_across():
    """A client's reset resets the target's side, and a target's reset the
    client's; the access log says which side reset."""
    need_sockmap()
    seen = []
    got_bytes = threading.Event()

    def wait_reset(conn):
        # start()'s probe sends nothing: only the test's flow counts.
        if conn.recv(1000, socket.MSG_WAITALL) != b"x" * 1000:
            return
        got_bytes.set()
        try:
            while conn.recv(65536):
                pass
            seen.append("eof")
        except ConnectionResetError:
            seen.append("reset")

    def echo_then_reset(conn):
        data = conn.recv(100)
        conn.sendall(data)
        conn.recv(100)  # "go"
        linger_reset(conn)

    server = Server(wait_reset)
    port = free_port()
    with CheckedNlbd(sockmap_config([server.address], port)) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        s = connect(port)
        s.sendall(b"x" * 1000)
        assert got_bytes.wait(10)
        linger_reset(s)
        wait_until(lambda: seen, what="the target's read to end")
        assert seen == ["reset"], seen
        f = last_flow(nlbd, mark)
        assert f["end"] == "client_reset" and f["up"] == "1000", f
    server.stop()

    server = Server(echo_then_reset)
    port = free_port()
    with CheckedNlbd(sockmap_config([server.address], port)) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        with connect(port) as s:
            s.sendall(b"abc")
            assert recv_exact(s, 3) == b"abc"
            s.sendall(b"go")
            try:
                data = s.recv(10)
                assert False, "expected a reset, got %r" % data
            except ConnectionResetError:
                pass
        f = last_flow(nlbd, mark)
        assert f["end"] == "target_reset", f
        assert f["up"] == "5" and f["down"] == "3", f
    server.stop()


def test_idle_timeout_from_the_programs_stamp():
    """idle_timeout 2 s: a flow that sends a byte every 300 ms for 3 s
    lives on (nlbd saw none of those bytes: the program's stamp says it is
    busy); one silent for 2 s is reset with end=idle_timeout. (2 s, not 1:
    a loaded machine may hold the client's 300 ms pause much longer.)"""
    need_sockmap()
    server = Server(echo_handler)
    port = free_port()
    body = sockmap_config([server.address], port,
                          listener='idle_timeout = "2s";')
    with CheckedNlbd(body) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        with connect(port) as s:
            end = time.monotonic() + 3
            while time.monotonic() < end:
                s.sendall(b"k")
                assert recv_exact(s, 1) == b"k"
                time.sleep(0.3)
            s.shutdown(socket.SHUT_WR)
            assert s.recv(10) == b""
        f = last_flow(nlbd, mark)
        assert f["end"] == "client_fin", f
        mark = nlbd.access_mark()
        with connect(port) as s:
            s.sendall(b"hi")
            assert recv_exact(s, 2) == b"hi"
            started = time.monotonic()
            try:
                assert s.recv(10) == b""
            except ConnectionResetError:
                pass
            waited = time.monotonic() - started
        f = last_flow(nlbd, mark)
        assert f["end"] == "idle_timeout", f
        assert 1.9 <= waited < 6, waited
        assert f["up"] == "2" and f["down"] == "2", f
    server.stop()


def read_proxy_header(conn):
    head = recv_exact(conn, 16)
    assert head[:12] == b"\r\n\r\n\x00\r\nQUIT\n", head
    length = struct.unpack("!H", head[14:16])[0]
    return head + recv_exact(conn, length)


def test_proxy_v2_header_before_the_first_bytes():
    """With proxy_protocol v2 the target reads the header, then exactly
    the client's bytes: the first ones (sent with the header) and those
    the kernel moved later."""
    need_sockmap()
    results = []

    def target_bytes(conn):
        header = read_proxy_header(conn)
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            conn.sendall(b"ok\n")
        results.append((header, data))

    server = Server(target_bytes)
    port = free_port()
    body = sockmap_config([server.address], port,
                          group='proxy_protocol = "v2";')
    with CheckedNlbd(body) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        with connect(port) as s:
            s.sendall(b"first")
            assert recv_line(s) == "ok\n"
            s.sendall(b"second")
            assert recv_line(s) == "ok\n"
            s.shutdown(socket.SHUT_WR)
            assert recv_all(s)[0] == 0
        # The first record is start()'s probe (a header, then EOF).
        wait_until(lambda: len(results) == 2, what="the target's record")
        header, data = results[1]
        assert data == b"firstsecond", data
        # The header names the client's address (family, then ports).
        assert header[13] == 0x11, header  # TCP over IPv4
        f = last_flow(nlbd, mark)
        assert f["up"] == "11" and f["down"] == "6", f
    server.stop()


def test_drain_at_sigterm_keeps_sockmap_flow():
    """SIGTERM with a sockmap flow open: the listener closes, the flow runs
    on until it ends, and nlbd exits after it."""
    need_sockmap()
    server = Server(echo_handler)
    port = free_port()
    body = sockmap_config([server.address], port,
                          top='shutdown_timeout = "20s";')
    with Nlbd(body) as nlbd:
        nlbd.start(wait_port=port)
        mark = nlbd.access_mark()
        s = connect(port)
        s.sendall(b"before")
        assert recv_exact(s, 6) == b"before"
        nlbd.signal(15)
        wait_until(lambda: not nlbtest.can_connect("127.0.0.1", port),
                   what="the listener to close")
        s.sendall(b"x" * (4 * MIB))
        got = 0
        while got < 4 * MIB:
            chunk = s.recv(1 << 20)
            assert chunk, "EOF while draining"
            got += len(chunk)
        assert nlbd.proc.poll() is None, "nlbd left before the flow ended"
        s.shutdown(socket.SHUT_WR)
        assert s.recv(10) == b""
        s.close()
        assert nlbd.wait_exit(10) == 0
        f = access_fields(nlbd.access()[mark:][-1])
        assert f["end"] == "client_fin", f
        assert int(f["up"]) == 4 * MIB + 6, f
    server.stop()


def test_reload_between_splice_and_sockmap():
    """A flow opened under splice keeps running across a reload to
    sockmap; the next flow goes into the map; the listener's own forwarding
    outranks the top level's."""
    need_sockmap()
    server = Server(echo_handler)
    port = free_port()
    with CheckedNlbd(config([server.address], port)) as nlbd:
        nlbd.start(wait_port=port)
        assert "forwarding splice" in nlbd.events()
        old = connect(port)
        old.sendall(b"old")
        assert recv_exact(old, 3) == b"old"
        nlbd.reload(sockmap_config([server.address], port))
        assert sockmap_entries(nlbd.proc.pid) == 0
        with connect(port) as s:
            s.sendall(b"new")
            assert recv_exact(s, 3) == b"new"
            assert sockmap_entries(nlbd.proc.pid) == 2
            s.sendall(b"y" * (4 * MIB))
            got = 0
            while got < 4 * MIB:
                got += len(s.recv(1 << 20))
        old.sendall(b"still")
        assert recv_exact(old, 5) == b"still"
        old.close()
        # Gone from the map with its flow.
        wait_until(lambda: sockmap_entries(nlbd.proc.pid) == 0,
                   what="the map to empty")
        # A listener that says splice under a sockmap top level.
        nlbd.reload(sockmap_config([server.address], port,
                                   listener='forwarding = "splice";'))
        with connect(port) as s:
            s.sendall(b"z")
            assert recv_exact(s, 1) == b"z"
            assert sockmap_entries(nlbd.proc.pid) == 0
    server.stop()


def test_full_map_falls_back_to_splice_per_flow():
    """The maps are sized when the program loads (max_flows 1: one flow's
    two sockets); a reload that raises max_flows leaves them so. The
    second flow finds the map full: it stays spliced, moves its bytes
    intact, and nlb_sockmap_fallbacks_total counts it."""
    need_sockmap()
    server = Server(echo_handler)
    port, api_port = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="nlb-sockmap-")
    api = ('api = { listen = "127.0.0.1:%d"; };\n'
           'registry = { path = "%s/registry.db"; };\n'
           'principals = ( { name = "ops"; role = "operator"; '
           'token_sha256 = "%s"; } );\n' % (
               api_port, workdir, hashlib.sha256(b"ops-token").hexdigest()))

    def body(flows):
        return sockmap_config([server.address], port,
                              top=api + "max_flows = %d;\n" % flows)

    def fallbacks():
        for line in metrics(api_port).splitlines():
            if line.startswith("nlb_sockmap_fallbacks_total "):
                return int(float(line.split()[1]))
        raise AssertionError("no nlb_sockmap_fallbacks_total")

    with CheckedNlbd(body(1)) as nlbd:
        nlbd.start(wait_port=port)
        nlbd.reload(body(4))
        with connect(port) as first, connect(port) as second:
            first.sendall(b"one")
            assert recv_exact(first, 3) == b"one"
            wait_until(lambda: sockmap_entries(nlbd.proc.pid) == 2,
                       what="the first flow in the map")
            second.sendall(b"two")
            assert recv_exact(second, 3) == b"two"
            wait_until(lambda: fallbacks() == 1,
                       what="the second flow counted as a fallback")
            assert sockmap_entries(nlbd.proc.pid) == 2
            for s in (first, second):
                s.sendall(b"w" * MIB)
                assert recv_exact(s, MIB) == b"w" * MIB
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def drop_bpf_caps(argv):
    """argv run without the capabilities that load BPF programs."""
    return ["setpriv", "--bounding-set=-bpf,-net_admin,-sys_admin,-perfmon",
            "--inh-caps=-bpf,-net_admin,-sys_admin,-perfmon", "--"] + argv


def test_auto_falls_back_and_sockmap_refuses_without_caps():
    """Without CAP_BPF and CAP_NET_ADMIN: "auto" starts, warns once and
    splices (the start event says so); "sockmap" does not start, and says
    what it needs."""
    need_sockmap()
    if not shutil.which("setpriv") or os.geteuid() != 0:
        raise Skip("needs root and setpriv to drop capabilities")
    server = Server(echo_handler)
    port = free_port()
    nlbd = Nlbd(config([server.address], port, top='forwarding = "auto";'))
    real = nlbtest.NLBD
    wrapper = os.path.join(nlbd.dir, "nlbd-nocaps")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec %s\n" % " ".join(
            drop_bpf_caps([real, '"$@"'])))
    os.chmod(wrapper, 0o755)
    nlbtest.NLBD = wrapper
    try:
        with nlbd:
            nlbd.start(wait_port=port)
            events = nlbd.events()
            assert "forwarding splice (auto)" in events, events[-800:]
            assert "sockmap_unavailable" in events or \
                "TCP flows are spliced" in events, events[-800:]
            with connect(port) as s:
                s.sendall(b"abc")
                assert recv_exact(s, 3) == b"abc"
        nlbd = Nlbd(sockmap_config([server.address], port))
        try:
            nlbd.start()
            assert False, "nlbd started without the capabilities"
        except AssertionError as e:
            assert "CAP_BPF" in str(e) or "CAP_BPF" in nlbd.events(), \
                str(e) + nlbd.events()
        finally:
            nlbd.stop()
    finally:
        nlbtest.NLBD = real
    server.stop()


if __name__ == "__main__":
    run([
        test_bytes_move_without_waking_nlbd,
        test_half_close_each_way_with_bytes_in_flight,
        test_resets_carried_across,
        test_idle_timeout_from_the_programs_stamp,
        test_proxy_v2_header_before_the_first_bytes,
        test_drain_at_sigterm_keeps_sockmap_flow,
        test_reload_between_splice_and_sockmap,
        test_full_map_falls_back_to_splice_per_flow,
        test_auto_falls_back_and_sockmap_refuses_without_caps,
    ])
