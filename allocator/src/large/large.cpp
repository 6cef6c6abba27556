// Large spans (see large.h): whole granules of address space, split and merged in a bounded cache
// so that freed memory serves the next spans of other sizes without a new mapping or page fault.
// Neighbours merge lazily, when a request needs them: a block freed and asked for again at the
// same size (in granules) gets its own span back with no split, no merge and no syscall.
#include "large/large.h"

#include <algorithm>
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

constexpr size_t kGranule = kChunkSize;
// A span smaller than this is cut from a fresh mapping of this size, the rest cached: one mmap
// (and its alignment trim) per few spans, and neighbours that merge back when they are freed.
constexpr size_t kRegionBytes = 4 * kGranule;
constexpr size_t kCacheSlots = 64;
// Resident bytes past a block's end worth giving back (when a block shrinks, or when a recycled
// span had more dirty pages than the new block needs).
constexpr size_t kReleaseBytes = 64 * 1024;

struct alignas(64) SpanHeader {
  void* block;      // the pointer handed out; nullptr while cached (written by the block's owner)
  size_t reserved;  // address space from base: whole granules
  size_t end;       // base + end is the end of the block's pages
  size_t offset;    // block - base
  size_t dirty;     // pages below base + dirty may hold old data; the rest read as zero
  size_t resident;  // while cached: estimate of resident bytes, for the commit limit
  uint64_t stamp;   // while cached: when it entered the cache (the oldest goes first)
  bool cached;      // under g_lock only: neighbours read it to decide whether to merge
  uint32_t cached_ms;  // while cached: os::now_ms() when its pages last left a block (mod 2^32)
};
static_assert(sizeof(SpanHeader) == 64, "the header takes one line in front of the block");

// g_lock guards the cache (slots, byte counts, SpanHeader::cached, the entries of cached spans)
// and every unregistration of a span: a thread that merges reads a neighbour's header through the
// chunk map under the lock, so no header may be unmapped while its entries are visible to it.
SpinLock g_lock;
SpanHeader* g_slots[kCacheSlots];
size_t g_slot_count = 0;
size_t g_cached_bytes = 0;    // address space of cached spans
size_t g_resident_bytes = 0;  // resident estimate of cached spans
uint64_t g_clock = 0;
uint64_t g_last_idle_pass_ms = 0;

