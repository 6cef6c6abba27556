// The OS behind one small interface: every byte hakmem maps goes through here, so the counters
// are exact and tests can make mappings fail (HAKMEM_OS_FAIL_AFTER or inject_map_failures).
//
// Contract:
//  - map(size, alignment): size a multiple of kPageSize, alignment a power of two >= kPageSize.
//    Returns zero-filled memory aligned as asked, or nullptr with errno = ENOMEM.
//  - unmap(p, size): p and size exactly as a previous map (or a page-aligned part of it).
//  - decommit(p, size): the pages go back to the OS; the range stays mapped and reads as zero.
//  - decommit_ranges(ranges, count): decommit() of each range, in one system call where the
//    kernel takes a vector of them (process_madvise on the calling process), which also flushes
//    the other cores' TLBs once for all; else one madvise a range.
//  - remap(p, old_size, new_size): grows or shrinks a mapping in place; false if it cannot.
//  - move_pages(p, size, dst): relocates a mapping's pages over part of another mapping.
//  - reserve(size, alignment): address space only (readable zeros, not writable, no memory
//    charged, not counted as mapped), for commit() to hand out piece by piece; nullptr when the
//    OS refuses.
//  - commit(p, size): a page-aligned part of a reservation becomes readable, writable and
//    zero-filled; counted like a map() (call and bytes). False (errno = ENOMEM) on failure.
//  - uncommit(p, size): the pages of committed memory go back to the OS; the range stays readable
//    (as zeros) and reserved, and is counted like an unmap(). commit() may hand it out again.
#pragma once

#include <sys/uio.h>

#include "common/base.h"

#include "hakmem.h"

namespace hak::os {

// ThreadSanitizer does not intercept mremap: after pages move or a mapping grows, its shadow of
// those ranges still describes their previous owners and it reports races on memory that changed
// hands correctly. Under TSan the remap functions report failure and callers copy instead.
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kCanRemap = false;
#else
inline constexpr bool kCanRemap = true;
#endif

void* map(size_t size, size_t alignment = kPageSize);
void unmap(void* p, size_t size);
void decommit(void* p, size_t size);
void decommit_ranges(const iovec* ranges, size_t count);
bool remap_in_place(void* p, size_t old_size, size_t new_size);
void* reserve(size_t size, size_t alignment);
bool commit(void* p, size_t size);
void uncommit(void* p, size_t size);
// Moves the pages of [p, p + size) to [dst, dst + size), which must lie inside a mapping from
// map(); the old range is unmapped. No copy: page tables move. False (nothing changed) on failure.
bool move_pages(void* p, size_t size, void* dst);

// A coarse monotonic clock (a few ms of resolution, no syscall) for the release delays.
uint64_t now_ms();

// Testing: let `successes` more mappings succeed, then fail every later one until called again
// with UINT64_MAX (never fail).
void inject_map_failures(uint64_t successes);

// Adds the OS counters (bytes mapped and peak, calls) to a stats snapshot.
void fill_stats(hak_stats_t* out);

}  // namespace hak::os
