#!/usr/bin/env python3
"""End to end, issue 17 (phase 2): nlbd answers DNS for endpoints.

Two consumer networks with the same range (127.90.0.0/24) in two
namespaces, each with its responder at 127.90.0.2 (each namespace has its
own loopback, so nothing leaves the host) and /etc/netns/NAME/resolv.conf
pointing at it. A veth pair between the two namespaces gives each a
non-loopback interface (127.91.0.1/30 and 127.91.0.2/30): without one,
curl's getaddrinfo (AI_ADDRCONFIG) asks no DNS at all.

- Inside each namespace, `dig @127.90.0.2 payments.nlb.internal` answers
  that consumer's own endpoint; `curl http://payments.nlb.internal:PORT/`
  reaches the service through it; `getent hosts` resolves the private DNS
  name only where the endpoint opted in (private_dns).
- A consumer's network never answers another consumer's names.
- A provider's private_dns_name outside its granted domains gets 403.
- Accept: names resolve within a second; reject: NXDOMAIN within a second;
  a renamed private DNS name moves within a second; opting in and out.
- The operator's /metrics carries the DNS series, a provider's does not.
- A reload (new TTL, a network's responder removed) and a restart.
- Under a descriptor limit of 640, a client in each network holding 128
  TCP connections to its responder leaves every one of 200 new flows
  served: the responders keep to their part of the descriptor plan.
- Two nodes of a cluster on one PostgreSQL answer the same names.

Needs root, `ip netns`, dig, curl and getent (and PostgreSQL for the
cluster case); says SKIP otherwise. Namespaces are dns2-<role>-<pid>, the
resolv.conf files /etc/netns/dns2-<role>-<pid>; all are deleted."""

import hashlib
import os
import random
import re
import resource
import shutil
import socket
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nlbtest import (Nlbd, Server, Skip, free_port, http_handler,  # noqa
                     run, wait_until)
import netnstest  # noqa: E402
import nlbtest  # noqa: E402
from netnstest import at_exit, in_netns, sh  # noqa: E402

PID = os.getpid()
RANGE = "127.90.0.0/24"
DNS = "127.90.0.2"
ZONE = "nlb.internal"
SHOP_ADDRESS = "127.90.0.10"
BLOG_ADDRESS = "127.90.0.20"
PRIVATE = "api.payments.example"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:")

PRINCIPALS = {
    "ops": ("operator", "ops-token-dns"),
    "payments": ("provider", "payments-token-dns"),
    "search": ("provider", "search-token-dns"),
    "shop": ("consumer", "shop-token-dns"),
    "blog": ("consumer", "blog-token-dns"),
}
DOMAINS = {"payments": ["payments.example"], "search": ["search.example"]}


def principals_config(principals=PRINCIPALS):
    items = []
    for name, (role, token) in principals.items():
        extra = ""
        if name in DOMAINS:
            extra = " dns_domains = [ %s ];" % ", ".join(
                '"%s"' % d for d in DOMAINS[name])
        items.append('  { name = "%s"; role = "%s"; token_sha256 = "%s";%s }'
                     % (name, role, hashlib.sha256(token.encode())
                        .hexdigest(), extra))
    return ",\n".join(items)


def need(*tools):
    if os.geteuid() != 0:
        raise Skip("needs root (network namespaces)")
    for tool in tools:
        if shutil.which(tool) is None:
            raise Skip("%s is not installed" % tool)


# ---- namespaces with a resolver ------------------------------------------

_resolv_dirs = []


def netns_with_resolver(role):
    """Namespace dns2-ROLE-PID with /etc/netns/NAME/resolv.conf naming the
    responder alone (ip netns exec mounts it over /etc/resolv.conf)."""
    name = "dns2-%s-%d" % (role, PID)
    netnstest.netns_add(name)
    directory = "/etc/netns/" + name
    os.makedirs(directory, exist_ok=True)
    _resolv_dirs.append(directory)
    with open(os.path.join(directory, "resolv.conf"), "w") as f:
        f.write("nameserver %s\noptions timeout:1 attempts:2\n" % DNS)
    return name


