// Building blocks shared by every part of hakmem: branch hints, inlining attributes, the chunk
// granule, alignment helpers and the build-configuration switches used by `if constexpr`.
#pragma once

#include <cstddef>
#include <cstdint>

#define HAK_LIKELY(x) __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)
// Fast paths are inlined into their callers; slow paths stay out of line and out of the way.
#define HAK_FAST_PATH [[gnu::always_inline]] inline
#define HAK_SLOW_PATH [[gnu::noinline, gnu::cold]]

namespace hak {

// Debug builds (no NDEBUG) check invariants on every operation and fail fast.
#ifdef NDEBUG
inline constexpr bool kDebugChecks = false;
#else
inline constexpr bool kDebugChecks = true;
#endif

// The unit of address space that hakmem maps for SuperSlabs and pool chunks, and the
// granularity of the chunk map: 2 MiB, aligned to 2 MiB.
inline constexpr unsigned kChunkShift = 21;
inline constexpr size_t kChunkSize = size_t{1} << kChunkShift;
inline constexpr size_t kPageSize = 4096;
inline constexpr size_t kCacheLine = 64;

// The largest size each part serves (inclusive). Above kPoolMaxSize: large spans.
inline constexpr size_t kTinyMaxSize = 1024;
inline constexpr size_t kPoolMaxSize = 1024 * 1024;

constexpr uintptr_t align_down(uintptr_t x, size_t alignment) {
  return x & ~(uintptr_t{alignment} - 1);
}
constexpr uintptr_t align_up(uintptr_t x, size_t alignment) {
  return (x + alignment - 1) & ~(uintptr_t{alignment} - 1);
}
constexpr bool is_power_of_two(size_t x) {
  return x != 0 && (x & (x - 1)) == 0;
}

}  // namespace hak
