// The summary table printed after `run` and `sweep`: per case (workload and params, see
// case_name) and thread count, each allocator's median ops/s over its ok repetitions and its
// ratio to system's median.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "csv.h"

namespace hakbench {

std::optional<double> median(std::vector<double> v);
// Parses a numeric cell; nullopt for NA or anything that is not a finite number.
std::optional<double> cell_number(const std::string& cell);

// Every params value each workload was run with, as the rows hold them.
using ParamsOf = std::map<std::string, std::set<std::string>>;
// The name of a case (workload, params) in tables and notes: the workload alone, or
// "workload [params]" when the rows hold that workload under more than one params value
// (random-mixed at two size ranges, say), so that the two are never pooled or confused.
std::string case_name(const std::string& workload, const std::string& params,
                      const ParamsOf& params_of);

// Renders the table (throughput rows only: link != callgrind; callgrind rows get a separate
// instructions-per-op section). Returns "" when there is nothing ok to show.
std::string summary_table(const std::vector<Row>& rows);

// Left-aligned first column, right-aligned others, two spaces apart.
std::string render_table(const std::vector<std::vector<std::string>>& cells);

}  // namespace hakbench
