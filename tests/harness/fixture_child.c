/* A minimal child for the harness tests, written in C so that nothing runs before main that
 * could make a futex call (libstdc++'s iostream start-up makes one). It follows the runner's
 * output contract (one JSON line) for three workloads:
 *   idle      a loop; makes no futex calls at all
 *   mutex     4 threads contend one pthread mutex (futex calls guaranteed by the contention)
 *   affinity  reports in "ops" how many CPUs the process may run on
 *   preloaded reports in "ops" 1 if fixture_preload.so is loaded into the process, else 0
 * Usage: fixture_child NAME [--threads N] [--anything ...] (extra arguments are ignored);
 * fixture_child --list-json prints the catalog of these workloads. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile unsigned long counter;

static void* contend(void* arg) {
  (void)arg;
  for (int i = 0; i < 200000; ++i) {
    pthread_mutex_lock(&lock);
    for (int j = 0; j < 20; ++j) counter = counter + 1;
    pthread_mutex_unlock(&lock);
  }
  return NULL;
}

static void report(const char* name, unsigned long ops) {
  char line[256];
  int n = snprintf(line, sizeof line,
                   "{\"workload\":\"%s\",\"threads\":1,\"seed\":0,\"params\":{},\"ops\":%lu,"
                   "\"seconds\":0.001,\"ops_per_sec\":%lu,\"verified\":false,"
                   "\"rss_peak_kb\":0,\"extra\":{},\"hakmem\":null}\n",
                   name, ops, ops * 1000);
  if (write(1, line, (size_t)n) != n) _exit(1);
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* name = argv[1];
  if (strcmp(name, "--list-json") == 0) {
    static const char catalog[] =
        "[{\"name\":\"idle\",\"summary\":\"loop\",\"params\":[],\"internal\":false},"
        "{\"name\":\"mutex\",\"summary\":\"contention\",\"params\":[],\"internal\":false},"
        "{\"name\":\"affinity\",\"summary\":\"cpus\",\"params\":[],\"internal\":false},"
        "{\"name\":\"preloaded\",\"summary\":\"preload\",\"params\":[],\"internal\":false}]\n";
    return write(1, catalog, sizeof catalog - 1) == (ssize_t)(sizeof catalog - 1) ? 0 : 1;
  }
  if (strcmp(name, "idle") == 0) {
    volatile unsigned long sum = 0;
    for (unsigned long i = 0; i < 1000000; ++i) sum = sum + i;
    report(name, 1000000);
    return 0;
  }
  if (strcmp(name, "mutex") == 0) {
    pthread_t t[4];
    for (int i = 0; i < 4; ++i) pthread_create(&t[i], NULL, contend, NULL);
    for (int i = 0; i < 4; ++i) pthread_join(t[i], NULL);
    report(name, counter);
    return 0;
  }
  if (strcmp(name, "affinity") == 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    report(name, (unsigned long)CPU_COUNT(&set));
    return 0;
  }
  if (strcmp(name, "preloaded") == 0) {
    report(name, dlsym(RTLD_DEFAULT, "hakbench_fixture_marker") != NULL ? 1 : 0);
    return 0;
  }
  return 2;
}
