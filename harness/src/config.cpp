// TOML sweep configs (see config.h).
#include "config.h"

#include <toml++/toml.h>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace hakbench {

namespace {

std::string type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date/time";
  }
}

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& expected,
                         const toml::node* got) const {
    std::string msg = path_ + ": key '" + key + "': expected " + expected;
    if (got) msg += ", got " + type_name(*got);
    if (got && got->source().begin)
      msg += " (line " + std::to_string(got->source().begin.line) + ")";
    throw ConfigError(msg);
  }
  [[noreturn]] void fail_msg(const std::string& key, const std::string& what) const {
    throw ConfigError(path_ + ": key '" + key + "': " + what);
  }

  void only_keys(const toml::table& t, const std::string& prefix,
                 const std::set<std::string>& allowed) const {
    for (auto& [k, v] : t) {
      if (!allowed.count(std::string(k.str()))) {
        std::string list;
        for (auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        fail_msg(prefix + std::string(k.str()), "unknown key (allowed here: " + list + ")");
      }
    }
  }

  std::vector<int> positive_ints(const toml::node& n, const std::string& key) const {
    const toml::array* a = n.as_array();
    if (!a || a->empty()) fail(key, "a non-empty array of positive integers", a ? nullptr : &n);
    std::vector<int> out;
    for (auto& e : *a) {
      auto v = e.value<std::int64_t>();
      if (!e.is_integer() || *v < 1 || *v > 4096)
        fail(key, "a non-empty array of positive integers (1..4096)", &e);
      out.push_back(static_cast<int>(*v));
    }
    return out;
  }

  int positive_int(const toml::node& n, const std::string& key) const {
    if (!n.is_integer() || *n.value<std::int64_t>() < 1 || *n.value<std::int64_t>() > 1000000)
      fail(key, "a positive integer", &n);
    return static_cast<int>(*n.value<std::int64_t>());
  }

  double positive_seconds(const toml::node& n, const std::string& key) const {
    if (!(n.is_integer() || n.is_floating_point()) || *n.value<double>() <= 0)
      fail(key, "a positive number of seconds", &n);
    return *n.value<double>();
  }

  bool boolean(const toml::node& n, const std::string& key) const {
    if (!n.is_boolean()) fail(key, "true or false", &n);
    return *n.value<bool>();
  }

  std::string string(const toml::node& n, const std::string& key) const {
    if (!n.is_string() || n.value<std::string>()->empty()) fail(key, "a non-empty string", &n);
    return *n.value<std::string>();
  }

  std::vector<std::string> allocators(const toml::node& n, const std::string& key) const {
    const std::string expected = "\"installed\" or a non-empty array of allocator names/paths";
    if (n.is_string()) {
      if (*n.value<std::string>() != "installed")
        fail_msg(key, "expected " + expected + ", got \"" + *n.value<std::string>() + "\"");
      return {"installed"};
    }
    const toml::array* a = n.as_array();
    if (!a || a->empty()) fail(key, expected, &n);
    std::vector<std::string> out;
    for (auto& e : *a) {
      if (!e.is_string() || e.value<std::string>()->empty()) fail(key, expected, &e);
      out.push_back(*e.value<std::string>());
    }
    return out;
  }

  Params params(const toml::node& n, const std::string& key) const {
    const toml::table* t = n.as_table();
    if (!t) fail(key, "a table of parameter = value", &n);
    Params out;
    for (auto& [k, v] : *t) {
      std::string name(k.str());
      std::string sub = key + "." + name;
      if (v.is_string()) {
        out.emplace_back(name, *v.value<std::string>());
      } else if (v.is_integer()) {
        out.emplace_back(name, std::to_string(*v.value<std::int64_t>()));
      } else if (v.is_floating_point()) {
        std::ostringstream os;
        os << *v.value<double>();
        out.emplace_back(name, os.str());
      } else if (v.is_boolean()) {
        out.emplace_back(name, *v.value<bool>() ? "true" : "false");
      } else {
        fail(sub, "a string, number or boolean", &v);
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::string path_;
};

}  // namespace

SweepConfig parse_config(const std::string& text, const std::string& path) {
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw ConfigError(path + ":" + std::to_string(e.source().begin.line) + ":" +
                      std::to_string(e.source().begin.column) +
                      ": TOML syntax error: " + std::string(e.description()));
  }
  Reader r(path);
  r.only_keys(root, "", {"sweep", "workload"});

  SweepConfig c;
  c.path = path;
  c.name = std::filesystem::path(path).stem().string();

  WorkloadEntry defaults;
  defaults.threads = {1};
  defaults.allocators = {"installed"};
  if (auto* s = root.get("sweep")) {
    const toml::table* t = s->as_table();
    if (!t) r.fail("sweep", "a table ([sweep])", s);
    r.only_keys(*t, "sweep.",
                {"name", "allocators", "threads", "reps", "timeout_s", "seed", "cpus", "verify"});
    if (auto* n = t->get("name")) c.name = r.string(*n, "sweep.name");
    if (auto* n = t->get("allocators")) defaults.allocators = r.allocators(*n, "sweep.allocators");
    if (auto* n = t->get("threads")) defaults.threads = r.positive_ints(*n, "sweep.threads");
    if (auto* n = t->get("reps")) defaults.reps = r.positive_int(*n, "sweep.reps");
    if (auto* n = t->get("timeout_s"))
      defaults.timeout_s = r.positive_seconds(*n, "sweep.timeout_s");
    if (auto* n = t->get("verify")) defaults.verify = r.boolean(*n, "sweep.verify");
    if (auto* n = t->get("seed")) {
      if (!n->is_integer() || *n->value<std::int64_t>() < 0)
        r.fail("sweep.seed", "a non-negative integer", n);
      c.seed = static_cast<std::uint64_t>(*n->value<std::int64_t>());
    }
    if (auto* n = t->get("cpus")) {
      std::string cpus = r.string(*n, "sweep.cpus");
      try {
        c.cpus = parse_cpu_list(cpus);
      } catch (const std::invalid_argument& e) {
        r.fail_msg("sweep.cpus",
                   std::string("expected a CPU list like \"0,1\" or \"0-3\": ") + e.what());
      }
    }
  }

  auto* w = root.get("workload");
  if (!w) throw ConfigError(path + ": key 'workload': expected at least one [[workload]] entry");
  const toml::array* entries = w->as_array();
  if (!entries || entries->empty())
    r.fail("workload", "an array of tables ([[workload]] entries)", w);
  std::size_t i = 0;
  for (auto& node : *entries) {
    std::string key = "workload[" + std::to_string(++i) + "]";
    const toml::table* t = node.as_table();
    if (!t) r.fail(key, "a table ([[workload]])", &node);
    r.only_keys(
        *t, key + ".",
        {"name", "params", "threads", "allocators", "reps", "timeout_s", "callgrind", "verify"});
    WorkloadEntry e = defaults;
    e.key = key;
    auto* name = t->get("name");
    if (!name) r.fail_msg(key + ".name", "missing (every [[workload]] needs a name)");
    e.name = r.string(*name, key + ".name");
    if (auto* n = t->get("params")) e.params = r.params(*n, key + ".params");
    if (auto* n = t->get("threads")) e.threads = r.positive_ints(*n, key + ".threads");
    if (auto* n = t->get("allocators")) e.allocators = r.allocators(*n, key + ".allocators");
    if (auto* n = t->get("reps")) e.reps = r.positive_int(*n, key + ".reps");
    if (auto* n = t->get("timeout_s")) e.timeout_s = r.positive_seconds(*n, key + ".timeout_s");
    if (auto* n = t->get("callgrind")) e.callgrind = r.boolean(*n, key + ".callgrind");
    if (auto* n = t->get("verify")) e.verify = r.boolean(*n, key + ".verify");
    c.workloads.push_back(std::move(e));
  }
  return c;
}

SweepConfig load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot read the config file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path);
}

