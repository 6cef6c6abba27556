// Thread churn: thousands of short-lived threads, up to 64 alive at once, each leaving blocks
// behind in shared slots when it exits; later threads free them (the owner is gone: its slabs must
// have been abandoned and adopted correctly) or realloc them. A quarter of the threads begin with a
// free, so a thread's very first hakmem call is a free of a block another thread made.
#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "hakmem.h"
#include "stress_support.h"

namespace {

using namespace stress;

void short_lived_thread(Exchange& ex, size_t holder, uint64_t seed) {
  Rng rng(seed);
  uint32_t& mine = ex.held(holder);
  if (rng.percent(25)) {
    // First call of this thread: a free of some other (maybe dead) thread's block.
    mine = ex.exchange(rng.below(ex.slots()), mine);
    check_and_free(ex.at(mine), "first call of a new thread");
  }
  SizeMix mix;
  mix.tiny_percent = 85;
  mix.mid_percent = 14;
  mix.large_max = 1 << 20;
  constexpr size_t kBlocks = 24;
  Block own[kBlocks];
  for (auto& b : own) b = allocate_random(rng, mix);
  for (size_t i = 0; i < kBlocks; ++i) {
    if (should_stop()) break;
    uint64_t pick = rng.below(100);
    if (pick < 45) {
      check_and_free(own[i], "own block");  // local free
    } else if (pick < 85) {
      // Park it for a later thread; whatever comes back (likely from a dead thread) is freed.
      ex.at(mine) = own[i];
      own[i] = Block{};
      mine = ex.exchange(rng.below(ex.slots()), mine);
      Block& got = ex.at(mine);
      if (got.p != nullptr && rng.percent(20) && check_block(got, "parked block before realloc")) {
        realloc_block(rng, got, std::max<size_t>(1, random_size(rng, mix)));
      }
      check_and_free(got, "parked block");
    } else {
      // Keep it alive past this thread's exit in the slots, taking nothing back.
      ex.at(mine) = own[i];
      own[i] = Block{};
      mine = ex.exchange(rng.below(ex.slots()), mine);
      if (ex.at(mine).p != nullptr) {
        // Slot was full: put that one back elsewhere rather than free it.
        mine = ex.exchange(rng.below(ex.slots()), mine);
      }
      check_and_free(ex.at(mine), "displaced block");
    }
  }
  for (auto& b : own) check_and_free(b, "own block at exit");
  // The descriptor we hold is empty here; the thread exits with a warm cache.
}

struct ChurnCase {
  unsigned alive;  // threads alive at once
  uint64_t total;  // threads started in a CI round
};

class ThreadChurn : public ::testing::TestWithParam<ChurnCase> {};

TEST_P(ThreadChurn, BlocksOutliveTheirThreads) {
  const unsigned alive = GetParam().alive;  // not a structured binding: clang 14 cannot capture one
  const uint64_t total = threads_scaled(GetParam().total);
  uint64_t started = 0;
  uint64_t rounds = run_rounds(1, [&](uint64_t round) {
    Exchange ex(512, alive);
    std::deque<std::thread> running;
    for (uint64_t i = 0; i < total && !should_stop(); ++i) {
      // Thread i uses holder i % alive: the thread that used it before (i - alive) is joined.
      if (running.size() == alive) {
        running.front().join();
        running.pop_front();
      }
      running.emplace_back(short_lived_thread, std::ref(ex), i % alive,
                           mix64(round * 1'000'003 + i + 1));
      ++started;
    }
    for (auto& t : running) t.join();
    ex.drain();
  });
  RecordProperty("rounds", static_cast<int>(rounds));
  RecordProperty("threads", static_cast<int>(started));
  EXPECT_EQ(failure_count(), 0u) << failure_summary();
}

INSTANTIATE_TEST_SUITE_P(Alive, ThreadChurn,
                         ::testing::Values(ChurnCase{4, 3000}, ChurnCase{64, 3000}),
                         [](const auto& info) {
                           return std::to_string(info.param.alive) + "alive";
                         });

}  // namespace
