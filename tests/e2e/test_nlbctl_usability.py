#!/usr/bin/env python3
"""End to end: what makes nlbctl pleasant next to kubectl or the AWS CLI,
against a real nlbd. The shell completions offer the names the API has
(bash always, zsh when it is installed); --wait returns when an endpoint
is available (another process accepts it), fails on a rejection and says
when it timed out; --watch prints a list, then each row that changes,
and Ctrl-C ends it with 0; -o yaml is the same document as -o json (also
for strings a YAML reader would take for something else); -o wide and
-o custom-columns; contexts reach two nlbd's, each its own; the
confirmation of destructive verbs (no terminal and no --yes: exit 2 and
nothing done; a terminal answering n: nothing done; y: done)."""

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nlbtest  # noqa: E402
from apitest import NlbdApi, token  # noqa: E402
from nlbtest import TOP_BUILDDIR, TOP_SRCDIR, Skip, wait_until  # noqa: E402
from test_nlbctl import (NLBCTL, SANITIZER_MARKS, Ctl, fields,  # noqa: E402
                         need_nlbctl, table)


def clean(err):
    """err, once it is known to hold no sanitizer report."""
    for bad in SANITIZER_MARKS:
        assert bad not in err, err
    return err

BASH_COMPLETION = os.path.join(TOP_SRCDIR, "contrib", "bash-completion",
                               "nlbctl")
ZSH_COMPLETION = os.path.join(TOP_SRCDIR, "contrib", "zsh-completion",
                              "_nlbctl")


def service_with_endpoint(ctl, name="web", acceptance=True):
    """A service of payments that shop may connect to, and shop's endpoint
    on it (pending when acceptance is required)."""
    ctl.ok("payments", "services", "create", name, "--load-balancer",
           "payments-lb", "--allow", "shop,blog",
           "--acceptance" if acceptance else "--no-acceptance")
    return ctl.json("shop", "endpoints", "create", name, "--network", "host")


# ---- completion ------------------------------------------------------------


def bash_complete(ctl, who, line):
    """What the bash completion offers for line (the cursor at its end),
    sorted."""
    words = line.split(" ")
    script = (
        'source "%s"\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\nCOMP_LINE="%s"\n'
        'COMP_POINT=${#COMP_LINE}\n_nlbctl nlbctl "${COMP_WORDS[-1]}" '
        '"${COMP_WORDS[-2]}"\nprintf "%%s\\n" "${COMPREPLY[@]}"\n' % (
            BASH_COMPLETION, " ".join('"%s"' % w for w in words),
            len(words) - 1, line))
    env = ctl.env(who)
    env["PATH"] = TOP_BUILDDIR + ":" + env.get("PATH", "")
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script],
                       capture_output=True, text=True, timeout=20, env=env)
    assert r.returncode == 0, r
    return sorted(w for w in r.stdout.split("\n") if w)


# zsh's completion builtins exist only inside a completion widget: these
# stand-ins print what the script offers.
ZSH_HARNESS = r'''
compadd() {
  local by_name=0
  while [[ $1 == -* ]]; do
    case $1 in
      -a) by_name=1 ;;
      -S) shift ;;
      --) shift; break ;;
    esac
    shift
  done
  if (( by_name )); then
    local name; for name in $@; do print -l -- ${(P)name}; done
  else
    print -l -- $@
  fi
}
_files() { print -- FILES }
words=(${(z)LINE})
[[ $LINE == *" " ]] && words+=("")
CURRENT=${#words}
source %s
'''


def zsh_complete(ctl, who, line):
    env = ctl.env(who)
    env["PATH"] = TOP_BUILDDIR + ":" + env.get("PATH", "")
    env["LINE"] = line
    r = subprocess.run(["zsh", "-f", "-c", ZSH_HARNESS % ZSH_COMPLETION],
                       capture_output=True, text=True, timeout=20, env=env)
    assert r.returncode in (0, 1) and r.stderr == "", r
    return sorted(w for w in r.stdout.split("\n") if w)


