// The OS layer (see os.h): mmap/munmap/madvise/mremap with exact counters and injectable failure.
#include "os/os.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "common/log.h"
#include "common/options.h"
#include "hakmem.h"

namespace hak::os {
namespace {

// All counters are statistics or test switches: relaxed is enough, nothing is published by them.
std::atomic<uint64_t> g_bytes_mapped{0};
std::atomic<uint64_t> g_bytes_mapped_peak{0};
std::atomic<uint64_t> g_map_calls{0};
std::atomic<uint64_t> g_unmap_calls{0};
std::atomic<uint64_t> g_decommit_calls{0};
// Mappings still allowed to succeed; UINT64_MAX means no injected failure.
std::atomic<uint64_t> g_map_budget{UINT64_MAX};
std::atomic<bool> g_budget_from_options{false};

void note_mapped(size_t size) {
  uint64_t now = g_bytes_mapped.fetch_add(size, std::memory_order_relaxed) + size;
  uint64_t peak = g_bytes_mapped_peak.load(std::memory_order_relaxed);
  while (now > peak &&
         !g_bytes_mapped_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

bool injected_failure() {
  if (HAK_UNLIKELY(!g_budget_from_options.load(std::memory_order_relaxed))) {
    if (!g_budget_from_options.exchange(true, std::memory_order_relaxed) &&
        options().os_fail_after != 0) {
      g_map_budget.store(options().os_fail_after, std::memory_order_relaxed);
    }
  }
  uint64_t budget = g_map_budget.load(std::memory_order_relaxed);
  while (budget != UINT64_MAX) {
    if (budget == 0) return true;
    if (g_map_budget.compare_exchange_weak(budget, budget - 1, std::memory_order_relaxed)) break;
  }
  return false;
}

void* map_raw(size_t size, int protection = PROT_READ | PROT_WRITE, int flags = 0) {
  void* p = ::mmap(nullptr, size, protection, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// Maps enough to contain an aligned range of size bytes, then trims both ends; nullptr on failure.
void* map_aligned_raw(size_t size, size_t alignment, int protection = PROT_READ | PROT_WRITE,
                      int flags = 0) {
  size_t padded = size + alignment - kPageSize;
  if (padded < size) return nullptr;
  char* raw = static_cast<char*>(map_raw(padded, protection, flags));
  if (raw == nullptr) return nullptr;
  char* aligned = reinterpret_cast<char*>(align_up(reinterpret_cast<uintptr_t>(raw), alignment));
  if (aligned > raw) ::munmap(raw, static_cast<size_t>(aligned - raw));
  size_t tail = static_cast<size_t>(raw + padded - (aligned + size));
  if (tail > 0) ::munmap(aligned + size, tail);
  return aligned;
}

}  // namespace

void* map(size_t size, size_t alignment) {
  HAK_DEBUG_CHECK(size % kPageSize == 0 && is_power_of_two(alignment) && alignment >= kPageSize,
                  "os::map(%zu, %zu): bad size or alignment", size, alignment);
  if (injected_failure()) {
    errno = ENOMEM;
    return nullptr;
  }
  g_map_calls.fetch_add(1, std::memory_order_relaxed);
  void* p = map_raw(size);
  if (p != nullptr && (reinterpret_cast<uintptr_t>(p) & (alignment - 1)) != 0) {
    ::munmap(p, size);  // not aligned by luck
    p = map_aligned_raw(size, alignment);
  }
  if (p == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  note_mapped(size);
  return p;
}

void unmap(void* p, size_t size) {
  if (::munmap(p, size) != 0) fatal("munmap(%p, %zu) failed: errno %d", p, size, errno);
  g_unmap_calls.fetch_add(1, std::memory_order_relaxed);
  g_bytes_mapped.fetch_sub(size, std::memory_order_relaxed);
}

void decommit(void* p, size_t size) {
  // MADV_DONTNEED (not MADV_FREE): RSS falls at once and later reads are guaranteed zero.
  ::madvise(p, size, MADV_DONTNEED);
  g_decommit_calls.fetch_add(1, std::memory_order_relaxed);
}

void decommit_ranges(const iovec* ranges, size_t count) {
  // PIDFD_SELF_THREAD_GROUP (Linux 6.15): the calling process, with no descriptor to open (or to
  // inherit through fork). Older kernels, and valgrind, refuse the call: then never again.
  constexpr int kPidfdSelf = -10001;
  static std::atomic<bool> vector_refused{false};
  if (count > 1 && !vector_refused.load(std::memory_order_relaxed)) {
    size_t bytes = 0;
    for (size_t i = 0; i < count; ++i) bytes += ranges[i].iov_len;
    long done = ::syscall(SYS_process_madvise, kPidfdSelf, ranges, count, MADV_DONTNEED, 0u);
    g_decommit_calls.fetch_add(1, std::memory_order_relaxed);
    if (done == static_cast<long>(bytes)) return;
    // A partial or refused call: the plain path redoes every range (dropping pages twice is
    // harmless).
    vector_refused.store(true, std::memory_order_relaxed);
  }
  for (size_t i = 0; i < count; ++i) decommit(ranges[i].iov_base, ranges[i].iov_len);
}

void* reserve(size_t size, size_t alignment) {
  // Readable, so that lock-free readers may test any address of it (a read-only private mapping
  // is charged no commit; its reads map the shared zero page).
  return map_aligned_raw(size, alignment, PROT_READ, MAP_NORESERVE);
}

bool commit(void* p, size_t size) {
  if (injected_failure() || ::mprotect(p, size, PROT_READ | PROT_WRITE) != 0) {
    errno = ENOMEM;
    return false;
  }
  g_map_calls.fetch_add(1, std::memory_order_relaxed);
  note_mapped(size);
  return true;
}

void uncommit(void* p, size_t size) {
  // Stays PROT_READ | PROT_WRITE: lock-free readers that validate pointers by their address range
  // may read it (and find zeros).
  ::madvise(p, size, MADV_DONTNEED);
  g_unmap_calls.fetch_add(1, std::memory_order_relaxed);
  g_bytes_mapped.fetch_sub(size, std::memory_order_relaxed);
}

bool remap_in_place(void* p, size_t old_size, size_t new_size) {
  if constexpr (!kCanRemap) return false;
  if (new_size > old_size && injected_failure()) return false;
  void* q = ::mremap(p, old_size, new_size, 0);  // no MREMAP_MAYMOVE: in place or not at all
  if (q == MAP_FAILED) return false;
  if (new_size > old_size) {
    note_mapped(new_size - old_size);
  } else {
    g_bytes_mapped.fetch_sub(old_size - new_size, std::memory_order_relaxed);
  }
  return true;
}

bool move_pages(void* p, size_t size, void* dst) {
  if constexpr (!kCanRemap) return false;
  void* q = ::mremap(p, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
  if (q == MAP_FAILED) return false;
  // dst's pages were already counted by map(); the source range is gone.
  g_bytes_mapped.fetch_sub(size, std::memory_order_relaxed);
  g_unmap_calls.fetch_add(1, std::memory_order_relaxed);
  return true;
}

uint64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

void inject_map_failures(uint64_t successes) {
  g_budget_from_options.store(true, std::memory_order_relaxed);
  g_map_budget.store(successes, std::memory_order_relaxed);
}

void fill_stats(hak_stats_t* out) {
  out->bytes_mapped = g_bytes_mapped.load(std::memory_order_relaxed);
  out->bytes_mapped_peak = g_bytes_mapped_peak.load(std::memory_order_relaxed);
  out->os_map_calls = g_map_calls.load(std::memory_order_relaxed);
  out->os_unmap_calls = g_unmap_calls.load(std::memory_order_relaxed);
  out->os_decommit_calls = g_decommit_calls.load(std::memory_order_relaxed);
}

}  // namespace hak::os
