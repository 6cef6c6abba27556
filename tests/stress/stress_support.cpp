// Implementation of the stress suite's shared helpers (see stress_support.h).
#include "stress_support.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "hakmem.h"

namespace stress {

// --- Sizes -------------------------------------------------------------------------------------

const std::vector<size_t>& boundary_sizes() {
  static const std::vector<size_t> sizes = [] {
    std::vector<size_t> v = {0, 1, 2, 7, 8, 9, 15, 16, 17};
    // Around every tiny class size named in the design (four per doubling from 32 up to 1 KiB).
    for (size_t base = 32; base < 1024; base *= 2) {
      for (size_t q = 0; q < 4; ++q) {
        size_t c = base + q * base / 4;
        v.insert(v.end(), {c - 1, c, c + 1});
      }
    }
    v.insert(v.end(), {1023, 1024, 1025, 2048, 4095, 4096, 4097, 65535, 65536, 65537, kMidMax - 1,
                       kMidMax, kMidMax + 1, (2 << 20) - 1, 2 << 20, (2 << 20) + 1});
    return v;
  }();
  return sizes;
}

namespace {

// Log-uniform in [lo, hi]: small sizes as common per doubling as large ones.
size_t log_uniform(Rng& rng, size_t lo, size_t hi) {
  unsigned lo_bit = 63 - __builtin_clzll(lo);
  unsigned hi_bit = 63 - __builtin_clzll(hi);
  unsigned bit = lo_bit + static_cast<unsigned>(rng.below(hi_bit - lo_bit + 1));
  size_t start = std::max(lo, size_t{1} << bit);
  size_t end = std::min(hi, (size_t{2} << bit) - 1);
  return start + rng.below(end - start + 1);
}

}  // namespace

size_t random_size(Rng& rng, const SizeMix& mix) {
  if (rng.percent(mix.boundary_percent)) {
    const auto& b = boundary_sizes();
    size_t s = b[rng.below(b.size())];
    return s > mix.large_max ? mix.large_max : s;
  }
  uint64_t pick = rng.below(100);
  if (pick < mix.tiny_percent) return 1 + rng.below(kTinyMax);
  if (pick < mix.tiny_percent + mix.mid_percent) return log_uniform(rng, kTinyMax + 1, kMidMax);
  return log_uniform(rng, kMidMax + 1, mix.large_max);
}

// --- Pattern -----------------------------------------------------------------------------------

namespace {

inline constexpr size_t kSparseEdge = 256;

uint64_t pattern_word(uint64_t base, size_t offset) {
  return base ^ ((offset / 8 + 1) * 0x9e3779b97f4a7c15ULL);
}

uint64_t pattern_base(const void* key, size_t key_size, uint64_t seed) {
  return mix64(reinterpret_cast<uintptr_t>(key) ^ (seed * 0xd6e8feb86659fd93ULL) ^
               (key_size << 20));
}

// Calls fn(offset) for the offset (a multiple of 8, < limit) of every patterned word.
template <typename F>
bool for_each_patterned_word(size_t key_size, size_t limit, F&& fn) {
  limit = std::min(limit, key_size);
  if (key_size <= kDensePatternLimit) {
    for (size_t off = 0; off < limit; off += 8) {
      if (!fn(off)) return false;
    }
    return true;
  }
  size_t tail = (key_size - kSparseEdge) & ~size_t{7};
  for (size_t off = 0; off < std::min(kSparseEdge, limit); off += 8) {
    if (!fn(off)) return false;
  }
  for (size_t off = kSparseStride; off < tail && off < limit; off += kSparseStride) {
    if (!fn(off)) return false;
  }
  for (size_t off = tail; off < limit; off += 8) {
    if (!fn(off)) return false;
  }
  return true;
}

}  // namespace

void fill_pattern(void* where, const void* key, size_t key_size, uint64_t seed, size_t limit) {
  auto* out = static_cast<unsigned char*>(where);
  uint64_t base = pattern_base(key, key_size, seed);
  for_each_patterned_word(key_size, limit, [&](size_t off) {
    uint64_t v = pattern_word(base, off);
    std::memcpy(out + off, &v, std::min<size_t>(8, std::min(limit, key_size) - off));
    return true;
  });
}

size_t find_pattern_mismatch(const void* where, const void* key, size_t key_size, uint64_t seed,
                             size_t limit) {
  const auto* in = static_cast<const unsigned char*>(where);
  uint64_t base = pattern_base(key, key_size, seed);
  size_t bad = SIZE_MAX;
  for_each_patterned_word(key_size, limit, [&](size_t off) {
    uint64_t v = pattern_word(base, off);
    size_t n = std::min<size_t>(8, std::min(limit, key_size) - off);
    if (std::memcmp(in + off, &v, n) == 0) return true;
    for (size_t i = 0; i < n; ++i) {
      if (in[off + i] != reinterpret_cast<const unsigned char*>(&v)[i]) {
        bad = off + i;
        break;
      }
    }
    return false;
  });
  return bad;
}

// --- Failures ----------------------------------------------------------------------------------

namespace {
std::atomic<uint64_t> g_failures{0};
std::mutex g_failure_mutex;
std::vector<std::string> g_failure_messages;
constexpr size_t kKeptMessages = 8;

std::atomic<uint64_t> g_test_generation{0};
constexpr unsigned kGiveUpSeconds = 30;

// After the first failure of a test the heap may be corrupt, and allocator calls that follow can
// loop forever on a cyclic free list. Workers stop at their next op (should_stop), but one stuck
// inside the allocator never gets there: if the same test is still running kGiveUpSeconds later,
// abort, so the failure is reported now rather than at the CTest timeout.
void start_hang_guard() {
  uint64_t generation = g_test_generation.load();
  std::thread([generation] {
    std::this_thread::sleep_for(std::chrono::seconds(kGiveUpSeconds));
    if (g_test_generation.load() == generation) {
      std::fprintf(stderr, "stress: still running %u s after the first failure: aborting\n",
                   kGiveUpSeconds);
      std::abort();
    }
  }).detach();
}

}  // namespace

void record_failure(const char* format, ...) {
  char text[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(text, sizeof text, format, args);
  va_end(args);
  std::fprintf(stderr, "stress failure: %s\n", text);
  if (g_failures.fetch_add(1, std::memory_order_relaxed) == 0) start_hang_guard();
  std::lock_guard<std::mutex> lock(g_failure_mutex);
  if (g_failure_messages.size() < kKeptMessages) g_failure_messages.emplace_back(text);
}

uint64_t failure_count() {
  return g_failures.load(std::memory_order_relaxed);
}

void reset_failures() {
  g_test_generation.fetch_add(1);
  std::lock_guard<std::mutex> lock(g_failure_mutex);
  g_failure_messages.clear();
  g_failures.store(0, std::memory_order_relaxed);
}

bool should_stop() {
  return g_failures.load(std::memory_order_relaxed) != 0;
}

std::string failure_summary() {
  std::lock_guard<std::mutex> lock(g_failure_mutex);
  std::string all;
  for (const auto& m : g_failure_messages) all += m + "\n";
  return all;
}

// --- Blocks ------------------------------------------------------------------------------------

namespace {

size_t natural_alignment(size_t size) {
  return size >= 16 ? 16 : 8;
}

bool check_zeroed(const Block& b) {
  const auto* bytes = static_cast<const unsigned char*>(b.p);
  auto zero_word = [&](size_t off) {
    uint64_t v = 0;
    std::memcpy(&v, bytes + off, std::min<size_t>(8, b.size - off));
    return v == 0;
  };
  return for_each_patterned_word(b.size, b.size, zero_word);
}

}  // namespace

Block allocate(Rng& rng, size_t size, How how, size_t alignment) {
  Block b;
  b.size = size;
  b.seed = rng.next();
  b.how = how;
  b.alignment = alignment;
  switch (how) {
    case How::kMalloc:
    case How::kRealloc:
      b.p = how == How::kMalloc ? hak_malloc(size) : hak_realloc(nullptr, size);
      break;
    case How::kCalloc:
      b.p = size % 8 == 0 && size != 0 ? hak_calloc(size / 8, 8) : hak_calloc(size, 1);
      break;
    case How::kAligned:
      b.p = hak_aligned_alloc(alignment, size);
      break;
  }
  if (b.p == nullptr) {
    record_failure("allocation of %zu bytes (how %d, alignment %zu) returned NULL", size,
                   static_cast<int>(how), alignment);
    return Block{};
  }
  size_t need = std::max(natural_alignment(size), alignment);
  if (reinterpret_cast<uintptr_t>(b.p) % need != 0) {
    record_failure("%p (%zu bytes, how %d) is not aligned to %zu", b.p, size, static_cast<int>(how),
                   need);
  }
  b.usable = hak_usable_size(b.p);
  if (b.usable < size) {
    record_failure("%p: usable size %zu < requested %zu", b.p, b.usable, size);
    b.usable = size;
  }
  if (how == How::kCalloc && !check_zeroed(b)) {
    record_failure("calloc(%zu) at %p is not zero-filled", size, b.p);
  }
  fill_pattern(b.p, b.usable, b.seed);
  return b;
}

Block allocate_random(Rng& rng, const SizeMix& mix) {
  size_t size = random_size(rng, mix);
  uint64_t pick = rng.below(100);
  if (pick < 8) return allocate(rng, size, How::kCalloc);
  if (pick < 16) {
    // Alignments up to 64 KiB here (larger ones in the aligned test), biased to small ones.
    size_t alignment = size_t{1} << rng.below(rng.percent(80) ? 8 : 17);
    return allocate(rng, size, How::kAligned, alignment);
  }
  if (pick < 18) return allocate(rng, size, How::kRealloc);
  return allocate(rng, size, How::kMalloc);
}

bool check_block(const Block& b, const char* where) {
  if (b.p == nullptr) return true;
  size_t bad = find_pattern_mismatch(b.p, b.p, b.usable, b.seed, b.usable);
  if (bad != SIZE_MAX) {
    const auto* bytes = static_cast<const unsigned char*>(b.p);
    record_failure(
        "%s: block %p (size %zu, usable %zu, how %d) corrupted at offset %zu (byte %02x)", where,
        b.p, b.size, b.usable, static_cast<int>(b.how), bad, bytes[bad]);
    return false;
  }
  size_t usable = hak_usable_size(b.p);
  if (usable != b.usable) {
    record_failure("%s: block %p usable size changed from %zu to %zu", where, b.p, b.usable,
                   usable);
    return false;
  }
  return true;
}

void check_and_free(Block& b, const char* where) {
  if (b.p == nullptr) return;
  check_block(b, where);
  hak_free(b.p);
  b = Block{};
}

void realloc_block(Rng& rng, Block& b, size_t new_size) {
  void* old = b.p;
  void* q = hak_realloc(old, new_size);
  if (old != nullptr && new_size == 0) {
    // hakmem follows glibc: realloc(p, 0) frees p and returns NULL.
    if (q != nullptr) record_failure("realloc(%p, 0) returned %p, expected NULL", old, q);
    b = Block{};
    return;
  }
  if (q == nullptr) {
    record_failure("realloc(%p, %zu) returned NULL", old, new_size);
    return;  // the old block stays valid
  }
  if (old != nullptr) {
    size_t kept = std::min(b.size, new_size);
    size_t bad = find_pattern_mismatch(q, old, b.usable, b.seed, kept);
    if (bad != SIZE_MAX) {
      record_failure("realloc(%p [%zu bytes], %zu) = %p lost contents at offset %zu", old, b.size,
                     new_size, q, bad);
    }
  }
  b.p = q;
  b.size = new_size;
  b.seed = rng.next();
  b.alignment = 0;
  b.how = How::kRealloc;
  if (reinterpret_cast<uintptr_t>(q) % natural_alignment(new_size) != 0) {
    record_failure("realloc result %p (%zu bytes) misaligned", q, new_size);
  }
  b.usable = hak_usable_size(q);
  if (b.usable < new_size) {
    record_failure("realloc result %p: usable %zu < requested %zu", q, b.usable, new_size);
    b.usable = new_size;
  }
  fill_pattern(b.p, b.usable, b.seed);
}

// --- Exchange slots ----------------------------------------------------------------------------

Exchange::Exchange(size_t slots, size_t holders)
    : slots_(slots), descriptors_(slots + holders), held_(holders) {
  for (size_t s = 0; s < slots; ++s) slots_[s].value.store(static_cast<uint32_t>(s));
  for (size_t h = 0; h < holders; ++h) held_[h] = static_cast<uint32_t>(slots + h);
}

Exchange::~Exchange() {
  drain();
}

void Exchange::drain() {
  for (auto& b : descriptors_) check_and_free(b, "drain");
}

// --- The mixed worker ---------------------------------------------------------------------------

namespace {

size_t realloc_target(Rng& rng, const Block& b, const SizeMix& mix) {
  uint64_t pick = rng.below(100);
  if (pick < 2) return 0;                            // realloc(p, 0): frees
  if (pick < 30) return b.size + 1 + rng.below(64);  // a small step: often stays in its class
  if (pick < 45) return b.size / 2 + 1;
  return std::max<size_t>(1, random_size(rng, mix));
}

}  // namespace

void mixed_worker(Exchange& ex, size_t holder, uint64_t op_count, uint64_t seed,
                  const MixedWorkerOptions& options) {
  Rng rng(seed);
  constexpr size_t kRing = 32;
  Block ring[kRing];
  uint32_t& mine = ex.held(holder);
  for (uint64_t i = 0; i < op_count && !should_stop(); ++i) {
    if (options.collect_every != 0 && i % options.collect_every == options.collect_every - 1) {
      hak_collect();
    }
    uint64_t pick = rng.below(100);
    if (pick < 45) {
      ex.at(mine) = allocate_random(rng, options.mix);
      mine = ex.exchange(rng.below(ex.slots()), mine);
      check_and_free(ex.at(mine), "block from a slot");
    } else if (pick < 75) {
      Block& r = ring[rng.below(kRing)];
      check_and_free(r, "ring block");
      r = allocate_random(rng, options.mix);
    } else if (pick < 87) {
      Block& r = ring[rng.below(kRing)];
      if (r.p != nullptr && check_block(r, "ring block before realloc")) {
        realloc_block(rng, r, realloc_target(rng, r, options.mix));
      }
    } else if (pick < 95) {
      // Realloc of a block another thread allocated (and maybe exited since).
      mine = ex.exchange(rng.below(ex.slots()), mine);  // we held an empty descriptor
      Block& b = ex.at(mine);
      if (b.p != nullptr && check_block(b, "foreign block before realloc")) {
        realloc_block(rng, b, realloc_target(rng, b, options.mix));
      }
      mine = ex.exchange(rng.below(ex.slots()), mine);
      check_and_free(ex.at(mine), "block from a slot");
    } else {
      check_block(ring[rng.below(kRing)], "ring block");
    }
  }
  for (auto& r : ring) check_and_free(r, "ring block at exit");
  check_and_free(ex.at(mine), "held block at exit");
}

// --- Parameters --------------------------------------------------------------------------------

namespace {

double env_double(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  double d = std::strtod(v, &end);
  if (end == v || d < 0) {
    std::fprintf(stderr, "stress: ignoring %s=%s (want a number >= 0)\n", name, v);
    return fallback;
  }
  return d;
}

RunParams& mutable_params() {
  static RunParams p = [] {
    RunParams r;
    r.scale = env_double("HAKMEM_STRESS_SCALE", 1.0);
    r.soak_seconds = env_double("HAKMEM_SOAK_SECONDS", 0.0);
    return r;
  }();
  return p;
}

}  // namespace

const RunParams& params() {
  return mutable_params();
}

void set_tests_selected(size_t n) {
  mutable_params().tests_selected = n == 0 ? 1 : n;
}

uint64_t ops(uint64_t base) {
  double n = static_cast<double>(base) * params().scale / static_cast<double>(kSanitizerDivisor);
  return n < 1 ? 1 : static_cast<uint64_t>(n);
}

uint64_t threads_scaled(uint64_t base) {
  return ops(base);
}

hak_stats_t stats_now() {
  hak_stats_t s{};
  s.struct_size = sizeof s;
  hak_stats(&s);
  return s;
}

}  // namespace stress
