// The regression check: BASE.csv against NEW.csv, per case and thread count, on metrics that
// survive a noisy machine because each is relative to glibc measured in the same file, or is
// deterministic (callgrind instruction counts).
//
// A case is a workload with its params (the `params` cell as written; empty for a file without
// that column): a config may list one workload twice with different params, and those are two
// cases, never merged into one median. A case whose params differ between the files is in only
// one of them (a note, not a comparison). The table and notes name a case by its workload alone
// when the workload has one params value across both files, else "workload [params]", as the
// plots do.
//
// Metrics (each for the allocator under test, default hakmem; medians over ok repetitions):
//   throughput_ratio     median ops/s ÷ system's median ops/s (non-callgrind rows)
//                        regression: new < base × (1 − tol); default tol 0.15
//   cpu_throughput_ratio the same with ops per CPU-second (ops ÷ task_clock_ms): less sensitive
//                        to other processes on a shared machine (they take wall time, not the
//                        trial's CPU time); default tol 0.15
//   rss_ratio            median max_rss_kb ÷ system's median max_rss_kb
//                        regression: new > base × (1 + tol); default tol 0.20
//   futex_per_mops       median futex_calls per million ops
//                        regression: new > base × (1 + tol) + 10 (absolute slack for near-zero
//                        counts); default tol 0.50
//   instructions_per_op  median callgrind instructions ÷ ops (link = callgrind rows)
//                        regression: new > base × (1 + tol); default tol 0.02
//   rss_per_live_byte    median final_rss_kb × 1024 ÷ live_bytes ÷ system's (workloads that
//                        report them: footprint); skipped with a note when either file lacks
//                        the columns; regression: new > base × (1 + tol); default tol 0.10
// Improvements beyond tolerance are reported as "better" and never fail.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "csv.h"

namespace hakbench {

// Input that cannot be compared (exit 2): missing columns, allocator absent, no overlap.
struct UnusableInput : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct CompareOptions {
  std::string alloc = "hakmem";
  std::string reference = "system";
  std::map<std::string, double> tolerance;  // metric -> relative tolerance
};

// The default tolerances, by metric name.
const std::map<std::string, double>& default_tolerances();
// Parses "metric=value" where value is a fraction ("0.1") or a percentage ("10%"); throws
// std::invalid_argument naming the unknown metric or bad value.
std::pair<std::string, double> parse_tolerance(const std::string& text);

struct CompareLine {
  std::string metric, workload, params;
  std::string case_name;  // workload, or "workload [params]" (see the top of this file)
  int threads = 0;
  double base = 0, now = 0, change = 0, tolerance = 0;
  std::string verdict;  // ok, better, REGRESSED
};

struct CompareResult {
  std::vector<CompareLine> lines;
  std::vector<std::string> notes;  // keys present in only one file, checks skipped
  bool regressed = false;
  std::string table() const;
};

// Throws UnusableInput with the reason.
CompareResult compare_tables(const Table& base, const std::string& base_name, const Table& now,
                             const std::string& now_name, const CompareOptions& options);

}  // namespace hakbench
