#!/usr/bin/env bash
# The BiSSL study (docs/experiments.md, "BiSSL study"), in three phases over one scratch zoo that holds
# theta_0 (tag theta0, from theta0.sh). Every phase is resumable: finished entries and result rows are kept.
#
#   run.sh calibrate   lambda calibration on validation (one extra seed, CAL_SEED, short alignments)
#   run.sh protocol    fine-tuning protocol per arm: an lr x wd grid on validation with CAL_SEED, then fixed
#   run.sh main        the paired seeds SEEDS: every arm aligned (where it aligns), fine-tuned, tested
#   run.sh backbones   only the alignments of SEEDS (they need no protocol: run them while it is chosen)
#
# Arms: finetune-only (theta_0); control (`align --lambda 0 --no-ij`: exactly continued pretext training on
# the same schedule and batches); noij (`--no-ij` at LAMBDA); bissl (full BiSSL at LAMBDA); thetaD (the
# upper model theta_D of the same BiSSL run, `--keep-upper`: a positive control of the protocol). Every arm
# is fine-tuned from its BACKBONE alone with a fresh Linear head, `--keep best` (test top-1 at the best
# validation epoch), the same epochs, batch, augmentation and seed.
#
# Knobs (environment): BISSL, ZOO, TASK (digits | fashion), LAMBDA, T (alternations, 50), NL (10), NU (4),
# WARM (20 warmup epochs), PB (pretext batch, 64), DB (downstream batch, 64), K (CG iterations, 5),
# FT_EPOCHS (40), FT_BATCH (32), CAL_SEED (100), CAL_T (10), CAL_LAMBDAS, SEEDS ("1 2 ... 10"), OUT
# (results folder, docs/experiments/study), ARMS (a subset of the five, e.g. to run the protocol of the arms
# that need no LAMBDA while the calibration runs).
set -euo pipefail
cd "$(dirname "$0")/../../.."
B=${BISSL:-.build/release/bissl}
ZOO=${ZOO:-/tmp/bissl-study}
TASK=${TASK:-digits}
T=${T:-50}; NL=${NL:-10}; NU=${NU:-4}; WARM=${WARM:-20}; PB=${PB:-64}; DB=${DB:-64}; K=${K:-5}
FT_EPOCHS=${FT_EPOCHS:-40}; FT_BATCH=${FT_BATCH:-32}
CAL_SEED=${CAL_SEED:-100}; CAL_T=${CAL_T:-10}; CAL_LAMBDAS=${CAL_LAMBDAS:-"0.001 0.01 0.1 1"}
SEEDS=${SEEDS:-"1 2 3 4 5 6 7 8 9 10"}
OUT=${OUT:-docs/experiments/study}
LAMBDA=${LAMBDA:-}
. tools/experiments/study/lib.sh
mkdir -p "$OUT"
has theta0 || { echo "run.sh: no theta0 in $ZOO (run tools/experiments/study/theta0.sh first)" >&2; exit 2; }
TRAIN=$(task_data "$TASK" train); VAL=$(task_data "$TASK" val); TEST=$(task_data "$TASK" test); AUG=$(task_augment "$TASK")

# align NAME SEED LAMBDA ALTERNATIONS [EXTRA...]: theta_0 aligned to the task (skipped when NAME exists)
align() {
  local name=$1 seed=$2 lambda=$3 alts=$4; shift 4
  has "$name" && return 0
  local start; start=$(date +%s)
  z align theta0 --data "$TRAIN" --val "$VAL" --pretext-data "$P" --alternations "$alts" --lower-steps "$NL" \
    --upper-steps "$NU" --cg-iters "$K" --warmup-epochs "$WARM" --p-batch-size "$PB" --d-batch-size "$DB" \
    --lambda "$lambda" --augment "$AUG" --seed "$seed" --name "$name" "$@" >/dev/null
  echo "$name aligned in $(( $(date +%s) - start )) s" >&2
}
# finetune BACKBONE NAME SEED LR WD: the arm's fine-tuning (skipped when NAME exists)
finetune() {
  has "$2" && return 0
  # --image-size 16: theta_0's size (a backbone-only entry records none, and finetune would use the data's 8 px)
  z finetune "$1" --data "$TRAIN" --val "$VAL" --image-size 16 --epochs "$FT_EPOCHS" --batch-size "$FT_BATCH" --lr "$4" --wd "$5" \
    --augment "$AUG" --keep best --seed "$3" --name "$2" >/dev/null 2>&1
}
row() { echo "$1" >> "$2"; }
# backbone of ARM at SEED (aligning first where the arm aligns)
arm_backbone() {
  local arm=$1 s=$2 lambda=$3 alts=$4
  case "$arm" in
    finetune-only) backbone_only theta0 "$TASK-bb-theta0" ;;
    control) align "$TASK-control-$s" "$s" 0 "$alts" --no-ij; backbone_only "$TASK-control-$s" "$TASK-bb-control-$s" ;;
    noij) align "$TASK-noij-$s" "$s" "$lambda" "$alts" --no-ij; backbone_only "$TASK-noij-$s" "$TASK-bb-noij-$s" ;;
    bissl) align "$TASK-bissl-$s" "$s" "$lambda" "$alts" --keep-upper; backbone_only "$TASK-bissl-$s" "$TASK-bb-bissl-$s" ;;
    thetaD) align "$TASK-bissl-$s" "$s" "$lambda" "$alts" --keep-upper; backbone_only "$TASK-bissl-$s-upper" "$TASK-bb-thetaD-$s" ;;
  esac
}
needs_lambda() {
  case " $ARMS " in *" noij "*|*" bissl "*|*" thetaD "*)
    [ -n "$LAMBDA" ] || { echo "run.sh: set LAMBDA (chosen by the calibration)" >&2; exit 2; } ;;
  esac
}
bb_name() { [ "$1" = finetune-only ] && echo "$TASK-bb-theta0" || echo "$TASK-bb-$1-$2"; }
ARMS=${ARMS:-"finetune-only control noij bissl thetaD"}

