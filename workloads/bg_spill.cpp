// bg-spill: bursts that overflow every per-thread cache. Each thread allocates a burst of B blocks
// of one tiny size and frees them all; every other burst is instead handed to the next thread in a
// ring, which frees it (so half of all frees are remote, arriving thousands at a time).
// Source: this project's own design (DESIGN.md, "Spill"): the case a per-thread cache's overflow
// path and remote-free queues exist for, sized to defeat every cache (4096 x 64 B = 256 KiB per
// burst). With one thread the "next thread" is the thread itself, so no free is remote.
// Ops: every block is allocated once and freed once: threads * bursts * blocks * 2.
#include <cstdlib>
#include <memory>
#include <stdexcept>

#include "common.h"
#include "workload.h"

namespace hakmem::workloads {
namespace {

// The bursts one thread hands to the next: a bounded single-producer single-consumer ring of
// preallocated slots, so handing over a burst allocates nothing and a slow receiver holds back its
// sender instead of piling up memory.
class BurstRing {
 public:
  static constexpr std::size_t kDepth = 4;

  explicit BurstRing(std::size_t burst_blocks) {
    for (auto& slot : slots_) slot.resize(burst_blocks);
  }

  bool full() const {
    // Acquire: the receiver's frees of the slot happen before the sender refills it.
    return head_.load(std::memory_order_relaxed) - tail_.load(std::memory_order_acquire) == kDepth;
  }
  std::vector<void*>& slot_to_fill() {
    return slots_[head_.load(std::memory_order_relaxed) % kDepth];
  }
  // Release: the blocks written into the slot are visible to the receiver that sees the new head.
  void publish() { head_.fetch_add(1, std::memory_order_release); }

  // Frees every published burst; returns how many.
  template <typename FreeBurst>
  std::uint64_t drain(FreeBurst free_burst) {
    std::uint64_t drained = 0;
    const std::uint64_t head = head_.load(std::memory_order_acquire);
    for (std::uint64_t tail = tail_.load(std::memory_order_relaxed); tail != head; ++tail) {
      free_burst(slots_[tail % kDepth]);
      tail_.store(tail + 1, std::memory_order_release);
      ++drained;
    }
    return drained;
  }

 private:
  std::vector<void*> slots_[kDepth];
  alignas(64) std::atomic<std::uint64_t> head_{0};
  alignas(64) std::atomic<std::uint64_t> tail_{0};
};

RunResult run_bg_spill(const RunContext& context) {
  const auto burst_blocks = static_cast<std::size_t>(context.integer("blocks"));
  const auto size = static_cast<std::size_t>(context.integer("size"));
  const auto bursts = static_cast<std::uint64_t>(context.integer("bursts"));
  if (burst_blocks == 0 || size == 0) {
    throw std::invalid_argument("bg-spill needs blocks >= 1 and size >= 1");
  }
  const BlockCheck check(context.verify());
  const int threads = context.threads();

  // rings[i] carries bursts from thread i to thread (i + 1) % threads.
  std::vector<std::unique_ptr<BurstRing>> rings;
  for (int i = 0; i < threads; ++i) rings.push_back(std::make_unique<BurstRing>(burst_blocks));
  std::atomic<int> threads_done{0};
  std::atomic<std::uint64_t> bursts_received{0};

  run_threads(threads, [&](int index) {
    BurstRing& outgoing = *rings[static_cast<std::size_t>(index)];
    BurstRing& incoming = *rings[static_cast<std::size_t>((index + threads - 1) % threads)];
    auto free_burst = [&](std::vector<void*>& blocks) {
      for (void* block : blocks) {
        check.before_free(block, size);
        std::free(block);
      }
    };
    auto allocate_burst = [&](std::vector<void*>& blocks) {
      for (void*& block : blocks) {
        block = std::malloc(size);
        if (block == nullptr) std::abort();
        check.after_malloc(block, size);
      }
    };
    std::uint64_t received = 0;
    std::vector<void*> own(burst_blocks);
    for (std::uint64_t burst = 0; burst < bursts; ++burst) {
      received += incoming.drain(free_burst);
      if (burst % 2 == 0) {
        allocate_burst(own);
        free_burst(own);
        continue;
      }
      // Draining our own incoming ring while we wait keeps the ring of threads moving.
      wait_until([&] {
        received += incoming.drain(free_burst);
        return !outgoing.full();
      });
      allocate_burst(outgoing.slot_to_fill());
      outgoing.publish();
    }
    // Release: our last publish happens before anyone who sees the final count drains it.
    threads_done.fetch_add(1, std::memory_order_release);
    wait_until([&] {
      received += incoming.drain(free_burst);
      return threads_done.load(std::memory_order_acquire) == threads;
    });
    received += incoming.drain(free_burst);
    bursts_received.fetch_add(received, std::memory_order_relaxed);
  });

  RunResult result;
  result.ops = static_cast<std::uint64_t>(threads) * bursts * burst_blocks * 2;
  result.extra["handed_bursts"] = bursts_received.load();
  result.extra["remote_frees"] = threads > 1 ? bursts_received.load() * burst_blocks : 0;
  return result;
}

}  // namespace

Workload make_bg_spill() {
  return Workload{
      "bg-spill",
      "bursts of tiny blocks that overflow thread caches; every other burst freed by the next "
      "thread",
      {
          {"blocks", std::int64_t{4096}, "blocks per burst (B)"},
          {"size", std::int64_t{64}, "block size in bytes"},
          {"bursts", std::int64_t{2000}, "bursts per thread"},
      },
      run_bg_spill,
  };
}

}  // namespace hakmem::workloads
