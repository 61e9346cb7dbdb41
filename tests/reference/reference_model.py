"""Independent PyTorch forward pass of HF LlamaForCausalLM, Qwen2ForCausalLM,
Starcoder2ForCausalLM and GemmaForCausalLM.

This is the oracle ghostd's logits are checked against. It is written from the
architecture definitions (the HF modeling files' math, not their code) and
shares nothing with ghostd: weights are read from the HF directory with the
small safetensors reader in tools/pylib, upcast from their stored dtype
(F32/F16/BF16) and the whole forward runs in one compute dtype (float64 by
default, so the oracle's own rounding is negligible next to ghostd's float32).

Usage as a library:
    from reference_model import logits
    out = logits("path/to/model", [1, 2, 3])   # [T, vocab] float32
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "pylib"))
from safetensors_io import read_safetensors  # noqa: E402

_ARCHS = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Starcoder2ForCausalLM", "GemmaForCausalLM")


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    archs = cfg.get("architectures") or []
    if not archs or archs[0] not in _ARCHS:
        raise ValueError(f"{model_dir}/config.json: architectures={archs}, expected one of {_ARCHS}")
    # Gemma's activation is hidden_activation (transformers ignores its hidden_act).
    key, want = {"Starcoder2ForCausalLM": ("hidden_act", "gelu_pytorch_tanh"),
                 "GemmaForCausalLM": ("hidden_activation", "gelu_pytorch_tanh")}.get(archs[0], ("hidden_act", "silu"))
    act = cfg.get(key) or want
    if act != want:
        raise ValueError(f"{model_dir}/config.json: {key}={act!r}, expected {want!r}")
    if archs[0] == "Starcoder2ForCausalLM" and "use_bias" not in cfg:
        raise ValueError(f"{model_dir}/config.json: use_bias missing")
    if cfg.get("use_sliding_window", False):
        raise ValueError(f"{model_dir}/config.json: use_sliding_window=true is not supported")
    return cfg


def load_weights(model_dir):
    """dict name -> tensor in its stored dtype, from one file or a sharded index."""
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(single):
        return read_safetensors(single)
    if not os.path.exists(index):
        raise FileNotFoundError(f"{model_dir}: neither model.safetensors nor model.safetensors.index.json")
    with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    out = {}
    for shard in sorted(set(weight_map.values())):
        part = read_safetensors(os.path.join(model_dir, shard))
        for name, t in part.items():
            if weight_map.get(name) == shard:
                out[name] = t
    missing = sorted(set(weight_map) - set(out))
    if missing:
        raise ValueError(f"{index}: tensors listed but not found in their shard: {missing[:5]}")
    return out


def rope_inv_freq(cfg, head_dim):
    """inv_freq for the rope variants HF calls default, linear and llama3.

    Follows transformers' _compute_default_rope_parameters,
    _compute_linear_scaling_rope_parameters and _compute_llama3_parameters
    (all three have attention_scaling 1). Newer configs put theta and scaling
    in `rope_parameters`; older ones use `rope_theta` and `rope_scaling`.
    """
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or {}
    theta = float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    if params and not scaling:
        scaling = params
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    dim = int(head_dim * cfg.get("partial_rotary_factor", 1.0))
    # HF evaluates this in float32; float64 keeps the oracle's own error below
    # ghostd's, and the two differ by ~1e-7 relative.
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    if rope_type == "default":
        return inv_freq
    factor = float(scaling["factor"])
    if rope_type == "linear":
        return inv_freq / factor
    if rope_type == "llama3":
        low = float(scaling["low_freq_factor"])
        high = float(scaling["high_freq_factor"])
        old_ctx = float(scaling["original_max_position_embeddings"])
        low_wavelen = old_ctx / low
        high_wavelen = old_ctx / high
        wavelen = 2 * math.pi / inv_freq
        # Long wavelengths are slowed down by `factor`, short ones kept, and
        # the band between interpolates smoothly.
        scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(medium, smoothed, scaled)
    raise ValueError(f"rope_scaling type {rope_type!r} is not supported (default, linear, llama3)")


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x, cos, sin):
    """x [heads, T, rot_dim]; rotate_half pairing (i with i + d/2)."""
    return x * cos + rotate_half(x) * sin


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def layer_norm(x, weight, bias, eps):
    """torch.nn.LayerNorm: biased variance over the last dimension."""
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps) * weight + bias


def gelu_tanh(x):
    """GELU, tanh approximation (transformers' gelu_pytorch_tanh), written out."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class ReferenceModel:
    """A loaded model; logits() may be called repeatedly. Not thread-safe."""

    def __init__(self, model_dir, compute_dtype=torch.float64):
        self.cfg = cfg = load_config(model_dir)
        self.dtype = compute_dtype
        self.arch = cfg["architectures"][0]
        self.hidden = cfg["hidden_size"]
        self.n_layers = cfg["num_hidden_layers"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg.get("num_key_value_heads") or self.n_heads
        self.head_dim = cfg.get("head_dim") or self.hidden // self.n_heads
        self.starcoder2 = self.arch == "Starcoder2ForCausalLM"
        self.gemma = self.arch == "GemmaForCausalLM"
        self.eps = float(cfg.get("norm_epsilon", 1e-5)) if self.starcoder2 else float(cfg.get("rms_norm_eps", 1e-6))
        self.window = int(cfg.get("sliding_window") or 0) if self.starcoder2 else 0
        self.vocab = cfg["vocab_size"]
        if self.n_heads % self.n_kv:
            raise ValueError(f"{model_dir}/config.json: num_attention_heads {self.n_heads} "
                             f"not a multiple of num_key_value_heads {self.n_kv}")
        if self.arch == "Qwen2ForCausalLM":
            self.qkv_bias, self.o_bias, self.mlp_bias = True, False, False
        elif self.starcoder2:
            b = bool(cfg["use_bias"])
            self.qkv_bias, self.o_bias, self.mlp_bias = b, b, b
        elif self.gemma:
            self.qkv_bias = self.o_bias = bool(cfg.get("attention_bias", False))
            self.mlp_bias = False
        else:
            ab = bool(cfg.get("attention_bias", False))
            self.qkv_bias, self.o_bias = ab, ab
            self.mlp_bias = bool(cfg.get("mlp_bias", False))
        raw = load_weights(model_dir)
        self.w = {k: v.to(compute_dtype) for k, v in raw.items()}
        self.stored_dtype = {str(v.dtype).replace("torch.", "") for v in raw.values()}
        self.inv_freq = rope_inv_freq(cfg, self.head_dim).to(compute_dtype)
        if "lm_head.weight" in self.w:
            self.lm_head = self.w["lm_head.weight"]
        elif cfg.get("tie_word_embeddings", self.starcoder2 or self.gemma):  # their configs default to tied
            self.lm_head = self.w["model.embed_tokens.weight"]
        else:
            raise ValueError(f"{model_dir}: lm_head.weight missing and tie_word_embeddings is false")
        self._check_shapes(model_dir)

    def _check_shapes(self, model_dir):
        h, hd, nh, nkv = self.hidden, self.head_dim, self.n_heads, self.n_kv
        inter = self.cfg["intermediate_size"]
        want = {"model.embed_tokens.weight": (self.vocab, h), "model.norm.weight": (h,)}
        norms = ["model.norm"]
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            norms += [p + "input_layernorm", p + "post_attention_layernorm"]
            want.update({
                p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                p + "self_attn.q_proj.weight": (nh * hd, h), p + "self_attn.k_proj.weight": (nkv * hd, h),
                p + "self_attn.v_proj.weight": (nkv * hd, h), p + "self_attn.o_proj.weight": (h, nh * hd)})
            if self.starcoder2:
                want.update({p + "mlp.c_fc.weight": (inter, h), p + "mlp.c_proj.weight": (h, inter)})
                if self.mlp_bias:
                    want.update({p + "mlp.c_fc.bias": (inter,), p + "mlp.c_proj.bias": (h,),
                                 p + "self_attn.o_proj.bias": (h,)})
            else:
                want.update({p + "mlp.gate_proj.weight": (inter, h), p + "mlp.up_proj.weight": (inter, h),
                             p + "mlp.down_proj.weight": (h, inter)})
            if self.qkv_bias:
                want.update({p + "self_attn.q_proj.bias": (nh * hd,), p + "self_attn.k_proj.bias": (nkv * hd,),
                             p + "self_attn.v_proj.bias": (nkv * hd,)})
        if self.starcoder2:
            want.update({n + ".bias": (h,) for n in norms})
        for name, shape in want.items():
            if name not in self.w:
                raise ValueError(f"{model_dir}: tensor {name} missing")
            if tuple(self.w[name].shape) != shape:
                raise ValueError(f"{model_dir}: tensor {name} has shape {tuple(self.w[name].shape)}, expected {shape}")

    def _linear(self, x, name, bias):
        y = x @ self.w[name + ".weight"].T
        if bias:
            y = y + self.w[name + ".bias"]
        return y

    def _attention(self, x, p, cos, sin):
        t = x.shape[0]
        hd, nh, nkv = self.head_dim, self.n_heads, self.n_kv
        q = self._linear(x, p + "q_proj", self.qkv_bias).view(t, nh, hd).transpose(0, 1)
        k = self._linear(x, p + "k_proj", self.qkv_bias).view(t, nkv, hd).transpose(0, 1)
        v = self._linear(x, p + "v_proj", self.qkv_bias).view(t, nkv, hd).transpose(0, 1)
        rot = cos.shape[-1]
        q = torch.cat((apply_rope(q[..., :rot], cos, sin), q[..., rot:]), dim=-1)
        k = torch.cat((apply_rope(k[..., :rot], cos, sin), k[..., rot:]), dim=-1)
        k, v = self._expand_kv(k, nh // nkv), self._expand_kv(v, nh // nkv)
        scores = (q @ k.transpose(1, 2)) / math.sqrt(hd)
        masked = torch.ones(t, t, dtype=torch.bool).triu(1)
        if self.window:  # sliding window: query i sees keys j with i - j < window
            masked |= torch.ones(t, t, dtype=torch.bool).tril(-self.window)
        scores = scores.masked_fill(masked, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v  # [nh, t, hd]
        out = out.transpose(0, 1).reshape(t, nh * hd)
        return self._linear(out, p + "o_proj", self.o_bias)

    @staticmethod
    def _expand_kv(t, group):
        """GQA: query head h reads kv head h // group (HF's repeat_kv)."""
        return t.repeat_interleave(group, dim=0)

    def _norm(self, x, name):
        if self.starcoder2:
            return layer_norm(x, self.w[name + ".weight"], self.w[name + ".bias"], self.eps)
        if self.gemma:  # Gemma's RMSNorm scales by (1 + w)
            return rms_norm(x, 1.0 + self.w[name + ".weight"], self.eps)
        return rms_norm(x, self.w[name + ".weight"], self.eps)

    def _mlp(self, x, p):
        if self.starcoder2:
            return self._linear(gelu_tanh(self._linear(x, p + "c_fc", self.mlp_bias)), p + "c_proj", self.mlp_bias)
        if self.gemma:
            return self._linear(gelu_tanh(self._linear(x, p + "gate_proj", False)) * self._linear(x, p + "up_proj", False),
                                p + "down_proj", False)
        gate = self._linear(x, p + "gate_proj", self.mlp_bias)
        up = self._linear(x, p + "up_proj", self.mlp_bias)
        return self._linear(torch.nn.functional.silu(gate) * up, p + "down_proj", self.mlp_bias)

    @torch.no_grad()
    def logits(self, token_ids):
        ids = torch.as_tensor(list(token_ids), dtype=torch.long)
        if ids.numel() == 0:
            raise ValueError("empty token list")
        if int(ids.min()) < 0 or int(ids.max()) >= self.vocab:
            raise ValueError(f"token id out of range [0, {self.vocab})")
        x = self.w["model.embed_tokens.weight"][ids]
        if self.gemma:
            x = x * math.sqrt(self.hidden)
        pos = torch.arange(ids.numel(), dtype=self.dtype)
        freqs = torch.outer(pos, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            h = self._norm(x, p + "input_layernorm")
            x = x + self._attention(h, p + "self_attn.", cos, sin)
            h = self._norm(x, p + "post_attention_layernorm")
            x = x + self._mlp(h, p + "mlp.")
        x = self._norm(x, "model.norm")
        return (x @ self.lm_head.T).to(torch.float32)


def logits(model_dir, token_ids, compute_dtype=torch.float64):
    """Logits [T, vocab] float32; row i is the prediction after token_ids[0..i]."""
    return ReferenceModel(model_dir, compute_dtype).logits(token_ids)


def greedy(model, prompt, steps):
    """Prompt then `steps` greedy tokens, recomputing the full prefix each step."""
    toks = list(prompt)
    for _ in range(steps):
        toks.append(int(model.logits(toks)[-1].argmax()))
    return toks


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Print reference greedy continuation and last-row logits stats.")
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True, help="space-separated token ids")
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args()
    m = ReferenceModel(a.model)
    out = greedy(m, [int(t) for t in a.tokens.split()], a.steps)
    print(" ".join(map(str, out)))
