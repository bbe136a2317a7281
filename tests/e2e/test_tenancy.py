#!/usr/bin/env python3
"""Tenancy at run time: principals, tokens and networks made through the
API, with no config edit and no SIGHUP.

- a consumer onboarded end to end against a real nlbd: the operator makes
  it (and a network for it), the provider allows it, it asks for an
  endpoint with its new token and its flows reach the service;
- rotation: two tokens at once; a revoked token is refused at once and the
  event stream it opened ends; an expired token is refused;
- on a two-node cluster (PostgreSQL), a revocation made on one node is
  refused on every node within a second, and its stream there ends;
- no token the API made appears in any log, event, list, error or the
  registry file;
- each route's errors; the per-provider service quota."""

import os
import re
import socket
import time

import apitest
import nlbtest
from apitest import ApiServer, EventStream, NlbdApi

TOKEN_SHAPE = re.compile(r"^nlb_[A-Za-z0-9_-]{43}$")


def make_principal(api, name, role):
    made = api.ok("POST", "/v1/principals", "ops",
                  {"name": name, "role": role}, status=201)
    assert made["name"] == name and made["role"] == role, made
    assert made["source"] == "api", made
    assert TOKEN_SHAPE.match(made["token"]), made["token"]
    assert re.match(r"^tok-[0-9a-f]{17}$", made["token_id"]), made
    return made["token"], made["token_id"]


def refused(api, tok):
    got, value, _ = api.call("GET", "/v1/endpoints", tok)
    return got == 401