// A statistic. Every write is made under g_lock, mostly by a cache operation that holds it anyway,
// as a relaxed load and store: the lock orders the writers, so no update is lost, without a locked
// read-modify-write (five of those cost a malloc/free pair about 30 ns). fill_stats reads without
// the lock (relaxed: a snapshot). Unsigned: a decrease adds the two's complement.
class Counter {
 public:
  void add_locked(uint64_t delta) {
    value_.store(value_.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  }
  uint64_t load() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};
Counter g_spans_live;
Counter g_live_bytes;
Counter g_cache_hits;
Counter g_cache_misses;

// What a cache operation adds to the live-block statistics, under the lock it takes.
struct LiveChange {
  uint64_t spans = 0;
  uint64_t bytes = 0;
};
LiveChange handed_out(size_t usable) {
  return {1, usable};
}
LiveChange given_back(const SpanHeader* span) {
  return {0 - uint64_t{1}, 0 - (span->end - span->offset)};
}
void count_locked(LiveChange change) {
  g_spans_live.add_locked(change.spans);
  g_live_bytes.add_locked(change.bytes);
}
// A live block's size changed by `delta` (two's complement for a decrease).
void count_resize(uint64_t delta) {
  SpinLockGuard guard(g_lock);
  g_live_bytes.add_locked(delta);
}

size_t cache_limit() {
  return options().large_cache_mb << 20;
}
size_t commit_limit() {
  return options().large_commit_mb << 20;
}
char* base_of(SpanHeader* span) {
  return reinterpret_cast<char*>(span);
}

SpanHeader* validated_header(const void* p, chunk_map::Entry entry) {
  auto* header = entry.owner<SpanHeader>();
  if (HAK_UNLIKELY(header == nullptr || header->block != p)) {
    fatal("free(%p): not a block hakmem allocated (large span %p)", p, static_cast<void*>(header));
  }
  return header;
}

// Re-points the granules of a span that was already registered: the leaves exist, so this cannot
// fail.
void reregister(void* base, size_t size, SpanHeader* owner) {
  bool ok = chunk_map::register_range(base, size, chunk_map::Kind::kLarge, owner);
  HAK_DEBUG_CHECK(ok, "large: re-registering %p failed", base);
  (void)ok;
}

void unmap_span(SpanHeader* span, LiveChange change) {
  size_t reserved = span->reserved;
  {
    SpinLockGuard guard(g_lock);
    count_locked(change);
    chunk_map::unregister_range(span, reserved);
  }
  os::unmap(span, reserved);
}

size_t slot_of(const SpanHeader* span) {
  size_t i = 0;
  while (g_slots[i] != span) ++i;
  return i;
}

void insert_locked(SpanHeader* span) {
  span->cached = true;
  span->stamp = ++g_clock;
  g_slots[g_slot_count++] = span;
  g_cached_bytes += span->reserved;
  g_resident_bytes += span->resident;
}

SpanHeader* remove_locked(size_t i) {
  SpanHeader* span = g_slots[i];
  span->cached = false;
  g_cached_bytes -= span->reserved;
  g_resident_bytes -= span->resident;
  g_slots[i] = g_slots[--g_slot_count];
  return span;
}

// The cached span that starts at `start`, if any.
SpanHeader* cached_span_at(char* start) {
  chunk_map::Entry entry = chunk_map::lookup(start);
  if (entry.kind() != chunk_map::Kind::kLarge) return nullptr;
  auto* span = entry.owner<SpanHeader>();
  return span->cached && base_of(span) == start ? span : nullptr;
}

// The cached span that ends at `end`, if any.
SpanHeader* cached_span_before(char* end) {
  chunk_map::Entry entry = chunk_map::lookup(end - 1);
  if (entry.kind() != chunk_map::Kind::kLarge) return nullptr;
  auto* span = entry.owner<SpanHeader>();
  return span->cached && base_of(span) + span->reserved == end ? span : nullptr;
}

// left absorbs right, its neighbour (the caller takes right's slot and keeps the byte totals).
// Everything below right's dirty end may hold data, right's header included, so that is the merged
// span's dirty end.
void absorb_locked(SpanHeader* left, SpanHeader* right) {
  left->dirty = left->reserved + right->dirty;
  left->resident += right->resident;
  reregister(right, right->reserved, left);
  left->reserved += right->reserved;
}

// Merges every run of adjacent cached spans into its first span, which keeps the newest stamp of
// the run (eviction takes the whole span). The run's bytes stay cached: the totals do not change.
// False if there was nothing to merge.
bool merge_runs_locked() {
  bool merged = false;
  for (size_t i = 0; i < g_slot_count; ++i) {
    SpanHeader* head = g_slots[i];
    // A span with a cached left neighbour is absorbed when the first span of its run comes up.
    if (!head->cached || cached_span_before(base_of(head)) != nullptr) continue;
    while (SpanHeader* right = cached_span_at(base_of(head) + head->reserved)) {
      right->cached = false;  // its slot is dropped below
      head->stamp = std::max(head->stamp, right->stamp);
      if (static_cast<int32_t>(right->cached_ms - head->cached_ms) > 0) {
        head->cached_ms = right->cached_ms;
      }
      absorb_locked(head, right);
      merged = true;
    }
  }
  if (!merged) return false;
  size_t kept = 0;
  for (size_t i = 0; i < g_slot_count; ++i) {
    if (g_slots[i]->cached) g_slots[kept++] = g_slots[i];
  }
  g_slot_count = kept;
  return true;
}

// Cuts span to `reserve` bytes and returns the rest as a span of its own, registered, not cached.
SpanHeader* split(SpanHeader* span, size_t reserve) {
  char* rest = base_of(span) + reserve;
  size_t kept_resident = std::min(span->resident, std::min(span->dirty, reserve));
  auto* tail = new (rest) SpanHeader{};
  tail->reserved = span->reserved - reserve;
  // The header just written dirtied the tail's first page.
  tail->dirty = span->dirty > reserve + kPageSize ? span->dirty - reserve : kPageSize;
  tail->resident = std::max(span->resident - kept_resident, kPageSize);
  tail->cached_ms = span->cached_ms;  // its resident pages are as old as the span's
  reregister(rest, tail->reserved, tail);
  span->reserved = reserve;
  span->dirty = std::min(span->dirty, reserve);
  return tail;
}

size_t oldest_slot() {
  size_t best = 0;
  for (size_t i = 1; i < g_slot_count; ++i) {
    if (g_slots[i]->stamp < g_slots[best]->stamp) best = i;
  }
  return best;
}

SpanHeader* evict_oldest_locked() {
  SpanHeader* span = remove_locked(oldest_slot());
  chunk_map::unregister_range(span, span->reserved);
  return span;
}

// A cached span's pages but its header's go back to the OS. Under the lock.
void decommit_locked(SpanHeader* span) {
  if (span->dirty > kPageSize) os::decommit(base_of(span) + kPageSize, span->dirty - kPageSize);
  g_resident_bytes -= span->resident - kPageSize;
  span->resident = kPageSize;
  span->dirty = kPageSize;
}

// Decommits the oldest cached span that holds resident pages beyond its header. False if none.
// Under the lock: a span being decommitted must not be handed out meanwhile.
bool decommit_oldest_locked() {
  SpanHeader* oldest = nullptr;
  for (size_t i = 0; i < g_slot_count; ++i) {
    SpanHeader* span = g_slots[i];
    if (span->resident > kPageSize && (oldest == nullptr || span->stamp < oldest->stamp)) {
      oldest = span;
    }
  }
  if (oldest == nullptr) return false;
  decommit_locked(oldest);
  return true;
}

// Decommits the cached spans whose pages no request took for a whole HAKMEM_RELEASE_DELAY_MS:
// the commit limit bounds a burst, this returns what the program stopped asking for. At most one
// pass per clock tick, from the cache operations (a program that stops using large blocks keeps
// its last cached pages until hak_collect or its next large block).
void decommit_idle_locked(uint64_t now) {
  if (now == g_last_idle_pass_ms) return;
  g_last_idle_pass_ms = now;
  uint64_t delay = options().release_delay_ms;
  for (size_t i = 0; i < g_slot_count; ++i) {
    SpanHeader* span = g_slots[i];
    if (span->resident > kPageSize && static_cast<uint32_t>(now) - span->cached_ms >= delay) {
      decommit_locked(span);
    }
  }
}

// Caches a span that nobody uses, as it is (a cached neighbour stays a span of its own until a
// request, a full slot table or the byte limit merges them), then restores the bounds: decommit
// the oldest spans beyond the commit limit, unmap the oldest beyond the cache limit (after the
// lock: they are out of the cache and the chunk map by then). `change` goes to the statistics.
void cache_put(SpanHeader* span, LiveChange change = {}) {
  SpanHeader* victims[kCacheSlots + 1];
  size_t victim_count = 0;
  {
    uint64_t now = os::now_ms();
    span->cached_ms = static_cast<uint32_t>(now);
    SpinLockGuard guard(g_lock);
    count_locked(change);
    decommit_idle_locked(now);
    if (g_slot_count == kCacheSlots && !merge_runs_locked()) {
      victims[victim_count++] = evict_oldest_locked();
    }
    insert_locked(span);
    // Past the byte limit whole runs go, one unmap each, as when they were merged on free.
    if (g_cached_bytes > cache_limit()) merge_runs_locked();
    while (g_cached_bytes > cache_limit()) victims[victim_count++] = evict_oldest_locked();
    while (g_resident_bytes > commit_limit() && decommit_oldest_locked()) {
    }
  }
  for (size_t i = 0; i < victim_count; ++i) os::unmap(victims[i], victims[i]->reserved);
}

// What the cached span `first` would be merged with the cached spans that follow it, as many as
// it takes to hold `reserve` bytes (fewer if the run ends first): the sums absorb_locked makes.
struct Run {
  size_t reserved;
  size_t dirty;
  size_t resident;
  size_t spans;
};
void extend_run_locked(SpanHeader* first, size_t reserve, Run& run) {
  for (SpanHeader* last = first; run.reserved < reserve; ++run.spans) {
    last = cached_span_at(base_of(last) + last->reserved);
    if (last == nullptr) break;
    run.dirty = run.reserved + last->dirty;
    run.resident += last->resident;
    run.reserved += last->reserved;
  }
}
HAK_FAST_PATH Run run_from_locked(SpanHeader* first, size_t reserve) {
  Run run{first->reserved, first->dirty, first->resident, 1};
  if (HAK_UNLIKELY(run.reserved < reserve)) extend_run_locked(first, reserve, run);
  return run;
}

// Takes the span in slot i out of the cache merged with the cached spans after it that
// run_from_locked counted for `reserve` bytes.
SpanHeader* take_run_locked(size_t i, size_t reserve) {
  SpanHeader* first = remove_locked(i);
  while (first->reserved < reserve) {
    SpanHeader* next = cached_span_at(base_of(first) + first->reserved);
    absorb_locked(first, remove_locked(slot_of(next)));
  }
  return first;
}

// The cached span that best serves a block ending at base + end in `reserve` bytes, merged with
// the cached spans after it if it is too small alone, cut to size: the one whose resident pages
// the block reuses most (page faults saved) net of those past its end that must be decommitted
// (faults some later block pays), then the smallest, then the one of fewest spans. A span that has
// the block's size in granules and the pages it needs is taken as it is: no merge, no split.
// A hit counts the block (usable bytes) as live.
SpanHeader* take_cached(size_t reserve, size_t end, size_t usable) {
  SpinLockGuard guard(g_lock);
  decommit_idle_locked(os::now_ms());
  size_t best = kCacheSlots;
  Run best_run{};
  ptrdiff_t best_score = 0;
  for (size_t i = 0; i < g_slot_count; ++i) {
    Run run = run_from_locked(g_slots[i], reserve);
    if (run.reserved < reserve) continue;
    size_t dirty = std::min(std::min(run.resident, run.dirty), reserve);
    ptrdiff_t score = static_cast<ptrdiff_t>(std::min(dirty, end)) -
                      static_cast<ptrdiff_t>(dirty > end ? dirty - end : 0);
    if (best == kCacheSlots || score > best_score ||
        (score == best_score &&
         (run.reserved < best_run.reserved ||
          (run.reserved == best_run.reserved && run.spans < best_run.spans)))) {
      best = i;
      best_run = run;
      best_score = score;
    }
  }
  if (best == kCacheSlots) return nullptr;
  g_cache_hits.add_locked(1);
  count_locked(handed_out(usable));
  SpanHeader* span = take_run_locked(best, reserve);
  if (span->reserved > reserve) insert_locked(split(span, reserve));  // in a slot just freed
  return span;
}

// A fresh span of `reserve` bytes; a small one comes with a cached neighbour cut from the same
// mapping.
SpanHeader* map_span(size_t reserve, size_t alignment) {
  size_t mapped = reserve;
  if (alignment <= kGranule && reserve < kRegionBytes && kRegionBytes <= cache_limit()) {
    mapped = kRegionBytes;
  }
  char* base = static_cast<char*>(os::map(mapped, alignment > kGranule ? alignment : kGranule));
  if (base == nullptr) return nullptr;  // errno = ENOMEM
  auto* span = new (base) SpanHeader{};
  span->reserved = mapped;
  span->dirty = kPageSize;
  span->resident = kPageSize;
  if (!chunk_map::register_range(base, mapped, chunk_map::Kind::kLarge, span)) {
    chunk_map::unregister_range(base, mapped);
    os::unmap(base, mapped);
    errno = ENOMEM;
    return nullptr;
  }
  if (mapped > reserve) cache_put(split(span, reserve));
  return span;
}

// Sources for compose(): cached spans with at least this many resident bytes beyond the header.
constexpr size_t kMoveMinBytes = 64 * 1024;
constexpr size_t kMoveMaxSources = 8;

// Takes out of the cache (and the chunk map) the spans whose resident pages best cover `need`
// bytes, most resident first, at most kMoveMaxSources. Returns how many it took.
size_t take_move_sources_locked(size_t need, SpanHeader** sources) {
  size_t count = 0;
  for (size_t covered = 0; covered < need && count < kMoveMaxSources;) {
    size_t best = kCacheSlots;
    for (size_t i = 0; i < g_slot_count; ++i) {
      if (g_slots[i]->resident >= kPageSize + kMoveMinBytes &&
          (best == kCacheSlots || g_slots[i]->resident > g_slots[best]->resident)) {
        best = i;
      }
    }
    if (best == kCacheSlots) break;
    SpanHeader* span = remove_locked(best);
    chunk_map::unregister_range(span, span->reserved);
    covered += span->dirty;
    sources[count++] = span;
  }
  return count;
}

// A miss: a fresh span of `reserve` bytes for a block ending at `end`, under which the resident
// pages of cached spans too small to serve it are moved first (mremap moves page tables: no copy,
// no fault), so that only the rest faults in. Their address space is returned to the OS.
SpanHeader* compose(size_t reserve, size_t end, size_t alignment) {
  SpanHeader* span = map_span(reserve, alignment);
  if (span == nullptr || !os::kCanRemap) return span;
  SpanHeader* sources[kMoveMaxSources];
  size_t count;
  {
    SpinLockGuard guard(g_lock);
    count = take_move_sources_locked(end, sources);
  }
  if (count == 0) return span;
  char* dst = base_of(span);
  size_t filled = 0;
  for (size_t i = 0; i < count; ++i) {
    // The header moves with the pages: read what it says first.
    size_t reserved = sources[i]->reserved;
    size_t bytes = std::min(sources[i]->dirty, end - filled);
    char* src = base_of(sources[i]);
    if (bytes != 0 && os::move_pages(src, bytes, dst + filled)) {
      filled += bytes;
    } else {
      bytes = 0;
    }
    if (reserved > bytes) os::unmap(src + bytes, reserved - bytes);
  }
  // The moves overwrote the header's page.
  span = new (dst) SpanHeader{};
  span->reserved = reserve;
  span->dirty = std::max(filled, kPageSize);
  span->resident = span->dirty;
  return span;
}

}  // namespace

