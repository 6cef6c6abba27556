// The tiny part across threads: cross-thread free storms (one thread allocates, the others free),
// thread churn with blocks that outlive their thread, first operations and operations after a
// thread's teardown, and the count invariant after all of it.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "hakmem.h"
#include "tiny/tiny.h"
#include "tiny_test_util.h"

using namespace hak_test;

namespace {

// A single-producer single-consumer ring of blocks from the allocating thread to one freer.
struct Mailbox {
  static constexpr size_t kSlots = 256;
  std::atomic<void*> slots[kSlots] = {};
  std::atomic<size_t> head{0};  // next slot the producer fills
  size_t tail = 0;              // consumer's
  void put(void* p) {
    size_t h = head.load(std::memory_order_relaxed);
    while (slots[h % kSlots].load(std::memory_order_acquire) != nullptr) sched_yield();
    slots[h % kSlots].store(p, std::memory_order_release);
    head.store(h + 1, std::memory_order_relaxed);
  }
  void* take() {
    std::atomic<void*>& slot = slots[tail % kSlots];
    void* p;
    while ((p = slot.load(std::memory_order_acquire)) == nullptr) sched_yield();
    slot.store(nullptr, std::memory_order_release);
    ++tail;
    return p;
  }
};

void expect_all_memory_accounted() {
  hak_collect();
  auto census = hak::tiny::testing::census();
  EXPECT_EQ(census.blocks_used, 0u);
  EXPECT_EQ(census.slabs_in_use, 0u);
  EXPECT_EQ(census.blocks_queued, 0u);
  EXPECT_EQ(census.invariant_violations, 0u);
}

// One thread allocates `total` blocks of random tiny sizes, writes a pattern, and hands them
// round-robin to `freers` threads, which check the pattern and free them.
void storm(int freers, int total) {
  std::vector<Mailbox> boxes(freers);
  std::atomic<int> corrupt{0};
  std::vector<std::thread> threads;
  int per_freer = total / freers;
  for (int f = 0; f < freers; ++f) {
    threads.emplace_back([&, f] {
      for (int i = 0; i < per_freer; ++i) {
        void* p = boxes[f].take();
        size_t size = hak_usable_size(p);
        if (!intact(p, size, reinterpret_cast<uintptr_t>(p) ^ size)) corrupt.fetch_add(1);
        hak_free(p);
      }
    });
  }
  std::thread producer([&] {
    Rng rng(freers);
    for (int i = 0; i < per_freer * freers; ++i) {
      void* p = hak_malloc(rng.below(hak::kTinyMaxSize + 1));
      ASSERT_NE(p, nullptr);
      size_t size = hak_usable_size(p);
      fill(p, size, reinterpret_cast<uintptr_t>(p) ^ size);
      boxes[i % freers].put(p);
    }
  });
  producer.join();
  for (auto& t : threads) t.join();
  EXPECT_EQ(corrupt.load(), 0);
}

}  // namespace

TEST(TinyThreads, CrossThreadFreeStorm2) {
  storm(1, 400000 / kScale);  // 2 threads: one allocates, one frees
  expect_all_memory_accounted();
}

TEST(TinyThreads, CrossThreadFreeStorm4) {
  storm(3, 400000 / kScale);
  expect_all_memory_accounted();
}

TEST(TinyThreads, CrossThreadFreeStorm16) {
  storm(15, 300000 / kScale);
  expect_all_memory_accounted();
}

TEST(TinyThreads, CrossThreadFreeStorm64) {
  storm(63, 192000 / kScale);
  hak_stats_t s = stats();
  EXPECT_GT(s.tiny_remote_frees + s.tiny_spill_queue_drains, 0u);
  expect_all_memory_accounted();
}

