// Large spans on their own (large:: called directly): alignment, the span cache and its bounds,
// reuse without syscalls at steady sizes, splitting and lazy merging of cached spans (also under
// contention), zeroing of recycled and merged spans, in-place growth and shrinking, double-free
// detection, OOM.
#include "large/large.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cerrno>
#include <chrono>
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

// The first 1 MiB block comes from a fresh 8 MiB mapping whose other 6 MiB are cached next to
// it. Freeing the block must not merge its span with that neighbour, and taking it again must not
// split it off again or decommit pages: the steady loop costs no syscall.
TEST(Large, SteadySameSizeReuseMakesNoSyscallMergeOrSplit) {
  collect();
  constexpr size_t kSize = 1 << 20;
  auto* p = static_cast<unsigned char*>(alloc(kSize, 16));
  ASSERT_NE(p, nullptr);
  auto* base = chunk_map::lookup(p).owner<unsigned char>();
  ASSERT_EQ(chunk_map::lookup(base + kChunkSize).owner<unsigned char>(), base + kChunkSize);
  std::memset(p, 0x44, kSize);
  span_free(p);
  hak_stats_t before = stats();
  for (int i = 0; i < 1000; ++i) {
    auto* q = static_cast<unsigned char*>(alloc(kSize, 16));
    ASSERT_EQ(q, p) << i;
    q[0] = q[kSize - 1] = static_cast<unsigned char>(i);
    span_free(q);
    // The cached neighbour is still a span of its own.
    ASSERT_EQ(chunk_map::lookup(base + kChunkSize).owner<unsigned char>(), base + kChunkSize) << i;
  }
  hak_stats_t after = stats();
  EXPECT_EQ(after.os_decommit_calls, before.os_decommit_calls);
  EXPECT_EQ(after.os_map_calls, before.os_map_calls);
  EXPECT_EQ(after.os_unmap_calls, before.os_unmap_calls);
  EXPECT_EQ(after.large_cache_hits - before.large_cache_hits, 1000u);
  collect();
}

// Sizes that need as many granules as the span has: growing ones, and ones that end less than
// 64 KiB before the previous block did, reuse the span without a syscall either.
TEST(Large, ReuseAtSimilarSizesMakesNoSyscall) {
  collect();
  void* p = alloc(300000, 16);
  span_free(p);
  hak_stats_t before = stats();
  std::vector<size_t> sizes;
  for (size_t size = 300000; size < (size_t{1} << 20) + 60000; size += 150000)
    sizes.push_back(size);
  for (int round = 0; round < 100; ++round) {
    for (size_t size : {(size_t{1} << 20) + 60000, size_t{1} << 20, (size_t{1} << 20) + 30000}) {
      sizes.push_back(size);
    }
  }
  for (size_t size : sizes) {
    auto* q = static_cast<unsigned char*>(alloc(size, 16));
    ASSERT_EQ(q, p) << size;
    q[size - 1] = 1;
    span_free(q);
  }
  hak_stats_t after = stats();
  EXPECT_EQ(after.os_decommit_calls, before.os_decommit_calls);
  EXPECT_EQ(after.os_map_calls, before.os_map_calls);
  EXPECT_EQ(after.large_cache_hits - before.large_cache_hits, sizes.size());
  collect();
}

size_t first_nonzero(const unsigned char* p, size_t size) {
  for (size_t i = 0; i < size; ++i) {
    if (p[i] != 0) return i;
  }
  return size;
}

