#!/usr/bin/env python3
"""ghostd-replay: a stdio LSP harness.

Spawns a daemon, replays a session file (JSON lines), checks the expected
replies, and prints latency percentiles.

    ghostd-replay --session FILE [--show] [--metrics-log PATH [--min-reuse PCT]
                  [--one-replica-per-document [--min-replicas-used N]]] -- DAEMON [ARGS...]

Session lines (blank lines and lines starting with '#' are skipped):
  {"args": [...]}                     extra daemon arguments (first line only;
                                      "$BIN" in an argument is --bin-dir, "$SESSION_DIR"
                                      the session file's folder)
  {"send": MESSAGE}                   send one JSON-RPC message
  {"send_raw": "TEXT"}                send bytes as they are (framing included)
  {"send_body": "TEXT"}               frame TEXT with its Content-Length and send it
                                      (lone surrogates \udc80-\udcff stand for raw bytes)
  {"close_stdin": true}               end the daemon's input
  {"send_many": {"count": N, "message": M, "first_id": K}}
                                      send N copies of M with ids K, K+1, ... (a flood)
  {"expect": PATTERN, "timeout_ms": N}
                                      wait for a server message matching PATTERN
                                      (objects match as subsets; "$any" matches anything,
                                      "$absent" requires the key be absent, "$nonempty"
                                      a non-empty string or list)
  {"expect_many": {"count": N, "pattern": P, "first_id": K}, "timeout_ms": T}
                                      wait for N replies matching P, one per id K..K+N-1
  {"expect_none": PATTERN, "wait_ms": N}
  {"respond": METHOD, "result": VALUE}
                                      answer the server's request METHOD
  {"sleep_ms": N}
  {"open": {"uri": U, "text": T | "file": F, "language": L, "filler_lines": N}}
                                      didOpen; with filler_lines the document starts with
                                      N generated lines of code before the text
  {"type": {"uri": U, "line": L | "end", "character": C, "text": T | "file": F,
            "method": "inline"|"completion", "delay_ms": D, "expect_text": true}}
                                      type T one character at a time from (L, C) (or from
                                      the end of the document): a didChange then a
                                      completion request per character, as an editor does;
                                      "\b" in T is a backspace (deletes the character
                                      before the cursor on its line)
  {"move": {"uri": U, "line": L | "end", "character": C, "method": ...}}
                                      move the cursor without editing and ask for a
                                      completion there (an editor does on cursor moves)
  {"expect_exit": CODE}               wait for the daemon to exit with CODE
Files are relative to the session file. Exit status: 0 when every expectation held.
"""
import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time

DIM, RESET = "\x1b[2m", "\x1b[0m"


class Daemon:
    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.messages = queue.Queue()
        self.pending = []  # received, not yet matched
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        out = self.proc.stdout
        while True:
            headers = {}
            while True:
                line = out.readline()
                if not line:
                    self.messages.put(None)
                    return
                line = line.decode("ascii", "replace").strip()
                if not line:
                    break
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = out.read(int(headers.get("content-length", "0")))
            try:
                msg = json.loads(body)
            except ValueError:
                msg = {"$unparsable": body.decode("utf-8", "replace")}
            self.messages.put((time.monotonic(), msg))

    def send(self, msg):
        self.send_raw(frame(json.dumps(msg)))

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def wait_for(self, pred, timeout):
        """Returns (time, message) of the first message satisfying pred, or None."""
        for i, (t, m) in enumerate(self.pending):
            if pred(m):
                del self.pending[i]
                return t, m
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                item = self.messages.get(timeout=left)
            except queue.Empty:
                return None
            if item is None:
                self.messages.put(None)
                return None
            if pred(item[1]):
                return item
            self.pending.append(item)


def frame(body):
    data = body.encode("utf-8", "surrogateescape")
    return b"Content-Length: %d\r\n\r\n" % len(data) + data


def matches(pattern, value):
    if pattern == "$any":
        return True
    if pattern == "$nonempty":
        return isinstance(value, (str, list)) and len(value) > 0
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        for k, p in pattern.items():
            if p == "$absent":
                if k in value:
                    return False
            elif k not in value or not matches(p, value[k]):
                return False
        return True
    if isinstance(pattern, list):
        return isinstance(value, list) and len(pattern) == len(value) and all(
            matches(p, v) for p, v in zip(pattern, value))
    return pattern == value


def percentile(xs, q):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * len(xs) + 0.5)) - 1))]


def utf16_len(s):
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def filler(n):
    """N lines of plausible Python, each distinct."""
    if n <= 0:
        return ""
    out = []
    for i in range(n):
        k = i % 4
        if k == 0:
            out.append("def helper_%d(x, y):" % i)
        elif k == 1:
            out.append("    total = x * %d + y  # step %d" % (i % 97, i))
        elif k == 2:
            out.append("    return total - %d" % (i % 13))
        else:
            out.append("")
    return "\n".join(out) + "\n"


