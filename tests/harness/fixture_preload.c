/* A stand-in for an allocator library in the harness tests: preloading it changes nothing but
 * makes the symbol below visible, so a test can tell that hakbench applied LD_PRELOAD. */
int hakbench_fixture_marker(void) {
  return 42;
}