def test_onboarding_without_config_edit():
    """The whole story on a real nlbd, and then every place a token could
    leak is searched for each token made."""
    made_tokens = []
    with NlbdApi() as api:
        pid = api.nlbd.proc.pid
        config_before = open(api.nlbd.config_path).read()
        newco, _ = make_principal(api, "newco", "consumer")
        made_tokens.append(newco)
        # Before anyone allows it, it sees nothing and cannot connect.
        assert api.ok("GET", "/v1/available-services", newco) == {
            "services": []}
        net = api.ok("POST", "/v1/networks", "ops",
                     {"name": "newco-net", "range": "127.79.0.0/29",
                      "principals": ["newco"]}, status=201)
        assert net == {"name": "newco-net", "range": "127.79.0.0/29",
                       "netns": None, "principals": ["newco"],
                       "source": "api", "created_at": net["created_at"]}, net
        svc = api.ok("POST", "/v1/services", "payments",
                     {"name": "payments", "load_balancer": "payments-lb",
                      "acceptance_required": True,
                      "allowed_principals": []}, status=201)
        api.error("POST", "/v1/endpoints", newco,
                  {"service": "payments", "network": "newco-net"},
                  status=404, code="NotFound")
        api.ok("PATCH", "/v1/services/%s/permissions" % svc["id"],
               "payments", {"add": ["newco"]})
        seen = api.ok("GET", "/v1/available-services", newco)["services"]
        assert [s["name"] for s in seen] == ["payments"], seen
        # Another consumer may not use newco's network.
        api.error("POST", "/v1/endpoints", "shop",
                  {"service": "payments", "network": "newco-net"},
                  status=403, code="Forbidden")
        ep = api.ok("POST", "/v1/endpoints", newco,
                    {"service": "payments", "network": "newco-net"},
                    status=201)
        assert ep["state"] == "pendingAcceptance", ep
        assert ep["address"] == "127.79.0.1", ep
        api.ok("POST", "/v1/services/%s/connections/accept" % svc["id"],
               "payments", {"endpoint_ids": [ep["id"]]})

        def echo():
            try:
                with socket.create_connection((ep["address"], api.lb_port),
                                              timeout=2) as s:
                    s.sendall(b"ping")
                    return nlbtest.recv_exact(s, 4) == b"ping"
            except OSError:
                return False
        nlbtest.wait_until(echo, timeout=10, what="newco's endpoint to echo")
        # No edit, no reload: the same process and the same config.
        assert api.nlbd.proc.pid == pid
        assert open(api.nlbd.config_path).read() == config_before
        assert "config reloaded" not in api.nlbd.events()

        # A second token; both work; then the first is revoked.
        second = api.ok("POST", "/v1/principals/newco/tokens", "ops", {},
                        status=201)
        made_tokens.append(second["token"])
        assert TOKEN_SHAPE.match(second["token"])
        assert second["expires_at"] is None and second["last_used_at"] is None
        for tok in (newco, second["token"]):
            assert api.ok("GET", "/v1/endpoints/" + ep["id"], tok)["id"] == \
                ep["id"]
        tokens = api.ok("GET", "/v1/principals/newco/tokens", "ops")["tokens"]
        assert len(tokens) == 2, tokens
        for t in tokens:
            assert sorted(t) == ["created_at", "expires_at", "id",
                                 "last_used_at"], t
        api.ok("DELETE", "/v1/principals/newco/tokens/" + tokens[0]["id"],
               "ops")
        assert refused(api, newco)
        assert api.ok("GET", "/v1/endpoints/" + ep["id"],
                      second["token"])["id"] == ep["id"]
        # Its flows go on: tokens guard the API, not the data plane.
        assert echo()

        # Everything the operator and the provider can read, and every
        # error, searched for every token.
        texts = []
        for path in ("/v1/principals", "/v1/principals/newco/tokens",
                     "/v1/networks", "/v1/services", "/v1/endpoints",
                     "/metrics"):
            texts.append(str(api.call("GET", path, "ops")[1]))
        texts.append(str(api.call("GET", "/v1/principals", newco)[1]))
        texts.append(str(api.call("POST", "/v1/principals", "ops",
                                  {"name": "newco", "role": "consumer"})[1]))
        texts.append(str(api.call("DELETE", "/v1/principals/newco/tokens/"
                                  + tokens[0]["id"], "ops")[1]))
        texts.append(str(api.call("GET", "/v1/nothing", second["token"])[1]))
        events = events_of(api)
        texts.append(str(events))
        types = [e["type"] for e in events]
        assert types[:3] == ["principal_create", "token_create",
                             "network_create"], types
        assert "token_create" in types and "token_revoke" in types, types
        texts.append(api.nlbd.events())
        texts.append(api.nlbd.stderr())
        texts.append("\n".join(api.nlbd.access()))
        with open(os.path.join(api.dir, "registry.db"), "rb") as f:
            texts.append(f.read().decode("latin-1"))
        wal = os.path.join(api.dir, "registry.db-wal")
        if os.path.exists(wal):
            with open(wal, "rb") as f:
                texts.append(f.read().decode("latin-1"))
        everything = "\n".join(texts)
        assert "principal_create" in everything  # the search sees events
        for tok in made_tokens:
            assert tok not in everything, "a token leaked"
            # Nor its secret part alone.
            assert tok[4:] not in everything, "a token leaked"


def events_of(api):
    """Every event so far, as the operator sees them (a stream read until
    it has been quiet for a moment)."""
    stream = EventStream(api, "ops", after=0)
    out = []
    try:
        while True:
            try:
                out.append(stream.next(timeout=1))
            except AssertionError:
                break
    finally:
        stream.close()
    return out


