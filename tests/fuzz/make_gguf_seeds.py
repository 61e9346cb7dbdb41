#!/usr/bin/python3
"""Writes the fuzz_gguf seeds in tests/fuzz/corpus/gguf/ (deterministic).

Small well-formed GGUF files that reach the code a real download reaches, so
that the fuzzer mutates from there instead of finding the structure itself:
  seed_starcoder2.gguf  a whole starcoder2 model (LayerNorm and linear biases,
                        sliding window, ffn_down in Q4_0)
  seed_gemma.gguf       a whole gemma model (SentencePiece vocabulary keys,
                        ffn_down in Q5_0)
  seed_q4_k_m.gguf      llama tensors in a Q4_K_M mix (Q4_K, Q5_K, Q6_K):
                        the Q/K row un-permutation runs on K-quant blocks
  seed_q4_0_q5.gguf     llama tensors in Q4_0, Q4_1, Q5_0, Q5_1
Each stays under the 4096 bytes ctest passes as -max_len. Tensor shapes only
need to satisfy the parser and WeightStore (the fuzz target builds no model),
so the quantized ones are a few rows of one block width.
seed_block_types.gguf (every block type under generic names) predates this
script and is kept as it is.

  /usr/bin/python3 tests/fuzz/make_gguf_seeds.py [--out DIR]
"""
import argparse
import os
import random
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from make_random_gguf import (ARRAY, BOOL, F32, I32, STRING, U32, _kv,  # noqa: E402
                              write_gguf)

# ggml tensor types: (id, values per block, bytes per block)
TYPES = {"f32": (0, 1, 4), "f16": (1, 1, 2), "q4_0": (2, 32, 18), "q4_1": (3, 32, 20), "q5_0": (6, 32, 22),
         "q5_1": (7, 32, 24), "q8_0": (8, 32, 34), "q4_k": (12, 256, 144), "q5_k": (13, 256, 176),
         "q6_k": (14, 256, 210)}
MAX_LEN = 4096


def f16(x):
    return struct.pack("<e", x)


def block(rng, qtype):
    """One block with small finite scales and random quants, laid out as ggml's block_<type>."""
    def scale():
        return f16(rng.uniform(0.001, 0.05))

    def quants(n):
        return bytes(rng.randrange(256) for _ in range(n))

    if qtype == "q4_0":
        return scale() + quants(16)
    if qtype == "q4_1":
        return scale() + scale() + quants(16)
    if qtype == "q5_0":
        return scale() + quants(4) + quants(16)
    if qtype == "q5_1":
        return scale() + scale() + quants(4) + quants(16)
    if qtype == "q8_0":
        return scale() + quants(32)
    if qtype == "q4_k":  # d, dmin, 12 bytes of 6-bit scales and mins, 128 of nibbles
        return scale() + scale() + quants(12) + quants(128)
    if qtype == "q5_k":  # ... and 32 bytes of high bits
        return scale() + scale() + quants(12) + quants(32) + quants(128)
    if qtype == "q6_k":  # ql, qh, int8 scales, d last
        return quants(128) + quants(64) + bytes(rng.randrange(1, 64) for _ in range(16)) + scale()
    raise ValueError(qtype)


