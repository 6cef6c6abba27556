// Sweep planning: the cross product of a config (workloads × allocators × threads × reps) in
// interleaved order (rep 1 of everything, then rep 2, ...), sharding (every N-th trial), and the
// identity of a trial used to resume and to check merges.
#pragma once

#include <string>
#include <vector>

#include "config.h"
#include "csv.h"
#include "trial.h"

namespace hakbench {

struct PlannedTrial {
  std::size_t index = 0;  // position in the unsharded plan
  TrialSpec spec;
};

struct Plan {
  std::vector<PlannedTrial> trials;
  std::vector<std::string> warnings;  // allocators skipped as unavailable, and why
};

// Expands the config. Allocator names resolve against this machine; "installed" means every
// available known allocator (hakmem-static is left out for micro, which has no static binary).
Plan make_plan(const SweepConfig& config, const BuildPaths& paths, const std::string& git_sha);

struct Shard {
  int k = 1, n = 1;  // 1-based: shard k of n
};
// Parses "K/N" (1 <= K <= N); throws std::invalid_argument with the reason.
Shard parse_shard(const std::string& text);
// The trials of shard k: those whose plan index i satisfies i % n == k - 1.
std::vector<PlannedTrial> select_shard(const std::vector<PlannedTrial>& trials, Shard shard);

// The link column value a trial's rows get.
std::string link_of(const TrialSpec& spec);

// True when `row` (of `config_name`) records the planned trial: same config, workload (micro/*
// rows belong to the micro trial), allocator, link, threads (not for micro), rep, and every
// requested parameter appears in the row's params.
bool row_matches(const Row& row, const std::string& config_name, const TrialSpec& spec);

// Drops the trials that already have a row in `existing`.
std::vector<PlannedTrial> without_done(const std::vector<PlannedTrial>& trials,
                                       const std::vector<Row>& existing,
                                       const std::string& config_name);

// A row's trial identity: config|workload|params|allocator|link|threads|rep.
std::string trial_key(const Row& row);

}  // namespace hakbench