// Blocks asked for zeros over spans recycled as they were, and over cached spans merged when a
// request needed them, whose absorbed headers sat inside the new block.
TEST(Large, ZeroedBlocksFromRecycledAndMergedSpansReadAsZeros) {
  collect();
  constexpr size_t kMiB = size_t{1} << 20;
  auto* p = static_cast<unsigned char*>(alloc(kMiB, 16));
  auto* base = chunk_map::lookup(p).owner<unsigned char>();
  std::memset(p, 0xab, kMiB);
  span_free(p);
  // Two granules: p's span merged with the cached rest of its mapping, whose header sat at
  // base + 2 MiB.
  auto* q = static_cast<unsigned char*>(alloc(3 * kMiB, 16, true));
  ASSERT_EQ(q, p);
  EXPECT_EQ(first_nonzero(q, 3 * kMiB), 3 * kMiB);
  std::memset(q, 0xcd, 3 * kMiB);
  span_free(q);
  // The same size again: the same span, dirty all over, as it is.
  q = static_cast<unsigned char*>(alloc(3 * kMiB, 16, true));
  ASSERT_EQ(q, p);
  EXPECT_EQ(first_nonzero(q, 3 * kMiB), 3 * kMiB);
  std::memset(q, 0xef, 3 * kMiB);
  span_free(q);
  // Four granules: q's span merged with the rest split off it, whose header sits at base + 4 MiB.
  ASSERT_EQ(chunk_map::lookup(base + 4 * kMiB).owner<unsigned char>(), base + 4 * kMiB);
  q = static_cast<unsigned char*>(alloc(7 * kMiB, 16, true));
  ASSERT_EQ(q, p);
  EXPECT_EQ(first_nonzero(q, 7 * kMiB), 7 * kMiB);
  span_free(q);
  collect();
}

// A request too big for any cached span alone takes adjacent freed spans merged, reusing their
// pages, rather than an untouched span of its size.
TEST(Large, ARequestTooBigForEachFreedSpanReusesAdjacentOnes) {
  collect();
  constexpr size_t kMiB = size_t{1} << 20;
  auto* a = static_cast<unsigned char*>(alloc(kMiB, 16));  // [0, 2) MiB of a fresh 8 MiB mapping
  auto* b = static_cast<unsigned char*>(alloc(kMiB, 16));  // [2, 4); [4, 8) stays cached, clean
  ASSERT_EQ(b, a + 2 * kMiB);
  std::memset(a, 1, kMiB);
  std::memset(b, 2, kMiB);
  span_free(a);
  span_free(b);
  hak_stats_t before = stats();
  auto* c = static_cast<unsigned char*>(alloc(3 * kMiB, 16, true));
  hak_stats_t after = stats();
  EXPECT_EQ(c, a);
  EXPECT_EQ(after.os_map_calls, before.os_map_calls);
  EXPECT_EQ(first_nonzero(c, 3 * kMiB), 3 * kMiB);
  span_free(c);
  collect();
}

long thread_page_faults() {
  rusage usage{};
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_minflt;
}

// A request that no cached span or run of neighbours holds gets fresh address space, with the
// resident pages of the cached spans moved under it (mremap): it faults in only the rest. Its
// pages then hold old data, so a zeroed one is cleared.
TEST(Large, AMissMovesTheResidentPagesOfCachedSpansUnderTheBlock) {
  if (!os::kCanRemap) GTEST_SKIP() << "pages are never moved under ThreadSanitizer (os.h)";
  constexpr size_t kMiB = size_t{1} << 20;
  constexpr size_t kOld = 3 * kMiB / 2;
  constexpr size_t kNew = 5 * kMiB;
  for (bool zero : {false, true}) {
    collect();
    // a, then a live separator, then b: the freed a and b are not neighbours.
    auto* a = static_cast<unsigned char*>(alloc(kOld, 16));
    void* separator = alloc(kOld, 16);
    auto* b = static_cast<unsigned char*>(alloc(kOld, 16));
    std::memset(a, 1, kOld);
    std::memset(b, 2, kOld);
    span_free(a);
    span_free(b);
    hak_stats_t before = stats();
    auto* c = static_cast<unsigned char*>(alloc(kNew, 16, zero));
    hak_stats_t after = stats();
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(after.large_cache_misses - before.large_cache_misses, 1u);
    EXPECT_GE(after.os_unmap_calls - before.os_unmap_calls, 2u);  // one move per span
    if (zero) {
      EXPECT_EQ(first_nonzero(c, kNew), kNew);
    } else {
      EXPECT_TRUE(c[0] == 1 || c[0] == 2) << int{c[0]};  // the first page moved, not fresh
    }
    long faults = thread_page_faults();
    std::memset(c, 3, kNew);
    faults = thread_page_faults() - faults;
    // About 3 MiB of the 5 were resident already, so about 2 MiB (512 pages) fault in, against
    // 1280 for fresh pages; the bound leaves room for a sanitizer's shadow pages.
    EXPECT_LT(faults, static_cast<long>(kNew / kPageSize * 3 / 4)) << faults;
    span_free(c);
    span_free(separator);
  }
  collect();
}

