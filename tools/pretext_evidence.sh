#!/bin/sh
# Reproduces the evidence of docs/pretraining.md: SimCLR on Fashion-MNIST, ResNet-18
# (width 8, small stem) at 16x16, then k-NN top-1 (k = 20) of the pretext backbone versus a randomly
# initialised one, both through `bissl probe`.
#
# Usage: tools/pretext_evidence.sh [BISSL_BINARY] [ZOO_DIR]
#   BISSL_BINARY  default .build/release/bissl (build it with: swift build -c release)
#   ZOO_DIR       default /tmp/pretext-evidence-zoo (created; must not hold these names yet)
set -eu
BISSL=${1:-.build/release/bissl}
ZOO=${2:-/tmp/pretext-evidence-zoo}
DATA=idx:/usr/share/datasets/fashion-mnist
mkdir -p "$ZOO"

# random initialisation: the engine's init rules (Kaiming fan-out, zero-initialised last BN), from torch
python3 tools/pretext_random_init.py "$ZOO/random-w8.pth" --depth 18 --width 8 --stem small --seed 0
"$BISSL" import "$ZOO/random-w8.pth" --name fmnist-random --zoo "$ZOO"

# pretraining (timed: the budget is 10 minutes wall on the 2-core machine)
start=$(date +%s)
"$BISSL" pretrain --method simclr --data "$DATA" --arch resnet18 --width 8 --stem small --image-size 16 \
    --batch-size 128 --steps 700 --seed 0 --name fmnist-simclr --zoo "$ZOO"
echo "pretraining wall time: $(( $(date +%s) - start )) s"

for entry in fmnist-random fmnist-simclr; do
    echo "== $entry"
    "$BISSL" probe "$entry" --data "$DATA" --knn 20 --image-size 16 --probe-epochs 10 --zoo "$ZOO"
done
