// Realloc chains and aligned allocations under concurrency.
//  - ReallocChains: each thread walks blocks through long realloc chains that cross every range
//    boundary both ways (tiny -> mid -> large -> tiny), in small steps and big jumps; a fifth of
//    the chains hop to another thread midway (realloc of a block allocated elsewhere).
//  - AlignedAllocations: every power-of-two alignment from 1 B to 1 MiB, with sizes below, at
//    and above the alignment, freed by other threads.
#include <gtest/gtest.h>

#include <cerrno>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "hakmem.h"
#include "stress_support.h"

namespace {

using namespace stress;

size_t next_chain_size(Rng& rng, size_t size) {
  constexpr size_t kMax = 6 << 20;
  uint64_t pick = rng.below(100);
  size_t next;
  if (pick < 30) {
    next = size + 1 + rng.below(48);  // small growth: in place when the class allows
  } else if (pick < 50) {
    next = size - rng.below(size / 2 + 1);  // shrink a little or to half
  } else if (pick < 75) {
    next = size * (2 + rng.below(7));  // big jump up: crosses ranges
  } else if (pick < 90) {
    next = size / (2 + rng.below(30));  // big jump down
  } else {
    const auto& b = boundary_sizes();
    next = b[rng.below(b.size())];  // straight to a boundary
  }
  if (next == 0) next = 1;
  return next > kMax ? kMax : next;
}

constexpr unsigned kChainThreads = 8;
constexpr uint64_t kChainsPerThread = 1'500;
constexpr uint64_t kChainLength = 24;

TEST(ReallocChains, AcrossRangesAndThreads) {
  const uint64_t chains = ops(kChainsPerThread);
  uint64_t steps = 0;
  std::atomic<uint64_t> total_steps{0};
  uint64_t rounds = run_rounds(1, [&](uint64_t round) {
    Exchange ex(32, kChainThreads);
    std::latch start(kChainThreads);
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < kChainThreads; ++t) {
      threads.emplace_back([&, t] {
        Rng rng(mix64(round * 4099 + t + 1));
        uint32_t& mine = ex.held(t);
        start.arrive_and_wait();
        uint64_t local_steps = 0;
        for (uint64_t c = 0; c < chains && !should_stop(); ++c) {
          Block b = allocate(rng, 1 + rng.below(kTinyMax), How::kMalloc);
          for (uint64_t s = 0; s < kChainLength && b.p != nullptr; ++s) {
            if (s == kChainLength / 2 && rng.percent(20)) {
              // Hop: hand this chain to another thread, continue one we receive (if any).
              ex.at(mine) = b;
              mine = ex.exchange(rng.below(ex.slots()), mine);
              b = ex.at(mine);
              ex.at(mine) = Block{};
              if (b.p == nullptr) break;
            }
            if (!check_block(b, "chain link")) break;
            realloc_block(rng, b, next_chain_size(rng, b.size));
            ++local_steps;
          }
          check_and_free(b, "chain end");
        }
        total_steps.fetch_add(local_steps, std::memory_order_relaxed);
      });
    }
    for (auto& t : threads) t.join();
    ex.drain();
  });
  steps = total_steps.load();
  RecordProperty("rounds", static_cast<int>(rounds));
  RecordProperty("realloc_steps", static_cast<int>(steps));
  EXPECT_GT(steps, 0u);
  EXPECT_EQ(failure_count(), 0u) << failure_summary();
}

TEST(ReallocChains, ReallocNullAndZero) {
  Rng rng(42);
  for (size_t size : boundary_sizes()) {
    Block b = allocate(rng, size, How::kRealloc);  // realloc(NULL, size) acts as malloc
    ASSERT_NE(b.p, nullptr) << size;
    realloc_block(rng, b, 0);  // realloc(p, 0) frees and returns NULL (glibc's behaviour)
    EXPECT_EQ(b.p, nullptr);
  }
  EXPECT_EQ(failure_count(), 0u) << failure_summary();
}

