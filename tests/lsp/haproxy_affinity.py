#!/usr/bin/env python3
"""HAProxy in TCP mode in front of two ghostd servers (docs/deployment.md).

Two `ghostd serve` on loopback with TLS and tokens, HAProxy passing TLS
through with `balance source` (session affinity by client address). Clients
connect from 16 loopback source addresses (127.0.0.2..), three connections
each: every address must land on one server for all its connections, and
both servers must be used. Then draining: a session types on server A while
A is set to `drain` over HAProxy's runtime API; its connection stays on A
and every request is answered exactly once with a result; new connections
from the same address go to B; then A gets SIGTERM (exit 0) once its last
session is done. Exit code 77 (skipped) when haproxy is not installed.

    haproxy_affinity.py -- GHOSTD serve --model PATH [args...]
"""
import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from remote_session import Client, Daemon, fail, ok  # noqa: E402

TOKEN = "team-token-0123456789abcdef"
DOC = "def total(items):\n    s = 0\n    for it in items:\n        s += it.price\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def served_by(metrics_paths, uri):
    where = set()
    for name, path in metrics_paths.items():
        if os.path.exists(path):
            with open(path) as f:
                if any(json.loads(l).get("document") == uri for l in f if '"completion"' in l):
                    where.add(name)
    return where


async def session(port, ctx, src, uri, keystrokes=1):
    c = await Client(port, ctx).connect(local_addr=(src, 0))
    r = await c.initialize(TOKEN)
    if "result" not in r:
        fail(f"initialize from {src}: {r}")
    c.notify("initialized", {})
    c.open(uri, DOC)
    text = DOC
    for k in range(keystrokes):
        lines = text.split("\n")
        pos = {"line": len(lines) - 1, "character": len(lines[-1])}
        c.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": k + 2}, "contentChanges": [
            {"range": {"start": pos, "end": pos}, "text": "x"}]})
        text += "x"
        r = await c.complete(10 + k, uri, text)
        if "result" not in r:
            fail(f"completion {k} from {src}: {r}")
    return c


def admin(sock_path, cmd):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.sendall(cmd.encode() + b"\n")
    out = b""
    while chunk := s.recv(4096):
        out += chunk
    s.close()
    return out.decode()


async def run(tmp, port, ctx, metrics, haproxy_sock, daemons):
    # Affinity: 16 addresses x 3 connections.
    placement = {}
    for a in range(16):
        src = f"127.0.0.{a + 2}"
        for k in range(3):
            c = await session(port, ctx, src, f"file:///ws/a{a}_{k}.py")
            c.close()
    await asyncio.sleep(1.5)  # metrics writers
    for a in range(16):
        servers = set()
        for k in range(3):
            where = served_by(metrics, f"file:///ws/a{a}_{k}.py")
            if len(where) != 1:
                fail(f"address {a}: connection {k} logged by {where or 'no server'}")
            servers |= where
        if len(servers) != 1:
            fail(f"affinity: connections from 127.0.0.{a + 2} went to {sorted(servers)}")
        placement[f"127.0.0.{a + 2}"] = servers.pop()
    used = set(placement.values())
    if used != {"A", "B"}:
        fail(f"balance: every address went to {used}")
    ok(f"affinity: 16 addresses x 3 connections, each address on one server; "
       f"{sum(v == 'A' for v in placement.values())} on A, {sum(v == 'B' for v in placement.values())} on B")

    # Draining A.
    src = next(s for s, v in placement.items() if v == "A")
    typing = await session(port, ctx, src, "file:///ws/drain-long.py", keystrokes=3)
    out = admin(haproxy_sock, "set server ghostd/A state drain")
    if out.strip():
        fail(f"haproxy runtime API: {out}")
    # The open session keeps typing on A; every request answered.
    text = DOC + "xxx"
    for k in range(3, 12):
        lines = text.split("\n")
        pos = {"line": len(lines) - 1, "character": len(lines[-1])}
        typing.notify("textDocument/didChange", {"textDocument": {"uri": "file:///ws/drain-long.py", "version": k + 2},
                                                 "contentChanges": [{"range": {"start": pos, "end": pos}, "text": "y"}]})
        text += "y"
        r = await typing.complete(10 + k, "file:///ws/drain-long.py", text)
        if "result" not in r:
            fail(f"draining: request {10 + k} on the drained server failed: {r}")
    fresh = await session(port, ctx, src, "file:///ws/drain-new.py")
    fresh.close()
    typing.request(99, "shutdown", None)
    await typing.response(99)
    typing.notify("exit", None)
    await typing.wait_closed(10)
    await asyncio.sleep(1.5)
    if served_by(metrics, "file:///ws/drain-long.py") != {"A"}:
        fail(f"draining: the open session moved: {served_by(metrics, 'file:///ws/drain-long.py')}")
    if served_by(metrics, "file:///ws/drain-new.py") != {"B"}:
        fail(f"draining: a new connection from {src} went to {served_by(metrics, 'file:///ws/drain-new.py')}, not B")
    for rid, got in typing.responses.items():
        if len(got) != 1:
            fail(f"draining: request {rid} answered {len(got)} times")
    ok(f"draining A: its open session got all {len(typing.responses)} replies on A; "
       f"a new connection from {src} went to B")
    daemons["A"].proc.send_signal(signal.SIGTERM)
    code = daemons["A"].proc.wait(30)
    if code != 0:
        fail(f"drained server exit code {code}")
    c = await session(port, ctx, src, "file:///ws/after.py")
    c.close()
    ok("drained server stopped with exit 0; its clients are served by B")


