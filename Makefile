# The two commands of the README: `make run` and `make test`. Everything else
# is a step they take, usable on its own.
JOBS ?= 2
BUILD ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
ARGS ?=
FUZZ_SECONDS ?= 20

.PHONY: all deps build run test fuzz fuzz-smoke bench sim-headlines clean

all: build

deps:
	@scripts/deps.sh build

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBALLAST_TESTS=OFF >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/ballast serve $(ARGS)

test:
	@scripts/deps.sh build test
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DBALLAST_SANITIZE=ON >/dev/null
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir $(BUILD_ASAN) --output-on-failure -j $(JOBS)

fuzz:
	@scripts/deps.sh build fuzz
	cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DBALLAST_FUZZ=ON >/dev/null
	cmake --build $(BUILD_FUZZ) -j $(JOBS)

fuzz-smoke: fuzz
	scripts/fuzz-smoke.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

# Packages first: the allocator comparison links jemalloc, mimalloc and
# tcmalloc only if they are installed when CMake configures.
bench:
	@scripts/deps.sh build bench
	$(MAKE) build
	bench/run.sh $(BUILD)
	bench/bench_alloc.sh $(BUILD)
	bench/sim_day.sh $(BUILD)
	bench/bench_autoscaler.py $(BUILD)

# The simulator's headline comparison of the example scenarios, rewritten in
# docs/simulator.md (between its headlines markers) from a fresh run.
sim-headlines: build
	scripts/sim_headlines.py --bin $(BUILD)/ballast --write

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
