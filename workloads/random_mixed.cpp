// random-mixed: steady-state churn over a fixed working set, modelled on glibc's
// benchtests/bench-malloc-thread.c (per-thread array, random index, free then malloc of a random
// size) with a uniform size range and a fixed iteration count instead of a duration. Every
// iteration frees a random slot and refills it with a block of random size, touching its first and
// last byte. With max <= 1 KiB it measures the tiny fast path under a realistic mix of classes;
// raising --max reaches the mid (e.g. 32K) and large ranges. Ops per thread: W mallocs to fill the
// working set, 2 per iteration (a free and a malloc), W frees at the end: threads * (2*W +
// 2*iterations).
#include <cstdlib>
#include <stdexcept>

#include "common.h"
#include "workload.h"

namespace hakmem::workloads {
namespace {

RunResult run_random_mixed(const RunContext& context) {
  const auto slots = static_cast<std::size_t>(context.integer("slots"));
  const auto min_size = static_cast<std::size_t>(context.integer("min"));
  const auto max_size = static_cast<std::size_t>(context.integer("max"));
  const auto iterations = static_cast<std::uint64_t>(context.integer("iterations"));
  if (slots == 0 || min_size == 0 || min_size > max_size) {
    throw std::invalid_argument("random-mixed needs slots >= 1 and 1 <= min <= max");
  }
  const BlockCheck check(context.verify());

  run_threads(context.threads(), [&](int thread_index) {
    Rng rng(context.seed(), static_cast<std::uint64_t>(thread_index));
    std::vector<void*> blocks(slots);
    std::vector<std::size_t> sizes(slots);
    auto allocate_into = [&](std::size_t slot) {
      const std::size_t size = rng.between(min_size, max_size);
      void* block = std::malloc(size);
      if (block == nullptr) std::abort();
      check.after_malloc(block, size);
      blocks[slot] = block;
      sizes[slot] = size;
    };
    for (std::size_t slot = 0; slot < slots; ++slot) allocate_into(slot);
    for (std::uint64_t i = 0; i < iterations; ++i) {
      const std::size_t slot = rng.below(slots);
      check.before_free(blocks[slot], sizes[slot]);
      std::free(blocks[slot]);
      allocate_into(slot);
    }
    for (std::size_t slot = 0; slot < slots; ++slot) {
      check.before_free(blocks[slot], sizes[slot]);
      std::free(blocks[slot]);
    }
  });

  RunResult result;
  result.ops = static_cast<std::uint64_t>(context.threads()) * (2 * slots + 2 * iterations);
  return result;
}

}  // namespace

Workload make_random_mixed() {
  return Workload{
      "random-mixed",
      "per-thread working set: free a random slot, malloc a random size into it",
      {
          {"slots", std::int64_t{256}, "working-set slots per thread (W)"},
          {"min", std::int64_t{16}, "smallest block size in bytes"},
          {"max", std::int64_t{1024}, "largest block size in bytes (32K reaches mid, 1M large)"},
          {"iterations", std::int64_t{10'000'000}, "free+malloc iterations per thread"},
      },
      run_random_mixed,
  };
}

}  // namespace hakmem::workloads
