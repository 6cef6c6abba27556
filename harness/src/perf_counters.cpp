// perf_event_open counters on a child process (see perf_counters.h).
#include "perf_counters.h"

#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace hakbench {

namespace {

long perf_event_open(perf_event_attr* attr, pid_t pid, int cpu, int group_fd, unsigned long flags) {
  return ::syscall(SYS_perf_event_open, attr, pid, cpu, group_fd, flags);
}

struct Spec {
  Counter counter;
  std::uint32_t type;
  std::uint64_t config;  // for tracepoints: filled from tracefs
  const char* tracepoint;
};

constexpr Spec kSpecs[] = {
    {Counter::futex, PERF_TYPE_TRACEPOINT, 0, "syscalls/sys_enter_futex"},
    {Counter::syscalls, PERF_TYPE_TRACEPOINT, 0, "raw_syscalls/sys_enter"},
    {Counter::mmap, PERF_TYPE_TRACEPOINT, 0, "syscalls/sys_enter_mmap"},
    {Counter::munmap, PERF_TYPE_TRACEPOINT, 0, "syscalls/sys_enter_munmap"},
    {Counter::madvise, PERF_TYPE_TRACEPOINT, 0, "syscalls/sys_enter_madvise"},
    {Counter::task_clock_ns, PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK, nullptr},
    {Counter::context_switches, PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES, nullptr},
    {Counter::page_faults, PERF_TYPE_SOFTWARE, PERF_COUNT_SW_PAGE_FAULTS, nullptr},
    {Counter::cycles, PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES, nullptr},
    {Counter::instructions, PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS, nullptr},
    {Counter::cache_misses, PERF_TYPE_HARDWARE, PERF_COUNT_HW_CACHE_MISSES, nullptr},
    {Counter::branch_misses, PERF_TYPE_HARDWARE, PERF_COUNT_HW_BRANCH_MISSES, nullptr},
};

bool g_noted_tracepoints = false;
bool g_noted_hardware = false;
bool g_noted_software = false;

}  // namespace

std::optional<std::uint64_t> tracepoint_id(const std::string& group_name) {
  for (const char* root : {"/sys/kernel/tracing/events/", "/sys/kernel/debug/tracing/events/"}) {
    std::ifstream in(std::string(root) + group_name + "/id");
    std::uint64_t id;
    if (in >> id) return id;
  }
  return std::nullopt;
}

PerfCounters::~PerfCounters() {
  for (int fd : fds_)
    if (fd >= 0) ::close(fd);
}

void PerfCounters::open_on(pid_t pid) {
  std::string tp_missing, hw_err, sw_err;
  for (const Spec& s : kSpecs) {
    perf_event_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = s.type;
    attr.config = s.config;
    if (s.tracepoint) {
      auto id = tracepoint_id(s.tracepoint);
      if (!id) {
        tp_missing += std::string(tp_missing.empty() ? "" : ", ") + s.tracepoint;
        continue;
      }
      attr.config = *id;
    }
    attr.disabled = 1;
    attr.inherit = 1;
    attr.enable_on_exec = 1;
    long fd = perf_event_open(&attr, pid, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) {
      if (errno == ESRCH) return;  // the child is already gone: nothing to say about counters
      std::string err = std::strerror(errno);
      if (s.type == PERF_TYPE_HARDWARE) {
        hw_err = err;
      } else if (s.tracepoint) {
        tp_missing += std::string(tp_missing.empty() ? "" : ", ") + s.tracepoint + " (" + err + ")";
      } else {
        sw_err = err;
      }
      continue;
    }
    fds_[static_cast<std::size_t>(s.counter)] = static_cast<int>(fd);
  }
  if (!hw_err.empty() && !g_noted_hardware) {
    g_noted_hardware = true;
    std::fprintf(stderr,
                 "hakbench: note: hardware counters (cycles, instructions, cache/branch misses) "
                 "are not available here (perf_event_open: %s); they are NA in the CSV\n",
                 hw_err.c_str());
  }
  if (!tp_missing.empty() && !g_noted_tracepoints) {
    g_noted_tracepoints = true;
    std::fprintf(stderr,
                 "hakbench: note: syscall tracepoints unavailable: %s; the syscall columns are NA "
                 "(as root: mount -t tracefs nodev /sys/kernel/tracing)\n",
                 tp_missing.c_str());
  }
  if (!sw_err.empty() && !g_noted_software) {
    g_noted_software = true;
    std::fprintf(stderr, "hakbench: note: software counters unavailable (%s); they are NA\n",
                 sw_err.c_str());
  }
}

CounterValues PerfCounters::read_and_close() {
  CounterValues out;
  for (std::size_t i = 0; i < kNumCounters; ++i) {
    if (fds_[i] < 0) continue;
    std::uint64_t value = 0;
    if (::read(fds_[i], &value, sizeof value) == static_cast<ssize_t>(sizeof value))
      out.v[i] = value;
    ::close(fds_[i]);
    fds_[i] = -1;
  }
  return out;
}

}  // namespace hakbench
