// The public hak_* API against the C standard's malloc rules, in every size range (tiny, pool,
// large): zero sizes, usable sizes, alignment, calloc, realloc, cross-thread frees, thread
// teardown order, injected out-of-memory and the counters.
#include <gtest/gtest.h>
#include <pthread.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "common/chunk_map.h"
#include "hakmem.h"
#include "os/os.h"

namespace {

// One size in the middle and at both edges of every range.
const std::vector<size_t> kSizes = {
    0,    1,    8,    15,    16,     17,     100,    512,    1023,       1024,    1025,
    1500, 4096, 5000, 65536, 100000, 262143, 262144, 262145, 300 * 1024, 1 << 20, (3 << 20) + 5};

// Keeps the compiler from deleting allocation/free pairs.
void escape(void* p) {
  asm volatile("" : : "g"(p) : "memory");
}

hak_stats_t stats() {
  hak_stats_t s{};
  s.struct_size = sizeof s;
  hak_stats(&s);
  return s;
}

// Every byte gets a value that depends on its offset, so any prefix can be checked.
void fill(void* p, size_t size, unsigned char seed) {
  auto* bytes = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<unsigned char>(seed + i * 31);
}

bool check(const void* p, size_t size, unsigned char seed) {
  auto* bytes = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < size; ++i) {
    if (bytes[i] != static_cast<unsigned char>(seed + i * 31)) return false;
  }
  return true;
}

TEST(HakApi, MallocZeroIsAUniqueFreeableBlock) {
  void* a = hak_malloc(0);
  void* b = hak_malloc(0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  hak_free(a);
  hak_free(b);
  hak_free(nullptr);
  EXPECT_EQ(hak_usable_size(nullptr), 0u);
}

TEST(HakApi, EveryRangeGivesAlignedBlocksOfAtLeastTheRequestedSize) {
  for (size_t size : kSizes) {
    void* p = hak_malloc(size);
    ASSERT_NE(p, nullptr) << size;
    escape(p);
    size_t usable = hak_usable_size(p);
    EXPECT_GE(usable, size);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (size >= 16 ? 16 : 8), 0u) << size;
    std::memset(p, 0xEE, usable);  // all of the usable size is the caller's
    EXPECT_NE(hak::chunk_map::lookup(p).kind(), hak::chunk_map::Kind::kNone);
    hak_free(p);
  }
  for (size_t size = 1; size <= 2 * hak::kPoolMaxSize; size += size / 8 + 1) {
    void* p = hak_malloc(size);
    ASSERT_NE(p, nullptr);
    ASSERT_GE(hak_usable_size(p), size);
    hak_free(p);
  }
}

TEST(HakApi, BlocksDoNotOverlap) {
  std::vector<std::pair<void*, size_t>> live;
  for (int round = 0; round < 3; ++round) {
    for (size_t size : kSizes) {
      void* p = hak_malloc(size);
      fill(p, size, static_cast<unsigned char>(live.size()));
      live.emplace_back(p, size);
    }
  }
  for (size_t i = 0; i < live.size(); ++i) {
    EXPECT_TRUE(check(live[i].first, live[i].second, static_cast<unsigned char>(i))) << i;
    hak_free(live[i].first);
  }
}

