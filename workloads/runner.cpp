// hakmem-workload: runs one workload and prints one JSON line (the contract hakbench reads).
//
//   hakmem-workload NAME [--threads N] [--seed S] [--PARAM=VALUE ...] [--verify]
//   hakmem-workload --list-json | --help
//
// Exit codes: 0 success (one JSON line on stdout), 2 usage error (unknown workload, unknown
// parameter, bad value; named on stderr), 3 --verify found a corrupted block (named on stderr).
// The runner calls plain malloc/free; if the process happens to run on hakmem (preloaded or
// linked), hak_stats is found with dlsym and its counters go into the line, else "hakmem" is null.
#include <dlfcn.h>
#include <sys/resource.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>

#include "common.h"
#include "hakmem.h"
#include "workload.h"

namespace hakmem::workloads {
namespace {

constexpr std::uint64_t kDefaultSeed = 4141;
constexpr int kDefaultThreads = 1;

using Json = nlohmann::ordered_json;

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "hakmem-workload: " << message << " (see hakmem-workload --help)\n";
  std::exit(2);
}

Json to_json(const ParamValue& value) {
  return std::visit([](const auto& v) { return Json(v); }, value);
}

std::string to_text(const ParamValue& value) {
  if (const auto* integer = std::get_if<std::int64_t>(&value)) return std::to_string(*integer);
  if (const auto* real = std::get_if<double>(&value)) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%g", *real);
    return buffer;
  }
  return std::get<std::string>(value);
}

// Non-negative integers, with an optional binary suffix: K, M, G (e.g. 32K = 32768).
std::optional<std::int64_t> parse_integer(const std::string& text) {
  if (text.empty() || text[0] == '-' || text[0] == '+') return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  if (end == text.c_str() || errno == ERANGE) return std::nullopt;
  int shift = 0;
  if (*end != '\0') {
    switch (*end) {
      case 'k':
      case 'K':
        shift = 10;
        break;
      case 'm':
      case 'M':
        shift = 20;
        break;
      case 'g':
      case 'G':
        shift = 30;
        break;
      default:
        return std::nullopt;
    }
    if (end[1] != '\0') return std::nullopt;
  }
  if (value > (static_cast<unsigned long long>(INT64_MAX) >> shift)) return std::nullopt;
  return static_cast<std::int64_t>(value << shift);
}

std::optional<double> parse_real(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (*end != '\0' || !std::isfinite(value) || value < 0) return std::nullopt;
  return value;
}

ParamValue parse_param(const ParamSpec& spec, const std::string& text) {
  if (std::holds_alternative<std::int64_t>(spec.default_value)) {
    if (auto value = parse_integer(text)) return *value;
    usage_error("bad value '" + text + "' for --" + spec.name +
                ": expected a non-negative integer (K, M, G suffixes allowed)");
  }
  if (std::holds_alternative<double>(spec.default_value)) {
    if (auto value = parse_real(text)) return *value;
    usage_error("bad value '" + text + "' for --" + spec.name + ": expected a non-negative number");
  }
  return text;
}

void print_help() {
  std::cout
      << "usage: hakmem-workload NAME [--threads N] [--seed S] [--PARAM=VALUE ...] [--verify]\n"
         "       hakmem-workload --list-json | --help\n\n"
         "Runs one workload on whatever malloc the process has and prints one JSON line:\n"
         "workload, threads, seed, params, ops (one malloc or free is one op), seconds,\n"
         "ops_per_sec, verified, rss_peak_kb, extra, hakmem (hak_stats counters or null).\n\n"
         "options:\n"
         "  --threads N   worker threads (default "
      << kDefaultThreads
      << ")\n"
         "  --seed S      random seed (default "
      << kDefaultSeed
      << ")\n"
         "  --verify      fill every block with a pattern and check it before free\n"
         "                (exit 3 and a message on a mismatch)\n"
         "  --list-json   print the workloads and their parameters as JSON\n\n"
         "workloads and parameters (defaults after '='):\n";
  for (const Workload& workload : all_workloads()) {
    if (workload.internal) continue;
    std::cout << "  " << workload.name << "\n      " << workload.summary << '\n';
    for (const ParamSpec& param : workload.params) {
      std::string flag = "--" + param.name + "=" + to_text(param.default_value);
      flag.resize(std::max<std::size_t>(flag.size() + 2, 24), ' ');
      std::cout << "      " << flag << param.help << '\n';
    }
  }
}

void print_list_json() {
  Json list = Json::array();
  for (const Workload& workload : all_workloads()) {
    Json params = Json::array();
    for (const ParamSpec& param : workload.params) {
      params.push_back(
          {{"name", param.name}, {"default", to_json(param.default_value)}, {"help", param.help}});
    }
    list.push_back({{"name", workload.name},
                    {"summary", workload.summary},
                    {"params", params},
                    {"internal", workload.internal}});
  }
  std::cout << list.dump() << '\n';
}

