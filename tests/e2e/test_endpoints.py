#!/usr/bin/env python3
"""End to end, issue 6: private endpoints in consumer network namespaces.

Two consumer namespaces with the same address range (127.100.0.0/24, each
namespace has its own loopback, so nothing leaves the host) reach one
provider service through nlbd: HAProxy behind it parses the PROXY v2 header
and answers with the client address it got; a ppv2_receiver behind a second
listener records the 0xEA endpoint TLV. Pending and rejected endpoints
refuse connections, a reject resets running flows, allowed_sources blocks
a source at accept, a restart reopens available endpoints and an endpoint
that cannot listen is `failed` with the reason.

Needs root, `ip netns`, haproxy and curl (HTTP/2); says SKIP otherwise.
Namespaces are named nlbt-<role>-<pid> and always deleted."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nlbtest import (TOP_SRCDIR, Nlbd, Skip, free_port, run,  # noqa: E402
                     wait_until)
from netnstest import (at_exit, in_netns, netns_add, netns_del,  # noqa: E402
                       ns_connect, ns_refused, sh)

RECEIVER = os.path.join(TOP_SRCDIR, "tests", "tools", "ppv2_receiver.py")
PID = os.getpid()
RANGE = "127.100.0.0/24"
ENDPOINT_ADDRESS = "127.100.0.5"
CLIENT_A = "127.100.0.77"
CLIENT_B = "127.100.0.88"

# principal -> (role, token); the config holds only the tokens' SHA-256.
PRINCIPALS = {
    "ops": ("operator", "ops-token-e2e"),
    "payments": ("provider", "payments-token-e2e"),
    "shop-a": ("consumer", "shop-a-token-e2e"),
    "shop-b": ("consumer", "shop-b-token-e2e"),
}

# What ASan, LSan and UBSan print (a --enable-sanitizers build).
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:")

def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


_open_worlds = []


def _close_open_worlds():
    """At exit, even after a test timed out with its World still open:
    stop what it started (netnstest then deletes its namespaces)."""
    for world in list(_open_worlds):
        world.close()


at_exit(_close_open_worlds)


def ns_denied(name, host, port, source, within=1.0):
    """Connects inside namespace NAME from source and expects a reset at
    accept: on loopback the RST may already be there when connect()
    returns, when the request is sent, or with the first read. Returns the
    client port."""
    def fn():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((source, 0))
        client_port = s.getsockname()[1]
        s.settimeout(5)
        try:
            s.connect((host, port))
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        except (ConnectionResetError, BrokenPipeError):
            s.close()
            return client_port
        expect_reset(s, within)
        return client_port
    return in_netns(name, fn)


def http_get(sock):
    """GET / over sock; returns the response body (HAProxy closes)."""
    sock.sendall(b"GET / HTTP/1.0\r\nHost: service\r\n\r\n")
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] == b"200", data
    return body.decode().strip()


def expect_reset(sock, within=1.0):
    """The peer resets sock within `within` seconds (not a FIN, not
    silence). Returns the seconds it took."""
    started = time.monotonic()
    sock.settimeout(within + 0.5)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                raise AssertionError("got a FIN, not a reset")
    except ConnectionResetError:
        elapsed = time.monotonic() - started
        assert elapsed <= within, "reset after %.2fs" % elapsed
        return elapsed
    except socket.timeout:
        raise AssertionError("no reset within %.1fs" % within)
    finally:
        sock.close()


# ---- the world: namespaces, HAProxy, a PROXY v2 receiver, nlbd ----------------

HAPROXY_CFG = """global
  maxconn 200
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend service
  bind 127.0.0.1:%d accept-proxy
  http-request return status 200 content-type text/plain lf-string \
