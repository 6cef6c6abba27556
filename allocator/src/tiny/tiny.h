// The tiny part (1 B - 1 KiB): per-thread caches in front of slabs in 2 MiB SuperSlabs, shared
// by all classes through one pool. Glossary and invariants: superslab.h (layout, slab counts, why
// nothing reads freed memory) and heap.h (the per-thread front).
//
// Contract
//  - alloc(size), size in [0, kTinyMaxSize]: a block of class size_to_class(size), 16-aligned when
//    its size is >= 16; nullptr with errno = ENOMEM when the OS refuses memory.
//  - free(p, ss): ss is SuperSlab::of(p) for a p in_arena(), else the owner of
//    chunk_map::lookup(p), of kind kTiny (a SuperSlab outside the arena). p must be a block alloc
//    returned; any thread may free it. A pointer that is not on a block boundary of a slab that
//    serves a class is refused (logged, or fatal() in debug builds / HAKMEM_CHECK=1, which also
//    catch double frees and name the address and class).
//  - Layout relied on by aligned allocation: every block area starts 64 KiB-aligned and blocks
//    sit at multiples of the class size from it.
//  - collect(): flushes the calling thread's caches and the spill queues, gives back the wholly
//    free pages of its slabs that are at least three quarters free (superslab.h, "scavenged
//    pages"), and returns every wholly empty SuperSlab to the OS now.
//  - prefork/postfork_*: hold every tiny lock across fork(); the child keeps working (its
//    background spill thread, if any, is restarted on demand).
//
// Fast paths: alloc pops the class list (one unlikely exit when it is empty); free validates the
// block boundary and pushes the block on the cache (one of this thread's slabs) or appends its
// address to the outgoing list (another's) when that list has room (unlikely exits for "invalid"
// and "full"). Blocks of other threads' slabs are never reused here: the thread would write into
// cache lines its owner uses (passive false sharing, as in Hoard's cache-scratch). Everything else
// is in tiny.cpp:
//  - refill (cache empty): the class's stash first (the newest stashed chain, whole in a burst of
//    mallocs, else a batch of it), then its spill queue (HAKMEM_BG_SPILL=inline), then the
//    current slab (its remote bitmap drained, one exchange a word, then its free list, then
//    carving), then a full slab that received remote frees, then the pool (pool.h).
//  - foreign free (the block's slab is not this thread's): the fast path appends it to the heap's
//    outgoing list of the class instead of the cache; a full list leaves at once like a
//    spill's foreign blocks (below).
//  - spill (cache over its cap): the whole cache goes into the class's stash (heap.h) while the
//    stash has room; else the oldest blocks leave; blocks of the thread's own slabs go
//    back to their free lists (no atomics); the others are marked in their slabs' remote bitmaps
//    (one fetch_or per run of blocks of one slab; HAKMEM_BG_SPILL=off, the default) or as one chain
//    onto the class's spill queue (one CAS; inline and thread modes). Spill queues are emptied by
//    the next refill of the class (inline), by a background thread every 1-50 ms (thread), and by
//    slab acquisitions and thread exits when nobody touched them since the last look.
//  - thread exit (pthread key destructor): caches and stashes flushed home, the wholly free pages
//    of thin slabs given back when they add up to 4 MiB or more, empty slabs to the pool, the
//    others abandoned to it; later calls on that thread use a shared, locked orphan heap.
#pragma once

#include "common/chunk_map.h"
#include "common/log.h"
#include "hakmem.h"
#include "tiny/heap.h"
#include "tiny/size_classes.h"
#include "tiny/superslab.h"

