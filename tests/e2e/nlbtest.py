"""Helpers for nlb's end-to-end tests: start nlbd with a config, real
backends on loopback, and a tiny runner with a hard timeout per test.

Stdlib only. Tests import this module from the same directory."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_BUILDDIR = os.environ.get("top_builddir") or os.path.dirname(
    os.path.dirname(HERE))
TOP_SRCDIR = os.environ.get("top_srcdir") or os.path.dirname(
    os.path.dirname(HERE))
NLBD = os.path.join(TOP_BUILDDIR, "nlbd")
# "splice", "sockmap" or "auto" for every nlbd the tests start (the
# forwarding matrix); empty: nlbd's default.
FORWARDING = os.environ.get("NLB_TEST_FORWARDING", "")

SKIP = 77

# Everything a test started and has not stopped yet: run() stops what a
# failed or timed-out test left behind, so one test cannot break the next.
_live = []
_live_lock = threading.Lock()


def _track(thing):
    with _live_lock:
        _live.append(thing)


def _untrack(thing):
    with _live_lock:
        if thing in _live:
            _live.remove(thing)


def stop_everything():
    """Stops every Nlbd and Server still running (newest first)."""
    with _live_lock:
        things = list(reversed(_live))
    for thing in things:
        try:
            if isinstance(thing, Nlbd):
                thing.kill()
            else:
                thing.stop()
        except Exception:
            pass


class Skip(Exception):
    pass


def free_port(host="127.0.0.1"):
    """A port the kernel says is free now (bound, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=5.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % what)


def can_connect(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Nlbd:
    """One nlbd process with its config, access log and event log in a
    temporary directory. Use as a context manager."""

    def __init__(self, config, workers=2, extra_env=None, access_format=None):
        self.dir = tempfile.mkdtemp(prefix="nlbtest-")
        self.access_path = os.path.join(self.dir, "access.log")
        self.events_path = os.path.join(self.dir, "events.log")
        self.config_path = os.path.join(self.dir, "nlb.cfg")
        self.workers = workers
        self.access_format = access_format
        self.extra_env = extra_env or {}
        self.write_config(config)
        self.proc = None

    def write_config(self, body):
        header = ('workers = %d;\nlog = { access = "%s"; events = "%s"; '
                  'level = "debug"; %s};\n' % (
                      self.workers, self.access_path, self.events_path,
                      'access_format = "%s"; ' % self.access_format
                      if self.access_format else ""))
        if "log =" in body or "log=" in body:
            header = "workers = %d;\n" % self.workers
        # The forwarding matrix (make check-sockmap): every config nlbd is
        # given forwards as NLB_TEST_FORWARDING says, unless it says itself
        # (on the first line: tests match errors' line numbers).
        if FORWARDING and "forwarding" not in body:
            header = header.replace(
                ";\n", '; forwarding = "%s";\n' % FORWARDING, 1)
        with open(self.config_path, "w") as f:
            f.write(header + body)

    def start(self, wait_port=None, wait_host="127.0.0.1"):
        env = dict(os.environ)
        env.update(self.extra_env)
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.proc = subprocess.Popen(
            [NLBD, "-c", self.config_path], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=open(self.stderr_path, "w"),
            env=env)
        _track(self)
        wait_until(lambda: "started" in self.events() or
                   self.proc.poll() is not None, what="nlbd to start")
        if self.proc.poll() is not None:
            raise AssertionError("nlbd exited %s: %s" % (
                self.proc.returncode, self.stderr()))
        if wait_port:
            wait_until(lambda: can_connect(wait_host, wait_port),
                       what="listener %d" % wait_port)
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def signal(self, signum):
        self.proc.send_signal(signum)

    def reload(self, config=None, expect="config reloaded"):
        if config is not None:
            self.write_config(config)
        before = self.events().count(expect)
        self.signal(signal.SIGHUP)
        wait_until(lambda: self.events().count(expect) > before,
                   what="reload (%s)" % expect)

    def stop(self, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _untrack(self)
        return self.proc.returncode if self.proc else None

    def kill(self):
        """Ends nlbd at once (SIGKILL), for cleanup after a failure."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        _untrack(self)

    def wait_exit(self, timeout):
        """Waits for nlbd to exit by itself; returns its status."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("nlbd still running after %ss" % timeout)
        _untrack(self)
        return rc

    def _read(self, path):
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def events(self):
        return self._read(self.events_path)

    def access(self):
        return [l for l in self._read(self.access_path).splitlines() if l]

    def stderr(self):
        return self._read(self.stderr_path)

    def wait_access(self, count, timeout=10):
        return wait_until(lambda: len(self.access()) >= count and
                          self.access(), timeout=timeout,
                          what="%d access-log lines" % count)

    def access_mark(self, probes=1, timeout=5):
        """The number of access-log lines now, once the `probes` flows of
        start(wait_port=...) have been logged; pass it to wait_access_since
        to see only the lines of later flows."""
        wait_until(lambda: len(self.access()) >= probes, timeout=timeout,
                   what="%d probe access-log lines" % probes)
        return len(self.access())

    def wait_access_since(self, mark, count, timeout=10):
        """The access-log lines after the first `mark`, once there are at
        least `count` of them."""
        return wait_until(lambda: len(self.access()) >= mark + count and
                          self.access()[mark:], timeout=timeout,
                          what="%d access-log lines after %d" % (count, mark))

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


class Server(threading.Thread):
    """A threaded TCP server on loopback running handler(conn) per
    connection. port=0 picks a free port."""

    def __init__(self, handler, port=0, host="127.0.0.1", backlog=1024):
        super().__init__(daemon=True)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.connections = 0
        self.stopped = False
        self.lock = threading.Lock()
        _track(self)
        self.start()

    @property
    def address(self):
        if ":" in self.host:
            return "[%s]:%d" % (self.host, self.port)
        return "%s:%d" % (self.host, self.port)

    def run(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,),
                             daemon=True).start()

    def _serve(self, conn):
        try:
            self.handler(conn)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stop(self):
        self.stopped = True
        _untrack(self)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def echo_handler(conn):
    """Echoes everything, then closes after the client's FIN."""
    while True:
        data = conn.recv(65536)
        if not data:
            break
        conn.sendall(data)


def named_handler(name):
    """Answers each connection with its name and a newline, then echoes."""
    def handler(conn):
        conn.sendall(name.encode() + b"\n")
        echo_handler(conn)
    return handler


def http_handler(status=200, body=b"ok\n", name=None, hang=False):
    """Minimal HTTP/1.1 responder (one request per connection)."""
    def handler(conn):
        data = b""
        conn.settimeout(10)
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        if hang:
            time.sleep(30)
            return
        payload = body if name is None else (name + "\n").encode()
        conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % (status, len(payload))
                     + payload)
    return handler


