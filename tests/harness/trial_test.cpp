// Trials as child processes: statuses (ok, crashed with the signal's name, timeout, failed,
// verify_failed), the futex counter (> 0 for 4 threads contending a mutex, exactly 0 for a
// child that makes no futex call), CPU pinning, parsing of runner / Google Benchmark output, and
// footprint's live bytes and final resident memory reaching the row (NA for other workloads).
#include "trial.h"

#include <gtest/gtest.h>

#include "perf_counters.h"
#include "records.h"
#include "summary.h"
#include "test_support.h"

namespace hakbench {
namespace {

Allocator system_alloc() {
  Allocator a;
  a.name = "system";
  a.kind = LinkKind::libc;
  a.available = true;
  return a;
}

TrialSpec spec(const std::string& workload, Params params = {}) {
  TrialSpec s;
  s.workload = workload;
  s.params = std::move(params);
  s.allocator = system_alloc();
  s.timeout_s = 30;
  return s;
}

BuildPaths runner_paths() {
  BuildPaths p;
  p.runner = test::env_path("HAKMEM_WORKLOAD");
  return p;
}

BuildPaths fixture_paths() {
  BuildPaths p;
  p.runner = test::env_path("HAKBENCH_FIXTURE_CHILD");
  return p;
}

bool tracepoints_available() {
  return tracepoint_id("syscalls/sys_enter_futex").has_value();
}

TEST(Trial, OkRowCarriesRunnerOutputAndCounters) {
  auto out = run_trial(spec("selftest-idle", {{"iters", "1000"}}), runner_paths());
  ASSERT_EQ(out.status, "ok") << out.detail;
  ASSERT_EQ(out.measurements.size(), 1u);
  EXPECT_EQ(out.measurements[0].params, "iters=1000");  // the runner's own params
  EXPECT_EQ(out.measurements[0].ops, 1000);
  ASSERT_TRUE(out.max_rss_kb);
  EXPECT_GT(*out.max_rss_kb, 0);
  ASSERT_TRUE(out.counters.get(Counter::task_clock_ns));
  EXPECT_GT(*out.counters.get(Counter::task_clock_ns), 0u);
  if (tracepoints_available()) {
    ASSERT_TRUE(out.counters.get(Counter::syscalls));
    EXPECT_GT(*out.counters.get(Counter::syscalls), 10u);  // execve, mmap of libraries, write...
    EXPECT_GT(*out.counters.get(Counter::mmap), 0u);
  }
}

TEST(Trial, FootprintRowCarriesLiveBytesAndFinalRss) {
  TrialSpec s = spec("footprint", {{"total", "8M"}});
  auto out = run_trial(s, runner_paths());
  ASSERT_EQ(out.status, "ok") << out.detail;
  const Measurement& m = out.measurements.at(0);
  ASSERT_TRUE(m.live_bytes);
  ASSERT_TRUE(m.final_rss_kb);
  // The rebuild allocates the freed bytes again, so about `total` stays live; the process holds
  // at least that much resident (every block's pages are touched) but nowhere near 10 times it.
  EXPECT_GT(*m.live_bytes, 7 << 20);
  EXPECT_LT(*m.live_bytes, 10 << 20);
  EXPECT_GT(*m.final_rss_kb * 1024, *m.live_bytes);
  EXPECT_LT(*m.final_rss_kb * 1024, 10 * *m.live_bytes);
  Row row = make_rows(MachineInfo{}, "t", s, out).at(0);
  EXPECT_EQ(cell_number(row[Col::live_bytes]), m.live_bytes);
  EXPECT_EQ(cell_number(row[Col::final_rss_kb]), m.final_rss_kb);
}

TEST(Trial, OtherWorkloadsAndCallgrindRowsHaveNaWhereTheyCannotMeasure) {
  TrialSpec idle = spec("selftest-idle", {{"iters", "1000"}});
  auto out = run_trial(idle, runner_paths());
  ASSERT_EQ(out.status, "ok") << out.detail;
  EXPECT_FALSE(out.measurements.at(0).live_bytes);
  EXPECT_FALSE(out.measurements.at(0).final_rss_kb);
  Row row = make_rows(MachineInfo{}, "t", idle, out).at(0);
  EXPECT_EQ(row[Col::live_bytes], "NA");
  EXPECT_EQ(row[Col::final_rss_kb], "NA");
  EXPECT_NE(row[Col::ops], "NA");

  // A resident set the runner could not read (-1) is NA, not a number.
  Measurement m;
  ASSERT_EQ(
      parse_runner_output(R"({"ops":2,"seconds":1,"extra":{"live_bytes":4096,"final_rss_kb":-1}})",
                          spec("footprint"), m),
      "");
  EXPECT_EQ(m.live_bytes, 4096);
  EXPECT_FALSE(m.final_rss_kb);
  // Under callgrind the resident set would be valgrind's.
  TrialSpec cg = spec("footprint");
  cg.callgrind = true;
  TrialOutcome o;
  o.status = "ok";
  m.final_rss_kb = 5000;
  o.measurements = {m};
  Row cg_row = make_rows(MachineInfo{}, "t", cg, o).at(0);
  EXPECT_EQ(cg_row[Col::live_bytes], "4096");
  EXPECT_EQ(cg_row[Col::final_rss_kb], "NA");
}

TEST(Trial, AbortIsCrashedWithTheSignalName) {
  auto out = run_trial(spec("selftest-abort"), runner_paths());
  EXPECT_EQ(out.status, "crashed:SIGABRT") << out.detail;
  ASSERT_EQ(out.measurements.size(), 1u);
  EXPECT_FALSE(out.measurements[0].ops);
}

TEST(Trial, HangIsKilledAtTheTimeout) {
  TrialSpec s = spec("selftest-hang");
  s.timeout_s = 0.5;
  auto out = run_trial(s, runner_paths());
  EXPECT_EQ(out.status, "timeout");
  EXPECT_GE(out.wall_seconds, 0.5);
  EXPECT_LT(out.wall_seconds, 5);
}

TEST(Trial, NonZeroExitIsFailedAndExit3IsVerifyFailed) {
  auto failed = run_trial(spec("selftest-exit", {{"code", "5"}}), runner_paths());
  EXPECT_EQ(failed.status, "failed");
  EXPECT_EQ(failed.detail.rfind("exit 5", 0), 0u) << failed.detail;
  auto verify = run_trial(spec("selftest-exit", {{"code", "3"}}), runner_paths());
  EXPECT_EQ(verify.status, "verify_failed");
  // Exit 0 without the JSON line is a failure too.
  auto silent = run_trial(spec("selftest-exit", {{"code", "0"}}), runner_paths());
  EXPECT_EQ(silent.status, "failed");
  EXPECT_NE(silent.detail.find("no JSON line"), std::string::npos) << silent.detail;
}

TEST(Trial, CorruptionUnderVerifyIsVerifyFailed) {
  TrialSpec s = spec("selftest-corrupt");
  s.verify = true;
  EXPECT_EQ(run_trial(s, runner_paths()).status, "verify_failed");
}

TEST(Trial, MissingRunnerIsFailedNotFatal) {
  BuildPaths p;
  p.runner = "/nonexistent/hakmem-workload";
  auto out = run_trial(spec("larson"), p);
  EXPECT_EQ(out.status, "failed");
  EXPECT_NE(out.detail.find("not executable"), std::string::npos);
}

TEST(Trial, FutexCounterCountsMutexContention) {
  if (!tracepoints_available()) GTEST_SKIP() << "tracefs not mounted: futex counter is NA";
  TrialSpec s = spec("selftest-mutex", {{"iters", "100000"}});
  s.threads = 4;
  auto mutex = run_trial(s, runner_paths());
  ASSERT_EQ(mutex.status, "ok") << mutex.detail;
  ASSERT_TRUE(mutex.counters.get(Counter::futex));
  EXPECT_GT(*mutex.counters.get(Counter::futex), 0u);

  // The fixture's own 4-thread contention, and its idle loop with no futex call anywhere in the
  // process (the runner's libstdc++ start-up makes one, so the exact zero needs a C child).
  auto fixture_mutex = run_trial(spec("mutex"), fixture_paths());
  ASSERT_EQ(fixture_mutex.status, "ok") << fixture_mutex.detail;
  EXPECT_GT(*fixture_mutex.counters.get(Counter::futex), 0u);
  auto idle = run_trial(spec("idle"), fixture_paths());
  ASSERT_EQ(idle.status, "ok") << idle.detail;
  ASSERT_TRUE(idle.counters.get(Counter::futex));
  EXPECT_EQ(*idle.counters.get(Counter::futex), 0u);
  // The runner's idle self-test: no more than its start-up call.
  auto runner_idle = run_trial(spec("selftest-idle"), runner_paths());
  ASSERT_EQ(runner_idle.status, "ok");
  EXPECT_LE(*runner_idle.counters.get(Counter::futex), 1u);
}

TEST(Trial, CpuPinningRestrictsTheChild) {
  TrialSpec s = spec("affinity");
  s.cpus = {0};
  auto pinned = run_trial(s, fixture_paths());
  ASSERT_EQ(pinned.status, "ok") << pinned.detail;
  EXPECT_EQ(pinned.measurements[0].ops, 1);
}

TEST(Trial, ArgvForEachKindOfTrial) {
  BuildPaths p;
  p.runner = "/b/workloads/hakmem-workload";
  p.micro = "/b/workloads/hakmem-micro";
  TrialSpec s = spec("larson", {{"seconds", "1"}});
  s.threads = 4;
  s.seed = 9;
  s.verify = true;
  EXPECT_EQ(trial_argv(s, p, "cg.out"),
            (std::vector<std::string>{"/b/workloads/hakmem-workload", "larson", "--threads", "4",
                                      "--seed", "9", "--seconds=1", "--verify"}));
  s.callgrind = true;
  s.verify = false;
  s.seed.reset();
  EXPECT_EQ(trial_argv(s, p, "cg.out"),
            (std::vector<std::string>{"/usr/bin/valgrind", "--tool=callgrind", "-q",
                                      "--callgrind-out-file=cg.out", "/b/workloads/hakmem-workload",
                                      "larson", "--threads", "4", "--seconds=1"}));
  TrialSpec st = spec("larson");
  st.allocator.kind = LinkKind::static_runner;
  st.allocator.path = "/b/workloads/hakmem-workload-static";
  EXPECT_EQ(trial_argv(st, p, "")[0], "/b/workloads/hakmem-workload-static");
  TrialSpec m = spec("micro", {{"filter", "pairs"}, {"benchmark_min_time", "0.1"}});
  EXPECT_EQ(trial_argv(m, p, ""),
            (std::vector<std::string>{"/b/workloads/hakmem-micro", "--benchmark_format=json",
                                      "--benchmark_filter=pairs", "--benchmark_min_time=0.1"}));
}

TEST(Trial, ParsesGoogleBenchmarkJson) {
  const std::string json = R"({
  "context": {"date": "x"},
  "benchmarks": [
    {"name": "malloc_free_pairs/size:64", "run_type": "iteration", "threads": 1,
     "iterations": 1000, "real_time": 20.0, "time_unit": "ns", "items_per_second": 5.0e7},
    {"name": "handoff/threads:2", "run_type": "iteration", "threads": 2,
     "iterations": 10, "real_time": 1.0, "time_unit": "us", "items_per_second": 2.0e6},
    {"name": "malloc_free_pairs/size:64_mean", "run_type": "aggregate", "threads": 1,
     "iterations": 3, "real_time": 20.0, "time_unit": "ns", "items_per_second": 5.0e7}
  ]})";
  std::vector<Measurement> ms;
  ASSERT_EQ(parse_micro_output(json, spec("micro", {{"min_time", "0.1"}}), ms), "");
  ASSERT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms[0].workload, "micro/malloc_free_pairs/size:64");
  EXPECT_EQ(ms[0].params, "min_time=0.1");
  EXPECT_EQ(ms[0].ops_per_sec, 5.0e7);
  EXPECT_NEAR(*ms[0].seconds, 20e-6, 1e-12);
  EXPECT_EQ(ms[1].threads, 2);
  EXPECT_NE(parse_micro_output("not json", spec("micro"), ms), "");
}

