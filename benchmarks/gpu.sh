#!/usr/bin/env bash
# One prepared run of every GPU check of issue 20 on one H200, inside ~9 minutes of device time:
#   bash benchmarks/gpu.sh [cuda|cpu] [DEST]
# Stages run in order of importance, each under a time limit cut to what is left of the run's deadline
# (GPU_DEADLINE_S, default 540 s); a stage that cannot start in time is listed as skipped. GPU_STAGES, a bash
# pattern of stage names (default: all), picks some: 'levers*' for the speed levers, '@(ceilings|levers*)'.
# Exits 1 when a stage failed or was cut short. Each stage writes its
# table into DEST/RESULTS.md (a copy of benchmarks/RESULTS.md: copy it back to commit the figures) and its output
# into DEST/gpu.log; DEST/stages.txt says how each stage ended. `cpu` runs the same stages at tiny sizes to prove
# the script on a CPU before a GPU is spent on it.
# On the device machine (no package registry) the tree runs in place with the wheels its image lacks, carried in
# .whl/ (ignored by git; its image had torch, timm and transformers but not omegaconf):
#   echo /.whl/ >> .git/info/exclude; python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_17_x86_64 -d .whl omegaconf==2.4.0
# and SELFSUP_CODE_VERSION names the commit (the copy's .git, if any, need not match its files).
set -uo pipefail
shopt -s extglob
cd "$(dirname "$0")/.."
MODE=${1:-cuda}
case $MODE in cpu|cuda) ;; *) echo "usage: bash benchmarks/gpu.sh [cuda|cpu] [DEST] (not '$MODE')"; exit 2 ;; esac
DEST=${2:-${OUT:-/tmp/gpu-out}}
mkdir -p "$DEST"
RES=$DEST/RESULTS.md LOG=$DEST/gpu.log STAGES=$DEST/stages.txt
WORK=$(mktemp -d /tmp/gpu-runs.XXXX)      # run folders stay off DEST: few files come back from a device
cp benchmarks/RESULTS.md "$RES"
cp benchmarks/RESULTS.md "$WORK/before.md"
: > "$STAGES"
: > "$LOG"
FAILED=0
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
START=$SECONDS DEADLINE=${GPU_DEADLINE_S:-540}

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >> "$LOG" 2>&1 || { echo "install failed (see $LOG)"; tail -5 "$LOG"; exit 1; }
  # the tree itself runs in place; its entry points (tasks, commands) come from a dist-info written from pyproject
  $PY - <<'EOF' || exit 1
import pathlib, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
info = pathlib.Path(f"/tmp/site/selfsup-{project['version']}.dist-info")
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: selfsup\nVersion: {project['version']}\n")
(info / "entry_points.txt").write_text("".join(
    f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
    for group, eps in project["entry-points"].items()))
EOF
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

stage() {  # stage NAME LIMIT_S COMMAND...: run under min(LIMIT_S, time left); record how it ended
  local name=$1 limit=$2 left t0=$SECONDS rc how
  shift 2
  # shellcheck disable=SC2053  # GPU_STAGES is a pattern
  [[ $name == ${GPU_STAGES:-*} ]] || return 0
  left=$((DEADLINE - (SECONDS - START)))
  if [ "$left" -lt 20 ]; then echo "$name | skipped (deadline) | 0 s" | tee -a "$STAGES"; return; fi
  [ "$limit" -gt $((left - 10)) ] && limit=$((left - 10))   # leave room for timeout's 10 s kill grace
  echo "=== $name ($(date +%T), limit ${limit}s): $*" >> "$LOG"
  timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
  rc=$?
  case $rc in 0) how=ok ;; 124) how="timed out" ;; 137) how="killed (timed out, or out of memory)" ;;
              *) how="exit $rc" ;; esac
  [ "$rc" -eq 0 ] || FAILED=1
  echo "$name | $how | $((SECONDS - t0)) s" | tee -a "$STAGES"
}

if [ "$MODE" = cpu ]; then
  BENCH="--device cpu --size tiny --steps 1 --repeats 2"; DEV=cpu; STEPS=8; JOBS=2; SIZE=tiny; BATCH=8
  MIM_BATCH=8
  FED="--preset tiny --batch 16 --workers 2 --steps 8"
else
  BENCH="--device cuda --size base --steps 10 --repeats 4"; DEV=cuda; STEPS=200; JOBS=8; SIZE=base
  BATCH=256 MIM_BATCH=64    # data2vec 2.0's 16 masked copies per image: 256 images do not fit in 141 GB
  FED="--preset vit-b16 --batch 256 --workers 12 --steps 40"
fi
T="$PY -m benchmarks.throughput"
C="$PY -m benchmarks.gpu_checks"
[ "$MODE" = cpu ] || nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv >> "$LOG" 2>&1
stage ceilings 40 $C ceilings --device $DEV --write "$RES"
stage "mae eager" 100 $T --suite mae $BENCH --batch $BATCH --write "$RES"
stage "bert eager" 100 $T --suite bert $BENCH --batch $BATCH --write "$RES"
stage "mae compiled" 160 $T --suite mae $BENCH --batch $BATCH --compile --write "$RES"
stage "bert compiled" 160 $T --suite bert $BENCH --batch $BATCH --compile --write "$RES"
stage "train checks" 150 $C train --device $DEV --steps $STEPS --jobs $JOBS --work "$WORK" --write "$RES"
stage "mae fed" 100 $C fed --device $DEV $FED --work "$WORK" --write "$RES"
stage "mae profile" 60 $C profile --device $DEV --suite mae --size ${SIZE} --batch ${BATCH} --write "$RES"
stage "mim methods" 90 $T --suite mim $BENCH --batch $MIM_BATCH --write "$RES"
stage "text objectives" 120 $T --suite objectives $BENCH --batch $BATCH --write "$RES"
L="$PY -m benchmarks.gpu_levers"
stage "levers mae eager" 120 $L --suite mae $BENCH --batch $BATCH --levers patch-matmul sdpa-flash sdpa-efficient sdpa-cudnn \
  --write "$RES"
stage "levers mae compiled" 200 $L --suite mae $BENCH --batch $BATCH --compile --levers patch-matmul --write "$RES"
stage "levers bert compiled" 200 $L --suite bert $BENCH --batch $BATCH --compile --levers no-dropout --write "$RES"
echo "total $((SECONDS - START)) s" | tee -a "$STAGES"
tar -czf "$DEST/run-logs.tgz" -C "$WORK" --exclude=checkpoints --exclude='*.safetensors' --exclude='*.pt' . 2>/dev/null
# the tables this run wrote, for the reply's tail
$PY - "$WORK/before.md" "$RES" <<'EOF'
import re, sys
before, after = (open(f).read() for f in sys.argv[1:])
for key in re.findall(r"<!-- ([^ /][^ ]*) -->", after):
    block = after.split(f"<!-- {key} -->")[1].split(f"<!-- /{key} -->")[0]
    if block not in before:
        print(f"[{key}]", *[ln for ln in block.splitlines() if ln.startswith(("|", "`", "- ")) or "failed" in ln],
              sep="\n")
EOF
exit $FAILED
