#!/usr/bin/env bash
# One prepared run of every GPU speed check (issue 8), a few minutes on one H200. Writes the tables into
# benchmarks/RESULTS.md (and prints them). `bash benchmarks/gpu.sh cpu` runs the same checks at tiny sizes
# on the CPU to prove the script before a GPU is spent on it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if [ "${1:-cuda}" = "cpu" ]; then
  DEV="--device cpu --size tiny --batch 8 --steps 1 --repeats 2"; FED="trainer.device=cpu"; SIZE=tiny; OUT=${OUT:-/tmp}/RESULTS-cpu.md
else
  DEV="--device cuda --size base --batch 256 --steps 10 --repeats 4"; FED="trainer.device=cuda"; SIZE=vit-b16; OUT=benchmarks/RESULTS.md
fi
export PYTHONUNBUFFERED=1
for suite in mae bert; do
  $PY -m benchmarks.throughput --suite $suite $DEV --write "$OUT"
  $PY -m benchmarks.throughput --suite $suite $DEV --compile --write "$OUT"
done
$PY -m benchmarks.throughput --suite caption $DEV --beams 1 --write "$OUT"
$PY -m benchmarks.throughput --suite caption $DEV --beams 3 --write "$OUT"
# PPO env steps/s on a frozen ViT: cached embeddings vs re-encoding every epoch (minigrid envs run on the CPU)
$PY -m benchmarks.throughput --suite ppo --device "${1:-cuda}" --repeats 2 \
    $( [ "$SIZE" = tiny ] && echo "--set task.num_steps=16 trainer.batch_size=32" ) --write "$OUT"
# the same MAE step fed by the suite's own data pipeline (rendered scenes, uint8, workers): samples/s from the trainer
RUN=$(mktemp -d)/fed
$PY -m selfsup train mae --preset "$SIZE" --run-dir "$RUN" --set $FED trainer.max_steps=40 trainer.log_every=20 \
    trainer.eval_at_end=false trainer.checkpoint_every=0 trainer.progress=false task.data.num_train=4096 task.data.num_test=64 \
    $( [ "$SIZE" = tiny ] && echo "trainer.batch_size=8" || echo "trainer.batch_size=256 trainer.num_workers=8" )
echo "MAE fed by the data pipeline (trainer metrics, last window):"; tail -n 1 "$RUN/metrics.jsonl"
