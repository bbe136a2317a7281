#!/usr/bin/env python3
"""End to end: nlbctl against a real nlbd. Every resource and verb, the
exit statuses (0 done, 1 API error, 2 usage), -o json that parses and is
the API's own answer, services and endpoints by name or ID, the token's
sources (file, environment, config file) and that it never shows: not in
/proc/PID/cmdline, not in any output. Then help at every level, TLS, the
event stream followed across a reload, and the bash completion."""

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nlbtest  # noqa: E402
from apitest import NlbdApi, token  # noqa: E402
from nlbtest import TOP_BUILDDIR, TOP_SRCDIR, Skip, wait_until  # noqa: E402

NLBCTL = os.path.join(TOP_BUILDDIR, "nlbctl")
COMPLETION = os.path.join(TOP_SRCDIR, "contrib", "bash-completion", "nlbctl")
MAN_PAGE = os.path.join(TOP_SRCDIR, "man", "nlbctl.1")

# Every output nlbctl gave in this run: no token may be in any of them.
OUTPUTS = []

# What ASan, LSan and UBSan print (a --enable-sanitizers build).
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:")


def need_nlbctl():
    if not os.path.exists(NLBCTL):
        raise Skip("%s is not built" % NLBCTL)


class Ctl:
    """Runs nlbctl against one API with a clean environment (no NLB_*
    variables, a config directory of its own)."""

    def __init__(self, api=None):
        self.api = api
        self.dir = tempfile.mkdtemp(prefix="nlbctl-test-")
        atexit.register(shutil.rmtree, self.dir, True)  # even on failure
        self.config_home = os.path.join(self.dir, "config")
        os.makedirs(os.path.join(self.config_home, "nlb"))

    def env(self, who=None, extra=None):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("NLB_")}
        env["XDG_CONFIG_HOME"] = self.config_home
        env["HOME"] = self.dir
        if self.api is not None:
            env["NLB_API"] = self.api.base
        if who is not None:
            env["NLB_TOKEN"] = token(who)
        env.update(extra or {})
        return env

    def token_file(self, who, mode=0o600):
        path = os.path.join(self.dir, who + ".token")
        with open(path, "w") as f:
            f.write(token(who) + "\n")
        os.chmod(path, mode)
        return path

    def run(self, who, *args, env=None, timeout=30):
        """(status, stdout, stderr) of nlbctl ARGS as who (None: no
        token)."""
        r = subprocess.run([NLBCTL] + list(args), env=self.env(who, env),
                           capture_output=True, text=True, timeout=timeout)
        OUTPUTS.append(r.stdout + r.stderr)
        for bad in SANITIZER_MARKS:
            assert bad not in r.stderr, r.stderr
        return r.returncode, r.stdout, r.stderr

    def ok(self, who, *args, **kw):
        status, out, err = self.run(who, *args, **kw)
        assert status == 0, "nlbctl %s as %s: %d\n%s%s" % (
            " ".join(args), who, status, out, err)
        return out

    def json(self, who, *args, **kw):
        out = self.ok(who, *(list(args) + ["-o", "json"]), **kw)
        assert out.count("\n") == 1 and out.endswith("\n"), out
        return json.loads(out)

    def fails(self, who, *args, status=1, match=None, **kw):
        got, out, err = self.run(who, *args, **kw)
        assert got == status, "nlbctl %s: want %d, got %d\n%s%s" % (
            " ".join(args), status, got, out, err)
        if match is not None:
            assert re.search(match, err, re.M), "%r not in:\n%s" % (match,
                                                                    err)
        return err

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def table(out):
    """A table's rows as dicts by header."""
    lines = [l for l in out.splitlines() if l.strip()]
    headers = lines[0].split()
    rows = []
    for line in lines[1:]:
        cells = re.split(r"\s{3,}", line.strip())
        rows.append(dict(zip(headers, cells)))
    return rows


def fields(out):
    """A shown object's "key: value" lines as a dict."""
    result = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        result[key] = value.strip()
    return result


def assert_no_token_anywhere(api=None):
    for name in ("ops", "payments", "search", "shop", "blog", "stranger"):
        for text in OUTPUTS:
            assert token(name) not in text, "%s shown:\n%s" % (name, text)
        if api is not None:
            assert token(name) not in api.log()


# ---- the stories ---------------------------------------------------------


