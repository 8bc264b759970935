#!/bin/sh
# Reproduces the fine-tuning evidence of docs/pretraining.md: fine-tuning the
# SimCLR Fashion-MNIST backbone (ResNet-18, width 8, small stem, 16x16) versus fine-tuning a randomly
# initialised ResNet-18 of the same architecture, with the same budget and hyperparameters (epochs, batch,
# lr, wd, image size 16, seed), on
#   (a) the 8x8 digits (data/digits/splits: train 1085 / val 357 / test 355), test top-1 by `bissl eval`;
#   (b) 2000 labelled Fashion-MNIST training images (docs/splits/fashion-mnist-2k.txt; 10 % held out for
#       validation by `bissl finetune`), test top-1 on the official 10 000 test images.
#
# Usage: tools/finetune_evidence.sh [BISSL_BINARY] [ZOO_DIR]
#   BISSL_BINARY  default .build/release/bissl (build it with: swift build -c release)
#   ZOO_DIR       default /tmp/finetune-evidence-zoo (created; must not hold these names yet)
# Environment (defaults are what docs/pretraining.md reports):
#   SIMCLR          the SimCLR entry to fine-tune (default fmnist-simclr); when ZOO_DIR has no entry of that
#                   name, it is made first by the pretraining command of docs/pretraining.md
#   PRETRAIN_STEPS  SimCLR steps of batch 128 for that pretraining (default 700, as tools/pretext_evidence.sh)
#   SEEDS           fine-tuning seeds, the same for both arms (default "0 1 2")
#   DIGITS_EPOCHS   fine-tuning epochs on the digits (default 20)
#   FMNIST_EPOCHS   fine-tuning epochs on the Fashion-MNIST subset (default 10)
#   FMNIST_SEEDS    seeds for (b) (default: $SEEDS)
#   SKIP_FMNIST     set to 1 to run (a) only
# Run from the repository root. Prints one "RESULT" line per fine-tuned entry and a summary at the end.
set -eu
BISSL=${1:-.build/release/bissl}
ZOO=${2:-/tmp/finetune-evidence-zoo}
SIMCLR=${SIMCLR:-fmnist-simclr}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-700}
SEEDS=${SEEDS:-"0 1 2"}
DIGITS_EPOCHS=${DIGITS_EPOCHS:-20}
FMNIST_EPOCHS=${FMNIST_EPOCHS:-10}
FMNIST_SEEDS=${FMNIST_SEEDS:-$SEEDS}
SKIP_FMNIST=${SKIP_FMNIST:-0}
FMNIST=idx:/usr/share/datasets/fashion-mnist
DIGITS=h5:data/digits/digits.h5
export BISSL_PROGRESS=${BISSL_PROGRESS:-plain}
mkdir -p "$ZOO"
RESULTS="$ZOO/finetune-evidence-results.txt"
: > "$RESULTS"

# The SimCLR entry: the command of docs/pretraining.md (tools/pretext_evidence.sh) with PRETRAIN_STEPS steps.
if ! "$BISSL" show "$SIMCLR" --zoo "$ZOO" > /dev/null 2>&1; then
    start=$(date +%s)
    "$BISSL" pretrain --method simclr --data "$FMNIST" --arch resnet18 --width 8 --stem small --image-size 16 \
        --batch-size 128 --steps "$PRETRAIN_STEPS" --seed 0 --name "$SIMCLR" --zoo "$ZOO"
    echo "pretraining wall time: $(( $(date +%s) - start )) s"
fi

# finetune_pair TASK TRAIN VAL TEST EPOCHS SEED: the same fine-tuning command from random init and from
# the SimCLR entry, then `bissl eval` on TEST. VAL empty: finetune holds out every 10th training image.
finetune_pair() {
    task=$1 train=$2 val=$3 test=$4 epochs=$5 seed=$6
    for arm in random simclr; do
        name="$task-$arm-s$seed"
        if [ "$arm" = random ]; then
            from="--random-init --arch resnet18 --width 8 --stem small"
        else
            from="$SIMCLR"
        fi
        log="$ZOO/$name.log"
        start=$(date +%s)
        if [ -n "$val" ]; then
            # shellcheck disable=SC2086
            "$BISSL" finetune $from --data "$train" --val "$val" --image-size 16 --epochs "$epochs" \
                --batch-size 128 --lr 0.1 --wd 0.001 --seed "$seed" --name "$name" --zoo "$ZOO" 2>&1 | tee "$log"
        else
            # shellcheck disable=SC2086
            "$BISSL" finetune $from --data "$train" --image-size 16 --epochs "$epochs" \
                --batch-size 128 --lr 0.1 --wd 0.001 --seed "$seed" --name "$name" --zoo "$ZOO" 2>&1 | tee "$log"
        fi
        secs=$(( $(date +%s) - start ))
        "$BISSL" show "$name" --zoo "$ZOO" > /dev/null  # fails (set -e) if the fine-tuning made no entry
        out=$("$BISSL" eval "$name" --data "$test" --zoo "$ZOO")
        echo "$out" | head -4
        top1=$(echo "$out" | sed -n 's/^top-1 *\([0-9.]*\) %$/\1/p')
        val_top1=$(sed -n 's/^finetune entry .*: val top-1 \([0-9.]*\) %.*$/\1/p' "$log")
        echo "RESULT task=$task arm=$arm seed=$seed epochs=$epochs val_top1=$val_top1 test_top1=$top1 finetune_seconds=$secs" | tee -a "$RESULTS"
    done
}

for seed in $SEEDS; do
    finetune_pair digits "$DIGITS#split=data/digits/splits/train.txt" "$DIGITS#split=data/digits/splits/val.txt" \
        "$DIGITS#split=data/digits/splits/test.txt" "$DIGITS_EPOCHS" "$seed"
done
if [ "$SKIP_FMNIST" != 1 ]; then
    for seed in $FMNIST_SEEDS; do
        finetune_pair fmnist2k "$FMNIST#split=docs/splits/fashion-mnist-2k.txt" "" "$FMNIST#test" \
            "$FMNIST_EPOCHS" "$seed"
    done
fi

echo "== summary (test top-1, %; mean over seeds)"
python3 - "$RESULTS" <<'EOF'
import sys, collections
rows = [dict(kv.split("=", 1) for kv in line.split()[1:]) for line in open(sys.argv[1]) if line.startswith("RESULT")]
by = collections.OrderedDict()
for r in rows:
    by.setdefault((r["task"], r["arm"]), []).append((r["seed"], float(r["test_top1"])))
for (task, arm), vals in by.items():
    mean = sum(v for _, v in vals) / len(vals)
    print("%-9s %-7s mean %6.2f  (%s)" % (task, arm, mean, ", ".join("seed %s: %.2f" % sv for sv in vals)))
EOF
