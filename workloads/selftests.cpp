// Internal self-test workloads: processes with a known, simple behaviour that the harness's tests
// run to check what hakbench measures (a crash, lock contention, no futex calls, a timeout, an exit
// code). They are listed by --list-json with "internal": true and hidden from --help.
// selftest-corrupt writes past the pattern of a block on purpose, to test the runner's own --verify
// failure path.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "common.h"
#include "workload.h"

namespace hakmem::workloads {
namespace {

RunResult run_abort(const RunContext&) {
  std::abort();
}

RunResult run_mutex(const RunContext& context) {
  constexpr int kThreads = 4;
  const auto iterations = static_cast<std::uint64_t>(context.integer("iters"));
  std::mutex mutex;
  std::uint64_t counter = 0;
  run_threads(kThreads, [&](int) {
    for (std::uint64_t i = 0; i < iterations; ++i) {
      std::lock_guard lock(mutex);
      ++counter;
    }
  });
  RunResult result;
  result.ops = counter;
  result.extra["threads"] = kThreads;
  return result;
}

RunResult run_idle(const RunContext& context) {
  const auto iterations = static_cast<std::uint64_t>(context.integer("iters"));
  // volatile keeps the loop; nothing in it can block, so the process makes no futex calls.
  volatile std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < iterations; ++i) sum = sum + i;
  RunResult result;
  result.ops = iterations;
  return result;
}

[[noreturn]] RunResult run_hang(const RunContext&) {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

[[noreturn]] RunResult run_exit(const RunContext& context) {
  std::exit(static_cast<int>(context.integer("code")));
}

RunResult run_corrupt(const RunContext& context) {
  constexpr std::size_t kSize = 64;
  const BlockCheck check(context.verify());
  auto* block = static_cast<unsigned char*>(std::malloc(kSize));
  if (block == nullptr) std::abort();
  check.after_malloc(block, kSize);
  // Without --verify no pattern was written: give the block defined contents before the flip.
  if (!context.verify()) std::memset(block, 0, kSize);
  block[kSize / 2] = static_cast<unsigned char>(block[kSize / 2] ^ 0x5A);
  check.before_free(block, kSize);
  std::free(block);
  RunResult result;
  result.ops = 2;
  return result;
}

}  // namespace

std::vector<Workload> make_selftests() {
  std::vector<Workload> selftests = {
      {"selftest-abort", "calls abort()", {}, run_abort},
      {"selftest-mutex",
       "4 threads contend one std::mutex",
       {{"iters", std::int64_t{100000}, "lock/unlock pairs per thread"}},
       run_mutex},
      {"selftest-idle",
       "a plain loop that makes no futex calls",
       {{"iters", std::int64_t{1000000}, "loop iterations"}},
       run_idle},
      {"selftest-hang", "sleeps forever (timeout tests)", {}, run_hang},
      {"selftest-exit",
       "exits with the given code without printing JSON",
       {{"code", std::int64_t{0}, "exit code"}},
       run_exit},
      {"selftest-corrupt", "corrupts one byte of a block: with --verify, exits 3", {}, run_corrupt},
  };
  for (auto& workload : selftests) workload.internal = true;
  return selftests;
}

}  // namespace hakmem::workloads