namespace hak::tiny {

// noexcept: lets the fast paths tail-call them from noexcept callers (malloc, free, operator
// delete) without an exception frame.
// cache: the calling thread's heap's cache that alloc found empty (its class is its index).
HAK_SLOW_PATH void* alloc_slow(ClassCache* cache) noexcept;
HAK_SLOW_PATH void free_slow(void* p) noexcept;
// free's fast path found list, the cache of p's class, full after decrementing its room.
HAK_SLOW_PATH void free_full(void* p, ClassCache* list) noexcept;
void debug_mark_allocated(void* block, unsigned cls) noexcept;
void debug_mark_freed(void* block, const Slab& slab) noexcept;

// For every size, the byte offset of its class's cache in a heap (size_to_class * the size of a
// ClassCache), so that alloc addresses the cache without scaling the class. Indexed by the size
// itself, not its 8-byte granule: two instructions fewer per malloc for a 2 KiB table.
struct CacheOffsetTable {
  uint16_t by_size[kTinyMaxSize + 1];
};
constexpr CacheOffsetTable make_cache_offset_table() {
  CacheOffsetTable table{};
  for (unsigned size = 0; size <= kTinyMaxSize; ++size) {
    table.by_size[size] = static_cast<uint16_t>(size_to_class(size) * sizeof(ClassCache));
  }
  return table;
}
inline constexpr CacheOffsetTable kCacheOffsetTable = make_cache_offset_table();

HAK_FAST_PATH void* alloc(size_t size) noexcept {
  ClassCache& cache = *reinterpret_cast<ClassCache*>(reinterpret_cast<char*>(t_heap->cache) +
                                                     kCacheOffsetTable.by_size[size]);
  void* block = cache.head;
  if (HAK_UNLIKELY(block == nullptr)) return alloc_slow(&cache);
  cache.head = next_of(block);
  ++cache.room;
  if constexpr (kDebugChecks) debug_mark_allocated(block, size_to_class(size));
  return block;
}

HAK_FAST_PATH void free(void* p, SuperSlab* ss) noexcept {
  const Slab& slab = slab_in(ss, p);
  Heap* heap = t_heap;
  if (HAK_UNLIKELY(!starts_block(slab, p))) return free_slow(p);
  // Ours iff the slab's owner cache lies in our heap's cache array (Slab::owner_cache); any other
  // value (another heap, none, a stale one) means the block goes out, not back in the cache.
  ClassCache* list = slab.owner_cache.load(std::memory_order_relaxed);
  if (HAK_UNLIKELY(reinterpret_cast<uintptr_t>(list) - reinterpret_cast<uintptr_t>(heap->cache) >=
                   sizeof(heap->cache))) {
    OutgoingList& out = heap->outgoing[slab.cls];
    if (HAK_UNLIKELY(out.count >= out.cap)) return free_slow(p);
    if constexpr (kDebugChecks) debug_mark_freed(p, slab);
    out.blocks[out.count++] = p;
    return;
  }
  // Decremented in place before the test (one read-modify-write); free_full undoes it.
  if (HAK_UNLIKELY(--list->room < 0)) return free_full(p, list);
  if constexpr (kDebugChecks) debug_mark_freed(p, slab);
  next_of(p) = list->head;
  list->head = p;
}

// The block size of p, a pointer into ss (as for free); 0 when p is not the start of a block.
HAK_FAST_PATH size_t usable_size(const void* p, SuperSlab* ss) {
  const Slab& slab = slab_in(ss, p);
  return starts_block(slab, p) ? slab.block_size : 0;
}
void collect();
void fill_stats(hak_stats_t* out);
void prefork();
void postfork_parent();
void postfork_child();

namespace testing {
// Totals from walking every SuperSlab under the pool lock, checking each slab's count invariant
// where it can be checked exactly (slabs in the pool, and the calling thread's own slabs).
// Call it when no other thread is using tiny memory.
struct Census {
  uint64_t superslabs = 0;
  uint64_t slabs_in_use = 0;   // owned or abandoned
  uint64_t blocks_used = 0;    // sum of `used`: program, caches, spill queues, undrained remote
  uint64_t blocks_queued = 0;  // in spill queues
  uint64_t invariant_violations = 0;
};
Census census();
// Blocks currently in the calling thread's cache and stash of class cls.
uint32_t cached_blocks(unsigned cls);
}  // namespace testing

}  // namespace hak::tiny
