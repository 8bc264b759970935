#!/usr/bin/env bash
# make bench: bissl's conversion and zoo figures beside the reference figures (torch.load + h5py,
# safetensors) measured in the same run, against their targets (README.md, "Benchmarks"). Not a test: it prints a
# table and fails only when a command fails. Needs PyTorch 2.13 CPU, safetensors, h5py, numpy (installed
# here if missing, as the interop lane does); ~100 MB of inputs in a scratch folder, removed afterwards.
# Usage: tools/bench.sh PATH/TO/bissl        (tools/bench/bench.py says what each figure times)
set -euo pipefail
BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

bash tools/interop.sh --install-only   # the same Python packages as the interop lane
if ! "$PY" -c "import torch, numpy, safetensors, h5py" 2>/dev/null; then
  echo "bench: SKIPPED (PyTorch 2.13 CPU, safetensors, h5py or numpy could not be installed here)"
  exit 0
fi
# Peak RSS is GNU time's figure (/usr/bin/time, Debian package `time`).
if [ ! -x /usr/bin/time ]; then
  echo "bench: installing time (GNU time, for peak RSS)"
  SUDO=$( [ "$(id -u)" = 0 ] || echo sudo )
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq time; } || true
fi
# What the figures were measured on: CPU, its vector extensions, threads, OpenBLAS kernel and how it
# was chosen (the engine benchmarks below print their own process's kernel too), and the machine's load.
printf '== machine (bissl doctor)\n'
"$BIN" doctor
printf 'load average: %s\n\n' "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)"
# The read rows time IOBench (Sources/IOBench), built beside bissl by `swift build -c release`.
if [ ! -x "$(dirname "$BIN")/IOBench" ]; then
  echo "bench: building IOBench (swift build -c release --product IOBench)"
  swift build -c release --product IOBench
  [ -x "$(dirname "$BIN")/IOBench" ] || { echo "bench: IOBench is not beside $BIN; build it there"; exit 1; }
fi
"$PY" tools/bench/bench.py "$BIN"

# Data loading: decode plus two-view SimCLR augmentation of Fashion-MNIST, images/s at 32x32
# and 96x96. Its target is twice the engine's training consumption, which joins this bench with the
# engine benchmark.
if [ -d /usr/share/datasets/fashion-mnist ]; then
  printf '\n== data loading (bissl data bench)\n'
  "$BIN" data bench idx:/usr/share/datasets/fashion-mnist --sizes 32,96
fi

# Remote (schemas/remote.md): push/pull of the 100 MB ResNet-50 entry against a local SeaweedFS beside the
# `aws s3 cp` command (AWS CLI v1, timed as a process as bissl is) and boto3 in-process (the transfer alone)
# of the same file, and list --remote of 1,000 entries (tools/bench/remote.py; ~1-2 min). awscli pins the
# botocore it needs, and boto3 with it, so the two are installed together.
if "$PY" -c "import boto3, awscli" 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check boto3 awscli; then
  printf '\n== remote (tools/bench/remote.py)\n'
  "$PY" tools/bench/remote.py "$BIN"
else
  echo "bench: remote SKIPPED (boto3 or awscli could not be installed here)"
fi

# Engine: ResNet-50 training step, inference, HVP cost and peak RSS, and the studies' small model (ResNet-18
# width 8, small stem) training and inference, beside PyTorch 2.13 CPU (2 threads), in alternating paired
# rounds with sign-test intervals of the ratios (tools/bench/paired.py), ~5 min. Needs the release build of EngineBench: `swift build -c release --product
# EngineBench` (`make release` = `swift build -c release` builds it too, as every executable target).
ENGINE_BENCH="$(dirname "$BIN")/EngineBench"
if [ ! -x "$ENGINE_BENCH" ]; then
  echo "bench: building EngineBench (swift build -c release --product EngineBench)"
  swift build -c release --product EngineBench
  ENGINE_BENCH=.build/release/EngineBench
fi
printf '\n== engine (tools/bench/engine.py)\n'
"$PY" tools/bench/engine.py "$ENGINE_BENCH"

# BiSSL upper step: AlignBench (K = 5 layer-wise CG, the default exact HVP) beside the PyTorch reference
# upper step with exact double-backward HVPs, ResNet-50 at 32x32, downstream batch 32, pretext batch 2x32,
# in alternating paired rounds with a sign-test interval of the ratio, ~4 min; target <= 0.5x torch's time.
# Needs the release build of AlignBench.
ALIGN_BENCH="$(dirname "$BIN")/AlignBench"
if [ ! -x "$ALIGN_BENCH" ]; then
  echo "bench: building AlignBench (swift build -c release --product AlignBench)"
  swift build -c release --product AlignBench
  ALIGN_BENCH=.build/release/AlignBench
fi
printf '\n== BiSSL upper step (tools/bench/align.py)\n'
"$PY" tools/bench/align.py "$ALIGN_BENCH"

# Data parallelism (docs/distributed.md): all-reduce of a ResNet-50 gradient and the step-time breakdown
# (compute, communication) for 1 and 2 ranks under mpirun, at the paper's 96x96 images, and the scaling model.
printf '\n== data-parallel (tools/bench/distributed.sh)\n'
bash tools/bench/distributed.sh "$BIN" --batch 16 --size 96
