// The tiny part under each HAKMEM_BG_SPILL mode, HAKMEM_RELEASE_DELAY_MS=0 and a delay of a
// minute (pool choices that the periodic look must not disturb), OS mapping failures, and without
// its arena (address space refused). Each case runs in a fresh process (gtest's
// "threadsafe" death-test style re-executes the binary), so the options are read from the
// environment set inside the case.
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "common/options.h"
#include "fresh_process.h"
#include "hakmem.h"
#include "os/os.h"
#include "tiny/tiny.h"
#include "tiny_test_util.h"

using namespace hak_test;

namespace {

class TinyOptions : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

// Threads that each free blocks allocated by the main thread (a cross-thread burst).
void cross_thread_bursts(int threads, int per_thread) {
  for (int round = 0; round < 4; ++round) {
    std::vector<std::vector<void*>> batches(threads);
    for (auto& batch : batches) {
      for (int i = 0; i < per_thread; ++i) {
        void* p = hak_malloc(static_cast<size_t>(i % 512));
        fill(p, i % 512, i);
        batch.push_back(p);
      }
    }
    std::vector<std::thread> freers;
    for (auto& batch : batches) {
      freers.emplace_back([&batch] {
        for (size_t i = 0; i < batch.size(); ++i) {
          CHECK_OR_EXIT(intact(batch[i], i % 512, i));
          hak_free(batch[i]);
        }
      });
    }
    for (auto& t : freers) t.join();
  }
}

void expect_clean_after_collect() {
  hak_collect();
  auto census = hak::tiny::testing::census();
  CHECK_OR_EXIT(census.blocks_used == 0);
  CHECK_OR_EXIT(census.blocks_queued == 0);
  CHECK_OR_EXIT(census.invariant_violations == 0);
}

}  // namespace