def summary(name, xs):
    return "%s p50 %.2f ms, p99 %.2f ms, max %.2f ms" % (
        name, percentile(xs, 0.5), percentile(xs, 0.99), max(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--session", required=True)
    ap.add_argument("--show", action="store_true", help="print each completion as ghost text")
    ap.add_argument("--timeout-ms", type=int, default=5000)
    ap.add_argument("--bin-dir", default="", help="replaces $BIN in the session's args")
    ap.add_argument("--metrics-log", help="pass --metrics-log PATH to the daemon and summarize it at the end")
    ap.add_argument("--trace", action="store_true", help="print every message from the daemon")
    ap.add_argument("--dump", help="write each keystroke / move completion as a JSON line {id, text}")
    ap.add_argument("--min-reuse", type=float, help="with --metrics-log: fail unless at least this percentage "
                    "of the served requests' prompt tokens came from the KV cache")
    ap.add_argument("--one-replica-per-document", action="store_true",
                    help="with --metrics-log: fail when a document's served requests ran on more than one replica")
    ap.add_argument("--min-replicas-used", type=int, default=0,
                    help="with --one-replica-per-document: fail unless the documents ran on at least N replicas")
    ap.add_argument("daemon", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = [x for x in a.daemon if x != "--"]
    if not cmd:
        ap.error("no daemon command given (after --)")
    session_dir = os.path.dirname(os.path.abspath(a.session))
    with open(a.session, encoding="utf-8") as f:
        steps = [json.loads(l) for l in f if l.strip() and not l.lstrip().startswith("#")]
    if steps and "args" in steps[0]:
        cmd += [x.replace("$BIN", a.bin_dir).replace("$SESSION_DIR", session_dir) for x in steps.pop(0)["args"]]
    if a.metrics_log:
        if os.path.exists(a.metrics_log):
            os.unlink(a.metrics_log)
        cmd += ["--metrics-log", a.metrics_log]
    d = Daemon(cmd)
    dump = open(a.dump, "w", encoding="utf-8") if a.dump else None
    if a.trace:
        orig = d.wait_for

        def traced(pred, timeout):
            def p(m):
                print("<- " + json.dumps(m)[:400], file=sys.stderr)
                return pred(m)
            return orig(p, timeout)
        d.wait_for = traced
    failures = []
    latencies = []
    docs = {}  # uri -> list of lines, as the daemon should have them
    versions = {}  # uri -> the last version sent
    next_id = 100000

    def read_text(spec):
        if "file" in spec:
            with open(os.path.join(session_dir, spec["file"]), encoding="utf-8", newline="") as f:
                return f.read()
        return spec.get("text", "")

    for n, step in enumerate(steps, 1):
        timeout = step.get("timeout_ms", a.timeout_ms) / 1000.0
        if "send" in step:
            d.send(step["send"])
        elif "send_raw" in step:
            d.send_raw(step["send_raw"])
        elif "send_body" in step:
            d.send_raw(frame(step["send_body"]))
        elif "close_stdin" in step:
            d.proc.stdin.close()
        elif "send_many" in step:
            s = step["send_many"]
            msg = dict(s["message"])
            chunk = []
            for i in range(s["count"]):
                msg["id"] = s.get("first_id", 1) + i
                chunk.append(frame(json.dumps(msg)))
                if len(chunk) == 256:
                    d.send_raw(b"".join(chunk))
                    chunk = []
            d.send_raw(b"".join(chunk))
        elif "expect" in step:
            got = d.wait_for(lambda m: matches(step["expect"], m), timeout)
            if got is None:
                failures.append("step %d: no message matched %s; unmatched: %s" % (
                    n, json.dumps(step["expect"]), json.dumps([m for _, m in d.pending])[:2000]))
        elif "expect_many" in step:
            s = step["expect_many"]
            first, count = s.get("first_id", 1), s["count"]
            seen = set()
            end = time.monotonic() + timeout
            while len(seen) < count and time.monotonic() < end:
                got = d.wait_for(lambda m: isinstance(m.get("id"), int) and first <= m["id"] < first + count
                                 and "method" not in m, end - time.monotonic())
                if got is None:
                    break
                if got[1]["id"] in seen:
                    failures.append("step %d: two replies to id %d" % (n, got[1]["id"]))
                elif not matches(s.get("pattern", "$any"), got[1]):
                    failures.append("step %d: reply %s does not match %s" % (
                        n, json.dumps(got[1])[:500], json.dumps(s.get("pattern"))))
                seen.add(got[1]["id"])
            if len(seen) < count:
                failures.append("step %d: %d of %d replies arrived" % (n, len(seen), count))
        elif "expect_none" in step:
            got = d.wait_for(lambda m: matches(step["expect_none"], m), step.get("wait_ms", 100) / 1000.0)
            if got is not None:
                failures.append("step %d: unexpected %s" % (n, json.dumps(got[1])))
        elif "respond" in step:
            got = d.wait_for(lambda m: m.get("method") == step["respond"] and "id" in m, timeout)
            if got is None:
                failures.append("step %d: server never sent %s" % (n, step["respond"]))
            else:
                d.send({"jsonrpc": "2.0", "id": got[1]["id"], "result": step.get("result")})
        elif "sleep_ms" in step:
            time.sleep(step["sleep_ms"] / 1000.0)
        elif "open" in step:
            o = step["open"]
            text = filler(o.get("filler_lines", 0)) + read_text(o)
            docs[o["uri"]] = text.split("\n")
            versions[o["uri"]] = o.get("version", 1)
            d.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
                "uri": o["uri"], "languageId": o.get("language", "python"), "version": o.get("version", 1),
                "text": text}}})
        elif "type" in step:
            t = step["type"]
            lines = docs.setdefault(t["uri"], [""])
            if t.get("line") == "end":
                line, ch = len(lines) - 1, utf16_len(lines[-1])
            else:
                line, ch = t["line"], t["character"]
            version = t.get("version", versions.get(t["uri"], 1) + 1)
            method = "textDocument/inlineCompletion" if t.get("method", "inline") == "inline" \
                else "textDocument/completion"
            col = None  # code-point column of the cursor in lines[line]
            for c in read_text(t):
                if c == "\r":
                    continue
                if c == "\b":
                    cur = lines[line]
                    if col is None:
                        col, u = 0, 0
                        while col < len(cur) and u < ch:
                            u += utf16_len(cur[col])
                            col += 1
                    if col == 0:
                        continue
                    w = utf16_len(cur[col - 1])
                    d.send({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
                        "textDocument": {"uri": t["uri"], "version": version},
                        "contentChanges": [{"range": {"start": {"line": line, "character": ch - w},
                                                      "end": {"line": line, "character": ch}}, "text": ""}]}})
                    version += 1
                    lines[line] = cur[:col - 1] + cur[col:]
                    ch -= w
                    col -= 1
                else:
                    d.send({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
                        "textDocument": {"uri": t["uri"], "version": version},
                        "contentChanges": [{"range": {"start": {"line": line, "character": ch},
                                                      "end": {"line": line, "character": ch}}, "text": c}]}})
                    version += 1
                    while line >= len(lines):
                        lines.append("")
                    cur = lines[line]
                    if col is None:  # map the starting UTF-16 column to a code-point column once
                        col, u = 0, 0
                        while col < len(cur) and u < ch:
                            u += utf16_len(cur[col])
                            col += 1
                    if c == "\n":
                        lines[line:line + 1] = [cur[:col], cur[col:]]
                        line, ch, col = line + 1, 0, 0
                    else:
                        lines[line] = cur[:col] + c + cur[col:]
                        ch += utf16_len(c)
                        col += 1
                next_id += 1
                rid = next_id
                sent_at = time.monotonic()
                d.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": {
                    "textDocument": {"uri": t["uri"]}, "position": {"line": line, "character": ch},
                    "context": {"triggerKind": 2}}})
                got = d.wait_for(lambda m: m.get("id") == rid and "method" not in m, timeout)
                if got is None:
                    failures.append("step %d: no reply to keystroke request %d" % (n, rid))
                    break
                latencies.append((got[0] - sent_at) * 1000.0)
                if "error" in got[1]:
                    failures.append("step %d: keystroke request %d failed: %s" % (n, rid, json.dumps(got[1])))
                    break
                items = (got[1].get("result") or {}).get("items", [])
                text = ""
                if items:
                    text = items[0].get("insertText") or items[0].get("textEdit", {}).get("newText", "")
                if t.get("expect_text") and items and not text:
                    failures.append("step %d: empty item in reply to %d" % (n, rid))
                if dump:
                    dump.write(json.dumps({"id": rid, "text": text}) + "\n")
                if a.show and text:
                    shown = text.split("\n")
                    ghost = shown[0] + ("" if len(shown) == 1 else " ⏎ +%d lines" % (len(shown) - 1))
                    print("%5d:%-3d %s%s%s%s" % (line + 1, ch, lines[line][:col], DIM, ghost, RESET))
                if t.get("delay_ms"):
                    time.sleep(t["delay_ms"] / 1000.0)
            versions[t["uri"]] = version - 1
        elif "move" in step:
            m = step["move"]
            lines = docs.setdefault(m["uri"], [""])
            line = len(lines) - 1 if m.get("line") == "end" else m["line"]
            ch = utf16_len(lines[line]) if m.get("line") == "end" else m["character"]
            next_id += 1
            rid = next_id
            sent_at = time.monotonic()
            method = "textDocument/inlineCompletion" if m.get("method", "inline") == "inline" \
                else "textDocument/completion"
            d.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": {
                "textDocument": {"uri": m["uri"]}, "position": {"line": line, "character": ch},
                "context": {"triggerKind": 2}}})
            got = d.wait_for(lambda msg: msg.get("id") == rid and "method" not in msg, timeout)
            if got is None:
                failures.append("step %d: no reply to cursor-move request %d" % (n, rid))
            else:
                latencies.append((got[0] - sent_at) * 1000.0)
                if dump:
                    items = (got[1].get("result") or {}).get("items", [])
                    text = (items[0].get("insertText") or items[0].get("textEdit", {}).get("newText", "")) \
                        if items else ""
                    dump.write(json.dumps({"id": rid, "text": text}) + "\n")
        elif "expect_exit" in step:
            try:
                code = d.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                code = None
            if code != step["expect_exit"]:
                failures.append("step %d: exit code %s, expected %s" % (n, code, step["expect_exit"]))
        else:
            failures.append("step %d: unknown step %s" % (n, json.dumps(step)))

    if d.proc.poll() is None:
        # End politely so the daemon flushes its metrics log, then insist.
        d.send({"jsonrpc": "2.0", "id": 999999999, "method": "shutdown"})
        d.send({"jsonrpc": "2.0", "method": "exit"})
        try:
            d.proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            d.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait()
    if latencies:
        print("keystroke completions: %d, %s" % (len(latencies), summary("client latency", latencies)))
    if a.metrics_log and os.path.exists(a.metrics_log):
        recs = []
        all_recs = []
        with open(a.metrics_log, encoding="utf-8") as f:
            for l in f:
                r = json.loads(l)
                all_recs.append(r)
                if r.get("type", "completion") == "completion" and "overhead_ms" in r:
                    recs.append(r)
        ok = [r for r in recs if r.get("outcome") == "ok" or r.get("outcome") == "expired"]
        if recs:
            print("server overhead (outside the engine): %d requests, %s" % (
                len(recs), summary("", [r["overhead_ms"] for r in recs])))
        if ok:
            print("engine time: %s; time to first token: %s" % (
                summary("", [r["total_ms"] for r in ok]), summary("", [r["ttft_ms"] for r in ok])))
            prompt = sum(r.get("prompt_tokens", 0) for r in ok)
            reused = sum(r.get("reused_tokens", 0) for r in ok)
            if prompt:
                print("prompt tokens served from cache: %.1f%%" % (100.0 * reused / prompt))
                pre = [r.get("prompt_tokens", 0) - r.get("reused_tokens", 0) for r in ok]
                print("prefill tokens per request: p50 %d, p99 %d, mean %.1f" % (
                    percentile(pre, 0.5), percentile(pre, 0.99), sum(pre) / len(pre)))
            if a.min_reuse is not None and (not prompt or 100.0 * reused / prompt < a.min_reuse):
                failures.append("prompt tokens served from cache: %.1f%%, expected >= %.1f%%" % (
                    100.0 * reused / prompt if prompt else 0.0, a.min_reuse))
        elif a.min_reuse is not None:
            failures.append("--min-reuse: no request was served")
        if a.one_replica_per_document:
            by_doc = {}
            for r in recs:
                if r.get("replica") is not None:
                    by_doc.setdefault(r["document"], set()).add(r["replica"])
            for doc, reps in sorted(by_doc.items()):
                print("document %s: replica(s) %s" % (doc, ",".join(str(x) for x in sorted(reps))))
                if len(reps) != 1:
                    failures.append("document %s ran on replicas %s" % (doc, sorted(reps)))
            if not by_doc:
                failures.append("no metrics line names a replica")
            used = set().union(*by_doc.values()) if by_doc else set()
            if len(used) < a.min_replicas_used:
                failures.append("documents ran on %d replica(s), expected >= %d" % (len(used), a.min_replicas_used))
            summaries = [r for r in all_recs if r.get("type") == "summary"]
            if summaries:
                print("last summary, per replica: %s" % json.dumps(summaries[-1].get("replicas")))
    elif a.min_reuse is not None or a.one_replica_per_document:
        failures.append("--min-reuse and --one-replica-per-document need --metrics-log and its file")
    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    print("%s: %s" % (os.path.basename(a.session), "ok" if not failures else "%d failure(s)" % len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
