// The override layer: makes hakmem the malloc of the process. Built into libhakmem.so (for
// LD_PRELOAD) and libhakmem_override.a (for programs that link it). Everything here maps onto the
// router (api/route.h) with the C and C++ standards' edge cases:
//  - malloc(0) and new(0) return a unique freeable block; free(NULL) and delete nullptr do nothing.
//  - calloc and reallocarray check count * size for overflow (NULL, errno = ENOMEM).
//  - realloc(NULL, n) is malloc(n); realloc(p, 0) frees p and returns NULL (glibc's choice);
//    failure returns NULL and leaves p valid.
//  - Alignments must be powers of two (posix_memalign: also a multiple of sizeof(void*)); others
//    are EINVAL. posix_memalign returns its error and never touches *out on failure or errno.
//  - Out of memory: NULL and errno = ENOMEM; throwing operator new calls the installed
//    std::new_handler until it succeeds, and throws std::bad_alloc when there is none; the
//    nothrow forms return nullptr instead.
//  - glibc's __libc_* entry points are hakmem's too, so no block of glibc's own allocator can ever
//    reach hakmem's free through them.
// Every definition is exported explicitly: the library is compiled with -fvisibility=hidden.
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>

#include <new>

#include "api/route.h"
#include "common/base.h"

#define HAK_EXPORT __attribute__((visibility("default")))

using namespace hak;

namespace {

HAK_FAST_PATH bool valid_alignment(size_t alignment) {
  return is_power_of_two(alignment);
}

// The checked aligned allocation shared by aligned_alloc, memalign, valloc and pvalloc.
void* aligned_or_einval(size_t alignment, size_t size) {
  if (HAK_UNLIKELY(!valid_alignment(alignment))) {
    errno = EINVAL;
    return nullptr;
  }
  return route_aligned_alloc(alignment, size);
}

// The new_handler loop of [new.delete.single]: retry while a handler is installed.
HAK_SLOW_PATH void* new_slow(size_t size, size_t alignment, bool nothrow) {
  for (;;) {
    void* p = alignment <= 16 ? route_malloc(size) : route_aligned_alloc(alignment, size);
    if (p != nullptr) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      if (nothrow) return nullptr;
      throw std::bad_alloc();
    }
    if (!nothrow) {
      handler();
      continue;
    }
    try {
      handler();
    } catch (const std::bad_alloc&) {
      return nullptr;
    }
  }
}

HAK_FAST_PATH void* new_impl(size_t size) {
  void* p = route_malloc(size);
  if (HAK_LIKELY(p != nullptr)) return p;
  return new_slow(size, 0, false);
}

HAK_FAST_PATH void* new_nothrow_impl(size_t size) noexcept {
  void* p = route_malloc(size);
  if (HAK_LIKELY(p != nullptr)) return p;
  try {
    return new_slow(size, 0, true);
  } catch (...) {  // a new_handler may throw something else than bad_alloc: still no exception
    return nullptr;
  }
}

void* new_aligned_impl(size_t size, std::align_val_t alignment) {
  size_t a = static_cast<size_t>(alignment);
  void* p = valid_alignment(a) ? route_aligned_alloc(a, size) : nullptr;
  if (HAK_LIKELY(p != nullptr)) return p;
  if (!valid_alignment(a)) throw std::bad_alloc();
  return new_slow(size, a, false);
}

void* new_aligned_nothrow_impl(size_t size, std::align_val_t alignment) noexcept {
  try {
    return new_aligned_impl(size, alignment);
  } catch (...) {
    return nullptr;
  }
}

}  // namespace