def test_provider_consumer_story():
    """A provider publishes, a consumer connects, the provider accepts and
    rejects, everything by name where a name works."""
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        assert ctl.ok("payments", "services", "list") == ""
        out = ctl.ok("payments", "services", "create", "payments-api",
                     "--load-balancer", "payments-lb", "--allow", "shop",
                     "--allow", "blog,stranger")
        svc = fields(out)
        assert svc["name"] == "payments-api" and svc["state"] == "available"
        assert svc["acceptance_required"] == "true", svc
        assert svc["allowed_principals"] == "blog,shop,stranger", svc
        sid = svc["id"]
        assert re.fullmatch(r"svc-[0-9a-f]{17}", sid)
        rows = table(ctl.ok("payments", "services", "list"))
        assert [(r["ID"], r["NAME"], r["ACCEPTANCE"]) for r in rows] == [
            (sid, "payments-api", "required")], rows
        # By name and by ID, the same service, the API's JSON as it is.
        by_name = ctl.json("payments", "services", "get", "payments-api")
        assert by_name == ctl.json("payments", "services", "get", sid)
        assert by_name == api.ok("GET", "/v1/services/" + sid, "payments")

        # The consumer sees it and connects: by positional service name,
        # and with --service.
        avail = table(ctl.ok("shop", "available-services"))
        assert [(r["NAME"], r["OWNER"]) for r in avail] == [
            ("payments-api", "payments")], avail
        assert ctl.ok("shop", "available-services", "list") == \
            ctl.ok("shop", "available-services")
        ep = fields(ctl.ok("shop", "endpoints", "create", "payments-api",
                           "--network", "host", "--allow-source",
                           "127.0.0.1,127.0.0.2"))
        assert ep["state"] == "pendingAcceptance", ep
        assert ep["allowed_sources"] == "127.0.0.1/32,127.0.0.2/32", ep
        epid = ep["id"]
        # One live endpoint: the service's name stands for it.
        assert fields(ctl.ok("shop", "endpoints", "get",
                             "payments-api"))["id"] == epid
        assert fields(ctl.ok("shop", "endpoints", "get", sid))["id"] == epid
        other = ctl.json("shop", "endpoints", "create", "--service",
                         "payments-api", "--network", "shop-vpc")
        assert other["network"] == "shop-vpc"
        err = ctl.fails("shop", "endpoints", "get", "payments-api", status=2,
                        match="2 live endpoints")
        assert epid in err and other["id"] in err, err
        ctl.fails("blog", "endpoints", "get", "payments-api", status=1,
                  match="no endpoint")
        rows = table(ctl.ok("shop", "endpoints", "list"))
        assert sorted(r["ID"] for r in rows) == sorted([epid, other["id"]])
        assert {r["ID"]: r["SOURCES"] for r in rows}[other["id"]] == "any"

        # The provider sees both pending, accepts one by ID, the other by
        # its consumer's name.
        pending = table(ctl.ok("payments", "connections", "list",
                               "payments-api", "--state",
                               "pendingAcceptance"))
        assert sorted(r["ENDPOINT"] for r in pending) == sorted(
            [epid, other["id"]]), pending
        assert ctl.ok("payments", "connections", "accept", "payments-api",
                      epid) == "%s accepted\n" % epid
        assert ctl.ok("payments", "connections", "accept", sid, "--consumer",
                      "shop") == "%s accepted\n" % other["id"]
        assert ctl.json("shop", "endpoints", "get",
                        epid)["state"] == "available"
        ctl.fails("payments", "connections", "accept", "payments-api",
                  "--consumer", "blog", match="blog has no pending")
        # A batch with a failure: the good one is done, the bad one printed
        # as an API error, exit 1.
        status, out, err = ctl.run("payments", "connections", "reject",
                                   "payments-api", other["id"],
                                   "ep-00000000000000000")
        assert status == 1, (status, out, err)
        assert out == "%s rejected\n" % other["id"], out
        assert err == "ep-00000000000000000: 404 NotFound: no such " \
            "endpoint on this service: ep-00000000000000000\n", err
        got = ctl.run("payments", "connections", "accept", "payments-api",
                      other["id"], "-o", "json")
        assert got[0] == 1 and json.loads(got[1])["unsuccessful"][0][
            "error"]["code"] == "InvalidState", got
        assert "409 InvalidState: " in got[2], got

        # The consumer narrows the sources of its one live endpoint (by
        # service name), then lets everyone in again.
        changed = ctl.json("shop", "endpoints", "update", "payments-api",
                           "--allow-source", "127.0.0.0/8")
        assert changed["id"] == epid
        assert changed["allowed_sources"] == ["127.0.0.0/8"], changed
        assert ctl.json("shop", "endpoints", "update", epid,
                        "--any-source")["allowed_sources"] == []
        # Private DNS: the consumer opts in and out (this nlbd has no DNS
        # zone: no names); the provider has no granted domain: 403.
        changed = ctl.json("shop", "endpoints", "update", epid,
                           "--private-dns")
        assert changed["private_dns"] is True, changed
        assert changed["dns_names"] == [], changed
        assert fields(ctl.ok("shop", "endpoints", "update", epid,
                             "--no-private-dns"))["private_dns"] == "false"
        ctl.fails("payments", "services", "update", "payments-api",
                  "--private-dns-name", "api.payments.example",
                  match=r"^403 Forbidden: .*private_dns_name")
        assert ctl.json("payments", "services", "update", "payments-api",
                        "--no-private-dns-name")["private_dns_name"] == ""

        # Permissions.
        assert [r["ALLOWED-PRINCIPAL"] for r in table(ctl.ok(
            "payments", "permissions", "get", "payments-api"))] == [
                "blog", "shop", "stranger"]
        assert ctl.json("payments", "permissions", "remove", "payments-api",
                        "stranger", "blog") == {"allowed_principals": ["shop"]}
        assert ctl.json("payments", "permissions", "add", sid,
                        "blog") == {"allowed_principals": ["blog", "shop"]}
        out = ctl.ok("payments", "permissions", "remove", "payments-api",
                     "shop", "--reject-endpoints")
        assert out.split() == ["ALLOWED-PRINCIPAL", "blog"], out
        assert ctl.json("shop", "endpoints", "get", epid)["state"] == \
            "rejected"

        # The provider changes the service.
        updated = ctl.json("payments", "services", "update", "payments-api",
                           "--no-acceptance", "--connection-limit", "3")
        assert updated["acceptance_required"] is False
        assert updated["connection_limit"] == 3

        # Delete: a service with live endpoints cannot go (409, exit 1).
        live = ctl.json("blog", "endpoints", "create", "payments-api",
                        "--network", "host")
        assert live["state"] == "available"
        ctl.fails("payments", "services", "delete", "payments-api",
                  match=r"^409 InvalidState: ")
        gone = ctl.json("blog", "endpoints", "delete", "payments-api")
        assert gone["id"] == live["id"] and gone["state"] == "deleted"
        out = ctl.ok("payments", "services", "delete", "payments-api")
        assert fields(out)["state"] == "deleted", out
        ctl.fails("payments", "services", "get", "payments-api",
                  match=r"^404 NotFound: ")

        # The events of it all, as the provider sees them.
        out = ctl.ok("payments", "events")
        rows = table(out)
        types = [r["TYPE"] for r in rows]
        assert types[:2] == ["connect", "connect"], out
        assert "accept" in types and "reject" in types, out
        lines = ctl.ok("ops", "events", "-o", "json").splitlines()
        events = [json.loads(l) for l in lines]
        assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
        after = events[2]["seq"]
        later = [json.loads(l) for l in ctl.ok(
            "ops", "events", "--after", str(after), "-o",
            "json").splitlines()]
        assert later == events[3:], (later, events)
        ctl.close()
        assert_no_token_anywhere(api)


