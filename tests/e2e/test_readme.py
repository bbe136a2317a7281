#!/usr/bin/env python3
"""End to end: the walkthroughs of the README ("Walkthrough: a private
endpoint service", with nlbctl) and of docs/api.md ("Walkthrough with
curl") keep telling the truth.

Both are terminal sessions: `$ ` starts a command, the lines after it are
what it printed. The test takes the README's nlb.cfg (its `cat > nlb.cfg
<<'EOF'` block), moves it to ports, paths and network namespaces of its
own, writes the token files the README makes, starts nlbd, and then

  - README: runs every `$ nlbctl ...` line, in order, as the README shows
    it, and checks that it exits 0 (1 when the README shows an API error,
    "409 InvalidState: ...", as its output). A command that only reads
    (get, list, events) is retried for a few seconds, as a reader would,
    while a state settles (an endpoint fails asynchronously). The
    README's restart (`$ kill $(cat nlbd.pid)`, then nlbd again) is made
    where it stands: it leaves a trace in the registry (the node's `drain`
    event), which the events listed later must show. The other shell
    lines (namespaces, HAProxy, curl through the endpoints) are not run:
    tests/e2e/test_endpoints.py covers that data path.
  - docs/api.md: runs every `$ ` line of the section in one shell (they
    share variables).

and that each command printed every output line shown, in that order:
"..." stands for lines or text left out; IDs, times and column widths may
differ.

Needs root and `ip netns` (the endpoints listen in namespaces); says SKIP
otherwise. Namespaces are named nlbctl-rd-<a|b>-<pid> and always
deleted."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nlbtest import (NLBD, TOP_BUILDDIR, TOP_SRCDIR, Nlbd, Skip,  # noqa: E402
                     free_port, run, wait_until)

README = os.path.join(TOP_SRCDIR, "README")
API_MD = os.path.join(TOP_SRCDIR, "docs", "api.md")
NLBCTL = os.path.join(TOP_BUILDDIR, "nlbctl")
SECTION = "Walkthrough: a private endpoint service"
API_MD_SECTION = "## Walkthrough with curl"
DEMO_DIR = "/tmp/nlb-demo"
# The README's ports, each moved to a free one.
PORTS = (9180, 8080, 8081, 9001, 9002)
READ_ONLY = re.compile(r"\b(get|list|events|available-services)\b")
API_ERROR = re.compile(r"^\d{3} [A-Za-z]+: ")
# The README's restart: SIGTERM to the nlbd it started, then nlbd again.
RESTART = re.compile(r"^kill \$\(cat nlbd\.pid\); while ")
STARTED = re.compile(r" info nlbd \S+ started: ")
RETRY_SECONDS = 10


def section_text():
    with open(README) as f:
        text = f.read()
    m = re.search(r"^%s\n-+\n" % re.escape(SECTION), text, re.M)
    assert m, "no section %r in the README" % SECTION
    body = text[m.end():]
    # It ends where the next "Title\n-----" begins.
    end = re.search(r"\n\n[^\n]+\n-{3,}\n", body)
    return body if end is None else body[:end.start()]


def api_md_section_text():
    with open(API_MD) as f:
        text = f.read()
    start = text.index("\n%s\n" % API_MD_SECTION)
    body = text[start + len(API_MD_SECTION) + 2:]
    end = re.search(r"^## ", body, re.M)
    return body if end is None else body[:end.start()]


def session(text):
    """The section's commands in order: (command, [output lines])."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)
    commands = []
    for block in blocks:
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            i += 1
            if not line.startswith("$ "):
                continue
            command = line[2:]
            # A here-document or a continued line belongs to the command.
            heredoc = re.search(r"<<'?(\w+)'?", command)
            while command.endswith("\\") and i < len(lines):
                command = command[:-1] + lines[i]
                i += 1
            if heredoc:
                while i < len(lines) and lines[i] != heredoc.group(1):
                    command += "\n" + lines[i]
                    i += 1
                command += "\n" + heredoc.group(1)
                i += 1
            output = []
            while i < len(lines) and not lines[i].startswith("$ "):
                output.append(lines[i])
                i += 1
            commands.append((command, output))
    return commands


def normalize(line):
    """IDs and times as placeholders, runs of blanks as one."""
    line = re.sub(r"\bsvc-[0-9a-f]{17}\b", "SVC", line)
    line = re.sub(r"\bep-[0-9a-f]{17}\b", "EP", line)
    line = re.sub(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "TIME", line)
    return " ".join(line.split())


def line_pattern(line):
    parts = [re.escape(p) for p in normalize(line).split("...")]
    return re.compile("^" + ".*".join(parts) + "$")


def shows(expected, actual):
    """Whether actual (lines) holds every expected line, in order; a line
    "..." alone skips any number of lines."""
    patterns = [line_pattern(l) for l in expected if l.strip() != "..."]
    got = [normalize(l) for l in actual]
    k = 0
    for pattern in patterns:
        while k < len(got) and not pattern.match(got[k]):
            k += 1
        if k == len(got):
            return False, pattern.pattern
        k += 1
    return True, None


def move_ports(text, ports):
    for old, new in ports.items():
        text = re.sub(r"\b%d\b" % old, str(new), text)
    return text


def sh(*args):
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=10)


