// An arena: one reservation of address space, aligned to its size, cut into 2 MiB slots that a part
// of hakmem commits one at a time for its chunks (tiny's SuperSlabs, the pool's chunks). It lets
// free recognise that part's memory by one shift and one compare instead of a chunk-map look-up.
//
// Contract
//  - contains(p): lock-free, any thread, any pointer. True iff p lies in the reservation; false for
//    every pointer while none is reserved (not yet, or refused).
//  - All of the reservation is readable: a slot never committed, or given back, reads as zeros,
//    so a stale or wild pointer's range test and header read cannot fault. Each part still
//    validates what it reads there.
//  - map_chunk: under the owning part's lock (which is what makes the slot bookkeeping
//    fork-safe). A slot given back is handed out again (lowest first) before the arena grows; a
//    chunk the arena cannot hold (reservation refused, or every slot taken) is mapped on its own,
//    and must then be reachable through the chunk map.
//  - unmap_chunk: outside the lock (its system call is the slow part); for a slot it returns
//    true, and the caller then hands the slot to give_back_slot, under the lock.
//
// index is written once, under the owner's lock, before the first slot is handed out; readers
// load it relaxed: a thread holding a live block of a slot learnt of the block through a chain
// that started after the store, and one that reads kNoIndex uses the chunk map, where every chunk
// is registered too. Plain storage behind std::atomic_ref, so that contains() can compare with it
// in place.
#pragma once

#include <atomic>
#include <cerrno>

#include "common/base.h"
#include "os/os.h"

namespace hak {

template <unsigned kShift>
class Arena {
 public:
  static constexpr size_t kBytes = size_t{1} << kShift;
  static constexpr uint32_t kSlots = static_cast<uint32_t>(kBytes / kChunkSize);

  HAK_FAST_PATH bool contains(const void* p) const {
    uintptr_t index = reinterpret_cast<uintptr_t>(p) >> kShift;
#if defined(__x86_64__)
    // The compare reads the index from memory itself: GCC does not fold an atomic load into an
    // instruction, and the extra register load is one instruction on every free. An aligned
    // 8-byte read is atomic on x86-64, which is all a relaxed load asks.
    bool inside;
    asm("cmp %[arena], %[index]" : "=@ccz"(inside) : [index] "r"(index), [arena] "m"(index_));
    return inside;
#else
    return index == load_index();
#endif
  }

  // The reservation's first byte; nullptr while none is reserved.
  char* base() const {
    uintptr_t index = load_index();
    return index == kNoIndex ? nullptr : reinterpret_cast<char*>(index << kShift);
  }

  // A chunk of zero-filled, writable memory, 2 MiB-aligned: a slot, else a mapping of its own;
  // nullptr with errno = ENOMEM when the OS refuses the pages. Reserves the arena on the first
  // call. Under the owner's lock.
  void* map_chunk() {
    if (state_ == State::kUnreserved) reserve();
    if (state_ != State::kReserved) return os::map(kChunkSize, kChunkSize);
    uint32_t slot = lowest_returned_slot();
    bool fresh = slot == kSlots;
    if (fresh) {
      if (slots_used_ == kSlots) return os::map(kChunkSize, kChunkSize);
      slot = slots_used_;
    }
    void* memory = base() + size_t{slot} * kChunkSize;
    if (!os::commit(memory, kChunkSize)) return nullptr;
    if (fresh) {
      ++slots_used_;
    } else {
      returned_[slot / 64] &= ~(uint64_t{1} << (slot % 64));
    }
    return memory;
  }

  // memory: a chunk map_chunk returned. Gives its pages back to the OS: a mapping of its own is
  // unmapped (false); a slot keeps its addresses, readable as zeros (true: the caller passes it to
  // give_back_slot under its lock).
  bool unmap_chunk(void* memory) {
    if (!contains(memory)) {
      os::unmap(memory, kChunkSize);
      return false;
    }
    os::uncommit(memory, kChunkSize);
    return true;
  }

  // memory: a slot unmap_chunk gave back to the OS. Under the owner's lock.
  void give_back_slot(void* memory) {
    auto slot =
        static_cast<uint32_t>((reinterpret_cast<uintptr_t>(memory) & (kBytes - 1)) >> kChunkShift);
    returned_[slot / 64] |= uint64_t{1} << (slot % 64);
  }

 private:
  // p >> kShift of a 64-bit address is below 2^(64 - kShift), so no pointer matches it.
  static constexpr uintptr_t kNoIndex = UINTPTR_MAX;
  enum class State : uint8_t { kUnreserved, kReserved, kRefused };

  uintptr_t load_index() const {
    return std::atomic_ref<const uintptr_t>(index_).load(std::memory_order_relaxed);
  }
  uint32_t lowest_returned_slot() const {
    for (uint32_t w = 0; w < kSlots / 64; ++w) {
      if (returned_[w] != 0) return w * 64 + static_cast<uint32_t>(__builtin_ctzll(returned_[w]));
    }
    return kSlots;
  }
  void reserve() {
    int saved = errno;  // a refusal is not the caller's error: it maps the chunk on its own
    void* memory = os::reserve(kBytes, kBytes);
    errno = saved;
    state_ = memory == nullptr ? State::kRefused : State::kReserved;
    if (memory != nullptr) {
      std::atomic_ref<uintptr_t>(index_).store(reinterpret_cast<uintptr_t>(memory) >> kShift,
                                               std::memory_order_relaxed);
    }
  }

  alignas(std::atomic_ref<uintptr_t>::required_alignment) uintptr_t index_ = kNoIndex;
  State state_ = State::kUnreserved;
  uint32_t slots_used_ = 0;  // slots ever handed out
  uint64_t returned_[kSlots / 64] = {};
};

}  // namespace hak
