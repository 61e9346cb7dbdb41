#!/usr/bin/env python3
"""Speculative decoding benchmark: replay sessions with speculation off and
with each proposer, side by side in one run, on the bundled model pair.

For every session and thread count it runs the daemon once per configuration
(ghostd-replay over stdio, one editor) and prints, per configuration:
generated tokens per second of engine time (sum of generated tokens over the
sum of the completions' engine total_ms, from the metrics log), the ratio to
speculation off, the drafts proposed and accepted per proposer, and how many
completions differ from the speculation-off run (greedy: must be 0).

    bench/speculation.py [--build build] [--device cpu] [--threads 1,0] [--configs off,lookup,...]
                         [--sessions edit_session,spec_rename,...] [--reps N] [--editors 1,8]

Configurations: off (--no-draft), lookup, suffix, model, typed (one proposer
each: --speculation NAME), all (every proposer, the default); lookup-chain,
suffix-chain and chains are lookup, suffix and all with --draft-trees off. --threads 0 is
every core. With --reps N each configuration runs N times, interleaved, and
the median is printed.
"""
import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import socket
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "tests", "lsp", "demo")
CONFIGS = {
    "off": ["--no-draft"],
    "lookup": ["--speculation", "lookup"],
    "suffix": ["--speculation", "suffix"],
    "model": ["--speculation", "model"],
    "typed": ["--speculation", "typed"],
    "all": [],
    # Token trees off: every proposer offers a chain (the tree's gain side by side).
    "lookup-chain": ["--speculation", "lookup", "--draft-trees", "off"],
    "suffix-chain": ["--speculation", "suffix", "--draft-trees", "off"],
    "chains": ["--draft-trees", "off"],
}
SESSIONS = ["edit_session", "typing", "spec_rename", "spec_add_param", "spec_similar_block", "spec_retype_line"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_editors(build, model, session, threads, extra, work, device, editors):
    """`editors` replays of the session at once, each through its own
    `ghostd connect` bridge to one shared server (one session per editor).
    tok/s is generated tokens over the wall time of the replays: the
    server's throughput while every editor types."""
    metrics = os.path.join(work, "metrics.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    port = free_port()
    ghostd = os.path.join(build, "ghostd")
    serve = [ghostd, "serve", "--model", model, "--log-level", "info", "--threads", str(threads),
             "--deadline-ms", "60000", "--device", device, "--listen", "127.0.0.1:%d" % port,
             "--metrics-log", metrics] + extra
    server = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        for line in server.stderr:
            if "listening on" in line:
                break
            if time.time() > deadline:
                raise SystemExit("server did not start: " + " ".join(serve))
        else:
            raise SystemExit("server exited: " + " ".join(serve))
        threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # drain its log
        dumps = [os.path.join(work, "dump%d.jsonl" % i) for i in range(editors)]
        t0 = time.time()
        procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "lsp", "ghostd_replay.py"),
                                   "--session", os.path.join(DEMO, session + ".jsonl"), "--timeout-ms", "300000",
                                   "--dump", dumps[i], "--", ghostd, "connect", "tcp://127.0.0.1:%d" % port],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for i in range(editors)]
        outs = [p.communicate()[0] for p in procs]
        wall = time.time() - t0
        for p, out in zip(procs, outs):
            if p.returncode != 0:
                raise SystemExit("replay failed:\n" + out[-2000:])
    finally:
        server.terminate()
        server.wait(timeout=60)
    recs = [json.loads(l) for l in open(metrics) if l.strip()]
    comp = [r for r in recs if r.get("type") == "completion" and r.get("outcome") == "ok"]
    gen = sum(r["generated_tokens"] for r in comp)
    drafts = collections.defaultdict(collections.Counter)
    for r in comp:
        for k, v in (r.get("drafts") or {}).items():
            drafts[k].update({"proposed": v["proposed"], "accepted": v["accepted"]})
    texts = []
    for d in dumps:
        texts += [json.loads(l)["text"] for l in open(d) if l.strip()]
    return {"tok_s": gen / wall if wall > 0 else 0.0, "drafts": drafts, "texts": texts, "requests": len(comp)}


