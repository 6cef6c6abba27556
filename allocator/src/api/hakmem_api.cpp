// The public C API (hakmem.h) on top of the router, plus the slow routes and the stats report.
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "api/route.h"
#include "common/log.h"
#include "common/options.h"
#include "hakmem.h"
#include "large/large.h"
#include "os/os.h"
#include "pool/pool.h"

namespace hak {

void route_free_large_or_foreign(void* p, chunk_map::Entry entry) noexcept {
  switch (entry.kind()) {
    case chunk_map::Kind::kLarge:
      return large::free(p, entry);
    case chunk_map::Kind::kNone:
      // Not in hakmem's address map: refuse it rather than corrupt memory we do not own.
      if (p != nullptr) refuse_foreign_free(p);
      return;
    default:
      fatal("free(%p): unknown chunk kind %lu", p, static_cast<unsigned long>(entry.kind()));
  }
}

void* route_aligned_alloc_slow(size_t alignment, size_t size) {
  // Pool classes whose size is a multiple of the alignment give aligned blocks up to a page.
  if (size <= kPoolMaxSize) {
    if (void* p = pool::alloc_aligned(alignment, size)) return p;
  }
  return large::alloc(size == 0 ? 1 : size, alignment);
}

namespace {

// The usable size of p outside tiny's arena; 0 for a pointer hakmem does not know.
size_t usable_size_of(const void* p, chunk_map::Entry entry) {
  switch (entry.kind()) {
    case chunk_map::Kind::kTiny:
      return tiny::usable_size(p, entry.owner<tiny::SuperSlab>());
    case chunk_map::Kind::kPool:
      return pool::usable_size(p, entry);
    case chunk_map::Kind::kLarge:
      return large::usable_size(p, entry);
    default:
      return 0;
  }
}

}  // namespace

size_t route_usable_size(const void* p) {
  if (HAK_LIKELY(tiny::in_arena(p))) return tiny::usable_size(p, tiny::SuperSlab::of(p));
  return usable_size_of(p, chunk_map::lookup(p));
}

void* route_calloc(size_t count, size_t size) {
  size_t total;
  if (HAK_UNLIKELY(__builtin_mul_overflow(count, size, &total))) {
    errno = ENOMEM;
    return nullptr;
  }
  // Large spans know whether their pages are already zero (fresh or decommitted).
  if (total > kPoolMaxSize) return large::alloc(total, 16, true);
  void* p = route_malloc(total);
  if (HAK_LIKELY(p != nullptr)) std::memset(p, 0, total);
  return p;
}

// A block reallocated past this size lives in a large span (even below kPoolMaxSize), where it
// grows in place or by moving pages: in the pool's top classes each step up would be a copy.
constexpr size_t kReallocLargeFrom = 256 * 1024;

void* route_realloc_slow(void* p, size_t size) {
  if (p == nullptr) return route_malloc(size);
  if (size == 0) {  // glibc's behaviour: free and return NULL
    route_free(p);
    return nullptr;
  }
  // Most reallocated blocks are tiny: the arena's range test finds them without the chunk map.
  chunk_map::Entry entry;
  size_t usable;
  if (HAK_LIKELY(tiny::in_arena(p))) {
    usable = tiny::usable_size(p, tiny::SuperSlab::of(p));
  } else {
    entry = chunk_map::lookup(p);
    // Large blocks that stay large grow (mremap) or shrink (unmap the tail) where they are.
    if (entry.kind() == chunk_map::Kind::kLarge && size > kReallocLargeFrom &&
        large::resize_in_place(p, entry, size)) {
      return p;
    }
    usable = usable_size_of(p, entry);
  }
  if (HAK_UNLIKELY(usable == 0)) {
    // Not a block hakmem handed out, so its size is unknown and it cannot be copied: refuse it
    // (the caller keeps p).
    log_message("realloc(%p): pointer was not allocated by hakmem", p);
    if (options().check) fatal("realloc(%p): pointer was not allocated by hakmem", p);
    errno = EINVAL;
    return nullptr;
  }
  // Keep the block when the new size fits and would not waste more than half of it.
  if (size <= usable && size >= usable / 2) return p;
  // A large block that must move moves its pages, not its bytes.
  if (entry.kind() == chunk_map::Kind::kLarge && size > usable) {
    if (void* moved = large::grow_by_moving(p, entry, size)) return moved;
  }
  // A block that grows gets at least a quarter more than it had: a buffer grown in small steps
  // then moves every ~1.25x of growth instead of at every size class.
  size_t want = size > usable && size - usable < usable / 4 ? usable + usable / 4 : size;
  void* fresh =
      size > usable && want > kReallocLargeFrom ? large::alloc(want, 16) : route_malloc(want);
  if (HAK_UNLIKELY(fresh == nullptr) && want != size) fresh = route_malloc(size);
  if (fresh == nullptr) return nullptr;  // p stays valid, as realloc requires
  std::memcpy(fresh, p, usable < size ? usable : size);
  route_free(p);
  return fresh;
}

namespace {

// fork(): every global lock of every part is held across it, so the child finds them free and
// the structures they guard consistent. Registered once, from a constructor (pthread_atfork does
// not allocate for its first handlers).
void prefork_all() {
  tiny::prefork();
  pool::prefork();
  large::prefork();
}
void postfork_parent_all() {
  large::postfork_parent();
  pool::postfork_parent();
  tiny::postfork_parent();
}
void postfork_child_all() {
  large::postfork_child();
  pool::postfork_child();
  tiny::postfork_child();
}
[[gnu::constructor]] void register_fork_handlers() {
  pthread_atfork(prefork_all, postfork_parent_all, postfork_child_all);
}

}  // namespace

}  // namespace hak

