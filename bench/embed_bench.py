#!/usr/bin/env python3
"""Sentence embeddings per second: pocketlm against sentence-transformers (torch, CPU) and llama.cpp
(llama-cpp-python, embedding mode) on all-MiniLM-L6-v2.

1,000 sentences of 8 to 128 tokens (deterministic mixtures of the words of tests/data/perplexity_gpl3.txt),
embedded in batches of 32 with the same thread count on every side (torch.set_num_threads; llama.cpp's n_threads
and n_threads_batch), each side in its own process so that its peak RSS (ru_maxrss) is its own. pocketlm and
llama.cpp run the same GGUF files converted from the model (F16 by default; --types f32,f16,q8_0 for more),
sentence-transformers the model zip's safetensors. llama.cpp (the pooling type from the file) gets one text per
llama_decode by default; --llama-mode batch gives it each batch of 32 texts as one llama_decode (n_batch =
n_ubatch = 4096), as its Llama.embed does with a list, which is slower: an encoder's batch must fit one ubatch,
and llama.cpp's attention then spans the whole ubatch under a mask. --rounds N runs every side
N times, in an order rotated each round (the machine may be shared), and reports the best and the median.
The cosines of each side's embeddings with sentence-transformers' are reported too.

--accuracy also embeds the sentences of tests/data/embed_sentences.txt with llama.cpp, from text (its own
WordPiece) and from pocketlm's token ids (the forward pass alone), and compares them with the reference vectors
of tests/data/embed_minilm.tsv (sentence-transformers) and with pocketlm's.

    python bench/embed_bench.py --st-python /path/to/venv-with-sentence-transformers/bin/python
    python bench/embed_bench.py --llama-python VENV/bin/python --types f32,f16,q8_0 --rounds 3 --accuracy

The model comes from the cache (python -m pocketlm download all-minilm-l6-v2, which also keeps the zip);
other GGUF types are converted into the cache on first use. A side whose interpreter is not given (or lacks
its package) is not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sentences(n: int, seed: int = 7):
    words = open(os.path.join(ROOT, "tests", "data", "perplexity_gpl3.txt"), encoding="utf-8").read().split()
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(5, 90)  # about 8 to 128 WordPiece tokens with [CLS] and [SEP]
        i = rng.randrange(0, len(words) - k)
        out.append(" ".join(words[i:i + k]))
    return out


CHILD_PLM = r"""
import json, resource, sys, time
import numpy as np
import pocketlm
path, threads, batch, texts_file, out_file = sys.argv[1:6]
texts = json.load(open(texts_file))
m = pocketlm.Model(path, n_threads=int(threads))
n_tok = sum(len(m.tokenize(t)) for t in texts)
m.embed(texts[:int(batch)], batch_size=int(batch))
t0 = time.perf_counter()
e = m.embed(texts, batch_size=int(batch))
dt = time.perf_counter() - t0
np.save(out_file, e)
print(json.dumps({"seconds": dt, "tokens": n_tok, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHILD_ST = r"""
import json, resource, sys, time, zipfile, tempfile
import numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
from sentence_transformers import SentenceTransformer
zip_path, threads, batch, texts_file, out_file = sys.argv[1:6]
texts = json.load(open(texts_file))
d = tempfile.mkdtemp()
zipfile.ZipFile(zip_path).extractall(d)
m = SentenceTransformer(d, device="cpu")
m.encode(texts[:int(batch)], batch_size=int(batch))
t0 = time.perf_counter()
e = m.encode(texts, batch_size=int(batch), normalize_embeddings=True, convert_to_numpy=True)
dt = time.perf_counter() - t0
np.save(out_file, e)
print(json.dumps({"seconds": dt, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "torch": torch.__version__}))
"""


CHILD_LLAMA = r"""
import json, resource, sys, time
import numpy as np
from llama_cpp import Llama
path, threads, batch, texts_file, out_file, mode = sys.argv[1:7]
texts, b = json.load(open(texts_file)), int(batch)
# "batch": b texts per llama_decode (an encoder's batch must fit one ubatch, and llama.cpp's attention then spans
# the whole ubatch under a mask: quadratic in it); "text": one text per llama_decode (no such waste)
n_batch = 128 * b if mode == "batch" else 512
m = Llama(model_path=path, embedding=True, n_threads=int(threads), n_threads_batch=int(threads), n_ctx=n_batch,
          n_batch=n_batch, n_ubatch=n_batch, verbose=False)
n_tok = sum(len(m.tokenize(t.encode("utf-8"))) for t in texts)
m.embed(texts[:b] if mode == "batch" else texts[0], normalize=True)
t0 = time.perf_counter()
e = []
for i in range(0, len(texts), b):
    if mode == "batch":
        e += m.embed(texts[i:i + b], normalize=True)
    else:
        e += [m.embed(t, normalize=True) for t in texts[i:i + b]]
dt = time.perf_counter() - t0
np.save(out_file, np.asarray(e, dtype=np.float32))
import llama_cpp
print(json.dumps({"seconds": dt, "tokens": n_tok, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "version": llama_cpp.__version__}))
"""

# llama.cpp on given texts and on given token ids, one text per llama_decode, for the accuracy comparison.
CHILD_LLAMA_ACC = r"""
import json, sys
import numpy as np
import llama_cpp
from llama_cpp import Llama
path, threads, texts_file, toks_file, out_text, out_toks = sys.argv[1:7]
texts, toks = json.load(open(texts_file)), json.load(open(toks_file))
m = Llama(model_path=path, embedding=True, n_threads=int(threads), n_threads_batch=int(threads), n_ctx=512,
          n_batch=512, n_ubatch=512, verbose=False)
np.save(out_text, np.asarray(m.embed(texts, normalize=True), dtype=np.float32))
E, rows = m.n_embd(), []
for t in toks:
    m._batch.reset()
    m._ctx.kv_cache_clear()
    m._batch.add_sequence(t, 0, True)
    m._ctx.decode(m._batch)
    rows.append(np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_seq(m._ctx.ctx, 0), shape=(E,)).copy())
np.save(out_toks, np.asarray(rows, dtype=np.float32))
own = [list(m.tokenize(t.encode("utf-8"))) for t in texts]
print(json.dumps({"same_tokens": sum(a == b for a, b in zip(own, toks))}))
"""


def run(python, code, args):
    r = subprocess.run([python, "-c", code] + [str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"child failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def cosines(a, b):
    import numpy as np
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def gguf_path(kind):
    from pocketlm import registry
    from pocketlm.convert import convert

    path = registry.download("all-minilm-l6-v2") if kind == "f16" else \
        os.path.join(registry.cache_dir(), f"all-MiniLM-L6-v2.{kind.upper()}.gguf")
    if not os.path.isfile(path):
        convert(registry.source_path("all-minilm-l6-v2"), path, kind)
    return path


def accuracy(args, tmp):
    """llama.cpp on the fixture sentences against sentence-transformers and pocketlm (see the docstring)."""
    import base64
    import numpy as np
    import pocketlm

    ref, texts = [], []
    for line in open(os.path.join(ROOT, "tests", "data", "embed_minilm.tsv"), encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        h, b = line.rstrip("\n").split("\t")
        texts.append(bytes.fromhex(h).decode("utf-8"))
        ref.append(np.frombuffer(base64.b64decode(b), dtype="<f2").astype(np.float32))
    ref = np.stack(ref)
    out = {}
    for kind in args.types.split(","):
        path = gguf_path(kind)
        with pocketlm.Model(path, n_threads=args.threads) as m:
            toks = [list(map(int, m.tokenize(t))) for t in texts]
            plm = m.embed(texts)
        tf, kf = os.path.join(tmp, "acc_texts.json"), os.path.join(tmp, "acc_toks.json")
        json.dump(texts, open(tf, "w"))
        json.dump(toks, open(kf, "w"))
        a, b = os.path.join(tmp, "acc_text.npy"), os.path.join(tmp, "acc_toks.npy")
        r = run(args.llama_python, CHILD_LLAMA_ACC, [path, args.threads, tf, kf, a, b])
        lt, lk = np.load(a), np.load(b)
        row = {"sentences": len(texts), "llama_same_tokens": r["same_tokens"]}
        for name, x, y in (("pocketlm_vs_st", plm, ref), ("llama_text_vs_st", lt, ref),
                           ("llama_tokens_vs_st", lk, ref), ("llama_tokens_vs_pocketlm", lk, plm)):
            c = cosines(x, y)
            row[name] = {"min": float(c.min()), "mean": float(c.mean()), "below_0.999": int((c < 0.999).sum())}
        out[kind] = row
        print(f"accuracy {kind} ({len(texts)} sentences; llama.cpp's tokens equal pocketlm's on {r['same_tokens']}): " +
              "; ".join(f"{n} min {row[n]['min']:.6f} mean {row[n]['mean']:.6f}"
                        for n in ("pocketlm_vs_st", "llama_text_vs_st", "llama_tokens_vs_st", "llama_tokens_vs_pocketlm")))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--types", default="f16")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--st-python", default=None, help="an interpreter with sentence-transformers and torch (CPU)")
    ap.add_argument("--llama-python", default=None, help="an interpreter with llama-cpp-python")
    ap.add_argument("--llama-mode", choices=("text", "batch"), default="text",
                    help="llama.cpp: one text per llama_decode (its faster mode here), or the whole batch in one")
    ap.add_argument("--accuracy", action="store_true", help="llama.cpp on the test sentences (needs --llama-python)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import statistics

    import numpy as np
    from pocketlm import registry

    zip_path = registry.source_path("all-minilm-l6-v2")
    kinds = args.types.split(",")
    results = {"threads": args.threads, "batch": args.batch, "sentences": args.n, "rounds": args.rounds,
               "llama_mode": args.llama_mode, "sides": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if args.accuracy:
            if not args.llama_python:
                raise SystemExit("--accuracy needs --llama-python")
            results["accuracy"] = accuracy(args, tmp)
        tf = os.path.join(tmp, "texts.json")
        json.dump(sentences(args.n), open(tf, "w"))
        sides = []  # (name, interpreter, child code, first argument)
        if args.st_python:
            sides.append(("sentence-transformers", args.st_python, CHILD_ST, zip_path))
        for kind in kinds:
            if args.llama_python:
                sides.append((f"llama.cpp {kind}", args.llama_python, CHILD_LLAMA, gguf_path(kind)))
            sides.append((f"pocketlm {kind}", sys.executable, CHILD_PLM, gguf_path(kind)))
        runs = {name: [] for name, *_ in sides}
        for r in range(args.rounds):
            k = r % len(sides)
            for name, python, code, first in sides[k:] + sides[:k]:
                out = os.path.join(tmp, name.replace(" ", "_").replace(".", "") + ".npy")
                res = run(python, code, [first, args.threads, args.batch, tf, out] +
                          ([args.llama_mode] if code is CHILD_LLAMA else []))
                res["per_s"] = args.n / res["seconds"]
                runs[name].append(res)
                print(f"round {r + 1}: {name}: {res['per_s']:.1f} sentences/s, peak RSS {res['rss_mb']:.0f} MB", flush=True)
        st_file = os.path.join(tmp, "sentence-transformers.npy")
        st_emb = np.load(st_file) if args.st_python else None
        for name, *_ in sides:
            rs = runs[name]
            per = [x["per_s"] for x in rs]
            side = {"best": max(per), "median": statistics.median(per), "runs": per,
                    "rss_mb": statistics.median(x["rss_mb"] for x in rs), "info": {k: v for k, v in rs[0].items()
                                                                                   if k in ("torch", "version", "tokens")}}
            if st_emb is not None and name != "sentence-transformers":
                side["min_cosine_vs_st"] = float(cosines(np.load(os.path.join(
                    tmp, name.replace(" ", "_").replace(".", "") + ".npy")), st_emb).min())
            results["sides"][name] = side
        print(f"\n{args.n} sentences, batch {args.batch}, {args.threads} threads, {args.rounds} round(s): "
              "sentences/s best / median, peak RSS, min cosine vs sentence-transformers")
        base = results["sides"].get("sentence-transformers")
        for name, side in results["sides"].items():
            line = f"{name:24s} {side['best']:7.1f} / {side['median']:7.1f}   {side['rss_mb']:5.0f} MB"
            if "min_cosine_vs_st" in side:
                line += f"   {side['min_cosine_vs_st']:.6f}"
            if name.startswith("pocketlm"):
                kind = name.split()[1]
                ll = results["sides"].get(f"llama.cpp {kind}")
                for other, o in (("sentence-transformers", base), ("llama.cpp", ll)):
                    if o:
                        line += f"   {side['best'] / o['best']:.2f}x / {side['median'] / o['median']:.2f}x {other}"
            print(line)
    if args.json:
        json.dump(results, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
