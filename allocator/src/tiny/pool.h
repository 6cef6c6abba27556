// The shared SuperSlab pool of the tiny part: one for all classes, behind one lock (slow paths
// only). A heap that needs a slab of class c gets, in order: an abandoned slab of class c with at
// least half its blocks free or that this heap freed into last (adoption), an empty slab whose
// pages are resident, any empty slab (in both: SuperSlabs in use before wholly empty ones), an
// abandoned slab of class c with any free block, a new SuperSlab (why: Adopt and
// take_empty_locked in pool.cpp). A wholly empty SuperSlab is unmapped once it has stayed empty
// for HAKMEM_RELEASE_DELAY_MS (at the next pool operation after that; at once on collect); the
// empty slabs of a SuperSlab still in use are decommitted (madvise) on the same schedule. Pool
// operations: slab acquisition, slab release, thread exit, collect, the background spill thread.
// The same lock guards the heap registry (tiny.cpp).
#pragma once

#include "hakmem.h"
#include "tiny/heap.h"
#include "tiny/superslab.h"

namespace hak::tiny::pool {

// Holds the pool lock; on destruction unlocks, then unmaps the SuperSlabs released meanwhile
// (munmap outside the lock).
class Guard {
 public:
  Guard();
  ~Guard();
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
};

// Under the lock: a slab of class cls owned by heap (on none of its lists), or nullptr with
// errno = ENOMEM.
Slab* acquire_locked(Heap* heap, unsigned cls);
// Under the lock: slab has used == 0 and a clear remote bitmap; it becomes empty, in the pool.
void release_locked(Slab* slab);
// Under the lock: slab's owner is exiting; the slab waits in the pool with its class.
void abandon_locked(Slab* slab);
// Under the lock: drains abandoned slabs (all when force, else up to `budget`), once per release
// delay (and when forced) tidies idle heaps and decommits idle empty slabs, and unmaps wholly
// empty SuperSlabs whose delay expired (all of them when force).
inline constexpr unsigned kMaintenanceBudget = 32;  // abandoned slabs per call on slow paths
void maintain_locked(bool force, unsigned budget = kMaintenanceBudget);

// Which slabs with free blocks an idle heap gives away (empty ones always go back to the pool).
enum class GiveAway {
  kNone,
  kRemotelyFreed,  // those that other threads' frees gave blocks back to since the last drain
  kEveryFreeSlab,
};
// Under the lock, from maintain_locked once per release delay (kEveryFreeSlab) and before the
// pool maps a new SuperSlab (kRemotelyFreed); defined by the front (tiny.cpp), which owns the heap
// registry: tidies the slabs of heaps that took no slow path since the last call.
void reclaim_idle_heaps_locked(GiveAway give_away);

// Walks every live SuperSlab under the lock.
template <typename Visit>
void for_each_superslab_locked(Visit visit);
SuperSlab* first_superslab_locked();

void fill_stats_locked(hak_stats_t* out);

void prefork();
void postfork_parent();

template <typename Visit>
void for_each_superslab_locked(Visit visit) {
  for (SuperSlab* ss = first_superslab_locked(); ss != nullptr; ss = ss->all_next) visit(ss);
}

}  // namespace hak::tiny::pool