def test_operator_target_groups_targets_nodes():
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        rows = table(ctl.ok("ops", "target-groups", "list"))
        assert [r["TARGET-GROUP"] for r in rows] == ["payments-tg"], rows
        assert rows[0]["ADDRESS"] == "127.0.0.1:%d" % api.backend.port
        added = fields(ctl.ok("ops", "targets", "add", "payments-tg",
                              "127.0.0.1:1", "--weight", "7"))
        assert added["weight"] == "7" and added["state"] == "initial", added
        ctl.fails("ops", "targets", "add", "payments-tg", "127.0.0.1:1",
                  match=r"^409 AlreadyExists: ")
        group = ctl.json("ops", "target-groups", "get", "payments-tg")
        assert [t["address"] for t in group["targets"]] == [
            "127.0.0.1:%d" % api.backend.port, "127.0.0.1:1"], group
        # Health checks may move a state between the two reads.
        def shape(g):
            return [(t["address"], t["weight"]) for t in g["targets"]]
        assert shape(group) == shape(api.ok(
            "GET", "/v1/target-groups/payments-tg", "ops"))
        assert len(table(ctl.ok("ops", "target-groups", "get",
                                "payments-tg"))) == 2
        # An address that needs escaping in the path.
        ctl.ok("ops", "targets", "add", "payments-tg", "[::1]:2")
        removed = ctl.json("ops", "targets", "remove", "payments-tg",
                           "[::1]:2")
        assert removed["state"] == "draining", removed
        ctl.fails("ops", "target-groups", "get", "nope",
                  match=r"^404 NotFound: ")
        ctl.fails("payments", "target-groups", "list",
                  match=r"^403 Forbidden: ")
        ctl.fails("ops", "targets", "add", "payments-tg", "x", "--weight",
                  "1001", status=2)
        # The API takes weights 1..1000 (0 is the config's alone): nlbctl
        # says so before asking.
        ctl.fails("ops", "targets", "add", "payments-tg", "127.0.0.1:3",
                  "--weight", "0", status=2,
                  match=r'--weight: "0" is not a number 1\.\.1000')
        # Nodes: the routes of a clustered nlbd; an nlbd without them
        # answers 404, an API error like any other.
        status, out, err = ctl.run("ops", "nodes", "list", "-o", "json")
        if status == 0:
            nodes = json.loads(out)["nodes"]
            assert nodes, out
            name = nodes[0]["name"]
            ctl.ok("ops", "nodes", "list")
            ctl.ok("ops", "nodes", "drain", name)
        else:
            assert status == 1 and err.startswith("404 NotFound: "), err
            ctl.fails("ops", "nodes", "drain", "n1", match=r"^404 ")
        ctl.close()
        assert_no_token_anywhere(api)


