"""End-to-end tests of HTTP/1.1 on the management API, beside HTTP/2 on
the same port: a real Prometheus server scraping nlbd over plain HTTP and
over TLS, the everyday clients (curl without flags, Python urllib, wget),
byte-identical answers over both protocols, keep-alive, pipelining, chunked
bodies, Expect: 100-continue, the limits and timeouts, the event stream as
chunked NDJSON, and one test per request-smuggling shape (each: 400, then
the connection closed)."""

import http.client
import json
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nlbtest  # noqa: E402
from apitest import (HEALTHZ_OK, ApiServer, NlbdApi,  # noqa: E402
                     check_answer, need, token)


def create_service(api, name="payments-api", **fields):
    body = {"name": name, "load_balancer": "payments-lb",
            "allowed_principals": ["shop"]}
    body.update(fields)
    return api.ok("POST", "/v1/services", "payments", body, status=201)


# ---- a raw HTTP/1.1 client, for bytes no ordinary client sends ----------


class Raw:
    """One socket to the API; reads answers as the server framed them."""

    def __init__(self, api, timeout=5, sock=None):
        self.sock = sock or socket.create_connection(("127.0.0.1", api.port),
                                                     timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def _until(self, marker):
        while marker not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(marker, 1)
        return head

    def _exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self, head_only=False):
        """(status, {header: value}, body) of the next answer."""
        lines = self._until(b"\r\n\r\n").decode().split("\r\n")
        version, status = lines[0].split(" ")[:2]
        assert version == "HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            assert name.lower() not in headers, "twice: " + name
            headers[name.lower()] = value.strip()
        if head_only or int(status) in (100, 204, 304):
            return int(status), headers, b""
        if headers.get("transfer-encoding") == "chunked":
            return int(status), headers, self.chunks()
        return int(status), headers, self._exactly(
            int(headers["content-length"]))

    def chunks(self, limit=None):
        """Reads a chunked body to its end (or limit chunks)."""
        body, n = b"", 0
        while limit is None or n < limit:
            size = int(self._until(b"\r\n"), 16)
            if size == 0:
                assert self._until(b"\r\n") == b""
                break
            body += self._exactly(size)
            assert self._exactly(2) == b"\r\n"
            n += 1
        return body

    def rest(self, timeout=5):
        """Everything until the server closes."""
        self.sock.settimeout(timeout)
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return self.buf
            self.buf += chunk

    def closed(self, timeout=5):
        """True when the server closes within timeout, after sending
        nothing more."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return self.buf == b""
                self.buf += chunk
        except socket.timeout:
            return False
        except ConnectionResetError:
            return self.buf == b""

    def close(self):
        self.sock.close()


def request(method, path, who=None, body=None, headers=(), version="1.1"):
    """The bytes of one ordinary request."""
    lines = ["%s %s HTTP/%s" % (method, path, version), "Host: 127.0.0.1"]
    if who is not None:
        lines.append("Authorization: Bearer " + token(who))
    lines += list(headers)
    data = b""
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        lines.append("Content-Length: %d" % len(data))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def fetch(api, method, path, who=None, body=None, http2=False):
    """One request with curl over HTTP/1.1 (or HTTP/2): (status, headers,
    body bytes exactly as sent)."""
    out = os.path.join(api.dir, "fetch.%d" % threading.get_ident())
    hdr = out + ".headers"
    args = ["curl", "-s", "-S", "-X", method, "-o", out, "-D", hdr,
            "--max-time", "10", "-w", "%{http_version}"]
    if api.scheme == "https":
        args += ["--cacert", api.cert]
    args.append("--http2-prior-knowledge" if http2 and api.scheme == "http"
                else "--http2" if http2 else "--http1.1")
    if method == "HEAD":
        args += ["-I"]
    if who is not None:
        args += ["-H", "Authorization: Bearer " + token(who)]
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        args += ["-H", "Content-Type: application/json", "--data-binary",
                 "@-"]
    args.append(api.base + path)
    r = subprocess.run(args, input=data, capture_output=True, timeout=15)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == ("2" if http2 else "1.1"), r.stdout
    with open(out, "rb") as f:
        got = f.read() if method != "HEAD" else b""  # -I: the headers
    status, headers = 0, {}
    with open(hdr) as f:
        for line in f:
            if line.startswith("HTTP/"):
                status = int(line.split()[1])
            elif ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
    check_answer(method, path, status, headers, got)
    return status, headers, got


# ---- real clients -------------------------------------------------------


PROMETHEUS_JOB = """  - job_name: %(job)s
    scheme: %(scheme)s
    enable_http2: false
    authorization:
      type: Bearer
      credentials_file: %(token)s
