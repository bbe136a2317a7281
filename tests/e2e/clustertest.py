"""A cluster of nlbd nodes on one PostgreSQL, on this machine, for tests and
benchmarks of the control plane: PostgreSQL of its own (pgtest), N nodes,
each with its own API port and its own namespace for the consumer network
"shop-vpc" (nlbt-nI-PID: each namespace has its own loopback, so the
network's range is 127.90.0.0/24 everywhere and nothing leaves the host),
and an echo backend on the host's loopback. Needs root; stdlib only.

    with Cluster(3) as c:
        c.api(1, "POST", "/v1/services", "payments", {...})
        c.echo_in(2, address)      # a flow through node 2's endpoint
"""

import hashlib
import http.client
import json
import os
import signal
import socket
import time

import netnstest
import nlbtest
import pgtest
from nlbtest import Nlbd, Server, Skip, echo_handler, free_port, wait_until

RANGE = "127.90.0.0/24"

PRINCIPALS = {
    "ops": ("operator", "ops-token-cluster"),
    "payments": ("provider", "payments-token-cluster"),
    "shop": ("consumer", "shop-token-cluster"),
    "shop2": ("consumer", "shop2-token-cluster"),
}

NODE_CFG = """shutdown_timeout = "2s";
node = { name = "%(node)s"; %(node_extra)s };
api = { listen = "127.0.0.1:%(api)d"; };
registry = { postgresql = "%(conninfo)s"; %(registry_extra)s };
principals = (
%(principals)s
);
networks = (
  { name = "shop-vpc"; netns = "%(netns)s"; range = "%(range)s"; }
);
target_groups = (
  { name = "tg";
    health_check = { interval = "1s"; timeout = "1s"; healthy_threshold = 1; };
    targets = ( { address = "127.0.0.1:%(backend)d"; } ); }
);
load_balancers = (
  { name = "lb"; listeners = ( { port = %(lb)d; target_group = "tg"; } ); }
);
"""


def bearer(who):
    """The token of a config principal, or who itself when it is a token
    the API made ("nlb_...")."""
    return who if who.startswith("nlb_") else PRINCIPALS[who][1]


def need_root():
    if os.geteuid() != 0:
        raise Skip("needs root (network namespaces)")


class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__("%d %s" % (status, body))
        self.status = status
        self.body = body