// Growing a large block may move its pages to a new address. The old range's addresses go back
// to the OS at that moment; if its chunk-map entries are cleared only afterwards, a mapping another
// thread made there in between (a new span, pool chunk or SuperSlab) loses its entries: its blocks
// report usable size 0 and their frees are refused. Movers grow blocks through the large range
// while mappers keep making and checking fresh mappings.
TEST(ReallocChains, LargeMovesNeverClobberOtherMappings) {
  constexpr unsigned kMovers = 2, kMappers = 2;
  const uint64_t iterations = ops(400);
  std::latch start(kMovers + kMappers);
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < kMovers; ++t) {
    threads.emplace_back([&, t] {
      Rng rng(mix64(t + 1));
      start.arrive_and_wait();
      for (uint64_t i = 0; i < iterations && !should_stop(); ++i) {
        Block b = allocate(rng, kMidMax + 1 + rng.below(kMidMax));
        while (b.p != nullptr && b.size < (8u << 20) && check_block(b, "large block before move")) {
          realloc_block(rng, b, b.size * 2 + rng.below(4096));
        }
        check_and_free(b, "moved large block");
      }
    });
  }
  for (unsigned t = 0; t < kMappers; ++t) {
    threads.emplace_back([&, t] {
      Rng rng(mix64(100 + t));
      start.arrive_and_wait();
      std::vector<Block> held(16);
      for (uint64_t i = 0; i < iterations * 8 && !should_stop(); ++i) {
        Block& slot = held[rng.below(held.size())];
        check_and_free(slot, "fresh mapping");
        // Distinct large sizes defeat the span cache, so most of these are new mappings.
        slot = allocate(
            rng, rng.percent(70) ? kMidMax + 1 + rng.below(4u << 20) : 1 + rng.below(kTinyMax));
      }
      for (auto& b : held) check_and_free(b, "fresh mapping at exit");
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failure_count(), 0u) << failure_summary();
}

constexpr unsigned kAlignedThreads = 4;
constexpr uint64_t kAlignedOpsPerThread = 40'000;

TEST(AlignedAllocations, EveryPowerOfTwoUpTo1MiBCrossThread) {
  const uint64_t per_thread = ops(kAlignedOpsPerThread);
  uint64_t rounds = run_rounds(1, [&](uint64_t round) {
    Exchange ex(64, kAlignedThreads);
    std::latch start(kAlignedThreads);
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < kAlignedThreads; ++t) {
      threads.emplace_back([&, t] {
        Rng rng(mix64(round * 31 + t + 1));
        uint32_t& mine = ex.held(t);
        start.arrive_and_wait();
        for (uint64_t i = 0; i < per_thread && !should_stop(); ++i) {
          // Big alignments are rarer: each costs a fresh span of address space.
          unsigned shift = static_cast<unsigned>(rng.percent(90) ? rng.below(13) : rng.below(21));
          size_t alignment = size_t{1} << shift;
          size_t size;
          switch (rng.below(4)) {
            case 0:
              size = alignment;
              break;
            case 1:
              size = 1 + rng.below(alignment < 4096 ? 2 * alignment : 4096);
              break;
            case 2:
              size = alignment * (1 + rng.below(4)) + rng.below(16);
              break;
            default:
              size = random_size(rng);
              break;
          }
          ex.at(mine) = allocate(rng, size, How::kAligned, alignment);
          mine = ex.exchange(rng.below(ex.slots()), mine);
          check_and_free(ex.at(mine), "aligned block from a slot");
        }
        check_and_free(ex.at(mine), "aligned block at exit");
      });
    }
    for (auto& t : threads) t.join();
    ex.drain();
  });
  RecordProperty("rounds", static_cast<int>(rounds));
  EXPECT_EQ(failure_count(), 0u) << failure_summary();
}

TEST(AlignedAllocations, InvalidAlignmentIsEinval) {
  for (size_t alignment : {size_t{0}, size_t{3}, size_t{24}, size_t{48}, size_t{4097}}) {
    errno = 0;
    EXPECT_EQ(hak_aligned_alloc(alignment, 64), nullptr) << alignment;
    EXPECT_EQ(errno, EINVAL) << alignment;
  }
}

}  // namespace
