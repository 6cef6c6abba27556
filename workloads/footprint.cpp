// footprint: fragmentation and memory given back. Each thread builds a heap of mixed sizes — a
// third of its bytes in tiny blocks (8 B-1 KiB), a third mid (1-256 KiB), a third large (256 KiB-4
// MiB), interleaved at random — frees a random 90% of the blocks, then allocates the freed bytes
// again in sizes 1.5x larger, so few new blocks fit the old holes. The runner reads its own
// resident memory: extra reports the live bytes held at the end against the peak and final RSS,
// which is what an allocator that strands free memory in partly used slabs or never unmaps pays
// for. Source: no single published benchmark. It stages the phase change that Johnstone and Wilson
// ("The Memory Fragmentation Problem: Solved?", ISMM 1998) found behind real fragmentation — build,
// free most, rebuild with different sizes — and reports RSS the way mimalloc-bench does beside
// time. Ops: one per malloc and free; every block is freed by the end, so ops = 2 * extra.blocks.
#include <array>
#include <cstdlib>
#include <numeric>
#include <stdexcept>

#include "common.h"
#include "workload.h"

namespace hakmem::workloads {
namespace {

struct SizeRange {
  std::size_t min;
  std::size_t max;
};
constexpr std::array<SizeRange, 3> kRanges = {{
    {8, 1024},                  // tiny
    {1025, 256 * 1024},         // mid
    {256 * 1024 + 1, 4 << 20},  // large
}};

struct Block {
  void* pointer;
  std::size_t size;
  std::size_t range;
};

struct ThreadHeap {
  std::vector<Block> live;
  std::uint64_t mallocs = 0;
  std::uint64_t frees = 0;
};

class HeapBuilder {
 public:
  HeapBuilder(Rng& rng, const BlockCheck& check, ThreadHeap& heap)
      : rng_(rng), check_(check), heap_(heap) {}

  // Allocates blocks until each range has received its byte budget, picking the range of each
  // block with odds proportional to the blocks it still needs, so the ranges stay interleaved.
  // `scale` (in halves) stretches the sizes drawn: 2 = as drawn, 3 = 1.5x.
  void allocate(std::array<std::uint64_t, 3> budget, std::size_t scale_halves) {
    for (;;) {
      std::array<double, 3> weight{};
      for (std::size_t r = 0; r < kRanges.size(); ++r) {
        const double mean = (kRanges[r].min + kRanges[r].max) / 2.0 * scale_halves / 2.0;
        weight[r] = static_cast<double>(budget[r]) / mean;
      }
      const double total = std::accumulate(weight.begin(), weight.end(), 0.0);
      if (total <= 0) return;
      // 53 random bits give a uniform double in [0, total).
      double pick = static_cast<double>(rng_.next() >> 11) * 0x1.0p-53 * total;
      std::size_t range = 0;
      while (range + 1 < kRanges.size() && (weight[range] == 0 || pick >= weight[range])) {
        pick -= weight[range];
        ++range;
      }
      if (budget[range] == 0) continue;  // rounding led past the last range with budget
      const std::size_t size =
          rng_.between(kRanges[range].min, kRanges[range].max) * scale_halves / 2;
      void* pointer = std::malloc(size);
      if (pointer == nullptr) std::abort();
      if (check_.verifying()) {
        check_.after_malloc(pointer, size);
      } else {
        touch_pages(pointer, size);
      }
      heap_.live.push_back(Block{pointer, size, range});
      ++heap_.mallocs;
      budget[range] -= std::min<std::uint64_t>(budget[range], size);
    }
  }

  // Frees `percent` of the live blocks, chosen at random; returns the bytes freed per range.
  std::array<std::uint64_t, 3> free_random(std::uint64_t percent) {
    auto& live = heap_.live;
    for (std::size_t i = live.size(); i > 1; --i) std::swap(live[i - 1], live[rng_.below(i)]);
    const std::size_t to_free = live.size() * percent / 100;
    std::array<std::uint64_t, 3> freed{};
    for (std::size_t i = 0; i < to_free; ++i) {
      const Block& block = live[live.size() - 1 - i];
      check_.before_free(block.pointer, block.size);
      std::free(block.pointer);
      freed[block.range] += block.size;
      ++heap_.frees;
    }
    live.resize(live.size() - to_free);
    return freed;
  }

 private:
  Rng& rng_;
  const BlockCheck& check_;
  ThreadHeap& heap_;
};

RunResult run_footprint(const RunContext& context) {
  const auto total = static_cast<std::uint64_t>(context.integer("total"));
  const auto free_percent = static_cast<std::uint64_t>(context.integer("free_pct"));
  if (free_percent > 100) throw std::invalid_argument("footprint needs free_pct <= 100");
  const BlockCheck check(context.verify());
  const int threads = context.threads();
  const ResidentMemory before = read_resident_memory();

  std::vector<ThreadHeap> heaps(static_cast<std::size_t>(threads));
  run_threads(threads, [&](int index) {
    Rng rng(context.seed(), static_cast<std::uint64_t>(index));
    ThreadHeap& heap = heaps[static_cast<std::size_t>(index)];
    HeapBuilder builder(rng, check, heap);
    const std::uint64_t per_range = total / static_cast<std::uint64_t>(threads) / 3;
    builder.allocate({per_range, per_range, per_range}, 2);
    builder.allocate(builder.free_random(free_percent), 3);
  });

  // Measured with every thread gone: whatever their caches held is the allocator's to give back.
  const ResidentMemory after = read_resident_memory();
  std::uint64_t live_bytes = 0, live_blocks = 0;
  for (const ThreadHeap& heap : heaps) {
    live_blocks += heap.live.size();
    for (const Block& block : heap.live) live_bytes += block.size;
  }
  std::uint64_t mallocs = 0, frees = 0;
  for (ThreadHeap& heap : heaps) {
    for (const Block& block : heap.live) {
      check.before_free(block.pointer, block.size);
      std::free(block.pointer);
      ++heap.frees;
    }
    mallocs += heap.mallocs;
    frees += heap.frees;
  }

  RunResult result;
  result.ops = mallocs + frees;
  result.extra["blocks"] = mallocs;
  result.extra["frees"] = frees;
  result.extra["live_blocks"] = live_blocks;
  result.extra["live_bytes"] = live_bytes;
  result.extra["start_rss_kb"] = before.current_kb;
  result.extra["peak_rss_kb"] = after.peak_kb;
  result.extra["final_rss_kb"] = after.current_kb;
  result.extra["final_rss_over_live"] =
      live_bytes == 0 ? 0.0
                      : static_cast<double>(after.current_kb - before.current_kb) * 1024.0 /
                            static_cast<double>(live_bytes);
  return result;
}

}  // namespace

Workload make_footprint() {
  return Workload{
      "footprint",
      "fragmentation: build a mixed-size heap, free 90% at random, rebuild in other sizes; RSS",
      {
          {"total", std::int64_t{1} << 30, "bytes allocated in the first phase, all threads"},
          {"free_pct", std::int64_t{90}, "percent of blocks freed at random before the rebuild"},
      },
      run_footprint,
  };
}

}  // namespace hakmem::workloads
