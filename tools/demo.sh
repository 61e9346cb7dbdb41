#!/usr/bin/env bash
# The demo: ghostd completes code with the bundled model. Until the bundled
# models are trained, a random-weight model made by tools/make_random_model.py
# stands in (its completions are noise, but every layer runs for real).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
model=""
for m in models/*/; do
  [ -f "$m/config.json" ] && [ -f "$m/tokenizer.json" ] && { model=${m%/}; break; }
done
if [ -z "$model" ]; then
  model=$build/demo-random-model
  if [ ! -f "$model/config.json" ]; then
    echo "demo: no bundled model; generating a random-weight one in $model"
    /usr/bin/python3 tools/make_random_model.py --arch qwen2 --out "$model" --hidden 256 --layers 4 \
      --heads 8 --kv-heads 2 --intermediate 688 --vocab 2048 --dtype bf16 --tied --seed 1
  fi
fi
echo "demo: model $model"
"$build/ghostd" generate --model "$model" --prompt $'def fibonacci(n):\n    ' -n 48
