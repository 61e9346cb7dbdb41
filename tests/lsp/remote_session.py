#!/usr/bin/env python3
"""A shared daemon against bad and hostile remote clients (TLS, tokens, limits).

Starts `ghostd serve --listen 127.0.0.1:0` with a self-signed certificate, a
token file naming two tenants, a model allowlist, short timeouts and small
per-session limits, then drives it over TLS:

  wrong token, no token, a completion before initialize, a plain LSP client on
  the TLS port, TLS garbage, an old TLS version, slowloris (before and after
  the handshake), repeated failures slowed down, 1,000 connections opened and
  dropped, /etc/passwd and an unknown name as the model, the open-document,
  document-byte and in-flight limits, the idle timeout, and tenant isolation
  in the prefix cache (metrics log: reused_tokens 0 across tenants, > 0 within
  one).

Each case must be refused with a clear error, and after each a good session
still gets its completion (the daemon keeps serving). At the end the daemon
holds no more file descriptors than it did before the hostile clients, and
SIGTERM ends it with exit code 0.

    remote_session.py -- GHOSTD serve --model PATH [args...]
"""
import argparse
import asyncio
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from daemon_process import Daemon  # tests/lsp/daemon_process.py, next to this script

warnings.filterwarnings("ignore", category=DeprecationWarning)  # offering TLS 1.1 on purpose

TOKENS = {"alice": "alice-token-0123456789abcdef", "bob": "bob-token-0123456789abcdef00"}
UNAUTHORIZED = -32001
HANDSHAKE_MS = 1500
IDLE_S = 2
# Long enough to fill several 16-token KV blocks.
DOC = "".join(f"def function_{i}(value):\n    return value * {i} + {i * 7}\n\n" for i in range(12))


def fail(msg):
    print(f"remote_session FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def ok(msg):
    print(f"ok   {msg}")



def frame(msg):
    body = json.dumps(msg).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Client:
    """One LSP connection over TLS (or plain TCP)."""

    def __init__(self, port, tls_ctx):
        self.port = port
        self.tls_ctx = tls_ctx
        self.messages = []
        self.responses = {}
        self.closed = asyncio.Event()
        self.arrived = asyncio.Event()

    async def connect(self, local_addr=None):
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=self.tls_ctx, server_hostname="localhost" if self.tls_ctx else None,
            local_addr=local_addr)
        self.pump = asyncio.create_task(self._pump())
        return self

    async def _pump(self):
        try:
            while True:
                header = await self.reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"Content-Length: *(\d+)", header).group(1))
                body = json.loads(await self.reader.readexactly(length))
                self.messages.append(body)
                if "id" in body and "method" not in body:
                    self.responses.setdefault(body["id"], []).append(body)
                self.arrived.set()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass
        self.closed.set()
        self.arrived.set()

    def send(self, msg):
        self.writer.write(frame(msg))

    def request(self, rid, method, params):
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})

    def notify(self, method, params):
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    async def response(self, rid, timeout=30):
        deadline = time.monotonic() + timeout
        while rid not in self.responses:
            if self.closed.is_set():
                raise ConnectionError(f"closed before the answer to {rid}")
            self.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to {rid} in {timeout} s")
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                pass
        return self.responses[rid][0]

    async def initialize(self, token=None, model=None, rid=1):
        opts = {}
        if token is not None:
            opts["token"] = token
        if model is not None:
            opts["model"] = model
        self.request(rid, "initialize", {"capabilities": {}, "rootUri": "file:///ws", "initializationOptions": opts})
        return await self.response(rid)

    def open(self, uri, text):
        self.notify("textDocument/didOpen",
                    {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}})

    def completion_msg(self, rid, uri, text):
        lines = text.split("\n")
        return {"jsonrpc": "2.0", "id": rid, "method": "textDocument/inlineCompletion",
                "params": {"textDocument": {"uri": uri},
                           "position": {"line": len(lines) - 1, "character": len(lines[-1])},
                           "context": {"triggerKind": 1}}}

    async def complete(self, rid, uri, text):
        self.send(self.completion_msg(rid, uri, text))
        return await self.response(rid, 60)

    async def wait_closed(self, timeout):
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def close(self):
        self.writer.transport.abort()


def expect_error(resp, code, pattern, what):
    err = resp.get("error")
    if not err or err["code"] != code or not re.search(pattern, err["message"]):
        fail(f"{what}: expected error {code} matching {pattern!r}, got {resp}")
    ok(f"{what}: {err['message']}")


