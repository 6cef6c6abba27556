// The tiny part's memory layout: SuperSlabs, slabs and their metadata.
//
// Glossary
//  - SuperSlab: 2 MiB of address space aligned to 2 MiB (one chunk-map granule, entry (kTiny,
//    SuperSlab*)). It is cut into kSlabsPerSuperSlab slabs of 64 KiB; slab 0 holds this header
//    (the metadata of all slabs and their remote bitmaps), slabs 1..31 hold blocks. So a block's
//    slab is arithmetic: index = (p - superslab) >> 16, and every block area is 64 KiB-aligned.
//  - slab: 64 KiB serving one size class at a time; its blocks sit at multiples of the class size
//    from the start of the slab (capacity = 64 KiB / size). A slab is empty (in the shared pool,
//    no class), owned (by one thread's heap) or abandoned (its owner exited; it waits, with its
//    class, in the pool to be adopted by another heap).
//  - class: index into kClassSizes (size_classes.h).
//  - owner: the heap (heap.h) of the thread that carves and reuses the slab; only the holder of
//    that heap's slow_lock (the owner in a slow path, or a thread tidying an idle heap) touches
//    the slab's `free` list, `carved` and `used` (for abandoned slabs: whoever holds the pool
//    lock).
//  - remote bitmap: one bit per block, set while the block was freed by anyone other than the
//    slab's owner and not yet drained (remote_count counts them, raised before the bits are set).
//    Producers set a word's bits with one fetch_or; the drainer takes a word with one exchange
//    and links its blocks onto the free list itself. Neither side reads a link the other wrote:
//    a remote free leaves the block's memory alone, so its cache lines do not travel to the
//    owner's core one dependent load at a time, as a linked remote list made them (drained by
//    chasing links written on another core).
//  - spill: a thread cache that overflows sends its excess out as chains (heap.h, tiny.cpp).
//  - scavenged pages: pages of a thinned-out slab whose carved blocks were all free, given back
//    to the OS while the slab keeps its class (Slab::scavenged_pages), when its owner lets it go
//    (thread exit) or is asked to give memory back (collect). Their blocks are on no list; the
//    slab's next owner links them back, zero-filled pages faulting in, once the free list and the
//    bump area have nothing left (restore_scavenged in tiny.cpp). A page is scavenged only below
//    the carved frontier, so carving never reaches one.
//  - arena: the reservation SuperSlabs are cut from (TinyArena, os/arena.h), so that free
//    recognises a tiny block by one range test instead of a chunk-map look-up. A slot never used,
//    or a SuperSlab that gave its pages back, reads as zeros (no slab serves a class, so no
//    pointer validates). A SuperSlab that does not fit the arena (reservation refused, or full)
//    is mapped on its own, and reached through the chunk map, where every live SuperSlab is
//    registered.
//
// The count invariant of a slab (checked in debug builds whenever a slab changes hands, and by
// testing::census):
//    used == carved - |free| - scavenged,   |remote bits| <= remote_count <= used,
//    carved <= capacity,
// where `used` counts the blocks that are neither on the owner's free list nor in scavenged
// pages: held by the program, sitting in any thread's cache or in a spill queue, or marked in the
// remote bitmap and not yet drained (draining moves them to `free` and subtracts them). A slab
// may be returned to the pool only with used == 0 (so its remote bitmap is clear and remote_count
// 0 too).
//
// Why no lock-free reader touches freed memory. SuperSlab headers live inside the SuperSlab, so
// returning it frees its metadata; this is safe because a SuperSlab is returned only (a) under
// the pool lock, (b) when all its slabs are empty (used == 0, not owned, remote bitmap drained),
// (c) after its chunk-map entry was cleared; and one in the arena is never unmapped, only
// emptied of its pages, so even a stale or wild pointer's range test and header read cannot fault.
// The lock-free readers are: a thread freeing a block (reads the slab's class fields, then marks
// it in the remote bitmap or pushes it to a spill queue) — it holds a live block, so `used` > 0
// and the slab cannot be empty until its mark is drained, and it never touches the slab after
// its last fetch_or; a thread draining a spill queue — every block in a queue still counts in its
// slab's `used`; the owner — a slab in the pool has no owner. Chunk-map leaves are never unmapped,
// so a stale lookup cannot fault. Heaps are recycled, never unmapped.
#pragma once

#include <atomic>
#include <cstdint>

#include "common/base.h"
#include "os/arena.h"
#include "tiny/size_classes.h"

