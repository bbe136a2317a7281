"""End-to-end tests of the installed layout: `make install DESTDIR=...`
puts nlbd, its config, man pages, systemd unit, logrotate and tmpfiles
snippets and state directories where configure said; an existing config
survives a reinstall; the unit passes `systemd-analyze verify`; nlbd
without -c reads SYSCONFDIR/nlb/nlb.cfg; relative paths in a config are
taken from the config's directory."""

import hashlib
import os
import re
import shutil
import subprocess
import tempfile

from nlbtest import (NLBD, TOP_BUILDDIR, Server, Skip, can_connect,
                     echo_handler, free_port, run, wait_until)


def make_vars():
    """The installation directories of the build's Makefile, expanded."""
    raw = {}
    with open(os.path.join(TOP_BUILDDIR, "Makefile")) as f:
        for line in f:
            m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*) = (.*)$", line.rstrip("\n"))
            if m:
                raw[m.group(1)] = m.group(2)

    def expand(value, depth=0):
        assert depth < 20, value
        return re.sub(r"\$[{(]([A-Za-z_][A-Za-z0-9_]*)[})]",
                      lambda m: expand(raw.get(m.group(1), ""), depth + 1),
                      value)
    return {k: expand(v) for k, v in raw.items()}


def make(*args, destdir):
    """A make in the build directory, apart from the make running the
    tests (its jobserver is not ours)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    r = subprocess.run(["make", "-s", "-C", TOP_BUILDDIR, "DESTDIR=" + destdir]
                       + list(args), env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, "make %s: %s%s" % (" ".join(args), r.stdout,
                                                 r.stderr)
    return r.stdout + r.stderr


def installed(destdir):
    """Every file under destdir, relative to it."""
    found = set()
    for root, _, files in os.walk(destdir):
        for name in files:
            found.add(os.path.relpath(os.path.join(root, name), destdir))
    return found


def layout(v):
    r = lambda path: path.lstrip("/")
    files = {
        r(v["sbindir"]) + "/nlbd",
        r(v["sysconfdir"]) + "/nlb/nlb.cfg",
        r(v["sysconfdir"]) + "/logrotate.d/nlb",
        r(v["mandir"]) + "/man8/nlbd.8",
        r(v["mandir"]) + "/man5/nlb.cfg.5",
        r(v["systemdsystemunitdir"]) + "/nlb.service",
        r(v["systemdsystemunitdir"]) + "/nlb-upgrade.service",
        r(v["tmpfilesdir"]) + "/nlb.conf",
        r(v["datadir"]) + "/nlb/openapi.yaml",
    }
    if "nlbctl" in v.get("bin_PROGRAMS", ""):
        files |= {r(v["bindir"]) + "/nlbctl", r(v["mandir"]) +
                  "/man1/nlbctl.1", r(v["bashcompletiondir"]) + "/nlbctl",
                  r(v["zshcompletiondir"]) + "/_nlbctl"}
    dirs = [r(v["localstatedir"]) + "/lib/nlb", r(v["localstatedir"]) +
            "/log/nlb"]
    return files, dirs


def test_destdir_install_layout():
    """Each file where configure's directories say, nothing else; the
    config checks, and no @placeholder@ is left in any text file."""
    v = make_vars()
    dest = tempfile.mkdtemp(prefix="nlb-destdir-")
    try:
        make("install", destdir=dest)
        files, dirs = layout(v)
        got = installed(dest)
        assert got == files, "missing %s, extra %s" % (sorted(files - got),
                                                       sorted(got - files))
        for d in dirs:
            assert os.path.isdir(os.path.join(dest, d)), d
        nlbd = os.path.join(dest, v["sbindir"].lstrip("/"), "nlbd")
        assert os.access(nlbd, os.X_OK)
        assert v["sbindir"].rstrip("/").endswith("/sbin"), v["sbindir"]
        for f in files - {os.path.relpath(nlbd, dest)}:
            if f.endswith("bin/nlbctl"):
                continue
            text = open(os.path.join(dest, f)).read()
            assert not re.search(r"@[A-Za-z_]+@", text), (f, re.findall(
                r"@[A-Za-z_]+@", text))
        cfg = os.path.join(dest, v["sysconfdir"].lstrip("/"), "nlb/nlb.cfg")
        r = subprocess.run([nlbd, "-t", "-c", cfg], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0 and r.stdout == cfg + ": ok\n", r
        text = open(cfg).read()
        assert v["localstatedir"] + "/log/nlb/access.log" in text, text
        unit = open(os.path.join(
            dest, v["systemdsystemunitdir"].lstrip("/"), "nlb.service")).read()
        assert "ExecStart=%s/nlbd -c ${CONFIG}" % v["sbindir"] in unit
        assert "CONFIG=%s/nlb/nlb.cfg" % v["sysconfdir"] in unit
        for page in ("man8/nlbd.8", "man5/nlb.cfg.5") if shutil.which(
                "groff") else ():
            path = os.path.join(dest, v["mandir"].lstrip("/"), page)
            r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0 and not r.stderr, (page, r.stderr)
        # Uninstall takes back everything (the unchanged config included),
        # leaving at most empty directories.
        make("uninstall", destdir=dest)
        assert installed(dest) == set(), installed(dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def test_reinstall_keeps_a_changed_config():
    """A config the administrator changed survives `make install` and
    `make uninstall`."""
    v = make_vars()
    dest = tempfile.mkdtemp(prefix="nlb-destdir-")
    try:
        make("install", destdir=dest)
        cfg = os.path.join(dest, v["sysconfdir"].lstrip("/"), "nlb/nlb.cfg")
        with open(cfg, "a") as f:
            f.write("# changed by the administrator\n")
        out = make("install", destdir=dest)
        assert "keeping the existing" in out, out
        assert open(cfg).read().endswith("# changed by the administrator\n")
        out = make("uninstall", destdir=dest)
        assert "keeping the changed" in out, out
        assert installed(dest) == {os.path.relpath(cfg, dest)}
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def test_unit_passes_systemd_analyze_verify():
    """`systemd-analyze verify` of the installed unit, offline: in a root
    holding the DESTDIR install and a copy of this host's systemd units
    (the targets the unit is ordered against). Any warning fails."""
    analyze = shutil.which("systemd-analyze")
    units = "/lib/systemd/system"
    if not analyze or not os.path.isdir(units):
        raise Skip("systemd-analyze or %s is missing" % units)
    v = make_vars()
    root = tempfile.mkdtemp(prefix="nlb-sdroot-")
    try:
        make("install", destdir=root)
        os.makedirs(os.path.join(root, "lib/systemd"), exist_ok=True)
        host = os.path.join(root, "lib/systemd/system")
        if not os.path.exists(host):
            shutil.copytree(units, host, symlinks=True)
        # Where systemd looks in any case (a --prefix such as distcheck's
        # puts the unit outside its search path); ExecStart still names the
        # nlbd installed in the root.
        unit = os.path.join(root, "etc/systemd/system/nlb.service")
        os.makedirs(os.path.dirname(unit), exist_ok=True)
        shutil.copy(os.path.join(root, v["systemdsystemunitdir"].lstrip("/"),
                                 "nlb.service"), unit)
        r = subprocess.run([analyze, "verify", "--man=no", "--root=" + root,
                            unit], capture_output=True, text=True, timeout=60)
        if "Failed to" in r.stderr and "root" in r.stderr.lower():
            raise Skip("systemd-analyze cannot verify in a root here: %s"
                       % r.stderr.strip())
        assert r.returncode == 0 and not r.stdout.strip() and \
            not r.stderr.strip(), "verify said (%d): %s%s" % (
                r.returncode, r.stdout, r.stderr)
        # It does read the unit: a bad setting makes it speak.
        with open(unit, "a") as f:
            f.write("NotASetting=1\n")
        r = subprocess.run([analyze, "verify", "--man=no", "--root=" + root,
                            unit], capture_output=True, text=True, timeout=60)
        assert "NotASetting" in r.stderr, r.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_default_config_path():
    """nlbd without -c reads SYSCONFDIR/nlb/nlb.cfg."""
    v = make_vars()
    want = v["sysconfdir"] + "/nlb/nlb.cfg"
    r = subprocess.run([NLBD, "-t"], capture_output=True, text=True,
                       timeout=10)
    if r.returncode == 0:
        assert r.stdout == want + ": ok\n", r.stdout
    else:
        assert r.returncode == 2 and r.stderr.startswith(want + ":"), r
    r = subprocess.run([NLBD, "--help"], capture_output=True, text=True,
                       timeout=10)
    assert want in r.stdout, r.stdout


def test_relative_paths_resolve_against_the_config():
    """Log files, the registry and the TLS certificate and key named
    relatively are found next to the config, whatever directory nlbd runs
    from."""
    if not shutil.which("openssl"):
        raise Skip("openssl is not installed")
    conf_dir = tempfile.mkdtemp(prefix="nlb-rel-")
    elsewhere = tempfile.mkdtemp(prefix="nlb-cwd-")
    port, api = free_port(), free_port()
    # A target that answers: a refused one would make nlbd reset the probe
    # connection, sometimes before connect() returned.
    backend = Server(echo_handler)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", os.path.join(conf_dir, "key.pem"),
                    "-out", os.path.join(conf_dir, "cert.pem"), "-days", "1",
                    "-subj", "/CN=localhost"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.mkdir(os.path.join(conf_dir, "logs"))
    cfg = os.path.join(conf_dir, "nlb.cfg")
    with open(cfg, "w") as f:
        f.write("""workers = 1;