def test_rotation_revocation_and_expiry():
    """On one node: a revoked token is refused and the event stream it
    opened ends at once; an expired one is refused from its expiry."""
    with ApiServer() as api:
        tok, tok_id = make_principal(api, "rot", "consumer")
        second = api.ok("POST", "/v1/principals/rot/tokens", "ops",
                        {}, status=201)["token"]
        stream = EventStream(api, tok)
        other = EventStream(api, second)  # both streams are open
        api.ok("DELETE", "/v1/principals/rot/tokens/" + tok_id, "ops")
        # From the answer on (the DELETE's own time is curl's start-up);
        # the stream first, so that the refused request's curl, slow on a
        # loaded machine, is not counted in the second.
        start = time.monotonic()
        stream.ended(timeout=1)
        assert time.monotonic() - start < 1.0, time.monotonic() - start
        assert refused(api, tok)
        # The other token's stream is untouched.
        assert other.proc.poll() is None
        other.close()
        assert not refused(api, second)
        api.error("DELETE", "/v1/principals/rot/tokens/" + tok_id, "ops",
                  status=404, code="NotFound")

        # 2 to 3 s away (whole seconds): two curl runs on a loaded machine
        # come first.
        soon = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                             time.gmtime(time.time() + 3))
        short = api.ok("POST", "/v1/principals/rot/tokens", "ops",
                       {"expires_at": soon}, status=201)
        assert short["expires_at"] == soon.replace("Z", ".000Z"), short
        assert not refused(api, short["token"])
        stream = EventStream(api, short["token"])
        nlbtest.wait_until(lambda: refused(api, short["token"]), timeout=5,
                           interval=0.1, what="the token to expire")
        stream.ended(timeout=3)  # the sweep closes what it opened
        # last_used_at is recorded (about once a minute, and at revocation
        # sweeps); the list never shows a token.
        listed = api.ok("GET", "/v1/principals/rot/tokens", "ops")
        assert "nlb_" not in str(listed), listed


def test_revocation_on_every_node():
    """Two nodes on one PostgreSQL: a principal made on node 1 works on
    node 2; a token revoked on node 1 is refused on both within a second,
    and the stream it had open on node 2 ends."""
    import clustertest
    with clustertest.Cluster(2) as c:
        made = c.api(1, "POST", "/v1/principals", "ops",
                     {"name": "roamer", "role": "consumer"})
        tok, tok_id = made["token"], made["token_id"]
        clustertest.wait(lambda: c.call(2, "GET", "/v1/endpoints", tok)[0]
                         == 200, timeout=2, what="the token on node 2")
        second = c.api(2, "POST", "/v1/principals/roamer/tokens", "ops",
                       {})["token"]
        # Node 1 knows it once it has read the change feed (node 2, which
        # made it, answered after applying it).
        clustertest.wait(lambda: c.call(1, "GET", "/v1/endpoints", second)[0]
                         == 200, timeout=2, what="the second token on node 1")
        for node in (1, 2):
            for t in (tok, second):
                assert c.call(node, "GET", "/v1/endpoints", t)[0] == 200
        # An event stream on node 2, opened with the first token.
        s = socket.create_connection(("127.0.0.1", c.api_ports[2]),
                                     timeout=5)
        s.sendall(("GET /v1/events HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer %s\r\n\r\n" % tok).encode())
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head
        start = time.monotonic()
        c.api(1, "DELETE", "/v1/principals/roamer/tokens/" + tok_id, "ops")
        refused_at = {}
        while len(refused_at) < 2 and time.monotonic() - start < 2:
            for node in (1, 2):
                if node in refused_at:
                    continue
                try:
                    status = c.call(node, "GET", "/v1/endpoints", tok)[0]
                except ConnectionError:
                    # A request that raced the revocation: its connection
                    # was closed with the token's other connections.
                    continue
                if status == 401:
                    refused_at[node] = time.monotonic() - start
            time.sleep(0.01)
        assert sorted(refused_at) == [1, 2], refused_at
        assert max(refused_at.values()) < 1.0, refused_at
        s.settimeout(1.0)
        data = b""
        while True:
            chunk = s.recv(65536)  # raises on timeout: the stream stayed
            if not chunk:
                break
            data += chunk
        s.close()
        assert time.monotonic() - start < 1.5
        for node in (1, 2):
            assert c.call(node, "GET", "/v1/endpoints", second)[0] == 200
        print("revocation refused on n1 after %.3f s, n2 after %.3f s" % (
            refused_at[1], refused_at[2]))


