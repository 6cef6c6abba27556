// fork() while other threads allocate and free in every size range: the child (which inherits
// whatever state the parent's locks and heaps were in) allocates, frees blocks of its own and of
// the parent, and exits 0. Uses the hak_* API; override_test repeats it through malloc.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <iterator>
#include <thread>
#include <vector>

#include "hakmem.h"

namespace {

// The sanitizers' own allocators are not fork-safe: TSan refuses threads after a multi-threaded
// fork, and under ASan a new thread's set-up callocs from ASan's allocator, whose lock a parent
// thread (growing a std::vector) may have held at the fork. Their children stay single-threaded.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool kThreadsInChild = false;
#else
constexpr bool kThreadsInChild = true;
#endif

const size_t kSizes[] = {8, 200, 1024, 1500, 40000, 262144, 300000, 3 << 20};

// The child's work: every range, its own blocks and ones the parent allocated before the fork.
int child_work(const std::vector<void*>& inherited) {
  for (void* p : inherited) hak_free(p);
  // On the stack, not in a std::vector: under ASan a vector's growth takes ASan's allocator lock,
  // which a parent thread may have held at the fork (seen: children hung in its Mutex::Lock).
  constexpr int kRounds = 20;
  void* mine[kRounds * std::size(kSizes)];
  size_t count = 0;
  for (int round = 0; round < kRounds; ++round) {
    for (size_t size : kSizes) {
      void* p = hak_malloc(size);
      if (p == nullptr) return 2;
      std::memset(p, round, size);
      mine[count++] = p;
    }
  }
  for (size_t i = 0; i < count; ++i) hak_free(mine[i]);
  // A thread in the child works too.
  bool ok = true;
  auto work = [&] {
    for (size_t size : kSizes) {
      void* p = hak_malloc(size);
      ok = ok && p != nullptr;
      hak_free(p);
    }
  };
  if (kThreadsInChild) {
    std::thread(work).join();
  } else {
    work();
  }
  return ok ? 0 : 3;
}

TEST(HakFork, ChildAllocatesWhileParentThreadsWereBusy) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int t = 0; t < 3; ++t) {
    busy.emplace_back([&, t] {
      std::vector<void*> held;
      unsigned i = t;
      while (!stop.load(std::memory_order_relaxed)) {
        size_t size = kSizes[i++ % (sizeof kSizes / sizeof kSizes[0])];
        held.push_back(hak_malloc(size));
        if (held.size() > 40) {
          for (void* p : held) hak_free(p);
          held.clear();
        }
      }
      for (void* p : held) hak_free(p);
    });
  }
  for (int i = 0; i < 20; ++i) {
    std::vector<void*> inherited;
    for (size_t size : kSizes) inherited.push_back(hak_malloc(size));
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(30);  // a deadlocked child fails the test instead of hanging it
      _exit(child_work(inherited));
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "child died: status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
    for (void* p : inherited) hak_free(p);
  }
  stop = true;
  for (auto& thread : busy) thread.join();
}

}  // namespace
