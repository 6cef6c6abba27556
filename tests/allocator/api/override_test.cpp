// The override layer, linked statically (libhakmem_override.a): every malloc-family function and
// every operator new/delete form, against the C and C++ standards; out of memory through the
// injected OS failure; fork with busy threads; thread_local destructors at thread exit.
#include <errno.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "common/chunk_map.h"
#include "hakmem.h"
#include "os/os.h"

extern "C" {
void* __libc_malloc(size_t);
void __libc_free(void*);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
}

// These tests use a block after a realloc that failed (which must leave it valid) and pass sizes
// that overflow on purpose; GCC's static checks would flag both.
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="

namespace {

using hak::chunk_map::Kind;

// A value the compiler cannot see through (keeps overflow cases to run time).
[[gnu::noinline]] size_t opaque(size_t x) {
  asm volatile("" : "+r"(x));
  return x;
}

void escape(void* p) {
  asm volatile("" : : "g"(p) : "memory");
}

bool is_hakmem(const void* p) {
  return hak::chunk_map::lookup(p).kind() != Kind::kNone;
}

// Runs f with every OS mapping failing, in a fresh thread (no cached blocks), caches emptied.
template <typename F>
void with_oom(F f) {
  std::thread([&] {
    hak_collect();
    hak::os::inject_map_failures(0);
    f();
    hak::os::inject_map_failures(UINT64_MAX);
  }).join();
}

const size_t kSizes[] = {0, 1, 16, 100, 1024, 1025, 5000, 262144, 262145, 3 << 20};

TEST(Override, MallocAndFreeAreHakmems) {
  for (size_t size : kSizes) {
    void* p = malloc(size);
    ASSERT_NE(p, nullptr);
    escape(p);
    EXPECT_TRUE(is_hakmem(p)) << size;
    EXPECT_GE(malloc_usable_size(p), size);
    EXPECT_EQ(malloc_usable_size(p), hak_usable_size(p));
    std::memset(p, 0x5C, malloc_usable_size(p));
    free(p);
  }
  free(nullptr);
  EXPECT_EQ(malloc_usable_size(nullptr), 0u);
  void* a = malloc(0);
  void* b = malloc(0);
  EXPECT_NE(a, b);
  free(a);
  free(b);
}

TEST(Override, GlibcEntryPointsAreHakmems) {
  void* p = __libc_malloc(300);
  EXPECT_TRUE(is_hakmem(p));
  p = __libc_realloc(p, 70000);
  EXPECT_TRUE(is_hakmem(p));
  __libc_free(p);
  auto* z = static_cast<unsigned char*>(__libc_calloc(10, 10));
  EXPECT_TRUE(is_hakmem(z));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(z[i], 0);
  __libc_free(z);
  void* m = __libc_memalign(4096, 10);
  EXPECT_TRUE(is_hakmem(m));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(m) % 4096, 0u);
  __libc_free(m);
}

