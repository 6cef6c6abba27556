// The chunk map: for any address, which part of hakmem owns the 2 MiB granule it lies in, and
// that part's metadata for it. This is how `free` classifies any pointer in O(1) and refuses a
// pointer that is not hakmem's.
//
// Glossary: a granule is an aligned 2 MiB range of address space; an entry is (kind, owner),
// where owner is the part's metadata for that granule (a SuperSlab, a pool chunk, a large span).
//
// Invariants:
//  - Lookups are lock-free and never fault: the map is a two-level radix tree whose leaves are
//    mapped on first use and never unmapped, so a reader can never touch freed map memory.
//  - An entry is published (release) only after its owner's metadata is initialised; a reader
//    (acquire) that sees the entry sees the metadata.
//  - A part clears its entries before it unmaps a granule. An entry says "may be ours": each part
//    still validates the pointer against its metadata before trusting it.
#pragma once

#include <atomic>

#include "common/base.h"

namespace hak::chunk_map {

enum class Kind : uintptr_t { kNone = 0, kTiny = 1, kPool = 2, kLarge = 3 };

class Entry {
 public:
  constexpr Entry() = default;
  constexpr explicit Entry(uintptr_t raw) : raw_(raw) {}
  Entry(Kind kind, const void* owner)
      : raw_(reinterpret_cast<uintptr_t>(owner) | uintptr_t(kind)) {}

  Kind kind() const { return static_cast<Kind>(raw_ & kKindMask); }
  template <typename T>
  T* owner() const {
    return reinterpret_cast<T*>(raw_ & ~kKindMask);
  }
  uintptr_t raw() const { return raw_; }
  // Is the entry of kind k? If so, owner is set to its owner. One subtraction and one test, for
  // free's routing, which needs both answers.
  template <typename T>
  bool is(Kind k, T*& owner) const {
    uintptr_t candidate = raw_ - uintptr_t(k);
    owner = reinterpret_cast<T*>(candidate);
    return (candidate & kKindMask) == 0;
  }

  static constexpr uintptr_t kKindMask = 7;  // owners are at least 8-byte aligned

 private:
  uintptr_t raw_ = 0;
};

namespace detail {
inline constexpr unsigned kAddressBits = 48;
inline constexpr unsigned kLeafBits = 14;
inline constexpr unsigned kRootBits = kAddressBits - kChunkShift - kLeafBits;
struct Leaf {
  std::atomic<uintptr_t> entries[size_t{1} << kLeafBits];
};
extern std::atomic<Leaf*> g_root[size_t{1} << kRootBits];
}  // namespace detail

// The entry for the granule that contains p (kNone for addresses hakmem never registered).
HAK_FAST_PATH Entry lookup(const void* p) {
  using namespace detail;
  uintptr_t granule = reinterpret_cast<uintptr_t>(p) >> kChunkShift;
  uintptr_t root = granule >> kLeafBits;
  if (HAK_UNLIKELY(root >= (size_t{1} << kRootBits))) return Entry{};
  // Acquire pairs with the release in register_range: leaf contents and owner metadata are
  // visible once the pointer/entry is.
  Leaf* leaf = g_root[root].load(std::memory_order_acquire);
  if (HAK_UNLIKELY(leaf == nullptr)) return Entry{};
  return Entry{
      leaf->entries[granule & ((size_t{1} << kLeafBits) - 1)].load(std::memory_order_acquire)};
}

// Marks every granule that [base, base + size) touches as (kind, owner). base must be
// granule-aligned. Returns false (errno = ENOMEM) if a leaf could not be mapped.
bool register_range(const void* base, size_t size, Kind kind, const void* owner);

// Clears the entries register_range set for the same range.
void unregister_range(const void* base, size_t size);

}  // namespace hak::chunk_map
