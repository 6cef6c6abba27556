// Trial outcome to CSV rows (see records.h).
#include "records.h"

#include <cmath>
#include <cstdio>

#include "plan.h"

namespace hakbench {

std::string format_number(double v) {
  if (!std::isfinite(v)) return std::string(kNA);
  char buf[64];
  if (std::fabs(v) < 9.0e15 && v == std::floor(v)) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.6g", v);
    // Avoid exponents for big rates: fall back to fixed notation.
    if (std::string(buf).find('e') != std::string::npos) std::snprintf(buf, sizeof buf, "%.3f", v);
  }
  return buf;
}

static std::string opt(const std::optional<double>& v) {
  return v ? format_number(*v) : std::string(kNA);
}
static std::string opt(const std::optional<std::uint64_t>& v) {
  return v ? std::to_string(*v) : std::string(kNA);
}

std::vector<Row> make_rows(const MachineInfo& machine, const std::string& config_name,
                           const TrialSpec& spec, const TrialOutcome& outcome) {
  std::vector<Row> rows;
  const std::string timestamp = utc_timestamp();
  const bool micro = spec.workload == kMicroWorkload;
  for (const auto& m : outcome.measurements) {
    Row r;
    r[Col::timestamp] = timestamp;
    r[Col::git_sha] = machine.git_sha;
    r[Col::host] = machine.host;
    r[Col::cpu] = machine.cpu;
    r[Col::kernel] = machine.kernel;
    r[Col::config] = config_name;
    r[Col::workload] = m.workload;
    r[Col::params] = m.params.empty() ? std::string(kNA) : m.params;
    r[Col::allocator] = spec.allocator.name;
    r[Col::allocator_version] = spec.allocator.version.empty() ? "NA" : spec.allocator.version;
    r[Col::link] = link_of(spec);
    r[Col::threads] = std::to_string(m.threads);
    r[Col::rep] = std::to_string(spec.rep);
    r[Col::status] = outcome.status;
    if (outcome.status == "ok") {
      r[Col::ops] = opt(m.ops);
      r[Col::seconds] = opt(m.seconds);
      r[Col::ops_per_sec] = opt(m.ops_per_sec);
      r[Col::live_bytes] = opt(m.live_bytes);
      // Under callgrind the resident set is valgrind's, as for max_rss_kb.
      if (!spec.callgrind) r[Col::final_rss_kb] = opt(m.final_rss_kb);
    }
    if (!micro) {
      if (!spec.callgrind && outcome.max_rss_kb && *outcome.max_rss_kb > 0)
        r[Col::max_rss_kb] = std::to_string(*outcome.max_rss_kb);
      const auto& c = outcome.counters;
      r[Col::futex_calls] = opt(c.get(Counter::futex));
      r[Col::syscalls] = opt(c.get(Counter::syscalls));
      r[Col::mmap_calls] = opt(c.get(Counter::mmap));
      r[Col::munmap_calls] = opt(c.get(Counter::munmap));
      r[Col::madvise_calls] = opt(c.get(Counter::madvise));
      if (auto ns = c.get(Counter::task_clock_ns)) r[Col::task_clock_ms] = format_number(*ns / 1e6);
      r[Col::context_switches] = opt(c.get(Counter::context_switches));
      r[Col::page_faults] = opt(c.get(Counter::page_faults));
      r[Col::cycles] = opt(c.get(Counter::cycles));
      r[Col::instructions] = opt(c.get(Counter::instructions));
      r[Col::cache_misses] = opt(c.get(Counter::cache_misses));
      r[Col::branch_misses] = opt(c.get(Counter::branch_misses));
      if (spec.callgrind) r[Col::instructions] = opt(outcome.callgrind_instructions);
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

}  // namespace hakbench
