#!/usr/bin/env bash
# The "test" command of the README (and of CI): installs what nlb needs,
# builds it, runs every test (make check) in a plain build and again in an
# ASan+UBSan build, and ends with "N passed, N failed".
#   NLB_TEST_SANITIZERS=0  skip the sanitizer pass
#   NLB_TEST_DISTCHECK=0   skip `make distcheck` (the tarball builds and
#                          passes its module tests and the end-to-end tests
#                          of its own files)
#   NLB_TEST_DEB=0         skip scripts/test-deb.sh (the Debian package is
#                          built, installed, started and purged; root only)
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/install-deps.sh" || exit 1

status=0
builds=("")
[ "${NLB_TEST_SANITIZERS:-1}" = 1 ] && builds+=("--sanitizers")
dirs=()
for flag in "${builds[@]}"; do
  echo "== build ${flag:-(plain)}"
  dir=$("$top/scripts/build.sh" $flag | tail -n 1) || { echo "build failed"; exit 1; }
  dirs+=("$dir")
  echo "== make check in $dir"
  # Build the test programs in parallel, then run the tests one at a time:
  # end-to-end tests measure timing and must not fight over two cores.
  ( cd "$dir" && make -j2 check TESTS= >/dev/null && make -j1 check ) || status=1
done
if [ "${NLB_TEST_DISTCHECK:-1}" = 1 ]; then
  # The tarball must build, install and pass its tests on its own; the
  # passes above already ran every end-to-end test on the same sources, so
  # here the module tests, the fuzz replays and the end-to-end tests that
  # read the tarball's own files (README, examples, the installed layout)
  # are enough, and keep CI's time down.
  dist_tests=$(make -s -C "${dirs[0]}" print-tests | tr ' ' '\n' |
    grep -E '^tests/(unit|fuzz)/|test_(quickstart|install|readme|config_errors)\.py$' |
    tr '\n' ' ')
  echo "== make distcheck in ${dirs[0]} (tests: $dist_tests)"
  ( cd "${dirs[0]}" && make distcheck TESTS="$dist_tests" >distcheck.out 2>&1 ) ||
    { tail -n 40 "${dirs[0]}/distcheck.out"; echo "distcheck failed"; status=1; }
fi
if [ "${NLB_TEST_DEB:-1}" = 1 ]; then
  # Its log and result sit beside make check's, so the summary counts it.
  echo "== scripts/test-deb.sh"
  "$top/scripts/test-deb.sh" >"${dirs[0]}/test-deb.log" 2>&1
  case $? in
    0) result=PASS ;;
    77) result=SKIP ;;
    *) result=FAIL; status=1 ;;
  esac
  printf ':test-result: %s\n' "$result" >"${dirs[0]}/test-deb.trs"
  tail -n 1 "${dirs[0]}/test-deb.log"
fi
python3 "$top/scripts/summarize-tests.py" "${dirs[@]}" || status=1
exit $status
