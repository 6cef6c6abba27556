// Tests of hakmem-workload as the harness sees it: a child process per run, one JSON line out.
// The matrix runs every workload at 1 and 4 threads with --verify under glibc and every allocator
// installed (LD_PRELOAD), plus the hakmem-linked runner when it is built, and checks that the ops
// count is the one the parameters imply and that the workload, threads, seed and params echo back.
// hakmem-micro runs under each preloaded allocator. The rest pins the command-line contract: exit
// codes 2 and 3, --list-json, --help, self-tests.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

extern char** environ;

namespace {

using Json = nlohmann::json;

// How the runner is started: which binary, and which library (if any) is preloaded.
struct Allocator {
  std::string name;
  std::string runner;
  std::string preload;  // empty: no LD_PRELOAD
};

std::vector<Allocator> allocators_under_test() {
  std::vector<Allocator> allocators;
  // HAKMEM_TEST_PRELOADS: "name=path;name=path;..." of allocators found at configure time.
  std::stringstream list(HAKMEM_TEST_PRELOADS);
  std::string entry;
  while (std::getline(list, entry, ';')) {
    if (entry.empty()) continue;
    const auto equals = entry.find('=');
    allocators.push_back({entry.substr(0, equals), HAKMEM_TEST_RUNNER, entry.substr(equals + 1)});
  }
  if (std::string(HAKMEM_TEST_STATIC_RUNNER).size() > 0) {
    allocators.push_back({"hakmem_static", HAKMEM_TEST_STATIC_RUNNER, ""});
  }
  return allocators;
}

struct Outcome {
  int exit_code = -1;  // valid when exited
  int signal = 0;      // nonzero when killed by a signal
  std::string out;
  std::string err;
};

std::string read_and_remove(const std::string& path) {
  std::ifstream file(path);
  std::stringstream content;
  content << file.rdbuf();
  std::remove(path.c_str());
  return content.str();
}

// Runs the runner with `args`, LD_PRELOAD set to `preload` (or removed), and captures its output.
Outcome run_runner(const std::string& runner, const std::vector<std::string>& args,
                   const std::string& preload = "") {
  char out_path[] = "/tmp/hakmem-runner-out-XXXXXX";
  char err_path[] = "/tmp/hakmem-runner-err-XXXXXX";
  const int out_fd = mkstemp(out_path);
  const int err_fd = mkstemp(err_path);
  EXPECT_GE(out_fd, 0);
  EXPECT_GE(err_fd, 0);

  std::vector<std::string> environment;
  for (char** variable = environ; *variable != nullptr; ++variable) {
    if (std::string(*variable).rfind("LD_PRELOAD=", 0) != 0) environment.emplace_back(*variable);
  }
  if (!preload.empty()) environment.push_back("LD_PRELOAD=" + preload);
  std::vector<char*> envp;
  for (auto& variable : environment) envp.push_back(variable.data());
  envp.push_back(nullptr);

  std::vector<std::string> argument_strings = {runner};
  argument_strings.insert(argument_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& argument : argument_strings) argv.push_back(argument.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_fd, STDERR_FILENO);
  pid_t pid = 0;
  const int spawn_error =
      posix_spawn(&pid, runner.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(out_fd);
  close(err_fd);
  Outcome outcome;
  if (spawn_error != 0) {
    ADD_FAILURE() << "cannot start " << runner << ": error " << spawn_error;
  } else {
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status)) outcome.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) outcome.signal = WTERMSIG(status);
  }
  outcome.out = read_and_remove(out_path);
  outcome.err = read_and_remove(err_path);
  return outcome;
}

Outcome run_plain(const std::vector<std::string>& args) {
  return run_runner(HAKMEM_TEST_RUNNER, args);
}

// Parses stdout as exactly one line holding one JSON object.
Json parse_single_line(const Outcome& outcome) {
  EXPECT_FALSE(outcome.out.empty());
  EXPECT_EQ(outcome.out.find('\n'), outcome.out.size() - 1) << "stdout is not one line:\n"
                                                            << outcome.out;
  return Json::parse(outcome.out);
}

