#!/usr/bin/env python3
"""End to end, the cluster control plane: three nlbd nodes share one
registry in PostgreSQL (clustertest.Cluster: a server of the test's own,
each node with its own API port and its own namespace for the consumer
network).

- A service created on node 1, an endpoint created on node 2 and accepted
  on node 3 is open on all three; each node reports its placement.
- Node 3's event log holds what nodes 1 and 2 committed, in order, without
  gaps or duplicates, and a stream opened before gets them live.
- Races between two nodes: exactly one wins every time.
- PostgreSQL stopped for 10 s under traffic: no flow fails, writes get
  503, /healthz says degraded (503) on every node until that node has
  reconnected, and afterwards every node has every change made before.
- kill -9 of a node leaves the others alone; GET /v1/nodes says it is down.

Needs root, network namespaces and PostgreSQL; says SKIP otherwise."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clustertest import ApiError, Cluster, wait  # noqa: E402
from nlbtest import run  # noqa: E402


def make_service(c, node=1, name="payments", acceptance=True, limit=0,
                 allowed=("shop", "shop2")):
    return c.api(node, "POST", "/v1/services", "payments", {
        "name": name, "load_balancer": "lb",
        "acceptance_required": acceptance, "connection_limit": limit,
        "allowed_principals": list(allowed)}, status=201)


def make_endpoint(c, node, service="payments", who="shop", address=None):
    body = {"service": service, "network": "shop-vpc"}
    if address:
        body["address"] = address
    return c.api(node, "POST", "/v1/endpoints", who, body, status=201)


def accept(c, node, sid, *ids):
    return c.api(node, "POST", "/v1/services/%s/connections/accept" % sid,
                 "payments", {"endpoint_ids": list(ids)})


def test_three_nodes_share_the_registry():
    with Cluster(3) as c:
        stream = {}

        def follow():
            stream["events"] = c.events(3, after=0, quiet=4, limit=2)
        live = threading.Thread(target=follow)
        live.start()
        time.sleep(0.5)  # the stream is open before the changes
        svc = make_service(c, node=1)
        ep = make_endpoint(c, 2)
        assert ep["state"] == "pendingAcceptance", ep
        assert accept(c, 3, svc["id"], ep["id"]) == {"unsuccessful": []}
        for i in (1, 2, 3):
            wait(lambda: c.echo_in(i, ep["address"]), timeout=5,
                 what="the endpoint open on node %d" % i)
        got = wait(lambda: (lambda e: e if len(e["placements"]) == 3 and
                            all(p["state"] == "open"
                                for p in e["placements"]) else None)(
            c.api(1, "GET", "/v1/endpoints/" + ep["id"], "shop")),
            timeout=5, what="three open placements")
        assert [p["node"] for p in got["placements"]] == ["n1", "n2", "n3"]
        # Node 3 lists what nodes 1 and 2 committed.
        events = c.events(3, after=0)
        assert [(e["seq"], e["type"]) for e in events] == [
            (1, "connect"), (2, "accept")], events
        assert events[0]["principal"] == "shop"
        assert events[1]["principal"] == "payments"
        live.join()
        assert [e["seq"] for e in stream["events"]] == [1, 2], stream
        nodes = c.api(2, "GET", "/v1/nodes", "ops")["nodes"]
        assert [(n["name"], n["state"]) for n in nodes] == [
            ("n1", "up"), ("n2", "up"), ("n3", "up")], nodes
        assert all(n["applied_seq"] >= 0 and n["version"] for n in nodes)
        # A reject on node 1 closes the endpoint on every node.
        c.api(1, "POST", "/v1/services/%s/connections/reject" % svc["id"],
              "payments", {"endpoint_ids": [ep["id"]]})
        for i in (1, 2, 3):
            wait(lambda: not c.listening_in(i, ep["address"]), timeout=5,
                 what="the endpoint closed on node %d" % i)


def race(c, fn_a, fn_b):
    """Runs fn_a on node 1 and fn_b on node 2 at the same moment."""
    results = [None, None]
    barrier = threading.Barrier(2)

    def one(k, fn):
        barrier.wait()
        results[k] = fn()
    threads = [threading.Thread(target=one, args=(0, fn_a)),
               threading.Thread(target=one, args=(1, fn_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_races_have_one_winner():
    with Cluster(2) as c:
        limited = make_service(c, name="limited", acceptance=False, limit=1)
        open_svc = make_service(c, name="open", acceptance=True)
        for _ in range(100):
            # Two creates against connection_limit = 1.
            a, b = race(c, lambda: c.call(1, "POST", "/v1/endpoints", "shop",
                                          {"service": "limited",
                                           "network": "shop-vpc"}),
                        lambda: c.call(2, "POST", "/v1/endpoints", "shop",
                                       {"service": "limited",
                                        "network": "shop-vpc"}))
            codes = sorted([a[0], b[0]])
            assert codes == [201, 409], (a, b)
            loser = a if a[0] == 409 else b
            assert loser[1]["error"]["code"] == "LimitExceeded", loser
            winner = a if a[0] == 201 else b
            c.api(1, "DELETE", "/v1/endpoints/" + winner[1]["id"], "shop")
            # Two consumers on the same explicit address.
            a, b = race(c, lambda: c.call(1, "POST", "/v1/endpoints", "shop",
                                          {"service": "open",
                                           "network": "shop-vpc",
                                           "address": "127.90.0.200"}),
                        lambda: c.call(2, "POST", "/v1/endpoints", "shop2",
                                       {"service": "open",
                                        "network": "shop-vpc",
                                        "address": "127.90.0.200"}))
            assert sorted([a[0], b[0]]) == [201, 409], (a, b)
            loser = a if a[0] == 409 else b
            assert loser[1]["error"]["code"] == "AddressInUse", loser
            winner = a if a[0] == 201 else b
            # Two nodes accepting the same endpoint.
            sid, eid = open_svc["id"], winner[1]["id"]
            path = "/v1/services/%s/connections/accept" % sid
            a, b = race(c, lambda: c.call(1, "POST", path, "payments",
                                          {"endpoint_ids": [eid]}),
                        lambda: c.call(2, "POST", path, "payments",
                                       {"endpoint_ids": [eid]}))
            failed = [r[1]["unsuccessful"] for r in (a, b)]
            assert a[0] == b[0] == 200, (a, b)
            assert sorted(len(f) for f in failed) == [0, 1], failed
            assert [f for f in failed if f][0][0]["error"]["code"] == \
                "InvalidState"
            who = winner[1]["consumer"]
            c.api(2, "DELETE", "/v1/endpoints/" + eid, who)
        # Exactly one accept event per race.
        events = c.events(1, after=0, quiet=1)
        assert [e["seq"] for e in events] == list(
            range(1, len(events) + 1)), "gap or duplicate"
        assert sum(e["type"] == "accept" for e in events) == 100


def test_store_outage_keeps_flows_and_loses_nothing():
    with Cluster(3) as c:
        svc = make_service(c, acceptance=False)
        before = [make_endpoint(c, i) for i in (1, 2, 3)]
        for ep in before:
            for i in (1, 2, 3):
                wait(lambda: c.echo_in(i, ep["address"]), timeout=5,
                     what="%s open on node %d" % (ep["id"], i))
        failures, flows = [], [0]
        stop = threading.Event()

        def traffic():
            while not stop.is_set():
                for i in (1, 2, 3):
                    for ep in before:
                        if not c.echo_in(i, ep["address"]):
                            failures.append((i, ep["address"]))
                        flows[0] += 1
        for i in (1, 2, 3):
            assert c.health(i) == (200, {"status": "ok", "store": "ok"})
        t = threading.Thread(target=traffic)
        t.start()
        time.sleep(0.5)  # traffic before the outage, not a synchronisation
        c.pg.stop("immediate")
        stopped = time.monotonic()
        # Each node sees it at its next try (a heartbeat a second).
        for i in (1, 2, 3):
            assert c.wait_health(i, 503, timeout=5) == {
                "status": "degraded", "store": "unavailable"}
        status, body = c.call(2, "POST", "/v1/endpoints", "shop",
                              {"service": "payments", "network": "shop-vpc"})
        assert status == 503, (status, body)
        assert body["error"]["code"] == "StoreUnavailable", body
        status, body = c.call(1, "GET", "/v1/services", "payments")
        assert status == 503, (status, body)
        while time.monotonic() - stopped < 10:  # the outage lasts 10 s
            time.sleep(0.2)
        c.pg.start()
        time.sleep(1)  # traffic while the nodes reconnect
        stop.set()
        t.join()
        assert not failures, "%d of %d flows failed: %s" % (
            len(failures), flows[0], failures[:5])
        assert flows[0] > 100, flows
        # Back: each node says so once it has reconnected (with backoff,
        # up to 5 s after the store came back; the sanitizer run once read
        # node 1 before it had); writes work, every node has everything,
        # and a change made now reaches every node.
        for i in (1, 2, 3):
            assert c.wait_health(i, 200, timeout=15) == {
                "status": "ok", "store": "ok"}
        after = wait(lambda: (lambda r: r[1] if r[0] == 201 else None)(
            c.call(3, "POST", "/v1/endpoints", "shop",
                   {"service": "payments", "network": "shop-vpc"})),
            timeout=15, what="writes to work again")
        for i in (1, 2, 3):
            listed = c.api(i, "GET", "/v1/endpoints", "shop")["endpoints"]
            assert sorted(e["id"] for e in listed) == sorted(
                e["id"] for e in before + [after]), listed
            wait(lambda: c.echo_in(i, after["address"]), timeout=10,
                 what="the new endpoint open on node %d" % i)
        nodes = wait(lambda: (lambda n: n if all(
            x["state"] == "up" for x in n) else None)(
                c.api(1, "GET", "/v1/nodes", "ops")["nodes"]),
            timeout=10, what="every node up again")
        assert len(nodes) == 3
        assert svc["name"] == "payments"


def test_kill_one_node():
    with Cluster(3) as c:
        make_service(c, acceptance=False)
        ep = make_endpoint(c, 1)
        for i in (1, 2, 3):
            wait(lambda: c.echo_in(i, ep["address"]), timeout=5,
                 what="open on node %d" % i)
        c.kill(3)
        killed = time.monotonic()
        # The others go on: flows and the API.
        for _ in range(20):
            assert c.echo_in(1, ep["address"]) and c.echo_in(2, ep["address"])
        second = make_endpoint(c, 2)
        wait(lambda: c.echo_in(1, second["address"]), timeout=5,
             what="a new endpoint on node 1")
        down = wait(lambda: (lambda n: n if n[2]["state"] == "down" else None)(
            c.api(1, "GET", "/v1/nodes", "ops")["nodes"]), timeout=8,
            what="n3 down")
        took = time.monotonic() - killed
        assert [x["state"] for x in down] == ["up", "up", "down"], down
        assert 2.0 <= took <= 6.0, took
        # A node that comes back is up again and catches up.
        c.start(3)
        wait(lambda: c.echo_in(3, second["address"]), timeout=10,
             what="node 3 back with the endpoint made while it was down")
        try:
            c.api(1, "POST", "/v1/nodes/n9/drain", "ops")
            raise AssertionError("draining an unknown node worked")
        except ApiError as e:
            assert e.status == 404, e


if __name__ == "__main__":
    run([test_three_nodes_share_the_registry, test_races_have_one_winner,
         test_store_outage_keeps_flows_and_loses_nothing, test_kill_one_node],
        timeout=240)
