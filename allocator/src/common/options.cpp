// The HAKMEM_* option table and its parser. Scans `environ` directly: getenv is fine too, but
// nothing here may allocate, and one pass over environ reads every option at once.
#include "common/options.h"

#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "common/log.h"

extern char** environ;

namespace hak {
namespace detail {
Options g_options;
std::atomic<int> g_options_state{0};
}  // namespace detail

namespace {

enum class Kind { kBool, kUnsigned, kBgSpill };

struct OptionSpec {
  const char* name;
  Kind kind;
  size_t offset;  // of the field in Options
  const char* description;
};

constexpr OptionSpec kOptionTable[] = {
    {"HAKMEM_STATS", Kind::kBool, offsetof(Options, stats),
     "1: print hakmem's counters to stderr at exit"},
    {"HAKMEM_CHECK", Kind::kBool, offsetof(Options, check),
     "1: detect double frees, invalid frees and free-list corruption, and abort naming the "
     "address"},
    {"HAKMEM_VERBOSE", Kind::kBool, offsetof(Options, verbose),
     "1: print the options at start-up and log slow-path events"},
    {"HAKMEM_BG_SPILL", Kind::kBgSpill, offsetof(Options, bg_spill),
     "thread|inline|off: who drains the per-class spill queues (default inline)"},
    {"HAKMEM_RELEASE_DELAY_MS", Kind::kUnsigned, offsetof(Options, release_delay_ms),
     "how long an empty SuperSlab, or a cached large span's pages, are kept before they go back to "
     "the OS (default 100)"},
    {"HAKMEM_LARGE_CACHE_MB", Kind::kUnsigned, offsetof(Options, large_cache_mb),
     "bytes of freed large spans kept mapped for reuse, in MiB (default 512)"},
    {"HAKMEM_LARGE_COMMIT_MB", Kind::kUnsigned, offsetof(Options, large_commit_mb),
     "of the cached large spans, MiB kept committed; the rest are decommitted (default 256)"},
    {"HAKMEM_OS_FAIL_AFTER", Kind::kUnsigned, offsetof(Options, os_fail_after),
     "testing: after N successful OS mappings every further mapping fails (0: never)"},
};

bool parse_bool(const char* text, bool* out) {
  if (!std::strcmp(text, "1") || !std::strcmp(text, "true") || !std::strcmp(text, "yes")) {
    *out = true;
    return true;
  }
  if (!std::strcmp(text, "0") || !std::strcmp(text, "false") || !std::strcmp(text, "no")) {
    *out = false;
    return true;
  }
  return false;
}

bool parse_unsigned(const char* text, uint64_t* out) {
  if (*text == '\0') return false;
  uint64_t value = 0;
  for (const char* c = text; *c; ++c) {
    if (*c < '0' || *c > '9') return false;
    uint64_t digit = static_cast<uint64_t>(*c - '0');
    if (value > (UINT64_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  *out = value;
  return true;
}

bool parse_bg_spill(const char* text, BgSpillMode* out) {
  if (!std::strcmp(text, "thread"))
    *out = BgSpillMode::kThread;
  else if (!std::strcmp(text, "inline"))
    *out = BgSpillMode::kInline;
  else if (!std::strcmp(text, "off"))
    *out = BgSpillMode::kOff;
  else
    return false;
  return true;
}

void apply(const OptionSpec& spec, const char* value, Options* options) {
  char* field = reinterpret_cast<char*>(options) + spec.offset;
  bool ok = false;
  switch (spec.kind) {
    case Kind::kBool:
      ok = parse_bool(value, reinterpret_cast<bool*>(field));
      break;
    case Kind::kUnsigned:
      ok = parse_unsigned(value, reinterpret_cast<uint64_t*>(field));
      break;
    case Kind::kBgSpill:
      ok = parse_bg_spill(value, reinterpret_cast<BgSpillMode*>(field));
      break;
  }
  if (!ok) log_message("ignoring %s=%s: invalid value (%s)", spec.name, value, spec.description);
}

void read_environment(Options* options) {
  if (environ == nullptr) return;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (std::strncmp(*entry, "HAKMEM_", 7) != 0) continue;
    const char* equals = std::strchr(*entry, '=');
    if (equals == nullptr) continue;
    size_t name_length = static_cast<size_t>(equals - *entry);
    bool known = false;
    for (const OptionSpec& spec : kOptionTable) {
      if (std::strlen(spec.name) == name_length && !std::strncmp(*entry, spec.name, name_length)) {
        apply(spec, equals + 1, options);
        known = true;
      }
    }
    if (!known) log_message("ignoring unknown option %.*s", static_cast<int>(name_length), *entry);
  }
}

}  // namespace

void detail::read_options_slow() {
  int expected = 0;
  if (g_options_state.compare_exchange_strong(expected, 1, std::memory_order_acquire)) {
    read_environment(&g_options);
    // Release publishes the parsed fields to every thread that sees state 2.
    g_options_state.store(2, std::memory_order_release);
    if (g_options.verbose) print_options(STDERR_FILENO);
    return;
  }
  while (g_options_state.load(std::memory_order_acquire) != 2) sched_yield();
}

void print_options(int fd) {
  const Options& current = options();
  for (const OptionSpec& spec : kOptionTable) {
    const char* field = reinterpret_cast<const char*>(&current) + spec.offset;
    char value[32];
    switch (spec.kind) {
      case Kind::kBool:
        std::snprintf(value, sizeof value, "%d", *reinterpret_cast<const bool*>(field) ? 1 : 0);
        break;
      case Kind::kUnsigned:
        std::snprintf(value, sizeof value, "%llu",
                      static_cast<unsigned long long>(*reinterpret_cast<const uint64_t*>(field)));
        break;
      case Kind::kBgSpill: {
        static constexpr const char* kNames[] = {"off", "inline", "thread"};
        std::snprintf(value, sizeof value, "%s",
                      kNames[static_cast<int>(*reinterpret_cast<const BgSpillMode*>(field))]);
        break;
      }
    }
    char line[256];
    int length = std::snprintf(line, sizeof line, "hakmem: %-24s = %-8s %s\n", spec.name, value,
                               spec.description);
    if (length > 0)
      (void)!::write(fd, line,
                     static_cast<size_t>(length) < sizeof line ? length : sizeof line - 1);
  }
}

}  // namespace hak
