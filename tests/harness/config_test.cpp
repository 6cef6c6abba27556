// Sweep configs: a good config parses to what it says; each kind of mistake is refused with a
// message naming the file, the key and what was expected; the shipped configs all parse and
// name only workloads and parameters the runner has.
#include "config.h"

#include <gtest/gtest.h>

#include "test_support.h"

namespace hakbench {
namespace {

std::string error_of(const std::string& text, const std::string& path = "bad.toml") {
  try {
    parse_config(text, path);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Config, ParsesDefaultsAndOverrides) {
  SweepConfig c = parse_config(R"(
[sweep]
allocators = ["system", "jemalloc"]
threads = [1, 2]
reps = 3
timeout_s = 9.5
seed = 7
cpus = "0-1"

[[workload]]
name = "larson"
params = { seconds = 0.5, blocks = 100 }

[[workload]]
name = "bg-spill"
threads = [4]
reps = 1
callgrind = true
allocators = "installed"
)",
                               "dir/my-sweep.toml");
  EXPECT_EQ(c.name, "my-sweep");
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.cpus, (std::vector<int>{0, 1}));
  ASSERT_EQ(c.workloads.size(), 2u);
  const auto& l = c.workloads[0];
  EXPECT_EQ(l.name, "larson");
  EXPECT_EQ(l.params, (Params{{"blocks", "100"}, {"seconds", "0.5"}}));
  EXPECT_EQ(l.threads, (std::vector<int>{1, 2}));
  EXPECT_EQ(l.allocators, (std::vector<std::string>{"system", "jemalloc"}));
  EXPECT_EQ(l.reps, 3);
  EXPECT_DOUBLE_EQ(l.timeout_s, 9.5);
  EXPECT_FALSE(l.callgrind);
  const auto& b = c.workloads[1];
  EXPECT_EQ(b.threads, (std::vector<int>{4}));
  EXPECT_EQ(b.reps, 1);
  EXPECT_TRUE(b.callgrind);
  EXPECT_EQ(b.allocators, (std::vector<std::string>{"installed"}));
}

TEST(Config, WrongTypeNamesFileKeyAndExpectation) {
  EXPECT_EQ(error_of("[sweep]\nthreads = \"1,2\"\n[[workload]]\nname = \"larson\"\n"),
            "bad.toml: key 'sweep.threads': expected a non-empty array of positive integers, "
            "got a string (line 2)");
}

TEST(Config, BadElementInsideAnArray) {
  EXPECT_EQ(error_of("[[workload]]\nname = \"larson\"\nthreads = [1, 0]\n"),
            "bad.toml: key 'workload[1].threads': expected a non-empty array of positive "
            "integers (1..4096), got an integer (line 3)");
}

TEST(Config, UnknownKeyIsRefused) {
  std::string e = error_of("[[workload]]\nname = \"larson\"\nthread = [1]\n");
  EXPECT_EQ(e.rfind("bad.toml: key 'workload[1].thread': unknown key (allowed here: ", 0), 0u) << e;
}

TEST(Config, MissingNameAndMissingWorkloads) {
  EXPECT_EQ(error_of("[[workload]]\nthreads = [1]\n"),
            "bad.toml: key 'workload[1].name': missing (every [[workload]] needs a name)");
  EXPECT_EQ(error_of("[sweep]\nreps = 2\n"),
            "bad.toml: key 'workload': expected at least one [[workload]] entry");
}

TEST(Config, OtherValueErrors) {
  EXPECT_EQ(error_of("[sweep]\nreps = 0\n[[workload]]\nname = \"x\"\n"),
            "bad.toml: key 'sweep.reps': expected a positive integer, got an integer (line 2)");
  EXPECT_EQ(error_of("[sweep]\nallocators = \"all\"\n[[workload]]\nname = \"x\"\n"),
            "bad.toml: key 'sweep.allocators': expected \"installed\" or a non-empty array of "
            "allocator names/paths, got \"all\"");
  EXPECT_EQ(error_of("[sweep]\ncpus = \"0,x\"\n[[workload]]\nname = \"x\"\n"),
            "bad.toml: key 'sweep.cpus': expected a CPU list like \"0,1\" or \"0-3\": bad CPU "
            "number 'x' in '0,x'");
  EXPECT_EQ(error_of("[[workload]]\nname = \"x\"\nparams = { a = [1] }\n"),
            "bad.toml: key 'workload[1].params.a': expected a string, number or boolean, got an "
            "array (line 3)");
}

TEST(Config, SyntaxErrorHasFileAndLine) {
  std::string e = error_of("[sweep]\nreps = = 3\n");
  EXPECT_EQ(e.rfind("bad.toml:2:", 0), 0u) << e;
  EXPECT_NE(e.find("TOML syntax error"), std::string::npos) << e;
}

TEST(Config, MissingFile) {
  try {
    load_config("/nonexistent/x.toml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "/nonexistent/x.toml: cannot read the config file");
  }
}

std::vector<WorkloadInfo> small_catalog() {
  return parse_catalog(R"([{"name":"larson","summary":"s","params":[{"name":"seconds",
    "default":5.0,"help":"h"}],"internal":false},
    {"name":"selftest-idle","summary":"s","params":[],"internal":true}])");
}

TEST(Config, CatalogCheckNamesUnknownWorkloadAndParameter) {
  auto catalog = small_catalog();
  ASSERT_EQ(catalog.size(), 2u);
  EXPECT_EQ(catalog[0].param_defaults[0].second, "5.0");
  SweepConfig c = parse_config("[[workload]]\nname = \"larsen\"\n", "c.toml");
  try {
    check_against_catalog(c, catalog, true);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "c.toml: key 'workload[1].name': unknown workload 'larsen' (the runner has: "
                 "larson, micro)");
  }
  c = parse_config("[[workload]]\nname = \"larson\"\nparams = { secs = 1 }\n", "c.toml");
  try {
    check_against_catalog(c, catalog, true);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "c.toml: key 'workload[1].params.secs': workload 'larson' has no parameter "
                 "'secs' (it has: seconds)");
  }
  c = parse_config("[[workload]]\nname = \"micro\"\n", "c.toml");
  EXPECT_NO_THROW(check_against_catalog(c, catalog, true));
  EXPECT_THROW(check_against_catalog(c, catalog, false), ConfigError);
}

// Every shipped config parses and fits the real runner's catalog.
TEST(Config, ShippedConfigsAreValid) {
  const std::string src = test::env_path("HAKBENCH_SOURCE_DIR");
  const std::string runner = test::env_path("HAKMEM_WORKLOAD");
  ASSERT_FALSE(src.empty());
  std::vector<WorkloadInfo> catalog;
  if (!runner.empty()) catalog = load_catalog(runner);
  for (const char* name : {"default", "quick", "full", "ci"}) {
    SCOPED_TRACE(name);
    SweepConfig c = load_config(src + "/configs/" + name + ".toml");
    EXPECT_FALSE(c.workloads.empty());
    if (!runner.empty()) {
      EXPECT_NO_THROW(check_against_catalog(c, catalog, true));
    }
  }
}

}  // namespace
}  // namespace hakbench
