// The size-class table and the division magic the free path validates pointers with.
#include <gtest/gtest.h>

#include "tiny/size_classes.h"
#include "tiny/superslab.h"

using namespace hak::tiny;

TEST(TinySizeClasses, AscendingAndSixteenByteMultiplesFrom16) {
  for (unsigned c = 1; c < kClassCount; ++c) {
    EXPECT_LT(kClassSizes[c - 1], kClassSizes[c]);
    EXPECT_EQ(kClassSizes[c] % 16, 0u) << kClassSizes[c];
  }
}

TEST(TinySizeClasses, AboutFourPerDoublingWasteUnderAQuarterAbove64) {
  for (unsigned c = 1; c < kClassCount; ++c) {
    // Below 64 the 16-byte alignment forces steps of 16 (33 -> 48 wastes 45%).
    if (kClassSizes[c - 1] < 64) continue;
    // The worst request of class c is one byte above the previous class.
    double waste = double(kClassSizes[c] - kClassSizes[c - 1] - 1) / (kClassSizes[c - 1] + 1);
    EXPECT_LT(waste, 0.25) << kClassSizes[c];
  }
}

TEST(TinySizeClasses, EverySizeMapsToTheSmallestClassThatFits) {
  for (size_t size = 0; size <= hak::kTinyMaxSize; ++size) {
    unsigned c = size_to_class(size);
    ASSERT_LT(c, kClassCount);
    EXPECT_GE(kClassSizes[c], size);
    if (c > 0) {
      EXPECT_LT(kClassSizes[c - 1], size == 0 ? 1 : size) << size;
    }
  }
}

TEST(TinySizeClasses, BlockCheckFindsExactlyTheBlockStartsOfASlabAndTheirNumbers) {
  for (unsigned c = 0; c < kClassCount; ++c) {
    uint32_t size = kClassSizes[c];
    uint32_t capacity = static_cast<uint32_t>(kSlabSize / size);
    BlockCheck check = block_check(size, kSlabSize);
    for (uint32_t offset = 0; offset < kSlabSize; ++offset) {
      BlockProduct product = multiply_offset(offset, check.multiplier);
      bool block_start = offset % size == 0 && offset / size < capacity;
      ASSERT_EQ(product.low < check.limit, block_start) << "size " << size << " offset " << offset;
      ASSERT_EQ(product.index, offset / size) << "size " << size << " offset " << offset;
    }
  }
}

TEST(TinySizeClasses, BatchBoundsAreSane) {
  for (unsigned c = 0; c < kClassCount; ++c) {
    EXPECT_GE(max_batch(c), kInitialBatch);
    EXPECT_LE(max_batch(c), kMaxBatchBlocks);
    EXPECT_GE(max_batch(c), kMinBatch);
  }
}

TEST(TinyLayout, HeaderFitsInSlabZeroAndSlabsAreSixtyFourKiB) {
  EXPECT_EQ(kFirstBlockSlab, 1u);
  EXPECT_LE(sizeof(SuperSlab), kSlabSize);
  // One remote bit per block of the smallest class.
  EXPECT_GE(kBitmapWords * 64, kSlabSize / kClassSizes[0]);
  EXPECT_EQ(kSlabsPerSuperSlab * kSlabSize, hak::kChunkSize);
  EXPECT_EQ(sizeof(Slab) % hak::kCacheLine, 0u);
}
