# Thin wrapper over CMake: one word per job. Builds go to build*/ and are incremental.
JOBS   ?= 2
BUILD  ?= build
CONFIG ?= configs/default.toml
PY     := /usr/bin/python3

configure = test -f $(1)/build.ninja || cmake -S . -B $(1) -G Ninja $(2)

.PHONY: all setup build test bench plots ci soak baseline test-asan test-tsan test-debug clean

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

bench: build
	$(BUILD)/harness/hakbench sweep $(CONFIG) --out results/default.csv
	$(MAKE) --no-print-directory plots

plots: build
	$(BUILD)/harness/hakbench plot results/default.csv

ci:
	bash .ci/run

clean:
	rm -rf build build-debug build-asan build-tsan
