#!/usr/bin/env bash
# make demo: what bissl does today, on checkpoints written by real torch 2.13 (Tests/Fixtures).
# Grows into the end-to-end pipeline of issue 8 (pretrain -> align -> fine-tune) as it lands.
# Usage: tools/demo.sh PATH/TO/bissl
set -euo pipefail
BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
cd "$(dirname "$0")/.."
OUT=out/demo
mkdir -p "$OUT"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
FIX=Tests/Fixtures

step "What is this file? A ResNet-50 state dict saved by torch.save (narrow: width 1, small stem)"
"$BIN" inspect "$FIX/pth/resnet50_w1.pth" | grep -v '^  [a-z0-9_.]*  [a-z0-9]*  \[' | head -20

step "Convert it to bissl HDF5, then out again to safetensors, .npz and a legacy .pth"
"$BIN" convert "$FIX/pth/resnet50_w1.pth" "$OUT/resnet50_w1.h5"
"$BIN" convert "$OUT/resnet50_w1.h5" "$OUT/resnet50_w1.safetensors"
"$BIN" convert "$OUT/resnet50_w1.h5" "$OUT/resnet50_w1.npz"
"$BIN" convert "$OUT/resnet50_w1.h5" "$OUT/resnet50_w1_legacy.pth" --legacy

step "A BYOL training checkpoint: backbone under 'encoder.', projector and predictor kept as components"
"$BIN" convert "$FIX/layout/c2_byol.pth" "$OUT/byol.h5"
"$BIN" convert "$FIX/layout/c2_byol.pth" "$OUT/byol_backbone.pth" --component backbone

step "Teacher and student in one file: refused until you pick one"
"$BIN" convert "$FIX/layout/c4_teacher_student.pth" "$OUT/ts.h5" || true
"$BIN" convert "$FIX/layout/c4_teacher_student.pth" "$OUT/teacher.h5" --select teacher

step "Files that are not what their name says: one clear line each, nothing written"
for f in pth/c9_html.pth pth/c9_lfs.pth pth/c10_pickle_p4.pth pth/c8_truncated.pth pth/c8_flipped.pth; do
  "$BIN" convert "$FIX/$f" "$OUT/never.h5" || true
done
test ! -e "$OUT/never.h5"
step "Import into the zoo (./zoo): content-addressed, with provenance; a second run finds them there"
"$BIN" import "$FIX/pth/resnet50_w1.pth" --name demo-r50 --tag demo
"$BIN" import "$FIX/layout/c2_byol.pth" --name demo-byol
"$BIN" import "$FIX/layout/c4_teacher_student.pth" --select teacher --name demo-teacher
"$BIN" import "$FIX/layout/c4_teacher_student.pth" --select student --name demo-student

step "bissl list"
"$BIN" list

step "bissl show demo-byol"
"$BIN" show demo-byol

step "bissl diff demo-teacher demo-student: which stages differ, and by how much"
"$BIN" diff demo-teacher demo-student | sed -n '1,18p'

step "bissl export demo-byol --component backbone: a torchvision state dict for torch.load"
"$BIN" export demo-byol -o "$OUT/byol_backbone.pth" --component backbone
"$BIN" export demo-byol -o "$OUT/byol.safetensors"

step "bissl verify: content ids recomputed, files readable, provenance valid"
"$BIN" verify
printf '\nOutputs are in %s/\n' "$OUT"
