#!/usr/bin/env python3
"""End-to-end tests of scale within a node: pages that see each endpoint
exactly once while endpoints are being created, a full node that refuses
new flows cleanly (reset, end=limit, once in the log) while its targets
stay healthy, its API answers and its flows go on, and idle flows up to
what the descriptor limit allows at under 400 bytes each.

nlbd runs with the API over HTTP/1.1 (http.client), a registry in a
temporary directory and a host network in 127.90.0.0/16; backends are
Python servers on loopback. Stdlib only; every test has a hard timeout
(nlbtest.run) and stops everything it started."""

import hashlib
import http.client
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nlbtest  # noqa: E402
from nlbtest import (NLBD, Server, Skip, echo_handler, free_port,  # noqa
                     run, wait_until)

TOKENS = {"ops": ("operator", "ops-token"), "prov": ("provider", "prov-token"),
          "cons": ("consumer", "cons-token")}


class Node:
    """nlbd with the API and a registry, started with a descriptor limit
    of its own (the hard limit it may raise its soft limit to)."""

    def __init__(self, body, fd_limit=None):
        self.dir = tempfile.mkdtemp(prefix="nlb-scale-")
        self.events_path = os.path.join(self.dir, "events.log")
        self.access_path = os.path.join(self.dir, "access.log")
        self.api_port = free_port()
        principals = ",\n".join(
            '  { name = "%s"; role = "%s"; token_sha256 = "%s"; }' %
            (name, role, hashlib.sha256(token.encode()).hexdigest())
            for name, (role, token) in TOKENS.items())
        self.config_path = os.path.join(self.dir, "nlb.cfg")
        with open(self.config_path, "w") as f:
            f.write('workers = 2;\nshutdown_timeout = "1s";\n'
                    'log = { access = "%s"; events = "%s"; };\n'
                    'api = { listen = "127.0.0.1:%d"; };\n'
                    'registry = { path = "%s/registry.db"; };\n'
                    'principals = (\n%s\n);\n%s' %
                    (self.access_path, self.events_path, self.api_port,
                     self.dir, principals, body))

        def limit():
            if fd_limit:
                resource.setrlimit(resource.RLIMIT_NOFILE,
                                   (fd_limit, fd_limit))
        self.proc = subprocess.Popen(
            [NLBD, "-c", self.config_path], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "stderr.log"), "w"),
            preexec_fn=limit)
        wait_until(lambda: "started" in self.events() or
                   self.proc.poll() is not None, timeout=20,
                   what="nlbd to start")
        assert self.proc.poll() is None, self.stderr()

    def events(self):
        try:
            with open(self.events_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def access(self):
        try:
            with open(self.access_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stderr(self):
        with open(os.path.join(self.dir, "stderr.log")) as f:
            return f.read()

    def api(self, who, method, path, body=None, timeout=10):
        return nlbtest.api_request(self.api_port, method, path,
                                   TOKENS[who][1], body, timeout)

    def metric(self, name):
        status, text = self.api("ops", "GET", "/metrics")
        assert status == 200, status
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError("no metric %s" % name)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        err = self.stderr()
        shutil.rmtree(self.dir, ignore_errors=True)
        for bad in ("Sanitizer", "runtime error:"):
            assert bad not in err, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Client:
    """One HTTP/1.1 keep-alive connection to the API."""

    def __init__(self, node, who):
        self.conn = http.client.HTTPConnection("127.0.0.1", node.api_port,
                                               timeout=30)
        self.headers = {"Authorization": "Bearer " + TOKENS[who][1],
                        "Content-Type": "application/json"}

    def call(self, method, path, body=None):
        self.conn.request(method, path,
                          body=None if body is None else
                          json.dumps(body).encode(), headers=self.headers)
        r = self.conn.getresponse()
        return r.status, json.loads(r.read())

    def close(self):
        self.conn.close()


PAGING_CFG = """networks = ( { name = "host"; range = "127.90.0.0/16"; } );
target_groups = ( { name = "tg";
  targets = ( { address = "127.0.0.1:9"; } ); } );
load_balancers = ( { name = "lb"; listeners = (
  { port = 8080; target_group = "tg"; } ); } );
"""


def create_endpoints(node, n, made, stop=None):
    """Creates n pending endpoints (the service asks for acceptance: no
    listener opens), appending their IDs to made."""
    client = Client(node, "cons")
    try:
        for _ in range(n):
            if stop is not None and stop.is_set():
                return
            status, ep = client.call("POST", "/v1/endpoints",
                                     {"service": "svc", "network": "host"})
            assert status == 201, (status, ep)
            made.append(ep["id"])
    finally:
        client.close()


def test_pages_see_each_endpoint_once_while_creating():
    """2,500 endpoints, then pages of 100 while another client keeps
    creating: every endpoint that existed before the first page is seen
    exactly once, no ID twice, and the list ends."""
    with Node(PAGING_CFG) as node:
        status, svc = node.api("prov", "POST", "/v1/services", {
            "name": "svc", "load_balancer": "lb",
            "acceptance_required": True, "allowed_principals": ["cons"]})
        assert status == 201, (status, svc)
        before = []
        threads = [threading.Thread(target=create_endpoints,
                                    args=(node, 1250, before))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(before) == 2500
        during, stop = [], threading.Event()
        creator = threading.Thread(target=create_endpoints,
                                   args=(node, 2000, during, stop))
        creator.start()
        seen, token, pages = [], None, 0
        client = Client(node, "cons")
        try:
            while True:
                path = "/v1/endpoints?limit=100"
                if token:
                    path += "&next_token=" + token
                status, page = client.call("GET", path)
                assert status == 200, (status, page)
                assert len(page["endpoints"]) <= 100
                seen += [ep["id"] for ep in page["endpoints"]]
                pages += 1
                token = page.get("next_token")
                if not token:
                    break
                time.sleep(0.02)  # let the creator in between pages
        finally:
            client.close()
            stop.set()
            creator.join()
        assert len(seen) == len(set(seen)), "an endpoint was seen twice"
        missing = set(before) - set(seen)
        assert not missing, "%d endpoints never seen" % len(missing)
        print("pages %d, seen %d = 2,500 before + %d of %d made meanwhile" %
              (pages, len(seen), len(seen) - 2500, len(during)))
        assert len(during) > 0, "nothing was created while paging"


FULL_CFG = """max_flows = %(max_flows)d;
target_groups = ( { name = "tg";
  health_check = { interval = "200ms"; timeout = "150ms";
                   healthy_threshold = 2; unhealthy_threshold = 2; };
  targets = ( { address = "127.0.0.1:%(a)d"; },
              { address = "127.0.0.1:%(b)d"; } ); } );
load_balancers = ( { name = "lb"; listeners = (
  { port = %(port)d; target_group = "tg"; bind = "127.0.0.1"; } ); } );
"""


def open_idle(port, n):
    """n connections through nlbd."""
    return [socket.create_connection(("127.0.0.1", port), timeout=5)
            for _ in range(n)]


def outcome(sock, wait=1.0):
    """'open' (an echo came back), 'reset', 'closed' or 'silent'."""
    sock.settimeout(wait)
    try:
        sock.sendall(b"x")
        data = sock.recv(1)
        return "open" if data == b"x" else "closed"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except socket.timeout:
        return "silent"


def new_flow_outcome(port):
    """A new connection's fate: on loopback a reset at accept may even
    beat connect() back."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except ConnectionResetError:
        return "reset"
    try:
        return outcome(s)
    finally:
        s.close()


def reset_close(socks):
    """Closes with a reset: the flows end now (a FIN would only half-close
    them, and a backend that holds on would keep them open)."""
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()


def capacity(node):
    m = re.search(r"flow capacity: (\d+) flows", node.events())
    assert m, node.events()
    return int(m.group(1))


def test_full_node_refuses_cleanly_and_stays_healthy():
    """A descriptor limit of 600 and more idle clients than the node may
    hold: the ones past max_flows are reset (end=limit) and the node says
    so once; the others keep flowing; both targets stay healthy for a
    second of 200 ms checks; the API answers."""
    a = Server(echo_handler)
    b = Server(echo_handler)
    port = free_port()
    # max_flows 0: from the limit.
    body = FULL_CFG % {"max_flows": 0, "a": a.port, "b": b.port,
                       "port": port}
    with Node(body, fd_limit=600) as node:
        limit = capacity(node)
        assert 100 < limit < 300, limit
        wait_until(lambda: node.events().count("-> healthy") >= 2,
                   what="both targets healthy")
        held = open_idle(port, limit)
        wait_until(lambda: node.metric("nlb_flows_active") >= limit,
                   what="%d flows" % limit)
        refused = [new_flow_outcome(port) for _ in range(40)]
        assert refused == ["reset"] * 40, refused
        # The rest keep flowing, spread over the node's life while full
        # (5 s for an echo: a Python target serving some 250 connections
        # on a loaded machine can take more than a second).
        for s in held[::25]:
            got = outcome(s, wait=5.0)
            assert got == "open", (held.index(s), got)
        time.sleep(1.0)  # five rounds of checks on a full node
        status, tg = node.api("ops", "GET", "/v1/target-groups/tg")
        assert status == 200, (status, tg)
        states = [t["state"] for t in tg["targets"]]
        assert states == ["healthy", "healthy"], tg
        assert "unhealthy" not in node.events()
        assert node.api("ops", "GET", "/healthz")[0] == 200
        assert node.metric("nlb_flows_refused_total") >= 40
        assert node.metric("nlb_flows_max") == limit
        wait_until(lambda: node.access().count("end=limit") >= 40,
                   what="40 end=limit lines")
        assert node.events().count("node full") == 1, node.events()
        for s in held[1::25]:
            got = outcome(s, wait=5.0)
            assert got == "open", (held.index(s), got)
        reset_close(held)
        # Room again: a new flow goes through.
        wait_until(lambda: node.metric("nlb_flows_active") < limit,
                   what="flows to end")
        assert new_flow_outcome(port) == "open"
    a.stop()
    b.stop()


def test_checks_out_of_descriptors_do_not_fail_targets():
    """nlbd's descriptor limit lowered under its feet (prlimit) so that
    no socket can open: the probes that cannot run are not failed checks
    (both targets stay healthy through five rounds, one warning says why),
    a client that comes meanwhile waits in the accept queue (one warning
    too); with the limit back, checks and flows go on."""
    a = Server(echo_handler)
    b = Server(echo_handler)
    port = free_port()
    body = FULL_CFG % {"max_flows": 0, "a": a.port, "b": b.port,
                       "port": port}
    with Node(body, fd_limit=600) as node:
        wait_until(lambda: node.events().count("-> healthy") >= 2,
                   what="both targets healthy")
        pid = node.proc.pid
        # Every descriptor number under 3 is taken: nothing new opens, what
        # is open works on.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, 600))
        try:
            client = socket.create_connection(("127.0.0.1", port), timeout=2)
            wait_until(lambda: "health check of tg/" in node.events(),
                       what="a check not run for want of descriptors")
            time.sleep(1.0)  # five rounds of 200 ms checks
            events = node.events()
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (600, 600))
        assert "unhealthy" not in events, events
        assert events.count("not run") == 1, events
        assert events.count("node full (Too many open files)") == 1, events
        # The client that waited is served now.
        assert outcome(client, wait=2.0) == "open"
        client.close()
        status, tg = node.api("ops", "GET", "/v1/target-groups/tg")
        assert [t["state"] for t in tg["targets"]] == ["healthy"] * 2, tg
    a.stop()
    b.stop()


HOLDER = r"""
import selectors, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(4096)
s.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(s, selectors.EVENT_READ)
print(s.getsockname()[1], flush=True)
held = []
while True:
    for key, _ in sel.select():
        while True:
            try:
                c, _ = s.accept()
            except BlockingIOError:
                break
            held.append(c)
"""


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def established_to(port):
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] == "01" and \
                    int(fields[2].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def connect_many(port, n):
    """n non-blocking connects, in batches the backlog can take."""
    socks = []
    while len(socks) < n:
        batch = []
        for _ in range(min(250, n - len(socks))):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            batch.append(c)
        sel = selectors.DefaultSelector()
        for c in batch:
            sel.register(c, selectors.EVENT_WRITE)
        left = len(batch)
        deadline = time.monotonic() + 10
        while left and time.monotonic() < deadline:
            for _key, _ in sel.select(timeout=1):
                sel.unregister(_key.fileobj)
                left -= 1
        sel.close()
        socks += batch
    return socks


def test_idle_flows_at_the_descriptor_limit():
    """As many idle flows as the hard limit leaves room for (max_flows
    from it), under 400 bytes of user memory each; one more is reset."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 8000:
        raise Skip("the hard descriptor limit (%d) is too small" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER],
                              stdout=subprocess.PIPE, text=True)
    try:
        backend = int(holder.stdout.readline())
        port = free_port()
        body = ("target_groups = ( { name = \"tg\"; targets = ( "
                "{ address = \"127.0.0.1:%d\"; } ); } );\n"
                "load_balancers = ( { name = \"lb\"; listeners = ( "
                "{ port = %d; target_group = \"tg\"; bind = \"127.0.0.1\"; "
                "} ); } );\n" % (backend, port))
        with Node(body) as node:
            limit = capacity(node)
            # The test needs one descriptor per client, the holder one
            # per flow: both under the same hard limit as nlbd.
            n = min(limit, hard - 200)
            warm = connect_many(port, 200)  # pools and first pages
            wait_until(lambda: established_to(backend) >= 200,
                       what="200 flows")
            reset_close(warm)
            wait_until(lambda: node.metric("nlb_flows_active") == 0,
                       what="warm-up flows to end")
            before = rss_kib(node.proc.pid)
            socks = connect_many(port, n)
            wait_until(lambda: established_to(backend) >= n, timeout=30,
                       what="%d flows" % n)
            time.sleep(0.5)
            per_flow = (rss_kib(node.proc.pid) - before) * 1024.0 / n
            print("%d idle flows (max_flows %d, hard limit %d): %.0f bytes "
                  "per flow" % (n, limit, hard, per_flow))
            with open(NLBD, "rb") as f:
                sanitized = b"__asan_init" in f.read()
            # AddressSanitizer's redzones make every allocation larger.
            assert per_flow < 400 or sanitized, per_flow
            if n == limit:
                assert new_flow_outcome(port) == "reset"
            assert node.api("ops", "GET", "/healthz")[0] == 200
            reset_close(socks)
    finally:
        holder.kill()
        holder.wait()


if __name__ == "__main__":
    run([test_pages_see_each_endpoint_once_while_creating,
         test_full_node_refuses_cleanly_and_stays_healthy,
         test_checks_out_of_descriptors_do_not_fail_targets,
         test_idle_flows_at_the_descriptor_limit], timeout=180)
