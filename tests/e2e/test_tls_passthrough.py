#!/usr/bin/env python3
"""End-to-end tests of TLS passthrough listeners (issue 24): the target
group picked by the ClientHello's server name (exact names before
wildcards, the listener's own group for any other name and for none), the
client's bytes forwarded untouched (each client verifies its backend's own
certificate, and finishes a TLS handshake through nlbd), a ClientHello cut
into several records and sent in several segments, PROXY v2 with the
server name as PP2_TYPE_AUTHORITY, a reload moving a name, an endpoint
routing as its load balancer does, and the bad inputs: a first segment
that is not TLS, and a client that stalls in its ClientHello. Also the
health checks of a target group with tls = { ... }: a TLS handshake,
verified as the group says, before a tcp check passes, and HTTPS for an
http check.

Real TLS backends (Python ssl servers, each with its own certificate made
by `openssl req` in the test's directory) and real clients (Python ssl,
`openssl s_client`); nlbd is the built one. Every test has a hard timeout
(nlbtest.run) and stops everything it started."""

import os
import re
import hashlib
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nlbtest  # noqa: E402
from nlbtest import (Nlbd, Server, Skip, can_connect, free_port,  # noqa
                     run, wait_until)


def make_cert(directory, name, hosts):
    """A self-signed ECDSA P-256 certificate for hosts: (cert, key)."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    san = ",".join("DNS:" + h for h in hosts)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-subj", "/CN=" + hosts[0], "-addext", "subjectAltName=" + san,
         "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=30)
    return cert, key


class TlsBackend:
    """A TLS server answering NAME|line to the first line it reads, with
    its own certificate. With proxy_v2 it first reads a PROXY v2 header
    and keeps its TLVs."""

    def __init__(self, directory, name, hosts, proxy_v2=False):
        self.name = name
        self.cert, self.key = make_cert(directory, name, hosts)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.cert, self.key)
        self.proxy_v2 = proxy_v2
        self.tlvs = []
        self.server = Server(self.handle)
        self.address = self.server.address

    def handle(self, conn):
        conn.settimeout(10)
        if self.proxy_v2:
            self.tlvs.append(read_proxy_v2(conn))
        with self.context.wrap_socket(conn, server_side=True) as tls:
            line = b""
            while not line.endswith(b"\n"):
                data = tls.recv(4096)
                if not data:
                    return
                line += data
            tls.sendall(self.name.encode() + b"|" + line)

    def stop(self):
        self.server.stop()


def read_proxy_v2(conn):
    """Reads a PROXY v2 header off conn: its TLVs as {type: value}."""
    def exact(n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise OSError("closed in the PROXY header")
            data += chunk
        return data
    head = exact(16)
    assert head[:12] == b"\r\n\r\n\x00\r\nQUIT\n", head
    body = exact(struct.unpack("!H", head[14:16])[0])
    at = 12 if head[13] == 0x11 else 36
    tlvs = {}
    while at + 3 <= len(body):
        kind, length = body[at], struct.unpack("!H", body[at + 1:at + 3])[0]
        tlvs[kind] = body[at + 3:at + 3 + length]
        at += 3 + length
    return tlvs


def client_context(cafile, check_hostname=True):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile)
    context.check_hostname = check_hostname
    return context


def ask(port, server_hostname, cafile, check_hostname=True,
        host="127.0.0.1"):
    """One TLS exchange through nlbd: the backend's answer to 'hello'."""
    context = client_context(cafile, check_hostname)
    with socket.create_connection((host, port), timeout=10) as raw:
        with context.wrap_socket(raw,
                                 server_hostname=server_hostname) as tls:
            tls.sendall(b"hello\n")
            answer = b""
            while not answer.endswith(b"\n"):
                data = tls.recv(4096)
                if not data:
                    break
                answer += data
            return answer.decode()


def fields(line):
    """key=value fields of a text access-log line."""
    return dict(re.findall(r"(\w+)=(\S+)", line))


