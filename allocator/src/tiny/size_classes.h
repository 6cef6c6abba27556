// Tiny size classes: about four per doubling from 8 B to kTinyMaxSize (internal waste < 25%
// above 32 B), a constexpr size -> class table indexed by 8-byte granule, and per-class
// constants (block starts and numbers by multiplication, batch bounds).
#pragma once

#include <cstdint>

#include "common/base.h"

namespace hak::tiny {

inline constexpr uint32_t kClassSizes[] = {8,   16,  32,  48,  64,  80,  96,  112, 128, 160, 192,
                                           224, 256, 320, 384, 448, 512, 640, 768, 896, 1024};
inline constexpr unsigned kClassCount = sizeof(kClassSizes) / sizeof(kClassSizes[0]);
static_assert(kClassSizes[kClassCount - 1] == kTinyMaxSize);

struct SizeClassTable {
  uint8_t by_granule[kTinyMaxSize / 8 + 1];  // index (size + 7) / 8
};

constexpr SizeClassTable make_size_class_table() {
  SizeClassTable table{};
  unsigned cls = 0;
  for (unsigned granule = 0; granule <= kTinyMaxSize / 8; ++granule) {
    while (kClassSizes[cls] < granule * 8) ++cls;
    table.by_granule[granule] = static_cast<uint8_t>(cls);
  }
  return table;
}
inline constexpr SizeClassTable kSizeClassTable = make_size_class_table();

// size in [0, kTinyMaxSize]; 0 maps to the smallest class.
HAK_FAST_PATH constexpr unsigned size_to_class(size_t size) {
  return kSizeClassTable.by_granule[(size + 7) >> 3];
}

// A slab's block starts and block numbers from one 64-bit multiply (Lemire, Kaser and Kurz,
// "Faster remainder by direct computation", 2019): with multiplier = floor((2^64 - 1) / size) + 1
// and any offset < 2^32, the high half of offset * multiplier is offset / size, and the low half
// is below the multiplier exactly when size divides offset. For offset = q * size the low half is
// q * excess (excess = multiplier * size - 2^64, in [0, size)), so for offsets inside a slab of
// slab_bytes, `low < limit` with limit = capacity * excess (capacity = slab_bytes / size) says
// "offset starts block q, and q < capacity" in one compare: capacity * excess < slab_bytes, far
// below the multiplier for sizes <= 1 KiB (tested exhaustively). A power-of-two size has excess
// 0 and tiles the slab, so every multiple is a block: limit 1. limit 0 refuses every offset.
struct BlockCheck {
  uint64_t multiplier;
  uint64_t limit;
};
constexpr BlockCheck block_check(uint32_t size, uint32_t slab_bytes) {
  uint64_t multiplier = UINT64_MAX / size + 1;
  uint64_t excess = multiplier * size;  // mod 2^64
  return {multiplier, excess == 0 ? 1 : (slab_bytes / size) * excess};
}
struct BlockProduct {
  uint64_t low;    // < limit iff the offset starts a block below the capacity
  uint32_t index;  // offset / size
};
HAK_FAST_PATH BlockProduct multiply_offset(uint32_t offset, uint64_t multiplier) {
  unsigned __int128 product = static_cast<unsigned __int128>(offset) * multiplier;
  return {static_cast<uint64_t>(product), static_cast<uint32_t>(product >> 64)};
}

// Batch (blocks moved per refill) bounds; the cap of a class's cache is twice its batch. 256
// blocks (not 128) lets the classes up to 64 B hold a 256-block batch of frees (producer-consumer)
// in the cache, without a spill and the refill's walk to cut the stashed chain; see
// docs/performance.md (session 10).
inline constexpr uint32_t kMinBatch = 4;
inline constexpr uint32_t kInitialBatch = 8;
inline constexpr uint32_t kMaxBatchBlocks = 256;
inline constexpr uint32_t kMaxBatchBytes = 16 * 1024;
constexpr uint32_t max_batch(unsigned cls) {
  uint32_t by_bytes = kMaxBatchBytes / kClassSizes[cls];
  if (by_bytes > kMaxBatchBlocks) return kMaxBatchBlocks;
  return by_bytes < 2 * kInitialBatch ? 2 * kInitialBatch : by_bytes;
}

}  // namespace hak::tiny
