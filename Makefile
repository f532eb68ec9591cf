# craft top-level driver.  CMake does the real work; this file gives the
# README's commands:
#   make            build everything into build/ (executables in build/bin/)
#   make test       install missing Debian packages, then build and run every
#                   test in build/ and again under ASan+UBSan in build-san/
#                   (and compile everything with clang in build-clang/)
#   make run        a local 3-node craftd cluster (arrives with craftd)
#   make format     clang-format every C file
#   make soak       long randomized simulator runs, Raft and KV, then nemesis
#                   soaks on real craftd processes (SOAK_SECONDS each)
#   make fuzz       run every libFuzzer target FUZZ_SECONDS (default 300) each,
#                   corpora kept in build-clang/fuzz/ (make test runs each
#                   for 20 s)
#   make install    install programs, libraries, headers, pkg-config files
#                   and man pages from build/ into $(DESTDIR)$(PREFIX)
#   make deb        build/craft_<version>_<arch>.deb with cpack
# Variables: JOBS (parallel build/test jobs), CTEST_ARGS (e.g. -R sim),
# PREFIX (default /usr/local), DESTDIR (staging root, default none).

SOAK_SECONDS ?= 600
FUZZ_SECONDS ?= 300
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS ?=
CMAKE ?= cmake
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all build build-san build-clang deps test test-fast test-san run format clean soak \
	install deb fuzz

all: build

deps:
	@scripts/install-deps

build/CMakeCache.txt:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo

build-clang/CMakeCache.txt:
	CC=clang $(CMAKE) -S . -B build-clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DCRAFT_FUZZ=ON

build-san/CMakeCache.txt:
	$(CMAKE) -S . -B build-san -DCMAKE_BUILD_TYPE=Debug -DCRAFT_SANITIZE=ON

build: build/CMakeCache.txt
	$(CMAKE) --build build -j $(JOBS)

build-san: build-san/CMakeCache.txt
	$(CMAKE) --build build-san -j $(JOBS)

# STYLE.md: every change compiles warning-free with clang too.  The clang
# build also holds the libFuzzer targets (tests/fuzz); -DCRAFT_FUZZ=ON is
# repeated so that a build-clang/ configured before they existed gets them.
build-clang: build-clang/CMakeCache.txt
	$(CMAKE) -S . -B build-clang -DCRAFT_FUZZ=ON > /dev/null
	$(CMAKE) --build build-clang -j $(JOBS)

# The whole suite: the optimised build first (system tests and the long
# random runs are fastest there), then the sanitizer build.
test: deps
	$(MAKE) build build-san build-clang
	cd build && ctest -j $(JOBS) --output-on-failure $(CTEST_ARGS)
	cd build-san && ctest -j $(JOBS) --output-on-failure -LE nosan $(CTEST_ARGS)
	cd build-clang && ctest -j $(JOBS) --output-on-failure -L fuzz

test-fast: build
	cd build && ctest -j $(JOBS) --output-on-failure $(CTEST_ARGS)

test-san: build-san
	cd build-san && ctest -j $(JOBS) --output-on-failure -LE nosan $(CTEST_ARGS)

# A local 3-node craftd cluster on 127.0.0.1:7001-7003, data under ./var/.
run: deps build
	@if [ ! -x scripts/run-cluster ]; then \
		echo "make run: craftd has not landed yet (issue #6)"; exit 1; fi
	scripts/run-cluster

# Not part of make test: randomized fault schedules for as long as asked,
# on 3, 5 and 7 nodes, each printing its figures and a replay line on failure;
# then the same on real craftd processes, 3 and 5 members (docs/nemesis.md).
soak: build
	for n in 3 5 7; do \
		build/bin/craft-sim --soak $(SOAK_SECONDS) --nodes $$n --seed $$(date +%s) || exit 1; \
	done
	build/bin/craft-sim --soak $(SOAK_SECONDS) --kv --seed $$(date +%s)
	python3 tests/system/nemesis.py --soak $(SOAK_SECONDS) --nodes 3 --seed $$(date +%s)
	python3 tests/system/nemesis.py --soak $(SOAK_SECONDS) --nodes 5 --seed $$(date +%s)

# Not part of make test: every fuzz target for FUZZ_SECONDS, growing the
# corpora in build-clang/fuzz/<target>/ (crashes land in .../crashes/).
fuzz: build-clang
	for t in build-clang/tests/fuzz_*; do \
		tests/fuzz/run_fuzz.sh $$t build-clang/fuzz $(FUZZ_SECONDS) || exit 1; \
	done

# See docs/install.md.
install: build
	DESTDIR="$(DESTDIR)" $(CMAKE) --install build --prefix "$(PREFIX)"

deb: build
	cd build && cpack -G DEB

format:
	find include src tests tools apps bench -name '*.[ch]' | xargs clang-format -i

clean:
	rm -rf build build-san build-clang
