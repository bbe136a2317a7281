"""Helpers for the management API's end-to-end tests: the standalone
api_server_main over a temporary registry, real HTTP/2 clients (curl,
nghttp), an event stream reader, a strict Prometheus text parser, and the
OpenAPI conformance check: every answer a test gets through ApiServer.call
(and so ok/error), EventStream and check_answer() is checked against the
operation of docs/openapi.yaml it belongs to, and a mismatch fails the test
that made the request.

Stdlib, plus Debian's python3-yaml and python3-jsonschema for the
conformance check (scripts/debian-packages.txt); without them the check is
off (test_openapi.py fails then). The runner (hard timeout per test,
summary line) comes from nlbtest."""

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from nlbtest import TOP_BUILDDIR, TOP_SRCDIR, Skip

SERVER = os.path.join(TOP_BUILDDIR, "tests", "tools", "api_server_main")

# GET /healthz of a node whose registry reaches its store, as sent.
HEALTHZ_OK = b'{"status":"ok","store":"ok"}\n'

# token = principal name + "-token"; the API only sees their SHA-256.
PRINCIPALS = [("ops", "operator"), ("payments", "provider"),
              ("search", "provider"), ("shop", "consumer"),
              ("blog", "consumer"), ("stranger", "consumer")]


def token(name):
    """The bearer token of a config principal, or name itself when it is a
    token the API made ("nlb_...")."""
    return name if name.startswith("nlb_") else name + "-token"


