"""Held-out loss/perplexity of exported models and the draft's greedy agreement.

Usage: eval.py --data .device-data --target models/qwen2-code-small \
               [--draft models/qwen2-code-draft] [--max-tokens 65536] --out summary.json

Loss is measured on plain left-to-right held-out text (files joined by
<|endoftext|>) in non-overlapping windows of the model's context length.
Agreement is the fraction of positions where the draft's argmax equals the
target's argmax on the same windows: the acceptance rate of greedy
speculative decoding with one-token drafts.
"""
import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import TokenData  # noqa: E402
from model import load_hf  # noqa: E402


def windows(stream, ctx, max_tokens):
    n = min(len(stream) - 1, max_tokens)
    out = []
    for s in range(0, n - ctx + 1, ctx):
        out.append(torch.from_numpy(stream[s:s + ctx + 1]))
    return out


@torch.no_grad()
def evaluate(target_dir, draft_dir, data_dir, max_tokens, device, batch=8):
    data = TokenData(data_dir, "heldout")
    stream = data.heldout_stream()
    target = load_hf(target_dir, device)
    draft = load_hf(draft_dir, device) if draft_dir else None
    ctx = target.cfg.max_position_embeddings
    if draft is not None:
        ctx = min(ctx, draft.cfg.max_position_embeddings)
    wins = windows(stream, ctx, max_tokens)
    res = {"heldout_tokens": len(wins) * ctx, "ctx": ctx}
    sums = {"target": 0.0, "draft": 0.0}
    agree, total = 0, 0
    t0 = time.time()
    for i in range(0, len(wins), batch):
        xb = torch.stack(wins[i:i + batch]).to(device)
        inp, tgt = xb[:, :-1], xb[:, 1:]
        lt = target(inp).float()
        sums["target"] += torch.nn.functional.cross_entropy(
            lt.reshape(-1, lt.shape[-1]), tgt.reshape(-1), reduction="sum").item()
        if draft is not None:
            ld = draft(inp).float()
            sums["draft"] += torch.nn.functional.cross_entropy(
                ld.reshape(-1, ld.shape[-1]), tgt.reshape(-1), reduction="sum").item()
            agree += (ld.argmax(-1) == lt.argmax(-1)).sum().item()
        total += tgt.numel()
    for name, d in (("target", target_dir), ("draft", draft_dir)):
        if d is None:
            continue
        m = target if name == "target" else draft
        loss = sums[name] / total
        res[name] = {"dir": d, "params": m.num_params(), "heldout_loss": round(loss, 4),
                     "heldout_ppl": round(math.exp(loss), 2)}
    if draft is not None:
        res["draft_greedy_agreement"] = round(agree / total, 4)
    res["eval_seconds"] = round(time.time() - t0, 1)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".device-data")
    ap.add_argument("--target", required=True)
    ap.add_argument("--draft", default=None)
    ap.add_argument("--max-tokens", type=int, default=65536)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = evaluate(args.target, args.draft, args.data, args.max_tokens, args.device)
    text = json.dumps(res, indent=2)
    print(text, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
