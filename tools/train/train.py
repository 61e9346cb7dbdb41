"""Trains a Qwen2-architecture code model on the tokenized corpus and exports it.

Usage: train.py --preset target --data .device-data --work tools/train/work/target \
                --export models/qwen2-code-small --time-budget-s 2700 [--resume] [--device cuda]

The learning-rate schedule runs on training progress, measured in steps or,
with --time-budget-s, in spent wall-clock time, so a time-boxed run still
anneals to its floor. Checkpoints hold model, optimizer, sampler RNG and
elapsed time; --resume continues exactly where the last checkpoint left off.
"""
import argparse
import json
import math
import os
import queue
import random
import sys
import threading
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import Sampler, TokenData  # noqa: E402
from model import Qwen2Config, Qwen2ForCausalLM, export_hf  # noqa: E402

PRESETS = {
    # name: (config kwargs, batch size, ctx, peak lr)
    # CPU pair: sized for ~1M training tokens/hour on one shared core.
    "target": (dict(hidden_size=192, intermediate_size=512, num_hidden_layers=6,
                    num_attention_heads=6, num_key_value_heads=2), 8, 256, 2e-3),
    "draft": (dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2), 8, 256, 3e-3),
    "target-gpu": (dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=8,
                        num_attention_heads=6, num_key_value_heads=2), 64, 1024, 1.5e-3),
    "draft-gpu": (dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2), 64, 1024, 3e-3),
    # Seconds-long smoke tests of the whole pipeline.
    "tiny": (dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2), 4, 64, 3e-3),
}


def lr_at(progress, peak, warmup_frac, floor=0.1):
    if progress < warmup_frac:
        return peak * max(progress / warmup_frac, 0.01)
    p = min(1.0, (progress - warmup_frac) / max(1e-9, 1 - warmup_frac))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def save_ckpt(path, model, opt, sampler, step, elapsed, tokens):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sampler": sampler.state(),
                "step": step, "elapsed": elapsed, "tokens": tokens,
                "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