"client=%%[src] endpoint_side=%%[dst]:%%[dst_port]"
"""

NLB_CFG = """shutdown_timeout = "2s";
api = { listen = "127.0.0.1:%(api)d"; };
registry = { path = "%(dir)s/registry.db"; };
principals = (
%(principals)s
);
networks = (
  { name = "net-a"; netns = "%(ns_a)s"; range = "%(range)s";
    principals = [ "shop-a" ]; },
  { name = "net-b"; netns = "%(ns_b)s"; range = "%(range)s";
    principals = [ "shop-b" ]; },
  { name = "net-gone"; netns = "%(ns_gone)s"; range = "127.101.0.0/24";
    principals = [ "shop-a" ]; },
  { name = "host"; range = "127.0.0.0/24"; principals = [ "shop-a" ]; }
);
target_groups = (
  { name = "web-tg"; proxy_protocol = "v2";
    targets = ( { address = "127.0.0.1:%(haproxy)d"; } ); },
  { name = "probe-tg"; proxy_protocol = "v2";
    targets = ( { address = "127.0.0.1:%(receiver)d"; } ); }
);
load_balancers = ( { name = "shop-lb"; listeners = (
  { port = %(web)d; target_group = "web-tg"; bind = "127.0.0.1"; },
  { port = %(probe)d; target_group = "probe-tg"; bind = "127.0.0.1"; }
); } );
"""


def need_tools():
    if os.geteuid() != 0:
        raise Skip("needs root (network namespaces)")
    for tool in ("ip", "haproxy", "curl"):
        if shutil.which(tool) is None:
            raise Skip("%s is not installed" % tool)
    if "HTTP2" not in sh("curl", "--version").stdout:
        raise Skip("curl has no HTTP/2")


class World:
    """Namespaces nlbt-a-PID and nlbt-b-PID, HAProxy and a receiver on the
    host's loopback, nlbd with the API, and the provider's service
    "shop-web" (acceptance required, shop-a and shop-b allowed). Everything
    is stopped and deleted on exit."""

    def __init__(self):
        need_tools()
        self.ns_a = "nlbt-a-%d" % PID
        self.ns_b = "nlbt-b-%d" % PID
        self.ns_gone = "nlbt-gone-%d" % PID
        self.dir = tempfile.mkdtemp(prefix="nlbt-endpoints-")
        self.namespaces = []
        self.procs = []
        self.nlbd = None
        self.nlbds = []

    def __enter__(self):
        _open_worlds.append(self)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and exc_type is not Skip and self.nlbd:
            print("--- nlbd events\n%s--- access\n%s\n--- stderr\n%s" % (
                self.nlbd.events()[-4000:], "\n".join(self.nlbd.access()),
                self.nlbd.stderr()[-4000:]))
        reports = self.close()
        if exc_type is None and reports:
            raise AssertionError("nlbd's stderr has a sanitizer report:\n%s"
                                 % reports[0][-4000:])

    def _setup(self):
        for name in (self.ns_a, self.ns_b):
            netns_del(name)  # left over from a killed run with our pid
            netns_add(name)
            self.namespaces.append(name)
        netns_del(self.ns_gone)

        self.haproxy_port = free_port()
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(HAPROXY_CFG % self.haproxy_port)
        self.haproxy = self._spawn(["haproxy", "-db", "-f", cfg])
        wait_until(lambda: self._can_connect(self.haproxy_port),
                   what="haproxy")

        self.receiver_log = os.path.join(self.dir, "receiver.jsonl")
        self.receiver = self._spawn(
            [sys.executable, RECEIVER, "--listen", "127.0.0.1:0",
             "--log", self.receiver_log, "--reply", "hello\n"],
            stdout=subprocess.PIPE)
        line = self.receiver.stdout.readline()
        assert line.startswith("ready "), line
        self.receiver_port = int(line.split()[1])

        self.api_port = free_port()
        self.web_port = free_port()
        self.probe_port = free_port()
        self.config = NLB_CFG % {
            "api": self.api_port, "dir": self.dir, "range": RANGE,
            "ns_a": self.ns_a, "ns_b": self.ns_b, "ns_gone": self.ns_gone,
            "haproxy": self.haproxy_port, "receiver": self.receiver_port,
            "web": self.web_port, "probe": self.probe_port,
            "principals": ",\n".join(
                '  { name = "%s"; role = "%s"; token_sha256 = "%s"; }' % (
                    name, role, sha256_hex(token))
                for name, (role, token) in PRINCIPALS.items())}
        self.start_nlbd()
        code, svc = self.api("payments", "POST", "/v1/services", {
            "name": "shop-web", "load_balancer": "shop-lb",
            "acceptance_required": True,
            "allowed_principals": ["shop-a", "shop-b"]})
        assert code == 201, (code, svc)
        assert sorted(svc["ports"]) == sorted([self.web_port,
                                               self.probe_port]), svc
        self.service_id = svc["id"]

    def _spawn(self, args, stdout=subprocess.DEVNULL):
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=subprocess.DEVNULL, text=True)
        self.procs.append(proc)
        return proc

    @staticmethod
    def _can_connect(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def start_nlbd(self):
        self.nlbd = Nlbd(self.config)
        self.nlbds.append(self.nlbd)
        self.nlbd.start()
        wait_until(lambda: self._can_connect(self.api_port), what="api")
        return self.nlbd

    def close(self):
        """Stops and deletes everything; returns the sanitizer reports
        found in the stderr of each nlbd this world started."""
        reports = []
        for nlbd in self.nlbds:
            nlbd.stop(timeout=10)
            err = nlbd.stderr()
            if any(mark in err for mark in SANITIZER_MARKS):
                reports.append(err)
            shutil.rmtree(nlbd.dir, ignore_errors=True)
        self.nlbds = []
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout:
                proc.stdout.close()
        for name in self.namespaces + [self.ns_gone]:
            netns_del(name)
        self.namespaces = []
        shutil.rmtree(self.dir, ignore_errors=True)
        if self in _open_worlds:
            _open_worlds.remove(self)
        return reports

    # ---- the API, as curl --http2-prior-knowledge sees it ----

    def api(self, who, method, path, body=None):
        args = ["curl", "--http2-prior-knowledge", "-s", "-S", "-X", method,
                "--max-time", "5", "-w", "\n%{http_code}",
                "-H", "Authorization: Bearer " + PRINCIPALS[who][1]]
        if body is not None:
            args += ["-H", "Content-Type: application/json",
                     "--data-binary", json.dumps(body)]
        args.append("http://127.0.0.1:%d%s" % (self.api_port, path))
        r = subprocess.run(args, capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, "curl: %s" % r.stderr
        text, _, code = r.stdout.rpartition("\n")
        return int(code), json.loads(text) if text else None

    def metrics(self):
        r = sh("curl", "--http2-prior-knowledge", "-s", "--max-time", "5",
               "-H", "Authorization: Bearer " + PRINCIPALS["ops"][1],
               "http://127.0.0.1:%d/metrics" % self.api_port)
        return r.stdout

    def request(self, consumer, network, address=ENDPOINT_ADDRESS,
                allowed_sources=None):
        body = {"service": "shop-web", "network": network,
                "address": address}
        if allowed_sources is not None:
            body["allowed_sources"] = allowed_sources
        code, ep = self.api(consumer, "POST", "/v1/endpoints", body)
        assert code == 201, (code, ep)
        assert ep["state"] == "pendingAcceptance", ep
        assert ep["id"].startswith("ep-"), ep
        return ep["id"]

    def decide(self, verb, *endpoint_ids):
        code, answer = self.api(
            "payments", "POST",
            "/v1/services/%s/connections/%s" % (self.service_id, verb),
            {"endpoint_ids": list(endpoint_ids)})
        assert code == 200 and answer["unsuccessful"] == [], (code, answer)

    def endpoint(self, consumer, endpoint_id):
        code, ep = self.api(consumer, "GET", "/v1/endpoints/" + endpoint_id)
        assert code == 200, (code, ep)
        return ep

    def wait_placed(self, consumer, endpoint_id):
        """The endpoint's placements once this node reported it open (the
        report follows the opening)."""
        return wait_until(
            lambda: (lambda ps: ps if [p["state"] for p in ps] == ["open"]
                     else None)(
                self.endpoint(consumer, endpoint_id)["placements"]),
            what="endpoint %s placed open" % endpoint_id)

    def wait_open(self, endpoint_id):
        wait_until(lambda: "endpoint %s of service" % endpoint_id
                   in self.nlbd.events(), what="endpoint %s open" %
                   endpoint_id)

    def received(self):
        """The receiver's records of flows that carried a PROXY header."""
        try:
            with open(self.receiver_log) as f:
                records = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []
        return [r for r in records if r["command"] == "PROXY"]

    def access_line(self, *needles, timeout=5):
        return wait_until(
            lambda: next((line for line in self.nlbd.access()
                          if all(n in line for n in needles)), None),
            timeout=timeout, what="access-log line with %s" % (needles,))

    def two_available(self):
        """Both consumers ask for ENDPOINT_ADDRESS; the provider accepts
        both. Returns (endpoint a, endpoint b)."""
        ep_a = self.request("shop-a", "net-a")
        ep_b = self.request("shop-b", "net-b")
        self.decide("accept", ep_a, ep_b)
        self.wait_open(ep_a)
        self.wait_open(ep_b)
        return ep_a, ep_b

    def ask_web(self, ns, source):
        return http_get(ns_connect(ns, ENDPOINT_ADDRESS, self.web_port,
                                   source))

    def echo_probe(self, ns, source):
        """One flow to the receiver through the endpoint: hello, echo."""
        with ns_connect(ns, ENDPOINT_ADDRESS, self.probe_port, source) as s:
            assert s.recv(6) == b"hello\n"
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"
            return s.getsockname()