std::vector<WorkloadInfo> parse_catalog(const std::string& json_text) {
  auto j = nlohmann::json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_array())
    throw std::runtime_error("the runner's --list-json output is not a JSON array");
  std::vector<WorkloadInfo> out;
  for (const auto& w : j) {
    WorkloadInfo info;
    info.name = w.value("name", "");
    info.summary = w.value("summary", "");
    info.internal = w.value("internal", false);
    if (w.contains("params") && w["params"].is_array()) {
      for (const auto& p : w["params"]) {
        std::string name = p.value("name", "");
        std::string def =
            p.contains("default")
                ? (p["default"].is_string() ? p["default"].get<std::string>() : p["default"].dump())
                : "";
        info.params.push_back(name);
        info.param_defaults.emplace_back(name, def);
        info.param_help.push_back(p.value("help", ""));
      }
    }
    if (!info.name.empty()) out.push_back(std::move(info));
  }
  return out;
}

std::vector<WorkloadInfo> load_catalog(const std::string& runner) {
  std::string out;
  if (!is_executable(runner)) throw std::runtime_error("workload runner not found: " + runner);
  if (!capture_output(runner, {"--list-json"}, out))
    throw std::runtime_error(runner + " --list-json failed");
  return parse_catalog(out);
}

void check_against_catalog(const SweepConfig& config, const std::vector<WorkloadInfo>& catalog,
                           bool micro_available) {
  for (const auto& e : config.workloads) {
    if (e.name == kMicroWorkload) {
      if (!micro_available)
        throw ConfigError(config.path + ": key '" + e.key +
                          ".name': workload 'micro' needs hakmem-micro, which is not built");
      continue;
    }
    auto it = std::find_if(catalog.begin(), catalog.end(),
                           [&](const WorkloadInfo& w) { return w.name == e.name; });
    if (it == catalog.end()) {
      std::string names;
      for (auto& w : catalog)
        if (!w.internal) names += (names.empty() ? "" : ", ") + w.name;
      throw ConfigError(config.path + ": key '" + e.key + ".name': unknown workload '" + e.name +
                        "' (the runner has: " + names + ", micro)");
    }
    for (const auto& [k, v] : e.params) {
      if (std::find(it->params.begin(), it->params.end(), k) == it->params.end()) {
        std::string names;
        for (auto& p : it->params) names += (names.empty() ? "" : ", ") + p;
        throw ConfigError(config.path + ": key '" + e.key + ".params." + k + "': workload '" +
                          e.name + "' has no parameter '" + k + "' (it has: " + names + ")");
      }
    }
  }
}

}  // namespace hakbench
