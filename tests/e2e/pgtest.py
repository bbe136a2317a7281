"""A PostgreSQL server of the test's own: initdb + pg_ctl in a temporary
directory, listening only on a Unix socket there, run as an unprivileged
user (postgres when the tests run as root), so `make check` needs nothing
running beforehand. Stdlib only.

    with pgtest.Postgres() as pg:
        pg.conninfo          # "host=/tmp/... port=5432 dbname=nlb user=..."
        pg.stop(); pg.start()  # an outage
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_BUILDDIR = os.environ.get("top_builddir") or os.path.dirname(
    os.path.dirname(HERE))


class Unavailable(Exception):
    """No PostgreSQL server binaries here (the reason is the message)."""


def bindir():
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        if out and os.path.exists(os.path.join(out, "initdb")):
            return out
    except (OSError, subprocess.SubprocessError):
        pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    raise Unavailable("no PostgreSQL server (initdb) installed: "
                      "apt-get install postgresql-15")


def _user():
    """The user the server runs as: ourselves, or postgres for root."""
    if os.getuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable("running as root and there is no postgres user")
    return "postgres"


def _as_user(user, argv):
    return (["runuser", "-u", user, "--"] + argv) if user else argv


def _chown(path, user):
    if user:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _template(bin_dir, user):
    """An initdb'd data directory, made once per build tree and copied for
    each server (initdb takes seconds, a copy milliseconds)."""
    base = os.path.join(TOP_BUILDDIR, "tests", "pg-template")
    if os.path.exists(os.path.join(base, "PG_VERSION")):
        return base
    tmp = base + ".tmp%d" % os.getpid()
    os.makedirs(tmp)
    os.chmod(tmp, 0o700)
    _chown(tmp, user)
    r = subprocess.run(_as_user(user, [
        os.path.join(bin_dir, "initdb"), "-D", tmp, "-A", "trust", "-E",
        "UTF8", "--locale=C", "-N"]), capture_output=True, text=True,
        timeout=120)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise Unavailable("initdb failed: " + r.stderr.strip()[-300:])
    try:
        os.rename(tmp, base)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another test made it first
    return base


class Postgres:
    def __init__(self, dbname="nlb"):
        self.bin = bindir()
        self.user = _user()
        self.dir = tempfile.mkdtemp(prefix="nlb-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        shutil.copytree(_template(self.bin, self.user), self.data,
                        symlinks=True)
        os.chmod(self.data, 0o700)
        self.socket_dir = os.path.join(self.dir, "sock")
        os.makedirs(self.socket_dir)
        if self.user:
            for root, dirs, files in os.walk(self.dir):
                for name in dirs + files:
                    _chown(os.path.join(root, name), self.user)
            _chown(self.dir, self.user)
        self.port = 5432
        self.dbname = dbname
        self.running = False
        self.start()
        self._psql("postgres", "CREATE DATABASE %s" % dbname)

    @property
    def conninfo(self):
        return "host=%s port=%d dbname=%s user=%s" % (
            self.socket_dir, self.port, self.dbname, self.user or
            pwd.getpwuid(os.getuid()).pw_name)

    def _pg_ctl(self, *args, timeout=60):
        return subprocess.run(_as_user(self.user, [
            os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-w",
            "-t", "30"] + list(args)), capture_output=True, text=True,
            timeout=timeout)

    def start(self):
        opts = ("-c listen_addresses='' -k %s -p %d -c fsync=off "
                "-c max_connections=100 -c shared_buffers=16MB" %
                (self.socket_dir, self.port))
        r = self._pg_ctl("-o", opts, "-l", os.path.join(self.dir, "log"),
                         "start")
        if r.returncode != 0:
            log = open(os.path.join(self.dir, "log")).read()[-500:]
            raise RuntimeError("pg_ctl start failed: %s %s" % (r.stderr, log))
        self.running = True

    def stop(self, mode="fast"):
        if self.running:
            self._pg_ctl("-m", mode, "stop")
            self.running = False

    def _psql(self, db, sql):
        user = self.user or pwd.getpwuid(os.getuid()).pw_name
        r = subprocess.run([os.path.join(self.bin, "psql"), "-X", "-q",
                            "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir,
                            "-p", str(self.port), "-U", user, "-d", db,
                            "-At", "-c", sql],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("psql: " + r.stderr.strip())
        return r.stdout

    def sql(self, statement):
        """Runs SQL in the test database; returns psql's unaligned text."""
        return self._psql(self.dbname, statement)

    def close(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
