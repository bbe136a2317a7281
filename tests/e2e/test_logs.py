"""End-to-end tests of the event log's formats: JSON lines that parse one
by one with the event's fields as keys, the "<N>" syslog priority on
stderr under journald (or when asked), and access and event lines sharing
stderr without ever mixing within a line; and docs/logs.md's table of
events against the events the code emits."""

import hashlib
import json
import os
import re
import socket
import subprocess
import threading

from nlbtest import (NLBD, TOP_SRCDIR, Nlbd, Server, _track, echo_handler,
                     free_port, http_handler, run, wait_until)

OPS_TOKEN = "ops-token"


def group(backends, extra=""):
    targets = ", ".join('{ address = "%s"; }' % b.address for b in backends)
    return """target_groups = (
  { name = "tg"; algorithm = "round_robin"; deregistration_delay = "1s";
    health_check = { protocol = "http"; path = "/"; interval = "1s";
                     timeout = "1s"; healthy_threshold = 1;
                     unhealthy_threshold = 1; };
    targets = ( %s ); }
);
%s""" % (targets, extra)


def listener(port):
    return """load_balancers = (
  { name = "lb"; listeners = ( { port = %d; target_group = "tg";
                                 bind = "127.0.0.1"; } ); }
);
""" % port


class StderrNlbd(Nlbd):
    """An nlbd whose event log is its stderr."""

    def events(self):
        return self._read(os.path.join(self.dir, "stderr.log"))


def json_lines(text):
    """Every line parsed; fails on the first that is not one JSON object."""
    objects = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError("line %d is not JSON: %r" % (n, line))
        assert isinstance(obj, dict), "line %d: %r" % (n, line)
        objects.append(obj)
    return objects


def call_api(port, method, path, body=None):
    args = ["curl", "-s", "--http2-prior-knowledge", "-X", method,
            "-H", "Authorization: Bearer " + OPS_TOKEN, "-o", "/dev/null",
            "-w", "%{http_code}", "--max-time", "10"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d",
                 json.dumps(body)]
    r = subprocess.run(args + ["http://127.0.0.1:%d%s" % (port, path)],
                       capture_output=True, timeout=15)
    return int(r.stdout or 0)


def test_events_json_one_object_a_line():
    """Events as JSON: each line parses, carries time, level, event and the
    message, and the fields of each kind of event are keys."""
    healthy = Server(http_handler())
    sick = Server(http_handler(status=503))
    spare = Server(http_handler())
    port, api = free_port(), free_port()
    d = Nlbd("", workers=1)
    registry = os.path.join(d.dir, "registry.db")
    api_cfg = """node = { name = "logs-node"; };
api = { listen = "127.0.0.1:%d"; };
registry = { path = "%s"; };
principals = ( { name = "ops"; role = "operator"; token_sha256 = "%s"; } );
""" % (api, registry, hashlib.sha256(OPS_TOKEN.encode()).hexdigest())
    d.write_config('log = { access = "%s"; events = "%s"; '
                   'events_format = "json"; level = "debug"; };\n'
                   % (d.access_path, d.events_path)
                   + api_cfg + group([healthy, sick]) + listener(port))
    with d:
        d.start(wait_port=port)
        wait_until(lambda: '"to":"unhealthy"' in d.events(),
                   what="the 503 target unhealthy")
        assert call_api(api, "POST", "/v1/target-groups/tg/targets",
                        {"address": spare.address, "weight": 1}) == 201
        wait_until(lambda: '"event":"api_request"' in d.events(),
                   what="the audit record")
        d.reload(expect='"event":"reload"')
    events = json_lines(d.events())
    assert events, "no events"
    for e in events:
        for key in ("time", "level", "event", "message"):
            assert key in e, e
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                            e["time"]), e
        assert e["level"] in ("debug", "info", "warn", "error"), e
        assert re.fullmatch(r"[a-z][a-z0-9_]*", e["event"]), e
    by_event = {}
    for e in events:
        by_event.setdefault(e["event"], []).append(e)
    for name in ("start", "registry_open", "listener_open",
                 "target_registered", "target_state", "api_request", "reload",
                 "stop"):
        assert name in by_event, "no %s event in %s" % (name, sorted(by_event))
    start = by_event["start"][0]
    registry_open = by_event["registry_open"][0]
    assert (registry_open["store"], registry_open["node"],
            registry_open["endpoints"]) == ("sqlite", "logs-node", 0), \
        registry_open
    assert registry_open["message"] == (
        "registry: sqlite store, node logs-node, 0 endpoints open"), \
        registry_open
    assert start["workers"] == 1 and start["config"] == d.config_path, start
    opened = by_event["listener_open"][0]
    assert opened["lb"] == "lb" and opened["port"] == port, opened
    unhealthy = [e for e in by_event["target_state"]
                 if e["target"] == sick.address and e["to"] == "unhealthy"]
    assert unhealthy, by_event["target_state"]
    assert unhealthy[0]["level"] == "warn", unhealthy[0]
    assert unhealthy[0]["target_group"] == "tg", unhealthy[0]
    assert unhealthy[0]["from"] in ("initial", "healthy"), unhealthy[0]
    assert "503" in unhealthy[0]["reason"], unhealthy[0]
    assert unhealthy[0]["message"] == (
        "target tg/%s state %s -> unhealthy (%s)" % (
            sick.address, unhealthy[0]["from"], unhealthy[0]["reason"]))
    audit = by_event["api_request"][0]
    assert (audit["principal"], audit["role"], audit["method"],
            audit["status"]) == ("ops", "operator", "POST", 201), audit
    assert audit["path"] == "/v1/target-groups/tg/targets", audit
    api_registered = [e for e in by_event["target_registered"]
                      if e["target"] == spare.address]
    assert api_registered and api_registered[0]["by"] == "api", \
        by_event["target_registered"]
    assert by_event["reload"][-1]["success"] is True, by_event["reload"]
    for s in (healthy, sick, spare):
        s.stop()


