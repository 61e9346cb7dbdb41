"""Training samples from the token files: plain, FIM (PSM/SPM) and repo-format.

FIM splits at token boundaries of the already tokenized file (StarCoder
splits characters; token splits keep the corpus pre-tokenized, a small
difference that ghostd's separate tokenization of prefix and suffix absorbs).
"""
import json
import os

import numpy as np


class TokenData:
    """Read-only after construction; safe to share between threads."""

    def __init__(self, data_dir, split):
        self.tokens = np.fromfile(os.path.join(data_dir, split + ".bin"), dtype=np.uint16)
        self.rows = np.load(os.path.join(data_dir, split + ".idx.npy"))
        with open(os.path.join(data_dir, "meta.json")) as f:
            meta = json.load(f)
        sp = meta["special"]
        self.eot = sp["<|endoftext|>"]
        self.fim_prefix, self.fim_middle = sp["<|fim_prefix|>"], sp["<|fim_middle|>"]
        self.fim_suffix = sp["<|fim_suffix|>"]
        self.repo_name, self.file_sep = sp["<|repo_name|>"], sp["<|file_sep|>"]
        self.pkg_tokens = meta["splits"][split]["pkg_tokens"]
        self.by_pkg = {}
        for i, r in enumerate(self.rows):
            self.by_pkg.setdefault(int(r[4]), []).append(i)
        lens = (self.rows[:, 1] - self.rows[:, 0]).astype(np.float64)
        self.file_p = lens / lens.sum()  # pick files in proportion to their length

    def code(self, i):
        r = self.rows[i]
        return self.tokens[r[0]:r[1]].astype(np.int64)

    def path(self, i):
        r = self.rows[i]
        return self.tokens[r[2]:r[3]].astype(np.int64)

    def heldout_stream(self):
        """All files' code joined by <|endoftext|>, for loss evaluation."""
        parts = []
        for i in range(len(self.rows)):
            parts.append(self.code(i))
            parts.append(np.array([self.eot], dtype=np.int64))
        return np.concatenate(parts)


class Sampler:
    """Not thread-safe (owns a numpy Generator)."""

    def __init__(self, data, ctx, seed, p_fim=0.5, p_spm=0.5, p_repo=0.3):
        self.d = data
        self.ctx = ctx
        self.rng = np.random.default_rng(seed)
        self.p_fim, self.p_spm, self.p_repo = p_fim, p_spm, p_repo
        self.buf = []
        self.buf_len = 0

    def state(self):
        return self.rng.bit_generator.state

    def set_state(self, s):
        self.rng.bit_generator.state = s
        self.buf, self.buf_len = [], 0

    def _window(self, code, n):
        if len(code) <= n:
            return code
        # Half the windows start at the file's head so the model sees file openings.
        start = 0 if self.rng.random() < 0.5 else int(self.rng.integers(0, len(code) - n + 1))
        return code[start:start + n]

    def _fim(self, seg):
        d = self.d
        if len(seg) < 3 or self.rng.random() >= self.p_fim:
            return seg
        a, b = sorted(self.rng.integers(0, len(seg) + 1, size=2))
        pre, mid, suf = seg[:a], seg[a:b], seg[b:]
        if self.rng.random() < self.p_spm:  # StarCoder SPM: suffix first, prefix+middle after
            parts = [[d.fim_prefix, d.fim_suffix], suf, [d.fim_middle], pre, mid]
        else:
            parts = [[d.fim_prefix], pre, [d.fim_suffix], suf, [d.fim_middle], mid]
        return np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])

    def _document(self):
        d, rng, n = self.d, self.rng, self.ctx
        i = int(rng.choice(len(d.rows), p=d.file_p))
        pkg = int(d.rows[i][4])
        mates = d.by_pkg[pkg]
        if rng.random() < self.p_repo and len(mates) > 1:
            k = int(rng.integers(2, min(4, len(mates)) + 1))
            files = sorted(set(int(x) for x in rng.choice(mates, size=k - 1, replace=False)) - {i})
            files = files + [i]  # the sampled file comes last: it is the one being completed
            per = max(16, n // len(files))
            parts = [np.array([d.repo_name], dtype=np.int64),
                     np.asarray(d.pkg_tokens[pkg], dtype=np.int64)]
            for j, f in enumerate(files):
                code = d.code(f)[:per] if j + 1 < len(files) else self._window(d.code(f), per)
                if j + 1 == len(files):
                    code = self._fim(code)
                parts += [np.array([d.file_sep], dtype=np.int64), d.path(f), code]
            parts.append(np.array([d.eot], dtype=np.int64))
            return np.concatenate(parts)
        seg = self._fim(self._window(d.code(i), n - 3))
        return np.concatenate([seg, np.array([d.eot], dtype=np.int64)])

    def sample(self):
        """One packed sequence of ctx + 1 tokens."""
        need = self.ctx + 1
        while self.buf_len < need:
            doc = self._document()
            self.buf.append(doc)
            self.buf_len += len(doc)
        seq = np.concatenate(self.buf)
        # Drop the remainder: a document cut at the window end is not continued.
        self.buf, self.buf_len = [], 0
        return seq[:need]

    def batch(self, b):
        return np.stack([self.sample() for _ in range(b)])