namespace hak::tiny {

inline constexpr unsigned kSlabShift = 16;
inline constexpr size_t kSlabSize = size_t{1} << kSlabShift;
inline constexpr unsigned kSlabsPerSuperSlab = kChunkSize / kSlabSize;  // 32; slab 0 = header
inline constexpr unsigned kFirstBlockSlab = 1;
inline constexpr uint32_t kMaxBlocksPerSlab = kSlabSize / kClassSizes[0];
inline constexpr uint32_t kBitmapWords = kMaxBlocksPerSlab / 64;
static_assert(kSlabsPerSuperSlab <= 32, "empty-slab masks are 32 bits");

struct Heap;
struct ClassCache;
class SuperSlab;

// kReturned is zero: the state read from the zero pages of a SuperSlab returned to the OS.
enum class SlabState : uint8_t { kReturned, kHeader, kEmpty, kOwned, kAbandoned };
// Which of its owner's lists an owned slab is on.
enum class SlabList : uint8_t { kNone, kAvail, kFull };

// 256 bytes (a power of two: finding a block's slab in free is a shift and a mask).
struct alignas(4 * kCacheLine) Slab {
  // Line 1: fixed while the slab serves a class; read by every thread that frees one of its
  // blocks. block_limit == 0 for the header slab and for empty slabs, so no pointer validates.
  uint64_t block_multiplier = 0;  // block_check(block_size, kSlabSize)
  uint64_t block_limit = 0;
  uint32_t capacity = 0;
  uint32_t block_size = 0;
  uint8_t cls = 0;
  uint8_t index = 0;  // position in its SuperSlab
  SlabState state = SlabState::kHeader;
  // The owner heap's cache of this slab's class (&owner->cache[cls]), or null: free's fast path
  // tells its own blocks from others' by whether this points into its heap, with no class look-up.
  // Read relaxed: only the owner stores a pointer into its own heap here (when it takes the slab);
  // others store null (taking the slab away), so a thread that finds its own heap really is the
  // owner, and any other value means "not ours, send it home".
  std::atomic<ClassCache*> owner_cache{nullptr};

  // Line 2: the owner's (or, while abandoned, the pool lock holder's).
  alignas(kCacheLine) void* free = nullptr;  // owner-only free list
  uint32_t carved = 0;                       // blocks ever handed out of the bump area
  // Written only by the owner (load + store, no RMW); atomic so stats may read it anywhere.
  std::atomic<uint32_t> used{0};
  SlabList list = SlabList::kNone;
  // Bit i: page i of the slab is scavenged (glossary); `scavenged` counts the carved blocks that
  // overlap those pages.
  uint16_t scavenged_pages = 0;
  uint32_t scavenged = 0;
  Slab* next = nullptr;  // owner's avail/full list, or the pool's abandoned list
  Slab* prev = nullptr;

  // Line 3: apart from what the owner writes, so remote freers do not false-share with it.
  // Blocks marked in the remote bitmap, or about to be, and not yet drained: non-zero tells the
  // owner there is something to drain, and bytes_in_use excludes them. Relaxed RMW: raised
  // before the bits it counts are set (after that the slab may already be gone), lowered by the
  // drainer by as many bits as it took.
  alignas(kCacheLine) std::atomic<uint32_t> remote_count{0};
  // The heap of the thread that marked remote frees here last (null: none, or no heap). A hint for
  // adoption (pool.cpp): compared, never dereferenced.
  std::atomic<const Heap*> last_remote_freer{nullptr};

  char* area() const;  // first block
  SuperSlab* superslab() const;
};

class SuperSlab {
 public:
  Slab slabs[kSlabsPerSuperSlab];

  // Pool bookkeeping, under the pool lock.
  SuperSlab* next = nullptr;  // in the pool's list of SuperSlabs with empty slabs
  SuperSlab* prev = nullptr;
  SuperSlab* all_next = nullptr;  // every live SuperSlab (stats, verification)
  SuperSlab* all_prev = nullptr;
  uint32_t empty_mask = 0;  // bit i: slab i is empty and in the pool
  uint32_t empty_count = 0;
  // Empty slabs with no resident pages: never carved since the SuperSlab was mapped, or given
  // back to the OS since they emptied.
  uint32_t decommitted_mask = 0;
  uint32_t aged_mask = 0;       // empty slabs seen by the previous decommit pass
  uint64_t empty_since_ms = 0;  // when empty_count reached its maximum
  bool in_list = false;

  // The remote bitmaps (bit i of slab s: block i freed remotely, not yet drained). Only the
  // words of slabs that receive remote frees are ever touched, so committed.
  alignas(kCacheLine) std::atomic<uint64_t> remote_bits[kSlabsPerSuperSlab][kBitmapWords];

