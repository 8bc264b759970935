#!/usr/bin/env bash
# make bench: our figures beside the reference figures measured in the same run. Grows with the engine.
set -euo pipefail
BIN=$1
"$BIN" --version
