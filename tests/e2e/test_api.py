"""End-to-end tests of the HTTP/2 management API with real clients (curl,
nghttp, raw sockets) against api_server_main: the provider/consumer story,
every error status of docs/api.md, the event stream, /metrics, TLS, and a
server that survives bad clients."""

import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nlbtest  # noqa: E402
from apitest import (HEALTHZ_OK, ApiServer, EventStream,  # noqa: E402
                     NlbdApi, h2_frames, need, parse_prometheus, token)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = struct.pack(">I", 0)[1:] + bytes([4, 0]) + struct.pack(
    ">I", 0)


def create_service(api, who="payments", **fields):
    body = {"name": "payments-api", "load_balancer": "payments-lb",
            "allowed_principals": ["shop"]}
    body.update(fields)
    return api.ok("POST", "/v1/services", who, body, status=201)


def create_endpoint(api, who="shop", service="payments-api", **fields):
    body = {"service": service, "network": "host"}
    body.update(fields)
    return api.ok("POST", "/v1/endpoints", who, body, status=201)


def test_provider_consumer_story():
    need("curl")
    with ApiServer() as api:
        ops_events = EventStream(api, "ops")
        shop_events = EventStream(api, "shop")
        svc = create_service(api)
        assert svc["id"].startswith("svc-") and len(svc["id"]) == 21, svc
        assert svc == {
            "id": svc["id"], "name": "payments-api", "owner": "payments",
            "load_balancer": "payments-lb", "ports": [8080, 8443],
            "state": "available", "acceptance_required": True,
            "allowed_principals": ["shop"], "connection_limit": 0,
            "created_at": svc["created_at"], "private_dns_name": ""}, svc
        assert svc["created_at"].endswith("Z")
        sid = svc["id"]

        listed = api.ok("GET", "/v1/services", "payments")
        assert [s["id"] for s in listed["services"]] == [sid]
        assert api.ok("GET", "/v1/services/" + sid, "payments") == svc

        avail = api.ok("GET", "/v1/available-services", "shop")
        assert avail == {"services": [{
            "id": sid, "name": "payments-api", "owner": "payments",
            "ports": [8080, 8443], "acceptance_required": True,
            "private_dns_name": ""}]}, avail

        ep = create_endpoint(api, allowed_sources=["127.0.0.0/8"])
        assert ep["id"].startswith("ep-") and len(ep["id"]) == 20, ep
        assert ep["state"] == "pendingAcceptance", ep
        assert sorted(ep) == sorted([
            "id", "service_id", "service", "consumer", "network", "address",
            "ports", "state", "reason", "allowed_sources", "placements",
            "created_at", "updated_at", "private_dns", "dns_names"]), ep
        assert ep["private_dns"] is False and ep["dns_names"] == [], ep
        assert ep["placements"] == [], ep  # no data plane here
        assert ep["service_id"] == sid and ep["consumer"] == "shop"
        assert ep["address"].startswith("127.77."), ep
        assert ep["allowed_sources"] == ["127.0.0.0/8"], ep

        pending = api.ok("GET", "/v1/services/%s/connections?state="
                         "pendingAcceptance" % sid, "payments")
        assert len(pending["connections"]) == 1, pending
        conn = pending["connections"][0]
        assert sorted(conn) == sorted([
            "endpoint_id", "consumer", "state", "network", "address",
            "created_at", "updated_at"]), conn
        assert conn["endpoint_id"] == ep["id"]
        assert conn["state"] == "pendingAcceptance"

        result = api.ok("POST", "/v1/services/%s/connections/accept" % sid,
                        "payments", {"endpoint_ids": [ep["id"]]})
        assert result == {"unsuccessful": []}, result
        now = api.ok("GET", "/v1/endpoints/" + ep["id"], "shop")
        assert now["state"] == "available", now
        assert api.ok("GET", "/v1/services/%s/connections?state=available" %
                      sid, "payments")["connections"][0]["endpoint_id"] == \
            ep["id"]
        mine = api.ok("GET", "/v1/endpoints", "shop")["endpoints"]
        assert [e["id"] for e in mine] == [ep["id"]]

        # The consumer narrows its sources, then deletes its endpoint.
        changed = api.ok("PATCH", "/v1/endpoints/" + ep["id"], "shop",
                         {"allowed_sources": ["127.0.0.1"]})
        assert changed["allowed_sources"] == ["127.0.0.1/32"], changed
        gone = api.ok("DELETE", "/v1/endpoints/" + ep["id"], "shop")
        assert gone["state"] == "deleted", gone

        # The events of the story, in order, as they happened.
        for stream in (ops_events, shop_events):
            got = stream.take(4)
            assert [(e["type"], e["state"]) for e in got] == [
                ("connect", "pendingAcceptance"), ("accept", "available"),
                ("modify", "available"), ("delete", "deleted")], got
            assert [e["principal"] for e in got] == ["shop", "payments",
                                                     "shop", "shop"]
            assert all(e["endpoint_id"] == ep["id"] and
                       e["service_id"] == sid for e in got)
            seqs = [e["seq"] for e in got]
            assert seqs == sorted(seqs) and len(set(seqs)) == 4
            assert sorted(got[0]) == sorted([
                "seq", "time", "type", "service_id", "endpoint_id",
                "principal", "state"])
        # Service deletion with nothing live left.
        deleted = api.ok("DELETE", "/v1/services/" + sid, "payments")
        assert deleted["id"] == sid
        api.error("GET", "/v1/services/" + sid, "payments", status=404,
                  code="NotFound")
        ops_events.close()
        shop_events.close()


