// Out-of-line parts of common.h: block patterns, verify failure reports, /proc reading.
#include "common.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace hakmem::workloads {
namespace {

const char* g_workload_name = "?";

// The pattern depends on the block's address and size, so a block that overlaps another live
// block, or one whose bytes the allocator reused for its own metadata, fails the check.
unsigned char pattern_base(const void* block, std::size_t size) {
  return static_cast<unsigned char>(mix64(reinterpret_cast<std::uintptr_t>(block) ^ (size << 48)));
}

unsigned char pattern_byte(unsigned char base, std::size_t index) {
  return static_cast<unsigned char>(base + index * 131 + (index >> 8));
}

}  // namespace

void BlockCheck::set_workload_name(const char* name) {
  g_workload_name = name;
}

void BlockCheck::fill(void* block, std::size_t size) {
  auto* bytes = static_cast<unsigned char*>(block);
  const unsigned char base = pattern_base(block, size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = pattern_byte(base, i);
}

void BlockCheck::check(const void* block, std::size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(block);
  const unsigned char base = pattern_base(block, size);
  for (std::size_t i = 0; i < size; ++i) {
    const unsigned char expected = pattern_byte(base, i);
    if (bytes[i] != expected) {
      // No allocation here: the heap is what we just found broken.
      std::fprintf(stderr,
                   "hakmem-workload: verify failed in workload %s: block %p (size %zu), byte %zu "
                   "at %p: expected 0x%02x, actual 0x%02x\n",
                   g_workload_name, block, size, i, static_cast<const void*>(bytes + i), expected,
                   bytes[i]);
      std::fflush(stderr);
      std::_Exit(3);
    }
  }
}

void touch_pages(void* block, std::size_t size) {
  if (size == 0) return;
  auto* bytes = static_cast<volatile unsigned char*>(block);
  for (std::size_t offset = 0; offset < size; offset += 4096) bytes[offset] = 1;
  bytes[size - 1] = 1;
}

ResidentMemory read_resident_memory() {
  ResidentMemory memory;
  std::FILE* status = std::fopen("/proc/self/status", "r");
  if (status == nullptr) return memory;
  char line[256];
  while (std::fgets(line, sizeof line, status) != nullptr) {
    long long kb = 0;
    if (std::sscanf(line, "VmRSS: %lld kB", &kb) == 1) memory.current_kb = kb;
    if (std::sscanf(line, "VmHWM: %lld kB", &kb) == 1) memory.peak_kb = kb;
  }
  std::fclose(status);
  return memory;
}

}  // namespace hakmem::workloads
