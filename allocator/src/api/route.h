// Routing, done once at the top: a request goes by size to tiny, pool or large; a free goes by
// its address: tiny's and the pool's arenas by range tests, everything else by the chunk map
// entry. Inline so that hak_malloc and the malloc override both get the tiny and pool fast paths
// without a call; large spans and foreign pointers go out of line.
#pragma once

#include "common/chunk_map.h"
#include "large/large.h"
#include "pool/pool.h"
#include "tiny/tiny.h"

namespace hak {

// Frees a block that is neither tiny nor pool: a large span, or a pointer hakmem never returned.
void route_free_large_or_foreign(void* p, chunk_map::Entry entry) noexcept;
void* route_aligned_alloc_slow(size_t alignment, size_t size);

HAK_FAST_PATH void* route_malloc(size_t size) {
  if (HAK_LIKELY(size <= kTinyMaxSize)) return tiny::alloc(size);
  if (HAK_LIKELY(size <= kPoolMaxSize)) return pool::alloc(size);
  return large::alloc(size, 16);
}

HAK_FAST_PATH void route_free(void* p) {
  // Most frees are tiny: a range test finds them before the chunk-map look-up.
  if (HAK_LIKELY(tiny::in_arena(p))) return tiny::free(p, tiny::SuperSlab::of(p));
  if (HAK_LIKELY(pool::in_arena(p))) return pool::free(p, pool::chunk_of(p));
  // Chunks and SuperSlabs outside the arenas: only where an arena was refused or is full.
  chunk_map::Entry entry = chunk_map::lookup(p);
  pool::Chunk* chunk;
  if (entry.is(chunk_map::Kind::kPool, chunk)) return pool::free(p, chunk);
  tiny::SuperSlab* ss;
  if (entry.is(chunk_map::Kind::kTiny, ss)) return tiny::free(p, ss);
  route_free_large_or_foreign(p, entry);
}

// alignment: a power of two (the caller checked). Tiny blocks of a class whose size is a multiple
// of the alignment are aligned to it (tiny's layout contract), so small aligned requests stay tiny.
HAK_FAST_PATH void* route_aligned_alloc(size_t alignment, size_t size) {
  // malloc's blocks are 8-aligned below 16 bytes and 16-aligned from there on.
  if (alignment <= 8 || (alignment == 16 && size >= 16)) return route_malloc(size);
  size_t rounded = align_up(size == 0 ? 1 : size, alignment);
  if (rounded <= kTinyMaxSize && rounded >= size) return tiny::alloc(rounded);
  return route_aligned_alloc_slow(alignment, size);
}

size_t route_usable_size(const void* p);
// calloc: overflow-checked (NULL + ENOMEM); fresh large spans are not cleared twice.
void* route_calloc(size_t count, size_t size);
// realloc with glibc's edge cases: NULL -> malloc, size 0 -> free and NULL, failure leaves p.
void* route_realloc_slow(void* p, size_t size);
// Inline for the common case: a tiny or pool block whose size still fits the new size and is at
// most twice it stays where it is; a null, foreign or invalid pointer (usable 0) and a size of 0
// take the slow path, which validates and moves.
HAK_FAST_PATH void* route_realloc(void* p, size_t size) {
  size_t usable;
  if (HAK_LIKELY(tiny::in_arena(p))) {
    usable = tiny::usable_size(p, tiny::SuperSlab::of(p));
  } else {
    chunk_map::Entry entry = chunk_map::lookup(p);
    usable = entry.kind() == chunk_map::Kind::kPool ? pool::trusted_size(p, entry) : 0;
  }
  // size - 1 < usable: size <= usable, and false for a size of 0 (free and NULL) and usable 0.
  if (HAK_LIKELY(size - 1 < usable && size >= usable / 2)) return p;
  return route_realloc_slow(p, size);
}

}  // namespace hak
