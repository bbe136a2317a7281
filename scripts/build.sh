#!/usr/bin/env bash
# Builds nlb out of tree in _build (or _build-san with --sanitizers).
# Prints the build directory on the last line of stdout.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/_build"
configure_flags=()
if [ "${1:-}" = "--sanitizers" ]; then
  build="$top/_build-san"
  configure_flags+=(--enable-sanitizers)
fi
cd "$top"
if [ ! -x configure ] || [ configure.ac -nt configure ]; then
  autoreconf -fi >/dev/null
fi
mkdir -p "$build"
cd "$build"
if [ ! -f Makefile ] || [ "$top/configure" -nt Makefile ]; then
  "$top/configure" -q "${configure_flags[@]}"
fi
make -j"$(nproc)" >/dev/null
echo "$build"
