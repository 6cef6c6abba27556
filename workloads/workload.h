// The interface every workload implements, and the registry the runner reads.
//
// A workload is a name, a one-line summary, a table of parameters (name, default, help) and a run
// function. The runner parses the command line against that table, calls run() once, times it, and
// prints one JSON line. Workloads call plain malloc/free/new/delete and never know which allocator
// serves them. One op is one malloc or one free (workloads document any other unit they report).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace hakmem::workloads {

// A parameter value: integers (sizes, counts; "32K"/"1M"/"1G" suffixes accepted on input),
// reals (durations) or text.
using ParamValue = std::variant<std::int64_t, double, std::string>;

struct ParamSpec {
  std::string name;
  ParamValue default_value;
  std::string help;
};

// Everything a run needs: the global options and every parameter with defaults applied.
class RunContext {
 public:
  RunContext(int threads, std::uint64_t seed, bool verify, std::map<std::string, ParamValue> params)
      : threads_(threads), seed_(seed), verify_(verify), params_(std::move(params)) {}

  int threads() const { return threads_; }
  std::uint64_t seed() const { return seed_; }
  bool verify() const { return verify_; }
  const std::map<std::string, ParamValue>& params() const { return params_; }

  // Typed access; the runner has already checked every value against the spec's type, so a
  // mismatch here is a bug in the workload (it throws std::bad_variant_access).
  std::int64_t integer(const std::string& name) const {
    return std::get<std::int64_t>(params_.at(name));
  }
  double real(const std::string& name) const { return std::get<double>(params_.at(name)); }
  const std::string& text(const std::string& name) const {
    return std::get<std::string>(params_.at(name));
  }

 private:
  int threads_;
  std::uint64_t seed_;
  bool verify_;
  std::map<std::string, ParamValue> params_;
};

struct RunResult {
  std::uint64_t ops = 0;
  // Workload-specific numbers (counts, memory figures) that go into the JSON "extra" object.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

struct Workload {
  std::string name;
  std::string summary;
  std::vector<ParamSpec> params;
  std::function<RunResult(const RunContext&)> run;
  // Self-test workloads for the harness's own tests: listed by --list-json, hidden from --help.
  bool internal = false;
};

// Every workload, in the order --help lists them. Each workload's file defines its factory.
std::span<const Workload> all_workloads();
const Workload* find_workload(std::string_view name);

Workload make_larson();
Workload make_random_mixed();
Workload make_bg_spill();
Workload make_producer_consumer();
Workload make_cache_scratch();
Workload make_footprint();
std::vector<Workload> make_selftests();

}  // namespace hakmem::workloads
