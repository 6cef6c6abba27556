// Sweep planning, sharding and resume matching (see plan.h).
#include "plan.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>

namespace hakbench {

Plan make_plan(const SweepConfig& config, const BuildPaths& paths, const std::string& git_sha) {
  Plan plan;
  struct Expanded {
    const WorkloadEntry* entry;
    std::vector<Allocator> allocators;
  };
  std::vector<Expanded> expanded;
  std::set<std::string> warned;
  int max_reps = 0;
  for (const auto& e : config.workloads) {
    Expanded x{&e, {}};
    const bool micro = e.name == kMicroWorkload;
    for (const auto& name : e.allocators) {
      if (name == "installed") {
        for (auto& a : known_allocators(paths, git_sha))
          if (a.available && !(micro && a.kind == LinkKind::static_runner))
            x.allocators.push_back(a);
        continue;
      }
      Allocator a = resolve_allocator(name, paths, git_sha);
      if (micro && a.kind == LinkKind::static_runner) {
        a.available = false;
        a.why_unavailable = "micro has no statically linked binary";
      }
      if (!a.available) {
        std::string w =
            "skipping allocator '" + name + "' for " + e.name + ": " + a.why_unavailable;
        if (warned.insert(w).second) plan.warnings.push_back(w);
        continue;
      }
      if (std::none_of(x.allocators.begin(), x.allocators.end(),
                       [&](const Allocator& b) { return b.name == a.name; }))
        x.allocators.push_back(a);
    }
    max_reps = std::max(max_reps, e.reps);
    expanded.push_back(std::move(x));
  }
  // Interleaved: repetition is the outer loop, so drift over time hits every allocator alike.
  for (int rep = 1; rep <= max_reps; ++rep) {
    for (const auto& x : expanded) {
      const WorkloadEntry& e = *x.entry;
      if (rep > e.reps) continue;
      const bool micro = e.name == kMicroWorkload;
      std::vector<int> threads = micro ? std::vector<int>{1} : e.threads;
      for (int t : threads) {
        for (const auto& a : x.allocators) {
          PlannedTrial p;
          p.index = plan.trials.size();
          p.spec.workload = e.name;
          p.spec.params = e.params;
          p.spec.allocator = a;
          p.spec.threads = t;
          p.spec.rep = rep;
          p.spec.seed = config.seed;
          p.spec.timeout_s = e.timeout_s;
          p.spec.cpus = config.cpus;
          p.spec.callgrind = e.callgrind;
          p.spec.verify = e.verify;
          plan.trials.push_back(std::move(p));
        }
      }
    }
  }
  return plan;
}

Shard parse_shard(const std::string& text) {
  auto slash = text.find('/');
  auto num = [&](const std::string& s) {
    if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos)
      throw std::invalid_argument("--shard: expected K/N with 1 <= K <= N, got '" + text + "'");
    return std::stoi(s);
  };
  if (slash == std::string::npos)
    throw std::invalid_argument("--shard: expected K/N with 1 <= K <= N, got '" + text + "'");
  Shard s{num(text.substr(0, slash)), num(text.substr(slash + 1))};
  if (s.n < 1 || s.k < 1 || s.k > s.n)
    throw std::invalid_argument("--shard: expected K/N with 1 <= K <= N, got '" + text + "'");
  return s;
}

std::vector<PlannedTrial> select_shard(const std::vector<PlannedTrial>& trials, Shard shard) {
  std::vector<PlannedTrial> out;
  for (const auto& t : trials)
    if (t.index % static_cast<std::size_t>(shard.n) == static_cast<std::size_t>(shard.k - 1))
      out.push_back(t);
  return out;
}

std::string link_of(const TrialSpec& spec) {
  return spec.callgrind ? kCallgrindLink : link_name(spec.allocator.kind);
}

// Same value: equal text, or equal numbers ("1" and "1.0": the runner prints its own form).
static bool same_value(const std::string& a, const std::string& b) {
  if (a == b) return true;
  char *ea = nullptr, *eb = nullptr;
  double x = std::strtod(a.c_str(), &ea), y = std::strtod(b.c_str(), &eb);
  return !a.empty() && !b.empty() && *ea == '\0' && *eb == '\0' && x == y;
}

static bool params_include(const std::string& row_params, const Params& wanted) {
  std::map<std::string, std::string> have;
  std::size_t pos = 0;
  while (pos <= row_params.size()) {
    std::size_t semi = row_params.find(';', pos);
    std::string kv =
        row_params.substr(pos, semi == std::string::npos ? std::string::npos : semi - pos);
    if (auto eq = kv.find('='); eq != std::string::npos) have[kv.substr(0, eq)] = kv.substr(eq + 1);
    if (semi == std::string::npos) break;
    pos = semi + 1;
  }
  for (const auto& [k, v] : wanted) {
    auto it = have.find(k);
    if (it == have.end() || !same_value(it->second, v)) return false;
  }
  return true;
}

bool row_matches(const Row& row, const std::string& config_name, const TrialSpec& spec) {
  if (row[Col::config] != config_name) return false;
  if (row[Col::allocator] != spec.allocator.name) return false;
  if (row[Col::link] != link_of(spec)) return false;
  if (row[Col::rep] != std::to_string(spec.rep)) return false;
  if (spec.workload == kMicroWorkload) {
    const std::string& w = row[Col::workload];
    if (w != kMicroWorkload && w.rfind(std::string(kMicroWorkload) + "/", 0) != 0) return false;
  } else {
    if (row[Col::workload] != spec.workload) return false;
    if (row[Col::threads] != std::to_string(spec.threads)) return false;
  }
  return params_include(row[Col::params], spec.params);
}

std::vector<PlannedTrial> without_done(const std::vector<PlannedTrial>& trials,
                                       const std::vector<Row>& existing,
                                       const std::string& config_name) {
  std::vector<PlannedTrial> out;
  for (const auto& t : trials) {
    bool done = std::any_of(existing.begin(), existing.end(),
                            [&](const Row& r) { return row_matches(r, config_name, t.spec); });
    if (!done) out.push_back(t);
  }
  return out;
}

std::string trial_key(const Row& row) {
  std::string key;
  for (Col c :
       {Col::config, Col::workload, Col::params, Col::allocator, Col::link, Col::threads, Col::rep})
    key += row[c] + "|";
  return key;
}

}  // namespace hakbench
