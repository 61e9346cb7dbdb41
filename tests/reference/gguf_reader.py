"""Minimal GGUF v3 reader (F32/F16/BF16/Q8_0) to check tools/make_random_gguf.py.

Only what the self-check needs: metadata as Python values and tensors
dequantized to float32 torch tensors in torch dimension order.
"""
import struct

import numpy as np
import torch

_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class _Cursor:
    def __init__(self, raw):
        self.raw, self.pos = raw, 0

    def take(self, fmt):
        vals = struct.unpack_from("<" + fmt, self.raw, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string(self):
        n = self.take("Q")
        s = self.raw[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, vtype):
        if vtype == 8:
            return self.string()
        if vtype == 9:
            elem, n = self.take("I"), self.take("Q")
            return [self.value(elem) for _ in range(n)]
        return self.take(_SCALAR[vtype])


def read_gguf(path):
    """Returns (metadata dict, dict name -> float32 torch tensor)."""
    with open(path, "rb") as f:
        raw = f.read()
    c = _Cursor(raw)
    if raw[:4] != b"GGUF":
        raise ValueError(f"{path}: bad magic {raw[:4]!r}")
    c.pos = 4
    version, n_tensors, n_kv = c.take("I"), c.take("Q"), c.take("Q")
    if version != 3:
        raise ValueError(f"{path}: version {version}, expected 3")
    meta = {}
    for _ in range(n_kv):
        key = c.string()
        meta[key] = c.value(c.take("I"))
    infos = []
    for _ in range(n_tensors):
        name = c.string()
        nd = c.take("I")
        ne = [c.take("Q") for _ in range(nd)]
        gtype, off = c.take("I"), c.take("Q")
        infos.append((name, ne, gtype, off))
    align = meta.get("general.alignment", 32)
    base = c.pos + (-c.pos) % align
    tensors = {}
    for name, ne, gtype, off in infos:
        shape = list(reversed(ne))
        n = int(np.prod(ne))
        start = base + off
        if gtype == 0:
            a = np.frombuffer(raw, "<f4", n, start).astype(np.float32)
        elif gtype == 1:
            a = np.frombuffer(raw, "<f2", n, start).astype(np.float32)
        elif gtype == 30:
            bits = np.frombuffer(raw, "<u2", n, start).astype(np.uint32) << 16
            a = bits.view(np.float32)
        elif gtype == 8:
            blk = np.frombuffer(raw, [("d", "<f2"), ("qs", "i1", (32,))], n // 32, start)
            a = (blk["d"].astype(np.float32)[:, None] * blk["qs"].astype(np.float32)).reshape(-1)
        else:
            raise ValueError(f"{path}: tensor {name} has ggml type {gtype}, expected 0, 1, 8 or 30")
        tensors[name] = torch.from_numpy(a.copy()).reshape(shape)
    return meta, tensors