void* alloc(size_t size, size_t alignment, bool zero) noexcept {
  if (alignment < 16) alignment = 16;
  size_t offset = align_up(sizeof(SpanHeader), alignment);
  size_t end = align_up(offset + size, kPageSize);
  size_t reserve = align_up(end, kGranule);
  if (size > (SIZE_MAX >> 1) || offset < alignment || end < size || reserve < end) {
    errno = ENOMEM;  // the sums wrapped around
    return nullptr;
  }
  SpanHeader* span = nullptr;
  // Cached spans are granule-aligned: they serve any alignment up to a granule.
  if (alignment <= kGranule && reserve <= cache_limit()) {
    span = take_cached(reserve, end, end - offset);
  }
  if (span != nullptr) {
    if (span->dirty > end + kReleaseBytes) {
      // Resident pages this block will not use would stay resident as long as it lives.
      os::decommit(base_of(span) + end, span->dirty - end);
      span->dirty = end;
    }
    if (zero && span->dirty > offset) {
      std::memset(base_of(span) + offset, 0, std::min(size, span->dirty - offset));
    }
  } else {
    span = compose(reserve, end, alignment);
    {
      SpinLockGuard guard(g_lock);
      g_cache_misses.add_locked(1);
      if (span == nullptr) return nullptr;  // errno = ENOMEM
      count_locked(handed_out(end - offset));
    }
    // Past its header, a fresh span reads as zero up to the pages moved under it.
    if (zero && span->dirty > kPageSize) {
      std::memset(base_of(span) + offset, 0, std::min(size, span->dirty - offset));
    }
  }
  span->offset = offset;
  span->end = end;
  span->block = base_of(span) + offset;
  return span->block;
}

