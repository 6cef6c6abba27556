// HAKMEM_* options: one table (options.cpp), read once from `environ` without allocating, so it is
// safe on the first malloc of the process. An invalid value is reported and the default kept.
#pragma once

#include <atomic>

#include "common/base.h"

namespace hak {

enum class BgSpillMode : uint8_t {
  // The default: foreign blocks go straight to their slabs' remote bitmaps, one fetch_or per
  // bitmap word a run of one slab falls in. Measured against kInline (docs/performance.md):
  // producer-consumer at 4 and 8 threads twice as fast, bg-spill and Larson at 8 threads 10-20%
  // faster; nothing measurably slower.
  kOff,
  kInline,  // onto a per-class spill queue, drained by the next refill of that class
  kThread,  // onto a per-class spill queue, drained by a background thread
};

struct Options {
  bool stats = false;                        // HAKMEM_STATS: print counters at exit
  bool check = false;                        // HAKMEM_CHECK: detect double/invalid frees
  bool verbose = false;                      // HAKMEM_VERBOSE: log slow-path decisions
  BgSpillMode bg_spill = BgSpillMode::kOff;  // HAKMEM_BG_SPILL
  uint64_t release_delay_ms = 100;           // HAKMEM_RELEASE_DELAY_MS
  uint64_t large_cache_mb = 512;             // HAKMEM_LARGE_CACHE_MB
  uint64_t large_commit_mb = 256;            // HAKMEM_LARGE_COMMIT_MB
  uint64_t os_fail_after = 0;                // HAKMEM_OS_FAIL_AFTER (0: never)
};

namespace detail {
extern Options g_options;
extern std::atomic<int> g_options_state;  // 0 unread, 1 being read, 2 ready
void read_options_slow();
}  // namespace detail

// The process's options; the first call (from any thread) reads the environment.
HAK_FAST_PATH const Options& options() {
  // Acquire pairs with the release that publishes the parsed table.
  if (HAK_UNLIKELY(detail::g_options_state.load(std::memory_order_acquire) != 2)) {
    detail::read_options_slow();
  }
  return detail::g_options;
}

// Writes the option table (name, value, description) to the fd; used by `HAKMEM_VERBOSE`.
void print_options(int fd);

}  // namespace hak
