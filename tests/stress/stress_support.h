// What every stress test shares: a fast deterministic RNG, the size mix across hakmem's three
// ranges (tiny <= 1 KiB, mid <= 256 KiB, large above), the fill pattern written into every block
// and checked before every free, the exchange slots that carry blocks between threads, a failure
// log that threads can write to, and the run parameters.
//
// Run parameters (environment):
//  - HAKMEM_STRESS_SCALE (default 1): multiplies every op count.
//  - HAKMEM_SOAK_SECONDS (default 0, off): the soak. The binary's selected tests share this many
//    seconds; each test repeats its rounds until its share has passed (at least one round).
// Op counts are divided by kSanitizerDivisor under TSan/ASan so the CI-sized run stays bounded.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hakmem.h"

#if defined(__SANITIZE_THREAD__)
#define HAKMEM_STRESS_TSAN 1
#elif defined(__SANITIZE_ADDRESS__)
#define HAKMEM_STRESS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HAKMEM_STRESS_TSAN 1
#elif __has_feature(address_sanitizer)
#define HAKMEM_STRESS_ASAN 1
#endif
#endif

namespace stress {

// TSan runs this code ~5-10x slower, ASan ~2-3x: the op counts shrink to match.
#if defined(HAKMEM_STRESS_TSAN)
inline constexpr uint64_t kSanitizerDivisor = 4;
#elif defined(HAKMEM_STRESS_ASAN)
inline constexpr uint64_t kSanitizerDivisor = 2;
#else
inline constexpr uint64_t kSanitizerDivisor = 1;
#endif

// splitmix64: fast, and every seed gives a different stream.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); n > 0.
  uint64_t below(uint64_t n) { return next() % n; }
  bool percent(unsigned p) { return below(100) < p; }

 private:
  uint64_t state_;
};

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdULL;
  z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ULL;
  return z ^ (z >> 33);
}

// --- Sizes -------------------------------------------------------------------------------------

inline constexpr size_t kTinyMax = 1024;
inline constexpr size_t kMidMax = 256 * 1024;

struct SizeMix {
  unsigned tiny_percent = 75;      // 1 .. 1 KiB
  unsigned mid_percent = 22;       // 1 KiB + 1 .. 256 KiB, log-uniform
  size_t large_max = 4 << 20;      // the rest: 256 KiB + 1 .. large_max, log-uniform
  unsigned boundary_percent = 10;  // of all requests: a size at a class or range boundary
};

// A random request size drawn from the mix.
size_t random_size(Rng& rng, const SizeMix& mix = SizeMix{});
// Sizes at and around the range and class boundaries (1, 8, 16, 1024, 1025, 256 KiB + 1, ...).
const std::vector<size_t>& boundary_sizes();

// --- Pattern -----------------------------------------------------------------------------------

// A block's pattern is a function of (address, size, seed), so a block that overlaps another live
// block, or holds stale contents, fails its check. Blocks up to kDensePatternLimit are patterned
// in every byte; larger ones in one word per kSparseStride bytes plus their first and last 256
// bytes (enough to catch overlap and stale memory without making large blocks dominate the run
// time).
inline constexpr size_t kDensePatternLimit = 64 * 1024;
inline constexpr size_t kSparseStride = 512;

// Writes the pattern of (key_address, key_size, seed) into the first `limit` bytes of `where`.
// Normally where == key_address and limit == key_size; realloc checks use a moved copy.
void fill_pattern(void* where, const void* key_address, size_t key_size, uint64_t seed,
                  size_t limit);
inline void fill_pattern(void* p, size_t size, uint64_t seed) {
  fill_pattern(p, p, size, seed, size);
}
// Offset of the first byte in [0, limit) that differs from the pattern, or SIZE_MAX if none.
size_t find_pattern_mismatch(const void* where, const void* key_address, size_t key_size,
                             uint64_t seed, size_t limit);

// --- Failures ----------------------------------------------------------------------------------

// Thread-safe failure log: every failure is printed to stderr at once (so it is seen even if a
// crash follows) and counted; the test asserts the count is zero at the end.
void record_failure(const char* format, ...) __attribute__((format(printf, 1, 2)));
uint64_t failure_count();
void reset_failures();          // at the start of each test (stress_main.cpp)
std::string failure_summary();  // the first few messages
// True once any failure was recorded: workers stop early instead of piling up errors.
bool should_stop();

// --- Blocks ------------------------------------------------------------------------------------

enum class How : uint8_t { kMalloc, kCalloc, kAligned, kRealloc };

