// Helpers for the harness tests: where the binaries under test are (from the environment that
// tests/harness/CMakeLists.txt sets with generator expressions), a scratch directory, and running
// a command to collect its exit status and output.
#pragma once

#include <string>
#include <vector>

namespace hakbench::test {

// The path in environment variable `name`, or "" when it is not set.
std::string env_path(const char* name);

// A fresh directory under /tmp, removed by the destructor.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  // Writes `text` to file `name` and returns its path.
  std::string write(const std::string& name, const std::string& text) const;

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out, err;
};
CommandResult run_command(const std::vector<std::string>& argv);

std::string read_file(const std::string& path);

}  // namespace hakbench::test
