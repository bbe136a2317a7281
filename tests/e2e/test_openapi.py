"""The OpenAPI description of the management API (docs/openapi.yaml) and
the check that keeps it true: the document is valid OpenAPI 3.0 (Debian's
copy of the official schema, and what a schema cannot say: every $ref
resolves, each operation's x-nlb-roles agree with its description,
security and answers; tests/unit/test_api holds the route table,
api/routes.c, to the document, row by row), nlbd serves the same bytes
at GET /v1/openapi.yaml over HTTP/1.1 and HTTP/2 without a token, every
operation answers as described (one request or more each, through
apitest's conformance check), and the check fails on answers that do not
match (so the other API tests, which all go through it, can fail)."""

import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nlbtest  # noqa: E402
from apitest import (SPEC, ApiServer, Conformance, EventStream,  # noqa: E402
                     NlbdApi, conformance, inline_refs, need)

OAS_SCHEMA = "/usr/share/openapi-specification/schemas/v3.0/schema.json"
METHODS = ("get", "post", "patch", "delete")


def spec():
    """The conformance check, which every API test relies on: its
    packages are in scripts/debian-packages.txt, so missing them fails."""
    checker = conformance()
    assert checker is not None, (
        "the OpenAPI conformance check is off: install python3-yaml and "
        "python3-jsonschema (scripts/debian-packages.txt)")
    return checker


def spec_bytes():
    with open(SPEC, "rb") as f:
        return f.read()


def operations(doc):
    for template, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), template, item[method]


# ---- the document --------------------------------------------------------


def test_document_is_valid_openapi():
    import jsonschema
    import yaml
    doc = yaml.safe_load(spec_bytes())
    assert doc["openapi"].startswith("3.0."), doc["openapi"]
    assert os.path.exists(OAS_SCHEMA), (
        "%s is missing: install openapi-specification "
        "(scripts/debian-packages.txt)" % OAS_SCHEMA)
    with open(OAS_SCHEMA) as f:
        schema = json.load(f)
    errors = list(jsonschema.Draft4Validator(schema).iter_errors(doc))
    assert not errors, "\n".join("%s: %s" % (list(e.absolute_path),
                                             e.message[:300])
                                 for e in errors[:10])
    # The official schema is strict enough to refuse a broken document.
    broken = json.loads(json.dumps(doc))
    broken["paths"]["/healthz"]["get"]["responses"]["2000"] = \
        broken["paths"]["/healthz"]["get"]["responses"]["200"]
    assert list(jsonschema.Draft4Validator(schema).iter_errors(broken))
    # Every $ref resolves (and none loops).
    inline_refs(doc, doc)
    refs = set(re.findall(r"\$ref: '(#/[^']+)'", spec_bytes().decode()))
    assert refs, "no $ref found"
    # Every component is used.
    text = spec_bytes().decode()
    for kind in ("schemas", "responses", "parameters", "headers"):
        for name in doc["components"][kind]:
            ref = "#/components/%s/%s" % (kind, name)
            if ref not in refs and (kind, name) not in (
                    ("responses", "MethodNotAllowed"),
                    ("schemas", "Error")):
                raise AssertionError("%s is never used" % ref)
    assert text.isascii(), "keep the document ASCII"
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids)), "operationId twice"
    resolved = inline_refs(doc, doc)
    for method, template, op in operations(resolved):
        where = "%s %s" % (method, template)
        # Path parameters: each of the template, declared once.
        params = [p for p in resolved["paths"][template].get(
            "parameters", []) + op.get("parameters", []) if p["in"] == "path"]
        assert sorted(p["name"] for p in params) == sorted(
            re.findall(r"\{([^}]+)\}", template)), where
        # Any request may be refused by the protocol; the document says so.
        for status in ("400", "408", "413", "421", "429", "431", "500"):
            assert status in op["responses"], "%s has no %s" % (where,
                                                                 status)
        # Every error is the error shape, with a code; /healthz's 503 is
        # its health answer (status, store), not an error of the request.
        for status, response in op["responses"].items():
            content = response.get("content", {})
            if status == "304":  # Not Modified: never a body
                assert not content, "%s 304 has content" % where
                continue
            assert content, "%s %s has no content" % (where, status)
            if (where, status) == ("GET /healthz", "503"):
                schema = content["application/json"]["schema"]
                assert schema["allOf"][0]["required"] == ["status", "store"]
            elif status >= "400":
                assert list(content) == ["application/json"], where
                schema = content["application/json"]["schema"]
                assert schema["required"] == ["error"], (where, status)
                assert schema["additionalProperties"] is False
        # JSON objects are closed: no field that is not described (the
        # API refuses unknown request fields, and answers none).
        if "requestBody" in op:
            _closed(op["requestBody"]["content"]["application/json"][
                "schema"], where + " request")
        for status, response in op["responses"].items():
            for media, body in response.get("content", {}).items():
                if media in ("application/json", "application/x-ndjson"):
                    _closed(body["schema"], "%s %s" % (where, status))