%(tls)s    static_configs:
      - targets: ["127.0.0.1:%(port)d"]
"""


class Prometheus:
    """Debian's prometheus on a loopback port, scraping every second."""

    def __init__(self, jobs):
        self.dir = tempfile.mkdtemp(prefix="nlb-prometheus-")
        token_file = os.path.join(self.dir, "token")
        with open(token_file, "w") as f:
            f.write(token("ops"))
        config = ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                  "scrape_configs:\n")
        for job, api in jobs:
            config += PROMETHEUS_JOB % {
                "job": job, "scheme": api.scheme, "token": token_file,
                "tls": "    tls_config:\n      ca_file: %s\n" % api.cert
                if api.cert else "", "port": api.port}
        path = os.path.join(self.dir, "prometheus.yml")
        with open(path, "w") as f:
            f.write(config)
        self.port = nlbtest.free_port()
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            ["prometheus", "--config.file=" + path,
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=self.log)

    def query(self, expr):
        url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (
            self.port, urllib.request.quote(expr))
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                answer = json.load(r)
        except OSError:
            return []  # not up yet
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def targets(self):
        url = "http://127.0.0.1:%d/api/v1/targets" % self.port
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)["data"]["activeTargets"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_prometheus_scrapes_nlbd_plain_and_tls():
    """Issue 14's first symptom: Prometheus speaks HTTP/1.1 to http://
    targets, and to https:// ones with enable_http2 off."""
    need("prometheus", "openssl")
    with NlbdApi() as plain, NlbdApi(tls=True) as tls:
        prometheus = Prometheus([("nlb-plain", plain), ("nlb-tls", tls)])
        try:
            def up():
                series = prometheus.query("up")
                return {s["metric"]["job"]: s["value"][1] for s in series}
            nlbtest.wait_until(lambda: up() == {"nlb-plain": "1",
                                                "nlb-tls": "1"},
                               timeout=40, interval=0.5,
                               what="both nlbd targets up")
            for target in prometheus.targets():
                assert target["health"] == "up", target
                assert target["lastError"] == "", target
            # The nlb series, from both (the API's counter shows from the
            # second scrape: the first answer is counted once it is sent).
            for name in ("nlb_active_flows",
                         'nlb_api_requests_total{code="200"}'):
                nlbtest.wait_until(
                    lambda: {s["metric"]["job"] for s in
                             prometheus.query(name)} == {"nlb-plain",
                                                         "nlb-tls"},
                    timeout=20, interval=0.5, what=name + " from both")
        except BaseException:
            with open(os.path.join(prometheus.dir, "prometheus.log")) as f:
                print(f.read()[-3000:])
            raise
        finally:
            prometheus.stop()


def test_everyday_clients():
    """curl without flags, urllib with a bearer token, wget; curl --http1.1
    and urllib over TLS."""
    need("curl", "wget", "openssl")
    with ApiServer() as api:
        sid = create_service(api)["id"]
        r = subprocess.run(["curl", "-s", api.base + "/healthz"],
                           capture_output=True, timeout=10)
        assert (r.returncode, r.stdout) == (0, HEALTHZ_OK), r
        r = subprocess.run(["wget", "-q", "-O-", api.base + "/healthz"],
                           capture_output=True, timeout=10)
        assert (r.returncode, r.stdout) == (0, HEALTHZ_OK), r
        # wget fails on an error status, as a health check needs.
        for path in ("/v1/services", "/nope"):
            r = subprocess.run(["wget", "-q", "-O-", api.base + path],
                               capture_output=True, timeout=10)
            assert r.returncode != 0 and r.stdout == b"", r
        req = urllib.request.Request(
            api.base + "/v1/services/" + sid,
            headers={"Authorization": "Bearer " + token("payments")})
        with urllib.request.urlopen(req, timeout=10) as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"] == "application/json"
            assert json.load(answer)["id"] == sid
        body = json.dumps({"name": "made-by-urllib",
                           "load_balancer": "search-lb"}).encode()
        req = urllib.request.Request(
            api.base + "/v1/services", data=body, method="POST",
            headers={"Authorization": "Bearer " + token("search"),
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as answer:
            assert answer.status == 201
    with ApiServer(tls=True) as api:
        status, headers, body = fetch(api, "GET", "/v1/services", "payments")
        assert (status, body) == (200, b'{"services":[]}\n'), (status, body)
        context = ssl.create_default_context(cafile=api.cert)
        req = urllib.request.Request(
            api.base + "/metrics",
            headers={"Authorization": "Bearer " + token("ops")})
        with urllib.request.urlopen(req, timeout=10,
                                    context=context) as answer:
            assert b"nlb_api_requests_total" in answer.read()
        r = subprocess.run(["wget", "-q", "-O-", "--ca-certificate",
                            api.cert, api.base + "/healthz"],
                           capture_output=True, timeout=10)
        assert (r.returncode, r.stdout) == (0, HEALTHZ_OK), r


def test_tls_alpn_choices():
    """ALPN h2 wins when offered; http/1.1 or no ALPN at all is HTTP/1.1;
    a client that offers neither is refused in the handshake."""
    need("openssl")
    with ApiServer(tls=True) as api:
        def handshake(protocols):
            context = ssl.create_default_context(cafile=api.cert)
            if protocols is not None:
                context.set_alpn_protocols(protocols)
            sock = socket.create_connection(("127.0.0.1", api.port),
                                            timeout=5)
            return context.wrap_socket(sock, server_hostname="127.0.0.1")
        for offered, chosen in ((["http/1.1", "h2"], "h2"),
                                (["http/1.1"], "http/1.1"), (None, None)):
            tls = handshake(offered)
            assert tls.selected_alpn_protocol() == chosen, offered
            if chosen != "h2":
                raw = Raw(api, sock=tls)
                raw.send(request("GET", "/healthz"))
                assert raw.response()[:3:2] == (200, HEALTHZ_OK)
            tls.close()
        try:
            handshake(["spdy/3.1"]).close()
        except ssl.SSLError as e:
            assert "no application protocol" in str(e), e
        else:
            raise AssertionError("a client without h2 or http/1.1 was served")


def test_same_bytes_over_both_protocols():
    """Every answer (status, content type, body) is byte-for-byte the same
    over HTTP/1.1 and HTTP/2."""
    need("curl")
    with ApiServer() as api:
        sid = create_service(api)["id"]
        ep = api.ok("POST", "/v1/endpoints", "shop",
                    {"service": "payments-api", "network": "host"},
                    status=201)["id"]
        missing_ep = "ep-00000000000000000"
        requests = [
            ("GET", "/healthz", None, None),
            ("GET", "/v1/services", "payments", None),
            ("GET", "/v1/services/" + sid, "payments", None),
            ("GET", "/v1/services/%s/permissions" % sid, "payments", None),
            ("GET", "/v1/services/%s/connections" % sid, "payments", None),
            ("GET", "/v1/available-services", "shop", None),
            ("GET", "/v1/endpoints/" + ep, "shop", None),
            ("GET", "/v1/target-groups", "ops", None),
            ("GET", "/v1/services", "nobody", None),
            ("GET", "/v1/target-groups", "shop", None),
            ("GET", "/no/such/route", "ops", None),
            ("HEAD", "/v1/services", "payments", None),
            ("POST", "/v1/services", "payments", b'{"name":'),
            ("POST", "/v1/services", "payments", {"name": "x", "zz": 1}),
            ("POST", "/v1/services/%s/connections/accept" % sid, "payments",
             {"endpoint_ids": [missing_ep]}),
            ("PATCH", "/v1/services/" + sid, "payments",
             {"connection_limit": 5}),
            ("PATCH", "/v1/services/%s/permissions" % sid, "payments",
             {"add": ["blog"]}),
            ("DELETE", "/v1/services/" + sid, "payments", None),
            ("DELETE", "/v1/endpoints/" + missing_ep, "shop", None),
            ("DELETE", "/healthz", None, None),
            ("POST", "/v1/target-groups/nope/targets", "ops",
             {"address": "127.0.0.1:1"}),
        ]
        for method, path, who, body in requests:
            one = fetch(api, method, path, who, body)
            two = fetch(api, method, path, who, body, http2=True)
            for got in (one, two):
                got[1].pop("connection", None)
            assert one == two, (method, path, one, two)
        # A deletion, read back both ways.
        gone = fetch(api, "DELETE", "/v1/endpoints/" + ep, "shop")
        assert gone[0] == 200 and b'"deleted"' in gone[2], gone
        assert fetch(api, "GET", "/v1/endpoints/" + ep, "shop") == \
            fetch(api, "GET", "/v1/endpoints/" + ep, "shop", http2=True)


def test_a_thousand_requests_on_one_connection():
    need("curl")
    with ApiServer() as api:
        sid = create_service(api)["id"]
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
        conn.connect()
        sock = conn.sock
        auth = {"Authorization": "Bearer " + token("payments")}
        for i in range(1000):
            if i % 2:
                conn.request("GET", "/v1/services/" + sid, headers=auth)
            else:
                conn.request("GET", "/healthz")
            answer = conn.getresponse()
            body = answer.read()
            assert answer.status == 200, (i, answer.status, body)
            assert answer.getheader("Connection") is None
            assert conn.sock is sock, "reconnected at request %d" % i
        conn.close()
        # The server counted each.
        metrics = fetch(api, "GET", "/metrics", "ops")[2].decode()
        line = [x for x in metrics.splitlines()
                if x.startswith('nlb_api_requests_total{code="200"}')][0]
        assert int(line.split()[1]) >= 1000, line


def test_pipelined_requests_are_answered_in_order():
    need("curl")
    with ApiServer() as api:
        raw = Raw(api)
        raw.send(request("GET", "/healthz") + request("GET", "/v1/services")
                 + request("GET", "/nope", "ops") +
                 request("POST", "/v1/services", "payments",
                         {"name": "piped", "load_balancer": "payments-lb"})
                 + request("HEAD", "/healthz"))
        got = [raw.response()[0] for _ in range(4)]
        assert got == [200, 401, 404, 201], got
        status, headers, _ = raw.response(head_only=True)
        assert (status, headers["content-length"]) == (
            200, str(len(HEALTHZ_OK)))
        # Still open, and still in step.
        raw.send(request("GET", "/healthz"))
        assert raw.response()[2] == HEALTHZ_OK
        raw.close()
        # A hundred at once whose answers (500 KiB) are more than the
        # server queues before it stops reading.
        for i in range(20):
            create_service(api, name="piped-%02d" % i)
        raw = Raw(api)
        raw.send(b"".join(request("GET", "/v1/services", "payments")
                          for _ in range(100)))
        for _ in range(100):
            status, _, body = raw.response()
            assert status == 200 and len(json.loads(body)["services"]) == 21
        raw.send(request("GET", "/healthz"))
        assert raw.response()[2] == HEALTHZ_OK
        raw.close()


def test_keep_alive_rules():
    """HTTP/1.1 stays open unless Connection: close; HTTP/1.0 closes unless
    it asks for keep-alive."""
    need("curl")
    with ApiServer() as api:
        raw = Raw(api)
        raw.send(request("GET", "/healthz", headers=["Connection: close"]))
        status, headers, body = raw.response()
        assert headers["connection"] == "close", headers
        assert raw.closed(), "Connection: close was not honoured"
        raw = Raw(api)
        raw.send(request("GET", "/healthz", version="1.0"))
        assert raw.response()[1]["connection"] == "close"
        assert raw.closed()
        raw = Raw(api)
        raw.send(request("GET", "/healthz", version="1.0",
                         headers=["Connection: keep-alive"]))
        assert raw.response()[1]["connection"] == "keep-alive"
        raw.send(request("GET", "/healthz", version="1.0"))
        assert raw.response()[2] == HEALTHZ_OK
        assert raw.closed()
        # Upgrade: h2c is ignored: the answer is HTTP/1.1, the connection
        # goes on in HTTP/1.1.
        raw = Raw(api)
        raw.send(request("GET", "/healthz", headers=[
            "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
            "HTTP2-Settings: AAMAAABkAAQAAP__"]))
        assert raw.response()[:3:2] == (200, HEALTHZ_OK)
        raw.send(request("GET", "/healthz"))
        assert raw.response()[:3:2] == (200, HEALTHZ_OK)
        raw.close()
        # An absolute-form target names the same resource.
        raw = Raw(api)
        raw.send(request("GET", "http://127.0.0.1/healthz"))
        assert raw.response()[:3:2] == (200, HEALTHZ_OK)
        raw.close()


def test_head_405_and_errors():
    need("curl")
    with ApiServer() as api:
        status, headers, body = fetch(api, "HEAD", "/healthz")
        assert (status, headers["content-length"], body) == (
            200, str(len(HEALTHZ_OK)), b"")
        status, headers, body = fetch(api, "PUT", "/v1/services", "payments")
        assert status == 405 and headers["allow"] == "GET, HEAD, POST", \
            (status, headers)
        assert json.loads(body)["error"]["code"] == "MethodNotAllowed"
        status, headers, _ = fetch(api, "GET", "/v1/services")
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        # Headers over 16 KiB, a path over 4 KiB: 431, and the connection
        # goes.
        for big in (request("GET", "/healthz", headers=["X-Big: " +
                                                         "a" * 20000]),
                    request("GET", "/v1/services/" + "s" * 5000)):
            raw = Raw(api)
            raw.send(big)
            status, headers, body = raw.response()
            assert status == 431 and headers["connection"] == "close"
            assert json.loads(body)["error"]["code"] == "HeadersTooLarge"
            assert raw.closed()
            raw.close()


def test_chunked_request_bodies():
    need("curl")
    with ApiServer() as api:
        r = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
             "Authorization: Bearer " + token("payments"), "-H",
             "Transfer-Encoding: chunked", "--data-binary", "@-",
             api.base + "/v1/services"],
            input=json.dumps({"name": "by-curl", "load_balancer":
                              "payments-lb"}).encode(),
            capture_output=True, timeout=10)
        assert r.stdout == b"201", r
        body = json.dumps({"name": "in-chunks",
                           "load_balancer": "payments-lb"}).encode()
        head = request("POST", "/v1/services", "payments",
                       headers=["Transfer-Encoding: chunked"])
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]),
                                             body[i:i + 7])
                          for i in range(0, len(body), 7))
        raw = Raw(api)
        raw.send(head)
        time.sleep(0.1)  # the body arrives apart from the head
        raw.send(chunks[:20])
        raw.send(chunks[20:] + b"0;ext=1\r\n\r\n")
        status, _, answer = raw.response()
        assert status == 201 and json.loads(answer)["name"] == "in-chunks"
        # The connection goes on after a chunked body.
        raw.send(request("GET", "/healthz"))
        assert raw.response()[2] == HEALTHZ_OK
        raw.close()