TEST(HakApi, CallocZeroesRecycledMemoryAndRejectsOverflow) {
  for (size_t size : kSizes) {
    if (size == 0) continue;
    void* dirty = hak_malloc(size);
    std::memset(dirty, 0xFF, size);
    hak_free(dirty);
    auto* p = static_cast<unsigned char*>(hak_calloc(1, size));
    ASSERT_NE(p, nullptr);
    for (size_t i = 0; i < size; ++i) ASSERT_EQ(p[i], 0) << size << " at " << i;
    hak_free(p);
  }
  void* z = hak_calloc(0, 0);
  EXPECT_NE(z, nullptr);
  hak_free(z);
  errno = 0;
  EXPECT_EQ(hak_calloc(SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(hak_calloc(size_t{1} << 33, size_t{1} << 33), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(HakApi, ReallocNullIsMallocAndSizeZeroFrees) {
  void* p = hak_realloc(nullptr, 100);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(hak_usable_size(p), 100u);
  EXPECT_EQ(hak_realloc(p, 0), nullptr);  // freed (glibc's behaviour)
  void* empty = hak_realloc(nullptr, 0);  // malloc(0): a unique freeable block
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(hak_realloc(empty, 0), nullptr);
  // Pool and tiny blocks alike: size 0 frees even though it "fits".
  for (size_t size : {size_t{8}, size_t{5000}}) {
    void* q = hak_malloc(size);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(hak_realloc(q, 0), nullptr) << size;
  }
}

TEST(HakApi, ReallocKeepsTheContentsThroughEveryRange) {
  const size_t steps[] = {10,     700,     1024,    1025,    3000,   70000, 262144,
                          262145, 1 << 20, 5 << 20, 9 << 20, 300000, 2000,  5};
  size_t size = 5;
  void* p = hak_malloc(size);
  fill(p, size, 7);
  for (size_t next : steps) {
    void* q = hak_realloc(p, next);
    ASSERT_NE(q, nullptr) << next;
    size_t kept = size < next ? size : next;
    ASSERT_TRUE(check(q, kept, 7)) << size << " -> " << next;
    EXPECT_GE(hak_usable_size(q), next);
    fill(q, next, 7);
    p = q;
    size = next;
  }
  hak_free(p);
}

TEST(HakApi, ReallocShrinksInPlace) {
  for (size_t size : {size_t{1000}, size_t{200000}, size_t{4} << 20}) {
    void* p = hak_malloc(size);
    fill(p, size, 3);
    void* q = hak_realloc(p, size - size / 4);
    EXPECT_EQ(q, p) << size;
    EXPECT_TRUE(check(q, size - size / 4, 3));
    hak_free(q);
  }
  // A large block shrunk by more than half gives its tail back and stays where it is.
  void* big = hak_malloc(8 << 20);
  hak_stats_t before = stats();
  void* smaller = hak_realloc(big, 3 << 20);
  hak_stats_t after = stats();
  EXPECT_EQ(smaller, big);
  EXPECT_LE(after.bytes_mapped + (4 << 20), before.bytes_mapped);
  hak_free(smaller);
}

// A buffer grown 16 bytes at a time (a string without reserve) moves only after growing by a
// quarter or more: 1 KiB to 64 KiB moves 13 times, against 24 (once per size class) when each
// move asked for just the new size.
TEST(HakApi, ReallocGrowthInSmallStepsMovesRarely) {
  void* p = hak_malloc(1024);
  fill(p, 1024, 5);
  size_t moves = 0, size = 1024;
  for (size_t next = size + 16; next <= 65536; next += 16) {
    void* q = hak_realloc(p, next);
    ASSERT_NE(q, nullptr);
    if (q != p) ++moves;
    ASSERT_TRUE(check(q, 1024, 5)) << next;
    p = q;
    size = next;
  }
  EXPECT_GE(hak_usable_size(p), size);
  EXPECT_LE(moves, 20u);
  hak_free(p);
}

// Past 256 KiB a growing block leaves the pool (whose classes go up to 1 MiB) for a large span,
// where further growth up to its 2 MiB granule happens in place.
TEST(HakApi, ReallocGrowthPast256KiBMovesToALargeSpanAndThenStays) {
  void* p = hak_malloc(200000);
  ASSERT_EQ(hak::chunk_map::lookup(p).kind(), hak::chunk_map::Kind::kPool);
  fill(p, 200000, 6);
  void* q = hak_realloc(p, 300000);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(hak::chunk_map::lookup(q).kind(), hak::chunk_map::Kind::kLarge);
  EXPECT_TRUE(check(q, 200000, 6));
  for (size_t size = 364000; size <= 1800000; size += 64000) {
    EXPECT_EQ(hak_realloc(q, size), q) << size;
  }
  EXPECT_TRUE(check(q, 200000, 6));
  hak_free(q);
}

TEST(HakApi, ReallocFailureLeavesTheBlockIntact) {
  void* p = hak_malloc(5000);
  fill(p, 5000, 9);
  hak::os::inject_map_failures(0);
  errno = 0;
  void* q = hak_realloc(p, size_t{1} << 36);
  hak::os::inject_map_failures(UINT64_MAX);
  EXPECT_EQ(q, nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(check(p, 5000, 9));
  hak_free(p);
}

TEST(HakApi, AlignedAllocHonoursEveryPowerOfTwoUpToFourMiB) {
  for (size_t alignment = 1; alignment <= (size_t{4} << 20); alignment *= 2) {
    for (size_t size : {size_t{0}, size_t{1}, size_t{24}, size_t{700}, size_t{1024}, size_t{3000},
                        size_t{70000}, size_t{262144}, size_t{1} << 20}) {
      void* p = hak_aligned_alloc(alignment, size);
      ASSERT_NE(p, nullptr) << alignment << " " << size;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignment, 0u) << alignment << " " << size;
      EXPECT_GE(hak_usable_size(p), size);
      std::memset(p, 1, size);
      hak_free(p);
    }
  }
  for (size_t bad : {size_t{0}, size_t{3}, size_t{24}, size_t{1000}, SIZE_MAX}) {
    errno = 0;
    EXPECT_EQ(hak_aligned_alloc(bad, 64), nullptr) << bad;
    EXPECT_EQ(errno, EINVAL) << bad;
  }
}

TEST(HakApi, BlocksFreedByAnotherThreadInEveryRange) {
  for (size_t size : kSizes) {
    std::vector<void*> blocks;
    for (int i = 0; i < 64; ++i) {
      void* p = hak_malloc(size);
      fill(p, size, static_cast<unsigned char>(i));
      blocks.push_back(p);
    }
    // The freeing thread's first hakmem call is a free.
    std::thread([&] {
      for (int i = 0; i < 64; ++i) {
        ASSERT_TRUE(check(blocks[i], size, static_cast<unsigned char>(i)));
        hak_free(blocks[i]);
      }
    }).join();
    // And the other way round: a thread allocates, this one frees after it exited.
    std::thread([&] {
      for (int i = 0; i < 64; ++i) blocks[i] = hak_malloc(size);
    }).join();
    for (void* p : blocks) hak_free(p);
  }
}

TEST(HakApi, ManyThreadsTradingBlocksLeaveNothingBehind) {
  hak_collect();
  hak_stats_t before = stats();
  for (int generation = 0; generation < 5; ++generation) {
    constexpr int kThreads = 4;
    std::vector<void*> handoff[kThreads];
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::vector<void*> mine;
        for (int i = 0; i < 3000; ++i) {
          size_t size = kSizes[(i * 7 + t) % (kSizes.size() - 2)];
          void* p = hak_malloc(size);
          fill(p, size, static_cast<unsigned char>(size));
          if (i % 3 == 0) {
            hak_free(p);
          } else {
            mine.push_back(p);
          }
        }
        handoff[t] = std::move(mine);
      });
    }
    for (auto& thread : threads) thread.join();
    threads.clear();
    // Each thread frees what the next one allocated (all of them have exited by now).
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (void* p : handoff[(t + 1) % kThreads]) hak_free(p);
      });
    }
    for (auto& thread : threads) thread.join();
  }
  hak_collect();
  hak_stats_t after = stats();
  // Exited threads' heaps were adopted, not piled up: a bounded amount of pool memory remains.
  EXPECT_LE(after.pool_chunks_live, before.pool_chunks_live + 8);
  EXPECT_EQ(after.large_spans_live, before.large_spans_live);
}

