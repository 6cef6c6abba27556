// larson: the server simulation of Larson and Krishnan, "Memory Allocation for Long-Running Server
// Applications" (ISMM 1998), as run by the published allocator comparisons (mimalloc-bench:
// 5 s, sizes 8-1000 B, 5000 blocks per thread, 100 rounds, seed 4141).
//
// Each thread owns an array of blocks; it repeatedly frees a random one and allocates a new block
// of random size in its place. After `rounds` passes over its array it starts a successor thread
// that inherits the array — blocks and all — and ends. So most frees hit blocks another thread
// allocated, and threads start and exit all the time: it stresses cross-thread free and the
// thread-exit path. A chain of threads sharing one array is a "lineage"; there is one lineage per
// --threads. Ops = mallocs + frees, including the initial fill and the final release of every
// array.
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "common.h"
#include "workload.h"

namespace hakmem::workloads {
namespace {

struct LarsonConfig {
  std::size_t blocks;
  std::size_t min_size;
  std::size_t max_size;
  std::uint64_t rounds;
  BlockCheck check;
};

// One array and the chain of threads that passes it on. The fields below `mutex` are handed from
// thread to thread under that mutex, which is what orders one thread's writes before the next's.
struct Lineage {
  Lineage(std::uint64_t seed, std::uint64_t index) : rng(seed, index) {}

  std::vector<void*> blocks;
  std::vector<std::size_t> sizes;
  Rng rng;
  std::uint64_t mallocs = 0;
  std::uint64_t frees = 0;
  std::uint64_t threads_started = 0;

  std::mutex mutex;
  std::condition_variable finished_cv;
  std::thread current;      // the running thread's handle; joined by its successor or by main
  std::thread predecessor;  // the thread that just handed over; the new thread joins it
  bool finished = false;    // set by the last thread, which starts no successor
};

struct Shared {
  LarsonConfig config;
  std::atomic<bool> stop{false};
};

void lineage_thread(Shared* shared, Lineage* lineage) {
  {
    std::thread predecessor;
    {
      // Taking the mutex waits until the predecessor has finished handing over.
      std::lock_guard lock(lineage->mutex);
      predecessor = std::move(lineage->predecessor);
    }
    if (predecessor.joinable()) predecessor.join();
  }

  const LarsonConfig& config = shared->config;
  const std::uint64_t iterations = config.rounds * config.blocks;
  for (std::uint64_t i = 0; i < iterations; ++i) {
    // Relaxed: the flag only needs to be seen eventually; nothing is published through it.
    if (shared->stop.load(std::memory_order_relaxed)) break;
    const std::size_t victim = lineage->rng.below(config.blocks);
    config.check.before_free(lineage->blocks[victim], lineage->sizes[victim]);
    std::free(lineage->blocks[victim]);
    const std::size_t size = lineage->rng.between(config.min_size, config.max_size);
    void* block = std::malloc(size);
    if (block == nullptr) std::abort();
    config.check.after_malloc(block, size);
    lineage->blocks[victim] = block;
    lineage->sizes[victim] = size;
    ++lineage->frees;
    ++lineage->mallocs;
  }

  std::lock_guard lock(lineage->mutex);
  if (shared->stop.load(std::memory_order_relaxed)) {
    // The last of the lineage: main joins this thread through lineage->current.
    lineage->finished = true;
    lineage->finished_cv.notify_all();
    return;
  }
  // Hand over: this thread's own handle goes to the successor, which joins it.
  lineage->predecessor = std::move(lineage->current);
  ++lineage->threads_started;
  lineage->current = std::thread(lineage_thread, shared, lineage);
}

RunResult run_larson(const RunContext& context) {
  Shared shared{LarsonConfig{static_cast<std::size_t>(context.integer("blocks")),
                             static_cast<std::size_t>(context.integer("min")),
                             static_cast<std::size_t>(context.integer("max")),
                             static_cast<std::uint64_t>(context.integer("rounds")),
                             BlockCheck(context.verify())}};
  const LarsonConfig& config = shared.config;
  if (config.blocks == 0 || config.min_size == 0 || config.min_size > config.max_size) {
    throw std::invalid_argument("larson needs blocks >= 1 and 1 <= min <= max");
  }

  std::vector<std::unique_ptr<Lineage>> lineages;
  for (int t = 0; t < context.threads(); ++t) {
    auto lineage = std::make_unique<Lineage>(context.seed(), static_cast<std::uint64_t>(t));
    // The main thread fills every array, as the original does: the first frees are remote ones.
    lineage->blocks.resize(config.blocks);
    lineage->sizes.resize(config.blocks);
    for (std::size_t i = 0; i < config.blocks; ++i) {
      const std::size_t size = lineage->rng.between(config.min_size, config.max_size);
      void* block = std::malloc(size);
      if (block == nullptr) std::abort();
      config.check.after_malloc(block, size);
      lineage->blocks[i] = block;
      lineage->sizes[i] = size;
      ++lineage->mallocs;
    }
    lineages.push_back(std::move(lineage));
  }

  for (auto& lineage : lineages) {
    std::lock_guard lock(lineage->mutex);
    ++lineage->threads_started;
    lineage->current = std::thread(lineage_thread, &shared, lineage.get());
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(context.real("seconds")));
  shared.stop.store(true, std::memory_order_relaxed);

  RunResult result;
  std::uint64_t mallocs = 0, frees = 0, threads_started = 0;
  for (auto& lineage : lineages) {
    std::thread last;
    {
      std::unique_lock lock(lineage->mutex);
      lineage->finished_cv.wait(lock, [&] { return lineage->finished; });
      last = std::move(lineage->current);
    }
    last.join();
    for (std::size_t i = 0; i < config.blocks; ++i) {
      config.check.before_free(lineage->blocks[i], lineage->sizes[i]);
      std::free(lineage->blocks[i]);
      ++lineage->frees;
    }
    mallocs += lineage->mallocs;
    frees += lineage->frees;
    threads_started += lineage->threads_started;
  }
  result.ops = mallocs + frees;
  result.extra["mallocs"] = mallocs;
  result.extra["frees"] = frees;
  result.extra["threads_started"] = threads_started;
  return result;
}

}  // namespace

Workload make_larson() {
  return Workload{
      "larson",
      "Larson-Krishnan server simulation: random free/malloc, arrays passed to successor threads",
      {
          {"seconds", 5.0, "how long the threads run, in seconds"},
          {"blocks", std::int64_t{5000}, "blocks in each thread's array"},
          {"min", std::int64_t{8}, "smallest block size in bytes"},
          {"max", std::int64_t{1000}, "largest block size in bytes"},
          {"rounds", std::int64_t{100}, "passes over the array before a thread hands it on"},
      },
      run_larson,
  };
}

}  // namespace hakmem::workloads
