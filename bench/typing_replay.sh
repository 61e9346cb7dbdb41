#!/usr/bin/env bash
# Typing-replay benchmark of the daemon: a 10,000-line Python document, then
# tests/lsp/demo/sample.py typed at its end one character at a time with an
# inline completion per keystroke. Prints per-keystroke latency p50/p99 (client
# side), engine time, and the server overhead (time outside the engine, from
# the metrics log's overhead_ms) p99.
#
#   bench/typing_replay.sh [BUILD_DIR] [extra ghostd flags...]
#
# Model: models/qwen2-code-small when present, else a random-weight stand-in
# (hidden 192, 6 layers, 6/2 heads, 4096 positions) made once in BUILD_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
model=models/qwen2-code-small
if [ ! -f "$model/config.json" ]; then
  model=$build/bench-random-model
  if [ ! -f "$model/config.json" ]; then
    /usr/bin/python3 tools/make_random_model.py --arch qwen2 --out "$model" --hidden 192 --layers 6 --heads 6 \
      --kv-heads 2 --intermediate 512 --vocab 2048 --dtype f32 --tied --seed 3 --max-pos 4096
  fi
fi
echo "typing replay: ghostd serve --model $model $*"
python3 tests/lsp/ghostd_replay.py --session tests/lsp/demo/bench_10k.jsonl --timeout-ms 120000 \
  --metrics-log "$build/typing-replay-metrics.jsonl" -- \
  "$build/ghostd" serve --model "$model" --log-level warn "$@"
