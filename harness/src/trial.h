// One trial = one child process: fork, pin, open counters on the stopped child, exec the runner
// (preloaded, static, or under callgrind), collect its stdout with a timeout, reap it with wait4,
// and turn what it printed into measurements.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "allocators.h"
#include "environment.h"
#include "perf_counters.h"

namespace hakbench {

using Params = std::vector<std::pair<std::string, std::string>>;  // sorted by key

// The pseudo-workload that runs the Google Benchmark binary; its rows are "micro/<benchmark>".
inline constexpr const char* kMicroWorkload = "micro";

struct TrialSpec {
  std::string workload;
  Params params;  // what the config/CLI asked for (the runner fills in defaults)
  Allocator allocator;
  int threads = 1;
  int rep = 1;
  std::optional<std::uint64_t> seed;
  double timeout_s = 300;
  std::vector<int> cpus;  // empty: no pinning
  bool callgrind = false;
  bool verify = false;
};

// What one row reports about the work done (a trial of `micro` yields one per benchmark).
struct Measurement {
  std::string workload;
  std::string params;  // k=v;k=v sorted by key
  int threads = 1;
  std::optional<double> ops, seconds, ops_per_sec;
  // From the runner's `extra`, for workloads that measure their own resident memory (footprint):
  // the bytes held live at the point where it reads its resident set, and that resident set.
  std::optional<double> live_bytes, final_rss_kb;
};

struct TrialOutcome {
  std::string status;  // ok, crashed:SIGxxx, timeout, failed, verify_failed
  std::string detail;  // for humans: why it is not ok (stderr tail, exit code, parse error)
  std::vector<Measurement> measurements;  // at least one, even when the trial failed
  CounterValues counters;                 // NA under callgrind or for micro rows
  std::optional<std::uint64_t> callgrind_instructions;
  std::optional<long> max_rss_kb;
  double wall_seconds = 0;
};

// "k=v;k=v" with keys sorted.
std::string format_params(Params params);
// "SIGABRT" for SIGABRT, "SIG<n>" for unknown numbers.
std::string signal_name(int sig);
// Parses "0,1,4-6" into a CPU list; throws std::invalid_argument naming the bad part.
std::vector<int> parse_cpu_list(const std::string& text);
// Throws std::invalid_argument naming a CPU this process may not run on.
void check_cpus_usable(const std::vector<int>& cpus);

// The argv a trial executes (runner, arguments, and valgrind in front under callgrind).
std::vector<std::string> trial_argv(const TrialSpec& spec, const BuildPaths& paths,
                                    const std::string& callgrind_out);

TrialOutcome run_trial(const TrialSpec& spec, const BuildPaths& paths);

// Interprets the runner's stdout (one JSON line) for a trial that exited 0.
// Returns an error message, or empty on success.
std::string parse_runner_output(const std::string& out, const TrialSpec& spec, Measurement& m);
// Interprets hakmem-micro's Google Benchmark JSON. Returns an error message or empty.
std::string parse_micro_output(const std::string& out, const TrialSpec& spec,
                               std::vector<Measurement>& ms);
// Total instructions ("summary:" or "totals:" line) of a callgrind output file.
std::optional<std::uint64_t> callgrind_total(const std::string& path);

}  // namespace hakbench
