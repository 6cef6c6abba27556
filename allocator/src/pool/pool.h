// The mid pool: blocks above kTinyMaxSize up to kPoolMaxSize, served from per-thread heaps that
// carve 2 MiB arena chunks.
//
// Glossary
//  - class: one of kClassCount block sizes, four per doubling from 1280 B to 256 KiB, eight from
//    there to 1 MiB (all multiples of 256), so a request never wastes 25% or more of its block.
//  - chunk: 2 MiB, 2 MiB-aligned, registered in the chunk map as (kPool, Chunk*). Its first page
//    is the Chunk header; the other pages are handed out in runs. Pages below next_page have been
//    carved at least once; the rest is the bump area, never touched.
//  - arena: the reservation chunks are cut from (PoolArena, os/arena.h), so that free finds a
//    chunk by one range test instead of a chunk-map look-up. A slot of it that holds no live
//    chunk (never used, given back, or in the chunk cache) has a null Chunk::heap, and a free
//    there is refused like a free of a pointer hakmem never returned. A chunk that does not fit
//    the arena (reservation refused, or full) is mapped on its own and found through the map.
//  - run: consecutive pages of one chunk given to one class at once (a refill): about 64 KiB, at
//    least one block. page_class[] names the class of every page of a run, so free finds a
//    block's class by arithmetic. The bump run of a class is the run it is carving blocks from.
//  - free pages: pages of recycled runs, in Chunk::free_pages (a bitmap) with kNoClass as
//    page_class. A refill of any class takes a span of them (the current chunk first, then the
//    others; the first span holding a whole run, else the longest holding a block) before it
//    touches a bump area or maps a chunk. Resident free pages (Chunk::resident_pages) are those
//    not decommitted since their run was recycled.
//  - recycling: a sweep that finds every block of a run in the free lists (and the run is not a
//    bump run still carving) unlinks those blocks and turns the run's pages into free pages.
//  - heap: the per-thread pool state: one free list and one bump run per class, the list of the
//    chunks it owns, and an MPSC remote queue. A thread owns at most one heap; a heap outlives its
//    thread (it is abandoned at thread exit and adopted by a later thread), so Chunk::heap, the
//    chunk's owner, never changes while the chunk is live and never dangles.
//  - remote free: a free by a thread that is not the owner of the block's chunk: one CAS push onto
//    the owner heap's remote queue; the owner takes the whole queue with one exchange when a free
//    list runs dry (no ABA: the consumer never pops single nodes).
//  - sweep: the owner counts the free blocks of each chunk and each run; a chunk whose every
//    carved block is free is taken out of the free lists and returned (global chunk cache, then
//    the OS); runs whose every block is free are recycled; free blocks of 16 KiB and more
//    elsewhere get their inner pages decommitted. A periodic sweep (maybe_sweep: a refill finds
//    no free span and no room in the current chunk, and the heap's free memory, free-list blocks
//    plus free pages, has doubled since the last sweep) first decommits the free pages still
//    resident from the previous sweep (no refill wanted them since) and keeps the pages it
//    recycles resident; the final sweeps (thread exit, collect(), abandoned heaps with queued
//    frees before a chunk is mapped from the OS) decommit every free page.
//  - abandoned heap: the heap of an exited thread, on a stack under the pool lock until a new
//    thread adopts it (its free lists, runs and chunks included) or a sweep reclaims its chunks.
//
// Invariants
//  - Every page of a chunk but the header is in exactly one of: a run, the free pages, the bump
//    area. Every block of a run is in exactly one of: handed out, its heap's free list for its
//    class, its heap's remote queue, or the uncarved tail of a bump run. Chunk::carved counts the
//    blocks that left a bump run, less those of recycled runs; a chunk is empty iff carved == its
//    blocks in free lists. Chunk::free_page_count is the popcount of free_pages, Heap::free_pages
//    the sum over its chunks, and resident_pages is a subset of free_pages.
//  - Blocks in a run are at run_start + i * class_size, run_start page-aligned: a block is aligned
//    to min(4096, lowest set bit of its class size) >= 256. A free page has page_class kNoClass,
//    so a free into it is refused in every mode (validate_block).
//  - Only the owner thread touches a heap's free lists, runs, chunk list and free pages (for an
//    abandoned heap: the one thread that took it off the stack); other threads touch only the
//    remote queue (and read Chunk::heap / page_class / run_start of a block they free: written
//    before the block was handed out, rewritten only once its run is all free, which the owner
//    learns through the remote queue's acquire, after the freeing thread's last read).
//    Debug builds check in every sweep that no chunk has more free blocks than it carved and that
//    the free-page counts agree with the bitmaps.
#pragma once

#include <atomic>

#include "common/chunk_map.h"
#include "hakmem.h"
#include "os/arena.h"

