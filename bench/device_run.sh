#!/usr/bin/env bash
# The project's one device session (an H100/H200 lent through the device
# tool): trains the GPU model pair on the GPU while the CUDA build runs on the
# CPUs, runs the GPU tests meanwhile, then the GPU benchmarks once training
# has released the GPU. Everything comes back under $OUT as at most 8 files:
# the trained shards + meta.tar.gz from tools/train/gpu_job.sh, and
# gpu-check.tar.gz with the build/test/benchmark logs.
#
#   OUT=DIR bench/device_run.sh [TRAIN_SECONDS]
# Needs .device-data (tokenized corpus, tools/train) and .gpu-deps
# (/work/shared/tools/gpu-deps.sh) carried along.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT}
TRAIN_S=${1:-270}
W=/tmp/device-run
mkdir -p "$W/check" "$OUT"
export PYTHONUNBUFFERED=1
MODEL=/tmp/ghostd-random-qwen2-1.5b
start=$(date +%s)
echo "device_run: training ${TRAIN_S}s on the GPU, building meanwhile"
(OUT=$OUT bash tools/train/gpu_job.sh "$TRAIN_S" > "$W/check/train.log" 2>&1
 echo "gpu_job exit $?" >> "$W/check/train.log") &
train_pid=$!
(python3 tools/make_random_model.py --arch qwen2 --out "$MODEL" --hidden 1536 --layers 28 --heads 12 \
   --kv-heads 2 --intermediate 8960 --vocab 151936 --tokenizer-vocab 1024 --dtype bf16 --tied > "$W/check/make_model.log" 2>&1) &
model_pid=$!
OUT=$W/check PHASES="build tests" bash bench/gpu_check.sh "$MODEL"
echo "device_run: build+tests done at $(( $(date +%s) - start ))s; waiting for training"
wait "$train_pid"
tail -n 30 "$W/check/train.log"
wait "$model_pid"
echo "device_run: benchmarks from $(( $(date +%s) - start ))s"
OUT=$W/check PHASES="ops bench" bash bench/gpu_check.sh "$MODEL"
tar -C "$W" -czf "$OUT/gpu-check.tar.gz" check
echo "device_run: done in $(( $(date +%s) - start ))s"
ls -la "$OUT"