async def good_session(port, ctx, tenant="alice", uri="file:///ws/good.py", text=DOC):
    """An editor that works: the daemon is still serving."""
    c = await Client(port, ctx).connect()
    r = await c.initialize(TOKENS[tenant])
    if "result" not in r:
        fail(f"good session ({tenant}): initialize failed: {r}")
    c.notify("initialized", {})
    c.open(uri, text)
    r = await c.complete(2, uri, text)
    if "result" not in r:
        fail(f"good session ({tenant}): completion failed: {r}")
    c.close()
    return r


async def run(args, daemon, tmp):
    port = daemon.port
    ctx = ssl.create_default_context(cafile=os.path.join(tmp, "cert.pem"))

    # A good session first: the model is loaded and this is the baseline.
    await good_session(port, ctx)
    ok("an authenticated TLS session gets its completion")
    await asyncio.sleep(0.3)
    fds_before = daemon.fds()

    # Wrong token, no token: an error reply naming the cause, then the close.
    c = await Client(port, ctx).connect()
    expect_error(await c.initialize("not-a-token-at-all-000"), UNAUTHORIZED, "authentication failed", "wrong token")
    if not await c.wait_closed(5):
        fail("wrong token: the connection stayed open")
    c = await Client(port, ctx).connect()
    expect_error(await c.initialize(None), UNAUTHORIZED, "token is missing", "no token")
    if not await c.wait_closed(5):
        fail("no token: the connection stayed open")

    # Repeated failures from one address are slowed down: after 2 failures
    # the third attempt waits >= 500 ms before it is even checked.
    c = await Client(port, ctx).connect()
    t0 = time.monotonic()
    expect_error(await c.initialize("still-not-a-token-0000"), UNAUTHORIZED, "authentication failed", "third wrong token")
    waited = time.monotonic() - t0
    if waited < 0.45:
        fail(f"the third failure from one address was answered in {waited:.3f} s: not slowed down")
    ok(f"repeated failures slowed down: third attempt answered after {waited:.2f} s")
    await good_session(port, ctx)  # a success clears the address's failures

    # Anything but initialize first.
    c = await Client(port, ctx).connect()
    c.send(c.completion_msg(5, "file:///ws/x.py", "x"))
    expect_error(await c.response(5), UNAUTHORIZED, "first message must be 'initialize'", "completion before initialize")
    if not await c.wait_closed(5):
        fail("completion before initialize: the connection stayed open")
    c = await Client(port, ctx).connect()
    c.open("file:///ws/x.py", "x")
    if not await c.wait_closed(5) or not c.messages or "first message must be" not in json.dumps(c.messages[0]):
        fail(f"didOpen before initialize: expected an error and the close, got {c.messages}")
    ok("a notification before initialize: error and close")

    # A plain LSP client on the TLS port is told so, in plain text.
    c = await Client(port, None).connect()
    c.request(1, "initialize", {"capabilities": {}})
    if not await c.wait_closed(5):
        fail("plain TCP on the TLS port: the connection stayed open")
    if not c.messages or "speaks TLS" not in c.messages[0]["error"]["message"]:
        fail(f"plain TCP on the TLS port: expected a plain-text error, got {c.messages}")
    ok(f"plain TCP on the TLS port: {c.messages[0]['error']['message']}")

    # TLS garbage: a handshake record header followed by junk.
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"\x16\x03\x01\x00\x40" + os.urandom(64))
    try:
        data = await asyncio.wait_for(r.read(), 5)
    except (ConnectionError, asyncio.TimeoutError) as e:
        data = e
    if isinstance(data, asyncio.TimeoutError):
        fail("TLS garbage: the connection stayed open")
    w.close()
    ok("TLS garbage: the handshake fails and the connection closes")

    # TLS 1.1 is refused (the client offers only 1.0/1.1).
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    try:
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        seen = len(daemon.lines)
        try:
            await asyncio.wait_for(Client(port, old).connect(), 5)
            fail("a TLS 1.1 client completed the handshake")
        except (ssl.SSLError, ConnectionError) as e:
            await asyncio.sleep(0.2)
            refused = [l for l in daemon.lines[seen:] if "TLS handshake" in l and "failed" in l]
            if refused:
                ok(f"TLS 1.1 refused by the server: {refused[0].split('failed: ')[-1]}")
            else:  # the client's own OpenSSL would not send it: nothing was tested
                print(f"skip TLS 1.1 check: this client's OpenSSL does not offer TLS 1.1 ({e})")
    except (ValueError, ssl.SSLError) as e:
        print(f"skip TLS 1.1 check: this Python cannot offer TLS 1.1 ({e})")
    tls12 = ssl.create_default_context(cafile=os.path.join(tmp, "cert.pem"))
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    c = await Client(port, tls12).connect()
    if "result" not in await c.initialize(TOKENS["bob"]):
        fail("a TLS 1.2 client was refused")
    c.close()
    ok("TLS 1.2 accepted")

    # Slowloris before the handshake: connects, sends nothing.
    r, w = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(r.read(), 10)
    except asyncio.TimeoutError:
        fail("a silent connection was not closed within 10 s")
    ok(f"silent connection closed after {time.monotonic() - t0:.2f} s (handshake timeout {HANDSHAKE_MS} ms)")
    w.close()

    # Slowloris after the handshake: the header one byte at a time.
    c = await Client(port, ctx).connect()
    t0 = time.monotonic()
    msg = frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
    for b in msg:
        if c.closed.is_set():
            break
        try:
            c.writer.write(bytes([b]))
            await c.writer.drain()
        except (ConnectionError, ssl.SSLError):
            break
        await asyncio.sleep(0.25)
    if not await c.wait_closed(5):
        fail("slowloris: the connection stayed open")
    took = time.monotonic() - t0
    if took > HANDSHAKE_MS / 1000 + 3:
        fail(f"slowloris: closed only after {took:.2f} s")
    ok(f"slowloris (one byte per 0.25 s) closed after {took:.2f} s")

    # 1,000 connections opened and dropped: half at once, half mid-handshake.
    async def open_and_drop(i):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            if i % 2:
                w.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's first bytes
                await w.drain()
            w.transport.abort()
        except OSError:
            pass
    t0 = time.monotonic()
    for batch in range(10):
        await asyncio.gather(*[open_and_drop(batch * 100 + i) for i in range(100)])
    ok(f"1,000 connections opened and dropped in {time.monotonic() - t0:.2f} s")
    await good_session(port, ctx)
    ok("the daemon still serves after the floods")

    # Models: only names from the allowlist.
    for model, pattern in (("/etc/passwd", r"unknown model '/etc/passwd'.*offers: small"),
                           ("nope", r"unknown model 'nope'.*offers: small")):
        c = await Client(port, ctx).connect()
        expect_error(await c.initialize(TOKENS["alice"], model=model), -32602, pattern, f"model {model}")
        c.close()
    c = await Client(port, ctx).connect()
    if "result" not in await c.initialize(TOKENS["alice"], model="small"):
        fail("model by name: refused")
    c.close()
    ok("model by name accepted")
    if any("/etc/passwd" in line and "refused" not in line for line in daemon.lines):
        fail("the daemon logged /etc/passwd other than as refused:\n" + daemon.tail())

    # Per-session limits: --max-open-documents 3, --max-document-bytes, --max-requests-in-flight 2.
    c = await Client(port, ctx).connect()
    await c.initialize(TOKENS["alice"])
    c.notify("initialized", {})
    for i in range(4):
        c.open(f"file:///ws/limit{i}.py", DOC)
    r = await c.complete(10, "file:///ws/limit3.py", DOC)
    expect_error(r, -32602, r"not open: .*--max-open-documents", "fourth open document")
    c.notify("textDocument/didClose", {"textDocument": {"uri": "file:///ws/limit0.py"}})
    c.open("file:///ws/huge.py", "x" * (args.max_document_bytes + 1))
    r = await c.complete(11, "file:///ws/huge.py", "x")
    expect_error(r, -32602, r"--max-document-bytes", "document over the byte limit")
    c.open("file:///ws/limit4.py", DOC)
    # Three requests in one write: the third finds two in flight.
    docs = ["file:///ws/limit1.py", "file:///ws/limit2.py", "file:///ws/limit4.py"]
    c.writer.write(b"".join(frame(c.completion_msg(20 + i, docs[i], DOC)) for i in range(3)))
    r = await c.response(22)
    expect_error(r, -32803, r"too many requests in flight.*--max-requests-in-flight", "third request in flight")
    for rid in (20, 21):
        if "result" not in await c.response(rid, 60):
            fail(f"a request within the in-flight limit failed: {c.responses[rid]}")
    # Idle timeout: the session says nothing and is closed with a message.
    t0 = time.monotonic()
    if not await c.wait_closed(IDLE_S + 5):
        fail("idle session not closed")
    if not any("--idle-timeout-s" in json.dumps(m) for m in c.messages):
        fail(f"idle session closed without a message: {c.messages[-3:]}")
    ok(f"idle session closed after {time.monotonic() - t0:.2f} s with a message")

    # Isolation: identical documents, two tenants; then the first tenant again.
    await good_session(port, ctx, "alice", "file:///ws/shared.py", DOC + "# alice first\n")
    await good_session(port, ctx, "bob", "file:///ws/shared.py", DOC + "# alice first\n")
    await good_session(port, ctx, "alice", "file:///ws/shared.py", DOC + "# alice first\n")
    await asyncio.sleep(1.5)  # the metrics writer's queue
    with open(os.path.join(tmp, "metrics.jsonl")) as f:
        recs = [json.loads(l) for l in f if '"completion"' in l]
    shared = [r for r in recs if r["document"] == "file:///ws/shared.py" and r["outcome"] == "ok"]
    if [r["tenant"] for r in shared] != ["alice", "bob", "alice"]:
        fail(f"isolation: expected completions of alice, bob, alice; got {[(r['tenant'], r['outcome']) for r in shared]}")
    a1, b, a2 = shared
    if b["reused_tokens"] != 0:
        fail(f"isolation: bob reused {b['reused_tokens']} tokens cached by alice")
    if a2["reused_tokens"] <= 0:
        fail(f"isolation: alice's second identical prompt reused nothing ({a2})")
    ok(f"isolation: bob reused 0 of {b['prompt_tokens']} tokens after alice; alice reused "
       f"{a2['reused_tokens']} of {a2['prompt_tokens']} on her second session")
    if len({r["session"] for r in shared}) != 3:
        fail("metrics: the three sessions do not carry distinct session numbers")

    # Nothing leaks: the hostile connections left no descriptors behind.
    await asyncio.sleep(3)  # lingering closes end within 2 s
    fds_after = daemon.fds()
    if fds_after > fds_before + 2:
        fail(f"file descriptors: {fds_before} before the hostile clients, {fds_after} after")
    ok(f"file descriptors: {fds_before} before, {fds_after} after")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-document-bytes", type=int, default=65536)
    ap.add_argument("argv", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    argv = args.argv[1:] if args.argv and args.argv[0] == "--" else args.argv
    model = argv[argv.index("--model") + 1]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", os.path.join(tmp, "key.pem"), "-out", os.path.join(tmp, "cert.pem")],
                       check=True, capture_output=True)
        with open(os.path.join(tmp, "tokens"), "w") as f:
            f.write("# tenant token\n" + "".join(f"{t} {tok}\n" for t, tok in TOKENS.items()))
        daemon = Daemon(argv + [
            "--listen", "127.0.0.1:0", "--tls-cert", os.path.join(tmp, "cert.pem"),
            "--tls-key", os.path.join(tmp, "key.pem"), "--token-file", os.path.join(tmp, "tokens"),
            "--model", f"small={model}", "--handshake-timeout-ms", str(HANDSHAKE_MS),
            "--idle-timeout-s", str(IDLE_S), "--max-open-documents", "3",
            "--max-document-bytes", str(args.max_document_bytes), "--max-requests-in-flight", "2",
            "--metrics-log", os.path.join(tmp, "metrics.jsonl"), "--log-level", "info",
            "--deadline-ms", "30000"])  # no expiry under sanitizers: the isolation check reads outcome ok
        try:
            if not daemon.listening.wait(60) or not daemon.ready.wait(300):
                fail("the daemon did not start:\n" + daemon.tail())
            asyncio.run(run(args, daemon, tmp))
            if daemon.proc.poll() is not None:
                fail("the daemon died:\n" + daemon.tail())
            daemon.proc.send_signal(signal.SIGTERM)
            code = daemon.proc.wait(30)
            if code != 0:
                fail(f"exit code {code} after SIGTERM:\n" + daemon.tail())
        finally:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
    print("remote_session: all checks passed")


if __name__ == "__main__":
    main()
