// The mid pool's arena: chunks are cut from it, a slot given back reads as zeros and refuses
// frees, the next chunk reuses it, and without the arena (address space refused) chunks are
// mapped on their own and reached through the chunk map. Each case runs in a fresh process
// (gtest's "threadsafe" death-test style re-executes the binary), so the options and the arena's
// reservation start from nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "common/chunk_map.h"
#include "common/options.h"
#include "fresh_process.h"
#include "hakmem.h"
#include "pool/pool.h"

namespace {

class PoolArena : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

constexpr size_t kBlockSize = 60000;  // one block a run: 34 a chunk
constexpr int kBlocks = 100;          // three chunks

uint64_t chunks_live() {
  hak_stats_t s{};
  s.struct_size = sizeof s;
  hak_stats(&s);
  return s.pool_chunks_live;
}

std::vector<void*> allocate_blocks() {
  std::vector<void*> blocks;
  for (int i = 0; i < kBlocks; ++i) {
    void* p = hak_malloc(kBlockSize);
    CHECK_OR_EXIT(p != nullptr);
    std::memset(p, i, kBlockSize);
    blocks.push_back(p);
  }
  return blocks;
}

bool filled_with(const void* p, int value) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < kBlockSize; ++i) {
    if (bytes[i] != static_cast<unsigned char>(value)) return false;
  }
  return true;
}

TEST_F(PoolArena, AChunkGivenBackReadsAsZerosRefusesFreesAndItsSlotIsReused) {
  EXPECT_EXIT(
      {
        std::vector<void*> blocks = allocate_blocks();
        CHECK_OR_EXIT(chunks_live() >= 3);
        for (void* p : blocks) CHECK_OR_EXIT(hak::pool::in_arena(p));
        char* highest = reinterpret_cast<char*>(
            hak::pool::chunk_of(*std::max_element(blocks.begin(), blocks.end())));
        // Aligned to its size (in_arena compares top bits): the bytes around it are outside.
        char* base = hak::pool::g_arena.base();
        CHECK_OR_EXIT(reinterpret_cast<uintptr_t>(base) % hak::pool::PoolArena::kBytes == 0);
        CHECK_OR_EXIT(hak::pool::in_arena(base) && !hak::pool::in_arena(base - 1) &&
                      !hak::pool::in_arena(base + hak::pool::PoolArena::kBytes));
        void* stale = blocks.back();
        for (void* p : blocks) hak_free(p);
        hak_collect();  // every chunk is empty: the cached ones go back to the OS too
        CHECK_OR_EXIT(chunks_live() == 0);
        CHECK_OR_EXIT(hak::pool::in_arena(stale));
        static const char zeros[kBlockSize] = {};
        CHECK_OR_EXIT(std::memcmp(stale, zeros, kBlockSize) == 0);
        // A double free into a slot given back: refused (logged) unless HAKMEM_CHECK=1
        // (AFreeIntoAChunkGivenBackIsFatalInCheckMode); nothing is written there.
        if (!hak::options().check) {
          hak_free(stale);
          CHECK_OR_EXIT(std::memcmp(stale, zeros, kBlockSize) == 0);
          CHECK_OR_EXIT(chunks_live() == 0);
        }
        // Never-used slots read as zeros too: a wild free there is refused the same way.
        char* unused = base + hak::pool::PoolArena::kBytes - hak::kChunkSize;
        CHECK_OR_EXIT(*unused == 0);
        if (!hak::options().check) hak_free(unused + 4096);
        // The next chunks reuse the slots given back instead of growing the arena.
        blocks = allocate_blocks();
        for (void* p : blocks) {
          CHECK_OR_EXIT(hak::pool::in_arena(p) &&
                        reinterpret_cast<char*>(hak::pool::chunk_of(p)) <= highest);
        }
        for (int i = 0; i < kBlocks; ++i) CHECK_OR_EXIT(filled_with(blocks[i], i));
        for (void* p : blocks) hak_free(p);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(PoolArena, AFreeIntoAChunkGivenBackIsFatalInCheckMode) {
  EXPECT_EXIT(
      {
        setenv("HAKMEM_CHECK", "1", 1);
        std::vector<void*> blocks = allocate_blocks();
        for (void* p : blocks) hak_free(p);
        hak_collect();
        CHECK_OR_EXIT(chunks_live() == 0);
        hak_free(blocks.back());
        _exit(0);
      },
      ::testing::KilledBySignal(SIGABRT), "not allocated by hakmem");
}

// Without the arena (its reservation refused, as under a tight `ulimit -v`), every chunk is
// mapped on its own and found through the chunk map: same behaviour, remote frees included.
TEST_F(PoolArena, WithoutTheArenaChunksAreMappedOnTheirOwn) {
  EXPECT_EXIT(
      {
        hak_test::refuse_the_arenas();
        std::vector<void*> blocks = allocate_blocks();
        CHECK_OR_EXIT(chunks_live() >= 3);
        for (void* p : blocks) {
          CHECK_OR_EXIT(!hak::pool::in_arena(p));
          CHECK_OR_EXIT(hak::chunk_map::lookup(p).kind() == hak::chunk_map::Kind::kPool);
        }
        CHECK_OR_EXIT(hak::pool::g_arena.base() == nullptr);
        std::thread([&] {
          for (int i = 0; i < kBlocks; ++i) {
            CHECK_OR_EXIT(filled_with(blocks[i], i));
            hak_free(blocks[i]);
          }
        }).join();
        hak_collect();  // drains the remote frees: every chunk is empty
        CHECK_OR_EXIT(chunks_live() == 0);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
