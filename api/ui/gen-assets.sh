#!/bin/sh
# Writes, on stdout, the C source of the web console's files
# (api/console-assets.h): one byte array per file and one table of name,
# bytes, content type and a strong ETag (from the file's SHA-256), as
# api/local.mk generates api/openapi-doc.c. No build step beyond this: the
# files are served as they are in the tree.
#
# Usage: gen-assets.sh DIR NAME...   (each NAME a file in DIR)
set -eu
dir=$1
shift

echo '/* Generated from api/ui/ by api/ui/gen-assets.sh (api/local.mk). */'
echo '#include "console-assets.h"'
i=0
for name in "$@"; do
  echo
  echo "static const unsigned char asset_$i[] = {"
  od -An -v -tx1 "$dir/$name" | sed -e 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'
  echo '};'
  i=$((i + 1))
done
echo
echo 'const struct api_console_asset api_console_assets[] = {'
i=0
for name in "$@"; do
  case $name in
  *.html) type='text/html; charset=utf-8' ;;
  *.js) type='text/javascript; charset=utf-8' ;;
  *.css) type='text/css; charset=utf-8' ;;
  *)
    echo "gen-assets.sh: no content type for $name" >&2
    exit 1
    ;;
  esac
  case $name in
  *[!A-Za-z0-9._-]*)
    echo "gen-assets.sh: $name: names are [A-Za-z0-9._-]" >&2
    exit 1
    ;;
  esac
  hash=$(sha256sum <"$dir/$name" | cut -c1-32)
  printf '    {"%s", asset_%d, sizeof asset_%d, "%s", "\\"%s\\""},\n' \
    "$name" "$i" "$i" "$type" "$hash"
  i=$((i + 1))
done
echo '};'
echo 'const size_t api_n_console_assets ='
echo '    sizeof api_console_assets / sizeof api_console_assets[0];'