void free(void* p, chunk_map::Entry entry) {
  SpanHeader* span = validated_header(p, entry);
  span->block = nullptr;  // a second free of p now fails validation
  // The program may have written anything up to the block's end.
  span->dirty = std::max(span->dirty, span->end);
  span->resident = span->dirty;
  if (span->reserved <= cache_limit() / 2) {
    cache_put(span, given_back(span));
  } else {
    unmap_span(span, given_back(span));
  }
}

size_t usable_size(const void* p, chunk_map::Entry entry) {
  SpanHeader* span = validated_header(p, entry);
  return span->end - span->offset;
}

namespace {

// Grows a live span to `reserve` bytes over the run of cached spans that follows it (merged into
// the first of them as far as needed). False if there is none or it is too small.
bool grow_over_cached_neighbour(SpanHeader* span, size_t reserve) {
  SpinLockGuard guard(g_lock);
  SpanHeader* right = cached_span_at(base_of(span) + span->reserved);
  size_t needed = reserve - span->reserved;
  if (right == nullptr || run_from_locked(right, needed).reserved < needed) return false;
  take_run_locked(slot_of(right), needed);
  if (span->reserved + right->reserved > reserve) {
    insert_locked(split(right, reserve - span->reserved));  // in the slot just freed
  }
  span->dirty = std::max(span->dirty, span->reserved + right->dirty);
  reregister(right, right->reserved, span);
  span->reserved = reserve;
  return true;
}

}  // namespace

