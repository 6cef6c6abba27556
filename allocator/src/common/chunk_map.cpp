// The chunk map (see chunk_map.h): leaves mapped lazily, installed with one CAS, never freed.
#include "common/chunk_map.h"

#include "common/log.h"
#include "os/os.h"

namespace hak::chunk_map {

namespace detail {
std::atomic<Leaf*> g_root[size_t{1} << kRootBits];
}  // namespace detail

namespace {

using detail::Leaf;

Leaf* leaf_for(size_t root_index) {
  Leaf* leaf = detail::g_root[root_index].load(std::memory_order_acquire);
  if (leaf != nullptr) return leaf;
  auto* fresh = static_cast<Leaf*>(os::map(sizeof(Leaf)));
  if (fresh == nullptr) return nullptr;
  // Release publishes the zeroed leaf; if another thread won the race, use its leaf.
  if (detail::g_root[root_index].compare_exchange_strong(leaf, fresh, std::memory_order_acq_rel,
                                                         std::memory_order_acquire)) {
    return fresh;
  }
  os::unmap(fresh, sizeof(Leaf));
  return leaf;
}

template <typename Visit>
bool for_each_granule(const void* base, size_t size, Visit visit) {
  uintptr_t first = reinterpret_cast<uintptr_t>(base) >> kChunkShift;
  uintptr_t last = (reinterpret_cast<uintptr_t>(base) + size - 1) >> kChunkShift;
  for (uintptr_t granule = first; granule <= last; ++granule) {
    if (!visit(granule >> detail::kLeafBits, granule & ((size_t{1} << detail::kLeafBits) - 1))) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool register_range(const void* base, size_t size, Kind kind, const void* owner) {
  HAK_DEBUG_CHECK((reinterpret_cast<uintptr_t>(base) & (kChunkSize - 1)) == 0 && size > 0,
                  "chunk_map: unaligned range %p", base);
  HAK_DEBUG_CHECK((reinterpret_cast<uintptr_t>(owner) & Entry::kKindMask) == 0,
                  "chunk_map: misaligned owner %p", owner);
  Entry entry(kind, owner);
  return for_each_granule(base, size, [&](size_t root, size_t index) {
    Leaf* leaf = leaf_for(root);
    if (leaf == nullptr) return false;
    // Release: the owner's metadata was initialised before this store.
    leaf->entries[index].store(entry.raw(), std::memory_order_release);
    return true;
  });
}

void unregister_range(const void* base, size_t size) {
  for_each_granule(base, size, [](size_t root, size_t index) {
    Leaf* leaf = detail::g_root[root].load(std::memory_order_acquire);
    if (leaf != nullptr) leaf->entries[index].store(0, std::memory_order_release);
    return true;
  });
}

}  // namespace hak::chunk_map
