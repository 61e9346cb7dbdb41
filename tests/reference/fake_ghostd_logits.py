#!/usr/bin/python3
"""Stand-in for ghostd_logits (same command line and GLOG output), computed
by the reference in float32. Lets ctest exercise run_reference.py end to end
before, or independently of, the real tool. For a GGUF --model X.gguf it reads
X-dequant, the HF directory make_random_gguf.py --dequant-out wrote."""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from glog import write_glog  # noqa: E402
from reference_model import ReferenceModel  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=1, help="accepted; the reference has no batching")
    a = ap.parse_args()
    model_dir = a.model[:-len(".gguf")] + "-dequant" if a.model.endswith(".gguf") else a.model
    m = ReferenceModel(model_dir, torch.float32)
    toks = [int(t) for t in a.tokens.split()]
    for _ in range(a.steps):
        toks.append(int(m.logits(toks)[-1].argmax()))
    write_glog(a.out, toks, m.logits(toks).numpy())
    print(f"fake ghostd_logits: fed {len(toks)} tokens")


if __name__ == "__main__":
    main()
