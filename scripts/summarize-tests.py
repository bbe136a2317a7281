"""Adds up the results of `make check` in the given build directories and
prints one closing line, "N passed, N failed, N skipped". Each test
program's own count is used where its log has one (nlbtest's closing line,
CUnit's run summary); otherwise the program counts as one test."""

import glob
import os
import re
import sys



def print_why(text):
    """The lines after each failing case's "FAIL:" (its traceback), or the
    log's tail when it has none: CI shows only this script's output."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("FAIL: ")]
    if not starts:
        starts = [max(0, len(lines) - 25)]
    for i in starts[:3]:
        for line in lines[i:i + 25]:
            print("    " + line)


passed = failed = skipped = 0
for build in sys.argv[1:]:
    for trs in glob.glob(os.path.join(build, "**", "*.trs"), recursive=True):
        with open(trs) as f:
            result = re.search(r":test-result: (\w+)", f.read()).group(1)
        log = trs[:-4] + ".log"
        text = open(log, errors="replace").read() if os.path.exists(log) else ""
        own = re.findall(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$",
                         text, re.M)
        cunit = re.search(r"^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", text,
                          re.M)
        name = os.path.relpath(log, build)
        if result in ("FAIL", "ERROR", "XPASS"):
            print("failed: %s (%s)" % (name, build))
            print_why(text)
        if own:
            p, f_, s = own[-1]
            passed += int(p)
            failed += int(f_)
            skipped += int(s or 0)
            if result in ("FAIL", "ERROR") and int(f_) == 0:
                failed += 1
        elif cunit:
            passed += int(cunit.group(3))
            failed += int(cunit.group(4))
            if result in ("FAIL", "ERROR") and int(cunit.group(4)) == 0:
                failed += 1
        elif result == "PASS":
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
sys.exit(1 if failed else 0)