struct WorkloadCase {
  std::string name;
  std::vector<std::pair<std::string, std::int64_t>> params;  // small enough for a test
  // The ops count the parameters imply, or (for duration-based runs) checks of its accounting.
  std::function<void(const Json& line, std::int64_t threads)> check_ops;
};

std::int64_t param(const Json& line, const char* name) {
  return line["params"][name].get<std::int64_t>();
}

const std::vector<WorkloadCase>& workload_cases() {
  static const std::vector<WorkloadCase> cases = {
      {"larson",
       {{"blocks", 500}, {"rounds", 2}},
       [](const Json& line, std::int64_t threads) {
         const auto mallocs = line["extra"]["mallocs"].get<std::int64_t>();
         const auto frees = line["extra"]["frees"].get<std::int64_t>();
         EXPECT_EQ(line["ops"].get<std::int64_t>(), mallocs + frees);
         EXPECT_EQ(mallocs, frees) << "every block allocated is freed by the end";
         EXPECT_GE(mallocs, threads * param(line, "blocks")) << "the initial fill alone";
         EXPECT_GE(line["extra"]["threads_started"].get<std::int64_t>(), threads);
       }},
      {"random-mixed",
       {{"slots", 64}, {"iterations", 20000}},
       [](const Json& line, std::int64_t threads) {
         EXPECT_EQ(line["ops"].get<std::int64_t>(),
                   threads * (2 * param(line, "slots") + 2 * param(line, "iterations")));
       }},
      {"bg-spill",
       {{"blocks", 512}, {"bursts", 20}},
       [](const Json& line, std::int64_t threads) {
         EXPECT_EQ(line["ops"].get<std::int64_t>(),
                   threads * param(line, "bursts") * param(line, "blocks") * 2);
         EXPECT_EQ(line["extra"]["handed_bursts"].get<std::int64_t>(),
                   threads * (param(line, "bursts") / 2));
       }},
      {"producer-consumer",
       {{"batch", 64}, {"batches", 100}},
       [](const Json& line, std::int64_t threads) {
         const std::int64_t producers = (threads + 1) / 2;
         EXPECT_EQ(line["ops"].get<std::int64_t>(),
                   producers * param(line, "batches") * param(line, "batch") * 2);
         EXPECT_EQ(line["extra"]["consumers"].get<std::int64_t>(), threads / 2);
       }},
      {"cache-scratch",
       {{"iterations", 100}, {"writes", 50}},
       [](const Json& line, std::int64_t threads) {
         EXPECT_EQ(line["ops"].get<std::int64_t>(), threads * (2 + 2 * param(line, "iterations")));
       }},
      {"footprint",
       {{"total", 16 << 20}},
       [](const Json& line, std::int64_t) {
         const auto blocks = line["extra"]["blocks"].get<std::int64_t>();
         EXPECT_EQ(line["ops"].get<std::int64_t>(), 2 * blocks);
         EXPECT_EQ(line["extra"]["frees"].get<std::int64_t>(), blocks);
         // --verify filled every live byte, so the peak RSS must hold them all.
         EXPECT_GE(line["extra"]["peak_rss_kb"].get<std::int64_t>() * 1024,
                   line["extra"]["live_bytes"].get<std::int64_t>());
         EXPECT_GE(line["extra"]["peak_rss_kb"].get<std::int64_t>(),
                   line["extra"]["final_rss_kb"].get<std::int64_t>());
       }},
  };
  return cases;
}

struct MatrixPoint {
  Allocator allocator;
  WorkloadCase workload;
  std::int64_t threads;
};

class RunnerMatrix : public testing::TestWithParam<MatrixPoint> {};

