// The harness survives its own faults (issue 9): a sweep killed with SIGKILL at any moment leaves a
// CSV whose every line is a complete row, and `--resume` finishes exactly the trials that are
// missing; a workload that hangs is killed at its timeout and recorded as `timeout`, and the sweep
// goes on. Runs the real hakbench and workload runner (paths compiled in by CMake).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;

// --- Processes ---------------------------------------------------------------------------------

// Starts hakbench with `args` in a process group of its own, output to `log`.
pid_t start_hakbench(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> all = {HAKBENCH_PATH, "--runner", HAKMEM_WORKLOAD_PATH};
  all.insert(all.end(), args.begin(), args.end());
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// Waits for pid, killing its group after `limit` (a guard against a hung harness, not a timing
// check). Returns the wait status, or -1 if the guard had to fire.
int wait_guarded(pid_t pid, std::chrono::seconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// --- CSV as bytes ------------------------------------------------------------------------------

struct CsvFile {
  std::vector<std::vector<std::string>> records;  // header first
  bool ends_cleanly = true;  // no partial last line (the file is empty or ends with '\n')
};

// Splits the file into records by RFC 4180 rules (quoted fields may hold commas and newlines).
CsvFile parse_csv(const std::string& text) {
  CsvFile f;
  std::vector<std::string> record;
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      record.push_back(field);
      field.clear();
    } else if (c == '\n') {
      record.push_back(field);
      field.clear();
      f.records.push_back(record);
      record.clear();
    } else {
      field += c;
    }
  }
  if (quoted || !field.empty() || !record.empty()) {
    f.ends_cleanly = false;
    record.push_back(field);
    f.records.push_back(record);
  }
  return f;
}

// Every line complete and as wide as the header. Returns the number of data rows.
size_t expect_complete_rows(const std::string& path, const char* when) {
  std::string text = read_all(path);
  CsvFile f = parse_csv(text);
  EXPECT_TRUE(f.ends_cleanly) << when << ": partial last line in " << path << ":\n" << text;
  if (f.records.empty()) return 0;
  size_t width = f.records[0].size();
  EXPECT_GE(width, 30u) << when << ": header too narrow";
  EXPECT_EQ(f.records[0][0], "timestamp") << when;
  for (size_t i = 1; i < f.records.size(); ++i) {
    EXPECT_EQ(f.records[i].size(), width) << when << ": row " << i << " of " << path;
    EXPECT_NE(f.records[i][0], "timestamp") << when << ": a second header at row " << i;
  }
  return f.records.size() - 1;
}

size_t column(const CsvFile& f, const std::string& name) {
  for (size_t i = 0; i < f.records[0].size(); ++i) {
    if (f.records[0][i] == name) return i;
  }
  ADD_FAILURE() << "no column " << name;
  return 0;
}

class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (fs::temp_directory_path() / "hakmem-harness-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~ScratchDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(file(name)) << text;
    return file(name);
  }

 private:
  std::string path_;
};

// Polls the CSV until it holds at least `rows` complete data rows (or the process ended).
void wait_for_rows(const std::string& csv, size_t rows, pid_t pid) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    CsvFile f = parse_csv(read_all(csv));
    size_t complete = f.records.empty() ? 0 : f.records.size() - 1 - (f.ends_cleanly ? 0 : 1);
    if (complete >= rows) return;
    if (waitpid(pid, nullptr, WNOHANG) == pid) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// 2 thread counts x 10 repetitions of a ~0.1-0.3 s workload: a few seconds in all.
constexpr size_t kPlanned = 20;
constexpr const char* kSweepConfig = R"(
[sweep]
allocators = ["system"]
threads = [1, 2]
reps = 10
timeout_s = 60

[[workload]]
name = "selftest-idle"
params = { iters = 100000000 }
)";

// A SIGKILL between creating the CSV and writing its header leaves an empty file; --resume must
// run every trial into it rather than refuse it.
TEST(HarnessRobustness, ResumeOfAnEmptyOutputRunsEveryTrial) {
  ScratchDir dir;
  std::string config = dir.write("empty.toml", kSweepConfig);
  std::string csv = dir.write("empty.csv", "");
  std::string log = dir.file("hakbench.log");
  pid_t pid = start_hakbench({"sweep", config, "--out", csv, "--resume"}, log);
  int status = wait_guarded(pid, std::chrono::seconds(300));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "--resume of an empty CSV: status " << status << "\n"
      << read_all(log);
  EXPECT_EQ(expect_complete_rows(csv, "after --resume of an empty CSV"), kPlanned);
}