def test_json_is_the_apis_answer():
    """-o json prints what the API answered, one document per command."""
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        ctl.ok("payments", "services", "create", "a", "--load-balancer",
               "payments-lb", "--allow", "shop")
        ctl.ok("payments", "services", "create", "b", "--load-balancer",
               "search-lb", "--no-acceptance")
        ctl.ok("shop", "endpoints", "create", "a", "--network", "host")
        sid = ctl.json("payments", "services", "get", "a")["id"]
        # The target's first check lands somewhere in its first second:
        # compare once it is judged, not across the change.
        wait_until(lambda: all(
            t["state"] == "healthy"
            for g in api.ok("GET", "/v1/target-groups", "ops")["target_groups"]
            for t in g["targets"]), what="the targets healthy")
        for who, args, path in [
                ("payments", ["services", "list"], "/v1/services"),
                ("payments", ["connections", "list", "a"],
                 "/v1/services/%s/connections" % sid),
                ("payments", ["permissions", "get", "a"],
                 "/v1/services/%s/permissions" % sid),
                ("shop", ["available-services"], "/v1/available-services"),
                ("shop", ["endpoints", "list"], "/v1/endpoints"),
                ("shop", ["endpoints", "list", "--state", "available"],
                 "/v1/endpoints?state=available"),
                ("ops", ["target-groups", "list"], "/v1/target-groups")]:
            got = ctl.json(who, *args)
            assert got == api.ok("GET", path, who), (args, got)
        ctl.fails("shop", "endpoints", "list", "--state", "bogus",
                  match=r"^400 InvalidValue: state")
        ctl.close()


def test_pagination_is_followed():
    """Lists read every page (?limit=&next_token=) and merge them."""
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        names = ["pg-%d" % i for i in range(5)]
        for name in names:
            ctl.ok("payments", "services", "create", name,
                   "--load-balancer", "payments-lb")
        whole = ctl.json("payments", "services", "list")
        assert [s["name"] for s in whole["services"]] == names
        # Pages of two: three requests, merged into the whole list.
        out = ctl.ok("payments", "services", "list", "--page-size", "2",
                     "-o", "json")
        assert json.loads(out) == whole, out
        rows = table(ctl.ok("payments", "services", "list",
                            "--page-size", "2"))
        assert [r["NAME"] for r in rows] == names
        ctl.fails("payments", "services", "list", "--page-size", "0",
                  status=2, match=r'--page-size: "0" is not a number '
                                  r'1\.\.1000')
        ctl.close()