// Frees and allocates from a pthread key destructor that runs after hakmem's own thread
// clean-up (its key is created later, so it is destroyed later).
pthread_key_t g_late_key;
void late_destructor(void* arg) {
  auto* blocks = static_cast<void**>(arg);
  for (size_t i = 0; i < kSizes.size(); ++i) hak_free(blocks[i]);
  for (size_t size : kSizes) {
    void* p = hak_malloc(size);
    EXPECT_NE(p, nullptr);
    std::memset(p, 0x42, size);
    hak_free(p);
    void* aligned = hak_aligned_alloc(4096, size);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned) % 4096, 0u) << size;
    hak_free(aligned);
  }
  hak_free(blocks);
}

TEST(HakApi, FreesAfterThreadCleanUpWorkAndLeakNothing) {
  hak_free(hak_malloc(5000));  // hakmem's key exists before ours
  ASSERT_EQ(pthread_key_create(&g_late_key, late_destructor), 0);
  hak_collect();
  hak_stats_t before = stats();
  for (int generation = 0; generation < 30; ++generation) {
    std::thread([] {
      auto* blocks = static_cast<void**>(hak_malloc(kSizes.size() * sizeof(void*)));
      for (size_t i = 0; i < kSizes.size(); ++i) blocks[i] = hak_malloc(kSizes[i]);
      pthread_setspecific(g_late_key, blocks);
    }).join();
  }
  hak_collect();
  hak_stats_t after = stats();
  EXPECT_LE(after.pool_chunks_live, before.pool_chunks_live + 2);
  EXPECT_EQ(after.large_spans_live, before.large_spans_live);
  pthread_key_delete(g_late_key);
}

