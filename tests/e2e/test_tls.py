#!/usr/bin/env python3
"""End-to-end tests of TLS listeners (protocol = "tls") and re-encrypting
target groups, with real clients (Python ssl, openssl s_client, curl) and
real TLS targets (Python ssl servers). Certificates are ECDSA P-256, made
with openssl in each test's directory."""

import hashlib
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nlbtest import (NLBD, Nlbd, Server, TOP_SRCDIR, echo_handler,  # noqa
                     free_port, http_handler, recv_exact, run, wait_until)

OPENSSL = shutil.which("openssl")


class Pki:
    """A CA and leaf certificates it signs, in a temporary directory."""

    def __init__(self, name="ca"):
        self.dir = tempfile.mkdtemp(prefix="nlbtest-tls-")
        self.ca_key = self.path(name + ".key")
        self.ca = self.path(name + ".pem")
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                      self.ca_key, "-out", self.ca, "-days", "2",
                      "-subj", "/CN=nlb test %s" % name)

    def path(self, name):
        return os.path.join(self.dir, name)

    def _openssl(self, *args):
        subprocess.run([OPENSSL] + list(args), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def leaf(self, name, dns_names, days=2, cert=None, key=None):
        """A certificate for dns_names (SANs; CN the first), signed by the
        CA: returns (cert, key) paths."""
        key = key or self.path(name + ".key")
        cert = cert or self.path(name + ".pem")
        csr = self.path(name + ".csr")
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\n" % ",".join(
                ("IP:" if n[0].isdigit() else "DNS:") + n for n in dns_names))
        self._openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                      "-out", csr, "-subj", "/CN=%s" % dns_names[0])
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey",
                      self.ca_key, "-CAcreateserial", "-out", cert, "-days",
                      str(days), "-extfile", ext)
        return cert, key


def require_openssl():
    if not OPENSSL:
        from nlbtest import Skip
        raise Skip("no openssl binary")


def client_context(pki, alpn=None):
    ctx = ssl.create_default_context(cafile=pki.ca)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(port, ctx, name, timeout=5, session=None):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=name, session=session)


def peer_names(sock):
    """The DNS SANs of the certificate the server presented."""
    cert = sock.getpeercert()
    return sorted(v for k, v in cert.get("subjectAltName", ()) if k == "DNS")


def echo_once(sock, data=b"hello\n"):
    sock.sendall(data)
    assert recv_exact(sock, len(data)) == data


def exchange(sock, payload, timeout=60):
    """Sends payload while reading what comes back, in ONE thread, until
    as many bytes came back or the peer ended; returns them. Not sendall
    in a second thread: one OpenSSL connection must not be used by two
    threads at once (Python lets go of the GIL inside SSL_read and
    SSL_write, and both share the connection's state and its socket BIO's
    retry flags), and a read racing a write can then see a made-up
    SSL_ERROR_SYSCALL that Python reports as EOF, mid-stream, with no
    fault in nlbd."""
    sock.setblocking(False)
    deadline = time.monotonic() + timeout
    view = memoryview(payload)
    sent, got = 0, bytearray()
    while len(got) < len(payload):
        left = deadline - time.monotonic()
        assert left > 0, "exchange timed out: sent %d, got %d" % (
            sent, len(got))
        # Records OpenSSL already decrypted make the socket no readier.
        if sock.pending() == 0:
            select.select([sock], [sock] if sent < len(payload) else [],
                          [], left)
        if sent < len(payload):
            try:
                # After a want-write the same bytes are offered again.
                sent += sock.send(view[sent:sent + (1 << 16)])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        try:
            chunk = sock.recv(1 << 16)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            continue
        if not chunk:
            break
        got += chunk
    return bytes(got)


def access_fields(line):
    """key=value fields of a text access-log line."""
    return dict(f.split("=", 1) for f in line.split() if "=" in f)