TEST_P(RunnerMatrix, VerifiesCountsOpsAndEchoesParams) {
  const MatrixPoint& point = GetParam();
  std::vector<std::string> args = {point.workload.name, "--threads", std::to_string(point.threads),
                                   "--seed=99", "--verify"};
  if (point.workload.name == "larson") args.push_back("--seconds=0.1");
  for (const auto& [name, value] : point.workload.params) {
    args.push_back("--" + name + "=" + std::to_string(value));
  }
  const Outcome outcome = run_runner(point.allocator.runner, args, point.allocator.preload);
  ASSERT_EQ(outcome.exit_code, 0) << "signal " << outcome.signal << "\n" << outcome.err;
  const Json line = parse_single_line(outcome);

  EXPECT_EQ(line["workload"], point.workload.name);
  EXPECT_EQ(line["threads"], point.threads);
  EXPECT_EQ(line["seed"], 99);
  EXPECT_EQ(line["verified"], true);
  for (const auto& [name, value] : point.workload.params) EXPECT_EQ(line["params"][name], value);
  if (point.workload.name == "larson") {
    EXPECT_EQ(line["params"]["seconds"], 0.1);
  }
  EXPECT_GT(line["ops"].get<std::int64_t>(), 0);
  const double seconds = line["seconds"].get<double>();
  EXPECT_GT(seconds, 0);
  EXPECT_NEAR(line["ops_per_sec"].get<double>() * seconds, line["ops"].get<double>(),
              line["ops"].get<double>() * 1e-6);
  EXPECT_GT(line["rss_peak_kb"].get<std::int64_t>(), 0);
  point.workload.check_ops(line, point.threads);

  const bool on_hakmem = point.allocator.name.rfind("hakmem", 0) == 0;
  if (on_hakmem) {
    ASSERT_TRUE(line["hakmem"].is_object()) << "hak_stats not found on hakmem";
    EXPECT_GT(line["hakmem"]["bytes_mapped_peak"].get<std::uint64_t>(), 0u);
  } else {
    EXPECT_TRUE(line["hakmem"].is_null());
  }
}

std::vector<MatrixPoint> matrix_points() {
  std::vector<MatrixPoint> points;
  for (const Allocator& allocator : allocators_under_test()) {
    for (const WorkloadCase& workload : workload_cases()) {
      for (std::int64_t threads : {1, 4}) points.push_back({allocator, workload, threads});
    }
  }
  return points;
}

std::string point_name(const testing::TestParamInfo<MatrixPoint>& info) {
  std::string name = info.param.allocator.name + "_" + info.param.workload.name + "_t" +
                     std::to_string(info.param.threads);
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Allocators, RunnerMatrix, testing::ValuesIn(matrix_points()), point_name);

// hakmem-micro under each preloaded allocator: every benchmark family runs and reports a rate.
class MicroBenchmarks : public testing::TestWithParam<Allocator> {};

TEST_P(MicroBenchmarks, EveryFamilyRunsAndReportsItemsPerSecond) {
  const Outcome outcome =
      run_runner(HAKMEM_TEST_MICRO, {"--benchmark_min_time=0.001", "--benchmark_format=json"},
                 GetParam().preload);
  ASSERT_EQ(outcome.exit_code, 0) << "signal " << outcome.signal << "\n" << outcome.err;
  const Json report = Json::parse(outcome.out);
  std::set<std::string> families;
  for (const Json& benchmark : report["benchmarks"]) {
    const auto name = benchmark["name"].get<std::string>();
    families.insert(name.substr(0, name.find('/')));
    EXPECT_GT(benchmark["iterations"].get<std::int64_t>(), 0) << name;
    EXPECT_GT(benchmark["items_per_second"].get<double>(), 0) << name;
  }
  EXPECT_EQ(families, (std::set<std::string>{"malloc_free_pairs", "malloc_free_random_tiny",
                                             "batch_alloc_then_free", "realloc_growth",
                                             "calloc_free_pairs", "cross_thread_handoff"}));
}

std::vector<Allocator> preloaded_allocators() {
  std::vector<Allocator> preloaded;
  for (const Allocator& allocator : allocators_under_test()) {
    if (allocator.runner == HAKMEM_TEST_RUNNER) preloaded.push_back(allocator);
  }
  return preloaded;
}

INSTANTIATE_TEST_SUITE_P(Allocators, MicroBenchmarks, testing::ValuesIn(preloaded_allocators()),
                         [](const testing::TestParamInfo<Allocator>& info) {
                           return info.param.name;
                         });

TEST(RunnerCommandLine, UnknownWorkloadExits2NamingIt) {
  const Outcome outcome = run_plain({"no-such-workload"});
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_TRUE(outcome.out.empty());
  EXPECT_NE(outcome.err.find("unknown workload 'no-such-workload'"), std::string::npos)
      << outcome.err;
}

