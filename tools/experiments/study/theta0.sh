#!/usr/bin/env bash
# The study's pretext entry theta_0 (docs/experiments.md, "BiSSL study"): SimCLR on the Fashion-MNIST
# TRAIN part (ResNet-18 width 8, small stem, 16 px, batch 256), trained in segments of SEG epochs, each
# continuing the previous one with `bissl pretrain --from` (its own warmup and cosine: warm restarts),
# until the k-NN top-1 of the frozen backbone plateaus. After every segment: `bissl probe` k-NN (k 20) and
# linear-probe top-1 on two held-out sets, Fashion-MNIST test-part images (data/fashion-mnist/splits:
# 2,000 train -> 1,000 val) and the digits (data/digits/splits-lowlabel: 200 train -> 300 val).
# Plateau rule: at least MIN segments, and the Fashion k-NN top-1 of the last third of the segments
# (at least 2) spans less than 0.5 point. Stops after MAX segments otherwise (and says so).
#   BISSL=.build/release/bissl ZOO=/tmp/bissl-study tools/experiments/study/theta0.sh
# Resumable: segments already in the zoo (named theta0-seg-N) are kept; results append to
# $OUT (default docs/experiments/study/theta0_curve.jsonl). The final entry is tagged theta0.
set -euo pipefail
cd "$(dirname "$0")/../../.."
B=${BISSL:-.build/release/bissl}
ZOO=${ZOO:-/tmp/bissl-study}
OUT=${OUT:-docs/experiments/study/theta0_curve.jsonl}
SEG=${SEG:-2}; MIN=${MIN:-4}; MAX=${MAX:-10}
. tools/experiments/study/lib.sh
PROBE_FLAGS=""   # the pretext's own BN statistics: the curve shows theta_0 as pretraining leaves it
F="$P#part=test&split=data/fashion-mnist/splits"
mkdir -p "$ZOO" "$(dirname "$OUT")"; touch "$OUT"
plateau() {  # exit 0 when the last third of the Fashion k-NN curve spans < 0.5 point
  python3 - "$OUT" "$MIN" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
knn = [r["fashionKnn"] for r in sorted(rows, key=lambda r: r["segment"])]
n = len(knn); tail = knn[n - max(2, math.ceil(n / 3)):]
sys.exit(0 if n >= int(sys.argv[2]) and max(tail) - min(tail) < 0.5 else 1)
PY
}
prev=""
for seg in $(seq 1 "$MAX"); do
  name=theta0-seg-$seg
  if ! grep -q "\"segment\": $seg," "$OUT"; then
    start=$(date +%s)
    if ! has "$name"; then
    if [ -z "$prev" ]; then
      z pretrain --method simclr --data "$P" --arch resnet18 --width 8 --stem small --image-size 16 \
        --batch-size 256 --epochs "$SEG" --seed 0 --name "$name" >/dev/null
    else
      z pretrain --method simclr --data "$P" --from "$prev" --image-size 16 --batch-size 256 --epochs "$SEG" \
        --seed "$seg" --name "$name" >/dev/null
    fi
    fi
    secs=$(( $(date +%s) - start ))
    loss=$(z show "$name" --json | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["provenance"].get("metrics", {})))')
    read fk fl < <(probe "$name" "$F/train.txt" "$F/val.txt")
    read dk dl < <(probe "$name" "$(task_data digits train)" "$(task_data digits val)")
    echo "{\"segment\": $seg, \"epochs\": $((seg * SEG)), \"seconds\": $secs, \"fashionKnn\": $fk, \"fashionLinear\": $fl, \"digitsKnn\": $dk, \"digitsLinear\": $dl, \"metrics\": $loss}" >> "$OUT"
    echo "segment $seg ($((seg * SEG)) epochs, ${secs}s): Fashion k-NN $fk linear $fl, digits k-NN $dk linear $dl" >&2
  fi
  prev=$name
  if plateau; then echo "plateau after segment $seg" >&2; z tag "$name" theta0 2>/dev/null || true; exit 0; fi
done
echo "no plateau after $MAX segments: theta_0 is segment $MAX" >&2
z tag "$prev" theta0 2>/dev/null || true
