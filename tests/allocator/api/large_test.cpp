// Large spans on their own (large:: called directly): alignment, the span cache and its bounds,
// splitting and merging of cached spans (also under contention), zeroing of recycled spans,
// in-place growth and shrinking, double-free detection, OOM.
#include "large/large.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "common/chunk_map.h"
#include "common/options.h"
#include "os/os.h"

namespace hak::large {
namespace {

void span_free(void* p) {
  chunk_map::Entry entry = chunk_map::lookup(p);
  ASSERT_EQ(entry.kind(), chunk_map::Kind::kLarge) << p;
  free(p, entry);
}

size_t span_usable(void* p) {
  return usable_size(p, chunk_map::lookup(p));
}

hak_stats_t stats() {
  hak_stats_t s{};
  os::fill_stats(&s);
  fill_stats(&s);
  return s;
}

TEST(Large, BlocksAreAlignedUsableAndRegistered) {
  for (size_t alignment = 16; alignment <= (size_t{8} << 20); alignment *= 4) {
    for (size_t size : {size_t{1}, size_t{300000}, size_t{5} << 20}) {
      void* p = alloc(size, alignment);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignment, 0u) << alignment;
      EXPECT_GE(span_usable(p), size);
      std::memset(p, 0x33, size);
      span_free(p);
    }
  }
}

TEST(Large, AFreedSpanIsReusedWithoutANewMapping) {
  collect();
  void* p = alloc(1 << 20, 16);
  span_free(p);
  hak_stats_t before = stats();
  for (int i = 0; i < 100; ++i) {
    void* q = alloc(1 << 20, 16);
    ASSERT_EQ(q, p);
    span_free(q);
  }
  hak_stats_t after = stats();
  EXPECT_EQ(after.os_map_calls, before.os_map_calls);
  EXPECT_EQ(after.large_cache_hits - before.large_cache_hits, 100u);
  collect();
}

TEST(Large, ASmallBlockFromABigCachedSpanLeavesTheRestCached) {
  collect();
  auto* big = static_cast<unsigned char*>(alloc(7 << 20, 16));
  std::memset(big, 0x5a, 7 << 20);
  span_free(big);
  hak_stats_t before = stats();
  // Both come out of the freed 8 MiB span, at granule boundaries, without a new mapping.
  auto* small = static_cast<unsigned char*>(alloc(300000, 16, true));
  auto* other = static_cast<unsigned char*>(alloc(3 << 20, 16, true));
  hak_stats_t after = stats();
  EXPECT_EQ(after.os_map_calls, before.os_map_calls);
  EXPECT_EQ(after.large_cache_hits - before.large_cache_hits, 2u);
  ASSERT_NE(small, other);
  EXPECT_EQ(chunk_map::lookup(small).owner<void>(),
            chunk_map::lookup(small + 299999).owner<void>());
  EXPECT_NE(chunk_map::lookup(small).owner<void>(), chunk_map::lookup(other).owner<void>());
  // Recycled dirty pages asked for zeros read as zeros.
  for (size_t i = 0; i < 300000; i += 512) ASSERT_EQ(small[i], 0) << i;
  for (size_t i = 0; i < (3 << 20); i += 512) ASSERT_EQ(other[i], 0) << i;
  std::memset(small, 1, 300000);
  std::memset(other, 2, 3 << 20);
  for (size_t i = 0; i < 300000; i += 512) ASSERT_EQ(small[i], 1) << i;
  span_free(small);
  span_free(other);
  collect();
}

TEST(Large, CachedSpansBeyondTheCommitLimitAreDecommitted) {
  collect();
  // Spans of one granule each, dirty to the end: more than the commit limit holds, fewer than
  // the cache limit.
  const size_t size = (size_t{2} << 20) - 8192;
  const int count = static_cast<int>(options().large_commit_mb) / 2 + 4;
  ASSERT_LT(count * 2, static_cast<int>(options().large_cache_mb));
  std::vector<void*> spans;
  for (int i = 0; i < count; ++i) spans.push_back(alloc(size, 16));
  for (void* p : spans) std::memset(p, 0x77, size);
  hak_stats_t before = stats();
  for (void* p : spans) span_free(p);
  hak_stats_t after = stats();
  EXPECT_GE(after.os_decommit_calls - before.os_decommit_calls, 1u);
  EXPECT_EQ(after.os_unmap_calls, before.os_unmap_calls);  // all fit the cache
  // A recycled span asked for zeros reads as zeros, decommitted or not.
  for (int i = 0; i < count; ++i) {
    auto* p = static_cast<unsigned char*>(alloc(size, 16, true));
    for (size_t j = 0; j < size; j += 512) ASSERT_EQ(p[j], 0) << i << " " << j;
    spans[i] = p;
  }
  for (void* p : spans) span_free(p);
  collect();
}

TEST(Large, TheCacheIsBoundedByItsByteLimit) {
  collect();
  std::vector<void*> spans;
  // 3 MiB blocks (4 MiB of address space each) worth almost twice the cache limit.
  const int count = static_cast<int>(options().large_cache_mb) * 2 / 3;
  for (int i = 0; i < count; ++i) spans.push_back(alloc(3 << 20, 16));
  hak_stats_t before = stats();
  for (void* p : spans) span_free(p);
  hak_stats_t after = stats();
  // At most the cache limit stays mapped: the rest was unmapped.
  const uint64_t limit = options().large_cache_mb << 20;
  EXPECT_GE(after.os_unmap_calls - before.os_unmap_calls, 1u);
  EXPECT_GE(before.bytes_mapped - after.bytes_mapped, count * (4ull << 20) - limit);
  collect();
}

// Threads allocate, fill, check and free spans of many sizes at once, so splits, merges,
// decommits and evictions of the shared cache run under contention; a block handed out twice or
// merged while live shows up as a broken fill pattern.
TEST(Large, SplitAndMergeUnderContentionKeepBlocksApart) {
  collect();
  constexpr int kThreads = 4;
  constexpr int kRounds = 300;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      uint64_t x = 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(t + 1);
      auto next = [&x] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
      };
      std::vector<std::pair<unsigned char*, size_t>> live;
      for (int round = 0; round < kRounds; ++round) {
        if (live.size() < 6 && next() % 3 != 0) {
          size_t size = (256 << 10) + next() % (6 << 20);
          auto* p = static_cast<unsigned char*>(alloc(size, 16, next() % 2 == 0));
          ASSERT_NE(p, nullptr);
          auto tag = static_cast<unsigned char>(next());
          std::memset(p, tag, size);
          if (next() % 4 == 0) {  // grow in place where the cache or the OS allows
            size_t grown = size + next() % (2 << 20);
            if (resize_in_place(p, chunk_map::lookup(p), grown)) {
              std::memset(p + size, tag, grown - size);
              size = grown;
            }
          }
          live.emplace_back(p, size);
        } else if (!live.empty()) {
          size_t i = next() % live.size();
          auto [p, size] = live[i];
          for (size_t j = 0; j < size; j += 4096) ASSERT_EQ(p[j], p[0]) << j;
          ASSERT_EQ(p[size - 1], p[0]);
          span_free(p);
          live[i] = live.back();
          live.pop_back();
        }
      }
      for (auto [p, size] : live) span_free(p);
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(stats().large_spans_live, 0u);
  collect();
}

