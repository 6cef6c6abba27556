#!/bin/sh
# cmake configuring a small project with hakmem preloaded; its message and the file it generates
# must carry the expected values (the sha256 of a sorted 3000-item list).
# usage: run_cmake.sh LIBHAKMEM PROGRAMS_DIR WORK_DIR
set -u
lib=$1 programs=$2 work=$3
rm -rf "$work"
expected="3000 8ab4d029648d1ef6ef395b0cb21f59d531fcaa46c82a2d8cf60bedd4d0fbf456"
LD_PRELOAD="$lib" HAKMEM_STATS=1 cmake -S "$programs/cmake_project" -B "$work" >"$work.stdout" \
  2>"$work.stderr"
status=$?
if [ $status -ne 0 ]; then
  echo "FAIL: cmake exited with $status"; cat "$work.stdout" "$work.stderr"; exit 1
fi
if ! grep -q "probe: 3000 items, first item-1000, 60000 chars, sha256 ${expected#3000 }" \
    "$work.stdout"; then
  echo "FAIL: cmake printed something else"; cat "$work.stdout"; exit 1
fi
if [ "$(cat "$work/probe.txt")" != "$expected" ]; then
  echo "FAIL: probe.txt holds '$(cat "$work/probe.txt")'"; exit 1
fi
if ! grep -q '^hakmem stats:' "$work.stderr" || grep -q '^hakmem: ' "$work.stderr"; then
  echo "FAIL: cmake did not run on hakmem, or hakmem complained"; cat "$work.stderr"; exit 1
fi
grep -A7 '^hakmem stats:' "$work.stderr"
echo "PASS: cmake"