namespace hak::pool {

inline constexpr size_t kClassCount = 48;
inline constexpr size_t kMinSize = kTinyMaxSize + 1;
inline constexpr unsigned kPageShift = 12;
inline constexpr size_t kPagesPerChunk = kChunkSize >> kPageShift;
inline constexpr uint8_t kNoClass = 0xff;  // page_class of a page outside every run

// Class c covers (size(c-1), size(c)]. Below kEighthStepsFrom (up to 256 KiB), four steps per
// doubling: size(c) = 2^d + (step + 1) * 2^(d-2), c = 4 (d - 10) + step. From it to 1 MiB, eight:
// a block that size is one run of its own, often made of recycled (resident) pages, so its
// rounding is resident waste.
inline constexpr unsigned kEighthStepsFrom = 32;  // the first class above 256 KiB
constexpr size_t class_size(unsigned c) {
  if (c >= kEighthStepsFrom) {
    unsigned step = c - kEighthStepsFrom;
    unsigned d = 18 + step / 8;
    return (size_t{1} << d) + (step % 8 + 1) * (size_t{1} << (d - 3));
  }
  unsigned d = 10 + c / 4;
  return (size_t{1} << d) + (c % 4 + 1) * (size_t{1} << (d - 2));
}
static_assert(class_size(0) == 1280 && class_size(kEighthStepsFrom - 1) == 256 * 1024 &&
              class_size(kClassCount - 1) == kPoolMaxSize);
static_assert(kTinyMaxSize == 1024, "class_of assumes the pool starts above 1 KiB");

// Every class size is a multiple of 256, so (size - 1) / 256 decides the class: one table load.
struct ClassTable {
  uint8_t by_256[kPoolMaxSize / 256];
};
constexpr ClassTable make_class_table() {
  ClassTable table{};
  unsigned c = 0;
  for (size_t i = kMinSize / 256; i < kPoolMaxSize / 256; ++i) {
    while (class_size(c) < (i + 1) * 256) ++c;  // the largest size of granule i
    table.by_256[i] = static_cast<uint8_t>(c);
  }
  return table;
}
inline constexpr ClassTable kClassTable = make_class_table();

// class_size(c) as one load, for the paths that hold a class read from a page at run time.
struct ClassSizes {
  uint32_t bytes[kClassCount];
  constexpr ClassSizes() : bytes() {
    for (unsigned c = 0; c < kClassCount; ++c) bytes[c] = static_cast<uint32_t>(class_size(c));
  }
  constexpr uint32_t operator[](unsigned c) const { return bytes[c]; }
};
inline constexpr ClassSizes kClassSizes;

// size in [kMinSize, kPoolMaxSize].
HAK_FAST_PATH unsigned class_of(size_t size) {
  return kClassTable.by_256[(size - 1) >> 8];
}

// A free block's first two words. `freed` is kFreedCookie while the block is free in checked mode
// (HAKMEM_CHECK=1 or debug builds) and cleared whenever a block is handed out, so a second free
// of the same block is caught; every block is at least 1280 bytes, so both words are there.
struct Block {
  Block* next;
  uint64_t freed;
};
inline constexpr uint64_t kFreedCookie = 0xf7ee'd0d0'f7ee'd0d0ULL;
// Set in `freed` (in any mode) by a sweep that decommitted the block's inner pages.
inline constexpr uint64_t kDecommittedBit = 1;

struct Heap;

inline constexpr size_t kPageWords = kPagesPerChunk / 64;  // words of a per-chunk page bitmap

struct Chunk {
  // Read by every thread that frees into this chunk; written by the owner while the pages they
  // describe hold no live block (a run is carved or recycled), so a valid free reads settled
  // values.
  Heap* heap;
  uint64_t magic;
  uint8_t page_class[kPagesPerChunk];  // class of the run containing the page, or kNoClass
  uint16_t run_start[kPagesPerChunk];  // first page of that run (validates block offsets)
  // Owner-only bookkeeping, on its own cache line.
  alignas(kCacheLine) Chunk* prev;
  Chunk* next;
  uint32_t next_page;        // first never-carved page
  uint32_t carved;           // blocks carved from the chunk's runs that were not recycled since
  uint32_t scratch;          // sweep: free blocks counted in this chunk
  uint32_t free_page_count;  // bits set in free_pages
  uint64_t free_pages[kPageWords];      // pages of recycled runs, free for a run of any class
  uint64_t resident_pages[kPageWords];  // free pages not decommitted since their run was recycled
  uint16_t run_free[kPagesPerChunk];    // sweep: free blocks counted per run, at its first page
};
inline constexpr uint64_t kChunkMagic = 0x68616b6d656d706cULL;  // "hakmempl"
static_assert(sizeof(Chunk) <= (size_t{1} << kPageShift), "the chunk header must fit page 0");

struct FreeList {
  Block* head = nullptr;
  uint32_t count = 0;  // owner-only: other threads' stats read Heap::published_free_bytes
};

struct BumpRun {
  char* cursor = nullptr;
  char* end = nullptr;
};

enum class HeapState : uint8_t { kSentinel, kActive, kAbandoned, kOrphaned };

struct alignas(kCacheLine) Heap {
  FreeList lists[kClassCount];
  BumpRun runs[kClassCount];
  Chunk* chunks = nullptr;   // every chunk this heap owns (doubly linked through the headers)
  Chunk* current = nullptr;  // the chunk whose bump area new runs are carved from
  size_t free_pages = 0;     // free (recycled) pages over all its chunks
  size_t next_sweep_bytes = 0;
  Heap* next_all = nullptr;        // registry of every heap ever created (never freed)
  Heap* next_abandoned = nullptr;  // abandoned-heap stack, under the pool lock
  HeapState state = HeapState::kSentinel;
  // Statistics, owner-written, read by hak_stats: relaxed load/store only.
  std::atomic<uint64_t> refills{0};
  std::atomic<uint64_t> remote_drained{0};
  std::atomic<uint64_t> carved_bytes{0};
  // The bytes of the free lists as of the owner's last refill, sweep or remote drain, for other
  // threads' stats (the fast paths keep only the lists' plain counts).
  std::atomic<uint64_t> published_free_bytes{0};
  // The remote queue, on its own line: producers CAS here, the owner exchanges.
  alignas(kCacheLine) std::atomic<Block*> remote{nullptr};
};

namespace detail {
// The calling thread's heap: a sentinel with empty lists until its first pool allocation, so the
// fast path needs no "initialised?" test; a second sentinel after the thread's clean-up ran.
extern constinit thread_local Heap* t_heap;
// noexcept: the fast paths tail-call them from noexcept callers (malloc, free).
void* alloc_slow(Heap* heap, unsigned c) noexcept;
void free_slow(void* p, Chunk* chunk, uint8_t c) noexcept;
// HAKMEM_CHECK or a debug build: validate every free. Hidden: read rip-relative by free.
extern bool g_checked [[gnu::visibility("hidden")]];
}  // namespace detail

// size in [kMinSize, kPoolMaxSize]; nullptr with errno = ENOMEM when memory runs out.
HAK_FAST_PATH void* alloc(size_t size) {
  unsigned c = class_of(size);
  Heap* heap = detail::t_heap;
  FreeList& list = heap->lists[c];
  Block* block = list.head;
  if (HAK_UNLIKELY(block == nullptr)) return detail::alloc_slow(heap, c);
  list.head = block->next;
  --list.count;
  block->freed = 0;
  return block;
}

HAK_FAST_PATH Chunk* chunk_of(const void* p) {
  return reinterpret_cast<Chunk*>(align_down(reinterpret_cast<uintptr_t>(p), kChunkSize));
}
HAK_FAST_PATH size_t page_of(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & (kChunkSize - 1)) >> kPageShift;
}