DNS_ARGS = ("--dns-zone", "nlb.internal",
            "--dns-domains", "payments:payments.example",
            "--dns-domains", "search:search.example",
            "--network-dns", "host:127.77.0.2")


def test_private_dns_names():
    """private_dns_name on services (granted domains only: 403 outside,
    400 for a bad name or one in the zone, 409 when another service has
    it), private_dns on endpoints, dns_names, and the service's modify
    event for its owner and operators alone."""
    need("curl")
    with ApiServer(extra=DNS_ARGS) as api:
        pay_events = EventStream(api, "payments")
        shop_events = EventStream(api, "shop")
        search_events = EventStream(api, "search")
        svc = create_service(api, private_dns_name="API.Payments.Example.",
                             acceptance_required=False)
        assert svc["private_dns_name"] == "api.payments.example", svc
        sid = svc["id"]
        api.error("POST", "/v1/services", "search",
                  {"name": "s1", "load_balancer": "search-lb",
                   "private_dns_name": "www.payments.example"},
                  status=403, code="Forbidden", field="private_dns_name")
        for bad in ("payments", "-x.payments.example", "a..payments.example",
                    "a_b.payments.example", "x" * 64 + ".payments.example",
                    "x.nlb.internal"):
            api.error("PATCH", "/v1/services/" + sid, "payments",
                      raw='{"private_dns_name": "%s"}' % bad, status=400,
                      code="InvalidValue", field="private_dns_name")
        # A NUL cannot cut a name short: the body does not parse.
        api.error("PATCH", "/v1/services/" + sid, "payments",
                  raw='{"private_dns_name": "api.payments.example'
                      '\\u0000.evil"}', status=400, code="InvalidJson")
        api.error("PATCH", "/v1/services/" + sid, "payments",
                  {"private_dns_name": "www.search.example"}, status=403,
                  code="Forbidden", field="private_dns_name")
        api.error("PATCH", "/v1/services/" + sid, "ops",
                  {"private_dns_name": "www.search.example"}, status=403,
                  code="Forbidden")
        api.error("POST", "/v1/services", "payments",
                  {"name": "p2", "load_balancer": "search-lb",
                   "private_dns_name": "api.payments.example"},
                  status=409, code="AlreadyExists", field="private_dns_name")
        avail = api.ok("GET", "/v1/available-services", "shop")["services"]
        assert avail[0]["private_dns_name"] == "api.payments.example", avail

        # The consumer opts in: three names; out: two.
        ep = create_endpoint(api, private_dns=True)
        assert ep["state"] == "available" and ep["private_dns"] is True, ep
        assert ep["dns_names"] == [
            ep["id"] + ".nlb.internal", "payments-api.nlb.internal",
            "api.payments.example"], ep
        ep = api.ok("PATCH", "/v1/endpoints/" + ep["id"], "shop",
                    {"private_dns": False})
        assert ep["private_dns"] is False and ep["allowed_sources"] == [], ep
        assert ep["dns_names"] == [ep["id"] + ".nlb.internal",
                                   "payments-api.nlb.internal"], ep
        api.error("PATCH", "/v1/endpoints/" + ep["id"], "shop", {},
                  status=400, code="InvalidValue")
        api.error("PATCH", "/v1/endpoints/" + ep["id"], "shop",
                  {"private_dns": "yes"}, status=400, code="InvalidValue",
                  field="private_dns")
        ep = api.ok("PATCH", "/v1/endpoints/" + ep["id"], "shop",
                    {"private_dns": True, "allowed_sources": ["127.0.0.1"]})
        assert ep["dns_names"][-1] == "api.payments.example", ep
        assert ep["allowed_sources"] == ["127.0.0.1/32"], ep
        # A network without a responder: no names.
        other = create_endpoint(api, network="shop-vpc", private_dns=True)
        assert other["dns_names"] == [], other

        # The provider renames, then clears: each a modify event of the
        # service, for the provider (and operators), not the consumer.
        svc = api.ok("PATCH", "/v1/services/" + sid, "payments",
                     {"private_dns_name": "payments.example"})
        assert svc["private_dns_name"] == "payments.example", svc
        now = api.ok("GET", "/v1/endpoints/" + ep["id"], "shop")
        assert now["dns_names"][-1] == "payments.example", now
        svc = api.ok("PATCH", "/v1/services/" + sid, "payments",
                     {"private_dns_name": ""})
        assert svc["private_dns_name"] == "", svc
        now = api.ok("GET", "/v1/endpoints/" + ep["id"], "shop")
        assert len(now["dns_names"]) == 2, now
        got = pay_events.take(6)
        service_events = [e for e in got if "endpoint_id" not in e]
        assert len(service_events) == 2, got
        for e in service_events:
            assert sorted(e) == ["principal", "seq", "service_id", "time",
                                 "type"], e
            assert e["type"] == "modify" and e["service_id"] == sid, e
            assert e["principal"] == "payments", e
        shop = shop_events.take(4)
        assert all("endpoint_id" in e for e in shop), shop
        shop_events.quiet()
        search_events.quiet()
        for stream in (pay_events, shop_events, search_events):
            stream.close()


