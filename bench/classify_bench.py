#!/usr/bin/env python3
"""Classifications per second: pocketlm's classify_many against the naive way of scoring labels.

The task (issue 4's acceptance figure): texts of 64 tokens, 5 labels, the default model, 2 threads, the
default classification prompt (an instruction in the model's chat format, the text after it).

* ``classify_many``: per text, the prompt is evaluated once, reusing the instruction's tokens cached from
  the previous text, and all 5 labels are scored in one batched decode over sequences sharing its cache.
* naive: per text and label, the whole prompt followed by the label is evaluated from an empty cache, as
  scoring one full sequence per label does (a zero-shot pipeline's one pass per label). Only the logits
  the score needs are computed (of the positions before each label token), so the naive side is not
  burdened with extra output rows.

The texts are consecutive 64-token windows of tests/data/perplexity_gpl3.txt (real text, all different, so
nothing but the instruction can come from the cache). Both sides run on the same model and context
settings, alternating text by text for ``--rounds`` rounds, so that both meet the same conditions when
other processes disturb the machine; the ratio is that of the median times per text. The share of the CPUs
other processes used is reported, and the probabilities of the two are compared.

    python bench/classify_bench.py                     # default model, 2 threads, 16 texts, 3 rounds
    python bench/classify_bench.py --threads 2 --texts 32 --json /tmp/classify.json

Like bench/run.py it waits (up to --wait-idle seconds) for idle CPUs before each round: worker threads that
wait by spinning make a 2-thread run on a busy 2-core machine many times slower.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ["law", "software", "business", "science", "sports"]


def cpu_times():
    """(busy, total) jiffies of all CPUs, from /proc/stat (None where it is missing)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def wait_idle(limit_s: float) -> float:
    """Waits until other processes leave the CPUs at least 90 % idle over half a second (at most limit_s);
    returns the idle share last seen."""
    t_end = time.monotonic() + limit_s
    share = 1.0
    while True:
        a = cpu_times()
        time.sleep(0.5)
        b = cpu_times()
        if a is None or b is None:
            return 1.0
        share = 1.0 - (b[0] - a[0]) / max(b[1] - a[1], 1)
        if share >= 0.9 or time.monotonic() >= t_end:
            return share


class Disturbance:
    """Share of the CPUs other processes used while the block ran (this process's own time subtracted)."""

    def __enter__(self):
        self.a, self.own = cpu_times(), os.times()
        return self

    def __exit__(self, *exc):
        b, own = cpu_times(), os.times()
        if self.a is None or b is None:
            self.share = 0.0
            return
        hz = os.sysconf("SC_CLK_TCK")
        mine = ((own.user - self.own.user) + (own.system - self.own.system)) * hz
        self.share = max(0.0, (b[0] - self.a[0] - mine) / max(b[1] - self.a[1], 1))


def make_texts(model, n: int, n_tokens: int):
    with open(os.path.join(ROOT, "tests", "data", "perplexity_gpl3.txt"), encoding="utf-8") as f:
        toks = list(model.tokenize(" ".join(f.read().split()), add_special=False))
    texts = []
    for i in range(0, len(toks) - n_tokens, n_tokens):
        texts.append(model.detokenize(toks[i:i + n_tokens]).strip())
        if len(texts) == n:
            return texts
    raise SystemExit(f"the source text gives only {len(texts)} windows of {n_tokens} tokens")


def naive_probs(model, ctx, text):
    """Each label scored as its own full sequence: prompt + label evaluated from an empty cache."""
    import numpy as np

    prompt, labels = model.classification_prompt(text, LABELS)
    scores = []
    for lab in labels:
        ctx.reset()
        ctx.eval(prompt[:-1])
        ctx.eval(list(prompt[-1:]) + list(lab[:-1]), logits_all=True)   # the rows before each label token
        s = 0.0
        for j, t in enumerate(lab):
            row = np.asarray(ctx.logits_at(j), dtype=np.float64)
            m = row.max()
            s += row[t] - m - np.log(np.exp(row - m).sum())
        scores.append(s)
    e = np.exp(np.array(scores) - max(scores))
    return e / e.sum()