def test_expect_100_continue():
    need("curl")
    with ApiServer() as api:
        body = json.dumps({"name": "expected",
                           "load_balancer": "payments-lb"}).encode()
        raw = Raw(api)
        raw.send(request("POST", "/v1/services", "payments",
                         headers=["Expect: 100-continue",
                                  "Content-Length: %d" % len(body)]))
        assert raw.response()[0] == 100
        raw.send(body)
        assert raw.response()[0] == 201
        raw.close()
        # Too large: 413 at once, no 100, and the connection goes.
        raw = Raw(api)
        raw.send(request("POST", "/v1/services", "payments",
                         headers=["Expect: 100-continue",
                                  "Content-Length: 100000"]))
        status, _, answer = raw.response()
        assert status == 413, status
        assert json.loads(answer)["error"]["code"] == "PayloadTooLarge"
        assert raw.closed()
        # curl waits for the 100 before it sends the body; the answer
        # (naming the unknown field) shows the body was read after it.
        big = json.dumps({"name": "big", "load_balancer": "payments-lb",
                          "padding": "x" * 20000})
        r = subprocess.run(
            ["curl", "-sv", "-o", "-", "-w", " %{http_code}", "-H",
             "Authorization: Bearer " + token("payments"), "-H",
             "Expect: 100-continue", "--data-binary", "@-",
             api.base + "/v1/services"], input=big.encode(),
            capture_output=True, timeout=10)
        assert r.stdout.endswith(b" 400") and b"padding" in r.stdout, r
        assert b"HTTP/1.1 100 Continue" in r.stderr, r.stderr


