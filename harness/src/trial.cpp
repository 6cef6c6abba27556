// One trial as one child process (see trial.h).
#include "trial.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

extern char** environ;

namespace hakbench {

using json = nlohmann::json;

std::string format_params(Params params) {
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += ';';
    out += k + "=" + v;
  }
  return out;
}

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "SIG" + std::to_string(sig);
}

std::vector<int> parse_cpu_list(const std::string& text) {
  std::vector<int> cpus;
  std::size_t pos = 0;
  auto number = [&](const std::string& s) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 5 ||
        std::stoi(s) >= CPU_SETSIZE)
      throw std::invalid_argument("bad CPU number '" + s + "' in '" + text + "'");
    return std::stoi(s);
  };
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    std::string part =
        text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (auto dash = part.find('-'); dash != std::string::npos) {
      int lo = number(part.substr(0, dash)), hi = number(part.substr(dash + 1));
      if (hi < lo) throw std::invalid_argument("bad CPU range '" + part + "' in '" + text + "'");
      for (int c = lo; c <= hi; ++c) cpus.push_back(c);
    } else {
      cpus.push_back(number(part));
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (cpus.empty()) throw std::invalid_argument("empty CPU list");
  return cpus;
}

void check_cpus_usable(const std::vector<int>& cpus) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
  for (int c : cpus)
    if (!CPU_ISSET(c, &allowed))
      throw std::invalid_argument("CPU " + std::to_string(c) +
                                  " is not one this process may run on (" +
                                  std::to_string(CPU_COUNT(&allowed)) + " CPU(s) allowed)");
}

static std::string runner_for(const TrialSpec& spec, const BuildPaths& paths) {
  if (spec.workload == kMicroWorkload) return paths.micro;
  if (spec.allocator.kind == LinkKind::static_runner) return spec.allocator.path;
  return paths.runner;
}

std::vector<std::string> trial_argv(const TrialSpec& spec, const BuildPaths& paths,
                                    const std::string& callgrind_out) {
  std::vector<std::string> argv;
  if (spec.callgrind) {
    argv = {"/usr/bin/valgrind", "--tool=callgrind", "-q", "--callgrind-out-file=" + callgrind_out};
  }
  argv.push_back(runner_for(spec, paths));
  if (spec.workload == kMicroWorkload) {
    argv.push_back("--benchmark_format=json");
    // Params are Google Benchmark flags, with or without their "benchmark_" prefix.
    for (const auto& [k, v] : spec.params)
      argv.push_back((k.rfind("benchmark_", 0) == 0 ? "--" : "--benchmark_") + k + "=" + v);
    return argv;
  }
  argv.push_back(spec.workload);
  argv.push_back("--threads");
  argv.push_back(std::to_string(spec.threads));
  if (spec.seed) {
    argv.push_back("--seed");
    argv.push_back(std::to_string(*spec.seed));
  }
  for (const auto& [k, v] : spec.params) argv.push_back("--" + k + "=" + v);
  if (spec.verify) argv.push_back("--verify");
  return argv;
}

static std::vector<std::string> trial_env(const TrialSpec& spec) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "LD_PRELOAD=", 11) != 0) env.emplace_back(*e);
  if (spec.allocator.kind == LinkKind::preload) env.push_back("LD_PRELOAD=" + spec.allocator.path);
  return env;
}

