# bissl: the commands of README.md. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
APT_PACKAGES := libhdf5-dev libopenblas-dev zlib1g-dev libpng-dev libjpeg-dev libsqlite3-dev pkg-config dataset-fashion-mnist
PYTHON ?= python3
RELEASE_BIN := .build/release/bissl

.PHONY: setup build release test test-swift interop bench demo clean

## setup: install the system packages building, testing and the demo need (skips what is there).
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

## test: unit tests, then the interop lane against real PyTorch, safetensors, numpy and h5py.
test: setup test-swift interop

test-swift:
	swift build --build-tests
	swift test --skip-build --disable-swift-testing

interop: release
	@bash tools/interop.sh $(RELEASE_BIN)

bench: release
	@bash tools/bench.sh $(RELEASE_BIN)

## demo: until the end-to-end pipeline exists, convert and inspect a real checkpoint fixture.
demo: release
	@bash tools/demo.sh $(RELEASE_BIN)

clean:
	rm -rf .build out
