#!/usr/bin/python3
"""Convert an HF checkpoint (typically from make_random_model.py) to GGUF v3.

Writes llama.cpp's tensor names and metadata for the `llama`, `qwen2`,
`starcoder2` (norm and linear biases, c_fc/c_proj as ffn_up/ffn_down) and
`gemma` (norm weights stored as 1 + w, as llama.cpp's converter does)
architectures, tensors in F32, F16, BF16, Q8_0 or the Q4_K_M mix (Q6_K for
attn_v, ffn_down and output, Q4_K for the rest, Q8_0 for rows that are not
whole 256-value blocks, as llama-quantize falls back; 1-D tensors such as norms
and biases stay F32, as llama.cpp keeps them), the tokenizer as
tokenizer.ggml.* (BPE "gpt2" model, pre "qwen2"), and for llama the Q/K row
permutation llama.cpp applies so its interleaved-pair rope equals HF's
rotate_half rope.

--dequant-out DIR also writes an HF directory holding exactly the weights the
GGUF stores, dequantized to F32 and un-permuted, so the PyTorch reference can
compute the logits the GGUF should give.

Example:
  /usr/bin/python3 tools/make_random_gguf.py --hf /tmp/m --out /tmp/m.gguf --type q8_0 --dequant-out /tmp/m-q8
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pylib"))
sys.path.insert(0, os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                                 "reference")))
from safetensors_io import write_safetensors  # noqa: E402

ALIGNMENT = 32
# gguf metadata value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
# ggml tensor types and llama.cpp file types
GGML = {"f32": 0, "f16": 1, "q8_0": 8, "bf16": 30, "q4_k": 12, "q6_k": 14}
FILE_TYPE = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32, "q4_k_m": 15}
TYPES = ["f32", "f16", "bf16", "q8_0", "q4_k_m"]  # what --type takes
TOKEN_NORMAL, TOKEN_CONTROL = 1, 3
QK8_0 = 32


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(vtype, v):
    if vtype == STRING:
        return _str(v)
    if vtype == BOOL:
        return struct.pack("<?", bool(v))
    fmt = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", U64: "Q", I64: "q", F64: "d"}[vtype]
    return struct.pack("<" + fmt, v)


def _kv(key, vtype, v, elem=None):
    out = _str(key) + struct.pack("<I", vtype)
    if vtype == ARRAY:
        out += struct.pack("<IQ", elem, len(v)) + b"".join(_value(elem, x) for x in v)
    else:
        out += _value(vtype, v)
    return out


def llama_permute(w, n_head):
    """llama.cpp's convert permutation: rotate_half pairs (i, i+d/2) become (2i, 2i+1)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama_unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def quantize_q8_0(w):
    """Rows of float32 -> (bytes, dequantized float32) in ggml's block_q8_0 layout."""
    x = np.ascontiguousarray(w, dtype=np.float32).reshape(-1, QK8_0)
    amax = np.abs(x).max(axis=1)
    d = amax / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0.0).astype(np.float32)
    xs = x * inv[:, None]
    # ggml rounds with roundf (halves away from zero); numpy's round is half-to-even.
    q = (np.sign(xs) * np.floor(np.abs(xs) + 0.5)).astype(np.int8)
    d16 = d.astype(np.float16)
    blocks = np.empty(x.shape[0], dtype=[("d", "<f2"), ("qs", "i1", (QK8_0,))])
    blocks["d"] = d16
    blocks["qs"] = q
    deq = d16.astype(np.float32)[:, None] * q.astype(np.float32)
    return blocks.tobytes(), deq.reshape(w.shape)


def _round(x):
    return np.floor(x + 0.5)