def tls_config(port, targets, certs, tls_extra="", group_extra="",
               listener_extra=""):
    certificates = ", ".join('{ cert = "%s"; key = "%s"; }' % c
                             for c in certs)
    return """
target_groups = ( { name = "tg"; algorithm = "round_robin"; %s
  health_check = { interval = "200ms"; timeout = "100ms";
                   healthy_threshold = 1; };
  targets = ( %s ); } );
load_balancers = ( { name = "lb"; listeners = ( {
  port = %d; bind = "127.0.0.1"; target_group = "tg"; protocol = "tls"; %s
  tls = { certificates = ( %s ); %s }; } ); } );
""" % (group_extra, ", ".join('{ address = "%s"; }' % t for t in targets),
       port, listener_extra, certificates, tls_extra)


class CheckedNlbd(Nlbd):
    """An Nlbd that must exit 0 with no sanitizer report (memory errors,
    leaks, undefined behaviour) once stopped."""

    def __exit__(self, exc_type, *rest):
        status = self.stop()
        if exc_type is None:
            report = [l for l in self.stderr().splitlines()
                      if "Sanitizer" in l or "runtime error:" in l]
            assert not report, "nlbd: %s\n%s" % (report[0],
                                                  self.stderr()[-3000:])
            assert status == 0, "nlbd exited %r" % status


def start_tls(body, port, health_port=None):
    nlbd = CheckedNlbd(body)
    nlbd.start()
    # TLS listeners are probed by a TLS client, not a bare connect (which
    # would count as a failed handshake).
    wait_until(lambda: "state initial -> healthy" in nlbd.events() or
               "-> healthy" in nlbd.events(), what="a healthy target")
    return nlbd


def standard_pki():
    pki = Pki()
    default = pki.leaf("default", ["default.example.test"])
    exact = pki.leaf("exact", ["a.example.test"])
    wildcard = pki.leaf("wild", ["*.w.example.test"])
    return pki, [default, exact, wildcard]


def test_certificate_by_sni_and_alpn():
    """The certificate follows the client's SNI: an exact name, a wildcard
    (one label only), the first certificate otherwise and without SNI;
    ALPN picks by the listener's order; the bytes are echoed; the access
    log says tls, cipher, sni, alpn and handshake."""
    require_openssl()
    pki, certs = standard_pki()
    server = Server(echo_handler)
    port = free_port()
    body = tls_config(port, [server.address], certs,
                      tls_extra='alpn = [ "h2", "http/1.1" ];')
    with start_tls(body, port) as nlbd:
        ctx = client_context(pki)
        for name, want in [("a.example.test", ["a.example.test"]),
                           ("x.w.example.test", ["*.w.example.test"]),
                           ("a.b.w.example.test", ["default.example.test"]),
                           ("other.example.test", ["default.example.test"])]:
            ctx.check_hostname = False
            with tls_connect(port, ctx, name) as s:
                assert peer_names(s) == want, (name, peer_names(s))
                echo_once(s)
        with tls_connect(port, client_context(pki, ["http/1.1", "h2"]),
                         "a.example.test") as s:
            assert s.selected_alpn_protocol() == "h2"
            echo_once(s)
        with tls_connect(port, client_context(pki, ["http/1.1"]),
                         "a.example.test") as s:
            assert s.selected_alpn_protocol() == "http/1.1"
            assert s.version() in ("TLSv1.3", "TLSv1.2")
            echo_once(s)
        # TLS 1.2 too, with the listener's default suites (ECDHE, AEAD).
        old = client_context(pki)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with tls_connect(port, old, "a.example.test") as s:
            assert s.version() == "TLSv1.2", s.version()
            assert s.cipher()[0].startswith("ECDHE-ECDSA-"), s.cipher()
            echo_once(s)
        # The start says whether kTLS carries the records.
        assert "kTLS " in nlbd.events(), nlbd.events()[-2000:]
        # openssl s_client, no SNI at all: the default certificate.
        out = subprocess.run(
            [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port,
             "-noservername", "-alpn", "h2", "-CAfile", pki.ca],
            input=b"", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=10).stdout.decode()
        assert "CN = default.example.test" in out, out
        assert "ALPN protocol: h2" in out, out
        assert "Verify return code: 0 (ok)" in out, out
        lines = nlbd.wait_access(8)
        fields = [access_fields(l) for l in lines]
        by_sni = {f["sni"]: f for f in fields}
        assert set(by_sni) >= {"a.example.test", "x.w.example.test", "-"}, \
            fields
        h2 = [f for f in fields if f["alpn"] == "h2"]
        assert h2 and all(f["tls"].startswith("TLSv1.") for f in h2), fields
        assert all(f["cipher"] != "-" and f["handshake"].isdigit()
                   for f in fields), fields
        assert all(f["end"] == "client_fin" for f in fields), fields