def api_request(port, method, path, token, body=None, timeout=10):
    """(status, decoded JSON or text) of one HTTP/1.1 request to nlbd's API
    on 127.0.0.1:port with a bearer token, on a connection of its own; body
    is sent as JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": "Bearer " + token}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, data, headers)
        resp = conn.getresponse()
        text = resp.read().decode()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recv_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode()


def run(tests, timeout=120):
    """Runs each test function with a hard timeout; prints one line each
    and a closing 'N passed, N failed' line; exits 0, 1 or 77 (all
    skipped)."""
    passed = failed = skipped = 0
    only = os.environ.get("NLB_TEST_ONLY")
    for test in tests:
        name = test.__name__
        if only and only not in name:
            continue
        result = {}

        def body():
            try:
                test()
                result["ok"] = True
            except Skip as e:
                result["skip"] = str(e)
            except BaseException:
                result["error"] = traceback.format_exc()

        started = time.monotonic()
        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join(timeout)
        elapsed = time.monotonic() - started
        stop_everything()
        if t.is_alive():
            failed += 1
            print("FAIL: %s (timed out after %ds)" % (name, timeout))
        elif "ok" in result:
            passed += 1
            print("PASS: %s (%.1fs)" % (name, elapsed))
        elif "skip" in result:
            skipped += 1
            print("SKIP: %s: %s" % (name, result["skip"]))
        else:
            failed += 1
            print("FAIL: %s\n%s" % (name, result["error"]))
        sys.stdout.flush()
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    if failed:
        sys.exit(1)
    if passed == 0 and skipped:
        sys.exit(SKIP)
    sys.exit(0)