def emitted_events():
    """The event names the C sources pass to NLB_LOG_EVENT or nlb_log_emit,
    by name: the files that emit each."""
    names = {}
    for folder in ("nlb", "api", "registry"):
        top = os.path.join(TOP_SRCDIR, folder)
        for name in sorted(os.listdir(top)):
            if not name.endswith(".c"):
                continue
            with open(os.path.join(top, name)) as f:
                text = f.read()
            for m in re.finditer(r'\b(?:NLB_LOG_EVENT|nlb_log_emit)\(\s*'
                                 r'[^,;]+,\s*"([a-z0-9_]+)"', text):
                names.setdefault(m.group(1), set()).add(folder + "/" + name)
    return names


def documented_events():
    with open(os.path.join(TOP_SRCDIR, "docs", "logs.md")) as f:
        text = f.read()
    table = text[text.index("\n### Events\n"):]
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", table, re.M))


def test_every_event_is_documented():
    """docs/logs.md's table of events names exactly the events the code
    emits: log pipelines match on them, so a row without an emitter (it
    listed registry_open while the line went out nameless) is as wrong as
    an event without a row."""
    emitted = emitted_events()
    documented = documented_events()
    assert len(emitted) > 40 and len(documented) > 40, (emitted, documented)
    missing = sorted(set(emitted) - documented)
    assert not missing, "emitted but not in docs/logs.md: %s" % [
        (n, sorted(emitted[n])) for n in missing]
    stale = sorted(documented - set(emitted))
    assert not stale, "in docs/logs.md but never emitted: %s" % stale


def test_events_text_unchanged_by_default():
    """Without events_format the lines stay "TIME LEVEL message"."""
    backend = Server(http_handler())
    port = free_port()
    with Nlbd(group([backend]) + listener(port), workers=1) as d:
        d.start(wait_port=port)
        wait_until(lambda: "state initial -> healthy" in d.events(),
                   what="the target healthy")
        for line in d.events().splitlines():
            assert re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z (debug|info|warn|error)"
                            r" \S", line), line
        assert re.search(r" info target tg/%s state initial -> healthy "
                         r"\(status 200\)" % re.escape(backend.address),
                         d.events()), d.events()
    backend.stop()


def stderr_identity(path):
    st = os.stat(path)
    return "%d:%d" % (st.st_dev, st.st_ino)


def priority_run(log_extra, env_for):
    """Starts nlbd with events on stderr; returns its stderr text after a
    warn-level event (a target turning unhealthy) and a stop."""
    sick = Server(http_handler(status=503))
    port = free_port()
    d = StderrNlbd("", workers=1)
    d.write_config('log = { access = "off"; events = "stderr"; %s };\n'
                   % log_extra + group([sick]) + listener(port))
    with d:
        # The identity is of a file created beforehand, as systemd's
        # socket is.
        open(os.path.join(d.dir, "stderr.log"), "w").close()
        d.extra_env = env_for(os.path.join(d.dir, "stderr.log"))
        start_with_existing_stderr(d)
        wait_until(lambda: "-> unhealthy" in d.events(),
                   what="the target unhealthy")
    sick.stop()
    return d.events()


