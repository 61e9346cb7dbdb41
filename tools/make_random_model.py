#!/usr/bin/python3
"""Generate a random-weight Hugging Face checkpoint (Llama, Qwen2, StarCoder2
or Gemma layout).

Writes config.json, model.safetensors (or N shards plus
model.safetensors.index.json), generation_config.json, a small valid
byte-level BPE tokenizer.json (Qwen2 layout) and tokenizer_config.json, so
that ghostd can load, tokenize and generate with it, and the PyTorch
reference in tests/reference can check its logits.

Weights are scaled so a random model stays numerically sane and its logits
are informative: embedding rows of norm ~3 (~1 when tied), projections with std
1/sqrt(fan_in) (attention scores and MLP outputs of order 1), norm weights
near 1, so logits have a spread of a few units and argmax depends on input.

Example:
  /usr/bin/python3 tools/make_random_model.py --arch qwen2 --out /tmp/m \
      --hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 128 \
      --vocab 400 --rope-theta 1e6 --tied --dtype f16 --seed 1
"""
import argparse
import json
import math
import os
import re
import sys
from collections import Counter

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pylib"))
from safetensors_io import write_safetensors  # noqa: E402
from byte_level import bytes_to_unicode  # noqa: E402,F401 (also used by tests/reference)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>",
                  "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# The same split in Python's re (no \p{..}): only used to train merges.
_TRAIN_SPLIT = re.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\w]?[^\W\d_]+|\d| ?[^\s\w]+[\r\n]*"
                          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
_DTYPE_NAMES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}




def train_merges(text, n_merges):
    """Plain BPE training on byte-level words; returns merges as (a, b) pairs."""
    b2u = bytes_to_unicode()
    words = Counter(tuple(b2u[b] for b in w.encode("utf-8")) for w in _TRAIN_SPLIT.findall(text))
    words = {w: c for w, c in words.items() if len(w) > 1}
    merges, made = [], set(b2u.values())
    while len(merges) < n_merges:
        pairs = Counter()
        for w, c in words.items():
            for i in range(len(w) - 1):
                if w[i] + w[i + 1] not in made:  # each merge must make a new token
                    pairs[(w[i], w[i + 1])] += c
        if not pairs:
            break
        # Most frequent pair; ties broken by the pair itself so output is deterministic.
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        joined = best[0] + best[1]
        made.add(joined)
        new_words = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            out = tuple(out)
            if len(out) > 1:
                new_words[out] = new_words.get(out, 0) + c
        words = new_words
    return merges


def training_corpus():
    # Code-like text: this file and the reference oracle, plus a few fixed lines.
    here = os.path.dirname(os.path.abspath(__file__))
    parts = ["def main():\n    return 0\n\nint main(void) { return 0; }\n" * 4]
    for p in (os.path.abspath(__file__), os.path.join(here, "..", "tests", "reference", "reference_model.py")):
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                parts.append(f.read())
    return "\n".join(parts)


def make_tokenizer(vocab_size, max_pos):
    """tokenizer.json and tokenizer_config.json dicts with exactly vocab_size ids."""
    b2u = bytes_to_unicode()
    n_merges = vocab_size - 256 - len(SPECIAL_TOKENS)
    if n_merges < 0:
        raise SystemExit(f"--vocab must be at least {256 + len(SPECIAL_TOKENS)}")
    merges = train_merges(training_corpus(), n_merges)
    if len(merges) < n_merges:
        raise SystemExit(f"corpus yields only {len(merges)} merges, {n_merges} needed; lower --vocab")
    vocab = {}
    for ch in b2u.values():
        vocab[ch] = len(vocab)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    added = []
    for s in SPECIAL_TOKENS:
        added.append({"id": len(vocab), "content": s, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
        vocab[s] = len(vocab)
    assert len(vocab) == vocab_size
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated", "invert": False},
            byte_level]},
        "post_processor": dict(byte_level),
        "decoder": dict(byte_level),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }
    tok_cfg = {
        "add_bos_token": False, "add_prefix_space": False, "bos_token": None,
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": None,
        "model_max_length": max_pos, "tokenizer_class": "Qwen2Tokenizer", "clean_up_tokenization_spaces": False,
        "errors": "replace", "split_special_tokens": False,
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added},
    }
    return tok, tok_cfg


