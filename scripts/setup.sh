#!/usr/bin/env bash
# Makes sure every Debian package the project builds, tests or benchmarks with is installed, and
# that tracefs is mounted (hakbench's system-call counts).
# Root: installs what is missing with apt-get. Not root: prints the exact command and fails.
# Fast (one dpkg-query) when everything is already there.
set -euo pipefail

packages=(
  cmake ninja-build g++ clang libclang-rt-14-dev clang-format
  libjemalloc-dev libgoogle-perftools-dev libmimalloc-dev
  libbenchmark-dev libgtest-dev libgmock-dev
  libcli11-dev libtomlplusplus-dev nlohmann-json3-dev libfmt-dev
  python3-matplotlib python3-numpy valgrind linux-perf
  sqlite3 perl python3
)

# hakbench counts futex and other system calls through kernel tracepoints, which need tracefs.
# A fresh VM may boot without it mounted; then those CSV columns would be NA.
if [ ! -d /sys/kernel/tracing/events ] && [ ! -d /sys/kernel/debug/tracing/events ]; then
  if [ "$(id -u)" -eq 0 ] && [ -d /sys/kernel/tracing ]; then
    mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null ||
      echo "setup: could not mount tracefs: futex and syscall counts will be NA" >&2
  else
    echo "setup: tracefs is not mounted (needs root: mount -t tracefs tracefs /sys/kernel/tracing);" \
      "futex and syscall counts will be NA" >&2
  fi
fi

missing=()
while read -r name status; do
  [ "$status" = "installed" ] || missing+=("$name")
done < <(for p in "${packages[@]}"; do
  s=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  echo "$p ${s:-missing}"
done)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: missing Debian packages: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: not root; install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: installed ${missing[*]}" >&2
