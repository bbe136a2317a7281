"""End-to-end tests of nlbd's /metrics: promtool finds nothing to say about
a live scrape; a family summed over a known number of flows counts each
flow once (listener and target series live in separate families); the
histograms, target health, build, process and reload series; and what a
provider (its own listeners only) and a consumer (nothing) may read."""

import os
import socket
import subprocess

import nlbtest
from apitest import NlbdApi, need, parse_prometheus
from nlbtest import run, wait_until


def scrape(api, who="ops"):
    code, text, headers = api.call("GET", "/metrics", who)
    assert code == 200, (code, text)
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return text


def family_sum(samples, name, **labels):
    return sum(v for (n, ls), v in samples.items() if n == name and
               all((k, val) in ls for k, val in labels.items()))


def echo_flow(port, payload=b"0123456789", host="127.0.0.1"):
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        assert got == payload, got


def flows_logged(api, count):
    """Waits until count flows have closed (their access lines written):
    counters are added when a flow ends."""
    wait_until(lambda: len(api.nlbd.access()) >= count, timeout=10,
               what="%d access lines" % count)


def test_promtool_check_metrics_on_live_scrape():
    """promtool check metrics has nothing to say about a live /metrics
    with flows, an endpoint and histograms in it."""
    need("curl", "promtool")
    with NlbdApi() as api:
        for _ in range(3):
            echo_flow(api.lb_port)
        flows_logged(api, 3)
        text = scrape(api)
        r = subprocess.run(["promtool", "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and not r.stdout.strip() and \
            not r.stderr.strip(), "promtool: %s%s\n%s" % (r.stdout, r.stderr,
                                                           text)
        samples, types = parse_prometheus(text)
        for name, kind in [("nlb_new_flows_total", "counter"),
                           ("nlb_target_new_flows_total", "counter"),
                           ("nlb_flow_duration_seconds", "histogram"),
                           ("nlb_target_connect_seconds", "histogram"),
                           ("nlb_target_health", "gauge"),
                           ("nlb_build_info", "gauge"),
                           ("process_cpu_seconds_total", "counter"),
                           ("process_resident_memory_bytes", "gauge"),
                           ("process_open_fds", "gauge"),
                           ("process_max_fds", "gauge"),
                           ("process_start_time_seconds", "gauge"),
                           ("nlb_config_last_reload_success", "gauge"),
                           ("nlb_config_last_reload_success_timestamp_seconds",
                            "gauge")]:
            assert types.get(name) == kind, (name, types.get(name))


def test_sum_of_a_family_counts_each_flow_once():
    """Five flows through one listener to one target: every listener
    family and every target family adds up to five, and no family mixes
    listener and target series."""
    need("curl")
    with NlbdApi() as api:
        before, _ = parse_prometheus(scrape(api))
        payload = b"x" * 1000
        for _ in range(5):
            echo_flow(api.lb_port, payload)
        flows_logged(api, 5)
        after, _ = parse_prometheus(scrape(api))

        def delta(name, **labels):
            return family_sum(after, name, **labels) - \
                family_sum(before, name, **labels)
        assert delta("nlb_new_flows_total") == 5
        assert delta("nlb_target_new_flows_total") == 5
        assert delta("nlb_processed_bytes_total", direction="up") == 5000
        assert delta("nlb_target_processed_bytes_total",
                     direction="down") == 5000
        assert delta("nlb_flow_duration_seconds_count") == 5
        assert delta("nlb_target_connect_seconds_count") == 5
        assert family_sum(after, "nlb_active_flows") == 0
        for (name, labels), _ in after.items():
            keys = {k for k, _ in labels}
            if name.startswith("nlb_target_") and name not in (
                    "nlb_target_resets_total",):
                assert "lb" not in keys and "target" in keys, (name, labels)
            elif name in ("nlb_new_flows_total", "nlb_active_flows",
                          "nlb_processed_bytes_total",
                          "nlb_target_resets_total",
                          "nlb_connect_failures_total"):
                assert "lb" in keys and "target" not in keys, (name, labels)
        # Histogram buckets are cumulative and end with +Inf == _count.
        for family in ("nlb_flow_duration_seconds",
                       "nlb_target_connect_seconds"):
            series = {}
            for (name, labels), value in after.items():
                if name == family + "_bucket":
                    rest = frozenset(l for l in labels if l[0] != "le")
                    le = dict(labels)["le"]
                    series.setdefault(rest, []).append((
                        float("inf") if le == "+Inf" else float(le), value))
            assert series, family
            for rest, buckets in series.items():
                buckets.sort()
                counts = [c for _, c in buckets]
                assert counts == sorted(counts), (family, buckets)
                assert buckets[-1][0] == float("inf")
                assert after[(family + "_count", rest)] == counts[-1]


def test_target_health_and_process_series():
    """nlb_target_health says 1 for the state each target is in and 0 for
    the other four; the build and process series are sane."""
    need("curl")
    with NlbdApi() as api:
        dead = nlbtest.free_port()
        api.ok("POST", "/v1/target-groups/payments-tg/targets", "ops",
               {"address": "127.0.0.1:%d" % dead, "weight": 1}, status=201)
        wait_until(lambda: 'state="unhealthy"} 1' in scrape(api), timeout=10,
                   what="the dead target unhealthy")
        samples, _ = parse_prometheus(scrape(api))
        health = {}
        for (name, labels), value in samples.items():
            if name == "nlb_target_health":
                d = dict(labels)
                health.setdefault(d["target"], {})[d["state"]] = value
        backend = "127.0.0.1:%d" % api.backend.port
        assert health[backend] == {"initial": 0, "healthy": 1, "unhealthy": 0,
                                   "draining": 0, "unused": 0}, health
        assert health["127.0.0.1:%d" % dead]["unhealthy"] == 1, health
        assert sum(health["127.0.0.1:%d" % dead].values()) == 1, health
        version = [dict(l)["version"] for (n, l) in samples
                   if n == "nlb_build_info"]
        out = subprocess.run([nlbtest.NLBD, "--version"], capture_output=True,
                             text=True).stdout.split()[-1]
        assert version == [out], (version, out)
        value = lambda name: samples[(name, frozenset())]
        import time
        assert abs(value("process_start_time_seconds") - time.time()) < 120
        assert 0 < value("process_open_fds") <= value("process_max_fds")
        assert value("process_resident_memory_bytes") > 1 << 20
        assert value("process_cpu_seconds_total") >= 0
        assert value("nlb_config_last_reload_success") == 1
        assert abs(value("nlb_config_last_reload_success_timestamp_seconds") -
                   time.time()) < 120


def test_reload_outcome_in_metrics():
    """A config that does not parse turns nlb_config_last_reload_success
    to 0 and keeps the timestamp; the next good reload sets both."""
    need("curl")
    with NlbdApi() as api:
        samples, _ = parse_prometheus(scrape(api))
        key = ("nlb_config_last_reload_success", frozenset())
        stamp = ("nlb_config_last_reload_success_timestamp_seconds",
                 frozenset())
        assert samples[key] == 1
        started = samples[stamp]
        good = open(api.nlbd.config_path).read()
        with open(api.nlbd.config_path, "a") as f:
            f.write("this is not libconfig\n")
        api.nlbd.reload(expect="reload rejected")
        samples, _ = parse_prometheus(scrape(api))
        assert samples[key] == 0 and samples[stamp] == started, samples[key]
        with open(api.nlbd.config_path, "w") as f:
            f.write(good)
        import time
        time.sleep(1.1)  # the timestamp counts seconds
        api.nlbd.reload()
        samples, _ = parse_prometheus(scrape(api))
        assert samples[key] == 1 and samples[stamp] > started, samples[stamp]


def test_provider_sees_only_its_listeners():
    """A provider reads the series of the listeners of the load balancer
    its service publishes and of that service's endpoints, and nothing
    else (no targets, no process, no API); another provider sees none of
    them; a consumer is refused."""
    need("curl")
    with NlbdApi() as api:
        sid = api.ok("POST", "/v1/services", "payments",
                     {"name": "pay", "load_balancer": "payments-lb",
                      "acceptance_required": False,
                      "allowed_principals": ["shop"]}, status=201)["id"]
        ep = api.ok("POST", "/v1/endpoints", "shop",
                    {"service": "pay", "network": "host"}, status=201)
        wait_until(lambda: nlbtest.can_connect(ep["address"], api.lb_port),
                   timeout=10, what="the endpoint to listen")
        echo_flow(api.lb_port, host=ep["address"])
        # The flows through the endpoint: the echo and the wait's probe.
        wait_until(lambda: sum(" %s " % ep["id"] in l
                               for l in api.nlbd.access()) >= 2,
                   what="the endpoint's flows logged")
        samples, types = parse_prometheus(scrape(api, "payments"))
        series = {(n, dict(l).get("lb"), dict(l).get("endpoint"))
                  for (n, l) in samples}
        assert ("nlb_new_flows_total", "payments-lb", None) in series, series
        assert ("nlb_new_flows_total", "payments-lb", ep["id"]) in series
        assert samples[("nlb_new_flows_total", frozenset({
            ("lb", "payments-lb"), ("listener", str(api.lb_port)),
            ("endpoint", ep["id"])}))] == sum(" %s " % ep["id"] in l
                                              for l in api.nlbd.access())
        assert {lb for _, lb, _ in series} <= {"payments-lb", None}, series
        for name in types:
            assert not name.startswith(("process_", "nlb_api_", "nlb_build",
                                        "nlb_target_health",
                                        "nlb_config")), name
        assert not any(n.startswith("nlb_target_") and
                       n != "nlb_target_resets_total" for n, _ in samples)
        assert all(dict(l).get("service") == "pay" for n, l in samples
                   if n == "nlb_endpoints"), samples
        other, _ = parse_prometheus(scrape(api, "search"))
        assert not any("lb" in dict(l) or "service" in dict(l)
                       for _, l in other), other
        api.error("GET", "/metrics", "shop", status=403, code="Forbidden")
        assert sid


if __name__ == "__main__":
    if not os.path.exists(nlbtest.NLBD):
        print("SKIP: %s is not built" % nlbtest.NLBD)
        raise SystemExit(77)
    run([test_promtool_check_metrics_on_live_scrape,
         test_sum_of_a_family_counts_each_flow_once,
         test_target_health_and_process_series,
         test_reload_outcome_in_metrics,
         test_provider_sees_only_its_listeners])
