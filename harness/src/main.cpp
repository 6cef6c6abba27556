// hakbench: the command line. Verbs: list, run, sweep, merge, compare, plot (DESIGN.md §3).
// Exit codes: 0 success; 1 a regression (compare) or trials that were not ok (run); 2 bad input.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <set>

#include "allocators.h"
#include "compare.h"
#include "config.h"
#include "csv.h"
#include "environment.h"
#include "plan.h"
#include "summary.h"
#include "sweep.h"

using namespace hakbench;

namespace {

constexpr int kExitBadInput = 2;

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "hakbench: error: %s\n", msg.c_str());
  std::exit(kExitBadInput);
}

std::vector<std::string> split_commas(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const auto& item : items) {
    std::size_t pos = 0;
    while (pos <= item.size()) {
      std::size_t c = item.find(',', pos);
      std::string part = item.substr(pos, c == std::string::npos ? std::string::npos : c - pos);
      if (!part.empty()) out.push_back(part);
      if (c == std::string::npos) break;
      pos = c + 1;
    }
  }
  return out;
}

void ensure_parent_dir(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
}

int cmd_list(const BuildPaths& paths, const MachineInfo& machine) {
  std::printf("workloads (runner %s):\n", paths.runner.c_str());
  try {
    for (const auto& w : load_catalog(paths.runner)) {
      if (w.internal) continue;
      std::string params;
      for (const auto& [k, d] : w.param_defaults)
        params += (params.empty() ? "" : " ") + k + "=" + d;
      std::printf("  %-18s %s\n  %-18s params: %s\n", w.name.c_str(), w.summary.c_str(), "",
                  params.empty() ? "(none)" : params.c_str());
    }
  } catch (const std::exception& e) {
    std::printf("  unavailable: %s\n", e.what());
  }
  if (is_executable(paths.micro))
    std::printf("  %-18s Google Benchmark micro workloads (%s); params are --benchmark_* flags\n",
                kMicroWorkload, paths.micro.c_str());
  else
    std::printf("  %-18s unavailable: not built: %s\n", kMicroWorkload, paths.micro.c_str());
  std::printf("\nallocators:\n");
  std::vector<std::vector<std::string>> cells{{"  name", "link", "path", "version"}};
  for (const auto& a : known_allocators(paths, machine.git_sha)) {
    if (a.available)
      cells.push_back(
          {"  " + a.name, link_name(a.kind), a.path.empty() ? "(glibc)" : a.path, a.version});
    else
      cells.push_back({"  " + a.name, "-", "unavailable", a.why_unavailable});
  }
  // Left-align every column for readability.
  std::vector<std::size_t> w(4, 0);
  for (auto& r : cells)
    for (std::size_t i = 0; i < 4; ++i) w[i] = std::max(w[i], r[i].size());
  for (auto& r : cells)
    std::printf("%-*s  %-*s  %-*s  %s\n", int(w[0]), r[0].c_str(), int(w[1]), r[1].c_str(),
                int(w[2]), r[2].c_str(), r[3].c_str());
  return 0;
}

// For `run`, say "run: --NAME: ..." rather than a config file's "FILE: key '...': ...".
std::string as_run_error(std::string msg) {
  const std::string name_key = "command line: key 'run.name': ";
  const std::string param_key = "command line: key 'run.params.";
  if (msg.rfind(name_key, 0) == 0) return "run: " + msg.substr(name_key.size());
  if (msg.rfind(param_key, 0) == 0) {
    auto end = msg.find("': ", param_key.size());
    if (end != std::string::npos)
      return "run: --" + msg.substr(param_key.size(), end - param_key.size()) + ": " +
             msg.substr(end + 3);
  }
  return msg;
}

void check_catalog_or_die(const SweepConfig& config, const BuildPaths& paths) {
  try {
    check_cpus_usable(config.cpus);
  } catch (const std::invalid_argument& e) {
    die(std::string("cpus: ") + e.what());
  }
  bool needs_runner = std::any_of(config.workloads.begin(), config.workloads.end(),
                                  [](const WorkloadEntry& e) { return e.name != kMicroWorkload; });
  std::vector<WorkloadInfo> catalog;
  if (needs_runner) {
    try {
      catalog = load_catalog(paths.runner);
    } catch (const std::exception& e) {
      die(e.what());
    }
  }
  try {
    check_against_catalog(config, catalog, is_executable(paths.micro));
  } catch (const ConfigError& e) {
    die(as_run_error(e.what()));
  }
}

