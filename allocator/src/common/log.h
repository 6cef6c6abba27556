// Diagnostics that never allocate: formatted into a stack buffer and written to stderr with one
// write(2), so they are safe inside malloc, before hakmem is initialised and after a crash.
#pragma once

#include "common/base.h"

namespace hak {

[[gnu::format(printf, 1, 2)]] void log_message(const char* format, ...);

// Prints "hakmem: fatal: ..." and aborts. For broken invariants and detected heap corruption.
[[noreturn, gnu::format(printf, 1, 2), gnu::cold]] void fatal(const char* format, ...);

// A free of a pointer hakmem does not own (p not null): fatal with HAKMEM_CHECK=1, else logged
// and ignored, since the memory is not ours to touch.
void refuse_foreign_free(const void* p);

}  // namespace hak

// Invariant check that costs nothing in release builds (the condition is not evaluated there).
#define HAK_DEBUG_CHECK(cond, ...)                          \
  do {                                                      \
    if constexpr (::hak::kDebugChecks) {                    \
      if (HAK_UNLIKELY(!(cond))) ::hak::fatal(__VA_ARGS__); \
    }                                                       \
  } while (0)
