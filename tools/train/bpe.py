"""Byte-level BPE trainer that writes a Hugging Face tokenizer.json in Qwen2's layout.

Words come from Qwen2's pre-tokenizer regex; merges are learned on word counts
with incremental pair-count updates, so ~30 MB of text trains in minutes.
Special tokens follow the BPE vocabulary, in Qwen2.5-Coder's relative order.

Usage: bpe.py --corpus tools/train/work/train.jsonl --vocab 8192 --out tokenizer.json
"""
import argparse
import hashlib
import heapq
import json
import os
import sys
import time
import unicodedata
from collections import Counter, defaultdict

import regex

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from byte_level import bytes_to_unicode  # noqa: E402

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL_TOKENS = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                  "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]




def count_words(texts, pattern=QWEN2_PATTERN):
    pat = regex.compile(pattern)
    counts = Counter()
    for t in texts:
        counts.update(pat.findall(unicodedata.normalize("NFC", t)))
    return counts


def train_bpe(word_counts, n_merges, log_every=1000):
    """Returns the merges as a list of (left, right) symbol strings (byte-unicode form)."""
    b2u = bytes_to_unicode()
    sym_of = {}  # symbol string -> int id
    syms = []

    def sid(s):
        i = sym_of.get(s)
        if i is None:
            i = sym_of[s] = len(syms)
            syms.append(s)
        return i

    words = []
    freqs = []
    for w, c in word_counts.items():
        ids = [sid(b2u[b]) for b in w.encode("utf-8")]
        if len(ids) > 1:
            words.append(ids)
            freqs.append(c)
    pair_count = defaultdict(int)
    where = defaultdict(set)
    for wi, ids in enumerate(words):
        f = freqs[wi]
        for a, b in zip(ids, ids[1:]):
            pair_count[(a, b)] += f
            where[(a, b)].add(wi)
    # Ties break on the symbol strings so the result does not depend on dict order.
    heap = [(-c, syms[p[0]], syms[p[1]], p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges = []
    t0 = time.time()
    while len(merges) < n_merges and heap:
        negc, _, _, pair = heapq.heappop(heap)
        cur = pair_count.get(pair, 0)
        if cur <= 0:
            continue
        if -negc != cur:  # stale entry: re-push with the current count
            heapq.heappush(heap, (-cur, syms[pair[0]], syms[pair[1]], pair))
            continue
        a, b = pair
        new = sid(syms[a] + syms[b])
        merges.append((syms[a], syms[b]))
        touched = set()
        for wi in list(where.pop(pair, ())):
            ids = words[wi]
            f = freqs[wi]
            for p in zip(ids, ids[1:]):
                pair_count[p] -= f
            out = []
            i = 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            words[wi] = out
            for p in zip(ids, ids[1:]):
                if p != pair:
                    s = where.get(p)
                    if s is not None:
                        s.discard(wi)
            for p in zip(out, out[1:]):
                pair_count[p] += f
                where[p].add(wi)
                touched.add(p)
        pair_count.pop(pair, None)
        for p in touched:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, syms[p[0]], syms[p[1]], p))
        if log_every and len(merges) % log_every == 0:
            print(f"bpe: {len(merges)}/{n_merges} merges, {time.time() - t0:.0f}s, "
                  f"last {merges[-1]!r}", file=sys.stderr, flush=True)
    return merges


def build_tokenizer_json(merges, model_max_length=None):
    b2u = bytes_to_unicode()
    vocab = {}
    for ch in b2u.values():
        vocab[ch] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    n_bpe = len(vocab)
    added = [{"id": n_bpe + i, "content": t, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for i, t in enumerate(SPECIAL_TOKENS)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                  "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated",
             "invert": False},
            dict(byte_level)]},
        "post_processor": dict(byte_level),
        "decoder": dict(byte_level),
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }


def subsample(records, max_bytes):
    """Deterministic subsample: files ordered by path hash until max_bytes is reached."""
    recs = sorted(records, key=lambda r: hashlib.sha1(r["path"].encode()).hexdigest())
    out, total = [], 0
    for r in recs:
        if total >= max_bytes:
            break
        out.append(r["text"])
        total += len(r["text"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="tools/train/work/train.jsonl")
    ap.add_argument("--vocab", type=int, default=8192, help="total size incl. bytes and specials")
    ap.add_argument("--max-mb", type=float, default=30.0)
    ap.add_argument("--out", default="tools/train/work/tokenizer.json")
    args = ap.parse_args()
    with open(args.corpus) as f:
        records = [json.loads(line) for line in f]
    texts = subsample(records, int(args.max_mb * 1e6))
    t0 = time.time()
    counts = count_words(texts)
    print(f"bpe: {len(counts)} unique words from {sum(map(len, texts)) / 1e6:.1f} MB "
          f"in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    n_merges = args.vocab - 256 - len(SPECIAL_TOKENS)
    merges = train_bpe(counts, n_merges)
    tj = build_tokenizer_json(merges)
    with open(args.out, "w") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
    print(f"bpe: wrote {args.out} ({len(tj['model']['vocab'])} BPE + {len(SPECIAL_TOKENS)} "
          f"special tokens) in {time.time() - t0:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
