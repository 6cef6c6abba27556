// hakmem-micro: Google Benchmark micro-benchmarks of single allocator operations, run under every
// allocator by the harness (--benchmark_format=json). Items are ops, as in the runner: one malloc,
// calloc, realloc or free is one item, so items_per_second compares directly across benchmarks.
// Every pointer goes through DoNotOptimize (see keep()), since compilers may delete a malloc/free
// pair, and random sizes are drawn before the timed loop.
#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

namespace {

// DoNotOptimize through its read-only overload. With GCC 12 under AddressSanitizer the read-write
// overload (a "+m,r" asm operand) made free() receive a stack address; reading the pointer in an
// asm with a memory clobber is all it takes to keep a malloc/free pair from being deleted.
inline void keep(void* const& block) {
  benchmark::DoNotOptimize(block);
}

constexpr std::int64_t kSizeClasses[] = {16,   32,   64,       128,       256,    512,
                                         1024, 4096, 32 << 10, 256 << 10, 1 << 20};

void malloc_free_pairs(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* block = std::malloc(size);
    keep(block);
    std::free(block);
  }
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(malloc_free_pairs)->ArgName("size")->Apply([](benchmark::internal::Benchmark* b) {
  for (std::int64_t size : kSizeClasses) b->Arg(size);
});
BENCHMARK(malloc_free_pairs)->ArgName("size")->Arg(64)->Threads(2)->Threads(4)->UseRealTime();

// Sizes uniform in [16, 1024], drawn once; the loop walks them in order.
void malloc_free_random_tiny(benchmark::State& state) {
  std::mt19937_64 rng(4141);
  std::uniform_int_distribution<std::size_t> pick(16, 1024);
  std::array<std::size_t, 4096> sizes;
  for (auto& size : sizes) size = pick(rng);
  std::size_t next = 0;
  for (auto _ : state) {
    void* block = std::malloc(sizes[next]);
    keep(block);
    std::free(block);
    next = (next + 1) % sizes.size();
  }
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(malloc_free_random_tiny);

// Allocate a batch (more than any thread cache holds for small sizes), then free it in order.
void batch_alloc_then_free(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const auto batch = static_cast<std::size_t>(state.range(1));
  std::vector<void*> blocks(batch);
  for (auto _ : state) {
    for (void*& block : blocks) {
      block = std::malloc(size);
      keep(block);
    }
    for (void* block : blocks) std::free(block);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(batch) * 2);
}
BENCHMARK(batch_alloc_then_free)
    ->ArgNames({"size", "batch"})
    ->Args({16, 10000})
    ->Args({64, 10000})
    ->Args({256, 10000})
    ->Args({4096, 1000});

// A buffer grown by a fixed step up to a maximum, as a string or vector without reserve() would,
// then freed. Items: every realloc plus the free.
void realloc_growth(benchmark::State& state) {
  const auto max_size = static_cast<std::size_t>(state.range(0));
  const auto step = static_cast<std::size_t>(state.range(1));
  std::vector<std::size_t> sizes;
  for (std::size_t size = step; size <= max_size; size += step) sizes.push_back(size);
  for (auto _ : state) {
    void* block = nullptr;
    for (std::size_t size : sizes) {
      block = std::realloc(block, size);
      keep(block);
    }
    std::free(block);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(sizes.size() + 1));
}
BENCHMARK(realloc_growth)
    ->ArgNames({"max", "step"})
    ->Args({4096, 16})
    ->Args({64 << 10, 1024})
    ->Args({4 << 20, 64 << 10});

void calloc_free_pairs(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* block = std::calloc(1, size);
    keep(block);
    std::free(block);
  }
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(calloc_free_pairs)->ArgName("size")->Arg(64)->Arg(1024)->Arg(32 << 10)->Arg(1 << 20);

// Cross-thread hand-off: threads pair up; the even one of a pair allocates a batch per iteration
// and passes it through a bounded ring, the odd one frees it, so every free is remote. Google
// Benchmark gives every thread the same iteration count, so each run drains its rings completely.
class HandoffRing {
 public:
  static constexpr std::size_t kDepth = 8;
  static constexpr std::size_t kBatch = 64;
  using Batch = std::array<void*, kBatch>;

  Batch* slot_to_fill() {
    const std::uint64_t head = head_.load(std::memory_order_relaxed);
    // Acquire: the consumer's frees of this slot are done before we overwrite it.
    while (head - tail_.load(std::memory_order_acquire) == kDepth) std::this_thread::yield();
    return &slots_[head % kDepth];
  }
  // Release: the pointers written into the slot reach the consumer with the new head.
  void publish() { head_.fetch_add(1, std::memory_order_release); }

  Batch* slot_to_drain() {
    const std::uint64_t tail = tail_.load(std::memory_order_relaxed);
    while (head_.load(std::memory_order_acquire) == tail) std::this_thread::yield();
    return &slots_[tail % kDepth];
  }
  // Release: hands the emptied slot back to the producer.
  void release() { tail_.fetch_add(1, std::memory_order_release); }

 private:
  std::array<Batch, kDepth> slots_{};
  alignas(64) std::atomic<std::uint64_t> head_{0};
  alignas(64) std::atomic<std::uint64_t> tail_{0};
};

void cross_thread_handoff(benchmark::State& state) {
  static std::array<HandoffRing, 8> rings;  // one per pair; enough for Threads(16)
  HandoffRing& ring = rings[static_cast<std::size_t>(state.thread_index() / 2)];
  const bool producer = state.thread_index() % 2 == 0;
  for (auto _ : state) {
    if (producer) {
      HandoffRing::Batch* batch = ring.slot_to_fill();
      for (void*& block : *batch) {
        block = std::malloc(64);
        keep(block);
      }
      ring.publish();
    } else {
      HandoffRing::Batch* batch = ring.slot_to_drain();
      for (void* block : *batch) std::free(block);
      ring.release();
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(HandoffRing::kBatch));
}
BENCHMARK(cross_thread_handoff)->Threads(2)->Threads(4)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
