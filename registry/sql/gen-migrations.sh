#!/bin/sh
# Writes, on stdout, the C source of the drivers' migrations
# (registry/sql-driver.h): for each NAME=FILE, an array NAME_migrations of
# the migrations in FILE, one string each, and their count
# NAME_n_migrations, as registry/local.mk generates registry/sql-migrations.c.
# In FILE, a line "-- N -> N+1" starts migration N (numbered from 0, in
# order); other lines that start with "--" are comments and stay out of
# the strings, as do empty lines.
#
# Usage: gen-migrations.sh NAME=FILE...
set -eu

echo '/* Generated from registry/sql/ by registry/sql/gen-migrations.sh. */'
echo '#include "registry/sql-driver.h"'
for arg in "$@"; do
  name=${arg%%=*}
  file=${arg#*=}
  echo
  awk -v name="$name" -v file="$file" '
    function fail(why) {
      printf "gen-migrations.sh: %s:%d: %s\n", file, NR, why > "/dev/stderr"
      failed = 1
      exit 1
    }
    BEGIN { printf "const char *const %s_migrations[] = {\n", name; n = 0 }
    /^-- [0-9]+ -> [0-9]+(:|$)/ {
      split($0, v, /[ :]+/)
      if (v[2] != n || v[4] != n + 1)
        fail("migration " n " -> " n + 1 " expected")
      if (n > 0)
        print ","
      printf "    /* %d -> %d */\n", n, n + 1
      n++
      next
    }
    /^[ \t]*--/ || /^[ \t]*$/ { next }
    {
      if (n == 0)
        fail("SQL before the first migration")
      gsub(/\\/, "\\\\")
      gsub(/"/, "\\\"")
      printf "    \"%s\\n\"\n", $0
    }
    END {
      if (failed)
        exit 1
      if (n == 0)
        fail("no migration")
      printf "};\nconst int %s_n_migrations = %d;\n", name, n
    }' "$file"
done
