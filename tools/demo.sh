#!/usr/bin/env bash
# make demo: the main job on real data. Grows with the pipeline (issue 8).
set -euo pipefail
BIN=$1
"$BIN" --version
