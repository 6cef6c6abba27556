// Single-threaded behaviour of the tiny part through the public API: class boundaries, alignment,
// usable size, data integrity, memory really returned, the count invariant, and the refusal of
// invalid, interior and double frees.
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <vector>

#include "common/base.h"
#include "common/options.h"
#include "hakmem.h"
#include "tiny/tiny.h"
#include "tiny_test_util.h"

using namespace hak_test;
using hak::tiny::kClassCount;
using hak::tiny::kClassSizes;

TEST(TinyAlloc, ZeroBytesGivesAUniqueUsableBlock) {
  void* a = hak_malloc(0);
  void* b = hak_malloc(0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_GE(hak_usable_size(a), 1u);
  hak_free(a);
  hak_free(b);
}

TEST(TinyAlloc, EveryClassBoundaryGetsItsClass) {
  for (unsigned c = 0; c < kClassCount; ++c) {
    uint32_t size = kClassSizes[c];
    uint32_t below = c == 0 ? 1 : kClassSizes[c - 1] + 1;
    for (size_t request : {size_t(below), size_t(size - 1), size_t(size)}) {
      void* p = hak_malloc(request);
      ASSERT_NE(p, nullptr) << request;
      EXPECT_EQ(hak_usable_size(p), size) << "request " << request;
      fill(p, hak_usable_size(p), request);
      EXPECT_TRUE(intact(p, hak_usable_size(p), request));
      hak_free(p);
    }
  }
}

TEST(TinyAlloc, UsableSizeCoversEveryRequest) {
  for (size_t request = 0; request <= hak::kTinyMaxSize; ++request) {
    void* p = hak_malloc(request);
    ASSERT_NE(p, nullptr);
    size_t usable = hak_usable_size(p);
    EXPECT_GE(usable, request);
    EXPECT_LE(usable, request < 8 ? 8 : request + request / 4 + 16);
    hak_free(p);
  }
}

TEST(TinyAlloc, AlignmentFollowsTheClassSize) {
  for (unsigned c = 0; c < kClassCount; ++c) {
    std::vector<void*> blocks;
    for (int i = 0; i < 300; ++i) {  // enough to cross slab boundaries for small classes
      void* p = hak_malloc(kClassSizes[c]);
      ASSERT_NE(p, nullptr);
      auto address = reinterpret_cast<uintptr_t>(p);
      EXPECT_EQ(address % 8, 0u);
      if (kClassSizes[c] >= 16) {
        EXPECT_EQ(address % 16, 0u) << kClassSizes[c];
      }
      // Largest power of two dividing the class size: blocks are aligned to it.
      uint32_t natural = kClassSizes[c] & -kClassSizes[c];
      EXPECT_EQ(address % natural, 0u) << kClassSizes[c];
      blocks.push_back(p);
    }
    for (void* p : blocks) hak_free(p);
  }
}

TEST(TinyAlloc, AlignedAllocUpToOneKiBStaysTinyAndAligned) {
  for (size_t alignment = 32; alignment <= 1024; alignment *= 2) {
    for (size_t size : {size_t(1), alignment / 2, alignment, size_t(1000)}) {
      if (size > 1024) continue;
      void* p = hak_aligned_alloc(alignment, size);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignment, 0u) << alignment << " " << size;
      EXPECT_GE(hak_usable_size(p), size);
      hak_free(p);
    }
  }
}

// 16-byte alignment of requests under 16 bytes: the router rounds them up to the 16-byte class.
TEST(TinyAlloc, AlignedAlloc16OfSizesBelow16) {
  for (size_t size = 0; size < 16; ++size) {
    void* p = hak_aligned_alloc(16, size);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u) << size;
    hak_free(p);
  }
}

TEST(TinyAlloc, ManyLiveBlocksKeepTheirContents) {
  const int n = 200000 / kScale;
  Rng rng(1);
  std::vector<std::pair<void*, size_t>> blocks;
  blocks.reserve(n);
  for (int i = 0; i < n; ++i) {
    size_t size = rng.below(hak::kTinyMaxSize + 1);
    void* p = hak_malloc(size);
    ASSERT_NE(p, nullptr);
    fill(p, size, reinterpret_cast<uintptr_t>(p));
    blocks.emplace_back(p, size);
  }
  std::set<void*> distinct;
  for (auto& [p, size] : blocks) {
    ASSERT_TRUE(intact(p, size, reinterpret_cast<uintptr_t>(p))) << p;
    distinct.insert(p);
  }
  EXPECT_EQ(distinct.size(), blocks.size());
  for (size_t i = blocks.size(); i > 1; --i) std::swap(blocks[i - 1], blocks[rng.below(i)]);
  for (size_t i = 0; i < blocks.size(); ++i) {
    auto [p, size] = blocks[i];
    ASSERT_TRUE(intact(p, size, reinterpret_cast<uintptr_t>(p))) << p;
    hak_free(p);
    if (i % 3 == 0) {  // interleave reuse
      void* q = hak_malloc(size);
      ASSERT_NE(q, nullptr);
      fill(q, size, 7);
      ASSERT_TRUE(intact(q, size, 7));
      hak_free(q);
    }
  }
}