def _closed(schema, where):
    """Every object schema in schema sets additionalProperties: false."""
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "object":
        assert schema.get("additionalProperties") is False, \
            "%s: an object without additionalProperties: false" % where
    for key in ("properties",):
        for sub in schema.get(key, {}).values():
            _closed(sub, where)
    for key in ("items",):
        _closed(schema.get(key), where)
    for key in ("allOf", "oneOf", "anyOf"):
        for sub in schema.get(key, []):
            _closed(sub, where)


def test_every_operation_says_its_roles():
    """Each operation's roles (x-nlb-roles, which tests/unit/test_api
    compares with the route table) are named in its description and match
    its security and the answers it documents."""
    import yaml
    doc = yaml.safe_load(spec_bytes())
    for method, template, op in operations(doc):
        name = "%s %s" % (method, template)
        roles = sorted(op["x-nlb-roles"])
        assert set(roles) <= {"operator", "provider", "consumer"}, name
        for role in roles:
            assert role in op["description"], \
                "%s: the description does not name role %s" % (name, role)
        if roles:
            # The document's security (a bearer token) applies, and so
            # may 401; 403 unless every role may call it.
            assert "security" not in op, name
            assert "401" in op["responses"], name
            assert ("403" in op["responses"]) == (len(roles) < 3), name
        else:
            assert op["security"] == [], name
            assert "401" not in op["responses"], name
    assert doc["security"] == [{"bearer": []}]


# ---- the route -----------------------------------------------------------


def _curl(args):
    r = subprocess.run(["curl", "-sS"] + args, capture_output=True,
                       timeout=20)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_served_document_is_the_file():
    """GET /v1/openapi.yaml: the bytes of docs/openapi.yaml, without a
    token, over HTTP/1.1 (curl without flags) and HTTP/2, plain and TLS,
    the same on every request; HEAD gives its length."""
    need("curl", "openssl")
    spec()
    expected = spec_bytes()
    with ApiServer() as api:
        url = api.base + "/v1/openapi.yaml"
        for flags, version in (([], "1.1"),
                               (["--http2-prior-knowledge"], "2")):
            out = _curl(flags + ["-D", "-", "-o", os.path.join(api.dir, "d"),
                                 "-w", "\nversion %{http_version}", url])
            head = out.decode()
            assert head.endswith("version " + version), head
            assert head.split("\r\n")[0].split()[1] == "200", head
            assert "content-type: application/yaml\r\n" in head, head
            assert "content-length: %d\r\n" % len(expected) in head, head
            with open(os.path.join(api.dir, "d"), "rb") as f:
                assert f.read() == expected, "served bytes differ (%s)" % \
                    version
        # A token is not needed, and a wrong one does not matter.
        assert _curl(["-H", "Authorization: Bearer wrong", url]) == expected
        # HEAD, and the document's own check of both answers.
        code, text, headers = api.call("GET", "/v1/openapi.yaml")
        assert code == 200 and text.encode() == expected
        out = _curl(["-I", url]).decode()
        assert "content-length: %d\r\n" % len(expected) in out, out
        # It takes no query, like every route.
        api.error("GET", "/v1/openapi.yaml?format=json", None,
                  code="UnknownField", field="format")
        api.error("POST", "/v1/openapi.yaml", None, status=405,
                  code="MethodNotAllowed")
    with ApiServer(tls=True) as api:
        url = api.base + "/v1/openapi.yaml"
        for flags in (["--http1.1"], ["--http2"]):
            assert _curl(["--cacert", api.cert] + flags + [url]) == expected
    with NlbdApi() as api:
        assert _curl([api.base + "/v1/openapi.yaml"]) == expected


# ---- the check -------------------------------------------------------------


SERVICE = {"id": "svc-0123456789abcdef0", "name": "web", "owner": "payments",
           "load_balancer": "web-lb", "ports": [8080],
           "state": "available", "acceptance_required": True,
           "allowed_principals": ["shop"], "connection_limit": 0,
           "created_at": "2024-05-14T09:12:01.337Z", "private_dns_name": ""}