TEST(HarnessRobustness, SweepKilledMidwayLeavesCompleteRowsAndResumeFinishes) {
  ScratchDir dir;
  std::string config = dir.write("kill.toml", kSweepConfig);
  std::string csv = dir.file("kill.csv");
  std::string log = dir.file("hakbench.log");

  // Killed three times: right as it starts, after a few rows, and again a few rows later.
  size_t rows = 0;
  const size_t kill_after[] = {0, 3, 8};
  for (size_t cycle = 0; cycle < 3; ++cycle) {
    std::vector<std::string> args = {"sweep", config, "--out", csv};
    if (cycle > 0) args.push_back("--resume");
    pid_t pid = start_hakbench(args, log);
    ASSERT_GT(pid, 0);
    if (kill_after[cycle] == 0) {
      // As soon as the file exists: most likely while the first trial runs.
      for (int i = 0; i < 2000 && !fs::exists(csv); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    } else {
      wait_for_rows(csv, kill_after[cycle], pid);
    }
    kill(-pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    std::string when = "after SIGKILL #" + std::to_string(cycle + 1);
    size_t now = fs::exists(csv) ? expect_complete_rows(csv, when.c_str()) : 0;
    EXPECT_GE(now, rows) << when << ": rows were lost";
    EXPECT_LT(now, kPlanned) << when << ": the sweep finished before it was killed";
    std::printf("SIGKILL #%zu: %zu of %zu rows in the CSV\n", cycle + 1, now, kPlanned);
    rows = now;
    if (HasFailure()) break;
  }

  pid_t pid = start_hakbench({"sweep", config, "--out", csv, "--resume"}, log);
  int status = wait_guarded(pid, std::chrono::seconds(300));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "final --resume: status " << status << "\n"
      << read_all(log);
  EXPECT_EQ(expect_complete_rows(csv, "after the final --resume"), kPlanned) << read_all(log);

  // Exactly one ok row per planned trial (threads x rep): nothing run twice, nothing missing.
  CsvFile f = parse_csv(read_all(csv));
  size_t threads = column(f, "threads"), rep = column(f, "rep"), st = column(f, "status");
  std::map<std::pair<std::string, std::string>, int> seen;
  for (size_t i = 1; i < f.records.size(); ++i) {
    ++seen[{f.records[i][threads], f.records[i][rep]}];
    EXPECT_EQ(f.records[i][st], "ok") << "row " << i;
  }
  EXPECT_EQ(seen.size(), kPlanned);
  for (const auto& [key, count] : seen) {
    EXPECT_EQ(count, 1) << "threads " << key.first << " rep " << key.second;
  }
}

TEST(HarnessRobustness, HangingWorkloadIsKilledAtItsTimeoutAndTheSweepGoesOn) {
  ScratchDir dir;
  std::string config = dir.write("hang.toml", R"(
[sweep]
allocators = ["system"]
reps = 1

[[workload]]
name = "selftest-hang"
timeout_s = 2

[[workload]]
name = "selftest-idle"
params = { iters = 1000 }
)");
  std::string csv = dir.file("hang.csv");
  std::string log = dir.file("hakbench.log");
  pid_t pid = start_hakbench({"sweep", config, "--out", csv}, log);
  int status = wait_guarded(pid, std::chrono::seconds(120));
  ASSERT_NE(status, -1) << "hakbench did not end: the hanging trial was not killed\n"
                        << read_all(log);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << read_all(log);
  ASSERT_EQ(expect_complete_rows(csv, "hang sweep"), 2u) << read_all(log);
  CsvFile f = parse_csv(read_all(csv));
  size_t workload = column(f, "workload"), st = column(f, "status");
  std::map<std::string, std::string> status_of;
  for (size_t i = 1; i < f.records.size(); ++i)
    status_of[f.records[i][workload]] = f.records[i][st];
  EXPECT_EQ(status_of["selftest-hang"], "timeout");
  EXPECT_EQ(status_of["selftest-idle"], "ok");
}

}  // namespace
