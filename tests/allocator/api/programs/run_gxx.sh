#!/bin/sh
# g++ (and the cc1plus, as and ld it starts) compiling a C++ file with hakmem preloaded; then the
# program it built runs with hakmem preloaded too and must print the expected output.
# usage: run_gxx.sh LIBHAKMEM PROGRAMS_DIR WORK_DIR
set -u
lib=$1 programs=$2 work=$3
mkdir -p "$work"
LD_PRELOAD="$lib" HAKMEM_STATS=1 g++ -std=c++17 -O1 -o "$work/gxx_output" "$programs/gxx_input.cpp" \
  2>"$work/gxx.stderr"
status=$?
if [ $status -ne 0 ]; then
  echo "FAIL: g++ exited with $status"; cat "$work/gxx.stderr"; exit 1
fi
# One report per process that ran on hakmem: the driver, cc1plus, as, collect2, ld.
reports=$(grep -c '^hakmem stats:' "$work/gxx.stderr")
if [ "$reports" -lt 3 ]; then
  echo "FAIL: only $reports processes of the compilation ran on hakmem"; exit 1
fi
if grep -q '^hakmem: ' "$work/gxx.stderr"; then
  echo "FAIL: hakmem complained"; cat "$work/gxx.stderr"; exit 1
fi
echo "g++: $reports processes ran on hakmem"
exec "$programs/run_preloaded.sh" "$lib" "$programs/gxx.expected" "$work/gxx_output"