def make_certificate(directory):
    """A throwaway self-signed certificate for localhost and 127.0.0.1
    (subjectAltName: clients such as Go's verify only that); returns the
    paths of cert.pem and key.pem in directory."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def need(*tools):
    for tool in tools:
        if shutil.which(tool) is None:
            raise Skip("%s is not installed" % tool)
    if not os.path.exists(SERVER):
        raise Skip("%s is not built (make check builds it)" % SERVER)


# ---- OpenAPI conformance: answers against docs/openapi.yaml --------------

SPEC = os.path.join(TOP_SRCDIR, "docs", "openapi.yaml")
METHODS = ("get", "post", "patch", "delete")
# Statuses any request may get before (or instead of) its route's handler:
# the protocol's refusals, timeouts and limits (docs/openapi.yaml's
# description), with the error response that describes each.
TRANSPORT = {"400": "BadRequest", "408": "RequestTimeout",
             "413": "PayloadTooLarge", "431": "HeadersTooLarge",
             "500": "Internal"}


def _pointer(root, ref):
    """The node a local $ref ("#/components/...") names."""
    assert ref.startswith("#/"), "not a local $ref: " + ref
    node = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, \
            "$ref %s does not resolve" % ref
        node = node[part]
    return node


def inline_refs(node, root, seen=()):
    """A copy of node with every $ref replaced by what it names (OpenAPI
    3.0: what stands beside a $ref is ignored). Raises AssertionError on a
    $ref that does not resolve or that loops."""
    if isinstance(node, list):
        return [inline_refs(x, root, seen) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        assert ref not in seen, "$ref loop: " + " -> ".join(seen + (ref,))
        return inline_refs(_pointer(root, ref), root, seen + (ref,))
    return {k: inline_refs(v, root, seen) for k, v in node.items()}


def nullable_to_jsonschema(node):
    """A copy of node where OpenAPI 3.0's `nullable: true` (which JSON
    Schema draft 4 does not know) becomes "this schema, or null"."""
    if isinstance(node, list):
        return [nullable_to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: nullable_to_jsonschema(v) for k, v in node.items()
           if k != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _media_type(value):
    return (value or "").split(";")[0].strip().lower()


class Conformance:
    """Checks answers against an OpenAPI 3.0 document: the status must be
    one the operation describes, the content type one of that response's,
    a JSON body valid against its schema (so no missing required field, no
    field where additionalProperties is false, no wrong type), required
    headers present. A path without the method answers 405 with the Allow
    the document implies; an unknown path 404. Raises AssertionError."""

    def __init__(self, text):
        import jsonschema
        import yaml
        self.jsonschema = jsonschema
        self.doc = yaml.safe_load(text)
        self.resolved = nullable_to_jsonschema(inline_refs(self.doc,
                                                           self.doc))
        self.routes = []
        for template, item in self.resolved["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+",
                                   re.escape(template)) + "$"
            literal = len(re.sub(r"\{[^/]+?\}", "", template))
            self.routes.append((literal, re.compile(pattern), template,
                                item))
        # The most literal template first ("/v1/x/accept" before "/v1/x/{y}").
        self.routes.sort(key=lambda r: -r[0])
        self.seen = set()  # (METHOD, template, status) answered
        self._validators = {}
        self._lock = threading.Lock()

    def match(self, path):
        """(template, path item) for a request path, or (None, None)."""
        path = path.split("?", 1)[0]
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]  # a trailing slash names the same resource
        for _, pattern, template, item in self.routes:
            if pattern.match(path):
                return template, item
        return None, None

    def _validate(self, key, schema, value, what):
        with self._lock:
            validator = self._validators.get(key)
            if validator is None:
                validator = self.jsonschema.Draft4Validator(schema)
                self._validators[key] = validator
        errors = sorted(validator.iter_errors(value),
                        key=lambda e: list(e.absolute_path))
        if errors:
            raise AssertionError("%s does not match docs/openapi.yaml:\n%s\n"
                                 "answer: %s" % (
                what, "\n".join("  at %s: %s" % (
                    "/".join(str(p) for p in e.absolute_path) or "(top)",
                    e.message[:300]) for e in errors[:5]),
                json.dumps(value)[:2000]))

    def _response(self, what, status, response, key, headers, body, head):
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        for name, header in response.get("headers", {}).items():
            value = headers.get(name.lower())
            if value is None:
                assert not header.get("required"), \
                    "%s: no %s header" % (what, name)
                continue
            self._validate(key + ("header", name), header["schema"], value,
                           "%s: header %s" % (what, name))
        content = response.get("content")
        if not content:
            return
        ctype = _media_type(headers.get("content-type"))
        assert ctype in content, "%s: content-type %r, the document has %s" % (
            what, headers.get("content-type"), sorted(content))
        if head or body is None:
            return
        if isinstance(body, bytes):
            body = body.decode()
        schema = content[ctype].get("schema", {})
        if ctype == "application/json":
            try:
                value = json.loads(body)
            except ValueError as e:
                raise AssertionError("%s: not JSON (%s): %r" % (what, e,
                                                                body[:300]))
            self._validate(key + (ctype,), schema, value, what)
        elif ctype == "application/x-ndjson":
            for line in body.splitlines():
                self._validate(key + (ctype,), schema, json.loads(line),
                               what + " (a line)")
        else:
            self._validate(key + (ctype,), schema, body, what)

    def check(self, method, path, status, headers, body):
        """Checks one answer: method and path as requested (query allowed),
        the status, the answer's headers (a dict, any case) and body (str,
        bytes, or None when not read)."""
        method = method.upper()
        head = method == "HEAD"
        template, item = self.match(path)
        status = str(status)
        what = "%s %s -> %s" % (method, path, status)
        if template is None:
            # No such route: 404, or a refusal before any route was found.
            name = "NotFound" if status == "404" else TRANSPORT.get(status)
            assert name, "%s: no path of docs/openapi.yaml matches %s, and " \
                "%s is not a status of an unknown path" % (what, path, status)
            self._response(what, status, self.resolved["components"][
                "responses"][name], ("unknown", status), headers, body, head)
            return
        op_method = "get" if head else method.lower()
        op = item.get(op_method) if op_method in METHODS else None
        if op is None:
            name = "MethodNotAllowed" if status == "405" else \
                TRANSPORT.get(status)
            assert name, "%s: %s has no %s in docs/openapi.yaml, so the " \
                "answer must be 405, not %s" % (what, template, method,
                                                 status)
            self._response(what, status, self.resolved["components"][
                "responses"][name], (template, "405", status), headers,
                body, head)
            if status == "405":
                allowed = [m.upper() for m in ("get", "head", "post", "patch",
                                               "delete")
                           if m in item or (m == "head" and "get" in item)]
                allow = {k.lower(): v for k, v in headers.items()}.get(
                    "allow")
                assert allow == ", ".join(allowed), \
                    "%s: Allow %r, the document gives %s" % (what, allow,
                                                              allowed)
            return
        responses = op["responses"]
        assert status in responses, \
            "%s: status %s is not described for %s %s (it has %s)" % (
                what, status, op_method.upper(), template,
                ", ".join(sorted(responses)))
        self.seen.add((op_method.upper(), template, status))
        self._response(what, status, responses[status],
                       (template, op_method, status), headers, body, head)

    def check_event(self, event):
        """Checks one line of GET /v1/events (parsed JSON)."""
        schema = self.resolved["paths"]["/v1/events"]["get"]["responses"][
            "200"]["content"]["application/x-ndjson"]["schema"]
        self._validate(("event",), schema, event, "an event line")
        self.seen.add(("GET", "/v1/events", "200"))


_conformance = None
_conformance_off = None


def conformance():
    """The Conformance of docs/openapi.yaml, or None (with one note on
    stderr) when python3-yaml or python3-jsonschema is missing. A document
    that does not load is an error of every test."""
    global _conformance, _conformance_off
    if _conformance is None and _conformance_off is None:
        try:
            import jsonschema  # noqa: F401
            import yaml  # noqa: F401
        except ImportError as e:
            _conformance_off = str(e)
            import sys
            print("note: OpenAPI conformance check off (%s: install "
                  "python3-yaml and python3-jsonschema)" % e,
                  file=sys.stderr)
            return None
        with open(SPEC) as f:
            _conformance = Conformance(f.read())
    return _conformance


def check_answer(method, path, status, headers, body):
    """Checks an answer against docs/openapi.yaml when the check is on."""
    spec = conformance()
    if spec is not None:
        spec.check(method, path, status, headers, body)


class ApiServer:
    """api_server_main on a kernel-chosen loopback port, with the principals
    above, a host network 127.77.0.0/16, a namespaced-style network
    'shop-vpc' (127.78.0.0/29, only shop), two load balancers and the fake
    data plane."""

    def __init__(self, tls=False, extra=(), dataplane=True):
        self.dir = tempfile.mkdtemp(prefix="nlb-api-")
        args = [SERVER, "--db", os.path.join(self.dir, "registry.db"),
                "--listen", "127.0.0.1:0"]
        if dataplane:
            args.append("--fake-dataplane")
        args += ["--network", "host:127.77.0.0/16",
                "--network", "shop-vpc:127.78.0.0/29:shop",
                "--lb", "payments-lb:8080,8443", "--lb", "search-lb:9200"]
        for name, role in PRINCIPALS:
            args += ["--principal", "%s:%s:%s" % (name, role, token(name))]
        self.scheme = "http"
        self.cert = None
        if tls:
            self.cert, key = make_certificate(self.dir)
            args += ["--tls-cert", self.cert, "--tls-key", key]
            self.scheme = "https"
        args += list(extra)
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.stop()
            raise AssertionError("api_server_main did not start: %r %s" %
                                 (line, self.log()))
        self.port = int(line.split()[1])
        self.base = "%s://127.0.0.1:%d" % (self.scheme, self.port)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        log = self.log() if os.path.exists(self.stderr_path) else ""
        status = self.stop()
        if exc_type is not None:
            # The server's side of a failure: its exit status and last words.
            print("--- api_server_main exited %r; stderr:\n%s" %
                  (status, log[-3000:]))
        if exc_type is None:
            # A clean exit, and nothing from the sanitizers (ASan, UBSan,
            # LeakSanitizer) when the build has them.
            assert status == 0, "api_server_main exited %r:\n%s" % (status,
                                                                   log)
            for bad in ("Sanitizer", "runtime error:"):
                assert bad not in log, log

    def log(self):
        with open(self.stderr_path) as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self, timeout=10):
        """SIGTERM, wait; returns the exit status (kills if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("api_server_main ignored SIGTERM")
        self._stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode

    def curl_args(self):
        if self.scheme == "https":
            return ["curl", "-k", "--http2"]
        return ["curl", "--http2-prior-knowledge"]

    def call(self, method, path, who=None, body=None, raw=None, headers=(),
             timeout=10):
        """One request with curl. Returns (status, parsed JSON or text,
        response headers as a dict). body is JSON-encoded, raw sent as is."""
        out = os.path.join(self.dir, "body.%d" % threading.get_ident())
        hdr = os.path.join(self.dir, "headers.%d" % threading.get_ident())
        args = self.curl_args() + [
            "-s", "-S", "-X", method, "-o", out, "-D", hdr,
            "--max-time", str(timeout), "-w", "%{http_code} %{http_version}"]
        if who is not None:
            args += ["-H", "Authorization: Bearer " + token(who)]
        for h in headers:
            args += ["-H", h]
        data = None
        if body is not None:
            data = json.dumps(body).encode()
        if raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode()
        if data is not None:
            args += ["-H", "Content-Type: application/json",
                     "--data-binary", "@-"]
        args.append(self.base + path)
        r = subprocess.run(args, input=data, capture_output=True,
                           timeout=timeout + 5)
        if r.returncode != 0:
            raise AssertionError("curl failed (%d): %s" %
                                 (r.returncode, r.stderr.decode()))
        code, version = r.stdout.decode().split()
        assert version == "2", "not HTTP/2: %s" % version
        with open(out, "rb") as f:
            text = f.read().decode()
        response_headers = {}
        with open(hdr) as f:
            for line in f:
                if ":" in line and not line.startswith("HTTP/"):
                    k, v = line.split(":", 1)
                    response_headers[k.strip().lower()] = v.strip()
        check_answer(method, path, int(code), response_headers, text)
        ctype = response_headers.get("content-type", "")
        value = json.loads(text) if ctype.startswith("application/json") \
            else text
        return int(code), value, response_headers

    def ok(self, method, path, who, body=None, status=200):
        code, value, _ = self.call(method, path, who, body)
        assert code == status, "%s %s as %s: %d %r" % (method, path, who,
                                                         code, value)
        return value

    def error(self, method, path, who, body=None, raw=None, status=400,
              code=None, field=None):
        """Asserts an error answer: status, the error body of docs/api.md,
        its code and (for 400s) that the message names the field."""
        got, value, _ = self.call(method, path, who, body, raw)
        assert got == status, "%s %s: want %d, got %d %r" % (
            method, path, status, got, value)
        assert isinstance(value, dict) and list(value) == ["error"], value
        err = value["error"]
        assert sorted(err) == ["code", "message"], err
        assert isinstance(err["message"], str) and err["message"], err
        if code is not None:
            assert err["code"] == code, "want %s, got %r" % (code, err)
        if field is not None:
            assert field in err["message"], "%r does not name %s" % (err,
                                                                     field)
        return err


class _Mismatch:
    """An event line that does not match the document, carried from the
    reading thread to the test."""

    def __init__(self, error):
        self.error = error


class EventStream:
    """GET /v1/events through curl -N; lines land in a queue as they
    arrive. Returns once the answer's head came: the server fixes the
    stream's cursor before it answers, so a change made from then on is in
    the stream (a fixed sleep lost that race on a loaded machine)."""

    def __init__(self, server, who, after=None):
        path = "/v1/events" + ("?after=%d" % after if after is not None
                               else "")
        # -v: curl shows the head on stderr as it comes (-i would hold it
        # in stdout's buffer until the first event).
        args = server.curl_args() + [
            "-sNv", "-H", "Authorization: Bearer " + token(who),
            server.base + path]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        threading.Thread(target=self._read_verbose, daemon=True).start()
        if not self.opened.wait(10):
            self.close()
            raise AssertionError("the event stream's head did not come")

    def _read_verbose(self):
        status = False
        for line in self.proc.stderr:
            status = status or line.startswith(b"< HTTP/")
            if status and line.strip() == b"<":
                self.opened.set()
        self.opened.set()  # curl ended: the test sees what it got

    def _read(self):
        spec = conformance()
        for line in self.proc.stdout:
            event = json.loads(line)
            if spec is not None:
                try:
                    spec.check_event(event)
                except AssertionError as e:
                    event = _Mismatch(e)  # raised by next(), in the test
            self.lines.put(event)
        self.lines.put(None)  # the stream ended

    def next(self, timeout=5):
        try:
            event = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no event within %ss" % timeout)
        if isinstance(event, _Mismatch):
            raise event.error
        return event

    def take(self, n, timeout=5):
        return [self.next(timeout) for _ in range(n)]

    def quiet(self, wait=0.5):
        """Asserts nothing more arrives for wait seconds."""
        try:
            extra = self.lines.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError("unexpected event %r" % (extra,))

    def ended(self, timeout=5):
        return self.proc.wait(timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# ---- Prometheus text format (0.0.4), strictly --------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(
    r"^(%s)(?:\{((?:%s)(?:,%s)*)?,?\})? "
    r"([-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+|Inf|NaN))"
    r"(?: -?[0-9]+)?$" % (_NAME, _LABEL, _LABEL))
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def h2_frames(data):
    """(type, flags, stream, payload) of each complete HTTP/2 frame in
    data, and the bytes left over."""
    out = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        if len(data) < 9 + length:
            break
        out.append((data[3], data[4],
                    int.from_bytes(data[5:9], "big") & 0x7fffffff,
                    data[9:9 + length]))
        data = data[9 + length:]
    return out, data


def parse_prometheus(text):
    """Parses exposition text; raises AssertionError on anything a strict
    reader would refuse. Returns {(name, frozenset(labels)): value} and the
    {family: type} map."""
    assert text.endswith("\n"), "text must end with a newline"
    samples, types, helps, done = {}, {}, set(), set()
    current = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d: %r" % (n, line)
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert re.fullmatch(_NAME, name), where
                if parts[1] == "HELP":
                    assert name not in helps, "HELP twice, " + where
                    helps.add(name)
                else:
                    assert len(parts) == 4 and parts[3] in _TYPES, where
                    assert name not in types, "TYPE twice, " + where
                    assert name not in done and name != current, \
                        "TYPE after samples, " + where
                    types[name] = parts[3]
            continue
        assert line.strip() != "" or line == "", where
        if line == "":
            continue
        m = _SAMPLE.match(line)
        assert m, "bad sample, " + where
        name, labels_text, value = m.group(1), m.group(2), m.group(3)
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in types:
                family = name[:-len(suffix)]
        if family != current:
            assert family not in done, "family %s split, %s" % (family, where)
            if current is not None:
                done.add(current)
            current = family
        labels = []
        if labels_text:
            for lm in re.finditer(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|'
                                  r'\\.)*)"', labels_text):
                labels.append((lm.group(1), lm.group(2)))
        keys = [k for k, _ in labels]
        assert len(keys) == len(set(keys)), "label twice, " + where
        key = (name, frozenset(labels))
        assert key not in samples, "series twice, " + where
        samples[key] = float(value)
    return samples, types


NLBD_CFG = """shutdown_timeout = "2s";
api = { listen = "127.0.0.1:%(api)d"; %(tls)s };
registry = { path = "%(dir)s/registry.db"; %(registry_extra)s };
principals = (
%(principals)s
);
networks = (
  { name = "host"; range = "127.77.0.0/16"; },
  { name = "shop-vpc"; range = "127.78.0.0/29"; principals = [ "shop" ]; }
);
target_groups = (
  { name = "payments-tg";
    health_check = { interval = "1s"; timeout = "1s"; healthy_threshold = 1; };
    targets = ( { address = "127.0.0.1:%(backend)d"; } ); }
);
load_balancers = (
  { name = "payments-lb"; listeners = (
    { port = %(lb)d; target_group = "payments-tg"; bind = "127.0.0.1"; } ); },
  { name = "search-lb"; listeners = (
    { port = %(lb2)d; target_group = "payments-tg"; } ); }
);
"""


class NlbdApi(ApiServer):
    """The same client side as ApiServer, against a real nlbd (its config
    above: the principals of PRINCIPALS, an echo backend behind
    payments-lb)."""

    def __init__(self, tls=False, registry_extra="", tmpdir=None):
        import hashlib
        from nlbtest import NLBD, Nlbd, Server, echo_handler, free_port
        if not os.path.exists(NLBD):
            raise Skip("%s is not built" % NLBD)
        self.backend = Server(echo_handler)
        self.lb_port = free_port()
        self.port = free_port()
        self.scheme = "https" if tls else "http"
        tls_text = ""
        self.nlbd = None
        # tmpdir: where the registry goes (/dev/shm: no fsync costs).
        self.dir = tempfile.mkdtemp(prefix="nlb-api-nlbd-", dir=tmpdir)
        self.cert = None
        if tls:
            self.cert, key = make_certificate(self.dir)
            tls_text = 'tls = { cert = "%s"; key = "%s"; };' % (self.cert,
                                                                key)
        principals = ",\n".join(
            '  { name = "%s"; role = "%s"; token_sha256 = "%s"; }' % (
                name, role, hashlib.sha256(token(name).encode()).hexdigest())
            for name, role in PRINCIPALS)
        config = NLBD_CFG % {
            "api": self.port, "tls": tls_text, "dir": self.dir,
            "registry_extra": registry_extra,
            "principals": principals, "backend": self.backend.port,
            "lb": self.lb_port, "lb2": free_port()}
        self.nlbd = Nlbd(config)
        self.nlbd.start(wait_port=self.port)
        self.base = "%s://127.0.0.1:%d" % (self.scheme, self.port)
        self.stderr_path = self.nlbd.stderr_path

    def log(self):
        return self.nlbd.events() + self.nlbd.stderr()

    def alive(self):
        return self.nlbd.proc.poll() is None

    def signal(self, signum):
        self.nlbd.signal(signum)

    def __exit__(self, exc_type, exc, tb):
        log = self.log()
        status = self.stop()
        if exc_type is None:
            assert status == 0, "nlbd exited %r:\n%s" % (status, log)
            for bad in ("Sanitizer", "runtime error:"):
                assert bad not in log, log

    def stop(self, timeout=15):
        status = self.nlbd.stop(timeout) if self.nlbd else None
        self.backend.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        return status
