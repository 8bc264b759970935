#!/usr/bin/env bash
# Small-scale BiSSL reproduction on one downstream task. Reruns everything from scratch:
#   tools/experiments/bissl_small.sh            (BISSL=path to a release bissl, default .build/release/bissl; ZOO=scratch zoo, SEEDS="1 2 3 4 5")
#   TASK=fashion tools/experiments/bissl_small.sh
# TASK selects the downstream data (default digits, the first study):
#   digits   the 8x8 digits, data/digits/splits (1085 train / 357 val / 355 test), upsampled to 16 px;
#   fashion  Fashion-MNIST classification on images of its TEST part only (the pretext never saw them),
#            data/fashion-mnist/splits (tools/make_fashion_splits.py), downsampled to 16 px.
# 1. a tiny SimCLR pretext entry theta_0 on the Fashion-MNIST TRAIN images (ResNet-18 width 8, small stem, 16 px);
# 2. per seed: BiSSL alignment to the task (train split, val split for monitoring), the --no-ij ablation;
#    with CONTINUED=1 (default for fashion, 0 for digits) also the "pretext-continued" baseline: theta_0 given
#    the same number of extra SimCLR steps as BiSSL's lower level (ALT x NL = ALT x 20) by `bissl pretrain --from`,
#    at the lower level's LARS lr (1.0), weight decay (1e-6) and pretext batch (64);
# 3. per seed, at a matched fine-tuning budget (same epochs, lr, wd, batch, seed): fine-tune theta_0 ("fine-tune
#    only"), fine-tune the BiSSL theta_P, the --no-ij theta_P (and the pretext-continued backbone), each from its
#    BACKBONE ONLY with a fresh Linear head (backbone exported and re-imported: the reference implementation fine-tunes theta_P with a new
#    head, and `bissl finetune` would otherwise keep the entry's classifier phi_D); top-1 on the test split;
# 4. k-NN (k 20) and linear-probe top-1 of the frozen backbones (alignment before fine-tuning);
# 5. tools/experiments/bissl_small_report.py: mean, 95% t-interval, paired differences, SVG plot -> docs/img/.
set -euo pipefail
cd "$(dirname "$0")/../.."
TASK=${TASK:-digits}
B=${BISSL:-.build/release/bissl}   # `swift build -c release` (make release) builds it
[ -x "$B" ] || { echo "bissl_small.sh: no bissl binary at $B (build it with make release, or set BISSL=path)" >&2; exit 2; }
SEEDS=${SEEDS:-"1 2 3 4 5"}
FT_EPOCHS=${FT_EPOCHS:-30}
ALT=${ALT:-5}
P=idx:/usr/share/datasets/fashion-mnist
case "$TASK" in
  digits)
    ZOO=${ZOO:-/tmp/bissl-exp-zoo}
    CONTINUED=${CONTINUED:-0}
    D="h5:data/digits/digits.h5#split=data/digits/splits"
    data() { echo "$D/$1.txt"; } ;;
  fashion)
    ZOO=${ZOO:-/tmp/bissl-exp-zoo-fashion}
    CONTINUED=${CONTINUED:-1}
    # the documented form for a split of the test part: #part=test&split=FILE (indices into the test part)
    data() { echo "$P#part=test&split=data/fashion-mnist/splits/$1.txt"; } ;;
  *) echo "TASK must be digits or fashion, not '$TASK'" >&2; exit 2 ;;
esac
OUT=${OUT:-$ZOO/results.jsonl}
mkdir -p "$ZOO"; : > "$OUT"
z() { "$B" "$@" --zoo "$ZOO"; }
record() { echo "{\"seed\": $1, \"arm\": \"$2\", \"metric\": \"$3\", \"value\": $4}" >> "$OUT"; }
top1() { z eval "$1" --data "$(data test)" --image-size 16 --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["metrics"]["top1"])'; }
probe() { z probe "$1" --data "$(data train)" --eval-data "$(data test)" --image-size 16 --json 2>/dev/null \
          | python3 -c 'import json,sys; r=json.load(sys.stdin)["result"]; print(r["knnTop1"], r["linearTop1"])'; }
backbone_only() {  # entry -> id of an entry with its backbone only (a fresh head at fine-tuning)
  z export "$1" --component backbone -o "$ZOO/$1.safetensors" >/dev/null
  z import "$ZOO/$1.safetensors" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
finetune() {  # ref seed -> id prefix of the finetune entry
  z finetune "$1" --data "$(data train)" --val "$(data val)" --epochs "$FT_EPOCHS" --batch-size 64 --image-size 16 \
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
    z align theta0 --data "$(data train)" --val "$(data val)" --pretext-data "$P" --alternations "$ALT" --warmup-epochs 2 \
      --d-batch-size 64 --seed "$s" --name "$arm-$s" $extra >/dev/null 2>&1
    record "$s" "$arm" alignSeconds $(( $(date +%s) - start ))
    BB=$(backbone_only "$arm-$s")
    read knn lin < <(probe "$BB")
    record "$s" "$arm" knn "$knn"; record "$s" "$arm" linear "$lin"
    record "$s" "$arm" finetuneTop1 "$(top1 "$(finetune "$BB" "$s")")"
  done
  record "$s" finetune-only finetuneTop1 "$(top1 "$(finetune "$T0" "$s")")"
  if [ "$CONTINUED" = 1 ]; then
    # pretext-continued: ALT x NL extra SimCLR steps on theta_0 (NL = align's default 20), no downstream signal
    start=$(date +%s)
    z pretrain --method simclr --data "$P" --from theta0 --image-size 16 --batch-size 64 --steps $(( ALT * 20 )) \
      --lr 1.0 --wd 1e-6 --seed "$s" --name "cont-$s" >/dev/null 2>&1
    record "$s" pretext-continued continueSeconds $(( $(date +%s) - start ))
    BB=$(backbone_only "cont-$s")
    read knn lin < <(probe "$BB")
    record "$s" pretext-continued knn "$knn"; record "$s" pretext-continued linear "$lin"
    record "$s" pretext-continued finetuneTop1 "$(top1 "$(finetune "$BB" "$s")")"
  fi
  echo "seed $s done" >&2
done
if [ "$TASK" = digits ]; then
  python3 tools/experiments/bissl_small_report.py "$OUT"
else
  python3 tools/experiments/bissl_small_report.py "$OUT" --task "$TASK"
fi