bool resize_in_place(void* p, chunk_map::Entry entry, size_t new_size) {
  SpanHeader* span = validated_header(p, entry);
  size_t old_end = span->end;
  size_t end = align_up(span->offset + new_size, kPageSize);
  size_t reserve = align_up(end, kGranule);
  if (new_size > (SIZE_MAX >> 1) || end < new_size || reserve < end) return false;
  char* base = base_of(span);
  if (end <= old_end) {
    if (old_end - end >= kReleaseBytes) {
      // Shrink: whole granules past the block go back to the OS, the rest of the tail's pages are
      // decommitted.
      size_t reserved = span->reserved;
      size_t dirty = std::min(std::max(span->dirty, old_end), reserve);
      if (reserve < reserved) {
        {
          SpinLockGuard guard(g_lock);
          chunk_map::unregister_range(base + reserve, reserved - reserve);
        }
        os::unmap(base + reserve, reserved - reserve);
        span->reserved = reserve;
      }
      if (dirty > end) os::decommit(base + end, dirty - end);
      span->dirty = end;
      span->end = end;
      count_resize(0 - (old_end - end));
    }
    return true;
  }
  if (reserve > span->reserved && !grow_over_cached_neighbour(span, reserve)) {
    size_t reserved = span->reserved;
    if (!os::remap_in_place(base, reserved, reserve)) return false;
    if (!chunk_map::register_range(base, reserve, chunk_map::Kind::kLarge, span)) {
      os::remap_in_place(base, reserve, reserved);
      return false;
    }
    span->reserved = reserve;
  }
  span->end = end;
  count_resize(end - old_end);
  return true;
}