def run(build, model, session, threads, extra, work, device, editors=1):
    if editors > 1:
        return run_editors(build, model, session, threads, extra, work, device, editors)
    metrics = os.path.join(work, "metrics.jsonl")
    dump = os.path.join(work, "dump.jsonl")
    cmd = [sys.executable, os.path.join(ROOT, "tests", "lsp", "ghostd_replay.py"),
           "--session", os.path.join(DEMO, session + ".jsonl"), "--timeout-ms", "120000",
           "--metrics-log", metrics, "--dump", dump, "--",
           os.path.join(build, "ghostd"), "serve", "--model", model, "--log-level", "warn",
           "--threads", str(threads), "--deadline-ms", "60000", "--device", device] + extra
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("replay failed: %s\n%s%s" % (" ".join(cmd), p.stdout[-2000:], p.stderr[-2000:]))
    recs = [json.loads(l) for l in open(metrics) if l.strip()]
    comp = [r for r in recs if r.get("type") == "completion" and r.get("outcome") == "ok"]
    gen = sum(r["generated_tokens"] for r in comp)
    ms = sum(r["total_ms"] for r in comp)
    drafts = collections.defaultdict(collections.Counter)
    for r in comp:
        for k, v in (r.get("drafts") or {}).items():
            drafts[k].update({"proposed": v["proposed"], "accepted": v["accepted"]})
    texts = [json.loads(l)["text"] for l in open(dump) if l.strip()]
    return {"tok_s": gen * 1000.0 / ms if ms else 0.0, "drafts": drafts, "texts": texts, "requests": len(comp)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "qwen2-code-small"))
    ap.add_argument("--threads", default="1,0")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--sessions", default=",".join(SESSIONS))
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="the daemon's --device (cpu, cuda, ...)")
    ap.add_argument("--editors", default="1",
                    help="editors typing the session at once, a list (1,8): above 1, one TCP server and a "
                         "ghostd connect bridge per editor; tok/s is then over wall time")
    a = ap.parse_args()
    configs = a.configs.split(",")
    if "off" not in configs:
        configs.insert(0, "off")
    bad = [c for c in configs if c not in CONFIGS]
    if bad:
        ap.error("unknown configuration(s): " + ", ".join(bad))
    failed = False
    with tempfile.TemporaryDirectory() as work:
        for threads, editors, session in [(int(t), int(e), s) for t in a.threads.split(",")
                                          for e in a.editors.split(",") for s in a.sessions.split(",")]:
            results = collections.defaultdict(list)
            for rep in range(a.reps):
                for c in configs:  # interleaved: drift in machine load hits every configuration
                    print("  %s, threads %s, %d editor(s), %s (%d/%d)..." % (session, threads or "all", editors, c,
                                                                            rep + 1, a.reps),
                          file=sys.stderr, flush=True)
                    results[c].append(run(a.build, a.model, session, threads, CONFIGS[c], work, a.device,
                                          editors))
            base = statistics.median(r["tok_s"] for r in results["off"])
            ref_texts = results["off"][0]["texts"]
            print("%s, %s, %s thread(s), %d editor(s), %d completions%s" % (
                session, a.device, threads or "all", editors, results["off"][0]["requests"],
                ", tok/s over wall time" if editors > 1 else ""))
            print("  %-12s %9s %7s %8s  %s" % ("config", "tok/s", "ratio", "differ", "drafts accepted/proposed"))
            for c in configs:
                tok_s = statistics.median(r["tok_s"] for r in results[c])
                differ = sum(sum(x != y for x, y in zip(r["texts"], ref_texts)) + abs(len(r["texts"]) - len(ref_texts))
                             for r in results[c])
                failed |= differ > 0
                d = results[c][-1]["drafts"]
                dtxt = ", ".join("%s %d/%d (%.0f%%)" % (k, v["accepted"], v["proposed"],
                                                        100.0 * v["accepted"] / max(1, v["proposed"]))
                                 for k, v in sorted(d.items()))
                print("  %-12s %9.1f %6.2fx %8d  %s" % (c, tok_s, tok_s / base if base else 0, differ, dtxt or "-"))
            sys.stdout.flush()
    if failed:
        print("FAIL: some completions differ from the speculation-off run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
