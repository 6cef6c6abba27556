// libFuzzer target for the hak_* API: the input is a program of allocator operations over a table
// of slots, and every block's contents and usable size are checked as the program runs.
//
// Encoding: a sequence of operations, each an opcode byte followed by its arguments; a missing
// byte reads as 0, so every byte string is a valid program. Opcodes (byte % kOpCount):
//   malloc SLOT SIZE       free SLOT              realloc SLOT SIZE
//   aligned SLOT SHIFT SIZE                       calloc SLOT COUNT SIZE (checks zero fill)
//   remote_free SLOT       (a helper thread checks and frees the block)
//   remote_malloc SLOT SIZE (the helper allocates; this thread frees it later: a remote free)
//   usable SLOT            (usable >= requested; writes and re-checks every usable byte)
//   collect                (hak_collect)
//   restart_helper         (the helper thread exits with a warm cache; a new one starts)
// SIZE is a selector byte then 1-3 bytes: tiny (<= 1 KiB), mid (<= ~260 KiB) or large (<= 4 MiB).
// A slot that is reused is checked and freed first; every slot is freed at the end of the input.
// A failed check prints what went wrong and aborts, which libFuzzer records as a crash.
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <type_traits>

#include "hakmem.h"

namespace {

constexpr size_t kSlots = 32;
constexpr size_t kDenseLimit = 64 * 1024;  // larger blocks are patterned sparsely
constexpr size_t kSparseStep = 4096 - 8;  // not a page multiple: hits every page at varying offsets
constexpr size_t kEdge = 256;

[[noreturn]] void fail(const char* what, const void* p, size_t a, size_t b) {
  std::fprintf(stderr, "hakmem_fuzz: %s (block %p, %zu, %zu)\n", what, p, a, b);
  std::abort();
}

// --- Pattern: byte i of a block is a function of (seed, i). --------------------------------------

uint8_t pattern_byte(uint32_t seed, size_t i) {
  uint32_t x = seed ^ static_cast<uint32_t>(i * 2654435761u) ^ static_cast<uint32_t>(i >> 11);
  return static_cast<uint8_t>(x ^ (x >> 13) ^ (x >> 24));
}

// Calls fn(i) for every checked byte index below limit of a block of `size` bytes.
template <typename F>
void for_each_checked_byte(size_t size, size_t limit, F&& fn) {
  if (limit > size) limit = size;
  if (size <= kDenseLimit) {
    for (size_t i = 0; i < limit; ++i) fn(i);
    return;
  }
  for (size_t i = 0; i < kEdge && i < limit; ++i) fn(i);
  for (size_t i = kEdge; i < size - kEdge && i < limit; i += kSparseStep) fn(i);
  for (size_t i = size - kEdge; i < limit; ++i) fn(i);
}

void fill(void* p, size_t size, uint32_t seed) {
  auto* b = static_cast<uint8_t*>(p);
  for_each_checked_byte(size, size, [&](size_t i) { b[i] = pattern_byte(seed, i); });
}

void check(const void* p, size_t size, uint32_t seed, size_t limit, const char* what) {
  const auto* b = static_cast<const uint8_t*>(p);
  for_each_checked_byte(size, limit, [&](size_t i) {
    if (b[i] != pattern_byte(seed, i)) fail(what, p, i, b[i]);
  });
}

struct Slot {
  void* p = nullptr;
  size_t size = 0;    // requested
  size_t usable = 0;  // the pattern covers all of it
  uint32_t seed = 0;
  size_t alignment = 0;
};

void check_new_block(const Slot& s) {
  size_t need = s.size >= 16 ? 16 : 8;
  if (s.alignment > need) need = s.alignment;
  if (reinterpret_cast<uintptr_t>(s.p) % need != 0) fail("misaligned block", s.p, s.size, need);
  if (s.usable < s.size) fail("usable size below request", s.p, s.usable, s.size);
}

// Records a fresh block in s (which must be empty) and patterns it.
void adopt(Slot& s, void* p, size_t size, size_t alignment, uint32_t seed) {
  if (p == nullptr) fail("allocation returned NULL", p, size, alignment);
  s.p = p;
  s.size = size;
  s.alignment = alignment;
  s.seed = seed;
  s.usable = hak_usable_size(p);
  check_new_block(s);
  fill(p, s.usable, seed);
}

void check_slot(const Slot& s, const char* what) {
  if (s.p == nullptr) return;
  if (hak_usable_size(s.p) != s.usable) fail("usable size changed", s.p, s.usable, 0);
  check(s.p, s.usable, s.seed, s.usable, what);
}

void release(Slot& s) {
  if (s.p == nullptr) return;
  check_slot(s, "corrupted block at free");
  hak_free(s.p);
  s = Slot{};
}

// --- The helper thread: frees and allocates on request, synchronously (runs stay deterministic).

class Helper {
 public:
  Helper() { start(); }
  ~Helper() { stop(); }