# ---- errors, usage, settings ---------------------------------------------


def test_exit_statuses_and_error_lines():
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        err = ctl.fails(None, "services", "list",
                        match=r"^401 Unauthorized: ")
        assert "no token was given" in err
        ctl.fails("shop", "services", "create", "x", "--load-balancer",
                  "payments-lb", match=r"^403 Forbidden: ")
        ctl.fails("payments", "services", "get", "nope",
                  match=r"^404 NotFound: ")
        ctl.fails("payments", "services", "create", "x", "--load-balancer",
                  "nope", match=r"^400 InvalidValue: ")
        ctl.ok("payments", "services", "create", "x", "--load-balancer",
               "payments-lb")
        ctl.fails("payments", "services", "create", "x", "--load-balancer",
                  "payments-lb", match=r"^409 AlreadyExists: ")
        # A wrong token: 401 again, and the token is not in the message.
        ctl.fails(None, "services", "list", env={"NLB_TOKEN": "wrong-secret"},
                  match=r"^401 Unauthorized: ")
        assert "wrong-secret" not in OUTPUTS[-1]
        # Usage: exit 2, the usage of that level on stderr.
        for args, where in [
                ([], "RESOURCE VERB"),
                (["bogus"], "RESOURCE VERB"),
                (["services"], "nlbctl services VERB"),
                (["services", "bogus"], "nlbctl services VERB"),
                (["services", "get"], "nlbctl services get SERVICE"),
                (["services", "get", "a", "b"], "nlbctl services get"),
                (["services", "create", "x"], "--load-balancer"),
                (["services", "list", "--bogus"], "nlbctl services list"),
                (["services", "list", "-o", "yaml"], "nlbctl services list"),
                (["services", "update", "x"], "nothing to change"),
                (["services", "update", "x", "--acceptance",
                  "--no-acceptance"], "contradict"),
                (["services", "create", "x", "--load-balancer", "l",
                  "--connection-limit", "-1"], "connection-limit"),
                (["endpoints", "create", "--network", "host"], "--service"),
                (["endpoints", "create", "a"], "--network"),
                (["endpoints", "update", "x"], "--any-source"),
                (["endpoints", "update", "x", "--private-dns",
                  "--no-private-dns"], "contradict"),
                (["services", "update", "x", "--private-dns-name", "a.b",
                  "--no-private-dns-name"], "contradict"),
                (["connections", "accept", "x"], "--consumer"),
                (["permissions", "add", "x"], "PRINCIPAL"),
                (["events", "--after", "x"], "--after"),
                (["events", "extra"], "nlbctl events"),
                (["services", "list", "--api"], "needs a value"),
                (["services", "list", "--timeout", "soon"], "--timeout"),
                (["services", "list", "--verbose=yes"], "takes no value")]:
            err = ctl.fails("ops", *args, status=2)
            assert err.startswith("nlbctl: "), (args, err)
            assert where in err, (args, where, err)
            assert "Usage: nlbctl" in err, (args, err)
        # Nothing listens: a clear message, exit 1.
        port = nlbtest.free_port()
        err = ctl.fails("ops", "services", "list", "--api",
                        "http://127.0.0.1:%d" % port,
                        match="cannot reach the API at http://127.0.0.1:%d"
                        % port)
        ctl.fails("ops", "services", "list", "--api", "ftp://x", status=2,
                  match="http:// or https://")
        # Not an nlb API (HTTP/1.1 only): an error, not a hang.
        server = nlbtest.Server(nlbtest.http_handler(200, b"hello\n"))
        ctl.fails("ops", "services", "list", "--timeout", "5", "--api",
                  "http://127.0.0.1:%d" % server.port)
        server.stop()
        ctl.close()
        assert_no_token_anywhere(api)