def test_api_network_on_every_node():
    """A network made through the API is served by every node in the
    namespace of its name on that node's host, or in the one the node's
    node.networks maps it to; GET /v1/nodes shows each node's mapping."""
    import clustertest
    own = clustertest.Cluster.netns(2)
    with clustertest.Cluster(2, node_extra={
            2: 'networks = ( { name = "vpc-api"; netns = "%s"; } );' % own
    }) as c:
        c.api(1, "POST", "/v1/networks", "ops",
              {"name": "vpc-api", "range": "127.91.0.0/29",
               "netns": clustertest.Cluster.netns(1)})
        c.api(2, "POST", "/v1/services", "payments",
              {"name": "pay", "load_balancer": "lb",
               "acceptance_required": False, "allowed_principals": ["*"]})
        ep = c.api(1, "POST", "/v1/endpoints", "shop",
                   {"service": "pay", "network": "vpc-api"})
        assert ep["address"] == "127.91.0.1", ep
        for node in (1, 2):
            clustertest.wait(lambda: c.echo_in(node, ep["address"]),
                             timeout=5, what="the endpoint on n%d" % node)
        nodes = {n["name"]: n for n in
                 c.api(1, "GET", "/v1/nodes", "ops")["nodes"]}
        assert nodes["n1"]["networks"] == [], nodes
        assert nodes["n2"]["networks"] == [{"network": "vpc-api",
                                            "netns": own}], nodes

        def placed():
            placements = c.api(2, "GET", "/v1/endpoints/" + ep["id"],
                               "shop")["placements"]
            return sorted((p["node"], p["state"]) for p in placements) == [
                ("n1", "open"), ("n2", "open")]
        clustertest.wait(placed, timeout=5, what="both placements open")