def _remove_resolv_dirs():
    for directory in _resolv_dirs:
        shutil.rmtree(directory, ignore_errors=True)


at_exit(_remove_resolv_dirs)


def veth_between(a, b):
    """A veth pair between namespaces a and b, 127.91.0.1/30 in a and .2 in
    b: a non-loopback interface for getaddrinfo's AI_ADDRCONFIG."""
    sh("ip", "link", "add", "d2a%d" % PID, "netns", a, "type", "veth",
       "peer", "name", "d2b%d" % PID, "netns", b)
    for ns, dev, addr in ((a, "d2a%d" % PID, "127.91.0.1/30"),
                          (b, "d2b%d" % PID, "127.91.0.2/30")):
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)


# ---- DNS, asked from inside a namespace ------------------------------------

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN",
          4: "NOTIMP", 5: "REFUSED"}


def _skip_name(data, at):
    while True:
        length = data[at]
        if length == 0:
            return at + 1
        if length & 0xC0 == 0xC0:
            return at + 2
        at += 1 + length


def ask(ns, name, qtype=1, server=DNS, timeout=1.0):
    """One UDP query from inside ns: (rcode name, [addresses], [TTLs]), or
    (None, [], []) when nothing came back in time."""
    qid = random.randrange(65536)
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        query += bytes([len(label)]) + label.encode()
    query += b"\0" + struct.pack(">HH", qtype, 1)

    def fn():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        try:
            s.sendto(query, (server, 53))
            while True:
                data = s.recv(4096)
                if struct.unpack(">H", data[:2])[0] == qid:
                    return data
        except socket.timeout:
            return None
        finally:
            s.close()
    data = in_netns(ns, fn)
    if data is None:
        return None, [], []
    flags, qd, an = struct.unpack(">HHH", data[2:8])
    at = 12
    for _ in range(qd):
        at = _skip_name(data, at) + 4
    addresses, ttls = [], []
    for _ in range(an):
        at = _skip_name(data, at)
        rtype, _, ttl, length = struct.unpack(">HHIH", data[at:at + 10])
        at += 10
        if rtype == 1:
            addresses.append(socket.inet_ntoa(data[at:at + length]))
            ttls.append(ttl)
        at += length
    return RCODES.get(flags & 0xF, str(flags & 0xF)), sorted(addresses), ttls


def answers(ns, name):
    """("NOERROR", [addresses]) and the like."""
    rcode, addresses, _ = ask(ns, name)
    return rcode, addresses


def within_a_second(ns, name, want, since):
    """Waits until name answers want in ns; asserts it did within a second
    of `since` (the API's answer). Returns the seconds it took."""
    deadline = since + 5
    got = None
    while time.monotonic() < deadline:
        got = answers(ns, name)
        if got == want:
            elapsed = time.monotonic() - since
            assert elapsed <= 1.0, "%s in %s: %r after %.2fs" % (
                name, ns, want, elapsed)
            return elapsed
        time.sleep(0.02)
    raise AssertionError("%s in %s: want %r, still %r" % (name, ns, want,
                                                          got))


def dig(ns, name, *args):
    """`dig @DNS name` inside ns: (status, [addresses])."""
    r = sh("ip", "netns", "exec", ns, "dig", "+tries=2", "+time=2",
           "@" + DNS, name, *args, check=False)
    status = re.search(r"status: (\w+)", r.stdout)
    addresses = re.findall(r"\sIN\s+A\s+(\S+)$", r.stdout, re.M)
    return (status.group(1) if status else None), sorted(addresses)


def getent(ns, name):
    """`getent hosts name` inside ns: the address, or None."""
    r = sh("ip", "netns", "exec", ns, "getent", "hosts", name, check=False)
    return r.stdout.split()[0] if r.returncode == 0 and r.stdout else None


# ---- one nlbd, two consumer networks ---------------------------------------

