#!/usr/bin/env python3
"""End to end, what keeps two nlbd apart and what bounds a wait on the
registry's store.

- A second nlbd on a SQLite registry the first holds, named through a
  symbolic link or a hard link, exits 1 with `registry FILE is in use by
  another nlbd (pid N)`; the first keeps its endpoints (available, flows
  served) and keeps serving.
- A second nlbd with the same node name on one PostgreSQL registry exits 1
  naming the holder; once the holder stops (SIGTERM, or SIGKILL: the name
  goes with its session) the name can be taken.
- Another program holding the SQLite file's write lock, or a psql session
  holding the counter row's lock (every write takes it first): a write
  through the API answers 503 StoreUnavailable within registry.write_timeout
  and is never applied, and reads answer at once (they run on a connection
  of their own).

PostgreSQL comes from pgtest (a server of the test's own); the tests that
need it say SKIP without it."""

import hashlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nlbtest  # noqa: E402
import pgtest  # noqa: E402
from apitest import NlbdApi, token  # noqa: E402
from nlbtest import (Nlbd, Server, Skip, api_request, echo_handler,  # noqa
                     free_port, run, wait_until)


def call(port, method, path, who, body=None, timeout=40):
    return api_request(port, method, path, token(who), body, timeout)


def echoes(address, port):
    try:
        with socket.create_connection((address, port), timeout=2) as s:
            s.sendall(b"ping")
            return nlbtest.recv_exact(s, 4) == b"ping"
    except OSError:
        return False