def test_reject_delete_and_states():
    need("curl")
    with ApiServer() as api:
        sid = create_service(api)["id"]
        a = create_endpoint(api)
        b = create_endpoint(api)
        # A batch: one good, one unknown, one twice.
        res = api.ok("POST", "/v1/services/%s/connections/reject" % sid,
                     "payments", {"endpoint_ids": [a["id"], "ep-nope"]})
        assert len(res["unsuccessful"]) == 1, res
        bad = res["unsuccessful"][0]
        assert bad["endpoint_id"] == "ep-nope"
        assert bad["error"]["code"] == "NotFound", bad
        assert api.ok("GET", "/v1/endpoints/" + a["id"],
                      "shop")["state"] == "rejected"
        # A rejected endpoint is never accepted again.
        res = api.ok("POST", "/v1/services/%s/connections/accept" % sid,
                     "payments", {"endpoint_ids": [a["id"], b["id"]]})
        assert [u["endpoint_id"] for u in res["unsuccessful"]] == [a["id"]]
        assert res["unsuccessful"][0]["error"]["code"] == "InvalidState"
        # Revoke the available one.
        res = api.ok("POST", "/v1/services/%s/connections/reject" % sid,
                     "payments", {"endpoint_ids": [b["id"]]})
        assert res == {"unsuccessful": []}
        assert api.ok("GET", "/v1/endpoints/" + b["id"],
                      "shop")["state"] == "rejected"
        # Live endpoints hold the service; rejected ones do not.
        c = create_endpoint(api)
        api.error("DELETE", "/v1/services/" + sid, "payments", status=409,
                  code="InvalidState")
        api.ok("DELETE", "/v1/endpoints/" + c["id"], "shop")
        api.error("DELETE", "/v1/endpoints/" + c["id"], "shop", status=409,
                  code="InvalidState")
        api.ok("DELETE", "/v1/services/" + sid, "payments")


def test_permissions_limits_and_auto_accept():
    need("curl")
    with ApiServer() as api:
        sid = create_service(api, allowed_principals=[],
                             connection_limit=1)["id"]
        # Not allowed yet: the service is invisible to blog.
        assert api.ok("GET", "/v1/available-services",
                      "blog") == {"services": []}
        api.error("POST", "/v1/endpoints", "blog",
                  {"service": "payments-api", "network": "host"},
                  status=404, code="NotFound")
        perms = api.ok("PATCH", "/v1/services/%s/permissions" % sid,
                       "payments", {"add": ["blog", "shop"]})
        assert perms == {"allowed_principals": ["blog", "shop"]}, perms
        assert api.ok("GET", "/v1/services/%s/permissions" % sid,
                      "payments") == perms
        create_endpoint(api, who="blog")
        # connection_limit = 1 live endpoint per consumer.
        api.error("POST", "/v1/endpoints", "blog",
                  {"service": "payments-api", "network": "host"},
                  status=409, code="LimitExceeded")
        perms = api.ok("PATCH", "/v1/services/%s/permissions" % sid,
                       "payments", {"remove": ["blog"]})
        assert perms == {"allowed_principals": ["shop"]}, perms
        api.error("PATCH", "/v1/services/%s/permissions" % sid, "payments",
                  {"add": ["no body"]}, status=400, code="InvalidValue")
        # A name no principal holds is accepted like any other: whether a
        # principal exists is not a provider's to learn.
        perms = api.ok("PATCH", "/v1/services/%s/permissions" % sid,
                       "payments", {"add": ["nobody"]})
        assert perms == {"allowed_principals": ["nobody", "shop"]}, perms
        api.ok("PATCH", "/v1/services/%s/permissions" % sid, "payments",
               {"remove": ["nobody"]})
        # Without acceptance an allowed consumer goes straight to available.
        svc = api.ok("PATCH", "/v1/services/" + sid, "payments",
                     {"acceptance_required": False, "connection_limit": 0})
        assert svc["acceptance_required"] is False
        assert svc["connection_limit"] == 0
        ep = create_endpoint(api, who="shop")
        assert ep["state"] == "available", ep
        # The network restricts who may place endpoints there.
        ep = create_endpoint(api, who="shop", network="shop-vpc",
                             address="127.78.0.3")
        assert ep["address"] == "127.78.0.3", ep
        api.error("POST", "/v1/endpoints", "shop",
                  {"service": "payments-api", "network": "shop-vpc",
                   "address": "127.78.0.3"}, status=409, code="AddressInUse")
        api.ok("PATCH", "/v1/services/%s/permissions" % sid, "payments",
               {"add": ["*"]})
        api.error("POST", "/v1/endpoints", "stranger",
                  {"service": "payments-api", "network": "shop-vpc"},
                  status=403, code="Forbidden")