NLB_CFG = """shutdown_timeout = "2s";
api = { listen = "127.0.0.1:%(api)d"; };
registry = { path = "%(dir)s/registry.db"; };
dns = { zone = "%(zone)s"; ttl = "%(ttl)s"; };
principals = (
%(principals)s
);
networks = (
  { name = "shop-vpc"; netns = "%(ns_shop)s"; range = "%(range)s";
    principals = [ "shop" ]; dns = "%(dns)s"; },
  { name = "blog-vpc"; netns = "%(ns_blog)s"; range = "%(range)s";
    principals = [ "blog" ]; %(blog_dns)s }
);
target_groups = ( { name = "web-tg";
  targets = ( { address = "127.0.0.1:%(backend)d"; } ); } );
load_balancers = ( { name = "web-lb"; listeners = (
  { port = %(port)d; target_group = "web-tg"; } ); } );
"""


class World:
    """Namespaces for shop and blog (a veth between them), an HTTP backend
    on the host's loopback, nlbd, and the provider's service "payments"
    (acceptance required, private_dns_name api.payments.example)."""

    def __init__(self):
        need("ip", "dig", "curl", "getent")
        self.dir = tempfile.mkdtemp(prefix="dns2-e2e-")
        self.backend = None
        self.nlbds = []

    def __enter__(self):
        try:
            self.ns_shop = netns_with_resolver("shop")
            self.ns_blog = netns_with_resolver("blog")
            veth_between(self.ns_shop, self.ns_blog)
            self.backend = Server(http_handler(name="payments-backend"))
            self.api_port = free_port()
            self.port = free_port()
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and exc_type is not Skip and self.nlbds:
            print("--- nlbd events\n%s\n--- stderr\n%s" % (
                self.nlbd.events()[-5000:], self.nlbd.stderr()[-3000:]))
        reports = self.close()
        if exc_type is None and reports:
            raise AssertionError("sanitizer report:\n" + reports[0][-4000:])

    def config(self, ttl="5s", blog_dns=True):
        return NLB_CFG % {
            "api": self.api_port, "dir": self.dir, "zone": ZONE,
            "ttl": ttl, "principals": principals_config(),
            "ns_shop": self.ns_shop, "ns_blog": self.ns_blog,
            "range": RANGE, "dns": DNS,
            "blog_dns": 'dns = "%s";' % DNS if blog_dns else "",
            "backend": self.backend.port, "port": self.port}

    def start(self):
        self.nlbd = Nlbd(self.config())
        self.nlbds.append(self.nlbd)
        self.nlbd.start(wait_port=self.api_port)

    def close(self):
        reports = []
        for nlbd in self.nlbds:
            nlbd.stop(timeout=10)
            err = nlbd.stderr()
            if any(mark in err for mark in SANITIZER_MARKS):
                reports.append(err)
            shutil.rmtree(nlbd.dir, ignore_errors=True)
        self.nlbds = []
        if self.backend:
            self.backend.stop()
        for role in ("shop", "blog"):
            netnstest.netns_del("dns2-%s-%d" % (role, PID))
        _remove_resolv_dirs()
        shutil.rmtree(self.dir, ignore_errors=True)
        return reports

    def call(self, who, method, path, body=None):
        return nlbtest.api_request(self.api_port, method, path,
                                   PRINCIPALS[who][1], body)

    def ok(self, who, method, path, body=None, status=200):
        code, value = self.call(who, method, path, body)
        assert code == status, "%s %s as %s: %d %r" % (method, path, who,
                                                         code, value)
        return value

    def curl(self, ns, host):
        r = sh("ip", "netns", "exec", ns, "curl", "-s", "-S", "--max-time",
               "5", "http://%s:%d/" % (host, self.port), check=False)
        return r.stdout.strip() if r.returncode == 0 else r.stderr.strip()


def setup_story(w):
    """The service and one endpoint per consumer: shop's at .10 opted into
    private DNS, blog's at .20 not. Both pending."""
    svc = w.ok("payments", "POST", "/v1/services", {
        "name": "payments", "load_balancer": "web-lb",
        "acceptance_required": True, "allowed_principals": ["shop", "blog"],
        "private_dns_name": PRIVATE}, status=201)
    assert svc["private_dns_name"] == PRIVATE, svc
    shop = w.ok("shop", "POST", "/v1/endpoints", {
        "service": "payments", "network": "shop-vpc",
        "address": SHOP_ADDRESS, "private_dns": True}, status=201)
    blog = w.ok("blog", "POST", "/v1/endpoints", {
        "service": "payments", "network": "blog-vpc",
        "address": BLOG_ADDRESS}, status=201)
    assert shop["dns_names"] == [] and blog["dns_names"] == [], (shop, blog)
    return svc["id"], shop["id"], blog["id"]


