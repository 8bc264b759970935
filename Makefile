# bissl: the commands of README.md. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
APT_PACKAGES := libhdf5-dev libopenblas-dev zlib1g-dev libpng-dev libjpeg-dev libsqlite3-dev libcurl4-openssl-dev pkg-config dataset-fashion-mnist graphviz openmpi-bin
PYTHON ?= python3
RELEASE_BIN := .build/release/bissl

.PHONY: setup build release test asan tsan interop bench demo tour fuzz fuzz-smoke clean

## setup: install the system packages building, testing and the demo need (skips what is there;
## graphviz: LineageRenderTests checks that `dot` accepts `bissl lineage --format dot`; Open MPI: data-parallel
## training under mpirun, docs/distributed.md: openmpi-bin brings mpirun and libopenmpi3, which bissl opens at run time).
setup:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "setup: system packages present"; fi

build: setup
	swift build

release: setup
	swift build -c release

## test: every unit test in release mode (engine numerics are 30-75x slower in debug builds; release
## test builds need -enable-testing for @testable imports), then the README tour's fast blocks with the
## binary of that same build (tools/readme_tour.py: every command whose output does not depend on the CPU's
## BLAS kernel, the remote section against a local SeaweedFS; under a minute), then the interop lane against
## real PyTorch, safetensors, numpy and h5py, then the MPI lane (2-rank data-parallel training on loopback,
## tools/mpi.sh). `make tour` rewrites the README's outputs, training blocks included.
RELEASE_TESTING := -c release -Xswiftc -enable-testing

test: setup
	@bash tools/interop.sh --install-only
	swift build $(RELEASE_TESTING) --build-tests
	swift test $(RELEASE_TESTING) --skip-build --disable-swift-testing
	@$(PYTHON) tools/readme_tour.py $(RELEASE_BIN)
	@bash tools/interop.sh $(RELEASE_BIN)
	@bash tools/mpi.sh $(RELEASE_BIN)

## asan, tsan: every unit test once under AddressSanitizer, once under ThreadSanitizer (docs/fuzzing.md,
## "Sanitizers"): release builds in .build-asan / .build-tsan, so .build stays as make test left it; the
## bissl binary the process-level tests start is the sanitized one of the same build. A report fails the
## run (ASan stops the process, TSan exits 66 after reporting). Leak checking is off: every bissl process
## ends in exit() with objects still referenced from its last frames, which LeakSanitizer reports, and the
## process-level tests compare stderr.
SANITIZER_ENV_asan := ASAN_OPTIONS=detect_leaks=0
SANITIZER_ENV_tsan :=
SANITIZER_NAME_asan := address
SANITIZER_NAME_tsan := thread

asan tsan: setup
	swift build $(RELEASE_TESTING) --build-tests --sanitize=$(SANITIZER_NAME_$@) --build-path .build-$@
	$(SANITIZER_ENV_$@) swift test $(RELEASE_TESTING) --skip-build --disable-swift-testing \
	  --sanitize=$(SANITIZER_NAME_$@) --build-path .build-$@

## tour: rewrite the README tour's outputs from the program, training blocks included (minutes).
tour: release
	@$(PYTHON) tools/readme_tour.py $(RELEASE_BIN) --write --all

interop: release
	@bash tools/interop.sh $(RELEASE_BIN)

bench: release
	@bash tools/bench.sh $(RELEASE_BIN)

## demo: the main job on real data against ./zoo: SimCLR-pretrain a ResNet-50 on Fashion-MNIST, BiSSL-align it
## to the 8x8 digits, fine-tune aligned and unaligned, evaluate, list/lineage/diff, export (tools/demo.sh).
demo: release
	@bash tools/demo.sh $(RELEASE_BIN)

## fuzz: every libFuzzer target of the readers for FUZZ_SECONDS seconds each, FUZZ_JOBS at a time
## (docs/fuzzing.md); corpora grow in .build-fuzz/corpus, findings land in .build-fuzz/findings. The h5
## target's reader process is the bissl of make test's build (same flags, so after make test nothing is
## rebuilt).
FUZZ_SECONDS ?= 300
FUZZ_JOBS ?= 1
fuzz: setup
	swift build $(RELEASE_TESTING) --build-tests
	@BISSL_FUZZ_JOBS=$(FUZZ_JOBS) bash tools/fuzz/run.sh $(FUZZ_SECONDS)

## fuzz-smoke: each target for 8 s, two at a time, so they keep building and stay clean (.ci/run runs it).
fuzz-smoke: setup
	swift build $(RELEASE_TESTING) --build-tests
	@BISSL_FUZZ_JOBS=2 bash tools/fuzz/run.sh 8

clean:
	rm -rf .build .build-fuzz .build-asan .build-tsan out
