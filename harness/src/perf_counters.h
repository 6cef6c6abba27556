// Counters opened with perf_event_open on a stopped child before it execs: syscall tracepoints
// (futex, all syscalls, mmap, munmap, madvise), software counters (task clock, context switches,
// page faults) and hardware counters (cycles, instructions, cache and branch misses) where the
// machine has them. Every counter is inherited by the child's threads and enabled on exec.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace hakbench {

enum class Counter {
  futex,
  syscalls,
  mmap,
  munmap,
  madvise,
  task_clock_ns,
  context_switches,
  page_faults,
  cycles,
  instructions,
  cache_misses,
  branch_misses,
  count_
};
inline constexpr std::size_t kNumCounters = static_cast<std::size_t>(Counter::count_);

struct CounterValues {
  std::array<std::optional<std::uint64_t>, kNumCounters> v{};
  std::optional<std::uint64_t> get(Counter c) const { return v[static_cast<std::size_t>(c)]; }
};

// The tracepoint id of "group/name" from tracefs (/sys/kernel/tracing or
// /sys/kernel/debug/tracing), or nullopt when tracefs is not mounted or lacks it.
std::optional<std::uint64_t> tracepoint_id(const std::string& group_name);

class PerfCounters {
 public:
  PerfCounters() { fds_.fill(-1); }
  ~PerfCounters();
  PerfCounters(const PerfCounters&) = delete;
  PerfCounters& operator=(const PerfCounters&) = delete;

  // Opens every counter it can on `pid` (disabled, inherit, enable_on_exec). A counter that
  // cannot be opened stays closed and reads as NA. Notes once per process (on stderr) which
  // groups are unavailable and why.
  void open_on(pid_t pid);
  // Reads every open counter (call after the child has been reaped) and closes them.
  CounterValues read_and_close();

 private:
  std::array<int, kNumCounters> fds_;
};

}  // namespace hakbench