def parse_rope_scaling(spec, max_pos):
    """none | linear:F | llama3:F[:ORIG] -> HF rope_scaling dict or None."""
    if spec == "none":
        return None
    kind, _, rest = spec.partition(":")
    fields = rest.split(":") if rest else []
    if kind == "linear" and len(fields) == 1:
        return {"rope_type": "linear", "factor": float(fields[0])}
    if kind == "llama3" and len(fields) in (1, 2):
        factor = float(fields[0])
        # Default: the original context is max_pos / factor, so that even the
        # short prompts of a test span all three frequency bands.
        orig = int(fields[1]) if len(fields) == 2 else max(int(max_pos / factor), 8)
        return {"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": orig}
    raise SystemExit(f"--rope-scaling {spec!r}: expected none, linear:F or llama3:F[:ORIG]")


def make_weights(a, gen):
    h, hd = a.hidden, a.head_dim
    nh, nkv, inter, v = a.heads, a.kv_heads, a.intermediate, a.vocab

    def normal(*shape, std):
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * std

    def norm_w(n):
        return 1.0 + normal(n, std=0.1)

    # Tied: a large embedding would make every token predict itself (x . e_x
    # dominates), so greedy decoding would just repeat; keep it small and
    # restore the logit spread through the final norm's weight instead.
    emb_std, final_scale = (1.0, 3.0) if a.tied else (3.0, 1.0)
    gemma, starcoder2 = a.arch == "gemma", a.arch == "starcoder2"
    if gemma:
        # Gemma multiplies the embeddings by sqrt(hidden) (rows of norm ~2 in the
        # residual stream) and ties the head to the unscaled rows: a larger
        # final norm restores the logit spread.
        emb_std, final_scale = 2.0 / math.sqrt(h), 12.0

    def norm(name, n, scale=1.0):
        # Gemma stores w and computes x * (1 + w); StarCoder2's LayerNorm has a bias.
        w[name + ".weight"] = scale * norm_w(n) - (1.0 if gemma else 0.0)
        if starcoder2:
            w[name + ".bias"] = normal(n, std=0.1)

    w = {"model.embed_tokens.weight": normal(v, h, std=emb_std / math.sqrt(h))}
    norm("model.norm", h, final_scale)
    qkv_bias = a.arch == "qwen2" or a.attention_bias or (starcoder2 and a.use_bias)
    for i in range(a.layers):
        p = f"model.layers.{i}."
        norm(p + "input_layernorm", h)
        norm(p + "post_attention_layernorm", h)
        w[p + "self_attn.q_proj.weight"] = normal(nh * hd, h, std=1.0 / math.sqrt(h))
        w[p + "self_attn.k_proj.weight"] = normal(nkv * hd, h, std=1.0 / math.sqrt(h))
        w[p + "self_attn.v_proj.weight"] = normal(nkv * hd, h, std=1.0 / math.sqrt(h))
        w[p + "self_attn.o_proj.weight"] = normal(h, nh * hd, std=1.0 / math.sqrt(nh * hd))
        if qkv_bias:
            w[p + "self_attn.q_proj.bias"] = normal(nh * hd, std=0.2)
            w[p + "self_attn.k_proj.bias"] = normal(nkv * hd, std=0.2)
            w[p + "self_attn.v_proj.bias"] = normal(nkv * hd, std=0.2)
        if (a.arch == "llama" and a.attention_bias) or (starcoder2 and a.use_bias):
            w[p + "self_attn.o_proj.bias"] = normal(h, std=0.2)
        if starcoder2:  # non-gated GELU MLP
            w[p + "mlp.c_fc.weight"] = normal(inter, h, std=1.0 / math.sqrt(h))
            w[p + "mlp.c_proj.weight"] = normal(h, inter, std=1.0 / math.sqrt(inter))
            if a.use_bias:
                w[p + "mlp.c_fc.bias"] = normal(inter, std=0.2)
                w[p + "mlp.c_proj.bias"] = normal(h, std=0.2)
            continue
        w[p + "mlp.gate_proj.weight"] = normal(inter, h, std=1.0 / math.sqrt(h))
        w[p + "mlp.up_proj.weight"] = normal(inter, h, std=1.0 / math.sqrt(h))
        w[p + "mlp.down_proj.weight"] = normal(h, inter, std=1.0 / math.sqrt(inter))
    if not a.tied:
        w["lm_head.weight"] = normal(v, h, std=3.0 / math.sqrt(h))
    return {k: t.to(_DTYPES[a.dtype]) for k, t in w.items()}


_HF_ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "starcoder2": "Starcoder2ForCausalLM",
            "gemma": "GemmaForCausalLM"}