def test_error_statuses():
    need("curl")
    with ApiServer() as api:
        sid = create_service(api)["id"]
        # 400: bad JSON, unknown field, wrong type, missing field, bad query.
        api.error("POST", "/v1/services", "payments", raw="{\"name\":",
                  code="InvalidJson")
        api.error("POST", "/v1/services", "payments", raw="",
                  code="InvalidJson")
        api.error("POST", "/v1/services", "payments",
                  {"name": "x", "load_balancer": "payments-lb", "colour": 1},
                  code="UnknownField", field="colour")
        api.error("POST", "/v1/services", "payments",
                  {"name": "x", "load_balancer": "payments-lb",
                   "acceptance_required": "yes"},
                  code="InvalidValue", field="acceptance_required")
        api.error("POST", "/v1/services", "payments", {"name": "x"},
                  code="InvalidValue", field="load_balancer")
        api.error("POST", "/v1/services", "payments",
                  {"name": "x", "load_balancer": "nope-lb"},
                  code="InvalidValue", field="load_balancer")
        api.error("POST", "/v1/services", "payments",
                  {"name": "x", "load_balancer": "payments-lb",
                   "connection_limit": -1},
                  code="InvalidValue", field="connection_limit")
        api.error("PATCH", "/v1/services/" + sid, "payments",
                  {"connection_limit": "3"}, code="InvalidValue",
                  field="connection_limit")
        api.error("GET", "/v1/services/%s/connections?state=happy" % sid,
                  "payments", code="InvalidValue", field="state")
        api.error("GET", "/v1/services?color=3", "payments",
                  code="UnknownField", field="color")
        api.error("GET", "/v1/services?limit=0", "payments",
                  code="InvalidValue", field="limit")
        api.error("GET", "/v1/services?limit=1001", "payments",
                  code="InvalidValue", field="limit")
        api.error("GET", "/v1/services?next_token=zz", "payments",
                  code="InvalidValue", field="next_token")
        api.error("POST", "/v1/endpoints", "shop",
                  {"service": "payments-api", "network": "host",
                   "allowed_sources": ["not-a-cidr"]},
                  code="InvalidValue", field="allowed_sources")
        # 401: no token, unknown token; /healthz needs none.
        api.error("GET", "/v1/services", None, status=401,
                  code="Unauthorized")
        code, value, headers = api.call(
            "GET", "/v1/services", headers=["Authorization: Bearer wrong"])
        assert code == 401 and headers.get("www-authenticate") == "Bearer"
        code, value, headers = api.call(
            "GET", "/v1/services", headers=["Authorization: Basic eDp5"])
        assert code == 401
        code, text, _ = api.call("GET", "/healthz")
        assert (code, text) == (200, {"status": "ok", "store": "ok"})
        # 403: the role may not do this at all.
        api.error("POST", "/v1/services", "shop",
                  {"name": "x", "load_balancer": "payments-lb"},
                  status=403, code="Forbidden")
        api.error("GET", "/v1/available-services", "payments", status=403,
                  code="Forbidden")
        api.error("GET", "/v1/target-groups", "payments", status=403)
        api.error("GET", "/metrics", "shop", status=403)
        # 404: absent, or another provider's (never 403: nothing leaks).
        api.error("GET", "/v1/services/" + sid, "search", status=404,
                  code="NotFound")
        api.error("DELETE", "/v1/services/" + sid, "search", status=404)
        api.error("GET", "/v1/services/svc-00000000000000000", "payments",
                  status=404)
        ep = create_endpoint(api)
        api.error("GET", "/v1/endpoints/" + ep["id"], "blog", status=404)
        api.error("POST", "/v1/services/%s/connections/accept" % sid,
                  "search", {"endpoint_ids": [ep["id"]]}, status=404)
        api.error("GET", "/v2/nothing", "ops", status=404, code="NotFound")
        # 405 with Allow.
        code, value, headers = api.call("PUT", "/v1/services", "payments")
        assert code == 405 and value["error"]["code"] == "MethodNotAllowed"
        code, value, headers = api.call("DELETE", "/v1/services", "payments")
        assert code == 405 and headers["allow"] == "GET, HEAD, POST", headers
        # 409: a taken name, a state that does not allow it.
        api.error("POST", "/v1/services", "search",
                  {"name": "payments-api", "load_balancer": "search-lb"},
                  status=409, code="AlreadyExists")
        api.error("DELETE", "/v1/services/" + sid, "payments", status=409,
                  code="InvalidState")
        # 413: a body over 64 KiB, whatever it holds.
        big = {"name": "x", "load_balancer": "payments-lb",
               "allowed_principals": ["a" * 1000] * 70}
        api.error("POST", "/v1/services", "payments", big, status=413,
                  code="PayloadTooLarge")
        # ...and the server still answers.
        assert api.ok("GET", "/v1/services", "payments")["services"]


def test_events_visibility_and_resume():
    need("curl")
    with ApiServer() as api:
        sid = create_service(api, allowed_principals=["shop", "blog"],
                             acceptance_required=False)["id"]
        search_events = EventStream(api, "search")
        blog_events = EventStream(api, "blog")
        a = create_endpoint(api, who="shop")
        b = create_endpoint(api, who="blog")
        got = blog_events.take(1)
        assert got[0]["endpoint_id"] == b["id"], got
        blog_events.quiet()
        search_events.quiet()  # another provider's service: nothing
        # Resume from the start: the whole history, for its owner.
        history = EventStream(api, "payments", after=0)
        got = history.take(2)
        assert [e["endpoint_id"] for e in got] == [a["id"], b["id"]]
        assert [e["seq"] for e in got] == [1, 2]
        resumed = EventStream(api, "payments", after=1)
        assert resumed.next()["seq"] == 2
        resumed.quiet(0.3)
        api.ok("DELETE", "/v1/endpoints/" + a["id"], "shop")
        assert resumed.next()["type"] == "delete"
        assert history.next()["seq"] == 3
        api.error("GET", "/v1/events?after=-1", "payments", code="InvalidValue",
                  field="after")
        for s in (search_events, blog_events, history, resumed):
            s.close()
        assert sid


def test_metrics_prometheus_text():
    need("curl")
    with ApiServer() as api:
        sid = create_service(api)["id"]
        create_endpoint(api)
        api.error("GET", "/v1/services", None, status=401)
        code, text, headers = api.call("GET", "/metrics", "ops")
        assert code == 200
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
        samples, types = parse_prometheus(text)
        assert types["nlb_api_requests_total"] == "counter"
        assert types["nlb_endpoints"] == "gauge"
        assert types["nlb_active_flows"] == "gauge"  # from the data plane
        assert samples[("nlb_api_requests_total",
                        frozenset({("code", "201")}))] == 2
        assert samples[("nlb_api_requests_total",
                        frozenset({("code", "401")}))] == 1
        key = ("nlb_endpoints", frozenset({("service", "payments-api"),
                                           ("state", "pendingAcceptance")}))
        assert samples[key] == 1, samples
        key = ("nlb_endpoints", frozenset({("service", "payments-api"),
                                           ("state", "available")}))
        assert samples[key] == 0
        assert sid
        # The parser is strict: it refuses what Prometheus would.
        for bad in ["x 1", "x{a=\"1\"} one\n", "# TYPE x counter\n"
                    "# TYPE x counter\n", "x{a=1} 1\n",
                    "x 1\ny 1\nx 2\n"]:
            try:
                parse_prometheus(bad)
            except AssertionError:
                continue
            raise AssertionError("parser accepted %r" % bad)