TEST(TinyAlloc, EmptySuperSlabsGoBackToTheOsOnCollect) {
  hak_free(hak_malloc(1));  // the heap and the chunk-map leaf stay mapped: count them in `before`
  hak_collect();
  hak_stats_t before = stats();
  // 6 MiB of 1 KiB blocks: at least three SuperSlabs (31 slabs x 64 KiB each).
  std::vector<void*> blocks;
  for (int i = 0; i < 6 * 1024; ++i) {
    void* p = hak_malloc(1024);
    ASSERT_NE(p, nullptr);
    static_cast<char*>(p)[0] = 1;
    blocks.push_back(p);
  }
  hak_stats_t full = stats();
  EXPECT_GE(full.superslabs_live, before.superslabs_live + 3);
  EXPECT_GE(full.bytes_mapped, before.bytes_mapped + 6 * hak::kChunkSize / 2);
  EXPECT_GE(full.bytes_in_use, before.bytes_in_use + 6 * 1024 * 1024 - 64 * 1024);
  for (void* p : blocks) hak_free(p);
  hak_collect();
  hak_stats_t after = stats();
  EXPECT_LE(after.superslabs_live, before.superslabs_live);
  EXPECT_LE(after.bytes_mapped, before.bytes_mapped);
  EXPECT_LT(after.bytes_mapped, full.bytes_mapped);
  EXPECT_GE(after.superslabs_returned, before.superslabs_returned + 3);
  EXPECT_GE(after.os_unmap_calls, before.os_unmap_calls + 3);
  auto census = hak::tiny::testing::census();
  EXPECT_EQ(census.blocks_used, 0u);
  EXPECT_EQ(census.slabs_in_use, 0u);
  EXPECT_EQ(census.invariant_violations, 0u);
}

TEST(TinyAlloc, SlabsServeAnotherClassOnceEmpty) {
  hak_collect();
  std::vector<void*> blocks;
  for (int i = 0; i < 4000; ++i) blocks.push_back(hak_malloc(64));
  hak_stats_t used64 = stats();
  unsigned c64 = hak::tiny::size_to_class(64);
  EXPECT_GE(used64.tiny_slabs_per_class[c64], 3u);
  for (void* p : blocks) hak_free(p);
  blocks.clear();
  hak_collect();
  EXPECT_EQ(stats().tiny_slabs_per_class[c64], 0u);
  uint64_t mapped = stats().bytes_mapped;
  for (int i = 0; i < 100; ++i) blocks.push_back(hak_malloc(512));
  // At most one SuperSlab more (with, in debug builds, its table of live blocks).
  EXPECT_LE(stats().bytes_mapped, mapped + hak::kChunkSize + hak::tiny::kLiveBitsBytes);
  for (void* p : blocks) hak_free(p);
  hak_collect();
}

TEST(TinyAlloc, StatsCountRefillsAndClasses) {
  hak_stats_t s0 = stats();
  std::vector<void*> blocks;
  for (int i = 0; i < 1000; ++i) blocks.push_back(hak_malloc(48));
  for (void* p : blocks) hak_free(p);
  hak_stats_t s1 = stats();
  EXPECT_EQ(s1.tiny_class_count, kClassCount);
  for (unsigned c = 0; c < kClassCount; ++c) EXPECT_EQ(s1.tiny_class_size[c], kClassSizes[c]);
  EXPECT_GT(s1.tiny_refills, s0.tiny_refills);
  EXPECT_GT(s1.tiny_spills, s0.tiny_spills);
  hak_collect();
}

