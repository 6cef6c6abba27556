// Helpers shared by the tiny tests: iteration scaling under sanitizers, stats snapshots, fill
// patterns.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "common/base.h"
#include "hakmem.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define HAK_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define HAK_TEST_SANITIZED 1
#endif
#endif

namespace hak_test {

constexpr size_t hak_tiny_max_size() {
  return 1024;
}

#if defined(HAK_TEST_SANITIZED)
inline constexpr int kScale = 2;  // sanitizers: half the work
#elif !defined(NDEBUG)
inline constexpr int kScale = 2;  // debug builds check every block
#else
inline constexpr int kScale = 1;
#endif

inline hak_stats_t stats() {
  hak_stats_t s{};
  s.struct_size = sizeof s;
  hak_stats(&s);
  return s;
}

// Pages of `blocks` that hold none of `kept` (blocks of at most `size` bytes) and are not
// resident.
inline size_t pages_not_resident(const std::vector<char*>& blocks, const std::set<char*>& kept,
                                 size_t size) {
  std::set<uintptr_t> pages, kept_pages;
  for (char* p : kept) {
    auto at = reinterpret_cast<uintptr_t>(p);
    kept_pages.insert(hak::align_down(at, hak::kPageSize));
    kept_pages.insert(hak::align_down(at + size - 1, hak::kPageSize));
  }
  for (char* p : blocks) {
    uintptr_t page = hak::align_down(reinterpret_cast<uintptr_t>(p), hak::kPageSize);
    if (kept_pages.count(page) == 0) pages.insert(page);
  }
  size_t out = 0;
  for (uintptr_t page : pages) {
    unsigned char resident = 1;
    if (mincore(reinterpret_cast<void*>(page), hak::kPageSize, &resident) == 0 &&
        (resident & 1) == 0) {
      ++out;
    }
  }
  return out;
}

// A pattern that depends on the block and its size, written over the whole request.
inline void fill(void* p, size_t size, uint64_t seed) {
  auto* bytes = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<unsigned char>(seed * 131 + i * 7);
}
inline bool intact(const void* p, size_t size, uint64_t seed) {
  auto* bytes = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < size; ++i) {
    if (bytes[i] != static_cast<unsigned char>(seed * 131 + i * 7)) return false;
  }
  return true;
}

// xorshift: deterministic sizes without <random>'s weight.
struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
};

// Larson-like churn: waves of `threads` threads swap random slots of a shared table: each takes
// the block in a slot (any thread's, possibly one whose thread has exited), checks its pattern,
// frees it and leaves a fresh block of random size in its place. Returns the number of corrupt
// blocks seen; the table is left full (free_table empties it).
struct SharedTable {
  static constexpr size_t kSlots = 4096;
  std::atomic<void*> slots[kSlots] = {};
};

inline bool check_and_free(void* p) {
  if (p == nullptr) return true;
  size_t usable = hak_usable_size(p);
  bool ok = intact(p, usable, reinterpret_cast<uintptr_t>(p) ^ usable);
  hak_free(p);
  return ok;
}

inline int churn(SharedTable& table, int waves, int threads, int ops_per_thread) {
  std::atomic<int> corrupt{0};
  for (int wave = 0; wave < waves; ++wave) {
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, seed = wave * threads + t + 1] {
        Rng rng(seed);
        for (int i = 0; i < ops_per_thread; ++i) {
          void* p = hak_malloc(rng.below(hak_tiny_max_size() + 1));
          size_t usable = hak_usable_size(p);
          fill(p, usable, reinterpret_cast<uintptr_t>(p) ^ usable);
          void* old = table.slots[rng.below(SharedTable::kSlots)].exchange(p);
          if (!check_and_free(old)) corrupt.fetch_add(1);
        }
      });
    }
    for (auto& w : workers) w.join();
  }
  return corrupt.load();
}

inline int free_table(SharedTable& table) {
  int corrupt = 0;
  for (auto& slot : table.slots) corrupt += check_and_free(slot.exchange(nullptr)) ? 0 : 1;
  return corrupt;
}

}  // namespace hak_test
