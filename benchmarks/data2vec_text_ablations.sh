#!/usr/bin/env bash
# data2vec 2.0 for text at the tiny preset: the position shortcut and ablations of it, read by
# benchmarks/text_probe_diagnosis.py. Each arm is the language suite's stdlib data2vec run (seed 0, 704 steps' schedule)
# stopped at step 234 (a third of its budget, where the shortcut has formed), with one change:
#   fixed-positions     the student's position embeddings keep their initial values (task.data2vec.learn_positions)
#   teacher-embeddings  the teacher keeps an EMA copy of the embeddings, run without dropout, instead of reading the
#                       student's embedding output (task.data2vec.teacher_embeddings)
#   slow-teacher        EMA decay 0.999 -> 0.9999 (the preset's 0.9 -> 0.99): in 234 steps the blocks stay ~93 % their
#                       random initial values, but still read the student's embeddings
#   random-teacher      a teacher frozen at its random initial weights, embeddings included (decay 1, own
#                       embeddings): fixed targets, no feedback from the student at all
#   layer-norm-targets  targets layer-normed per token instead of instance-normed per block over the sequence
#   centred-targets     each position's mean target over the batch subtracted (not in the paper): no part of a target
#                       is known from its position alone (task.data2vec.teacher.centre_positions)
#   centred-targets-full  the same over the whole 704-step budget (compare with the objectives table's
#                       data2vec-text-stdlib, section text-probe-diagnosis-objectives)
# Usage: bash benchmarks/data2vec_text_ablations.sh [OUT=runs/ablations] [BASELINE=runs/standard/data2vec-text-stdlib-s0]
# The baseline is the language suite's run (`selfsup leaderboard run --suite language --out runs/standard`), whose
# export-step234 is the column to compare with. Finished arms are skipped (the table says which code trained each).
# ~3.5 min per arm on 2 cores. WRITE=benchmarks/RESULTS.md puts the table there; SELFSUP / PYTHON: the venv's
# executables when it is not activated.
set -euo pipefail
OUT=${1:-runs/ablations} BASELINE=${2:-runs/standard/data2vec-text-stdlib-s0}
S=${SELFSUP:-selfsup}
if [ ! -f "$BASELINE/export-step234/config.json" ]; then
  echo "no baseline export $BASELINE/export-step234: run the language suite (selfsup leaderboard run --suite language" \
       "--out runs/standard), or export its step: $S export bert --checkpoint $BASELINE/checkpoints/step_00000234" \
       "--out $BASELINE/export-step234" >&2
  exit 2
fi
base="trainer.seed=0 trainer.max_steps=704 task.objective=data2vec trainer.eval_every=234 trainer.checkpoint_every=234
      trainer.keep_last=0 trainer.progress=false"
# name:stop:settings (stop: the step the arm ends at, 0 = the whole budget)
arms=("fixed-positions:234:task.data2vec.learn_positions=false"
      "teacher-embeddings:234:task.data2vec.teacher_embeddings=true"
      "slow-teacher:234:task.data2vec.teacher.ema_decay=0.999 task.data2vec.teacher.ema_end_decay=0.9999"
      "random-teacher:234:task.data2vec.teacher_embeddings=true task.data2vec.teacher.ema_decay=1 task.data2vec.teacher.ema_end_decay=1"
      "layer-norm-targets:234:task.data2vec.teacher.instance_norm_layers=false task.data2vec.teacher.final_norm=layer"
      "centred-targets:234:task.data2vec.teacher.centre_positions=true"
      "centred-targets-full:0:task.data2vec.teacher.centre_positions=true")
runs=()
for arm in "${arms[@]}"; do
  name=${arm%%:*} rest=${arm#*:}; stop=${rest%%:*} sets=${rest#*:}
  dir=$OUT/data2vec-text-stdlib-$name-s0 ckpt=$OUT/data2vec-text-stdlib-$name-s0
  [ "$stop" -gt 0 ] && ckpt=$dir/checkpoints/step_$(printf %08d "$stop")
  if [ "$stop" -gt 0 ]; then done_=$([ -d "$ckpt" ] && echo y || true)
  else done_=$(grep -q '"complete"' "$dir/status.json" 2>/dev/null && echo y || true); fi
  if [ -z "$done_" ]; then
    rm -rf "$dir"; mkdir -p "$OUT"
    echo "=== $name: $S train bert --preset tiny --run-dir $dir --set" $base trainer.stop_at=$stop $sets
    $S train bert --preset tiny --run-dir "$dir" --set $base trainer.stop_at=$stop $sets
  fi
  [ -f "$dir/export/config.json" ] || $S export bert --checkpoint "$ckpt" --out "$dir/export"
  runs+=("$dir")
done
${PYTHON:-python} -m benchmarks.text_probe_diagnosis --section data2vec-ablations --made-by "bash $0 $OUT $BASELINE" \
  --runs "$BASELINE/export-step234" "${runs[@]}" ${WRITE:+--write "$WRITE"}