TEST(TinyAlloc, CountInvariantHoldsWithLiveAndCachedBlocks) {
  std::vector<void*> blocks;
  Rng rng(5);
  for (int i = 0; i < 20000 / kScale; ++i) blocks.push_back(hak_malloc(rng.below(1025)));
  for (size_t i = 0; i < blocks.size(); i += 2) hak_free(blocks[i]);
  auto census = hak::tiny::testing::census();
  EXPECT_EQ(census.invariant_violations, 0u);
  uint64_t cached = 0;
  for (unsigned c = 0; c < kClassCount; ++c) cached += hak::tiny::testing::cached_blocks(c);
  // used counts the program's blocks plus the ones in caches and spill queues.
  EXPECT_EQ(census.blocks_used, blocks.size() / 2 + cached + census.blocks_queued);
  for (size_t i = 1; i < blocks.size(); i += 2) hak_free(blocks[i]);
  hak_collect();
  census = hak::tiny::testing::census();
  EXPECT_EQ(census.blocks_used, 0u);
  EXPECT_EQ(census.invariant_violations, 0u);
}

// A burst of frees of one class stays with the thread (its cache and stash) instead of going
// back to the slabs block by block, so the burst of mallocs that follows takes it back without
// touching a slab; a stash not wanted back goes home after kColdTicks slow paths of other classes.
TEST(TinyAlloc, ABurstOfFreesIsStashedAndAgesOut) {
  if (hak::options().check) GTEST_SKIP() << "checked mode has no caches";
  hak_collect();
  unsigned c64 = hak::tiny::size_to_class(64);
  std::vector<void*> burst;
  for (int i = 0; i < 2000; ++i) burst.push_back(hak_malloc(64));
  uint32_t left = hak::tiny::testing::cached_blocks(c64);  // the rest of the last refill
  for (void* p : burst) hak_free(p);
  // 2000 blocks of 64 B (125 KiB) fit the stash: every one is held, none went home.
  EXPECT_EQ(hak::tiny::testing::cached_blocks(c64), left + 2000);
  auto census = hak::tiny::testing::census();
  EXPECT_EQ(census.blocks_used, left + 2000);
  EXPECT_EQ(census.invariant_violations, 0u);
  std::set<void*> freed(burst.begin(), burst.end());
  hak_stats_t before = stats();
  for (void*& p : burst) {
    p = hak_malloc(64);
    ASSERT_TRUE(freed.count(p)) << p;  // the same blocks come back
  }
  // Stash refills are counted as refills, but no slab was carved or drained for them.
  EXPECT_EQ(hak::tiny::testing::census().blocks_used, left + 2000);
  EXPECT_GT(stats().tiny_refills, before.tiny_refills);
  for (void* p : burst) hak_free(p);
  // Slow paths of another class age the stash out: its blocks go back to their slabs.
  for (int round = 0; round < 600; ++round) {
    std::vector<void*> other;
    for (int i = 0; i < 40; ++i) other.push_back(hak_malloc(1024));
    for (void* p : other) hak_free(p);
  }
  EXPECT_LE(hak::tiny::testing::cached_blocks(c64), 2 * hak::tiny::max_batch(c64) + 1);
  hak_collect();
  census = hak::tiny::testing::census();
  EXPECT_EQ(census.blocks_used, 0u);
  EXPECT_EQ(census.invariant_violations, 0u);
}

TEST(TinyAlloc, ARefillFromTheStashTakesBackAWholeCache) {
  if (hak::options().check) GTEST_SKIP() << "checked mode has no caches";
  hak_collect();
  unsigned c64 = hak::tiny::size_to_class(64);
  const uint32_t full_cache = 2 * hak::tiny::max_batch(c64);  // a cache at its cap
  std::vector<void*> burst;
  // Long enough for the class's batch to reach its maximum before the frees, short enough for
  // the stash (kStashBytes) to hold all but the last cache of them.
  for (int i = 0; i < 3000; ++i) burst.push_back(hak_malloc(64));
  for (void* p : burst) hak_free(p);
  hak_stats_t before = stats();
  for (void*& p : burst) p = hak_malloc(64);
  // Each refill of the malloc burst takes back one stashed cache whole (not half of it, a batch;
  // only the first, right after the frees, takes a batch): one refill per full_cache blocks, plus
  // one for that first half and one for the blocks that went home past the stash's bound.
  uint64_t refills = stats().tiny_refills - before.tiny_refills;
  EXPECT_LE(refills, burst.size() / full_cache + 2) << "full cache " << full_cache;
  for (void* p : burst) hak_free(p);
  hak_collect();
  EXPECT_EQ(hak::tiny::testing::census().invariant_violations, 0u);
}