TEST(RunnerCommandLine, UnknownParameterExits2NamingIt) {
  const Outcome outcome = run_plain({"larson", "--no-such-param=3"});
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_TRUE(outcome.out.empty());
  EXPECT_NE(outcome.err.find("unknown parameter '--no-such-param'"), std::string::npos)
      << outcome.err;
}

TEST(RunnerCommandLine, ParameterOfAnotherWorkloadIsUnknown) {
  const Outcome outcome = run_plain({"random-mixed", "--rounds=3"});
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_NE(outcome.err.find("'--rounds'"), std::string::npos) << outcome.err;
}

TEST(RunnerCommandLine, BadValuesExit2NamingTheParameter) {
  for (const auto& args : std::vector<std::vector<std::string>>{{"larson", "--blocks=many"},
                                                                {"larson", "--blocks=-5"},
                                                                {"larson", "--seconds=soon"},
                                                                {"larson", "--threads=0"},
                                                                {"larson", "--seed", "x1"},
                                                                {"random-mixed", "--min=2000"},
                                                                {"larson", "--min=0"},
                                                                {"bg-spill", "--size=0"}}) {
    const Outcome outcome = run_plain(args);
    EXPECT_EQ(outcome.exit_code, 2) << args[1];
    EXPECT_TRUE(outcome.out.empty()) << args[1];
    EXPECT_FALSE(outcome.err.empty()) << args[1];
  }
  EXPECT_NE(run_plain({"larson", "--blocks=many"}).err.find("--blocks"), std::string::npos);
  EXPECT_NE(run_plain({"larson", "--threads=0"}).err.find("--threads"), std::string::npos);
}

TEST(RunnerCommandLine, MissingWorkloadExits2) {
  const Outcome outcome = run_plain({"--threads=2"});
  EXPECT_EQ(outcome.exit_code, 2);
}

