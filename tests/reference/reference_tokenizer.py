"""Plain byte-level BPE over a tokenizer.json in the Qwen2 layout that
tools/make_random_model.py writes: special added tokens split out first, then
the Split regex (Isolated), GPT-2 byte-to-unicode mapping, lowest-rank merge
first. Used to validate generated tokenizers and as an id oracle for
`ghostd tokenize` on random models. Needs the `regex` module (python3-regex)
for \\p{L}; NFC is applied as declared.
"""
import json
import os
import sys
import unicodedata

import regex

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from make_random_model import bytes_to_unicode  # noqa: E402


class ReferenceTokenizer:
    """Immutable after construction; safe to share."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            tok = json.load(f)
        model = tok["model"]
        if model["type"] != "BPE":
            raise ValueError(f"{path}: model.type {model['type']!r}, expected 'BPE'")
        self.vocab = dict(model["vocab"])
        self.ranks = {}
        for i, m in enumerate(model["merges"]):
            a, b = m.split(" ") if isinstance(m, str) else m
            self.ranks[(a, b)] = i
        self.added = {a["content"]: a["id"] for a in tok.get("added_tokens", [])}
        self.nfc = (tok.get("normalizer") or {}).get("type") == "NFC"
        pres = tok["pre_tokenizer"]["pretokenizers"]
        self.split = regex.compile(pres[0]["pattern"]["Regex"])
        self.b2u = bytes_to_unicode()
        self.u2b = {u: b for b, u in self.b2u.items()}
        self.id_to_tok = {i: s for s, i in self.vocab.items()}
        self.id_to_tok.update({i: s for s, i in self.added.items()})

    def validate(self):
        """Structural problems as a list of strings (empty: valid)."""
        problems = []
        ids = sorted(self.id_to_tok)
        if ids != list(range(len(ids))):
            problems.append("token ids are not 0..n-1")
        for (a, b), r in self.ranks.items():
            if a not in self.vocab or b not in self.vocab or a + b not in self.vocab:
                problems.append(f"merge {r} {a!r} {b!r}: a part or the result is not in the vocabulary")
        for s, i in self.added.items():
            if self.vocab.get(s, i) != i:
                problems.append(f"added token {s!r} id {i} differs from vocab id {self.vocab[s]}")
        return problems

    def _bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            best = min(range(len(parts) - 1), key=lambda i: self.ranks.get((parts[i], parts[i + 1]), 1 << 30))
            if (parts[best], parts[best + 1]) not in self.ranks:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        return [self.vocab[p] for p in parts]

    def encode(self, text):
        out = []
        specials = sorted(self.added, key=len, reverse=True)
        pattern = regex.compile("|".join(regex.escape(s) for s in specials)) if specials else None
        pos = 0
        pieces = []
        for m in (pattern.finditer(text) if pattern else []):
            pieces.append((text[pos:m.start()], None))
            pieces.append((None, self.added[m.group()]))
            pos = m.end()
        pieces.append((text[pos:], None))
        for chunk, special in pieces:
            if special is not None:
                out.append(special)
                continue
            if self.nfc:
                chunk = unicodedata.normalize("NFC", chunk)
            for w in self.split.findall(chunk):
                out.extend(self._bpe("".join(self.b2u[b] for b in w.encode("utf-8"))))
        return out

    def decode(self, ids):
        data = bytearray()
        for i in ids:
            s = self.id_to_tok[i]
            if s in self.added:
                data += s.encode("utf-8")
            else:
                data += bytes(self.u2b[c] for c in s)
        return data.decode("utf-8", errors="replace")


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Encode stdin (or --decode ids) like `ghostd tokenize`.")
    ap.add_argument("tokenizer_json")
    ap.add_argument("--decode", action="store_true", help="read space-separated ids, print text")
    a = ap.parse_args()
    t = ReferenceTokenizer(a.tokenizer_json)
    data = sys.stdin.read()
    if a.decode:
        sys.stdout.write(t.decode([int(x) for x in data.split()]))
    else:
        print(" ".join(map(str, t.encode(data))))