TEST(Large, GrowsAndShrinksInPlaceKeepingTheData) {
  auto* p = static_cast<unsigned char*>(alloc(1 << 20, 16));
  for (size_t i = 0; i < (1 << 20); ++i) p[i] = static_cast<unsigned char>(i * 7);
  // Growth in place needs free address space after the span: not guaranteed, but a fresh
  // span followed by a hole is the common case. Whatever happens, the data must survive.
  bool grew = resize_in_place(p, chunk_map::lookup(p), 6 << 20);
  if (grew) {
    EXPECT_GE(span_usable(p), size_t{6} << 20);
    std::memset(p + (1 << 20), 0x11, 5 << 20);  // the new pages are usable
    EXPECT_EQ(chunk_map::lookup(p + (5 << 20)).kind(), chunk_map::Kind::kLarge);
  }
  ASSERT_TRUE(resize_in_place(p, chunk_map::lookup(p), 512 * 1024));
  EXPECT_LT(span_usable(p), size_t{600} * 1024);
  for (size_t i = 0; i < 512 * 1024; ++i) ASSERT_EQ(p[i], static_cast<unsigned char>(i * 7));
  span_free(p);
}

TEST(Large, GrowingByMovingPagesKeepsTheDataAndTheAlignment) {
  if (!os::kCanRemap) GTEST_SKIP() << "no mremap under ThreadSanitizer (os/os.h)";
  for (size_t alignment : {size_t{16}, size_t{4} << 20}) {
    auto* p = static_cast<unsigned char*>(alloc(3 << 20, alignment));
    for (size_t i = 0; i < (3 << 20); ++i) p[i] = static_cast<unsigned char>(i * 13);
    hak_stats_t before = stats();
    auto* q = static_cast<unsigned char*>(grow_by_moving(p, chunk_map::lookup(p), 20 << 20));
    hak_stats_t after = stats();
    ASSERT_NE(q, nullptr);
    EXPECT_NE(q, p);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % alignment, 0u);
    EXPECT_EQ(chunk_map::lookup(p).kind(), chunk_map::Kind::kNone);  // the old span is gone
    EXPECT_GE(span_usable(q), size_t{20} << 20);
    EXPECT_EQ(after.large_spans_live, before.large_spans_live);
    for (size_t i = 0; i < (3 << 20); ++i) ASSERT_EQ(q[i], static_cast<unsigned char>(i * 13));
    std::memset(q + (3 << 20), 0x22, 17 << 20);
    span_free(q);
  }
}

TEST(Large, OutOfMemoryIsNullAndEnomem) {
  collect();
  os::inject_map_failures(0);
  errno = 0;
  void* p = alloc(7 << 20, 16);
  os::inject_map_failures(UINT64_MAX);
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(errno, ENOMEM);
  if (os::kCanRemap) {  // growing by moving pages is off under ThreadSanitizer (os/os.h)
    void* small = alloc(1 << 20, 16);
    os::inject_map_failures(0);
    errno = 0;
    void* q = grow_by_moving(small, chunk_map::lookup(small), 9 << 20);
    os::inject_map_failures(UINT64_MAX);
    EXPECT_EQ(q, nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_EQ(span_usable(small), (size_t{1} << 20) + 4096 - 64);  // untouched
    span_free(small);
  }
  errno = 0;
  EXPECT_EQ(alloc(SIZE_MAX - 100, 16), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(LargeDeathTest, DoubleFreeIsReported) {
  void* p = alloc(1 << 20, 16);
  span_free(p);
  EXPECT_DEATH(span_free(p), "not a block hakmem allocated");
  collect();
}

}  // namespace
}  // namespace hak::large
