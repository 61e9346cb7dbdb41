#!/usr/bin/env python3
"""Many editors over TLS on one daemon, with and without a flooding session.

Starts `ghostd serve --listen 127.0.0.1:0` with TLS and tokens, runs a
--warmup phase (quiet, its figures discarded: the first requests pay for
cold caches and the daemon's first allocations, which would otherwise sit in
the quiet phase's tail), then two phases of --seconds each, and stops by
itself:

  quiet:  --editors sessions type (one keystroke every --interval-ms with
          jitter: didChange + inlineCompletion, the next keystroke after the
          answer), each in its own document;
  flood:  the same, plus one session of another tenant that keeps
          --flood-in-flight completion requests in flight on long documents
          (of the editors' tenant by default; --flood-tenant flood: another).

Checks every request is answered exactly once, and prints per-session p99
keystroke latency (median and worst over sessions) for each phase and their
ratio (the issue's target: <= 1.5x with one flooding session).

    bench/remote_load.py [--editors 64] [--seconds 60] [--warmup 5] -- GHOSTD serve --model PATH [args...]
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lsp"))
from remote_session import Client, Daemon, fail, frame  # noqa: E402

TOKENS = {"team": "team-token-0123456789abcdef", "flood": "flood-token-0123456789abcdef"}
FLOOD_TENANT = ["team"]  # --flood-tenant: one of the team's sessions floods, or another tenant
BASE = "".join(f"def helper_{i}(x):\n    return x * {i}\n\n" for i in range(20))
TYPED = "def total(items):\n    return sum(item.price for item in items)\n"


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))] if xs else float("nan")


async def editor(port, ctx, i, seconds, interval, rng, stats):
    c = await Client(port, ctx).connect()
    r = await c.initialize(TOKENS["team"])
    if "result" not in r:
        fail(f"editor {i}: {r}")
    c.notify("initialized", {})
    uri = f"file:///ws/e{i}.py"
    text = BASE
    c.open(uri, text)
    latencies, sent, rid = [], 0, 10
    end = time.monotonic() + seconds
    k = 0
    while time.monotonic() < end:
        ch = TYPED[k % len(TYPED)]
        k += 1
        lines = text.split("\n")
        pos = {"line": len(lines) - 1, "character": len(lines[-1])}
        c.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": k + 1}, "contentChanges": [
            {"range": {"start": pos, "end": pos}, "text": ch}]})
        text += ch
        t0 = time.monotonic()
        r = await c.complete(rid, uri, text)
        latencies.append((time.monotonic() - t0) * 1000)
        if "result" not in r:
            fail(f"editor {i}: request {rid}: {r}")
        sent += 1
        rid += 1
        await asyncio.sleep(max(0.0, interval / 1000 * rng.uniform(0.5, 1.5) - (time.monotonic() - t0)))
    for key, v in c.responses.items():
        if len(v) != 1:
            fail(f"editor {i}: request {key} answered {len(v)} times")
    if len(c.responses) != sent + 1:  # + initialize
        fail(f"editor {i}: {sent} requests, {len(c.responses) - 1} answers")
    stats.append(latencies)
    c.close()


async def flooder(port, ctx, seconds, in_flight, counts):
    c = await Client(port, ctx).connect()
    r = await c.initialize(TOKENS[FLOOD_TENANT[0]])
    if "result" not in r:
        fail(f"flooder: {r}")
    c.notify("initialized", {})
    docs = [f"file:///ws/flood{d}.py" for d in range(in_flight)]
    big = BASE * 4
    for d in docs:
        c.open(d, big)
    end = time.monotonic() + seconds
    rid = 1000
    pending = {}
    while time.monotonic() < end:
        while len(pending) < in_flight:
            d = docs[rid % in_flight]
            c.send(c.completion_msg(rid, d, big))
            pending[rid] = d
            rid += 1
        await asyncio.sleep(0.001)
        for done in [x for x in pending if x in c.responses]:
            del pending[done]
    for x in list(pending):
        await c.response(x, 60)
    for key, v in c.responses.items():
        if len(v) != 1:
            fail(f"flooder: request {key} answered {len(v)} times")
    counts.append(rid - 1000)
    c.close()


def flood_process(port, cafile, seconds, in_flight, count):
    """The flooder in its own process, so its client work does not delay the editors' client."""
    ctx = ssl.create_default_context(cafile=cafile)
    counts = []
    asyncio.run(flooder(port, ctx, seconds, in_flight, counts))
    count.value = counts[0]


async def phase(port, ctx, cafile, args, flood, seconds):
    stats = []
    rng = random.Random(1)
    count = multiprocessing.Value("i", 0)
    proc = None
    if flood:
        proc = multiprocessing.Process(target=flood_process,
                                       args=(port, cafile, seconds, args.flood_in_flight, count))
        proc.start()
    t0 = time.time()
    await asyncio.gather(*[editor(port, ctx, i, seconds, args.interval_ms, random.Random(rng.random()), stats)
                           for i in range(args.editors)])
    if proc:
        proc.join(120)
        if proc.exitcode != 0:
            fail(f"flooder exit code {proc.exitcode}")
    per_session = [p99(s) for s in stats]
    # Without each session's first request (its document's cold prefill).
    warm = [p99(s[1:]) for s in stats]
    n = sum(len(s) for s in stats)
    return {"requests": n, "median_p99": statistics.median(per_session), "worst_p99": max(per_session),
            "median_p99_warm": statistics.median(warm),
            "p50": statistics.median([x for s in stats for x in s]), "flood_requests": count.value,
            "window": (t0, time.time())}


