// Run recycling in the mid pool (pool:: called directly): a run whose blocks are all free goes back
// to its chunk as free pages that a run of any class may take, frees into those pages are refused,
// and remote frees racing with the owner's sweeps lose no block and corrupt none.
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "common/chunk_map.h"
#include "os/os.h"
#include "pool/pool.h"
#include "pool_test_util.h"

namespace hak::pool {
namespace {

using test::pool_free;
using test::pool_stats;

// p's page is a free page of a live chunk (its run was recycled).
bool on_free_page(const void* p) {
  return chunk_map::lookup(p).kind() == chunk_map::Kind::kPool &&
         chunk_of(p)->page_class[page_of(p)] == kNoClass;
}

// A byte pattern that differs between blocks, written over a whole block and checked word by word.
uint64_t pattern_of(const void* p, size_t size) {
  return (reinterpret_cast<uintptr_t>(p) * 0x9e37'79b9'7f4a'7c15ULL) ^ size;
}
void fill(void* p, size_t size) {
  uint64_t word = pattern_of(p, size);
  for (size_t i = 0; i + 8 <= size; i += 8) std::memcpy(static_cast<char*>(p) + i, &word, 8);
}
bool intact(const void* p, size_t size) {
  uint64_t word = pattern_of(p, size);
  for (size_t i = 0; i + 8 <= size; i += 8) {
    uint64_t seen;
    std::memcpy(&seen, static_cast<const char*>(p) + i, 8);
    if (seen != word) return false;
  }
  return true;
}

// Every other run of 64 KiB blocks (one block, 16 pages, per run) is freed and recycled by a sweep;
// the chunks stay, since each keeps live blocks.
struct HalfFreedRuns {
  std::vector<void*> live;
  std::vector<char*> recycled;  // blocks whose runs are free pages now
};
HalfFreedRuns free_every_other_run() {
  HalfFreedRuns out;
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) {
    blocks.push_back(alloc(60000));
    fill(blocks.back(), 60000);
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (i % 2 == 0) {
      out.live.push_back(blocks[i]);
    } else {
      pool_free(blocks[i]);
    }
  }
  collect();
  for (size_t i = 1; i < blocks.size(); i += 2) {
    if (on_free_page(blocks[i])) out.recycled.push_back(static_cast<char*>(blocks[i]));
  }
  return out;
}

TEST(PoolRecycling, ARunEmptiedInOneClassServesAnotherClass) {
  std::thread([] {
    HalfFreedRuns runs = free_every_other_run();
    // Only a run alone in a chunk with nothing else live goes with its chunk instead.
    ASSERT_GE(runs.recycled.size(), 28u);
    hak_stats_t before = pool_stats();
    hak_stats_t os_before{};
    os::fill_stats(&os_before);
    // 3 KiB blocks take any free page: the heap's free pages are used up before any new page,
    // the recycled runs' included (a cap stops a broken refill from looping for ever).
    std::vector<void*> small;
    while (detail::t_heap->free_pages != 0 && small.size() < 200000) {
      small.push_back(alloc(3000));
      std::memset(small.back(), 0x3c, 3000);
    }
    hak_stats_t after = pool_stats();
    hak_stats_t os_after{};
    os::fill_stats(&os_after);
    EXPECT_EQ(detail::t_heap->free_pages, 0u);
    EXPECT_EQ(after.pool_chunks_live, before.pool_chunks_live);
    EXPECT_EQ(os_after.os_map_calls, os_before.os_map_calls);
    // Every recycled 64 KiB run now holds 3 KiB blocks.
    for (char* run : runs.recycled) {
      EXPECT_FALSE(on_free_page(run)) << static_cast<void*>(run);
      bool used = false;
      for (void* p : small) used |= p >= run && p < run + 65536;
      EXPECT_TRUE(used) << static_cast<void*>(run);
    }
    for (void* p : small) pool_free(p);
    for (void* p : runs.live) pool_free(p);
  }).join();
}

TEST(PoolRecycling, CollectDecommitsFreePagesOnce) {
  std::thread([] {
    collect();  // what earlier tests left free is decommitted before we count
    hak_stats_t before{};
    os::fill_stats(&before);
    HalfFreedRuns runs = free_every_other_run();
    hak_stats_t after{};
    os::fill_stats(&after);
    // At most one call per recycled run (adjacent ones share one), none for their blocks.
    EXPECT_GE(after.os_decommit_calls - before.os_decommit_calls, 1u);
    EXPECT_LE(after.os_decommit_calls - before.os_decommit_calls, runs.recycled.size());
    collect();
    hak_stats_t again{};
    os::fill_stats(&again);
    EXPECT_EQ(again.os_decommit_calls, after.os_decommit_calls);
    for (void* p : runs.live) {
      EXPECT_TRUE(intact(p, 60000)) << p;
      pool_free(p);
    }
  }).join();
}

TEST(PoolRecyclingDeathTest, FreesIntoRecycledPagesAreRefused) {
  HalfFreedRuns runs = free_every_other_run();
  ASSERT_FALSE(runs.recycled.empty());
  char* freed = runs.recycled.front();
  bool saved = detail::g_checked;
  detail::g_checked = true;  // what HAKMEM_CHECK=1 sets at start-up
  EXPECT_DEATH(pool_free(freed), "not a block hakmem allocated");
  EXPECT_DEATH(pool_free(freed + 4096), "not a block hakmem allocated");
  detail::g_checked = false;  // a free page has no class: refused in every mode
  EXPECT_DEATH(pool_free(freed), "not a block hakmem allocated");
  EXPECT_DEATH(usable_size(freed, chunk_map::lookup(freed)), "not a block hakmem allocated");
  detail::g_checked = saved;
  for (void* p : runs.live) pool_free(p);
}

// Steady churn over a fixed working set of mid blocks (random-mixed up to 256 KiB): the blocks
// freed are reused by the next allocations, so sweeps must not keep recycling (and decommitting)
// the runs about to be reused. Each iteration would refill if they did.
TEST(PoolRecycling, SteadyChurnDoesNotRecycleWhatItReuses) {
  std::thread([] {
    constexpr size_t kSlots = 256;
    constexpr int kIterations = 200000;
    uint64_t rng = 4141;
    auto next_size = [&rng] {
      rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
      return kMinSize + (rng >> 33) % (kPoolMaxSize - kMinSize + 1);
    };
    std::vector<void*> slots(kSlots);
    for (void*& p : slots) p = alloc(next_size());
    hak_stats_t before = pool_stats();
    for (int i = 0; i < kIterations; ++i) {
      size_t slot = (rng >> 40) % kSlots;
      pool_free(slots[slot]);
      size_t size = next_size();
      slots[slot] = alloc(size);
      static_cast<char*>(slots[slot])[size - 1] = 1;
    }
    hak_stats_t after = pool_stats();
    // Measured: about 400 refills; with a sweep due at every refill (the first version of run
    // recycling) about 21000.
    EXPECT_LT(after.pool_refills - before.pool_refills, 2000u);
    for (void* p : slots) pool_free(p);
  }).join();
}

// The owner allocates blocks of many classes, hands half to a second thread that checks and frees
// them (remote frees), frees most of the rest itself and sweeps often, so runs are recycled and
// re-carved for other classes while frees arrive. Every block keeps its pattern while live.
TEST(PoolRecycling, RemoteFreesRaceWithTheOwnerRecyclingRuns) {
  constexpr size_t kSizes[] = {1500, 3000, 9000, 20000, 40000, 70000, 130000, 250000};
  constexpr size_t kSizeCount = sizeof kSizes / sizeof kSizes[0];
  constexpr int kRounds = 60;
  constexpr int kPerRound = 32;
  struct Handed {
    void* p;
    size_t size;
  };
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<Handed> queue;
  bool done = false;
  size_t remote_bad = 0;

  std::thread remote([&] {
    for (;;) {
      std::unique_lock<std::mutex> lock(mutex);
      ready.wait(lock, [&] { return done || !queue.empty(); });
      if (queue.empty()) return;
      Handed h = queue.front();
      queue.pop_front();
      lock.unlock();
      if (!intact(h.p, h.size)) ++remote_bad;
      pool_free(h.p);
    }
  });
  std::thread owner([&] {
    std::vector<Handed> mine;
    uint64_t rng = 12345;
    auto next = [&rng] {
      rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
      return rng >> 33;
    };
    for (int round = 0; round < kRounds; ++round) {
      for (int i = 0; i < kPerRound; ++i) {
        // The sizes drift with the rounds, so emptied runs are wanted by other classes.
        size_t size = kSizes[(next() % 4 + static_cast<size_t>(round) / 8) % kSizeCount];
        void* p = alloc(size);
        ASSERT_NE(p, nullptr);
        fill(p, size);
        if (i % 2 == 0) {
          std::lock_guard<std::mutex> lock(mutex);
          queue.push_back({p, size});
          ready.notify_one();
        } else {
          mine.push_back({p, size});
        }
      }
      // Keep about one block in eight of its own: most runs empty out.
      for (size_t j = 0; j < mine.size();) {
        if (next() % 8 != 0) {
          ASSERT_TRUE(intact(mine[j].p, mine[j].size)) << mine[j].p;
          pool_free(mine[j].p);
          mine[j] = mine.back();
          mine.pop_back();
        } else {
          ++j;
        }
      }
      if (round % 3 == 0) collect();
    }
    for (const Handed& h : mine) {
      ASSERT_TRUE(intact(h.p, h.size)) << h.p;
      pool_free(h.p);
    }
    collect();
  });
  owner.join();
  {
    std::lock_guard<std::mutex> lock(mutex);
    done = true;
    ready.notify_one();
  }
  remote.join();
  EXPECT_EQ(remote_bad, 0u);
}

}  // namespace
}  // namespace hak::pool