def refused_start(n, timeout=15):
    """Runs n's nlbd, which should refuse to start; (exit status, stderr),
    or (None, stderr) when it was still running after timeout seconds
    (then stopped with SIGTERM, as an operator would)."""
    proc = subprocess.Popen([nlbtest.NLBD, "-c", n.config_path],
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        return None, err


# ---- SQLite: one nlbd per database file, whatever the path ----------------

def test_second_nlbd_through_a_link_is_refused():
    with NlbdApi() as api:
        status, svc = call(api.port, "POST", "/v1/services", "payments", {
            "name": "payments-api", "load_balancer": "payments-lb",
            "acceptance_required": False, "allowed_principals": ["shop"]})
        assert status == 201, (status, svc)
        status, ep = call(api.port, "POST", "/v1/endpoints", "shop", {
            "service": "payments-api", "network": "host"})
        assert status == 201 and ep["state"] == "available", (status, ep)
        wait_until(lambda: echoes(ep["address"], api.lb_port), timeout=10,
                   what="the endpoint to echo")
        db = os.path.join(api.dir, "registry.db")
        links = tempfile.mkdtemp(prefix="nlb-links-", dir=os.path.dirname(
            api.dir))
        try:
            symlink = os.path.join(links, "via-symlink.db")
            os.symlink(db, symlink)
            hardlink = os.path.join(links, "via-hardlink.db")
            os.link(db, hardlink)
            for path in (symlink, hardlink):
                # The first one's config on the other name, with an API
                # port of its own (so nothing but the registry stops it).
                config = open(api.nlbd.config_path).read().split("\n", 2)[2]
                second = Nlbd(config.replace(db, path).replace(
                    "127.0.0.1:%d" % api.port, "127.0.0.1:%d" % free_port()))
                try:
                    started = time.monotonic()
                    rc, err = refused_start(second)
                    took = time.monotonic() - started
                finally:
                    shutil.rmtree(second.dir, ignore_errors=True)
                want = "registry %s is in use by another nlbd (pid %d)" % (
                    path, api.nlbd.proc.pid)
                print("%s: exit %s after %.2fs: %s" % (
                    os.path.basename(path), rc, took, err.strip()))
                assert rc == 1, (rc, err)
                assert want in err, err
                # The refused one is gone (nothing left to signal); the
                # first is untouched: its endpoint is still available,
                # its placement open, and it serves flows.
                assert api.alive()
                status, got = call(api.port, "GET",
                                   "/v1/endpoints/" + ep["id"], "shop")
                assert status == 200 and got["state"] == "available", got
                assert [p["state"] for p in got["placements"]] == [
                    "open"], got
                assert echoes(ep["address"], api.lb_port)
            # A while later, still: nothing the refused ones did reaches
            # the first (no drain, no failure).
            time.sleep(1.5)
            assert api.alive()
            assert echoes(ep["address"], api.lb_port)
            status, got = call(api.port, "GET", "/v1/endpoints/" + ep["id"],
                               "shop")
            assert status == 200 and got["state"] == "available", got
            assert "asked to drain" not in api.log()
            assert "shutdown" not in api.nlbd.events()
        finally:
            shutil.rmtree(links, ignore_errors=True)


def test_sqlite_file_locked_elsewhere_bounds_writes():
    """Another program holding the SQLite file's write lock (sqlite3 with
    BEGIN IMMEDIATE): writes answer 503 after registry.write_timeout and
    are never applied; reads go on."""
    with NlbdApi(registry_extra='write_timeout = "2s";') as api:
        db = sqlite3.connect(os.path.join(api.dir, "registry.db"),
                             isolation_level=None, timeout=10)
        db.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            status, body = call(api.port, "POST", "/v1/services",
                                "payments", {"name": "late",
                                             "load_balancer": "payments-lb"})
            wrote = time.monotonic() - started
            started = time.monotonic()
            read, _ = call(api.port, "GET", "/v1/services", "payments")
            took = time.monotonic() - started
            print("sqlite: write %d after %.2fs, read %d in %.2fs" % (
                status, wrote, read, took))
            assert status == 503, (status, body)
            assert body["error"]["code"] == "StoreUnavailable", body
            assert 1.5 <= wrote <= 4.0, wrote
            assert read == 200 and took <= 2.0, (read, took)
        finally:
            db.execute("ROLLBACK")
            db.close()
        # Writes run one after the other: once this one is in, the refused
        # one will never be.
        status, body = call(api.port, "POST", "/v1/services", "payments",
                            {"name": "after", "load_balancer": "payments-lb"})
        assert status == 201, (status, body)
        status, _ = call(api.port, "GET", "/v1/services/late", "payments")
        assert status == 404


# ---- PostgreSQL ----------------------------------------------------------

NODE_CFG = """shutdown_timeout = "2s";
node = { name = "%(node)s"; };
api = { listen = "127.0.0.1:%(api)d"; };
registry = { postgresql = "%(conninfo)s"; %(registry_extra)s };
principals = (
%(principals)s
);
target_groups = (
  { name = "tg"; targets = ( { address = "127.0.0.1:%(backend)d"; } ); }
);
load_balancers = (
  { name = "lb"; listeners = (
    { port = %(lb)d; target_group = "tg"; bind = "127.0.0.1"; } ); }
);
"""


class PgNodes:
    """nlbd nodes on one PostgreSQL of the test's own, each with its own
    API and LB ports."""

    def __init__(self, registry_extra=""):
        try:
            self.pg = pgtest.Postgres()
        except pgtest.Unavailable as e:
            raise Skip(str(e))
        self.registry_extra = registry_extra
        self.backend = Server(echo_handler)
        self.nodes = []

    def node(self, name):
        """An Nlbd (not started) named name; .api_port is its API."""
        principals = ",\n".join(
            '  { name = "%s"; role = "%s"; token_sha256 = "%s"; }' % (
                who, role, hashlib.sha256(token(who).encode()).hexdigest())
            for who, role in (("ops", "operator"), ("payments", "provider")))
        api_port = free_port()
        n = Nlbd(NODE_CFG % {
            "node": name, "api": api_port, "conninfo": self.pg.conninfo,
            "registry_extra": self.registry_extra, "principals": principals,
            "backend": self.backend.port, "lb": free_port()})
        n.api_port = api_port
        self.nodes.append(n)
        return n

    def start(self, name):
        return self.node(name).start(wait_port=None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for n in self.nodes:
            n.kill()
        self.backend.stop()
        self.pg.close()


def test_duplicate_node_name_is_refused():
    with PgNodes() as c:
        first = c.start("twin")
        wait_until(lambda: call(first.api_port, "GET", "/v1/nodes",
                                "ops")[0] == 200, what="first node's API")
        rc, err = refused_start(c.node("twin"))
        print("duplicate name: exit %s: %s" % (rc, err.strip()))
        assert rc == 1, (rc, err)
        assert "node name twin is in use" in err, err
        assert "pid %d on" % first.proc.pid in err, err
        # The first goes on, up, not draining.
        time.sleep(1.5)
        assert first.proc.poll() is None
        status, nodes = call(first.api_port, "GET", "/v1/nodes", "ops")
        assert [(x["name"], x["state"]) for x in nodes["nodes"]] == [
            ("twin", "up")], nodes
        assert "asked to drain" not in first.events()
        # Stopped cleanly, the holder lets go of the name.
        assert first.stop() == 0
        second = c.start("twin")
        # Killed, too: the name goes with its session.
        second.proc.send_signal(signal.SIGKILL)
        second.proc.wait(timeout=10)
        third = c.node("twin")
        wait_until(lambda: c.pg.sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND objsubid = 1 AND granted").strip() == "0", timeout=10,
            what="the killed node's session to end")
        third.start()
        assert third.proc.poll() is None
        # Another name is not held by it.
        c.start("other")


def test_held_counter_lock_bounds_waits():
    with PgNodes(registry_extra='write_timeout = "3s";') as c:
        n = c.start("n1")
        wait_until(lambda: call(n.api_port, "GET", "/v1/services",
                                "payments")[0] == 200, what="the API")
        status, body = call(n.api_port, "POST", "/v1/services", "payments",
                            {"name": "before", "load_balancer": "lb"})
        assert status == 201, (status, body)
        holder = subprocess.Popen(
            [os.path.join(c.pg.bin, "psql"), "-X", "-q", "-d",
             c.pg.conninfo, "-c",
             "BEGIN; SELECT last_seq FROM nlb_counter WHERE id = 1"
             " FOR UPDATE; SELECT pg_sleep(15); COMMIT"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: c.pg.sql(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event = 'PgSleep'").strip() == "1",
                timeout=10, what="psql to hold the counter row")
            held = time.monotonic()
            reads = {}

            def read(path, who):
                started = time.monotonic()
                status, _ = call(n.api_port, "GET", path, who)
                reads.setdefault(path, []).append(
                    (status, time.monotonic() - started))
            # Reads while the write waits, and after it was refused.
            during = [threading.Thread(target=read, args=(path, who))
                      for path, who in (("/v1/services", "payments"),
                                        ("/v1/nodes", "ops"),
                                        ("/metrics", "ops"))]
            started = time.monotonic()
            writer = threading.Thread(target=lambda: reads.setdefault(
                "write", call(n.api_port, "POST", "/v1/services",
                              "payments", {"name": "late",
                                           "load_balancer": "lb"})))
            writer.start()
            time.sleep(0.3)
            for t in during:
                t.start()
            writer.join()
            wrote = time.monotonic() - started
            for t in during:
                t.join()
            read("/v1/services/before", "payments")
            status, body = reads["write"]
            print("write answered %d after %.2fs (lock held for %.2fs); "
                  "reads: %s" % (status, wrote, time.monotonic() - held,
                                 {p: ["%d in %.2fs" % r for r in v]
                                  for p, v in reads.items()
                                  if p != "write"}))
            assert status == 503, (status, body)
            assert body["error"]["code"] == "StoreUnavailable", body
            assert 2.5 <= wrote <= 5.0, wrote
            for path, results in reads.items():
                if path == "write":
                    continue
                for status, took in results:
                    assert status == 200 and took <= 3.0, (path, status,
                                                           took)
            assert holder.poll() is None, "the lock was let go too early"
        finally:
            holder.wait(timeout=30)
        # Once the lock is free, writes work; they run one after the other,
        # so once this one is in, the refused one will never be.
        status, body = call(n.api_port, "POST", "/v1/services", "payments",
                            {"name": "after", "load_balancer": "lb"})
        assert status == 201, (status, body)
        status, body = call(n.api_port, "GET", "/v1/services/late",
                            "payments")
        assert status == 404, (status, body)
        names = c.pg.sql("SELECT name FROM services ORDER BY name").split()
        assert names == ["after", "before"], names


if __name__ == "__main__":
    run([test_second_nlbd_through_a_link_is_refused,
         test_sqlite_file_locked_elsewhere_bounds_writes,
         test_duplicate_node_name_is_refused,
         test_held_counter_lock_bounds_waits], timeout=120)