def server_side(metrics_path, window, tenant="team"):
    """Per-session p99 of the server's own latency_ms (request arrival to reply) for `tenant`."""
    by_session = {}
    with open(metrics_path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "completion" and r["tenant"] == tenant and r["session"] in window:
                by_session.setdefault(r["session"], []).append(r["latency_ms"])
    if len(by_session) > 1:  # the flooder, when it shares the editors' tenant: the busiest session
        busiest = max(by_session, key=lambda k: len(by_session[k]))
        if len(by_session[busiest]) > 3 * statistics.median(len(v) for v in by_session.values()):
            del by_session[busiest]
    per = [p99(v) for v in by_session.values() if len(v) > 10]
    allv = [x for v in by_session.values() for x in v]
    return {"median_p99": statistics.median(per), "worst_p99": max(per), "p50": statistics.median(allv)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--editors", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=5, help="seconds of quiet typing first, not measured (0: none)")
    ap.add_argument("--interval-ms", type=float, default=150)
    ap.add_argument("--flood-in-flight", type=int, default=48)
    ap.add_argument("--flood-tenant", choices=["team", "flood"], default="team",
                    help="the flooding session's tenant: the editors' own (default) or another")
    ap.add_argument("--metrics-out", help="keep the daemon's metrics log (JSON lines) at this path")
    ap.add_argument("argv", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    argv = args.argv[1:] if args.argv and args.argv[0] == "--" else args.argv
    FLOOD_TENANT[0] = args.flood_tenant
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem"], check=True, capture_output=True)
        with open(f"{tmp}/tokens", "w") as f:
            f.write("".join(f"{t} {tok}\n" for t, tok in TOKENS.items()))
        d = Daemon(argv + ["--listen", "127.0.0.1:0", "--tls-cert", f"{tmp}/cert.pem", "--tls-key", f"{tmp}/key.pem",
                           "--token-file", f"{tmp}/tokens", "--log-level", "info",
                           "--metrics-log", f"{tmp}/metrics.jsonl"])
        try:
            if not d.listening.wait(60) or not d.ready.wait(300):
                fail("daemon did not start:\n" + d.tail())
            ctx = ssl.create_default_context(cafile=f"{tmp}/cert.pem")
            cafile = f"{tmp}/cert.pem"
            if args.warmup > 0:
                asyncio.run(phase(d.port, ctx, cafile, args, False, args.warmup))
            quiet = asyncio.run(phase(d.port, ctx, cafile, args, False, args.seconds))
            flood = asyncio.run(phase(d.port, ctx, cafile, args, True, args.seconds))
            if d.proc.poll() is not None:
                fail("the daemon died")
            d.proc.send_signal(signal.SIGTERM)
            d.proc.wait(30)
            # Sessions are numbered in order: the warm-up's editors come first,
            # then the quiet phase's.
            sessions = sorted({json.loads(l)["session"] for l in open(f"{tmp}/metrics.jsonl")
                               if '"completion"' in l and '"team"' in l})
            if args.metrics_out:
                shutil.copyfile(f"{tmp}/metrics.jsonl", args.metrics_out)
            w = args.editors if args.warmup > 0 else 0
            quiet["server"] = server_side(f"{tmp}/metrics.jsonl", set(sessions[w:w + args.editors]))
            flood["server"] = server_side(f"{tmp}/metrics.jsonl", set(sessions[w + args.editors:]))
        finally:
            if d.proc.poll() is None:
                d.proc.kill()
    print(f"editors {args.editors}, {args.seconds:.0f} s per phase after {args.warmup:.0f} s of warm-up, "
          f"keystroke every ~{args.interval_ms:.0f} ms")
    for name, r in (("quiet", quiet), ("flood", flood)):
        print(f"{name:6s} requests {r['requests']:6d}  p50 {r['p50']:7.1f} ms  per-session p99: median "
              f"{r['median_p99']:7.1f} ms, worst {r['worst_p99']:7.1f} ms  flood requests {r['flood_requests']}")
    print(f"ratio (flood / quiet, median per-session p99): {flood['median_p99'] / quiet['median_p99']:.2f}x; "
          f"worst: {flood['worst_p99'] / quiet['worst_p99']:.2f}x")
    print(f"without each session's first request (its document's cold prefill): median per-session p99 "
          f"{quiet['median_p99_warm']:.1f} -> {flood['median_p99_warm']:.1f} ms, "
          f"{flood['median_p99_warm'] / quiet['median_p99_warm']:.2f}x")
    for name, r in (("quiet", quiet), ("flood", flood)):
        sv = r["server"]
        print(f"server {name:6s} latency_ms p50 {sv['p50']:7.1f} ms  per-session p99: median {sv['median_p99']:7.1f} ms, "
              f"worst {sv['worst_p99']:7.1f} ms")
    print(f"server-side ratio (median per-session p99): "
          f"{flood['server']['median_p99'] / quiet['server']['median_p99']:.2f}x; "
          f"worst: {flood['server']['worst_p99'] / quiet['server']['worst_p99']:.2f}x")
    print("every request answered exactly once")


if __name__ == "__main__":
    main()
