// main() of the harness tests: arguments "--env=NAME=VALUE" (given by CMake with generator
// expressions, see CMakeLists.txt) become environment variables, the rest goes to GoogleTest.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i > 0 && arg.rfind("--env=", 0) == 0) {
      std::string kv = arg.substr(6);
      auto eq = kv.find('=');
      if (eq != std::string::npos) ::setenv(kv.substr(0, eq).c_str(), kv.substr(eq + 1).c_str(), 1);
      continue;
    }
    rest.push_back(argv[i]);
  }
  int n = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  ::testing::InitGoogleTest(&n, rest.data());
  return RUN_ALL_TESTS();
}