def quantize_q4_k(w):
    """Rows (a multiple of 256 wide) -> ggml block_q4_K bytes. A plain min/max fit per
    32-value sub-block (llama-quantize searches harder; any valid blocks do here)."""
    x = np.ascontiguousarray(w, dtype=np.float32).reshape(-1, 8, 32)
    lo = np.minimum(x.min(axis=2), 0)
    scale = (x.max(axis=2) - lo) / 15
    mins = -lo
    d16 = (scale.max(axis=1) / 63).astype(np.float16)
    dmin16 = (mins.max(axis=1) / 63).astype(np.float16)
    d, dmin = d16.astype(np.float32)[:, None], dmin16.astype(np.float32)[:, None]
    sc = np.clip(_round(np.divide(scale, d, out=np.zeros_like(scale), where=d > 0)), 0, 63).astype(np.int32)
    m = np.clip(_round(np.divide(mins, dmin, out=np.zeros_like(mins), where=dmin > 0)), 0, 63).astype(np.int32)
    eff_d = (d * sc)[:, :, None]
    eff_m = (dmin * m)[:, :, None]
    q = np.clip(_round(np.divide(x + eff_m, eff_d, out=np.zeros_like(x), where=eff_d > 0)), 0, 15).astype(np.int32)
    scales = np.zeros((x.shape[0], 12), np.int32)
    scales[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = m[:, 0:4] | ((m[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:8] & 0xF) | ((m[:, 4:8] & 0xF) << 4)
    q = q.reshape(-1, 4, 2, 32)  # chunk of 64: low-nibble sub-block, high-nibble sub-block
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128)
    blocks = np.empty(x.shape[0], dtype=[("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", (12,)), ("qs", "u1", (128,))])
    blocks["d"], blocks["dmin"], blocks["scales"], blocks["qs"] = d16, dmin16, scales, qs
    return blocks.tobytes()


def quantize_q6_k(w):
    """Rows (a multiple of 256 wide) -> ggml block_q6_K bytes (max-abs fit per 16 values)."""
    x = np.ascontiguousarray(w, dtype=np.float32).reshape(-1, 16, 16)
    s = np.abs(x).max(axis=2) / 31
    d16 = (s.max(axis=1) / 127).astype(np.float16)
    d = d16.astype(np.float32)[:, None]
    sc = np.clip(_round(np.divide(s, d, out=np.zeros_like(s), where=d > 0)), 0, 127).astype(np.int32)
    eff = (d * sc)[:, :, None]
    q = (np.clip(_round(np.divide(x, eff, out=np.zeros_like(x), where=eff > 0)), -32, 31) + 32).astype(np.int32)
    y = q.reshape(-1, 2, 4, 32)  # half, quarter, element
    ql = np.concatenate([(y[:, :, 0] & 0xF) | ((y[:, :, 2] & 0xF) << 4),
                         (y[:, :, 1] & 0xF) | ((y[:, :, 3] & 0xF) << 4)], axis=2).reshape(-1, 128)
    qh = ((y[:, :, 0] >> 4) | ((y[:, :, 1] >> 4) << 2) | ((y[:, :, 2] >> 4) << 4) |
          ((y[:, :, 3] >> 4) << 6)).reshape(-1, 64)
    blocks = np.empty(x.shape[0], dtype=[("ql", "u1", (128,)), ("qh", "u1", (64,)), ("scales", "i1", (16,)),
                                         ("d", "<f2")])
    blocks["ql"], blocks["qh"], blocks["scales"], blocks["d"] = ql, qh, sc, d16
    return blocks.tobytes()


def encode_tensor(t, qtype, gname=""):
    """torch tensor -> (ggml type, bytes, dequantized float32 tensor)."""
    if t.dim() == 2 and qtype == "q4_k_m":
        if t.shape[-1] % 256:
            qtype = "q8_0"  # llama-quantize's fallback for rows that are not whole K blocks
        else:
            from gguf_reader import decode_blocks
            six = any(k in gname for k in ("attn_v", "ffn_down")) or gname == "output.weight"
            a = t.to(torch.float32).numpy()
            gtype = GGML["q6_k"] if six else GGML["q4_k"]
            data = quantize_q6_k(a) if six else quantize_q4_k(a)
            return gtype, data, torch.from_numpy(decode_blocks(gtype, data, a.size).reshape(a.shape).copy())
    if t.dim() == 1 or qtype == "f32":
        a = t.to(torch.float32)
        return GGML["f32"], a.numpy().astype("<f4").tobytes(), a
    if qtype == "f16":
        a = t.to(torch.float16)
        return GGML["f16"], a.numpy().astype("<f2").tobytes(), a.to(torch.float32)
    if qtype == "bf16":
        a = t.to(torch.bfloat16)
        return GGML["bf16"], a.view(torch.int16).numpy().astype("<i2").tobytes(), a.to(torch.float32)
    if t.shape[-1] % QK8_0:
        raise SystemExit(f"q8_0 needs rows that are a multiple of {QK8_0}, got shape {tuple(t.shape)}")
    data, deq = quantize_q8_0(t.to(torch.float32).numpy())
    return GGML["q8_0"], data, torch.from_numpy(deq)


def load_hf(hf):
    from reference_model import load_config, load_weights
    return load_config(hf), load_weights(hf)


def rope_factors_llama3(cfg, head_dim):
    """llama.cpp's rope_freqs.weight for llama3 scaling: divisor per frequency."""
    s = cfg["rope_scaling"]
    theta = float(cfg.get("rope_theta", 10000.0))
    factor, low, high = float(s["factor"]), float(s["low_freq_factor"]), float(s["high_freq_factor"])
    old = float(s["original_max_position_embeddings"])
    out = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * theta ** (i / head_dim)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return torch.tensor(out, dtype=torch.float32)


def convert(hf, qtype):
    """Returns (metadata bytes list, [(name, hf_name or None, torch tensor)], arch, cfg, tokenizer bits)."""
    cfg, w = load_hf(hf)
    arch = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Starcoder2ForCausalLM": "starcoder2",
            "GemmaForCausalLM": "gemma"}[cfg["architectures"][0]]
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    tensors = []  # (gguf name, hf name, tensor as stored in GGUF before encoding, permute heads or 0)

    def add(gname, hname, perm_heads=0):
        if hname not in w:
            return
        t = w[hname]
        if perm_heads:
            t = llama_permute(t, perm_heads)
        tensors.append((gname, hname, t, perm_heads))

    def add_norm(gname, hname):
        if arch == "gemma":  # llama.cpp stores Gemma's norm weights as 1 + w
            tensors.append((gname + ".weight", hname + ".weight", w[hname + ".weight"].to(torch.float32) + 1, "+1"))
        else:
            add(gname + ".weight", hname + ".weight")
        add(gname + ".bias", hname + ".bias")

    add("token_embd.weight", "model.embed_tokens.weight")
    for i in range(cfg["num_hidden_layers"]):
        p, g = f"model.layers.{i}.", f"blk.{i}."
        perm_q, perm_k = (n_head, n_kv) if arch == "llama" else (0, 0)
        add_norm(g + "attn_norm", p + "input_layernorm")
        for proj, gn, ph in (("q", "attn_q", perm_q), ("k", "attn_k", perm_k), ("v", "attn_v", 0),
                             ("o", "attn_output", 0)):
            add(g + gn + ".weight", p + f"self_attn.{proj}_proj.weight", ph)
            add(g + gn + ".bias", p + f"self_attn.{proj}_proj.bias", ph)
        add_norm(g + "ffn_norm", p + "post_attention_layernorm")
        add(g + "ffn_gate.weight", p + "mlp.gate_proj.weight")
        for gn, hn in (("ffn_up", "up_proj"), ("ffn_down", "down_proj")) if arch != "starcoder2" else \
                (("ffn_up", "c_fc"), ("ffn_down", "c_proj")):
            add(g + gn + ".weight", p + f"mlp.{hn}.weight")
            add(g + gn + ".bias", p + f"mlp.{hn}.bias")
    add_norm("output_norm", "model.norm")
    add("output.weight", "lm_head.weight")

    scaling = cfg.get("rope_scaling") or {}
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "llama3":
        tensors.append(("rope_freqs.weight", None, rope_factors_llama3(cfg, head_dim), 0))

    with open(os.path.join(hf, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    id_to_tok = {i: s for s, i in tok["model"]["vocab"].items()}
    control = set()
    for a in tok.get("added_tokens", []):
        id_to_tok[a["id"]] = a["content"]
        if a.get("special"):
            control.add(a["id"])
    vocab = cfg["vocab_size"]
    tokens = [id_to_tok.get(i, f"[PAD{i}]") for i in range(vocab)]
    types = [TOKEN_CONTROL if i in control else TOKEN_NORMAL for i in range(vocab)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    with open(os.path.join(hf, "generation_config.json")) as f:
        gen = json.load(f)

    kv = [
        _kv("general.architecture", STRING, arch),
        _kv("general.name", STRING, os.path.basename(os.path.normpath(hf))),
        _kv("general.file_type", U32, FILE_TYPE[qtype]),
        _kv("general.alignment", U32, ALIGNMENT),
        _kv(f"{arch}.vocab_size", U32, vocab),
        _kv(f"{arch}.context_length", U32, cfg["max_position_embeddings"]),
        _kv(f"{arch}.embedding_length", U32, cfg["hidden_size"]),
        _kv(f"{arch}.block_count", U32, cfg["num_hidden_layers"]),
        _kv(f"{arch}.feed_forward_length", U32, cfg["intermediate_size"]),
        _kv(f"{arch}.attention.head_count", U32, n_head),
        _kv(f"{arch}.attention.head_count_kv", U32, n_kv),
        _kv(f"{arch}.attention.key_length", U32, head_dim),
        _kv(f"{arch}.attention.value_length", U32, head_dim),
        _kv(f"{arch}.attention.layer_norm_epsilon", F32, float(cfg.get("norm_epsilon", 1e-5)))
        if arch == "starcoder2" else
        _kv(f"{arch}.attention.layer_norm_rms_epsilon", F32, float(cfg.get("rms_norm_eps", 1e-6))),
        _kv(f"{arch}.rope.freq_base", F32, float(cfg.get("rope_theta", 10000.0))),
        _kv(f"{arch}.rope.dimension_count", U32, head_dim),
    ]
    if arch == "starcoder2" and cfg.get("sliding_window"):
        kv.append(_kv(f"{arch}.attention.sliding_window", U32, int(cfg["sliding_window"])))
    if rope_type == "linear":
        kv += [_kv(f"{arch}.rope.scaling.type", STRING, "linear"),
               _kv(f"{arch}.rope.scaling.factor", F32, float(scaling["factor"]))]
    elif rope_type not in ("default", "llama3"):
        raise SystemExit(f"{hf}: rope_scaling {rope_type!r} not supported by this converter")
    kv += [
        _kv("tokenizer.ggml.model", STRING, "gpt2"),
        _kv("tokenizer.ggml.pre", STRING, "qwen2"),
        _kv("tokenizer.ggml.tokens", ARRAY, tokens, STRING),
        _kv("tokenizer.ggml.token_type", ARRAY, types, I32),
        _kv("tokenizer.ggml.merges", ARRAY, merges, STRING),
        _kv("tokenizer.ggml.bos_token_id", U32, int(gen["bos_token_id"])),
        _kv("tokenizer.ggml.eos_token_id", U32, int(gen["eos_token_id"])),
        _kv("tokenizer.ggml.padding_token_id", U32, int(gen["eos_token_id"])),
        _kv("tokenizer.ggml.add_bos_token", BOOL, False),
    ]
    return kv, tensors, cfg


def write_gguf(path, kv, encoded):
    """encoded: [(name, shape (torch order), ggml type, bytes)]."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(encoded), len(kv)) + b"".join(kv)
    offset = 0
    infos, blobs = [], []
    for name, shape, gtype, data in encoded:
        ne = list(reversed(shape))  # ggml lists the innermost (contiguous) dimension first
        infos.append(_str(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
                     + struct.pack("<IQ", gtype, offset))
        pad = (-len(data)) % ALIGNMENT
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    head += b"".join(infos)
    head += b"\0" * ((-len(head)) % ALIGNMENT)
    with open(path, "wb") as f:
        f.write(head)
        for b in blobs:
            f.write(b)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hf", required=True, help="HF model directory")
    ap.add_argument("--out", required=True, help="GGUF file to write")
    ap.add_argument("--type", choices=TYPES, default="f32", help="type of the 2-D weights")
    ap.add_argument("--dequant-out", help="also write the stored weights, dequantized to F32, as an HF directory")
    a = ap.parse_args(argv)
    kv, tensors, cfg = convert(a.hf, a.type)
    encoded, dequant = [], {}
    for gname, hname, t, perm in tensors:
        gtype, data, deq = encode_tensor(t, a.type, gname)
        encoded.append((gname, list(t.shape), gtype, data))
        if hname is not None:
            if perm == "+1":  # Gemma norm: back to HF's w (y - 1 is exact in float32 for y >= 0.5)
                dequant[hname] = deq - 1
            else:
                dequant[hname] = llama_unpermute(deq, perm) if perm else deq
    write_gguf(a.out, kv, encoded)
    if a.dequant_out:
        if os.path.exists(a.dequant_out):
            shutil.rmtree(a.dequant_out)
        os.makedirs(a.dequant_out)
        for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(a.hf, f), a.dequant_out)
        write_safetensors(os.path.join(a.dequant_out, "model.safetensors"),
                          {k: v.contiguous() for k, v in dequant.items()}, {"format": "pt"})


if __name__ == "__main__":
    main()
