// Turning a trial's outcome into CSV rows: the machine metadata, the runner's measurements, the
// counters and rusage (see DESIGN.md §3 for the schema).
#pragma once

#include <string>
#include <vector>

#include "csv.h"
#include "environment.h"
#include "trial.h"

namespace hakbench {

// One row per measurement. Micro rows carry NA counters: the counters are per process and the
// process ran every benchmark. Callgrind rows put the total instructions in `instructions` and
// leave max_rss_kb and final_rss_kb NA (they would measure valgrind).
std::vector<Row> make_rows(const MachineInfo& machine, const std::string& config_name,
                           const TrialSpec& spec, const TrialOutcome& outcome);

// Number formatting used in rows: integers without exponent, other values with 6 significant
// digits in plain notation.
std::string format_number(double v);

}  // namespace hakbench
