"""Encoder for the trained byte-level BPE, and the corpus-to-token-file step.

Tokenizer.encode applies the merges by rank per pre-tokenized word (cached),
the same algorithm as Hugging Face's BPE model; special tokens are never
parsed from text, callers insert their ids.

Usage: tok.py --corpus tools/train/work --tokenizer T.json --out .device-data
Writes {train,heldout}.bin (uint16 tokens), {train,heldout}.idx.npy
(int64 rows: code_start, code_end, path_start, path_end, pkg_id) and meta.json.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import unicodedata

import numpy as np
import regex

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe import bytes_to_unicode  # noqa: E402


class Tokenizer:
    """Not thread-safe (the word cache is mutated by encode)."""

    def __init__(self, path):
        with open(path) as f:
            tj = json.load(f)
        self.vocab = tj["model"]["vocab"]
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.ranks = {}
        for r, m in enumerate(tj["model"]["merges"]):
            a, b = m.split(" ") if isinstance(m, str) else m
            self.ranks[(a, b)] = r
        self.special = {t["content"]: t["id"] for t in tj["added_tokens"]}
        for t, i in self.special.items():
            self.id_to_token[i] = t
        pre = tj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
        self.pat = regex.compile(pre)
        self.b2u = bytes_to_unicode()
        self.u2b = {u: b for b, u in self.b2u.items()}
        self.cache = {}
        self.vocab_size = max(self.id_to_token) + 1

    def _bpe(self, word):
        syms = [self.b2u[b] for b in word.encode("utf-8")]
        while len(syms) > 1:
            best, best_rank = None, None
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            a, b = syms[best], syms[best + 1]
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            syms = out
        return [self.vocab[s] for s in syms]

    def encode(self, text):
        ids = []
        cache = self.cache
        for w in self.pat.findall(unicodedata.normalize("NFC", text)):
            t = cache.get(w)
            if t is None:
                t = cache[w] = self._bpe(w)
            ids.extend(t)
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.id_to_token[int(i)]
            if t in self.special:
                out += t.encode()
            else:
                out += bytes(self.u2b[c] for c in t)
        return out.decode("utf-8", errors="replace")


def tokenize_split(tok, jsonl, max_tokens=None):
    with open(jsonl) as f:
        records = [json.loads(line) for line in f]
    # Files in path-hash order so a token cap keeps every package represented.
    records.sort(key=lambda r: hashlib.sha1(r["path"].encode()).hexdigest())
    pkgs = {}
    codes, paths, rows = [], [], []
    n_code = 0
    for r in records:
        c = tok.encode(r["text"])
        if max_tokens is not None and n_code + len(c) > max_tokens:
            continue
        p = tok.encode(r["path"] + "\n")
        pk = pkgs.setdefault(r["pkg"], len(pkgs))
        codes.append(c)
        paths.append(p)
        rows.append([n_code, n_code + len(c), 0, len(p), pk])
        n_code += len(c)
    n_path = 0
    for row, p in zip(rows, paths):
        row[2] += n_code + n_path
        row[3] += n_code + n_path
        n_path += len(p)
    flat = np.fromiter((t for seq in codes + paths for t in seq), dtype=np.uint16,
                       count=n_code + n_path)
    return flat, np.array(rows, dtype=np.int64), pkgs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="tools/train/work")
    ap.add_argument("--tokenizer", default="tools/train/work/tokenizer.json")
    ap.add_argument("--out", default=".device-data")
    ap.add_argument("--max-train-tokens", type=int, default=20_000_000)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    tok = Tokenizer(args.tokenizer)
    assert tok.vocab_size <= 65536
    meta = {"tokenizer": "tokenizer.json", "special": tok.special, "splits": {}}
    for split, cap in (("train", args.max_train_tokens), ("heldout", None)):
        t0 = time.time()
        flat, rows, pkgs = tokenize_split(tok, os.path.join(args.corpus, split + ".jsonl"), cap)
        flat.tofile(os.path.join(args.out, split + ".bin"))
        np.save(os.path.join(args.out, split + ".idx.npy"), rows)
        names = sorted(pkgs, key=pkgs.get)
        meta["splits"][split] = {"files": len(rows), "code_tokens": int(rows[:, 1].sum() - rows[:, 0].sum()),
                                 "pkg_tokens": [tok.encode(n + "\n") for n in names],
                                 "pkg_names": names}
        print(f"tok: {split}: {len(rows)} files, {meta['splits'][split]['code_tokens']} code tokens "
              f"in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    meta["newline"] = tok.encode("\n")
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f)
    shutil.copy(args.tokenizer, os.path.join(args.out, "tokenizer.json"))


if __name__ == "__main__":
    main()
