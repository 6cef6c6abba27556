// Tiny size classes: about four per doubling from 8 B to kTinyMaxSize (internal waste < 25%
// above 32 B), a constexpr size -> class table indexed by 8-byte granule, and per-class
// constants (exact division by multiplication, batch bounds).
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
HAK_FAST_PATH unsigned size_to_class(size_t size) {
  return kSizeClassTable.by_granule[(size + 7) >> 3];
}

// Exact division and divisibility in one multiply (Granlund-Montgomery): size = odd * 2^shift;
// with inverse = odd^-1 mod 2^32, rotr32(offset * inverse, shift) == offset / size when size
// divides offset, and is larger than UINT32_MAX / size otherwise. So for any offset inside a
// slab, `rotr32(offset * inverse, shift) < capacity` says "offset is the start of block number
// <that value>" (tested exhaustively).
struct BlockDivider {
  uint32_t inverse;
  uint32_t shift;
};
constexpr BlockDivider block_divider(uint32_t size) {
  uint32_t shift = static_cast<uint32_t>(__builtin_ctz(size));
  uint32_t odd = size >> shift;
  uint32_t inverse = odd;  // correct to 3 bits; each Newton step doubles the correct bits
  for (int i = 0; i < 4; ++i) inverse *= 2 - odd * inverse;
  return {inverse, shift};
}
HAK_FAST_PATH uint32_t divide_offset(uint32_t offset, uint32_t inverse, uint32_t shift) {
  uint32_t x = offset * inverse;
  return (x >> shift) | (x << ((32 - shift) & 31));
}

// Batch (blocks moved per refill) bounds; the cap of a class's cache is twice its batch.
inline constexpr uint32_t kMinBatch = 4;
inline constexpr uint32_t kInitialBatch = 8;
inline constexpr uint32_t kMaxBatchBlocks = 128;
inline constexpr uint32_t kMaxBatchBytes = 16 * 1024;
constexpr uint32_t max_batch(unsigned cls) {
  uint32_t by_bytes = kMaxBatchBytes / kClassSizes[cls];
  if (by_bytes > kMaxBatchBlocks) return kMaxBatchBlocks;
  return by_bytes < 2 * kInitialBatch ? 2 * kInitialBatch : by_bytes;
}

}  // namespace hak::tiny