# ---- the tests -------------------------------------------------------------

def test_overlapping_consumers_reach_the_service():
    """Two namespaces, the same range and the same endpoint address: each
    consumer reaches the service from its own namespace; HAProxy sees each
    client's own address; the receiver sees each endpoint's ID in the 0xEA
    TLV; the LB's own listener carries the client address and no 0xEA."""
    with World() as w:
        ep_a, ep_b = w.two_available()
        assert ep_a != ep_b
        for who, ep in (("shop-a", ep_a), ("shop-b", ep_b)):
            got = w.endpoint(who, ep)
            assert got["state"] == "available" and \
                got["address"] == ENDPOINT_ADDRESS, got

        # The README's command: curl inside the namespace.
        r = sh("ip", "netns", "exec", w.ns_a, "curl", "-s", "--max-time", "5",
               "--interface", CLIENT_A,
               "http://%s:%d/" % (ENDPOINT_ADDRESS, w.web_port))
        expected_a = "client=%s endpoint_side=%s:%d" % (
            CLIENT_A, ENDPOINT_ADDRESS, w.web_port)
        assert r.stdout.strip() == expected_a, r
        assert w.ask_web(w.ns_a, CLIENT_A) == expected_a
        assert w.ask_web(w.ns_b, CLIENT_B) == "client=%s endpoint_side=%s:%d" \
            % (CLIENT_B, ENDPOINT_ADDRESS, w.web_port)

        # The endpoint address exists only inside the namespaces.
        try:
            socket.create_connection((ENDPOINT_ADDRESS, w.web_port),
                                     timeout=1).close()
            raise AssertionError("the endpoint answers on the host")
        except ConnectionRefusedError:
            pass

        src_a = w.echo_probe(w.ns_a, CLIENT_A)
        src_b = w.echo_probe(w.ns_b, CLIENT_B)
        with socket.create_connection(("127.0.0.1", w.probe_port), 5) as s:
            assert s.recv(6) == b"hello\n"
            src_host = s.getsockname()
        records = wait_until(lambda: len(w.received()) >= 3 and
                             w.received(), what="3 receiver records")
        by_src = {r["src"]: r for r in records}
        dst = "%s:%d" % (ENDPOINT_ADDRESS, w.probe_port)
        for (host, port), ep in ((src_a, ep_a), (src_b, ep_b)):
            rec = by_src["%s:%d" % (host, port)]
            assert rec["error"] is None and rec["family"] == "tcp4", rec
            assert rec["dst"] == dst, rec
            assert rec["tlvs"].get("0xea") == {"subtype": 1, "value": ep}, rec
        rec = by_src["%s:%d" % src_host]
        assert rec["dst"] == "127.0.0.1:%d" % w.probe_port, rec
        assert "0xea" not in rec["tlvs"], rec

        # The access log names the endpoint, or "-" for the LB's listener.
        w.access_line(" %s %s:%d " % (ep_a, CLIENT_A, src_a[1]))
        w.access_line(" %s %s:%d " % (ep_b, CLIENT_B, src_b[1]))
        w.access_line(" - 127.0.0.1:%d " % src_host[1])

        # Each consumer sees its own endpoint only.
        code, _ = w.api("shop-b", "GET", "/v1/endpoints/" + ep_a)
        assert code == 404, code

        metrics = w.metrics()
        assert 'nlb_endpoints{service="shop-web",state="available"} 2' \
            in metrics, metrics
        for ep in (ep_a, ep_b):
            assert ('nlb_new_flows_total{lb="shop-lb",listener="%d",'
                    'endpoint="%s"} 1' % (w.probe_port, ep)) in metrics, \
                metrics


