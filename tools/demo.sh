#!/usr/bin/env bash
# The demo: the ghostd daemon on the bundled model, driven by ghostd-replay
# typing a sample Python file one character at a time and asking for an
# inline completion after each keystroke, as an editor does. Each completion
# is printed as ghost text (the line typed so far, then the suggestion
# dimmed), then the latency summary.
#
#   tools/demo.sh [BUILD_DIR]
#
# Until the bundled models are trained (models/qwen2-code-small), a
# random-weight model made by tools/make_random_model.py stands in: its
# completions are noise, but every layer runs for real.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
model=""
if [ -f models/qwen2-code-small/config.json ]; then
  model=models/qwen2-code-small
else
  for m in models/*/; do
    [ -f "$m/config.json" ] && [ -f "$m/tokenizer.json" ] && { model=${m%/}; break; }
  done
fi
if [ -z "$model" ]; then
  model=$build/demo-random-model
  if [ ! -f "$model/config.json" ]; then
    echo "demo: no bundled model; generating a random-weight one in $model"
    /usr/bin/python3 tools/make_random_model.py --arch qwen2 --out "$model" --hidden 256 --layers 4 \
      --heads 8 --kv-heads 2 --intermediate 688 --vocab 2048 --dtype bf16 --tied --seed 1
  fi
fi
echo "demo: ghostd serve --model $model, typing tests/lsp/demo/sample.py"
python3 tests/lsp/ghostd_replay.py --session tests/lsp/demo/typing.jsonl --show \
  --metrics-log "$build/demo-metrics.jsonl" -- \
  "$build/ghostd" serve --model "$model" --log-level warn --max-lines 4 --max-tokens 24
