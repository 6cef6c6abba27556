// Large blocks (above kPoolMaxSize, any request with an alignment the other parts cannot give,
// and blocks realloc grows past 256 KiB): each is its own span of pages from the OS, with a
// header in front of the block.
//
// Glossary: a span is [base, base + reserved): whole 2 MiB granules, base aligned to max(2 MiB,
// the alignment asked) (so the chunk map names it by granule); the header sits at base, the block
// at base + offset, its pages end at base + end. A span below 8 MiB is cut from a fresh 8 MiB
// mapping whose rest is cached. The span cache (64 slots) keeps freed spans as they are (still
// mapped and registered, block == nullptr): neighbours are not merged on free. A request takes the
// cached span whose resident pages it reuses best, merged with as many cached spans after it as it
// needs when it is too small alone, and splits off the rest at a granule boundary; a span of the
// block's size in granules is taken as it is, so a steady same-size loop costs no merge, split or
// syscall. When no cached span or run of neighbours holds the block, it gets fresh address space
// and the resident pages of up to 8 cached spans (most resident first) are moved under it with
// mremap, so only the rest faults in; their old address ranges go back to the OS. A full slot
// table, or a cache past its byte limit, merges every run of cached neighbours before it evicts.
// Resident pages more than 64 KiB past a recycled block's end are decommitted. Spans above half
// of HAKMEM_LARGE_CACHE_MB are never cached. A cached span whose pages no request took for
// HAKMEM_RELEASE_DELAY_MS is decommitted at the next cache operation (their pages return to the
// OS, the address range stays); beyond HAKMEM_LARGE_COMMIT_MB of resident cached bytes the oldest
// are decommitted at once, beyond HAKMEM_LARGE_CACHE_MB of cached address space they are unmapped.
//
// Invariants: header->block == the pointer handed out while the span is live, nullptr while it is
// cached (how free validates a pointer and catches a double free); usable size == end - offset;
// every granule of the span maps to (kLarge, header); pages at or past base + dirty read as zero
// (a merged span's dirty end covers the stale headers of the spans it absorbed); cached bytes <=
// the cache limit and resident cached bytes <= the commit limit after every cache operation;
// entries of spans are cleared only under the cache lock (merges read neighbours' headers through
// the chunk map under it).
#pragma once

#include "common/chunk_map.h"

#include "hakmem.h"

namespace hak::large {

// Any size >= 1 and alignment a power of two; nullptr with errno = ENOMEM on failure. With zero,
// the block reads as zeros (only recycled dirty memory is cleared: fresh pages already are).
// noexcept: malloc tail-calls it.
void* alloc(size_t size, size_t alignment, bool zero = false) noexcept;
// p must be the block of the span that entry names; anything else is refused with a message.
void free(void* p, chunk_map::Entry entry);
size_t usable_size(const void* p, chunk_map::Entry entry);
// Resizes in place: grows with mremap where the pages after the span are free, shrinks by
// unmapping the tail. False when it cannot (the block is unchanged).
bool resize_in_place(void* p, chunk_map::Entry entry, size_t new_size);
// Grows a block by moving its pages (mremap) to a new, larger span: realloc without a copy.
// Returns the new block, or nullptr (errno = ENOMEM) leaving p unchanged.
void* grow_by_moving(void* p, chunk_map::Entry entry, size_t new_size);
// Returns every cached span to the OS.
void collect();
// pthread_atfork handlers around the cache lock.
void prefork();
void postfork_parent();
void postfork_child();
void fill_stats(hak_stats_t* out);

}  // namespace hak::large
