// Summary table of medians and ratios to system (see summary.h).
#include "summary.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "allocators.h"

namespace hakbench {

std::optional<double> median(std::vector<double> v) {
  if (v.empty()) return std::nullopt;
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::optional<double> cell_number(const std::string& cell) {
  if (cell.empty() || cell == kNA) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(cell.c_str(), &end);
  if (end == cell.c_str() || *end != '\0' || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::string render_table(const std::vector<std::vector<std::string>>& cells) {
  std::vector<std::size_t> width;
  for (const auto& row : cells)
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  std::string out;
  for (const auto& row : cells) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      std::string pad(width[i] - row[i].size(), ' ');
      line += (i ? "  " : "") + (i == 0 ? row[i] + pad : pad + row[i]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

static std::string human_rate(double v) {
  char buf[32];
  if (v >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (v >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string case_name(const std::string& workload, const std::string& params,
                      const ParamsOf& params_of) {
  auto it = params_of.find(workload);
  if (params.empty() || it == params_of.end() || it->second.size() < 2) return workload;
  return workload + " [" + params + "]";
}

std::string summary_table(const std::vector<Row>& rows) {
  // (case name, threads) -> allocator -> values, keeping first-seen order of allocators.
  using Key = std::pair<std::string, int>;
  std::map<Key, std::map<std::string, std::vector<double>>> tput, instr;
  std::vector<std::string> allocs;
  auto note_alloc = [&](const std::string& a) {
    if (std::find(allocs.begin(), allocs.end(), a) == allocs.end()) allocs.push_back(a);
  };
  ParamsOf params_of;
  for (const auto& r : rows) {
    if (r[Col::status] == "ok") params_of[r[Col::workload]].insert(r[Col::params]);
  }
  std::size_t not_ok = 0;
  for (const auto& r : rows) {
    if (r[Col::status] != "ok") {
      ++not_ok;
      continue;
    }
    Key k{case_name(r[Col::workload], r[Col::params], params_of),
          std::atoi(r[Col::threads].c_str())};
    if (r[Col::link] == kCallgrindLink) {
      auto ins = cell_number(r[Col::instructions]);
      auto ops = cell_number(r[Col::ops]);
      if (ins && ops && *ops > 0) instr[k][r[Col::allocator]].push_back(*ins / *ops);
      continue;
    }
    auto v = cell_number(r[Col::ops_per_sec]);
    if (!v) continue;
    note_alloc(r[Col::allocator]);
    tput[k][r[Col::allocator]].push_back(*v);
  }
  // system first, then the others as seen.
  if (auto it = std::find(allocs.begin(), allocs.end(), "system"); it != allocs.end()) {
    allocs.erase(it);
    allocs.insert(allocs.begin(), "system");
  }
  std::string out;
  if (!tput.empty()) {
    std::vector<std::vector<std::string>> cells;
    std::vector<std::string> head{"workload", "threads"};
    for (auto& a : allocs) head.push_back(a);
    cells.push_back(head);
    for (auto& [k, per] : tput) {
      std::vector<std::string> line{k.first, std::to_string(k.second)};
      std::optional<double> sys;
      if (auto it = per.find("system"); it != per.end()) sys = median(it->second);
      for (auto& a : allocs) {
        auto it = per.find(a);
        if (it == per.end()) {
          line.push_back("-");
          continue;
        }
        double m = *median(it->second);
        std::string cell = human_rate(m);
        if (sys && *sys > 0 && a != "system") {
          char buf[32];
          double ratio = m / *sys;
          std::snprintf(buf, sizeof buf, ratio >= 0.1 ? " (x%.2f)" : " (x%.2g)", ratio);
          cell += buf;
        }
        line.push_back(cell);
      }
      cells.push_back(line);
    }
    out += "median ops/s (ratio to system)\n" + render_table(cells);
  }
  if (!instr.empty()) {
    std::vector<std::vector<std::string>> cells{{"workload", "threads", "allocator", "instr/op"}};
    for (auto& [k, per] : instr)
      for (auto& [a, v] : per) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.1f", *median(v));
        cells.push_back({k.first, std::to_string(k.second), a, buf});
      }
    out += "\ncallgrind instructions per op (median)\n" + render_table(cells);
  }
  if (not_ok) out += "\n" + std::to_string(not_ok) + " row(s) not ok (see the status column)\n";
  return out;
}

}  // namespace hakbench