def completion_cases(ctl, api):
    """(who, line, what the completion must offer) against api: a service
    web with shop's pending endpoint, blog's available one on open."""
    pending = service_with_endpoint(ctl, "web")
    ctl.ok("payments", "services", "create", "open", "--load-balancer",
           "payments-lb", "--allow", "blog", "--no-acceptance")
    live = ctl.json("blog", "endpoints", "create", "open", "--network",
                    "host")
    nodes = [n["name"] for n in api.ok("GET", "/v1/nodes", "ops")["nodes"]]
    return [
        ("payments", "nlbctl services get ", ["open", "web"]),
        ("payments", "nlbctl services delete w", ["web"]),
        ("payments", "nlbctl permissions add web ",
         []),  # a provider may not list principals
        ("ops", "nlbctl permissions add web s",
         ["search", "shop", "stranger"]),
        ("payments", "nlbctl connections accept web ", [pending["id"]]),
        ("payments", "nlbctl connections reject open ", [live["id"]]),
        ("shop", "nlbctl endpoints delete ", [pending["id"]]),
        ("shop", "nlbctl endpoints get " + pending["id"][:5],
         [pending["id"]]),
        ("shop", "nlbctl endpoints create ", ["web"]),
        ("shop", "nlbctl endpoints create --service ", ["web"]),
        ("ops", "nlbctl target-groups get ", ["payments-tg"]),
        ("ops", "nlbctl targets remove payments-tg ",
         ["127.0.0.1:%d" % api.backend.port]),
        ("ops", "nlbctl nodes drain ", sorted(nodes)),
        ("ops", "nlbctl principals delete pa", ["payments"]),
        ("ops", "nlbctl --api http://127.0.0.1:%d services get "
         % nlbtest.free_port(), []),
        ("ops", "nlbctl --context ", ["lab", "prod"]),
        ("ops", "nlbctl config use-context p", ["prod"]),
        ("ops", "nlbctl -o y", ["yaml"]),
    ]


def write_contexts(ctl):
    with open(os.path.join(ctl.config_home, "nlb", "nlbctl.conf"),
              "w") as f:
        f.write("[context prod]\napi = http://127.0.0.1:1\n"
                "[context lab]\napi = http://127.0.0.1:2\n")


def test_bash_completion_offers_names():
    """`nlbctl services get <TAB>` offers the services of the API, and so
    on for every argument that names something; a dead API offers nothing,
    at once."""
    if shutil.which("bash") is None:
        raise Skip("bash is not installed")
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        cases = completion_cases(ctl, api)
        write_contexts(ctl)
        for who, line, want in cases:
            started = time.monotonic()
            got = bash_complete(ctl, who, line)
            assert got == sorted(want), (line, got, want)
            assert time.monotonic() - started < 10, line
        # The hidden command itself, and its silence.
        r = subprocess.run([NLBCTL, "__complete", "services"],
                           env=ctl.env("payments"), capture_output=True,
                           text=True, timeout=10)
        assert (r.returncode, r.stdout, r.stderr) == (0, "web\nopen\n",
                                                      ""), r
        r = subprocess.run([NLBCTL, "__complete", "services"],
                           env=ctl.env(None), capture_output=True, text=True,
                           timeout=10)
        assert r.stdout == "" and r.stderr == "", r
        assert "__complete" not in subprocess.run(
            [NLBCTL, "--help"], capture_output=True, text=True,
            timeout=10).stdout
        ctl.close()


def test_zsh_completion_offers_names():
    if shutil.which("zsh") is None:
        raise Skip("zsh is not installed")
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        cases = completion_cases(ctl, api)
        write_contexts(ctl)
        for who, line, want in cases:
            if line.endswith("-o y"):
                continue  # the stand-in compadd does not filter by prefix
            got = zsh_complete(ctl, who, line)
            # compadd filters by the word typed so far; the stand-in
            # prints everything offered.
            prefix = line.split(" ")[-1]
            got = [w for w in got if w.startswith(prefix)]
            assert got == sorted(want), (line, got, want)
        assert "delete" in zsh_complete(ctl, "ops", "nlbctl services ")
        assert "--watch" in zsh_complete(ctl, "ops", "nlbctl nodes list --")
        ctl.close()


# ---- --wait ------------------------------------------------------------------