def decide(w, sid, what, *ids):
    result = w.ok("payments", "POST", "/v1/services/%s/connections/%s" % (
        sid, what), {"endpoint_ids": list(ids)})
    assert result == {"unsuccessful": []}, result
    return time.monotonic()


def test_names_in_two_networks():
    with World() as w:
        sid, shop, blog = setup_story(w)
        # Pending: nothing resolves yet.
        assert answers(w.ns_shop, "payments." + ZONE) == ("NXDOMAIN", [])
        assert answers(w.ns_shop, PRIVATE)[0] == "REFUSED"
        since = decide(w, sid, "accept", shop, blog)
        within_a_second(w.ns_shop, "payments." + ZONE,
                        ("NOERROR", [SHOP_ADDRESS]), since)
        within_a_second(w.ns_blog, "payments." + ZONE,
                        ("NOERROR", [BLOG_ADDRESS]), since)
        # dig, as a consumer would.
        assert dig(w.ns_shop, "payments." + ZONE) == ("NOERROR",
                                                     [SHOP_ADDRESS])
        assert dig(w.ns_blog, "payments." + ZONE) == ("NOERROR",
                                                     [BLOG_ADDRESS])
        assert dig(w.ns_shop, "payments." + ZONE, "+tcp") == (
            "NOERROR", [SHOP_ADDRESS])
        # Each endpoint's own name, in its network alone.
        assert answers(w.ns_shop, shop + "." + ZONE) == ("NOERROR",
                                                         [SHOP_ADDRESS])
        assert answers(w.ns_blog, blog + "." + ZONE) == ("NOERROR",
                                                         [BLOG_ADDRESS])
        assert answers(w.ns_shop, blog + "." + ZONE) == ("NXDOMAIN", [])
        assert answers(w.ns_blog, shop + "." + ZONE) == ("NXDOMAIN", [])
        ep = w.ok("shop", "GET", "/v1/endpoints/" + shop)
        assert ep["dns_names"] == [shop + "." + ZONE, "payments." + ZONE,
                                   PRIVATE], ep
        # The private name: where the endpoint opted in, and only there.
        assert getent(w.ns_shop, PRIVATE) == SHOP_ADDRESS
        assert getent(w.ns_blog, PRIVATE) is None
        assert answers(w.ns_blog, PRIVATE)[0] == "REFUSED"
        assert getent(w.ns_shop, "payments." + ZONE) == SHOP_ADDRESS
        # curl through the name, the private name, and from the other
        # network.
        assert w.curl(w.ns_shop, "payments." + ZONE) == "payments-backend"
        assert w.curl(w.ns_shop, PRIVATE) == "payments-backend"
        assert w.curl(w.ns_blog, "payments." + ZONE) == "payments-backend"
        assert "resolve" in w.curl(w.ns_blog, PRIVATE)

        # Outside the provider's domains: 403, and nothing moves.
        code, err = w.call("payments", "PATCH", "/v1/services/" + sid,
                           {"private_dns_name": "api.search.example"})
        assert code == 403 and err["error"]["code"] == "Forbidden", err
        code, err = w.call("search", "POST", "/v1/services", {
            "name": "s", "load_balancer": "web-lb",
            "private_dns_name": "www.payments.example"})
        assert code == 403, err
        assert getent(w.ns_shop, PRIVATE) == SHOP_ADDRESS

        # The provider renames its private DNS name: it moves at once.
        w.ok("payments", "PATCH", "/v1/services/" + sid,
             {"private_dns_name": "www.payments.example"})
        since = time.monotonic()
        within_a_second(w.ns_shop, "www.payments.example",
                        ("NOERROR", [SHOP_ADDRESS]), since)
        assert answers(w.ns_shop, PRIVATE)[0] == "REFUSED"
        # blog opts in; shop opts out.
        w.ok("blog", "PATCH", "/v1/endpoints/" + blog, {"private_dns": True})
        since = time.monotonic()
        within_a_second(w.ns_blog, "www.payments.example",
                        ("NOERROR", [BLOG_ADDRESS]), since)
        w.ok("shop", "PATCH", "/v1/endpoints/" + shop, {"private_dns": False})
        since = time.monotonic()
        within_a_second(w.ns_shop, "www.payments.example", ("REFUSED", []),
                        since)

        # Reject: NXDOMAIN within a second, in that network alone.
        since = decide(w, sid, "reject", shop)
        within_a_second(w.ns_shop, "payments." + ZONE, ("NXDOMAIN", []),
                        since)
        assert answers(w.ns_shop, shop + "." + ZONE) == ("NXDOMAIN", [])
        assert answers(w.ns_blog, "payments." + ZONE) == ("NOERROR",
                                                          [BLOG_ADDRESS])
        assert getent(w.ns_shop, "payments." + ZONE) is None

        # Metrics: the operator's, not a provider's.
        code, text = w.call("ops", "GET", "/metrics")
        assert code == 200, text
        m = re.search(r'^nlb_dns_queries_total\{network="shop-vpc",'
                      r'rcode="NOERROR"\} (\d+)$', text, re.M)
        assert m and int(m.group(1)) > 0, text
        assert re.search(r'^nlb_dns_records\{network="blog-vpc"\} 4$', text,
                         re.M), text
        code, text = w.call("payments", "GET", "/metrics")
        assert code == 200 and "nlb_dns_" not in text, text