def test_body_over_64_kib():
    need("curl")
    with ApiServer() as api:
        big = b'{"name":"' + b"a" * 70000 + b'"}'
        status, _, body = fetch(api, "POST", "/v1/services", "payments", big)
        assert status == 413, status
        assert json.loads(body)["error"]["code"] == "PayloadTooLarge"
        # Chunked: the same limit, counted as the chunks come.
        raw = Raw(api)
        raw.send(request("POST", "/v1/services", "payments",
                         headers=["Transfer-Encoding: chunked"]))
        raw.send(b"8000\r\n" + b"a" * 0x8000 + b"\r\n")
        raw.send(b"8000\r\n" + b"a" * 0x8000 + b"\r\n")
        raw.send(b"10\r\n" + b"a" * 16 + b"\r\n")
        status, _, body = raw.response()
        assert status == 413, status
        assert raw.closed()
        # Just under the limit is served.
        pad = 64 * 1024 - len(b'{"name":"x","load_balancer":"payments-lb",'
                              b'"allowed_principals":[]}') - 20
        body = (b'{"name":"x","load_balancer":"payments-lb",'
                b'"allowed_principals":[]' + b" " * pad + b"}")
        status, _, _ = fetch(api, "POST", "/v1/services", "payments", body)
        assert status == 201, status