def test_pending_and_rejected_are_refused_and_reject_resets():
    """No listener for a pending or rejected endpoint; rejecting an
    available endpoint (or the consumer deleting it) closes its listeners
    and resets its running flow within a second (end=endpoint_closed), and
    its placement says so (closed, not open)."""
    with World() as w:
        ep_a = w.request("shop-a", "net-a")
        ep_b = w.request("shop-b", "net-b")
        assert ns_refused(w.ns_a, ENDPOINT_ADDRESS, w.web_port, CLIENT_A)
        w.decide("reject", ep_a)
        assert w.endpoint("shop-a", ep_a)["state"] == "rejected"
        assert ns_refused(w.ns_a, ENDPOINT_ADDRESS, w.web_port, CLIENT_A)
        assert ns_refused(w.ns_a, ENDPOINT_ADDRESS, w.probe_port, CLIENT_A)

        w.decide("accept", ep_b)
        w.wait_open(ep_b)
        w.wait_placed("shop-b", ep_b)
        flow = ns_connect(w.ns_b, ENDPOINT_ADDRESS, w.probe_port, CLIENT_B)
        assert flow.recv(6) == b"hello\n"
        flow.sendall(b"ping")
        assert flow.recv(4) == b"ping"
        client_port = flow.getsockname()[1]
        w.decide("reject", ep_b)
        expect_reset(flow, within=1.0)
        w.access_line(" %s %s:%d " % (ep_b, CLIENT_B, client_port),
                      "end=endpoint_closed")
        rejected = w.endpoint("shop-b", ep_b)
        assert rejected["state"] == "rejected", rejected
        assert [(p["state"], p["reason"]) for p in rejected["placements"]] \
            == [("closed", "")], rejected
        assert ns_refused(w.ns_b, ENDPOINT_ADDRESS, w.probe_port, CLIENT_B)
        assert ns_refused(w.ns_b, ENDPOINT_ADDRESS, w.web_port, CLIENT_B)

        # The consumer deleting an available endpoint does the same.
        ep_c = w.request("shop-a", "net-a")
        w.decide("accept", ep_c)
        w.wait_open(ep_c)
        w.wait_placed("shop-a", ep_c)
        flow = ns_connect(w.ns_a, ENDPOINT_ADDRESS, w.probe_port, CLIENT_A)
        assert flow.recv(6) == b"hello\n"
        client_port = flow.getsockname()[1]
        code, ep = w.api("shop-a", "DELETE", "/v1/endpoints/" + ep_c)
        assert code == 200 and ep["state"] == "deleted", (code, ep)
        assert [p["state"] for p in ep["placements"]] == ["closed"], ep
        expect_reset(flow, within=1.0)
        w.access_line(" %s %s:%d " % (ep_c, CLIENT_A, client_port),
                      "end=endpoint_closed")
        assert ns_refused(w.ns_a, ENDPOINT_ADDRESS, w.probe_port, CLIENT_A)


