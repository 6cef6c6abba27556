// cache-scratch: passive false sharing, from the Hoard paper (Berger, McKinley, Blumofe and Wilson,
// ASPLOS 2000) and its cache-scratch benchmark, as run in mimalloc-bench. The main thread allocates
// one small object per worker and hands it over; each worker frees it, then repeatedly allocates an
// object of the same size, writes to it many times and frees it. If the allocator gives the freed
// object (or its neighbours) back to a worker, workers write to one cache line and throughput
// falls. Ops: the main thread's mallocs and the workers' frees of them (2 per thread), plus a
// malloc and a free per iteration: threads * (2 + 2 * iterations). The writes are reported in
// extra.
#include <cstdlib>
#include <stdexcept>

#include "common.h"
#include "workload.h"

namespace hakmem::workloads {
namespace {

RunResult run_cache_scratch(const RunContext& context) {
  const auto size = static_cast<std::size_t>(context.integer("size"));
  const auto iterations = static_cast<std::uint64_t>(context.integer("iterations"));
  const auto writes = static_cast<std::uint64_t>(context.integer("writes"));
  if (size == 0) throw std::invalid_argument("cache-scratch needs size >= 1");
  const BlockCheck check(context.verify());
  const int threads = context.threads();

  // Allocated back to back by one thread, so they likely share cache lines: the trap.
  std::vector<void*> handed(static_cast<std::size_t>(threads));
  for (void*& object : handed) {
    object = std::malloc(size);
    if (object == nullptr) std::abort();
    check.after_malloc(object, size);
  }

  run_threads(threads, [&, size](int index) {
    // size by value: captured by reference it is reloaded after every byte store (a char store
    // may alias it), a load the write loop is not about.
    void* first = handed[static_cast<std::size_t>(index)];
    check.before_free(first, size);
    std::free(first);
    for (std::uint64_t i = 0; i < iterations; ++i) {
      void* object = std::malloc(size);
      if (object == nullptr) std::abort();
      check.after_malloc(object, size);
      // volatile: every write must reach the cache line, as in the original.
      auto* bytes = static_cast<volatile unsigned char*>(object);
      for (std::uint64_t w = 0; w < writes; ++w) {
        for (std::size_t k = 0; k < size; ++k) bytes[k] = static_cast<unsigned char>(bytes[k] + 1);
      }
      if (check.verifying()) {
        // Undo the increments so the check sees the fill pattern if nobody else wrote here.
        for (std::size_t k = 0; k < size; ++k) {
          bytes[k] = static_cast<unsigned char>(bytes[k] - static_cast<unsigned char>(writes));
        }
      }
      check.before_free(object, size);
      std::free(object);
    }
  });

  RunResult result;
  result.ops = static_cast<std::uint64_t>(threads) * (2 + 2 * iterations);
  result.extra["writes"] = static_cast<std::uint64_t>(threads) * iterations * writes * size;
  return result;
}

}  // namespace

Workload make_cache_scratch() {
  return Workload{
      "cache-scratch",
      "passive false sharing: workers free a handed-over object, then allocate and write their own",
      {
          {"size", std::int64_t{8}, "object size in bytes"},
          {"iterations", std::int64_t{1000}, "malloc/write/free iterations per thread"},
          {"writes", std::int64_t{100000}, "passes of writes over each object"},
      },
      run_cache_scratch,
  };
}

}  // namespace hakmem::workloads
