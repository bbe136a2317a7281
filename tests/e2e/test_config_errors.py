#!/usr/bin/env python3
"""End to end: nlbd's command line and how it treats bad configs. A bad
config exits 2 naming FILE:LINE, with `-t` and without, and starts nothing;
a bad reload keeps the running config; usage errors exit 2; --version and
--help exit 0; a listener that cannot bind is a runtime failure (exit 1)."""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nlbtest import (NLBD, Nlbd, Server, can_connect, free_port,  # noqa
                     named_handler, recv_line, run, wait_until)


def write(text, name="bad.cfg"):
    directory = tempfile.mkdtemp(prefix="nlbtest-cfg-")
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def nlbd(*args, timeout=10):
    """Runs nlbd to completion; returns (status, stdout, stderr)."""
    p = subprocess.run([NLBD] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def good_config(port, target="127.0.0.1:9", extra=""):
    return ('log = { access = "off"; events = "stderr"; };\n'
            'target_groups = ( { name = "tg";\n'
            '  targets = ( { address = "%s"; } ); } );\n'
            'load_balancers = ( { name = "lb"; listeners = (\n'
            '  { port = %d; target_group = "tg"; bind = "127.0.0.1"; }\n'
            '); } );\n%s' % (target, port, extra))


# Each case: the file, then (line, message) pairs that must all be reported.
BAD_CONFIGS = [
    ("syntax", 'workers = 1;\n\nlog = { level = = "info"; };\n',
     [(3, "syntax error")]),
    ("unknown key", 'workers = 1;\nwrokers = 2;\n',
     [(2, "unknown setting 'wrokers'")]),
    ("unknown target group",
     'target_groups = ( { name = "tg"; } );\n'
     'load_balancers = ( { name = "lb"; listeners = (\n'
     '  { port = 80;\n'
     '    target_group = "nope"; } ); } );\n',
     [(4, 'unknown target group "nope"')]),
    ("duplicate name",
     'target_groups = (\n  { name = "tg"; },\n  { name = "tg"; } );\n',
     [(3, 'duplicate target group name "tg"')]),
    ("bad address",
     'target_groups = ( { name = "tg";\n'
     '  targets = ( { address = "127.0.0.1"; } ); } );\n',
     [(2, 'target address "127.0.0.1" is not IP:PORT')]),
    ("out of range",
     'target_groups = ( { name = "tg"; } );\n'
     'load_balancers = ( { name = "lb"; listeners = (\n'
     '  { port = 70000; target_group = "tg"; } ); } );\n',
     [(3, "'port' must be between 1 and 65535")]),
    ("bad duration", 'shutdown_timeout = "30 seconds";\n',
     [(1, 'bad duration "30 seconds"')]),
    ("private DNS",
     'registry = { path = "/tmp/nlb-cfg-errors.db"; };\n'
     'dns = { zone = "nlb_internal"; };\n'
     'principals = ( { name = "shop"; role = "consumer";\n'
     '  token_sha256 = "%s";\n'
     '  dns_domains = [ "shop.example" ]; } );\n'
     'networks = ( { name = "n"; range = "127.1.0.0/24";\n'
     '  dns = "127.1.0.2:53"; } );\n' % ("0" * 64),
     [(2, 'dns zone "nlb_internal" is not a DNS name'),
      (5, "only a provider has 'dns_domains'"),
      (7, 'dns "127.1.0.2:53" is not an IPv4 or IPv6 address')]),
    # Numbers that overflowed into small ones: 1e19 s was 0 ms, the
    # 18446744073709552L s interval 384 ms, 4294967376 port 80.
    ("float duration overflow",
     'target_groups = ( { name = "tg";\n'
     '  deregistration_delay = 1e19; } );\n',
     [(2, "'deregistration_delay' must be between 0ms and 3600000ms")]),
    ("integer duration overflow",
     'target_groups = ( { name = "tg";\n'
     '  health_check = {\n'
     '    interval = 18446744073709552L; }; } );\n',
     [(3, "'interval' must be between 100ms and 3600000ms")]),
    ("infinite duration", 'shutdown_timeout = 1e999;\n',
     [(1, "'shutdown_timeout' must be between")]),
    ("negative infinite duration", 'shutdown_timeout = -1e999;\n',
     [(1, "must not be negative")]),
    ("string duration overflow",
     'shutdown_timeout = "99999999999999999999d";\n',
     [(1, "'shutdown_timeout' must be between")]),
    ("32-bit wrap",
     'target_groups = ( { name = "tg"; } );\n'
     'load_balancers = ( { name = "lb"; listeners = (\n'
     '  { port = 4294967376; target_group = "tg"; } ); } );\n',
     [(3, "integer 4294967376 is out of range")]),
    ("64-bit saturation", 'workers = 99999999999999999999L;\n',
     [(1, "integer 99999999999999999999L is out of range")]),
    ("several at once",
     'workers = 999;\n'
     'target_groups = ( { name = "tg"; algorithm = "fast"; } );\n',
     [(1, "'workers' must be between"), (2, "algorithm must be")]),
    ("sni_routes: unknown group, bad names, a name twice",
     'target_groups = ( { name = "tg"; }, { name = "tg2"; } );\n'
     'load_balancers = ( { name = "lb"; listeners = (\n'
     '  { port = 443; target_group = "tg"; protocol = "tls_passthrough";\n'
     '    sni_routes = (\n'
     '      { names = [ "a.example" ];\n'
     '        target_group = "nope"; },\n'
     '      { names = [ "x..example", "a*.example", "*.*.example" ];\n'
     '        target_group = "tg2"; },\n'
     '      { names = [ "c.example", "C.example." ];\n'
     '        target_group = "tg2"; } ); } ); } );\n',
     [(6, 'unknown target group "nope"'),
      (7, 'SNI route: "x..example" is not a server name'),
      (7, 'SNI route: "a*.example" is not a server name'),
      (7, 'SNI route: "*.*.example" is not a server name'),
      (9, 'SNI route: "c.example" is already routed (line 9)')]),
    ("sni_routes without tls_passthrough",
     'target_groups = ( { name = "tg"; } );\n'
     'load_balancers = ( { name = "lb"; listeners = (\n'
     '  { port = 443; target_group = "tg";\n'
     '    sni_routes = ( { names = [ "a.example" ]; target_group = "tg"; } );'
     '\n    client_hello_timeout = "5s"; } ); } );\n',
     [(4, 'sni_routes needs protocol = "tls_passthrough"'),
      (5, 'client_hello_timeout needs protocol = "tls_passthrough"')]),
]


def check_errors(path, stderr, expected):
    lines = [l for l in stderr.splitlines() if l]
    assert lines, "no error printed"
    for line in lines:
        assert re.match(r"^%s:[1-9]\d*: \S" % re.escape(path), line), \
            "not FILE:LINE: message: %r" % line
    for line_no, message in expected:
        prefix = "%s:%d: " % (path, line_no)
        assert any(l.startswith(prefix) and message in l for l in lines), \
            "want %r%s, got:\n%s" % (prefix, message, stderr)


def test_check_mode_reports_file_line():
    for name, text, expected in BAD_CONFIGS:
        path = write(text)
        status, out, err = nlbd("-t", "-c", path)
        assert status == 2, "%s: -t exited %d" % (name, status)
        assert out == "", "%s: stdout %r" % (name, out)
        check_errors(path, err, expected)


def test_run_mode_reports_file_line_and_starts_nothing():
    for name, text, expected in BAD_CONFIGS:
        path = write(text)
        status, out, err = nlbd("-c", path)
        assert status == 2, "%s: exited %d: %s" % (name, status, err)
        check_errors(path, err, expected)
    # A bad file whose listeners would be fine: nothing listens, ever.
    port = free_port()
    path = write(good_config(port, extra="colour = \"red\";\n"))
    p = subprocess.Popen([NLBD, "-c", path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    seen_listening = False
    while p.poll() is None:
        seen_listening |= can_connect("127.0.0.1", port)
        time.sleep(0.01)
    out, err = p.communicate(timeout=5)
    assert p.returncode == 2, p.returncode
    assert not seen_listening, "nlbd listened although its config is bad"
    assert not can_connect("127.0.0.1", port)
    check_errors(path, err, [(7, "unknown setting 'colour'")])


def test_check_mode_accepts_good_config():
    path = write(good_config(free_port()), "good.cfg")
    status, out, err = nlbd("-t", "-c", path)
    assert status == 0, (status, err)
    assert path in out and "ok" in out, out
    # The quickstart example is a good config too.
    example = os.path.join(os.environ.get("top_srcdir", os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..")),
        "examples", "quickstart.cfg")
    if os.path.exists(example):
        status, out, err = nlbd("-t", "-c", example)
        assert status == 0, (status, err)


def test_missing_file_exits_2():
    path = "/nonexistent/nlb-%d.cfg" % os.getpid()
    for args in (("-t", "-c", path), ("-c", path)):
        status, out, err = nlbd(*args)
        assert status == 2, (args, status)
        assert path in err, err


def test_version_and_help():
    status, out, err = nlbd("--version")
    assert status == 0 and re.match(r"^nlbd \d+\.\d+\.\d+", out), (status, out)
    status, out, err = nlbd("--help")
    assert status == 0, status
    assert "Usage" in out and "-c FILE" in out and "-t" in out, out


def test_usage_errors_exit_2():
    path = write(good_config(free_port()), "good.cfg")
    # Without -c, nlbd (and nlbd -t) read SYSCONFDIR/nlb/nlb.cfg:
    # test_install.py checks that.
    for args in (("--bogus",), ("-x",), ("-c",), ("-s", "stop"),
                 ("-c", path, "extra"), ("-t", "-c", path, "extra")):
        status, out, err = nlbd(*args)
        assert status == 2, "%r exited %d" % (args, status)
        assert "Usage" in err or "usage" in err, "%r: %r" % (args, err)


def test_bad_reload_keeps_running_config():
    server = Server(named_handler("kept"))
    port = free_port()
    body = ('target_groups = ( { name = "tg";\n'
            '  targets = ( { address = "%s"; } ); } );\n'
            'load_balancers = ( { name = "lb"; listeners = (\n'
            '  { port = %d; target_group = "tg"; bind = "127.0.0.1"; }\n'
            '); } );\n' % (server.address, port))
    with Nlbd(body) as d:
        d.start(wait_port=port)
        d.write_config(body + "wrong_key = 1;\n")
        d.reload(expect="reload rejected")
        assert re.search(r"reload rejected: %s:\d+: unknown setting "
                         r"'wrong_key'" % re.escape(d.config_path),
                         d.events()), d.events()
        assert d.proc.poll() is None, "nlbd exited on a bad reload"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert recv_line(s) == "kept\n"
    server.stop()


def test_listener_that_cannot_bind_exits_1():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        path = write(good_config(port), "busy.cfg")
        status, out, err = nlbd("-c", path)
        assert status == 1, "exited %d: %s" % (status, err)
        assert "%s:5:" % path in err and "cannot listen" in err, err
    finally:
        blocker.close()


if __name__ == "__main__":
    run([
        test_check_mode_reports_file_line,
        test_run_mode_reports_file_line_and_starts_nothing,
        test_check_mode_accepts_good_config,
        test_missing_file_exits_2,
        test_version_and_help,
        test_usage_errors_exit_2,
        test_bad_reload_keeps_running_config,
        test_listener_that_cannot_bind_exits_1,
    ], timeout=60)
