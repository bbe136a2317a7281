#!/usr/bin/env python3
"""End to end: the README's "run" command, scripts/quickstart.sh. It starts
demo backends and nlbd on examples/quickstart.cfg in the foreground and
prints what to try; curl through it works; Ctrl-C (SIGINT to its process
group) stops everything it started.

The script runs the nlbd of `_build/` next to it; the test gives it free
ports through NLB_QUICKSTART_PORT and NLB_QUICKSTART_BACKEND_PORT. So that the nlbd under test (top_builddir) is the one
that runs, without touching the source tree, the test copies scripts/ and
examples/ into a temporary directory and links _build/nlbd there. Skips
(77) when the script is missing."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nlbtest import (NLBD, TOP_SRCDIR, Skip, can_connect, free_port, run,  # noqa
                     wait_until)


def free_run(length):
    """A port p with p..p+length-1 all free now."""
    for _ in range(100):
        first = free_port()
        if first + length < 65536 and all(port_free(first + i)
                                          for i in range(length)):
            return first
    raise Skip("no run of %d free ports" % length)


def port_free(port):
    with socket.socket() as s:
        # As the servers will: TIME_WAIT leftovers do not make a port busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def session_pids(sid):
    """Processes still alive in session sid (zombies excluded)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            pids.append(int(entry))
    return pids


class Output(threading.Thread):
    """Collects a pipe's lines as they come."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.lines = []
        self.start()

    def run(self):
        for line in self.pipe:
            self.lines.append(line)

    def text(self):
        return "".join(self.lines)


def private_tree():
    script = os.path.join(TOP_SRCDIR, "scripts", "quickstart.sh")
    if not os.path.exists(script):
        raise Skip("scripts/quickstart.sh does not exist yet")
    if not os.access(NLBD, os.X_OK):
        raise Skip("%s is not built" % NLBD)
    top = tempfile.mkdtemp(prefix="nlbtest-quickstart-")
    shutil.copytree(os.path.join(TOP_SRCDIR, "scripts"),
                    os.path.join(top, "scripts"))
    shutil.copytree(os.path.join(TOP_SRCDIR, "examples"),
                    os.path.join(top, "examples"))
    os.mkdir(os.path.join(top, "_build"))
    os.symlink(NLBD, os.path.join(top, "_build", "nlbd"))
    return top


def get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_quickstart_serves_and_stops_on_ctrl_c():
    lb_port = free_port()
    api_port = free_port()
    backend_port = free_run(3)
    ports = (lb_port, api_port, backend_port, backend_port + 1,
             backend_port + 2)
    url = "http://127.0.0.1:%d/" % lb_port
    top = private_tree()
    env = dict(os.environ, NLB_QUICKSTART_NO_BUILD="1",
               NLB_QUICKSTART_PORT=str(lb_port),
               NLB_QUICKSTART_BACKEND_PORT=str(backend_port),
               NLB_QUICKSTART_API_PORT=str(api_port))
    proc = subprocess.Popen(
        ["bash", os.path.join(top, "scripts", "quickstart.sh")],
        cwd=top, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    out, err = Output(proc.stdout), Output(proc.stderr)
    try:
        wait_until(lambda: "try:" in out.text() or proc.poll() is not None,
                   timeout=20, what="the quickstart's \"try:\" hint")
        assert proc.poll() is None, "quickstart exited %s:\n%s%s" % (
            proc.returncode, out.text(), err.text())
        assert "curl " + url in out.text(), out.text()
        for port in ports:
            wait_until(lambda: can_connect("127.0.0.1", port), timeout=10,
                       what="port %d" % port)

        answers = set()
        for _ in range(9):
            status, body = get(url)
            assert status == 200, status
            assert body.startswith("hello from demo backend"), body
            answers.add(body.split()[4])
        assert answers == {"1", "2", "3"}, \
            "round robin reached %s" % sorted(answers)
        wait_until(lambda: err.text().count(" demo-lb:%d " % lb_port) >= 9,
                   what="access-log lines on stderr")

        # The API lines it prints work as printed: a service, an endpoint
        # on a host address, and a flow through it.
        hints = " ".join(l.strip() for l in out.text().splitlines())
        calls = ["curl -s --http2" + c.split("  ")[0].replace("\\ ", "")
                 for c in hints.split("curl -s --http2")[1:]]
        assert len(calls) == 3, out.text()
        for call in calls:
            r = subprocess.run(["bash", "-c", call], capture_output=True,
                               text=True, timeout=10)
            assert r.returncode == 0 and '"error"' not in r.stdout, \
                (call, r.stdout, r.stderr)
        endpoint = json.loads(r.stdout)
        assert endpoint["state"] == "available", endpoint
        ep_url = "http://%s:%d/" % (endpoint["address"], lb_port)
        wait_until(lambda: can_connect(endpoint["address"], lb_port),
                   what="the endpoint's listener")
        status, body = get(ep_url)
        assert status == 200 and body.startswith("hello from demo backend")

        # Ctrl-C: the terminal sends SIGINT to the foreground group.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            raise AssertionError("quickstart still running 15s after ^C")
        wait_until(lambda: not session_pids(proc.pid), timeout=10,
                   what="every process of the quickstart to exit")
        for port in ports:
            assert not can_connect("127.0.0.1", port), \
                "port %d still answers after ^C" % port
        if os.environ.get("NLB_TEST_VERBOSE"):
            print(out.text() + err.text())
    finally:
        if session_pids(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    run([test_quickstart_serves_and_stops_on_ctrl_c], timeout=60)