extern "C" {

HAK_EXPORT void* malloc(size_t size) noexcept {
  return route_malloc(size);
}

HAK_EXPORT void free(void* p) noexcept {
  route_free(p);
}

HAK_EXPORT void* calloc(size_t count, size_t size) noexcept {
  return route_calloc(count, size);
}

HAK_EXPORT void* realloc(void* p, size_t size) noexcept {
  return route_realloc(p, size);
}

HAK_EXPORT void* reallocarray(void* p, size_t count, size_t size) noexcept {
  size_t total;
  if (HAK_UNLIKELY(__builtin_mul_overflow(count, size, &total))) {
    errno = ENOMEM;
    return nullptr;
  }
  return route_realloc(p, total);
}

HAK_EXPORT int posix_memalign(void** out, size_t alignment, size_t size) noexcept {
  if (HAK_UNLIKELY(!valid_alignment(alignment) || alignment % sizeof(void*) != 0)) return EINVAL;
  int saved = errno;  // posix_memalign reports through its result, errno stays as it was
  void* p = route_aligned_alloc(alignment, size);
  errno = saved;
  if (HAK_UNLIKELY(p == nullptr)) return ENOMEM;
  *out = p;
  return 0;
}

HAK_EXPORT void* aligned_alloc(size_t alignment, size_t size) noexcept {
  return aligned_or_einval(alignment, size);
}

HAK_EXPORT void* memalign(size_t alignment, size_t size) noexcept {
  return aligned_or_einval(alignment, size);
}

HAK_EXPORT void* valloc(size_t size) noexcept {
  return route_aligned_alloc(kPageSize, size);
}

HAK_EXPORT void* pvalloc(size_t size) noexcept {
  size_t rounded = align_up(size == 0 ? 1 : size, kPageSize);
  if (HAK_UNLIKELY(rounded < size)) {
    errno = ENOMEM;
    return nullptr;
  }
  return route_aligned_alloc(kPageSize, rounded);
}

HAK_EXPORT size_t malloc_usable_size(void* p) noexcept {
  return p == nullptr ? 0 : route_usable_size(p);
}

// glibc's internal names for the same functions (some programs and libraries call them).
HAK_EXPORT void* __libc_malloc(size_t size) {
  return route_malloc(size);
}
HAK_EXPORT void __libc_free(void* p) {
  route_free(p);
}
HAK_EXPORT void* __libc_calloc(size_t count, size_t size) {
  return route_calloc(count, size);
}
HAK_EXPORT void* __libc_realloc(void* p, size_t size) {
  return route_realloc(p, size);
}
HAK_EXPORT void* __libc_memalign(size_t alignment, size_t size) {
  return aligned_or_einval(alignment, size);
}
HAK_EXPORT void* __libc_valloc(size_t size) {
  return valloc(size);
}
HAK_EXPORT void* __libc_pvalloc(size_t size) {
  return pvalloc(size);
}
HAK_EXPORT int __posix_memalign(void** out, size_t alignment, size_t size) {
  return posix_memalign(out, alignment, size);
}

}  // extern "C"

// ---- C++ ----

HAK_EXPORT void* operator new(size_t size) {
  return new_impl(size);
}
HAK_EXPORT void* operator new[](size_t size) {
  return new_impl(size);
}
HAK_EXPORT void* operator new(size_t size, const std::nothrow_t&) noexcept {
  return new_nothrow_impl(size);
}
HAK_EXPORT void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  return new_nothrow_impl(size);
}
HAK_EXPORT void* operator new(size_t size, std::align_val_t alignment) {
  return new_aligned_impl(size, alignment);
}
HAK_EXPORT void* operator new[](size_t size, std::align_val_t alignment) {
  return new_aligned_impl(size, alignment);
}
HAK_EXPORT void* operator new(size_t size, std::align_val_t alignment,
                              const std::nothrow_t&) noexcept {
  return new_aligned_nothrow_impl(size, alignment);
}
HAK_EXPORT void* operator new[](size_t size, std::align_val_t alignment,
                                const std::nothrow_t&) noexcept {
  return new_aligned_nothrow_impl(size, alignment);
}

HAK_EXPORT void operator delete(void* p) noexcept {
  route_free(p);
}
HAK_EXPORT void operator delete[](void* p) noexcept {
  route_free(p);
}
HAK_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept {
  route_free(p);
}
HAK_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept {
  route_free(p);
}
// Sized forms: the block's size comes from its address anyway, so the size is not needed.
HAK_EXPORT void operator delete(void* p, size_t) noexcept {
  route_free(p);
}
HAK_EXPORT void operator delete[](void* p, size_t) noexcept {
  route_free(p);
}
HAK_EXPORT void operator delete(void* p, std::align_val_t) noexcept {
  route_free(p);
}
HAK_EXPORT void operator delete[](void* p, std::align_val_t) noexcept {
  route_free(p);
}
HAK_EXPORT void operator delete(void* p, size_t, std::align_val_t) noexcept {
  route_free(p);
}
HAK_EXPORT void operator delete[](void* p, size_t, std::align_val_t) noexcept {
  route_free(p);
}
HAK_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  route_free(p);
}
HAK_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  route_free(p);
}