using namespace hak;

extern "C" {

void* hak_malloc(size_t size) {
  return route_malloc(size);
}

void hak_free(void* ptr) {
  route_free(ptr);
}

void* hak_calloc(size_t count, size_t size) {
  return route_calloc(count, size);
}

void* hak_realloc(void* ptr, size_t size) {
  return route_realloc(ptr, size);
}

void* hak_aligned_alloc(size_t alignment, size_t size) {
  if (HAK_UNLIKELY(!is_power_of_two(alignment))) {
    errno = EINVAL;
    return nullptr;
  }
  return route_aligned_alloc(alignment, size);
}

size_t hak_usable_size(const void* ptr) {
  return ptr == nullptr ? 0 : route_usable_size(ptr);
}

void hak_collect(void) {
  tiny::collect();
  pool::collect();
  large::collect();
}

void hak_stats(hak_stats_t* out) {
  uint32_t caller_size = out->struct_size;
  if (caller_size != 0 && caller_size < sizeof(hak_stats_t)) {
    log_message("hak_stats: caller's hak_stats_t has %u bytes, expected %zu", caller_size,
                sizeof(hak_stats_t));
    return;
  }
  std::memset(out, 0, sizeof(hak_stats_t));
  out->struct_size = sizeof(hak_stats_t);
  os::fill_stats(out);
  tiny::fill_stats(out);
  pool::fill_stats(out);
  large::fill_stats(out);
}

void hak_stats_print(int fd) {
  hak_stats_t s{};
  s.struct_size = sizeof s;
  hak_stats(&s);
  char text[4096];
  int n = std::snprintf(
      text, sizeof text,
      "hakmem stats:\n"
      "  mapped           %llu bytes (peak %llu), in use %llu bytes\n"
      "  os calls         map %llu, unmap %llu, decommit %llu\n"
      "  superslabs       live %llu, peak %llu, returned to OS %llu\n"
      "  tiny             refills %llu, spills %llu, remote frees %llu, adoptions %llu, "
      "spill-queue drains %llu\n"
      "  pool             chunks live %llu, refills %llu, remote frees %llu\n"
      "  large            spans live %llu, cache hits %llu, misses %llu\n"
      "  slabs per class ",
      (unsigned long long)s.bytes_mapped, (unsigned long long)s.bytes_mapped_peak,
      (unsigned long long)s.bytes_in_use, (unsigned long long)s.os_map_calls,
      (unsigned long long)s.os_unmap_calls, (unsigned long long)s.os_decommit_calls,
      (unsigned long long)s.superslabs_live, (unsigned long long)s.superslabs_peak,
      (unsigned long long)s.superslabs_returned, (unsigned long long)s.tiny_refills,
      (unsigned long long)s.tiny_spills, (unsigned long long)s.tiny_remote_frees,
      (unsigned long long)s.tiny_adoptions, (unsigned long long)s.tiny_spill_queue_drains,
      (unsigned long long)s.pool_chunks_live, (unsigned long long)s.pool_refills,
      (unsigned long long)s.pool_remote_frees, (unsigned long long)s.large_spans_live,
      (unsigned long long)s.large_cache_hits, (unsigned long long)s.large_cache_misses);
  for (uint32_t c = 0; c < s.tiny_class_count && n > 0 && n < (int)sizeof text - 32; ++c) {
    n += std::snprintf(text + n, sizeof text - n, " %u:%llu", s.tiny_class_size[c],
                       (unsigned long long)s.tiny_slabs_per_class[c]);
  }
  if (n > 0 && n < (int)sizeof text - 1) text[n++] = '\n';
  if (n > (int)sizeof text) n = sizeof text;
  for (int written = 0; n > 0 && written < n;) {
    ssize_t w = ::write(fd, text + written, n - written);
    if (w <= 0) break;
    written += static_cast<int>(w);
  }
}

}  // extern "C"

namespace {
// HAKMEM_STATS=1: the report at exit. A destructor, not atexit(), which may allocate.
[[gnu::destructor]] void print_stats_at_exit() {
  if (options().stats) hak_stats_print(STDERR_FILENO);
}
}  // namespace
