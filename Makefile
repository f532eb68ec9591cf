# craft top-level driver.  CMake does the real work; this file gives the
# README's commands:
#   make            build everything into build/ (executables in build/bin/)
#   make test       install missing Debian packages, then build and run every
#                   test in build/ and again under ASan+UBSan in build-san/
#   make run        a local 3-node craftd cluster (arrives with craftd)
#   make format     clang-format every C file
# Variables: JOBS (parallel build/test jobs), CTEST_ARGS (e.g. -R sim).

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS ?=
CMAKE ?= cmake

.PHONY: all build build-san deps test test-fast test-san run format clean soak

all: build

deps:
	@scripts/install-deps

build/CMakeCache.txt:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo

build-san/CMakeCache.txt:
	$(CMAKE) -S . -B build-san -DCMAKE_BUILD_TYPE=Debug -DCRAFT_SANITIZE=ON

build: build/CMakeCache.txt
	$(CMAKE) --build build -j $(JOBS)

build-san: build-san/CMakeCache.txt
	$(CMAKE) --build build-san -j $(JOBS)

# The whole suite: the optimised build first (system tests and the long
# random runs are fastest there), then the sanitizer build.
test: deps
	$(MAKE) build build-san
	cd build && ctest -j $(JOBS) --output-on-failure $(CTEST_ARGS)
	cd build-san && ctest -j $(JOBS) --output-on-failure -LE nosan $(CTEST_ARGS)

test-fast: build
	cd build && ctest -j $(JOBS) --output-on-failure $(CTEST_ARGS)

test-san: build-san
	cd build-san && ctest -j $(JOBS) --output-on-failure -LE nosan $(CTEST_ARGS)

# A local 3-node craftd cluster on 127.0.0.1:7001-7003, data under ./var/.
run: deps build
	@if [ ! -x scripts/run-cluster ]; then \
		echo "make run: craftd has not landed yet (issue #6)"; exit 1; fi
	scripts/run-cluster

format:
	find include src tests tools apps bench -name '*.[ch]' | xargs clang-format -i

clean:
	rm -rf build build-san
