// Where things are (build dir, runner binaries, source tree) and what this machine is (host, CPU,
// kernel, git revision): the metadata that every CSV row carries.
#pragma once

#include <string>
#include <vector>

namespace hakbench {

struct BuildPaths {
  std::string build_dir;      // the CMake build dir hakbench lives in (or --build-dir)
  std::string runner;         // build/workloads/hakmem-workload
  std::string runner_static;  // build/workloads/hakmem-workload-static
  std::string micro;          // build/workloads/hakmem-micro
  std::string libhakmem;      // build/allocator/libhakmem.so
  std::string source_dir;     // the source tree (for git_sha and plots/report.py)
};

// Derives the paths from the build dir; an empty build_dir means "the one hakbench is in"
// (found from /proc/self/exe: <build>/harness/hakbench). A non-empty runner overrides it.
BuildPaths locate_build(const std::string& build_dir, const std::string& runner);

struct MachineInfo {
  std::string host, cpu, kernel, git_sha;
};
MachineInfo machine_info(const std::string& source_dir);

// UTC time now as 2026-01-31T12:34:56Z.
std::string utc_timestamp();

bool file_exists(const std::string& path);
bool is_executable(const std::string& path);

// Runs argv (no shell) and returns its stdout; nullopt-like empty + false on failure.
bool capture_output(const std::string& cmd_path, const std::vector<std::string>& args,
                    std::string& out, int* exit_status = nullptr);

}  // namespace hakbench
