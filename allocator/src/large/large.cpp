// Large spans (see large.h): one OS mapping per block.
#include "large/large.h"

#include <atomic>
#include <cerrno>

#include "common/log.h"
#include "hakmem.h"
#include "os/os.h"

namespace hak::large {
namespace {

struct alignas(64) SpanHeader {
  void* block;    // the pointer handed out; free checks it
  size_t mapped;  // bytes mapped from base
  size_t offset;  // block - base
};

std::atomic<uint64_t> g_spans_live{0};  // statistics only: relaxed

SpanHeader* validated_header(const void* p, chunk_map::Entry entry) {
  auto* header = entry.owner<SpanHeader>();
  if (HAK_UNLIKELY(header == nullptr || header->block != p)) {
    fatal("free(%p): not a block hakmem allocated (large span %p)", p, static_cast<void*>(header));
  }
  return header;
}

}  // namespace

void* alloc(size_t size, size_t alignment) {
  size_t offset = align_up(sizeof(SpanHeader), alignment < 16 ? 16 : alignment);
  size_t mapped = align_up(offset + size, kPageSize);
  if (mapped < size) {  // the sum wrapped around
    errno = ENOMEM;
    return nullptr;
  }
  char* base = static_cast<char*>(os::map(mapped, kChunkSize));
  if (base == nullptr) return nullptr;
  auto* header = new (base) SpanHeader{base + offset, mapped, offset};
  if (!chunk_map::register_range(base, mapped, chunk_map::Kind::kLarge, header)) {
    chunk_map::unregister_range(base, mapped);
    os::unmap(base, mapped);
    errno = ENOMEM;
    return nullptr;
  }
  g_spans_live.fetch_add(1, std::memory_order_relaxed);
  return header->block;
}

void free(void* p, chunk_map::Entry entry) {
  SpanHeader* header = validated_header(p, entry);
  header->block = nullptr;  // a second free of p now fails validation instead of unmapping twice
  chunk_map::unregister_range(header, header->mapped);
  g_spans_live.fetch_sub(1, std::memory_order_relaxed);
  os::unmap(header, header->mapped);
}

size_t usable_size(const void* p, chunk_map::Entry entry) {
  SpanHeader* header = validated_header(p, entry);
  return header->mapped - header->offset;
}

bool resize_in_place(void* p, chunk_map::Entry entry, size_t new_size) {
  SpanHeader* header = validated_header(p, entry);
  return header->offset + new_size <= header->mapped;
}

void collect() {}

void fill_stats(hak_stats_t* out) {
  out->large_spans_live = g_spans_live.load(std::memory_order_relaxed);
}

}  // namespace hak::large