TEST(Override, CallocZeroesAndChecksOverflow) {
  for (size_t size : kSizes) {
    void* dirty = malloc(size);
    std::memset(dirty, 0xAB, size);
    free(dirty);
    auto* p = static_cast<unsigned char*>(calloc(size, 1));
    ASSERT_NE(p, nullptr);
    for (size_t i = 0; i < size; ++i) ASSERT_EQ(p[i], 0) << size;
    free(p);
  }
  errno = 0;
  EXPECT_EQ(calloc(opaque(SIZE_MAX / 16 + 1), 16), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(Override, ReallocEdgeCases) {
  char* p = static_cast<char*>(realloc(nullptr, 10));  // NULL: malloc
  ASSERT_NE(p, nullptr);
  std::strcpy(p, "hakmem");
  p = static_cast<char*>(realloc(p, 100000));  // tiny -> pool
  EXPECT_STREQ(p, "hakmem");
  p = static_cast<char*>(realloc(p, 5 << 20));  // pool -> large
  EXPECT_STREQ(p, "hakmem");
  char* same = static_cast<char*>(realloc(p, 4 << 20));  // shrink in place
  EXPECT_EQ(same, p);
  p = static_cast<char*>(realloc(same, 7));  // large -> tiny
  EXPECT_STREQ(p, "hakmem");
  EXPECT_EQ(realloc(p, 0), nullptr);  // size 0: freed
}

TEST(Override, ReallocarrayChecksOverflowAndKeepsTheBlock) {
  int* a = static_cast<int*>(reallocarray(nullptr, 100, sizeof(int)));
  ASSERT_NE(a, nullptr);
  for (int i = 0; i < 100; ++i) a[i] = i;
  errno = 0;
  EXPECT_EQ(reallocarray(a, opaque(SIZE_MAX / 2), 4), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(a[99], 99);
  a = static_cast<int*>(reallocarray(a, 100000, sizeof(int)));
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a[99], 99);
  free(a);
}

TEST(Override, PosixMemalignErrorsLeaveTheOutputUntouched) {
  void* sentinel = reinterpret_cast<void*>(0x1234);
  for (size_t bad : {size_t{0}, size_t{1}, size_t{4}, size_t{24}, size_t{100}}) {
    void* out = sentinel;
    errno = 0;
    EXPECT_EQ(posix_memalign(&out, bad, 64), EINVAL) << bad;
    EXPECT_EQ(out, sentinel);
    EXPECT_EQ(errno, 0);  // reported through the result only
  }
  with_oom([&] {
    void* out = sentinel;
    EXPECT_EQ(posix_memalign(&out, 64, size_t{1} << 40), ENOMEM);
    EXPECT_EQ(out, sentinel);
  });
  for (size_t alignment = sizeof(void*); alignment <= (size_t{1} << 20); alignment *= 2) {
    for (size_t size : kSizes) {
      void* out = nullptr;
      ASSERT_EQ(posix_memalign(&out, alignment, size), 0);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(out) % alignment, 0u) << alignment << " " << size;
      EXPECT_GE(malloc_usable_size(out), size);
      free(out);
    }
  }
}

TEST(Override, AlignedAllocMemalignVallocPvalloc) {
  for (size_t alignment = 1; alignment <= (size_t{1} << 20); alignment *= 2) {
    for (size_t size : kSizes) {
      void* a = aligned_alloc(alignment, size);
      void* m = memalign(alignment, size);
      ASSERT_NE(a, nullptr);
      ASSERT_NE(m, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % alignment, 0u);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(m) % alignment, 0u);
      EXPECT_GE(malloc_usable_size(a), size);
      free(a);
      free(m);
    }
  }
  for (size_t bad : {size_t{0}, size_t{3}, size_t{48}, size_t{4097}}) {
    errno = 0;
    EXPECT_EQ(aligned_alloc(bad, 16), nullptr) << bad;
    EXPECT_EQ(errno, EINVAL);
    errno = 0;
    EXPECT_EQ(memalign(bad, 16), nullptr) << bad;
    EXPECT_EQ(errno, EINVAL);
  }
  void* v = valloc(10);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v) % 4096, 0u);
  free(v);
  void* pv = pvalloc(10);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(pv) % 4096, 0u);
  EXPECT_GE(malloc_usable_size(pv), 4096u);  // pvalloc rounds the size up to a page
  free(pv);
  void* pv0 = pvalloc(0);
  EXPECT_NE(pv0, nullptr);
  free(pv0);
}

TEST(Override, OutOfMemoryIsNullAndEnomem) {
  with_oom([] {
    errno = 0;
    EXPECT_EQ(malloc(size_t{1} << 40), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(calloc(1, 7 << 20), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(aligned_alloc(1 << 20, 100), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    void* p = malloc(3000);  // may come from the pool's existing chunks
    errno = 0;
    EXPECT_EQ(realloc(p, 9 << 20), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    free(p);
  });
}

struct alignas(512) Overaligned {
  char bytes[700];
};

TEST(Override, EveryOperatorNewAndDeleteForm) {
  int* one = new int(5);
  EXPECT_TRUE(is_hakmem(one));
  delete one;
  auto* array = new int[1000];
  EXPECT_TRUE(is_hakmem(array));
  delete[] array;
  auto* nothrow = new (std::nothrow) char[100];
  EXPECT_TRUE(is_hakmem(nothrow));
  delete[] nothrow;
  auto* aligned = new Overaligned;  // operator new(size_t, align_val_t)
  EXPECT_TRUE(is_hakmem(aligned));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned) % 512, 0u);
  delete aligned;  // sized + aligned delete
  auto* aligned_array = new Overaligned[3];
  EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned_array) % 512, 0u);
  delete[] aligned_array;
  auto* aligned_nothrow = new (std::nothrow) Overaligned;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned_nothrow) % 512, 0u);
  delete aligned_nothrow;
  // The explicit forms, each paired with its matching delete.
  for (size_t size : kSizes) {
    void* p = ::operator new(size);
    EXPECT_TRUE(is_hakmem(p));
    ::operator delete(p, size);
    p = ::operator new[](size);
    ::operator delete[](p, size);
    p = ::operator new(size, std::nothrow);
    ::operator delete(p, std::nothrow);
    p = ::operator new[](size, std::nothrow);
    ::operator delete[](p, std::nothrow);
    for (size_t alignment : {size_t{32}, size_t{4096}, size_t{1} << 20}) {
      auto a = std::align_val_t(alignment);
      p = ::operator new(size, a);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignment, 0u);
      ::operator delete(p, size, a);
      p = ::operator new[](size, a);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignment, 0u);
      ::operator delete[](p, size, a);
      p = ::operator new(size, a, std::nothrow);
      ::operator delete(p, a, std::nothrow);
      p = ::operator new[](size, a, std::nothrow);
      ::operator delete[](p, a, std::nothrow);
      p = ::operator new(size, a);
      ::operator delete(p, a);
      p = ::operator new[](size, a);
      ::operator delete[](p, a);
    }
    p = ::operator new(size);
    ::operator delete(p);
    p = ::operator new[](size);
    ::operator delete[](p);
  }
}