JSON = {"content-type": "application/json"}


def _fails(checker, *args, match):
    try:
        checker.check(*args)
    except AssertionError as e:
        assert re.search(match, str(e)), "caught, but %r not in: %s" % (
            match, e)
        return
    raise AssertionError("the check let this through: %r" % (args,))


def test_check_catches_mismatches():
    """Fake answers that differ from the document in one way each: every
    one must fail (the check is what makes the other tests fail)."""
    checker = Conformance(spec_bytes().decode())
    path = "/v1/services/" + SERVICE["id"]
    checker.check("GET", path, 200, JSON, json.dumps(SERVICE))
    checker.check("GET", path + "/", 200, JSON, json.dumps(SERVICE))
    checker.check("HEAD", path, 200, JSON, None)
    extra = dict(SERVICE, colour="blue")
    _fails(checker, "GET", path, 200, JSON, json.dumps(extra),
           match="'colour' was unexpected")
    missing = {k: v for k, v in SERVICE.items() if k != "owner"}
    _fails(checker, "GET", path, 200, JSON, json.dumps(missing),
           match="'owner' is a required property")
    _fails(checker, "GET", path, 200, JSON,
           json.dumps(dict(SERVICE, connection_limit="0")),
           match="connection_limit: '0' is not of type 'integer'")
    _fails(checker, "GET", path, 200, JSON,
           json.dumps(dict(SERVICE, created_at="2024-05-14 09:12:01")),
           match="created_at: .* does not match")
    _fails(checker, "GET", path, 200, JSON,
           json.dumps(dict(SERVICE, state="gone")),
           match="state: 'gone' is not one of")
    # A status the operation does not describe.
    _fails(checker, "GET", path, 409, JSON,
           json.dumps({"error": {"code": "InvalidState", "message": "x"}}),
           match="status 409 is not described for GET /v1/services/{id}")
    _fails(checker, "GET", path, 201, JSON, json.dumps(SERVICE),
           match="status 201 is not described")
    # Errors: the shape, and a code that belongs to the status.
    _fails(checker, "GET", path, 404, JSON,
           json.dumps({"error": {"code": "Forbidden", "message": "x"}}),
           match="'Forbidden' is not one of \\['NotFound'\\]")
    _fails(checker, "GET", path, 404, JSON,
           json.dumps({"error": {"code": "NotFound"}}),
           match="'message' is a required property")
    _fails(checker, "GET", path, 404, JSON,
           json.dumps({"error": {"code": "NotFound", "message": "x"},
                       "hint": "y"}), match="'hint' was unexpected")
    # 401 carries WWW-Authenticate.
    unauthorized = json.dumps({"error": {"code": "Unauthorized",
                                         "message": "x"}})
    checker.check("GET", path, 401, dict(JSON, **{
        "www-authenticate": "Bearer"}), unauthorized)
    _fails(checker, "GET", path, 401, JSON, unauthorized,
           match="no WWW-Authenticate header")
    # The content type.
    _fails(checker, "GET", path, 200, {"content-type": "text/plain"},
           json.dumps(SERVICE), match="content-type 'text/plain'")
    _fails(checker, "GET", path, 200, JSON, "{", match="not JSON")
    checker.check("GET", "/healthz", 200, JSON,
                  '{"status":"ok","store":"ok"}\n')
    checker.check("GET", "/healthz", 503, JSON,
                  '{"status":"degraded","store":"unavailable"}\n')
    _fails(checker, "GET", "/healthz", 200, JSON,
           '{"status":"ok","store":"unavailable"}\n', match="is not one of")
    _fails(checker, "GET", "/healthz", 200,
           {"content-type": "text/plain; charset=utf-8"}, "ok\n",
           match="content-type 'text/plain")
    # A method the path does not have: 405 with the right Allow.
    not_allowed = json.dumps({"error": {"code": "MethodNotAllowed",
                                        "message": "x"}})
    checker.check("PUT", "/v1/services", 405,
                  dict(JSON, allow="GET, HEAD, POST"), not_allowed)
    _fails(checker, "PUT", "/v1/services", 405,
           dict(JSON, allow="GET, HEAD"), not_allowed, match="Allow")
    _fails(checker, "PUT", "/v1/services", 200, JSON, json.dumps({}),
           match="must be 405")
    # A path the document does not have: 404 only.
    _fails(checker, "GET", "/v1/services/a/b/c", 200, JSON, "{}",
           match="no path of docs/openapi.yaml matches")
    checker.check("GET", "/v2/nothing", 404, JSON,
                  json.dumps({"error": {"code": "NotFound", "message": "x"}}))
    # Event lines: one of the three shapes exactly.
    event = {"seq": 1, "time": "2024-05-14T09:12:01.337Z", "type": "connect",
             "service_id": SERVICE["id"],
             "endpoint_id": "ep-0123456789abcdef0", "principal": "shop",
             "state": "pendingAcceptance"}
    checker.check_event(event)
    checker.check_event({"seq": 2, "time": event["time"], "type": "drain",
                         "node": "n1", "principal": "ops"})
    for bad in (dict(event, extra=1), dict(event, type="register"),
                {k: v for k, v in event.items() if k != "state"}):
        try:
            checker.check_event(bad)
        except AssertionError:
            continue
        raise AssertionError("the check let this event through: %r" % bad)