def popen(ctl, who, *args):
    return subprocess.Popen(
        [NLBCTL] + list(args), env=ctl.env(who), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        # As from a terminal: a suite started in the background by a
        # non-interactive shell ignores SIGINT, and an ignored signal stays
        # ignored across exec.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def pending_of(api, service, consumer):
    sid = api.ok("GET", "/v1/services/" + service, "payments")["id"]
    return [c["endpoint_id"] for c in api.ok(
        "GET", "/v1/services/%s/connections?state=pendingAcceptance" % sid,
        "payments")["connections"] if c["consumer"] == consumer]


def test_wait_for_acceptance():
    """endpoints create --wait returns once the provider, another process,
    accepts; a rejection ends it with 1 and the reason; no decision ends it
    with 1 and "timed out" after the time given."""
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        ctl.ok("payments", "services", "create", "web", "--load-balancer",
               "payments-lb", "--allow", "shop")
        waiter = popen(ctl, "shop", "endpoints", "create", "web",
                       "--network", "host", "--wait=60s", "-o", "json", "-v")
        lines, looks = [], []

        def read_stderr():
            for line in waiter.stderr:
                lines.append(line)
                if line.startswith("> GET ") and "/v1/endpoints/ep-" in line:
                    looks.append(time.monotonic())

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        # It looks at once, again once the stream has begun, then 0.5, 1.5,
        # 3.5 and 7.5 s after that: after its sixth look the next is 5 s
        # away, so a return well before then is the event stream's doing.
        wait_until(lambda: len(looks) >= 6, timeout=30,
                   what="the waiter's sixth look")
        assert waiter.poll() is None, waiter.communicate()
        [epid] = pending_of(api, "web", "shop")
        accepted = time.monotonic()
        assert ctl.ok("payments", "connections", "accept", "web", epid,
                      "--wait") == "%s accepted\n%s available\n" % (epid,
                                                                    epid)
        out, _ = waiter.communicate(timeout=30)
        returned = time.monotonic()
        reader.join(5)
        err = clean("".join(lines))
        assert waiter.returncode == 0, (out, err)
        shown = json.loads(out)
        assert shown["id"] == epid and shown["state"] == "available", out
        print("returned %.2f s after the accept started, %.2f s after the "
              "sixth look" % (returned - accepted, returned - looks[5]))
        assert returned - looks[5] < 4, err

        # Rejected while it waits: 1, and why.
        waiter = popen(ctl, "shop", "endpoints", "create", "web",
                       "--network", "host", "--wait")
        wait_until(lambda: pending_of(api, "web", "shop"), timeout=10,
                   what="the second pending endpoint")
        [second] = pending_of(api, "web", "shop")
        ctl.ok("payments", "connections", "reject", "web", second)
        out, err = waiter.communicate(timeout=30)
        clean(err)
        assert waiter.returncode == 1, (out, err)
        assert "nlbctl: %s is rejected: rejected by provider, not " \
            "available\n" % second in err, err
        assert fields(out)["state"] == "rejected", out

        # Nobody decides: a distinct message after the time given.
        started = time.monotonic()
        status, out, err = ctl.run("shop", "endpoints", "create", "web",
                                   "--network", "host", "--wait=2s")
        took = time.monotonic() - started
        assert status == 1, (status, out, err)
        third = fields(out)["id"]
        assert fields(out)["state"] == "pendingAcceptance", out
        assert err == "nlbctl: timed out after 2s waiting for %s to be " \
            "available (%s is pendingAcceptance)\n" % (third, third), err
        assert 2 <= took < 10, took

        # Deletes: the endpoint deleted, the service gone.
        assert ctl.ok("shop", "endpoints", "delete", epid, third, "--yes",
                      "--wait=30s") == "%s deleted\n%s deleted\n" % (epid,
                                                                    third)
        for ep in (epid, third):
            assert api.ok("GET", "/v1/endpoints/" + ep,
                          "shop")["state"] == "deleted"
        ctl.ok("payments", "services", "delete", "web", "--yes",
               "--wait=30s")
        api.error("GET", "/v1/services/web", "payments", status=404)
        ctl.fails("payments", "services", "delete", "x", "--wait=never",
                  status=2, match="--wait")
        ctl.close()


def test_wait_for_a_failure():
    """An accepted endpoint whose network namespace does not exist fails:
    accept --wait and create --wait say so and exit 1."""
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        ctl.ok("ops", "networks", "create", "nowhere", "--range",
               "127.79.2.0/29", "--netns", "nlbctl-none-%d" % os.getpid())
        ctl.ok("payments", "services", "create", "web", "--load-balancer",
               "payments-lb", "--allow", "shop")
        waiter = popen(ctl, "shop", "endpoints", "create", "web",
                       "--network", "nowhere", "--wait=60s")
        wait_until(lambda: pending_of(api, "web", "shop"), timeout=10,
                   what="the pending endpoint")
        [epid] = pending_of(api, "web", "shop")
        status, out, err = ctl.run("payments", "connections", "accept", "web",
                                   epid, "--wait=30s")
        assert status == 1 and out == "%s accepted\n" % epid, (out, err)
        assert err == "nlbctl: %s is failed, not available\n" % epid, err
        out, err = waiter.communicate(timeout=30)
        clean(err)
        assert waiter.returncode == 1, (out, err)
        assert re.search(r"^nlbctl: %s is failed: .*does not exist.*, not "
                         r"available$" % epid, err, re.M), err
        ctl.close()


# ---- --watch -------------------------------------------------------------------


class Lines:
    """A process's standard output, line by line, read in a thread."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate, what):
        wait_until(lambda: any(predicate(l) for l in self.lines),
                   timeout=10, what=what)

    def stop(self):
        assert self.proc.poll() is None, (self.lines,
                                          self.proc.stderr.read())
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
        self.thread.join(5)
        clean(self.proc.stderr.read())
        return self.proc.returncode


def test_watch():
    """endpoints list --watch prints the table, then the rows that change
    as they change (a new endpoint, its acceptance); -o json prints the
    items a line each; SIGINT exits 0. services list --watch sees a new
    service, which makes no event, within its 2 s poll."""
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        first = service_with_endpoint(ctl, "web")
        table_watch = Lines(popen(ctl, "shop", "endpoints", "list",
                                  "--watch"))
        json_watch = Lines(popen(ctl, "shop", "endpoints", "list", "-w",
                                 "-o", "json"))
        services_watch = Lines(popen(ctl, "payments", "services", "list",
                                     "--watch", "-o", "wide"))
        table_watch.wait_for(lambda l: first["id"] in l, "the first row")
        json_watch.wait_for(lambda l: first["id"] in l, "the first item")
        services_watch.wait_for(lambda l: l.split()[1:2] == ["web"],
                                "the first service")
        assert table_watch.lines[0].split()[:3] == ["ID", "SERVICE",
                                                    "CONSUMER"]
        assert len(table_watch.lines) == 2, table_watch.lines
        assert "CREATED" in services_watch.lines[0], services_watch.lines

        second = ctl.json("shop", "endpoints", "create", "web", "--network",
                          "host")
        table_watch.wait_for(lambda l: second["id"] in l, "the new row")
        json_watch.wait_for(lambda l: second["id"] in l, "the new item")
        ctl.ok("payments", "connections", "accept", "web", second["id"])
        table_watch.wait_for(
            lambda l: second["id"] in l and " available " in l,
            "the accepted row")
        json_watch.wait_for(
            lambda l: second["id"] in l and '"available"' in l,
            "the accepted item")
        ctl.ok("payments", "services", "create", "later", "--load-balancer",
               "payments-lb")
        services_watch.wait_for(lambda l: l.split()[1:2] == ["later"],
                                "the new service")

        rows = table_watch.lines[1:]
        # The first endpoint did not change: printed once.
        assert len([r for r in rows if first["id"] in r]) == 1, rows
        assert [r.split()[5] for r in rows if second["id"] in r] == [
            "pendingAcceptance", "available"], rows
        items = [json.loads(l) for l in json_watch.lines]
        assert [i["state"] for i in items if i["id"] == second["id"]] == [
            "pendingAcceptance", "available"], items
        for watch in (table_watch, json_watch, services_watch):
            assert watch.stop() == 0
        ctl.close()


# ---- -o yaml, wide, custom-columns ----------------------------------------------

# Strings a YAML reader would take for something else, as netns names (those
# the netns check lets through are made; see is_netns_name).
TRICKY = ["yes", "No", "on", "OFF", "y", "n", "true", "null", "~", "1",
          "0x1f", "0o17", "017", "1e3", "1_000", "1.5", ".inf", "-.5",
          "+1", "1:30", "2024-05-14", "2024-05-14T09:12:01Z", "a: b",
          "x #y", "- item", "? q", "[1]", "{a}", "&anchor", "*alias",
          "!tag", "%percent", "@at", "`bt`", "|pipe", ">gt", "'q'", '"dq"',
          "trailing:", " lead", "trail ", "tab\there", "new\nline",
          "back\\slash", "caf\u00e9 \u00fc", "sep\u2028line", "nel\u0085",
          "=", "<<", ",comma", "#hash", "---", "..."]


def is_netns_name(text):
    """What the registry takes as a netns name (as the config does)."""
    return (re.fullmatch(r"[A-Za-z0-9._-]{1,63}", text) is not None and
            text not in (".", "..") and not text.startswith("-"))


def test_yaml_is_the_json():
    """-o yaml parses (python3-yaml, a YAML 1.1 reader) to what -o json
    says, for every list and object, and for strings chosen to mislead
    a YAML reader."""
    try:
        import yaml
    except ImportError:
        raise Skip("python3-yaml is not installed")
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        made = []
        for i, netns in enumerate(TRICKY):
            code, _, _ = api.call("POST", "/v1/networks", "ops", {
                "name": "tricky-%d" % i, "range": "127.80.%d.0/29" % i,
                "netns": netns})
            if code == 201:
                made.append(netns)
        # Only a namespace's own characters pass the netns check (the
        # YAML-misleading words among them: yes, No, null, 0x1f, 1e3...).
        assert made == [t for t in TRICKY if is_netns_name(t)], made
        service_with_endpoint(ctl, "web")
        sid = ctl.json("payments", "services", "get", "web")["id"]
        for who, args in [
                ("ops", ["networks", "list"]),
                ("payments", ["services", "list"]),
                ("payments", ["services", "get", "web"]),
                ("payments", ["connections", "list", "web"]),
                ("payments", ["permissions", "get", sid]),
                ("shop", ["endpoints", "list"]),
                ("shop", ["endpoints", "get", "web"]),
                ("ops", ["target-groups", "list"]),
                ("ops", ["target-groups", "get", "payments-tg"]),
                ("ops", ["principals", "list"]),
                ("ops", ["nodes", "list"])]:
            from_json = ctl.json(who, *args)
            text = ctl.ok(who, *(args + ["-o", "yaml"]))
            assert yaml.safe_load(text) == from_json, (args, text)
        text = ctl.ok("ops", "networks", "list", "-o", "yaml")
        netns = [n["netns"] for n in yaml.safe_load(text)["networks"]
                 if n["name"].startswith("tricky-")]
        assert sorted(netns) == sorted(made), text
        # The events: one document each.
        docs = list(yaml.safe_load_all(ctl.ok("ops", "events", "-o",
                                              "yaml")))
        lines = [json.loads(l) for l in ctl.ok("ops", "events", "-o",
                                               "json").splitlines()]
        assert docs == lines and docs, (docs, lines)
        ctl.close()


def test_wide_and_custom_columns():
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        ep = service_with_endpoint(ctl, "web")
        plain = table(ctl.ok("payments", "services", "list"))
        wide = table(ctl.ok("payments", "services", "list", "-o", "wide"))
        assert list(plain[0]) == ["ID", "NAME", "OWNER", "LOAD-BALANCER",
                                  "PORTS", "ACCEPTANCE", "ALLOWED"], plain
        assert list(wide[0]) == list(plain[0]) + [
            "LIMIT", "PRIVATE-DNS-NAME", "STATE", "CREATED"], wide
        assert wide[0]["STATE"] == "available" and wide[0]["LIMIT"] == "0"
        rows = table(ctl.ok("shop", "endpoints", "list", "-o", "wide"))
        assert rows[0]["PORTS"] == str(api.lb_port), rows
        assert rows[0]["CREATED"] == ep["created_at"], rows

        out = ctl.ok("shop", "endpoints", "list", "-o",
                     "custom-columns=ID:.id,STATE:.state,PORT:.ports[0],"
                     "NODE:.placements[0].node,NOPE:.nope")
        assert out.split("\n")[0].split() == ["ID", "STATE", "PORT", "NODE",
                                             "NOPE"], out
        assert table(out) == [{"ID": ep["id"], "STATE": "pendingAcceptance",
                               "PORT": str(api.lb_port), "NODE": "-",
                               "NOPE": "-"}], out
        # One object: a one-row table.
        assert ctl.ok("payments", "services", "get", "web", "-o",
                      "custom-columns=NAME:.name,ALLOWED:.allowed_principals"
                      ).split() == ["NAME", "ALLOWED", "web", "blog,shop"]
        ctl.fails("payments", "services", "list", "-o", "custom-columns=",
                  status=2, match="no column")
        ctl.fails("payments", "services", "list", "-o",
                  "custom-columns=NAME", status=2, match=r"HEADER:\.key")
        ctl.close()


# ---- contexts ------------------------------------------------------------------


def test_contexts():
    """Two installations, one context each: use-context switches, --context
    and NLB_CONTEXT choose for one command (winning over NLB_API), an old
    config file's keys still work and its lines are kept."""
    need_nlbctl()
    with NlbdApi() as one, NlbdApi() as two:
        ctl = Ctl()
        ctl.ok("payments", "services", "create", "on-one",
               "--load-balancer", "payments-lb", env={"NLB_API": one.base})
        ctl.ok("payments", "services", "create", "on-two",
               "--load-balancer", "payments-lb", env={"NLB_API": two.base})
        conf = os.path.join(ctl.config_home, "nlb", "nlbctl.conf")
        # An old file: its keys reach installation one, until a context is
        # chosen; its comment stays.
        with open(conf, "w") as f:
            f.write("# my settings\napi = %s\ntoken_file = %s\n" % (
                one.base, ctl.token_file("payments")))
        os.chmod(conf, 0o644)

        def names(*args, env=None):
            r = subprocess.run([NLBCTL, "services", "list", "-o", "json"] +
                               list(args), env=dict(ctl.env(None), **(env or
                                                                      {})),
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r
            return [s["name"] for s in json.loads(r.stdout)["services"]]

        assert names() == ["on-one"]
        ctl.ok(None, "config", "set-context", "one", "--api", one.base,
               "--token-file", ctl.token_file("payments"))
        # A relative token file is kept absolute.
        old = os.getcwd()
        os.chdir(ctl.dir)
        try:
            assert ctl.ok(None, "config", "set-context", "two", "--api",
                          two.base, "--token-file", "payments.token"
                          ) == 'Context "two" created.\n'
        finally:
            os.chdir(old)
        assert ctl.ok(None, "config", "use-context",
                      "two") == 'Switched to context "two".\n'
        assert names() == ["on-two"]
        assert ctl.ok(None, "config", "current-context") == "two\n"
        assert names("--context", "one") == ["on-one"]
        assert names(env={"NLB_CONTEXT": "one"}) == ["on-one"]
        # --context wins over NLB_API; NLB_API over the current context.
        assert names("--context", "one", env={"NLB_API": two.base}) == [
            "on-one"]
        assert names(env={"NLB_API": one.base}) == ["on-one"]
        ctl.ok(None, "config", "use-context", "one")
        assert names() == ["on-one"]

        text = open(conf).read()
        assert text.startswith("# my settings\napi = %s\n" % one.base), text
        assert "current_context = one\n" in text, text
        assert "[context two]\napi = %s\ntoken_file = %s\n" % (
            two.base, os.path.join(ctl.dir, "payments.token")) in text, text
        assert os.stat(conf).st_mode & 0o777 == 0o644  # as it was

        lines = ctl.ok(None, "config", "get-contexts").splitlines()
        assert lines[0].split() == ["CURRENT", "NAME", "API", "TOKEN-FILE",
                                    "CACERT"], lines
        assert lines[1].split()[:3] == ["*", "one", one.base], lines
        assert lines[2].startswith(" ") and lines[2].split()[:2] == [
            "two", two.base], lines
        listed = ctl.json(None, "config", "get-contexts")
        assert listed["current_context"] == "one", listed
        assert [c["name"] for c in listed["contexts"]] == ["one", "two"]
        assert not any(token("payments") in json.dumps(c)
                       for c in listed["contexts"])

        ctl.fails(None, "services", "list", "--context", "three", status=2,
                  match='no context "three"')
        ctl.fails(None, "config", "use-context", "three",
                  match='no context "three"')
        ctl.fails(None, "config", "set-context", "x", "--api", "ftp://x",
                  status=2, match="http://")
        ctl.ok(None, "config", "delete-context", "one")
        ctl.fails(None, "config", "current-context",
                  match="no current context")
        assert names() == ["on-one"]  # the old keys again
        ctl.close()


# ---- confirmation --------------------------------------------------------------


def with_terminal(ctl, who, answer, *args):
    """nlbctl ARGS with a terminal on standard input that answers answer;
    (status, stdout, stderr)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([NLBCTL] + list(args), stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=ctl.env(who), text=True)
    os.close(slave)
    os.write(master, answer.encode())
    drained = []

    def drain():  # the terminal's echo, so that it never fills
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    drained.append(os.read(master, 1024))
                except OSError:
                    return
            elif proc.poll() is not None:
                return

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    out, err = proc.communicate(timeout=30)
    thread.join(5)
    os.close(master)
    return proc.returncode, out, clean(err)


def test_confirmation():
    """services delete, nodes drain and the deletion or rejection of
    several endpoints ask first: without a terminal and without --yes,
    exit 2 and nothing done; a terminal answering n: exit 1 and nothing
    done; y: done."""
    need_nlbctl()
    with NlbdApi() as api:
        ctl = Ctl(api)
        ctl.ok("payments", "services", "create", "web", "--load-balancer",
               "payments-lb", "--allow", "shop")
        # No terminal: refused, saying how to go ahead.
        err = ctl.fails("payments", "services", "delete", "web", status=2,
                        match="pass --yes")
        assert "Delete service web?" in err, err
        api.ok("GET", "/v1/services/web", "payments")
        status, out, err = with_terminal(ctl, "payments", "n\n", "services",
                                         "delete", "web")
        assert status == 1 and out == "", (status, out, err)
        assert "Delete service web? " in err and "[y/N]" in err, err
        assert "nothing done" in err, err
        api.ok("GET", "/v1/services/web", "payments")
        status, out, err = with_terminal(ctl, "payments", "y\n", "services",
                                         "delete", "web")
        assert status == 0 and fields(out)["state"] == "deleted", (out, err)
        api.error("GET", "/v1/services/web", "payments", status=404)

        # Several endpoints: asked; one alone: not.
        ctl.ok("payments", "services", "create", "web", "--load-balancer",
               "payments-lb", "--allow", "shop", "--no-acceptance")
        eps = [ctl.json("shop", "endpoints", "create", "web", "--network",
                        "host")["id"] for _ in range(3)]
        err = ctl.fails("shop", "endpoints", "delete", eps[0], eps[1],
                        status=2, match="pass --yes")
        assert "Delete 2 endpoints" in err, err
        err = ctl.fails("payments", "connections", "reject", "web", eps[0],
                        eps[1], status=2, match="pass --yes")
        assert "Reject 2 connections to web" in err, err
        err = ctl.fails("payments", "connections", "reject", "web",
                        "--consumer", "shop", status=2, match="pass --yes")
        for ep in eps:
            assert api.ok("GET", "/v1/endpoints/" + ep,
                          "shop")["state"] == "available"
        status, out, err = with_terminal(ctl, "shop", "no\n", "endpoints",
                                         "delete", eps[0], eps[1])
        assert status == 1, (status, out, err)
        assert api.ok("GET", "/v1/endpoints/" + eps[0],
                      "shop")["state"] == "available"
        status, out, err = with_terminal(ctl, "shop", "yes\n", "endpoints",
                                         "delete", eps[0], eps[1])
        assert status == 0 and out == "%s deleted\n%s deleted\n" % (
            eps[0], eps[1]), (status, out, err)
        got = ctl.json("shop", "endpoints", "delete", eps[2])  # no question
        assert got["state"] == "deleted", got

        # Draining the only node that is up: the question says so.
        nodes = api.ok("GET", "/v1/nodes", "ops")["nodes"]
        assert [n["state"] for n in nodes] == ["up"], nodes
        err = ctl.fails("ops", "nodes", "drain", nodes[0]["name"], status=2,
                        match="pass --yes")
        assert "only node that is up" in err, err
        status, out, err = with_terminal(ctl, "ops", "n\n", "nodes", "drain",
                                         nodes[0]["name"])
        assert status == 1 and "only node that is up" in err, (status, err)
        assert api.ok("GET", "/v1/nodes", "ops")["nodes"][0]["state"] == "up"
        ctl.close()


if __name__ == "__main__":
    nlbtest.run([
        test_bash_completion_offers_names,
        test_zsh_completion_offers_names,
        test_wait_for_acceptance,
        test_wait_for_a_failure,
        test_watch,
        test_yaml_is_the_json,
        test_wide_and_custom_columns,
        test_contexts,
        test_confirmation,
    ], timeout=120)