int exit_for(const std::vector<Row>& rows) {
  return std::all_of(rows.begin(), rows.end(), [](const Row& r) { return r[Col::status] == "ok"; })
             ? 0
             : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hakbench: run allocator benchmarks and record them to CSV (DESIGN.md §3)"};
  app.require_subcommand(1);
  std::string build_dir, runner;
  app.add_option("--build-dir", build_dir,
                 "build directory holding workloads/ and allocator/ (default: the one hakbench "
                 "is in)");
  app.add_option("--runner", runner, "workload runner to use instead of the build's");

  auto* list = app.add_subcommand("list", "workloads and the allocators found on this machine");

  // run
  auto* run = app.add_subcommand("run", "a few trials of one workload, printed as a table");
  run->allow_extras();
  std::string run_workload, run_cpus, run_out;
  std::vector<std::string> run_allocs{"system"}, run_threads_s{"1"}, run_params;
  int run_reps = 1;
  double run_timeout = 300;
  bool run_callgrind = false, run_verify = false;
  std::int64_t run_seed = -1;
  run->add_option("workload", run_workload, "workload name (see list), or micro")->required();
  run->add_option("--alloc", run_allocs, "allocators, comma-separated")->delimiter(',');
  run->add_option("--threads", run_threads_s, "thread counts, comma-separated")->delimiter(',');
  run->add_option("--reps", run_reps, "repetitions")->check(CLI::Range(1, 1000));
  run->add_option("--param", run_params, "workload parameter k=v (or pass --k=v directly)");
  run->add_option("--timeout", run_timeout, "per-trial timeout in seconds")
      ->check(CLI::PositiveNumber);
  run->add_option("--cpus", run_cpus, "pin trials to these CPUs, e.g. 0,1 or 0-3");
  run->add_option("--seed", run_seed, "seed passed to the runner");
  run->add_option("--out", run_out, "also append the rows to this CSV");
  run->add_flag("--callgrind", run_callgrind, "run under valgrind --tool=callgrind");
  run->add_flag("--verify", run_verify, "pass --verify to the runner");

  // sweep
  auto* sweep =
      app.add_subcommand("sweep", "run a config: workloads x allocators x threads x reps");
  std::string sweep_config, sweep_out, sweep_shard, sweep_cpus;
  bool sweep_resume = false, sweep_dry = false;
  sweep->add_option("config", sweep_config, "config TOML")->required();
  sweep->add_option("--out", sweep_out, "output CSV (default results/<config stem>.csv)");
  sweep->add_option("--shard", sweep_shard, "run shard K of N (every N-th trial), e.g. 2/4");
  sweep->add_flag("--resume", sweep_resume, "skip trials already in the output file");
  sweep->add_option("--cpus", sweep_cpus, "pin trials to these CPUs (overrides the config)");
  sweep->add_flag("--dry-run", sweep_dry, "print the planned trials and exit");

  // merge
  auto* merge = app.add_subcommand("merge", "join CSVs (e.g. the shards of one sweep)");
  std::string merge_out;
  std::vector<std::string> merge_in;
  merge->add_option("-o,--out", merge_out, "output CSV (overwritten)")->required();
  merge->add_option("inputs", merge_in, "input CSVs")->required();

  // compare
  auto* compare = app.add_subcommand("compare", "regression check of NEW against BASE");
  std::string cmp_base, cmp_new;
  std::vector<std::string> cmp_tol;
  CompareOptions cmp_opts;
  compare->add_option("base", cmp_base, "baseline CSV")->required();
  compare->add_option("new", cmp_new, "new CSV")->required();
  compare->add_option("--tolerance", cmp_tol,
                      "metric=value (fraction or %): throughput_ratio (default 15%), "
                      "cpu_throughput_ratio (15%), rss_ratio (20%), futex_per_mops (50%, +10 "
                      "absolute), instructions_per_op (2%), rss_per_live_byte (10%)");
  compare->add_option("--alloc", cmp_opts.alloc, "allocator under test (default hakmem)");
  compare->add_option("--reference", cmp_opts.reference, "reference allocator (default system)");

  // plot
  auto* plot = app.add_subcommand("plot", "draw the plots of CSVs (plots/report.py)");
  // Everything after `plot` goes to report.py unchanged: [--out DIR] CSV [CSV...]
  plot->prefix_command();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kExitBadInput;
  }

  const BuildPaths paths = locate_build(build_dir, runner);

  if (*compare) {
    for (const auto& t : cmp_tol) {
      try {
        cmp_opts.tolerance.insert(parse_tolerance(t));
      } catch (const std::invalid_argument& e) {
        die(e.what());
      }
    }
    try {
      Table base = read_csv_file(cmp_base), now = read_csv_file(cmp_new);
      CompareResult r = compare_tables(base, cmp_base, now, cmp_new, cmp_opts);
      std::printf("%s vs %s: %s relative to %s\n", cmp_base.c_str(), cmp_new.c_str(),
                  cmp_opts.alloc.c_str(), cmp_opts.reference.c_str());
      std::fputs(r.table().c_str(), stdout);
      std::printf("%s\n", r.regressed ? "REGRESSION" : "no regression");
      return r.regressed ? 1 : 0;
    } catch (const std::exception& e) {
      die(e.what());
    }
  }

  if (*merge) {
    std::vector<Row> rows;
    std::set<std::string> keys;
    std::size_t dups = 0;
    for (const auto& in : merge_in) {
      if (std::filesystem::exists(merge_out) && std::filesystem::exists(in) &&
          std::filesystem::equivalent(merge_out, in))
        die("merge: the output " + merge_out + " is also an input");
      try {
        for (auto& r : schema_rows(read_csv_file(in), in)) {
          if (!keys.insert(trial_key(r)).second) ++dups;
          rows.push_back(std::move(r));
        }
      } catch (const std::exception& e) {
        die(e.what());
      }
    }
    ensure_parent_dir(merge_out);
    std::filesystem::remove(merge_out);
    CsvWriter w(merge_out);
    for (const auto& r : rows) w.write(r);
    std::fprintf(stderr, "hakbench: merged %zu row(s) from %zu file(s) into %s\n", rows.size(),
                 merge_in.size(), merge_out.c_str());
    if (dups) std::fprintf(stderr, "hakbench: warning: %zu duplicate trial(s)\n", dups);
    return 0;
  }

  if (*plot) {
    std::vector<std::string> args = {paths.source_dir + "/plots/report.py"};
    for (auto& a : plot->remaining()) args.push_back(a);
    if (args.size() == 1) die("plot: expected [--out DIR] CSV [CSV...]");
    std::vector<char*> av{const_cast<char*>("/usr/bin/python3")};
    for (auto& a : args) av.push_back(a.data());
    av.push_back(nullptr);
    ::execv("/usr/bin/python3", av.data());
    die("cannot run /usr/bin/python3: " + std::string(std::strerror(errno)));
  }

  const MachineInfo machine = machine_info(paths.source_dir);
  if (*list) return cmd_list(paths, machine);

  if (*run) {
    SweepConfig config;
    config.path = "command line";
    config.name = "run";
    if (run_seed >= 0) config.seed = static_cast<std::uint64_t>(run_seed);
    if (!run_cpus.empty()) {
      try {
        config.cpus = parse_cpu_list(run_cpus);
      } catch (const std::invalid_argument& e) {
        die(std::string("--cpus: ") + e.what());
      }
    }
    WorkloadEntry e;
    e.name = run_workload;
    e.key = "run";
    e.reps = run_reps;
    e.timeout_s = run_timeout;
    e.callgrind = run_callgrind;
    e.verify = run_verify;
    e.allocators = split_commas(run_allocs);
    for (const auto& t : split_commas(run_threads_s)) {
      char* end = nullptr;
      long v = std::strtol(t.c_str(), &end, 10);
      if (*end || v < 1 || v > 4096) die("--threads: expected positive integers, got '" + t + "'");
      e.threads.push_back(static_cast<int>(v));
    }
    auto add_param = [&](const std::string& kv, const std::string& flag) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) die(flag + ": expected NAME=VALUE, got '" + kv + "'");
      e.params.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    };
    for (const auto& p : run_params) add_param(p, "--param");
    for (const auto& x : run->remaining()) {
      if (x.rfind("--", 0) != 0) die("run: unexpected argument '" + x + "'");
      add_param(x.substr(2), x);
    }
    std::sort(e.params.begin(), e.params.end());
    config.workloads.push_back(e);
    check_catalog_or_die(config, paths);
    Plan plan = make_plan(config, paths, machine.git_sha);
    for (const auto& w : plan.warnings) std::fprintf(stderr, "hakbench: warning: %s\n", w.c_str());
    if (plan.trials.empty()) die("run: no available allocator among those asked for");
    std::unique_ptr<CsvWriter> writer;
    if (!run_out.empty()) {
      ensure_parent_dir(run_out);
      try {
        writer = std::make_unique<CsvWriter>(run_out);
      } catch (const std::exception& ex) {
        die(ex.what());
      }
    }
    auto rows = run_trials(plan.trials, paths, machine, {config.name, true}, writer.get());
    std::fputs(summary_table(rows).c_str(), stdout);
    return exit_for(rows);
  }

  if (*sweep) {
    SweepConfig config;
    try {
      config = load_config(sweep_config);
    } catch (const ConfigError& e) {
      die(e.what());
    }
    if (!sweep_cpus.empty()) {
      try {
        config.cpus = parse_cpu_list(sweep_cpus);
      } catch (const std::invalid_argument& e) {
        die(std::string("--cpus: ") + e.what());
      }
    }
    check_catalog_or_die(config, paths);
    Plan plan = make_plan(config, paths, machine.git_sha);
    for (const auto& w : plan.warnings) std::fprintf(stderr, "hakbench: warning: %s\n", w.c_str());
    std::vector<PlannedTrial> trials = plan.trials;
    if (!sweep_shard.empty()) {
      try {
        trials = select_shard(trials, parse_shard(sweep_shard));
      } catch (const std::invalid_argument& e) {
        die(e.what());
      }
    }
    if (sweep_out.empty()) sweep_out = "results/" + config.name + ".csv";
    std::vector<Row> previous;
    // An empty file is a sweep killed between creating its output and writing the header: like
    // CsvWriter, treat it as holding no trials yet.
    if (sweep_resume && std::filesystem::exists(sweep_out) &&
        std::filesystem::file_size(sweep_out) > 0) {
      try {
        Table done = read_csv_file(sweep_out);
        require_current_schema(done.header, sweep_out);
        previous = schema_rows(done, sweep_out);
      } catch (const std::exception& e) {
        die(std::string("--resume: ") + e.what());
      }
      std::size_t before = trials.size();
      trials = without_done(trials, previous, config.name);
      std::fprintf(stderr, "hakbench: resume: %zu of %zu trial(s) already in %s\n",
                   before - trials.size(), before, sweep_out.c_str());
    }
    if (sweep_dry) {
      for (const auto& t : trials)
        std::printf("%zu %s %s %s threads=%d rep=%d %s\n", t.index, t.spec.workload.c_str(),
                    format_params(t.spec.params).c_str(), t.spec.allocator.name.c_str(),
                    t.spec.threads, t.spec.rep, link_of(t.spec).c_str());
      return 0;
    }
    ensure_parent_dir(sweep_out);
    if (!sweep_resume) std::filesystem::remove(sweep_out);
    std::unique_ptr<CsvWriter> writer;
    try {
      writer = std::make_unique<CsvWriter>(sweep_out);
    } catch (const std::exception& e) {
      die(e.what());
    }
    std::fprintf(stderr, "hakbench: %s: %zu trial(s) -> %s\n", sweep_config.c_str(), trials.size(),
                 sweep_out.c_str());
    auto rows = run_trials(trials, paths, machine, {config.name, true}, writer.get());
    // The summary covers the whole file for this config (resumed rows included).
    std::vector<Row> summary_rows;
    for (auto& r : previous)
      if (r[Col::config] == config.name) summary_rows.push_back(r);
    for (auto& r : rows) summary_rows.push_back(r);
    std::fputs(summary_table(summary_rows).c_str(), stdout);
    return 0;
  }
  return 0;
}
