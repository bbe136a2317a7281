#!/usr/bin/env python3
"""nlbd's RSS over endpoint cycles: create (consumer) -> accept (provider)
-> delete (consumer) through the API, HTTP/1.1 keep-alive (or --fresh: a
new connection per request, as nlbctl makes them). Prints RSS every STEP
cycles after WARMUP cycles, and the spread at the end.

    python3 bench/endpoint_cycles.py [--fresh] [WARMUP [CYCLES [STEP]]]
                                      (default 2000 10000 1000)

Run from the source tree after building (_build/nlbd, or top_builddir in
the environment). The registry lives in /dev/shm when there is one, so
that fsync does not set the pace (about 200 cycles a second on 2 cores)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
os.environ.setdefault("top_builddir", os.path.join(HERE, "..", "_build"))

import test_endpoint_cycles  # noqa: E402


def main():
    args = sys.argv[1:]
    fresh = "--fresh" in args
    args = [a for a in args if a != "--fresh"]
    warmup, cycles, step = ([int(a) for a in args] + [2000, 10000, 1000][
        len(args):])[:3]
    base, samples, elapsed = test_endpoint_cycles.measure(warmup, cycles,
                                                          step, fresh)
    low = min(kib for _, kib in samples)
    high = max(kib for _, kib in samples)
    print("%d cycles in %.1f s (%.0f a second): RSS %d KiB after warm-up, "
          "then %d to %d KiB (%+.1f%% to %+.1f%%)" % (
              cycles, elapsed, cycles / elapsed, base, low, high,
              100.0 * (low - base) / base, 100.0 * (high - base) / base))


if __name__ == "__main__":
    main()