class Demo:
    """nlbd on the README's config, moved to free ports, a directory and
    namespaces of its own; the README's token files in work."""

    def __init__(self):
        if not os.path.exists(NLBCTL) or not os.path.exists(NLBD):
            raise Skip("nlbd and nlbctl are not built")
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise Skip("needs root and ip(8): the endpoints listen in "
                       "network namespaces")
        self.commands = session(section_text())
        config = [c for c, _ in self.commands if c.startswith("cat > nlb.cfg")]
        assert len(config) == 1, "no nlb.cfg here-document in the README"
        self.config = config[0].split("\n", 1)[1].rsplit("\n", 1)[0]
        pid = os.getpid()
        self.namespaces = {"shop-a": "nlbctl-rd-a-%d" % pid,
                           "shop-b": "nlbctl-rd-b-%d" % pid}
        self.ports = {old: free_port() for old in PORTS}
        self.work = tempfile.mkdtemp(prefix="nlbctl-readme-")
        self.nlbd = None

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def write_tokens(self):
        """NAME-secret, whose hashes the config and the README's listing
        of them must hold."""
        names = re.findall(r'name = "([^"]+)";\s+role = "\w+"; '
                           r'token_sha256 = "([0-9a-f]{64})"', self.config)
        assert len(names) == 4, names
        for name, digest in names:
            secret = name + "-secret"
            assert hashlib.sha256(secret.encode()).hexdigest() == digest, name
            path = os.path.join(self.work, name + ".token")
            with open(path, "w") as f:
                f.write(secret)
            os.chmod(path, 0o600)
        for command, output in self.commands:
            if "sha256sum" in command:
                assert [l.split()[1] for l in output] == [
                    d for _, d in names], output

    def start(self):
        self.write_tokens()
        for ns in self.namespaces.values():
            sh("ip", "netns", "del", ns)
            r = sh("ip", "netns", "add", ns)
            if r.returncode != 0:
                raise Skip("ip netns add failed: %s" % r.stderr.strip())
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.nlbd = Nlbd("")
        text = move_ports(self.config, self.ports).replace(DEMO_DIR,
                                                           self.nlbd.dir)
        for old, new in self.namespaces.items():
            text = text.replace('netns = "%s"' % old, 'netns = "%s"' % new)
        with open(self.nlbd.config_path, "w") as f:
            f.write(text)
        self.nlbd.start(wait_port=self.ports[9180])
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("NLB_")}
        self.env.update(PATH=TOP_BUILDDIR + ":" + self.env.get("PATH", ""),
                        NLB_API="http://127.0.0.1:%d" % self.ports[9180],
                        XDG_CONFIG_HOME=self.work)

    def restart(self):
        """The README's restart: SIGTERM (nlbd exits 0), then nlbd again on
        the same config and registry, ready when it says it started."""
        assert self.nlbd.stop() == 0, self.nlbd.stderr()
        before = len(STARTED.findall(self.nlbd.events()))
        self.nlbd.start(wait_port=self.ports[9180])
        wait_until(lambda: len(STARTED.findall(self.nlbd.events())) > before,
                   what="nlbd started again")

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.nlbd is not None and exc_type is None:
                assert self.nlbd.stop() == 0, self.nlbd.stderr()
        finally:
            if self.nlbd is not None:
                self.nlbd.kill()
            for ns in self.namespaces.values():
                sh("ip", "netns", "del", ns)
            shutil.rmtree(self.work, ignore_errors=True)


def check_output(command, expected, output):
    ok, missing = shows(expected, output.splitlines())
    assert ok, "$ %s\ndid not print %r; it printed:\n%s" % (command, missing,
                                                          output)


def test_readme_walkthrough():
    with Demo() as demo:
        steps = [(c, out) for c, out in demo.commands
                 if c.startswith("nlbctl ") or RESTART.match(c)]
        assert len(steps) >= 10, steps
        assert sum(bool(RESTART.match(c)) for c, _ in steps) == 1, steps
        for command, output in steps:
            if RESTART.match(command):
                demo.restart()
                print("ok: $ %s (and nlbd again)" % command)
                continue
            expected = [move_ports(l, demo.ports) for l in output]
            shown = [l for l in expected if l.strip() != "..."]
            want = 1 if shown and API_ERROR.match(shown[0]) else 0
            deadline = time.monotonic() + RETRY_SECONDS
            while True:
                r = subprocess.run(["bash", "-c", command], cwd=demo.work,
                                   env=demo.env, capture_output=True,
                                   text=True, timeout=60)
                ok, _ = shows(expected, (r.stdout + r.stderr).splitlines())
                if (r.returncode == want and ok) or \
                        not READ_ONLY.search(command) or \
                        time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            for bad in ("Sanitizer", "runtime error:"):
                assert bad not in r.stderr, r.stderr
            assert r.returncode == want, "$ %s\nexited %d, not %d:\n%s%s" % (
                command, r.returncode, want, r.stdout, r.stderr)
            check_output(command, expected, r.stdout + r.stderr)
            print("ok: $ %s" % command)


def test_api_md_curl_walkthrough():
    if shutil.which("curl") is None:
        raise Skip("curl is not installed")
    commands = session(api_md_section_text())
    assert len(commands) >= 15, commands
    with Demo() as demo:
        # One shell for all (they share a function and variables); a mark
        # before each command's output.
        script = ["set +e"]
        for i, (command, _) in enumerate(commands):
            script.append("printf '\\n@@@ %d\\n'" % i)
            script.append("{ %s\n} 2>&1" % move_ports(command, demo.ports))
        r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=demo.work,
                           env=demo.env, capture_output=True, text=True,
                           timeout=60)
        outputs = re.split(r"\n@@@ \d+\n", "\n" + r.stdout)[1:]
        assert len(outputs) == len(commands), (r.stdout, r.stderr)
        for (command, expected), output in zip(commands, outputs):
            check_output(command, [move_ports(l, demo.ports)
                                   for l in expected], output)
            print("ok: $ %s" % command)


if __name__ == "__main__":
    run([test_readme_walkthrough, test_api_md_curl_walkthrough], timeout=120)