def test_timeouts():
    """A request that does not arrive in time gets 408 and the connection
    goes; an idle connection is closed after the idle timeout."""
    need("curl")
    with ApiServer(extra=["--request-timeout-ms", "1000",
                          "--idle-timeout-ms", "1500"]) as api:
        raw = Raw(api)
        started = time.monotonic()
        raw.send(b"POST /v1/services HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 10\r\n\r\n{\"na")
        status, headers, body = raw.response()
        assert status == 408 and headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == "RequestTimeout"
        assert 0.9 < time.monotonic() - started < 4
        assert raw.closed()
        # Idle: one answer, then nothing.
        raw = Raw(api, timeout=10)
        # Timed from before the request: idle starts after the answer,
        # never earlier, however late this thread reads it.
        asked = time.monotonic()
        raw.send(request("GET", "/healthz"))
        assert raw.response()[2] == HEALTHZ_OK
        assert raw.closed(timeout=8), "the idle connection stayed open"
        assert time.monotonic() - asked > 1.4
        # A connection that never sends a byte goes too.
        raw = Raw(api, timeout=10)
        assert raw.closed(timeout=8)
        assert api.call("GET", "/healthz")[0] == 200


def _events_curl(api, who, after=0):
    args = ["curl", "-sN", "--http1.1", "-H",
            "Authorization: Bearer " + token(who),
            api.base + "/v1/events?after=%d" % after]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE)
    lines = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put(json.loads(line))
        lines.put(None)
    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def test_event_stream_over_http1():
    """GET /v1/events: chunked NDJSON that stays open, replays after=SEQ,
    follows live, and ends cleanly (the last chunk) on reload and on
    shutdown."""
    need("curl")
    with ApiServer() as api:
        sid = create_service(api)["id"]
        api.ok("POST", "/v1/endpoints", "shop",
               {"service": "payments-api", "network": "host"}, status=201)
        raw = Raw(api)
        raw.send(request("GET", "/v1/events?after=0", "ops"))
        status, headers, _ = raw.response(head_only=True)
        assert status == 200, status
        assert headers["content-type"] == "application/x-ndjson"
        assert headers["transfer-encoding"] == "chunked"
        assert headers["connection"] == "close"
        assert "content-length" not in headers
        first = json.loads(raw.chunks(limit=1))
        assert (first["type"], first["service_id"]) == ("connect", sid)
        proc, lines = _events_curl(api, "shop")
        assert lines.get(timeout=5)["type"] == "connect"
        ep = api.ok("POST", "/v1/endpoints", "shop",
                    {"service": "payments-api", "network": "host"},
                    status=201)["id"]
        live = lines.get(timeout=5)
        assert (live["type"], live["endpoint_id"]) == ("connect", ep), live
        second = json.loads(raw.chunks(limit=1))
        assert second["endpoint_id"] == ep
        # HTTP/1.0 knows no chunks: the lines as they are, until the end.
        old = Raw(api)
        old.send(request("GET", "/v1/events?after=0", "ops", version="1.0"))
        status, headers, _ = old.response(head_only=True)
        assert status == 200 and "transfer-encoding" not in headers
        assert old._until(b"\n").startswith(b'{"seq":')
        api.signal(signal.SIGHUP)
        assert proc.wait(5) == 0, "the stream did not end cleanly"
        assert lines.get(timeout=5) is None
        raw.chunks()  # to the last chunk
        assert raw.closed()
        assert b'"endpoint_id":"%s"' % ep.encode() in old.rest()
        proc, lines = _events_curl(api, "ops")
        # The stream is open once its first (replayed) line is in.
        assert lines.get(timeout=5)["type"] == "connect"
        assert api.stop() == 0
        assert proc.wait(5) == 0


