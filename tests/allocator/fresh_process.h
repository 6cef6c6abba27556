// Helpers for test cases that run in a fresh process (gtest's "threadsafe" death-test style
// re-executes the binary, so hakmem's options and reservations start from nothing there): a check
// that ends the child with a message, and an address-space limit that refuses the arenas.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

#define CHECK_OR_EXIT(cond)                                                  \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "check failed: %s (line %d)\n", #cond, __LINE__); \
      _exit(1);                                                              \
    }                                                                        \
  } while (0)

namespace hak_test {

// Limits the process's address space to what it maps now plus 1 GiB: room for some more
// mappings, none for an arena's 16 GiB reservation (as under a tight `ulimit -v`).
inline void refuse_the_arenas() {
  long pages = 0;
  FILE* statm = std::fopen("/proc/self/statm", "r");
  CHECK_OR_EXIT(statm != nullptr && std::fscanf(statm, "%ld", &pages) == 1);
  std::fclose(statm);
  rlimit rl;
  rl.rlim_cur = rl.rlim_max = rlim_t(pages) * rlim_t(sysconf(_SC_PAGESIZE)) + (rlim_t{1} << 30);
  CHECK_OR_EXIT(setrlimit(RLIMIT_AS, &rl) == 0);
}

}  // namespace hak_test
