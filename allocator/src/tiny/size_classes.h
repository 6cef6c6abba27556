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

// floor(2^32 / size) + 1: (offset * magic) >> 32 == offset / size exactly for every offset below
// 2^32 / size, so for every offset inside a 64 KiB slab (tested exhaustively).
constexpr uint32_t division_magic(uint32_t size) {
  return static_cast<uint32_t>((uint64_t{1} << 32) / size + 1);
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
