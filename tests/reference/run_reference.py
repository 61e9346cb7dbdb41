#!/usr/bin/python3
"""ctest driver: random model -> ghostd_logits -> compare with the reference.

  run_reference.py --list
  run_reference.py --variant NAME --ghostd-logits PATH --work DIR

Each variant generates a tiny random-weight checkpoint into DIR (from a fixed
seed, so a failure reproduces), runs `ghostd_logits --model DIR/model
--tokens "..." --steps 8 --out DIR/ghostd.glog [--batch B]`, and checks the
file with compare_logits. Exit status: 0 pass, 1 mismatch or ghostd failure,
77 skipped (no torch).
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
STEPS = 8
SKIP = 77

_SMALL = ["--hidden", "64", "--layers", "2", "--heads", "4", "--intermediate", "160", "--vocab", "384"]

# name -> (make_random_model args, prompt length, extra ghostd_logits args, gguf type or None[,
#          {"env": {...} for ghostd_logits, "atol": .., "rtol": .. for the comparison}])
VARIANTS = {
    "llama_gqa_untied_f32": (
        ["--arch", "llama", *_SMALL, "--kv-heads", "2", "--untied", "--dtype", "f32", "--seed", "1"], 24, [], None),
    "llama_gqa_untied_f32_batch4": (
        ["--arch", "llama", *_SMALL, "--kv-heads", "2", "--untied", "--dtype", "f32", "--seed", "1"], 24,
        ["--batch", "4"], None),
    "llama_tied_bf16_llama3": (
        ["--arch", "llama", "--hidden", "128", "--layers", "2", "--heads", "4", "--kv-heads", "1",
         "--intermediate", "256", "--vocab", "512", "--tied", "--dtype", "bf16", "--rope-theta", "500000",
         "--rope-scaling", "llama3:8", "--max-pos", "256", "--seed", "2"], 40, [], None),
    "qwen2_bias_tied_f16": (
        ["--arch", "qwen2", "--hidden", "96", "--layers", "3", "--heads", "6", "--kv-heads", "2",
         "--intermediate", "192", "--vocab", "448", "--tied", "--dtype", "f16", "--rope-theta", "1000000",
         "--seed", "3"], 32, [], None),
    "llama_linear_sharded": (
        ["--arch", "llama", *_SMALL, "--layers", "3", "--kv-heads", "2", "--untied", "--dtype", "f32",
         "--rope-scaling", "linear:4", "--shards", "2", "--seed", "4"], 28, [], None),
    "qwen2_mha_untied_bf16": (
        ["--arch", "qwen2", *_SMALL, "--kv-heads", "4", "--untied", "--dtype", "bf16",
         "--rope-theta", "1000000", "--seed", "5"], 20, [], None),
    # GGUF: llama's Q/K rows permuted as llama.cpp does, tokenizer in tokenizer.ggml.*.
    # Q8_0 in floats (GHOSTD_CPU_BLOCK32=float).
    "gguf_llama_gqa_untied_q8_0": (
        ["--arch", "llama", *_SMALL, "--kv-heads", "2", "--untied", "--dtype", "f32", "--seed", "6"], 24,
        [], "q8_0", {"env": {"GHOSTD_CPU_BLOCK32": "float"}}),
    # The same in integers (GHOSTD_CPU_BLOCK32=int8, the default:
    # x rounded to 8 bits per 32 values, as llama.cpp does for Q8_0): measured
    # max |d| 0.273 on logits up to about 8 (one near tie, reference gap
    # 0.046, flips its top token), where a wrong scale or block
    # layout errs by the logits' own size. Hidden 64 and MLP 160 (5 blocks)
    # take the kernels' one-block step.
    "gguf_llama_gqa_untied_q8_0_int8": (
        ["--arch", "llama", *_SMALL, "--kv-heads", "2", "--untied", "--dtype", "f32", "--seed", "6"], 24,
        [], "q8_0", {"env": {"GHOSTD_CPU_BLOCK32": "int8"}, "atol": 0.5, "rtol": 0.0}),
    "gguf_qwen2_bias_tied_f16": (
        ["--arch", "qwen2", *_SMALL, "--kv-heads", "2", "--tied", "--dtype", "f32",
         "--rope-theta", "1000000", "--seed", "7"], 24, [], "f16"),
    # Q4_K_M mix (Q4_K, Q6_K for attn_v/ffn_down/output) from make_random_gguf's own
    # quantizer; llama's Q/K rows permuted before quantization, as llama.cpp does.
    "gguf_llama_q4_k_m": (
        ["--arch", "llama", "--hidden", "256", "--layers", "2", "--heads", "4", "--kv-heads", "2",
         "--intermediate", "512", "--vocab", "384", "--untied", "--dtype", "f32", "--seed", "8"], 24, [], "q4_k_m",
        {"env": {"GHOSTD_CPU_KQUANT": "float", "GHOSTD_CPU_BLOCK32": "float"}}),
    # The same with Q4_K and Q6_K multiplied in integers (the default, GHOSTD_CPU_KQUANT=int8: x
    # rounded to 8 bits per 256 values, as ggml's Q8_K): a wider band, measured
    # at |d| <= 0.38 on logits up to 2.5 on this model, that still fails a wrong
    # scale or block layout (errors of the logits' own size).
    "gguf_llama_q4_k_m_int8": (
        ["--arch", "llama", "--hidden", "256", "--layers", "2", "--heads", "4", "--kv-heads", "2",
         "--intermediate", "512", "--vocab", "384", "--untied", "--dtype", "f32", "--seed", "8"], 24, [], "q4_k_m",
        {"env": {"GHOSTD_CPU_KQUANT": "int8"}, "atol": 0.5, "rtol": 0.0}),
    # StarCoder2: LayerNorm with bias, GELU MLP with biases, GQA, sliding window 8
    # (the 24-token prompt and the decode steps attend past it).
    "starcoder2_window_f32": (
        ["--arch", "starcoder2", *_SMALL, "--kv-heads", "2", "--untied", "--dtype", "f32",
         "--sliding-window", "8", "--rope-theta", "100000", "--rms-eps", "1e-5", "--seed", "9"], 24, [], None),
    "starcoder2_nobias_tied_bf16": (
        ["--arch", "starcoder2", *_SMALL, "--kv-heads", "1", "--tied", "--no-bias", "--dtype", "bf16",
         "--seed", "10"], 20, [], None),
    # Gemma: (1 + w) RMSNorm, GeGLU, embeddings times sqrt(hidden), tied, MQA and a
    # head_dim (24) that is not hidden / heads.
    "gemma_mqa_headdim_f16": (
        ["--arch", "gemma", *_SMALL, "--kv-heads", "1", "--head-dim", "24", "--tied", "--dtype", "f16",
         "--seed", "11"], 24, [], None),
    "gemma_mqa_headdim_f16_batch4": (
        ["--arch", "gemma", *_SMALL, "--kv-heads", "1", "--head-dim", "24", "--tied", "--dtype", "f16",
         "--seed", "11"], 24, ["--batch", "4"], None),
    "gguf_starcoder2_window_q8_0": (
        ["--arch", "starcoder2", *_SMALL, "--kv-heads", "2", "--untied", "--dtype", "f32",
         "--sliding-window", "8", "--seed", "12"], 24, [], "q8_0", {"env": {"GHOSTD_CPU_BLOCK32": "float"}}),
    "gguf_gemma_tied_f16": (
        ["--arch", "gemma", *_SMALL, "--kv-heads", "2", "--head-dim", "32", "--tied", "--dtype", "f32",
         "--seed", "13"], 24, [], "f16"),
    # Tensor parallelism over CPU ranks (ghostd_logits --tensor-parallel): heads,
    # KV heads, MLP columns and vocabulary split, one all-reduce after O and
    # down, the logits gathered. Hidden 256, GQA 4:2: TP 2 splits the KV
    # heads, TP 4 replicates them; Q8_0 and row-parallel biases split too.
    "qwen2_h256_tp2": (
        ["--arch", "qwen2", "--hidden", "256", "--layers", "2", "--heads", "4", "--kv-heads", "2",
         "--intermediate", "512", "--vocab", "384", "--tied", "--dtype", "bf16", "--seed", "14"], 24,
        ["--tensor-parallel", "2"], None),
    "llama_h256_tp4_batch4": (
        ["--arch", "llama", "--hidden", "256", "--layers", "2", "--heads", "4", "--kv-heads", "2",
         "--intermediate", "512", "--vocab", "384", "--untied", "--dtype", "f32", "--seed", "15"], 24,
        ["--tensor-parallel", "4", "--batch", "4"], None),
    "starcoder2_window_f32_tp2": (
        ["--arch", "starcoder2", *_SMALL, "--kv-heads", "2", "--untied", "--dtype", "f32",
         "--sliding-window", "8", "--rope-theta", "100000", "--rms-eps", "1e-5", "--seed", "9"], 24,
        ["--tensor-parallel", "2"], None),
    "gemma_mqa_headdim_f16_tp4": (
        ["--arch", "gemma", *_SMALL, "--kv-heads", "1", "--head-dim", "24", "--tied", "--dtype", "f16",
         "--seed", "11"], 24, ["--tensor-parallel", "4"], None),
    "gguf_llama_q8_0_tp2": (
        ["--arch", "llama", "--hidden", "256", "--layers", "2", "--heads", "4", "--kv-heads", "2",
         "--intermediate", "512", "--vocab", "384", "--untied", "--dtype", "f32", "--seed", "16"], 24,
        ["--tensor-parallel", "2"], "q8_0", {"env": {"GHOSTD_CPU_BLOCK32": "float"}}),
    # The same in integers: measured max |d| 0.261 on logits up to about 10,
    # every top token the reference's.
    "gguf_llama_q8_0_tp2_int8": (
        ["--arch", "llama", "--hidden", "256", "--layers", "2", "--heads", "4", "--kv-heads", "2",
         "--intermediate", "512", "--vocab", "384", "--untied", "--dtype", "f32", "--seed", "16"], 24,
        ["--tensor-parallel", "2"], "q8_0", {"env": {"GHOSTD_CPU_BLOCK32": "int8"}, "atol": 0.5, "rtol": 0.0}),
    # A file llama.cpp's llama-quantize wrote, one ggml block type per kind of
    # tensor (tests/data/quant/README.md); the reference gets its values
    # decoded by gguf_reader.py.
    "gguf_qwen2_mixed_blocks": (None, 24, [], "file:tests/data/quant/tiny-qwen2-mixed.gguf",
                                {"env": {"GHOSTD_CPU_KQUANT": "float", "GHOSTD_CPU_BLOCK32": "float"}}),
    # The same in integers (the default, K-quants and the 32-value Q4_0, Q4_1,
    # Q5_0, Q5_1 blocks): measured max |d| 0.902 on logits up to about 70
    # (0.754 with the 32-value blocks in floats), every row's top token the
    # reference's; a wrong scale or layout errs by several units.
    "gguf_qwen2_mixed_blocks_int8": (None, 24, [], "file:tests/data/quant/tiny-qwen2-mixed.gguf",
                                     {"env": {"GHOSTD_CPU_KQUANT": "int8", "GHOSTD_CPU_BLOCK32": "int8"},
                                      "atol": 1.25, "rtol": 0.0}),
}

# GGUF tensor names -> Hugging Face names, for files not made by make_random_gguf.
_GGUF_LAYER = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
               "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
               "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
               "ffn_down": "mlp.down_proj"}


def hf_dir_from_gguf(gguf_path, out):
    """Writes a Qwen2 GGUF's values, decoded by gguf_reader, as an F32 HF directory."""
    sys.path.insert(0, os.path.join(ROOT, "tools", "pylib"))
    from gguf_reader import read_gguf
    from safetensors_io import write_safetensors
    meta, tensors = read_gguf(gguf_path)
    arch = meta["general.architecture"]
    if arch != "qwen2":
        raise ValueError(f"{gguf_path}: architecture {arch}; only qwen2 (no Q/K permutation) is handled here")
    # The decoders must reproduce ggml's own dequantized values (the .f32
    # files next to the test file), or the oracle proves nothing.
    import numpy as np
    for ref in sorted(f for f in os.listdir(os.path.dirname(gguf_path)) if f.endswith(".f32")):
        want = np.fromfile(os.path.join(os.path.dirname(gguf_path), ref), "<f4")
        got = tensors[ref[:-len(".f32")] + ".weight"].numpy().reshape(-1)[:want.size]
        if not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
            raise ValueError(f"gguf_reader decodes {ref[:-4]} differently from ggml's reference")
    hf = {}
    for name, t in tensors.items():
        parts = name.split(".")
        if parts[0] == "blk":
            hf[f"model.layers.{parts[1]}.{_GGUF_LAYER[parts[2]]}.{parts[3]}"] = t
        else:
            hf[{"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}[parts[0]]
               + "." + parts[1]] = t
    os.makedirs(out)
    write_safetensors(os.path.join(out, "model.safetensors"), {k: v.contiguous() for k, v in hf.items()},
                      {"format": "pt"})
    cfg = {
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_size": meta[f"{arch}.embedding_length"],
        "num_hidden_layers": meta[f"{arch}.block_count"],
        "num_attention_heads": meta[f"{arch}.attention.head_count"],
        "num_key_value_heads": meta[f"{arch}.attention.head_count_kv"],
        "intermediate_size": meta[f"{arch}.feed_forward_length"],
        "rms_norm_eps": meta[f"{arch}.attention.layer_norm_rms_epsilon"],
        "rope_theta": meta[f"{arch}.rope.freq_base"],
        "max_position_embeddings": meta[f"{arch}.context_length"],
        "vocab_size": hf["model.embed_tokens.weight"].shape[0],
        "tie_word_embeddings": "lm_head.weight" not in hf,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return cfg["vocab_size"]


def run_variant(name, ghostd_logits, work):
    import numpy as np
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import compare_logits
    import make_random_model

    gen_args, prompt_len, extra, gguf_type, *more = VARIANTS[name]
    opts = more[0] if more else {}
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    hf = os.path.join(work, "model")
    t0 = time.time()
    if gguf_type and gguf_type.startswith("file:"):
        model_arg = os.path.join(ROOT, gguf_type[len("file:"):])
        ref_dir = os.path.join(work, "dequant")
        vocab = hf_dir_from_gguf(model_arg, ref_dir)
        # Ordinary ids only: starcoder's specials are the first few ids.
        rng = np.random.default_rng(sum(map(ord, name)))
        prompt = rng.integers(100, vocab, size=prompt_len).tolist()
        gguf_type = "ggml_blocks"
    else:
        make_random_model.main([*gen_args, "--out", hf])
        model_arg, ref_dir = hf, hf
        vocab = int(gen_args[gen_args.index("--vocab") + 1])
        # Ordinary ids only (the last 9 are special tokens), from a per-variant seed.
        rng = np.random.default_rng(sum(map(ord, name)))
        prompt = rng.integers(0, vocab - len(make_random_model.SPECIAL_TOKENS), size=prompt_len).tolist()
    if gguf_type and gguf_type != "ggml_blocks":
        import make_random_gguf
        model_arg = os.path.join(work, f"model-{gguf_type}.gguf")
        # The reference reads the weights exactly as the GGUF stores them.
        ref_dir = model_arg[:-len(".gguf")] + "-dequant"
        make_random_gguf.main(["--hf", hf, "--out", model_arg, "--type", gguf_type, "--dequant-out", ref_dir])
    out = os.path.join(work, "ghostd.glog")
    cmd = [ghostd_logits, "--model", model_arg, "--tokens", " ".join(map(str, prompt)),
           "--steps", str(STEPS), "--out", out, *extra]
    print(f"variant {name}: model generated in {time.time() - t0:.1f}s\n$ {shlex.join(cmd)}", flush=True)
    t0 = time.time()
    env = dict(os.environ, **opts.get("env", {}))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300, env=env)
    print(proc.stdout, end="")
    if proc.returncode != 0:
        print(f"FAIL: ghostd_logits exited with status {proc.returncode}", file=sys.stderr)
        return 1
    print(f"ghostd_logits took {time.time() - t0:.1f}s", flush=True)
    cmp_args = ["--model", ref_dir, "--glog", out, "--steps", str(STEPS), "--expect-tokens", " ".join(map(str, prompt))]
    if gguf_type:
        cmp_args += ["--weights", gguf_type]
    if "atol" in opts:
        cmp_args += ["--atol", str(opts["atol"]), "--rtol", str(opts["rtol"])]
    return compare_logits.main(cmp_args)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--list", action="store_true", help="print the variant names, one a line")
    ap.add_argument("--variant", choices=sorted(VARIANTS))
    ap.add_argument("--ghostd-logits", help="path to the ghostd_logits executable")
    ap.add_argument("--work", help="scratch directory for this variant (recreated)")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(VARIANTS))
        return 0
    if not (a.variant and a.ghostd_logits and a.work):
        ap.error("--variant, --ghostd-logits and --work are required")
    try:
        import torch
        torch.set_num_threads(1)  # tiny models; leave the other core to ghostd
    except ImportError:
        print(f"SKIP: {sys.executable} cannot import torch (install python3-torch)")
        return SKIP
    return run_variant(a.variant, a.ghostd_logits, a.work)


if __name__ == "__main__":
    sys.exit(main())
