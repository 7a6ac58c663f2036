# weir — the two set-up commands are `make demo` and `make test`.
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
FUZZ_TOTAL_SECONDS ?=

.PHONY: all deps release debug demo test unit e2e fuzz bench format clean

all: release

deps:
	@bash scripts/deps.sh

release: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

debug: deps
	@cmake --preset debug >/dev/null
	@cmake --build --preset debug -j $(JOBS)

demo: release
	./build/release/weir demo

# Every test (unit + end-to-end) under ASan/UBSan, through CTest. The memory-bound e2e tests
# measure the release binary (sanitizers change memory use), so it is built too.
test: debug release
	cd build/debug && ctest --output-on-failure -j $(JOBS) --timeout 900

unit: debug
	cd build/debug && ctest --output-on-failure -j $(JOBS) -E '^e2e\.'

e2e: debug release
	cd build/debug && ctest --output-on-failure -R '^e2e\.'

# Runs every libFuzzer target for FUZZ_SECONDS each (clang), or for FUZZ_TOTAL_SECONDS in all
# when that is set (shared evenly by the targets). The corpus replay (no clang) is part of
# `make test`: the CTest tests fuzz.replay.<target>.
fuzz: deps
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz -j $(JOBS) --target weir_fuzzers
	@FUZZ_TOTAL_SECONDS=$(FUZZ_TOTAL_SECONDS) bash fuzz/run.sh build/fuzz $(FUZZ_SECONDS)

bench: release
	@bash bench/run.sh

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf build