def test_curl_through_tls_listener():
    """curl (HTTPS, verifying the chain and the name) reaches a plain HTTP
    target through the TLS listener."""
    require_openssl()
    curl = shutil.which("curl")
    if not curl:
        from nlbtest import Skip
        raise Skip("no curl")
    pki, certs = standard_pki()
    server = Server(http_handler(body=b"from the target\n"))
    port = free_port()
    body = tls_config(port, [server.address], certs,
                      tls_extra='alpn = [ "http/1.1" ];')
    with start_tls(body, port):
        out = subprocess.run(
            [curl, "-sS", "--cacert", pki.ca, "--resolve",
             "a.example.test:%d:127.0.0.1" % port,
             "https://a.example.test:%d/" % port],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        assert out.returncode == 0, out.stderr
        assert out.stdout == b"from the target\n", out.stdout


def test_proxy_v2_tls_tlvs():
    """A PROXY v2 receiver behind a TLS listener sees PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY (the SNI) and PP2_TYPE_SSL (client bit, version and
    cipher sub-TLVs)."""
    require_openssl()
    pki, certs = standard_pki()
    log = os.path.join(pki.dir, "receiver.jsonl")
    receiver = subprocess.Popen(
        [sys.executable, os.path.join(TOP_SRCDIR, "tests", "tools",
                                      "ppv2_receiver.py"),
         "--listen", "127.0.0.1:0", "--log", log],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        line = receiver.stdout.readline()
        assert line.startswith("ready "), line
        target = "127.0.0.1:%d" % int(line.split()[1])
        port = free_port()
        body = tls_config(port, [target], certs,
                          tls_extra='alpn = [ "h2" ];',
                          group_extra='proxy_protocol = "v2";')
        with start_tls(body, port):
            with tls_connect(port, client_context(pki, ["h2"]),
                             "a.example.test") as s:
                echo_once(s)
                version, cipher = s.version(), s.cipher()[0]
        records = [json.loads(l) for l in open(log) if l.strip()]
        flows = [r for r in records if r["command"] == "PROXY"]
        assert flows and all(r["error"] is None for r in records), records
        tlvs = flows[-1]["tlvs"]
        assert bytes.fromhex(tlvs["0x01"]["hex"]) == b"h2", tlvs
        assert bytes.fromhex(tlvs["0x02"]["hex"]) == b"a.example.test", tlvs
        ssl_tlv = bytes.fromhex(tlvs["0x20"]["hex"])
        assert ssl_tlv[0] == 0x01 and ssl_tlv[1:5] == b"\0\0\0\0", ssl_tlv
        subs, off = {}, 5
        while off < len(ssl_tlv):
            kind, n = ssl_tlv[off], int.from_bytes(ssl_tlv[off + 1:off + 3],
                                                   "big")
            subs[kind] = ssl_tlv[off + 3:off + 3 + n].decode()
            off += 3 + n
        assert subs == {0x21: version, 0x23: cipher}, (subs, version, cipher)
    finally:
        receiver.terminate()
        receiver.wait(5)
        receiver.stdout.close()


class TlsEchoServer(Server):
    """A TLS target: a Python ssl server that echoes."""

    def __init__(self, cert, key):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.handshakes = 0
        super().__init__(self._handle)

    def _handle(self, conn):
        conn.settimeout(10)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with self.lock:
            self.handshakes += 1
        echo_handler(tls)
        tls.close()


def test_reencrypt_verifies_target():
    """A target group with tls = { ca; server_name; } speaks TLS to a Python
    ssl target, verifying its chain and name; with the wrong CA the flow
    fails: end=target_tls_failed in the access log and result
    target_failed in nlb_tls_handshakes_total."""
    require_openssl()
    pki, certs = standard_pki()
    target_cert = pki.leaf("target", ["target.example.test"])
    target = TlsEchoServer(*target_cert)
    other = Pki("other-ca")
    port = free_port()
    api_port = free_port()
    api = ('api = { listen = "127.0.0.1:%d"; };\n'
           'registry = { path = "%s/registry.db"; };\n'
           'principals = ( { name = "ops"; role = "operator"; '
           'token_sha256 = "%s"; } );\n' % (
               api_port, pki.dir,
               hashlib.sha256(b"ops-token").hexdigest()))

    def body(ca):
        return api + tls_config(
            port, [target.address], certs,
            group_extra='tls = { ca = "%s"; server_name = '
                        '"target.example.test"; };' % ca)
    with start_tls(body(pki.ca), port) as nlbd:
        with tls_connect(port, client_context(pki), "a.example.test") as s:
            echo_once(s, b"re-encrypted\n")
        assert target.handshakes >= 1
        mark = len(nlbd.wait_access(1))
        nlbd.reload(body(other.ca))
        with tls_connect(port, client_context(pki), "a.example.test") as s:
            # nlbd may end the flow (the target's handshake failed) before
            # the client's byte is written: a write may fail as well.
            try:
                s.sendall(b"x")
                assert s.recv(10) == b""
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                pass
        lines = nlbd.wait_access_since(mark, 1)
        assert access_fields(lines[-1])["end"] == "target_tls_failed", lines
        text = metrics(api_port)
        labels = 'lb="lb",listener="%d"' % port
        assert ('nlb_tls_handshakes_total{%s,result="target_failed"} 1' %
                labels) in text, text
        assert ('nlb_tls_handshakes_total{%s,result="ok"} 2' % labels) in \
            text, text
        assert 'nlb_tls_handshake_seconds_count{%s} 2' % labels in text
        expiry = [float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                  if l.startswith("nlb_tls_certificate_expiry_timestamp_"
                                  "seconds{%s," % labels)]
        # Three certificates, made for two days.
        assert len(expiry) == 3, text
        assert all(0 < e - time.time() <= 2 * 86400 + 60 for e in expiry)
        if shutil.which("promtool"):
            lint = subprocess.run(["promtool", "check", "metrics"],
                                  input=text, capture_output=True, text=True)
            assert lint.returncode == 0, lint.stdout + lint.stderr



PROXY_V2_SIGNATURE = b"\r\n\r\n\0\r\nQUIT\n"


def parse_tlvs(data):
    tlvs, off = {}, 0
    while off + 3 <= len(data):
        kind, n = data[off], int.from_bytes(data[off + 1:off + 3], "big")
        tlvs[kind] = data[off + 3:off + 3 + n]
        off += 3 + n
    return tlvs


class ProxiedTlsTarget(Server):
    """A TLS target behind PROXY v2: reads the header in the clear (when
    one comes: health checks may send none), then speaks TLS requiring a
    client certificate from pki's CA, and echoes. Keeps each flow's TLVs
    (by type) and the client certificate's names."""

    def __init__(self, pki, cert, key):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(pki.ca)
        self.seen = []  # (tlvs, client certificate names)
        super().__init__(self._handle)

    def _handle(self, conn):
        conn.settimeout(10)
        tlvs = None
        try:
            if conn.recv(12, socket.MSG_PEEK) == PROXY_V2_SIGNATURE:
                head = recv_exact(conn, 16)
                tlvs = recv_exact(conn, int.from_bytes(head[14:16], "big"))
                tlvs = parse_tlvs(tlvs[12:])  # past the IPv4 addresses
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            return
        names = sorted(v for k, v in tls.getpeercert().get(
            "subjectAltName", ()) if k == "DNS")
        if tlvs is not None:
            with self.lock:
                self.seen.append((tlvs, names))
        echo_handler(tls)
        tls.close()


def test_proxy_v2_to_reencrypting_group_with_client_cert():
    """A target group that re-encrypts (tls = { ca; server_name; cert; key;
    }) with proxy_protocol = "v2": the PROXY v2 header goes first in the
    clear, with the client's SNI (PP2_TYPE_AUTHORITY), ALPN and PP2_TYPE_SSL
    (version, cipher); then nlbd's handshake with the target presents the
    group's client certificate, which a Python ssl target requires."""
    require_openssl()
    pki, certs = standard_pki()
    target_cert = pki.leaf("target", ["target.example.test"])
    client_cert, client_key = pki.leaf("nlb-client", ["nlb.example.test"])
    target = ProxiedTlsTarget(pki, *target_cert)
    port = free_port()
    body = tls_config(
        port, [target.address], certs, tls_extra='alpn = [ "h2" ];',
        group_extra='proxy_protocol = "v2"; tls = { ca = "%s"; '
                    'server_name = "target.example.test"; cert = "%s"; '
                    'key = "%s"; };' % (pki.ca, client_cert, client_key))
    with start_tls(body, port):
        with tls_connect(port, client_context(pki, ["h2"]),
                         "a.example.test") as s:
            echo_once(s, b"proxied and re-encrypted\n")
            version, cipher = s.version(), s.cipher()[0]
    with target.lock:
        seen = list(target.seen)
    flows = [(t, n) for t, n in seen if 0x02 in t]
    assert flows, seen
    tlvs, names = flows[-1]
    assert names == ["nlb.example.test"], names
    assert tlvs[0x01] == b"h2" and tlvs[0x02] == b"a.example.test", tlvs
    ssl_tlv = tlvs[0x20]
    assert ssl_tlv[0] == 0x01 and ssl_tlv[1:5] == b"\0\0\0\0", ssl_tlv
    subs = {k: v.decode() for k, v in parse_tlvs(ssl_tlv[5:]).items()}
    assert subs == {0x21: version, 0x23: cipher}, (subs, version, cipher)

def metrics(api_port):
    out = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-H",
         "Authorization: Bearer ops-token",
         "http://127.0.0.1:%d/metrics" % api_port],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode()


def test_reload_keeps_running_flows():
    """SIGHUP reads the certificate files again: a new flow gets the new
    certificate while one already running keeps its connection; a file
    that does not load rejects the reload and the old certificate serves
    on."""
    require_openssl()
    pki, certs = standard_pki()
    server = Server(echo_handler)
    port = free_port()
    body = tls_config(port, [server.address], certs)
    with start_tls(body, port) as nlbd:
        ctx = client_context(pki)
        running = tls_connect(port, ctx, "a.example.test")
        echo_once(running)
        old_serial = running.getpeercert()["serialNumber"]
        # The same name, a new certificate in the same files.
        pki.leaf("exact", ["a.example.test"])
        nlbd.reload()
        with tls_connect(port, ctx, "a.example.test") as s:
            new_serial = s.getpeercert()["serialNumber"]
        assert new_serial != old_serial
        echo_once(running, b"still here\n")
        # A broken file: the reload fails, naming it; the listener serves
        # the last good certificate.
        with open(certs[1][0], "w") as f:
            f.write("not a certificate\n")
        nlbd.reload(expect="reload rejected")
        assert certs[1][0] in nlbd.events(), nlbd.events()[-2000:]
        # nlbd -t reads the files too.
        checked = subprocess.run([NLBD, "-t", "-c", nlbd.config_path],
                                 capture_output=True, text=True, timeout=10)
        assert checked.returncode == 2, checked
        assert "cannot load certificate %s" % certs[1][0] in \
            checked.stderr, checked.stderr
        with tls_connect(port, ctx, "a.example.test") as s:
            assert s.getpeercert()["serialNumber"] == new_serial
            echo_once(s)
        echo_once(running, b"and still\n")
        running.close()


def test_bad_clients():
    """Plaintext on the TLS port is closed (end=tls_failed), so is an
    oversized ClientHello, at once; a client that stalls mid-handshake is closed at handshake_timeout
    (end=handshake_timeout); with unknown_sni = "refuse" an unknown name
    gets an alert."""
    require_openssl()
    pki, certs = standard_pki()
    server = Server(echo_handler)
    port = free_port()
    body = tls_config(port, [server.address], certs,
                      tls_extra='handshake_timeout = "500ms"; '
                                'unknown_sni = "refuse";')
    with start_tls(body, port) as nlbd:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b""
            # At most a TLS alert record, never an HTTP answer.
            assert data == b"" or data[0] == 0x15, data
        # A ClientHello that says it is 16 MiB long: refused at once, not
        # waited for (end=tls_failed, not handshake_timeout).
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"\x16\x03\x01\x00\x04\x01\xff\xff\xff")
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b""
            assert data == b"" or data[0] == 0x15, data
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"\x16\x03\x01\x00")  # a ClientHello that never ends
            try:
                assert s.recv(100) == b""
            except ConnectionResetError:
                pass
        waited = time.monotonic() - started
        assert 0.4 <= waited < 4, waited
        try:
            with tls_connect(port, client_context(pki), "nobody.example.test"):
                raise AssertionError("an unknown name was served")
        except ssl.SSLError as e:
            assert "UNRECOGNIZED_NAME" in str(e).upper(), e
        lines = nlbd.wait_access(4)
        ends = [access_fields(l)["end"] for l in lines]
        assert ends.count("tls_failed") == 3, ends
        assert ends.count("handshake_timeout") == 1, ends


