// BASE vs NEW regression check (see compare.h).
#include "compare.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>

#include "allocators.h"
#include "summary.h"

namespace hakbench {

namespace {

constexpr double kFutexSlackPerMops = 10;
// Higher is better for these; lower is better for the rest.
const std::set<std::string> kHigherIsBetter = {"throughput_ratio", "cpu_throughput_ratio"};
const char* const kRequired[] = {"workload",    "threads",      "allocator",    "status",
                                 "link",        "ops",          "ops_per_sec",  "max_rss_kb",
                                 "futex_calls", "instructions", "task_clock_ms"};

// Optional: files from before they were added lack them, and only footprint reports them.
const char* const kResidentColumns[] = {"live_bytes", "final_rss_kb"};

// A case (workload, params) at a thread count.
struct Key {
  std::string workload, params;
  int threads = 0;
  auto operator<=>(const Key&) const = default;
};
using Values = std::map<Key, std::map<std::string, std::vector<double>>>;  // -> alloc -> values

struct Extracted {
  Values tput, cpu_tput, rss, futex, ipo, rss_per_live;
  std::set<std::string> allocators;
  ParamsOf params_of;
  std::string missing_resident;  // the resident columns the file lacks, comma-separated
};

Extracted extract(const Table& t, const std::string& name) {
  std::map<std::string, std::size_t> col;
  std::string missing;
  for (const char* c : kRequired) {
    auto i = t.index_of(c);
    if (!i)
      missing += (missing.empty() ? "" : ", ") + std::string(c);
    else
      col[c] = *i;
  }
  if (!missing.empty()) throw UnusableInput(name + ": missing column(s): " + missing);
  Extracted e;
  // Optional: a file without it (written by hand or by other tools) has one case per workload.
  const std::optional<std::size_t> params_col = t.index_of("params");
  for (const char* c : kResidentColumns) {
    if (auto i = t.index_of(c))
      col[c] = *i;
    else
      e.missing_resident += (e.missing_resident.empty() ? "" : ", ") + std::string(c);
  }
  for (const auto& r : t.rows) {
    if (r[col["status"]] != "ok") continue;
    const std::string& alloc = r[col["allocator"]];
    e.allocators.insert(alloc);
    Key k{r[col["workload"]], params_col ? r[*params_col] : "",
          std::atoi(r[col["threads"]].c_str())};
    e.params_of[k.workload].insert(k.params);
    auto ops = cell_number(r[col["ops"]]);
    if (r[col["link"]] == kCallgrindLink) {
      auto ins = cell_number(r[col["instructions"]]);
      if (ins && ops && *ops > 0) e.ipo[k][alloc].push_back(*ins / *ops);
      continue;
    }
    if (auto v = cell_number(r[col["ops_per_sec"]])) e.tput[k][alloc].push_back(*v);
    auto ms = cell_number(r[col["task_clock_ms"]]);
    if (ms && *ms > 0 && ops) e.cpu_tput[k][alloc].push_back(*ops / (*ms / 1e3));
    if (auto v = cell_number(r[col["max_rss_kb"]])) e.rss[k][alloc].push_back(*v);
    auto f = cell_number(r[col["futex_calls"]]);
    if (f && ops && *ops > 0) e.futex[k][alloc].push_back(*f / *ops * 1e6);
    if (!e.missing_resident.empty()) continue;
    auto live = cell_number(r[col["live_bytes"]]);
    auto resident = cell_number(r[col["final_rss_kb"]]);
    if (live && resident && *live > 0) e.rss_per_live[k][alloc].push_back(*resident * 1024 / *live);
  }
  return e;
}

std::optional<double> median_of(const Values& v, const Key& k, const std::string& alloc) {
  auto it = v.find(k);
  if (it == v.end()) return std::nullopt;
  auto a = it->second.find(alloc);
  if (a == it->second.end()) return std::nullopt;
  return median(a->second);
}

// Per key: the metric value of `alloc`, relative to `reference` when `ratio`.
std::map<Key, double> metric(const Values& v, const CompareOptions& o, bool ratio) {
  std::map<Key, double> out;
  for (const auto& [k, per] : v) {
    auto mine = median_of(v, k, o.alloc);
    if (!mine) continue;
    if (!ratio) {
      out[k] = *mine;
      continue;
    }
    auto ref = median_of(v, k, o.reference);
    if (ref && *ref > 0) out[k] = *mine / *ref;
  }
  return out;
}

// The case of `k` as the table and notes name it (see compare.h).
std::string case_name(const Key& k, const ParamsOf& params_of) {
  return hakbench::case_name(k.workload, k.params, params_of);
}

std::string fmt(double v) {
  char buf[32];
  if (std::fabs(v) >= 1000)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

}  // namespace

const std::map<std::string, double>& default_tolerances() {
  static const std::map<std::string, double> d = {
      {"throughput_ratio", 0.15}, {"cpu_throughput_ratio", 0.15}, {"rss_ratio", 0.20},
      {"futex_per_mops", 0.50},   {"instructions_per_op", 0.02},  {"rss_per_live_byte", 0.10}};
  return d;
}

std::pair<std::string, double> parse_tolerance(const std::string& text) {
  auto eq = text.find('=');
  std::string names;
  for (auto& [k, v] : default_tolerances()) names += (names.empty() ? "" : ", ") + k;
  if (eq == std::string::npos)
    throw std::invalid_argument("--tolerance: expected metric=value, got '" + text + "'");
  std::string metric = text.substr(0, eq), value = text.substr(eq + 1);
  if (!default_tolerances().count(metric))
    throw std::invalid_argument("--tolerance: unknown metric '" + metric + "' (metrics: " + names +
                                ")");
  bool percent = !value.empty() && value.back() == '%';
  if (percent) value.pop_back();
  char* end = nullptr;
  double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || !std::isfinite(v) || v < 0)
    throw std::invalid_argument("--tolerance: bad value for '" + metric + "': '" +
                                text.substr(eq + 1) +
                                "' (expected a non-negative fraction like 0.1 or a percentage "
                                "like 10%)");
  return {metric, percent ? v / 100 : v};
}

CompareResult compare_tables(const Table& base, const std::string& base_name, const Table& now,
                             const std::string& now_name, const CompareOptions& options) {
  Extracted b = extract(base, base_name), n = extract(now, now_name);
  if (!b.allocators.count(options.alloc))
    throw UnusableInput(base_name + ": no ok rows of allocator '" + options.alloc + "'");
  if (!n.allocators.count(options.alloc))
    throw UnusableInput(now_name + ": no ok rows of allocator '" + options.alloc + "'");
  auto tol = default_tolerances();
  for (auto& [k, v] : options.tolerance) tol[k] = v;

  ParamsOf params_of = b.params_of;
  for (const auto& [w, ps] : n.params_of) params_of[w].insert(ps.begin(), ps.end());
  auto only_in = [&](const char* metric, const Key& k, const std::string& file) {
    return std::string(metric) + " " + case_name(k, params_of) +
           " threads=" + std::to_string(k.threads) + ": only in " + file;
  };

  CompareResult result;
  struct Spec {
    const char* name;
    Values Extracted::*values;
    bool ratio;
  };
  const Spec specs[] = {{"throughput_ratio", &Extracted::tput, true},
                        {"cpu_throughput_ratio", &Extracted::cpu_tput, true},
                        {"rss_ratio", &Extracted::rss, true},
                        {"futex_per_mops", &Extracted::futex, false},
                        {"instructions_per_op", &Extracted::ipo, false},
                        {"rss_per_live_byte", &Extracted::rss_per_live, true}};
  for (const Spec& s : specs) {
    if (s.values == &Extracted::rss_per_live) {
      const bool base_lacks = !b.missing_resident.empty();
      if (base_lacks || !n.missing_resident.empty()) {
        result.notes.push_back(std::string(s.name) + ": skipped: " +
                               (base_lacks ? base_name + " has no " + b.missing_resident
                                           : now_name + " has no " + n.missing_resident) +
                               " column(s) (written before the schema had them)");
        continue;
      }
    }
    auto bm = metric(b.*(s.values), options, s.ratio);
    auto nm = metric(n.*(s.values), options, s.ratio);
    const double t = tol[s.name];
    const bool higher_better = kHigherIsBetter.count(s.name) > 0;
    for (auto& [k, bv] : bm) {
      auto it = nm.find(k);
      if (it == nm.end()) {
        result.notes.push_back(only_in(s.name, k, base_name));
        continue;
      }
      CompareLine line{.metric = s.name,
                       .workload = k.workload,
                       .params = k.params,
                       .case_name = case_name(k, params_of),
                       .threads = k.threads,
                       .base = bv,
                       .now = it->second,
                       .tolerance = t,
                       .verdict = "ok"};
      line.change = bv != 0 ? (it->second - bv) / bv : (it->second == 0 ? 0 : INFINITY);
      double slack = std::string(s.name) == "futex_per_mops" ? kFutexSlackPerMops : 0;
      bool worse = higher_better ? it->second < bv * (1 - t) : it->second > bv * (1 + t) + slack;
      bool better = higher_better ? it->second > bv * (1 + t) : it->second < bv * (1 - t) - slack;
      if (worse) {
        line.verdict = "REGRESSED";
        result.regressed = true;
      } else if (better) {
        line.verdict = "better";
      }
      result.lines.push_back(line);
    }
    for (auto& [k, nv] : nm)
      if (!bm.count(k)) result.notes.push_back(only_in(s.name, k, now_name));
  }
  if (result.lines.empty())
    throw UnusableInput("no overlap: no workload × threads has a metric of '" + options.alloc +
                        "' (against '" + options.reference + "') in both " + base_name + " and " +
                        now_name);
  return result;
}

std::string CompareResult::table() const {
  std::vector<std::vector<std::string>> cells{
      {"metric", "workload", "threads", "base", "new", "change", "tolerance", "verdict"}};
  for (const auto& l : lines) {
    char change[32], tol[32];
    if (std::isfinite(l.change))
      std::snprintf(change, sizeof change, "%+.1f%%", l.change * 100);
    else
      std::snprintf(change, sizeof change, "new");
    std::snprintf(tol, sizeof tol, "%.0f%%", l.tolerance * 100);
    if (l.tolerance * 100 != std::floor(l.tolerance * 100))
      std::snprintf(tol, sizeof tol, "%.1f%%", l.tolerance * 100);
    cells.push_back({l.metric, l.case_name, std::to_string(l.threads), fmt(l.base), fmt(l.now),
                     change, tol, l.verdict});
  }
  std::string out = render_table(cells);
  for (const auto& n : notes) out += "note: " + n + "\n";
  return out;
}

}  // namespace hakbench
