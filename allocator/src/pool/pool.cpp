// The mid pool's slow paths (see pool.h): heap attach/abandon/adopt, remote queue push and drain,
// run carving (free pages first), chunk acquisition and release, sweeping and run recycling, fork
// handling and statistics.
#include "pool/pool.h"

#include <pthread.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "common/log.h"
#include "common/options.h"
#include "common/spin_lock.h"
#include "large/large.h"
#include "os/os.h"

namespace hak::pool {

PoolArena g_arena;

namespace {
constinit Heap g_empty_heap;  // t_heap of a thread that has not used the pool yet
constinit Heap g_dead_heap;   // t_heap of a thread whose heap was abandoned at exit
}  // namespace

namespace detail {
constinit thread_local Heap* t_heap = &g_empty_heap;
bool g_checked = kDebugChecks;
}  // namespace detail

namespace {

using detail::t_heap;

// Bytes of one refill: a run holds about this much (at least one block), rounded up to pages.
constexpr size_t kRunTargetBytes = 64 * 1024;
// Empty chunks kept mapped for the next heap that needs one; the rest go back to the OS.
constexpr size_t kChunkCacheMax = 4;
constexpr size_t kHeapSlabBytes = 64 * 1024;
// Abandoned heaps with queued frees swept per chunk acquisition, at most.
constexpr size_t kAbandonedSweepLimit = 4;
// Free blocks of this class (16 KiB) and above have their inner pages decommitted by sweeps.
constexpr unsigned kDecommitMinClass = 3 * 4 + 3;
static_assert(class_size(kDecommitMinClass) == 16 * 1024);

// Chunk::run_free marks set by a sweep after counting: a run whose blocks are all free, to be
// recycled, and a bump run still carving, left alone. Neither is a count (at most 51 blocks a run).
constexpr uint16_t kRunRecycled = UINT16_MAX;
constexpr uint16_t kRunCarving = UINT16_MAX - 1;
static_assert(kRunTargetBytes / class_size(0) < kRunCarving);
// Chunk::scratch of a chunk whose carved blocks are all free: the sweep returns it.
constexpr uint32_t kChunkEmpty = UINT32_MAX;

enum class SweepKind : uint8_t {
  // maybe_sweep: pages of runs recycled now stay resident for the refills that follow; those a
  // later sweep still finds free (no refill wanted them meanwhile) are decommitted then.
  kPeriodic,
  // Thread exit, collect, abandoned heaps: no refill is coming soon, every free page is
  // decommitted.
  kFinal,
};

// g_lock guards the heap registry, the abandoned stack, the chunk cache and key creation. Only
// slow paths take it (thread start/exit, chunk acquire/release, stats, fork).
SpinLock g_lock;
Heap* g_all_heaps = nullptr;
Heap* g_abandoned = nullptr;
char* g_heap_slab_cursor = nullptr;
char* g_heap_slab_end = nullptr;
Chunk* g_chunk_cache = nullptr;
size_t g_chunk_cache_count = 0;
pthread_key_t g_key;
bool g_key_created = false;

std::atomic<uint64_t> g_chunks_live{0};  // statistics only: relaxed

char* chunk_base(Chunk* chunk) {
  return reinterpret_cast<char*>(chunk);
}

void set_pages(uint64_t* map, size_t start, size_t count, bool value) {
  for (size_t page = start; page < start + count; ++page) {
    uint64_t bit = uint64_t{1} << (page % 64);
    map[page / 64] = value ? map[page / 64] | bit : map[page / 64] & ~bit;
  }
}

// The first page at or after `from` whose bit in map is `value`, or kPagesPerChunk.
size_t next_page_with(const uint64_t* map, size_t from, bool value) {
  for (size_t w = from / 64; w < kPageWords; ++w) {
    uint64_t word = value ? map[w] : ~map[w];
    if (w == from / 64) word &= ~uint64_t{0} << (from % 64);
    if (word != 0) return w * 64 + static_cast<size_t>(__builtin_ctzll(word));
  }
  return kPagesPerChunk;
}

// Pages a run of class c wants (about kRunTargetBytes) and needs (one block).
size_t run_pages(unsigned c) {
  size_t size = class_size(c);
  size_t blocks = size >= kRunTargetBytes ? 1 : kRunTargetBytes / size;
  return align_up(blocks * size, size_t{1} << kPageShift) >> kPageShift;
}
size_t block_pages(unsigned c) {
  return align_up(class_size(c), size_t{1} << kPageShift) >> kPageShift;
}

void push_local(Heap* heap, unsigned c, Block* block) {
  FreeList& list = heap->lists[c];
  block->next = list.head;
  list.head = block;
  ++list.count;
}

Block* pop_local(Heap* heap, unsigned c) {
  FreeList& list = heap->lists[c];
  Block* block = list.head;
  if (block == nullptr) return nullptr;
  list.head = block->next;
  --list.count;
  block->freed = 0;
  return block;
}

void add_relaxed(std::atomic<uint64_t>& counter, int64_t delta) {
  // Owner-only counters: a load and a store, no locked RMW.
  counter.store(counter.load(std::memory_order_relaxed) + static_cast<uint64_t>(delta),
                std::memory_order_relaxed);
}

size_t free_bytes(const Heap* heap) {
  size_t total = 0;
  for (unsigned c = 0; c < kClassCount; ++c) {
    total += heap->lists[c].count * class_size(c);
  }
  return total;
}

void publish_free_bytes(Heap* heap) {
  heap->published_free_bytes.store(free_bytes(heap), std::memory_order_relaxed);
}

// Moves every block of the remote queue to the owner's free lists. Owner only.
void drain_remote(Heap* heap) {
  // Acquire pairs with the producers' release CAS: their writes of block->next are visible.
  Block* block = heap->remote.exchange(nullptr, std::memory_order_acquire);
  uint64_t drained = 0;
  while (block != nullptr) {
    Block* next = block->next;
    Chunk* chunk = chunk_of(block);
    push_local(heap, chunk->page_class[page_of(block)], block);
    block = next;
    ++drained;
  }
  if (drained == 0) return;
  add_relaxed(heap->remote_drained, static_cast<int64_t>(drained));
  publish_free_bytes(heap);
}

// Gives a chunk's memory back to the OS (an arena slot keeps its addresses, readable as zeros, for
// a later chunk). Outside g_lock.
void unmap_chunk_memory(Chunk* chunk) {
  if (!g_arena.unmap_chunk(chunk)) return;
  SpinLockGuard guard(g_lock);
  g_arena.give_back_slot(chunk);
}

void release_chunk(Chunk* chunk) {
  chunk_map::unregister_range(chunk, kChunkSize);
  chunk->heap = nullptr;
  g_chunks_live.fetch_sub(1, std::memory_order_relaxed);
  {
    SpinLockGuard guard(g_lock);
    if (g_chunk_cache_count < kChunkCacheMax) {
      chunk->next = g_chunk_cache;
      g_chunk_cache = chunk;
      ++g_chunk_cache_count;
      return;
    }
  }
  if (options().verbose) log_message("pool: returning chunk %p to the OS", chunk);
  unmap_chunk_memory(chunk);
}

// Decommits every resident free page of the heap's chunks, one call per contiguous span.
void decommit_free_pages(Heap* heap) {
  if (heap->free_pages == 0) return;
  for (Chunk* chunk = heap->chunks; chunk != nullptr; chunk = chunk->next) {
    uint64_t* resident = chunk->resident_pages;
    for (size_t page = next_page_with(resident, 0, true); page < kPagesPerChunk;) {
      size_t end = next_page_with(resident, page, false);
      os::decommit(chunk_base(chunk) + (page << kPageShift), (end - page) << kPageShift);
      page = next_page_with(resident, end, true);
    }
    std::memset(resident, 0, sizeof chunk->resident_pages);
  }
}

// Turns every run of the chunk that the sweep found with all its blocks free (run_free[first
// page] == its blocks) into free resident pages, and marks it kRunRecycled so that its blocks
// leave the free lists next. True if it recycled any.
bool recycle_free_runs(Heap* heap, Chunk* chunk) {
  bool any = false;
  for (uint32_t page = 1; page < chunk->next_page;) {
    uint8_t c = chunk->page_class[page];
    if (c == kNoClass) {
      ++page;
      continue;
    }
    // A free page may keep a stale run_start: its page_class tells it apart.
    uint32_t end = page + 1;
    while (end < chunk->next_page && chunk->run_start[end] == page && chunk->page_class[end] == c) {
      ++end;
    }
    size_t pages = end - page;
    auto blocks = static_cast<uint32_t>((pages << kPageShift) / class_size(c));
    if (chunk->run_free[page] == blocks) {
      std::memset(chunk->page_class + page, kNoClass, pages);
      set_pages(chunk->free_pages, page, pages, true);
      set_pages(chunk->resident_pages, page, pages, true);
      chunk->free_page_count += static_cast<uint32_t>(pages);
      heap->free_pages += pages;
      chunk->carved -= blocks;
      chunk->run_free[page] = kRunRecycled;
      any = true;
    }
    page = end;
  }
  return any;
}

// The pages of a block the sweep decommitted (all but the one holding its links) are not
// resident: its run was recycled, so they are free pages now.
void note_decommitted_block(Chunk* chunk, const Block* b, size_t size) {
  uintptr_t start = align_up(reinterpret_cast<uintptr_t>(b) + sizeof(Block), kPageSize);
  uintptr_t end = align_down(reinterpret_cast<uintptr_t>(b) + size, kPageSize);
  if (end > start) {
    set_pages(chunk->resident_pages, page_of(reinterpret_cast<void*>(start)),
              (end - start) >> kPageShift, false);
  }
}

// Unlinks from the free lists (keeping the others' order) the blocks of the chunks marked
// kChunkEmpty and of the runs marked kRunRecycled, then returns the empty chunks.
void unlink_swept_blocks(Heap* heap) {
  for (unsigned c = 0; c < kClassCount; ++c) {
    FreeList& list = heap->lists[c];
    Block** link = &list.head;
    uint32_t removed = 0;
    while (*link != nullptr) {
      Block* b = *link;
      Chunk* chunk = chunk_of(b);
      bool recycled = chunk->scratch != kChunkEmpty &&
                      chunk->run_free[chunk->run_start[page_of(b)]] == kRunRecycled;
      if (chunk->scratch == kChunkEmpty || recycled) {
        if (recycled && b->freed == (kFreedCookie | kDecommittedBit)) {
          note_decommitted_block(chunk, b, class_size(c));
        }
        *link = b->next;
        ++removed;
      } else {
        link = &b->next;
      }
    }
    if (removed != 0) {
      list.count -= removed;
      add_relaxed(heap->carved_bytes, -static_cast<int64_t>(removed * class_size(c)));
    }
    // An exhausted run's cursor may point one past its chunk: test it before chunk_of.
    BumpRun& run = heap->runs[c];
    if (run.cursor == run.end || chunk_of(run.cursor)->scratch == kChunkEmpty) run = BumpRun{};
  }
  if (heap->current != nullptr && heap->current->scratch == kChunkEmpty) heap->current = nullptr;
  for (Chunk* chunk = heap->chunks; chunk != nullptr;) {
    Chunk* next = chunk->next;
    if (chunk->scratch == kChunkEmpty) {
      if (chunk->prev != nullptr) chunk->prev->next = chunk->next;
      if (chunk->next != nullptr) chunk->next->prev = chunk->prev;
      if (heap->chunks == chunk) heap->chunks = chunk->next;
      heap->free_pages -= chunk->free_page_count;
      release_chunk(chunk);
    }
    chunk = next;
  }
}

// Gives back the pages inside free blocks of the big classes (all but the page holding the block's
// links), once per time a block is free: a heap whose chunks each keep a few live blocks does not
// keep the rest resident. The block reads as whatever it likes afterwards, as malloc allows.
void decommit_free_blocks(Heap* heap) {
  for (unsigned c = kDecommitMinClass; c < kClassCount; ++c) {
    size_t size = class_size(c);
    for (Block* b = heap->lists[c].head; b != nullptr; b = b->next) {
      if (b->freed == (kFreedCookie | kDecommittedBit)) continue;
      uintptr_t start = align_up(reinterpret_cast<uintptr_t>(b) + sizeof(Block), kPageSize);
      uintptr_t end = align_down(reinterpret_cast<uintptr_t>(b) + size, kPageSize);
      os::decommit(reinterpret_cast<void*>(start), end - start);
      b->freed = kFreedCookie | kDecommittedBit;
    }
  }
}

// Debug builds, after a sweep: the free-page counts agree with the bitmaps, resident pages are
// free, and free pages are in no run and below the bump area.
void check_free_pages(const Heap* heap) {
  if constexpr (!kDebugChecks) return;
  size_t total = 0;
  for (const Chunk* chunk = heap->chunks; chunk != nullptr; chunk = chunk->next) {
    size_t count = 0;
    for (size_t w = 0; w < kPageWords; ++w) {
      count += static_cast<size_t>(__builtin_popcountll(chunk->free_pages[w]));
      HAK_DEBUG_CHECK((chunk->resident_pages[w] & ~chunk->free_pages[w]) == 0,
                      "pool: chunk %p has resident pages that are not free",
                      static_cast<const void*>(chunk));
    }
    HAK_DEBUG_CHECK(count == chunk->free_page_count, "pool: chunk %p counts %u free pages, has %zu",
                    static_cast<const void*>(chunk), chunk->free_page_count, count);
    for (size_t page = next_page_with(chunk->free_pages, 0, true); page < kPagesPerChunk;
         page = next_page_with(chunk->free_pages, page + 1, true)) {
      HAK_DEBUG_CHECK(page > 0 && page < chunk->next_page && chunk->page_class[page] == kNoClass,
                      "pool: free page %zu of chunk %p is in a run", page,
                      static_cast<const void*>(chunk));
    }
    total += count;
  }
  HAK_DEBUG_CHECK(total == heap->free_pages, "pool: heap %p counts %zu free pages, has %zu",
                  static_cast<const void*>(heap), heap->free_pages, total);
}

// Counts the free blocks of every chunk and run; returns the chunks whose carved blocks are all
// free, recycles the runs (but bump runs still carving) whose blocks are all free, and decommits
// free pages (see SweepKind) and the inner pages of the big free blocks left. Owner only.
void sweep(Heap* heap, SweepKind kind) {
  drain_remote(heap);
  // Resident free pages are left from the previous sweep: no refill has wanted them since.
  if (kind == SweepKind::kPeriodic) decommit_free_pages(heap);
  for (Chunk* chunk = heap->chunks; chunk != nullptr; chunk = chunk->next) {
    chunk->scratch = 0;
    std::memset(chunk->run_free, 0, sizeof chunk->run_free);
  }
  for (unsigned c = 0; c < kClassCount; ++c) {
    for (Block* b = heap->lists[c].head; b != nullptr; b = b->next) {
      Chunk* chunk = chunk_of(b);
      ++chunk->scratch;
      ++chunk->run_free[chunk->run_start[page_of(b)]];
    }
  }
  // The run a class is carving stays: that class is using it, and its uncarved tail was never
  // touched (costs no memory).
  for (const BumpRun& run : heap->runs) {
    if (run.cursor == run.end) continue;
    Chunk* chunk = chunk_of(run.cursor);
    chunk->run_free[chunk->run_start[page_of(run.cursor)]] = kRunCarving;
  }
  bool any = false;
  for (Chunk* chunk = heap->chunks; chunk != nullptr; chunk = chunk->next) {
    HAK_DEBUG_CHECK(chunk->scratch <= chunk->carved,
                    "pool: chunk %p has %u free blocks but carved only %u (corrupt free list)",
                    static_cast<void*>(chunk), chunk->scratch, chunk->carved);
    if (chunk->scratch == chunk->carved) {
      chunk->scratch = kChunkEmpty;
      any = true;
    } else if (chunk->scratch != 0 && recycle_free_runs(heap, chunk)) {
      any = true;
    }
  }
  if (any) unlink_swept_blocks(heap);
  if (options().verbose) {
    log_message("pool: swept heap %p: %zu free pages, %zu bytes in free lists", heap,
                heap->free_pages, free_bytes(heap));
  }
  if (kind == SweepKind::kFinal) decommit_free_pages(heap);
  decommit_free_blocks(heap);
  check_free_pages(heap);
  publish_free_bytes(heap);
}

// The heap's free memory: blocks in its free lists and free pages of its chunks.
size_t idle_bytes(const Heap* heap) {
  return free_bytes(heap) + (heap->free_pages << kPageShift);
}

void maybe_sweep(Heap* heap) {
  if (idle_bytes(heap) < heap->next_sweep_bytes || free_bytes(heap) < kChunkSize / 2) return;
  sweep(heap, SweepKind::kPeriodic);
  // Sweep again only once free memory has grown well past what this sweep left behind. Free pages
  // count: a sweep that recycles runs leaves as much free memory as before, only in pages, and
  // sweeping again as soon as the lists refill would decommit those pages before refills use them.
  size_t left = idle_bytes(heap);
  heap->next_sweep_bytes = left * 2 > 2 * kChunkSize ? left * 2 : 2 * kChunkSize;
}

// Abandoned heaps collect remote frees after their thread exited, which may empty their chunks:
// sweep them, taken off the stack meanwhile so that no thread adopts one while it is swept.
// `limit` bounds the work of the chunk-acquisition path: it sweeps at most that many heaps, only
// those with queued frees, and moves them to the bottom of the stack so the next call sees others.
void sweep_abandoned(size_t limit) {
  Heap* abandoned;
  {
    SpinLockGuard guard(g_lock);
    abandoned = g_abandoned;
    g_abandoned = nullptr;
  }
  if (abandoned == nullptr) return;
  Heap* kept = nullptr;  // not swept, original order
  Heap** kept_tail = &kept;
  Heap* swept = nullptr;  // swept, after the others
  Heap** swept_tail = &swept;
  size_t count = 0;
  for (Heap* h = abandoned; h != nullptr;) {
    Heap* next = h->next_abandoned;
    // Relaxed peek: sweep's exchange acquires what it takes.
    bool due = limit == SIZE_MAX || h->remote.load(std::memory_order_relaxed) != nullptr;
    if (due && count < limit) {
      sweep(h, SweepKind::kFinal);
      h->next_sweep_bytes = 0;
      ++count;
      *swept_tail = h;
      swept_tail = &h->next_abandoned;
    } else {
      *kept_tail = h;
      kept_tail = &h->next_abandoned;
    }
    h = next;
  }
  *swept_tail = nullptr;
  *kept_tail = swept;
  SpinLockGuard guard(g_lock);
  // Heaps abandoned meanwhile follow.
  *(swept != nullptr ? swept_tail : kept_tail) = g_abandoned;
  g_abandoned = kept;
}

Chunk* take_cached_chunk() {
  SpinLockGuard guard(g_lock);
  Chunk* chunk = g_chunk_cache;
  if (chunk != nullptr) {
    g_chunk_cache = chunk->next;
    --g_chunk_cache_count;
  }
  return chunk;
}

Chunk* acquire_chunk(Heap* heap) {
  Chunk* chunk = take_cached_chunk();
  if (chunk == nullptr) {
    // Before asking the OS: chunks that exited threads' heaps no longer use.
    sweep_abandoned(kAbandonedSweepLimit);
    chunk = take_cached_chunk();
  }
  if (chunk == nullptr) {
    {
      SpinLockGuard guard(g_lock);
      chunk = static_cast<Chunk*>(g_arena.map_chunk());  // a slot, or a mapping of its own
    }
    if (chunk == nullptr) return nullptr;  // errno = ENOMEM
    if (options().verbose) log_message("pool: mapped chunk %p for heap %p", chunk, heap);
  }
  chunk->heap = heap;
  chunk->magic = kChunkMagic;
  std::memset(chunk->page_class, kNoClass, sizeof chunk->page_class);
  std::memset(chunk->run_start, 0, sizeof chunk->run_start);
  chunk->next_page = 1;  // page 0 is the header
  chunk->carved = 0;
  chunk->scratch = 0;
  chunk->free_page_count = 0;
  std::memset(chunk->free_pages, 0, sizeof chunk->free_pages);
  std::memset(chunk->resident_pages, 0, sizeof chunk->resident_pages);
  // Publishes the header (release inside register_range) before any block can be freed.
  if (!chunk_map::register_range(chunk, kChunkSize, chunk_map::Kind::kPool, chunk)) {
    unmap_chunk_memory(chunk);
    errno = ENOMEM;
    return nullptr;
  }
  chunk->prev = nullptr;
  chunk->next = heap->chunks;
  if (heap->chunks != nullptr) heap->chunks->prev = chunk;
  heap->chunks = chunk;
  g_chunks_live.fetch_add(1, std::memory_order_relaxed);
  return chunk;
}

struct PageSpan {
  Chunk* chunk = nullptr;
  uint32_t start = 0;
  uint32_t count = 0;
};

// In one chunk: the first free span of at least `want` pages (its first `want` pages), else the
// longest one of at least `need` pages, else none.
PageSpan find_free_span(Chunk* chunk, size_t want, size_t need) {
  PageSpan best;
  if (chunk->free_page_count < need) return best;
  const uint64_t* map = chunk->free_pages;
  for (size_t page = next_page_with(map, 0, true); page < kPagesPerChunk;) {
    size_t end = next_page_with(map, page, false);
    size_t length = end - page;
    if (length >= want) return {chunk, static_cast<uint32_t>(page), static_cast<uint32_t>(want)};
    if (length >= need && length > best.count) {
      best = {chunk, static_cast<uint32_t>(page), static_cast<uint32_t>(length)};
    }
    page = next_page_with(map, end, true);
  }
  return best;
}

// Free pages of the heap's chunks for a run: the current chunk first, then the others in list
// order; the first span that holds a whole run, else the longest that holds a block.
PageSpan find_free_pages(Heap* heap, size_t want, size_t need) {
  PageSpan best;
  if (heap->free_pages < need) return best;
  if (heap->current != nullptr) {
    best = find_free_span(heap->current, want, need);
    if (best.count == want) return best;
  }
  for (Chunk* chunk = heap->chunks; chunk != nullptr; chunk = chunk->next) {
    if (chunk == heap->current) continue;
    PageSpan span = find_free_span(chunk, want, need);
    if (span.count == want) return span;
    if (span.count > best.count) best = span;
  }
  return best;
}

void take_free_pages(Heap* heap, const PageSpan& span) {
  set_pages(span.chunk->free_pages, span.start, span.count, false);
  set_pages(span.chunk->resident_pages, span.start, span.count, false);
  span.chunk->free_page_count -= span.count;
  heap->free_pages -= span.count;
}

// Gives class c a fresh bump run: free pages of the heap's chunks if some span holds a block
// (after a sweep, if one is due), else the bump area of the current chunk or a new chunk. False:
// out of memory.
bool refill(Heap* heap, unsigned c) {
  size_t want = run_pages(c);
  size_t need = block_pages(c);
  PageSpan span = find_free_pages(heap, want, need);
  if (span.chunk == nullptr &&
      (heap->current == nullptr || kPagesPerChunk - heap->current->next_page < need)) {
    // Before a chunk is acquired: a sweep may return empty chunks and recycle runs whose blocks
    // are all free. (Not at every refill: steady churn would sweep, recycle and decommit the
    // blocks it is about to reuse.)
    maybe_sweep(heap);
    span = find_free_pages(heap, want, need);
  }
  if (span.chunk != nullptr) {
    take_free_pages(heap, span);
  } else {
    Chunk* chunk = heap->current;
    if (chunk == nullptr || kPagesPerChunk - chunk->next_page < need) {
      chunk = acquire_chunk(heap);
      if (chunk == nullptr) return false;
      heap->current = chunk;
    }
    size_t room = kPagesPerChunk - chunk->next_page;
    span = {chunk, chunk->next_page, static_cast<uint32_t>(want < room ? want : room)};
    chunk->next_page += span.count;
  }
  Chunk* chunk = span.chunk;
  size_t size = class_size(c);
  std::memset(chunk->page_class + span.start, static_cast<int>(c), span.count);
  for (size_t i = 0; i < span.count; ++i) {
    chunk->run_start[span.start + i] = static_cast<uint16_t>(span.start);
  }
  size_t blocks = (size_t{span.count} << kPageShift) / size;
  BumpRun& run = heap->runs[c];
  run.cursor = chunk_base(chunk) + (size_t{span.start} << kPageShift);
  run.end = run.cursor + blocks * size;
  add_relaxed(heap->refills, 1);
  publish_free_bytes(heap);
  return true;
}

void on_thread_exit(void* arg);

// Gives the calling thread a heap: an abandoned one if any (adoption), else a new one.
Heap* attach_heap() {
  Heap* heap = nullptr;
  bool adopted;
  {
    SpinLockGuard guard(g_lock);
    if (!g_key_created) {
      // pthread_key_create does not allocate; its destructor runs at thread exit.
      if (pthread_key_create(&g_key, on_thread_exit) == 0) g_key_created = true;
      if (options().check) detail::g_checked = true;  // starts as kDebugChecks
    }
    adopted = g_abandoned != nullptr;
    if (adopted) {
      heap = g_abandoned;
      g_abandoned = heap->next_abandoned;
      heap->next_abandoned = nullptr;
    } else {
      if (g_heap_slab_end - g_heap_slab_cursor < static_cast<ptrdiff_t>(sizeof(Heap))) {
        auto* slab = static_cast<char*>(os::map(kHeapSlabBytes));
        if (slab == nullptr) return nullptr;  // errno = ENOMEM
        g_heap_slab_cursor = slab;
        g_heap_slab_end = slab + kHeapSlabBytes;
      }
      heap = new (g_heap_slab_cursor) Heap();
      g_heap_slab_cursor += sizeof(Heap);
      heap->next_all = g_all_heaps;
      g_all_heaps = heap;
    }
    heap->state = HeapState::kActive;
  }
  t_heap = heap;
  if (g_key_created) pthread_setspecific(g_key, heap);
  if (options().verbose) {
    log_message("pool: thread attached to heap %p (%s)", heap, adopted ? "adopted" : "new");
  }
  // An adopted heap may have collected remote frees since its thread exited.
  drain_remote(heap);
  maybe_sweep(heap);
  return heap;
}

// The pthread key destructor: the thread's heap returns its empty chunks and is abandoned for a
// later thread to adopt. Frees that come after this (other keys' destructors) go remote.
void on_thread_exit(void* arg) {
  auto* heap = static_cast<Heap*>(arg);
  if (heap == nullptr || heap->state != HeapState::kActive) return;
  sweep(heap, SweepKind::kFinal);
  heap->next_sweep_bytes = 0;
  if (t_heap == heap) t_heap = &g_dead_heap;
  if (options().verbose) log_message("pool: thread exit abandons heap %p", heap);
  SpinLockGuard guard(g_lock);
  heap->state = HeapState::kAbandoned;
  heap->next_abandoned = g_abandoned;
  g_abandoned = heap;
}

void* carve(Heap* heap, unsigned c) {
  BumpRun& run = heap->runs[c];
  if (run.cursor == run.end && !refill(heap, c)) return nullptr;
  auto* block = reinterpret_cast<Block*>(run.cursor);
  run.cursor += class_size(c);
  block->freed = 0;  // a recycled chunk may hold anything
  ++chunk_of(block)->carved;
  add_relaxed(heap->carved_bytes, static_cast<int64_t>(class_size(c)));
  return block;
}

[[noreturn]] void invalid_free(const void* p, const Chunk* chunk) {
  fatal("free(%p): not a block hakmem allocated (pool chunk %p)", p,
        static_cast<const void*>(chunk));
}

// Checks that p is the start of a block of a live run.
void validate_block(const void* p, const Chunk* chunk, uint8_t c) {
  if (c >= kClassCount || chunk->magic != kChunkMagic || chunk->heap == nullptr) {
    invalid_free(p, chunk);
  }
  // Offsets within a chunk fit 32 bits, and a 32-bit division is the cheaper one.
  auto in_chunk = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p) & (kChunkSize - 1));
  uint32_t in_run = in_chunk - (uint32_t{chunk->run_start[page_of(p)]} << kPageShift);
  if (in_run % kClassSizes[c] != 0) invalid_free(p, chunk);
}

}  // namespace

