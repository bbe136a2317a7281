#!/usr/bin/env bash
# Builds nlb's Debian package (dpkg-buildpackage -us -uc -b) from a copy of
# the source tree in a temporary directory, so the tree stays as it was.
#   scripts/build-deb.sh [OUTDIR]
# puts nlb_VERSION_ARCH.deb (and its .buildinfo and .changes) in OUTDIR (by
# default a new directory under /tmp) and prints the .deb's path on the
# last line. Needs the build dependencies of debian/control (the packages
# of scripts/debian-packages.txt include them) and dpkg-dev, debhelper.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d /tmp/nlb-deb.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/nlb-deb-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
src="$work/nlb"
mkdir "$src"

# The files of the tree as git sees them (tracked or new, not ignored), so
# no build directory or local debris goes in; a tree without git is copied
# without its build directories.
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$top" && git ls-files -z --cached --others --exclude-standard |
     while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
     tar --null -T - -cf -) | tar -xf - -C "$src"
else
  tar -C "$top" --exclude='./_build*' --exclude='./debian/nlb' -cf - . |
    tar -xf - -C "$src"
fi

echo "build-deb: dpkg-buildpackage in $src (log: $out/build.log)" >&2
if ! (cd "$src" &&
      DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
        dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1; then
  tail -n 40 "$out/build.log" >&2
  echo "build-deb: dpkg-buildpackage failed" >&2
  exit 1
fi
mv "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes "$out"/
ls "$out"/nlb_*.deb | tail -n 1
