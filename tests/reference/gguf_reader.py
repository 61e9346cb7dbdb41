"""Minimal GGUF v3 reader (F32/F16/BF16/Q8_0 and ggml's Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K
blocks) to check tools/make_random_gguf.py and to give the PyTorch reference the
values a quantized GGUF stores.

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


# ggml's block formats (ggml-common.h), decoded with numpy in float32 with the
# same rounding steps as ggml's reference: (d * sc) first, then * q, then - m.
def _f32(x):
    return x.astype(np.float32)


def _nibbles(qs):
    """[n, 16] bytes -> [n, 32]: the low nibbles, then the high ones."""
    return np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.int32)


def _fifth_bits(qh):
    """[n] u32 -> [n, 32] of 0 or 16: bit j is element j's fifth bit."""
    return (((qh[:, None].astype(np.uint64) >> np.arange(32, dtype=np.uint64)) & 1) << 4).astype(np.int32)


def _q4_0(b):
    return _f32(b["d"])[:, None] * _f32(_nibbles(b["qs"]) - 8)


def _q4_1(b):
    return _f32(b["d"])[:, None] * _f32(_nibbles(b["qs"])) + _f32(b["m"])[:, None]


def _q5_0(b):
    return _f32(b["d"])[:, None] * _f32((_nibbles(b["qs"]) | _fifth_bits(b["qh"])) - 16)


def _q5_1(b):
    return _f32(b["d"])[:, None] * _f32(_nibbles(b["qs"]) | _fifth_bits(b["qh"])) + _f32(b["m"])[:, None]


def _k_scales(s):
    """[n, 12] packed 6-bit scales/mins -> ([n, 8] scales, [n, 8] mins)."""
    s = s.astype(np.int32)
    sc = np.empty((s.shape[0], 8), np.int32)
    mn = np.empty((s.shape[0], 8), np.int32)
    sc[:, :4] = s[:, 0:4] & 63
    mn[:, :4] = s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, mn


def _k_values(b, q):
    """q: [n, 8, 32] sub-block values -> d * sc * q - dmin * m, [n, 256]."""
    sc, mn = _k_scales(b["scales"])
    d = _f32(b["d"])[:, None] * _f32(sc)
    m = _f32(b["dmin"])[:, None] * _f32(mn)
    return (d[:, :, None] * _f32(q) - m[:, :, None]).reshape(-1, 256)


def _q4_k(b):
    qs = b["qs"].reshape(-1, 4, 32).astype(np.int32)  # 4 chunks of 64 values: low nibbles, high nibbles
    q = np.stack([qs & 0xF, qs >> 4], axis=2).reshape(-1, 8, 32)
    return _k_values(b, q)


def _q5_k(b):
    qs = b["qs"].reshape(-1, 4, 32).astype(np.int32)
    qh = b["qh"].astype(np.int32)[:, None, :]  # [n, 1, 32]; sub-block j uses bit j
    bits = ((qh >> np.arange(8)[None, :, None]) & 1) << 4  # [n, 8, 32]
    q = np.stack([qs & 0xF, qs >> 4], axis=2).reshape(-1, 8, 32) + bits
    return _k_values(b, q)


def _q6_k(b):
    ql = b["ql"].reshape(-1, 2, 64).astype(np.int32)
    qh = b["qh"].reshape(-1, 2, 32).astype(np.int32)
    q = np.empty((ql.shape[0], 2, 4, 32), np.int32)  # half, quarter, element
    q[:, :, 0] = (ql[:, :, :32] & 0xF) | (((qh >> 0) & 3) << 4)
    q[:, :, 1] = (ql[:, :, 32:] & 0xF) | (((qh >> 2) & 3) << 4)
    q[:, :, 2] = (ql[:, :, :32] >> 4) | (((qh >> 4) & 3) << 4)
    q[:, :, 3] = (ql[:, :, 32:] >> 4) | (((qh >> 6) & 3) << 4)
    q = (q - 32).reshape(-1, 16, 16)  # 16 sub-blocks of 16, in value order
    d = _f32(b["d"])[:, None] * _f32(b["scales"])  # scales are already in value order
    return (d[:, :, None] * _f32(q)).reshape(-1, 256)


_BLOCKS = {  # ggml type -> (numpy block layout, values per block, decoder)
    2: ([("d", "<f2"), ("qs", "u1", (16,))], 32, _q4_0),
    3: ([("d", "<f2"), ("m", "<f2"), ("qs", "u1", (16,))], 32, _q4_1),
    6: ([("d", "<f2"), ("qh", "<u4"), ("qs", "u1", (16,))], 32, _q5_0),
    7: ([("d", "<f2"), ("m", "<f2"), ("qh", "<u4"), ("qs", "u1", (16,))], 32, _q5_1),
    12: ([("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", (12,)), ("qs", "u1", (128,))], 256, _q4_k),
    13: ([("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", (12,)), ("qh", "u1", (32,)), ("qs", "u1", (128,))],
         256, _q5_k),
    14: ([("ql", "u1", (128,)), ("qh", "u1", (64,)), ("scales", "i1", (16,)), ("d", "<f2")], 256, _q6_k),
}


def decode_blocks(gtype, raw, n):
    """n values of ggml block type gtype (2, 3, 6, 7, 12, 13, 14) from bytes -> float32 [n]."""
    layout, elems, decode = _BLOCKS[gtype]
    return decode(np.frombuffer(raw, layout, n // elems)).reshape(-1)


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
        elif gtype in _BLOCKS:
            layout, elems, decode = _BLOCKS[gtype]
            a = decode(np.frombuffer(raw, layout, n // elems, start)).reshape(-1)
        else:
            raise ValueError(f"{path}: tensor {name} has ggml type {gtype}, expected 0, 1, 2, 3, 6, 7, 8, "
                             "12, 13, 14 or 30")
        tensors[name] = torch.from_numpy(a.copy()).reshape(shape)
    return meta, tensors