case "${1:-}" in
calibrate)
  F="$OUT/$TASK-calibration.jsonl"
  for lambda in 0 $CAL_LAMBDAS; do
    done_row "$F" "\"lambda\": $lambda," && continue
    name="$TASK-cal-$lambda"
    if [ "$lambda" = 0 ]; then align "$name" "$CAL_SEED" 0 "$CAL_T" --no-ij; else align "$name" "$CAL_SEED" "$lambda" "$CAL_T"; fi
    backbone_only "$name" "$name-bb"; backbone_only theta0 "$TASK-bb-theta0"; backbone_only "$TASK-cal-0" "$TASK-cal-0-bb"
    for e in "$TASK-bb-theta0" "$TASK-cal-0-bb" "$name-bb"; do z export "$e" -o "$ZOO/$e.safetensors" >/dev/null; done
    dist=$(python3 tools/experiments/study/distance.py "$ZOO/$TASK-bb-theta0.safetensors" "$ZOO/$TASK-cal-0-bb.safetensors" "$ZOO/$name-bb.safetensors")
    read knn lin < <(probe "$name" "$TRAIN" "$VAL")
    row "{\"lambda\": $lambda, \"seed\": $CAL_SEED, \"alternations\": $CAL_T, \"penaltyShare\": $(metric "$name" penalty_share_final), \"pretextHeldout\": $(metric "$name" loss_pretext_heldout_final), \"pretextHeldoutStart\": $(metric "$name" loss_pretext_heldout_start), \"upperValTop1\": $(metric "$name" upper_val_top1), \"valKnn\": $knn, \"valLinear\": $lin, $dist}" "$F"
    echo "calibration lambda $lambda done" >&2
  done
  python3 tools/experiments/study/report.py calibration "$F" ;;
protocol)
  needs_lambda
  F="$OUT/$TASK-protocol.jsonl"
  for arm in $ARMS; do
    arm_backbone "$arm" "$CAL_SEED" "$LAMBDA" "$T"
    for lr in ${FT_LRS:-0.01 0.03 0.1}; do for wd in ${FT_WDS:-0.0001 0.001}; do
      done_row "$F" "\"arm\": \"$arm\", \"lr\": $lr, \"wd\": $wd," && continue
      ft="$TASK-ftgrid-$arm-$lr-$wd"
      finetune "$(bb_name "$arm" "$CAL_SEED")" "$ft" "$CAL_SEED" "$lr" "$wd"
      row "{\"arm\": \"$arm\", \"lr\": $lr, \"wd\": $wd, \"seed\": $CAL_SEED, \"valTop1\": $(metric "$ft" val_top1), \"bestEpoch\": $(metric "$ft" best_epoch)}" "$F"
    done; done
    echo "protocol grid of $arm done" >&2
  done
  python3 tools/experiments/study/report.py protocol "$F" > "$OUT/$TASK-protocol.json"
  cat "$OUT/$TASK-protocol.json" ;;
backbones)
  needs_lambda
  for s in $SEEDS; do for arm in $ARMS; do arm_backbone "$arm" "$s" "$LAMBDA" "$T"; done; echo "seed $s backbones done" >&2; done ;;
main)
  needs_lambda
  PROTO="$OUT/$TASK-protocol.json"; [ -f "$PROTO" ] || { echo "run.sh: no $PROTO (run.sh protocol first)" >&2; exit 2; }
  F="$OUT/$TASK-main.jsonl"
  for s in $SEEDS; do
    for arm in $ARMS; do
      done_row "$F" "\"seed\": $s, \"arm\": \"$arm\"," && continue
      start=$(date +%s)
      arm_backbone "$arm" "$s" "$LAMBDA" "$T"
      read lr wd < <(python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))[sys.argv[2]]; print(p["lr"], p["wd"])' "$PROTO" "$arm")
      ft="$TASK-ft-$arm-$s"
      finetune "$(bb_name "$arm" "$s")" "$ft" "$s" "$lr" "$wd"
      read knn lin < <(probe "$(bb_name "$arm" "$s")" "$TRAIN" "$TEST")
      row "{\"seed\": $s, \"arm\": \"$arm\", \"testTop1\": $(top1 "$ft" "$TEST"), \"valTop1\": $(metric "$ft" val_top1), \"bestEpoch\": $(metric "$ft" best_epoch), \"knn\": $knn, \"linear\": $lin, \"lr\": $lr, \"wd\": $wd, \"seconds\": $(( $(date +%s) - start ))}" "$F"
      echo "seed $s $arm done" >&2
    done
  done ;;
*) echo "usage: run.sh calibrate|protocol|backbones|main (see the header)" >&2; exit 2 ;;
esac
