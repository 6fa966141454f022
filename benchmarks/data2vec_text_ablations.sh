#!/usr/bin/env bash
# data2vec 2.0 for text at the tiny preset: the position shortcut and four ablations of it, read by
# benchmarks/text_probe_diagnosis.py. Each arm is the language suite's stdlib data2vec run (seed 0, 704 steps' schedule)
# stopped at step 234 (a third of its budget, where the shortcut has formed), with one change:
#   fixed-positions     the student's position embeddings keep their initial values (task.data2vec.learn_positions)
#   teacher-embeddings  the teacher keeps an EMA copy of the embeddings (fairseq's ema_encoder_only=false)
#   layer-norm-targets  targets layer-normed per token instead of instance-normed per block over the sequence
#   slow-teacher        EMA decay 0.999 -> 0.9999 (the tiny preset's is 0.9 -> 0.99; the paper's 0.9999 -> 0.99999)
# Usage: bash benchmarks/data2vec_text_ablations.sh [OUT=runs/ablations] [BASELINE=runs/standard/data2vec-text-stdlib-s0]
# Finished arms are skipped. ~3.5 min per arm on 2 cores. The baseline is the language suite's run
# (`selfsup leaderboard run --suite language --rows data2vec-text`); its export-step234 is the column to compare with.
set -euo pipefail
OUT=${1:-runs/ablations} BASELINE=${2:-runs/standard/data2vec-text-stdlib-s0}
S=${SELFSUP:-selfsup}   # SELFSUP / PYTHON: the venv's, when it is not activated
base="trainer.seed=0 trainer.max_steps=704 task.objective=data2vec trainer.eval_every=234 trainer.checkpoint_every=234
      trainer.keep_last=0 trainer.progress=false trainer.stop_at=234"
arms=("fixed-positions:task.data2vec.learn_positions=false"
      "teacher-embeddings:task.data2vec.ema_encoder_only=false"
      "layer-norm-targets:task.data2vec.teacher.instance_norm_layers=false task.data2vec.teacher.final_norm=layer"
      "slow-teacher:task.data2vec.teacher.ema_decay=0.999 task.data2vec.teacher.ema_end_decay=0.9999")
runs=()
for arm in "${arms[@]}"; do
  name=${arm%%:*} dir=$OUT/data2vec-text-stdlib-${arm%%:*}-s0
  if [ ! -d "$dir/checkpoints/step_00000234" ]; then
    rm -rf "$dir"; mkdir -p "$OUT"
    echo "=== $name: $S train bert --preset tiny --run-dir $dir --set" $base ${arm#*:}
    $S train bert --preset tiny --run-dir "$dir" --set $base ${arm#*:}
  fi
  [ -f "$dir/export/config.json" ] || $S export bert --checkpoint "$dir/checkpoints/step_00000234" --out "$dir/export"
  runs+=("$dir")
done
${PYTHON:-python} -m benchmarks.text_probe_diagnosis --section data2vec-ablations --made-by "bash $0 $OUT $BASELINE" \
  --runs "$BASELINE/export-step234" "${runs[@]}" ${WRITE:+--write "$WRITE"}