TEST(HakApi, OutOfMemoryIsNullAndEnomemInEveryRange) {
  for (size_t size : {size_t{64}, size_t{1024}, size_t{4096}, size_t{200000}, size_t{5} << 20}) {
    std::thread([size] {
      hak_collect();  // no cached span may serve the requests below
      hak::os::inject_map_failures(0);
      std::vector<void*> blocks;
      void* p;
      errno = 0;
      // Caches and free memory serve a while; then every range must fail cleanly.
      while ((p = hak_malloc(size)) != nullptr && blocks.size() < (1u << 20)) blocks.push_back(p);
      int error = errno;
      errno = 0;
      void* c = hak_calloc(1, size);
      int calloc_error = errno;
      errno = 0;
      void* a = hak_aligned_alloc(size_t{1} << 20, size);
      int aligned_error = errno;
      hak::os::inject_map_failures(UINT64_MAX);
      EXPECT_EQ(p, nullptr) << size;
      EXPECT_EQ(error, ENOMEM) << size;
      EXPECT_EQ(c, nullptr) << size;
      EXPECT_EQ(calloc_error, ENOMEM) << size;
      EXPECT_EQ(a, nullptr) << size;
      EXPECT_EQ(aligned_error, ENOMEM) << size;
      EXPECT_LT(blocks.size(), 1u << 20) << size;
      for (void* q : blocks) hak_free(q);
      void* fine = hak_malloc(size);
      EXPECT_NE(fine, nullptr);
      hak_free(fine);
    }).join();
  }
}

TEST(HakApi, StatsCountWhatHappened) {
  hak_stats_t before = stats();
  EXPECT_EQ(before.struct_size, sizeof(hak_stats_t));
  void* big = hak_malloc(2 << 20);
  void* mid = hak_malloc(50000);
  hak_stats_t during = stats();
  EXPECT_EQ(during.large_spans_live, before.large_spans_live + 1);
  EXPECT_GE(during.pool_chunks_live, 1u);
  EXPECT_GE(during.bytes_in_use, before.bytes_in_use + (2 << 20));
  EXPECT_GE(during.bytes_mapped, during.bytes_in_use);
  hak_free(big);
  hak_free(mid);
  void* again = hak_malloc(2 << 20);
  hak_free(again);
  hak_stats_t after = stats();
  EXPECT_GE(after.large_cache_hits, before.large_cache_hits + 1);
  // A caller with an older, smaller struct gets nothing written.
  hak_stats_t small{};
  small.struct_size = 16;
  small.pool_refills = 12345;
  hak_stats(&small);
  EXPECT_EQ(small.pool_refills, 12345u);
}

}  // namespace