def test_help_at_every_level():
    need_nlbctl()
    ctl = Ctl()
    out = ctl.ok(None, "--help")
    assert out.startswith("Usage: nlbctl "), out
    resources = re.findall(r"^  ([a-z-]+)  ", out.split("Resources:")[1]
                           .split("Options")[0], re.M)
    assert resources == ["services", "permissions", "connections",
                         "available-services", "endpoints", "target-groups",
                         "targets", "events", "nodes", "principals", "tokens",
                         "networks"], resources
    assert ctl.ok(None, "help") == out
    commands = 0
    for resource in resources:
        text = ctl.ok(None, resource, "--help")
        assert "Usage: nlbctl %s" % resource in text, text
        verbs = re.findall(r"^  ([a-z]+)  ", text.split("Verbs:")[1], re.M) \
            if "Verbs:" in text else [None]
        for verb in verbs:
            args = [resource] + ([verb] if verb else [])
            text = ctl.ok(None, *(args + ["--help"]))
            assert text.startswith("Usage: nlbctl %s" % " ".join(args)), text
            assert ctl.ok(None, *(args + ["-h"])) == text
            assert ctl.ok(None, "help", *args) == text
            # Every verb is in the man page.
            with open(MAN_PAGE) as f:
                man = f.read()
            assert " ".join(args) in man.replace("\\-", "-").replace(
                "\\fB", "").replace("\\fR", "").replace("\\fI", ""), args
            for line in text.splitlines():
                assert len(line) < 80, (args, line)
            commands += 1
    assert commands == 33, commands
    assert re.fullmatch(r"nlbctl \d+\.\d+\.\d+\n", ctl.ok(None, "--version"))
    ctl.close()