def test_reload_and_restart():
    with World() as w:
        sid, shop, blog = setup_story(w)
        decide(w, sid, "accept", shop, blog)
        wait_until(lambda: answers(w.ns_blog, "payments." + ZONE)[0] ==
                   "NOERROR", what="blog's name")
        # A new TTL (a new responder, filled again) and no responder for
        # blog any more.
        w.nlbd.reload(w.config(ttl="42s", blog_dns=False))
        rcode, addresses, ttls = ask(w.ns_shop, "payments." + ZONE)
        assert (rcode, addresses, ttls) == ("NOERROR", [SHOP_ADDRESS],
                                            [42]), (rcode, addresses, ttls)
        assert getent(w.ns_shop, PRIVATE) == SHOP_ADDRESS
        wait_until(lambda: ask(w.ns_blog, "payments." + ZONE,
                               timeout=0.3)[0] is None,
                   what="blog's responder gone")
        ep = w.ok("blog", "GET", "/v1/endpoints/" + blog)
        assert ep["dns_names"] == [], ep
        w.nlbd.reload(w.config())
        wait_until(lambda: answers(w.ns_blog, "payments." + ZONE) ==
                   ("NOERROR", [BLOG_ADDRESS]), what="blog's name again")
        # A restart serves the stored state at once.
        w.nlbd.stop()
        assert ask(w.ns_shop, "payments." + ZONE, timeout=0.3)[0] is None
        w.start()
        assert answers(w.ns_shop, "payments." + ZONE) == ("NOERROR",
                                                          [SHOP_ADDRESS])
        assert answers(w.ns_shop, PRIVATE) == ("NOERROR", [SHOP_ADDRESS])
        assert answers(w.ns_blog, blog + "." + ZONE) == ("NOERROR",
                                                         [BLOG_ADDRESS])
        assert "dns shop-vpc: answering at 127.90.0.2:53" in \
            w.nlbd.events(), w.nlbd.events()[-2000:]


# ---- DNS TCP within the descriptor limit -----------------------------------

FD_LIMIT = 640

