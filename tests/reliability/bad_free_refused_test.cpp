// Without HAKMEM_CHECK: a pointer hakmem never handed out is refused with a message naming it,
// and nothing breaks (no crash, no corruption of the memory it points to or of hakmem's heap).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
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

// Runs f with stderr captured (hakmem writes its messages to fd 2) and returns what it wrote.
template <typename F>
std::string stderr_of(F&& f) {
  ::testing::internal::CaptureStderr();
  f();
  return ::testing::internal::GetCapturedStderr();
}

// The heap still works: blocks of every range come back intact.
void expect_heap_healthy() {
  std::vector<void*> blocks;
  for (size_t size : {size_t{16}, size_t{100}, size_t{1024}, size_t{5000}, size_t{300000}}) {
    auto* p = static_cast<unsigned char*>(hak_malloc(size));
    ASSERT_NE(p, nullptr);
    std::memset(p, static_cast<int>(size & 0xff), size);
    blocks.push_back(p);
  }
  for (void* b : blocks) {
    size_t size = hak_usable_size(b);
    EXPECT_GE(size, 16u);
    hak_free(b);
  }
}

char g_static_buffer[256];

TEST(ReleaseMode, CheckModeIsOff) {
  EXPECT_FALSE(hak::options().check) << "this binary must run without HAKMEM_CHECK";
}

TEST(ReleaseMode, FreeOfStackAddressIsRefusedWithMessage) {
  char on_stack[64];
  std::memset(on_stack, 0x11, sizeof on_stack);
  std::string out = stderr_of([&] { hak_free(on_stack + 8); });
  EXPECT_NE(out.find("hakmem"), std::string::npos) << out;
  EXPECT_NE(out.find(hex(on_stack + 8)), std::string::npos) << out;
  for (char c : on_stack) ASSERT_EQ(c, 0x11);  // not written
  expect_heap_healthy();
}

TEST(ReleaseMode, FreeOfGlibcBlockIsRefusedAndTheBlockStaysGlibcs) {
  auto* p = static_cast<char*>(std::malloc(200));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x22, 200);
  std::string out = stderr_of([&] { hak_free(p); });
  EXPECT_NE(out.find(hex(p)), std::string::npos) << out;
  for (int i = 0; i < 200; ++i) ASSERT_EQ(p[i], 0x22);
  std::free(p);  // glibc's heap was not touched, so this is still a valid free
  expect_heap_healthy();
}

TEST(ReleaseMode, FreeOfStaticAddressIsRefusedWithMessage) {
  std::string out = stderr_of([&] { hak_free(g_static_buffer + 32); });
  EXPECT_NE(out.find(hex(g_static_buffer + 32)), std::string::npos) << out;
  expect_heap_healthy();
}

TEST(ReleaseMode, UsableSizeOfForeignPointerIsZero) {
  char on_stack[16] = {};
  EXPECT_EQ(hak_usable_size(on_stack), 0u);
  EXPECT_EQ(hak_usable_size(g_static_buffer), 0u);
}

TEST(ReleaseMode, ReallocOfForeignPointerIsRefusedAndKeepsIt) {
  char on_stack[64];
  std::memset(on_stack, 0x33, sizeof on_stack);
  void* result = reinterpret_cast<void*>(1);
  errno = 0;
  std::string out = stderr_of([&] { result = hak_realloc(on_stack, 128); });
  EXPECT_EQ(result, nullptr);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_NE(out.find(hex(on_stack)), std::string::npos) << out;
  for (char c : on_stack) ASSERT_EQ(c, 0x33);
  expect_heap_healthy();
}

TEST(ReleaseMode, ReallocOfATinyInteriorPointerIsRefusedAndKeepsTheBlock) {
  auto* p = static_cast<unsigned char*>(hak_malloc(64));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x66, 64);
  void* result = reinterpret_cast<void*>(1);
  errno = 0;
  std::string out = stderr_of([&] { result = hak_realloc(p + 16, 128); });
  EXPECT_EQ(result, nullptr);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_NE(out.find(hex(p + 16)), std::string::npos) << out;
  for (int i = 0; i < 64; ++i) ASSERT_EQ(p[i], 0x66) << i;
  hak_free(p);
  expect_heap_healthy();
}

TEST(ReleaseMode, TinyInteriorPointerIsRefusedAndTheBlockStaysLive) {
#ifndef NDEBUG
  GTEST_SKIP() << "debug builds always check: an interior pointer is fatal there";
#endif
  auto* p = static_cast<unsigned char*>(hak_malloc(64));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x44, 64);
  std::string out = stderr_of([&] { hak_free(p + 8); });
  EXPECT_NE(out.find(hex(p + 8)), std::string::npos) << out;
  // The refused free changed nothing: the block is still live and its own, and no later
  // allocation of its class hands out any part of it.
  std::vector<void*> same_class;
  for (int i = 0; i < 1000; ++i) {
    auto* q = static_cast<unsigned char*>(hak_malloc(64));
    ASSERT_NE(q, nullptr);
    ASSERT_TRUE(q + 64 <= p || q >= p + 64)
        << "got " << static_cast<void*>(q) << " inside " << static_cast<void*>(p);
    std::memset(q, 0x55, 64);
    same_class.push_back(q);
  }
  for (int i = 0; i < 64; ++i) ASSERT_EQ(p[i], 0x44) << i;
  for (void* q : same_class) hak_free(q);
  hak_free(p);
}

TEST(ReleaseMode, RemoteDoubleFreeBeforeTheOwnerDrainsIsRefusedWithMessage) {
#ifndef NDEBUG
  GTEST_SKIP() << "debug builds always check: a double free is fatal there";
#endif
  void* p = hak_malloc(64);
  ASSERT_NE(p, nullptr);
  // Each thread's free is remote, and its exit sends p home: p's bit in its slab's remote bitmap
  // is set by the first and found set by the second (this thread, the owner, drains nothing in
  // between: it does not allocate, and main() keeps idle heaps from being tidied).
  std::thread([p] { hak_free(p); }).join();
  std::string out = stderr_of([&] { std::thread([p] { hak_free(p); }).join(); });
  EXPECT_NE(out.find("double free"), std::string::npos) << out;
  EXPECT_NE(out.find(hex(p)), std::string::npos) << out;
  // Refused: p comes back once, and no block twice.
  std::set<void*> seen;
  for (int i = 0; i < 4096; ++i) {
    void* q = hak_malloc(64);
    ASSERT_NE(q, nullptr);
    ASSERT_TRUE(seen.insert(q).second) << "handed out twice: " << q;
  }
  EXPECT_EQ(seen.count(p), 1u);
  for (void* q : seen) hak_free(q);
  expect_heap_healthy();
}

}  // namespace

int main(int argc, char** argv) {
  unsetenv("HAKMEM_CHECK");  // before any hak_* call: this binary tests the default mode
  // No idle heap is tidied while the tests run (the first periodic pass only marks them).
  setenv("HAKMEM_RELEASE_DELAY_MS", "3600000", 1);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
