// Sweeps end to end through the hakbench binary: a crashing trial becomes a `crashed` row and the
// sweep goes on; sharding N ways and merging gives exactly the unsharded trials; --resume skips
// what is done; a bad config is refused with its message; files of the previous schema merge
// into the current one but are not resumed onto; plus the planning order.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "csv.h"
#include "plan.h"
#include "summary.h"
#include "test_support.h"

namespace hakbench {
namespace {

std::string hakbench_bin() {
  return test::env_path("HAKBENCH");
}
std::string runner() {
  return test::env_path("HAKMEM_WORKLOAD");
}

test::CommandResult hakbench(std::vector<std::string> args) {
  args.insert(args.begin(), {hakbench_bin(), "--runner", runner()});
  return test::run_command(args);
}

std::vector<Row> rows_of(const std::string& path) {
  return schema_rows(read_csv_file(path), path);
}

std::vector<std::string> keys_of(const std::vector<Row>& rows) {
  std::vector<std::string> keys;
  for (const auto& r : rows) keys.push_back(trial_key(r));
  std::sort(keys.begin(), keys.end());
  return keys;
}

TEST(Sweep, CrashedTrialIsARowAndTheSweepContinues) {
  test::ScratchDir dir;
  std::string config = dir.write("crash.toml", R"(
[sweep]
allocators = ["system"]
reps = 2
[[workload]]
name = "selftest-abort"
[[workload]]
name = "selftest-idle"
params = { iters = 1000 }
)");
  auto r = hakbench({"sweep", config, "--out", dir.file("out/crash.csv")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto rows = rows_of(dir.file("out/crash.csv"));
  ASSERT_EQ(rows.size(), 4u);
  // Interleaved: rep 1 of both workloads, then rep 2.
  EXPECT_EQ(rows[0][Col::workload], "selftest-abort");
  EXPECT_EQ(rows[0][Col::status], "crashed:SIGABRT");
  EXPECT_EQ(rows[0][Col::ops_per_sec], "NA");
  EXPECT_EQ(rows[1][Col::workload], "selftest-idle");
  EXPECT_EQ(rows[1][Col::status], "ok");
  EXPECT_EQ(rows[1][Col::ops], "1000");
  EXPECT_EQ(rows[1][Col::rep], "1");
  EXPECT_EQ(rows[2][Col::status], "crashed:SIGABRT");
  EXPECT_EQ(rows[3][Col::rep], "2");
  for (const auto& row : rows) {
    EXPECT_EQ(row[Col::config], "crash");
    EXPECT_EQ(row[Col::link], "libc");
    EXPECT_NE(row[Col::host], "NA");
    EXPECT_NE(row[Col::kernel], "NA");
  }
  EXPECT_NE(r.out.find("median ops/s"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("crashed:SIGABRT"), std::string::npos) << r.err;
}

TEST(Sweep, ShardsMergedEqualTheUnshardedSweepAndResumeCompletes) {
  test::ScratchDir dir;
  const std::string preload = test::env_path("HAKBENCH_FIXTURE_PRELOAD");
  std::string config = dir.write("shard.toml", R"(
[sweep]
allocators = ["system", ")" + preload + R"("]
threads = [1, 2]
reps = 2
[[workload]]
name = "selftest-idle"
params = { iters = 1000 }
[[workload]]
name = "selftest-exit"
params = { code = 4 }
threads = [1]
)");
  auto full = hakbench({"sweep", config, "--out", dir.file("full.csv")});
  ASSERT_EQ(full.exit_code, 0) << full.err;
  auto all = rows_of(dir.file("full.csv"));
  ASSERT_EQ(all.size(), 12u);  // (2 threads + 1) × 2 allocators × 2 reps
  EXPECT_EQ(std::count_if(all.begin(), all.end(),
                          [](const Row& r) { return r[Col::status] == "failed"; }),
            4);
  EXPECT_EQ(all[1][Col::allocator], "hakbench_fixture_preload");
  EXPECT_EQ(all[1][Col::link], "preload");

  std::vector<std::string> parts;
  for (int k = 1; k <= 5; ++k) {
    std::string out = dir.file("shard" + std::to_string(k) + ".csv");
    auto s = hakbench({"sweep", config, "--shard", std::to_string(k) + "/5", "--out", out});
    ASSERT_EQ(s.exit_code, 0) << s.err;
    EXPECT_EQ(rows_of(out).size(), k <= 2 ? 3u : 2u);
    parts.push_back(out);
  }
  std::vector<std::string> merge_args = {"merge", "-o", dir.file("merged.csv")};
  merge_args.insert(merge_args.end(), parts.begin(), parts.end());
  auto m = hakbench(merge_args);
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_EQ(keys_of(rows_of(dir.file("merged.csv"))), keys_of(all));

  // Resume: half a sweep, then --resume finishes exactly the rest, and a second resume runs none.
  const std::string half = dir.file("half.csv");
  ASSERT_EQ(hakbench({"sweep", config, "--shard", "1/2", "--out", half}).exit_code, 0);
  EXPECT_EQ(rows_of(half).size(), 6u);
  auto resumed = hakbench({"sweep", config, "--resume", "--out", half});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resume: 6 of 12 trial(s) already in"), std::string::npos)
      << resumed.err;
  EXPECT_EQ(keys_of(rows_of(half)), keys_of(all));
  auto again = hakbench({"sweep", config, "--resume", "--out", half});
  EXPECT_NE(again.err.find("resume: 12 of 12"), std::string::npos) << again.err;
  EXPECT_EQ(rows_of(half).size(), 12u);
}

// `text` as a file written before live_bytes and final_rss_kb were added.
std::string previous_schema(const std::string& text) {
  Table t = parse_csv(text, "current");
  std::string out;
  t.header.resize(kPreviousNumCols);
  out += csv_line(t.header);
  for (auto& r : t.rows) {
    r.resize(kPreviousNumCols);
    out += csv_line(r);
  }
  return out;
}

TEST(Sweep, PreviousSchemaFilesMergeIntoTheCurrentOneButAreNotResumedOnto) {
  test::ScratchDir dir;
  std::string config = dir.write("c.toml", R"(
[sweep]
allocators = ["system"]
reps = 2
[[workload]]
name = "footprint"
params = { total = 4194304 }
)");
  const std::string current = dir.file("current.csv");
  ASSERT_EQ(hakbench({"sweep", config, "--shard", "1/2", "--out", current}).exit_code, 0);
  ASSERT_EQ(rows_of(current).size(), 1u);
  EXPECT_NE(cell_number(rows_of(current)[0][Col::final_rss_kb]), std::nullopt);
  const std::string old = dir.write("old.csv", previous_schema(test::read_file(current)));

  auto resumed = hakbench({"sweep", config, "--resume", "--out", old});
  EXPECT_EQ(resumed.exit_code, 2);
  EXPECT_NE(resumed.err.find("--resume: " + old +
                             ": header mismatch: the file has the previous "
                             "30-column schema"),
            std::string::npos)
      << resumed.err;
  EXPECT_EQ(test::read_file(old), previous_schema(test::read_file(current)));  // untouched

  const std::string merged = dir.file("merged.csv");
  auto m = hakbench({"merge", "-o", merged, old, current});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_EQ(test::read_file(merged).substr(0, header_line().size()), header_line());
  auto rows = rows_of(merged);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][Col::live_bytes], "NA");
  EXPECT_EQ(rows[0][Col::final_rss_kb], "NA");
  EXPECT_NE(rows[1][Col::live_bytes], "NA");
  // The merged file is current: resuming onto it runs the missing repetition only.
  auto done = hakbench({"sweep", config, "--resume", "--out", merged});
  ASSERT_EQ(done.exit_code, 0) << done.err;
  EXPECT_NE(done.err.find("resume: 1 of 2 trial(s)"), std::string::npos) << done.err;
  EXPECT_EQ(rows_of(merged).size(), 3u);
}

TEST(Sweep, CommittedBaselinesStillRead) {
  const std::string source = test::env_path("HAKBENCH_SOURCE_DIR");
  for (const char* name : {"ci.csv", "default.csv"}) {
    const std::string path = source + "/results/baselines/" + name;
    auto rows = rows_of(path);
    EXPECT_GT(rows.size(), 100u) << path;
  }
}

TEST(Sweep, BadConfigIsRefusedWithExit2AndTheMessage) {
  test::ScratchDir dir;
  std::string config =
      dir.write("bad.toml", "[sweep]\nreps = \"three\"\n[[workload]]\nname = \"larson\"\n");
  auto r = hakbench({"sweep", config, "--out", dir.file("x.csv")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "hakbench: error: " + config +
                       ": key 'sweep.reps': expected a positive integer, got a string (line 2)\n");
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.csv")));
  std::string unknown = dir.write("unknown.toml", "[[workload]]\nname = \"larsen\"\n");
  auto u = hakbench({"sweep", unknown});
  EXPECT_EQ(u.exit_code, 2);
  EXPECT_NE(u.err.find("key 'workload[1].name': unknown workload 'larsen'"), std::string::npos)
      << u.err;
  auto shard = hakbench({"sweep", config, "--shard", "3/2"});
  EXPECT_EQ(shard.exit_code, 2);
}

TEST(Sweep, RunVerbPreloadsEachAllocatorAndPrintsTheTable) {
  const std::string preload = test::env_path("HAKBENCH_FIXTURE_PRELOAD");
  test::ScratchDir dir;
  auto r = test::run_command({hakbench_bin(), "--runner", test::env_path("HAKBENCH_FIXTURE_CHILD"),
                              "run", "preloaded", "--alloc", "system," + preload, "--reps", "2",
                              "--out", dir.file("run.csv")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto rows = rows_of(dir.file("run.csv"));
  ASSERT_EQ(rows.size(), 4u);
  for (const auto& row : rows) {
    EXPECT_EQ(row[Col::config], "run");
    // The fixture reports ops = 1 exactly when the preloaded library is in the process.
    EXPECT_EQ(row[Col::ops], row[Col::allocator] == "system" ? "0" : "1");
  }
  EXPECT_NE(r.out.find("median ops/s (ratio to system)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("hakbench_fixture_preload"), std::string::npos) << r.out;
  // Bad flags are refused with exit 2 and a reason.
  auto bad =
      test::run_command({hakbench_bin(), "--runner", test::env_path("HAKBENCH_FIXTURE_CHILD"),
                         "run", "idle", "--threads", "0"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--threads: expected positive integers, got '0'"), std::string::npos)
      << bad.err;
}

TEST(Plan, InterleavesRepetitionsAndShardsPartitionThePlan) {
  test::ScratchDir dir;
  std::string lib = dir.write("libfake.so.1", "");
  SweepConfig c = [&] {
    SweepConfig x;
    x.name = "p";
    WorkloadEntry e;
    e.name = "w";
    e.threads = {1, 4};
    e.reps = 3;
    e.allocators = {"system", lib, "nonesuch"};
    x.workloads = {e};
    return x;
  }();
  BuildPaths paths;
  Plan plan = make_plan(c, paths, "abc");
  ASSERT_EQ(plan.trials.size(), 12u);
  ASSERT_EQ(plan.warnings.size(), 1u);
  EXPECT_NE(plan.warnings[0].find("'nonesuch'"), std::string::npos);
  EXPECT_EQ(plan.trials[0].spec.allocator.name, "system");
  EXPECT_EQ(plan.trials[1].spec.allocator.name, "fake");
  EXPECT_EQ(plan.trials[1].spec.allocator.path, lib);
  for (std::size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(plan.trials[i].spec.rep, static_cast<int>(i / 4) + 1);
    EXPECT_EQ(plan.trials[i].index, i);
  }
  std::vector<std::size_t> seen;
  for (int k = 1; k <= 5; ++k)
    for (auto& t : select_shard(plan.trials, {k, 5})) seen.push_back(t.index);
  std::sort(seen.begin(), seen.end());
  ASSERT_EQ(seen.size(), 12u);
  for (std::size_t i = 0; i < 12; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_THROW(parse_shard("0/3"), std::invalid_argument);
  EXPECT_THROW(parse_shard("2"), std::invalid_argument);
  EXPECT_EQ(parse_shard("2/3").k, 2);
}

TEST(Plan, ResumeMatchesRowsWithTheRunnersSpellingOfNumbers) {
  TrialSpec s;
  s.workload = "larson";
  s.params = {{"seconds", "1"}};
  s.allocator.name = "system";
  s.threads = 2;
  s.rep = 1;
  Row r;
  r[Col::config] = "c";
  r[Col::workload] = "larson";
  r[Col::params] = "blocks=5000;seconds=1.0";
  r[Col::allocator] = "system";
  r[Col::link] = "libc";
  r[Col::threads] = "2";
  r[Col::rep] = "1";
  EXPECT_TRUE(row_matches(r, "c", s));
  EXPECT_FALSE(row_matches(r, "other", s));
  r[Col::params] = "blocks=5000;seconds=2.0";
  EXPECT_FALSE(row_matches(r, "c", s));
  s.callgrind = true;
  r[Col::params] = "seconds=1";
  EXPECT_FALSE(row_matches(r, "c", s));  // link differs
  r[Col::link] = "callgrind";
  EXPECT_TRUE(row_matches(r, "c", s));
}

}  // namespace
}  // namespace hakbench
