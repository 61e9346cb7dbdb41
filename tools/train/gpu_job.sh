#!/usr/bin/env bash
# Trains the GPU pair (target-gpu and draft-gpu, concurrently on one GPU) within a
# total wall budget, evaluates both and leaves the results under $OUT as at most
# 8 flat files of at most 16 MiB: sharded safetensors plus one small tar of the
# JSON side files. Rebuild model dirs here with tools/train/unpack_gpu_out.py.
#
# Usage: OUT=/path tools/train/gpu_job.sh TOTAL_SECONDS
# Env overrides (for CPU smoke tests): DEVICE=cpu TARGET_PRESET=tiny DRAFT_PRESET=tiny
# Needs the git-ignored .device-data/ (train/heldout token files, meta.json, tokenizer.json).
set -uo pipefail
cd "$(dirname "$0")/../.."
TOTAL=${1:-420}
OUT=${OUT:?set OUT}
DEVICE=${DEVICE:-cuda}
TARGET_PRESET=${TARGET_PRESET:-target-gpu}
DRAFT_PRESET=${DRAFT_PRESET:-draft-gpu}
DATA=${DATA:-.device-data}
POST=${POST:-55}   # seconds kept after training for export, eval and packing
EVAL_TOKENS=${EVAL_TOKENS:-400000}
SHARD_MB=${SHARD_MB:-15}   # returned files must stay under 16 MiB
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
START=$(date +%s)
WORK=$(mktemp -d /tmp/gpu_job.XXXXXX)
mkdir -p "$OUT" "$WORK/export" "$WORK/meta"

echo "gpu_job: total ${TOTAL}s, device $DEVICE, presets $TARGET_PRESET + $DRAFT_PRESET, work $WORK"
$PY -c "import sys, torch, numpy; print('python', sys.version.split()[0], 'torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv || true
for f in train.bin train.idx.npy heldout.bin heldout.idx.npy meta.json tokenizer.json; do
  [ -f "$DATA/$f" ] || { echo "gpu_job: missing $DATA/$f"; exit 2; }
done

# Each trainer anneals to and stops at DEADLINE however long its own startup took.
DEADLINE=$(( START + TOTAL - POST ))
TRAIN_S=$(( DEADLINE - $(date +%s) ))
[ "$TRAIN_S" -lt 10 ] && TRAIN_S=10
echo "gpu_job: training budget ${TRAIN_S}s per model, deadline in $(( DEADLINE - $(date +%s) ))s"

train() {  # name preset
  # train.py stops itself by DEADLINE and exports; timeout is a backstop only.
  local left=$(( START + TOTAL - 25 - $(date +%s) ))
  timeout $(( left > 20 ? left : 20 )) $PY tools/train/train.py --preset "$2" --device "$DEVICE" \
    --threads 4 --time-budget-s "$TRAIN_S" --deadline-unix "$DEADLINE" --data "$DATA" --work "$WORK/$1" \
    --export "$WORK/export/$1" --shard-mb "$SHARD_MB" --log-every 50 --ckpt-every-s 45 \
    > "$WORK/meta/$1-train.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "gpu_job: $1 training exited $rc; exporting its last checkpoint"
    $PY tools/train/train.py --preset "$2" --device cpu --data "$DATA" --work "$WORK/$1" \
      --export "$WORK/export/$1" --shard-mb "$SHARD_MB" --export-only >> "$WORK/meta/$1-train.log" 2>&1
  fi
}
train target "$TARGET_PRESET" & PT=$!
train draft "$DRAFT_PRESET" & PD=$!
# Stream progress while both run.
tail -n +1 -F "$WORK/meta/target-train.log" "$WORK/meta/draft-train.log" 2>/dev/null &
PTAIL=$!
wait $PT $PD
sleep 1; kill $PTAIL 2>/dev/null

EVAL_ARGS=(--data "$DATA" --device "$DEVICE" --threads 4 --max-tokens "$EVAL_TOKENS" --out "$WORK/meta/eval.json")
if [ -f "$WORK/export/target/config.json" ] && [ -f "$WORK/export/draft/config.json" ]; then
  timeout 120 $PY tools/train/eval.py --target "$WORK/export/target" --draft "$WORK/export/draft" \
    "${EVAL_ARGS[@]}" 2>&1 | tee "$WORK/meta/eval.log"
elif [ -f "$WORK/export/target/config.json" ]; then
  timeout 120 $PY tools/train/eval.py --target "$WORK/export/target" "${EVAL_ARGS[@]}" 2>&1 | tee "$WORK/meta/eval.log"
fi

# Flatten: safetensors shards as <name>-<file>, everything else (small JSON, logs) in one tar.
n=0
for name in target draft; do
  d="$WORK/export/$name"
  [ -d "$d" ] || continue
  for f in "$d"/*.safetensors; do
    [ -f "$f" ] || continue
    cp "$f" "$OUT/$name-$(basename "$f")"; n=$((n + 1))
  done
  mkdir -p "$WORK/meta/$name"
  cp "$d"/*.json "$WORK/meta/$name/" 2>/dev/null
  rm -f "$WORK/meta/$name/tokenizer.json"   # identical to .device-data/tokenizer.json
  cp "$WORK/$name/train_summary.json" "$WORK/meta/$name/" 2>/dev/null
done
tar -C "$WORK/meta" -czf "$OUT/meta.tar.gz" .
echo "gpu_job: wrote $((n + 1)) files to $OUT in $(( $(date +%s) - START ))s:"
ls -la "$OUT"