TEST(Trial, MicroRunsAsOneRowPerBenchmark) {
  const std::string micro = test::env_path("HAKMEM_MICRO");
  if (micro.empty()) GTEST_SKIP() << "hakmem-micro not built";
  BuildPaths p;
  p.micro = micro;
  auto out =
      run_trial(spec("micro", {{"filter", "malloc_free_pairs/size:64$"}, {"min_time", "0.01"}}), p);
  ASSERT_EQ(out.status, "ok") << out.detail;
  ASSERT_EQ(out.measurements.size(), 1u);
  EXPECT_EQ(out.measurements[0].workload, "micro/malloc_free_pairs/size:64");
  EXPECT_GT(*out.measurements[0].ops_per_sec, 0);
}

TEST(Trial, HelpersParseAndName) {
  EXPECT_EQ(signal_name(SIGSEGV), "SIGSEGV");
  EXPECT_EQ(parse_cpu_list("0,2-4"), (std::vector<int>{0, 2, 3, 4}));
  EXPECT_THROW(parse_cpu_list("1-0"), std::invalid_argument);
  EXPECT_THROW(parse_cpu_list("a"), std::invalid_argument);
  EXPECT_EQ(format_params({{"b", "2"}, {"a", "1"}}), "a=1;b=2");
}

}  // namespace
}  // namespace hakbench