void* grow_by_moving(void* p, chunk_map::Entry entry, size_t new_size) {
  SpanHeader* span = validated_header(p, entry);
  if constexpr (!os::kCanRemap) return nullptr;  // the caller copies instead
  size_t reserved = span->reserved;
  size_t old_end = span->end;
  size_t offset = span->offset;
  size_t end = align_up(offset + new_size, kPageSize);
  size_t reserve = align_up(end, kGranule);
  if (new_size > (SIZE_MAX >> 1) || end <= old_end || reserve < end) {
    errno = ENOMEM;
    return nullptr;
  }
  // offset == the alignment asked for when that was above 64 B: keep it for spans above 2 MiB.
  char* dst = static_cast<char*>(os::map(reserve, offset > kGranule ? offset : kGranule));
  if (dst == nullptr) return nullptr;
  auto* moved = reinterpret_cast<SpanHeader*>(dst);
  // Register the new range first (the only step that can fail), then move the old pages over
  // its start; nobody looks dst up before the block is handed out.
  if (!chunk_map::register_range(dst, reserve, chunk_map::Kind::kLarge, moved)) {
    chunk_map::unregister_range(dst, reserve);
    os::unmap(dst, reserve);
    errno = ENOMEM;
    return nullptr;
  }
  // Clear the old range's entries before its pages move away: once they are gone another thread
  // may map and register that address range, and a later clear would wipe its entries.
  {
    SpinLockGuard guard(g_lock);
    chunk_map::unregister_range(span, reserved);
  }
  if (!os::move_pages(span, old_end, dst)) {
    // Nothing else could claim the old range while it stayed mapped; restore its entries.
    reregister(span, reserved, span);
    chunk_map::unregister_range(dst, reserve);
    os::unmap(dst, reserve);
    errno = ENOMEM;
    return nullptr;
  }
  if (reserved > old_end) os::unmap(reinterpret_cast<char*>(span) + old_end, reserved - old_end);
  moved->reserved = reserve;
  moved->end = end;
  moved->dirty = std::max(moved->dirty, old_end);
  moved->block = dst + offset;
  count_resize(end - old_end);
  return moved->block;
}

void collect() {
  SpanHeader* spans[kCacheSlots];
  size_t count = 0;
  {
    SpinLockGuard guard(g_lock);
    while (g_slot_count > 0) spans[count++] = evict_oldest_locked();
  }
  for (size_t i = 0; i < count; ++i) os::unmap(spans[i], spans[i]->reserved);
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
  out->large_spans_live = g_spans_live.load();
  out->large_cache_hits = g_cache_hits.load();
  out->large_cache_misses = g_cache_misses.load();
  out->bytes_in_use += g_live_bytes.load();
}

}  // namespace hak::large
