// The tiny part's slow paths: refill and spill of the per-thread caches, the spill queues and
// their background drainer, heap life cycle (thread start and exit), collect, stats, fork, and the
// debug checks. Layout and invariants: superslab.h; the front: heap.h; the pool: pool.h.
#include <pthread.h>
#include <time.h>

#include <cerrno>
#include <new>

#include "common/log.h"
#include "common/options.h"
#include "common/spin_lock.h"
#include "os/os.h"
#include "tiny/pool.h"
#include "tiny/slab_ops.h"
#include "tiny/tiny.h"

namespace hak::tiny {

constinit Heap g_sentinel_heap{};
constinit thread_local Heap* t_heap [[gnu::tls_model("initial-exec")]] = &g_sentinel_heap;

namespace {

// Set once the thread's heap was torn down (pthread key destructor); later calls on this thread
// (from other TLS destructors) go through the orphan heap or straight to the slabs.
constinit thread_local bool t_exited [[gnu::tls_model("initial-exec")]] = false;

// Slow-path tuning.
constexpr uint32_t kColdTicks = 256;  // slow paths of a class this far apart: batch /= 2
constexpr unsigned kFullScan = 16;    // full slabs checked for remote frees before a new slab
constexpr uint32_t kSweepTicks = 64;  // slow paths between sweeps of a heap's full slabs
constexpr unsigned kSweepSlabs = 8;   // full slabs looked at per sweep
constexpr unsigned kBgMaintenanceBudget = 4096;         // abandoned slabs per background tick
constexpr size_t kExitScavengeBytes = size_t{4} << 20;  // scavenge_thin_slabs at thread exit

bool check_mode() {
  return options().check;
}
bool marking() {
  return kDebugChecks || options().check;
}

// ---------------------------------------------------------------------------------------------
// Counters of threads that have no heap (or no longer have one), and of exited heaps.
struct GlobalCounters {
  // Relaxed RMW: statistics only, nothing is published through them.
  std::atomic<uint64_t> refills{0}, spills{0}, remote_frees{0}, adoptions{0}, queue_drains{0};
};
GlobalCounters g_counters;

void retire_counters(const HeapCounters& c) {
  g_counters.refills.fetch_add(c.refills.load(std::memory_order_relaxed),
                               std::memory_order_relaxed);
  g_counters.spills.fetch_add(c.spills.load(std::memory_order_relaxed), std::memory_order_relaxed);
  g_counters.remote_frees.fetch_add(c.remote_frees.load(std::memory_order_relaxed),
                                    std::memory_order_relaxed);
  g_counters.adoptions.fetch_add(c.adoptions.load(std::memory_order_relaxed),
                                 std::memory_order_relaxed);
  g_counters.queue_drains.fetch_add(c.queue_drains.load(std::memory_order_relaxed),
                                    std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------
// Spill queues: per class, a lock-free stack of chains of blocks that overflowed some thread's
// cache. Push a chain with one CAS; take everything with one exchange (no ABA: nobody pops one).
// Blocks in a queue still count in their slabs' `used`.
struct alignas(kCacheLine) SpillQueue {
  std::atomic<void*> head{nullptr};
  std::atomic<uint64_t> blocks{0};  // approximate (stats only): relaxed
};
SpillQueue g_queues[kClassCount];

void queue_push(unsigned cls, void* head, void* tail, uint32_t n) {
  SpillQueue& q = g_queues[cls];
  q.blocks.fetch_add(n, std::memory_order_relaxed);
  void* old = q.head.load(std::memory_order_relaxed);
  do {
    next_of(tail) = old;
    // Release: the chain's links are visible to the drainer's acquire exchange.
  } while (!q.head.compare_exchange_weak(old, head, std::memory_order_release,
                                         std::memory_order_relaxed));
}

void* queue_take(unsigned cls) {
  SpillQueue& q = g_queues[cls];
  // Relaxed pre-check: no write to the shared line when the queue is empty.
  if (q.head.load(std::memory_order_relaxed) == nullptr) return nullptr;
  // Acquire pairs with the pushers' release CAS.
  return q.head.exchange(nullptr, std::memory_order_acquire);
}

void queue_note_drained(unsigned cls, uint64_t n) {
  g_queues[cls].blocks.fetch_sub(n, std::memory_order_relaxed);
}

uint32_t route_blocks(Heap* heap, void* chain);

// In inline mode a queue is drained by the next refill of its class; if that class is not refilled
// any more, its blocks would keep their slabs (and SuperSlabs) alive. So thread exits and slab
// acquisitions also drain any queue that nobody pushed to or took from since the last such look.
std::atomic<void*> g_queue_last_seen[kClassCount];  // relaxed: a staleness hint only

void drain_stale_queues(Heap* heap) {
  for (unsigned c = 0; c < kClassCount; ++c) {
    void* head = g_queues[c].head.load(std::memory_order_relaxed);
    if (head == nullptr) continue;
    if (g_queue_last_seen[c].exchange(head, std::memory_order_relaxed) != head) continue;
    void* chain = queue_take(c);
    if (chain == nullptr) continue;
    if (heap != nullptr) bump(heap->counters.queue_drains);
    queue_note_drained(c, route_blocks(heap, chain));
  }
}

void ensure_bg_thread();

// ---------------------------------------------------------------------------------------------
// Moving blocks back to their slabs.

[[noreturn]] HAK_SLOW_PATH void report_corrupt_free_list(const Slab* slab, const void* block) {
  fatal("free list of a slab of class %u (%u bytes) is corrupt after %p", slab->cls,
        slab->block_size, block);
}

// The pages (one or two) that block `index` of a slab of `size`-byte blocks overlaps, as a mask.
uint32_t pages_of_block(uint32_t index, uint32_t size) {
  uint32_t first = index * size / kPageSize;
  uint32_t last = (index * size + size - 1) / kPageSize;
  return (2u << last) - (1u << first);
}

// One slab's free list being read into a bitmap of the blocks on it (the first half of a
// scavenge).
struct ListWalk {
  Slab* slab;
  void* at;       // the next block to read
  uint32_t left;  // blocks still to read
  bool corrupt;
  uint64_t listed[kBitmapWords];
};

// Reads several slabs' free lists at once, one block of each in turn: the loads of different lists
// do not wait for each other, so their cache misses overlap. One list at a time, each load waited
// for the one before: 95% of scavenging's time in footprint, at one instruction.
void walk_lists(ListWalk* walks, size_t count, bool check) {
  for (bool more = true; more;) {
    more = false;
    for (size_t w = 0; w < count; ++w) {
      ListWalk& walk = walks[w];
      if (walk.left == 0) continue;
      // A list that leaves the slab's carved blocks was written after a free: leave it alone.
      uint32_t index = block_index(*walk.slab, walk.at);
      if (!in_slab(walk.at, walk.slab) || index >= walk.slab->carved) {
        if (check) report_corrupt_free_list(walk.slab, walk.at);
        walk.corrupt = true;
        walk.left = 0;
        continue;
      }
      walk.listed[index / 64] |= uint64_t{1} << (index % 64);
      walk.at = next_of(walk.at);
      more |= --walk.left != 0;
    }
  }
}

// Page ranges to decommit, given to the OS in as few calls as it takes (os::decommit_ranges): one
// TLB flush for many slabs.
class PageRuns {
 public:
  void add(char* start, size_t bytes) {
    if (count_ == kCapacity) flush();
    runs_[count_++] = {start, bytes};
  }
  void flush() {
    if (count_ != 0) os::decommit_ranges(runs_, count_);
    count_ = 0;
  }

 private:
  static constexpr size_t kCapacity = 256;
  iovec runs_[kCapacity];
  size_t count_ = 0;
};

// Takes off slab's free list the blocks of its pages below the carved frontier whose blocks are
// all free (`listed`, from walk_lists), marks those pages scavenged and adds them to `runs`, to be
// given back before the slab changes hands. The list is relinked in address order, so that refills
// fill the low, resident part first. The owner's (slow_lock held).
void drop_free_pages(Slab* slab, const uint64_t* listed, PageRuns& runs) {
  const uint32_t size = slab->block_size;
  char* const area = slab->area();
  const uint32_t old_pages = slab->scavenged_pages;
  auto is_free = [&](uint32_t i) {
    return (listed[i / 64] >> (i % 64) & 1) != 0 || (pages_of_block(i, size) & old_pages) != 0;
  };
  uint32_t fresh = 0;
  for (uint32_t page = 0; page < kSlabSize / kPageSize; ++page) {
    uint32_t first = page * kPageSize / size;
    uint32_t last = ((page + 1) * kPageSize - 1) / size;
    if (last >= slab->capacity) last = slab->capacity - 1;
    if (last >= slab->carved) break;  // carving may reach this page
    if (old_pages >> page & 1) continue;
    bool all_free = true;
    for (uint32_t i = first; i <= last && all_free; ++i) all_free = is_free(i);
    if (all_free) fresh |= 1u << page;
  }
  if (fresh == 0) return;
  const uint32_t pages = old_pages | fresh;
  void* head = nullptr;
  uint32_t removed = 0;
  for (uint32_t word = (slab->carved + 63) / 64; word-- > 0;) {
    for (uint64_t bits = listed[word]; bits != 0;) {
      unsigned top = 63 - static_cast<unsigned>(__builtin_clzll(bits));
      bits &= ~(uint64_t{1} << top);
      uint32_t index = word * 64 + top;
      if ((pages_of_block(index, size) & pages) != 0) {
        ++removed;
        continue;
      }
      void* kept = area + size_t{index} * size;
      next_of(kept) = head;
      head = kept;
    }
  }
  slab->free = head;
  slab->scavenged += removed;
  slab->scavenged_pages = static_cast<uint16_t>(pages);
  while (fresh != 0) {
    unsigned first = static_cast<unsigned>(__builtin_ctz(fresh));
    unsigned end = first;
    while (fresh >> end & 1u) ++end;
    runs.add(area + size_t{first} * kPageSize, size_t{end - first} * kPageSize);
    fresh &= ~((1u << end) - (1u << first));
  }
}

// Links the blocks of slab's scavenged pages onto the front of its free list, in address order;
// their pages fault back in, zero-filled, as the links are written. The owner's.
void restore_scavenged(Slab* slab) {
  const uint32_t size = slab->block_size;
  char* const area = slab->area();
  const uint32_t pages = slab->scavenged_pages;
  uint32_t lowest = static_cast<uint32_t>(__builtin_ctz(pages)) * kPageSize / size;
  uint32_t highest = ((32 - static_cast<uint32_t>(__builtin_clz(pages))) * kPageSize - 1) / size;
  if (highest >= slab->capacity) highest = slab->capacity - 1;  // the slab's unused tail
  void* head = slab->free;
  uint32_t restored = 0;
  for (uint32_t index = highest + 1; index-- > lowest;) {
    if ((pages_of_block(index, size) & pages) == 0) continue;
    void* block = area + size_t{index} * size;
    next_of(block) = head;
    head = block;
    ++restored;
  }
  HAK_DEBUG_CHECK(restored == slab->scavenged && highest < slab->carved,
                  "slab %p of class %u: %u blocks in scavenged pages, %u counted", slab->area(),
                  slab->cls, restored, slab->scavenged);
  slab->free = head;
  slab->scavenged = 0;
  slab->scavenged_pages = 0;
}

// Calls visit(slab, used) for each of heap's available slabs that is at least three quarters free
// (and not empty), its remote frees drained first.
template <typename Visit>
void for_each_thin_slab(Heap* heap, bool check, Visit visit) {
  for (unsigned c = 0; c < kClassCount; ++c) {
    Slab* const head = heap->avail[c];
    if (head == nullptr) continue;
    Slab* slab = head;
    do {
      drain_remote(slab, check);
      uint32_t used = slab->used.load(std::memory_order_relaxed);
      if (used != 0 && used <= slab->capacity / 4) visit(slab, used);
      slab = slab->next;
    } while (slab != head);
  }
}

// Thread exit and collect: the heap's available slabs that are thin give back their wholly free
// pages, if their free blocks add up to min_free_bytes. Owner (slow_lock held).
//  - Not while the thread runs: a program that frees most of a slab and allocates again soon
//    would fault the pages back in (footprint's rebuild, scavenging as slabs thinned: 12% of its
//    time at 1 thread, 5.6K faults).
//  - At thread exit, only a heap that strands much memory (kExitScavengeBytes): Larson's threads
//    each leave about six thin slabs, which their successors adopt and fill within milliseconds;
//    scavenging them cost it 10% at 8 threads (7.4K slabs over 1.1K thread exits in 5 s).
void scavenge_thin_slabs(Heap* heap, size_t min_free_bytes) {
  bool check = marking();
  if (min_free_bytes != 0) {
    size_t free_bytes = 0;
    for_each_thin_slab(heap, check, [&](Slab* slab, uint32_t used) {
      free_bytes += size_t{slab->capacity - used} * slab->block_size;
    });
    if (free_bytes < min_free_bytes) return;
  }
  constexpr size_t kWalksAtOnce = 8;
  ListWalk walks[kWalksAtOnce];
  size_t pending = 0;
  PageRuns runs;
  auto scavenge_pending = [&] {
    walk_lists(walks, pending, check);
    for (size_t w = 0; w < pending; ++w) {
      if (!walks[w].corrupt) drop_free_pages(walks[w].slab, walks[w].listed, runs);
    }
    pending = 0;
  };
  for_each_thin_slab(heap, check, [&](Slab* slab, uint32_t used) {
    walks[pending] = {slab, slab->free, slab->carved - used - slab->scavenged, false, {}};
    if (++pending == kWalksAtOnce) scavenge_pending();
  });
  scavenge_pending();
  runs.flush();
}

// A run of blocks (head..tail, count of them) of one of heap's own slabs goes back on the slab's
// free list (no atomics). A slab that had nothing left becomes available again; one that becomes
// empty goes back to the pool unless it is the slab the heap carves from now.
void local_free(Heap* heap, Slab* slab, void* head, void* tail, uint32_t count) {
  next_of(tail) = slab->free;
  slab->free = head;
  uint32_t used = slab->used.load(std::memory_order_relaxed) - count;
  slab->used.store(used, std::memory_order_relaxed);
  unsigned cls = slab->cls;
  if (slab->list == SlabList::kFull) {
    ring_remove(heap->full[cls], slab);
    ring_push_back(heap->avail[cls], slab);
    slab->list = SlabList::kAvail;
  }
  // Relaxed: a hint. When every block still counted is marked (or about to be) in the remote
  // bitmap, the slab may be empty: drain it now, as an available slab is not swept
  // (sweep_full_slabs).
  if (used != 0 && used == slab->remote_count.load(std::memory_order_relaxed)) {
    used -= drain_remote(slab, marking());
  }
  if (used == 0 && heap->avail[cls] != slab) {
    ring_remove(heap->avail[cls], slab);
    pool::Guard guard;
    pool::release_locked(slab);
  }
}

// Cuts the first `limit` blocks of a chain (all of it, up to the null, with kWholeChain) into runs
// of consecutive blocks of one slab and calls visit(slab, run) for each, after reading the links
// it needs: visit may relink the run's tail. The run's blocks stay linked as they were, so a run
// is one list splice instead of one per block (blocks freed in a burst sit in one slab side by
// side). Returns how many blocks it visited and leaves `chain` at the first block it did not.
inline constexpr uint32_t kWholeChain = UINT32_MAX;
template <typename Visit>
uint32_t for_each_run(void*& chain, uint32_t limit, Visit visit) {
  if (marking()) {
    uint32_t n = 0;
    for (void* b = chain; b != nullptr && n < limit; b = next_of(b), ++n) {
      if (!plausible_block(b, kAnyClass)) {
        fatal("cache or spill chain corrupt: %p is not a tiny block", b);
      }
    }
  }
  uint32_t total = 0;
  void* block = chain;
  while (block != nullptr && total < limit) {
    // Blocks of one slab share their address bits above kSlabShift (never all zero, so the key
    // test also stops at the null that ends the chain).
    uintptr_t slab_key = reinterpret_cast<uintptr_t>(block) >> kSlabShift;
    uint32_t room = limit - total;
    void* tail = block;
    void* next = next_of(block);
    uint32_t count = 1;
    while (count < room && reinterpret_cast<uintptr_t>(next) >> kSlabShift == slab_key) {
      tail = next;
      next = next_of(next);
      ++count;
    }
    Chain run{block, tail, count};
    total += count;
    visit(slab_of(block), run);
    block = next;
  }
  chain = block;
  return total;
}

// Counts n blocks sent home to other threads' slabs, on heap (null: no heap).
void count_remote_frees(Heap* heap, uint32_t n) {
  if (n == 0) return;
  if (heap != nullptr) {
    bump(heap->counters.remote_frees, n);
  } else {
    g_counters.remote_frees.fetch_add(n, std::memory_order_relaxed);
  }
}

// Sends a chain (null-terminated) home: blocks of heap's slabs locally, run by run, the others
// into their slabs' remote bitmaps (RemoteMarker: one fetch_or per bitmap word a run falls in).
// heap may be null (no heap). Returns the number of blocks.
uint32_t route_blocks(Heap* heap, void* chain) {
  RemoteMarker marker(marking(), heap);
  uint32_t remote = 0;
  uint32_t total = for_each_run(chain, kWholeChain, [&](Slab* slab, Chain& run) {
    if (heap != nullptr && owned_by(*slab, heap)) {
      return local_free(heap, slab, run.head, run.tail, run.count);
    }
    marker.add_run(slab, run.head, run.count);
    remote += run.count;
  });
  marker.publish();
  count_remote_frees(heap, remote);
  return total;
}

// Blocks of class cls that the heap holds free: its cache, its stash and its outgoing list.
uint32_t held_blocks(const Heap* heap, unsigned cls) {
  return heap->cache[cls].count() + heap->stash[cls].blocks + heap->outgoing[cls].count;
}

// For other threads' stats snapshots.
void publish_count(Heap* heap, unsigned cls) {
  heap->published_count[cls].store(held_blocks(heap, cls), std::memory_order_relaxed);
}

// Blocks of other heaps' slabs leave as one chain: onto the class's spill queue (thread and
// inline modes), or into their slabs' remote bitmaps (off mode).
void send_foreign(Heap* heap, unsigned cls, Chain& foreign) {
  if (foreign.count == 0) return;
  BgSpillMode mode = options().bg_spill;
  if (mode == BgSpillMode::kOff) {
    foreign.terminate();
    route_blocks(heap, foreign.head);
    return;
  }
  queue_push(cls, foreign.head, foreign.tail, foreign.count);
  if (mode == BgSpillMode::kThread) ensure_bg_thread();
}

// ---------------------------------------------------------------------------------------------
// Refill.

void maintain_heap(Heap* heap);

// The learning rule: every refill or spill of a class is a sign of demand the cache could not
// absorb, so its batch doubles (up to max_batch); a class whose previous slow path lies kColdTicks
// of this heap's slow paths back has gone quiet, so its batch halves (down to kMinBatch).
void adapt(Heap* heap, unsigned cls, uint32_t* last_tick) {
  uint32_t tick = ++heap->ticks;
  // Refills, spills and foreign frees all tick: any one of them may be every other tick.
  if (HAK_UNLIKELY(tick % kSweepTicks == 0)) maintain_heap(heap);
  uint32_t since = tick - *last_tick;
  *last_tick = tick;
  uint32_t batch = heap->batch[cls];
  if (since >= kColdTicks) {
    batch = batch / 2 > kMinBatch ? batch / 2 : kMinBatch;
  } else {
    batch = batch * 2 < max_batch(cls) ? batch * 2 : max_batch(cls);
  }
  heap->batch[cls] = batch;
  if (!check_mode()) {
    heap->cache[cls].set_cap(2 * batch);
    heap->outgoing[cls].cap = outgoing_cap(batch);
  }
}

// Appends up to `want` blocks of slab's free list to chain; returns how many. The blocks keep their
// links: the count invariant (superslab.h) says how many there are, so the list is cut after a walk
// of loads only.
uint32_t take_listed(Slab* slab, uint32_t want, Chain& chain, bool check) {
  uint32_t used = slab->used.load(std::memory_order_relaxed);
  uint32_t listed = slab->carved - used - slab->scavenged;
  uint32_t taken = want < listed ? want : listed;
  if (taken == 0) return 0;
  void* head = slab->free;
  void* tail = head;
  for (uint32_t i = 1; i < taken; ++i) {
    void* next = next_of(tail);
    if (check && !in_slab(next, slab)) report_corrupt_free_list(slab, tail);
    tail = next;
  }
  void* rest = next_of(tail);
  if (check && (taken == listed ? rest != nullptr : !in_slab(rest, slab))) {
    report_corrupt_free_list(slab, tail);
  }
  slab->free = rest;
  chain.append_chain(Chain{head, tail, taken});
  slab->used.store(used + taken, std::memory_order_relaxed);
  return taken;
}

// Appends up to `want` blocks of slab to chain: its free list first, then carving, then its
// scavenged pages (brought back only when nothing else is left, so they stay out while they can).
void take_from_slab(Slab* slab, uint32_t want, Chain& chain, bool check) {
  uint32_t got = take_listed(slab, want, chain, check);
  uint32_t carve = want - got;
  if (carve > slab->capacity - slab->carved) carve = slab->capacity - slab->carved;
  if (carve != 0) {
    uint32_t size = slab->block_size;
    char* first = slab->area() + size_t{slab->carved} * size;
    char* last = first + size_t{carve - 1} * size;
    for (char* block = first; block != last; block += size) next_of(block) = block + size;
    chain.append_chain(Chain{first, last, carve});
    slab->carved += carve;
    slab->used.store(slab->used.load(std::memory_order_relaxed) + carve, std::memory_order_relaxed);
    got += carve;
  }
  if (got < want && slab->scavenged != 0) {
    restore_scavenged(slab);
    take_listed(slab, want - got, chain, check);
  }
}

// A slab of class cls with blocks to give: a full one that received remote frees, else one from
// the pool. It becomes the head of heap->avail[cls].
HAK_SLOW_PATH Slab* next_slab_slow(Heap* heap, unsigned cls) {
  // Blocks routed home from a stale spill queue may make one of our slabs available again.
  drain_stale_queues(heap);
  if (heap->avail[cls] != nullptr) return heap->avail[cls];
  Slab*& full = heap->full[cls];
  for (unsigned i = 0; i < kFullScan && full != nullptr; ++i) {
    Slab* slab = full;
    full = slab->next;  // rotate, so the next scan starts where this one stopped
    // Drained here, not just tested: remote_count may count a free whose bits are not set yet
    // (its thread preempted in between), and a slab that gives nothing must not be picked again.
    if (drain_remote(slab, marking()) != 0) {
      ring_remove(full, slab);
      ring_push_front(heap->avail[cls], slab);
      slab->list = SlabList::kAvail;
      return slab;
    }
  }
  Slab* slab;
  {
    pool::Guard guard;
    slab = pool::acquire_locked(heap, cls);
  }
  if (slab == nullptr) return nullptr;
  ring_push_front(heap->avail[cls], slab);
  slab->list = SlabList::kAvail;
  return slab;
}

// Takes the class's spill queue and keeps up to `want` of its blocks; routes the rest home.
void take_from_queue(Heap* heap, unsigned cls, uint32_t want, Chain& chain) {
  void* queued = queue_take(cls);
  if (queued == nullptr) return;
  bump(heap->counters.queue_drains);
  uint32_t n = 0;
  bool check = marking();
  while (queued != nullptr && n < want) {
    void* block = queued;
    queued = next_of(block);
    if (check && !plausible_block(block, cls)) {
      fatal("spill queue of class %u is corrupt at %p", cls, block);
    }
    chain.append(block);
    ++n;
  }
  n += route_blocks(heap, queued);
  queue_note_drained(cls, n);
}

// Releases a list of empty slabs linked through `next`.
void release_all_locked(Slab* empty) {
  while (empty != nullptr) {
    Slab* next = empty->next;
    pool::release_locked(empty);
    empty = next;
  }
}

// Every kSweepTicks slow paths a heap looks at a few of its full slabs in other classes: ones that
// remote frees emptied go back to the pool (a slab of a class the thread no longer allocates would
// otherwise wait for the thread's exit), ones with free blocks become available again.
void sweep_full_slabs(Heap* heap) {
  bool check = marking();
  Slab* empty = nullptr;
  for (unsigned round = 0, looked = 0; round < kClassCount && looked < kSweepSlabs; ++round) {
    unsigned cls = heap->sweep_class;
    heap->sweep_class = (cls + 1) % kClassCount;
    Slab*& full = heap->full[cls];
    for (unsigned i = 0; i < kSweepSlabs && full != nullptr; ++i, ++looked) {
      Slab* slab = full;
      full = slab->next;
      if (drain_remote(slab, check) == 0) continue;
      ring_remove(full, slab);
      if (slab->used.load(std::memory_order_relaxed) == 0) {
        slab->list = SlabList::kNone;
        slab->next = empty;
        empty = slab;
      } else {
        ring_push_back(heap->avail[cls], slab);
        slab->list = SlabList::kAvail;
      }
    }
  }
  if (empty == nullptr) return;
  pool::Guard guard;
  release_all_locked(empty);
}

// ---------------------------------------------------------------------------------------------
// The stash (heap.h).

void stash_remove_oldest(Heap* heap, unsigned cls) {
  ClassStash& stash = heap->stash[cls];
  StashedChain oldest = stash.chains[0];
  for (uint32_t i = 1; i < stash.depth; ++i) stash.chains[i - 1] = stash.chains[i];
  --stash.depth;
  stash.blocks -= oldest.count;
  heap->stash_bytes -= oldest.count * kClassSizes[cls];
  route_blocks(heap, oldest.head);
}

// Every stashed chain goes home (thread exit, collect).
void flush_stash(Heap* heap, unsigned cls) {
  while (heap->stash[cls].depth != 0) stash_remove_oldest(heap, cls);
}

// Chains stashed kColdTicks slow paths ago or more were not wanted back: home with them.
void age_stash(Heap* heap) {
  for (unsigned c = 0; c < kClassCount; ++c) {
    ClassStash& stash = heap->stash[c];
    bool changed = false;
    while (stash.depth != 0 && heap->ticks - stash.chains[0].tick >= kColdTicks) {
      stash_remove_oldest(heap, c);
      changed = true;
    }
    if (changed) publish_count(heap, c);
  }
}

// Every kSweepTicks slow paths of a heap.
void maintain_heap(Heap* heap) {
  sweep_full_slabs(heap);
  age_stash(heap);
}

// The overflowing cache of cls (cap + 1 blocks) goes into the stash but for its newest block, if
// the stash has room for it: a chain of cap blocks, which a refill takes back whole.
bool stash_cache(Heap* heap, unsigned cls) {
  ClassStash& stash = heap->stash[cls];
  ClassCache& cache = heap->cache[cls];
  if (cache.count() < 2) return false;
  void* newest = cache.head;
  uint32_t count = cache.count() - 1;
  uint32_t bytes = count * kClassSizes[cls];
  if (stash.depth == kStashDepth || heap->stash_bytes + bytes > kStashBytes) return false;
  stash.chains[stash.depth++] = StashedChain{next_of(newest), count, heap->ticks};
  stash.blocks += count;
  heap->stash_bytes += bytes;
  next_of(newest) = nullptr;
  cache.set_count(1);
  return true;
}

// The empty cache of cls takes up to `want` blocks of the newest stashed chain: the whole chain,
// or its first `want` blocks (one walk), the rest staying stashed. Returns how many. In a burst of
// mallocs refill asks for cap blocks, so a chain stashed at the current cap comes back whole, with
// no walk (only one stashed before the cap shrank is cut).
uint32_t refill_from_stash(Heap* heap, unsigned cls, uint32_t want) {
  ClassStash& stash = heap->stash[cls];
  StashedChain& newest = stash.chains[stash.depth - 1];
  ClassCache& cache = heap->cache[cls];
  cache.head = newest.head;
  uint32_t taken = newest.count;
  if (taken > want) {
    void* last = newest.head;
    for (uint32_t i = 1; i < want; ++i) last = next_of(last);
    newest.head = next_of(last);
    next_of(last) = nullptr;
    newest.count -= want;
    taken = want;
  } else {
    --stash.depth;
  }
  stash.blocks -= taken;
  heap->stash_bytes -= taken * kClassSizes[cls];
  cache.set_count(taken);
  publish_count(heap, cls);
  bump(heap->counters.refills);
  return taken;
}

// Fills heap's empty cache of class cls with a batch; returns how many blocks it holds.
uint32_t refill(Heap* heap, unsigned cls) {
  // The class's previous slow path was a refill too: a burst of mallocs, which takes stashed
  // chains back whole. After a spill, frees are as likely as mallocs: a batch (half a cache) leaves
  // them room before the next spill. (Unsigned distances: ticks wrap.)
  uint32_t now = heap->ticks;
  bool malloc_burst = now - heap->last_refill_tick[cls] < now - heap->last_spill_tick[cls];
  adapt(heap, cls, &heap->last_refill_tick[cls]);
  bool check = marking();
  uint32_t want = check_mode() ? 1 : heap->batch[cls];
  if (heap->stash[cls].depth != 0) {
    uint32_t cap = heap->cache[cls].cap;
    return refill_from_stash(heap, cls, malloc_burst && cap > want ? cap : want);
  }
  Chain chain;
  if (options().bg_spill == BgSpillMode::kInline) take_from_queue(heap, cls, want, chain);
  while (chain.count < want) {
    Slab* slab = heap->avail[cls];
    if (slab == nullptr && (slab = next_slab_slow(heap, cls)) == nullptr) break;
    drain_remote(slab, check);
    take_from_slab(slab, want - chain.count, chain, check);
    if (!has_free_blocks(slab)) {
      ring_remove(heap->avail[cls], slab);
      ring_push_back(heap->full[cls], slab);
      slab->list = SlabList::kFull;
    }
  }
  chain.terminate();
  ClassCache& cache = heap->cache[cls];
  cache.head = chain.head;
  cache.set_count(chain.count);
  publish_count(heap, cls);
  bump(heap->counters.refills);
  return chain.count;
}

// ---------------------------------------------------------------------------------------------
// Spill: the cache of cls holds more than its cap. It goes into the stash whole, or, when the
// stash is full, the oldest `batch` blocks stay and the newer ones leave as chains. Leaving from
// the head means one walk both finds the cut and groups the blocks into runs (keeping the newest
// would need a walk to the cut first).
void spill(Heap* heap, unsigned cls) {
  adapt(heap, cls, &heap->last_spill_tick[cls]);
  ClassCache& cache = heap->cache[cls];
  bump(heap->counters.spills);
  if (stash_cache(heap, cls)) return publish_count(heap, cls);
  uint32_t keep = heap->batch[cls];
  if (keep >= cache.count()) return;
  // Own blocks go home now (no atomics); foreign ones (from the spill queue) leave as one chain.
  Chain foreign;
  for_each_run(cache.head, cache.count() - keep, [&](Slab* slab, Chain& run) {
    if (owned_by(*slab, heap)) {
      local_free(heap, slab, run.head, run.tail, run.count);
    } else {
      foreign.append_chain(run);
    }
  });
  cache.set_count(keep);
  publish_count(heap, cls);
  send_foreign(heap, cls, foreign);
}

// The outgoing list of cls goes home, with `extra` (a block of it, or null) first: into the remote
// bitmaps of their slabs (off mode; a block of a slab this heap has come to own since goes back
// to its free list), or linked into one chain onto the class's spill queue (inline and thread
// modes). Blocks of one slab freed in a burst sit side by side, so one fetch_or marks many.
void send_outgoing(Heap* heap, unsigned cls, void* extra) {
  OutgoingList& out = heap->outgoing[cls];
  auto for_each_block = [&](auto visit) {
    if (extra != nullptr) visit(extra);
    for (uint32_t i = 0; i < out.count; ++i) visit(out.blocks[i]);
  };
  if (options().bg_spill != BgSpillMode::kOff) {
    Chain chain;
    for_each_block([&](void* block) { chain.append(block); });
    send_foreign(heap, cls, chain);
  } else {
    RemoteMarker marker(marking(), heap);
    uint32_t remote = 0;
    for_each_block([&](void* block) {
      Slab* slab = slab_of(block);
      if (owned_by(*slab, heap)) return local_free(heap, slab, block, block, 1);
      marker.add(slab, block);
      ++remote;
    });
    marker.publish();
    count_remote_frees(heap, remote);
  }
  out.count = 0;
}

// A block of a slab this heap does not own, in the slow path: onto the outgoing list of cls, or,
// when that is full, home with the whole list.
void free_foreign(Heap* heap, unsigned cls, void* block) {
  OutgoingList& out = heap->outgoing[cls];
  if (out.count < out.cap) {
    out.blocks[out.count++] = block;
    return;
  }
  adapt(heap, cls, &heap->last_spill_tick[cls]);
  bump(heap->counters.spills);
  send_outgoing(heap, cls, block);
  publish_count(heap, cls);
}

// Thread exit and collect: every cache, stash and outgoing list goes home now.
void flush_caches(Heap* heap) {
  for (unsigned c = 0; c < kClassCount; ++c) {
    flush_stash(heap, c);
    void* chain = heap->cache[c].head;
    heap->cache[c].head = nullptr;
    heap->cache[c].set_count(0);
    route_blocks(heap, chain);
    send_outgoing(heap, c, nullptr);
    publish_count(heap, c);
  }
}

// Slabs unlinked from a heap by tidy_slabs, each list linked through `next`.
struct TidiedSlabs {
  Slab* empty = nullptr;  // to release to the pool
  Slab* spare = nullptr;  // with free blocks, given away: to abandon to the pool
};

// Drains the remote bitmaps of all of heap's slabs (the caller holds its slow_lock) and unlinks the
// empty ones. Slabs with free blocks stay available, or are unlinked too, for threads that
// allocate to adopt, as give_away says. Full slabs stay full.
TidiedSlabs tidy_slabs(Heap* heap, pool::GiveAway give_away) {
  bool check = marking();
  TidiedSlabs out;
  for (unsigned c = 0; c < kClassCount; ++c) {
    for (Slab** list : {&heap->avail[c], &heap->full[c]}) {
      // Unhook the whole ring, then put each slab back where it now belongs (avail keeps its
      // order, so the slab being carved stays at the head).
      Slab* slab = *list;
      if (slab == nullptr) continue;
      slab->prev->next = nullptr;
      *list = nullptr;
      while (slab != nullptr) {
        Slab* next = slab->next;
        bool freed_remotely = drain_remote(slab, check) != 0;
        bool has_free = has_free_blocks(slab);
        bool give = has_free && (give_away == pool::GiveAway::kEveryFreeSlab ||
                                 (give_away == pool::GiveAway::kRemotelyFreed && freed_remotely));
        if (slab->used.load(std::memory_order_relaxed) == 0 || give) {
          Slab*& to = slab->used.load(std::memory_order_relaxed) == 0 ? out.empty : out.spare;
          slab->list = SlabList::kNone;
          slab->next = to;
          to = slab;
        } else if (!has_free) {
          ring_push_back(heap->full[c], slab);
          slab->list = SlabList::kFull;
        } else {
          ring_push_back(heap->avail[c], slab);
          slab->list = SlabList::kAvail;
        }
        slab = next;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Heaps: carved from metadata chunks mapped from the OS (never from malloc), recycled through a
// free list, never unmapped. Registry and free list are under the pool lock.
constexpr size_t kHeapChunkSize = 64 * 1024;
Heap* g_free_heaps = nullptr;
Heap* g_live_heaps = nullptr;
char* g_heap_cursor = nullptr;
char* g_heap_end = nullptr;

pthread_key_t g_key;
bool g_key_ready = false;  // under the pool lock

void heap_teardown(void* value);

Heap* allocate_heap_locked() {
  Heap* heap = g_free_heaps;
  if (heap != nullptr) {
    g_free_heaps = heap->next_free;
    return heap;
  }
  if (g_heap_cursor == nullptr || g_heap_end - g_heap_cursor < (ptrdiff_t)sizeof(Heap)) {
    void* chunk = os::map(kHeapChunkSize);
    if (chunk == nullptr) return nullptr;
    g_heap_cursor = static_cast<char*>(chunk);
    g_heap_end = g_heap_cursor + kHeapChunkSize;
  }
  heap = reinterpret_cast<Heap*>(g_heap_cursor);
  g_heap_cursor += sizeof(Heap);
  return heap;
}

void init_heap(Heap* heap) {
  new (heap) Heap{};
  for (unsigned c = 0; c < kClassCount; ++c) {
    heap->batch[c] = kInitialBatch;
    heap->cache[c].set_cap(check_mode() ? 0 : 2 * kInitialBatch);
    heap->outgoing[c].cap = check_mode() ? 0 : outgoing_cap(kInitialBatch);
  }
  heap->live = true;
}

void register_heap_locked(Heap* heap) {
  heap->prev_live = nullptr;
  heap->next_live = g_live_heaps;
  if (g_live_heaps != nullptr) g_live_heaps->prev_live = heap;
  g_live_heaps = heap;
}

void unregister_heap_locked(Heap* heap) {
  if (heap->prev_live != nullptr) heap->prev_live->next_live = heap->next_live;
  if (heap->next_live != nullptr) heap->next_live->prev_live = heap->prev_live;
  if (g_live_heaps == heap) g_live_heaps = heap->next_live;
  heap->live = false;
}

// Gives the calling thread a heap; nullptr (errno = ENOMEM) when no memory for it.
// Gives the calling thread a heap; nullptr when it cannot have one: no memory for it (errno =
// ENOMEM), or no way to learn of the thread's exit (then t_exited is set and the thread uses the
// orphan heap, so nothing it caches can be stranded).
Heap* heap_create() {
  Heap* heap;
  {
    pool::Guard guard;
    if (!g_key_ready) {
      // pthread_key_create does not allocate; the destructor runs at thread exit.
      if (pthread_key_create(&g_key, heap_teardown) != 0) {
        log_message("tiny: pthread_key_create failed; threads share one locked heap");
        t_exited = true;
        return nullptr;
      }
      g_key_ready = true;
    }
    heap = allocate_heap_locked();
    if (heap == nullptr) return nullptr;
    init_heap(heap);
    register_heap_locked(heap);
  }
  // Install first: pthread_setspecific may itself call malloc (for keys beyond the first block).
  t_heap = heap;
  if (pthread_setspecific(g_key, heap) != 0) {
    heap_teardown(heap);  // a recursive malloc may have used it; sets t_exited
    return nullptr;
  }
  return heap;
}

// Thread exit: flush the caches, give the slabs to the pool (empty ones as empty, the others as
// abandoned), recycle the heap. Later calls on this thread never get a heap again.
void heap_teardown(void* value) {
  auto* heap = static_cast<Heap*>(value);
  if (heap == nullptr || heap == &g_sentinel_heap) return;
  t_heap = &g_sentinel_heap;
  t_exited = true;
  heap->slow_lock.lock();
  flush_caches(heap);
  drain_stale_queues(heap);
  scavenge_thin_slabs(heap, kExitScavengeBytes);  // before the pool lock: no system calls under it
  bool check = marking();
  pool::Guard guard;
  for (unsigned c = 0; c < kClassCount; ++c) {
    for (Slab** list : {&heap->avail[c], &heap->full[c]}) {
      while (*list != nullptr) {
        Slab* slab = *list;
        ring_remove(*list, slab);
        drain_remote(slab, check);
        if (slab->used.load(std::memory_order_relaxed) == 0) {
          pool::release_locked(slab);
        } else {
          pool::abandon_locked(slab);
        }
      }
    }
  }
  retire_counters(heap->counters);
  unregister_heap_locked(heap);
  // Unregistered, so no idle check can reach it; unlocked before it can be handed out again.
  heap->slow_lock.unlock();
  heap->next_free = g_free_heaps;
  g_free_heaps = heap;
  pool::maintain_locked(false);
}

// After a thread's teardown: allocation through one shared heap under a lock.
SpinLock g_orphan_lock;
Heap g_orphan_heap;
bool g_orphan_ready = false;

HAK_SLOW_PATH void* alloc_orphan(unsigned cls) {
  g_orphan_lock.lock();
  if (!g_orphan_ready) {
    init_heap(&g_orphan_heap);
    g_orphan_ready = true;
  }
  ClassCache& cache = g_orphan_heap.cache[cls];
  void* block = cache.head;
  if (block == nullptr && refill(&g_orphan_heap, cls) != 0) block = cache.head;
  if (block != nullptr) {
    cache.head = next_of(block);
    ++cache.room;
  }
  g_orphan_lock.unlock();
  if (block == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  if (marking()) debug_mark_allocated(block, cls);
  return block;
}

// A block freed with no cache to take it: home directly.
void free_direct(Heap* heap, Slab* slab, void* block) {
  if (heap != nullptr && owned_by(*slab, heap)) {
    local_free(heap, slab, block, block, 1);
    return;
  }
  RemoteMarker marker(marking(), heap);
  marker.add(slab, block);
  marker.publish();
  count_remote_frees(heap, 1);
}

[[noreturn]] HAK_SLOW_PATH void report_invalid_free_fatal(const void* p, const Slab* slab) {
  if (slab->state == SlabState::kHeader) fatal("free(%p): points into a tiny SuperSlab header", p);
  if (slab->state == SlabState::kReturned) {
    fatal("free(%p): points into a tiny SuperSlab returned to the OS (double free?)", p);
  }
  if (slab->capacity == 0) fatal("free(%p): points into an unused tiny slab (double free?)", p);
  fatal("free(%p): not on a block boundary of tiny class %u (%u-byte blocks)", p, slab->cls,
        slab->block_size);
}

HAK_SLOW_PATH void invalid_free(const void* p, const Slab* slab) {
  if (kDebugChecks || options().check) report_invalid_free_fatal(p, slab);
  log_message("free(%p): not a block hakmem handed out (tiny class %u); ignored", p, slab->cls);
}

// ---------------------------------------------------------------------------------------------
// The background spill drainer (HAKMEM_BG_SPILL=thread): started on the first spill, again in a
// forked child on its first spill. It owns no slabs: every block it drains goes remote.
std::atomic<int> g_bg_state{0};  // 0 none, 1 running (relaxed + CAS: a start-once flag)

void* bg_main(void*) {
  uint32_t sleep_us = 1000;
  for (;;) {
    bool work = false;
    for (unsigned c = 0; c < kClassCount; ++c) {
      void* chain = queue_take(c);
      if (chain == nullptr) continue;
      work = true;
      g_counters.queue_drains.fetch_add(1, std::memory_order_relaxed);
      queue_note_drained(c, route_blocks(nullptr, chain));
    }
    {
      pool::Guard guard;
      // The drainer has time: it looks at many abandoned slabs per tick, so memory freed after
      // its owners exited goes back to the OS within a few ticks plus the release delay.
      pool::maintain_locked(false, kBgMaintenanceBudget);
    }
    sleep_us = work ? 1000 : (sleep_us * 2 > 50000 ? 50000 : sleep_us * 2);
    timespec ts{0, long(sleep_us) * 1000};
    nanosleep(&ts, nullptr);
  }
  return nullptr;
}

void ensure_bg_thread() {
  if (g_bg_state.load(std::memory_order_relaxed) != 0) return;
  int expected = 0;
  if (!g_bg_state.compare_exchange_strong(expected, 1, std::memory_order_relaxed)) return;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t thread;
  if (pthread_create(&thread, &attr, bg_main, nullptr) != 0) {
    g_bg_state.store(0, std::memory_order_relaxed);  // try again on a later spill
  }
  pthread_attr_destroy(&attr);
}

}  // namespace

void report_remote_double_free_fatal(const void* block, const Slab* slab) {
  fatal("double free of %p (tiny class %u, %u-byte blocks): already freed by another thread", block,
        slab->cls, slab->block_size);
}

void report_remote_double_free(const void* block, const Slab* slab) {
  if (kDebugChecks) report_remote_double_free_fatal(block, slab);
  log_message("free(%p): double free (tiny class %u): already freed by another thread; ignored",
              block, slab->cls);
}

void report_written_after_remote_free(const void* block, const Slab* slab) {
  fatal("tiny block %p (class %u, %u-byte blocks) was written after another thread freed it", block,
        slab->cls, slab->block_size);
}

// A heap whose owner took no slow path since the previous look may hold slabs that other threads'
// frees emptied or thinned, with nobody to notice: a thread that allocated and now waits (Larson's
// main thread holds the first generation of every array's slabs), or one that lives on its
// caches. Under its slow_lock, its empty slabs go back to the pool, and those with free blocks
// that give_away picks are abandoned there, for threads that allocate to adopt. The owner may still
// hold blocks of them in its caches; that is safe, as every slow path checks a block's owner again
// before putting it back on a slab (spill, route_blocks, free_slow).
void pool::reclaim_idle_heaps_locked(GiveAway give_away) {
  for (Heap* heap = g_live_heaps; heap != nullptr; heap = heap->next_live) {
    // Fails for a heap in a slow path, the calling thread's own included.
    if (!heap->slow_lock.try_lock()) continue;
    if (heap->ticks == heap->ticks_at_last_look) {
      TidiedSlabs tidied = tidy_slabs(heap, give_away);
      release_all_locked(tidied.empty);
      for (Slab* slab = tidied.spare; slab != nullptr;) {
        Slab* next = slab->next;
        abandon_locked(slab);
        slab = next;
      }
    }
    heap->ticks_at_last_look = heap->ticks;
    heap->slow_lock.unlock();
  }
}

// ---------------------------------------------------------------------------------------------
// The slow paths of the fast paths in tiny.h.

HAK_SLOW_PATH void* alloc_slow(ClassCache* empty) noexcept {
  Heap* heap = t_heap;
  auto cls = static_cast<unsigned>(empty - heap->cache);
  if (heap == &g_sentinel_heap) {
    if (!t_exited) heap = heap_create();
    if (t_exited) return alloc_orphan(cls);
    if (heap == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
  }
  SpinLockGuard slow(heap->slow_lock);
  ClassCache& cache = heap->cache[cls];
  if (cache.head == nullptr && refill(heap, cls) == 0) {
    errno = ENOMEM;
    return nullptr;
  }
  void* block = cache.head;
  cache.head = next_of(block);
  ++cache.room;
  if (marking()) debug_mark_allocated(block, cls);
  return block;
}

HAK_SLOW_PATH void free_slow(void* p) noexcept {
  Slab* slab = slab_of(p);
  if (block_index(*slab, p) == UINT32_MAX) return invalid_free(p, slab);
  if (marking()) debug_mark_freed(p, *slab);
  Heap* heap = t_heap;
  if (heap == &g_sentinel_heap) {
    if (t_exited || (heap = heap_create()) == nullptr) return free_direct(nullptr, slab, p);
  }
  SpinLockGuard slow(heap->slow_lock);
  if (check_mode()) return free_direct(heap, slab, p);
  unsigned cls = slab->cls;
  if (!owned_by(*slab, heap)) return free_foreign(heap, cls, p);
  ClassCache& cache = heap->cache[cls];
  next_of(p) = cache.head;
  cache.head = p;
  if (--cache.room < 0) spill(heap, cls);
}

HAK_SLOW_PATH void free_full(void* p, ClassCache* list) noexcept {
  ++list->room;  // written by its owner only: this thread
  free_slow(p);
}

void debug_mark_allocated(void* block, unsigned cls) noexcept {
  Slab* slab = slab_of(block);
  uint32_t index = block_index(*slab, block);
  if (index == UINT32_MAX || slab->cls != cls) {
    fatal("free list of tiny class %u is corrupt: %p is not one of its blocks", cls, block);
  }
  void* next = next_of(block);
  if (next != nullptr && !plausible_block(next, cls)) {
    fatal("free list of tiny class %u is corrupt: %p links to %p", cls, block, next);
  }
  uint64_t bit = uint64_t{1} << (index & 63);
  // Relaxed: the bitmap is a checker; the block itself is handed over by the free lists.
  uint64_t old = slab->superslab()->live_bits[slab->index][index >> 6].fetch_or(
      bit, std::memory_order_relaxed);
  if (old & bit) fatal("tiny block %p (class %u) handed out twice", block, cls);
}

void debug_mark_freed(void* block, const Slab& slab) noexcept {
  uint32_t index = block_index(slab, block);
  uint64_t bit = uint64_t{1} << (index & 63);
  // Relaxed: see debug_mark_allocated.
  uint64_t old = slab.superslab()->live_bits[slab.index][index >> 6].fetch_and(
      ~bit, std::memory_order_relaxed);
  if (!(old & bit)) {
    fatal("double free of %p (tiny class %u, %u-byte blocks), or free of a block never allocated",
          block, slab.cls, slab.block_size);
  }
}

namespace {

// Flushes heap's caches home and gives its empty slabs back to the pool.
void collect_heap(Heap* heap) {
  flush_caches(heap);
  Slab* empty = tidy_slabs(heap, pool::GiveAway::kNone).empty;
  scavenge_thin_slabs(heap, 0);
  if (empty == nullptr) return;
  pool::Guard guard;
  release_all_locked(empty);
}

}  // namespace

void collect() {
  Heap* heap = t_heap == &g_sentinel_heap ? nullptr : t_heap;
  if (heap != nullptr) {
    heap->slow_lock.lock();
    collect_heap(heap);
  }
  g_orphan_lock.lock();
  if (g_orphan_ready) collect_heap(&g_orphan_heap);
  g_orphan_lock.unlock();
  for (unsigned c = 0; c < kClassCount; ++c) {
    void* chain = queue_take(c);
    if (chain != nullptr) queue_note_drained(c, route_blocks(heap, chain));
  }
  // Blocks just routed home may have emptied more of this heap's slabs.
  if (heap != nullptr) collect_heap(heap);
  {
    pool::Guard guard;
    pool::maintain_locked(true);
  }
  if (heap != nullptr) heap->slow_lock.unlock();
}

void fill_stats(hak_stats_t* out) {
  out->tiny_class_count = kClassCount;
  for (unsigned c = 0; c < kClassCount; ++c) out->tiny_class_size[c] = kClassSizes[c];
  uint64_t refills = g_counters.refills.load(std::memory_order_relaxed);
  uint64_t spills = g_counters.spills.load(std::memory_order_relaxed);
  uint64_t remote = g_counters.remote_frees.load(std::memory_order_relaxed);
  uint64_t adoptions = g_counters.adoptions.load(std::memory_order_relaxed);
  uint64_t drains = g_counters.queue_drains.load(std::memory_order_relaxed);
  uint64_t used_bytes = 0, cached_bytes = 0;
  Heap* self = t_heap;
  {
    pool::Guard guard;
    pool::fill_stats_locked(out);
    for (Heap* heap = g_live_heaps; heap != nullptr; heap = heap->next_live) {
      refills += heap->counters.refills.load(std::memory_order_relaxed);
      spills += heap->counters.spills.load(std::memory_order_relaxed);
      remote += heap->counters.remote_frees.load(std::memory_order_relaxed);
      adoptions += heap->counters.adoptions.load(std::memory_order_relaxed);
      drains += heap->counters.queue_drains.load(std::memory_order_relaxed);
      for (unsigned c = 0; c < kClassCount; ++c) {
        uint64_t count = heap == self ? held_blocks(heap, c)
                                      : heap->published_count[c].load(std::memory_order_relaxed);
        cached_bytes += count * kClassSizes[c];
      }
    }
    pool::for_each_superslab_locked([&](SuperSlab* ss) {
      for (unsigned i = kFirstBlockSlab; i < kSlabsPerSuperSlab; ++i) {
        const Slab& slab = ss->slabs[i];
        if (slab.state == SlabState::kOwned || slab.state == SlabState::kAbandoned) {
          // Blocks freed remotely are free, though `used` counts them until the owner drains
          // them.
          uint32_t used = slab.used.load(std::memory_order_relaxed);
          uint32_t remote = slab.remote_count.load(std::memory_order_relaxed);
          used_bytes += uint64_t{used > remote ? used - remote : 0} * slab.block_size;
        }
      }
    });
  }
  for (unsigned c = 0; c < kClassCount; ++c) {
    cached_bytes += g_queues[c].blocks.load(std::memory_order_relaxed) * kClassSizes[c];
  }
  out->tiny_refills = refills;
  out->tiny_spills = spills;
  out->tiny_remote_frees = remote;
  out->tiny_adoptions = adoptions;
  out->tiny_spill_queue_drains = drains;
  out->bytes_in_use += used_bytes > cached_bytes ? used_bytes - cached_bytes : 0;
}

void prefork() {
  g_orphan_lock.lock();
  pool::prefork();
}

void postfork_parent() {
  pool::postfork_parent();
  g_orphan_lock.unlock();
}

void postfork_child() {
  // The forking thread took every lock and is the child's only thread: it releases them, as
  // re-initialising a locked mutex is undefined (and TSan reports it as a double lock).
  postfork_parent();
  // The background thread did not survive fork(); the next spill starts a new one. Heaps of the
  // parent's other threads stay registered with their slabs (their blocks cannot be freed here
  // by their threads; that memory is the child's to leak, as with any allocator).
  g_bg_state.store(0, std::memory_order_relaxed);
}

namespace testing {

Census census() {
  Census result;
  Heap* self = t_heap;
  pool::Guard guard;
  pool::for_each_superslab_locked([&](SuperSlab* ss) {
    ++result.superslabs;
    for (unsigned i = kFirstBlockSlab; i < kSlabsPerSuperSlab; ++i) {
      const Slab& slab = ss->slabs[i];
      bool exact = slab.state == SlabState::kAbandoned || slab.state == SlabState::kEmpty ||
                   owned_by(slab, self);
      if (slab.state == SlabState::kOwned || slab.state == SlabState::kAbandoned) {
        ++result.slabs_in_use;
        result.blocks_used += slab.used.load(std::memory_order_relaxed);
      }
      bool ok = slab.state == SlabState::kEmpty
                    ? slab.used.load(std::memory_order_relaxed) == 0 && slab.capacity == 0 &&
                          !has_remote(&slab) && remote_marked(&slab) == 0
                    : (exact ? slab_counts_consistent(&slab)
                             : slab.carved <= slab.capacity &&
                                   slab.used.load(std::memory_order_relaxed) <= slab.carved);
      if (!ok) ++result.invariant_violations;
    }
  });
  for (unsigned c = 0; c < kClassCount; ++c) {
    result.blocks_queued += list_length(g_queues[c].head.load(std::memory_order_acquire));
  }
  return result;
}

uint32_t cached_blocks(unsigned cls) {
  return t_heap->cache[cls].count() + t_heap->stash[cls].blocks;
}

}  // namespace testing

}  // namespace hak::tiny