def test_status_counts_and_audit():
    """HTTP/1.1 answers are counted and audited like HTTP/2 ones, refused
    requests included."""
    need("curl")
    with ApiServer() as api:
        fetch(api, "POST", "/v1/services", "payments",
              {"name": "audited", "load_balancer": "payments-lb"})
        raw = Raw(api)
        raw.send(b"DELETE /v1/services/x HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n")
        assert raw.response()[0] == 400
        log = api.log()
        assert ("principal=payments role=provider method=POST "
                "path=/v1/services status=201") in log, log
        assert "method=DELETE path=/v1/services/x status=400" in log, log
        assert token("payments") not in log
        metrics = fetch(api, "GET", "/metrics", "ops")[2].decode()
        assert 'nlb_api_requests_total{code="400"} 1\n' in metrics
        assert 'nlb_api_requests_total{code="201"} 1\n' in metrics


# ---- request smuggling: 400, then the connection closed ------------------

OK_HEAD = b"POST /v1/services HTTP/1.1\r\nHost: x\r\n"
AUTH = ("Authorization: Bearer %s\r\n" % token("payments")).encode()
BODY = b'{"name":"smuggled","load_balancer":"payments-lb"}'

SMUGGLING = [
    ("content_length_and_transfer_encoding",
     OK_HEAD + AUTH + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n0\r\n\r\n"),
    ("transfer_encoding_and_content_length",
     OK_HEAD + AUTH + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"
     b"\r\n0\r\n\r\n"),
    ("duplicate_content_length",
     OK_HEAD + AUTH + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" %
     (len(BODY), len(BODY)) + BODY),
    ("differing_content_length",
     OK_HEAD + AUTH + b"Content-Length: %d\r\nContent-Length: 3\r\n\r\n" %
     len(BODY) + BODY),
    ("content_length_list",
     OK_HEAD + AUTH + b"Content-Length: %d, %d\r\n\r\n" %
     (len(BODY), len(BODY)) + BODY),
    ("transfer_encoding_chunked_not_final",
     OK_HEAD + AUTH + b"Transfer-Encoding: chunked, identity\r\n\r\n"
     b"0\r\n\r\n"),
    ("transfer_encoding_not_chunked",
     OK_HEAD + AUTH + b"Transfer-Encoding: gzip\r\n\r\n" + BODY),
    ("transfer_encoding_other_coding_first",
     OK_HEAD + AUTH + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    ("transfer_encoding_twice",
     OK_HEAD + AUTH + b"Transfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("transfer_encoding_in_http_1_0",
     b"POST /v1/services HTTP/1.0\r\n" + AUTH +
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("space_before_colon",
     OK_HEAD + AUTH + b"Transfer-Encoding : chunked\r\nContent-Length: %d"
     b"\r\n\r\n" % len(BODY) + BODY),
    ("obs_fold",
     OK_HEAD + AUTH + b"Content-Length: %d\r\nX-Folded: a\r\n b\r\n\r\n" %
     len(BODY) + BODY),
    ("obs_fold_tab_transfer_encoding",
     OK_HEAD + AUTH + b"X-A: 1\r\n\tTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n"),
    ("bare_lf_request_line",
     b"GET /healthz HTTP/1.1\nHost: x\r\n\r\n"),
    ("bare_lf_header",
     b"GET /healthz HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n"),
    ("bare_lf_end_of_headers",
     b"GET /healthz HTTP/1.1\r\nHost: x\r\n\n"),
    # Found by fuzz_http1: a head ended by CR and another byte, with no
    # token and 100-continue, was answered 401 at once (which a tokenless
    # 100-continue request gets) and then 400 after "connection: close".
    ("bare_cr_end_of_headers_with_expect_continue",
     b"POST /v1/services HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
     b"Content-Length: %d\r\n\rX" % len(BODY) + BODY),
    ("bare_cr_in_header_value",
     b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"),
    ("nul_in_header_value",
     b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
    ("chunk_size_not_hex",
     OK_HEAD + AUTH + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + BODY),
    ("chunk_size_negative",
     OK_HEAD + AUTH + b"Transfer-Encoding: chunked\r\n\r\n-1\r\n" + BODY),
    ("chunk_size_0x",
     OK_HEAD + AUTH + b"Transfer-Encoding: chunked\r\n\r\n0x10\r\n" + BODY),
    ("chunk_size_overflow",
     OK_HEAD + AUTH + b"Transfer-Encoding: chunked\r\n\r\n"
     b"10000000000000001\r\n" + BODY),
    ("chunk_size_bare_cr",
     OK_HEAD + AUTH + b"Transfer-Encoding: chunked\r\n\r\n%x\rX" %
     len(BODY) + BODY + b"\r\n0\r\n\r\n"),
    ("chunk_without_crlf",
     OK_HEAD + AUTH + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" %
     len(BODY) + BODY + b"XY0\r\n\r\n"),
    ("trailer_fields",
     OK_HEAD + AUTH + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" %
     len(BODY) + BODY + b"\r\n0\r\nContent-Length: 5\r\n\r\n"),
    ("no_host",
     b"GET /healthz HTTP/1.1\r\n\r\n"),
    ("two_hosts",
     b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("http_0_9",
     b"GET /healthz\r\n\r\n"),
    ("authorization_twice",
     b"GET /v1/services HTTP/1.1\r\nHost: x\r\n" + AUTH + AUTH + b"\r\n"),
]


def smuggling_test(name, payload):
    def test():
        with ApiServer() as api:
            raw = Raw(api)
            raw.send(payload)
            status, headers, body = raw.response()
            assert status == 400, (status, body)
            assert headers["connection"] == "close", headers
            assert json.loads(body)["error"]["code"] == "InvalidRequest", \
                body
            assert raw.closed(), "the connection stayed open"
            raw.close()
            # Nothing was created on the way.
            assert api.ok("GET", "/v1/services", "payments") == \
                {"services": []}
    test.__name__ = "test_smuggling_" + name
    return test


def test_smuggling_pipelined_garbage():
    """A valid request is answered; the garbage after it gets 400."""
    with ApiServer() as api:
        raw = Raw(api)
        raw.send(request("GET", "/healthz") + b"GARBAGE\x01\r\n\r\n")
        assert raw.response()[:3:2] == (200, HEALTHZ_OK)
        status, headers, body = raw.response()
        assert status == 400 and headers["connection"] == "close"
        assert raw.closed()


def test_smuggling_request_hidden_in_body():
    """A body that holds a request is a body: with Content-Length it is not
    parsed; the answer to a refused request never runs what follows."""
    with ApiServer() as api:
        hidden = request("POST", "/v1/services", "payments",
                         {"name": "hidden", "load_balancer": "payments-lb"})
        raw = Raw(api)
        raw.send(OK_HEAD + AUTH + b"Content-Length: 4\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden)
        assert raw.response()[0] == 400
        assert raw.closed()
        assert api.ok("GET", "/v1/services", "payments") == {"services": []}


if __name__ == "__main__":
    nlbtest.run([
        test_prometheus_scrapes_nlbd_plain_and_tls,
        test_everyday_clients,
        test_tls_alpn_choices,
        test_same_bytes_over_both_protocols,
        test_a_thousand_requests_on_one_connection,
        test_pipelined_requests_are_answered_in_order,
        test_keep_alive_rules,
        test_head_405_and_errors,
        test_chunked_request_bodies,
        test_expect_100_continue,
        test_body_over_64_kib,
        test_timeouts,
        test_event_stream_over_http1,
        test_status_counts_and_audit,
    ] + [smuggling_test(name, payload) for name, payload in SMUGGLING] + [
        test_smuggling_pipelined_garbage,
        test_smuggling_request_hidden_in_body,
    ], timeout=90)
