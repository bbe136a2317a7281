#!/usr/bin/env python3
"""Registry durability: kill a writer with SIGKILL at random moments and
check that everything it reported as committed survived.

tests/registry/crash_writer performs registry operations in a loop and
prints "committed <op> <id> <state>" after each commit. After every kill
this script checks, with Python's own sqlite3 module, that the store passes
PRAGMA integrity_check, that every reported endpoint exists in a state
reachable from the last state reported for it, that the reported states
appear in its events in that order, and that event sequence numbers have
no gap. The next writer reopens the store through reg_open, so a store
that cannot be reopened fails the test too.

Environment: top_builddir (where crash_writer was built); falls back to
the directory two levels above this script. KILLS (default 60) and SEED
override the defaults.
"""
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

DEADLINE_S = 55.0

# States each state may still reach (itself included).
REACH = {
    "pendingAcceptance": {"pendingAcceptance", "available", "rejected",
                          "deleted", "expired", "failed"},
    "available": {"available", "rejected", "deleted", "failed"},
    "rejected": {"rejected", "deleted"},
    "failed": {"failed", "deleted"},
    "expired": {"expired", "deleted"},
    "deleted": {"deleted"},
}


def writer_path():
    here = os.path.dirname(os.path.abspath(__file__))
    builddir = os.environ.get("top_builddir") or os.path.join(here, "..", "..")
    return os.path.join(builddir, "tests", "registry", "crash_writer")


def run_once(binary, db, seed, delay):
    """Starts the writer, kills it after delay seconds; returns the committed
    lines it printed, its exit status and its stderr."""
    proc = subprocess.Popen([binary, db, str(seed)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    lines = []

    def read():
        for raw in proc.stdout:
            if raw.endswith(b"\n"):
                lines.append(raw.decode().split())

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(delay)
    try:
        proc.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
    reader.join(timeout=10)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.stdout.close()
    return [l for l in lines if l and l[0] == "committed"], proc.returncode, err


def verify(db, services, reported):
    """Returns a list of problems (empty when the store is good)."""
    problems = []
    conn = sqlite3.connect(db, timeout=10)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchall()
        if check != [("ok",)]:
            problems.append("integrity_check: %r" % (check,))
        # Killed while the first open migrated: the migration is one
        # transaction, so the store is empty, and must be if nothing was
        # reported committed.
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "events" not in tables:
            if services or reported:
                problems.append("schema lost with %d services and %d "
                                "endpoints reported" % (len(services),
                                                        len(reported)))
            return problems
        count, low, high = conn.execute(
            "SELECT count(*), min(seq), max(seq) FROM events").fetchone()
        if count and (low != 1 or high != count):
            problems.append("event seq gap: %d events, seq %s..%s"
                            % (count, low, high))
        have_services = {r[0] for r in conn.execute("SELECT id FROM services")}
        for sid in services:
            if sid not in have_services:
                problems.append("service %s lost" % sid)
        states = dict(conn.execute("SELECT id, state FROM endpoints"))
        history = {}
        for ep, state in conn.execute(
                "SELECT endpoint_id, state FROM events ORDER BY seq"):
            history.setdefault(ep, []).append(state)
    finally:
        conn.close()
    for ep, seen in reported.items():
        if ep not in states:
            problems.append("endpoint %s lost (reported %s)" % (ep, seen))
            continue
        if states[ep] not in REACH[seen[-1]]:
            problems.append("endpoint %s is %s, but %s was reported"
                            % (ep, states[ep], seen[-1]))
        # The reported states must be a subsequence of its events.
        events = iter(history.get(ep, []))
        if not all(any(e == s for e in events) for s in seen):
            problems.append("endpoint %s: events %s miss reported %s"
                            % (ep, history.get(ep), seen))
    return problems


def main():
    binary = writer_path()
    if not os.access(binary, os.X_OK):
        print("crash_writer not built: %s" % binary)
        return 1
    kills = int(os.environ.get("KILLS", "60"))
    seed = int(os.environ.get("SEED", str(int(time.time()))))
    rng = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="nlb-durability-")
    db = os.path.join(tmp, "registry.db")
    services = set()
    reported = {}
    n_ops = 0
    done = 0
    start = time.monotonic()
    ok = True
    try:
        for i in range(kills):
            if time.monotonic() - start > DEADLINE_S:
                print("deadline reached after %d kills" % done)
                ok = done >= 50
                break
            # Mostly mid-loop, sometimes while opening or migrating.
            delay = rng.choice([rng.uniform(0.0, 0.03),
                                rng.uniform(0.03, 0.4),
                                rng.uniform(0.03, 0.4)])
            lines, rc, err = run_once(binary, db, rng.randrange(1 << 30), delay)
            if rc != -signal.SIGKILL:
                print("kill %d: writer exited with %s before the kill: %s"
                      % (i, rc, err.strip()))
                ok = False
                break
            for _, op, oid, state in lines:
                n_ops += 1
                if op == "service":
                    services.add(oid)
                else:
                    reported.setdefault(oid, []).append(state)
            problems = verify(db, services, reported)
            done += 1
            if problems:
                print("kill %d (%.3f s, %d ops reported): %d problems"
                      % (i, delay, len(lines), len(problems)))
                for p in problems[:20]:
                    print("  " + p)
                ok = False
                break
        if ok:
            # A last run to the end proves the store still opens and works.
            res = subprocess.run([binary, db, "1", "20"], capture_output=True,
                                 timeout=30)
            if res.returncode != 0:
                print("final clean run failed: %s" % res.stderr.decode())
                ok = False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("registry durability: %d kills, %d committed ops reported, "
          "%d endpoints verified, %.1f s, seed %d: %s"
          % (done, n_ops, len(reported), time.monotonic() - start, seed,
             "ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