def test_route_errors():
    with ApiServer() as api:
        body = {"name": "acme", "role": "consumer"}
        # Roles that may not call it; no token.
        for who in ("payments", "shop"):
            api.error("POST", "/v1/principals", who, body, status=403,
                      code="Forbidden")
            api.error("GET", "/v1/principals", who, status=403,
                      code="Forbidden")
            api.error("POST", "/v1/networks", who,
                      {"name": "n", "range": "10.0.0.0/24"}, status=403,
                      code="Forbidden")
            api.error("DELETE", "/v1/principals/shop/tokens/tok-1", who,
                      status=403, code="Forbidden")
        api.error("POST", "/v1/principals", None, body, status=401)
        # Bad bodies.
        api.error("POST", "/v1/principals", "ops",
                  {"name": "acme", "role": "root"}, status=400,
                  code="InvalidValue", field="role")
        api.error("POST", "/v1/principals", "ops",
                  {"name": "a b", "role": "consumer"}, status=400,
                  code="InvalidValue", field="name")
        api.error("POST", "/v1/principals", "ops", {"name": "acme"},
                  status=400, code="InvalidValue", field="role")
        api.error("POST", "/v1/principals", "ops",
                  dict(body, extra=1), status=400, code="UnknownField")
        # Names taken, by the API or the config.
        make_principal(api, "acme", "consumer")
        api.error("POST", "/v1/principals", "ops", body, status=409,
                  code="AlreadyExists")
        api.error("POST", "/v1/principals", "ops",
                  {"name": "shop", "role": "consumer"}, status=409,
                  code="AlreadyExists")
        # The config's principals are read-only here.
        api.error("DELETE", "/v1/principals/shop", "ops", status=409,
                  code="InvalidState", field="config")
        api.error("POST", "/v1/principals/shop/tokens", "ops", {},
                  status=409, code="InvalidState")
        # Unknown principals and tokens.
        api.error("DELETE", "/v1/principals/ghost", "ops", status=404,
                  code="NotFound")
        api.error("POST", "/v1/principals/ghost/tokens", "ops", {},
                  status=404, code="NotFound")
        api.error("GET", "/v1/principals/ghost/tokens", "ops", status=404,
                  code="NotFound")
        api.error("DELETE", "/v1/principals/acme/tokens/tok-0", "ops",
                  status=404, code="NotFound")
        api.error("POST", "/v1/principals/acme/tokens", "ops",
                  {"expires_at": "tomorrow"}, status=400,
                  code="InvalidValue", field="expires_at")
        api.error("POST", "/v1/principals/acme/tokens", "ops",
                  {"expires_at": "2001-01-01T00:00:00Z"}, status=400,
                  code="InvalidValue", field="expires_at")
        # The list: config and API principals, never a token or a hash.
        listed = api.ok("GET", "/v1/principals", "ops")["principals"]
        by_name = {p["name"]: p for p in listed}
        assert by_name["shop"] == {"name": "shop", "role": "consumer",
                                   "source": "config"}, by_name["shop"]
        assert by_name["acme"]["source"] == "api"
        assert sorted(by_name["acme"]) == ["created_at", "name", "role",
                                           "source"]
        assert [p["name"] for p in listed] == sorted(by_name)
        page = api.ok("GET", "/v1/principals?limit=2", "ops")
        assert len(page["principals"]) == 2 and page["next_token"]
        # A principal that owns a service may not go; once it is gone its
        # token is refused and its name is free.
        prov, _ = make_principal(api, "newprov", "provider")
        svc = api.ok("POST", "/v1/services", prov,
                     {"name": "newsvc", "load_balancer": "search-lb"},
                     status=201)
        assert svc["owner"] == "newprov"
        api.error("DELETE", "/v1/principals/newprov", "ops", status=409,
                  code="InvalidState")
        api.ok("DELETE", "/v1/services/" + svc["id"], prov)
        api.ok("DELETE", "/v1/principals/newprov", "ops")
        assert refused(api, prov)
        make_principal(api, "newprov", "consumer")

        # Networks.
        net = {"name": "vpc1", "range": "127.80.0.0/30"}
        api.ok("POST", "/v1/networks", "ops", net, status=201)
        api.error("POST", "/v1/networks", "ops", net, status=409,
                  code="AlreadyExists")
        api.error("POST", "/v1/networks", "ops",
                  {"name": "host", "range": "127.81.0.0/30"}, status=409,
                  code="AlreadyExists")
        api.error("POST", "/v1/networks", "ops",
                  {"name": "vpc2", "range": "127.81.0.1/30"}, status=400,
                  code="InvalidValue")
        api.error("POST", "/v1/networks", "ops",
                  {"name": "vpc2", "range": "127.81.0.0/30",
                   "netns": "../x"}, status=400, code="InvalidValue")
        api.error("DELETE", "/v1/networks/host", "ops", status=409,
                  code="InvalidState")
        api.error("DELETE", "/v1/networks/ghost", "ops", status=404,
                  code="NotFound")
        sources = {n["name"]: n["source"] for n in
                   api.ok("GET", "/v1/networks", "ops")["networks"]}
        assert sources == {"host": "config", "shop-vpc": "config",
                           "vpc1": "api"}, sources
        search = api.ok("POST", "/v1/services", "search",
                        {"name": "search", "load_balancer": "search-lb",
                         "acceptance_required": False,
                         "allowed_principals": ["*"]}, status=201)
        ep = api.ok("POST", "/v1/endpoints", "blog",
                    {"service": "search", "network": "vpc1"}, status=201)
        assert ep["address"] == "127.80.0.1", ep
        api.error("DELETE", "/v1/networks/vpc1", "ops", status=409,
                  code="InvalidState")
        api.ok("DELETE", "/v1/endpoints/" + ep["id"], "blog")
        api.ok("DELETE", "/v1/networks/vpc1", "ops")
        api.error("POST", "/v1/endpoints", "blog",
                  {"service": "search", "network": "vpc1"}, status=400,
                  code="InvalidValue")
        assert search["id"]


def test_service_quota():
    with NlbdApi(registry_extra='service_quota = 2;') as api:
        for name in ("a", "b"):
            api.ok("POST", "/v1/services", "payments",
                   {"name": name, "load_balancer": "payments-lb"},
                   status=201)
        api.error("POST", "/v1/services", "payments",
                  {"name": "c", "load_balancer": "payments-lb"},
                  status=409, code="LimitExceeded", field="service_quota")
        # Another provider has its own quota.
        api.ok("POST", "/v1/services", "search",
               {"name": "c", "load_balancer": "payments-lb"}, status=201)


if __name__ == "__main__":
    nlbtest.run([
        test_onboarding_without_config_edit,
        test_rotation_revocation_and_expiry,
        test_revocation_on_every_node,
        test_api_network_on_every_node,
        test_route_errors,
        test_service_quota,
    ])