log = { access = "logs/access.log"; events = "logs/events.log"; };
api = { listen = "127.0.0.1:%d"; tls = { cert = "cert.pem"; key = "key.pem"; }; };
registry = { path = "registry.db"; };
principals = ( { name = "ops"; role = "operator"; token_sha256 = "%s"; } );
target_groups = ( { name = "tg"; targets = ( { address = "%s"; } ); } );
load_balancers = ( { name = "lb"; listeners = (
  { port = %d; target_group = "tg"; bind = "127.0.0.1"; } ); } );
""" % (api, hashlib.sha256(b"t").hexdigest(), backend.address, port))
    proc = subprocess.Popen([NLBD, "-c", os.path.relpath(cfg, elsewhere)],
                            cwd=elsewhere, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        events = os.path.join(conf_dir, "logs", "events.log")
        wait_until(lambda: proc.poll() is not None or (
            os.path.exists(events) and "started" in open(events).read()),
            timeout=10, what="nlbd to start")
        assert proc.poll() is None, proc.stderr.read()
        assert can_connect("127.0.0.1", port)
        wait_until(lambda: os.path.exists(os.path.join(conf_dir,
                                                       "logs/access.log")),
                   what="the access log next to the config")
        assert os.path.exists(os.path.join(conf_dir, "registry.db"))
        assert os.listdir(elsewhere) == [], os.listdir(elsewhere)
        r = subprocess.run(["curl", "-sk", "--http2", "-o", "/dev/null", "-w",
                            "%{http_code}", "https://127.0.0.1:%d/healthz"
                            % api], capture_output=True, text=True, timeout=10)
        assert r.stdout == "200", r
    finally:
        proc.terminate()
        proc.wait(15)
        backend.stop()
        shutil.rmtree(conf_dir, ignore_errors=True)
        shutil.rmtree(elsewhere, ignore_errors=True)


if __name__ == "__main__":
    if not os.path.exists(NLBD):
        print("SKIP: %s is not built" % NLBD)
        raise SystemExit(77)
    run([test_destdir_install_layout, test_reinstall_keeps_a_changed_config,
         test_unit_passes_systemd_analyze_verify, test_default_config_path,
         test_relative_paths_resolve_against_the_config], timeout=300)
