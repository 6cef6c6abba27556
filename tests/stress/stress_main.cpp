// main() of the stress binary: GoogleTest plus the run parameters (see stress_support.h). In soak
// mode (HAKMEM_SOAK_SECONDS) the selected tests share the soak time evenly.
#include <gtest/gtest.h>

#include <cstdio>

#include "stress_support.h"

namespace {

class StressEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    // Environments are set up after the test filter ran, so the count is the selected tests'.
    auto* unit = ::testing::UnitTest::GetInstance();
    stress::set_tests_selected(static_cast<size_t>(unit->test_to_run_count()));
    const auto& p = stress::params();
    std::fprintf(stderr, "stress: scale %.2f, sanitizer divisor %llu, soak %.0f s over %zu tests\n",
                 p.scale, static_cast<unsigned long long>(stress::kSanitizerDivisor),
                 p.soak_seconds, p.tests_selected);
  }
};

// Each test starts with an empty failure log (the log is process-wide; tests run one at a time).
class ResetFailures : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo&) override { stress::reset_failures(); }
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new StressEnvironment);
  ::testing::UnitTest::GetInstance()->listeners().Append(new ResetFailures);
  return RUN_ALL_TESTS();
}
