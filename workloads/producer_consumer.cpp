// producer-consumer: the xmalloc-test pattern (Lever and Boreham's xmalloc test, as shipped in
// mimalloc-bench): producer threads allocate blocks and pass them in batches to consumer threads,
// which free them. Every free is remote, and each producer's memory drains through another thread:
// it stresses remote-free queues and memory that flows one way between threads.
// Threads pair up: ceil(N/2) producers, floor(N/2) consumers, producer p feeding consumer p % C.
// With one thread there is no consumer and the producer frees each batch itself.
// Ops: producers * batches * batch * 2 (each block allocated once and freed once).
#include <cstdlib>
#include <memory>
#include <stdexcept>

#include "common.h"
#include "workload.h"

namespace hakmem::workloads {
namespace {

// One producer's outgoing batches: a bounded single-producer single-consumer ring of preallocated
// batch arrays, so passing a batch allocates nothing and counts no hidden malloc.
class BatchRing {
 public:
  static constexpr std::size_t kDepth = 16;

  explicit BatchRing(std::size_t batch) {
    for (auto& slot : slots_) slot.resize(batch);
  }

  bool full() const {
    // Acquire: the consumer's frees of a slot happen before the producer refills it.
    return head_.load(std::memory_order_relaxed) - tail_.load(std::memory_order_acquire) == kDepth;
  }
  std::vector<void*>& slot_to_fill() {
    return slots_[head_.load(std::memory_order_relaxed) % kDepth];
  }
  // Release: the pointers (and, with --verify, the block contents) reach the consumer.
  void publish() { head_.fetch_add(1, std::memory_order_release); }

  // Consumes at most one batch; returns whether there was one.
  template <typename FreeBatch>
  bool consume_one(FreeBatch free_batch) {
    const std::uint64_t tail = tail_.load(std::memory_order_relaxed);
    if (tail == head_.load(std::memory_order_acquire)) return false;
    free_batch(slots_[tail % kDepth]);
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

 private:
  std::vector<void*> slots_[kDepth];
  alignas(64) std::atomic<std::uint64_t> head_{0};
  alignas(64) std::atomic<std::uint64_t> tail_{0};
};

RunResult run_producer_consumer(const RunContext& context) {
  const auto size = static_cast<std::size_t>(context.integer("size"));
  const auto batch = static_cast<std::size_t>(context.integer("batch"));
  const auto batches = static_cast<std::uint64_t>(context.integer("batches"));
  if (batch == 0 || size == 0) {
    throw std::invalid_argument("producer-consumer needs batch >= 1 and size >= 1");
  }
  const BlockCheck check(context.verify());
  const int threads = context.threads();
  const int producers = (threads + 1) / 2;
  const int consumers = threads / 2;

  std::vector<std::unique_ptr<BatchRing>> rings;
  for (int p = 0; p < producers; ++p) rings.push_back(std::make_unique<BatchRing>(batch));

  auto free_batch = [&](std::vector<void*>& blocks) {
    for (void* block : blocks) {
      check.before_free(block, size);
      std::free(block);
    }
  };
  auto produce = [&](int producer) {
    BatchRing& ring = *rings[static_cast<std::size_t>(producer)];
    for (std::uint64_t b = 0; b < batches; ++b) {
      if (consumers == 0) {
        wait_until([&] { return !ring.full() || ring.consume_one(free_batch); });
      } else {
        wait_until([&] { return !ring.full(); });
      }
      for (void*& block : ring.slot_to_fill()) {
        block = std::malloc(size);
        if (block == nullptr) std::abort();
        check.after_malloc(block, size);
      }
      ring.publish();
    }
    if (consumers == 0) {
      while (ring.consume_one(free_batch)) {
      }
    }
  };
  auto consume = [&](int consumer) {
    std::uint64_t expected = 0;
    for (int p = consumer; p < producers; p += consumers) expected += batches;
    std::uint64_t consumed = 0;
    while (consumed < expected) {
      bool progress = false;
      for (int p = consumer; p < producers; p += consumers) {
        if (rings[static_cast<std::size_t>(p)]->consume_one(free_batch)) {
          ++consumed;
          progress = true;
        }
      }
      if (!progress) std::this_thread::yield();
    }
  };

  run_threads(producers + consumers, [&](int index) {
    if (index < producers) {
      produce(index);
    } else {
      consume(index - producers);
    }
  });

  RunResult result;
  result.ops = static_cast<std::uint64_t>(producers) * batches * batch * 2;
  result.extra["producers"] = producers;
  result.extra["consumers"] = consumers;
  return result;
}

}  // namespace

Workload make_producer_consumer() {
  return Workload{
      "producer-consumer",
      "producers allocate, consumers on other threads free, batches through a queue",
      {
          {"size", std::int64_t{64}, "block size in bytes"},
          {"batch", std::int64_t{256}, "blocks per batch"},
          {"batches", std::int64_t{20000}, "batches each producer sends"},
      },
      run_producer_consumer,
  };
}

}  // namespace hakmem::workloads