class Setup:
    """Three TLS backends (a.example; *.b.example; default.example), a
    target group each, and a tls_passthrough listener routing to them."""

    def __init__(self, proxy_v2=False, hello_timeout="1s"):
        self.dir = tempfile.mkdtemp(prefix="nlbtest-tls-")
        self.a = TlsBackend(self.dir, "A", ["a.example", "exact.b.example"],
                            proxy_v2)
        self.b = TlsBackend(self.dir, "B", ["*.b.example"], proxy_v2)
        self.d = TlsBackend(self.dir, "D", ["default.example"], proxy_v2)
        self.port = free_port()
        # One round of health checks, at start: a later one would count
        # as a connection to a backend.
        proxy = 'health_check = { interval = "1h"; }; '
        if proxy_v2:
            proxy += 'proxy_protocol = "v2"; '

        self.config = (
            'target_groups = (\n'
            '  { name = "ga"; %s targets = ( { address = "%s"; } ); },\n'
            '  { name = "gb"; %s targets = ( { address = "%s"; } ); },\n'
            '  { name = "gd"; %s targets = ( { address = "%s"; } ); } );\n'
            'load_balancers = ( { name = "lb"; listeners = (\n'
            '  { port = %d; bind = "127.0.0.1"; protocol = "tls_passthrough";\n'
            '    target_group = "gd"; client_hello_timeout = "%s";\n'
            '    sni_routes = (\n'
            '      { names = [ "A.example", "exact.b.example" ];\n'
            '        target_group = "ga"; },\n'
            '      { names = [ "*.b.example" ]; target_group = "gb"; } );\n'
            '  } ); } );\n' % (proxy, self.a.address, proxy, self.b.address,
                               proxy, self.d.address, self.port,
                               hello_timeout))
        self.nlbd = Nlbd(self.config).start(wait_port=self.port)
        # The wait's own probe connection ends in the access log first.
        self.mark = self.nlbd.access_mark()

    def close(self):
        self.nlbd.stop()
        for backend in (self.a, self.b, self.d):
            backend.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def settle(self):
        """The access-log lines of flows since the last settle."""
        mark = self.mark
        wait_until(lambda: len(self.nlbd.access()) > mark,
                   what="an access-log line")
        lines = self.nlbd.access()[mark:]
        self.mark += len(lines)
        return lines


def test_routes_by_exact_and_wildcard_server_name():
    """a.example (written A.example in the config) and exact.b.example go
    to A (exact before wildcard), x.b.example to B by *.b.example, and
    b.example, y.x.b.example, an unknown name or no name at all to the
    listener's own group D. Each client verifies the backend's own
    certificate: the bytes went through untouched."""
    s = Setup()
    try:
        assert ask(s.port, "a.example", s.a.cert) == "A|hello\n"
        assert ask(s.port, "exact.b.example", s.a.cert) == "A|hello\n"
        assert ask(s.port, "x.b.example", s.b.cert) == "B|hello\n"
        for name in ("b.example", "y.x.b.example", "other.example"):
            assert ask(s.port, name, s.d.cert, False) == "D|hello\n", name
        assert ask(s.port, None, s.d.cert, False) == "D|hello\n"
        # The default backend's own name verifies end to end too.
        assert ask(s.port, "default.example", s.d.cert) == "D|hello\n"
        wait_until(lambda: len(s.nlbd.access()) >= s.mark + 8,
                   what="8 access-log lines")
        lines = s.nlbd.access()[s.mark:]
        logged = [fields(l) for l in lines]
        # Flows on two workers may log in either order.
        routed = sorted((f["sni"], l.split(" -> ")[1].split()[0])
                        for f, l in zip(logged, lines))
        a, b, d = s.a.address, s.b.address, s.d.address
        assert routed == sorted([
            ("a.example", a), ("exact.b.example", a), ("x.b.example", b),
            ("b.example", d), ("y.x.b.example", d), ("other.example", d),
            ("-", d), ("default.example", d)]), routed
        assert all(f["end"] in ("client_fin", "target_fin") for f in logged)
    finally:
        s.close()