TEST(Override, ThrowingNewThrowsBadAllocAndNothrowReturnsNull) {
  with_oom([] {
    EXPECT_THROW((void)::operator new (size_t{1} << 40), std::bad_alloc);
    EXPECT_THROW((void)::operator new[](size_t{1} << 40), std::bad_alloc);
    EXPECT_THROW((void)::operator new (size_t{1} << 30, std::align_val_t(4096)), std::bad_alloc);
    EXPECT_EQ(::operator new (size_t{1} << 40, std::nothrow), nullptr);
    EXPECT_EQ(::operator new[](size_t{1} << 40, std::nothrow), nullptr);
    EXPECT_EQ(::operator new (size_t{1} << 40, std::align_val_t(64), std::nothrow), nullptr);
    EXPECT_THROW(std::vector<char>(size_t{1} << 33), std::bad_alloc);
  });
}

int g_handler_calls = 0;
void releasing_handler() {
  // Frees "memory" the way a real handler would: here, by ending the injected failure.
  if (++g_handler_calls == 2) hak::os::inject_map_failures(UINT64_MAX);
}
void throwing_handler() {
  ++g_handler_calls;
  throw std::bad_alloc();
}

TEST(Override, NewCallsTheNewHandlerUntilItSucceeds) {
  with_oom([] {
    g_handler_calls = 0;
    std::new_handler old = std::set_new_handler(releasing_handler);
    void* p = ::operator new(9 << 20);
    std::set_new_handler(old);
    EXPECT_NE(p, nullptr);
    EXPECT_EQ(g_handler_calls, 2);
    ::operator delete(p);
  });
  with_oom([] {
    g_handler_calls = 0;
    std::new_handler old = std::set_new_handler(throwing_handler);
    EXPECT_EQ(::operator new(9 << 20, std::nothrow), nullptr);
    EXPECT_THROW((void)::operator new(9 << 20), std::bad_alloc);
    std::set_new_handler(old);
    EXPECT_EQ(g_handler_calls, 2);
  });
}

TEST(Override, StandardContainersRunOnHakmem) {
  std::map<std::string, std::vector<int>> m;
  for (int i = 0; i < 20000; ++i) {
    m["key-" + std::to_string(i)].assign(static_cast<size_t>(i % 300), i);
  }
  long total = 0;
  for (auto& [key, values] : m) total += static_cast<long>(values.size());
  EXPECT_EQ(total, 20000L / 300 * (299L * 300 / 2) + (20000 % 300) * (20000 % 300 - 1) / 2);
  auto shared = std::make_shared<std::string>(5000, 'x');
  EXPECT_TRUE(is_hakmem(shared.get()));
}

// A thread_local object whose destructor frees (and allocates) at thread exit.
struct ThreadCache {
  std::vector<std::unique_ptr<char[]>> blocks;
  ~ThreadCache() {
    blocks.clear();
    std::string s(5000, 'y');  // allocates during teardown
    escape(s.data());
  }
};
thread_local ThreadCache t_cache;

TEST(Override, ThreadLocalDestructorsFreeAtThreadExit) {
  for (int generation = 0; generation < 20; ++generation) {
    std::thread([] {
      for (size_t size : kSizes) t_cache.blocks.emplace_back(new char[size + 1]);
    }).join();
  }
  SUCCEED();
}

TEST(Override, ForkWithBusyThreadsLeavesAWorkingChild) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int t = 0; t < 3; ++t) {
    busy.emplace_back([&, t] {
      std::vector<std::string> held;
      unsigned i = static_cast<unsigned>(t);
      while (!stop.load(std::memory_order_relaxed)) {
        held.emplace_back(kSizes[i++ % 10] % 400000, 'z');
        if (held.size() > 50) held.clear();
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    void* inherited = malloc(70000);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      free(inherited);
      std::map<int, std::string> m;
      for (int k = 0; k < 2000; ++k) m[k] = std::string(static_cast<size_t>(k * 37 % 3000), 'c');
      std::vector<void*> blocks;
      for (size_t size : kSizes) blocks.push_back(malloc(size));
      for (void* p : blocks) free(p);
      std::thread([] { free(malloc(100000)); }).join();
      _exit(m.size() == 2000 ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "child died: status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
    free(inherited);
  }
  stop = true;
  for (auto& thread : busy) thread.join();
}

}  // namespace
