#!/usr/bin/env bash
# Builds the libFuzzer binary of bissl's readers (docs/fuzzing.md) into .build-fuzz: the guarded
# product `bissl-fuzz` of Package.swift (present only with BISSL_FUZZ set), every Swift module of it
# compiled with coverage instrumentation and AddressSanitizer (-sanitize=fuzzer,address) and with
# -enable-testing (the harness reaches the pickle reader and other internal entry points).
# Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/../.."
BISSL_FUZZ=1 swift build -c release --build-path .build-fuzz --product bissl-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing >&2
echo "$PWD/.build-fuzz/release/bissl-fuzz"
