// Slabs filled to the last block: every tiny class is allocated well past several slabs' worth
// (so each slab's bump cursor reaches its capacity and neighbouring slabs serve the same class),
// then the blocks are checked for overlap directly (sorted by address, each block's usable range
// ends before the next begins) and by pattern, freed by another thread, refilled and checked
// again. A slab capacity or block stride off by one (the bug that corrupted free lists after
// ~100k iterations in hakmem's ancestor) makes the last block of a slab overlap the next slab.
#include <gtest/gtest.h>

#include <algorithm>
#include <latch>
#include <thread>
#include <vector>

#include "hakmem.h"
#include "stress_support.h"

namespace {

using namespace stress;

std::vector<size_t> tiny_class_sizes() {
  hak_stats_t s{};
  s.struct_size = sizeof s;
  hak_stats(&s);
  std::vector<size_t> sizes;
  for (uint32_t c = 0; c < s.tiny_class_count && c < HAK_STATS_MAX_CLASSES; ++c) {
    if (s.tiny_class_size[c] != 0) sizes.push_back(s.tiny_class_size[c]);
  }
  if (sizes.empty()) {  // no class table published: the design's classes
    for (size_t base = 8; base <= 1024; base *= 2) {
      for (size_t q = 0; q < 4 && base + q * base / 4 <= 1024; ++q) {
        size_t c = base < 32 ? base : base + q * base / 4;
        if (sizes.empty() || sizes.back() < c) sizes.push_back(c);
      }
    }
  }
  return sizes;
}

// Blocks of one class, filling ~kSlabsWorth slabs of 64 KiB (the design's slab size; more slabs
// if slabs are smaller).
constexpr size_t kBytesPerClass = 4 * 64 * 1024 + 4096;

void expect_no_overlap(std::vector<Block>& blocks, const char* where) {
  std::sort(blocks.begin(), blocks.end(), [](const Block& a, const Block& b) { return a.p < b.p; });
  for (size_t i = 1; i < blocks.size(); ++i) {
    const auto* prev_end = static_cast<const char*>(blocks[i - 1].p) + blocks[i - 1].usable;
    if (prev_end > static_cast<const char*>(blocks[i].p)) {
      record_failure("%s: block %p (usable %zu) overlaps block %p (usable %zu)", where,
                     blocks[i - 1].p, blocks[i - 1].usable, blocks[i].p, blocks[i].usable);
      return;
    }
  }
}

// Allocates every class to beyond several slabs, checks, frees. Returns the blocks still held
// (the odd ones) for the caller to hand to another thread.
std::vector<Block> fill_every_class(Rng& rng, const std::vector<size_t>& sizes) {
  std::vector<Block> all;
  for (size_t size : sizes) {
    size_t n = kBytesPerClass / size;
    for (size_t i = 0; i < n && !should_stop(); ++i) {
      // Requests that land in this class: the class size itself and one just above the class
      // below it.
      size_t request = i % 2 == 0 ? size : std::max<size_t>(1, size - rng.below(size / 4 + 1));
      all.push_back(allocate(rng, request));
    }
  }
  expect_no_overlap(all, "slab fill");
  for (auto& b : all) check_block(b, "slab fill");
  return all;
}

TEST(SlabFill, EveryClassPastSeveralSlabsNoOverlap) {
  const auto sizes = tiny_class_sizes();
  ASSERT_FALSE(sizes.empty());
  const unsigned threads = 4;
  uint64_t rounds = run_rounds(ops(4), [&](uint64_t round) {
    std::vector<std::vector<Block>> held(threads);
    std::latch filled(threads);
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        Rng rng(mix64(round * 977 + t + 1));
        // All threads fill at once: their slabs interleave in the same SuperSlabs.
        held[t] = fill_every_class(rng, sizes);
        // Free every other block locally (holes in the free lists), keep the rest for the
        // neighbour thread to free remotely.
        std::vector<Block> keep;
        for (size_t i = 0; i < held[t].size(); ++i) {
          if (i % 2 == 0)
            check_and_free(held[t][i], "local free after fill");
          else
            keep.push_back(held[t][i]);
        }
        held[t] = std::move(keep);
        filled.arrive_and_wait();
        // Free the neighbour's blocks (remote frees into full slabs), then fill again: the freed
        // blocks come back through the remote bitmaps.
        for (auto& b : held[(t + 1) % threads]) check_and_free(b, "remote free after fill");
        std::vector<Block> again = fill_every_class(rng, sizes);
        for (auto& b : again) check_and_free(b, "second fill");
      });
    }
    for (auto& w : workers) w.join();
  });
  RecordProperty("rounds", static_cast<int>(rounds));
  EXPECT_EQ(failure_count(), 0u) << failure_summary();
}

}  // namespace
