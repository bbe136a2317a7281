#!/usr/bin/env python3
"""The relay's end-to-end tests again, with forwarding = "sockmap": the
same files (not copies) run with NLB_TEST_FORWARDING=sockmap, which
nlbtest.py writes into every config it gives nlbd. make check-sockmap runs
the whole end-to-end suite that way; this runs, within make check, the
files that exercise the TCP relay most. Skipped where nlbd cannot have the
sockmap (a build without libbpf, no CAP_BPF / CAP_NET_ADMIN)."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nlbtest import HERE, SKIP, Skip  # noqa: E402
import test_sockmap  # noqa: E402

# The relay, its access log and metrics, endpoints (PROXY v2, sources
# denied), and health (a deregistered target's flows drained).
FILES = ["test_balancer.py", "test_logs.py", "test_endpoints.py",
         "test_metrics.py", "test_health.py"]


def main():
    try:
        test_sockmap.need_sockmap()
    except Skip as e:
        print("SKIP: %s" % e)
        return SKIP
    env = dict(os.environ, NLB_TEST_FORWARDING="sockmap")
    failed = []
    for name in FILES:
        print("== %s with forwarding = \"sockmap\"" % name, flush=True)
        r = subprocess.run([sys.executable, os.path.join(HERE, name)],
                           env=env, timeout=1800)
        # 77: every case skipped (a tool this machine lacks).
        if r.returncode not in (0, SKIP):
            failed.append(name)
    print("matrix: %d files, failed: %s" % (len(FILES), failed or "none"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