def tensor(rng, name, shape, qtype):
    """(name, shape in torch order, ggml type, bytes); shape[-1] is the contiguous row."""
    gtype, per_block, block_bytes = TYPES[qtype]
    count = 1
    for d in shape:
        count *= d
    if qtype == "f32":
        data = b"".join(struct.pack("<f", rng.uniform(-1, 1)) for _ in range(count))
    elif qtype == "f16":
        data = b"".join(f16(rng.uniform(-1, 1)) for _ in range(count))
    else:
        assert shape[-1] % per_block == 0, (name, shape, qtype)
        data = b"".join(block(rng, qtype) for _ in range(count // per_block))
        assert len(data) == count // per_block * block_bytes
    return name, list(shape), gtype, data


def arch_kv(arch, hidden, ffn, heads, kv_heads, layers, ctx=64, file_type=None):
    p = arch + "."
    kv = [_kv("general.architecture", STRING, arch), _kv("general.name", STRING, "fuzz-seed"),
          _kv(p + "context_length", U32, ctx), _kv(p + "embedding_length", U32, hidden),
          _kv(p + "block_count", U32, layers), _kv(p + "feed_forward_length", U32, ffn),
          _kv(p + "attention.head_count", U32, heads), _kv(p + "attention.head_count_kv", U32, kv_heads),
          _kv(p + "rope.freq_base", F32, 10000.0)]
    if arch == "starcoder2":
        kv.append(_kv(p + "attention.layer_norm_epsilon", F32, 1e-5))
    else:
        kv.append(_kv(p + "attention.layer_norm_rms_epsilon", F32, 1e-6))
    if file_type is not None:
        kv.append(_kv("general.file_type", U32, file_type))
    return kv


def bpe_vocab(n):
    tokens = ["<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"]
    tokens += [chr(ord("a") + i) for i in range(n - len(tokens))]
    return [_kv("tokenizer.ggml.model", STRING, "gpt2"), _kv("tokenizer.ggml.pre", STRING, "starcoder"),
            _kv("tokenizer.ggml.tokens", ARRAY, tokens, STRING),
            _kv("tokenizer.ggml.token_type", ARRAY, [3] * 4 + [1] * (n - 4), I32),
            _kv("tokenizer.ggml.merges", ARRAY, ["a b"], STRING),
            _kv("tokenizer.ggml.bos_token_id", U32, 0), _kv("tokenizer.ggml.eos_token_id", U32, 0)]


def spm_vocab(n):
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
              "<|file_separator|>", "\u2581"]
    tokens += [chr(ord("a") + i) for i in range(n - len(tokens))]
    types = [3, 3, 3, 2, 4, 4, 4, 4] + [1] * (n - 8)
    return [_kv("tokenizer.ggml.model", STRING, "llama"), _kv("tokenizer.ggml.tokens", ARRAY, tokens, STRING),
            _kv("tokenizer.ggml.scores", ARRAY, [-float(i) for i in range(n)], F32),
            _kv("tokenizer.ggml.token_type", ARRAY, types, I32),
            _kv("tokenizer.ggml.bos_token_id", U32, 2), _kv("tokenizer.ggml.eos_token_id", U32, 1),
            _kv("tokenizer.ggml.unknown_token_id", U32, 3), _kv("tokenizer.ggml.add_bos_token", BOOL, True),
            _kv("tokenizer.ggml.add_space_prefix", BOOL, False)]


def starcoder2(rng):
    h, ffn, heads, kvh, vocab = 8, 32, 2, 1, 12
    hd = h // heads
    kv = arch_kv("starcoder2", h, ffn, heads, kvh, 1) + [_kv("starcoder2.attention.sliding_window", U32, 32)]
    kv += bpe_vocab(vocab)
    t = [tensor(rng, "token_embd.weight", (vocab, h), "f16"),
         tensor(rng, "output_norm.weight", (h,), "f32"), tensor(rng, "output_norm.bias", (h,), "f32")]
    b = "blk.0."
    for norm in ("attn_norm", "ffn_norm"):
        t += [tensor(rng, b + norm + ".weight", (h,), "f32"), tensor(rng, b + norm + ".bias", (h,), "f32")]
    for name, rows in (("attn_q", heads * hd), ("attn_k", kvh * hd), ("attn_v", kvh * hd), ("attn_output", h)):
        t += [tensor(rng, b + name + ".weight", (rows, h), "f16"), tensor(rng, b + name + ".bias", (rows,), "f32")]
    t += [tensor(rng, b + "ffn_up.weight", (ffn, h), "f16"), tensor(rng, b + "ffn_up.bias", (ffn,), "f32"),
          tensor(rng, b + "ffn_down.weight", (h, ffn), "q4_0"), tensor(rng, b + "ffn_down.bias", (h,), "f32")]
    return kv, t


def gemma(rng):
    h, ffn, heads, kvh, vocab = 8, 32, 2, 1, 14
    hd = h // heads
    kv = arch_kv("gemma", h, ffn, heads, kvh, 1) + [_kv("gemma.attention.key_length", U32, hd),
                                                    _kv("gemma.attention.value_length", U32, hd)]
    kv += spm_vocab(vocab)
    b = "blk.0."
    t = [tensor(rng, "token_embd.weight", (vocab, h), "f16"), tensor(rng, "output_norm.weight", (h,), "f32"),
         tensor(rng, b + "attn_norm.weight", (h,), "f32"), tensor(rng, b + "ffn_norm.weight", (h,), "f32")]
    for name, rows in (("attn_q", heads * hd), ("attn_k", kvh * hd), ("attn_v", kvh * hd), ("attn_output", h)):
        t.append(tensor(rng, b + name + ".weight", (rows, h), "f16"))
    t += [tensor(rng, b + "ffn_gate.weight", (ffn, h), "f16"), tensor(rng, b + "ffn_up.weight", (ffn, h), "f16"),
          tensor(rng, b + "ffn_down.weight", (h, ffn), "q5_0")]
    return kv, t


def q4_k_m(rng):
    # llama-quantize's Q4_K_M: Q4_K mostly, Q6_K for attn_v, ffn_down and output.
    kv = arch_kv("llama", 256, 256, 2, 1, 1, file_type=15)
    b = "blk.0."
    t = [tensor(rng, "token_embd.weight", (2, 256), "q4_k"), tensor(rng, "output.weight", (2, 256), "q6_k"),
         tensor(rng, b + "attn_q.weight", (4, 256), "q4_k"), tensor(rng, b + "attn_k.weight", (2, 256), "q4_k"),
         tensor(rng, b + "attn_v.weight", (2, 256), "q6_k"), tensor(rng, b + "ffn_up.weight", (2, 256), "q5_k"),
         tensor(rng, b + "ffn_down.weight", (1, 256), "q6_k")]
    return kv, t


def q4_0_q5(rng):
    kv = arch_kv("llama", 32, 32, 2, 1, 1, file_type=8)  # LLAMA_FTYPE_MOSTLY_Q5_0
    b = "blk.0."
    t = [tensor(rng, "token_embd.weight", (4, 32), "q4_0"), tensor(rng, "output_norm.weight", (32,), "f32"),
         tensor(rng, b + "attn_q.weight", (4, 32), "q5_0"), tensor(rng, b + "attn_k.weight", (2, 32), "q5_1"),
         tensor(rng, b + "attn_v.weight", (2, 32), "q4_1"), tensor(rng, b + "attn_output.weight", (4, 32), "q4_0"),
         tensor(rng, b + "ffn_gate.weight", (4, 32), "q5_0"), tensor(rng, b + "ffn_up.weight", (4, 32), "q5_1"),
         tensor(rng, b + "ffn_down.weight", (4, 32), "q4_1")]
    return kv, t


SEEDS = {"seed_starcoder2.gguf": starcoder2, "seed_gemma.gguf": gemma, "seed_q4_k_m.gguf": q4_k_m,
         "seed_q4_0_q5.gguf": q4_0_q5}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "gguf"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for i, (name, make) in enumerate(SEEDS.items()):
        kv, tensors = make(random.Random(1000 + i))
        path = os.path.join(a.out, name)
        write_gguf(path, kv, tensors)
        size = os.path.getsize(path)
        if size > MAX_LEN:
            raise SystemExit(f"{name}: {size} bytes, more than the fuzzer's -max_len {MAX_LEN}")
        print(f"{path}: {size} bytes")


if __name__ == "__main__":
    main()
