// Sequential trial execution with progress (see sweep.h).
#include "sweep.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "records.h"

namespace hakbench {

std::string format_duration(double seconds) {
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

std::vector<Row> run_trials(const std::vector<PlannedTrial>& trials, const BuildPaths& paths,
                            const MachineInfo& machine, const RunOptions& options,
                            CsvWriter* writer) {
  std::vector<Row> all;
  const bool tty = ::isatty(2);
  const auto start = std::chrono::steady_clock::now();
  const std::size_t n = trials.size();
  for (std::size_t i = 0; i < n; ++i) {
    const TrialSpec& spec = trials[i].spec;
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (options.progress) {
      std::string eta = i ? "~" + format_duration(elapsed / i * (n - i)) + " left" : "";
      std::fprintf(stderr, "%s[%zu/%zu] %s %s %s threads=%d rep=%d  elapsed %s %s%s",
                   tty ? "\r\033[K" : "", i + 1, n, spec.workload.c_str(),
                   spec.allocator.name.c_str(), spec.callgrind ? "(callgrind)" : "", spec.threads,
                   spec.rep, format_duration(elapsed).c_str(), eta.c_str(), tty ? "" : "\n");
      std::fflush(stderr);
    }
    TrialOutcome outcome = run_trial(spec, paths);
    if (outcome.status != "ok") {
      std::fprintf(stderr, "%s%s %s threads=%d rep=%d: %s%s%s\n", tty ? "\r\033[K" : "",
                   spec.workload.c_str(), spec.allocator.name.c_str(), spec.threads, spec.rep,
                   outcome.status.c_str(), outcome.detail.empty() ? "" : ": ",
                   outcome.detail.c_str());
    }
    for (Row& row : make_rows(machine, options.config_name, spec, outcome)) {
      if (writer) writer->write(row);
      all.push_back(std::move(row));
    }
  }
  if (options.progress && n) {
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "%s%zu trial(s) in %s\n", tty ? "\r\033[K" : "", n,
                 format_duration(elapsed).c_str());
  }
  return all;
}

}  // namespace hakbench
