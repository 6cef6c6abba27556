// Internal helpers of the tiny part shared by the front (tiny.cpp) and the pool (pool.cpp):
// intrusive rings and the two halves of a slab's remote list.
#pragma once

#include <atomic>

#include "common/chunk_map.h"
#include "common/log.h"
#include "tiny/superslab.h"

namespace hak::tiny {

// Circular doubly linked lists through next/prev (Slab and SuperSlab); head may be null.
template <typename T>
void ring_push_front(T*& head, T* node) {
  if (head == nullptr) {
    node->next = node->prev = node;
  } else {
    node->next = head;
    node->prev = head->prev;
    head->prev->next = node;
    head->prev = node;
  }
  head = node;
}
template <typename T>
void ring_push_back(T*& head, T* node) {
  ring_push_front(head, node);
  head = node->next;  // node is now the last element
}
template <typename T>
void ring_remove(T*& head, T* node) {
  if (node->next == node) {
    head = nullptr;
  } else {
    node->prev->next = node->next;
    node->next->prev = node->prev;
    if (head == node) head = node->next;
  }
  node->next = node->prev = nullptr;
}

// Debug builds and HAKMEM_CHECK: is `block` a block of a slab serving class `cls` (any class when
// cls is kAnyClass)? Only then may it be read.
inline constexpr unsigned kAnyClass = ~0u;
inline bool plausible_block(const void* block, unsigned cls) {
  chunk_map::Entry entry = chunk_map::lookup(block);
  if (entry.kind() != chunk_map::Kind::kTiny) return false;
  const Slab& slab = *slab_of(block);
  return (cls == kAnyClass || slab.cls == cls) && block_index(slab, block) != UINT32_MAX;
}

// Producer side: pushes the chain head..tail with one CAS. The caller must not touch the slab
// afterwards (it may become empty and be unmapped as soon as the owner drains the push).
inline void remote_push(Slab* slab, void* head, void* tail, uint32_t count) {
  slab->remote_count.fetch_add(count, std::memory_order_relaxed);
  void* old = slab->remote.load(std::memory_order_relaxed);
  do {
    next_of(tail) = old;
    // Release: the chain's links (and the program's writes to the blocks) are visible to the
    // consumer, whose exchange acquires. Relaxed on failure: we only retry with the new head.
  } while (!slab->remote.compare_exchange_weak(old, head, std::memory_order_release,
                                               std::memory_order_relaxed));
}

// Consumer side (the holder of the owner heap's slow_lock, or the pool lock holder for an
// abandoned slab): moves every remotely freed block onto the free list. Returns how many.
inline uint32_t drain_remote(Slab* slab, bool check) {
  // Relaxed pre-check avoids a write to a shared line when nothing was pushed.
  if (slab->remote.load(std::memory_order_relaxed) == nullptr) return 0;
  // Acquire pairs with the producers' release CAS: their links are visible.
  void* chain = slab->remote.exchange(nullptr, std::memory_order_acquire);
  if (chain == nullptr) return 0;
  uint32_t n = 1;
  void* tail = chain;
  for (;;) {
    void* next = next_of(tail);
    if (next == nullptr) break;
    if (check && !in_slab(next, slab)) {
      // tail was freed, then written: its link no longer points into the slab.
      fatal(
          "remote free list of a slab of class %u (%u bytes) is corrupt: block %p was written "
          "after free (link %p)",
          slab->cls, slab->block_size, tail, next);
    }
    tail = next;
    ++n;
  }
  next_of(tail) = slab->free;
  slab->free = chain;
  slab->remote_count.fetch_sub(n, std::memory_order_relaxed);
  HAK_DEBUG_CHECK(slab->used.load(std::memory_order_relaxed) >= n,
                  "slab %p of class %u: %u remote frees but only %u blocks used", slab->area(),
                  slab->cls, n, slab->used.load(std::memory_order_relaxed));
  slab->used.store(slab->used.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  return n;
}

inline uint32_t list_length(void* head) {
  uint32_t n = 0;
  for (void* b = head; b != nullptr; b = next_of(b)) ++n;
  return n;
}

// The count invariant (superslab.h). Exact for the owner (or the pool lock holder of an abandoned
// slab); other threads may push to the remote list meanwhile, which only lengthens it.
inline bool slab_counts_consistent(const Slab* slab) {
  uint32_t used = slab->used.load(std::memory_order_relaxed);
  // Acquire: the links of pushed chains are visible before we walk them.
  uint32_t remote = list_length(slab->remote.load(std::memory_order_acquire));
  return slab->carved <= slab->capacity && used == slab->carved - list_length(slab->free) &&
         remote <= used;
}

}  // namespace hak::tiny