  void remote_free(Slot& s) {
    Slot copy = s;
    s = Slot{};
    run([&] { release(copy); });
  }
  void* remote_malloc(size_t size) {
    void* p = nullptr;
    run([&] { p = hak_malloc(size); });
    return p;
  }
  void restart() {
    stop();
    start();
  }

 private:
  template <typename F>
  void run(F&& f) {
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = static_cast<void*>(&f);
    call_ = [](void* fn) { (*static_cast<std::remove_reference_t<F>*>(fn))(); };
    ready_.notify_all();
    done_.wait(lock, [&] { return job_ == nullptr; });
  }
  void start() {
    quit_ = false;
    thread_ = std::thread([this] { loop(); });
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quit_ = true;
      ready_.notify_all();
    }
    thread_.join();
  }
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      ready_.wait(lock, [&] { return job_ != nullptr || quit_; });
      if (job_ == nullptr) return;
      call_(job_);
      job_ = nullptr;
      done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_, done_;
  void* job_ = nullptr;
  void (*call_)(void*) = nullptr;
  bool quit_ = false;
  std::thread thread_;
};

// --- The program reader ------------------------------------------------------------------------

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  size_t slot() { return byte() % kSlots; }
  size_t size() {
    uint8_t selector = byte();
    switch (selector >> 6) {
      case 0:
        return byte();  // 0..255
      case 1:
        return (byte() | size_t{byte()} << 8) % 1025;  // tiny, 0..1024
      case 2:
        return 1025 + (byte() | size_t{byte()} << 8) * 4;  // mid, up to ~257 KiB
      default:                                             // large, up to 4 MiB
        return (byte() | size_t{byte()} << 8 | size_t{byte()} << 16) % (4u << 20);
    }
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

enum Op : uint8_t {
  kMalloc,
  kFree,
  kRealloc,
  kAligned,
  kCalloc,
  kRemoteFree,
  kRemoteMalloc,
  kUsable,
  kCollect,
  kRestartHelper,
  kOpCount
};

Helper& helper() {
  static Helper h;
  return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Slot slots[kSlots];
  Reader in(data, size);
  uint32_t seed = 1;
  for (size_t ops = 0; !in.done() && ops < 4096; ++ops) {
    ++seed;
    switch (in.byte() % kOpCount) {
      case kMalloc: {
        Slot& s = slots[in.slot()];
        release(s);
        size_t n = in.size();
        adopt(s, hak_malloc(n), n, 0, seed);
        break;
      }
      case kFree:
        release(slots[in.slot()]);
        break;
      case kRealloc: {
        Slot& s = slots[in.slot()];
        size_t n = in.size();
        check_slot(s, "corrupted block before realloc");
        void* q = hak_realloc(s.p, n);
        if (s.p != nullptr && n == 0) {  // glibc's rule, which hakmem follows: frees, NULL
          if (q != nullptr) fail("realloc(p, 0) did not return NULL", q, 0, 0);
          s = Slot{};
          break;
        }
        if (q == nullptr) fail("realloc returned NULL", s.p, n, 0);
        if (s.p != nullptr)
          check(q, s.usable, s.seed, n < s.size ? n : s.size, "realloc lost data");
        s = Slot{};
        adopt(s, q, n, 0, seed);
        break;
      }
      case kAligned: {
        Slot& s = slots[in.slot()];
        release(s);
        size_t alignment = size_t{1} << (in.byte() % 21);  // 1 B .. 1 MiB
        size_t n = in.size();
        adopt(s, hak_aligned_alloc(alignment, n), n, alignment, seed);
        break;
      }
      case kCalloc: {
        Slot& s = slots[in.slot()];
        release(s);
        size_t count = 1 + in.byte() % 16;
        size_t n = in.size() / count;
        void* p = hak_calloc(count, n);
        if (p == nullptr) fail("calloc returned NULL", p, count, n);
        const auto* bytes = static_cast<const uint8_t*>(p);
        for_each_checked_byte(count * n, count * n, [&](size_t i) {
          if (bytes[i] != 0) fail("calloc memory not zeroed", p, i, bytes[i]);
        });
        adopt(s, p, count * n, 0, seed);
        break;
      }
      case kRemoteFree: {
        Slot& s = slots[in.slot()];
        if (s.p != nullptr) helper().remote_free(s);
        break;
      }
      case kRemoteMalloc: {
        Slot& s = slots[in.slot()];
        release(s);
        size_t n = in.size();
        adopt(s, helper().remote_malloc(n), n, 0, seed);
        break;
      }
      case kUsable: {
        Slot& s = slots[in.slot()];
        if (s.p == nullptr) break;
        check_slot(s, "corrupted block at usable-size check");
        s.seed = seed;  // rewrite every usable byte with a new pattern and read it back
        fill(s.p, s.usable, s.seed);
        check_slot(s, "usable bytes did not hold their contents");
        break;
      }
      case kCollect:
        hak_collect();
        break;
      case kRestartHelper:
        helper().restart();
        break;
    }
  }
  for (auto& s : slots) release(s);
  return 0;
}