struct Block {
  void* p = nullptr;
  size_t size = 0;    // requested
  size_t usable = 0;  // hak_usable_size at allocation: the pattern covers all of it
  uint64_t seed = 0;
  size_t alignment = 0;  // requested alignment (0: the default one)
  How how = How::kMalloc;
};

// Allocates, checks alignment, usable size (and zero fill for calloc), writes the pattern.
// On failure to allocate records a failure and returns a block with p == nullptr.
Block allocate(Rng& rng, size_t size, How how = How::kMalloc, size_t alignment = 0);
// Allocates with a random way (mostly malloc, some calloc and aligned) and a random size.
Block allocate_random(Rng& rng, const SizeMix& mix = SizeMix{});
// Checks the pattern and usable size, then hak_free. Accepts an empty block.
void check_and_free(Block& b, const char* where);
// Checks the pattern and that the usable size did not change (without freeing).
bool check_block(const Block& b, const char* where);
// hak_realloc to new_size; checks that the common prefix survived, re-patterns the block.
void realloc_block(Rng& rng, Block& b, size_t new_size);

// --- Exchange slots ----------------------------------------------------------------------------

// A table of slots through which threads swap blocks. A thread owns the descriptors it holds;
// exchange() swaps one in for whatever the slot held (acq_rel: the taker sees the descriptor the
// giver wrote, and the block contents). Blocks parked in slots survive the thread that made them.
class Exchange {
 public:
  Exchange(size_t slots, size_t holders);
  ~Exchange();  // frees whatever is left (checking it)

  // The descriptor holder h (0 <= h < holders) currently owns. A thread that acts as holder h
  // works on this reference; when it exits, the next thread that is holder h takes over whatever
  // descriptor it ended with (the one it started with may be parked in a slot by then).
  uint32_t& held(size_t h) { return held_[h]; }
  Block& at(uint32_t d) { return descriptors_[d]; }
  // Puts descriptor d in slot s; returns the descriptor that was there (now owned by the caller).
  uint32_t exchange(size_t s, uint32_t d) {
    return slots_[s].value.exchange(d, std::memory_order_acq_rel);
  }
  size_t slots() const { return slots_.size(); }
  // Checks and frees every block still parked (single-threaded, after the workers joined).
  void drain();

 private:
  struct alignas(64) Slot {
    std::atomic<uint32_t> value;
  };
  std::vector<Slot> slots_;
  std::vector<Block> descriptors_;
  std::vector<uint32_t> held_;
};

// --- The mixed worker ---------------------------------------------------------------------------

struct MixedWorkerOptions {
  SizeMix mix;
  uint64_t collect_every = 0;  // call hak_collect every this many ops (0: never)
};

// The workhorse of the cross-thread tests. Per op, at random: allocate a block and swap it into a
// random slot, checking and freeing the block that comes out (mostly a remote free); replace a
// block of the thread's own ring (local free); realloc a ring block; take a block another thread
// made out of a slot, realloc it here and swap it back; or re-check a ring block. Frees its ring
// and its held descriptor before returning. `holder` is this thread's holder index in `ex`.
void mixed_worker(Exchange& ex, size_t holder, uint64_t op_count, uint64_t seed,
                  const MixedWorkerOptions& options = MixedWorkerOptions{});

// --- Parameters --------------------------------------------------------------------------------

struct RunParams {
  double scale = 1.0;         // HAKMEM_STRESS_SCALE
  double soak_seconds = 0.0;  // HAKMEM_SOAK_SECONDS (total for the binary)
  size_t tests_selected = 1;  // how many tests share soak_seconds
};
const RunParams& params();
void set_tests_selected(size_t n);

// Op count for the CI run: base * scale / kSanitizerDivisor, at least 1.
uint64_t ops(uint64_t base);
uint64_t threads_scaled(uint64_t base);  // thread counts of churn tests, same scaling

// Runs round(i) for i = 0, 1, ...: `ci_rounds` times, or, in soak mode, until this test's share of
// the soak time has passed (at least ci_rounds). Stops early once a failure is recorded.
// Returns the number of rounds run.
template <typename F>
uint64_t run_rounds(uint64_t ci_rounds, F&& round) {
  const RunParams& p = params();
  auto start = std::chrono::steady_clock::now();
  double budget = p.soak_seconds / static_cast<double>(p.tests_selected ? p.tests_selected : 1);
  uint64_t i = 0;
  for (;; ++i) {
    if (should_stop()) break;
    if (i >= ci_rounds) {
      if (p.soak_seconds <= 0) break;
      std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
      if (elapsed.count() >= budget) break;
    }
    round(i);
  }
  return i;
}

// A snapshot of hakmem's counters.
hak_stats_t stats_now();

}  // namespace stress