def test_token_sources_and_cmdline():
    """The token comes from a file, the environment or the config file,
    and is in no process's command line."""
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        ctl.ok("payments", "services", "create", "s", "--load-balancer",
               "payments-lb", "--allow", "shop")
        path = ctl.token_file("payments")
        assert ctl.ok(None, "--token-file", path, "services", "list")
        ctl.fails(None, "services", "list", "--token-file", path + ".nope",
                  status=2, match="token file")
        ctl.ok(None, "services", "list",
               env={"NLB_TOKEN_FILE": ctl.token_file("payments")})
        # --token-file wins over NLB_TOKEN.
        assert ctl.json("shop", "--token-file", path, "services",
                        "list")["services"]
        empty = os.path.join(ctl.dir, "empty")
        open(empty, "w").close()
        ctl.fails(None, "services", "list", "--token-file", empty, status=2,
                  match="empty")

        def cmdline_of_follower(who, extra_args, env):
            proc = subprocess.Popen(
                [NLBCTL] + extra_args + ["events", "--follow"],
                env=ctl.env(who, env), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
            try:
                # It is connected when the API counts its stream.
                time.sleep(0.5)
                assert proc.poll() is None, proc.communicate()
                with open("/proc/%d/cmdline" % proc.pid, "rb") as f:
                    return f.read().split(b"\0")
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=10)

        args = cmdline_of_follower(None, ["--token-file", path], None)
        assert path.encode() in args, args
        assert not any(token("payments").encode() in a for a in args), args
        args = cmdline_of_follower("payments", [], None)
        assert not any(token("payments").encode() in a for a in args), args

        # The config file: api and token_file (relative to the file).
        conf = os.path.join(ctl.config_home, "nlb", "nlbctl.conf")
        shutil.copy(path, os.path.join(ctl.config_home, "nlb", "p.token"))
        with open(conf, "w") as f:
            f.write("# nlbctl settings\napi = %s\n\ntoken_file = p.token\n" %
                    api.base)
        env = ctl.env(None)
        del env["NLB_API"]
        r = subprocess.run([NLBCTL, "services", "list"], env=env,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "s" in r.stdout, r
        # NLB_API and --api win over the file.
        r = subprocess.run([NLBCTL, "services", "list"], env=dict(
            env, NLB_API="http://127.0.0.1:%d" % nlbtest.free_port()),
            capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "cannot reach" in r.stderr, r
        # A token in a file others can read is refused, as ssh does.
        with open(conf, "w") as f:
            f.write('api = "%s"\ntoken = %s\n' % (api.base, token("payments")))
        os.chmod(conf, 0o644)
        r = subprocess.run([NLBCTL, "services", "list"], env=env,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "chmod 600" in r.stderr, r
        assert token("payments") not in r.stderr + r.stdout
        os.chmod(conf, 0o600)
        r = subprocess.run([NLBCTL, "services", "list", "-v"], env=env,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r
        assert "> GET %s/v1/services" % api.base in r.stderr, r.stderr
        assert "< 200" in r.stderr, r.stderr
        OUTPUTS.append(r.stdout + r.stderr)
        with open(conf, "w") as f:
            f.write("api = %s\nbogus = 1\n" % api.base)
        r = subprocess.run([NLBCTL, "services", "list"], env=env,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and conf + ":2: unknown key" in r.stderr, r
        ctl.close()
        assert_no_token_anywhere(api)


def test_events_follow_across_a_reload():
    """--follow prints events as they happen (table and JSON lines), and
    goes on from the last one when nlbd ends the stream on SIGHUP."""
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        ctl.ok("payments", "services", "create", "s", "--load-balancer",
               "payments-lb", "--allow", "shop")
        followers = []
        for fmt in ("table", "json"):
            proc = subprocess.Popen(
                # After 0: every event, none missed while connecting.
                [NLBCTL, "events", "--follow", "--after", "0", "-o", fmt],
                env=ctl.env("ops"), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
                # As from a terminal: a suite started in the background
                # by a non-interactive shell ignores SIGINT, and an
                # ignored signal stays ignored across exec.
                preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                 signal.SIG_DFL))
            followers.append(proc)
        lines = {p.pid: [] for p in followers}

        def reader(proc):
            for line in proc.stdout:
                lines[proc.pid].append(line)

        threads = [threading.Thread(target=reader, args=(p,), daemon=True)
                   for p in followers]
        for t in threads:
            t.start()
        first = ctl.json("shop", "endpoints", "create", "s", "--network",
                         "host")
        table_proc, json_proc = followers
        wait_until(lambda: len(lines[json_proc.pid]) >= 1, timeout=10,
                   what="the first event")
        wait_until(lambda: len(lines[table_proc.pid]) >= 2, timeout=10,
                   what="the first event row")
        event = json.loads(lines[json_proc.pid][0])
        assert event["type"] == "connect" and \
            event["endpoint_id"] == first["id"], event
        assert lines[table_proc.pid][0].split() == [
            "SEQ", "TIME", "TYPE", "STATE", "SERVICE", "ENDPOINT",
            "PRINCIPAL"], lines[table_proc.pid]
        row = lines[table_proc.pid][1].split()
        assert row[0] == str(event["seq"]) and row[2] == "connect", row
        # A reload ends every stream; the followers reconnect.
        api.nlbd.reload()
        time.sleep(2)
        ctl.ok("payments", "connections", "accept", "s", first["id"])
        wait_until(lambda: len(lines[json_proc.pid]) >= 2, timeout=10,
                   what="the event after the reload")
        wait_until(lambda: len(lines[table_proc.pid]) >= 3, timeout=10,
                   what="the event row after the reload")
        after = json.loads(lines[json_proc.pid][1])
        assert after["type"] == "accept" and after["seq"] > event["seq"]
        assert len(lines[json_proc.pid]) == 2, lines[json_proc.pid]
        for proc in followers:
            assert proc.poll() is None
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
        for t in threads:
            t.join(5)
        ctl.close()


def test_tls():
    need_nlbctl()
    with NlbdApi(tls=True) as api:
        ctl = Ctl(api)
        cert = os.path.join(api.dir, "cert.pem")
        ctl.fails("ops", "services", "list", match="certificate")
        assert ctl.ok("ops", "services", "list", "--insecure") == ""
        ctl.ok("ops", "services", "list", "--cacert", cert, "--api",
               "https://localhost:%d" % api.port)
        ctl.close()


def test_bash_completion():
    if shutil.which("bash") is None:
        raise Skip("bash is not installed")
    need_nlbctl()

    def complete(line):
        words = line.split(" ")
        script = (
            'source "%s"\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\nCOMP_LINE="%s"\n'
            'COMP_POINT=${#COMP_LINE}\n_nlbctl nlbctl "${COMP_WORDS[-1]}" '
            '"${COMP_WORDS[-2]}"\nprintf "%%s\\n" "${COMPREPLY[@]}"\n' % (
                COMPLETION, " ".join('"%s"' % w for w in words),
                len(words) - 1, line))
        r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script],
                           capture_output=True, text=True, timeout=10,
                           env=dict(os.environ, PATH=TOP_BUILDDIR + ":" +
                                    os.environ.get("PATH", "")))
        assert r.returncode == 0, r
        return sorted(w for w in r.stdout.split("\n") if w)

    assert complete("nlbctl ser") == ["services"]
    assert "available-services" in complete("nlbctl ")
    assert complete("nlbctl services ") == ["create", "delete", "get",
                                            "list", "update"]
    assert complete("nlbctl connections a") == ["accept"]
    assert "--load-balancer" in complete("nlbctl services create --")
    assert "--no-private-dns" in complete("nlbctl endpoints update --")
    assert complete("nlbctl services update --private-dns-name x") == []
    assert "--state" in complete("nlbctl endpoints list --")
    assert complete("nlbctl endpoints list --state p") == [
        "pendingAcceptance"]
    assert complete("nlbctl -o j") == ["json"]
    assert "--follow" in complete("nlbctl events --")


def test_principals_tokens_networks():
    """The operator onboards a consumer with nlbctl alone: a principal, its
    network, a second token, the first revoked; the new consumer uses
    nlbctl with its token; no token the API made shows anywhere but the
    one answer that made it."""
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        status, out, err = ctl.run("ops", "principals", "create", "shop-b",
                                   "--role", "consumer")
        assert status == 0, err
        made = fields(out)
        assert made["name"] == "shop-b" and made["source"] == "api", made
        first = made["token"]
        assert re.match(r"^nlb_[A-Za-z0-9_-]{43}$", first), made
        assert "never shows it again" in err, err
        OUTPUTS.pop()  # the one output that may carry it
        rows = table(ctl.ok("ops", "principals", "list"))
        assert {r["NAME"]: r["SOURCE"] for r in rows}["shop-b"] == "api"
        assert {r["NAME"]: r["SOURCE"] for r in rows}["shop"] == "config"
        ctl.fails("ops", "principals", "create", "shop-b", "--role",
                  "consumer", match=r"^409 AlreadyExists: ")
        ctl.fails("ops", "principals", "create", "x", status=2,
                  match="--role is required")
        ctl.fails("payments", "principals", "list",
                  match=r"^403 Forbidden: ")
        ctl.fails("ops", "principals", "delete", "shop",
                  match=r"^409 InvalidState: ")

        net = ctl.json("ops", "networks", "create", "shop-b-net", "--range",
                       "127.79.1.0/29", "--allow", "shop-b")
        assert net["principals"] == ["shop-b"] and net["netns"] is None, net
        assert "shop-b-net" in [r["NAME"] for r in
                                table(ctl.ok("ops", "networks", "list"))]
        ctl.ok("payments", "services", "create", "pay", "--load-balancer",
               "payments-lb", "--allow", "shop-b", "--no-acceptance")
        ep = ctl.json(first, "endpoints", "create", "--service", "pay",
                      "--network", "shop-b-net")
        assert ep["state"] == "available" and \
            ep["address"] == "127.79.1.1", ep
        ctl.fails("ops", "networks", "delete", "shop-b-net",
                  match=r"^409 InvalidState: ")

        second = ctl.json("ops", "tokens", "create", "shop-b",
                          "--expires-in", "90d")
        OUTPUTS.pop()
        assert second["expires_at"] is not None, second
        listed = table(ctl.ok("ops", "tokens", "list", "shop-b"))
        assert len(listed) == 2, listed
        ctl.fails("ops", "tokens", "create", "shop-b", "--expires-in",
                  "soon", status=2, match="is not a duration")
        ctl.ok("ops", "tokens", "revoke", "shop-b", listed[0]["ID"])
        ctl.fails(first, "endpoints", "list", match=r"^401 Unauthorized")
        assert ctl.json(second["token"], "endpoints", "list")["endpoints"]
        ctl.ok(second["token"], "endpoints", "delete", ep["id"])
        ctl.ok("ops", "networks", "delete", "shop-b-net")
        ctl.close()
        for tok in (first, second["token"]):
            for text in OUTPUTS:
                assert tok not in text, text
            assert tok not in api.log()


if __name__ == "__main__":
    nlbtest.run([
        test_provider_consumer_story,
        test_operator_target_groups_targets_nodes,
        test_principals_tokens_networks,
        test_json_is_the_apis_answer,
        test_pagination_is_followed,
        test_exit_statuses_and_error_lines,
        test_help_at_every_level,
        test_token_sources_and_cmdline,
        test_events_follow_across_a_reload,
        test_tls,
        test_bash_completion,
    ], timeout=120)
