"""Gathers the Python training corpus present on every Debian 12 machine.

Files come from the standard library and dist-packages, deduplicated by
content, and are split into train and held-out sets by a hash of their path
so the split is stable across machines and runs. Each record keeps the
package directory so multi-file samples in Qwen2.5-Coder's repo format can be
built later.

Usage: corpus.py --out tools/train/work
Writes train.jsonl and heldout.jsonl, one {"pkg", "path", "text"} per line.
"""
import argparse
import hashlib
import json
import os
import sys

ROOTS = [("/usr/lib/python3.11", "stdlib"), ("/usr/lib/python3/dist-packages", None)]
MAX_BYTES = 200 * 1024
HELDOUT_PER_MILLE = 20  # ~2 % of files


def package_of(rel, root_pkg):
    parts = rel.split("/")
    if root_pkg is not None:  # stdlib: the top-level package, or "stdlib" for modules
        return parts[0] if len(parts) > 1 else root_pkg
    return parts[0] if len(parts) > 1 else parts[0].rsplit(".", 1)[0]


def is_heldout(rel_path):
    h = int(hashlib.sha1(rel_path.encode()).hexdigest()[:8], 16)
    return h % 1000 < HELDOUT_PER_MILLE


def gather(roots=ROOTS):
    seen = set()
    out = []
    for root, root_pkg in roots:
        if not os.path.isdir(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            if "__pycache__" in dirnames:
                dirnames.remove("__pycache__")
            if root_pkg and os.path.relpath(dirpath, root).split("/")[0] == "site-packages":
                dirnames[:] = []
                continue
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                full = os.path.join(dirpath, name)
                if os.path.islink(full):
                    continue
                try:
                    if os.path.getsize(full) > MAX_BYTES:
                        continue
                    with open(full, "rb") as f:
                        raw = f.read()
                    text = raw.decode("utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                if not text.strip():
                    continue
                digest = hashlib.sha1(raw).digest()
                if digest in seen:
                    continue
                seen.add(digest)
                rel = os.path.relpath(full, root)
                out.append({"pkg": package_of(rel, root_pkg), "path": rel, "text": text})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tools/train/work")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    records = gather()
    counts = {"train": [0, 0], "heldout": [0, 0]}
    with open(os.path.join(args.out, "train.jsonl"), "w") as ft, \
         open(os.path.join(args.out, "heldout.jsonl"), "w") as fh:
        for r in records:
            split = "heldout" if is_heldout(r["path"]) else "train"
            (fh if split == "heldout" else ft).write(json.dumps(r) + "\n")
            counts[split][0] += 1
            counts[split][1] += len(r["text"].encode())
    for k, (n, b) in counts.items():
        print(f"{k}: {n} files, {b / 1e6:.1f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