def test_target_groups_at_run_time():
    need("curl")
    with ApiServer() as api:
        groups = api.ok("GET", "/v1/target-groups", "ops")["target_groups"]
        assert [g["name"] for g in groups] == ["web-tg", "db-tg"]
        assert groups[0]["targets"][0] == {
            "address": "127.0.0.1:9001", "weight": 1, "state": "healthy",
            "reason": ""}
        t = api.ok("POST", "/v1/target-groups/web-tg/targets", "ops",
                   {"address": "127.0.0.1:9003", "weight": 5}, status=201)
        assert t == {"address": "127.0.0.1:9003", "weight": 5,
                     "state": "initial", "reason": ""}, t
        api.error("POST", "/v1/target-groups/web-tg/targets", "ops",
                  {"address": "127.0.0.1:9003"}, status=409,
                  code="AlreadyExists")
        api.error("POST", "/v1/target-groups/web-tg/targets", "ops",
                  {"address": "nowhere"}, status=400, code="InvalidValue",
                  field="address")
        api.error("POST", "/v1/target-groups/web-tg/targets", "ops",
                  {"address": "127.0.0.1:9004", "weight": 1001}, status=400,
                  field="weight")
        api.error("POST", "/v1/target-groups/nope/targets", "ops",
                  {"address": "127.0.0.1:9003"}, status=404)
        t = api.ok("DELETE", "/v1/target-groups/web-tg/targets/"
                   "127.0.0.1%3A9003", "ops")
        assert t["state"] == "draining", t
        api.error("DELETE", "/v1/target-groups/web-tg/targets/127.0.0.1:1",
                  "ops", status=404)
        one = api.ok("GET", "/v1/target-groups/web-tg", "ops")
        assert one["name"] == "web-tg" and len(one["targets"]) == 3
        api.error("POST", "/v1/target-groups/web-tg/targets", "payments",
                  {"address": "127.0.0.1:9005"}, status=403)


def test_audit_log_never_holds_tokens():
    need("curl")
    with ApiServer() as api:
        sid = create_service(api)["id"]
        api.error("DELETE", "/v1/services/" + sid, "search", status=404)
        api.error("POST", "/v1/services", None, {}, status=401)
        api.ok("GET", "/v1/services", "payments")
        log = api.log()
        audit = [line for line in log.splitlines() if "audit" in line]
        assert any("principal=payments role=provider method=POST "
                   "path=/v1/services status=201" in a for a in audit), log
        assert any("principal=search" in a and "status=404" in a
                   for a in audit), log
        assert any("principal=- " in a and "status=401" in a
                   for a in audit), log
        assert len(audit) == 3, audit  # GETs are not audited
        for name, _ in [("payments", 0), ("search", 0), ("ops", 0)]:
            assert token(name) not in log


def test_tls_story():
    need("curl", "openssl")
    with ApiServer(tls=True) as api:
        code, text, _ = api.call("GET", "/healthz")
        assert (code, text) == (200, {"status": "ok", "store": "ok"})
        events = EventStream(api, "payments")
        sid = create_service(api)["id"]
        ep = create_endpoint(api)
        api.ok("POST", "/v1/services/%s/connections/accept" % sid,
               "payments", {"endpoint_ids": [ep["id"]]})
        assert api.ok("GET", "/v1/endpoints/" + ep["id"],
                      "shop")["state"] == "available"
        assert [e["type"] for e in events.take(2)] == ["connect", "accept"]
        events.close()
        api.error("GET", "/v1/services", "nobody", status=401)
        # A client that speaks h2c to the TLS port is closed, not served...
        r = subprocess.run(["curl", "-s", "--http2-prior-knowledge",
                            "--max-time", "5", "http://127.0.0.1:%d/healthz"
                            % api.port], capture_output=True)
        assert r.returncode != 0
        # A TLS client that offers only http/1.1 gets HTTP/1.1.
        r = subprocess.run(["curl", "-sk", "--http1.1", "--max-time", "5",
                            "-w", " %{http_version}", api.base + "/healthz"],
                           capture_output=True)
        assert r.stdout == HEALTHZ_OK + b" 1.1", r
        assert api.call("GET", "/healthz")[0] == 200


def _raw(api, payload, wait=3.0):
    """Sends payload on a fresh socket; returns what came back until the
    server closed (or wait ran out: then closed is False)."""
    s = socket.create_connection(("127.0.0.1", api.port), timeout=wait)
    s.sendall(payload)
    data, closed = b"", False
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    s.close()
    return data, closed


def test_garbage_and_protocol_errors():
    need("curl")
    with ApiServer() as api:
        # Not the HTTP/2 preface: HTTP/1.1, and garbage gets 400 and goes.
        data, closed = _raw(api, b"GET / HTTP/1.1\r\nHost: x\r\n"
                            b"Connection: close\r\n\r\n")
        assert closed and data.startswith(b"HTTP/1.1 404 "), data
        data, closed = _raw(api, b"\x00" + os.urandom(4096))
        assert closed and data.startswith(b"HTTP/1.1 400 "), data
        # A valid preface, then a frame that breaks the protocol: DATA on
        # stream 0.
        bad = struct.pack(">I", 4)[1:] + bytes([0, 0]) + struct.pack(">I", 0)
        data, closed = _raw(api, PREFACE + EMPTY_SETTINGS + bad + b"abcd")
        assert closed
        goaway = [f for f in h2_frames(data)[0] if f[0] == 7]
        assert goaway and int.from_bytes(goaway[0][3][4:8], "big") == 1, \
            data  # PROTOCOL_ERROR
        assert api.alive()
        assert api.call("GET", "/healthz")[0] == 200


