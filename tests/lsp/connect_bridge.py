#!/usr/bin/env python3
"""`ghostd connect` between an editor (this script, over stdio) and a TLS
daemon on loopback that restarts.

The editor initializes through the bridge (the bridge adds the token from
--token-file), opens a document, types and gets completions. Then the daemon
is killed mid-session and started again on the same port: requests sent
while it is gone are answered with an error exactly once; the bridge
reconnects by itself and replays initialize and the open documents with the
edits typed meanwhile, so the next completion succeeds without the editor
doing anything. A wrong token makes the bridge report the server's error and
exit 1. Every request is answered exactly once.

    connect_bridge.py -- GHOSTD serve --model PATH [args...]
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from daemon_process import Daemon  # tests/lsp/daemon_process.py, next to this script

TOKEN = "editor-token-0123456789abcdef"
DOC = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n"


def fail(msg):
    print(f"connect_bridge FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def ok(msg):
    print(f"ok   {msg}")



class Editor:
    """The bridge process, driven over its stdin/stdout as an editor would."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.responses = {}
        self.notes = []
        self.cv = threading.Condition()
        self.eof = False
        self.stderr = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _pump(self):
        out = self.proc.stdout
        while True:
            header = b""
            while not header.endswith(b"\r\n\r\n"):
                c = out.read(1)
                if not c:
                    with self.cv:
                        self.eof = True
                        self.cv.notify_all()
                    return
                header += c
            body = json.loads(out.read(int(re.search(rb"Content-Length: *(\d+)", header).group(1))))
            with self.cv:
                if "id" in body and "method" not in body:
                    self.responses.setdefault(body["id"], []).append(body)
                else:
                    self.notes.append(body)
                self.cv.notify_all()

    def send(self, msg):
        body = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def request(self, rid, method, params):
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})

    def notify(self, method, params):
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def wait(self, rid, timeout=60):
        with self.cv:
            if not self.cv.wait_for(lambda: rid in self.responses or self.eof, timeout) or rid not in self.responses:
                fail(f"no answer to request {rid}; bridge stderr:\n{b''.join(self.stderr).decode()[-2000:]}")
            return self.responses[rid][0]

    def complete(self, rid, uri, line, col):
        self.request(rid, "textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": col},
            "context": {"triggerKind": 1}})
        return self.wait(rid)


def main():
    argv = sys.argv[1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    ghostd = argv[0]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem"], check=True, capture_output=True)
        with open(f"{tmp}/tokens", "w") as f:
            f.write(f"team {TOKEN}\n")
        with open(f"{tmp}/editor-token", "w") as f:
            f.write(f"# the token for ghostd connect\n{TOKEN}\n")
        with open(f"{tmp}/wrong-token", "w") as f:
            f.write("wrong-token-0123456789abcdef\n")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        serve = argv + ["--listen", f"127.0.0.1:{port}", "--tls-cert", f"{tmp}/cert.pem", "--tls-key",
                        f"{tmp}/key.pem", "--token-file", f"{tmp}/tokens", "--log-level", "info"]
        daemon = Daemon(serve)
        if not daemon.ready.wait(300):
            fail("daemon did not start:\n" + "\n".join(daemon.lines[-20:]))
        bridge = [ghostd, "connect", f"tls://localhost:{port}", "--ca-file", f"{tmp}/cert.pem", "--log-level", "info"]
        ed = Editor(bridge + ["--token-file", f"{tmp}/editor-token"])
        uri = "file:///ws/m.py"
        try:
            ed.request(1, "initialize", {"capabilities": {}, "rootUri": "file:///ws"})
            r = ed.wait(1)
            if "result" not in r:
                fail(f"initialize through the bridge: {r}")
            ed.notify("initialized", {})
            ed.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                                "text": DOC}})
            r = ed.complete(2, uri, 4, 15)
            if "result" not in r:
                fail(f"completion through the bridge: {r}")
            ok("initialize and a completion through the bridge (token from --token-file)")

            # The server dies; the editor types on and asks for completions.
            daemon.stop(signal.SIGKILL)
            time.sleep(0.3)
            ed.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [
                {"range": {"start": {"line": 4, "character": 15}, "end": {"line": 4, "character": 15}},
                 "text": "\n    return a * b\n\n\ndef sub(a, b):\n"}]})
            r = ed.complete(3, uri, 9, 0)
            if "error" not in r or "not connected" not in r["error"]["message"]:
                fail(f"a request while the server is down: expected a clear error, got {r}")
            ok(f"request while the server is down: {r['error']['message']}")

            daemon = Daemon(serve)
            if not daemon.ready.wait(300):
                fail("restarted daemon did not start")
            # The bridge reconnects by itself (back-off <= 2 s) and replays.
            deadline = time.monotonic() + 20
            rid = 100
            while True:
                r = ed.complete(rid, uri, 9, 0)
                if "result" in r:
                    break
                if "not connected" not in r["error"]["message"] or time.monotonic() > deadline:
                    fail(f"after the restart: {r}")
                rid += 1
                time.sleep(0.2)
            # "document is not open" would be the answer had the bridge not replayed it.
            ok(f"reconnected and replayed the open document: completion {rid} answered after the restart")
            for k, v in ed.responses.items():
                if len(v) != 1:
                    fail(f"request {k} answered {len(v)} times")
            ok("every request answered exactly once")
            ed.request(900, "shutdown", None)
            ed.wait(900)
            ed.notify("exit", None)
            code = ed.proc.wait(10)
            if code != 0:
                fail(f"bridge exit code {code} after exit")
            ok("bridge exits 0 after exit")

            # A wrong token: the server's error reaches the editor; the bridge exits 1.
            ed = Editor(bridge + ["--token-file", f"{tmp}/wrong-token"])
            ed.request(1, "initialize", {"capabilities": {}})
            r = ed.wait(1)
            if r.get("error", {}).get("code") != -32001:
                fail(f"wrong token through the bridge: {r}")
            code = ed.proc.wait(10)
            if code != 1:
                fail(f"bridge exit code {code} after a refused token, expected 1")
            ok(f"wrong token: {r['error']['message']}; bridge exits 1")
        finally:
            if ed.proc.poll() is None:
                ed.proc.kill()
            if daemon.proc.poll() is None:
                daemon.stop(signal.SIGTERM)
    print("connect_bridge: all checks passed")


if __name__ == "__main__":
    main()