LIMIT_CFG = """shutdown_timeout = "1s";
api = { listen = "127.0.0.1:%(api)d"; };
registry = { path = "%(dir)s/registry.db"; };
dns = { zone = "%(zone)s"; };
principals = (
%(principals)s
);
networks = (
  { name = "shop-vpc"; netns = "%(ns_shop)s"; range = "%(range)s";
    dns = "%(dns)s"; },
  { name = "blog-vpc"; netns = "%(ns_blog)s"; range = "%(range)s";
    dns = "%(dns)s"; }
);
target_groups = ( { name = "echo-tg";
  targets = ( { address = "127.0.0.1:%(backend)d"; } ); } );
load_balancers = ( { name = "echo-lb"; listeners = (
  { port = %(port)d; target_group = "echo-tg"; bind = "127.0.0.1"; } ); } );
"""


def metrics(api_port):
    code, text = nlbtest.api_request(api_port, "GET", "/metrics",
                                     PRINCIPALS["ops"][1])
    assert code == 200, (code, text)
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values


def hold_dns_connections(ns, count):
    """count TCP connections to the responder of ns, made in order, 16
    from each of 127.92.0.1, .2...: every one of them comes from an
    address within its share."""
    def fn():
        conns = []
        for i in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(3)
            s.bind(("127.92.0.%d" % (1 + i // 16), 0))
            s.connect((DNS, 53))
            conns.append(s)
        return conns
    return in_netns(ns, fn)


def tcp_query(sock, name="nlb.internal"):
    """The response code of one query over the open connection sock, or
    None when the responder closed it."""
    qid = random.randrange(65536)
    query = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    for label in name.split("."):
        query += bytes([len(label)]) + label.encode()
    query += b"\0" + struct.pack(">HH", 6, 1)
    try:
        sock.sendall(struct.pack(">H", len(query)) + query)
        head = nlbtest.recv_exact(sock, 2)
        if len(head) < 2:
            return None
        data = nlbtest.recv_exact(sock, struct.unpack(">H", head)[0])
    except OSError:
        return None
    assert struct.unpack(">H", data[:2])[0] == qid
    return RCODES.get(data[3] & 0xF)


def new_flows_served(port, count, timeout=10):
    """Opens count flows to the listener, all held open together, and says
    how many echo what they were sent within timeout."""
    flows = []
    try:
        for i in range(count):
            flows.append(socket.create_connection(("127.0.0.1", port),
                                                  timeout=3))
        sent = []
        for i, flow in enumerate(flows):
            try:
                flow.sendall(b"flow %03d\n" % i)
                sent.append(i)
            except OSError:  # reset: nlbd had no descriptor for it
                pass
        served = 0
        deadline = time.monotonic() + timeout
        for i in sent:
            flows[i].settimeout(max(0.01, deadline - time.monotonic()))
            try:
                served += nlbtest.recv_exact(flows[i], 9) == \
                    b"flow %03d\n" % i
            except OSError:
                pass
        return served
    finally:
        for flow in flows:
            flow.close()


def test_dns_tcp_within_the_descriptor_limit():
    """nlbd under a descriptor limit of 640 (lowered by prlimit once it
    runs, as test_scale does), two consumer networks with a responder
    each. A client in each network opens 128 TCP connections to its
    responder, from 8 addresses; then 200 new flows are opened and held
    together through the balancer: every one is served, the responders
    hold no more than their part of the descriptor plan (640 / 16 = 40
    together, shared fairly), and a new DNS client still gets in."""
    need("ip")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        raise Skip("needs 2048 descriptors for the test's own sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix="dns2-limit-")
    ns_shop = "dns2-lshop-%d" % PID
    ns_blog = "dns2-lblog-%d" % PID
    backend = nlbd = None
    held = []
    try:
        netnstest.netns_add(ns_shop)
        netnstest.netns_add(ns_blog)
        backend = Server(nlbtest.echo_handler)
        api_port, port = free_port(), free_port()
        nlbd = Nlbd(LIMIT_CFG % {
            "api": api_port, "dir": work, "zone": ZONE,
            "principals": principals_config(), "ns_shop": ns_shop,
            "ns_blog": ns_blog, "range": RANGE, "dns": DNS,
            "backend": backend.port, "port": port})
        nlbd.start(wait_port=api_port)
        for ns in (ns_shop, ns_blog):
            wait_until(lambda: ask(ns, ZONE, qtype=6)[0] == "NOERROR",
                       what="the responder in %s" % ns)
        resource.prlimit(nlbd.proc.pid, resource.RLIMIT_NOFILE,
                         (FD_LIMIT, FD_LIMIT))
        wait_until(lambda: metrics(api_port)["nlb_flows_max"] < 300,
                   what="the flow capacity of a limit of %d" % FD_LIMIT)
        for ns in (ns_shop, ns_blog):
            conns = hold_dns_connections(ns, 128)
            held += conns
            # Accepted in order: once the newest is answered, nlbd has
            # taken (or closed) every one before it.
            assert tcp_query(conns[-1]) == "NOERROR"
        served = new_flows_served(port, 200)
        print("new flows served: %d of 200" % served)
        m = metrics(api_port)
        print("nlb_flows_max %d, nlb_dns_tcp_budget %s" % (
            m["nlb_flows_max"], m.get("nlb_dns_tcp_budget")))
        assert served == 200, served
        assert m["nlb_dns_tcp_budget"] == FD_LIMIT // 16, m
        shop = m['nlb_dns_tcp_connections{network="shop-vpc"}']
        blog = m['nlb_dns_tcp_connections{network="blog-vpc"}']
        assert shop + blog == 40 and abs(shop - blog) <= 2, (shop, blog)
        evicted = sum(m['nlb_dns_tcp_evicted_total{network="%s",'
                        'reason="budget"}' % n]
                      for n in ("shop-vpc", "blog-vpc"))
        assert evicted == 256 - 40, m
        # A new client of a network still gets an answer over TCP.
        fresh = hold_dns_connections(ns_shop, 1)
        held += fresh
        assert tcp_query(fresh[0]) == "NOERROR"
    finally:
        for conn in held:
            conn.close()
        if nlbd:
            nlbd.stop(timeout=10)
            err = nlbd.stderr()
            assert not any(mark in err for mark in SANITIZER_MARKS), err
            shutil.rmtree(nlbd.dir, ignore_errors=True)
        if backend:
            backend.stop()
        netnstest.netns_del(ns_shop)
        netnstest.netns_del(ns_blog)
        shutil.rmtree(work, ignore_errors=True)


# ---- a cluster ---------------------------------------------------------------

def test_two_nodes_answer_the_same():
    need("ip")
    from clustertest import Cluster

    class DnsCluster(Cluster):
        """Cluster with a DNS zone and a responder in each node's
        namespace for shop-vpc."""

        def config(self, i):
            text = super().config(i)
            text = text.replace('range = "%s"; }' % RANGE,
                                'range = "%s"; dns = "%s"; }' % (RANGE, DNS))
            assert 'dns = "%s"' % DNS in text, text
            return text + 'dns = { zone = "%s"; };\n' % ZONE

    with DnsCluster(2) as c:
        svc = c.api(1, "POST", "/v1/services", "payments", {
            "name": "payments", "load_balancer": "lb",
            "acceptance_required": False,
            "allowed_principals": ["shop"]}, status=201)
        ep = c.api(2, "POST", "/v1/endpoints", "shop", {
            "service": "payments", "network": "shop-vpc"}, status=201)
        assert ep["state"] == "available", ep
        want = ("NOERROR", [ep["address"]])
        for i in (1, 2):
            wait_until(lambda: answers(c.netns(i), "payments." + ZONE) ==
                       want, timeout=5, what="node %d's answer" % i)
            assert answers(c.netns(i), ep["id"] + "." + ZONE) == want
        # A reject on node 1: NXDOMAIN on both nodes within a second.
        c.api(1, "POST", "/v1/services/%s/connections/reject" % svc["id"],
              "payments", {"endpoint_ids": [ep["id"]]})
        since = time.monotonic()
        for i in (1, 2):
            within_a_second(c.netns(i), "payments." + ZONE, ("NXDOMAIN", []),
                            since)


if __name__ == "__main__":
    run([
        test_names_in_two_networks,
        test_reload_and_restart,
        test_dns_tcp_within_the_descriptor_limit,
        test_two_nodes_answer_the_same,
    ], timeout=120)