def test_openssl_s_client_reaches_its_backend():
    """openssl s_client -servername, verifying the backend's certificate
    and its name, gets the backend's answer."""
    if not shutil.which("openssl"):
        raise Skip("no openssl")
    s = Setup()
    try:
        p = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % s.port,
             "-servername", "x.b.example", "-CAfile", s.b.cert,
             "-verify_return_error", "-verify_hostname", "x.b.example",
             "-quiet"],
            input=b"via openssl\n", capture_output=True, timeout=20)
        assert b"B|via openssl" in p.stdout, (p.stdout, p.stderr)
    finally:
        s.close()


def split_records(hello, size):
    """The ClientHello's handshake message cut into records of size
    bytes."""
    assert hello[0] == 22
    length = struct.unpack("!H", hello[3:5])[0]
    message, rest = hello[5:5 + length], hello[5 + length:]
    out = b""
    for at in range(0, len(message), size):
        piece = message[at:at + size]
        out += bytes([22, 3, 1]) + struct.pack("!H", len(piece)) + piece
    return out + rest


def handshake_in_pieces(port, server_hostname, cafile, record_size,
                        segment_size):
    """A TLS exchange whose ClientHello is cut into records of record_size
    bytes, sent segment_size bytes per segment (TCP_NODELAY, a pause
    between): the backend's answer."""
    context = client_context(cafile)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing,
                           server_hostname=server_hostname)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = split_records(outgoing.read(), record_size)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for at in range(0, len(hello), segment_size):
            raw.sendall(hello[at:at + segment_size])
            time.sleep(0.002)  # one segment each, not a wait for state
        done = False
        while not done:
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                pass
            pending = outgoing.read()
            if pending:
                raw.sendall(pending)
            if not done:
                data = raw.recv(65536)
                assert data, "closed during the handshake"
                incoming.write(data)
        tls.write(b"pieces\n")
        raw.sendall(outgoing.read())
        answer = b""
        while not answer.endswith(b"\n"):
            try:
                answer += tls.read(4096)
            except ssl.SSLWantReadError:
                data = raw.recv(65536)
                if not data:
                    break
                incoming.write(data)
        return answer.decode()


def test_client_hello_split_over_records_and_segments():
    """A ClientHello in records of 40 bytes, sent 7 bytes per segment (and
    one sent whole but in 100-byte segments): nlbd waits for all of it,
    routes it by its name, and the handshake completes with the backend."""
    s = Setup()
    try:
        assert handshake_in_pieces(s.port, "x.b.example", s.b.cert, 40,
                                   7) == "B|pieces\n"
        assert handshake_in_pieces(s.port, "a.example", s.a.cert, 16384,
                                   100) == "A|pieces\n"
        wait_until(lambda: len(s.nlbd.access()) >= s.mark + 2,
                   what="two access-log lines")
        lines = s.settle()
        # Two workers may log in either order.
        assert sorted(fields(l)["sni"] for l in lines) == [
            "a.example", "x.b.example"], lines
    finally:
        s.close()