  // Debug builds and HAKMEM_CHECK: one bit per block, set while the program holds the block, in a
  // table of kLiveBitsBytes mapped beside the SuperSlab (null otherwise). Not in the header: with
  // it the header would need a second slab, and a SuperSlab of 30 block slabs instead of 31 made
  // bg-spill at 8 threads map a seventh SuperSlab and peak 1.8 MB higher (16.0 -> 17.8 MB).
  std::atomic<uint64_t> (*live_bits)[kBitmapWords] = nullptr;

  static SuperSlab* of(const void* p) {
    return reinterpret_cast<SuperSlab*>(align_down(reinterpret_cast<uintptr_t>(p), kChunkSize));
  }
};
static_assert(sizeof(SuperSlab) <= kSlabSize, "the header must fit in slab 0");
static_assert(kSlabSize / kPageSize <= 16, "scavenged-page masks are 16 bits");
static_assert(kClassSizes[kClassCount - 1] <= kPageSize,
              "a block overlaps at most two pages, so one never joins two scavenged runs");
inline constexpr size_t kLiveBitsBytes =
    sizeof(std::atomic<uint64_t>) * kSlabsPerSuperSlab * kBitmapWords;

inline constexpr uint32_t kBlockSlabs = kSlabsPerSuperSlab - kFirstBlockSlab;
inline constexpr uint32_t kAllBlockSlabsMask = ~uint32_t{0} << kFirstBlockSlab;

inline char* Slab::area() const {
  return reinterpret_cast<char*>(SuperSlab::of(this)) + size_t{index} * kSlabSize;
}
inline SuperSlab* Slab::superslab() const {
  return SuperSlab::of(this);
}

// SuperSlabs are cut from a 16 GiB arena (8192 of them; os/arena.h), the rest mapped on
// their own. Hidden: the library's own symbol, so free reads its index rip-relative, not via
// the GOT.
using TinyArena = Arena<34>;
extern TinyArena g_arena [[gnu::visibility("hidden")]];

// Is p inside the arena (a SuperSlab's memory, live, returned or never used)?
HAK_FAST_PATH bool in_arena(const void* p) {
  return g_arena.contains(p);
}

// The slab record of p, a pointer into ss.
HAK_FAST_PATH Slab& slab_in(SuperSlab* ss, const void* p) {
  return ss->slabs[(reinterpret_cast<uintptr_t>(p) >> kSlabShift) & (kSlabsPerSuperSlab - 1)];
}
HAK_FAST_PATH Slab* slab_of(const void* p) {
  return &slab_in(SuperSlab::of(p), p);
}

// Does p lie inside slab's block area? Pure address arithmetic: p may be garbage.
inline bool in_slab(const void* p, const Slab* slab) {
  return align_down(reinterpret_cast<uintptr_t>(p), kSlabSize) ==
         reinterpret_cast<uintptr_t>(slab->area());
}

// Is p the start of a carved-or-carvable block of slab? One multiply and one compare: cheap
// enough for every free. Pure arithmetic on p, which may be garbage.
HAK_FAST_PATH bool starts_block(const Slab& slab, const void* p) {
  uint32_t offset = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p) & (kSlabSize - 1));
  // The low half alone (multiply_offset's .low): a 64-bit imul, where the 128-bit product would
  // be a two-micro-op mulq that also takes rdx.
  return static_cast<uint64_t>(offset * slab.block_multiplier) < slab.block_limit;
}

// The block index of p in its slab, or UINT32_MAX when p does not start a block (starts_block).
HAK_FAST_PATH uint32_t block_index(const Slab& slab, const void* p) {
  uint32_t offset = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p) & (kSlabSize - 1));
  BlockProduct product = multiply_offset(offset, slab.block_multiplier);
  return HAK_LIKELY(product.low < slab.block_limit) ? product.index : UINT32_MAX;
}

HAK_FAST_PATH void*& next_of(void* block) {
  return *static_cast<void**>(block);
}

// A singly linked chain of blocks being built in order (append at the tail).
struct Chain {
  void* head = nullptr;
  void* tail = nullptr;
  uint32_t count = 0;
  void append(void* block) {
    if (tail == nullptr) {
      head = block;
    } else {
      next_of(tail) = block;
    }
    tail = block;
    ++count;
  }
  void append_chain(const Chain& other) {
    if (other.count == 0) return;
    if (tail == nullptr) {
      head = other.head;
    } else {
      next_of(tail) = other.head;
    }
    tail = other.tail;
    count += other.count;
  }
  void terminate() {
    if (tail != nullptr) next_of(tail) = nullptr;
  }
};

}  // namespace hak::tiny
