/* hakmem: a general-purpose memory allocator.
 *
 * Contract of the public C API (the override layer maps malloc & co. onto these):
 *  - hak_malloc(n) returns a block of at least n bytes (n == 0 gives a unique minimal block),
 *    aligned to 16 bytes when n >= 16 and to 8 bytes otherwise, or NULL with errno = ENOMEM.
 *  - hak_free(p) accepts NULL and any pointer hakmem returned, from any thread. A pointer hakmem
 *    never returned is refused with a message naming it (never a silent corruption).
 *  - hak_aligned_alloc(a, n): a must be a power of two (else NULL, errno = EINVAL).
 *  - hak_usable_size(p) >= the size requested for p; 0 for NULL.
 *  - hak_collect() flushes the calling thread's caches and returns empty memory to the OS, and
 *    the wholly free pages of its tiny slabs that are at least three quarters free.
 *  - hak_stats() fills a snapshot of process-wide counters; values are approximate while other
 *    threads run.
 * Options are HAKMEM_* environment variables read once at start-up (see README.md). */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define HAK_API __attribute__((visibility("default")))
#else
#define HAK_API
#endif

#define HAK_STATS_MAX_CLASSES 64

typedef struct hak_stats {
  uint32_t struct_size; /* sizeof(hak_stats_t) of the caller; set by the caller */
  uint32_t tiny_class_count;

  /* Address space and memory. */
  uint64_t bytes_mapped;      /* currently mapped from the OS, all parts */
  uint64_t bytes_mapped_peak; /* high-water mark of bytes_mapped */
  uint64_t bytes_in_use;      /* handed out to the program (block sizes, not requests) */
  uint64_t os_map_calls;
  uint64_t os_unmap_calls;
  uint64_t os_decommit_calls;

  /* tiny: SuperSlabs, slabs, per-thread caches. */
  uint64_t superslabs_live;
  uint64_t superslabs_peak;
  uint64_t superslabs_returned; /* given back to the OS */
  uint64_t tiny_refills;        /* per-thread cache refills (slow path entries) */
  uint64_t tiny_spills;         /* chains sent out: cache overflows, batches of foreign frees */
  uint64_t tiny_remote_frees;   /* blocks freed by a thread other than the slab's owner */
  uint64_t tiny_adoptions;      /* slabs taken over from exited threads */
  uint64_t tiny_spill_queue_drains;
  uint32_t tiny_class_size[HAK_STATS_MAX_CLASSES];
  uint64_t tiny_slabs_per_class[HAK_STATS_MAX_CLASSES]; /* slabs currently serving class */

  /* pool (mid sizes). */
  uint64_t pool_chunks_live;
  uint64_t pool_refills;
  uint64_t pool_remote_frees;

  /* large spans. */
  uint64_t large_spans_live;
  uint64_t large_cache_hits;
  uint64_t large_cache_misses;
} hak_stats_t;

HAK_API void* hak_malloc(size_t size);
HAK_API void hak_free(void* ptr);
HAK_API void* hak_calloc(size_t count, size_t size);
HAK_API void* hak_realloc(void* ptr, size_t size);
HAK_API void* hak_aligned_alloc(size_t alignment, size_t size);
HAK_API size_t hak_usable_size(const void* ptr);
HAK_API void hak_collect(void);
HAK_API void hak_stats(hak_stats_t* out);
/* Writes the counters as human-readable text to the file descriptor (no allocation). */
HAK_API void hak_stats_print(int fd);

#ifdef __cplusplus
}
#endif

#endif /* HAKMEM_H */