def closed_by_peer(sock, timeout):
    """Whether the peer closes (FIN or reset) within timeout seconds."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_not_tls_first_segment_is_closed():
    """Plain HTTP on the passthrough port: closed at once, no backend
    connected, end=not_tls in the access log."""
    s = Setup(hello_timeout="30s")
    try:
        before = [b.server.connections for b in (s.a, s.b, s.d)]
        with socket.create_connection(("127.0.0.1", s.port),
                                      timeout=10) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
            started = time.monotonic()
            assert closed_by_peer(c, 5)
            assert time.monotonic() - started < 2
        line = s.settle()[-1]
        assert fields(line)["end"] == "not_tls", line
        assert fields(line)["sni"] == "-", line
        assert " -> - " in line, line
        assert [b.server.connections for b in (s.a, s.b, s.d)] == before
    finally:
        s.close()


def test_stalled_client_closed_at_timeout():
    """A client that sends the first 20 bytes of its ClientHello and no
    more is closed at client_hello_timeout (1 s), not before, and never
    reaches a backend: end=hello_timeout. A malformed hello (a server name
    of length 0) is closed at once: end=bad_hello."""
    s = Setup(hello_timeout="1s")
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing,
                               server_hostname="a.example")
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outgoing.read()
        before = [b.server.connections for b in (s.a, s.b, s.d)]
        with socket.create_connection(("127.0.0.1", s.port),
                                      timeout=10) as c:
            c.sendall(hello[:20])
            started = time.monotonic()
            assert closed_by_peer(c, 8)
            waited = time.monotonic() - started
        assert 0.8 <= waited < 4, waited
        line = s.settle()[-1]
        assert fields(line)["end"] == "hello_timeout", line
        # An empty server name: the hello's own lengths say so.
        at = hello.find(b"a.example")
        assert at > 0
        bad = bytearray(hello)
        # server_name: list length, type 0, name length, name.
        assert bad[at - 2:at] == b"\x00\x09"
        bad[at - 2:at] = b"\x00\x00"
        with socket.create_connection(("127.0.0.1", s.port),
                                      timeout=10) as c:
            c.sendall(bytes(bad))
            started = time.monotonic()
            assert closed_by_peer(c, 5)
            assert time.monotonic() - started < 0.8
        line = s.settle()[-1]
        assert fields(line)["end"] == "bad_hello", line
        assert [b.server.connections for b in (s.a, s.b, s.d)] == before
    finally:
        s.close()


def test_proxy_v2_carries_the_server_name():
    """A group with proxy_protocol = "v2": the backend reads the header
    (PP2_TYPE_AUTHORITY = the server name) and then the client's own
    ClientHello, and the handshake completes."""
    s = Setup(proxy_v2=True)
    try:
        assert ask(s.port, "x.b.example", s.b.cert) == "B|hello\n"
        assert ask(s.port, None, s.d.cert, False) == "D|hello\n"
        wait_until(lambda: s.b.tlvs and s.d.tlvs, what="headers read")
        assert s.b.tlvs[-1].get(0x02) == b"x.b.example", s.b.tlvs
        assert 0x02 not in s.d.tlvs[-1], s.d.tlvs
    finally:
        s.close()


def test_reload_moves_a_name_to_another_group():
    """A reload that routes a.example to B's group, with the groups in
    another order (their indices change): new flows follow; x.b.example
    still reaches B and other names D."""
    s = Setup()
    try:
        assert ask(s.port, "a.example", s.a.cert) == "A|hello\n"
        groups = s.config[s.config.index("target_groups"):
                          s.config.index("load_balancers")]
        lines = groups.splitlines()
        reordered = "\n".join([lines[0], lines[3].rstrip(" );") + ",",
                               lines[2], lines[1].rstrip(",") + " );"]) + "\n"
        config = s.config.replace(groups, reordered).replace(
            '[ "A.example", "exact.b.example" ];\n        target_group = "ga"',
            '[ "A.example", "exact.b.example" ];\n        target_group = "gb"')
        assert config != s.config
        s.nlbd.reload(config)
        assert ask(s.port, "a.example", s.b.cert, False) == "B|hello\n"
        assert ask(s.port, "x.b.example", s.b.cert) == "B|hello\n"
        assert ask(s.port, "c.example", s.d.cert, False) == "D|hello\n"
    finally:
        s.close()


def test_endpoint_routes_by_server_name_too():
    """An endpoint of a tls_passthrough load balancer (a consumer network
    of host addresses) routes by server name as the load balancer's own
    listener does; its access-log lines name the endpoint and the name."""
    tokens = {"prov": ("provider", "prov-tls"),
              "shop": ("consumer", "shop-tls")}
    s = Setup()
    api_port = free_port()
    directory = tempfile.mkdtemp(prefix="nlbtest-tlsep-")
    principals = ",\n".join(
        '  { name = "%s"; role = "%s"; token_sha256 = "%s"; }' % (
            name, role, hashlib.sha256(token.encode()).hexdigest())
        for name, (role, token) in tokens.items())
    config = s.config + (
        'api = { listen = "127.0.0.1:%d"; };\n'
        'registry = { path = "%s/registry.db"; };\n'
        'principals = (\n%s\n);\n'
        'networks = ( { name = "shop-vpc"; range = "127.91.0.0/24";\n'
        '  principals = [ "shop" ]; } );\n' % (api_port, directory,
                                               principals))

    def call(who, method, path, body, status):
        code, value = nlbtest.api_request(api_port, method, path,
                                          tokens[who][1], body)
        assert code == status, "%s %s: %d %r" % (method, path, code, value)
        return value
    try:
        s.nlbd.stop()
        s.nlbd = Nlbd(config).start(wait_port=api_port)
        call("prov", "POST", "/v1/services", {
            "name": "tls", "load_balancer": "lb",
            "acceptance_required": False,
            "allowed_principals": ["shop"]}, 201)
        endpoint = call("shop", "POST", "/v1/endpoints", {
            "service": "tls", "network": "shop-vpc",
            "address": "127.91.0.10"}, 201)
        wait_until(lambda: can_connect("127.91.0.10", s.port), timeout=10,
                   what="the endpoint's listener")
        mark = len(s.nlbd.access())
        assert ask(s.port, "a.example", s.a.cert,
                   host="127.91.0.10") == "A|hello\n"
        assert ask(s.port, "x.b.example", s.b.cert,
                   host="127.91.0.10") == "B|hello\n"
        assert ask(s.port, None, s.d.cert, False,
                   host="127.91.0.10") == "D|hello\n"
        # The probes of the wait never reached a target: left out.

        def routed():
            return [l for l in s.nlbd.access()[mark:]
                    if endpoint["id"] in l and " -> - " not in l]
        wait_until(lambda: len(routed()) >= 3,
                   what="the endpoint's three access-log lines")
        snis = sorted(fields(l)["sni"] for l in routed())
        assert snis == ["-", "a.example", "x.b.example"], routed()
    finally:
        s.close()
        shutil.rmtree(directory, ignore_errors=True)


class TlsHttpBackend:
    """A TLS server answering every request with status, its own
    certificate."""

    def __init__(self, directory, name, hosts, status=200):
        self.cert, self.key = make_cert(directory, name, hosts)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.cert, self.key)
        self.status = status
        self.requests = []
        self.server = Server(self.handle)
        self.address = self.server.address

    def handle(self, conn):
        conn.settimeout(10)
        with self.context.wrap_socket(conn, server_side=True) as tls:
            request = b""
            while b"\r\n\r\n" not in request:
                data = tls.recv(4096)
                if not data:
                    return
                request += data
            self.requests.append(request)
            tls.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n" % self.status)

    def stop(self):
        self.server.stop()


TRANSITION_RE = re.compile(
    r"target ([^/\s]+)/(\S+) state (\w+) -> (\w+) \((.*)\)$")


def states(nlbd):
    """The last state of each (group, target) in the event log, with its
    reason."""
    out = {}
    for line in nlbd.events().splitlines():
        m = TRANSITION_RE.search(line)
        if m:
            out[(m.group(1), m.group(2))] = (m.group(4), m.group(5))
    return out


def test_tls_health_checks_handshake_and_https():
    """Groups with tls = { ... } behind tls_passthrough listeners (their
    flows carry the clients' own TLS; their checks verify the targets'
    certificates): a tcp check passes only once a TLS
    handshake verified against the group's CA and server_name is done
    (a target with another certificate, and one that does not speak TLS,
    are unhealthy; verify = false takes any certificate); an http check
    sends its request through TLS and judges the status."""
    directory = tempfile.mkdtemp(prefix="nlbtest-tls-")
    good = TlsBackend(directory, "good", ["svc.example"])
    other = TlsBackend(directory, "other", ["svc.example"])
    plain = Server(lambda conn: conn.recv(4096))
    https_ok = TlsHttpBackend(directory, "ok", ["web.example"], 200)
    https_bad = TlsHttpBackend(directory, "bad", ["web.example"], 500)
    # One CA for both web backends: a file with both certificates.
    web_ca = os.path.join(directory, "web-ca.pem")
    with open(web_ca, "w") as f:
        f.write(open(https_ok.cert).read() + open(https_bad.cert).read())
    check = ('healthy_threshold = 2; unhealthy_threshold = 2; '
             'interval = "300ms"; timeout = "300ms";')
    port1, port2, port3 = free_port(), free_port(), free_port()
    config = (
        'target_groups = (\n'
        '  { name = "gt"; tls = { ca = "%s"; server_name = "svc.example"; };\n'
        '    health_check = { protocol = "tcp"; %s };\n'
        '    targets = ( { address = "%s"; }, { address = "%s"; },\n'
        '                { address = "%s"; } ); },\n'
        '  { name = "gv"; tls = { verify = false; };\n'
        '    health_check = { protocol = "tcp"; %s };\n'
        '    targets = ( { address = "%s"; } ); },\n'
        '  { name = "gh"; tls = { ca = "%s"; server_name = "web.example"; };\n'
        '    health_check = { protocol = "http"; path = "/health"; %s };\n'
        '    targets = ( { address = "%s"; }, { address = "%s"; } ); } );\n'
        'load_balancers = ( { name = "lb"; listeners = (\n'
        '  { port = %d; bind = "127.0.0.1"; target_group = "gt";\n'
        '    protocol = "tls_passthrough"; },\n'
        '  { port = %d; bind = "127.0.0.1"; target_group = "gv";\n'
        '    protocol = "tls_passthrough"; },\n'
        '  { port = %d; bind = "127.0.0.1"; target_group = "gh";\n'
        '    protocol = "tls_passthrough"; } ); } );\n' % (
            good.cert, check, good.address, other.address, plain.address,
            check, other.address, web_ca, check, https_ok.address,
            https_bad.address, port1, port2, port3))
    nlbd = Nlbd(config)
    try:
        nlbd.start()
        want = {("gt", good.address): "healthy",
                ("gt", other.address): "unhealthy",
                ("gt", plain.address): "unhealthy",
                ("gv", other.address): "healthy",
                ("gh", https_ok.address): "healthy",
                ("gh", https_bad.address): "unhealthy"}
        wait_until(lambda: all(states(nlbd).get(k, ("",))[0] == v
                               for k, v in want.items()),
                   timeout=10, what="every target judged: %s" % want)
        seen = states(nlbd)
        assert "certificate" in seen[("gt", other.address)][1], seen
        assert "tls" in seen[("gt", plain.address)][1], seen
        assert seen[("gh", https_bad.address)][1] == "status 500", seen
        assert https_ok.requests and \
            https_ok.requests[0].startswith(b"GET /health HTTP/1.1\r\n")
        # Still so a few rounds later: nothing flaps.
        rounds = len(https_ok.requests)
        wait_until(lambda: len(https_ok.requests) >= rounds + 3,
                   what="three more rounds")
        assert {k: v[0] for k, v in states(nlbd).items()} == want
    finally:
        nlbd.stop()
        for backend in (good, other, https_ok, https_bad):
            backend.stop()
        plain.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    run([test_routes_by_exact_and_wildcard_server_name,
         test_openssl_s_client_reaches_its_backend,
         test_client_hello_split_over_records_and_segments,
         test_not_tls_first_segment_is_closed,
         test_stalled_client_closed_at_timeout,
         test_proxy_v2_carries_the_server_name,
         test_reload_moves_a_name_to_another_group,
         test_endpoint_routes_by_server_name_too,
         test_tls_health_checks_handshake_and_https], timeout=60)