// Cached pages no request takes for a whole release delay go back to the OS at the next cache
// operation, however far below the commit limit the cache is.
TEST(Large, CachedPagesIdleForTheReleaseDelayAreDecommitted) {
  collect();
  constexpr size_t kSize = 3 << 20;
  auto* a = static_cast<unsigned char*>(alloc(kSize, 16));
  std::memset(a, 7, kSize);
  span_free(a);
  std::this_thread::sleep_for(std::chrono::milliseconds(options().release_delay_ms + 50));
  hak_stats_t before = stats();
  void* other = alloc(100 << 20, 16);  // a cache operation of another size
  hak_stats_t after = stats();
  // a's span, the one resident cached span, was decommitted (nothing else in that call decommits).
  EXPECT_EQ(after.os_decommit_calls - before.os_decommit_calls, 1u);
  span_free(other);
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
  const uint64_t live_bytes = stats().bytes_in_use;
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
  // The statistics lost no update: every block, resized or not, was counted out.
  EXPECT_EQ(stats().large_spans_live, 0u);
  EXPECT_EQ(stats().bytes_in_use, live_bytes);
  collect();
}

// Threads recycle blocks of a few sizes of one or two granules, mostly taken back as they were
// freed; a block handed out twice shows up as a broken fill pattern.
TEST(Large, SameSizeReuseUnderContentionKeepsBlocksApart) {
  collect();
  hak_stats_t before = stats();
  constexpr int kThreads = 4;
  constexpr int kRounds = 2000;
  static constexpr size_t kSizes[] = {size_t{1} << 20, (size_t{1} << 20) + 60000,
                                      (size_t{2} << 20) - 8192, size_t{3} << 20};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      std::vector<std::pair<unsigned char*, size_t>> live;
      for (int round = 0; round < kRounds; ++round) {
        size_t size = kSizes[static_cast<size_t>(round * 7 + t) % 4];
        auto* p = static_cast<unsigned char*>(alloc(size, 16, round % 5 == 0));
        ASSERT_NE(p, nullptr);
        if (round % 5 == 0) {
          ASSERT_EQ(p[size / 2], 0);
        }
        auto tag = static_cast<unsigned char>(round * 31 + t);
        for (size_t j = 0; j < size; j += 4096) p[j] = tag;
        p[size - 1] = tag;
        live.emplace_back(p, size);
        if (live.size() > 2) {
          auto [q, q_size] = live.front();
          for (size_t j = 0; j < q_size; j += 4096) ASSERT_EQ(q[j], q[0]) << j;
          ASSERT_EQ(q[q_size - 1], q[0]);
          span_free(q);
          live.erase(live.begin());
        }
      }
      for (auto [p, size] : live) span_free(p);
    });
  }
  for (std::thread& thread : threads) thread.join();
  hak_stats_t after = stats();
  EXPECT_EQ(after.large_spans_live, 0u);
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
  EXPECT_EQ(after.large_cache_hits + after.large_cache_misses - before.large_cache_hits -
                before.large_cache_misses,
            uint64_t{kThreads} * kRounds);
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