TEST(TinyAlloc, InteriorPointerIsRefusedAndTheBlockStaysIntact) {
  if (hak::kDebugChecks) GTEST_SKIP() << "debug builds abort instead (see the death tests)";
  char* p = static_cast<char*>(hak_malloc(64));
  fill(p, 64, 3);
  EXPECT_EQ(hak_usable_size(p + 8), 0u);
  hak_free(p + 8);  // refused with a message
  hak_free(p + 1);
  EXPECT_TRUE(intact(p, 64, 3));
  void* q = hak_malloc(64);
  EXPECT_NE(q, p + 8);
  EXPECT_NE(q, p + 1);
  hak_free(q);
  hak_free(p);
}

// Death tests re-execute the binary ("threadsafe" style) so that HAKMEM_CHECK is read fresh.
class TinyDeath : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(TinyDeath, DoubleFreeIsFatalNamingTheAddress) {
  EXPECT_DEATH(
      {
        setenv("HAKMEM_CHECK", "1", 1);
        void* p = hak_malloc(40);
        hak_free(p);
        hak_free(p);
      },
      "double free of 0x[0-9a-f]+ \\(tiny class 3, 48-byte blocks\\)");
}

TEST_F(TinyDeath, DoubleFreeAfterOtherTrafficIsFatal) {
  EXPECT_DEATH(
      {
        setenv("HAKMEM_CHECK", "1", 1);
        std::vector<void*> blocks;
        for (int i = 0; i < 100; ++i) blocks.push_back(hak_malloc(100));
        void* victim = blocks[37];
        for (void* p : blocks) hak_free(p);
        for (int i = 0; i < 10; ++i) hak_free(hak_malloc(16));
        hak_free(victim);
      },
      "double free");
}

TEST_F(TinyDeath, InteriorPointerFreeIsFatalInCheckMode) {
  EXPECT_DEATH(
      {
        setenv("HAKMEM_CHECK", "1", 1);
        char* p = static_cast<char*>(hak_malloc(256));
        hak_free(p + 16);
      },
      "not on a block boundary of tiny class 12 \\(256-byte blocks\\)");
}

TEST_F(TinyDeath, HeaderPointerFreeIsFatalInCheckMode) {
  EXPECT_DEATH(
      {
        setenv("HAKMEM_CHECK", "1", 1);
        char* p = static_cast<char*>(hak_malloc(32));
        hak_free(reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~(hak::kChunkSize - 1)));
      },
      "SuperSlab header");
}

TEST_F(TinyDeath, FreeListCorruptionIsFatalInCheckMode) {
  EXPECT_DEATH(
      {
        setenv("HAKMEM_CHECK", "1", 1);
        void* keep = hak_malloc(64);
        void* p = hak_malloc(64);
        hak_free(p);
        *static_cast<void**>(p) = reinterpret_cast<void*>(0x1230);  // a write after free
        for (int i = 0; i < 3; ++i) hak_malloc(64);
        hak_free(keep);
      },
      "free list .*corrupt");
}

TEST_F(TinyDeath, DebugBuildsCatchDoubleFreeWithoutTheOption) {
  if (!hak::kDebugChecks) GTEST_SKIP() << "release builds check only with HAKMEM_CHECK=1";
  EXPECT_DEATH(
      {
        void* p = hak_malloc(24);
        hak_free(p);
        hak_free(p);
      },
      "double free");
}

