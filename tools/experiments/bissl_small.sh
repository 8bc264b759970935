#!/usr/bin/env bash
# Small-scale BiSSL reproduction (issue 7 item 5), digits only so far. Reruns everything from scratch:
#   tools/experiments/bissl_small.sh            (BISSL=path to a release bissl, ZOO=scratch zoo, SEEDS="1 2 3 4 5")
# 1. a tiny SimCLR pretext entry on Fashion-MNIST images (ResNet-18 width 8, small stem, 16 px);
# 2. per seed: BiSSL alignment to the 8x8 digits (train split, val split for monitoring), the --no-ij ablation;
# 3. per seed, at a matched fine-tuning budget (same epochs, lr, wd, batch, seed): fine-tune theta_0 ("fine-tune
#    only"), fine-tune the BiSSL theta_P, fine-tune the --no-ij theta_P, each from its BACKBONE ONLY with a fresh
#    Linear head (backbone exported and re-imported: R5 fine-tunes theta_P with a new head, and `bissl finetune`
#    would otherwise keep the entry's classifier phi_D); top-1 on the digits test split;
# 4. k-NN (k 20) and linear-probe top-1 of the frozen backbones (alignment before fine-tuning);
# 5. tools/experiments/bissl_small_report.py: mean, 95% t-interval, SVG plot -> docs/.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${BISSL:-/tmp/bissl-rel/release/bissl}
ZOO=${ZOO:-/tmp/bissl-exp-zoo}
SEEDS=${SEEDS:-"1 2 3 4 5"}
OUT=${OUT:-$ZOO/results.jsonl}
FT_EPOCHS=${FT_EPOCHS:-30}
ALT=${ALT:-5}
D="h5:data/digits/digits.h5#split=data/digits/splits"
P=idx:/usr/share/datasets/fashion-mnist
mkdir -p "$ZOO"; : > "$OUT"
z() { "$B" "$@" --zoo "$ZOO"; }
record() { echo "{\"seed\": $1, \"arm\": \"$2\", \"metric\": \"$3\", \"value\": $4}" >> "$OUT"; }
top1() { z eval "$1" --data "$D/test.txt" --image-size 16 --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["metrics"]["top1"])'; }
probe() { z probe "$1" --data "$D/train.txt" --eval-data "$D/test.txt" --image-size 16 --json 2>/dev/null \
          | python3 -c 'import json,sys; r=json.load(sys.stdin)["result"]; print(r["knnTop1"], r["linearTop1"])'; }
backbone_only() {  # entry -> id of an entry with its backbone only (a fresh head at fine-tuning)
  z export "$1" --component backbone -o "$ZOO/$1.safetensors" >/dev/null
  z import "$ZOO/$1.safetensors" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
finetune() {  # ref seed -> id prefix of the finetune entry
  z finetune "$1" --data "$D/train.txt" --val "$D/val.txt" --epochs "$FT_EPOCHS" --batch-size 64 --image-size 16 \
    --lr 0.03 --wd 0.001 --seed "$2" 2>/dev/null | sed -n 's/^finetune entry \([0-9a-f]*\).*/\1/p'
}

z pretrain --method simclr --data "$P" --arch resnet18 --width 8 --stem small --image-size 16 --batch-size 64 \
  --steps 300 --seed 0 --name theta0 >/dev/null 2>&1
T0=$(backbone_only theta0)
read knn lin < <(probe "$T0")
record 0 theta0 knn "$knn"; record 0 theta0 linear "$lin"

for s in $SEEDS; do
  for arm in bissl noij; do
    extra=""; [ "$arm" = noij ] && extra="--no-ij"
    start=$(date +%s)
    z align theta0 --data "$D/train.txt" --val "$D/val.txt" --pretext-data "$P" --alternations "$ALT" --warmup-epochs 2 \
      --d-batch-size 64 --seed "$s" --name "$arm-$s" $extra >/dev/null 2>&1
    record "$s" "$arm" alignSeconds $(( $(date +%s) - start ))
    BB=$(backbone_only "$arm-$s")
    read knn lin < <(probe "$BB")
    record "$s" "$arm" knn "$knn"; record "$s" "$arm" linear "$lin"
    record "$s" "$arm" finetuneTop1 "$(top1 "$(finetune "$BB" "$s")")"
  done
  record "$s" finetune-only finetuneTop1 "$(top1 "$(finetune "$T0" "$s")")"
  echo "seed $s done" >&2
done
python3 tools/experiments/bissl_small_report.py "$OUT"