# ---- every operation, answered as described ---------------------------------


def test_every_operation_answers_as_described():
    """One request or more for each operation of the document, against
    api_server_main and nlbd (nodes), through apitest: each answer is
    checked as it comes, and each operation must have answered a success
    at least once. Lists are walked a page at a time."""
    need("curl")
    checker = spec()
    checker.seen.clear()
    with ApiServer() as api:
        events = EventStream(api, "ops", after=0)
        assert api.call("GET", "/healthz")[0] == 200
        assert api.call("GET", "/v1/openapi.yaml")[0] == 200
        # The web console: a redirect, the page, a file, a file unchanged.
        assert api.call("GET", "/ui")[0] == 301
        assert api.call("GET", "/ui/")[0] == 200
        code, _, headers = api.call("GET", "/ui/app.js")
        assert code == 200
        assert api.call("GET", "/ui/app.css", headers=[
            "If-None-Match: " + headers["etag"]])[0] == 200
        assert api.call("GET", "/ui/app.js", headers=[
            "If-None-Match: " + headers["etag"]])[0] == 304
        assert api.call("GET", "/ui/nothing.js")[0] == 404
        assert api.ok("GET", "/v1/whoami", "search") == {
            "name": "search", "role": "provider"}
        sids = [api.ok("POST", "/v1/services", who,
                       {"name": name, "load_balancer": lb,
                        "allowed_principals": ["shop"]}, status=201)["id"]
                for who, name, lb in (("payments", "web", "payments-lb"),
                                      ("payments", "db", "payments-lb"))]
        sid = sids[0]
        api.ok("GET", "/v1/services/" + sid, "payments")
        api.ok("PATCH", "/v1/services/" + sid, "payments",
               {"connection_limit": 5})
        api.ok("GET", "/v1/services/%s/permissions" % sid, "payments")
        api.ok("PATCH", "/v1/services/%s/permissions" % sid, "payments",
               {"add": ["blog"]})
        eps = [api.ok("POST", "/v1/endpoints", "shop",
                      {"service": "web", "network": "host"},
                      status=201)["id"] for _ in range(3)]
        api.ok("GET", "/v1/endpoints/" + eps[0], "shop")
        api.ok("PATCH", "/v1/endpoints/" + eps[0], "shop",
               {"allowed_sources": ["127.0.0.1"]})
        result = api.ok("POST", "/v1/services/%s/connections/accept" % sid,
                        "payments", {"endpoint_ids": [eps[0], "ep-nope"]})
        assert [u["endpoint_id"] for u in result["unsuccessful"]] == \
            ["ep-nope"]
        result = api.ok("POST", "/v1/services/%s/connections/reject" % sid,
                        "payments", {"endpoint_ids": eps[:2]})
        assert result == {"unsuccessful": []}, result
        api.ok("DELETE", "/v1/endpoints/" + eps[2], "shop")
        api.ok("POST", "/v1/target-groups/web-tg/targets", "ops",
               {"address": "127.0.0.1:9009", "weight": 3}, status=201)
        api.ok("GET", "/v1/target-groups/web-tg", "ops")
        api.ok("DELETE", "/v1/target-groups/web-tg/targets/127.0.0.1%3A9009",
               "ops")
        code, text, _ = api.call("GET", "/metrics", "ops")
        assert code == 200, code
        # Every list, a page of one at a time: next_token while more remain.
        for path, who, key, want in (
                ("/v1/services", "payments", "services", 2),
                ("/v1/services/%s/connections" % sid, "payments",
                 "connections", 3),
                ("/v1/services/%s/connections?state=rejected" % sid,
                 "payments", "connections", 2),
                ("/v1/available-services", "shop", "services", 2),
                ("/v1/endpoints", "shop", "endpoints", 3),
                ("/v1/endpoints?state=deleted", "ops", "endpoints", 1),
                ("/v1/target-groups", "ops", "target_groups", 2)):
            got, next_token = [], None
            while True:
                query = "limit=1" + ("&next_token=" + next_token
                                     if next_token else "")
                page = api.ok("GET", path + ("&" if "?" in path else "?") +
                              query, who)
                got += page[key]
                next_token = page.get("next_token")
                if next_token is None:
                    break
                assert len(got) < want, (path, "a token after the last")
            assert len(got) == want, (path, got)
            assert api.ok("GET", path, who)[key] == got
        # Deleting a service, once its endpoints are not live.
        api.ok("DELETE", "/v1/services/" + sids[1], "payments")
        # Tenancy: principals, tokens and networks, every list by pages.
        made = api.ok("POST", "/v1/principals", "ops",
                      {"name": "acme", "role": "consumer"}, status=201)
        api.ok("POST", "/v1/principals/acme/tokens", "ops",
               {"expires_at": "2099-01-01T00:00:00Z"}, status=201)
        api.ok("POST", "/v1/networks", "ops",
               {"name": "acme-net", "range": "10.1.0.0/24",
                "netns": "acme", "principals": ["acme"]}, status=201)
        for path, key, want in (("/v1/principals", "principals", 7),
                                ("/v1/principals/acme/tokens", "tokens", 2),
                                ("/v1/networks", "networks", 3)):
            got, next_token = [], None
            while True:
                query = "limit=1" + ("&next_token=" + next_token
                                     if next_token else "")
                page = api.ok("GET", path + "?" + query, "ops")
                got += page[key]
                next_token = page.get("next_token")
                if next_token is None:
                    break
            assert len(got) == want, (path, got)
            assert api.ok("GET", path, "ops")[key] == got
        api.ok("DELETE", "/v1/principals/acme/tokens/" + made["token_id"],
               "ops")
        api.ok("DELETE", "/v1/networks/acme-net", "ops")
        api.ok("DELETE", "/v1/principals/acme", "ops")
        # The stream: endpoint and target events, each line checked.
        types = [e["type"] for e in events.take(19)]
        # The service's PATCH comes first: a modify of the service.
        assert types == ["modify"] + ["connect"] * 3 + [
            "modify", "accept", "reject", "reject", "delete", "register",
            "deregister", "principal_create", "token_create",
            "token_create", "network_create", "token_revoke",
            "network_delete", "token_revoke", "principal_delete"], types
        events.close()
        api.error("GET", "/v1/nodes/nobody/drain", "ops", status=405)
    with ApiServer() as api:
        # No node records itself in api_server_main: an empty list.
        assert api.ok("GET", "/v1/nodes?limit=5", "ops") == {"nodes": []}
    with NlbdApi() as api:
        nodes = api.ok("GET", "/v1/nodes", "ops")["nodes"]
        assert len(nodes) == 1, nodes
        api.error("POST", "/v1/nodes/nobody/drain", "ops", status=404,
                  code="NotFound")
        # Last: a drained nlbd goes once its flows are done, here at once,
        # so a stream that was not open yet ends with no event.
        events = EventStream(api, "ops", after=0)
        drained = api.ok("POST", "/v1/nodes/%s/drain" % nodes[0]["name"],
                         "ops")
        assert drained["state"] == "draining", drained
        event = events.next()
        assert event is None or event["type"] == "drain", event
        events.close()
    missing = [(method, template) for method, template, op in operations(
        checker.resolved) if not any(
            (method, template, s) in checker.seen for s in op["responses"]
            if s.startswith("2"))]
    assert not missing, "operations never answered a success: %s" % missing


def test_without_a_data_plane():
    """The target-group listings answer 503 as described when no data
    plane is attached; the rest serves."""
    need("curl")
    spec()
    with ApiServer(dataplane=False) as api:
        for path in ("/v1/target-groups", "/v1/target-groups/web-tg"):
            api.error("GET", path, "ops", status=503,
                      code="ServiceUnavailable")
        assert api.call("GET", "/metrics", "ops")[0] == 200
        assert api.ok("GET", "/v1/services", "payments") == {"services": []}


if __name__ == "__main__":
    nlbtest.run([
        test_document_is_valid_openapi,
        test_every_operation_says_its_roles,
        test_served_document_is_the_file,
        test_check_catches_mismatches,
        test_every_operation_answers_as_described,
        test_without_a_data_plane,
    ], timeout=120)
