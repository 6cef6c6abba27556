// A tiny test-and-test-and-set lock for hakmem's slow paths. Unlike pthread_mutex_t it never
// allocates, needs no initialisation call, can be reset in a fork child (reset(), for the
// pthread_atfork handlers), and never sleeps in the kernel: a waiter spins briefly, then yields
// its core, so contention costs no futex call (a glibc mutex made one per contended slow path).
#pragma once

#include <sched.h>

#include <atomic>

#include "common/base.h"

namespace hak {

// Tells the core we are spinning (x86 `pause`: saves power, leaves the pipeline to the sibling
// hyperthread, avoids the memory-order flush when the lock is released).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class SpinLock {
 public:
  constexpr SpinLock() = default;

  void lock() {
    // Acquire: everything the previous holder wrote before unlock() is visible to us.
    while (HAK_UNLIKELY(locked_.exchange(true, std::memory_order_acquire))) {
      // Spin on a plain load (no cache-line ping-pong): a holder running on another core is done
      // within a few hundred cycles. After that it was probably preempted (more threads than
      // cores), so give it our core.
      unsigned spins = 0;
      while (locked_.load(std::memory_order_relaxed)) {
        if (spins < kSpinsBeforeYield) {
          ++spins;
          cpu_relax();
        } else {
          sched_yield();
        }
      }
    }
  }
  bool try_lock() { return !locked_.exchange(true, std::memory_order_acquire); }
  // Release: publishes the critical section's writes to the next holder.
  void unlock() { locked_.store(false, std::memory_order_release); }
  // Fork child only: the holder may have been another thread that no longer exists.
  void reset() { locked_.store(false, std::memory_order_relaxed); }

 private:
  static constexpr unsigned kSpinsBeforeYield = 128;
  std::atomic<bool> locked_{false};
};

class SpinLockGuard {
 public:
  explicit SpinLockGuard(SpinLock& lock) : lock_(lock) { lock_.lock(); }
  ~SpinLockGuard() { lock_.unlock(); }
  SpinLockGuard(const SpinLockGuard&) = delete;
  SpinLockGuard& operator=(const SpinLockGuard&) = delete;

 private:
  SpinLock& lock_;
};

}  // namespace hak
