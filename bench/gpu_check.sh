#!/usr/bin/env bash
# The one prepared GPU check: configure and build ghostd with the CUDA backend
# (Release), run the GPU-labelled unit tests and the backend op-consistency
# test, the op benchmark (bench_gpu_ops, no model needed), then the GPU
# forward benchmark (with a CUDA-vs-CPU logits check) on a model, the engine
# under 1 to 32 editors (time per token, keystroke TTFT on 4,096 cached
# tokens, greedy tokens alone / batched / without prefix reuse), speculation
# and tensor parallelism. Logs go to $OUT (one file per phase). Aims at ~8
# minutes on 16 cores.
#
#   OUT=/some/dir bench/gpu_check.sh [MODEL_DIR]
#
# Dependencies come from a carried prefix `.gpu-deps` (made on the build host
# by /work/shared/tools/gpu-deps.sh .gpu-deps); without one, system packages
# are used. Without MODEL_DIR (or $GHOSTD_MODEL) a random 1.5B Qwen2-shaped
# bf16 checkpoint is generated with tools/make_random_model.py (needs torch).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"
BUILD=${BUILD:-$ROOT/build-gpu}
JOBS=${JOBS:-$(nproc)}
MODEL=${1:-${GHOSTD_MODEL:-}}
PHASES=" ${PHASES:-build tests ops bench engine spec tp} "   # run a subset: PHASES="build tests"
want() { [[ "$PHASES" == *" $1 "* ]]; }
status=0
step() { printf '\n==== %s (%s)\n' "$*" "$(date +%T)"; }
fail() { echo "FAILED: $*"; status=1; }

{
  step "environment"
  nvidia-smi --query-gpu=name,memory.total,clocks.max.memory,driver_version --format=csv || true
  command -v nvcc && nvcc --version | tail -2
  cmake --version | head -1
  python3 -c 'import torch; print("torch", torch.__version__)' 2>/dev/null || echo "no torch"
  git log --oneline -1 2>/dev/null || true
} 2>&1 | tee "$OUT/env.log"

DEPS=$ROOT/.gpu-deps
# The prefix may travel packed (a working tree near the transfer limit):
# tar -cJf .gpu-deps.tar.xz .gpu-deps on the build host.
if [ ! -d "$DEPS/usr" ] && [ -f "$ROOT/.gpu-deps.tar.xz" ]; then
  tar -C "$ROOT" -xJf "$ROOT/.gpu-deps.tar.xz" || echo "FAILED: unpacking .gpu-deps.tar.xz"
fi
CMAKE_DEPS=()
if [ -d "$DEPS/usr" ]; then
  LIB=$DEPS/usr/lib/x86_64-linux-gnu
  CMAKE_DEPS=(-DCMAKE_PREFIX_PATH="$DEPS/usr" -DCMAKE_INCLUDE_PATH="$DEPS/usr/include"
              -DCMAKE_LIBRARY_PATH="$LIB")
  export LD_LIBRARY_PATH=$LIB:${LD_LIBRARY_PATH:-}
  export PKG_CONFIG_PATH=$LIB/pkgconfig:$DEPS/usr/share/pkgconfig
fi
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)

# NCCL: the toolkit's, else the one in PyTorch's nvidia-nccl wheel (no
# unversioned libnccl.so there, so the library is named outright).
NCCL_ARGS=()
if ! ls /usr/local/cuda/lib*/libnccl.so* /usr/lib/x86_64-linux-gnu/libnccl.so* >/dev/null 2>&1; then
  nccl_dir=$(python3 -c 'import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])' 2>/dev/null)
  if [ -n "$nccl_dir" ] && [ -f "$nccl_dir/include/nccl.h" ] && [ -f "$nccl_dir/lib/libnccl.so.2" ]; then
    NCCL_ARGS=(-DGHOSTD_NCCL_INCLUDE="$nccl_dir/include" -DGHOSTD_NCCL_LIBRARY="$nccl_dir/lib/libnccl.so.2")
    export LD_LIBRARY_PATH=$nccl_dir/lib:${LD_LIBRARY_PATH:-}
    echo "NCCL from $nccl_dir"
  fi
fi

want build && {
  step "configure"
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGHOSTD_CUDA=ON \
    -DGHOSTD_CUDA_ARCHITECTURES=90a -DCMAKE_CUDA_COMPILER="$NVCC" -DGHOSTD_BENCH=ON \
    ${CMAKE_DEPS[@]+"${CMAKE_DEPS[@]}"} ${NCCL_ARGS[@]+"${NCCL_ARGS[@]}"} || fail configure
  step "build ghostd_unit ghostd and the GPU benchmarks (-j$JOBS)"
  # One ninja run for all targets (no serial tail per target); -k 0 builds
  # what it can past a failure.
  ninja -C "$BUILD" -j"$JOBS" -k 0 ghostd_unit bench_gpu_ops bench_gpu_forward ghostd \
    bench_engine_concurrency || fail "build"
} 2>&1 | tee "$OUT/build.log"
want build && { grep -q '^FAILED' "$OUT/build.log" && status=1; }

