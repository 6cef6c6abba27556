// The shared SuperSlab pool (see pool.h): SuperSlab mapping and unmapping, empty slabs, abandoned
// slabs and their adoption.
#include "tiny/pool.h"

#include <cerrno>
#include <new>

#include "common/chunk_map.h"
#include "common/log.h"
#include "common/options.h"
#include "common/spin_lock.h"
#include "os/os.h"
#include "tiny/slab_ops.h"

namespace hak::tiny {
TinyArena g_arena;
}

namespace hak::tiny::pool {
namespace {

SpinLock g_lock;

// All below: under g_lock.
SuperSlab* g_all = nullptr;           // every live SuperSlab (all_next/all_prev)
SuperSlab* g_with_empty = nullptr;    // ring: some slabs empty, some in use
SuperSlab* g_wholly_empty = nullptr;  // ring: every block slab empty; unmapped after the delay
Slab* g_abandoned[kClassCount] = {};  // rings of abandoned slabs per class
SuperSlab* g_to_unmap = nullptr;      // unlinked and unregistered; unmapped by ~Guard
unsigned g_maintenance_class = 0;
uint64_t g_last_periodic_ms = 0;  // the last idle-heap and decommit pass
uint64_t g_superslabs_live = 0;
uint64_t g_superslabs_peak = 0;
uint64_t g_superslabs_returned = 0;
uint64_t g_slabs_per_class[kClassCount] = {};

// Abandoned slabs looked at per acquisition (of the wanted class, and of one other class so that
// slabs emptied by remote frees after their owner exited go back to the pool).
constexpr unsigned kAdoptScan = 8;
constexpr unsigned kEmptyScan = 8;  // SuperSlabs looked at for a resident empty slab

void decommit_idle_slabs_locked(bool force);

// Which abandoned slabs an acquisition adopts (after their remote frees are drained): first only
// those with at least half their blocks free, or whose last remote frees came from the acquiring
// heap. A slab its owner left nearly full is one whose blocks other threads are still freeing:
// adopted by a bystander, it gives a few blocks, the next acquisition adopts another, and the
// adopter ends up owning many slabs whose remaining blocks all come back as remote marks, which
// it drains only when a slab becomes current. The thread that is freeing those blocks (in Larson,
// the one that inherited the array) is the right adopter: its frees into the slab become local.
// Others leave the slab in the pool until it drains to half free (then anyone adopts it) or to
// empty (reused as any class). Before the pool grows by a SuperSlab, any free block will do.
// Larson at 8 threads, peak RSS: 46.4-49.7 MB -> 42.0-43.3 (3 runs; half free alone: 41.0-41.7,
// but 8-10% slower at 1-4 threads, where successors' frees stayed remote).
enum class Adopt : uint8_t { kHalfFree, kAnyFree };
bool adoptable(const Slab* slab, Adopt rule, const Heap* heap) {
  uint32_t free = slab->capacity - slab->used.load(std::memory_order_relaxed);
  if (free == 0) return false;
  return rule == Adopt::kAnyFree || 2 * free >= slab->capacity ||
         slab->last_remote_freer.load(std::memory_order_relaxed) == heap;
}

void link_with_empty(SuperSlab* ss) {
  if (ss->empty_count == kBlockSlabs) {
    ss->empty_since_ms = os::now_ms();
    ring_push_front(g_wholly_empty, ss);
  } else {
    ring_push_front(g_with_empty, ss);
  }
  ss->in_list = true;
}

void unlink_ss(SuperSlab* ss) {
  if (!ss->in_list) return;
  ring_remove(ss->empty_count == kBlockSlabs ? g_wholly_empty : g_with_empty, ss);
  ss->in_list = false;
}

// Gives a SuperSlab's memory back: an arena slot keeps its addresses (readable zeros) and is
// reused once its pages are gone; a SuperSlab mapped on its own is unmapped. Called outside the
// lock (locked: under it, for a SuperSlab nobody has seen).
void unmap_superslab_memory(SuperSlab* ss, bool locked) {
  if (ss->live_bits != nullptr) os::unmap(ss->live_bits, kLiveBitsBytes);
  if (!g_arena.unmap_chunk(ss)) return;
  if (!locked) g_lock.lock();
  g_arena.give_back_slot(ss);
  if (!locked) g_lock.unlock();
}

SuperSlab* map_superslab() {
  void* memory = g_arena.map_chunk();  // a slot, or a mapping of its own
  if (memory == nullptr) return nullptr;
  // Zero-filled memory: the remote bitmaps and the bookkeeping start at zero; construct the slab
  // records only (constructing the bitmaps would commit their pages).
  auto* ss = static_cast<SuperSlab*>(memory);
  for (unsigned i = 0; i < kSlabsPerSuperSlab; ++i) {
    Slab* slab = new (&ss->slabs[i]) Slab();
    slab->index = static_cast<uint8_t>(i);
    slab->state = i < kFirstBlockSlab ? SlabState::kHeader : SlabState::kEmpty;
  }
  ss->empty_mask = kAllBlockSlabsMask;
  ss->empty_count = kBlockSlabs;
  ss->decommitted_mask = kAllBlockSlabsMask;  // nothing touched yet: nothing to give back
  if (kDebugChecks || options().check) {
    // Zero-filled: no block is live yet.
    ss->live_bits = static_cast<std::atomic<uint64_t>(*)[kBitmapWords]>(os::map(kLiveBitsBytes));
    if (ss->live_bits == nullptr) {
      unmap_superslab_memory(ss, true);
      errno = ENOMEM;
      return nullptr;
    }
  }
  // The entry is published (release) after the header is complete.
  if (!chunk_map::register_range(ss, kChunkSize, chunk_map::Kind::kTiny, ss)) {
    unmap_superslab_memory(ss, true);
    errno = ENOMEM;
    return nullptr;
  }
  if (options().verbose) log_message("tiny: mapped SuperSlab %p", memory);
  return ss;
}

void add_superslab_locked(SuperSlab* ss) {
  ss->all_next = g_all;
  if (g_all != nullptr) g_all->all_prev = ss;
  g_all = ss;
  if (++g_superslabs_live > g_superslabs_peak) g_superslabs_peak = g_superslabs_live;
  link_with_empty(ss);
}

// Unlinks ss and clears its chunk-map entry; ~Guard unmaps it after the lock is released. Only
// for a SuperSlab whose block slabs are all empty: nobody holds a block of it, nobody owns a slab
// of it, so no lock-free reader can be inside it (superslab.h).
void retire_superslab_locked(SuperSlab* ss) {
  HAK_DEBUG_CHECK(ss->empty_count == kBlockSlabs, "SuperSlab %p retired with %u empty slabs",
                  static_cast<void*>(ss), ss->empty_count);
  unlink_ss(ss);
  if (ss->all_prev != nullptr) ss->all_prev->all_next = ss->all_next;
  if (ss->all_next != nullptr) ss->all_next->all_prev = ss->all_prev;
  if (g_all == ss) g_all = ss->all_next;
  chunk_map::unregister_range(ss, kChunkSize);
  if (options().verbose) log_message("tiny: returning SuperSlab %p to the OS", ss);
  --g_superslabs_live;
  ++g_superslabs_returned;
  ss->next = g_to_unmap;
  g_to_unmap = ss;
}

// The first SuperSlab of ring, within kEmptyScan of them, with an empty slab whose pages are
// resident; null if none.
SuperSlab* with_resident_empty(SuperSlab* ring) {
  SuperSlab* ss = ring;
  for (unsigned i = 0; ss != nullptr && i < kEmptyScan; ++i) {
    if ((ss->empty_mask & ~ss->decommitted_mask) != 0) return ss;
    ss = ss->next == ring ? nullptr : ss->next;
  }
  return nullptr;
}

// An empty slab whose pages are still resident comes first: taking one that gave its pages back
// (or was never touched) while resident ones wait raises the RSS for nothing. Then SuperSlabs
// in use before wholly empty ones, which may still be returned to the OS.
Slab* take_empty_locked() {
  SuperSlab* ss = with_resident_empty(g_with_empty);
  if (ss == nullptr) ss = with_resident_empty(g_wholly_empty);
  if (ss == nullptr) ss = g_with_empty != nullptr ? g_with_empty : g_wholly_empty;
  if (ss == nullptr) return nullptr;
  unlink_ss(ss);
  uint32_t resident = ss->empty_mask & ~ss->decommitted_mask;
  unsigned index = static_cast<unsigned>(__builtin_ctz(resident != 0 ? resident : ss->empty_mask));
  uint32_t bit = uint32_t{1} << index;
  ss->empty_mask &= ~bit;
  ss->decommitted_mask &= ~bit;  // its pages fault back in, zeroed, as it is carved
  ss->aged_mask &= ~bit;
  --ss->empty_count;
  if (ss->empty_count > 0) link_with_empty(ss);
  return &ss->slabs[index];
}

void assign_locked(Slab* slab, Heap* heap, unsigned cls) {
  slab->cls = static_cast<uint8_t>(cls);
  slab->block_size = kClassSizes[cls];
  slab->capacity = static_cast<uint32_t>(kSlabSize / kClassSizes[cls]);
  BlockCheck check = block_check(kClassSizes[cls], kSlabSize);
  slab->block_multiplier = check.multiplier;
  slab->block_limit = check.limit;
  slab->carved = 0;
  slab->free = nullptr;
  slab->scavenged_pages = 0;
  slab->scavenged = 0;
  slab->used.store(0, std::memory_order_relaxed);
  slab->list = SlabList::kNone;
  slab->state = SlabState::kOwned;
  slab->last_remote_freer.store(nullptr, std::memory_order_relaxed);
  // Relaxed: the heap that finds itself here is this thread; others only need "not me".
  slab->owner_cache.store(&heap->cache[cls], std::memory_order_relaxed);
  ++g_slabs_per_class[cls];
}

// Drains an abandoned slab's remote bitmap; an emptied slab goes back to the pool. Returns true if
// the slab was released.
bool reclaim_if_empty_locked(Slab* slab) {
  drain_remote(slab, kDebugChecks || options().check);
  if (slab->used.load(std::memory_order_relaxed) != 0) return false;
  ring_remove(g_abandoned[slab->cls], slab);
  release_locked(slab);
  return true;
}

Slab* adopt_locked(Heap* heap, unsigned cls, Adopt rule) {
  Slab*& ring = g_abandoned[cls];
  for (unsigned i = 0; i < kAdoptScan && ring != nullptr; ++i) {
    Slab* slab = ring;
    if (reclaim_if_empty_locked(slab)) continue;
    if (adoptable(slab, rule, heap)) {
      ring_remove(ring, slab);
      HAK_DEBUG_CHECK(slab_counts_consistent(slab), "adopted slab %p of class %u: counts broken",
                      slab->area(), slab->cls);
      slab->state = SlabState::kOwned;
      slab->owner_cache.store(&heap->cache[cls], std::memory_order_relaxed);
      bump(heap->counters.adoptions);
      return slab;
    }
    ring = slab->next;  // rotate: look at the others next time
  }
  return nullptr;
}

}  // namespace

Guard::Guard() {
  g_lock.lock();
}

Guard::~Guard() {
  SuperSlab* list = g_to_unmap;
  g_to_unmap = nullptr;
  g_lock.unlock();
  while (list != nullptr) {
    SuperSlab* next = list->next;
    unmap_superslab_memory(list, false);
    list = next;
  }
}

Slab* acquire_locked(Heap* heap, unsigned cls) {
  maintain_locked(false);
  Slab* slab = adopt_locked(heap, cls, Adopt::kHalfFree);
  if (slab != nullptr) return slab;
  slab = take_empty_locked();
  if (slab == nullptr) {
    // Before the pool grows: idle heaps may hold slabs that other threads' frees emptied or
    // thinned. Only those: a heap that merely took no slow path since the last look may belong
    // to a thread waiting for a core, which would come back to find the slabs it carves gone and
    // send its cached blocks home as remote frees (random-mixed at 8 threads on 2 cores: 54-115
    // adoptions and 1400-2900 remote frees a run, where its threads free nothing remotely).
    reclaim_idle_heaps_locked(GiveAway::kRemotelyFreed);
    slab = take_empty_locked();
  }
  if (slab == nullptr) {
    slab = adopt_locked(heap, cls, Adopt::kAnyFree);
    if (slab != nullptr) return slab;
    SuperSlab* ss = map_superslab();
    if (ss == nullptr) return nullptr;
    add_superslab_locked(ss);
    slab = take_empty_locked();
  }
  assign_locked(slab, heap, cls);
  return slab;
}

void release_locked(Slab* slab) {
  HAK_DEBUG_CHECK(slab->used.load(std::memory_order_relaxed) == 0 && !has_remote(slab) &&
                      remote_marked(slab) == 0 &&
                      list_length(slab->free) + slab->scavenged == slab->carved,
                  "slab %p of class %u released while in use", slab->area(), slab->cls);
  --g_slabs_per_class[slab->cls];
  // block_limit 0: no pointer into this slab validates until it serves a class again.
  slab->block_multiplier = 0;
  slab->block_limit = 0;
  slab->capacity = 0;
  slab->block_size = 0;
  slab->cls = 0;
  slab->free = nullptr;
  slab->carved = 0;
  slab->scavenged_pages = 0;
  slab->scavenged = 0;
  slab->list = SlabList::kNone;
  slab->state = SlabState::kEmpty;
  slab->owner_cache.store(nullptr, std::memory_order_relaxed);
  SuperSlab* ss = slab->superslab();
  unlink_ss(ss);
  ss->empty_mask |= uint32_t{1} << slab->index;
  ++ss->empty_count;
  link_with_empty(ss);
}

void abandon_locked(Slab* slab) {
  HAK_DEBUG_CHECK(slab_counts_consistent(slab), "abandoned slab %p of class %u: counts broken",
                  slab->area(), slab->cls);
  slab->list = SlabList::kNone;
  slab->state = SlabState::kAbandoned;
  slab->owner_cache.store(nullptr, std::memory_order_relaxed);
  ring_push_back(g_abandoned[slab->cls], slab);
}

void maintain_locked(bool force, unsigned budget_per_call) {
  // Abandoned slabs, round robin over the classes, a bounded number per call (all when forced):
  // remote frees may have emptied them since their owner left.
  unsigned budget = force ? ~0u : budget_per_call;
  for (unsigned round = 0; round < kClassCount && budget > 0; ++round) {
    unsigned cls = g_maintenance_class;
    Slab* slab = g_abandoned[cls];
    unsigned length = 0;
    if (slab != nullptr) {
      length = 1;
      for (Slab* s = slab->next; s != slab && length < budget; s = s->next) ++length;
    }
    for (unsigned i = 0; i < length && g_abandoned[cls] != nullptr; ++i, --budget) {
      Slab* next = slab->next;  // still in the ring after slab is reclaimed
      reclaim_if_empty_locked(slab);
      slab = next;
    }
    if (budget == 0) {
      if (g_abandoned[cls] != nullptr) g_abandoned[cls] = slab;  // resume here next time
      break;
    }
    g_maintenance_class = (cls + 1) % kClassCount;
  }
  uint64_t delay = options().release_delay_ms;
  uint64_t now = os::now_ms();
  if (force || now - g_last_periodic_ms >= (delay == 0 ? 1 : delay)) {
    g_last_periodic_ms = now;
    // First, so that the slabs it releases are seen by the decommit pass.
    reclaim_idle_heaps_locked(GiveAway::kEveryFreeSlab);
    decommit_idle_slabs_locked(force);
  }
  if (g_wholly_empty == nullptr) return;
  if (force || delay == 0) now = 0;
  while (g_wholly_empty != nullptr) {
    SuperSlab* oldest = g_wholly_empty->prev;  // pushed at the front: the back is the oldest
    if (!force && delay != 0 && now - oldest->empty_since_ms < delay) break;
    retire_superslab_locked(oldest);
  }
}

namespace {

// Empty slabs of SuperSlabs still in use give their pages back to the OS once they have stayed
// empty for a whole release delay (seen empty by two passes a delay apart), or at once when forced.
// Under the lock, so no thread can take a slab while its pages are being dropped.
void decommit_idle_slabs_locked(bool force) {
  uint64_t delay = options().release_delay_ms;
  SuperSlab* ss = g_with_empty;
  if (ss == nullptr) return;
  do {
    uint32_t candidates = ss->empty_mask & ~ss->decommitted_mask;
    uint32_t drop = force || delay == 0 ? candidates : candidates & ss->aged_mask;
    ss->aged_mask = candidates & ~drop;
    ss->decommitted_mask |= drop;
    while (drop != 0) {  // one call per run of adjacent slabs
      unsigned first = static_cast<unsigned>(__builtin_ctz(drop));
      unsigned end = first;
      while (end < kSlabsPerSuperSlab && (drop >> end & 1u)) ++end;
      os::decommit(ss->slabs[first].area(), (end - first) * kSlabSize);
      drop &= ~(((end == 32 ? 0u : 1u << end) - 1u) & ~((1u << first) - 1u));
    }
    ss = ss->next;
  } while (ss != g_with_empty);
}

}  // namespace

SuperSlab* first_superslab_locked() {
  return g_all;
}

void fill_stats_locked(hak_stats_t* out) {
  out->superslabs_live = g_superslabs_live;
  out->superslabs_peak = g_superslabs_peak;
  out->superslabs_returned = g_superslabs_returned;
  for (unsigned c = 0; c < kClassCount; ++c) out->tiny_slabs_per_class[c] = g_slabs_per_class[c];
}

void prefork() {
  g_lock.lock();
}
void postfork_parent() {
  g_lock.unlock();
}

}  // namespace hak::tiny::pool