static std::string json_scalar(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

static std::optional<double> json_number(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

std::string parse_runner_output(const std::string& out, const TrialSpec& spec, Measurement& m) {
  // The last line that looks like JSON: the runner prints exactly one.
  std::string line;
  std::size_t end = out.size();
  while (end > 0) {
    std::size_t start = out.rfind('\n', end - 1);
    start = (start == std::string::npos) ? 0 : start + 1;
    std::string candidate = out.substr(start, end - start);
    if (!candidate.empty() && candidate.back() == '\r') candidate.pop_back();
    if (!candidate.empty() && candidate.front() == '{') {
      line = candidate;
      break;
    }
    if (start == 0) break;
    end = start - 1;
  }
  if (line.empty()) return "no JSON line on the runner's stdout";
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "the runner's JSON line does not parse";
  m.workload = spec.workload;
  m.threads = spec.threads;
  if (auto it = j.find("params"); it != j.end() && it->is_object()) {
    Params p;
    for (auto& [k, v] : it->items()) p.emplace_back(k, json_scalar(v));
    m.params = format_params(p);
  } else {
    m.params = format_params(spec.params);
  }
  m.ops = json_number(j, "ops");
  m.seconds = json_number(j, "seconds");
  m.ops_per_sec = json_number(j, "ops_per_sec");
  if (!m.ops_per_sec && m.ops && m.seconds && *m.seconds > 0) m.ops_per_sec = *m.ops / *m.seconds;
  if (!m.ops || !m.seconds) return "the runner's JSON lacks ops or seconds";
  if (auto it = j.find("extra"); it != j.end() && it->is_object()) {
    m.live_bytes = json_number(*it, "live_bytes");
    m.final_rss_kb = json_number(*it, "final_rss_kb");
    // The runner reports -1 when it could not read its resident set.
    if (m.final_rss_kb && *m.final_rss_kb < 0) m.final_rss_kb.reset();
  }
  return "";
}

std::string parse_micro_output(const std::string& out, const TrialSpec& spec,
                               std::vector<Measurement>& ms) {
  auto brace = out.find('{');
  if (brace == std::string::npos) return "no JSON on hakmem-micro's stdout";
  json j = json::parse(out.substr(brace), nullptr, false);
  if (j.is_discarded() || !j.contains("benchmarks") || !j["benchmarks"].is_array())
    return "hakmem-micro's output is not Google Benchmark JSON";
  const std::string params = format_params(spec.params);
  for (const auto& b : j["benchmarks"]) {
    if (b.value("run_type", "iteration") != "iteration") continue;  // skip aggregates
    if (b.value("error_occurred", false)) continue;
    Measurement m;
    m.workload = std::string(kMicroWorkload) + "/" + b.value("name", "?");
    m.params = params;
    m.threads = b.value("threads", 1);
    m.ops = json_number(b, "iterations");
    if (auto rt = json_number(b, "real_time")) {
      std::string unit = b.value("time_unit", "ns");
      double scale = unit == "s" ? 1 : unit == "ms" ? 1e-3 : unit == "us" ? 1e-6 : 1e-9;
      m.seconds = *rt * scale * m.ops.value_or(1);
    }
    m.ops_per_sec = json_number(b, "items_per_second");
    ms.push_back(std::move(m));
  }
  if (ms.empty()) return "hakmem-micro reported no benchmarks";
  return "";
}

std::optional<std::uint64_t> callgrind_total(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::optional<std::uint64_t> total;
  while (std::getline(in, line)) {
    for (const char* key : {"summary:", "totals:"}) {
      if (line.rfind(key, 0) == 0) {
        try {
          total = std::stoull(line.substr(std::strlen(key)));
        } catch (...) {
        }
        if (std::strcmp(key, "summary:") == 0 && total) return total;
      }
    }
  }
  return total;
}

namespace {

// The process group of the running trial, so that an interrupted hakbench takes it down too
// (the child has its own group and would not get the terminal's SIGINT).
volatile sig_atomic_t g_child_group = 0;

void on_terminate(int sig) {
  if (g_child_group > 0) ::kill(-g_child_group, SIGKILL);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void install_terminate_handlers() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, on_terminate);
}

// Reads what is available from fd into buf (bounded); returns false at EOF or error.
bool drain(int fd, std::string& buf, std::size_t cap) {
  char tmp[8192];
  for (;;) {
    ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n > 0) {
      if (buf.size() < cap) buf.append(tmp, std::min<std::size_t>(n, cap - buf.size()));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    return false;
  }
}

std::string tail(const std::string& s, std::size_t n) {
  std::string t = s.size() > n ? "..." + s.substr(s.size() - n) : s;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  for (char& c : t)
    if (c == '\n') c = ' ';
  return t;
}

}  // namespace

TrialOutcome run_trial(const TrialSpec& spec, const BuildPaths& paths) {
  TrialOutcome result;
  const std::string cg_out =
      "/tmp/hakbench-callgrind." + std::to_string(::getpid()) + "." + std::to_string(spec.rep);
  std::vector<std::string> args = trial_argv(spec, paths, cg_out);
  std::vector<std::string> env = trial_env(spec);

  auto fail_before_start = [&](const std::string& why) {
    result.status = "failed";
    result.detail = why;
    Measurement m;
    m.workload = spec.workload;
    m.params = format_params(spec.params);
    m.threads = spec.threads;
    result.measurements.push_back(m);
    return result;
  };
  if (!is_executable(args.front())) return fail_before_start("not executable: " + args.front());

  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out_pipe[2], err_pipe[2], go_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) || ::pipe2(err_pipe, O_CLOEXEC) || ::pipe2(go_pipe, O_CLOEXEC))
    return fail_before_start(std::string("pipe: ") + std::strerror(errno));

  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : spec.cpus) CPU_SET(c, &set);

  install_terminate_handlers();
  auto started = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid < 0) return fail_before_start(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Child: only async-signal-safe calls from here to exec.
    ::setpgid(0, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    // Wait until the parent has opened the counters on us.
    ::close(go_pipe[1]);
    char go = 0;
    ssize_t n;
    do {
      n = ::read(go_pipe[0], &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) ::_exit(126);
    if (!spec.cpus.empty() && ::sched_setaffinity(0, sizeof set, &set) != 0) {
      const char msg[] = "hakbench: sched_setaffinity failed\n";
      (void)!::write(2, msg, sizeof msg - 1);
      ::_exit(126);
    }
    ::execve(argv[0], argv.data(), envp.data());
    const char msg[] = "hakbench: execve failed\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here: no race with the kill of a timed-out group
  g_child_group = pid;
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  ::close(go_pipe[0]);

  PerfCounters counters;
  const bool count = !spec.callgrind;
  if (count) counters.open_on(pid);
  (void)!::write(go_pipe[1], "g", 1);
  ::close(go_pipe[1]);

  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  ::fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
  ::fcntl(err_pipe[0], F_SETFL, O_NONBLOCK);
  std::string out, err;
  bool out_open = true, err_open = true, exited = false, timed_out = false;
  int status = 0;
  struct rusage ru {};
  const auto deadline = started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      std::chrono::duration<double>(spec.timeout_s));
  constexpr std::size_t kCap = 64 << 20;
  while (!exited) {
    pollfd fds[3];
    int nfds = 0;
    if (out_open) fds[nfds++] = {out_pipe[0], POLLIN, 0};
    if (err_open) fds[nfds++] = {err_pipe[0], POLLIN, 0};
    if (pidfd >= 0) fds[nfds++] = {pidfd, POLLIN, 0};
    auto now = std::chrono::steady_clock::now();
    int wait_ms = 20;  // without a pidfd, poll the exit status this often
    if (!timed_out) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
      if (left <= 0) {
        timed_out = true;
        ::kill(-pid, SIGKILL);
        ::kill(pid, SIGKILL);
        left = 0;
      }
      if (pidfd >= 0) wait_ms = static_cast<int>(std::min<long long>(left + 1, 1000));
    }
    int r = ::poll(fds, nfds, wait_ms);
    if (r < 0 && errno != EINTR) break;
    if (out_open) out_open = drain(out_pipe[0], out, kCap);
    if (err_open) err_open = drain(err_pipe[0], err, kCap);
    pid_t w = ::wait4(pid, &status, WNOHANG, &ru);
    if (w == pid) exited = true;
  }
  if (!exited) ::wait4(pid, &status, 0, &ru);
  g_child_group = 0;
  // What is left in the pipes (a straggling grandchild could hold them open: don't wait on it).
  if (out_open) drain(out_pipe[0], out, kCap);
  if (err_open) drain(err_pipe[0], err, kCap);
  ::close(out_pipe[0]);
  ::close(err_pipe[0]);
  if (pidfd >= 0) ::close(pidfd);
  result.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (count) result.counters = counters.read_and_close();
  result.max_rss_kb = ru.ru_maxrss;

  Measurement base;
  base.workload = spec.workload;
  base.params = format_params(spec.params);
  base.threads = spec.threads;

  if (timed_out) {
    result.status = "timeout";
    result.detail = "killed after " + std::to_string(spec.timeout_s) + " s";
  } else if (WIFSIGNALED(status)) {
    result.status = "crashed:" + signal_name(WTERMSIG(status));
    result.detail = tail(err, 300);
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
    result.status = "verify_failed";
    result.detail = tail(err, 300);
  } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    result.status = "failed";
    result.detail = "exit " + std::to_string(WEXITSTATUS(status)) + ": " + tail(err, 300);
  } else {
    std::string why;
    if (spec.workload == kMicroWorkload) {
      why = parse_micro_output(out, spec, result.measurements);
    } else {
      Measurement m = base;
      why = parse_runner_output(out, spec, m);
      if (why.empty()) result.measurements.push_back(m);
    }
    if (why.empty()) {
      result.status = "ok";
    } else {
      result.status = "failed";
      result.detail = why + (err.empty() ? "" : ": " + tail(err, 300));
      result.measurements.clear();
    }
  }
  if (spec.callgrind) {
    if (result.status == "ok") {
      result.callgrind_instructions = callgrind_total(cg_out);
      if (!result.callgrind_instructions) {
        result.status = "failed";
        result.detail = "no instruction total in " + cg_out;
      }
    }
    ::unlink(cg_out.c_str());
  }
  if (result.measurements.empty()) result.measurements.push_back(base);
  return result;
}

}  // namespace hakbench