def test_allowed_sources_deny_at_accept():
    """PATCH allowed_sources takes effect at once for new flows: a source
    outside the list is reset at accept (end=source_denied), the listed one
    works, and clearing the list lets everyone in again."""
    with World() as w:
        ep_a = w.request("shop-a", "net-a")
        w.decide("accept", ep_a)
        w.wait_open(ep_a)
        assert w.ask_web(w.ns_a, CLIENT_B).startswith("client=" + CLIENT_B)

        code, ep = w.api("shop-a", "PATCH", "/v1/endpoints/" + ep_a,
                         {"allowed_sources": [CLIENT_A + "/32"]})
        assert code == 200 and ep["allowed_sources"] == [CLIENT_A + "/32"], \
            (code, ep)
        denied_port = ns_denied(w.ns_a, ENDPOINT_ADDRESS, w.web_port,
                                CLIENT_B)
        w.access_line(" %s %s:%d " % (ep_a, CLIENT_B, denied_port),
                      "end=source_denied")
        assert w.ask_web(w.ns_a, CLIENT_A).startswith("client=" + CLIENT_A)

        code, ep = w.api("shop-a", "PATCH", "/v1/endpoints/" + ep_a,
                         {"allowed_sources": []})
        assert code == 200 and ep["allowed_sources"] == [], (code, ep)
        assert w.ask_web(w.ns_a, CLIENT_B).startswith("client=" + CLIENT_B)

        # Sources given with the request hold from the first flow.
        ep_b = w.request("shop-b", "net-b", allowed_sources=[
            CLIENT_B + "/32"])
        w.decide("accept", ep_b)
        w.wait_open(ep_b)
        port = ns_denied(w.ns_b, ENDPOINT_ADDRESS, w.probe_port, CLIENT_A)
        w.access_line(" %s %s:%d " % (ep_b, CLIENT_A, port),
                      "end=source_denied")
        w.echo_probe(w.ns_b, CLIENT_B)


