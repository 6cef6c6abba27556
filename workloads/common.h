// Building blocks the workloads share: a seeded random generator, block fill/check for --verify,
// a thread launcher, a polite spin-wait, and the process's resident-memory figures.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

namespace hakmem::workloads {

// SplitMix64: turns (seed, stream) into well-mixed, independent starting states, so every thread
// (or Larson lineage) has its own deterministic sequence for a given seed.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// xoshiro256**: fast enough to sit inside an allocation loop without dominating it.
class Rng {
 public:
  Rng(std::uint64_t seed, std::uint64_t stream) {
    std::uint64_t s = mix64(seed ^ mix64(stream + 1));
    for (auto& word : state_) word = s = mix64(s);
  }

  std::uint64_t next() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in [0, bound) by multiply-shift (bias below 2^-32 for the bounds used here).
  std::uint64_t below(std::uint64_t bound) {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * bound) >> 64);
  }

  // Uniform in [lo, hi], inclusive.
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi) { return lo + below(hi - lo + 1); }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t state_[4];
};

// What a workload does to each block it gets and before it frees it. Without --verify it touches
// the first and last byte (so the memory is really used); with --verify it fills the whole block
// with a pattern derived from its address and size, and checks every byte before the free. A
// mismatch ends the process with exit code 3 and a message naming the workload, address and bytes.
class BlockCheck {
 public:
  explicit BlockCheck(bool verify) : verify_(verify) {}

  bool verifying() const { return verify_; }

  void after_malloc(void* block, std::size_t size) const {
    if (size == 0) return;
    if (verify_) {
      fill(block, size);
    } else {
      auto* bytes = static_cast<volatile unsigned char*>(block);
      bytes[0] = 1;
      bytes[size - 1] = 2;
    }
  }

  void before_free(const void* block, std::size_t size) const {
    if (verify_ && size != 0) check(block, size);
  }

  static void fill(void* block, std::size_t size);
  static void check(const void* block, std::size_t size);
  // The name that verify failures report; set once by the runner before the workload starts.
  static void set_workload_name(const char* name);

 private:
  bool verify_;
};

// Writes one byte per page (and the last byte), so a large block counts in resident memory
// without the cost of filling it.
void touch_pages(void* block, std::size_t size);

// Starts `count` threads running body(index) and joins them all.
template <typename Body>
void run_threads(int count, Body body) {
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) threads.emplace_back(body, i);
  for (auto& thread : threads) thread.join();
}

// Waits for a condition another thread will make true. Yields rather than spinning hard: the
// machines this runs on often have fewer cores than threads.
template <typename Condition>
void wait_until(Condition condition) {
  while (!condition()) std::this_thread::yield();
}

// The process's resident set now and its high-water mark, in KiB (from /proc/self/status);
// -1 when they cannot be read.
struct ResidentMemory {
  std::int64_t current_kb = -1;
  std::int64_t peak_kb = -1;
};
ResidentMemory read_resident_memory();

}  // namespace hakmem::workloads
