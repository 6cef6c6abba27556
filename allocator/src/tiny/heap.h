// The per-thread front of the tiny part: a heap per thread, reached through one initial-exec
// thread_local pointer.
//
// Glossary
//  - heap: a thread's caches (one LIFO list per class, with count and cap) and the slabs it owns
//    (per class: `avail`, slabs that may still give blocks, its head being the one carved now;
//    `full`, slabs that gave everything at the last look).
//  - sentinel: a static, never-written heap with empty caches and cap 0. A thread starts on it,
//    so the fast paths need no "initialised?" test: its first alloc finds an empty list and its
//    first free a full one, and both land in a slow path that installs a real heap.
//  - batch: how many blocks a refill brings and a spill leaves; cap = 2 * batch. Both adapt per
//    class within [kMinBatch, max_batch(cls)]: each refill or spill of a class doubles its batch;
//    a class whose previous slow path lies kColdTicks of the heap's slow paths back halves it.
//    Bounds: kMinBatch = 4 to max_batch(cls) = min(256, max(16, 16 KiB / size)) blocks, so one
//    class's cache holds at most 2 * max_batch blocks (512 of 8..64 B, 32 of 1 KiB).
//  - sweep: every 64 slow paths a heap drains the remote bitmaps of a few of its full slabs, so
//    slabs emptied by other threads go back to the pool while the owner allocates other classes.
//
//  - stash: whole caches that overflowed, per class, kept as they were linked (null-terminated
//    chains with their counts) so that a spill and the next refill of the class cost no walk over
//    the blocks: a burst of frees stashes its blocks a cache at a time, and the burst of mallocs
//    that follows takes them back a chain at a time (a chain is an overflowing cache but for its
//    newest block, so cap blocks: a refill takes it whole, with no walk). Bounded by
//    kStashDepth chains a class and kStashBytes a heap (beyond them a spill sends blocks home as
//    before); a chain not taken back within kColdTicks slow paths of the heap is sent home.
//  - outgoing: blocks of other threads' slabs that this thread freed, per class, on their way
//    home: an array of their addresses (count, and cap = min(batch, kOutgoingSlots)), appended to
//    by free's fast path. Not a list: a remote free writes nothing into the block, so its lines
//    stay in the owner's cache. They are never handed out again here (reusing another thread's
//    block puts this thread's writes on the owner's cache lines: passive false sharing); a full
//    list leaves at once (into the slabs' remote bitmaps, or linked onto the spill queue).
//
// Invariants: cache[c].count() == length of cache[c].head's list (one more only between free's
// fast-path decrement of a full list's room and free_full's undoing it); the length is <= cap
// (room >= 0) except inside the free slow path (+1) and after adapt shrank the cap, until the
// class's next spill trims the list. Every block on it is of class c, freed by this thread
// into one of its own slabs, or taken from the class's spill queue by a refill; so is every block
// of stash[c], whose chains' counts are their lengths and add up, times the class sizes, to
// stash_bytes; outgoing[c].count <= outgoing[c].cap <= kOutgoingSlots, every block of class c and
// of a slab this heap did not own when the block was freed; a heap's slabs have owner_cache in its
// caches and are on exactly one of its lists. Lock order: a heap's slow_lock before the pool lock;
// whoever holds the pool lock may only try_lock a heap.
#pragma once

#include <atomic>
#include <cstdint>

#include "common/base.h"
#include "common/spin_lock.h"
#include "tiny/size_classes.h"
#include "tiny/superslab.h"

namespace hak::tiny {

inline constexpr uint32_t kOutgoingSlots = 64;  // outgoing blocks per class

// A class's LIFO list of free blocks. It keeps its room (cap - length) rather than its length so
// that free's fast path needs no compare with the cap: a decrement that goes below zero means the
// list is full.
struct ClassCache {
  void* head;
  int32_t room;
  uint32_t cap;

  uint32_t count() const { return cap - static_cast<uint32_t>(room); }
  void set_count(uint32_t count) { room = static_cast<int32_t>(cap - count); }
  void set_cap(uint32_t new_cap) {
    room += static_cast<int32_t>(new_cap - cap);
    cap = new_cap;
  }
};

struct OutgoingList {
  uint32_t count;
  uint32_t cap;  // outgoing_cap(batch)
  void* blocks[kOutgoingSlots];
};
constexpr uint32_t outgoing_cap(uint32_t batch) {
  return batch < kOutgoingSlots ? batch : kOutgoingSlots;
}

inline constexpr unsigned kStashDepth = 16;          // stashed chains per class
inline constexpr uint32_t kStashBytes = 256 * 1024;  // stashed bytes per heap

// A cache that overflowed, whole: its list (null-terminated), its length, and the heap's tick
// when it was stashed.
struct StashedChain {
  void* head;
  uint32_t count;
  uint32_t tick;
};
struct ClassStash {
  StashedChain chains[kStashDepth];  // [0, depth): oldest first
  uint32_t depth;
  uint32_t blocks;  // sum of the chains' counts
};

// Owner-written counters that other threads read for stats: relaxed load + store, no RMW.
struct HeapCounters {
  std::atomic<uint64_t> refills{0};
  std::atomic<uint64_t> spills{0};
  std::atomic<uint64_t> remote_frees{0};
  std::atomic<uint64_t> adoptions{0};
  std::atomic<uint64_t> queue_drains{0};
};

inline void bump(std::atomic<uint64_t>& counter, uint64_t n = 1) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

struct alignas(kCacheLine) Heap {
  // The fast paths touch only these two.
  ClassCache cache[kClassCount];
  OutgoingList outgoing[kClassCount];

  // Held by the owner through each of its slow paths, and by a thread tidying the slabs of an idle
  // heap (one whose owner took no slow path between two looks: a thread blocked, or living on its
  // caches; see pool::GiveAway for what it gives away). Everything below, and the free lists,
  // `carved` and `used` of the heap's slabs, are touched only by the holder. The fast paths need no
  // lock: they touch only the two lists above, which the tidying thread leaves alone.
  SpinLock slow_lock;
  uint32_t ticks_at_last_look;  // the idle check's last reading of `ticks`

  uint32_t batch[kClassCount];
  uint32_t last_refill_tick[kClassCount];
  uint32_t last_spill_tick[kClassCount];
  uint32_t ticks;
  uint32_t sweep_class;  // where the next sweep of full slabs starts
  Slab* avail[kClassCount];
  Slab* full[kClassCount];
  ClassStash stash[kClassCount];
  uint32_t stash_bytes;
  // Cache, stash and outgoing lengths as of the last slow path, for other threads' stats.
  std::atomic<uint32_t> published_count[kClassCount];
  HeapCounters counters;

  // Under the heap registry lock.
  Heap* next_live;
  Heap* prev_live;
  Heap* next_free;
  bool live;
};

// Does heap own slab? (See Slab::owner_cache.)
inline bool owned_by(const Slab& slab, const Heap* heap) {
  return slab.owner_cache.load(std::memory_order_relaxed) == &heap->cache[slab.cls];
}

// The calling thread's heap (the sentinel until its first slow path). Constant-initialised and
// trivially destructible: no TLS wrapper call, no destructor registration.
extern constinit thread_local Heap* t_heap [[gnu::tls_model("initial-exec")]];
extern Heap g_sentinel_heap;

}  // namespace hak::tiny
