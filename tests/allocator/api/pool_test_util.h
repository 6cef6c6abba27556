// Helpers shared by the mid-pool tests, which call pool:: directly: a checked free and a stats
// snapshot of the pool alone.
#pragma once

#include <gtest/gtest.h>

#include "common/chunk_map.h"
#include "pool/pool.h"

namespace hak::pool::test {

inline void pool_free(void* p) {
  chunk_map::Entry entry = chunk_map::lookup(p);
  ASSERT_EQ(entry.kind(), chunk_map::Kind::kPool) << p;
  free(p, entry.owner<Chunk>());
}

inline hak_stats_t pool_stats() {
  hak_stats_t s{};
  fill_stats(&s);
  return s;
}

}  // namespace hak::pool::test