TEST(RunnerCommandLine, SizeSuffixesAndDefaultsEchoBack) {
  const Outcome outcome =
      run_plain({"random-mixed", "--max=2K", "--iterations", "1000", "--slots=16"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  const Json line = parse_single_line(outcome);
  EXPECT_EQ(line["params"], Json::parse(R"({"slots":16,"min":16,"max":2048,"iterations":1000})"));
  EXPECT_EQ(line["threads"], 1);
  EXPECT_EQ(line["seed"], 4141);
  EXPECT_EQ(line["verified"], false);
}

TEST(RunnerCommandLine, VerifyFailureExits3NamingWorkloadAddressAndBytes) {
  const Outcome outcome = run_plain({"selftest-corrupt", "--verify"});
  EXPECT_EQ(outcome.exit_code, 3);
  EXPECT_TRUE(outcome.out.empty());
  EXPECT_NE(outcome.err.find("selftest-corrupt"), std::string::npos) << outcome.err;
  EXPECT_NE(outcome.err.find("block 0x"), std::string::npos) << outcome.err;
  EXPECT_NE(outcome.err.find("expected 0x"), std::string::npos) << outcome.err;
  EXPECT_NE(outcome.err.find("actual 0x"), std::string::npos) << outcome.err;
}

TEST(RunnerCommandLine, CorruptionGoesUnnoticedWithoutVerify) {
  // The same self-test without --verify: the check is what catches it, not the workload.
  EXPECT_EQ(run_plain({"selftest-corrupt"}).exit_code, 0);
}

TEST(RunnerListing, ListJsonDescribesEveryWorkload) {
  const Outcome outcome = run_plain({"--list-json"});
  ASSERT_EQ(outcome.exit_code, 0);
  const Json list = parse_single_line(outcome);
  ASSERT_TRUE(list.is_array());
  std::set<std::string> listed_public, listed_internal;
  for (const Json& workload : list) {
    ASSERT_TRUE(workload["summary"].is_string());
    for (const Json& p : workload["params"]) {
      EXPECT_TRUE(p["name"].is_string());
      EXPECT_TRUE(p["default"].is_number() || p["default"].is_string());
      EXPECT_TRUE(p["help"].is_string());
    }
    (workload["internal"].get<bool>() ? listed_internal : listed_public)
        .insert(workload["name"].get<std::string>());
  }
  EXPECT_EQ(listed_public,
            (std::set<std::string>{"larson", "random-mixed", "bg-spill", "producer-consumer",
                                   "cache-scratch", "footprint"}));
  for (const char* selftest :
       {"selftest-abort", "selftest-mutex", "selftest-idle", "selftest-hang", "selftest-exit"}) {
    EXPECT_TRUE(listed_internal.count(selftest)) << selftest;
  }
}

TEST(RunnerListing, DefaultsInListJsonMatchTheIssue) {
  const Json list = parse_single_line(run_plain({"--list-json"}));
  auto default_of = [&](const std::string& workload, const std::string& name) {
    for (const Json& w : list) {
      if (w["name"] != workload) continue;
      for (const Json& p : w["params"]) {
        if (p["name"] == name) return p["default"];
      }
    }
    return Json();
  };
  EXPECT_EQ(default_of("larson", "blocks"), 5000);
  EXPECT_EQ(default_of("larson", "min"), 8);
  EXPECT_EQ(default_of("larson", "max"), 1000);
  EXPECT_EQ(default_of("larson", "rounds"), 100);
  EXPECT_EQ(default_of("larson", "seconds"), 5.0);
  EXPECT_EQ(default_of("random-mixed", "slots"), 256);
  EXPECT_EQ(default_of("random-mixed", "iterations"), 10000000);
  EXPECT_EQ(default_of("bg-spill", "blocks"), 4096);
  EXPECT_EQ(default_of("bg-spill", "size"), 64);
  EXPECT_EQ(default_of("bg-spill", "bursts"), 2000);
  EXPECT_EQ(default_of("footprint", "total"), 1 << 30);
  EXPECT_EQ(default_of("footprint", "free_pct"), 90);
}

TEST(RunnerListing, HelpShowsWorkloadsAndDefaultsButNoSelftests) {
  const Outcome outcome = run_plain({"--help"});
  EXPECT_EQ(outcome.exit_code, 0);
  for (const char* text : {"larson", "random-mixed", "bg-spill", "producer-consumer",
                           "cache-scratch", "footprint", "--blocks=5000", "--seconds=5"}) {
    EXPECT_NE(outcome.out.find(text), std::string::npos) << text;
  }
  EXPECT_EQ(outcome.out.find("selftest"), std::string::npos);
}

TEST(RunnerDeterminism, SameSeedSameRunOtherSeedOtherRun) {
  const std::vector<std::string> args = {"footprint", "--total=8M", "--threads=2"};
  auto run_with_seed = [&](const char* seed) {
    auto with_seed = args;
    with_seed.push_back(seed);
    const Outcome outcome = run_plain(with_seed);
    EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
    return parse_single_line(outcome)["extra"];
  };
  const Json first = run_with_seed("--seed=1");
  const Json again = run_with_seed("--seed=1");
  const Json other = run_with_seed("--seed=2");
  EXPECT_EQ(first["blocks"], again["blocks"]);
  EXPECT_EQ(first["live_bytes"], again["live_bytes"]);
  EXPECT_NE(first["live_bytes"], other["live_bytes"]);
}

TEST(RunnerSelftests, MutexCountsEveryLockOfFourThreads) {
  const Outcome outcome = run_plain({"selftest-mutex", "--iters=2000"});
  ASSERT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(parse_single_line(outcome)["ops"], 4 * 2000);
}

TEST(RunnerSelftests, IdleRunsItsLoop) {
  const Outcome outcome = run_plain({"selftest-idle", "--iters=1000"});
  ASSERT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(parse_single_line(outcome)["ops"], 1000);
}

TEST(RunnerSelftests, ExitUsesTheGivenCodeAndPrintsNothing) {
  const Outcome outcome = run_plain({"selftest-exit", "--code=7"});
  EXPECT_EQ(outcome.exit_code, 7);
  EXPECT_TRUE(outcome.out.empty());
}

TEST(RunnerSelftests, AbortDiesOfSigabrt) {
  const Outcome outcome = run_plain({"selftest-abort"});
  EXPECT_EQ(outcome.signal, SIGABRT);
  EXPECT_TRUE(outcome.out.empty());
}

}  // namespace