def start_with_existing_stderr(d):
    """Nlbd.start, but onto the stderr file already created (so its inode
    is the one JOURNAL_STREAM names)."""
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    env.update(d.extra_env)
    d.stderr_path = os.path.join(d.dir, "stderr.log")
    d.proc = subprocess.Popen([NLBD, "-c", d.config_path],
                              stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL,
                              stderr=open(d.stderr_path, "a"), env=env)
    _track(d)
    wait_until(lambda: "started" in d.events() or d.proc.poll() is not None,
               what="nlbd to start")
    assert d.proc.poll() is None, d.events()


def test_priority_prefix_under_journald():
    """JOURNAL_STREAM naming stderr turns the "<N>" prefix on (6 info, 4
    warn); one naming something else does not; priority_prefix forces it
    either way."""
    journal = priority_run("", lambda p: {"JOURNAL_STREAM":
                                          stderr_identity(p)})
    lines = journal.splitlines()
    assert lines and all(re.match(r"<[3-7]>\d{4}-", l) for l in lines), lines
    assert any(l.startswith("<6>") and " info " in l and "started" in l
               for l in lines), lines
    assert any(l.startswith("<4>") and " warn " in l and "-> unhealthy" in l
               for l in lines), lines

    other = priority_run("", lambda p: {"JOURNAL_STREAM": "1:1"})
    assert not re.search(r"^<\d>", other, re.M), other

    forced = priority_run('events_format = "json"; priority_prefix = true;',
                          lambda p: {})
    for line in forced.splitlines():
        m = re.match(r"<(\d)>(\{.*\})$", line)
        assert m, line
        obj = json.loads(m.group(2))
        assert int(m.group(1)) == {"info": 6, "warn": 4, "error": 3,
                                   "debug": 7}[obj["level"]], line

    off = priority_run("priority_prefix = false;",
                       lambda p: {"JOURNAL_STREAM": stderr_identity(p)})
    assert not re.search(r"^<\d>", off, re.M), off


def test_access_and_events_share_stderr_line_by_line():
    """Access and event lines both on stderr, both JSON, written while
    flows close on two workers and reloads log events: every line is one
    whole JSON object and every flow has its line."""
    backend = Server(echo_handler)
    port = free_port()
    d = StderrNlbd("", workers=2)
    d.write_config('log = { access = "stderr"; access_format = "json"; '
                   'events = "stderr"; events_format = "json"; '
                   'level = "debug"; };\n' + group([backend]).replace(
                       'protocol = "http"; path = "/";', 'protocol = "tcp";')
                   + listener(port))
    flows = 1000
    with d:
        d.start(wait_port=port)
        errors = []

        def client(n):
            try:
                for _ in range(n):
                    with socket.create_connection(("127.0.0.1", port),
                                                  timeout=5) as s:
                        s.sendall(b"x" * 700)
                        got = b""
                        while len(got) < 700:
                            chunk = s.recv(4096)
                            if not chunk:
                                break
                            got += chunk
            except OSError as e:
                errors.append(e)

        threads = [threading.Thread(target=client, args=(flows // 4,))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for _ in range(5):
            d.reload(expect='"event":"reload"')
        for t in threads:
            t.join(60)
        assert not errors, errors
        # One more flow (the wait_port probe made one already).
        wait_until(lambda: sum('"end":' in l for l in
                               d.events().splitlines()) >= flows + 1,
                   timeout=15, what="an access line per flow")
    objects = json_lines(d.events())
    access = [o for o in objects if "end" in o]
    events = [o for o in objects if "event" in o]
    assert len(access) == flows + 1, len(access)
    assert len(access) + len(events) == len(objects), objects
    assert sum(e["event"] == "reload" for e in events) >= 5, events
    backend.stop()


if __name__ == "__main__":
    if not os.path.exists(NLBD):
        print("SKIP: %s is not built" % NLBD)
        raise SystemExit(77)
    run([test_every_event_is_documented,
         test_events_json_one_object_a_line,
         test_events_text_unchanged_by_default,
         test_priority_prefix_under_journald,
         test_access_and_events_share_stderr_line_by_line])
