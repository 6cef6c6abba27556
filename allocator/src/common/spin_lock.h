// A tiny test-and-test-and-set lock for hakmem's slow paths. Unlike pthread_mutex_t it never
// allocates, needs no initialisation call, and can be reset in a fork child (reset()), which is
// what the pthread_atfork handlers need.
#pragma once

#include <sched.h>

#include <atomic>

#include "common/base.h"

namespace hak {

class SpinLock {
 public:
  constexpr SpinLock() = default;

  void lock() {
    // Acquire: everything the previous holder wrote before unlock() is visible to us.
    while (HAK_UNLIKELY(locked_.exchange(true, std::memory_order_acquire))) {
      // Spin on a plain load (no cache-line ping-pong), yielding: 2 cores may be shared by many.
      while (locked_.load(std::memory_order_relaxed)) sched_yield();
    }
  }
  bool try_lock() { return !locked_.exchange(true, std::memory_order_acquire); }
  // Release: publishes the critical section's writes to the next holder.
  void unlock() { locked_.store(false, std::memory_order_release); }
  // Fork child only: the holder may have been another thread that no longer exists.
  void reset() { locked_.store(false, std::memory_order_relaxed); }

 private:
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
