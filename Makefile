# Thin wrapper over CMake: one word per job. Builds go to build*/ and are incremental.
JOBS   ?= 2
BUILD  ?= build
CONFIG ?= configs/default.toml
PY     := /usr/bin/python3

configure = test -f $(1)/build.ninja || cmake -S . -B $(1) -G Ninja $(2)

.PHONY: all setup build test bench plots ci soak fuzz baseline test-asan test-tsan test-debug clean

all: build

setup:
	@scripts/setup.sh

build: setup
	@$(call configure,$(BUILD),-DCMAKE_BUILD_TYPE=Release)
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) --timeout 900

# Debug build: allocator invariant checks on.
test-debug: setup
	@$(call configure,build-debug,-DCMAKE_BUILD_TYPE=Debug)
	@cmake --build build-debug -j $(JOBS)
	ctest --test-dir build-debug --output-on-failure -j $(JOBS) --timeout 900

test-asan: setup
	@$(call configure,build-asan,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAKMEM_ASAN=ON -DHAKMEM_UBSAN=ON)
	@cmake --build build-asan -j $(JOBS)
	ctest --test-dir build-asan --output-on-failure -j $(JOBS) -L sanitize --timeout 900

test-tsan: setup
	@$(call configure,build-tsan,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAKMEM_TSAN=ON)
	@cmake --build build-tsan -j $(JOBS)
	ctest --test-dir build-tsan --output-on-failure -j $(JOBS) -L sanitize --timeout 900

# The stress suite as a soak, outside CI: its tests share SOAK_SECONDS (tests/stress/).
SOAK_SECONDS ?= 300
soak: build
	HAKMEM_SOAK_SECONDS=$(SOAK_SECONDS) $(BUILD)/tests/stress/hakmem_stress_test

# libFuzzer over the hak_* API: clang, its own CMake project (fuzz/), bounded to FUZZ_SECONDS.
# New inputs go to build-fuzz/corpus; the committed seeds in fuzz/corpus are only read.
FUZZ_SECONDS ?= 60
fuzz: setup
	@test -f build-fuzz/build.ninja || cmake -S fuzz -B build-fuzz -G Ninja \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
	@cmake --build build-fuzz -j $(JOBS)
	@mkdir -p build-fuzz/corpus
	build-fuzz/hakmem_fuzz -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1 \
	  build-fuzz/corpus fuzz/corpus

# Refresh the regression baseline: deliberately, on a quiet machine, committed alone with the why.
baseline: build
	$(BUILD)/harness/hakbench sweep configs/ci.toml --out results/baselines/ci.csv

bench: build
	$(BUILD)/harness/hakbench sweep $(CONFIG) --out results/default.csv
	$(MAKE) --no-print-directory plots

plots: build
	$(BUILD)/harness/hakbench plot results/default.csv

ci:
	bash .ci/run

clean:
	rm -rf build build-debug build-asan build-tsan