def test_restart_reopens_and_failed_says_why():
    """After SIGTERM and a start on the same registry, available endpoints
    listen again; an endpoint whose namespace is gone, or whose address is
    taken (by a socket without SO_REUSEPORT, or by the load balancer's own
    listener), is `failed` with the reason."""
    with World() as w:
        ep_a, ep_b = w.two_available()
        assert w.ask_web(w.ns_a, CLIENT_A).startswith("client=" + CLIENT_A)
        code, _ = w.api("shop-a", "PATCH", "/v1/endpoints/" + ep_a,
                        {"allowed_sources": [CLIENT_A + "/32"]})
        assert code == 200, code

        # A namespace that does not exist.
        ep_gone = w.request("shop-a", "net-gone", "127.101.0.5")
        w.decide("accept", ep_gone)
        got = wait_until(lambda: (lambda e: e["state"] == "failed" and e)(
            w.endpoint("shop-a", ep_gone)), what="failed endpoint")
        assert w.ns_gone in got["reason"], got

        # An address in use by a socket that did not ask for SO_REUSEPORT.
        def squat():
            s = socket.socket()
            s.bind(("127.100.0.9", w.web_port))
            s.listen(1)
            return s
        squatter = in_netns(w.ns_b, squat)
        try:
            ep_busy = w.request("shop-b", "net-b", "127.100.0.9")
            w.decide("accept", ep_busy)
            got = wait_until(lambda: (lambda e: e["state"] == "failed" and e)(
                w.endpoint("shop-b", ep_busy)), what="failed endpoint")
            assert "127.100.0.9:%d" % w.web_port in got["reason"] and \
                "in use" in got["reason"], got
        finally:
            squatter.close()

        # On the host, where the load balancer's own listeners are bound
        # with SO_REUSEPORT: sharing them would hand the endpoint's flows to
        # the plain listener (no 0xEA, no allow-list), so it fails instead.
        ep_host = w.request("shop-a", "host", "127.0.0.1")
        w.decide("accept", ep_host)
        got = wait_until(lambda: (lambda e: e["state"] == "failed" and e)(
            w.endpoint("shop-a", ep_host)), what="failed endpoint")
        assert "127.0.0.1:" in got["reason"] and "in use" in got["reason"], \
            got
        assert sh("curl", "-s", "--max-time", "5", "http://127.0.0.1:%d/"
                  % w.web_port).stdout.strip().startswith("client=127.0.0.1")

        # Restart; meanwhile namespace b disappears.
        assert w.nlbd.stop() == 0, w.nlbd.stderr()
        netns_del(w.ns_b)
        w.namespaces.remove(w.ns_b)
        w.start_nlbd()
        w.wait_open(ep_a)
        assert w.endpoint("shop-a", ep_a)["state"] == "available"
        assert w.ask_web(w.ns_a, CLIENT_A).startswith("client=" + CLIENT_A)
        w.echo_probe(w.ns_a, CLIENT_A)
        # The allow-list came back from the registry with the endpoint.
        port = ns_denied(w.ns_a, ENDPOINT_ADDRESS, w.web_port, CLIENT_B)
        w.access_line(" %s %s:%d " % (ep_a, CLIENT_B, port),
                      "end=source_denied")
        got = wait_until(lambda: (lambda e: e["state"] == "failed" and e)(
            w.endpoint("shop-b", ep_b)), what="endpoint b failed")
        assert w.ns_b in got["reason"], got


