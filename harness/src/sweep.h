// Running a list of planned trials one after another: a live progress line, one CSV row per
// measurement written as each trial ends, and every row kept for the summary.
#pragma once

#include <string>
#include <vector>

#include "csv.h"
#include "environment.h"
#include "plan.h"

namespace hakbench {

struct RunOptions {
  std::string config_name;
  bool progress = true;  // the progress line on stderr
};

// Runs the trials in order. Rows go to `writer` (if any) as each trial ends. A trial that is not
// ok is reported on stderr and the run goes on.
std::vector<Row> run_trials(const std::vector<PlannedTrial>& trials, const BuildPaths& paths,
                            const MachineInfo& machine, const RunOptions& options,
                            CsvWriter* writer);

// "1h02m", "3m05s", "12s".
std::string format_duration(double seconds);

}  // namespace hakbench
