#!/usr/bin/env bash
# Trains the default CPU pair in the background (one thread, niced) and exports it.
# Usage: tools/train/cpu_train.sh TARGET_SECONDS DRAFT_SECONDS [--resume]
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${1:-2700}; D=${2:-900}; shift 2 || true
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
PY=/usr/bin/python3
nice -n 10 $PY tools/train/train.py --preset target --time-budget-s "$T" --threads 1 \
  --work tools/train/work/target --export models/qwen2-code-small "$@"
nice -n 10 $PY tools/train/train.py --preset draft --time-budget-s "$D" --threads 1 \
  --work tools/train/work/draft --export models/qwen2-code-draft "$@"