// Every thread allocates and frees locally, frees some survivors of earlier threads, and leaves
// some of its own blocks behind for later threads.
TEST(TinyThreads, ThousandsOfShortLivedThreadsWithSurvivingBlocks) {
  const int waves = 500 / kScale + 20, per_wave = 8;
  std::mutex lock;
  std::vector<std::pair<void*, size_t>> survivors;
  std::atomic<int> corrupt{0};
  for (int wave = 0; wave < waves; ++wave) {
    std::vector<std::thread> threads;
    for (int t = 0; t < per_wave; ++t) {
      threads.emplace_back([&, seed = wave * per_wave + t] {
        Rng rng(seed + 1);
        std::vector<std::pair<void*, size_t>> mine;
        for (int i = 0; i < 64; ++i) {
          size_t size = rng.below(hak::kTinyMaxSize + 1);
          void* p = hak_malloc(size);
          fill(p, size, reinterpret_cast<uintptr_t>(p));
          mine.emplace_back(p, size);
        }
        for (int i = 0; i < 32; ++i) {  // local frees
          auto [p, size] = mine.back();
          mine.pop_back();
          if (!intact(p, size, reinterpret_cast<uintptr_t>(p))) corrupt.fetch_add(1);
          hak_free(p);
        }
        std::vector<std::pair<void*, size_t>> adopted;
        {
          std::lock_guard<std::mutex> guard(lock);
          for (int i = 0; i < 24 && !survivors.empty(); ++i) {
            adopted.push_back(survivors.back());
            survivors.pop_back();
          }
          for (auto& block : mine) survivors.push_back(block);  // outlive this thread
        }
        for (auto [p, size] : adopted) {
          if (!intact(p, size, reinterpret_cast<uintptr_t>(p))) corrupt.fetch_add(1);
          hak_free(p);
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  EXPECT_EQ(corrupt.load(), 0);
  hak_stats_t s = stats();
  EXPECT_GT(s.superslabs_live, 0u);
  for (auto [p, size] : survivors) {
    ASSERT_TRUE(intact(p, size, reinterpret_cast<uintptr_t>(p)));
    hak_free(p);
  }
  expect_all_memory_accounted();
  EXPECT_EQ(stats().superslabs_live, 0u);
}

TEST(TinyThreads, AbandonedSlabsAreAdopted) {
  hak_collect();
  uint64_t adoptions = stats().tiny_adoptions;
  std::vector<void*> blocks;
  std::thread([&] {
    for (int i = 0; i < 2000; ++i) blocks.push_back(hak_malloc(96));
  }).join();
  // Free half: the exited thread's slabs have room and wait in the pool.
  for (size_t i = 0; i < blocks.size(); i += 2) hak_free(blocks[i]);
  hak_collect();
  std::thread([&] {
    std::vector<void*> mine;
    for (int i = 0; i < 500; ++i) mine.push_back(hak_malloc(96));
    for (void* p : mine) hak_free(p);
  }).join();
  EXPECT_GT(stats().tiny_adoptions, adoptions);
  for (size_t i = 1; i < blocks.size(); i += 2) hak_free(blocks[i]);
  expect_all_memory_accounted();
}

// The owner thins its slabs out and gives their free pages back (collect) while another thread
// frees blocks left in them, then allocates again; it exits with 6 MiB of slabs thinned to a
// sixteenth, which gives their pages back too, and the next round's owner adopts them while its
// freer frees what they still hold. Every block is handed out once and keeps what is written to it.
TEST(TinyThreads, ScavengingRacesWithRemoteFreesIntoTheSameSlabs) {
  hak_collect();
  const int rounds = 12 / kScale;
  constexpr int kRefill = 6144;  // 6 MiB of 1 KiB blocks: past the thread-exit floor (4 MiB)
  std::vector<char*> outliving;  // blocks of the previous round's exited owner
  for (int round = 0; round < rounds; ++round) {
    std::atomic<int> corrupt{0};
    size_t given_back = 0;
    std::thread owner([&] {
      Rng rng(round);
      std::vector<char*> blocks;
      std::vector<size_t> sizes;
      for (int i = 0; i < 2048; ++i) {
        size_t size = i % 2 ? 1024 : 640 + rng.below(64);
        char* p = static_cast<char*>(hak_malloc(size));
        fill(p, size, i);
        blocks.push_back(p);
        sizes.push_back(size);
      }
      // Every 16th block stays live, so the slabs are thin, not empty, when collect looks;
      // every 13th of the others is freed by the freer, racing with collect.
      std::vector<char*> remote;
      for (size_t i = 0; i < blocks.size(); ++i) {
        if (i % 16 != 1 && i % 13 == 0) remote.push_back(blocks[i]);
      }
      std::atomic<bool> go{false};
      std::thread freer([&] {
        while (!go.load(std::memory_order_acquire)) sched_yield();
        for (char* p : remote) hak_free(p);
        for (char* p : outliving) hak_free(p);
      });
      go.store(true, std::memory_order_release);
      for (size_t i = 0; i < blocks.size(); ++i) {
        if (i % 16 == 1 || i % 13 == 0) continue;
        if (!intact(blocks[i], sizes[i], i)) corrupt.fetch_add(1);
        hak_free(blocks[i]);
      }
      hak_collect();
      std::set<char*> seen(remote.begin(), remote.end());
      for (size_t i = 1; i < blocks.size(); i += 16) seen.insert(blocks[i]);
      given_back = pages_not_resident(blocks, seen, 1024);
      freer.join();
      seen = std::set<char*>();
      for (size_t i = 1; i < blocks.size(); i += 16) seen.insert(blocks[i]);
      std::vector<char*> again;
      for (int i = 0; i < kRefill; ++i) {
        char* p = static_cast<char*>(hak_malloc(1024));
        if (!seen.insert(p).second) corrupt.fetch_add(1);
        fill(p, 1024, i + 7);
        again.push_back(p);
      }
      for (size_t i = 1; i < blocks.size(); i += 16) {
        if (!intact(blocks[i], sizes[i], i)) corrupt.fetch_add(1);
        hak_free(blocks[i]);
      }
      outliving.clear();
      for (int i = 0; i < kRefill; ++i) {
        if (!intact(again[i], 1024, i + 7)) corrupt.fetch_add(1);
        if (i % 16 == 0) {
          outliving.push_back(again[i]);
        } else {
          hak_free(again[i]);
        }
      }
    });
    owner.join();
    EXPECT_EQ(corrupt.load(), 0);
    EXPECT_GT(given_back, 0u) << "collect gave back no page of the thinned slabs";
  }
  for (char* p : outliving) hak_free(p);
  expect_all_memory_accounted();
}

// A slab left nearly full goes to the thread that is freeing its blocks, not to the next thread
// that happens to need a slab of its class (pool.cpp, Adopt).
TEST(TinyThreads, ANearlyFullAbandonedSlabIsAdoptedByItsFreerNotByABystander) {
  hak_collect();
  constexpr size_t kSize = 64;
  std::vector<void*> blocks;
  std::thread([&] {
    for (int i = 0; i < 1024; ++i) blocks.push_back(hak_malloc(kSize));
  }).join();
  const hak::tiny::Slab* left = hak::tiny::slab_of(blocks[0]);
  std::vector<void*> in_left;
  for (void* p : blocks) {
    if (hak::tiny::slab_of(p) == left) in_left.push_back(p);
  }
  ASSERT_GE(in_left.size(), 600u);
  std::atomic<int> step{0};
  void* freer_block = nullptr;
  std::thread freer([&] {
    // A fifth of the slab, sent home in several flushes of the outgoing list.
    for (size_t i = 0; i < in_left.size() / 5; ++i) hak_free(in_left[i]);
    step.store(1);
    while (step.load() != 2) sched_yield();
    freer_block = hak_malloc(kSize);
  });
  while (step.load() != 1) sched_yield();
  void* bystander_block = nullptr;
  std::thread([&] { bystander_block = hak_malloc(kSize); }).join();
  EXPECT_NE(hak::tiny::slab_of(bystander_block), left) << "a bystander adopted a slab 80% full";
  step.store(2);
  freer.join();
  EXPECT_EQ(hak::tiny::slab_of(freer_block), left) << "the freer did not adopt the slab";
  hak_free(bystander_block);
  hak_free(freer_block);
  for (size_t i = in_left.size() / 5; i < in_left.size(); ++i) hak_free(in_left[i]);
  for (void* p : blocks) {
    if (hak::tiny::slab_of(p) != left) hak_free(p);
  }
  expect_all_memory_accounted();
}

TEST(TinyThreads, FirstOperationOfAThreadMayBeAFree) {
  std::vector<void*> blocks;
  for (int i = 0; i < 100; ++i) blocks.push_back(hak_malloc(i * 10));
  std::thread([&] {
    for (void* p : blocks) hak_free(p);
  }).join();
  expect_all_memory_accounted();
}

namespace {
pthread_key_t g_late_key;
std::atomic<int> g_late_ok{0};
void* g_late_block = nullptr;
// Runs at thread exit, after hakmem's own destructor (its key was created first): allocation and
// free must still work and leak nothing.
void late_destructor(void*) {
  void* p = hak_malloc(200);
  if (p != nullptr) {
    fill(p, 200, 9);
    if (intact(p, 200, 9)) g_late_ok.fetch_add(1);
    hak_free(p);
  }
  hak_free(g_late_block);
  void* q = hak_malloc(16);
  g_late_block = q;  // freed by the main thread afterwards
}
}  // namespace

TEST(TinyThreads, AllocAndFreeAfterTheThreadsTeardown) {
  hak_free(hak_malloc(1));  // make sure hakmem's key exists before ours
  ASSERT_EQ(pthread_key_create(&g_late_key, late_destructor), 0);
  g_late_block = hak_malloc(64);
  for (int i = 0; i < 20; ++i) {
    std::thread([] {
      hak_free(hak_malloc(32));
      pthread_setspecific(g_late_key, reinterpret_cast<void*>(1));
    }).join();
  }
  EXPECT_EQ(g_late_ok.load(), 20);
  hak_free(g_late_block);
  pthread_key_delete(g_late_key);
  expect_all_memory_accounted();
}

TEST(TinyThreads, ProducerConsumerRecyclesThroughCaches) {
  // Many rounds of "A allocates, B frees": memory must not grow without bound.
  hak_collect();
  uint64_t live_before = stats().superslabs_live;
  const int rounds = 200 / kScale + 5;
  Mailbox box;
  std::thread consumer([&] {
    for (int i = 0; i < rounds * 1000; ++i) hak_free(box.take());
  });
  std::thread producer([&] {
    for (int i = 0; i < rounds * 1000; ++i) box.put(hak_malloc(128));
  });
  producer.join();
  consumer.join();
  EXPECT_LE(stats().superslabs_live, live_before + 6);
  expect_all_memory_accounted();
}

// fork() while other threads allocate: the router registers tiny's prefork/postfork handlers with
// pthread_atfork, so the child finds every lock free and keeps allocating, also in new threads.
TEST(TinyThreads, ForkWhileOtherThreadsAllocate) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t) {
    workers.emplace_back([&, t] {
      Rng rng(t + 100);
      std::vector<void*> blocks(64, nullptr);
      while (!stop.load(std::memory_order_relaxed)) {
        size_t slot = rng.below(blocks.size());
        hak_free(blocks[slot]);
        blocks[slot] = hak_malloc(rng.below(hak::kTinyMaxSize + 1));
        if (rng.below(5000) == 0) std::thread([] { hak_free(hak_malloc(64)); }).join();
      }
      for (void* p : blocks) hak_free(p);
    });
  }
  for (int i = 0; i < 10; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(30);  // a deadlocked child fails the test instead of hanging it
      bool ok = true;
      // A fixed array, not a std::vector: the child must not call the process's malloc, which a
      // parent thread may have held locked at the fork (ASan's allocator is not fork-safe).
      static void* blocks[5000];
      for (int j = 0; j < 5000; ++j) {
        blocks[j] = hak_malloc(j % 1025);
        fill(blocks[j], j % 1025, j);
      }
      for (int j = 0; j < 5000; ++j) ok &= intact(blocks[j], j % 1025, j);
      for (void* p : blocks) hak_free(p);
#if !defined(HAK_TEST_SANITIZED)  // neither sanitizer runtime supports threads in this child
      std::thread([&] {
        for (int j = 0; j < 1000; ++j) hak_free(hak_malloc(j % 1025));
      }).join();
#endif
      hak_collect();
      _exit(ok ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  }
  stop.store(true);
  for (auto& t : workers) t.join();
  expect_all_memory_accounted();
}

// A thread's slabs of a class it stopped using, emptied by another thread's frees, go back to the
// pool while the thread keeps working in other classes (no collect, no thread exit).
TEST(TinyThreads, SlabsEmptiedByRemoteFreesLeaveAnOwnerBusyElsewhere) {
  hak_collect();
  unsigned c64 = hak::tiny::size_to_class(64);
  uint64_t slabs_before = stats().tiny_slabs_per_class[c64];
  uint64_t held_after_alloc = 0, held_later = 0;
  std::thread([&] {
    std::vector<void*> blocks;
    for (int i = 0; i < 5000; ++i) blocks.push_back(hak_malloc(64));
    // Measured before the remote frees: while this thread waits for the freeing threads, the
    // pool's idle-heap check may already give the slabs back (it goes by time), which is right
    // but would make a count taken after the frees depend on timing.
    held_after_alloc = stats().tiny_slabs_per_class[c64];
    // Freed by short threads, a few each: their caches never spill, their exits send the blocks
    // home into the slabs' remote bitmaps.
    for (size_t first = 0; first < blocks.size(); first += 10) {
      std::thread([&, first] {
        for (size_t i = first; i < first + 10 && i < blocks.size(); ++i) hak_free(blocks[i]);
      }).join();
    }
    for (int round = 0; round < 20; ++round) {  // busy in another class: slow paths, new slabs
      std::vector<void*> other;
      for (int i = 0; i < 2000; ++i) other.push_back(hak_malloc(512));
      for (void* p : other) hak_free(p);
    }
    held_later = stats().tiny_slabs_per_class[c64];
  }).join();
  EXPECT_GE(held_after_alloc, slabs_before + 4);
  EXPECT_LE(held_later, slabs_before + 1);
  expect_all_memory_accounted();
}

// Hoard's passive false sharing: a thread that frees another thread's block must not get it back
// from its own malloc (it would write into lines the owner uses). Several threads at once, each
// freeing blocks the main thread handed out side by side, then allocating the same class.
TEST(TinyThreads, FreedForeignBlocksAreNotReusedByTheFreeingThread) {
  constexpr int kThreads = 4;
  constexpr int kForeign = 3;  // below the smallest batch: they stay on the outgoing list
  std::vector<void*> handed;
  for (int i = 0; i < kThreads * kForeign; ++i) handed.push_back(hak_malloc(48));
  std::atomic<int> reused{0}, ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      hak_free(hak_malloc(48));  // this thread's own heap and slab first
      ready.fetch_add(1);
      while (ready.load() < kThreads) sched_yield();  // all free and allocate together
      for (int i = 0; i < kForeign; ++i) hak_free(handed[t * kForeign + i]);
      std::vector<void*> mine;
      for (int i = 0; i < 2000; ++i) mine.push_back(hak_malloc(48));
      for (void* p : mine) {
        for (int i = 0; i < kForeign; ++i) {
          if (p == handed[t * kForeign + i]) reused.fetch_add(1);
        }
        hak_free(p);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(reused.load(), 0);
  expect_all_memory_accounted();
}

// A thread that allocated and now only waits (Larson's main thread) must not keep the slabs that
// other threads' frees emptied: before the pool grows, they are taken from its heap, and a thread
// that allocates the same amount again reuses them instead of mapping new SuperSlabs.
TEST(TinyThreads, SlabsOfAnIdleThreadAreReusedByOthers) {
  constexpr int kBlocks = 40000;  // of 256 B: 10 MB, about 5 SuperSlabs
  hak_collect();
  std::vector<void*> blocks;
  for (int i = 0; i < kBlocks; ++i) blocks.push_back(hak_malloc(256));
  uint64_t peak_before = stats().superslabs_peak;
  std::thread([&] {
    for (void* p : blocks) hak_free(p);
  }).join();
  std::thread([&] {
    std::vector<void*> mine;
    for (int i = 0; i < kBlocks; ++i) mine.push_back(hak_malloc(256));
    for (void* p : mine) hak_free(p);
  }).join();
  // One SuperSlab may be mapped before the idle check has seen this thread twice.
  EXPECT_LE(stats().superslabs_peak, peak_before + 1);
  // The idle thread still works, from its caches and then from new slabs.
  std::vector<void*> again;
  for (int i = 0; i < 2000; ++i) {
    void* p = hak_malloc(256);
    ASSERT_NE(p, nullptr);
    fill(p, 256, i);
    again.push_back(p);
  }
  for (int i = 0; i < 2000; ++i) {
    EXPECT_TRUE(intact(again[i], 256, i));
    hak_free(again[i]);
  }
  expect_all_memory_accounted();
}

// The idle check takes slabs from heaps whose owners are in their fast paths: here the owners
// churn blocks through their caches (mostly fast paths, now and then a refill or spill), other
// threads free their blocks remotely, and a collector forces an idle check on every call.
TEST(TinyThreads, IdleChecksRaceWithOwnersFastPaths) {
  constexpr int kOwners = 3;
  const int rounds = 300 / kScale;
  std::atomic<bool> done{false};
  std::atomic<int> corrupt{0};
  Mailbox box[kOwners];
  std::thread collector([&] {
    while (!done.load()) hak_collect();  // every collect runs an idle check
  });
  std::vector<std::thread> freers, owners;
  for (int t = 0; t < kOwners; ++t) {
    freers.emplace_back([&, t] {
      for (int i = 0; i < rounds * 64; ++i) {
        void* p = box[t].take();
        if (!intact(p, 96, reinterpret_cast<uintptr_t>(p))) corrupt.fetch_add(1);
        hak_free(p);
      }
    });
    owners.emplace_back([&, t] {
      Rng rng(t + 7);
      std::vector<void*> held;
      for (int round = 0; round < rounds; ++round) {
        for (int i = 0; i < 64; ++i) {  // these go to the freer
          void* p = hak_malloc(96);
          fill(p, 96, reinterpret_cast<uintptr_t>(p));
          box[t].put(p);
        }
        for (int i = 0; i < 200; ++i) {  // a small working set: mostly cache hits
          if (held.size() < 24 || rng.below(2) == 0) {
            void* p = hak_malloc(96);
            fill(p, 96, reinterpret_cast<uintptr_t>(p));
            held.push_back(p);
          } else {
            size_t victim = rng.below(held.size());
            if (!intact(held[victim], 96, reinterpret_cast<uintptr_t>(held[victim]))) {
              corrupt.fetch_add(1);
            }
            hak_free(held[victim]);
            held[victim] = held.back();
            held.pop_back();
          }
        }
        if (round % 16 == 0) sched_yield();  // idle for a moment: a look may find it so
      }
      for (void* p : held) hak_free(p);
    });
  }
  for (auto& t : owners) t.join();
  for (auto& t : freers) t.join();
  done.store(true);
  collector.join();
  EXPECT_EQ(corrupt.load(), 0);
  expect_all_memory_accounted();
}
