// libhakmem.so loaded at run time with dlopen (not preloaded): it must load (its initial-exec TLS
// has to fit the static TLS surplus), and its hak_* API must work from several threads.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

namespace {

using MallocFn = void* (*)(size_t);
using FreeFn = void (*)(void*);
using UsableFn = size_t (*)(const void*);

TEST(Dlopen, LibhakmemLoadsAndItsApiWorks) {
  void* lib = dlopen(HAKMEM_SHARED_PATH, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  auto hak_malloc = reinterpret_cast<MallocFn>(dlsym(lib, "hak_malloc"));
  auto hak_free = reinterpret_cast<FreeFn>(dlsym(lib, "hak_free"));
  auto hak_usable_size = reinterpret_cast<UsableFn>(dlsym(lib, "hak_usable_size"));
  ASSERT_NE(hak_malloc, nullptr);
  ASSERT_NE(hak_free, nullptr);
  ASSERT_NE(hak_usable_size, nullptr);
  // The override symbols are there too (they do not interpose: the process's malloc came first).
  EXPECT_NE(dlsym(lib, "malloc"), nullptr);
  EXPECT_NE(dlsym(lib, "_Znwm"), nullptr);
  auto work = [&] {
    std::vector<void*> blocks;
    for (size_t size :
         {size_t{1}, size_t{100}, size_t{1024}, size_t{5000}, size_t{200000}, size_t{3} << 20}) {
      for (int i = 0; i < 50; ++i) {
        void* p = hak_malloc(size);
        ASSERT_NE(p, nullptr);
        ASSERT_GE(hak_usable_size(p), size);
        std::memset(p, i, size);
        blocks.push_back(p);
      }
    }
    for (void* p : blocks) hak_free(p);
  };
  work();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(work);
  for (auto& thread : threads) thread.join();
  // The library is marked NODELETE: dlclose keeps it (thread-exit handlers stay valid).
  EXPECT_EQ(dlclose(lib), 0);
  std::thread(work).join();
}

}  // namespace
