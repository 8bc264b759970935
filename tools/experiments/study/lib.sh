# Shared by the BiSSL study's scripts (docs/experiments.md, "BiSSL study"); sourced, not run.
# Needs: B (bissl binary), ZOO (scratch zoo). Tasks: the low-label splits of tools/make_lowlabel_splits.py.
P=idx:/usr/share/datasets/fashion-mnist
z() { "$B" "$@" --zoo "$ZOO"; }
has() { z show "$1" >/dev/null 2>&1; }
# task_data TASK SPLIT -> dataset URI of that split of the task's low-label splits
task_data() {
  case "$1" in
    digits) echo "h5:data/digits/digits.h5#split=data/digits/splits-lowlabel/$2.txt" ;;
    fashion) echo "$P#part=test&split=data/fashion-mnist/splits-lowlabel/$2.txt" ;;
    *) echo "unknown task '$1'" >&2; return 2 ;;
  esac
}
# task_augment TASK -> the downstream training augmentation (no flips for digits: a flipped digit is another glyph)
task_augment() { case "$1" in digits) echo "crop:0.5" ;; *) echo "crop:0.5+flip" ;; esac; }
# probe REF TRAIN_URI EVAL_URI -> "knnTop1 linearTop1" of the frozen backbone; PROBE_FLAGS (default
# --recalibrate-bn: BN statistics recomputed on TRAIN, so probes compare features, not statistics)
probe() { z probe "$1" --data "$2" --eval-data "$3" --image-size 16 ${PROBE_FLAGS---recalibrate-bn} --json 2>/dev/null \
          | python3 -c 'import json,sys; r=json.load(sys.stdin)["result"]; print(r["knnTop1"], r["linearTop1"])'; }
# backbone_only REF NAME -> NAME: an entry with REF's backbone alone (so fine-tuning starts a fresh Linear head)
backbone_only() {
  has "$2" && return 0
  z export "$1" --component backbone -o "$ZOO/$2.safetensors" >/dev/null
  # NAME is a tag: the same backbone may already be an entry under another name (the lambda = 0 control
  # is the same continued pretext training for every task)
  local id; id=$(z import "$ZOO/$2.safetensors" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  z tag "$id" "$2" >/dev/null
  rm -f "$ZOO/$2.safetensors"
}
# top1 REF URI -> test top-1 (%) of REF's backbone + classifier
top1() { z eval "$1" --data "$2" --image-size 16 --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["metrics"]["top1"])'; }
# metric REF KEY -> the entry's provenance metric KEY
metric() { z show "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["provenance"]["metrics"].get(sys.argv[1], "null"))' "$2"; }
# done_row FILE PATTERN: the results file already has a row containing PATTERN (resumability)
done_row() { [ -f "$1" ] && grep -qF -- "$2" "$1"; }