def test_session_resumption():
    """A TLS 1.3 session ticket from one connection resumes the next ones,
    whichever of the two workers takes them (the ticket keys are shared);
    the metric counts them as resumed."""
    require_openssl()
    pki, certs = standard_pki()
    server = Server(echo_handler)
    port = free_port()
    body = tls_config(port, [server.address], certs)
    with start_tls(body, port) as nlbd:
        ctx = client_context(pki)
        with tls_connect(port, ctx, "a.example.test") as s:
            echo_once(s)  # the ticket comes after the handshake
            session = s.session
        assert session is not None
        reused = 0
        for _ in range(6):
            with tls_connect(port, ctx, "a.example.test",
                             session=session) as s:
                echo_once(s)
                reused += s.session_reused
        assert reused == 6, reused
        fields = [access_fields(l) for l in nlbd.wait_access(7)]
        assert all(f["end"] == "client_fin" for f in fields), fields



def s_client_echo(port, pki, sess_in=None, sess_out=None, timeout=10):
    """openssl s_client through the echo target: sends a line, waits for
    it to come back (the session ticket comes before it) and quits; its
    output."""
    args = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port,
            "-servername", "a.example.test", "-CAfile", pki.ca, "-tls1_3"]
    if sess_in:
        args += ["-sess_in", sess_in]
    if sess_out:
        args += ["-sess_out", sess_out]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc.stdin.write(b"echo-me\n")
    proc.stdin.flush()
    out, deadline = b"", time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    while b"\necho-me" not in out and time.monotonic() < deadline:
        select.select([proc.stdout], [], [], 0.2)
        out += proc.stdout.read() or b""
    # s_client ends on its input's end, which communicate gives it.
    out += proc.communicate(timeout=timeout)[0] or b""
    return out.decode(errors="replace")