def test_namespace_deleted_or_replaced_while_running():
    """What a restart would do, without one: a namespace deleted under an
    available endpoint fails it with the reason; one deleted and added
    again gets the endpoint back (its old flows are reset)."""
    with World() as w:
        ep_a, ep_b = w.two_available()
        flow = ns_connect(w.ns_a, ENDPOINT_ADDRESS, w.probe_port, CLIENT_A)
        assert flow.recv(6) == b"hello\n"

        netns_del(w.ns_a)
        netns_add(w.ns_a)
        expect_reset(flow, within=2.5)
        wait_until(lambda: not ns_refused(w.ns_a, ENDPOINT_ADDRESS,
                                          w.web_port, CLIENT_A),
                   timeout=3, what="endpoint a in the new namespace")
        assert w.ask_web(w.ns_a, CLIENT_A).startswith("client=" + CLIENT_A)
        w.echo_probe(w.ns_a, CLIENT_A)
        assert w.endpoint("shop-a", ep_a)["state"] == "available"
        # The event log is written by its own thread, a little later.
        wait_until(lambda: "was replaced" in w.nlbd.events(),
                   what="the event that says the namespace was replaced")

        netns_del(w.ns_b)
        w.namespaces.remove(w.ns_b)
        got = wait_until(lambda: (lambda e: e["state"] == "failed" and e)(
            w.endpoint("shop-b", ep_b)), timeout=5, what="endpoint b failed")
        assert "network namespace %s was deleted" % w.ns_b in got["reason"], \
            got


def test_reload_adds_port_to_open_endpoint():
    """A port added to the load balancer by SIGHUP opens on an endpoint
    that is already available, without resetting its running flows."""
    with World() as w:
        ep_a = w.request("shop-a", "net-a")
        w.decide("accept", ep_a)
        w.wait_open(ep_a)
        flow = ns_connect(w.ns_a, ENDPOINT_ADDRESS, w.probe_port, CLIENT_A)
        assert flow.recv(6) == b"hello\n"
        extra = free_port()
        old = '{ port = %d; target_group = "probe-tg"; bind = "127.0.0.1"; }' \
            % w.probe_port
        assert old in w.config
        w.nlbd.reload(w.config.replace(
            old, old + ',\n  { port = %d; target_group = "probe-tg"; }'
            % extra))
        wait_until(lambda: not ns_refused(w.ns_a, ENDPOINT_ADDRESS, extra,
                                          CLIENT_A),
                   timeout=3, what="the new port on the open endpoint")
        with ns_connect(w.ns_a, ENDPOINT_ADDRESS, extra, CLIENT_A) as s:
            assert s.recv(6) == b"hello\n"
        flow.sendall(b"ping")
        assert flow.recv(4) == b"ping", "the running flow was cut"
        flow.close()
        assert extra in w.endpoint("shop-a", ep_a)["ports"]


if __name__ == "__main__":
    run([test_overlapping_consumers_reach_the_service,
         test_pending_and_rejected_are_refused_and_reject_resets,
         test_allowed_sources_deny_at_accept,
         test_restart_reopens_and_failed_says_why,
         test_namespace_deleted_or_replaced_while_running,
         test_reload_adds_port_to_open_endpoint], timeout=60)
