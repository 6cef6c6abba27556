// Build paths and machine metadata (see environment.h).
#include "environment.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>
#include <filesystem>
#include <fstream>

#ifndef HAKBENCH_SOURCE_DIR
#define HAKBENCH_SOURCE_DIR ""
#endif

namespace hakbench {

namespace fs = std::filesystem;

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_executable(const std::string& path) {
  return file_exists(path) && ::access(path.c_str(), X_OK) == 0;
}

static std::string source_dir_of(const std::string& build_dir) {
  // CMakeCache.txt names the source tree; fall back to the one this binary was built from.
  std::ifstream cache(build_dir + "/CMakeCache.txt");
  std::string line;
  const std::string key = "CMAKE_HOME_DIRECTORY:INTERNAL=";
  while (std::getline(cache, line))
    if (line.rfind(key, 0) == 0) return line.substr(key.size());
  return HAKBENCH_SOURCE_DIR;
}

BuildPaths locate_build(const std::string& build_dir, const std::string& runner) {
  BuildPaths p;
  if (!build_dir.empty()) {
    p.build_dir = fs::absolute(build_dir).lexically_normal().string();
  } else {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
      buf[n] = '\0';
      p.build_dir = fs::path(buf).parent_path().parent_path().string();
    }
  }
  if (p.build_dir.empty()) p.build_dir = ".";
  p.runner = runner.empty() ? p.build_dir + "/workloads/hakmem-workload" : runner;
  p.runner_static = p.build_dir + "/workloads/hakmem-workload-static";
  p.micro = p.build_dir + "/workloads/hakmem-micro";
  p.libhakmem = p.build_dir + "/allocator/libhakmem.so";
  p.source_dir = source_dir_of(p.build_dir);
  return p;
}

bool capture_output(const std::string& cmd_path, const std::vector<std::string>& args,
                    std::string& out, int* exit_status) {
  out.clear();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(cmd_path.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return false;
  }
  if (pid == 0) {
    ::dup2(fds[1], 1);
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, 2);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (exit_status) *exit_status = status;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return s.substr(i);
}

MachineInfo machine_info(const std::string& source_dir) {
  MachineInfo m;
  char host[256] = {};
  m.host = ::gethostname(host, sizeof host - 1) == 0 ? host : "NA";
  struct utsname u {};
  m.kernel = ::uname(&u) == 0 ? u.release : "NA";
  m.cpu = "NA";
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) m.cpu = trim(line.substr(colon + 1));
      break;
    }
  }
  m.git_sha = "NA";
  std::string out;
  if (!source_dir.empty() &&
      capture_output("git", {"-C", source_dir, "rev-parse", "--short", "HEAD"}, out)) {
    out = trim(out);
    if (!out.empty()) m.git_sha = out;
  }
  return m;
}

std::string utc_timestamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace hakbench
