"""Minimal safetensors reader and writer on torch alone.

Debian 12 ships no python3-safetensors, and the format is small: an 8-byte
little-endian header length, a JSON header, then the tensor bytes.
"""
import json
import struct

import torch

_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int32: "I32",
    torch.int64: "I64",
}
_TORCH = {v: k for k, v in _DTYPES.items()}
_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8}
_INT_VIEW = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _raw_bytes(t):
    t = t.detach().contiguous().cpu()
    # numpy has no bfloat16: reinterpret as an integer type of the same width.
    return t.view(_INT_VIEW[t.element_size()]).numpy().tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> torch.Tensor (dtype kept as given)."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        data = _raw_bytes(t)
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)  # keep tensor data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """Returns dict name -> torch.Tensor (copies, in the stored dtype)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        start, end = info["data_offsets"]
        buf = bytearray(raw[base + start:base + end])
        width = _SIZE[dt]
        t = torch.frombuffer(buf, dtype=_INT_VIEW[width]) if len(buf) else torch.empty(0, dtype=_INT_VIEW[width])
        out[name] = t.view(_TORCH[dt]).reshape(info["shape"])
    return out
