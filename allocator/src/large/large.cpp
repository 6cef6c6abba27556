// Large spans (see large.h): one OS mapping per block, recycled through a bounded span cache.
#include "large/large.h"

#include <atomic>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/options.h"
#include "common/spin_lock.h"
#include "hakmem.h"
#include "os/os.h"

namespace hak::large {
namespace {

struct alignas(64) SpanHeader {
  void* block;    // the pointer handed out; nullptr while cached
  size_t mapped;  // bytes mapped from base
  size_t offset;  // block - base
};

struct CachedSpan {
  SpanHeader* span;
  uint64_t stamp;  // insertion order: the oldest is evicted or decommitted first
  bool committed;  // pages still resident (not decommitted)
};

constexpr size_t kCacheSlots = 64;
// Tail bytes worth giving back when a block shrinks in place.
constexpr size_t kShrinkReleaseBytes = 64 * 1024;

// g_lock guards the cache array and its byte counts; only free/alloc misses and hits take it.
SpinLock g_lock;
CachedSpan g_cache[kCacheSlots];
size_t g_cache_count = 0;
size_t g_cached_bytes = 0;
size_t g_committed_bytes = 0;
uint64_t g_clock = 0;

// Statistics only: relaxed.
std::atomic<uint64_t> g_spans_live{0};
std::atomic<uint64_t> g_live_bytes{0};
std::atomic<uint64_t> g_cache_hits{0};
std::atomic<uint64_t> g_cache_misses{0};

size_t cache_limit() {
  return options().large_cache_mb << 20;
}
size_t commit_limit() {
  return options().large_commit_mb << 20;
}

SpanHeader* validated_header(const void* p, chunk_map::Entry entry) {
  auto* header = entry.owner<SpanHeader>();
  if (HAK_UNLIKELY(header == nullptr || header->block != p)) {
    fatal("free(%p): not a block hakmem allocated (large span %p)", p, static_cast<void*>(header));
  }
  return header;
}

void unmap_span(SpanHeader* span) {
  size_t mapped = span->mapped;
  chunk_map::unregister_range(span, mapped);
  os::unmap(span, mapped);
}

void remove_slot(size_t i) {
  g_cached_bytes -= g_cache[i].span->mapped;
  if (g_cache[i].committed) g_committed_bytes -= g_cache[i].span->mapped;
  g_cache[i] = g_cache[--g_cache_count];
}

size_t oldest_slot(bool committed_only) {
  size_t best = kCacheSlots;
  for (size_t i = 0; i < g_cache_count; ++i) {
    if (committed_only && !g_cache[i].committed) continue;
    if (best == kCacheSlots || g_cache[i].stamp < g_cache[best].stamp) best = i;
  }
  return best;
}

// Takes the best-fitting cached span of at least `needed` bytes, wasting at most half of it.
// Sets *committed to whether its pages may hold old data.
SpanHeader* take_cached(size_t needed, bool* committed) {
  SpinLockGuard guard(g_lock);
  size_t best = kCacheSlots;
  for (size_t i = 0; i < g_cache_count; ++i) {
    size_t mapped = g_cache[i].span->mapped;
    if (mapped < needed || mapped - needed > needed / 2) continue;
    if (best == kCacheSlots || mapped < g_cache[best].span->mapped) best = i;
  }
  if (best == kCacheSlots) return nullptr;
  SpanHeader* span = g_cache[best].span;
  *committed = g_cache[best].committed;
  remove_slot(best);
  return span;
}

// Caches a freed span, then restores the bounds: decommit the oldest committed spans beyond the
// commit limit (under the lock: a decommitted span must not be handed out meanwhile), unmap the
// oldest spans beyond the cache limit (after the lock: they are out of the cache by then).
void cache_put(SpanHeader* span) {
  SpanHeader* victims[kCacheSlots + 1];
  size_t victim_count = 0;
  {
    SpinLockGuard guard(g_lock);
    if (g_cache_count == kCacheSlots) {
      size_t oldest = oldest_slot(false);
      victims[victim_count++] = g_cache[oldest].span;
      remove_slot(oldest);
    }
    g_cache[g_cache_count++] = CachedSpan{span, ++g_clock, true};
    g_cached_bytes += span->mapped;
    g_committed_bytes += span->mapped;
    while (g_cached_bytes > cache_limit()) {
      size_t oldest = oldest_slot(false);
      victims[victim_count++] = g_cache[oldest].span;
      remove_slot(oldest);
    }
    while (g_committed_bytes > commit_limit()) {
      size_t oldest = oldest_slot(true);
      if (oldest == kCacheSlots) break;
      SpanHeader* cold = g_cache[oldest].span;
      // Keep the header page; the rest reads as zeros afterwards.
      if (cold->mapped > kPageSize) {
        os::decommit(reinterpret_cast<char*>(cold) + kPageSize, cold->mapped - kPageSize);
      }
      g_cache[oldest].committed = false;
      g_committed_bytes -= cold->mapped;
    }
  }
  for (size_t i = 0; i < victim_count; ++i) unmap_span(victims[i]);
}

}  // namespace

void* alloc(size_t size, size_t alignment, bool zero) {
  if (alignment < 16) alignment = 16;
  size_t offset = align_up(sizeof(SpanHeader), alignment);
  size_t needed = align_up(offset + size, kPageSize);
  if (size > (SIZE_MAX >> 1) || offset < alignment || needed < size) {  // sums wrapped around
    errno = ENOMEM;
    return nullptr;
  }
  SpanHeader* header = nullptr;
  bool dirty = false;
  // The cache holds 2 MiB-aligned spans: it can serve any alignment up to that.
  if (alignment <= kChunkSize && needed <= cache_limit()) {
    header = take_cached(needed, &dirty);
  }
  if (header != nullptr) {
    g_cache_hits.fetch_add(1, std::memory_order_relaxed);
    header->offset = offset;
    header->block = reinterpret_cast<char*>(header) + offset;
    if (zero) {
      // A decommitted span reads as zeros except what is left in its header page.
      size_t dirty_bytes = dirty ? size : (offset < kPageSize ? kPageSize - offset : 0);
      std::memset(header->block, 0, dirty_bytes < size ? dirty_bytes : size);
    }
  } else {
    g_cache_misses.fetch_add(1, std::memory_order_relaxed);
    char* base =
        static_cast<char*>(os::map(needed, alignment > kChunkSize ? alignment : kChunkSize));
    if (base == nullptr) return nullptr;  // errno = ENOMEM
    header = new (base) SpanHeader{base + offset, needed, offset};
    if (!chunk_map::register_range(base, needed, chunk_map::Kind::kLarge, header)) {
      chunk_map::unregister_range(base, needed);
      os::unmap(base, needed);
      errno = ENOMEM;
      return nullptr;
    }
  }
  g_spans_live.fetch_add(1, std::memory_order_relaxed);
  g_live_bytes.fetch_add(header->mapped - offset, std::memory_order_relaxed);
  return header->block;
}

void free(void* p, chunk_map::Entry entry) {
  SpanHeader* header = validated_header(p, entry);
  header->block = nullptr;  // a second free of p now fails validation
  g_spans_live.fetch_sub(1, std::memory_order_relaxed);
  g_live_bytes.fetch_sub(header->mapped - header->offset, std::memory_order_relaxed);
  if (header->mapped <= cache_limit() / 2) {
    cache_put(header);
  } else {
    unmap_span(header);
  }
}

size_t usable_size(const void* p, chunk_map::Entry entry) {
  SpanHeader* header = validated_header(p, entry);
  return header->mapped - header->offset;
}

bool resize_in_place(void* p, chunk_map::Entry entry, size_t new_size) {
  SpanHeader* header = validated_header(p, entry);
  size_t mapped = header->mapped;
  size_t needed = align_up(header->offset + new_size, kPageSize);
  if (new_size > (SIZE_MAX >> 1) || needed < new_size) return false;
  char* base = reinterpret_cast<char*>(header);
  if (needed <= mapped) {
    if (mapped - needed >= kShrinkReleaseBytes) {
      // Shrink: clear the granules that no longer hold any of the span, then unmap the tail.
      size_t kept_granules = align_up(needed, kChunkSize);
      if (kept_granules < mapped)
        chunk_map::unregister_range(base + kept_granules, mapped - kept_granules);
      os::unmap(base + needed, mapped - needed);
      header->mapped = needed;
      g_live_bytes.fetch_sub(mapped - needed, std::memory_order_relaxed);
    }
    return true;
  }
  if (!os::remap_in_place(base, mapped, needed)) return false;
  if (!chunk_map::register_range(base, needed, chunk_map::Kind::kLarge, header)) {
    os::remap_in_place(base, needed, mapped);
    return false;
  }
  header->mapped = needed;
  g_live_bytes.fetch_add(needed - mapped, std::memory_order_relaxed);
  return true;
}

void* grow_by_moving(void* p, chunk_map::Entry entry, size_t new_size) {
  SpanHeader* header = validated_header(p, entry);
  if constexpr (!os::kCanRemap) return nullptr;  // the caller copies instead
  size_t mapped = header->mapped;
  size_t offset = header->offset;
  size_t needed = align_up(offset + new_size, kPageSize);
  if (new_size > (SIZE_MAX >> 1) || needed <= mapped) {
    errno = ENOMEM;
    return nullptr;
  }
  // offset == the alignment asked for when that was above 64 B: keep it for spans above 2 MiB.
  char* dst = static_cast<char*>(os::map(needed, offset > kChunkSize ? offset : kChunkSize));
  if (dst == nullptr) return nullptr;
  auto* moved = reinterpret_cast<SpanHeader*>(dst);
  // Register the new range first (the only step that can fail), then move the old pages over
  // its start; nobody looks dst up before the block is handed out.
  if (!chunk_map::register_range(dst, needed, chunk_map::Kind::kLarge, moved)) {
    chunk_map::unregister_range(dst, needed);
    os::unmap(dst, needed);
    errno = ENOMEM;
    return nullptr;
  }
  // Clear the old range's entries before its pages move away: once they are gone another thread
  // may map and register that address range, and a later clear would wipe its entries.
  chunk_map::unregister_range(header, mapped);
  if (!os::move_pages(header, mapped, dst)) {
    // Nothing else could claim the old range while it stayed mapped; restore its entries.
    chunk_map::register_range(header, mapped, chunk_map::Kind::kLarge, header);
    chunk_map::unregister_range(dst, needed);
    os::unmap(dst, needed);
    errno = ENOMEM;
    return nullptr;
  }
  moved->mapped = needed;
  moved->block = dst + offset;
  g_live_bytes.fetch_add(needed - mapped, std::memory_order_relaxed);
  return moved->block;
}

void collect() {
  SpanHeader* spans[kCacheSlots];
  size_t count;
  {
    SpinLockGuard guard(g_lock);
    count = g_cache_count;
    for (size_t i = 0; i < count; ++i) spans[i] = g_cache[i].span;
    g_cache_count = 0;
    g_cached_bytes = 0;
    g_committed_bytes = 0;
  }
  for (size_t i = 0; i < count; ++i) unmap_span(spans[i]);
}

void prefork() {
  g_lock.lock();
}
void postfork_parent() {
  g_lock.unlock();
}
void postfork_child() {
  g_lock.reset();
}

void fill_stats(hak_stats_t* out) {
  out->large_spans_live = g_spans_live.load(std::memory_order_relaxed);
  out->large_cache_hits = g_cache_hits.load(std::memory_order_relaxed);
  out->large_cache_misses = g_cache_misses.load(std::memory_order_relaxed);
  out->bytes_in_use += g_live_bytes.load(std::memory_order_relaxed);
}

}  // namespace hak::large
