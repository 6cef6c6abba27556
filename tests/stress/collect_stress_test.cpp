// Returning memory while the heap is busy: hak_collect (which gives empty SuperSlabs, pool chunks
// and cached spans back to the OS) and hak_stats race with threads that allocate and free remotely
// into the same memory. A SuperSlab unmapped while another thread still frees into it, or
// metadata recycled under a lock-free reader, shows up here as a crash or a corrupted block.
#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <thread>
#include <vector>

#include "hakmem.h"
#include "stress_support.h"

namespace {

using namespace stress;

constexpr unsigned kWorkers = 6;
constexpr uint64_t kOpsPerWorker = 40'000;

TEST(CollectWhileBusy, CollectAndStatsRaceAllocation) {
  const uint64_t per_worker = ops(kOpsPerWorker);
  uint64_t collects = 0;
  uint64_t rounds = run_rounds(1, [&](uint64_t round) {
    Exchange ex(kWorkers * 4, kWorkers);
    std::atomic<bool> done{false};
    std::latch start(kWorkers + 1);
    std::thread collector([&] {
      start.arrive_and_wait();
      while (!done.load(std::memory_order_acquire)) {
        hak_collect();
        hak_stats_t s{};
        s.struct_size = sizeof s;
        hak_stats(&s);
        ++collects;
        std::this_thread::yield();
      }
    });
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < kWorkers; ++t) {
      workers.emplace_back([&, t] {
        MixedWorkerOptions options;
        options.collect_every = 257 + t;  // workers flush their own caches now and then too
        start.arrive_and_wait();
        mixed_worker(ex, t, per_worker, mix64(round * 131 + t + 1), options);
      });
    }
    for (auto& w : workers) w.join();
    done.store(true, std::memory_order_release);
    collector.join();
    ex.drain();
  });
  RecordProperty("rounds", static_cast<int>(rounds));
  RecordProperty("collects", static_cast<int>(collects));
  EXPECT_GT(collects, 0u);
  EXPECT_EQ(failure_count(), 0u) << failure_summary();

  hak_collect();
  hak_stats_t s{};
  s.struct_size = sizeof s;
  hak_stats(&s);
  EXPECT_LE(s.bytes_mapped, s.bytes_mapped_peak);
  EXPECT_LE(s.superslabs_live, s.superslabs_peak);
}

}  // namespace

namespace {

using namespace stress;

// After a cross-thread run whose threads have all exited and whose blocks are all freed, a
// collect gives back everything: bytes in use return to where they were, and no more SuperSlabs
// stay live than before. A lost remote free (a block marked in a remote bitmap that nobody ever
// sees again) keeps its slab "used" forever and fails this.
TEST(CollectWhileBusy, EverythingFreedIsAccountedFor) {
  hak_collect();
  const hak_stats_t before = stats_now();
  const unsigned threads = 16;
  SizeMix mix;
  mix.tiny_percent = 90;
  mix.mid_percent = 9;
  mix.large_max = 1 << 20;
  run_rounds(1, [&](uint64_t round) {
    Exchange ex(threads * 4, threads);
    std::latch start(threads);
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        MixedWorkerOptions options;
        options.mix = mix;
        start.arrive_and_wait();
        mixed_worker(ex, t, ops(20'000), mix64(round * 17 + t + 1), options);
      });
    }
    for (auto& w : workers) w.join();
    ex.drain();
  });
  ASSERT_EQ(failure_count(), 0u) << failure_summary();
  hak_collect();
  const hak_stats_t after = stats_now();
  std::fprintf(stderr,
               "in use %llu -> %llu, superslabs %llu -> %llu (peak %llu), mapped %llu -> %llu\n",
               (unsigned long long)before.bytes_in_use, (unsigned long long)after.bytes_in_use,
               (unsigned long long)before.superslabs_live,
               (unsigned long long)after.superslabs_live, (unsigned long long)after.superslabs_peak,
               (unsigned long long)before.bytes_mapped, (unsigned long long)after.bytes_mapped);
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
  EXPECT_LE(after.superslabs_live, before.superslabs_live);
}

}  // namespace
