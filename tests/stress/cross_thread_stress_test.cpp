// Cross-thread stress: blocks of every size range change threads all the time, so most frees are
// remote frees, many of them onto the same slabs at once.
//  - CrossThreadExchange: N threads swap blocks through shared slots (mixed_worker), with realloc
//    of local and foreign blocks, calloc and aligned allocations in the mix.
//  - ProducerConsumer: producers allocate batches, consumers check and free them (a remote-free
//    storm aimed at a few owners), some consumers realloc before freeing.
#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hakmem.h"
#include "stress_support.h"

namespace {

using namespace stress;

// Every thread count does the same total work, so the 64-thread case costs no more than the 2.
constexpr uint64_t kExchangeOpsTotal = 240'000;
constexpr uint64_t kExchangeRounds = 2;

class CrossThreadExchange : public ::testing::TestWithParam<unsigned> {};

TEST_P(CrossThreadExchange, MixedSizesRemoteFreesReallocs) {
  const unsigned threads = GetParam();
  const uint64_t per_thread = ops(kExchangeOpsTotal / kExchangeRounds / threads);
  uint64_t rounds = run_rounds(kExchangeRounds, [&](uint64_t round) {
    Exchange ex(threads * 4, threads);
    std::latch start(threads);
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        start.arrive_and_wait();  // all threads hammer at once
        mixed_worker(ex, t, per_thread, mix64(round * 1000 + t + 1));
      });
    }
    for (auto& w : workers) w.join();
    ex.drain();  // blocks whose threads have all exited
  });
  RecordProperty("rounds", static_cast<int>(rounds));
  EXPECT_EQ(failure_count(), 0u) << failure_summary();
}

INSTANTIATE_TEST_SUITE_P(Threads, CrossThreadExchange, ::testing::Values(2u, 4u, 16u, 64u),
                         [](const auto& info) { return std::to_string(info.param) + "threads"; });

// A bounded queue of batches of blocks (the lock is the queue's; the allocator's paths under test
// are lock-free and run outside it).
class BatchQueue {
 public:
  explicit BatchQueue(size_t capacity) : capacity_(capacity) {}
  void push(std::vector<Block>&& batch) {
    std::unique_lock<std::mutex> lock(mutex_);
    not_full_.wait(lock, [&] { return queue_.size() < capacity_; });
    queue_.push_back(std::move(batch));
    not_empty_.notify_one();
  }
  // False once closed and empty.
  bool pop(std::vector<Block>& out) {
    std::unique_lock<std::mutex> lock(mutex_);
    not_empty_.wait(lock, [&] { return !queue_.empty() || closed_; });
    if (queue_.empty()) return false;
    out = std::move(queue_.front());
    queue_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void close() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    not_empty_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable not_full_, not_empty_;
  std::deque<std::vector<Block>> queue_;
  size_t capacity_;
  bool closed_ = false;
};

struct ProducerConsumerCase {
  unsigned producers;
  unsigned consumers;
};

class ProducerConsumer : public ::testing::TestWithParam<ProducerConsumerCase> {};

constexpr uint64_t kBlocksTotal = 600'000;
constexpr size_t kBatch = 64;

TEST_P(ProducerConsumer, RemoteFreeStorm) {
  // Plain copies, not a structured binding: clang 14 cannot capture bindings in lambdas.
  const unsigned producers = GetParam().producers;
  const unsigned consumers = GetParam().consumers;
  const uint64_t batches_per_producer = ops(kBlocksTotal / kBatch / producers);
  SizeMix mostly_tiny;
  mostly_tiny.tiny_percent = 92;
  mostly_tiny.mid_percent = 7;
  mostly_tiny.large_max = 1 << 20;

  uint64_t rounds = run_rounds(1, [&](uint64_t round) {
    BatchQueue queue(4 * (producers + consumers));
    std::vector<std::thread> threads;
    for (unsigned c = 0; c < consumers; ++c) {
      threads.emplace_back([&, c] {
        Rng rng(mix64(round * 7919 + 1000 + c));
        std::vector<Block> batch;
        while (queue.pop(batch)) {
          for (auto& b : batch) {
            // Some blocks are resized by the consumer first: realloc of a remote block.
            if (rng.percent(5) && check_block(b, "consumer before realloc")) {
              realloc_block(rng, b, 1 + rng.below(2 * kTinyMax));
            }
            check_and_free(b, "consumer");
          }
          batch.clear();
        }
      });
    }
    std::vector<std::thread> makers;
    for (unsigned p = 0; p < producers; ++p) {
      makers.emplace_back([&, p] {
        Rng rng(mix64(round * 7919 + p + 1));
        for (uint64_t i = 0; i < batches_per_producer && !should_stop(); ++i) {
          std::vector<Block> batch;
          batch.reserve(kBatch);
          for (size_t k = 0; k < kBatch; ++k) batch.push_back(allocate_random(rng, mostly_tiny));
          queue.push(std::move(batch));
        }
      });
    }
    for (auto& m : makers) m.join();
    queue.close();
    for (auto& t : threads) t.join();
  });
  RecordProperty("rounds", static_cast<int>(rounds));
  EXPECT_EQ(failure_count(), 0u) << failure_summary();
}

INSTANTIATE_TEST_SUITE_P(Threads, ProducerConsumer,
                         ::testing::Values(ProducerConsumerCase{1, 1}, ProducerConsumerCase{1, 7},
                                           ProducerConsumerCase{4, 4},
                                           ProducerConsumerCase{16, 48}),
                         [](const auto& info) {
                           return std::to_string(info.param.producers) + "producers_" +
                                  std::to_string(info.param.consumers) + "consumers";
                         });

}  // namespace