def make_batches(sampler, batch, dev):
    """On cuda a thread prepares pinned batches ahead (checkpointed sampler state then
    runs a few batches ahead, so cuda resumes skip those); on cpu batches are made inline."""
    if dev.type != "cuda":
        return lambda: torch.from_numpy(sampler.batch(batch)).to(dev)
    q = queue.Queue(maxsize=4)

    def work():
        while True:
            q.put(torch.from_numpy(sampler.batch(batch)).pin_memory())

    threading.Thread(target=work, daemon=True).start()
    return lambda: q.get().to(dev, non_blocking=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=sorted(PRESETS), default="target")
    ap.add_argument("--data", default=".device-data")
    ap.add_argument("--work", default=None, help="checkpoint dir (default tools/train/work/<preset>)")
    ap.add_argument("--export", default=None, help="HF model dir to write at the end")
    ap.add_argument("--shard-mb", type=int, default=0)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="step cap (0: time budget only)")
    ap.add_argument("--time-budget-s", type=float, default=0, help="total training seconds across resumes")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--ctx", type=int, default=0)
    ap.add_argument("--lr", type=float, default=0)
    ap.add_argument("--warmup-frac", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--ckpt-every-s", type=float, default=300)
    ap.add_argument("--deadline-unix", type=float, default=0,
                    help="also stop (and anneal) by this wall-clock time, whatever startup took")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export-only", action="store_true", help="export the last checkpoint and exit")
    args = ap.parse_args()
    if args.export_only:
        args.resume = True
    elif not args.steps and not args.time_budget_s:
        ap.error("give --steps or --time-budget-s")

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    cfg_kw, batch, ctx, lr = PRESETS[args.preset]
    batch, ctx, lr = args.batch or batch, args.ctx or ctx, args.lr or lr
    data = TokenData(args.data, "train")
    special = json.load(open(os.path.join(args.data, "meta.json")))["special"]
    vocab = max(special.values()) + 1
    cfg = Qwen2Config(vocab_size=vocab, max_position_embeddings=ctx,
                      bos_token_id=special["<|endoftext|>"], eos_token_id=special["<|endoftext|>"],
                      **cfg_kw)
    model = Qwen2ForCausalLM(cfg).to(dev)
    n_params = model.num_params()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), eps=1e-8,
                            **({"fused": True} if args.device == "cuda" else {}))
    sampler = Sampler(data, ctx, args.seed)
    work = args.work or os.path.join("tools/train/work", args.preset)
    os.makedirs(work, exist_ok=True)
    ckpt = os.path.join(work, "ckpt.pt")
    step, elapsed, tokens = 0, 0.0, 0
    if args.resume and os.path.exists(ckpt):
        try:
            st = torch.load(ckpt, map_location=dev, weights_only=False)
        except TypeError:  # torch < 1.13.1 has no weights_only
            st = torch.load(ckpt, map_location=dev)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sampler.set_state(st["sampler"])
        torch.set_rng_state(st["torch_rng"])
        step, elapsed, tokens = st["step"], st["elapsed"], st["tokens"]
        print(f"[{args.preset}] resumed at step {step}, {elapsed:.0f}s, {tokens} tokens", flush=True)
    print(f"[{args.preset}] {n_params / 1e6:.2f}M params, batch {batch} x ctx {ctx}, lr {lr}, "
          f"device {args.device}, train tokens {len(data.tokens)}", flush=True)

    def progress():
        p = 0.0
        if args.steps:
            p = step / args.steps
        if args.time_budget_s:
            p = max(p, elapsed / args.time_budget_s)
        return p

    if args.export_only:
        if not os.path.exists(ckpt):
            sys.exit(f"no checkpoint at {ckpt}")
        export_hf(model.cpu().float(), args.export, os.path.join(args.data, "tokenizer.json"),
                  shard_mb=args.shard_mb)
        print(f"[{args.preset}] exported checkpoint step {step} to {args.export}", flush=True)
        return

    if args.deadline_unix:
        left = args.deadline_unix - time.time()
        budget = elapsed + max(1.0, left)
        args.time_budget_s = min(args.time_budget_s, budget) if args.time_budget_s else budget
        print(f"[{args.preset}] deadline leaves {left:.0f}s: budget {args.time_budget_s:.0f}s", flush=True)
    next_batch = make_batches(sampler, batch, dev)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if args.device == "cuda"
                else torch.autocast("cpu", enabled=False))
    model.train()
    t_last, tok_last, n_acc = time.time(), 0, 0
    loss_acc = torch.zeros((), device=dev)
    last_ckpt = time.time()
    seg_start, elapsed0 = time.time(), elapsed
    loss = torch.tensor(float("nan"))  # a resume past the budget runs no step
    while progress() < 1.0:
        cur_lr = lr_at(progress(), lr, args.warmup_frac)
        for g in opt.param_groups:
            g["lr"] = cur_lr
        xb = next_batch()
        with autocast:
            logits = model(xb[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, cfg.vocab_size),
                                                 xb[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += batch * ctx
        loss_acc += loss.detach()  # summed on the device: no sync per step
        n_acc += 1
        elapsed = elapsed0 + time.time() - seg_start
        if step % args.log_every == 0:
            now = time.time()
            tps = (tokens - tok_last) / max(1e-9, now - t_last) if tok_last else 0.0
            if not tok_last:
                tps = batch * ctx * step / max(1e-9, elapsed)
            p = progress()
            eta = (elapsed / p - elapsed) if p > 0 else 0
            avg_loss = loss_acc.item() / n_acc
            loss_acc.zero_()
            n_acc = 0
            print(f"[{args.preset}] step {step} loss {avg_loss:.4f} lr {cur_lr:.2e} "
                  f"tok/s {tps:.0f} tokens {tokens / 1e6:.2f}M elapsed {elapsed:.0f}s "
                  f"ETA {eta:.0f}s", flush=True)
            t_last, tok_last = now, tokens
        if time.time() - last_ckpt > args.ckpt_every_s:
            save_ckpt(ckpt, model, opt, sampler, step, elapsed, tokens)
            last_ckpt = time.time()
    save_ckpt(ckpt, model, opt, sampler, step, elapsed, tokens)
    summary = {"preset": args.preset, "params": n_params, "steps": step, "tokens": tokens,
               "train_seconds": round(elapsed, 1), "device": args.device,
               "device_name": (torch.cuda.get_device_name(0) if args.device == "cuda" else
                               f"cpu x{args.threads} threads"),
               "batch": batch, "ctx": ctx, "peak_lr": lr, "final_loss": round(loss.item(), 4)}
    with open(os.path.join(work, "train_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"[{args.preset}] done: {json.dumps(summary)}", flush=True)
    if args.export:
        export_hf(model.cpu().float(), args.export, os.path.join(args.data, "tokenizer.json"),
                  shard_mb=args.shard_mb)
        with open(os.path.join(args.export, "train_summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        print(f"[{args.preset}] exported to {args.export}", flush=True)


if __name__ == "__main__":
    main()