// 16 GiB: 8192 chunks (a reservation of 32 GiB or more fails under valgrind, which would then
// measure the chunk-map path instead). Hidden: the library's own symbol, so free reads its index
// rip-relative.
using PoolArena = Arena<34>;
extern PoolArena g_arena [[gnu::visibility("hidden")]];

// Is p inside the arena (a chunk's memory, live or not)? Then chunk_of(p) is safe to read.
HAK_FAST_PATH bool in_arena(const void* p) {
  return g_arena.contains(p);
}

// chunk: chunk_of(p) for a p in_arena(), else the owner of p's chunk-map entry of kind kPool.
// Local frees push; everything else (remote, invalid, checked mode) goes to the slow path.
HAK_FAST_PATH void free(void* p, Chunk* chunk) {
  uint8_t c = chunk->page_class[page_of(p)];
  Heap* heap = detail::t_heap;
  if (HAK_UNLIKELY(chunk->heap != heap || c >= kClassCount || detail::g_checked)) {
    return detail::free_slow(p, chunk, c);
  }
  FreeList& list = heap->lists[c];
  auto* block = static_cast<Block*>(p);
  block->next = list.head;
  list.head = block;
  ++list.count;
}

// The block size of p (a block of a pool chunk); fatal for a pointer that is not a block start.
size_t usable_size(const void* p, chunk_map::Entry entry);

// The block size of p as free's fast path trusts it: the class of p's page, unvalidated; 0 where
// free would take its slow path (no class, or checked mode, where usable_size validates).
HAK_FAST_PATH size_t trusted_size(const void* p, chunk_map::Entry entry) {
  uint8_t c = entry.owner<Chunk>()->page_class[page_of(p)];
  return HAK_LIKELY(c < kClassCount && !detail::g_checked) ? kClassSizes[c] : 0;
}

// A block of at least size bytes aligned to alignment (<= 4096), or nullptr when no class fits
// (the caller then uses a large span) or memory runs out (errno = ENOMEM).
void* alloc_aligned(size_t alignment, size_t size);

// The calling thread's heap and every abandoned heap: drain their remote queues and return their
// empty chunks; then return the global chunk cache to the OS.
void collect();

// pthread_atfork handlers (the api layer registers them).
void prefork();
void postfork_parent();
void postfork_child();

void fill_stats(hak_stats_t* out);

}  // namespace hak::pool
