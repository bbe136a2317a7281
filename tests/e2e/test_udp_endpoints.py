#!/usr/bin/env python3
"""End to end, issue 25: an endpoint of a UDP (tcp_udp) load balancer in a
consumer's network namespace. nlbd opens the endpoint's sockets inside the
namespace (a TCP one, and a UDP one per worker), the consumer finds it by
its DNS name (the network's responder), and UDP datagrams and TCP
connections sent there from inside the namespace reach the provider's
target; deleting the endpoint ends its UDP flows (end=endpoint_closed).

Needs root and `ip netns`; says SKIP otherwise. The namespace is
nlbt-udpshop-PID, deleted at exit."""

import hashlib
import os
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netnstest  # noqa: E402
import nlbtest  # noqa: E402
from nlbtest import Nlbd, Server, Skip, free_port, run, wait_until  # noqa
from test_dns_endpoints import ask as dns_ask  # noqa: E402
from test_udp import UdpTarget, udp_fields, udp_free_port  # noqa: E402

RANGE = "127.90.0.0/24"
DNS = "127.90.0.2"
ADDRESS = "127.90.0.10"
TOKENS = {"ops": ("operator", "ops-udp-ep"), "prov": ("provider", "prov-udp"),
          "shop": ("consumer", "shop-udp")}

CONFIG = """shutdown_timeout = "2s";
api = { listen = "127.0.0.1:%(api)d"; };
registry = { path = "%(dir)s/registry.db"; };
dns = { zone = "nlb.internal"; ttl = "5s"; };
principals = (
%(principals)s
);
networks = (
  { name = "shop-vpc"; netns = "%(ns)s"; range = "%(range)s";
    principals = [ "shop" ]; dns = "%(dns)s"; }
);
target_groups = ( { name = "dns-tg";
  targets = ( { address = "127.0.0.1:%(target)d"; } ); } );
load_balancers = ( { name = "dns-lb"; listeners = (
  { port = %(port)d; protocol = "tcp_udp"; target_group = "dns-tg";
    idle_timeout = 30; } ); } );
"""


def need_root():
    if os.geteuid() != 0:
        raise Skip("needs root (network namespaces)")
    if shutil.which("ip") is None:
        raise Skip("ip is not installed")


def principals():
    return ",\n".join(
        '  { name = "%s"; role = "%s"; token_sha256 = "%s"; }' % (
            name, role, hashlib.sha256(token.encode()).hexdigest())
        for name, (role, token) in TOKENS.items())


def call(api_port, who, method, path, body=None, status=200):
    code, value = nlbtest.api_request(api_port, method, path, TOKENS[who][1],
                                      body)
    assert code == status, "%s %s: %d %r" % (method, path, code, value)
    return value


def udp_ask(ns, host, port, payload, timeout=1.0):
    """One datagram from a socket made inside ns; the answer or None."""
    def fn():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        s.connect((host, port))
        return s
    sock = netnstest.in_netns(ns, fn)
    try:
        sock.send(payload)
        return sock.recv(70000), sock
    except (socket.timeout, ConnectionRefusedError):
        sock.close()
        return None, None


def test_udp_endpoint_in_a_consumer_namespace_by_its_dns_name():
    need_root()
    ns = netnstest.name("udpshop")
    netnstest.netns_add(ns)
    directory = tempfile.mkdtemp(prefix="nlbtest-udpep-")
    port = udp_free_port()
    target_port = udp_free_port()
    udp_target = UdpTarget("t", port=target_port)
    tcp_target = Server(nlbtest.named_handler("t"), port=target_port)
    api_port = free_port()
    config = CONFIG % {"api": api_port, "dir": directory,
                       "principals": principals(), "ns": ns, "range": RANGE,
                       "dns": DNS, "target": target_port, "port": port}
    try:
        with Nlbd(config).start(wait_port=api_port) as nlbd:
            call(api_port, "prov", "POST", "/v1/services", {
                "name": "resolver", "load_balancer": "dns-lb",
                "acceptance_required": False,
                "allowed_principals": ["shop"]}, status=201)
            endpoint = call(api_port, "shop", "POST", "/v1/endpoints", {
                "service": "resolver", "network": "shop-vpc",
                "address": ADDRESS}, status=201)
            name = "resolver.nlb.internal"
            wait_until(lambda: dns_ask(ns, name, server=DNS)[1] == [ADDRESS],
                       timeout=10, what="%s to resolve in %s" % (name, ns))
            resolved = dns_ask(ns, name, server=DNS)[1][0]
            # UDP, by the name's address, from inside the namespace.
            answer, sock = wait_until(
                lambda: udp_ask(ns, resolved, port, b"query")[0] is not None
                and udp_ask(ns, resolved, port, b"query"), timeout=10,
                what="a UDP answer through the endpoint")
            assert answer == b"t|query", answer
            # The UDP sockets were opened in the namespace: on the host the
            # address is free.
            host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            host.bind((ADDRESS, port))
            host.close()
            # TCP through the same endpoint port.
            t = netnstest.ns_connect(ns, resolved, port)
            assert nlbtest.recv_line(t).strip() == "t"
            t.close()
            # Deleting the endpoint ends its UDP flows.
            assert not [l for l in nlbd.access() if "proto=udp" in l]
            call(api_port, "shop", "DELETE",
                 "/v1/endpoints/%s" % endpoint["id"])
            udp_lines = wait_until(
                lambda: [l for l in nlbd.access() if "proto=udp" in l],
                timeout=10, what="the UDP flows' access-log lines")
            ends = {udp_fields(l)["end"] for l in udp_lines}
            assert ends == {"endpoint_closed"}, udp_lines
            assert all(endpoint["id"] in l for l in udp_lines), udp_lines
            wait_until(lambda: udp_ask(ns, resolved, port, b"q",
                                       timeout=0.3)[0] is None,
                       timeout=10, what="the endpoint's UDP socket closed")
            sock.close()
    finally:
        udp_target.stop()
        tcp_target.stop()
        netnstest.netns_del(ns)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    run([test_udp_endpoint_in_a_consumer_namespace_by_its_dns_name])
