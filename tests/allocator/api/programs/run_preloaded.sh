#!/bin/sh
# Runs a program with hakmem preloaded and checks it: exit status 0, stdout exactly as expected,
# and hakmem really was the allocator (HAKMEM_STATS=1 makes it print its counters at exit).
# usage: run_preloaded.sh LIBHAKMEM EXPECTED_STDOUT COMMAND [ARGS...]
set -u
lib=$1 expected=$2
shift 2
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
LD_PRELOAD="$lib" HAKMEM_STATS=1 "$@" >"$out" 2>"$err"
status=$?
if [ $status -ne 0 ]; then
  echo "FAIL: $* exited with $status"; cat "$err"; exit 1
fi
if ! diff -u "$expected" "$out"; then
  echo "FAIL: $* printed something else than $expected"; cat "$err"; exit 1
fi
if ! grep -q '^hakmem stats:' "$err"; then
  echo "FAIL: hakmem was not the allocator of $* (no stats at exit)"; cat "$err"; exit 1
fi
if grep -q '^hakmem: ' "$err"; then
  echo "FAIL: hakmem complained"; cat "$err"; exit 1
fi
grep -A7 '^hakmem stats:' "$err"
echo "PASS: $*"
