// Allocator discovery (see allocators.h).
#include "allocators.h"

#include <filesystem>
#include <map>

#ifndef HAKBENCH_PROJECT_VERSION
#define HAKBENCH_PROJECT_VERSION "0"
#endif

namespace hakbench {

namespace {

constexpr const char* kLibDir = "/usr/lib/x86_64-linux-gnu/";

std::string trim_nl(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

Allocator preload(const std::string& name, const std::vector<std::string>& candidates) {
  Allocator a;
  a.name = name;
  a.kind = LinkKind::preload;
  for (const auto& c : candidates) {
    if (file_exists(c)) {
      a.path = c;
      a.available = true;
      a.version = package_version(c);
      return a;
    }
  }
  a.why_unavailable = "not found: " + candidates.front();
  for (std::size_t i = 1; i < candidates.size(); ++i) a.why_unavailable += " nor " + candidates[i];
  return a;
}

}  // namespace

const char* link_name(LinkKind kind) {
  switch (kind) {
    case LinkKind::libc:
      return "libc";
    case LinkKind::preload:
      return "preload";
    case LinkKind::static_runner:
      return "static";
  }
  return "NA";
}

static std::string package_version_uncached(const std::string& path);

std::string package_version(const std::string& path) {
  // dpkg-query is slow next to a trial: ask once per path per process.
  static std::map<std::string, std::string> cache;
  if (auto it = cache.find(path); it != cache.end()) return it->second;
  return cache[path] = package_version_uncached(path);
}

static std::string package_version_uncached(const std::string& path) {
  // dpkg-query -S knows the owner of the path as installed (it may be a symlink's target).
  // With merged /usr, dpkg may know /lib/... for a file found under /usr/lib/...
  std::string owner_out;
  std::error_code ec;
  auto canon = std::filesystem::canonical(path, ec);
  std::vector<std::string> tries{path};
  if (!ec) tries.push_back(canon.string());
  for (std::size_t i = 0, n = tries.size(); i < n; ++i)
    if (tries[i].rfind("/usr/", 0) == 0) tries.push_back(tries[i].substr(4));
  for (const std::string& p : tries) {
    if (capture_output("dpkg-query", {"-S", p}, owner_out)) break;
    owner_out.clear();
  }
  if (owner_out.empty()) return "NA";
  auto colon = owner_out.find(": ");
  if (colon == std::string::npos) return "NA";
  std::string pkg = owner_out.substr(0, colon);
  if (auto comma = pkg.find(','); comma != std::string::npos) pkg = pkg.substr(0, comma);
  std::string version;
  if (!capture_output("dpkg-query", {"-W", "-f=${Version}", pkg}, version)) return "NA";
  version = trim_nl(version);
  if (version.empty()) return "NA";
  // "libjemalloc2:amd64" -> "libjemalloc2"
  if (auto c = pkg.find(':'); c != std::string::npos) pkg = pkg.substr(0, c);
  return pkg + " " + version;
}

std::vector<Allocator> known_allocators(const BuildPaths& paths, const std::string& git_sha) {
  std::vector<Allocator> out;
  Allocator system;
  system.name = "system";
  system.kind = LinkKind::libc;
  system.available = true;
  system.path = "";
  system.version = package_version(std::string(kLibDir) + "libc.so.6");
  out.push_back(system);

  const std::string hak_version = std::string("hakmem ") + HAKBENCH_PROJECT_VERSION + "+" + git_sha;
  Allocator hakmem;
  hakmem.name = "hakmem";
  hakmem.kind = LinkKind::preload;
  hakmem.path = paths.libhakmem;
  hakmem.version = hak_version;
  hakmem.available = file_exists(paths.libhakmem);
  if (!hakmem.available) hakmem.why_unavailable = "not built: " + paths.libhakmem;
  out.push_back(hakmem);

  Allocator hstatic;
  hstatic.name = "hakmem-static";
  hstatic.kind = LinkKind::static_runner;
  hstatic.path = paths.runner_static;
  hstatic.version = hak_version;
  hstatic.available = is_executable(paths.runner_static);
  if (!hstatic.available) hstatic.why_unavailable = "not built: " + paths.runner_static;
  out.push_back(hstatic);

  const std::string d = kLibDir;
  out.push_back(preload("jemalloc", {d + "libjemalloc.so.2"}));
  out.push_back(preload("tcmalloc", {d + "libtcmalloc.so.4", d + "libtcmalloc_minimal.so.4"}));
  out.push_back(preload("mimalloc", {d + "libmimalloc.so.2"}));
  return out;
}

Allocator resolve_allocator(const std::string& name_or_path, const BuildPaths& paths,
                            const std::string& git_sha) {
  if (name_or_path.find('/') == std::string::npos) {
    for (auto& a : known_allocators(paths, git_sha))
      if (a.name == name_or_path) return a;
    Allocator a;
    a.name = name_or_path;
    a.why_unavailable =
        "unknown allocator (known: system, hakmem, hakmem-static, jemalloc, tcmalloc, mimalloc; "
        "or give a path to a shared library)";
    return a;
  }
  std::string file = std::filesystem::path(name_or_path).filename().string();
  std::string name = file;
  if (name.rfind("lib", 0) == 0) name = name.substr(3);
  if (auto so = name.find(".so"); so != std::string::npos) name = name.substr(0, so);
  Allocator a = preload(name, {name_or_path});
  return a;
}

}  // namespace hakbench
