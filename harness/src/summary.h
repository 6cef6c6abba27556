// The summary table printed after `run` and `sweep`: per workload and thread count, each
// allocator's median ops/s over its ok repetitions and its ratio to system's median.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "csv.h"

namespace hakbench {

std::optional<double> median(std::vector<double> v);
// Parses a numeric cell; nullopt for NA or anything that is not a finite number.
std::optional<double> cell_number(const std::string& cell);

// Renders the table (throughput rows only: link != callgrind; callgrind rows get a separate
// instructions-per-op section). Returns "" when there is nothing ok to show.
std::string summary_table(const std::vector<Row>& rows);

// Left-aligned first column, right-aligned others, two spaces apart.
std::string render_table(const std::vector<std::vector<std::string>>& cells);

}  // namespace hakbench
