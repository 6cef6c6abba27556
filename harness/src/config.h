// Sweep configs in TOML: parsing, validation and the errors that name file, key and expectation.
//
//   [sweep]                      # defaults for every workload entry
//   name = "default"             # the `config` column (default: the file's stem)
//   allocators = "installed"     # or a list: ["system", "hakmem", "/path/libfoo.so"]
//   threads = [1, 2, 4, 8]
//   reps = 3
//   timeout_s = 120              # per trial
//   seed = 42                    # optional: passed as --seed
//   cpus = "0,1"                 # optional: pin every trial
//   verify = false               # optional: pass --verify
//
//   [[workload]]                 # one entry per workload (a name may appear twice)
//   name = "larson"
//   params = { seconds = 1 }     # passed as --seconds=1
//   threads, allocators, reps, timeout_s, verify   # optional overrides of [sweep]
//   callgrind = false            # true: run under valgrind --tool=callgrind
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "trial.h"

namespace hakbench {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct WorkloadEntry {
  std::string name;
  Params params;
  std::vector<int> threads;
  std::vector<std::string> allocators;  // "installed" expands at plan time
  int reps = 1;
  double timeout_s = 120;
  bool callgrind = false;
  bool verify = false;
  std::string key;  // "workload[3]": for error messages
};

struct SweepConfig {
  std::string path;
  std::string name;
  std::optional<std::uint64_t> seed;
  std::vector<int> cpus;
  std::vector<WorkloadEntry> workloads;
};

// Parses a config file; throws ConfigError("FILE: key 'K': expected ..., got ...").
SweepConfig load_config(const std::string& path);
// The same from text (path is used in messages and for the default name).
SweepConfig parse_config(const std::string& text, const std::string& path);

// What the runner says it can run (`hakmem-workload --list-json`).
struct WorkloadInfo {
  std::string name, summary;
  std::vector<std::string> params;
  std::vector<std::pair<std::string, std::string>> param_defaults;  // name, default
  std::vector<std::string> param_help;
  bool internal = false;
};
// Parses --list-json output; throws std::runtime_error on malformed JSON.
std::vector<WorkloadInfo> parse_catalog(const std::string& json_text);
// Runs the runner's --list-json; throws std::runtime_error when it cannot.
std::vector<WorkloadInfo> load_catalog(const std::string& runner);

// Checks workload names and parameter names against the catalog (micro is always allowed when
// `micro_available`); throws ConfigError naming the key.
void check_against_catalog(const SweepConfig& config, const std::vector<WorkloadInfo>& catalog,
                           bool micro_available);

}  // namespace hakbench
