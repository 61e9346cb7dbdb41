#!/usr/bin/env python3
"""Writes the speculative-decoding replay sessions under tests/lsp/demo/.

Each session edits a real file of this repository (tools/train/data.py) the
way a developer does, with an inline completion after every keystroke:
  spec_rename.jsonl        rename a variable through a function (seg -> segment)
  spec_add_param.jsonl     add a parameter to a method and update its call sites
  spec_similar_block.jsonl write a method that resembles a nearby one
  spec_retype_line.jsonl   delete three lines and type them again
The document is simulated here so every position is exact.

    python3 bench/make_spec_sessions.py    # rewrites the four files
"""
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "tests", "lsp", "demo")
SOURCE = "../../../tools/train/data.py"  # relative to DEMO
URI = "file:///work/data.py"

HEAD = [
    {"send": {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"processId": None, "capabilities": {"window": {"workDoneProgress": True}}}}},
    {"expect": {"id": 1}},
    {"send": {"jsonrpc": "2.0", "method": "initialized", "params": {}}},
    {"respond": "window/workDoneProgress/create", "result": None},
    {"expect": {"method": "$/progress", "params": {"value": {"kind": "end"}}}, "timeout_ms": 120000},
    {"open": {"uri": URI, "file": SOURCE}},
]
TAIL = [
    {"send": {"jsonrpc": "2.0", "id": 2, "method": "shutdown"}},
    {"expect": {"id": 2, "result": None}},
    {"send": {"jsonrpc": "2.0", "method": "exit"}},
    {"expect_exit": 0},
]


class Doc:
    def __init__(self, text):
        self.lines = text.split("\n")
        self.steps = []

    def type(self, line, col, text):
        """Types `text` at (line, col); '\\b' deletes the character before the cursor."""
        self.steps.append({"type": {"uri": URI, "line": line, "character": col, "text": text}})
        for c in text:
            cur = self.lines[line]
            if c == "\b":
                self.lines[line] = cur[:col - 1] + cur[col:]
                col -= 1
            elif c == "\n":
                self.lines[line:line + 1] = [cur[:col], cur[col:]]
                line, col = line + 1, 0
            else:
                self.lines[line] = cur[:col] + c + cur[col:]
                col += 1

    def find(self, pattern, start=0):
        for i in range(start, len(self.lines)):
            m = re.search(pattern, self.lines[i])
            if m:
                return i, m
        raise SystemExit("pattern not found: " + pattern)


def write(name, comment, doc):
    path = os.path.join(DEMO, name)
    with open(path, "w", encoding="utf-8") as f:
        for line in comment:
            f.write("# " + line + "\n")
        for step in HEAD + doc.steps + TAIL:
            f.write(json.dumps(step) + "\n")
    print("wrote", os.path.relpath(path, ROOT), "(%d keystrokes)" % sum(
        len(s["type"]["text"]) for s in doc.steps if "type" in s))


def main():
    with open(os.path.join(DEMO, SOURCE), encoding="utf-8") as f:
        text = f.read()

    # Rename seg -> segment through _fim: at each occurrence, delete and retype.
    d = Doc(text)
    first, _ = d.find(r"def _fim\(self, seg\)")
    end, _ = d.find(r"def _document", first)
    line = first
    while line < end:
        m = re.search(r"\bseg\b", d.lines[line])
        if not m:
            line += 1
            continue
        d.steps.append({"move": {"uri": URI, "line": line, "character": m.end()}})
        d.type(line, m.end(), "\b\b\bsegment")
    write("spec_rename.jsonl", ["Speculation benchmark: rename a variable (seg -> segment) through a function,",
                                "one occurrence after the other (bench/make_spec_sessions.py)."], d)

    # Add a parameter to _window and pass it at both call sites.
    d = Doc(text)
    line, m = d.find(r"def _window\(self, code, n\)")
    d.type(line, m.end() - 1, ", head_share=0.5")
    line, m = d.find(r"self\.rng\.random\(\) < 0\.5", line)
    d.steps.append({"move": {"uri": URI, "line": line, "character": m.end()}})
    d.type(line, m.end(), "\b\b\bhead_share")
    start = 0
    for _ in range(2):
        line, m = d.find(r"self\._window\(.*\)", start)
        close = d.lines[line].index(")", m.start() + len("self._window(d.code(f)"))
        d.steps.append({"move": {"uri": URI, "line": line, "character": close}})
        d.type(line, close, ", self.p_head")
        start = line + 1
    write("spec_add_param.jsonl", ["Speculation benchmark: add a parameter to a method and update its call sites",
                                   "(bench/make_spec_sessions.py)."], d)

    # A method written after a similar one: _tail_window after _window.
    d = Doc(text)
    line, _ = d.find(r"def _fim\(self, seg\)")
    body = ("def _tail_window(self, code, n):\n"
            "        if len(code) <= n:\n"
            "            return code\n"
            "        # A quarter of the windows end at the file's tail so the model sees file endings.\n"
            "        end = len(code) if self.rng.random() < 0.25 else int(self.rng.integers(n, len(code) + 1))\n"
            "        return code[end - n:end]\n\n    ")
    d.steps.append({"move": {"uri": URI, "line": line, "character": 4}})
    d.type(line, 4, body)
    write("spec_similar_block.jsonl", ["Speculation benchmark: write a method that resembles the one above it",
                                       "(bench/make_spec_sessions.py)."], d)

    # Delete three lines of _window (backspace to the line start), type them again.
    d = Doc(text)
    line, _ = d.find(r"# Half the windows start")
    for k in range(3):
        content = d.lines[line + k]
        indent = len(content) - len(content.lstrip())
        d.steps.append({"move": {"uri": URI, "line": line + k, "character": len(content)}})
        d.type(line + k, len(content), "\b" * (len(content) - indent) + content[indent:])
    write("spec_retype_line.jsonl", ["Speculation benchmark: delete three lines and type them again",
                                     "(bench/make_spec_sessions.py)."], d)


if __name__ == "__main__":
    main()