TEST_F(TinyOptions, BgSpillInlineDrainsQueuesAtRefill) {
  EXPECT_EXIT(
      {
        setenv("HAKMEM_BG_SPILL", "inline", 1);
        CHECK_OR_EXIT(hak::options().bg_spill == hak::BgSpillMode::kInline);
        cross_thread_bursts(4, 20000 / kScale);
        hak_stats_t s = stats();
        CHECK_OR_EXIT(s.tiny_spills > 0);
        CHECK_OR_EXIT(s.tiny_spill_queue_drains > 0);  // the main thread's refills took them
        // O(N / batch): every spill sends at least kMinBatch + 1 blocks out with one CAS.
        uint64_t freed_remotely = 4 * 4 * uint64_t(20000 / kScale);
        CHECK_OR_EXIT(s.tiny_spills * (hak::tiny::kMinBatch + 1) <= freed_remotely);
        expect_clean_after_collect();
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(TinyOptions, BgSpillThreadDrainsQueuesInTheBackground) {
  EXPECT_EXIT(
      {
        alarm(120);  // a hang fails the test instead of stalling the suite
        setenv("HAKMEM_BG_SPILL", "thread", 1);
        CHECK_OR_EXIT(hak::options().bg_spill == hak::BgSpillMode::kThread);
        cross_thread_bursts(4, 20000 / kScale);
        // The background thread drains on its own; wait for it (no timing asserted: it is
        // polled until it has done so, or the test's own timeout fires).
        while (stats().tiny_spill_queue_drains == 0) usleep(1000);
        hak_stats_t s = stats();
        CHECK_OR_EXIT(s.tiny_remote_frees > 0);  // the drainer sends blocks home remotely
        // The background thread may still be routing a chain it took before our collect; once it
        // has, a collect finds everything home.
        for (int i = 0; i < 1000; ++i) {
          hak_collect();
          if (hak::tiny::testing::census().blocks_used == 0) break;
          usleep(1000);
        }
        expect_clean_after_collect();
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(TinyOptions, BgSpillOffSendsBlocksStraightHome) {
  EXPECT_EXIT(
      {
        setenv("HAKMEM_BG_SPILL", "off", 1);
        CHECK_OR_EXIT(hak::options().bg_spill == hak::BgSpillMode::kOff);
        cross_thread_bursts(4, 20000 / kScale);
        hak_stats_t s = stats();
        CHECK_OR_EXIT(s.tiny_spill_queue_drains == 0);
        CHECK_OR_EXIT(s.tiny_remote_frees > 0);
        CHECK_OR_EXIT(hak::tiny::testing::census().blocks_queued == 0);
        expect_clean_after_collect();
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(TinyOptions, ZeroReleaseDelayReturnsEmptySuperSlabsWithoutCollect) {
  EXPECT_EXIT(
      {
        setenv("HAKMEM_RELEASE_DELAY_MS", "0", 1);
        std::vector<void*> blocks;
        std::thread([&] {
          for (int i = 0; i < 4096; ++i) blocks.push_back(hak_malloc(1024));
        }).join();
        hak_stats_t full = stats();
        CHECK_OR_EXIT(full.superslabs_live >= 2);
        // Freed by another thread: the slabs were abandoned, their blocks come back remotely.
        std::thread([&] {
          for (void* p : blocks) hak_free(p);
        }).join();
        // Any later pool operation (here: a thread's exit) drains and unmaps.
        for (int i = 0; i < 64; ++i) std::thread([] { hak_free(hak_malloc(8)); }).join();
        hak_stats_t after = stats();
        CHECK_OR_EXIT(after.superslabs_returned >= 1);
        CHECK_OR_EXIT(after.bytes_mapped < full.bytes_mapped);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// Before the pool grows, an idle heap gives away only slabs that other threads' frees gave blocks
// back to. A thread that merely took no slow path lately (on a busy machine: one waiting for a
// core) keeps the slab it carves, so another thread's growth does not take it over. The release
// delay is a minute, so the once-per-delay look (which may give such a slab away) cannot run here.
TEST_F(TinyOptions, AHeapIdleWithoutRemoteFreesKeepsItsSlabWhenThePoolGrows) {
  EXPECT_EXIT(
      {
        setenv("HAKMEM_RELEASE_DELAY_MS", "60000", 1);
        constexpr int kBlocks = 40000;  // of 256 B: 10 MB, several SuperSlab mappings
        hak_collect();                  // the once-per-delay look: done for this minute
        void* held = nullptr;
        std::atomic<int> step{0};
        std::thread idle([&] {
          held = hak_malloc(256);
          step.store(1);
          while (step.load() != 2) sched_yield();
          hak_free(held);
        });
        while (step.load() != 1) sched_yield();
        const uintptr_t held_slab = reinterpret_cast<uintptr_t>(held) >> hak::tiny::kSlabShift;
        int in_held_slab = 0;
        std::thread([&] {
          std::vector<void*> mine;
          for (int i = 0; i < kBlocks; ++i) mine.push_back(hak_malloc(256));
          for (void* p : mine) {
            if (reinterpret_cast<uintptr_t>(p) >> hak::tiny::kSlabShift == held_slab) {
              ++in_held_slab;
            }
            hak_free(p);
          }
        }).join();
        step.store(2);
        idle.join();
        CHECK_OR_EXIT(in_held_slab == 0);
        expect_clean_after_collect();
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// An acquisition takes an empty slab whose pages are resident before one that gave them back:
// taking the latter faults pages in again while the resident ones sit unused. The release delay is
// a minute, so only hak_collect gives pages back here.
TEST_F(TinyOptions, AnEmptySlabWithResidentPagesIsTakenFirst) {
  EXPECT_EXIT(
      {
        setenv("HAKMEM_RELEASE_DELAY_MS", "60000", 1);  // only hak_collect decommits here
        auto slab_of = [](const void* p) {
          return reinterpret_cast<uintptr_t>(p) >> hak::tiny::kSlabShift;
        };
        // Two slabs of 1 KiB blocks: `low` is emptied at thread exit, `high` keeps its blocks.
        std::vector<void*> kept;
        uintptr_t low = 0;
        std::thread([&] {
          std::vector<void*> blocks;
          for (int i = 0; i < 128; ++i) blocks.push_back(hak_malloc(1024));
          low = slab_of(blocks.front());
          for (void* p : blocks) {
            if (slab_of(p) == low) {
              hak_free(p);
            } else {
              kept.push_back(p);
            }
          }
        }).join();
        CHECK_OR_EXIT(!kept.empty());
        const uintptr_t high = slab_of(kept.back());
        CHECK_OR_EXIT(high > low);
        hak_collect();  // `low` gives its pages back; `high`, abandoned with blocks, cannot
        // Freed by another thread: `high` drains at that thread's exit, empty and resident.
        std::thread([&] {
          for (void* p : kept) hak_free(p);
        }).join();
        void* taken = nullptr;
        std::thread([&] {
          taken = hak_malloc(1024);
          hak_free(taken);
        }).join();
        CHECK_OR_EXIT(slab_of(taken) == high);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(TinyOptions, OutOfMemoryIsNullWithEnomemAndRecovers) {
  EXPECT_EXIT(
      {
        hak_free(hak_malloc(16));  // heap and chunk-map leaf exist
        hak::os::inject_map_failures(0);
        std::vector<void*> blocks;
        void* p;
        errno = 0;
        while ((p = hak_malloc(1024)) != nullptr && blocks.size() < 100000) blocks.push_back(p);
        CHECK_OR_EXIT(p == nullptr);
        CHECK_OR_EXIT(errno == ENOMEM);
        hak::os::inject_map_failures(UINT64_MAX);
        p = hak_malloc(1024);
        CHECK_OR_EXIT(p != nullptr);
        hak_free(p);
        for (void* b : blocks) hak_free(b);
        expect_clean_after_collect();
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// The same larson-like churn under every spill mode: blocks move between threads that come and go,
// contents stay intact, and everything is accounted for at the end.
class TinyModeChurn : public TinyOptions, public ::testing::WithParamInterface<const char*> {};

TEST_P(TinyModeChurn, BlocksMovingBetweenShortLivedThreadsStayIntact) {
  EXPECT_EXIT(
      {
        setenv("HAKMEM_BG_SPILL", GetParam(), 1);
        static SharedTable table;
        int corrupt = churn(table, 40 / kScale, 4, 20000 / kScale);
        corrupt += free_table(table);
        CHECK_OR_EXIT(corrupt == 0);
        for (int i = 0; i < 1000; ++i) {  // the background thread may hold a chain in flight
          hak_collect();
          if (hak::tiny::testing::census().blocks_used == 0) break;
          usleep(1000);
        }
        expect_clean_after_collect();
        CHECK_OR_EXIT(stats().superslabs_live == 0);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

INSTANTIATE_TEST_SUITE_P(Modes, TinyModeChurn, ::testing::Values("inline", "thread", "off"));

// With the background thread, memory freed after its threads exited goes back to the OS without
// any further call from the program (no collect, no allocation).
TEST_F(TinyOptions, BackgroundThreadReturnsMemoryOfExitedThreadsUnasked) {
  EXPECT_EXIT(
      {
        alarm(120);  // a hang fails the test instead of stalling the suite
        setenv("HAKMEM_BG_SPILL", "thread", 1);
        setenv("HAKMEM_RELEASE_DELAY_MS", "0", 1);
        static SharedTable table;
        int corrupt = churn(table, 4, 4, 20000 / kScale);
        std::thread([&] { corrupt += free_table(table); }).join();
        CHECK_OR_EXIT(corrupt == 0);
        CHECK_OR_EXIT(stats().superslabs_peak > 0);
        // Polled, not timed: the test's own timeout is the limit.
        while (stats().superslabs_live != 0) usleep(2000);
        CHECK_OR_EXIT(stats().superslabs_returned > 0);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// Returned SuperSlabs of the arena keep their addresses: they read as zeros (a stale pointer's
// range test and header read cannot fault), a free into one is refused, and the next SuperSlab
// reuses the slot instead of growing the arena.
TEST_F(TinyOptions, ArenaSlotsOfReturnedSuperSlabsStayReadableAndAreReused) {
  EXPECT_EXIT(
      {
        setenv("HAKMEM_RELEASE_DELAY_MS", "0", 1);
        std::vector<void*> blocks;
        for (int i = 0; i < 4096; ++i) blocks.push_back(hak_malloc(1024));
        CHECK_OR_EXIT(stats().superslabs_live >= 2);
        void* stale = blocks.back();
        CHECK_OR_EXIT(hak::tiny::in_arena(stale));
        auto* highest = hak::tiny::SuperSlab::of(*std::max_element(blocks.begin(), blocks.end()));
        for (void* p : blocks) hak_free(p);
        hak_collect();
        CHECK_OR_EXIT(stats().superslabs_live == 0);
        CHECK_OR_EXIT(hak::tiny::in_arena(stale));
        char zeros[1024] = {};
        CHECK_OR_EXIT(std::memcmp(stale, zeros, sizeof zeros) == 0);
        // A double free into a returned SuperSlab: refused (logged), no crash. Checked mode (and
        // so debug builds) makes it fatal instead: FreeIntoAReturnedSuperSlabIsFatalInCheckMode.
        if (!hak::kDebugChecks && !hak::options().check) {
          hak_free(stale);
          CHECK_OR_EXIT(std::memcmp(stale, zeros, sizeof zeros) == 0);
        }
        for (int i = 0; i < 4096; ++i) blocks[i] = hak_malloc(1024);
        CHECK_OR_EXIT(hak::tiny::SuperSlab::of(*std::max_element(blocks.begin(), blocks.end())) <=
                      highest);
        // The arena's never-used slots read as zeros too: a wild free there is refused.
        char* base = hak::tiny::g_arena.base();
        char* unused = base + hak::tiny::TinyArena::kBytes - 64;
        CHECK_OR_EXIT(hak::tiny::in_arena(unused) && *unused == 0);
        // Aligned to its size (in_arena compares top bits): the bytes around it are outside.
        CHECK_OR_EXIT(reinterpret_cast<uintptr_t>(base) % hak::tiny::TinyArena::kBytes == 0);
        CHECK_OR_EXIT(hak::tiny::in_arena(base) && !hak::tiny::in_arena(base - 1) &&
                      !hak::tiny::in_arena(base + hak::tiny::TinyArena::kBytes));
        if (!hak::kDebugChecks && !hak::options().check) hak_free(unused);
        for (void* p : blocks) CHECK_OR_EXIT(hak::tiny::in_arena(p));
        for (void* p : blocks) hak_free(p);
        expect_clean_after_collect();
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(TinyOptions, FreeIntoAReturnedSuperSlabIsFatalInCheckMode) {
  EXPECT_EXIT(
      {
        setenv("HAKMEM_CHECK", "1", 1);
        std::vector<void*> blocks;
        for (int i = 0; i < 4096; ++i) blocks.push_back(hak_malloc(1024));
        for (void* p : blocks) hak_free(p);
        hak_collect();
        CHECK_OR_EXIT(stats().superslabs_live == 0);
        hak_free(blocks.back());
        _exit(0);
      },
      ::testing::KilledBySignal(SIGABRT), "returned to the OS");
}

// Without the arena (its reservation refused, as under a tight `ulimit -v`), every SuperSlab is
// mapped on its own and found through the chunk map: same behaviour, same checks.
TEST_F(TinyOptions, WithoutTheArenaSuperSlabsAreMappedOnTheirOwn) {
  EXPECT_EXIT(
      {
        refuse_the_arenas();
        std::vector<void*> blocks;
        for (int i = 0; i < 8192; ++i) {
          void* p = hak_malloc(static_cast<size_t>(i % 1024));
          CHECK_OR_EXIT(p != nullptr && !hak::tiny::in_arena(p));
          fill(p, i % 1024, i);
          blocks.push_back(p);
        }
        CHECK_OR_EXIT(stats().superslabs_live >= 2);
        std::thread([&] {
          for (size_t i = 0; i < blocks.size(); ++i) {
            CHECK_OR_EXIT(intact(blocks[i], i % 1024, i));
            hak_free(blocks[i]);
          }
        }).join();
        expect_clean_after_collect();
        CHECK_OR_EXIT(stats().superslabs_live == 0);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}