TEST_F(TinyDeath, CheckModeStillAllocatesCorrectly) {
  EXPECT_EXIT(
      {
        setenv("HAKMEM_CHECK", "1", 1);
        std::vector<void*> blocks;
        bool ok = true;
        for (int i = 0; i < 5000; ++i) {
          size_t size = (i * 37) % 1025;
          void* p = hak_malloc(size);
          fill(p, size, i);
          blocks.push_back(p);
        }
        for (int i = 0; i < 5000; ++i) ok &= intact(blocks[i], (i * 37) % 1025, i);
        for (void* p : blocks) hak_free(p);
        hak_collect();
        ok &= hak::tiny::testing::census().blocks_used == 0;
        _exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// Empty slabs of a SuperSlab that still holds live blocks give their pages back on collect.
TEST(TinyAlloc, EmptySlabsOfABusySuperSlabAreDecommitted) {
  hak_collect();
  std::vector<char*> blocks;
  for (int i = 0; i < 1024; ++i) {  // 16 slabs of 1 KiB blocks, every page touched
    char* p = static_cast<char*>(hak_malloc(1024));
    std::memset(p, 0x5a, 1024);
    blocks.push_back(p);
  }
  char* keep = blocks.front();
  uint64_t decommits = stats().os_decommit_calls;
  for (size_t i = 1; i < blocks.size(); ++i) hak_free(blocks[i]);
  hak_collect();
  EXPECT_GT(stats().os_decommit_calls, decommits);
  // The last block's slab is empty now: its pages are no longer resident.
  char* last_page = reinterpret_cast<char*>(
      hak::align_down(reinterpret_cast<uintptr_t>(blocks.back()), hak::kPageSize));
  if (hak::tiny::slab_of(last_page) != hak::tiny::slab_of(keep)) {
    unsigned char resident = 1;
    if (mincore(last_page, hak::kPageSize, &resident) == 0) {
      EXPECT_EQ(resident & 1, 0);
    } else {
      EXPECT_EQ(errno, ENOMEM);  // its whole SuperSlab went back to the OS: not resident either
    }
  }
  EXPECT_TRUE(std::all_of(keep, keep + 1024, [](char c) { return c == 0x5a; }));
  hak_free(keep);
  // Decommitted slabs serve again, zero-filled or not, with intact contents.
  for (int i = 0; i < 1024; ++i) {
    char* p = static_cast<char*>(hak_malloc(1024));
    std::memset(p, i & 0xff, 1024);
    blocks[i] = p;
  }
  for (int i = 0; i < 1024; ++i) {
    ASSERT_TRUE(
        std::all_of(blocks[i], blocks[i] + 1024, [i](char c) { return c == char(i & 0xff); }));
  }
  for (char* p : blocks) hak_free(p);
  hak_collect();
}

// A slab thinned to a few live blocks gives back its wholly free pages while it keeps serving
// its class; the blocks of those pages serve again, intact, once the slab is needed.
TEST(TinyAlloc, WhollyFreePagesOfAThinnedSlabAreGivenBackAndServeAgain) {
  for (size_t size : {size_t{1024}, size_t{640}}) {  // 4 blocks a page; blocks across pages
    SCOPED_TRACE(size);
    hak_collect();
    const size_t count = 8 * (hak::tiny::kSlabSize / size);  // eight slabs
    std::vector<char*> blocks;
    for (size_t i = 0; i < count; ++i) {
      char* p = static_cast<char*>(hak_malloc(size));
      ASSERT_NE(p, nullptr);
      fill(p, size, i);
      blocks.push_back(p);
    }
    // Every 16th block stays: a page in four holds a live block.
    std::set<char*> kept;
    for (size_t i = 0; i < count; i += 16) kept.insert(blocks[i]);
    uint64_t decommits = stats().os_decommit_calls;
    for (char* p : blocks) {
      if (kept.count(p) == 0) hak_free(p);
    }
    hak_collect();  // the cache and stash go home to their slabs
    EXPECT_GT(stats().os_decommit_calls, decommits);
    // The slab refills carve from keeps its pages; the other seven give back most of theirs.
    size_t pages_per_slab = hak::tiny::kSlabSize / hak::kPageSize;
    EXPECT_GE(pages_not_resident(blocks, kept, size), 7 * pages_per_slab / 2);
    EXPECT_EQ(hak::tiny::testing::census().invariant_violations, 0u);
    for (size_t i = 0; i < count; i += 16) EXPECT_TRUE(intact(blocks[i], size, i));
    // Every freed block serves again, once, with what is written to it.
    std::set<char*> again(kept);
    std::vector<char*> fresh;
    for (size_t i = 0; i < count - kept.size(); ++i) {
      char* p = static_cast<char*>(hak_malloc(size));
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(again.insert(p).second) << "block " << static_cast<void*>(p) << " given twice";
      fill(p, size, count + i);
      fresh.push_back(p);
    }
    for (size_t i = 0; i < fresh.size(); ++i) ASSERT_TRUE(intact(fresh[i], size, count + i));
    for (size_t i = 0; i < count; i += 16) EXPECT_TRUE(intact(blocks[i], size, i));
    auto census = hak::tiny::testing::census();
    EXPECT_EQ(census.invariant_violations, 0u);
    for (char* p : again) hak_free(p);
    hak_collect();
    census = hak::tiny::testing::census();
    EXPECT_EQ(census.blocks_used, 0u);
    EXPECT_EQ(census.invariant_violations, 0u);
  }
}

TEST_F(TinyDeath, DebugBuildsCatchCacheCorruptionWithoutTheOption) {
  if (!hak::kDebugChecks) GTEST_SKIP() << "release builds check only with HAKMEM_CHECK=1";
  EXPECT_DEATH(
      {
        void* p = hak_malloc(64);
        hak_free(p);                                                // into the thread's cache
        *static_cast<void**>(p) = reinterpret_cast<void*>(0x1230);  // a write after free
        hak_malloc(64);
      },
      "free list of tiny class 4 is corrupt: 0x[0-9a-f]+ links to 0x1230");
}