def make_config(a, eos_id):
    cfg = {
        "architectures": [_HF_ARCH[a.arch]],
        "model_type": a.arch,
        "hidden_size": a.hidden, "intermediate_size": a.intermediate,
        "num_hidden_layers": a.layers, "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
        "head_dim": a.head_dim, "hidden_act": "silu", "max_position_embeddings": a.max_pos,
        "rms_norm_eps": a.rms_eps, "rope_theta": a.rope_theta,
        "rope_scaling": parse_rope_scaling(a.rope_scaling, a.max_pos),
        "tie_word_embeddings": a.tied, "vocab_size": a.vocab,
        "bos_token_id": eos_id, "eos_token_id": eos_id,
        "torch_dtype": _DTYPE_NAMES[a.dtype], "initializer_range": 0.02, "use_cache": True,
        "attention_dropout": 0.0,
    }
    if a.arch == "llama":
        cfg.update({"attention_bias": a.attention_bias, "mlp_bias": False, "pretraining_tp": 1})
    elif a.arch == "starcoder2":
        del cfg["rms_norm_eps"]
        cfg.update({"hidden_act": "gelu_pytorch_tanh", "norm_epsilon": a.rms_eps, "use_bias": a.use_bias,
                    "sliding_window": a.sliding_window or None, "residual_dropout": 0.0, "embedding_dropout": 0.0})
    elif a.arch == "gemma":
        # transformers' Gemma reads hidden_activation; hidden_act is what the released configs carry too.
        cfg.update({"hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh", "attention_bias": False})
    else:
        cfg.update({"use_sliding_window": False, "sliding_window": a.max_pos, "max_window_layers": a.layers})
    return cfg


def write_weights(out, weights, shards):
    names = sorted(weights)
    if shards <= 1:
        write_safetensors(os.path.join(out, "model.safetensors"), weights, {"format": "pt"})
        return
    # Contiguous runs of names per shard, so a layer may straddle two files.
    per = math.ceil(len(names) / shards)
    weight_map, total = {}, 0
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: weights[n] for n in names[s * per:(s + 1) * per]}
        write_safetensors(os.path.join(out, fname), part, {"format": "pt"})
        for n, t in part.items():
            weight_map[n] = fname
            total += t.numel() * t.element_size()
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def write_json(path, obj, indent=2):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", choices=sorted(_HF_ARCH), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=None, help="default: --heads (MHA)")
    ap.add_argument("--head-dim", type=int, default=None, help="default: hidden / heads")
    ap.add_argument("--intermediate", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=400)
    ap.add_argument("--tokenizer-vocab", type=int, default=None,
                    help="ids in tokenizer.json (default --vocab); smaller models padded embeddings, "
                         "as Qwen2's 151936 rows over a 151665-token tokenizer")
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--rope-scaling", default="none", help="none | linear:F | llama3:F[:ORIG]")
    ap.add_argument("--rms-eps", type=float, default=1e-6)
    tie = ap.add_mutually_exclusive_group()
    tie.add_argument("--tied", dest="tied", action="store_true")
    tie.add_argument("--untied", dest="tied", action="store_false")
    ap.set_defaults(tied=False)
    ap.add_argument("--attention-bias", action="store_true", help="llama only: bias on q/k/v/o")
    ap.add_argument("--no-bias", dest="use_bias", action="store_false",
                    help="starcoder2 only: use_bias false (no linear biases)")
    ap.add_argument("--sliding-window", type=int, default=0, help="starcoder2 only: sliding_window (0: none)")
    ap.add_argument("--dtype", choices=sorted(_DTYPES), default="f32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-pos", type=int, default=512)
    ap.add_argument("--shards", type=int, default=1)
    a = ap.parse_args(argv)
    a.kv_heads = a.kv_heads or a.heads
    a.head_dim = a.head_dim or a.hidden // a.heads
    if a.heads % a.kv_heads:
        raise SystemExit("--heads must be a multiple of --kv-heads")
    if a.head_dim % 2:
        raise SystemExit("head_dim must be even for RoPE")
    os.makedirs(a.out, exist_ok=True)
    gen = torch.Generator().manual_seed(a.seed)
    tok, tok_cfg = make_tokenizer(a.tokenizer_vocab or a.vocab, a.max_pos)
    eos_id = tok["model"]["vocab"]["<|endoftext|>"]
    write_weights(a.out, make_weights(a, gen), a.shards)
    write_json(os.path.join(a.out, "config.json"), make_config(a, eos_id))
    write_json(os.path.join(a.out, "generation_config.json"),
               {"bos_token_id": eos_id, "eos_token_id": eos_id, "do_sample": False})
    write_json(os.path.join(a.out, "tokenizer.json"), tok, indent=None)
    write_json(os.path.join(a.out, "tokenizer_config.json"), tok_cfg)


if __name__ == "__main__":
    main()
