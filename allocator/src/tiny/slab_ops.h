// Internal helpers of the tiny part shared by the front (tiny.cpp) and the pool (pool.cpp):
// intrusive rings and the two halves of a slab's remote bitmap.
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

// The remote bitmap of slab (superslab.h).
inline std::atomic<uint64_t>* remote_bits(const Slab* slab) {
  return slab->superslab()->remote_bits[slab->index];
}

// Relaxed: a hint for whether drain_remote would find anything (it acquires what it takes).
inline bool has_remote(const Slab* slab) {
  return slab->remote_count.load(std::memory_order_relaxed) != 0;
}

// Check mode fills a remotely freed block with this byte; the drain finds any write after free.
inline constexpr unsigned char kRemotePoison = 0xdb;

[[noreturn]] HAK_SLOW_PATH void report_remote_double_free_fatal(const void* block,
                                                                const Slab* slab);
HAK_SLOW_PATH void report_remote_double_free(const void* block, const Slab* slab);

// Producer side: marks blocks freed by a thread that does not own their slabs in the slabs'
// remote bitmaps, one fetch_or per run of blocks of one bitmap word (blocks freed in a burst sit
// side by side), each after the slab's remote_count grew by the bits it sets. A block whose bit is
// already set is a double free: reported and left out. The marker touches a slab only while it
// holds an unpublished block of it: once a slab's last bit is set it may become empty and be
// unmapped as soon as the owner drains it, so the caller must be done with each block (its link
// read) before adding it, and call publish() when done. check (debug builds, HAKMEM_CHECK):
// poison each block.
class RemoteMarker {
 public:
  // freer: the calling thread's heap (or null), recorded in the slabs it marks.
  RemoteMarker(bool check, const Heap* freer) : check_(check), freer_(freer) {}
  RemoteMarker(const RemoteMarker&) = delete;
  RemoteMarker& operator=(const RemoteMarker&) = delete;
  ~RemoteMarker() { HAK_DEBUG_CHECK(bits_ == 0, "remote marker dropped unpublished bits"); }

  void add(Slab* slab, void* block) {
    uint32_t index = block_index(*slab, block);
    if (check_) __builtin_memset(block, kRemotePoison, slab->block_size);
    if (slab != slab_ || index / 64 != word_) {
      publish();
      slab_ = slab;
      word_ = index / 64;
    }
    uint64_t bit = uint64_t{1} << (index % 64);
    if (HAK_UNLIKELY(bits_ & bit)) return report(bit);  // twice in this very run
    bits_ |= bit;
    ++marked_;  // counted here: popcount is a libgcc call without -mpopcnt
  }

  // `count` blocks of slab linked from head (each link read before its block is added).
  void add_run(Slab* slab, void* head, uint32_t count) {
    for (uint32_t i = 0; i < count; ++i) {
      void* next = next_of(head);
      add(slab, head);
      head = next;
    }
  }

  // Publishes the pending word; the marker can go on with other blocks.
  void publish() {
    if (bits_ == 0) return;
    std::atomic<uint64_t>& word = slab_->superslab()->remote_bits[slab_->index][word_];
    // Relaxed: a block whose bit is set now is free and not yet drained, so freeing it again is a
    // double free (no false alarm; a racing drain may only hide one).
    if (uint64_t twice = word.load(std::memory_order_relaxed) & bits_; HAK_UNLIKELY(twice != 0)) {
      report(twice);
      bits_ &= ~twice;
      marked_ -= static_cast<uint32_t>(__builtin_popcountll(twice));
    }
    if (bits_ != 0) {
      slab_->remote_count.fetch_add(marked_, std::memory_order_relaxed);
      slab_->last_remote_freer.store(freer_, std::memory_order_relaxed);
      // Release: the program's writes to the blocks are visible to the drainer, whose exchange
      // acquires.
      word.fetch_or(bits_, std::memory_order_release);
    }
    bits_ = 0;
    marked_ = 0;
  }

 private:
  void report(uint64_t twice) const {
    char* block =
        slab_->area() +
        (size_t{word_} * 64 + static_cast<unsigned>(__builtin_ctzll(twice))) * slab_->block_size;
    if (check_) report_remote_double_free_fatal(block, slab_);
    report_remote_double_free(block, slab_);
  }

  Slab* slab_ = nullptr;
  uint32_t word_ = 0;
  uint64_t bits_ = 0;    // of word_, not yet published
  uint32_t marked_ = 0;  // bits in bits_
  bool check_;
  const Heap* freer_;
};

[[noreturn]] HAK_SLOW_PATH void report_written_after_remote_free(const void* block,
                                                                 const Slab* slab);

// Consumer side (the holder of the owner heap's slow_lock, or the pool lock holder for an
// abandoned slab): moves every block marked in the remote bitmap onto the free list, in address
// order. Returns how many. check: verify RemoteMarker's poison.
inline uint32_t drain_remote(Slab* slab, bool check) {
  // Relaxed pre-check avoids touching the bitmap when nothing was freed remotely.
  if (!has_remote(slab)) return 0;
  std::atomic<uint64_t>* words = remote_bits(slab);
  const uint32_t size = slab->block_size;
  char* const area = slab->area();
  void* free = slab->free;
  uint32_t n = 0;
  // Only carved blocks can have been freed; from the top down, so the list ends up ascending.
  for (uint32_t word = (slab->carved + 63) / 64; word-- > 0;) {
    if (words[word].load(std::memory_order_relaxed) == 0) continue;
    // Acquire pairs with the producers' release fetch_or: their writes to the blocks are visible.
    uint64_t bits = words[word].exchange(0, std::memory_order_acquire);
    while (bits != 0) {
      ++n;
      unsigned top = 63 - static_cast<unsigned>(__builtin_clzll(bits));
      bits &= ~(uint64_t{1} << top);
      char* block = area + (size_t{word} * 64 + top) * size;
      if (check) {
        for (uint32_t i = 0; i < size; ++i) {
          if (static_cast<unsigned char>(block[i]) != kRemotePoison) {
            report_written_after_remote_free(block, slab);
          }
        }
      }
      next_of(block) = free;
      free = block;
    }
  }
  if (n == 0) return 0;
  slab->free = free;
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

// Blocks marked in slab's remote bitmap.
inline uint32_t remote_marked(const Slab* slab) {
  uint32_t n = 0;
  for (uint32_t word = 0; word < kBitmapWords; ++word) {
    // Acquire: a bit seen set brings its freer's earlier rise of remote_count with it.
    n += static_cast<uint32_t>(
        __builtin_popcountll(remote_bits(slab)[word].load(std::memory_order_acquire)));
  }
  return n;
}

// The count invariant (superslab.h). Exact for the owner (or the pool lock holder of an abandoned
// slab); other threads may free into the slab meanwhile, each raising remote_count before it sets
// its bits, so the bits are counted first.
inline bool slab_counts_consistent(const Slab* slab) {
  uint32_t used = slab->used.load(std::memory_order_relaxed);
  uint32_t marked = remote_marked(slab);
  uint32_t pending = slab->remote_count.load(std::memory_order_relaxed);
  return slab->carved <= slab->capacity &&
         used == slab->carved - list_length(slab->free) - slab->scavenged && marked <= pending &&
         pending <= used;
}

// Can the slab give a block without a remote drain: from its free list, its bump area or its
// scavenged pages?
inline bool has_free_blocks(const Slab* slab) {
  return slab->free != nullptr || slab->carved < slab->capacity || slab->scavenged != 0;
}

}  // namespace hak::tiny
