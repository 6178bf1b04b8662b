#!/usr/bin/env python3
"""Python ``Model.stream()`` against the C token loop, on the same settings.

Both generate greedily from the same prompt with the same thread count; the C
figure is what ``build/pocketlm generate`` reports for its generation phase (the
step-wise C generator, no Python), the Python figure is pieces from
``Model.stream()`` timed from the first piece to the last, so prompt evaluation
is excluded from both. Runs alternate between the two; medians are reported.

    make && .venv/bin/python bench/stream_bench.py --threads 2

(.venv is what ``make python-test`` installs the package into.)
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "The capital of France is"  # its greedy continuation runs on without an end token


def c_loop(cli, threads, n):
    out = subprocess.run([cli, "generate", "-p", PROMPT, "-n", str(n), "-t", str(threads)],
                         capture_output=True, text=True, check=True)
    m = re.search(r"generated (\d+) tokens in ([\d.]+) ms", out.stderr)
    return int(m.group(1)) / (float(m.group(2)) / 1e3)


def py_stream(model, n):
    pieces = 0
    t0 = None
    for _ in model.stream(PROMPT, max_tokens=n, temperature=0):
        if t0 is None:
            t0 = time.perf_counter()  # the first piece arrives after the prompt and one token
        pieces += 1
    dt = time.perf_counter() - t0
    return (n - 1) / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "pocketlm"))
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    import pocketlm

    model = pocketlm.Model(n_threads=args.threads)
    py_stream(model, 16)  # warm up
    c, py = [], []
    for _ in range(args.rounds):
        c.append(c_loop(args.cli, args.threads, args.tokens))
        py.append(py_stream(model, args.tokens))
    res = {
        "date": time.strftime("%Y-%m-%d"),
        "threads": args.threads,
        "tokens": args.tokens,
        "c_loop_tok_s": statistics.median(c),
        "python_stream_tok_s": statistics.median(py),
    }
    res["ratio"] = res["python_stream_tok_s"] / res["c_loop_tok_s"]
    print(f"C loop (pocketlm generate):  {res['c_loop_tok_s']:.1f} tok/s   rounds {[round(x, 1) for x in c]}")
    print(f"Python Model.stream():       {res['python_stream_tok_s']:.1f} tok/s   rounds {[round(x, 1) for x in py]}")
    print(f"ratio stream / C loop:       {res['ratio']:.3f}  ({args.threads} threads, {args.tokens} tokens, greedy)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
