// Helpers shared by the tiny tests: iteration scaling under sanitizers, stats snapshots, fill
// patterns.
#pragma once

#include <cstdint>
#include <cstring>

#include "hakmem.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define HAK_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define HAK_TEST_SANITIZED 1
#endif
#endif

namespace hak_test {

#if defined(HAK_TEST_SANITIZED)
inline constexpr int kScale = 4;  // sanitizers: a quarter of the work
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

}  // namespace hak_test
