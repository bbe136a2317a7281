"""Runs each libFuzzer target for a bounded time (NLB_FUZZ_SECONDS each,
default 5) from its checked-in seed corpus and dictionary, new inputs going
to a scratch directory; fails when a fuzzer finds a crash, a leak or a
timeout (the input is kept and named), and prints the executions and
coverage each reached. NLB_FUZZ_TARGETS="config api" runs only those. SKIP
when the targets were not built (configure found no clang with
libFuzzer)."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

TOP_BUILDDIR = os.environ.get("top_builddir", ".")
TOP_SRCDIR = os.environ.get("top_srcdir", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TARGETS = ["dns", "config", "proxy_v2", "api", "http1", "h2", "clienthello"]


def run(target, seconds):
    binary = os.path.join(TOP_BUILDDIR, "tests", "fuzz", "fuzz_" + target)
    if not os.access(binary, os.X_OK):
        return None
    fuzz_dir = os.path.join(TOP_SRCDIR, "tests", "fuzz")
    seeds = os.path.join(fuzz_dir, "corpus", target)
    scratch = tempfile.mkdtemp(prefix="nlb-fuzz-%s-" % target)
    artifacts = tempfile.mkdtemp(prefix="nlb-fuzz-%s-found-" % target)
    args = [binary, "-max_total_time=%d" % seconds, "-timeout=30",
            "-rss_limit_mb=2048", "-print_final_stats=1",
            "-artifact_prefix=%s/" % artifacts]
    dictionary = os.path.join(fuzz_dir, target + ".dict")
    if os.path.exists(dictionary):
        args.append("-dict=%s" % dictionary)
    try:
        proc = subprocess.run(args + [scratch, seeds], capture_output=True,
                              text=True, timeout=seconds + 300)
        log = proc.stderr
        if proc.returncode != 0:
            print(log[-6000:])
            found = os.listdir(artifacts)
            print("FAIL: fuzz_%s exited %d; input kept in %s: %s" % (
                target, proc.returncode, artifacts, " ".join(found)))
            return False
        runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
        cov = re.findall(r"cov: (\d+) ft: (\d+)", log)
        print("PASS: fuzz_%s %ds: %s executions, cov %s ft %s, corpus %d" % (
            target, seconds, runs[-1] if runs else "?",
            cov[-1][0] if cov else "?", cov[-1][1] if cov else "?",
            len(os.listdir(scratch))))
        shutil.rmtree(artifacts, ignore_errors=True)
        return True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    seconds = int(os.environ.get("NLB_FUZZ_SECONDS", "5"))
    wanted = os.environ.get("NLB_FUZZ_TARGETS", "").split() or TARGETS
    results = [run(t, seconds) for t in TARGETS if t in wanted]
    if all(r is None for r in results):
        print("SKIP: no libFuzzer target was built")
        return 77
    return 0 if all(r is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