def _frame(ftype, flags, stream, payload=b""):
    return (struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) +
            struct.pack(">I", stream) + payload)


# GET / over http with :authority x, as HPACK: three static-table entries
# and one literal without indexing.
GET_BLOCK = b"\x82\x86\x84\x01\x01x"


def test_rapid_reset_and_continuation_flood():
    """The two HTTP/2 floods of 2023-2024, from raw sockets: HEADERS then
    RST_STREAM 3,000 times (CVE-2023-44487, "rapid reset"), and a header
    block that never ends, sent as endless CONTINUATION frames
    (CVE-2024-28182). Each connection gets a GOAWAY and is closed (the
    libnghttp2 we build on has both limits: Debian's 1.52.0-1+deb12u1 and
    deb12u2); the server serves everyone else meanwhile."""
    need("curl")

    def resets(n):
        return b"".join(_frame(1, 0x5, sid, GET_BLOCK) +
                        _frame(3, 0, sid, struct.pack(">I", 8))
                        for sid in range(1, 2 * n, 2))

    def continuations(n):
        return _frame(1, 0x1, 1, GET_BLOCK) + b"".join(
            _frame(9, 0, 1) for _ in range(n))

    with ApiServer() as api:
        # Below the limits a connection stays (these are limits, not a
        # reaction to any odd frame)...
        for few in (resets(100), continuations(5)):
            _, closed = _raw(api, PREFACE + EMPTY_SETTINGS + few, wait=1.5)
            assert not closed
        # ...past them it gets a GOAWAY and is closed.
        for flood in (resets(3000), continuations(200)):
            data, closed = _raw(api, PREFACE + EMPTY_SETTINGS + flood, wait=5)
            assert closed, "a flooding client kept its connection"
            assert any(f[0] == 7 for f in h2_frames(data)[0]), "no GOAWAY"
            assert api.alive()
            assert api.call("GET", "/healthz")[0] == 200


def test_huge_headers_and_slow_clients():
    need("curl")
    with ApiServer(extra=["--request-timeout-ms", "1000",
                          "--idle-timeout-ms", "1500"]) as api:
        # 20 KiB of header: 431; 200 KiB: the connection goes.
        code, value, _ = api.call("GET", "/v1/services", "payments",
                                  headers=["X-Big: " + "a" * 20000])
        assert code == 431, (code, value)
        huge = os.path.join(api.dir, "huge-header")
        with open(huge, "w") as f:
            f.write("X-Huge: " + "b" * 200000 + "\n")
        args = api.curl_args() + ["-s", "-o", "/dev/null", "-w",
                                  "%{http_code}", "-H", "@" + huge,
                                  api.base + "/healthz"]
        r = subprocess.run(args, capture_output=True, timeout=10)
        assert r.stdout != b"200", r
        # A request that never finishes its body: 408 after the timeout.
        slow = subprocess.Popen(
            api.curl_args() + ["-sN", "-o", "-", "-w", "\n%{http_code}",
                               "-X", "POST", "-H",
                               "Authorization: Bearer " + token("payments"),
                               "-T", "-",
                               api.base + "/v1/services"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        slow.stdin.write(b"{\"na")
        slow.stdin.flush()
        started = time.monotonic()
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in slow.stdout],
                         daemon=True).start()
        # Others are served meanwhile.
        assert api.call("GET", "/healthz")[0] == 200
        nlbtest.wait_until(lambda: "status=408" in api.log(), timeout=4,
                           what="the 408 answer")
        assert time.monotonic() - started < 3
        # curl blocks on its stdin until EOF, whatever the server says;
        # then it shows the answer it got.
        slow.stdin.close()
        slow.wait(timeout=5)
        first = lines.get(timeout=5)
        assert b"RequestTimeout" in first, first
        assert lines.get(timeout=5).strip() == b"", "no blank line"
        assert lines.get(timeout=5).strip() == b"408"
        # Raw frames: a POST whose body never comes gets 408, then
        # RST_STREAM(NO_ERROR) so that the client stops.
        block = bytes([0x83, 0x86, 0x84, 0x41, 0x01]) + b"x"  # POST / x
        headers = struct.pack(">I", len(block))[1:] + bytes([1, 4]) + \
            struct.pack(">I", 1) + block
        data, closed = _raw(api, PREFACE + EMPTY_SETTINGS + headers, wait=3)
        frames = [(t, sid) for t, _, sid, _ in h2_frames(data)[0]]
        assert (1, 1) in frames and (3, 1) in frames, frames
        # A header block that never ends (no END_HEADERS): the connection
        # goes after five request timeouts.
        headers = headers[:4] + bytes([0]) + headers[5:]
        data, closed = _raw(api, PREFACE + EMPTY_SETTINGS + headers, wait=9)
        assert closed, "a stalled header block kept its connection"
        # An idle connection gets GOAWAY and is closed.
        data, closed = _raw(api, PREFACE + EMPTY_SETTINGS, wait=6)
        assert closed, "idle connection was not closed"
        assert any(t == 7 for t, _, _, _ in h2_frames(data)[0])
        # A client that sends the preface and nothing else at all.
        data, closed = _raw(api, b"PRI * HTTP/2.0\r\n", wait=6)
        assert closed
        assert api.call("GET", "/healthz")[0] == 200