def test_resumption_chain():
    """A TLS 1.3 client uses a ticket once (RFC 8446 C.4): each resumed
    connection gets a new ticket, so a client that resumes from its last
    connection's session (openssl s_client -sess_in/-sess_out, wrk)
    resumes every time, not every other time."""
    require_openssl()
    pki, certs = standard_pki()
    server = Server(echo_handler)
    port = free_port()
    body = tls_config(port, [server.address], certs)
    with start_tls(body, port) as nlbd:
        sessions = [os.path.join(pki.dir, "session%d.pem" % i)
                    for i in range(4)]
        out = s_client_echo(port, pki, sess_out=sessions[0])
        assert "New, TLSv1.3" in out and "New Session Ticket" in out, out
        for i in range(1, 4):
            out = s_client_echo(port, pki, sess_in=sessions[i - 1],
                                sess_out=sessions[i])
            assert "Reused, TLSv1.3" in out, (i, out)
            assert "New Session Ticket arrived" in out, (i, out)
        fields = [access_fields(l) for l in nlbd.wait_access(4)]
        assert all(f["end"] == "client_fin" for f in fields), fields

def test_half_close_and_resets_carried_across():
    """A target that closes its side (FIN) after answering: the client
    gets the answer and the end of the stream (close_notify), and what it
    sends after that still reaches the target (half-close,
    end=target_fin); a target's reset reaches the client as a reset
    (end=target_reset)."""
    require_openssl()
    pki, certs = standard_pki()
    received = []

    def answer_then_fin(conn):
        conn.sendall(b"hello")
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        received.append(data)

    def reset_after_bytes(conn):
        conn.recv(100)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        b"\x01\x00\x00\x00\x00\x00\x00\x00")
    for handler, check in [(answer_then_fin, "fin"),
                           (reset_after_bytes, "reset")]:
        server = Server(handler)
        port = free_port()
        body = tls_config(port, [server.address], certs)
        with start_tls(body, port) as nlbd:
            mark = len(nlbd.access())
            s = tls_connect(port, client_context(pki), "a.example.test")
            if check == "fin":
                got = b""
                while True:
                    chunk = s.recv(100)
                    if not chunk:
                        break
                    got += chunk
                assert got == b"hello", got
                s.sendall(b"after your fin")
                s.close()
                wait_until(lambda: received, what="the target's read")
                assert received == [b"after your fin"], received
                end = "target_fin"
            else:
                s.sendall(b"x")
                # Below TLS: the client's socket is reset, not closed.
                raw = socket.socket(fileno=os.dup(s.fileno()))
                raw.settimeout(5)
                try:
                    while raw.recv(65536):
                        pass
                    raise AssertionError("closed, not reset")
                except ConnectionResetError:
                    pass
                raw.close()
                s.close()
                end = "target_reset"
            line = nlbd.wait_access_since(mark, 1)[0]
            assert access_fields(line)["end"] == end, line
        server.stop()


