// Allocator discovery: which allocators this machine has, how a trial uses each (nothing, an
// LD_PRELOAD library, or the statically linked runner), and their versions.
#pragma once

#include <string>
#include <vector>

#include "environment.h"

namespace hakbench {

enum class LinkKind { libc, preload, static_runner };

// The `link` column: libc (glibc, nothing preloaded), preload, static, and callgrind for any
// trial run under valgrind --tool=callgrind (the allocator column still says which one).
const char* link_name(LinkKind kind);
inline constexpr const char* kCallgrindLink = "callgrind";

struct Allocator {
  std::string name;
  LinkKind kind = LinkKind::libc;
  std::string path;     // the preloaded library or the static runner; empty for system
  std::string version;  // package version, or project version + git sha for hakmem
  bool available = false;
  std::string why_unavailable;
};

// The well-known allocators, in display order, each resolved against this machine.
std::vector<Allocator> known_allocators(const BuildPaths& paths, const std::string& git_sha);

// Resolves a name: a known allocator, or a path to a shared library to preload (its name is the
// file name without "lib" and ".so..."). Unknown names come back unavailable with the reason.
Allocator resolve_allocator(const std::string& name_or_path, const BuildPaths& paths,
                            const std::string& git_sha);

// The package version of the Debian package owning `path` (via dpkg-query), or "NA".
std::string package_version(const std::string& path);

}  // namespace hakbench
