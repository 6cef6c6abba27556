// Remote-free contention, run with HAKMEM_CHECK=1 (set in main() before hakmem reads its
// options). In check mode the per-thread caches are off, so every cross-thread free is one mark
// in the slab's remote bitmap: several threads set bits of the same words at once while the owner
// keeps allocating (and so draining those words). A mark that is not one atomic read-modify-write
// loses blocks (they stay "used" for ever: the accounting check at the end fails) or resurrects a
// drained one (a block handed out twice: check mode aborts, or a pattern check fails).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <latch>
#include <thread>
#include <vector>

#include "hakmem.h"
#include "stress_support.h"

namespace {

using namespace stress;

constexpr unsigned kFreers = 3;
constexpr size_t kBlocksPerRound = 40000;
constexpr uint64_t kRounds = 40;

TEST(RemoteFreeContention, ManyPushersOneOwnerEveryBlockComesBack) {
  hak_collect();
  const hak_stats_t before = stats_now();
  const uint64_t rounds = ops(kRounds);
  Rng rng(7);
  uint64_t done = run_rounds(rounds, [&](uint64_t round) {
    // The owner (this thread) allocates small blocks: they share a few slabs.
    std::vector<Block> blocks;
    blocks.reserve(kBlocksPerRound);
    for (size_t i = 0; i < kBlocksPerRound; ++i) {
      blocks.push_back(allocate(rng, 16 + 16 * (i % 3)));
    }
    std::latch start(kFreers + 1);
    std::vector<std::thread> freers;
    for (unsigned t = 0; t < kFreers; ++t) {
      // Freer t frees blocks t, t + kFreers, ...: neighbours in a slab go to different pushers.
      freers.emplace_back([&, t] {
        start.arrive_and_wait();
        for (size_t i = t; i < blocks.size(); i += kFreers) {
          check_and_free(blocks[i], "remote free");
        }
      });
    }
    // Meanwhile the owner allocates and frees in the same classes: its refills drain the remote
    // lists the freers are pushing onto.
    start.arrive_and_wait();
    std::vector<Block> churn;
    for (size_t i = 0; i < kBlocksPerRound; ++i) {
      churn.push_back(allocate(rng, 16 + 16 * ((i + round) % 3)));
      if (churn.size() == 64) {
        for (auto& b : churn) check_and_free(b, "owner churn");
        churn.clear();
      }
    }
    for (auto& b : churn) check_and_free(b, "owner churn");
    for (auto& f : freers) f.join();
  });
  RecordProperty("rounds", static_cast<int>(done));
  ASSERT_EQ(failure_count(), 0u) << failure_summary();
  hak_collect();
  const hak_stats_t after = stats_now();
  RecordProperty("remote_frees", static_cast<int>(after.tiny_remote_frees));
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use)
      << "blocks freed by other threads never came back to their slabs";
  EXPECT_LE(after.superslabs_live, before.superslabs_live);
}

}  // namespace

int main(int argc, char** argv) {
  setenv("HAKMEM_CHECK", "1", 1);  // before the first hak_* call: caches off, frees checked
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