def main() -> None:
    ap = argparse.ArgumentParser(description="classify_many vs naive label scoring, classifications per second")
    ap.add_argument("model", nargs="?", default=None, help="GGUF file (default: the default model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--texts", type=int, default=16, help="texts per round (default 16)")
    ap.add_argument("--tokens", type=int, default=64, help="tokens per text (default 64)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wait-idle", type=float, default=60.0)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    import numpy as np

    try:
        import pocketlm
    except ImportError:   # not installed: the source tree, if its extension was built in place
        sys.path.insert(0, os.path.join(ROOT, "python"))
        import pocketlm

    model = pocketlm.Model(args.model, n_threads=args.threads)
    texts = make_texts(model, args.texts, args.tokens)
    n_text_tokens = [len(model.tokenize(t, add_special=False)) for t in texts]
    prompt_len = [len(model.classification_prompt(t, LABELS)[0]) for t in texts]
    ctx_many = model.context(n_ctx=1024, n_seq_max=16)
    ctx_naive = model.context(n_ctx=1024)
    model.classify("warm-up", LABELS, context=ctx_many)        # the instruction is cached once, as in a dataset run
    naive_probs(model, ctx_naive, "warm-up")

    # The two methods alternate text by text (which one goes first alternates too), so that both meet the
    # same conditions on a machine that other processes disturb; each text's time is kept.
    times = {"classify_many": [], "naive": []}
    probs = {"classify_many": [], "naive": []}
    shares = []
    for r in range(args.rounds):
        idle = wait_idle(args.wait_idle)
        with Disturbance() as d:
            for i, text in enumerate(texts):
                order = ("classify_many", "naive") if (i + r) % 2 == 0 else ("naive", "classify_many")
                for name in order:
                    t0 = time.perf_counter()
                    if name == "classify_many":
                        p = np.array(model.classify_many([text], LABELS, progress=False, context=ctx_many)[0].scores)
                    else:
                        p = naive_probs(model, ctx_naive, text)
                    times[name].append(time.perf_counter() - t0)
                    if r == 0:
                        probs[name].append(p)
        shares.append(d.share)
        print(f"round {r + 1}: classify_many {len(texts) / sum(times['classify_many'][-len(texts):]):.2f}/s, "
              f"naive {len(texts) / sum(times['naive'][-len(texts):]):.2f}/s (idle before {100 * idle:.0f}%, "
              f"others used {100 * d.share:.0f}% of the CPUs)", file=sys.stderr)

    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: len(v) / sum(v) for k, v in times.items()}
    ratio = med["naive"] / med["classify_many"]
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(probs["classify_many"], probs["naive"]))
    agree = sum(int(np.argmax(a) == np.argmax(b)) for a, b in zip(probs["classify_many"], probs["naive"]))
    disturbed = max(shares)
    print(f"model: {model.info.name or model.info.arch} ({model.info.file_type}), {args.threads} threads, "
          f"{pocketlm.kernels_name()} kernels")
    print(f"task: {len(texts)} texts of {min(n_text_tokens)}-{max(n_text_tokens)} tokens, {len(LABELS)} labels, "
          f"default prompt ({min(prompt_len)}-{max(prompt_len)} tokens with the text), {args.rounds} rounds")
    print()
    print("| method | classifications/s (median text) | classifications/s (all) | ms per text (median) |")
    print("|---|---:|---:|---:|")
    for name in ("classify_many", "naive"):
        print(f"| {name} | {1 / med[name]:.2f} | {rate[name]:.2f} | {1000 * med[name]:.0f} |")
    print()
    print(f"ratio classify_many / naive: {ratio:.2f}x (median per-text times; {rate['classify_many'] / rate['naive']:.2f}x "
          f"over all texts)")
    print(f"probabilities: largest difference {diff:.2e}; same top label for {agree}/{len(texts)} texts")
    if disturbed > 0.10:
        print(f"WARNING: other processes used up to {100 * disturbed:.0f}% of the CPUs during a round; absolute "
              f"figures are lower than on an idle machine (the ratio is measured under the same conditions)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model.info.path, "threads": args.threads, "labels": LABELS,
                       "texts": len(texts), "text_tokens": n_text_tokens, "prompt_tokens": prompt_len,
                       "median_seconds": med, "per_second": rate, "ratio": ratio, "max_prob_diff": diff,
                       "disturbed": shares, "seconds": times}, f, indent=1)


if __name__ == "__main__":
    main()