def main():
    if not shutil.which("haproxy"):
        print("haproxy_affinity: skipped (haproxy is not installed; tools/quickstart.sh test installs it)")
        sys.exit(77)
    argv = sys.argv[1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem"], check=True, capture_output=True)
        with open(f"{tmp}/tokens", "w") as f:
            f.write(f"team {TOKEN}\n")
        metrics = {n: f"{tmp}/metrics-{n}.jsonl" for n in "AB"}
        daemons = {}
        procs = []
        try:
            for n in "AB":
                daemons[n] = Daemon(argv + ["--listen", "127.0.0.1:0", "--tls-cert", f"{tmp}/cert.pem", "--tls-key",
                                            f"{tmp}/key.pem", "--token-file", f"{tmp}/tokens", "--metrics-log",
                                            metrics[n], "--metrics-summary-s", "3600", "--log-level", "info"])
                procs.append(daemons[n].proc)
            for n, d in daemons.items():
                if not d.listening.wait(60) or not d.ready.wait(300):
                    fail(f"server {n} did not start:\n{d.tail()}")
            port = free_port()
            sock = f"{tmp}/haproxy.sock"
            with open(f"{tmp}/haproxy.cfg", "w") as f:
                f.write(f"""global
  stats socket {sock} mode 600 level admin
defaults
  mode tcp
  timeout connect 2s
  timeout client 1h
  timeout server 1h
frontend ghostd
  bind 127.0.0.1:{port}
  default_backend ghostd
backend ghostd
  balance source
  hash-type consistent
  server A 127.0.0.1:{daemons['A'].port} check inter 2s
  server B 127.0.0.1:{daemons['B'].port} check inter 2s
""")
            hap = subprocess.Popen(["haproxy", "-db", "-f", f"{tmp}/haproxy.cfg"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
            procs.append(hap)
            deadline = time.monotonic() + 10
            while not os.path.exists(sock):
                if hap.poll() is not None or time.monotonic() > deadline:
                    fail(f"haproxy did not start: {hap.stdout.read() if hap.poll() is not None else ''}")
                time.sleep(0.05)
            ctx = ssl.create_default_context(cafile=f"{tmp}/cert.pem")
            asyncio.run(run(tmp, port, ctx, metrics, sock, daemons))
            daemons["B"].proc.send_signal(signal.SIGTERM)
            if daemons["B"].proc.wait(30) != 0:
                fail("server B: nonzero exit after SIGTERM")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
    print("haproxy_affinity: all checks passed")


if __name__ == "__main__":
    main()