class Cluster:
    def __init__(self, n=3, registry_extra="", node_extra=None):
        need_root()
        try:
            self.pg = pgtest.Postgres()
        except pgtest.Unavailable as e:
            raise Skip(str(e))
        self.n = n
        self.registry_extra = registry_extra
        self.node_extra = node_extra or {}  # node number -> node settings
        self.backend = Server(echo_handler)
        self.lb_port = free_port()
        self.nodes = {}
        self.api_ports = {}
        for i in range(1, n + 1):
            netnstest.netns_add(self.netns(i))
            self.api_ports[i] = free_port()
        netnstest.at_exit(self.close)

    @staticmethod
    def netns(i):
        return netnstest.name("n%d" % i)

    def config(self, i):
        principals = ",\n".join(
            '  { name = "%s"; role = "%s"; token_sha256 = "%s"; }' % (
                name, role, hashlib.sha256(token.encode()).hexdigest())
            for name, (role, token) in PRINCIPALS.items())
        return NODE_CFG % {
            "node": "n%d" % i, "api": self.api_ports[i],
            "conninfo": self.pg.conninfo, "principals": principals,
            "registry_extra": self.registry_extra,
            "node_extra": self.node_extra.get(i, ""),
            "netns": self.netns(i), "range": RANGE,
            "backend": self.backend.port, "lb": self.lb_port}

    def start(self, i):
        node = Nlbd(self.config(i))
        node.start(wait_port=self.api_ports[i])
        self.nodes[i] = node
        return node

    def __enter__(self):
        try:
            for i in range(1, self.n + 1):
                self.start(i)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and exc_type is not Skip:
            for i, node in self.nodes.items():
                print("--- node n%d events\n%s\n--- stderr\n%s" % (
                    i, node.events()[-3000:], node.stderr()[-2000:]))
        self.close()

    def close(self):
        for node in self.nodes.values():
            try:
                node.kill()
            except Exception:
                pass
        self.nodes = {}
        self.backend.stop()
        self.pg.close()
        for i in range(1, self.n + 1):
            netnstest.netns_del(self.netns(i))

    def kill(self, i):
        self.nodes[i].proc.send_signal(signal.SIGKILL)
        self.nodes[i].proc.wait(timeout=10)

    # ---- the API, HTTP/1.1 ----

    def call(self, i, method, path, who, body=None, timeout=10):
        """(status, decoded JSON or text) of one request to node i."""
        return nlbtest.api_request(self.api_ports[i], method, path,
                                   bearer(who), body, timeout)

    def api(self, i, method, path, who, body=None, status=None):
        got, answer = self.call(i, method, path, who, body)
        if status is None and got >= 300 or status is not None and \
                got != status:
            raise ApiError(got, answer)
        return answer

    def health(self, i, timeout=5):
        """(status, decoded JSON) of node i's GET /healthz, tokenless as a
        load balancer's probe."""
        conn = http.client.HTTPConnection("127.0.0.1", self.api_ports[i],
                                          timeout=timeout)
        try:
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read().decode())
        finally:
            conn.close()

    def wait_health(self, i, status, timeout=10):
        """Node i's /healthz answer once its status is `status`."""
        return wait(lambda: (lambda r: r[1] if r[0] == status else None)(
            self.health(i)), timeout=timeout,
            what="node %d's /healthz to answer %d" % (i, status))

    def events(self, i, who="ops", after=0, quiet=0.5, limit=None):
        """The events after seq `after` that node i streams, until the
        stream has been quiet for `quiet` seconds."""
        s = socket.create_connection(("127.0.0.1", self.api_ports[i]),
                                     timeout=5)
        s.sendall(("GET /v1/events?after=%d HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer %s\r\n\r\n" % (
                       after, bearer(who))).encode())
        data = b""
        try:
            while limit is None or data.count(b"\n{") < limit:
                # The first event may take a while on a loaded machine
                # (the head, then a read of the store): quiet counts
                # from it.
                s.settimeout(quiet if b"\n{" in data else max(quiet, 5))
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        s.close()
        return parse_chunked_ndjson(data)

    # ---- the data plane ----

    def echo_in(self, i, address, payload=b"ping"):
        """True when a flow into node i's namespace for shop-vpc, to
        address on the LB port, is echoed."""
        try:
            s = netnstest.ns_connect(self.netns(i), address, self.lb_port,
                                     timeout=2)
        except OSError:
            return False
        try:
            s.sendall(payload)
            return nlbtest.recv_exact(s, len(payload)) == payload
        except OSError:
            return False
        finally:
            s.close()

    def listening_in(self, i, address):
        """True when something accepts at address:lb_port in node i's
        namespace (the endpoint's listener is open there)."""
        try:
            netnstest.ns_connect(self.netns(i), address, self.lb_port,
                                 timeout=1).close()
            return True
        except OSError:
            return False


def parse_chunked_ndjson(data):
    """The JSON lines of an HTTP/1.1 chunked NDJSON answer."""
    _, _, body = data.partition(b"\r\n\r\n")
    out, lines = b"", body
    while lines:
        size_line, _, rest = lines.partition(b"\r\n")
        try:
            size = int(size_line.strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        lines = rest[size + 2:]
    return [json.loads(l) for l in out.decode().splitlines() if l.strip()]


def wait(predicate, timeout=10, what="condition"):
    return wait_until(predicate, timeout=timeout, interval=0.01, what=what)


def now():
    return time.monotonic()
