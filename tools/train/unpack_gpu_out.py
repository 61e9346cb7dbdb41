"""Rebuilds HF model dirs from the flat files gpu_job.sh leaves in $OUT.

Usage: unpack_gpu_out.py OUT_DIR --target models/qwen2-code-gpu --draft models/qwen2-code-gpu-draft
       [--tokenizer .device-data/tokenizer.json]
Also copies meta (eval.json, train logs) into OUT_DIR/../gpu-meta unless --meta is given.
"""
import argparse
import glob
import json
import os
import shutil
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import load_hf  # noqa: E402


def unpack(out_dir, name, dest, meta_dir, tokenizer):
    files = sorted(glob.glob(os.path.join(out_dir, f"{name}-*.safetensors")))
    if not files:
        raise SystemExit(f"no {name}-*.safetensors in {out_dir}")
    os.makedirs(dest, exist_ok=True)
    for old in glob.glob(os.path.join(dest, "model*.safetensors*")):
        os.remove(old)
    for f in files:
        shutil.copy(f, os.path.join(dest, os.path.basename(f)[len(name) + 1:]))
    for f in glob.glob(os.path.join(meta_dir, name, "*.json")):
        shutil.copy(f, dest)
    shutil.copy(tokenizer, os.path.join(dest, "tokenizer.json"))
    m = load_hf(dest)  # proves the dir loads: names, shapes and shard index agree
    print(f"{name}: {dest} ({len(files)} safetensors, {m.num_params() / 1e6:.2f}M params)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--target", default="models/qwen2-code-gpu")
    ap.add_argument("--draft", default="models/qwen2-code-gpu-draft")
    ap.add_argument("--tokenizer", default=".device-data/tokenizer.json")
    ap.add_argument("--meta", default=None, help="where to keep logs and eval.json")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    with tarfile.open(os.path.join(args.out_dir, "meta.tar.gz")) as t:
        t.extractall(tmp)
    unpack(args.out_dir, "target", args.target, tmp, args.tokenizer)
    unpack(args.out_dir, "draft", args.draft, tmp, args.tokenizer)
    meta = args.meta or os.path.join("tools/train/work", "gpu-meta")
    shutil.rmtree(meta, ignore_errors=True)
    shutil.copytree(tmp, meta)
    ev = os.path.join(meta, "eval.json")
    if os.path.exists(ev):
        print(json.dumps(json.load(open(ev)), indent=2))
    print(f"meta (logs, eval.json) in {meta}")


if __name__ == "__main__":
    main()