def test_bulk_both_ways_intact():
    """8 MiB each way through one TLS flow at once (the echo target sends
    back while the client still sends), intact and in order. The client
    sends and reads in one thread (see exchange)."""
    require_openssl()
    pki, certs = standard_pki()
    server = Server(echo_handler)
    port = free_port()
    body = tls_config(port, [server.address], certs)
    payload = os.urandom(8 << 20)
    with start_tls(body, port) as nlbd:
        s = tls_connect(port, client_context(pki), "a.example.test",
                        timeout=30)
        got = exchange(s, payload)
        if len(got) < len(payload):
            # Why the flow ended: nlbd's access-log line (end=...), or
            # that nlbd has not ended it.
            try:
                line = nlbd.wait_access(1, timeout=5)[-1]
            except AssertionError:
                line = "no access-log line: nlbd has not ended the flow"
            raise AssertionError("EOF after %d bytes: %s\n%s" % (
                len(got), line, nlbd.events()))
        assert hashlib.sha256(got).digest() == \
            hashlib.sha256(payload).digest()
        s.close()
        line = nlbd.wait_access(1)[-1]
        assert access_fields(line)["up"] == str(len(payload)), line
        assert access_fields(line)["down"] == str(len(payload)), line


def test_endpoint_listener_terminates_tls():
    """A consumer's endpoint listener in its own network namespace, on the
    port of a TLS listener, terminates TLS with that listener's
    certificates: the consumer verifies the provider's name and reaches
    the target; the access line names the endpoint. Needs root and
    `ip netns` (SKIP otherwise)."""
    require_openssl()
    if os.geteuid() != 0 or not shutil.which("ip"):
        from nlbtest import Skip
        raise Skip("needs root and ip (network namespaces)")
    import netnstest
    import nlbtest
    pki, certs = standard_pki()
    server = Server(echo_handler)
    ns = netnstest.name("tlsshop")
    netnstest.netns_add(ns)
    port, api_port = free_port(), free_port()
    tokens = {"prov": ("provider", "prov-tls"), "shop": ("consumer",
                                                         "shop-tls")}
    principals = ",\n".join(
        '{ name = "%s"; role = "%s"; token_sha256 = "%s"; }' % (
            n, role, hashlib.sha256(t.encode()).hexdigest())
        for n, (role, t) in tokens.items())
    certificates = ", ".join('{ cert = "%s"; key = "%s"; }' % c
                             for c in certs)
    config = """api = { listen = "127.0.0.1:%d"; };
registry = { path = "%s/registry.db"; };
principals = ( %s );
networks = ( { name = "shop-vpc"; netns = "%s"; range = "127.91.0.0/24";
               principals = [ "shop" ]; } );
target_groups = ( { name = "tg"; targets = ( { address = "%s"; } ); } );
load_balancers = ( { name = "lb"; listeners = ( { port = %d;
  target_group = "tg"; protocol = "tls";
  tls = { certificates = ( %s ); }; } ); } );
""" % (api_port, pki.dir, principals, ns, server.address, port, certificates)

    def call(who, method, path, body, status):
        code, value = nlbtest.api_request(api_port, method, path,
                                          tokens[who][1], body)
        assert code == status, (method, path, code, value)
        return value
    try:
        with CheckedNlbd(config).start(wait_port=api_port) as nlbd:
            call("prov", "POST", "/v1/services", {
                "name": "web", "load_balancer": "lb",
                "acceptance_required": False,
                "allowed_principals": ["shop"]}, 201)
            endpoint = call("shop", "POST", "/v1/endpoints", {
                "service": "web", "network": "shop-vpc",
                "address": "127.91.0.10"}, 201)

            def consumer_echo():
                raw = netnstest.ns_connect(ns, "127.91.0.10", port)
                with client_context(pki).wrap_socket(
                        raw, server_hostname="a.example.test") as s:
                    echo_once(s, b"through the endpoint\n")
                    return peer_names(s)
            names = wait_until(lambda: _quietly(consumer_echo), timeout=10,
                               what="a TLS flow through the endpoint")
            assert names == ["a.example.test"], names
            line = nlbd.wait_access(1)[-1]
            assert endpoint["id"] in line and "sni=a.example.test" in line, \
                line
    finally:
        netnstest.netns_del(ns)


def _quietly(fn):
    try:
        return fn()
    except OSError:
        return None


if __name__ == "__main__":
    run([test_certificate_by_sni_and_alpn, test_curl_through_tls_listener,
         test_proxy_v2_tls_tlvs,
         test_proxy_v2_to_reencrypting_group_with_client_cert,
         test_reencrypt_verifies_target,
         test_reload_keeps_running_flows, test_bad_clients,
         test_session_resumption, test_resumption_chain,
         test_half_close_and_resets_carried_across,
         test_bulk_both_ways_intact,
         test_endpoint_listener_terminates_tls],
        timeout=90)