def test_many_concurrent_streams():
    need("nghttp", "curl")
    with ApiServer() as api:
        # With a token: a connection without one gets 8 streams at once
        # (test_api_admission.py).
        r = subprocess.run(["nghttp", "-n", "-s", "-m", "1000", "-H",
                            "authorization: Bearer " + token("ops"),
                            api.base + "/healthz"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        answered = [line for line in r.stdout.splitlines()
                    if " 200 " in line and "/healthz" in line]
        assert len(answered) == 1000, r.stdout[-2000:]
        # SETTINGS_MAX_CONCURRENT_STREAMS is 100.
        r = subprocess.run(["nghttp", "-nv", api.base + "/healthz"],
                           capture_output=True, text=True, timeout=20)
        assert "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100" in r.stdout, \
            r.stdout
        # Flow control: a client with a 1 KiB stream window still gets a
        # 20 KiB answer whole (the server waits for WINDOW_UPDATEs).
        for i in range(100):
            create_service(api, name="service-%03d" % i)
        code, listed, _ = api.call("GET", "/v1/services", "payments")
        expected = json.dumps(listed, separators=(",", ":")) + "\n"
        assert len(expected) > 20000
        r = subprocess.run(["nghttp", "-w", "10", "-W", "16", "-H",
                            "authorization: Bearer " + token("payments"),
                            api.base + "/v1/services"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == listed
        assert api.call("GET", "/healthz")[0] == 200


def test_reload_and_shutdown_send_goaway():
    need("curl")
    with ApiServer() as api:
        events = EventStream(api, "ops")
        api.signal(signal.SIGHUP)
        assert events.ended(5) == 0, "the event stream did not end cleanly"
        assert api.call("GET", "/healthz")[0] == 200
        events = EventStream(api, "ops")
        started = time.monotonic()
        assert api.stop() == 0
        assert time.monotonic() - started < 5
        assert events.ended(5) == 0
        assert "GOAWAY" not in ""  # the streams ended with END_STREAM


def test_story_against_nlbd():
    """The same API served by nlbd itself: the story end to end, through an
    endpoint that really carries bytes, and nlbd's whole /metrics (the data
    plane's part included) through the strict parser."""
    need("curl")
    with NlbdApi() as api:
        events = EventStream(api, "ops")
        sid = create_service(api)["id"]
        ep = create_endpoint(api)
        assert ep["state"] == "pendingAcceptance"
        api.ok("POST", "/v1/services/%s/connections/accept" % sid,
               "payments", {"endpoint_ids": [ep["id"]]})
        assert api.ok("GET", "/v1/endpoints/" + ep["id"],
                      "shop")["state"] == "available"
        assert [e["type"] for e in events.take(2)] == ["connect", "accept"]
        # The endpoint listens at its address on the LB's port.
        def echo():
            try:
                with socket.create_connection((ep["address"], api.lb_port),
                                              timeout=2) as s:
                    s.sendall(b"ping")
                    return s.recv(4) == b"ping"
            except OSError:
                return False
        nlbtest.wait_until(echo, timeout=10, what="the endpoint to echo")
        groups = api.ok("GET", "/v1/target-groups", "ops")["target_groups"]
        assert [g["name"] for g in groups] == ["payments-tg"], groups
        code, text, _ = api.call("GET", "/metrics", "ops")
        assert code == 200
        samples, types = parse_prometheus(text)
        assert types["nlb_endpoints"] == "gauge"
        assert types["nlb_api_requests_total"] == "counter"
        assert any(name == "nlb_new_flows_total" for name, _ in samples), \
            sorted(types)
        api.error("GET", "/v1/services/" + sid, "search", status=404)
        res = api.ok("POST", "/v1/services/%s/connections/reject" % sid,
                     "payments", {"endpoint_ids": [ep["id"]]})
        assert res == {"unsuccessful": []}
        assert events.next()["type"] == "reject"
        events.close()
        assert "api audit: principal=payments" in api.log()
        for name, _ in [("payments", 0), ("shop", 0), ("ops", 0)]:
            assert token(name) not in api.log()


def _served_certificate(port):
    """The DER certificate a new TLS connection to port is shown."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)


def test_sighup_reloads_tls_certificate():
    """A certificate renewed at the same paths is served to new connections
    after SIGHUP; a certificate file that does not load leaves the one in
    use serving, with a warning."""
    need("curl", "openssl")
    with NlbdApi(tls=True) as api:
        cert = os.path.join(api.dir, "cert.pem")
        key = os.path.join(api.dir, "key.pem")
        first = _served_certificate(api.port)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-keyout", key, "-out", cert, "-days", "2",
             "-subj", "/CN=renewed.localhost"], check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        api.signal(signal.SIGHUP)
        nlbtest.wait_until(lambda: "TLS certificate reloaded" in api.log(),
                           what="the certificate reload")
        second = _served_certificate(api.port)
        assert second != first
        assert api.call("GET", "/healthz")[0] == 200

        with open(cert, "w") as f:
            f.write("not a certificate\n")
        api.signal(signal.SIGHUP)
        nlbtest.wait_until(
            lambda: "keeping the TLS certificate in use" in api.log(),
            what="the refused certificate reload")
        assert _served_certificate(api.port) == second
        assert api.call("GET", "/healthz")[0] == 200


def test_event_retention_prunes_and_410():
    """registry.event_retention: old events are pruned; asking for events
    after a pruned one answers 410 EventsPruned naming the oldest kept;
    seq keeps counting after the prune."""
    import re
    need("curl")
    with NlbdApi(registry_extra='event_retention = "1s";') as api:
        create_service(api)
        create_endpoint(api)
        nlbtest.wait_until(lambda: "registry: pruned" in api.log(),
                           timeout=10, what="old events pruned")
        err = api.error("GET", "/v1/events?after=0", "ops", status=410,
                        code="EventsPruned")
        oldest = int(re.search(r"the oldest kept is (\d+)",
                               err["message"]).group(1))
        assert oldest >= 2, err
        events = EventStream(api, "ops", after=oldest - 1)
        second = create_endpoint(api)
        got = events.next()
        assert got["seq"] >= oldest and got["endpoint_id"] == second["id"], \
            got
        events.close()

def _hpack_literal(name_index, value):
    """A header field as an HPACK literal without indexing, its name from
    the static table (index below 15 + 127), value not Huffman-coded."""
    value = value.encode()
    if name_index < 15:
        head = bytes([name_index])
    else:
        head = bytes([0x0f, name_index - 15])
    assert len(value) < 127
    return head + bytes([len(value)]) + value


def test_lagging_event_stream_ends_when_pruned():
    """A stream whose reader stops reading (HTTP/2 flow control: a window
    of 0) while the events it has not been sent yet are pruned: when it
    reads again, the stream ends (END_STREAM, no event) rather than go on
    with a gap; asking again from its last seq gets the 410 that says
    why."""
    need("curl")
    # 3 s: the stream must be open before its events are pruned.
    with NlbdApi(registry_extra='event_retention = "3s";') as api:
        create_service(api)
        create_endpoint(api)
        block = (b"\x82\x86" + _hpack_literal(4, "/v1/events?after=0") +
                 _hpack_literal(1, "x") +
                 _hpack_literal(23, "Bearer " + token("ops")))
        no_window = _frame(4, 0, 0, struct.pack(">HI", 4, 0))
        s = socket.create_connection(("127.0.0.1", api.port), timeout=10)
        s.sendall(PREFACE + no_window + _frame(1, 0x5, 1, block))
        got = b""

        def frames_until(done, timeout):
            nonlocal got
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                frames = h2_frames(got)[0]
                if done(frames):
                    return frames
                s.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                assert chunk, "the server closed the connection"
                got += chunk
            raise AssertionError("timed out; frames: %r" % h2_frames(got)[0])

        frames = frames_until(lambda fs: any(
            f[0] == 1 and f[2] == 1 for f in fs), 5)
        assert any(f[0] == 4 and not f[1] & 1 for f in frames)
        s.sendall(_frame(4, 1, 0))  # SETTINGS ACK
        # 0x88 is ":status: 200" from the static table.
        assert [f for f in frames if f[0] == 1][0][3][:1] == b"\x88"
        assert not [f for f in frames if f[0] == 0], "DATA with no window"
        nlbtest.wait_until(lambda: "registry: pruned" in api.log(),
                           timeout=20, what="old events pruned")
        s.sendall(_frame(8, 0, 1, struct.pack(">I", 65535)))
        frames = frames_until(lambda fs: any(
            f[2] == 1 and f[0] in (0, 1) and f[1] & 1 for f in fs), 5)
        data = b"".join(f[3] for f in frames if f[0] == 0 and f[2] == 1)
        assert data == b"", "events sent across the gap: %r" % data
        s.close()
        api.error("GET", "/v1/events?after=0", "ops", status=410,
                  code="EventsPruned")


def test_second_nlbd_on_the_same_sqlite_file():
    """A second nlbd on the same SQLite registry exits 1 naming the first,
    before it binds anything; the first is untouched."""
    need("curl")
    with NlbdApi() as api:
        sid = api.ok("POST", "/v1/services", "payments", {
            "name": "payments-api", "load_balancer": "payments-lb",
            "allowed_principals": ["shop"]}, status=201)["id"]
        # The same file, the same ports.
        second = nlbtest.Nlbd(open(api.nlbd.config_path).read().split(
            "\n", 2)[2])
        proc = subprocess.run([nlbtest.NLBD, "-c", second.config_path],
                              capture_output=True, text=True, timeout=30)
        want = "registry %s/registry.db is in use by another nlbd (pid %d)" % (
            api.dir, api.nlbd.proc.pid)
        assert proc.returncode == 1, (proc.returncode, proc.stderr)
        assert want in proc.stderr, proc.stderr
        assert api.alive()
        assert api.ok("GET", "/v1/services/" + sid, "payments")["id"] == sid
        with socket.create_connection(("127.0.0.1", api.lb_port),
                                      timeout=2) as s:
            s.sendall(b"ping")
            assert nlbtest.recv_exact(s, 4) == b"ping"


if __name__ == "__main__":
    nlbtest.run([
        test_provider_consumer_story,
        test_private_dns_names,
        test_reject_delete_and_states,
        test_permissions_limits_and_auto_accept,
        test_error_statuses,
        test_events_visibility_and_resume,
        test_metrics_prometheus_text,
        test_target_groups_at_run_time,
        test_audit_log_never_holds_tokens,
        test_tls_story,
        test_garbage_and_protocol_errors,
        test_rapid_reset_and_continuation_flood,
        test_huge_headers_and_slow_clients,
        test_many_concurrent_streams,
        test_reload_and_shutdown_send_goaway,
        test_story_against_nlbd,
        test_sighup_reloads_tls_certificate,
        test_event_retention_prunes_and_410,
        test_lagging_event_stream_ends_when_pruned,
        test_second_nlbd_on_the_same_sqlite_file,
    ], timeout=90)
