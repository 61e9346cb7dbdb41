#!/usr/bin/python3
"""Self-check of the reference comparison, without ghostd.

Writes GLOG files from the reference itself, computed in float32 with
incremental greedy decoding (a stand-in for a correct ghostd), and from
deliberately wrong variants that stand in for typical engine bugs. The
honest file must pass compare_logits; every wrong one must fail. This proves
the tolerance is loose enough for float32 rounding and tight enough to catch
rope, pairing, greedy and single-logit errors.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "pylib"))
import compare_logits  # noqa: E402
import make_random_model  # noqa: E402
from glog import read_glog, write_glog  # noqa: E402
from reference_model import ReferenceModel  # noqa: E402
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

STEPS = 8


def glog_from(model, prompt, steps, force_second_at=None):
    """Greedy run of `model` in its compute dtype; optionally pick the runner-up once."""
    toks = list(prompt)
    for s in range(steps):
        row = model.logits(toks)[-1]
        top = row.topk(2)
        toks.append(int(top.indices[1] if s == force_second_at else top.indices[0]))
    return toks, model.logits(toks).numpy()


def variant_dir(src, dst, edit_config=None, edit_weights=None):
    shutil.copytree(src, dst)
    if edit_config:
        path = os.path.join(dst, "config.json")
        with open(path) as f:
            cfg = json.load(f)
        edit_config(cfg)
        with open(path, "w") as f:
            json.dump(cfg, f)
    if edit_weights:
        path = os.path.join(dst, "model.safetensors")
        w = read_safetensors(path)
        edit_weights(w, json.load(open(os.path.join(dst, "config.json"))))
        write_safetensors(path, w)
    return dst


def interleave_rows(w, cfg):
    """Row permutation that makes rotate_half pairing act like (2i, 2i+1) pairing."""
    hd = cfg["head_dim"]
    for name in list(w):
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            t = w[name]
            n = t.shape[0] // hd
            w[name] = t.reshape(n, hd // 2, 2, -1).transpose(1, 2).reshape(t.shape).contiguous()


def interleaved_rope(x, inv_freq, pos):
    """ggml's NORM rope: pairs (2i, 2i+1) rotate by pos * inv_freq[i]. x [T, heads, d]."""
    ang = pos[:, None, None] * inv_freq[None, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * ang.cos() - b * ang.sin()
    out[..., 1::2] = a * ang.sin() + b * ang.cos()
    return out


def check_gguf(base, work):
    """The GGUF writer: read back, un-permute, and prove the permutation's meaning."""
    import make_random_gguf
    from gguf_reader import read_gguf
    from reference_model import load_weights, rope_inv_freq, apply_rope
    problems = []
    path, deq_dir = os.path.join(work, "model-q8_0.gguf"), os.path.join(work, "model-q8_0-dequant")
    make_random_gguf.main(["--hf", base, "--out", path, "--type", "q8_0", "--dequant-out", deq_dir])
    meta, tensors = read_gguf(path)
    deq = load_weights(deq_dir)
    orig = load_weights(base)
    cfg = json.load(open(os.path.join(base, "config.json")))
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    n = cfg["vocab_size"]
    if len(meta["tokenizer.ggml.tokens"]) != n or meta["tokenizer.ggml.token_type"].count(3) != 9:
        problems.append("tokenizer.ggml.tokens/token_type do not match the vocabulary")
    q = make_random_gguf.llama_unpermute(tensors["blk.0.attn_q.weight"], nh)
    k = make_random_gguf.llama_unpermute(tensors["blk.0.attn_k.weight"], nkv)
    if not (torch.equal(q, deq["model.layers.0.self_attn.q_proj.weight"])
            and torch.equal(k, deq["model.layers.0.self_attn.k_proj.weight"])):
        problems.append("GGUF attn_q/attn_k do not read back as the dequantized HF weights")
    q8_err = (q - orig["model.layers.0.self_attn.q_proj.weight"].float()).abs().max().item()
    # llama3 scaling travels as rope_freqs.weight divisors of the default inv_freq.
    default = rope_inv_freq(dict(cfg, rope_scaling=None), hd)
    want = rope_inv_freq(cfg, hd)
    got = default / tensors["rope_freqs.weight"].double()
    if not torch.allclose(got, want, rtol=1e-6):
        problems.append(f"rope_freqs.weight gives inv_freq {got.tolist()}, expected {want.tolist()}")
    # Scores with HF rotate_half rope on the HF weights equal scores with ggml's
    # interleaved rope on the permuted GGUF weights.
    x = torch.randn(6, cfg["hidden_size"], dtype=torch.float64)
    pos = torch.arange(6, dtype=torch.float64)
    emb = torch.cat([torch.outer(pos, want)] * 2, dim=-1)
    qw, kw = deq["model.layers.0.self_attn.q_proj.weight"].double(), deq["model.layers.0.self_attn.k_proj.weight"].double()
    hq = apply_rope((x @ qw.T).view(6, nh, hd).transpose(0, 1), emb.cos(), emb.sin())
    hk = apply_rope((x @ kw.T).view(6, nkv, hd).transpose(0, 1), emb.cos(), emb.sin())
    pq = tensors["blk.0.attn_q.weight"].double()
    pk = tensors["blk.0.attn_k.weight"].double()
    gq = interleaved_rope((x @ pq.T).view(6, nh, hd), want, pos).transpose(0, 1)
    gk = interleaved_rope((x @ pk.T).view(6, nkv, hd), want, pos).transpose(0, 1)
    g = nh // nkv
    s_hf = hq @ hk.repeat_interleave(g, 0).transpose(1, 2)
    s_gg = gq @ gk.repeat_interleave(g, 0).transpose(1, 2)
    if not torch.allclose(s_hf, s_gg, atol=1e-9):
        problems.append(f"permuted GGUF q/k with interleaved rope give scores off by {(s_hf - s_gg).abs().max():.3g}")
    print(f"[{'ok' if not problems else 'UNEXPECTED'}] GGUF q8_0 writer: read back exactly, rope_freqs and "
          f"Q/K permutation consistent (q8_0 weight error {q8_err:.3g})")
    for p in problems:
        print("      " + p)
    return not problems


def check_tokenizer(base):
    """The generated tokenizer.json is consistent and round-trips text exactly."""
    try:
        from reference_tokenizer import ReferenceTokenizer
    except ImportError:
        print("[skip] tokenizer check: no python3-regex")
        return True
    tok = ReferenceTokenizer(os.path.join(base, "tokenizer.json"))
    problems = tok.validate()
    texts = ["def main():\n    return self.model(x)  # h\u00e9llo 123\n",
             "<|fim_prefix|>int x = 42;<|fim_suffix|>\n<|fim_middle|>", "\u65e5\u672c \U0001f642\r\n\t\tend"]
    n_ids = 0
    for t in texts:
        ids = tok.encode(t)
        n_ids += len(ids)
        if tok.decode(ids) != t:
            problems.append(f"round trip of {t!r} gives {tok.decode(ids)!r}")
    print(f"[{'ok' if not problems else 'UNEXPECTED'}] tokenizer.json: {len(tok.id_to_tok)} ids, "
          f"{len(tok.ranks)} merges, {sum(map(len, texts))} chars -> {n_ids} ids round-trip")
    for p in problems[:10]:
        print("      " + p)
    return not problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", help="scratch directory (default: a temporary one)")
    a = ap.parse_args(argv)
    work = a.work or tempfile.mkdtemp(prefix="ghostd_ref_self_")
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    base = os.path.join(work, "model")
    make_random_model.main(["--arch", "llama", "--out", base, "--hidden", "64", "--layers", "2",
                            "--heads", "4", "--kv-heads", "2", "--intermediate", "128", "--vocab", "320",
                            "--rope-theta", "500000", "--rope-scaling", "llama3:8", "--max-pos", "256",
                            "--tied", "--dtype", "bf16", "--seed", "7"])
    rng = np.random.default_rng(3)
    prompt = rng.integers(0, 320, size=24).tolist()
    ref64 = ReferenceModel(base)
    ref32 = ReferenceModel(base, torch.float32)

    cases = []  # (name, tokens, logits, should_pass)
    toks, logits = glog_from(ref32, prompt, STEPS)
    cases.append(("honest float32 run", toks, logits, True))
    noisy = logits.copy()
    noisy[5, 17] += 1e-2
    cases.append(("one prompt logit off by 1e-2", toks, noisy, False))
    noisy = logits.copy()
    noisy[-1] *= 1.01
    cases.append(("last decode row scaled by 1.01", toks, noisy, False))
    # Runner-up at the step whose top-2 gap is widest, so it is no near-tie.
    gaps = [float(np.diff(np.sort(logits[i])[-2:])[0]) for i in range(len(prompt) - 1, len(toks) - 1)]
    step = int(np.argmax(gaps))
    t2, l2 = glog_from(ref32, prompt, STEPS, force_second_at=step)
    cases.append((f"runner-up token picked at decode step {step}", t2, l2, False))
    wrong = {
        "rope_scaling ignored": dict(edit_config=lambda c: c.update(rope_scaling=None)),
        "rope_theta 10000 instead of 500000": dict(edit_config=lambda c: c.update(rope_theta=10000.0)),
        "interleaved rope pairing": dict(edit_weights=interleave_rows),
        "rms_norm_eps 1e-2": dict(edit_config=lambda c: c.update(rms_norm_eps=1e-2)),
    }
    for i, (name, kw) in enumerate(wrong.items()):
        bad = ReferenceModel(variant_dir(base, os.path.join(work, f"wrong{i}"), **kw), torch.float32)
        t, lg = glog_from(bad, prompt, STEPS)
        cases.append((name, t, lg, False))

    class RoundRobinGqa(ReferenceModel):
        @staticmethod
        def _expand_kv(t, group):
            return t.repeat(group, 1, 1)  # query head h reads kv head h % n_kv: wrong
    t, lg = glog_from(RoundRobinGqa(base, torch.float32), prompt, STEPS)
    cases.append(("GQA query heads mapped round-robin", t, lg, False))

    ok = True
    atol, rtol = compare_logits.TOLERANCES["bf16"]
    for i, (name, t, lg, should_pass) in enumerate(cases):
        path = os.path.join(work, f"case{i}.glog")
        write_glog(path, t, lg)
        rt, rl = read_glog(path)
        assert rt == list(t) and np.array_equal(rl, lg), "GLOG round trip"
        lines = []
        failures = compare_logits.compare(ref64.logits(rt).numpy(), rt, rl, STEPS, atol, rtol, out=lines.append)
        passed = not failures
        verdict = "ok" if passed == should_pass else "UNEXPECTED"
        ok &= passed == should_pass
        print(f"[{verdict}] {name}: {'pass' if passed else 'fail'} (expected {'pass' if should_pass else 'fail'})"
              f" -- {lines[-1]}")
        if failures:
            print(f"      first failure: {failures[0]}")
        if passed != should_pass:
            print("\n".join(lines))
    ok &= check_gguf(base, work)
    ok &= check_tokenizer(base)
    # The command-line entry point on the honest file, end to end.
    rc = compare_logits.main(["--model", base, "--glog", os.path.join(work, "case0.glog"), "--steps", str(STEPS),
                              "--expect-tokens", " ".join(map(str, prompt))])
    ok &= rc == 0
    print("self-check", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