want tests && {
  step "ctest -L gpu"
  # Includes the engine invariants on CUDA (unit.runtime.engine.engine_cuda).
  # Here a GPU is expected: a skipped GPU test is a failure.
  (cd "$BUILD" && timeout 300 ctest -L gpu --timeout 120 --output-on-failure -V) 2>&1 | tee "$OUT/ctest-gpu.log" || fail "ctest -L gpu"
  # Two-GPU tests skip on a one-GPU machine; nothing else may.
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  skipped=$(grep '(Skipped)' "$OUT/ctest-gpu.log" | { [ "${gpus:-0}" -ge 2 ] && cat || grep -v 'nccl2'; })
  [ -n "$skipped" ] && fail "a GPU test was skipped on a GPU machine: $skipped"
  # A failed GPU test runs again under compute-sanitizer (memcheck), the first
  # one only and time-bounded, so one device session says where it broke.
  failed=$(sed -n 's/^[0-9]*:\(unit\.[^ ]*\)$/\1/p' "$BUILD/Testing/Temporary/LastTestsFailed.log" 2>/dev/null | grep -v nccl2 | head -1)
  if [ -n "$failed" ] && command -v compute-sanitizer >/dev/null; then
    step "compute-sanitizer memcheck: $failed"
    test_cmd=$(cd "$BUILD" && ctest -R "^${failed//./\\.}\$" --show-only=json-v1 | python3 -c '
import json, shlex, sys
t = json.load(sys.stdin)["tests"][0]
env = [p["value"] for p in t.get("properties", []) if p["name"] == "ENVIRONMENT"]
env = env[0] if env else []
san = ["compute-sanitizer", "--tool", "memcheck", "--print-limit", "20"]
print(" ".join(["env"] + [shlex.quote(e) for e in env] + san + [shlex.quote(c) for c in t["command"]]))')
    echo "$test_cmd"
    (cd "$BUILD" && eval "timeout ${SANITIZER_S:-90} $test_cmd") 2>&1 | tail -80
  fi
  step "backend op-consistency test (cpu + cuda)"
  (cd "$BUILD" && timeout 120 ctest -R 'unit\.runtime\.core\.backend_ops' --output-on-failure -V) || fail "backend_ops"
} 2>&1 | tee "$OUT/tests.log"
want tests && grep -q '^FAILED' "$OUT/tests.log" && status=1

want ops && {
  step "bench_gpu_ops (Qwen2-1.5B shapes, no model)"
  if [ -x "$BUILD/bench/bench_gpu_ops" ]; then
    timeout 120 "$BUILD/bench/bench_gpu_ops" --iters 50 || fail "bench_gpu_ops"
  else
    fail "bench_gpu_ops was not built"
  fi
} 2>&1 | tee "$OUT/ops.log"
want ops && grep -q '^FAILED' "$OUT/ops.log" && status=1

want bench && {
  if [ -z "$MODEL" ]; then
    # 8,192 positions: the engine phase's keystrokes sit on 4,096 cached tokens.
    MODEL=$BUILD/ghostd-random-qwen2-1.5b-8k   # kept with the build between calls
    if [ -f "$MODEL/config.json" ]; then
      echo "reusing $MODEL"
    elif [ -f tools/make_random_model.py ]; then
      step "generate a random 1.5B Qwen2-shaped bf16 model"
      timeout 240 python3 tools/make_random_model.py --arch qwen2 --out "$MODEL" --hidden 1536 \
        --layers 28 --heads 12 --kv-heads 2 --intermediate 8960 --vocab 151936 --tokenizer-vocab 1024 --dtype bf16 --tied \
        --max-pos 8192 \
        || { fail "make_random_model"; MODEL=; }
    else
      echo "no model given and no tools/make_random_model.py: benchmark skipped"
      MODEL=
    fi
  fi
  if [ -z "$MODEL" ]; then
    :
  elif [ ! -x "$BUILD/bench/bench_gpu_forward" ]; then
    fail "bench_gpu_forward was not built"
  else
    step "bench_gpu_forward on $MODEL"
    timeout 300 "$BUILD/bench/bench_gpu_forward" --model "$MODEL" --prompt 128 --decode 64 --reps 3 \
      --long 2048 --check 1 || fail "bench_gpu_forward"
    # What batch invariance costs: the same with the fast, non-invariant
    # linear layers (gemv up to 8 rows, cuBLAS above).
    step "bench_gpu_forward, GHOSTD_CUDA_LINEAR=fast"
    GHOSTD_CUDA_LINEAR=fast timeout 300 "$BUILD/bench/bench_gpu_forward" --model "$MODEL" --prompt 128 \
      --decode 64 --reps 3 --long 2048 || fail "bench_gpu_forward (fast)"
  fi
} 2>&1 | tee "$OUT/bench.log"
want bench && grep -q '^FAILED' "$OUT/bench.log" && status=1

# The engine under concurrent editors (closed loop, one keystroke of 1-4
# tokens per request): per-user time per token at 32 editors against 1 (target
# <= 2x), keystroke TTFT ("kttft", <= 8 new tokens on 4,096 cached; target
# <= 5 ms p50 on the 1.5B shape), and greedy tokens identical alone, batched
# with 31 others and with every prompt prefilled fresh (--check-tokens: exit 1
# on a difference), on the bundled model and on the 1.5B shape.
want engine && {
  eng=$BUILD/bench/bench_engine_concurrency
  eng_model=${MODEL:-$BUILD/ghostd-random-qwen2-1.5b-8k}  # the bench phase's (it runs in a subshell)
  [ -f "$eng_model/config.json" ] || [ -f "$eng_model" ] || eng_model=
  if [ ! -x "$eng" ]; then
    fail "bench_engine_concurrency was not built"
  else
    step "engine: bundled model, 1 and 32 editors, greedy tokens checked"
    timeout 180 "$eng" --model models/qwen2-code-small --device cuda --editors 1,32 --tokens 32 --requests 8 \
      --prompt 300 --kv-mb 4096 --check-tokens || fail "engine, bundled model"
    if [ -n "$eng_model" ]; then
      # Decode steps as the engine runs them (captured graphs), without drafts:
      # time per token here is the batch-1 step, the HBM-bandwidth target's input.
      step "engine: 1.5B shape, 1 editor, no drafts (captured decode steps)"
      timeout 120 "$eng" --model "$eng_model" --device cuda --editors 1 --tokens 64 --requests 4 \
        --prompt 128 --no-drafts || fail "engine, 1.5B shape, no drafts"
      step "engine: 1.5B shape, 1, 8 and 32 editors on 4,096 cached tokens, greedy tokens checked"
      timeout 300 "$eng" --model "$eng_model" --device cuda --editors 1,8,32 --tokens 32 --requests 8 \
        --prompt 4096 --source runtime/engine/engine.cpp --kv-mb 16384 --check-tokens || fail "engine, 1.5B shape"
    else
      echo "engine: no 1.5B model (the bench phase makes one); skipped"
    fi
  fi
} 2>&1 | tee "$OUT/engine.log"
want engine && grep -q '^FAILED' "$OUT/engine.log" && status=1

# Speculation on CUDA with the bundled pair: each proposer against off, draft
# trees against chains, one editor and eight at once, greedy completions
# compared with the off run.
want spec && {
  step "bench/speculation.py on cuda (bundled pair)"
  timeout 240 python3 bench/speculation.py --build "$BUILD" --device cuda --threads 1 \
    --sessions edit_session,spec_rename,spec_similar_block --configs off,lookup,suffix,model,all,chains \
    || fail "speculation"
  timeout 150 python3 bench/speculation.py --build "$BUILD" --device cuda --threads 1 --editors 8 \
    --sessions spec_rename --configs off,all,chains || fail "speculation, 8 editors"
} 2>&1 | tee "$OUT/spec.log"
want spec && grep -q '^FAILED' "$OUT/spec.log" && status=1

# Tensor parallelism over NCCL: batch-1 decode of the bench model on one GPU
# and sharded over two (the issue's target: TP 2 >= 1.7x TP 1 on the 7B
# shape; this measures the 1.5B shape the bench phase generated). Needs 2 GPUs.
want tp && {
  step "tensor parallel: ghostd generate on 1 and 2 GPUs"
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  tp_model=${MODEL:-$BUILD/ghostd-random-qwen2-1.5b-8k}  # the bench phase's (it runs in a subshell)
  [ -f "$tp_model/config.json" ] || [ -f "$tp_model" ] || tp_model=
  if [ "${gpus:-0}" -lt 2 ] || [ -z "$tp_model" ]; then
    echo "tp: skipped (${gpus:-0} GPUs, model '${tp_model}')"
  else
    for devs in cuda:0 cuda:0,cuda:1; do
      timeout 180 "$BUILD/ghostd" generate --model "$tp_model" --prompt 'def main():' -n 128 --devices "$devs" 2>&1 \
        | grep -E 'decode:|error' | sed "s/^/$devs: /" || fail "generate on $devs"
    done
  fi
} 2>&1 | tee "$OUT/tp.log"
want tp && grep -q '^FAILED' "$OUT/tp.log" && status=1
