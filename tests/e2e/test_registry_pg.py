"""The registry's unit tests (tests/unit/test_registry) again, against a
PostgreSQL server this test starts for itself (pgtest.py)."""

import os
import subprocess
import sys

import nlbtest
import pgtest


def main():
    try:
        pg = pgtest.Postgres()
    except pgtest.Unavailable as e:
        print("SKIP: %s" % e)
        return nlbtest.SKIP
    try:
        env = dict(os.environ, NLB_TEST_PG=pg.conninfo)
        program = os.path.join(nlbtest.TOP_BUILDDIR, "tests", "unit",
                               "test_registry")
        return subprocess.run([program], env=env, timeout=300).returncode
    finally:
        pg.close()


if __name__ == "__main__":
    sys.exit(main())
