"""GLOG: the logits dump ghostd_logits writes and compare_logits.py reads.

Layout (little-endian): 4-byte magic b"GLOG", int32 n_fed, int32 vocab,
int32 tokens[n_fed] (every token fed: the prompt, then the greedy tokens),
float32 logits[n_fed][vocab] (row i: logits after consuming tokens[0..i]).
"""
import struct

import numpy as np

MAGIC = b"GLOG"


def read_glog(path):
    """Returns (tokens: list[int], logits: np.ndarray [n_fed, vocab] float32)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 12 or raw[:4] != MAGIC:
        raise ValueError(f"{path}: not a GLOG file (magic {raw[:4]!r}, expected {MAGIC!r})")
    n_fed, vocab = struct.unpack("<ii", raw[4:12])
    if n_fed <= 0 or vocab <= 0:
        raise ValueError(f"{path}: n_fed={n_fed} vocab={vocab}, expected both > 0")
    want = 12 + 4 * n_fed + 4 * n_fed * vocab
    if len(raw) != want:
        raise ValueError(f"{path}: {len(raw)} bytes, expected {want} for n_fed={n_fed} vocab={vocab}")
    tokens = np.frombuffer(raw, dtype="<i4", count=n_fed, offset=12).tolist()
    logits = np.frombuffer(raw, dtype="<f4", count=n_fed * vocab, offset=12 + 4 * n_fed).reshape(n_fed, vocab)
    return tokens, logits.astype(np.float32)


def write_glog(path, tokens, logits):
    logits = np.ascontiguousarray(logits, dtype="<f4")
    n_fed, vocab = logits.shape
    if len(tokens) != n_fed:
        raise ValueError(f"{len(tokens)} tokens but {n_fed} logits rows")
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<ii", n_fed, vocab))
        f.write(np.asarray(tokens, dtype="<i4").tobytes())
        f.write(logits.tobytes())