// hak_stats of the allocator this process runs on, or null when that is not hakmem.
Json hakmem_counters() {
  using StatsFunction = void (*)(hak_stats_t*);
  auto* stats_function = reinterpret_cast<StatsFunction>(dlsym(RTLD_DEFAULT, "hak_stats"));
  if (stats_function == nullptr) return nullptr;
  hak_stats_t stats{};
  stats.struct_size = sizeof stats;
  stats_function(&stats);
  const std::uint32_t classes =
      std::min<std::uint32_t>(stats.tiny_class_count, HAK_STATS_MAX_CLASSES);
  Json class_sizes = Json::array(), slabs_per_class = Json::array();
  for (std::uint32_t c = 0; c < classes; ++c) {
    class_sizes.push_back(stats.tiny_class_size[c]);
    slabs_per_class.push_back(stats.tiny_slabs_per_class[c]);
  }
  return Json{
      {"bytes_mapped", stats.bytes_mapped},
      {"bytes_mapped_peak", stats.bytes_mapped_peak},
      {"bytes_in_use", stats.bytes_in_use},
      {"os_map_calls", stats.os_map_calls},
      {"os_unmap_calls", stats.os_unmap_calls},
      {"os_decommit_calls", stats.os_decommit_calls},
      {"superslabs_live", stats.superslabs_live},
      {"superslabs_peak", stats.superslabs_peak},
      {"superslabs_returned", stats.superslabs_returned},
      {"tiny_refills", stats.tiny_refills},
      {"tiny_spills", stats.tiny_spills},
      {"tiny_remote_frees", stats.tiny_remote_frees},
      {"tiny_adoptions", stats.tiny_adoptions},
      {"tiny_spill_queue_drains", stats.tiny_spill_queue_drains},
      {"tiny_class_count", stats.tiny_class_count},
      {"tiny_class_size", class_sizes},
      {"tiny_slabs_per_class", slabs_per_class},
      {"pool_chunks_live", stats.pool_chunks_live},
      {"pool_refills", stats.pool_refills},
      {"pool_remote_frees", stats.pool_remote_frees},
      {"large_spans_live", stats.large_spans_live},
      {"large_cache_hits", stats.large_cache_hits},
      {"large_cache_misses", stats.large_cache_misses},
  };
}

struct Invocation {
  const Workload* workload = nullptr;
  int threads = kDefaultThreads;
  std::uint64_t seed = kDefaultSeed;
  bool verify = false;
  std::map<std::string, ParamValue> params;
};

Invocation parse_command_line(int argc, char** argv) {
  Invocation invocation;
  std::vector<std::pair<std::string, std::string>> options;  // (name, value) in order given
  std::optional<std::string> name;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      if (name) usage_error("unexpected argument '" + arg + "' (one workload per run)");
      name = arg;
      continue;
    }
    const std::string body = arg.substr(2);
    if (body == "verify") {
      invocation.verify = true;
      continue;
    }
    const auto equals = body.find('=');
    if (equals != std::string::npos) {
      options.emplace_back(body.substr(0, equals), body.substr(equals + 1));
    } else if (i + 1 < argc) {
      options.emplace_back(body, argv[++i]);
    } else {
      usage_error("missing value for '" + arg + "'");
    }
  }
  if (!name) usage_error("no workload named");
  invocation.workload = find_workload(*name);
  if (invocation.workload == nullptr) usage_error("unknown workload '" + *name + "'");

  for (const ParamSpec& spec : invocation.workload->params) {
    invocation.params[spec.name] = spec.default_value;
  }
  // Not a structured binding: clang before 16 cannot capture those in the lambda below.
  for (const auto& option_and_value : options) {
    const std::string& option = option_and_value.first;
    const std::string& value = option_and_value.second;
    if (option == "threads") {
      const auto threads = parse_integer(value);
      if (!threads || *threads < 1 || *threads > 4096) {
        usage_error("bad value '" + value + "' for --threads: expected 1..4096");
      }
      invocation.threads = static_cast<int>(*threads);
    } else if (option == "seed") {
      const auto seed = parse_integer(value);
      if (!seed)
        usage_error("bad value '" + value + "' for --seed: expected a non-negative integer");
      invocation.seed = static_cast<std::uint64_t>(*seed);
    } else {
      const auto& specs = invocation.workload->params;
      const auto spec = std::find_if(specs.begin(), specs.end(),
                                     [&](const ParamSpec& s) { return s.name == option; });
      if (spec == specs.end()) {
        usage_error("unknown parameter '--" + option + "' for workload " + *name);
      }
      invocation.params[option] = parse_param(*spec, value);
    }
  }
  return invocation;
}

int run(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      print_help();
      return 0;
    }
    if (arg == "--list-json") {
      print_list_json();
      return 0;
    }
  }
  const Invocation invocation = parse_command_line(argc, argv);
  const Workload& workload = *invocation.workload;
  BlockCheck::set_workload_name(workload.name.c_str());
  const RunContext context(invocation.threads, invocation.seed, invocation.verify,
                           invocation.params);

  RunResult result;
  const auto start = std::chrono::steady_clock::now();
  try {
    result = workload.run(context);
  } catch (const std::invalid_argument& error) {
    usage_error(error.what());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  Json params = Json::object();
  for (const ParamSpec& spec : workload.params) {
    params[spec.name] = to_json(invocation.params.at(spec.name));
  }
  const Json line = {
      {"workload", workload.name},
      {"threads", invocation.threads},
      {"seed", invocation.seed},
      {"params", params},
      {"ops", result.ops},
      {"seconds", seconds},
      {"ops_per_sec", seconds > 0 ? static_cast<double>(result.ops) / seconds : 0.0},
      {"verified", invocation.verify},
      {"rss_peak_kb", usage.ru_maxrss},  // Linux reports ru_maxrss in KiB
      {"extra", result.extra},
      {"hakmem", hakmem_counters()},
  };
  std::cout << line.dump() << std::endl;
  return 0;
}

}  // namespace
}  // namespace hakmem::workloads

int main(int argc, char** argv) {
  return hakmem::workloads::run(argc, argv);
}
