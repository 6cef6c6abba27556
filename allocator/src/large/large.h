// Large blocks (above kPoolMaxSize, or any request with an alignment the other parts cannot
// give): each is its own span of pages from the OS, with a header in front of the block.
//
// Glossary: a span is [base, base + mapped) with base 2 MiB-aligned (so the chunk map can name
// its first granule); the header sits at base, the block at base + offset.
// Invariants: header->block == the pointer handed out (how free validates a pointer);
// usable size == mapped - offset; every granule of the span maps to (kLarge, header).
#pragma once

#include "common/chunk_map.h"

#include "hakmem.h"

namespace hak::large {

// Any size >= 1 and alignment a power of two; nullptr with errno = ENOMEM on failure.
void* alloc(size_t size, size_t alignment);
// p must be the block of the span that entry names; anything else is refused with a message.
void free(void* p, chunk_map::Entry entry);
size_t usable_size(const void* p, chunk_map::Entry entry);
// Resizes in place when the span can be grown or shrunk where it is; false otherwise.
bool resize_in_place(void* p, chunk_map::Entry entry, size_t new_size);
void collect();
void fill_stats(hak_stats_t* out);

}  // namespace hak::large