void* detail::alloc_slow(Heap* heap, unsigned c) noexcept {
  if (heap->state == HeapState::kSentinel) {
    // After this thread's clean-up: serve the request from a large span, which needs no heap.
    if (heap == &g_dead_heap) return large::alloc(class_size(c), 16);
    heap = attach_heap();
    if (heap == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    if (Block* block = pop_local(heap, c)) return block;
  }
  // Relaxed peek: the exchange in drain_remote does the acquiring.
  if (heap->remote.load(std::memory_order_relaxed) != nullptr) {
    drain_remote(heap);
    if (Block* block = pop_local(heap, c)) return block;
  }
  return carve(heap, c);
}

void detail::free_slow(void* p, Chunk* chunk, uint8_t c) noexcept {
  auto* block = static_cast<Block*>(p);
  // An arena slot with no live chunk in it.
  if (chunk->heap == nullptr) return refuse_foreign_free(p);
  if (c >= kClassCount || g_checked) {
    validate_block(p, chunk, c);
    if (g_checked) {
      if ((block->freed & ~kDecommittedBit) == kFreedCookie) {
        fatal("free(%p): double free of a %zu-byte pool block", p, class_size(c));
      }
      block->freed = kFreedCookie;
    }
  }
  Heap* owner = chunk->heap;
  if (owner == t_heap) return push_local(owner, c, block);
  // Remote free. Release publishes block->next (and the program's writes to the block) to the
  // owner's acquiring exchange; relaxed on failure, we only retry.
  Block* head = owner->remote.load(std::memory_order_relaxed);
  do {
    block->next = head;
  } while (!owner->remote.compare_exchange_weak(head, block, std::memory_order_release,
                                                std::memory_order_relaxed));
}

size_t usable_size(const void* p, chunk_map::Entry entry) {
  auto* chunk = entry.owner<Chunk>();
  uint8_t c = chunk->page_class[page_of(p)];
  validate_block(p, chunk, c);
  return kClassSizes[c];
}

void* alloc_aligned(size_t alignment, size_t size) {
  if (alignment > (size_t{1} << kPageShift) || size > kPoolMaxSize) return nullptr;
  unsigned c = class_of(size < kMinSize ? kMinSize : size);
  // Blocks of class c are aligned to the lowest set bit of its size (runs are page-aligned).
  while (c < kClassCount && (class_size(c) & (alignment - 1)) != 0) ++c;
  Heap* heap = t_heap;
  // After this thread's clean-up the pool has no heap to give; large spans honour alignment.
  if (c == kClassCount || heap == &g_dead_heap) return nullptr;
  if (Block* block = pop_local(heap, c)) return block;
  void* p = detail::alloc_slow(heap, c);
  if (p == nullptr) errno = ENOMEM;
  return p;
}

void collect() {
  Heap* heap = t_heap;
  if (heap->state == HeapState::kActive) {
    sweep(heap, SweepKind::kFinal);
    heap->next_sweep_bytes = 0;
  }
  sweep_abandoned(SIZE_MAX);
  Chunk* cached;
  {
    SpinLockGuard guard(g_lock);
    cached = g_chunk_cache;
    g_chunk_cache = nullptr;
    g_chunk_cache_count = 0;
  }
  while (cached != nullptr) {
    Chunk* next = cached->next;
    unmap_chunk_memory(cached);
    cached = next;
  }
}

void prefork() {
  g_lock.lock();
}

void postfork_parent() {
  g_lock.unlock();
}

void postfork_child() {
  g_lock.reset();
  // The other threads are gone mid-operation: their heaps may be inconsistent, so they are never
  // adopted (their memory stays mapped; frees into it are queued and never reused).
  for (Heap* heap = g_all_heaps; heap != nullptr; heap = heap->next_all) {
    if (heap->state == HeapState::kActive && heap != t_heap) heap->state = HeapState::kOrphaned;
  }
}

void fill_stats(hak_stats_t* out) {
  out->pool_chunks_live = g_chunks_live.load(std::memory_order_relaxed);
  SpinLockGuard guard(g_lock);
  for (Heap* heap = g_all_heaps; heap != nullptr; heap = heap->next_all) {
    out->pool_refills += heap->refills.load(std::memory_order_relaxed);
    out->pool_remote_frees += heap->remote_drained.load(std::memory_order_relaxed);
    uint64_t carved = heap->carved_bytes.load(std::memory_order_relaxed);
    uint64_t idle = heap == t_heap ? free_bytes(heap)
                                   : heap->published_free_bytes.load(std::memory_order_relaxed);
    out->bytes_in_use += carved > idle ? carved - idle : 0;
  }
}

}  // namespace hak::pool
