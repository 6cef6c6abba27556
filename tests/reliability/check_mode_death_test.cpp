// HAKMEM_CHECK=1: heap misuse aborts with a message that names the address (and, for tiny
// blocks, the class). Each case runs in a death-test child.
//
// How the mode gets on: main() sets HAKMEM_CHECK=1 before anything calls hakmem, which reads its
// options once, on its first call. The death-test style is "fast" (fork without exec): the child
// is a copy of this process, so a block allocated before EXPECT_DEATH has the same address in the
// child, and the expected message can name it exactly.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/options.h"
#include "hakmem.h"

namespace {

std::string hex(const void* p) {
  char text[32];
  std::snprintf(text, sizeof text, "%p", p);
  return text;
}

// A fatal hakmem message naming `p`.
std::string fatal_naming(const void* p) {
  return "hakmem: fatal: [^\n]*" + hex(p);
}

// A fatal hakmem message naming `p` and a tiny class, in either order.
std::string fatal_naming_with_class(const void* p) {
  std::string a = hex(p);
  return "hakmem: fatal: [^\n]*(" + a + "[^\n]*class [0-9]+|class [0-9]+[^\n]*" + a + ")";
}

constexpr size_t kTinySizes[] = {8, 16, 48, 256, 1024};

TEST(CheckMode, IsOnInThisBinary) {
  EXPECT_TRUE(hak::options().check) << "main() must set HAKMEM_CHECK=1 before the first hak_* call";
}

TEST(CheckModeDeathTest, DoubleFreeOfTinyBlock) {
  for (size_t size : kTinySizes) {
    void* p = hak_malloc(size);
    ASSERT_NE(p, nullptr);
    EXPECT_DEATH(
        {
          hak_free(p);
          hak_free(p);
        },
        fatal_naming_with_class(p))
        << "size " << size;
    hak_free(p);  // the parent never freed it
  }
}

TEST(CheckModeDeathTest, DoubleFreeOfTinyBlockFirstFreedByAnotherThread) {
  void* p = hak_malloc(64);
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(
      {
        std::thread([p] { hak_free(p); }).join();  // a remote free, then a local one
        hak_free(p);
      },
      fatal_naming_with_class(p));
  hak_free(p);
}

TEST(CheckModeDeathTest, DoubleFreeOfBlockBuriedInFreeList) {
  // Other blocks of the class are freed after p, so p is no longer at the head of any free list
  // (or cache) when it is freed again: a check that only looks at the head misses this.
  std::vector<void*> blocks;
  for (int i = 0; i < 100; ++i) blocks.push_back(hak_malloc(32));
  void* p = blocks[50];
  EXPECT_DEATH(
      {
        hak_free(p);
        for (int i = 51; i < 60; ++i) hak_free(blocks[i]);
        hak_free(p);
      },
      fatal_naming_with_class(p));
  for (void* b : blocks) hak_free(b);
}

TEST(CheckModeDeathTest, DoubleFreeOfMidBlock) {
  void* p = hak_malloc(8 * 1024);
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(
      {
        hak_free(p);
        hak_free(p);
      },
      fatal_naming(p));
  hak_free(p);
}

TEST(CheckModeDeathTest, DoubleFreeOfLargeBlock) {
  void* p = hak_malloc(1 << 20);
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(
      {
        hak_free(p);
        hak_free(p);
      },
      fatal_naming(p));
  hak_free(p);
}

TEST(CheckModeDeathTest, FreeOfStackAddress) {
  char on_stack[64];
  std::memset(on_stack, 1, sizeof on_stack);
  EXPECT_DEATH(hak_free(on_stack), fatal_naming(on_stack));
  EXPECT_DEATH(hak_free(on_stack + 16), fatal_naming(on_stack + 16));
}

TEST(CheckModeDeathTest, FreeOfGlibcBlock) {
  void* p = std::malloc(100);
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(hak_free(p), fatal_naming(p));
  std::free(p);
}

TEST(CheckModeDeathTest, FreeOfTinyInteriorPointer) {
  for (size_t size : {size_t{32}, size_t{64}, size_t{96}, size_t{1024}}) {
    auto* p = static_cast<char*>(hak_malloc(size));
    ASSERT_NE(p, nullptr);
    for (size_t offset : {size_t{8}, size_t{16}, size / 2 + 8, size - 8}) {
      if (offset % size == 0) continue;
      EXPECT_DEATH(hak_free(p + offset), fatal_naming_with_class(p + offset))
          << "size " << size << " offset " << offset;
    }
    hak_free(p);
  }
}

TEST(CheckModeDeathTest, FreeOfMidInteriorPointer) {
  auto* p = static_cast<char*>(hak_malloc(4096));
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(hak_free(p + 16), fatal_naming(p + 16));
  hak_free(p);
}

TEST(CheckModeDeathTest, FreeOfLargeInteriorPointer) {
  auto* p = static_cast<char*>(hak_malloc(1 << 20));
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(hak_free(p + 4096), fatal_naming(p + 4096));
  hak_free(p);
}

// A write after free smashes the link the freed block holds in its class's free list; the
// allocations that follow walk that list and must stop at the bad link.
TEST(CheckModeDeathTest, WriteAfterFreeWithGarbageCorruptsFreeList) {
  for (size_t size : {size_t{16}, size_t{48}, size_t{512}}) {
    void* p = hak_malloc(size);
    ASSERT_NE(p, nullptr);
    EXPECT_DEATH(
        {
          hak_free(p);
          std::memset(p, 0x5a, size);  // the write after free
          for (int i = 0; i < 64; ++i) hak_malloc(size);
        },
        fatal_naming_with_class(p))
        << "size " << size;
    hak_free(p);
  }
}

TEST(CheckModeDeathTest, WriteAfterFreeLinkingToLiveBlock) {
  // Subtler: the smashed link points at a live block of the same slab and class, so following it
  // would hand out a block that is in use. Named: the freed block or the live one.
  void* live = hak_malloc(64);
  void* p = hak_malloc(64);
  ASSERT_NE(live, nullptr);
  ASSERT_NE(p, nullptr);
  std::string either = "(" + fatal_naming_with_class(p) + "|" + fatal_naming_with_class(live) + ")";
  EXPECT_DEATH(
      {
        hak_free(p);
        std::memcpy(p, &live, sizeof live);
        for (int i = 0; i < 64; ++i) hak_malloc(64);
      },
      either);
  hak_free(p);
  hak_free(live);
}

TEST(CheckModeDeathTest, WriteAfterRemoteFreeIsCaughtWhenDrained) {
  // The block is marked in its slab's remote bitmap (freed by another thread) and poisoned; the
  // write after that free breaks the poison, which the owner checks when it drains the bitmap on
  // allocating again.
  void* p = hak_malloc(128);
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(
      {
        std::thread([p] {
          hak_free(p);
          std::memset(p, 0xa5, 128);
        }).join();
        for (int i = 0; i < 4096; ++i) hak_malloc(128);
      },
      fatal_naming_with_class(p));
  hak_free(p);
}

}  // namespace

int main(int argc, char** argv) {
  // Before any hak_* call: hakmem reads its options once, on first use.
  setenv("HAKMEM_CHECK", "1", 1);
  ::testing::InitGoogleTest(&argc, argv);
  // fork() without exec: blocks allocated before EXPECT_DEATH keep their addresses in the child.
  GTEST_FLAG_SET(death_test_style, "fast");
  return RUN_ALL_TESTS();
}
